"""The release's parts, offline and fast: the lockfile diff and the notes, the SBOM and its
schema check, what the upstream test stage reads from an sdist (which packages have a suite,
their pytest plugins, the JUnit counts), the timeline, the isolation helpers and publishing."""

from __future__ import annotations

import io
import json
import os
import tarfile
from pathlib import Path

import pytest

from dxforge.bump.drift import drift_table
from dxforge.checks import upstream
from dxforge.conda import sbom
from dxforge.conda.channel import Package
from dxforge.core.util import DxError, publish
from dxforge.project.target import Target
from dxforge.release import notes
from dxforge.seed import needs

LOCK_OLD = """# platform: linux-64
@EXPLICIT
file:///c/linux-64/python-3.11.2-h1_0.conda#aa
file:///c/noarch/diracx-core-9.8.0-pyh2_0.conda#bb
file:///c/noarch/six-1.17.0-pyh3_0.conda#cc
file:///c/linux-64/openssl-3.0.20-h4_0.conda#dd
file:///c/noarch/gone-1.0-pyh5_0.conda#ee
"""
LOCK_NEW = """@EXPLICIT
file:///c/linux-64/python-3.11.2-h1_1.conda#aa
file:///c/noarch/diracx-core-9.8.1-pyh2_0.conda#bb
file:///c/noarch/six-1.16.0-pyh3_0.conda#cc
file:///c/linux-64/openssl-3.0.20-h4_0.conda#dd
file:///c/noarch/brand-new-dependency-2.0-pyh6_0.conda#ff
"""


def test_lockfile_diff_names_every_kind_of_change(tmp_path: Path) -> None:
    (tmp_path / "old.txt").write_text(LOCK_OLD)
    (tmp_path / "new.txt").write_text(LOCK_NEW)
    d = notes.diff(
        notes.read_lockfile(tmp_path / "old.txt"), notes.read_lockfile(tmp_path / "new.txt")
    ).as_json()
    assert d["added"] == [{"name": "brand-new-dependency", "version": "2.0", "build": "pyh6_0"}]
    assert d["removed"] == [{"name": "gone", "version": "1.0", "build": "pyh5_0"}]
    assert d["upgraded"] == [{"name": "diracx-core", "from": "9.8.0 pyh2_0", "to": "9.8.1 pyh2_0"}]
    assert d["downgraded"] == [{"name": "six", "from": "1.17.0 pyh3_0", "to": "1.16.0 pyh3_0"}]
    assert d["rebuilt"] == [{"name": "python", "from": "3.11.2 h1_0", "to": "3.11.2 h1_1"}]


def test_a_file_that_is_no_lockfile_is_named(tmp_path: Path) -> None:
    bad = tmp_path / "x.txt"
    bad.write_text("file:///c/noarch/a-1-0.conda\n")
    with pytest.raises(DxError, match=r"x\.txt: not an @EXPLICIT lockfile"):
        notes.read_lockfile(bad)
    bad.write_text("@EXPLICIT\nfile:///c/noarch/README.md\n")
    with pytest.raises(DxError, match="does not name a conda package file"):
        notes.read_lockfile(bad)


def notes_data(**over: object) -> dict:
    data = {
        "version": "9.9.9",
        "previous": {"version": "9.9.8", "installer": {"size": 2 << 20, "packages": 70}},
        "installer": {
            "file": "DIRACOS-9.9.9-Linux-x86_64.sh",
            "sha256": "ab" * 32,
            "size": 3 << 20,
            "packages": 78,
            "glibc_floor": "2.31",
            "pilot_install_seconds": 4.25,
        },
        "rebuild": "dxforge installer ...",
        "packages": [
            {
                "name": "diracx-core",
                "file": "noarch/diracx-core-9.9.9-pyh_0.conda",
                "sha256": "cd" * 32,
            }
        ],
        "diff": {
            "added": [],
            "removed": [],
            "rebuilt": [],
            "downgraded": [],
            "upgraded": [{"name": "diracx-core", "from": "9.9.8 a", "to": "9.9.9 a"}],
        },
        "drift": [],
        "upstream_tests": {
            "diracx-core": {"passed": 120, "failed": 0, "errors": 0, "skipped": 3, "seconds": 12.0}
        },
        "stages": [{"name": "bump", "branch": "release", "start": 0.0, "end": 1.0, "seconds": 1.0}],
        "end_to_end": {
            "version": "9.9.9",
            "isolation": "as uid 65534, offline",
            "seconds": 31,
            "checks": ["sandbox round trip: 3 files, 262158 bytes, the same bytes"],
        },
    }
    data.update(over)
    return data


def test_notes_show_sha256_diff_tests_and_comparisons_uncut() -> None:
    md = notes.Notes.from_json(notes_data()).markdown()
    assert md.startswith("# DiracX 9.9.9 (from 9.9.8)\n")
    assert "ab" * 32 in md and "cd" * 32 in md  # whole, never cut
    assert "| diracx-core | upgraded | 9.9.8 a | 9.9.9 a |" in md
    assert "- size: 3.0 MiB (previous: 2.0 MiB)" in md and "78 (previous: 70)" in md
    assert "| diracx-core | 120 | 0 | 0 | 3 | 12 |" in md and "120 tests passed" in md
    assert "The run requirements match upstream's Requires-Dist." in md
    assert "- sandbox round trip: 3 files, 262158 bytes, the same bytes" in md
    assert "```mermaid" in md and "| bump | release | 0.0 | 1.0 | 1.0 |" in md
    first = notes.Notes.from_json(
        notes_data(previous=None, diff=None, upstream_tests={}, end_to_end=None)
    ).markdown()
    assert "No previous release to compare with." in first and "Not run." in first


def test_notes_are_json_both_ways_and_drift_is_one_table() -> None:
    data = notes_data(
        drift=[
            {
                "package": "diracx-core",
                "name": "rich",
                "kind": "added",
                "recipe": None,
                "upstream": "",
            },
            {
                "package": "diracx-core",
                "name": "pydantic",
                "kind": "changed",
                "recipe": ">=2",
                "upstream": ">=2.10",
            },
        ],
        drift_applied=True,
    )
    typed = notes.Notes.from_json(data)
    assert isinstance(typed.installer, notes.InstallerFacts) and typed.installer.size == 3 << 20
    assert typed.previous is not None and typed.previous.installer.packages == 70
    assert typed.diff is not None and typed.diff.upgraded[0][1].version == "9.9.9"
    again = notes.Notes.from_json(json.loads(json.dumps(typed.as_json())))
    assert again == typed and again.markdown() == typed.markdown()
    md = typed.markdown()
    table = drift_table(typed.drift)
    assert "\n".join(table) in md and "Applied to the recipes (`--apply-deps`)." in md
    assert table[2:] == [
        "| diracx-core | rich | added | — | (any) |",
        "| diracx-core | pydantic | changed | `>=2` | `>=2.10` |",
    ]
    with pytest.raises(DxError, match=r"notes.json: unknown keys \['colour'\]"):
        notes.Notes.from_json({**data, "colour": "blue"})


def package(name: str, version: str = "1.0", license: str = "MIT") -> Package:
    return Package(
        name=name,
        version=version,
        build="pyh_0",
        subdir="noarch",
        channel="file:///somewhere/on/the/build/machine/seed",
        url=f"file:///x/noarch/{name}-{version}-pyh_0.conda",
        file_name=f"{name}-{version}-pyh_0.conda",
        size=10,
        sha256="0f" * 32,
        md5="",
        license=license,
        timestamp=0,
    )


def test_sbom_is_valid_cyclonedx_and_does_not_depend_on_where(tmp_path: Path) -> None:
    pkgs = [
        package("python", "3.11.2", "Python-2.0"),
        package("diracx-core", "9.8.0", "GPL-3.0-only"),
    ]
    text = sbom.bom_json("DIRACOS", "9.8.0", pkgs, 1_700_000_000)
    sbom.validate(text)
    bom = json.loads(text)
    assert bom["specVersion"] == "1.6"
    purls = sorted(c["purl"] for c in bom["components"])
    assert purls[0].startswith("pkg:conda/diracx-core@9.8.0?build=pyh_0&channel=seed")
    assert "/somewhere/" not in text  # the build machine's path is nowhere
    assert sbom.bom_json("DIRACOS", "9.8.0", list(reversed(pkgs)), 1_700_000_000) == text
    broken = json.loads(text)
    broken["components"][0]["hashes"][0]["alg"] = "SHA-257"
    with pytest.raises(DxError, match="not valid CycloneDX 1.6"):
        sbom.validate(json.dumps(broken))


def sdist(path: Path, top: str, files: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as tar:
        for rel, data in files.items():
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


class FakeRecipe:
    def __init__(self, name: str, filename: str) -> None:
        self.name = name
        self.source_filename = filename


def test_a_suite_is_a_package_s_tests_beside_its_own_code(tmp_path: Path) -> None:
    sdist(
        tmp_path / "diracx_core-1.0.tar.gz",
        "diracx_core-1.0",
        {
            "pyproject.toml": b"[project]\n",
            "src/diracx/core/__init__.py": b"",
            "tests/test_a.py": b"def test_a():\n    pass\n",
        },
    )
    sdist(
        tmp_path / "diracx-1.0.tar.gz",
        "diracx-1.0",
        {  # the repository, as the metapackage
            "pyproject.toml": b"[project]\n",
            "tests/test_generic.py": b"",
            "diracx-core/src/diracx/core/__init__.py": b"",
        },
    )
    core = FakeRecipe("diracx-core", "diracx_core-1.0.tar.gz")
    meta = FakeRecipe("diracx", "diracx-1.0.tar.gz")
    assert needs.has_tests(core, tmp_path)  # type: ignore[arg-type]
    assert not needs.has_tests(meta, tmp_path)  # type: ignore[arg-type]
    laid = upstream.layout_tests([core, meta], tmp_path, tmp_path / "w")  # type: ignore[list-item]
    assert list(laid) == ["diracx-core"]
    assert (laid["diracx-core"] / "tests/test_a.py").is_file()
    assert not (laid["diracx-core"] / "src").exists()  # never the sdist's sources
    with pytest.raises(DxError, match="run dxforge fetch"):
        needs.has_tests(FakeRecipe("x", "x-1.tar.gz"), tmp_path)  # type: ignore[arg-type]


def test_pytest_plugins_are_kept_and_coverage_dropped(tmp_path: Path) -> None:
    p = tmp_path / "pyproject.toml"
    p.write_text(
        '[tool.pytest.ini_options]\naddopts = ["-v", "--cov=diracx", "-p", '
        '"diracx.testing", "-pno:randomly"]\n'
    )
    assert upstream.plugins(p) == ["-p", "diracx.testing", "-p", "no:randomly"]
    p.write_text('[tool.pytest.ini_options]\naddopts = "-ra -p diracx.testing"\n')
    assert upstream.plugins(p) == ["-p", "diracx.testing"]


def test_junit_counts(tmp_path: Path) -> None:
    junit = tmp_path / "j.xml"
    junit.write_text(
        '<testsuites><testsuite tests="10" failures="1" errors="2" skipped="3"/>'
        '<testsuite tests="5" failures="0" errors="0" skipped="1"/></testsuites>'
    )
    assert upstream._counts(junit) == (8, 1, 2, 4)
    suite = upstream.SuiteResult("diracx-core", passed=8, failed=1)
    assert not suite.ok and upstream.SuiteResult("x", passed=1).ok
    assert not upstream.SuiteResult("x").ok  # a suite that ran nothing did not pass


def test_publish_swaps_in_place_and_moves_latest(tmp_path: Path) -> None:
    releases = tmp_path / "releases"
    releases.mkdir()
    for version in ("1.0.0", "1.0.1"):
        staged = releases / f".{version}.new"
        staged.mkdir()
        (staged / "notes.md").write_text(version)
        assert publish(staged, releases / version, latest=releases / "latest") == releases / version
        assert not staged.exists()
        assert os.readlink(releases / "latest") == version
        assert (releases / "latest/notes.md").read_text() == version
    again = releases / ".1.0.1.new"
    again.mkdir()
    (again / "notes.md").write_text("re-released")
    publish(again, releases / "1.0.1", latest=releases / "latest")
    assert (releases / "latest/notes.md").read_text() == "re-released"
    assert (releases / "1.0.0/notes.md").read_text() == "1.0.0"
    visible = sorted(p.name for p in releases.iterdir() if not p.name.startswith("."))
    assert visible == ["1.0.0", "1.0.1", "latest"]
    hidden = [p.name for p in releases.iterdir() if p.name.startswith(".")]
    assert len(hidden) == 2  # one versioned directory per release, nothing left over


def test_a_plain_directory_is_replaced_in_one_step(tmp_path: Path) -> None:
    target = tmp_path / "channel"
    target.mkdir()
    (target / "old").write_text("x")
    new = tmp_path / ".channel.new"
    new.mkdir()
    (new / "repodata.json").write_text("{}")
    publish(new, target)
    assert target.is_symlink() and sorted(os.listdir(target)) == ["repodata.json"]


def test_the_timeline_is_a_gantt_chart_beside_the_table() -> None:
    stages = [
        {"name": "bump", "branch": "release", "start": 0.0, "end": 4.2, "seconds": 4.2},
        {"name": "tests", "branch": "tests", "start": 40.0, "end": 150.5, "seconds": 110.5},
        {"name": "installer", "branch": "installer", "start": 40.0, "end": 75.0, "seconds": 35.0},
    ]
    chart = notes.gantt([notes.Stage(**s) for s in stages])
    assert chart[0] == "```mermaid" and chart[1] == "gantt" and chart[-1] == "```"
    assert "    dateFormat X" in chart
    assert "    section tests" in chart and "    section installer" in chart
    assert "    tests (110 s) :40, 150" in chart and "    bump (4 s) :0, 4" in chart


def test_test_requirements_are_the_extras_without_their_markers(tmp_path: Path) -> None:
    pkg_info = (
        b"Metadata-Version: 2.1\nName: diracx-core\nVersion: 1.0\n"
        b"Requires-Dist: pydantic>=2\n"
        b"Requires-Dist: diracx-testing; extra == 'testing'\n"
        b'Requires-Dist: freezegun; extra == "testing"\n'
        b"Requires-Dist: pywin32; extra == 'testing' and sys_platform == 'win32'\n"
        b"Requires-Dist: types-requests; extra == 'types'\n"
        b"Requires-Dist: diracx-client; extra == 'testing'\n"
    )
    sdist(tmp_path / "diracx_core-1.0.tar.gz", "diracx_core-1.0", {"PKG-INFO": pkg_info})
    sdist(
        tmp_path / "diracx_client-1.0.tar.gz",
        "diracx_client-1.0",
        {"PKG-INFO": b"Metadata-Version: 2.1\nName: diracx-client\nVersion: 1.0\n"},
    )
    recipes = [
        FakeRecipe("diracx-core", "diracx_core-1.0.tar.gz"),
        FakeRecipe("diracx-client", "diracx_client-1.0.tar.gz"),
    ]
    metas = needs.metadata(recipes, tmp_path)  # type: ignore[arg-type]
    reqs = [str(r) for r in needs.test_requirements(metas, Target("3.13", "3.13.5"))]
    # the testing extra on this platform, no typing stubs, no package built here, and pytest
    assert reqs == ["diracx-testing", "freezegun", "pytest"]


def test_submitted_job_reads_the_first_id_or_names_where() -> None:
    from dxforge.checks.endtoend import submitted_job
    from dxforge.core.util import DxError

    assert submitted_job("Inserted 2 jobs with ids: 7, 8\n", "here") == 7
    with pytest.raises(DxError, match="^here: dirac jobs submit said 'nope'$"):
        submitted_job("nope", "here")


def test_notes_list_the_images_uncut_and_say_why_they_were_not_tested() -> None:
    image = {
        "ref": "services:v9.9.9",
        "digest": "sha256:" + "e1" * 32,
        "base": "services-base:2026.12.07.1",
        "base_digest": "sha256:" + "b2" * 32,
    }
    skipped = {"status": "skipped", "reason": "running the images needs root"}
    typed = notes.Notes.from_json(notes_data(images=[image], images_check=skipped))
    assert typed.images == [notes.ImageNote(**image)]
    assert typed.images_check == notes.ImagesCheck("skipped", "running the images needs root")
    again = notes.Notes.from_json(json.loads(json.dumps(typed.as_json())))
    assert again == typed
    md = typed.markdown()
    assert (
        f"| `services:v9.9.9` | `{image['digest']}` | `services-base:2026.12.07.1` | "
        f"`{image['base_digest']}` |" in md
    )
    assert "**Not tested** (skipped): running the images needs root" in md
    passed = {"status": "passed", "checks": ["/api/health/live answers"], "healthy_seconds": 3.5}
    md = notes.Notes.from_json(notes_data(images=[image], images_check=passed)).markdown()
    assert "healthy 3.5 s after `podman run`" in md and "- /api/health/live answers" in md
    assert "Not tested" not in md
    # notes of a release made before the check existed, and of one without images
    assert "Not tested." in notes.Notes.from_json(notes_data(images=[image])).markdown()
    assert "## Container images" not in notes.Notes.from_json(notes_data()).markdown()
