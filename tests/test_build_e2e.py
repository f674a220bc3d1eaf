"""``dxforge build`` end to end with real rattler-build builds (no mocks).

(a) a synthetic project of four tiny pure-python packages (dxt-a <- dxt-b <- dxt-c, and an
independent dxt-d), each built with hatchling from an sdist made here and placed in the
project's source cache, solved from the real seed channel;
(b) the real recipes: a rattler install of ``diracx`` runs ``dirac --help``; a rebuild is a no-op;
(c) the real diracx-core built inside a network namespace with no network after ``dxforge fetch``.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import time
import uuid
from pathlib import Path

import pytest
from conftest import DXFORGE, E2E_BUILD, ROOT, run_dxforge, write_construct
from wheel_factory import tar_gz

from dxforge.builder.build import STATE
from dxforge.conda.channel import SUBDIRS, install, solve
from dxforge.core.util import user_cache
from dxforge.isolation import isolate
from dxforge.project.recipes import recipe_paths

pytestmark = pytest.mark.e2e

VERSION = "1.0.0"
NAMES = ("a", "b", "c", "d")
DEPS = {"a": (), "b": ("a",), "c": ("b",), "d": ()}
ORDER = ["dxt-a", "dxt-d", "dxt-b", "dxt-c"]


# --- the synthetic project -------------------------------------------------------------------


def make_sdist(name: str, deps: tuple[str, ...], salt: str) -> bytes:
    """A pure-python sdist ``dxt_<name>-1.0.0.tar.gz`` built with hatchling; its module imports
    the modules of its dependencies. ``salt`` makes its content (so its build's fingerprint) its
    project's own: dxforge's user cache of built packages, shared by every run, does not hold
    it."""
    dist = f"dxt_{name}"
    top = f"{dist}-{VERSION}"
    requires = ", ".join(f'"dxt-{d}=={VERSION}"' for d in deps)
    files = {
        "pyproject.toml": f"""\
[build-system]
requires = ["hatchling"]
build-backend = "hatchling.build"

[project]
name = "dxt-{name}"
version = "{VERSION}"
requires-python = ">=3.11"
dependencies = [{requires}]
""",
        "PKG-INFO": "Metadata-Version: 2.1\n"
        f"Name: dxt-{name}\nVersion: {VERSION}\nRequires-Python: >=3.11\n"
        + "".join(f"Requires-Dist: dxt-{d}=={VERSION}\n" for d in deps),
        f"{dist}/__init__.py": "".join(f"import dxt_{d}  # noqa: F401\n" for d in deps)
        + f'NAME = "{name}"\nSALT = "{salt}"\n',
    }
    return tar_gz(top, dict(sorted(files.items())))


def recipe_text(name: str, sha256: str, deps: tuple[str, ...], imports: str = "") -> str:
    run = "".join(f"    - dxt-{d} ==${{{{ version }}}}\n" for d in deps)
    return f"""\
context:
  version: "{VERSION}"
  python_min: "3.11"

package:
  name: dxt-{name}
  version: ${{{{ version }}}}

source:
  url: ${{{{ env.get("DXFORGE_SOURCES", default="file:///unset") }}}}/dxt_{name}-{VERSION}.tar.gz
  sha256: {sha256}

build:
  number: 0
  noarch: python
  script: ${{{{ PYTHON }}}} -m pip install . -vv --no-deps --no-build-isolation

requirements:
  host:
    - python ${{{{ python }}}}.*
    - pip
    - hatchling
  run:
    - python >=${{{{ python_min }}}}
{run}
tests:
  - python:
      imports:
        - {imports or f"dxt_{name}"}
      pip_check: true
      python_version: ${{{{ python }}}}.*

about:
  summary: dxforge test package {name}
  license: GPL-3.0-only
"""


class Project:
    """A synthetic dxforge project under ``root``."""

    def __init__(self, root: Path, seed: Path, salt: str = "") -> None:
        self.root = root
        self.salt = salt or uuid.uuid4().hex
        self.seed = seed
        self.out = root / "build/channels/dxforge"
        self.sha: dict[str, str] = {}
        cache = root / "build/sources"
        cache.mkdir(parents=True)
        for n in NAMES:
            data = make_sdist(n, DEPS[n], self.salt)
            (cache / f"dxt_{n}-{VERSION}.tar.gz").write_bytes(data)
            self.sha[n] = hashlib.sha256(data).hexdigest()
            self.write(n)
        write_construct(root, channel=seed)

    def recipe(self, name: str) -> Path:
        return self.root / "recipes" / f"dxt-{name}" / "recipe.yaml"

    def write(self, name: str, imports: str = "") -> None:
        path = self.recipe(name)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(recipe_text(name, self.sha[name], DEPS[name], imports))

    def args(self, *extra: str, out: Path | None = None, jobs: int = 1) -> list[str]:
        return [
            "build",
            "--root",
            str(self.root),
            "--channel",
            str(self.seed),
            "--json",
            "--jobs",
            str(jobs),
            *(["--out", str(out)] if out else []),
            *extra,
        ]

    def build(self, *extra: str, ok: bool = True, out: Path | None = None, jobs: int = 1) -> dict:
        proc = run_dxforge(*self.args(*extra, out=out, jobs=jobs), cwd=self.root, check=ok)
        assert (proc.returncode == 0) == ok, proc.stderr[-3000:]
        report = json.loads(proc.stdout)
        assert report["status"] == ("built" if ok else "failed")
        check_repodata(out or self.out)
        return report


def statuses(report: dict) -> dict[str, str]:
    return {p["name"]: p["status"] for p in report["packages"]}


def check_repodata(channel: Path) -> dict[str, dict]:
    """Each subdir's repodata.json parses and lists exactly the .conda files there, with their
    sha256 and size; returns the noarch records by file name."""
    records: dict[str, dict] = {}
    for sub in SUBDIRS:
        repodata = json.loads((channel / sub / "repodata.json").read_text())
        assert repodata["info"]["subdir"] == sub
        listed = repodata.get("packages.conda", {})
        on_disk = {p.name: p for p in (channel / sub).glob("*.conda")}
        assert set(listed) == set(on_disk), f"{channel / sub}: repodata disagrees with files"
        for fname, rec in listed.items():
            data = on_disk[fname].read_bytes()
            assert rec["sha256"] == hashlib.sha256(data).hexdigest(), fname
            assert rec["size"] == len(data), fname
        if sub == "noarch":
            records = listed
    assert not list(channel.parent.glob(f".{channel.name}.index-*")), "index temp dir left"
    return records


def names_in(channel: Path) -> set[str]:
    return {r["name"] for r in check_repodata(channel).values()}


@pytest.fixture
def project(tmp_path: Path, seed_channel: Path) -> Project:
    return Project(tmp_path / "proj", seed_channel)


# --- (a) synthetic builds --------------------------------------------------------------------


def test_incremental_builds_and_lock(project: Project) -> None:
    first = project.build()
    assert [p["name"] for p in first["packages"]] == ORDER
    assert set(statuses(first).values()) == {"built"}
    files = {p["name"]: project.out / p["file"] for p in first["packages"]}
    for p in first["packages"]:
        assert p["version"] == VERSION and p["build_string"] and p["size_bytes"] > 0
        assert files[p["name"]].stat().st_size == p["size_bytes"]
        assert Path(p["log"]) == project.root / "build/logs" / f"{p['name']}.log"
        assert (
            "dxforge.builder.worker" in Path(p["log"]).read_text()
        )  # the command, then its output
    mtimes = [files[n].stat().st_mtime for n in ORDER]
    assert mtimes == sorted(mtimes), "not built in dependency order"
    assert names_in(project.out) == set(ORDER)
    state = json.loads((project.out / STATE).read_text())
    assert set(state) == set(ORDER) and all(len(s["fingerprint"]) == 64 for s in state.values())
    # c's test environment took b and a from the output channel
    log_c = (project.root / "build/logs/dxt-c.log").read_text()
    assert "dxt-a" in log_c and "dxt-b" in log_c

    again = project.build()
    assert statuses(again) == dict.fromkeys(ORDER, "skipped")
    assert [p["file"] for p in again["packages"]] == [p["file"] for p in first["packages"]]
    assert (project.out / STATE).read_text() == json.dumps(state, indent=2, sort_keys=True)

    path = project.recipe("b")
    path.write_text(path.read_text().replace("test package b", "test package B, edited"))
    edited = project.build()
    assert statuses(edited) == {
        "dxt-a": "skipped",
        "dxt-d": "skipped",
        "dxt-b": "built",
        "dxt-c": "built",
    }
    assert names_in(project.out) == set(ORDER)
    assert len(list((project.out / "noarch").glob("dxt-b-*.conda"))) == 1

    # --force rebuilds everything; meanwhile a second build of the channel is refused
    lock = project.out.parent / ".dxforge.lock"
    proc = subprocess.Popen(
        [str(DXFORGE), *project.args("--force")],
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        while "pid" not in (lock.read_text() if lock.exists() else ""):
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the forced build never took the lock"
            time.sleep(0.1)
        second = subprocess.run(
            [str(DXFORGE), *project.args()],
            cwd=project.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
        assert second.returncode != 0
        msg = second.stderr
        assert f"channel {project.out} is locked by pid {proc.pid}" in msg, msg
        assert "wait for it to finish" in msg
        # no report, nothing was attempted: --json gives the error as JSON
        error = json.loads(second.stdout)
        assert set(error) == {"status", "error"} and error["status"] == "error"
        assert f"channel {project.out} is locked by pid {proc.pid}" in error["error"]
    finally:
        stdout, stderr = proc.communicate(timeout=900)
    assert proc.returncode == 0, stderr[-3000:]
    forced = json.loads(stdout)
    assert statuses(forced) == dict.fromkeys(ORDER, "built")
    check_repodata(project.out)
    assert project.build()["status"] == "built"  # and the lock is free again


def test_failure_keep_going_and_stop(project: Project, tmp_path: Path) -> None:
    """dxt-a's test imports a missing module: a fails, b and c are not built because of it;
    d (built after a) stops without --keep-going and builds with it."""
    project.write("a", imports="dxt_a.no_such_module")
    out = tmp_path / "out"
    stopped = project.build(ok=False, out=out)
    pkgs = {p["name"]: p for p in stopped["packages"]}
    assert pkgs["dxt-a"]["status"] == "failed"
    log = Path(pkgs["dxt-a"]["log"])
    assert log.parent.parent == project.root / "build/logs" and log.name == "dxt-a.log"
    assert pkgs["dxt-a"]["reason"].startswith("dxt-a: rattler-build failed")
    assert str(log) in pkgs["dxt-a"]["reason"]
    assert "no_such_module" in log.read_text()
    assert pkgs["dxt-d"]["status"] == "not built"
    assert "--keep-going" in pkgs["dxt-d"]["reason"]
    for n in ("dxt-b", "dxt-c"):
        assert pkgs[n]["status"] == "not built"
        assert pkgs[n]["reason"] == "dxt-a failed"  # c too: b did not fail, it was not built
    assert names_in(out) == set()
    assert not (out / STATE).exists() or json.loads((out / STATE).read_text()) == {}

    going = project.build("--keep-going", ok=False, out=out)
    assert statuses(going) == {
        "dxt-a": "failed",
        "dxt-d": "built",
        "dxt-b": "not built",
        "dxt-c": "not built",
    }
    assert "Test failed" in going["packages"][0]["reason"]
    assert {p["reason"] for p in going["packages"][2:]} == {"dxt-a failed"}
    assert names_in(out) == {"dxt-d"}
    assert set(json.loads((out / STATE).read_text())) == {"dxt-d"}

    # --only b while a is not in the channel: b's test cannot be solved; the reason says why
    alone = project.build("--only", "dxt-b", ok=False, out=out)
    assert statuses(alone) == {"dxt-b": "failed"}
    assert alone["packages"][0]["reason"].endswith(
        f"; dxt-a (needed by dxt-b) not in {out}: build with --up-to dxt-b"
    )
    assert names_in(out) == {"dxt-d"}

    # a failing rebuild of a package the channel holds keeps the old package
    project.write("a")
    assert statuses(project.build("--only", "dxt-a")) == {"dxt-a": "built"}
    held = {p.name: p.read_bytes() for p in (project.out / "noarch").glob("*.conda")}
    project.write("a", imports="dxt_a.no_such_module")
    failed = project.build("--only", "dxt-a", ok=False)
    assert statuses(failed) == {"dxt-a": "failed"}
    assert {p.name: p.read_bytes() for p in (project.out / "noarch").glob("*.conda")} == held
    project.write("a")  # back as it was: what the channel holds is still up to date
    assert statuses(project.build("--only", "dxt-a")) == {"dxt-a": "skipped"}


def test_damaged_package_in_the_channel_is_rebuilt(project: Project) -> None:
    """A flipped byte in a built .conda: the next build finds that the file no longer matches
    the channel's repodata, and rebuilds that package only."""
    first = project.build()
    file_d = project.out / next(p["file"] for p in first["packages"] if p["name"] == "dxt-d")
    data = bytearray(file_d.read_bytes())
    data[len(data) // 2] ^= 0x01
    file_d.write_bytes(bytes(data))
    again = project.build()
    # the user cache holds the package of that fingerprint: it comes back from there
    assert statuses(again) == {
        "dxt-a": "skipped",
        "dxt-d": "cached",
        "dxt-b": "skipped",
        "dxt-c": "skipped",
    }
    [d] = [p for p in again["packages"] if p["name"] == "dxt-d"]
    assert "did not match its index" in d["reason"] and "sha256" in d["reason"]
    assert "user cache" in d["reason"]
    assert file_d.read_bytes() != bytes(data)
    file_d.unlink()
    assert statuses(project.build())["dxt-d"] == "cached"
    assert statuses(project.build("--only", "dxt-d", "--force"))["dxt-d"] == "built"
    check_repodata(project.out)


def test_another_clone_takes_the_builds_from_the_user_cache(
    project: Project, tmp_path: Path
) -> None:
    """The same recipes and sources in another clone: every package comes from the user cache,
    byte for byte, and nothing is built; a damaged cache entry is built again."""
    first = project.build()
    clone = Project(tmp_path / "clone", project.seed, salt=project.salt)
    second = clone.build()
    assert statuses(second) == dict.fromkeys(ORDER, "cached")
    for a, b in zip(first["packages"], second["packages"], strict=True):
        assert (project.out / a["file"]).read_bytes() == (clone.out / b["file"]).read_bytes()
    assert not (clone.root / "build/logs/dxt-a.log").exists()

    # the reason names the cache entry (other runs' entries hold packages of the same name)
    reason = second["packages"][0]["reason"]
    where = Path(reason[reason.rindex("(") + 1 : -1])
    assert where.is_relative_to(user_cache() / "builds"), reason
    entry = where / Path(first["packages"][0]["file"]).name
    entry.write_bytes(b"damaged")
    third = Project(tmp_path / "third", project.seed, salt=project.salt).build()
    assert statuses(third)["dxt-a"] == "built"
    assert {s for n, s in statuses(third).items() if n != "dxt-a"} == {"cached"}


def test_jobs_build_a_level_at_once_with_the_same_outputs(project: Project, tmp_path: Path) -> None:
    one = project.build(out=tmp_path / "one", jobs=1)
    two = project.build("--force", out=tmp_path / "two", jobs=2)  # not from the user cache
    assert set(statuses(one).values()) == set(statuses(two).values()) == {"built"}
    assert two["jobs"] == 2 and [p["name"] for p in two["packages"]] == ORDER

    def outputs(report: dict, out: Path) -> dict[str, tuple]:
        records = check_repodata(out)
        return {
            p["name"]: (
                p["version"],
                p["build_string"],
                p["file"],
                sorted(records[p["file"].split("/", 1)[1]]["depends"]),
            )
            for p in report["packages"]
        }

    assert outputs(one, tmp_path / "one") == outputs(two, tmp_path / "two")


# --- (b) the real recipes -----------------------------------------------------------------------


def test_install_diracx_and_run_dirac(dxforge_channels: tuple[Path, Path], tmp_path: Path) -> None:
    out, seed = dxforge_channels
    records = solve([out, seed], ["diracx"])
    by_name = {r.name.normalized: r for r in records}
    assert by_name["diracx"].version == by_name["diracx-core"].version
    ours = {n for n in by_name if n == "diracx" or n.startswith("diracx-")}
    assert {"diracx", "diracx-cli", "diracx-client", "diracx-core"} <= ours
    for name in ours:
        assert by_name[name].url.startswith(out.as_uri() + "/"), by_name[name].url
    prefix = tmp_path / "prefix"
    install(records, prefix)
    env = {"PATH": f"{prefix / 'bin'}:/usr/bin:/bin", "HOME": str(tmp_path), "LANG": "C.UTF-8"}
    proc = subprocess.run(
        [str(prefix / "bin/dirac"), "--help"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
        stdin=subprocess.DEVNULL,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Usage" in proc.stdout

    report = json.loads(run_dxforge("build", "--json", "--build-dir", E2E_BUILD).stdout)
    assert report["status"] == "built"
    assert len(report["packages"]) == len(recipe_paths(ROOT))
    assert {p["status"] for p in report["packages"]} == {"skipped"}


# --- (c) offline -----------------------------------------------------------------------------


def test_build_offline_after_fetch(seed_channel: Path, tmp_path: Path) -> None:
    if not isolate.offline_possible():
        pytest.skip(f"cannot run offline: {'; '.join(isolate.limits())}")
    run_dxforge("fetch", "--build-dir", E2E_BUILD)  # the only step that may use the network
    root = tmp_path / "proj"
    shutil.copytree(ROOT / "recipes", root / "recipes")
    shutil.copy(ROOT / "construct.yaml", root / "construct.yaml")
    shutil.copytree(ROOT / "installer", root / "installer")  # construct.yaml names its files
    shutil.copytree(E2E_BUILD / "sources", root / "build/sources")
    fetched = json.loads(run_dxforge("fetch", "--root", str(root), "--json", cwd=root).stdout)
    assert {f["status"] for f in fetched["files"]} == {"cached"}
    env = {k: v for k, v in os.environ.items() if k != "DXFORGE_BUILD_DIR"}
    with isolate.Site() as site:  # as root (the build's user), in the site's offline namespace
        assert site.offline
        proc = site.run(
            [
                DXFORGE,
                "build",
                "--root",
                root,
                "--force",
                "--only",
                "diracx-core",
                "--channel",
                seed_channel,
                "--json",
            ],
            env=env,
            cwd=root,
            timeout=900,
            as_site_user=False,
        )
    assert proc.ok, proc.tail(60)
    report = json.loads(proc.stdout)
    assert statuses(report) == {"diracx-core": "built"}
    out = root / "build/channels/dxforge"
    assert names_in(out) == {"diracx-core"}


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_build_names_the_package_and_resumes(
    project: Project, signum: int, code: int
) -> None:
    """Issue 22: Ctrl-C (or a CI cancel's SIGTERM) on `dxforge build` while dxt-a builds: one
    line naming it and how to resume, exit 130/143, at once (the build's worker is stopped
    too); run again, the build finishes."""
    proc = subprocess.Popen(
        [str(DXFORGE), *project.args()],
        cwd=project.root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    log = project.root / "build/logs/dxt-a.log"
    deadline = time.monotonic() + 300
    while "dxforge.builder.worker" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "dxt-a's build never started"
        time.sleep(0.1)
    time.sleep(1)
    sent = time.monotonic()
    proc.send_signal(signum)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == code, err[-3000:]
    assert time.monotonic() - sent < 30, "the interrupted build waited for its worker"
    said = (
        "interrupted while building dxt-a; run `dxforge build` again to resume: finished "
        "packages are kept"
    )
    assert err.splitlines()[-1] == said, err[-3000:]
    assert "Traceback" not in err
    assert json.loads(out) == {"status": "interrupted", "error": said}  # --json
    if (project.out / "noarch/repodata.json").exists():
        # a package whose build finished as the signal came may be published (the scheduler
        # publishes each package once built); nothing half-built: every file matches its index
        from dxforge.conda.channel import check_channel

        check_channel(project.out)
    assert set(statuses(project.build()).values()) <= {"built", "cached", "skipped"}
