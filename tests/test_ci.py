"""``dxforge ci``: the rendered GitHub Actions workflows follow the recipe graph, validate
against GitHub's workflow schema (check-jsonschema's bundled copy, offline), run only commands
that exist, are what the repository holds, and run here (``--run-local``, end to end)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import ROOT, project_graph, run_dxforge
from ruamel.yaml import YAML

from dxforge.ci.local import LocalRunner
from dxforge.ci.workflows import WORKFLOWS, config, render, run_ci
from dxforge.cli.main import main
from dxforge.core.util import DxError
from dxforge.isolation import emulate
from dxforge.project.layout import Layout
from dxforge.project.model import Project


def rendered(root: Path = ROOT) -> dict[str, dict]:
    return {
        p.name: YAML(typ="safe").load(t) for p, t in render(Project.of(Layout.of(root))).items()
    }


def test_rendered_workflows_validate_against_the_github_schema(tmp_path: Path) -> None:
    for rel, text in render(Project.of(Layout.of(ROOT))).items():
        (tmp_path / rel.name).write_text(text)
    exe = Path(sys.executable).with_name("check-jsonschema")
    res = subprocess.run(
        [
            str(exe),
            "--builtin-schema",
            "vendor.github-workflows",
            *map(str, sorted(tmp_path.glob("*.yml"))),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    # and the check does fail on a broken workflow
    bad = tmp_path / "bad.yml"
    bad.write_text("name: x\non: push\njobs:\n  a:\n    runs-on: ubuntu-24.04\n    stepz: []\n")
    res = subprocess.run(
        [str(exe), "--builtin-schema", "vendor.github-workflows", str(bad)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert res.returncode != 0


def test_the_repository_workflows_are_up_to_date() -> None:
    result = run_ci(Project.of(Layout.of(ROOT)), check=True)
    assert result.stale == [], "run `dxforge ci` and commit .github/workflows/"
    proc = run_dxforge("ci", "--check")
    assert proc.returncode == 0 and proc.stdout == "the workflows are up to date\n"  # no job ran


def test_build_jobs_follow_the_recipe_graph() -> None:
    graph, _ = project_graph(ROOT)
    jobs = rendered()["build.yml"]["jobs"]
    builds = {j: v for j, v in jobs.items() if j.startswith("build-")}
    assert set(builds) == {f"build-{n}" for n in graph.order}
    for name in graph.order:
        needs = set(builds[f"build-{name}"]["needs"])
        assert needs == {"seed"} | {f"build-{d}" for d in graph.deps[name]}, name
        downloads = {
            s["with"]["name"]
            for s in builds[f"build-{name}"]["steps"]
            if "download-artifact" in s.get("uses", "")
        }
        assert downloads == {"seed"} | {f"pkg-{d}" for d in graph.dependencies(name)}, name
    assert set(jobs["channel"]["needs"]) == set(builds)
    platforms = jobs["installer"]["strategy"]["matrix"]["include"]
    assert {p["platform"] for p in platforms} == {
        "linux-64",
        "linux-aarch64",
        "osx-64",
        "osx-arm64",
    }
    enabled = config(ROOT).enabled  # the repository's [tool.dxforge.ci]
    assert [p["platform"] for p in platforms if p["enabled"]] == enabled
    assert enabled == ["linux-64", "linux-aarch64"]
    images = jobs["pilot"]["strategy"]["matrix"]["include"]
    assert {i["image"] for i in images} >= {
        "almalinux:8",
        "almalinux:9",
        "almalinux:10",
        "debian:11",
        "debian:12",
        "debian:13",
        "ubuntu:20.04",
        "ubuntu:22.04",
        "ubuntu:24.04",
    }
    # EL8 is the floor; below it, the pilot expects a clean refusal
    expect = {i["image"]: i["expect"] for i in images}
    assert expect["almalinux:8"] == expect["debian:11"] == "installed"
    assert expect["ubuntu:18.04"] == "refused"


def test_actions_pinned_least_privilege_concurrency() -> None:
    for name, wf in rendered().items():
        assert wf["permissions"] == {"contents": "read"}, name
        assert "group" in wf["concurrency"], name
        for job in wf["jobs"].values():
            for step in job["steps"]:
                if "uses" in step:
                    assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+\.\d+\.\d+", step["uses"]), step
    bot = rendered()["release-bot.yml"]
    assert bot["on"]["schedule"][0]["cron"]
    job = bot["jobs"]["release"]
    assert job["permissions"] == {"contents": "write", "pull-requests": "write"}
    pr = next(s for s in job["steps"] if "create-pull-request" in s.get("uses", ""))
    assert pr["with"]["title"] == "diracx v${{ steps.check.outputs.version }}"


def test_every_command_a_job_runs_exists() -> None:
    commands: set[str] = set()
    scripts: set[str] = set()
    for wf in rendered().values():
        for job in wf["jobs"].values():
            for step in job["steps"]:
                run = step.get("run", "")
                commands |= set(re.findall(r"\.venv/bin/dxforge ([a-z0-9-]+)", run))
                scripts |= set(re.findall(r"\b(scripts/[\w.-]+)", run))
    assert {
        "seed",
        "build",
        "index",
        "installer",
        "bump",
        "release",
        "test-upstream",
        "fingerprint",
        "fetch",
        "e2e",
    } <= commands
    for c in sorted(commands):  # in this process: the CLI's main(argv)
        with pytest.raises(SystemExit) as stop:
            main([c, "--help"])
        assert stop.value.code == 0, c
    for s in scripts:
        assert (ROOT / s).is_file(), s


def copy_project(root: Path) -> Path:
    for d in ("recipes", "installer"):
        shutil.copytree(ROOT / d, root / d)
    for f in ("construct.yaml", "pyproject.toml"):
        shutil.copy2(ROOT / f, root / f)
    return root


def test_idempotent_and_check_names_stale_files(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "proj")
    first = run_ci(Project.of(Layout(root, root / "build")))
    assert sorted(p.name for p in first.written) == ["build.yml", "images.yml", "release-bot.yml"]
    assert (
        run_ci(Project.of(Layout(root, root / "build"))).written == []
    )  # a second run changes nothing
    wf = root / WORKFLOWS / "build.yml"
    wf.write_text(wf.read_text() + "# hand edit\n")
    (root / WORKFLOWS / "extra.yml").write_text("name: extra\n")
    proc = run_dxforge("ci", "--check", "--json", "--root", root, check=False)
    assert proc.returncode == 1
    assert sorted(Path(p).name for p in json.loads(proc.stdout)["stale"]) == [
        "build.yml",
        "extra.yml",
    ]


def test_an_extra_recipe_gets_its_job_in_the_right_place(tmp_path: Path) -> None:
    root = copy_project(tmp_path / "proj")
    text = (root / "recipes/diracx-api/recipe.yaml").read_text()
    extra = root / "recipes/diracx-extra/recipe.yaml"
    extra.parent.mkdir()
    extra.write_text(
        re.sub(r"(?m)^  name: diracx-api$", "  name: diracx-extra", text)
        .replace("diracx_api-", "diracx_extra-")
        .replace("        - diracx.api\n", "        - diracx.extra\n")
        .replace("    - diracx-client ==${{ version }}\n", "")
    )
    graph, _ = project_graph(root)
    assert graph.deps["diracx-extra"] == frozenset({"diracx-core"})
    jobs = rendered(root)["build.yml"]["jobs"]
    assert jobs["build-diracx-extra"]["needs"] == ["seed", "build-diracx-core"]
    assert "build-diracx-extra" in jobs["channel"]["needs"]
    assert jobs["build-diracx-extra"]["name"] == "build diracx-extra (level 1)"


@pytest.mark.e2e
def test_the_linux_chain_runs_here(tmp_path: Path) -> None:
    """build -> installers (linux-64, linux-aarch64) -> pilot tests on the Debian images
    (arm64 ones under the namespaced emulation), as the workflow says."""
    proc = run_dxforge("ci", "--run-local", "--json", "--build-dir", tmp_path / "b", timeout=5400)
    summary = json.loads(proc.stdout)
    ran = {
        (j["job"], json.dumps(j["matrix"], sort_keys=True)): j["status"] for j in summary["jobs"]
    }
    for platform in ("linux-64", "linux-aarch64"):
        matrix = json.dumps({"enabled": True, "platform": platform}, sort_keys=True)
        assert ran[("installer", matrix)] == "passed", platform
    pilots = {
        (json.loads(m)["platform"], json.loads(m)["image"]): s
        for (j, m), s in ran.items()
        if j == "pilot"
    }
    arm = "passed" if not emulate.why_not() else "skipped (no aarch64 debian:11 here: "
    for image in ("debian:11", "debian:12", "debian:13"):
        assert pilots[("linux-64", image)] == "passed", image
        assert pilots[("linux-aarch64", image)].startswith(arm.replace("debian:11", image))
    assert pilots[("linux-64", "almalinux:9")].startswith("skipped (no almalinux:9 image here")
    assert pilots[("linux-aarch64", "almalinux:9")].startswith("skipped (no almalinux:9 image")
    assert all(
        s == "passed"
        for (j, _m), s in ran.items()
        if j.startswith(("build-", "seed", "channel", "upstream-tests"))
    )


def _fake_repo(tmp_path: Path) -> Layout:
    root = tmp_path / "repo"
    root.mkdir()
    (root / "README.md").write_text("x\n")
    subprocess.run(["git", "init", "-q", str(root)], check=True)
    return Layout(root, tmp_path / "build")


def test_the_local_runner_runs_two_jobs_at_a_time_after_their_needs(tmp_path: Path) -> None:
    """Jobs start once every job they need (every matrix entry) has passed, two at a time, each
    in its own copy of the repository."""
    log = tmp_path / "log"

    def job(name: str, needs: tuple[str, ...] = (), matrix: list[int] | None = None) -> dict:
        tag = name + ("${{ matrix.n }}" if matrix else "")
        # each job leaves a file in its workspace: a job sharing another's would find it
        run = (
            f'test ! -e mine; touch mine; echo "start {tag} $(date +%s.%N)" >> {log}; '
            f'sleep 0.6; echo "end {tag} $(date +%s.%N)" >> {log}'
        )
        out: dict = {"runs-on": "ubuntu-latest", "steps": [{"run": run}]}
        if needs:
            out["needs"] = list(needs)
        if matrix:
            out["strategy"] = {"matrix": {"n": matrix}}
        return out

    workflow = {
        "jobs": {
            "a": job("a"),
            "b": job("b", ("a",), [1, 2]),
            "c": job("c", ("a",)),
            "d": job("d", ("b", "c")),
        }
    }
    t0 = time.monotonic()
    jobs = LocalRunner(_fake_repo(tmp_path), tmp_path / "work", jobs=2).run(workflow)
    took = time.monotonic() - t0
    assert [(j.name, j.status) for j in jobs] == [
        ("a", "passed"),
        ("b", "passed"),
        ("b", "passed"),
        ("c", "passed"),
        ("d", "passed"),
    ]
    when = {
        (kind, name): float(t)
        for kind, name, t in (line.split() for line in log.read_text().splitlines())
    }
    assert len(when) == 10  # each job started and ended once
    for later in ("b1", "b2", "c"):
        assert when["start", later] >= when["end", "a"]
    assert when["start", "d"] >= max(when["end", n] for n in ("b1", "b2", "c"))
    running = [
        sum(1 for n in ("b1", "b2", "c") if when["start", n] <= when["start", m] < when["end", n])
        for m in ("b1", "b2", "c")
    ]
    assert max(running) == 2  # two at a time, never three
    assert took < 4 * 0.6 + 1.5, took  # a, two of b/c, the third, d: four rounds, not five


def test_the_local_runner_starts_nothing_after_a_failure(tmp_path: Path) -> None:
    log = tmp_path / "log"
    workflow = {
        "jobs": {
            "a": {"steps": [{"run": "exit 3"}]},
            "b": {"steps": [{"run": f"sleep 0.5; echo b >> {log}"}]},
            "c": {"needs": ["b"], "steps": [{"run": f"echo c >> {log}"}]},
        }
    }
    with pytest.raises(DxError, match="exit"):
        LocalRunner(_fake_repo(tmp_path), tmp_path / "work", jobs=2).run(workflow)
    assert log.read_text() == "b\n"  # b was running and finished; c never started


def test_linux_aarch64_enabled_gets_its_seed_installer_and_arm64_pilots(tmp_path: Path) -> None:
    """Enabling linux-aarch64: the seed adds its subdir, the installer job builds it by its
    matrix platform, and its pilot matrix runs on arm64 runners (AlmaLinux 8-10, Debian 11-13),
    each pilot job taking its own platform's installer."""
    root = copy_project(tmp_path / "proj")  # the repository's: linux-aarch64 enabled
    build = YAML(typ="safe").load(render(Project.of(Layout.of(root)))[WORKFLOWS / "build.yml"])
    jobs = build["jobs"]
    seed = [s.get("run", "") for s in jobs["seed"]["steps"]]
    assert ".venv/bin/dxforge seed --platform linux-aarch64" in seed
    installer = jobs["installer"]
    enabled = {m["platform"]: m["enabled"] for m in installer["strategy"]["matrix"]["include"]}
    assert enabled["linux-64"] and enabled["linux-aarch64"] and not enabled["osx-64"]
    runs = [s.get("run", "") for s in installer["steps"]]
    assert ".venv/bin/dxforge installer --platform ${{ matrix.platform }}" in runs
    pilots = jobs["pilot"]["strategy"]["matrix"]["include"]
    arm = [
        (p["image"], p["runner"], p["expect"]) for p in pilots if p["platform"] == "linux-aarch64"
    ]
    assert arm == [
        (image, "ubuntu-24.04-arm", "installed")
        for image in ("almalinux:8", "almalinux:9", "almalinux:10")
        + ("debian:11", "debian:12", "debian:13")
    ]
    assert jobs["pilot"]["runs-on"] == "${{ matrix.runner }}"
    get = jobs["pilot"]["steps"][0]
    assert get["with"]["name"] == "installer-${{ matrix.platform }}"
    # without it (the default), linux-64's pilots alone, on the x86_64 runner
    pyproject = root / "pyproject.toml"
    pyproject.write_text(pyproject.read_text().split("[tool.dxforge.ci]")[0])
    plain = YAML(typ="safe").load(render(Project.of(Layout.of(root)))[WORKFLOWS / "build.yml"])
    assert {p["platform"] for p in plain["jobs"]["pilot"]["strategy"]["matrix"]["include"]} == {
        "linux-64"
    }
    assert ".venv/bin/dxforge seed" in [s.get("run") for s in plain["jobs"]["seed"]["steps"]]
