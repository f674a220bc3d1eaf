"""``dxforge release`` rehearsed as a feedstock bot would live it: a package index on 127.0.0.1
serves DiracX's real sdists re-versioned as a new release (every other project passed through
to the index pip is configured with), and ``dxforge release`` runs on a fresh copy of the
repository. Then the whole unit suite passes on the bumped copy, unedited; and a build failure,
an upstream test failure and a failing pilot test each stop a release, naming the stage, with
``latest`` left as it was."""

from __future__ import annotations

import hashlib
import io
import json
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, run_dxforge
from local_index import Dist, LocalIndex, serve
from packaging.version import Version

from dxforge.conda import sbom
from dxforge.core.util import user_cache
from dxforge.project.recipes import load_recipes
from dxforge.pypa.pypi import index_url

pytestmark = pytest.mark.e2e


def reversion(
    sdist: bytes, name: str, old: str, new: str, extra: dict[str, bytes] | None = None
) -> bytes:
    """The sdist of ``name`` ``old`` as the sdist of ``new``: top directory and PKG-INFO's
    Version moved; ``extra`` files (relative to the top) added."""
    dist = name.replace("-", "_")
    src, out = io.BytesIO(sdist), io.BytesIO()
    with (
        tarfile.open(fileobj=src, mode="r:gz") as tin,
        tarfile.open(fileobj=out, mode="w:gz", format=tarfile.PAX_FORMAT) as tout,
    ):
        for m in tin.getmembers():
            data = tin.extractfile(m).read() if m.isfile() else None  # type: ignore[union-attr]
            m.name = m.name.replace(f"{dist}-{old}", f"{dist}-{new}", 1)
            m.pax_headers.pop("path", None)  # a long name's PAX record would win over m.name
            if data is not None and m.name.endswith(f"{dist}-{new}/PKG-INFO"):
                data = data.replace(f"\nVersion: {old}\n".encode(), f"\nVersion: {new}\n".encode())
            if data is not None:
                m.size = len(data)
                tout.addfile(m, io.BytesIO(data))
            else:
                tout.addfile(m)
        for rel, data in (extra or {}).items():
            info = tarfile.TarInfo(f"{dist}-{new}/{rel}")
            info.size, info.mtime, info.mode = len(data), 1_700_000_000, 0o644
            tout.addfile(info, io.BytesIO(data))
    return out.getvalue()


class Rehearsal:
    """A fresh copy of the repository and an index serving DiracX's next version."""

    def __init__(self, base: Path, index: LocalIndex) -> None:
        self.index = index
        self.clone = base / "clone"
        files = subprocess.run(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.split()
        for rel in files:
            if (ROOT / rel).is_file():
                (self.clone / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / rel, self.clone / rel)
        self.recipes = load_recipes(ROOT)
        self.old = self.recipes[0].version
        v = Version(self.old)
        self.new = f"{v.major}.{v.minor}.{v.micro + 1}"
        run_dxforge("fetch", "--root", self.clone)  # the real sdists, from the configured index
        self.sdists = {
            r.name: (self.clone / "build/sources" / r.source_filename).read_bytes()
            for r in self.recipes
        }
        for r in self.recipes:
            self.publish(r.name, self.old, self.sdists[r.name])
        self.release(self.new)

    def publish(self, name: str, version: str, data: bytes) -> None:
        fname = f"{name.replace('-', '_')}-{version}.tar.gz"
        self.index.projects.setdefault(name, []).append(Dist(fname, data))

    def release(self, version: str, extra: dict[str, dict[str, bytes]] | None = None) -> None:
        """Put ``version`` of every recipe on the index (with ``extra`` files per package)."""
        for r in self.recipes:
            self.publish(
                r.name,
                version,
                reversion(
                    self.sdists[r.name], r.name, self.old, version, (extra or {}).get(r.name)
                ),
            )

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return run_dxforge(
            "release",
            "--root",
            self.clone,
            "--index-url",
            self.index.url,
            "--jobs",
            "2",
            "--json",
            *args,
            cwd=self.clone,
            check=False,
            timeout=3600,
            env={"DXFORGE_BUILD_DIR": str(self.clone / "build")},
        )

    @property
    def releases(self) -> Path:
        return self.clone / "build/releases"


@pytest.fixture(scope="module")
def rehearsal(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Rehearsal]:
    with serve(LocalIndex(upstream=index_url(None))) as index:
        yield Rehearsal(tmp_path_factory.mktemp("release"), index)


def images_missing() -> str:
    """Why this machine cannot build container images, or ``""``."""
    missing = [t for t in ("umoci", "skopeo") if not shutil.which(t)]
    if not missing:
        return ""
    return f"{' and '.join(missing)} not installed (scripts/setup.sh installs them)"


@pytest.fixture(scope="module")
def released(rehearsal: Rehearsal) -> dict:
    """The rehearsed release, with its container images where they can be built (one release
    for every test here: CI time is short)."""
    res = rehearsal.run(*([] if images_missing() else ["--images"]))
    assert res.returncode == 0, res.stderr[-6000:]
    return json.loads(res.stdout)


def test_release_produces_everything_for_the_new_version(
    rehearsal: Rehearsal, released: dict
) -> None:
    new = rehearsal.new
    d = rehearsal.releases / new
    assert released["version"] == new and Path(released["directory"]) == d
    assert (rehearsal.releases / "latest").resolve() == d.resolve()
    for r in load_recipes(rehearsal.clone):  # every recipe moved, with no human edit
        assert r.version == new
    installer = d / f"DIRACOS-{new}-Linux-x86_64.sh"
    sha = hashlib.sha256(installer.read_bytes()).hexdigest()
    assert (d / f"{installer.name}.sha256").read_text() == f"{sha}  {installer.name}\n"
    assert released["sha256"] == sha
    for line in (d / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ")
        assert hashlib.sha256((d / name).read_bytes()).hexdigest() == digest, name
    for name in ("sbom-installer.cdx.json", "sbom-channel.cdx.json"):
        text = (d / name).read_text()
        sbom.validate(text)
        bom = json.loads(text)
        assert bom["specVersion"] == "1.6" and bom["components"]
        for c in bom["components"]:
            assert c["purl"].startswith(f"pkg:conda/{c['name']}@{c['version']}?build=")
            assert c["hashes"][0]["alg"] == "SHA-256" and len(c["hashes"][0]["content"]) == 64
    channel_names = {
        c["name"] for c in json.loads((d / "sbom-channel.cdx.json").read_text())["components"]
    }
    assert {r.name for r in rehearsal.recipes} == channel_names
    notes = json.loads((d / "notes.json").read_text())
    assert notes["version"] == new and notes["installer"]["sha256"] == sha
    assert notes["installer"]["glibc_floor"] and notes["installer"]["pilot_install_seconds"] > 0
    suites = notes["upstream_tests"]
    assert {
        "diracx-core",
        "diracx-client",
        "diracx-api",
        "diracx-cli",
        "diracx-db",
        "diracx-logic",
        "diracx-routers",
        "diracx-tasks",
    } <= set(suites)
    assert all(s["failed"] == 0 and s["errors"] == 0 and s["passed"] > 0 for s in suites.values())
    e2e = notes["end_to_end"]
    assert e2e["version"] == new and e2e["status"] == "passed" and e2e["job_id"] > 0
    assert e2e["sandbox_files"] > 0 and e2e["checks"]
    stages = {s["name"]: s for s in notes["stages"]}
    assert {"bump", "fetch", "drift", "seed", "build", "tests", "installer", "pilot", "e2e"} <= set(
        stages
    )
    # the upstream suites ran while the installer was made and checked
    assert stages["tests"]["branch"] != stages["installer"]["branch"]
    assert stages["tests"]["start"] < stages["e2e"]["end"]
    assert stages["installer"]["start"] < stages["tests"]["end"]
    md = (d / "notes.md").read_text()
    assert f"# DiracX {new}" in md and sha in md and "## Upstream test suites" in md
    assert "## End to end" in md and "```mermaid" in md and "gantt" in md
    assert (d / "channels/dxforge/noarch/repodata.json").is_file()
    assert (d / "channels/seed/linux-64/repodata.json").is_file()


def test_the_release_built_and_tested_its_container_images(
    rehearsal: Rehearsal, released: dict
) -> None:
    """``--images``: the release images stand on their bases, the notes list each image's
    reference, digest and base (uncut), and the images' checks ran with podman (or the notes
    say why not, and this test skips saying it too)."""
    from dxforge.images.oci import Layout
    from dxforge.images.stage import why_not_check

    if images_missing():
        pytest.skip(f"the release built no images: {images_missing()}")
    new, d = rehearsal.new, rehearsal.releases / rehearsal.new
    notes = json.loads((d / "notes.json").read_text())
    assert released["images"] == notes["images"]
    layout = Layout(rehearsal.clone / "build/images/oci")
    images = {i["ref"]: i for i in notes["images"]}
    assert set(images) == {f"{role}:v{new}" for role in ("services", "tasks", "client")}
    md = (d / "notes.md").read_text()
    for ref, i in images.items():
        assert layout.digest(ref) == i["digest"] and layout.digest(i["base"]) == i["base_digest"]
        assert i["base"].startswith(ref.split(":")[0] + "-base:")
        ann = layout.manifest(ref)["annotations"]
        assert ann["org.opencontainers.image.version"] == new
        assert ann["org.opencontainers.image.base.digest"] == i["base_digest"]
        assert f"| `{ref}` | `{i['digest']}` | `{i['base']}` | `{i['base_digest']}` |" in md
    stages = {s["name"]: s for s in notes["stages"]}
    assert stages["images"]["branch"] == stages["images-check"]["branch"] == "tests"
    assert stages["images"]["end"] <= stages["images-check"]["start"]
    check = notes["images_check"]
    why = why_not_check()
    if why:
        assert check["status"] == "skipped" and check["reason"] == why, check
        assert f"**Not tested** (skipped): {why}" in md
        assert released["images_check"] == check
        pytest.skip(f"the release built its images but could not run them: {why}")
    assert check["status"] == "passed", check
    checks = " | ".join(check["checks"])
    for what in (
        "/api/health/live",
        "openid-configuration",
        "dirac whoami:",
        f"dirac jobs submit and search: job {check['job_id']}",
        "the same bytes back",
        f"job {check['job_id']} Received -> Done",
    ):
        assert what in checks, checks
    assert check["healthy_seconds"] > 0 and "Tested with podman" in md


def test_installed_diracx_reports_the_new_version(
    rehearsal: Rehearsal, released: dict, tmp_path: Path
) -> None:
    prefix = tmp_path / "diracos"
    res = subprocess.run(
        ["sh", released["installer"], "-b", "-p", str(prefix)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    out = subprocess.run(
        [
            str(prefix / "bin/python"),
            "-c",
            "import importlib.metadata as m; print(m.version('diracx-core'))",
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    assert out == rehearsal.new


def test_the_whole_unit_suite_passes_on_the_bumped_copy(
    rehearsal: Rehearsal, released: dict
) -> None:
    res = subprocess.run(
        [sys.executable, "-m", "pytest", "-m", "not e2e", "-q", "-p", "no:cacheprovider"],
        cwd=rehearsal.clone,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout[-4000:]
    assert " passed" in res.stdout.splitlines()[-1]


def _stopped(
    rehearsal: Rehearsal, stage: str, res: subprocess.CompletedProcess[str], latest: Path
) -> str:
    assert res.returncode == 1, res.stdout[-2000:]
    error = json.loads(res.stdout)["error"]
    assert f"the release stopped in stage `{stage}`" in error, error
    assert (rehearsal.releases / "latest").resolve() == latest
    return error


def test_a_build_failure_stops_the_release(rehearsal: Rehearsal, released: dict) -> None:
    latest = (rehearsal.releases / "latest").resolve()
    recipe = rehearsal.clone / "recipes/diracx-api/recipe.yaml"
    good = recipe.read_text()
    recipe.write_text(
        good.replace(
            "        - diracx.api\n", "        - diracx.api\n        - diracx.no_such_module\n", 1
        )
    )
    assert recipe.read_text() != good
    try:
        error = _stopped(rehearsal, "build", rehearsal.run(), latest)
        assert "diracx-api" in error and "diracx-api.log" in error
    finally:
        recipe.write_text(good)


def test_a_failing_pilot_test_stops_the_release(rehearsal: Rehearsal, released: dict) -> None:
    """An installer whose post-install step removes git's https helper: it installs, but the
    pilot checks find git unable to reach a remote, and nothing is published."""
    latest = (rehearsal.releases / "latest").resolve()
    script = rehearsal.clone / "installer/post_install.sh"
    good = script.read_text()
    script.write_text(good + 'rm -f "$PREFIX"/libexec/git-core/git-remote-http*\n')
    try:
        error = _stopped(rehearsal, "pilot", rehearsal.run(), latest)
        assert "git has no https remote helper" in error and ".log" in error, error
    finally:
        script.write_text(good)


def test_an_upstream_test_failure_stops_the_release(rehearsal: Rehearsal, released: dict) -> None:
    latest = (rehearsal.releases / "latest").resolve()
    v = Version(rehearsal.new)
    newer = f"{v.major}.{v.minor}.{v.micro + 1}"
    failing = b"def test_dxforge_rehearsal_failure():\n    assert False, 'as planned'\n"
    rehearsal.release(newer, {"diracx-client": {"tests/test_dxforge_rehearsal.py": failing}})
    error = _stopped(rehearsal, "tests", rehearsal.run(), latest)
    assert "diracx-client: its test suite failed (1 failed" in error
    assert "upstream/diracx-client.log" in error


def _modes(directory: Path) -> dict[str, str]:
    """The mode of every package under ``directory`` that is not 0644."""
    return {
        str(p): oct(p.stat().st_mode & 0o7777)
        for p in directory.rglob("*.conda")
        if p.stat().st_mode & 0o7777 != 0o644
    }


def test_a_release_replays_history_onto_a_version_built_before(
    tmp_path_factory: pytest.TempPathFactory,
) -> None:
    """Issue 22: from recipes at A, release B, then C, on a machine whose user cache holds C's
    packages (another clone built C before, as the main job does). C's packages come from the
    user cache (status ``cached``), which the release counts as done: C is published. Every
    package written on the way is readable by all (0644)."""
    with serve(LocalIndex(upstream=index_url(None))) as index:
        r = Rehearsal(tmp_path_factory.mktemp("replay"), index)  # the index has A and B
        a, b = r.old, r.new
        v = Version(a)
        c = f"{v.major}.{v.minor + 1}.0"
        r.release(c)
        # another clone of the same project built C before, into its own build directory
        before = r.clone.parent / "before"
        shutil.copytree(r.clone, before, ignore=shutil.ignore_patterns("build"))
        env = {"DXFORGE_BUILD_DIR": str(before / "build")}
        for args in (("bump", "--version", c, "--index-url", index.url), ("seed",), ("build",)):
            run_dxforge(*args, "--root", before, cwd=before, env=env, timeout=3600)
        assert all(rec.version == c for rec in load_recipes(before))
        assert not _modes(before / "build/channels/dxforge")

        first = r.run("--version", b)
        assert first.returncode == 0, first.stderr[-6000:]
        assert json.loads(first.stdout)["version"] == b
        second = r.run("--version", c)
        assert second.returncode == 0, second.stderr[-6000:]
        result = json.loads(second.stdout)
        assert result["version"] == c and result["previous"] == b
        # the scenario of the issue: C's packages were taken from the user cache
        assert f"diracx-core {c} cached" in second.stderr, second.stderr[-6000:]
        assert (r.releases / "latest").resolve() == (r.releases / c).resolve()
        notes = json.loads((r.releases / c / "notes.json").read_text())
        assert {p["version"] for p in notes["packages"]} == {c}
        for where in (r.releases / c, r.releases / b, r.clone / "build/channels/dxforge"):
            assert not _modes(where), _modes(where)
        entries = [Path(p["file"]).name for p in notes["packages"]]
        cached = [p for p in (user_cache() / "builds").rglob("*.conda") if p.name in entries]
        assert len(cached) >= len(entries) and not [
            p for p in cached if p.stat().st_mode & 0o7777 != 0o644
        ]
