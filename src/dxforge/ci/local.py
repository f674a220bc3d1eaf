"""The local runner of the rendered build workflow: its jobs run here, in ``needs:`` order,
each in a pilot's site as GitHub Actions would run it (``dxforge ci --run-local``); another
machine's container jobs (linux-aarch64's pilots) in its Debian roots under the namespaced
emulation."""

from __future__ import annotations

import glob
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dxforge.ci.workflows import ACTIONS, DEBIAN_IMAGES, build_workflow, config
from dxforge.conda.subdirs import machine
from dxforge.core import expr, schedule
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, execute
from dxforge.isolation import emulate, roots
from dxforge.isolation.isolate import remove
from dxforge.project.layout import Layout
from dxforge.project.model import Project


@dataclass
class LocalJob:
    name: str
    matrix: dict[str, Any]
    seconds: float = 0.0
    status: str = ""  # passed | skipped (why)


def _expand(job: dict[str, Any]) -> Iterator[dict[str, Any]]:
    matrix = (job.get("strategy") or {}).get("matrix")
    if not matrix:
        yield {}
        return
    if "include" in matrix:
        yield from matrix["include"]
        return
    key, values = next(iter(matrix.items()))
    for v in values:
        yield {key: v}


class LocalRunner:
    """Runs the jobs of the rendered build workflow here, ``jobs`` at a time once their
    ``needs:`` have passed, each in its own copy of the repository (no build/, as on a fresh
    runner); artifacts go to a directory beside them. Container jobs on Debian images run in
    Debian roots (another machine's under the emulation); others are reported skipped, with
    the reason."""

    def __init__(
        self, layout: Layout, work: Path, progress: Progress = SILENT, jobs: int = 2
    ) -> None:
        self.layout = layout
        self.work = work
        self.repo = work / "repo"
        self.artifacts = work / "artifacts"
        self.progress = progress
        self.jobs = max(1, jobs)
        self.foreign: dict[Path, tuple[str, Path]] = {}  # root -> (machine, qemu)

    def prepare(self) -> None:
        shutil.rmtree(self.work, ignore_errors=True)
        self.artifacts.mkdir(parents=True)
        files = execute(
            ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
            cwd=self.layout.root,
            what="listing the project's files",
        ).stdout.split()
        for rel in files:
            src = self.layout.root / rel
            if src.is_file():
                (self.repo / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, self.repo / rel)

    def run(self, workflow: dict[str, Any]) -> list[LocalJob]:
        """Every job of ``workflow``; the first failure stops what has not started and is
        raised once the running jobs are done."""
        self.prepare()
        jobs = workflow["jobs"]
        try:
            order = [
                n
                for level in schedule.levels({n: j.get("needs", []) for n, j in jobs.items()})
                for n in level
            ]
        except schedule.CycleError as e:
            raise DxError(f"the workflow's needs: have a cycle: {' -> '.join(e.cycle)}") from None
        out = [LocalJob(name, matrix) for name in order for matrix in _expand(jobs[name])]
        keys = {name: [str(i) for i, j in enumerate(out) if j.name == name] for name in jobs}
        self.progress.begin("jobs", len(out))

        def work(key: str) -> str:
            local = out[int(key)]
            return self._timed(jobs[local.name], local, int(key) + 1)

        def report(event: schedule.Event) -> None:
            local = out[int(event.name)]
            if event.kind == "start":
                self.progress.start(f"{local.name} {local.matrix or ''}".strip())
            elif event.kind == "done":
                local.status = str(event.result)
                self.progress.done(local.name, local)

        schedule.run(
            {
                str(i): [k for n in jobs[j.name].get("needs", []) for k in keys[n]]
                for i, j in enumerate(out)
            },
            work,
            jobs=self.jobs,
            report=report,
        ).raise_first()
        return out

    def _timed(self, job: dict[str, Any], local: LocalJob, number: int) -> str:
        t0 = time.monotonic()
        try:
            return self._job(job, local.matrix, self.work / "jobs" / f"{number:02d}")
        finally:
            local.seconds = round(time.monotonic() - t0, 1)

    def _job(self, job: dict[str, Any], matrix: dict[str, Any], here: Path) -> str:
        """One job in ``here`` (its workspace, then its steps' logs and outputs)."""
        if "enabled" in matrix and not matrix["enabled"]:
            return f"skipped ({matrix.get('platform')}: declared, not enabled)"
        image = str((job.get("container") or {}).get("image", ""))
        root = None
        if "${{" in image:  # a test image of the matrix; build containers are this machine's OS
            image = expr.render(image, {"matrix": matrix}, strict=False)
            release = DEBIAN_IMAGES.get(image)
            if release is None:
                return f"skipped (no {image} image here: only Debian roots can be made)"
            foreign = _foreign(matrix)
            why = emulate.why_not() if foreign else ""
            if why:
                return f"skipped (no {foreign} {image} here: {why})"
            root = self._root(release, foreign)
        here.mkdir(parents=True)
        ws = root / "work" if root is not None else here / "repo"
        if root is None:
            shutil.copytree(self.repo, ws, symlinks=True)
        values: dict[str, Any] = {"matrix": matrix, "steps": {}}
        try:
            for i, step in enumerate(job["steps"]):
                if "if" in step and not expr.condition(str(step["if"]), values):
                    continue
                if "uses" in step:
                    self._uses(step, matrix, ws, root is not None)
                else:
                    self._run(step, values, root, ws, here / f"step-{i:02d}.log")
        finally:  # the logs stay
            remove(root.parent if root is not None else ws)
        return "passed"

    def _root(self, release: str, foreign: str = "") -> Path:
        """A Debian ``release`` root for a container job: this machine's, or a ``foreign``
        machine's run under the namespaced emulation."""
        why = roots.why_not()
        if why:
            raise DxError(f"cannot run a {release} container job here: {why}")
        dest, cache = Path(tempfile.mkdtemp(dir=self.work)) / "r", self.layout.cache
        if not foreign:
            return roots.make(roots.RootSpec(release), dest, cache)
        root = emulate.pilot_root(release, foreign, dest, cache)
        self.foreign[root] = (foreign, emulate.qemu(foreign, cache))
        return root

    def _uses(
        self, step: dict[str, Any], matrix: dict[str, Any], ws: Path, container: bool
    ) -> None:
        action = step["uses"]
        args = {
            k: expr.render(str(v), {"matrix": matrix}, strict=False)
            for k, v in (step.get("with") or {}).items()
        }
        if action == ACTIONS["checkout"]:
            if container:
                shutil.copytree(
                    self.repo,
                    ws,
                    symlinks=True,
                    dirs_exist_ok=True,
                    ignore=shutil.ignore_patterns(".venv", "build"),
                )
        elif action == ACTIONS["upload"]:
            self._upload(args, ws)
        elif action == ACTIONS["download"]:
            self._download(args, ws, container)
        elif action not in (ACTIONS["cache"], ACTIONS["pull-request"]):
            raise DxError(f"{action}: the local runner does not know this action")
        # the cache action: the user cache is shared here already; no pull request from here

    def _upload(self, args: dict[str, str], ws: Path) -> None:
        dest = self.artifacts / args["name"]
        shutil.rmtree(dest, ignore_errors=True)
        dest.mkdir(parents=True)
        patterns = [p.strip().rstrip("/") for p in args["path"].splitlines() if p.strip()]
        matches = [Path(p) for pattern in patterns for p in glob.glob(str(ws / pattern))]
        if not matches:
            raise DxError(f"upload of {args['name']}: nothing matches {' '.join(patterns)}")
        for m in matches:
            if m.is_dir():
                shutil.copytree(m.resolve(), dest, dirs_exist_ok=True)
            else:
                shutil.copy2(m, dest / m.name)

    def _download(self, args: dict[str, str], ws: Path, container: bool) -> None:
        target = ws / args["path"]
        target.mkdir(parents=True, exist_ok=True)
        names = (
            [args["name"]]
            if "name" in args
            else sorted(p.name for p in self.artifacts.glob(args["pattern"]))
        )
        for n in names:
            if not (self.artifacts / n).is_dir():
                raise DxError(f"download of {n}: no such artifact (uploaded by no job yet)")
            shutil.copytree(self.artifacts / n, target, dirs_exist_ok=True)
        if container:
            execute(["chmod", "-R", "a+rX", ws], what=f"chmod -R a+rX {ws}")

    def _in_root(self, root: Path, argv: list[str]) -> list[str]:
        """The command that runs ``argv`` in a job's root, in /work as root (a container's
        user); a foreign root's under the emulation."""
        kw: dict[str, Any] = {"cwd": "/work", "env": {"HOME": "/root"}}
        if root in self.foreign:
            foreign, qemu = self.foreign[root]
            return emulate.command(root, argv, machine=foreign, interpreter=qemu, **kw)
        return roots.command(root, argv, **kw)

    def _run(
        self, step: dict[str, Any], values: dict[str, Any], root: Path | None, ws: Path, log: Path
    ) -> None:
        """A ``run:`` step; what it writes to ``$GITHUB_OUTPUT`` becomes its step's outputs."""
        script = expr.render(step["run"], values, strict=False)
        name = step.get("name", script.splitlines()[0])
        out_file = log.with_suffix(".github-output")
        out_file.write_text("")
        if root is None:
            env = {**os.environ, "GITHUB_OUTPUT": str(out_file), "CI": "true"}
            env.pop("DXFORGE_BUILD_DIR", None)
            shell = (
                ["sh", "-eu", "-c"]
                if step.get("shell") == "sh"
                else ["bash", "-eo", "pipefail", "-c"]
            )
            cmd, cwd = [*shell, script], ws
        else:
            (root / "work/run.sh").write_text(script)
            cmd = self._in_root(root, ["sh", "-eu", "/work/run.sh"])
            cwd, env = None, None
        execute(cmd, cwd=cwd, env=env, log=log, what=f"step `{name}`")
        outputs = dict(line.partition("=")[::2] for line in out_file.read_text().splitlines())
        if "id" in step:
            values["steps"][step["id"]] = {"outputs": outputs}


def _foreign(matrix: dict[str, Any]) -> str:
    """The machine a matrix entry's platform is for, when it is not this one's ("")."""
    platform = str(matrix.get("platform") or "")
    if not platform.startswith("linux-"):
        return ""
    wanted = machine(platform)
    return "" if wanted == os.uname().machine else wanted


@dataclass
class LocalRun:
    jobs: list[LocalJob]
    seconds: float

    def as_json(self) -> dict[str, Any]:
        return {
            "status": "passed",
            "seconds": self.seconds,
            "jobs": [
                {"job": j.name, "matrix": j.matrix, "status": j.status, "seconds": j.seconds}
                for j in self.jobs
            ],
        }


def run_local(project: Project, progress: Progress = SILENT) -> LocalRun:
    """The rendered build workflow's jobs, run here two at a time in ``needs:`` order."""
    layout = project.layout
    workflow = build_workflow(project, config(project.root))
    t0 = time.monotonic()
    jobs = LocalRunner(layout, layout.work / "ci-local", progress).run(workflow)
    return LocalRun(jobs, round(time.monotonic() - t0, 1))
