"""End-to-end tests of ``dxforge seed``: the real seed channel installs a working python, voms and
pip into a new prefix; every recipe and construct.yaml requirement solves from it; a second run
is a no-op; and a failing package leaves the previous channel intact (synthetic project served by
a local package index)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import E2E_BUILD, ROOT, run_dxforge, write_construct
from local_index import Dist, LocalIndex, serve
from wheel_factory import binary_tag, build_wheel, metadata, tar_gz

from dxforge.conda import channel as ch
from dxforge.conda.package import PLACEHOLDER
from dxforge.core.specs import split_spec
from dxforge.core.util import user_cache
from dxforge.project.recipes import is_sibling, load_recipes
from dxforge.project.target import project_target
from dxforge.runtime.components import components, runtime_packages
from dxforge.runtime.libs import runtime_libraries

pytestmark = pytest.mark.e2e

CLEAN_ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}
TARGET = project_target(ROOT / "construct.yaml")
PY = TARGET.python
PYTHON_SPEC = f"python {PY}.*"
RUNTIME = runtime_packages()


def spec_name(spec: str) -> str:
    return split_spec(spec)[0]


# --- (a) python, git and pip from the seed, installed into a new prefix -----------------------


@pytest.fixture(scope="module")
def installed(seed_channel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``python git pip`` solved from the seed alone and installed into a fresh prefix."""
    base = tmp_path_factory.mktemp("seed-install")
    prefix = base / "prefix-installed-from-the-seed"
    # a prefix of a length used nowhere at build time: not the placeholder's
    assert len(str(prefix)) != len(PLACEHOLDER), prefix
    records = ch.solve([seed_channel], ["python", "git", "pip"])
    names = {r.name.normalized for r in records}
    assert names >= {
        "python",
        "python_abi",
        "git",
        "pip",
        "openssl",
        "ca-certificates",
        "libffi",
        "libsqlite",
        "libexpat",
        "libzlib",
        "liblzma",
        "bzip2",
        "ncurses",
        "readline",
        "libuuid",
    }
    ch.install(records, prefix, cache_dir=base / "pkgs")
    return prefix


def run(prefix: Path, *cmd: str) -> subprocess.CompletedProcess[str]:
    """Run a program of ``prefix`` with a bare environment (no PYTHONHOME, no LD_LIBRARY_PATH)."""
    return subprocess.run(
        [str(prefix / "bin" / cmd[0]), *cmd[1:]],
        capture_output=True,
        text=True,
        env={**CLEAN_ENV, "HOME": str(prefix.parent)},
        timeout=120,
        check=False,
    )


def test_python_from_the_seed_works_in_a_new_prefix(installed: Path) -> None:
    probe = (
        "import json, sys, sysconfig, ssl, sqlite3, ctypes, zlib, bz2, lzma, uuid, readline\n"
        "ctypes.CDLL(None)\n"
        "print(json.dumps({'prefix': sys.prefix, 'exe': sys.executable,\n"
        "  'cfg_prefix': sysconfig.get_config_var('prefix'),\n"
        "  'libdir': sysconfig.get_config_var('LIBDIR'),\n"
        "  'openssl': ssl.OPENSSL_VERSION, 'sqlite': sqlite3.sqlite_version,\n"
        "  'cas': ssl.create_default_context().cert_store_stats()['x509_ca'],\n"
        "  'zlib': zlib.compress(b'x' * 100) != b'', 'version': sys.version_info[:2]}))"
    )
    proc = run(installed, "python", "-I", "-c", probe)
    assert proc.returncode == 0, proc.stderr
    got = json.loads(proc.stdout)
    assert got["prefix"] == str(installed)
    assert got["exe"] == str(installed / "bin/python")
    assert got["cfg_prefix"] == str(installed) and got["libdir"] == str(installed / "lib")
    assert got["openssl"].startswith("OpenSSL 3.") and got["sqlite"] and got["cas"] > 100
    assert got["version"] == [int(x) for x in PY.split(".")]  # construct.yaml's python
    # every library comes from the prefix (the loader's own map of the process)
    maps = run(
        installed,
        "python",
        "-I",
        "-c",
        "import ssl, sqlite3, ctypes, readline, lzma;print(open('/proc/self/maps').read())",
    ).stdout
    libs = {line.split()[-1] for line in maps.splitlines() if ".so" in line}
    outside = {
        p
        for p in libs
        if not p.startswith(str(installed))
        and "/libc" not in p
        and "/ld-linux" not in p
        and "/libm." not in p
        and "/libpthread" not in p
        and "/libdl" not in p
        and "/libutil" not in p
        and "/librt" not in p
    }
    assert outside == set()


def test_git_from_the_seed_runs(installed: Path, tmp_path: Path) -> None:
    proc = run(installed, "git", "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("git version 2."), proc.stderr
    exec_path = run(installed, "git", "--exec-path").stdout.strip()
    assert exec_path == str(installed / "libexec/git-core")  # found from where git is
    env = {**CLEAN_ENV, "HOME": str(tmp_path), "PATH": f"{installed}/bin:/usr/bin:/bin"}
    script = (
        f"git init -q {tmp_path}/a && git -C {tmp_path}/a -c user.name=t "
        f"-c user.email=t@l commit -q --allow-empty -m one && "
        f"git clone -q {tmp_path}/a {tmp_path}/b && git -C {tmp_path}/b log --format=%s"
    )
    res = subprocess.run(["sh", "-c", script], capture_output=True, text=True, env=env, check=False)
    assert res.returncode == 0 and res.stdout == "one\n", res.stderr
    res = subprocess.run(
        [str(installed / "bin/git"), "ls-remote", "https://127.0.0.1:1/x"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert res.returncode != 0 and "onnect" in res.stderr and "remote-https" not in res.stderr


def test_pip_from_the_seed_runs(installed: Path) -> None:
    proc = run(installed, "pip", "--version")
    assert proc.returncode == 0, proc.stderr
    site = installed / f"lib/python{PY}/site-packages/pip"
    assert re.match(
        rf"^pip \S+ from {re.escape(str(site))} \(python {re.escape(PY)}\)$", proc.stdout
    ), proc.stdout


def test_no_placeholder_left_in_the_prefix(installed: Path) -> None:
    sysconfigdata = list((installed / f"lib/python{PY}").glob("_sysconfigdata*.py"))
    scripts = [p for p in (installed / "bin").iterdir() if p.is_file()]
    assert sysconfigdata and len(scripts) > 10
    assert str(installed).encode() in sysconfigdata[0].read_bytes()
    needle = PLACEHOLDER.encode()
    for p in [*sysconfigdata, *scripts]:
        assert needle not in p.read_bytes(), p
    # nor anywhere else (binaries included), save conda-meta's record of what was replaced
    left = [
        p
        for p in installed.rglob("*")
        if p.is_file()
        and not p.is_symlink()
        and "conda-meta" not in p.parts
        and needle in p.read_bytes()
    ]
    assert left == []


def test_converted_wheel_installs_and_runs(seed_channel: Path, tmp_path: Path) -> None:
    """A converted pure wheel (entry points from link.json, a ``#!python`` script, an entry point
    with extras) links with rattler next to the seed's python, and its scripts run."""
    from dxforge.seed.wheels import convert_wheel

    channel = tmp_path / "channel"
    wheel = build_wheel(
        tmp_path / "wheels",
        "seedtest-tool",
        "1.0",
        console_scripts={"seedtest": "seedtest_tool:main", "seedtest-x": "seedtest_tool:main [x]"},
        scripts={"seedtest-run": b"#!python\nimport seedtest_tool\nseedtest_tool.main()\n"},
    )
    convert_wheel(wheel, {}, channel, TARGET)
    ch.index(channel)
    records = ch.solve([channel, seed_channel], ["seedtest-tool", "python"])
    prefix = tmp_path / "p"
    ch.install(records, prefix, cache_dir=tmp_path / "pkgs")
    for script in ("seedtest", "seedtest-x", "seedtest-run"):
        proc = run(prefix, script)
        assert (proc.returncode, proc.stdout) == (0, "hello from seedtest_tool\n"), proc.stderr
        shebang = (prefix / "bin" / script).read_text().splitlines()[0]
        assert shebang == f"#!{prefix}/bin/python{PY}"


# --- (b) every requirement solves from the seed alone -------------------------------------------


def test_every_recipe_and_construct_requirement_solves_from_the_seed(seed_channel: Path) -> None:
    from dxforge.project.construct import load_construct

    recipes = load_recipes(ROOT)
    assert len(recipes) == 10
    siblings = {r.name for r in recipes}

    def outside(specs: list[str]) -> list[str]:
        return [s for s in specs if spec_name(s) not in siblings and not is_sibling(spec_name(s))]

    jobs = []
    for r in recipes:
        jobs.append((f"{r.name} host", outside(r.requirements["host"])))
        jobs.append((f"{r.name} run+test", outside(r.requirements["run"] + r.requirements["test"])))
    construct = load_construct(ROOT / "construct.yaml")
    jobs.append(("construct.yaml", outside(construct.specs)))
    assert "git" in {spec_name(s) for s in jobs[-1][1]}
    failures = []
    for what, specs in jobs:
        assert specs, what
        try:
            records = ch.solve([seed_channel], specs)
        except Exception as e:  # collect every unsatisfiable job, not just the first
            failures.append(f"{what}: {e}")
            continue
        got = {r.name.normalized for r in records}
        assert {spec_name(s) for s in specs} <= got, what
        assert {r.channel.rstrip("/") for r in records} == {ch.channel_url(seed_channel)}, what
    assert not failures, "\n\n".join(failures)


# --- (c) incremental ----------------------------------------------------------------------------


def test_second_seed_is_up_to_date(seed_channel: Path) -> None:
    manifest = json.loads((seed_channel / "dxforge-seed.json").read_text())
    proc = run_dxforge("seed", "--json", "--build-dir", E2E_BUILD)
    summary = json.loads(proc.stdout)
    assert summary["status"] == "up-to-date"
    assert summary["fingerprint"] == manifest["fingerprint"]
    assert summary["packages"] == manifest["packages"] and summary["count"] > 50
    assert all((seed_channel / p).is_file() for p in summary["packages"])


# --- (d) failure safety, against a local package index -----------------------------------------


@pytest.fixture
def index() -> Iterator[LocalIndex]:
    """A local index with pip (the seed's python depends on it), as bundled with Python."""
    import ensurepip
    import zipfile

    [pip] = Path(ensurepip.__file__).parent.glob("_bundled/pip-*.whl")
    with zipfile.ZipFile(pip) as z:
        meta = next(z.read(n) for n in z.namelist() if n.endswith(".dist-info/METADATA"))
    with serve() as idx:
        idx.projects["pip"] = [Dist.of(pip, meta.decode())]
        yield idx


def pip_wheel(index: LocalIndex) -> str:
    return index.projects["pip"][0].filename


RECIPE = """\
schema_version: 1
context:
  name: seedtest-app
  version: "1.0.0"
  python_min: "3.11"
package:
  name: ${{ name }}
  version: ${{ version }}
source:
  url: ${{ env.get("DXFORGE_SOURCES", default="file:///unset") }}/seedtest_app-${{ version }}.tar.gz
  sha256: %(sha)s
build:
  noarch: python
  script: echo
requirements:
  host:
    - python ${{ python }}.*
    - seedtest-tool
  run:
    - python >=${{ python_min }}
    - seedtest-tool >=1.0
    # the conda-forge name: the seed asks the index for `dashing`
    - python-dashing
%(extra)s
tests:
  - python:
      imports:
        - seedtest_app
      pip_check: false
"""


APP_FILE = "seedtest_app-1.0.0.tar.gz"
APP_SDIST = tar_gz(
    "seedtest_app-1.0.0",
    {
        "PKG-INFO": "Metadata-Version: 2.1\nName: seedtest-app\nVersion: 1.0.0\n"
        "Provides-Extra: testing\nRequires-Dist: dashing; extra == 'testing'\n",
        "pyproject.toml": '[project]\nname = "seedtest-app"\n',
    },
)


def write_recipe(root: Path, index: LocalIndex, extra_run: list[str] = ()) -> Path:  # type: ignore[assignment]
    """The recipe of seedtest-app, whose sdist the index serves (the seed reads its extras)."""
    index.projects["seedtest-app"] = [Dist(APP_FILE, APP_SDIST)]
    path = root / "recipes/seedtest-app/recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    extra = "".join(f"    - {r}\n" for r in extra_run).rstrip("\n")
    path.write_text(RECIPE % {"sha": hashlib.sha256(APP_SDIST).hexdigest(), "extra": extra})
    write_construct(root)
    return path


def snapshot(channel: Path) -> dict[str, bytes | int]:
    """The manifest and repodata bytes, and every file's size, of a channel."""
    out: dict[str, bytes | int] = {}
    for p in sorted(channel.rglob("*")):
        if p.is_file():
            rel = p.relative_to(channel).as_posix()
            keep = p.name in ("dxforge-seed.json", "repodata.json")
            out[rel] = p.read_bytes() if keep else p.stat().st_size
    return out


def assert_only_the_channel(channel: Path) -> None:
    """Beside the channel (a symlink to its versioned directory) only its lock: no temporary
    or previous version is left behind."""
    assert channel.is_symlink()
    target = os.readlink(channel)
    assert sorted(p.name for p in channel.parent.iterdir()) == sorted(
        [".seed.lock", "seed", target]
    )


def seed_in(root: Path, index: LocalIndex, *extra: str) -> subprocess.CompletedProcess[str]:
    # the local index only: no pip configuration file (extra indexes), no pip cache; the
    # project's own build directory (the user cache is shared: the runtime build is there)
    env = {"PIP_CONFIG_FILE": os.devnull, "PIP_NO_CACHE_DIR": "1", "DXFORGE_BUILD_DIR": ""}
    return run_dxforge(
        "seed",
        "--root",
        str(root),
        "--index-url",
        index.url,
        "--json",
        *extra,
        cwd=root,
        check=False,
        env=env,
        timeout=900,
    )


def test_failed_package_leaves_the_previous_channel(index: LocalIndex, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    wheels = tmp_path / "wheels"
    tool = build_wheel(
        wheels,
        "seedtest-tool",
        "1.0",
        requires=["dashing>=0.1", "pywin32; sys_platform=='win32'"],
        console_scripts={"seedtest": "seedtest_tool:main"},
    )
    tool_meta = metadata("seedtest-tool", "1.0", ["dashing>=0.1", "pywin32; sys_platform=='win32'"])
    dashing = build_wheel(wheels, "dashing", "0.1.1", tag=binary_tag(PY))
    py38 = {"requires_python": ">=3.8"}
    index.projects["seedtest-tool"] = [Dist.of(tool, tool_meta, **py38)]
    index.projects["dashing"] = [Dist.of(dashing, metadata("dashing", "0.1.1"), **py38)]
    index.html_projects = {"dashing"}
    write_recipe(root, index)
    channel = root / "build/channels/seed"

    # 1. a first channel: the runtime (python and its libraries), pip and the two converted
    # wheels; resolved afresh (an earlier run's recorded resolution of the same requirements
    # would hold too: the resolution does not depend on the index's address)
    proc = seed_in(root, index, "--refresh")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    names = {p.split("/")[1].rsplit("-", 2)[0] for p in summary["packages"]}
    runtime = names - {"pip", "python-dashing", "seedtest-tool"}
    assert runtime >= {"python", "python_abi", "openssl", "ca-certificates", "libffi"}
    assert runtime <= RUNTIME | runtime_libraries(), runtime - RUNTIME - runtime_libraries()
    # built, or assembled from the user cache's channel of an earlier run of this test
    assert summary["status"] in ("built", "assembled") and summary["count"] == len(runtime) + 3
    assert summary["resolution"] == "resolved"
    assert summary["inputs"]["requirements"] == ["dashing", "pip", "seedtest-tool>=1.0"]
    assert set(summary["inputs"]["runtime"]["versions"]) >= {"python", "openssl", "voms", "git"}
    # each file once, the recipe's sdist among them (the seed reads its extras); a wheel that
    # dxforge's user cache already holds from an earlier run is not downloaded again
    assert APP_FILE in index.downloads and len(index.downloads) == len(set(index.downloads))
    assert set(index.downloads) <= {APP_FILE, tool.name, dashing.name, pip_wheel(index)}
    noarch = json.loads((channel / "noarch/repodata.json").read_text())
    [tool_rec] = [r for r in noarch["packages.conda"].values() if r["name"] == "seedtest-tool"]
    assert tool_rec["depends"] == ["python >=3.8", "python-dashing >=0.1"] and tool_rec["noarch"]
    linux = json.loads((channel / "linux-64/repodata.json").read_text())
    [dash_rec] = [r for r in linux["packages.conda"].values() if r["name"] == "python-dashing"]
    assert "__glibc >=2.17" in dash_rec["depends"]
    cp = PY.replace(".", "")
    assert f"python_abi {PY}.* *_cp{cp}" in dash_rec["depends"]
    records = ch.solve([channel], ["seedtest-tool", PYTHON_SPEC])
    solved = {r.name.normalized for r in records}
    assert solved >= {"seedtest-tool", "python-dashing", "python", "python_abi", "pip"}
    assert solved - {"seedtest-tool", "python-dashing", "pip"} <= runtime
    good = snapshot(channel)
    cache = user_cache() / "seed"
    conversions = {p.name for p in (cache / "conda").iterdir()}
    runtime_stamps = {p: p.stat().st_mtime_ns for p in (cache / "runtime").iterdir()}

    # 2. nothing changed: a no-op that does not touch the index
    seen = len(index.requests)
    proc = seed_in(root, index)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert again["status"] == "up-to-date" and again["resolution"] == "recorded"
    assert index.requests[seen:] == []
    assert snapshot(channel) == good

    # 3. a new requirement whose wheel is corrupted on the index (its listed hash agrees)
    # a name of this run only: dxforge's user cache (shared by every clone and run) can hold
    # neither its wheel nor a recorded resolution that asks for it
    name = f"seedtest-broken-{uuid.uuid4().hex[:8]}"
    dist = name.replace("-", "_")
    write_recipe(root, index, [name])
    broken = build_wheel(wheels, name, "2.0", files={f"{dist}/run.py": b"print('run')\n"})
    broken_meta = metadata(name, "2.0")
    garbage = broken.read_bytes()[:300]
    bad = Dist(
        broken.name, garbage, broken_meta.encode(), hashlib.sha256(garbage).hexdigest(), **py38
    )
    index.projects[name] = [bad]
    proc = seed_in(root, index)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    err = " ".join(proc.stderr.split())
    # pip 23 downloads the wheel while resolving and refuses it; a pip that resolves from the
    # PEP 658 metadata alone leaves it to dxforge's conversion, which names the package too
    assert name in err and f"{dist}-2.0-py3-none-any.whl" in err, err
    assert "is invalid" in err or f"{name} 2.0: {dist}" in err, err
    assert snapshot(channel) == good
    assert_only_the_channel(channel)

    # 4. pip gets the right file, but dxforge's own download is damaged on the way
    bad.data = broken.read_bytes()
    bad.listed_sha256 = hashlib.sha256(bad.data).hexdigest()
    bad.damaged_for_others = garbage
    proc = seed_in(root, index)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    err = " ".join(proc.stderr.split())
    assert f"seed: {name} 2.0: {name}: sha256 mismatch" in err, err
    # a requirement changed (the broken package is new): step 1's resolution is not reused
    assert "resolving 4 requirements on the index" in err, err
    assert f"expected {bad.listed_sha256}, got {hashlib.sha256(garbage).hexdigest()}" in err, err
    assert snapshot(channel) == good
    assert_only_the_channel(channel)
    cached = cache / "wheels" / broken.name  # an earlier run's wheel of that name may be there
    assert not cached.exists() or cached.read_bytes() != garbage

    # 5. once the index is right, only the new package is converted
    bad.damaged_for_others = None
    seen = len(index.downloads)
    proc = seed_in(root, index)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert summary["status"] == "built" and summary["count"] == len(runtime) + 4
    assert any(p.startswith(f"noarch/{name}-2.0-") for p in summary["packages"])
    assert set(good) <= set(snapshot(channel))
    new = {p.name for p in (cache / "conda").iterdir()} - conversions
    assert len(new) == 1 and {p.name for p in (cache / "conda").iterdir()} >= conversions
    # the runtime's packages were not made again
    assert {p: p.stat().st_mtime_ns for p in (cache / "runtime").iterdir()} == runtime_stamps
    # the other wheels came from dxforge's cache: only the new one was downloaded
    assert index.downloads[seen:] == [broken.name]

    # 6. --refresh resolves again: the same files, so the same channel
    proc = seed_in(root, index, "--refresh")
    assert proc.returncode == 0, proc.stderr
    refreshed = json.loads(proc.stdout)
    assert refreshed["resolution"] == "resolved" and refreshed["status"] == "up-to-date"


# An sdist-only distribution with an in-tree PEP 517 backend, so that pip needs nothing from the
# index to build it (requires = []).
SDIST_BACKEND = """\
import os, zipfile
NAME, VERSION = "seedtest_sdist", "@VERSION@"
META = (f"Metadata-Version: 2.1\\nName: seedtest-sdist\\nVersion: {VERSION}\\n"
        "Requires-Python: >=3.8\\n")
WHEEL = "Wheel-Version: 1.0\\nGenerator: test\\nRoot-Is-Purelib: true\\nTag: py3-none-any\\n"
DIST = f"{NAME}-{VERSION}.dist-info"

def get_requires_for_build_wheel(config_settings=None):
    return []

def prepare_metadata_for_build_wheel(metadata_directory, config_settings=None):
    os.makedirs(os.path.join(metadata_directory, DIST))
    for name, text in (("METADATA", META), ("WHEEL", WHEEL)):
        with open(os.path.join(metadata_directory, DIST, name), "w") as f:
            f.write(text)
    return DIST

def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    filename = f"{NAME}-{VERSION}-py3-none-any.whl"
    with zipfile.ZipFile(os.path.join(wheel_directory, filename), "w") as z:
        z.writestr(f"{NAME}/__init__.py", "BUILT_FROM_SDIST = True\\n")
        z.writestr(f"{DIST}/METADATA", META)
        z.writestr(f"{DIST}/WHEEL", WHEEL)
        z.writestr(f"{DIST}/RECORD", "")
    return filename
"""


def test_sdist_only_requirement_is_built_into_a_wheel(index: LocalIndex, tmp_path: Path) -> None:
    root = tmp_path / "proj"
    wheels = tmp_path / "wheels"
    tool = build_wheel(wheels, "seedtest-tool", "1.0", requires=["dashing>=0.1"])
    dashing = build_wheel(wheels, "dashing", "0.1.1", tag=binary_tag(PY))
    index.projects["seedtest-tool"] = [
        Dist.of(tool, metadata("seedtest-tool", "1.0", ["dashing>=0.1"]))
    ]
    index.projects["dashing"] = [Dist.of(dashing, metadata("dashing", "0.1.1"))]
    # a version of its own, resolved afresh (--refresh): the wheel built from it is not in the
    # user cache from an earlier run
    version = f"1.{uuid.uuid4().int % 10**9}"
    sdist = tar_gz(
        f"seedtest_sdist-{version}",
        {
            "PKG-INFO": f"Metadata-Version: 2.1\nName: seedtest-sdist\nVersion: {version}\n",
            "pyproject.toml": '[build-system]\nrequires = []\nbuild-backend = "backend"\n'
            'backend-path = ["."]\n',
            "backend.py": SDIST_BACKEND.replace("@VERSION@", version),
        },
    )
    index.projects["seedtest-sdist"] = [Dist(f"seedtest_sdist-{version}.tar.gz", sdist)]
    write_recipe(root, index, ["seedtest-sdist"])

    started = time.time()
    proc = seed_in(root, index, "--refresh")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    assert f"noarch/seedtest-sdist-{version}-" in " ".join(summary["packages"])
    assert f"seedtest_sdist-{version}.tar.gz" in index.downloads
    built = [
        p
        for p in (user_cache() / "seed/wheels/built").glob(f"*/seedtest_sdist-{version}-*.whl")
        if p.stat().st_mtime >= started - 1
    ]
    assert len(built) == 1
    channel = root / "build/channels/seed"
    prefix = tmp_path / "env"
    ch.install(ch.solve([channel], ["seedtest-sdist", PYTHON_SPEC]), prefix)
    out = subprocess.run(
        [
            str(prefix / "bin/python"),
            "-I",
            "-c",
            "import seedtest_sdist; print(seedtest_sdist.BUILT_FROM_SDIST)",
        ],
        capture_output=True,
        text=True,
        env={"PATH": "/usr/bin:/bin"},
        check=False,
    )
    assert out.stdout.strip() == "True", out.stderr


def test_python_brings_pip_as_on_conda_forge(seed_channel: Path) -> None:
    """An environment solved from python alone (or from diracx alone) has pip."""
    records = ch.solve([seed_channel], ["python"])
    assert "pip" in {r.name.normalized for r in records}
    [python] = [r for r in records if r.name.normalized == "python"]
    assert "pip" in [d.split()[0] for d in python.depends]


def test_voms_from_the_runtime_with_the_floor(seed_channel: Path, tmp_path: Path) -> None:
    """voms (asked for by construct.yaml) is built from upstream's release with the runtime: its
    clients run from a new prefix, and it says which glibc it needs (the floor), so a solve for
    an older C library refuses it."""
    linux = json.loads((seed_channel / "linux-64/repodata.json").read_text())["packages.conda"]
    [voms] = [r for r in linux.values() if r["name"] == "voms"]
    deps = {d.split()[0]: d for d in voms["depends"]}
    assert {"openssl", "libexpat", "__glibc"} <= set(deps), deps
    # what its files need, at most the floor (conda-forge's packages say their own need too)
    needed = tuple(int(x) for x in deps["__glibc"].split(">=")[1].split("."))
    assert needed <= TARGET.glibc, deps
    prefix = tmp_path / "env"
    ch.install(ch.solve([seed_channel], ["voms"]), prefix, cache_dir=tmp_path / "pkgs")
    [component] = [c for c in components(PY) if c.name == "voms"]
    release = ".".join(component.version.split(".")[:2])
    for tool in ("voms-proxy-init", "voms-proxy-info", "voms-proxy-destroy"):
        res = run(prefix, tool, "--version")
        assert res.returncode == 0 and f"Version: {release}" in res.stdout + res.stderr, res.stderr
    older = f"{needed[0]}.{needed[1] - 1}"
    with pytest.raises(Exception, match="cannot be satisfied"):
        ch.solve([seed_channel], ["voms"], glibc=older)
