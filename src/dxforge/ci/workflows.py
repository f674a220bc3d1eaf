"""``dxforge ci``: the GitHub Actions workflows, rendered from the recipe graph, construct.yaml
and ``[tool.dxforge.ci]`` in pyproject.toml (as conda-smithy rerenders a feedstock), never
written by hand; ``--check`` tells when the committed ones are stale; ``--run-local`` runs the
linux-64 jobs here, in ``needs:`` order, so that a workflow change is proven before it is pushed.

This module is long because it holds both halves of one contract: what the workflows say, and
the small runner that executes exactly those steps here (``uses:`` steps are the few actions
the renderer itself writes, each given a local meaning).
"""

from __future__ import annotations

import glob
import io
import os
import shutil
import tempfile
import time
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from dxforge.core import expr, schedule
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, atomic_write_text, execute
from dxforge.isolation.isolate import remove, shell_site
from dxforge.project.construct import load_construct
from dxforge.project.graph import Graph, load_graph
from dxforge.project.layout import Layout

WORKFLOWS = Path(".github/workflows")
HEADER = (
    "# Rendered by `dxforge ci` from recipes/, construct.yaml and [tool.dxforge.ci] in\n"
    "# pyproject.toml. Do not edit: change those and run `dxforge ci`.\n"
)
ACTIONS = {
    "checkout": "actions/checkout@v4.2.2",
    "cache": "actions/cache@v4.2.3",
    "upload": "actions/upload-artifact@v4.6.2",
    "download": "actions/download-artifact@v4.3.0",
    "pull-request": "peter-evans/create-pull-request@v7.0.8",
    "attest": "actions/attest-build-provenance@v2.4.0",
}
DEFAULTS: dict[str, Any] = {
    "runs-on": "ubuntu-24.04",
    "container": "debian:12",
    "schedule": "17 3 * * *",
    "platforms": ["linux-64", "linux-aarch64", "osx-64", "osx-arm64"],
    "enabled-platforms": ["linux-64"],
    "pilot-images": [
        {"image": "almalinux:8", "glibc": "2.28"},
        {"image": "almalinux:9", "glibc": "2.34"},
        {"image": "almalinux:10", "glibc": "2.39"},
        {"image": "debian:11", "glibc": "2.31"},
        {"image": "debian:12", "glibc": "2.36"},
        {"image": "debian:13", "glibc": "2.41"},
        {"image": "ubuntu:18.04", "glibc": "2.27"},
        {"image": "ubuntu:20.04", "glibc": "2.31"},
        {"image": "ubuntu:22.04", "glibc": "2.35"},
        {"image": "ubuntu:24.04", "glibc": "2.39"},
    ],
}
DEBIAN_IMAGES = {"debian:11": "bullseye", "debian:12": "bookworm", "debian:13": "trixie"}
DX = ".venv/bin/dxforge"


@dataclass
class CiConfig:
    runs_on: str
    container: str
    schedule: str
    platforms: list[str]
    enabled: list[str]
    images: list[dict[str, str]]


def config(root: Path) -> CiConfig:
    """``[tool.dxforge.ci]`` of the project's pyproject.toml, over the defaults."""
    path = root / "pyproject.toml"
    data: dict[str, Any] = {}
    if path.is_file():
        try:
            data = tomllib.loads(path.read_text()).get("tool", {}).get("dxforge", {}).get("ci", {})
        except tomllib.TOMLDecodeError as e:
            raise DxError(f"{path}: not valid TOML ({e})") from None
    unknown = set(data) - set(DEFAULTS)
    if unknown:
        raise DxError(
            f"{path}: [tool.dxforge.ci] has unknown keys {sorted(unknown)}; "
            f"known: {', '.join(DEFAULTS)}"
        )
    c = {**DEFAULTS, **data}
    for img in c["pilot-images"]:
        if set(img) != {"image", "glibc"}:
            raise DxError(
                f"{path}: [tool.dxforge.ci] pilot-images entries need `image` and "
                f"`glibc` (the image's C library version): {img}"
            )
    return CiConfig(
        c["runs-on"],
        c["container"],
        c["schedule"],
        list(c["platforms"]),
        list(c["enabled-platforms"]),
        list(c["pilot-images"]),
    )


# ---- rendering ---------------------------------------------------------------------------


def _older(a: str, b: str) -> bool:
    return tuple(map(int, a.split("."))) < tuple(map(int, b.split(".")))


def _setup(cache: bool = True) -> list[dict[str, Any]]:
    steps: list[dict[str, Any]] = [
        {"uses": ACTIONS["checkout"]},
        {"name": "Set up (system tools, .venv with dxforge)", "run": "scripts/setup.sh"},
    ]
    if cache:
        steps += [
            {
                "name": "Fingerprint of the runtime build",
                "id": "fingerprint",
                "run": f'echo "runtime=$({DX} fingerprint runtime)" >> "$GITHUB_OUTPUT"',
            },
            {
                "name": "User cache (runtime build, converted wheels)",
                "uses": ACTIONS["cache"],
                "with": {
                    "path": "~/.cache/dxforge",
                    "key": "dxforge-${{ steps.fingerprint.outputs.runtime }}-"
                    "${{ hashFiles('recipes/**', 'construct.yaml') }}",
                    "restore-keys": "dxforge-${{ steps.fingerprint.outputs.runtime }}-",
                },
            },
        ]
    return steps


def _download(name: str, path: str) -> dict[str, Any]:
    return {
        "name": f"Get {name}",
        "uses": ACTIONS["download"],
        "with": {"name": name, "path": path},
    }


def _upload(name: str, path: str) -> dict[str, Any]:
    return {
        "name": f"Keep {name}",
        "uses": ACTIONS["upload"],
        "with": {"name": name, "path": path, "if-no-files-found": "error"},
    }


def job_id(package: str) -> str:
    return f"build-{package}"


def build_workflow(graph: Graph, cfg: CiConfig, floor: str) -> dict[str, Any]:
    container = {"image": cfg.container, "options": "--privileged"}
    base = {"runs-on": cfg.runs_on, "container": container}
    jobs: dict[str, Any] = {
        "seed": {
            **base,
            "name": "seed channel",
            "steps": [
                *_setup(),
                {"name": "Seed", "run": f"{DX} seed"},
                _upload("seed", "build/channels/seed/"),
            ],
        },
    }
    for level, names in enumerate(graph.levels):
        for name in names:
            steps = [*_setup(cache=False), _download("seed", "build/channels/seed")]
            steps += [
                _download(f"pkg-{d}", "build/channels/dxforge/noarch")
                for d in graph.dependencies(name)
            ]
            steps += [
                {
                    "name": f"Build {name}",
                    "run": f"{DX} build --only {name} --channel build/channels/seed",
                },
                _upload(f"pkg-{name}", f"build/channels/dxforge/noarch/{name}-*.conda"),
            ]
            jobs[job_id(name)] = {
                **base,
                "name": f"build {name} (level {level})",
                "needs": ["seed", *sorted(job_id(d) for d in graph.deps[name])],
                "steps": steps,
            }
    jobs["channel"] = {
        **base,
        "name": "channel (indexed once)",
        "needs": [job_id(n) for n in graph.order],
        "steps": [
            *_setup(cache=False),
            {
                "name": "Get the packages",
                "uses": ACTIONS["download"],
                "with": {
                    "pattern": "pkg-*",
                    "merge-multiple": True,
                    "path": "build/channels/dxforge/noarch",
                },
            },
            {"name": "Index", "run": f"{DX} index build/channels/dxforge"},
            _upload("channel", "build/channels/dxforge/"),
        ],
    }
    jobs["installer"] = {
        **base,
        "name": "installer ${{ matrix.platform }}",
        "needs": ["seed", "channel"],
        "strategy": {
            "fail-fast": False,
            "matrix": {
                "include": [{"platform": p, "enabled": p in cfg.enabled} for p in cfg.platforms]
            },
        },
        "steps": [
            {
                "name": "Not built here yet",
                "if": "${{ !matrix.enabled }}",
                "run": 'echo "::notice::the ${{ matrix.platform }} installer is declared, not '
                'built yet (dxforge builds linux-64)"',
            },
            *({**s, "if": "${{ matrix.enabled }}"} for s in _setup()),
            {**_download("seed", "build/channels/seed"), "if": "${{ matrix.enabled }}"},
            {**_download("channel", "build/channels/dxforge"), "if": "${{ matrix.enabled }}"},
            {"name": "Installer", "if": "${{ matrix.enabled }}", "run": f"{DX} installer"},
            {
                **_upload("installer-${{ matrix.platform }}", "build/installer/DIRACOS-*"),
                "if": "${{ matrix.enabled }}",
            },
        ],
    }
    pilot_matrix = [
        {
            "image": i["image"],
            "glibc": i["glibc"],
            "expect": "refused" if _older(i["glibc"], floor) else "installed",
        }
        for i in cfg.images
    ]
    jobs["pilot"] = {
        "runs-on": cfg.runs_on,
        "name": "pilot on ${{ matrix.image }}",
        "needs": ["installer"],
        "container": {"image": "${{ matrix.image }}"},
        "strategy": {"fail-fast": False, "matrix": {"include": pilot_matrix}},
        "steps": [
            {"uses": ACTIONS["checkout"]},
            _download("installer-linux-64", "installer"),
            {
                "name": "Pilot test as a user with a read-only HOME, offline",
                "shell": "sh",
                "run": pilot_step(),
            },
        ],
    }
    jobs["end-to-end"] = {
        **base,
        "name": "end to end: a DiracX server, the installer's client",
        "needs": ["seed", "channel", "installer"],
        "steps": [
            *_setup(cache=False),
            _download("seed", "build/channels/seed"),
            _download("channel", "build/channels/dxforge"),
            _download("installer-linux-64", "build/installer"),
            {"name": "End to end", "run": f"{DX} e2e"},
        ],
    }
    jobs["upstream-tests"] = {
        **base,
        "name": "DiracX tests: ${{ matrix.package }}",
        "needs": ["seed", "channel"],
        "strategy": {
            "fail-fast": False,
            "matrix": {"package": [n for n in graph.order if n != "diracx"]},
        },
        "steps": [
            *_setup(cache=False),
            _download("seed", "build/channels/seed"),
            _download("channel", "build/channels/dxforge"),
            {
                "name": "Upstream test suite",
                "run": f"{DX} fetch && {DX} test-upstream --only ${{{{ matrix.package }}}}",
            },
        ],
    }
    return {
        "name": "build",
        "on": {"push": {"branches": ["main"]}, "pull_request": None, "workflow_dispatch": None},
        "permissions": {"contents": "read"},
        "concurrency": {"group": "build-${{ github.ref }}", "cancel-in-progress": True},
        "jobs": jobs,
    }


PILOT_SCRIPT = "src/dxforge/data/pilot-test.sh"


def pilot_step() -> str:
    """The pilot step: the installer and the pilot checks run in a site made as
    :class:`dxforge.isolation.isolate.Site` makes one (by
    :func:`dxforge.isolation.isolate.shell_site`)."""
    return (
        shell_site()
        + f"""\
set -eu
installer=$(ls installer/DIRACOS-*.sh)
make_site /tmp/pilot-site
cp "$installer" {PILOT_SCRIPT} /tmp/pilot-site/
chmod a+r /tmp/pilot-site/*
name=$(basename "$installer")
if [ "${{{{ matrix.expect }}}}" = refused ]; then
    if isolated sh "/tmp/pilot-site/$name" -b -p /tmp/pilot-site/work/diracos 2> refusal.txt; then
        echo "the installer installed on glibc ${{{{ matrix.glibc }}}}, below its floor"; exit 1
    fi
    cat refusal.txt
    grep -q "Installer requires GLIBC" refusal.txt
    test ! -e /tmp/pilot-site/work/diracos
else
    isolated sh /tmp/pilot-site/pilot-test.sh "/tmp/pilot-site/$name" /tmp/pilot-site/work/diracos
fi
"""
    )


def release_workflow(cfg: CiConfig) -> dict[str, Any]:
    check = f"""\
set +e
{DX} bump --check --json > bump.json
code=$?
set -e
cat bump.json
[ "$code" -ne 2 ]
echo "update=$([ "$code" = 1 ] && echo true || echo false)" >> "$GITHUB_OUTPUT"
echo "version=$(python3 -c 'import json; print(json.load(open("bump.json"))["target"])')" \\
    >> "$GITHUB_OUTPUT"
"""
    release = f"""\
{DX} release --pr-body notes.md --json > release.json
# shellcheck disable=SC2016  # the backquotes are Markdown's
{{ cat notes.md; printf '\\n### Checklist\\n\\n'
  printf -- '- [ ] Dependencies: the drift table above is empty, or its changes are right\\n'
  printf -- '- [ ] Upstream test suites and the pilot test passed (in the notes)\\n'
  printf -- '- [ ] License unchanged (GPL-3.0-only)\\n'
  printf -- '- [ ] Installer sha256 noted; rebuild compares equal\\n'
  printf '\\nMade by the dxforge release bot (`dxforge bump --check`, `dxforge release`).\\n'
}} > pr-body.md
"""
    return {
        "name": "release-bot",
        "on": {"schedule": [{"cron": cfg.schedule}], "workflow_dispatch": None},
        "permissions": {"contents": "read"},
        "concurrency": {"group": "release-bot", "cancel-in-progress": False},
        "jobs": {
            "release": {
                "runs-on": cfg.runs_on,
                "container": {"image": cfg.container, "options": "--privileged"},
                "permissions": {"contents": "write", "pull-requests": "write"},
                "steps": [
                    *_setup(),
                    {"name": "Is there a new DiracX release?", "id": "check", "run": check},
                    {
                        "name": "Release it",
                        "if": "steps.check.outputs.update == 'true'",
                        "run": release,
                    },
                    {
                        **_upload(
                            "release-${{ steps.check.outputs.version }}",
                            "build/releases/${{ steps.check.outputs.version }}/",
                        ),
                        "if": "steps.check.outputs.update == 'true'",
                    },
                    {
                        "name": "Open the pull request",
                        "if": "steps.check.outputs.update == 'true'",
                        "uses": ACTIONS["pull-request"],
                        "with": {
                            "title": "diracx v${{ steps.check.outputs.version }}",
                            "body-path": "pr-body.md",
                            "branch": "dxforge/diracx-v${{ steps.check.outputs.version }}",
                            "commit-message": "updated v${{ steps.check.outputs.version }}",
                            "add-paths": "recipes/**\nconstruct.yaml",
                        },
                    },
                ],
            }
        },
    }


IMAGES_REPO = "${{ vars.IMAGE_REGISTRY }}/${{ github.repository_owner }}/diracx"
"""Where images go: the registry is a repository variable (IMAGE_REGISTRY), never written here."""


def images_workflow(cfg: CiConfig) -> dict[str, Any]:
    """``dxforge images``: on pushes and pull requests build the release images on the latest
    bases and test them (pushed, with a provenance attestation, on a ``v*`` tag); weekly the
    dated bases (``YYYY.MM.DD.P``, a new tag only when their content changed). The tag record
    (build/images) is kept in the cache between runs."""
    base = {
        "runs-on": cfg.runs_on,
        "container": {"image": cfg.container, "options": "--privileged"},
    }
    setup = [
        *_setup(),
        {"name": "Channels", "run": f"{DX} seed && {DX} build"},
        {
            "name": "Tag record of the images",
            "uses": ACTIONS["cache"],
            "with": {
                "path": "build/images",
                "key": "images-${{ github.run_id }}",
                "restore-keys": "images-",
            },
        },
    ]
    login = {
        "name": "Log in to the registry",
        "env": {"TOKEN": "${{ secrets.GITHUB_TOKEN }}"},
        "run": 'printf \'%s\' "$TOKEN" | skopeo login --username "${{ github.actor }}" '
        '--password-stdin "${{ vars.IMAGE_REGISTRY }}"',
    }
    tagged = "startsWith(github.ref, 'refs/tags/v')"
    digest = (
        'python3 -c \'import json,sys; print(next(i["digest"] for i in json.load('
        'open("images.json"))["images"] if i["name"] == sys.argv[1]))\''
    )
    attest = [
        {
            "name": f"Provenance of {role}",
            "if": tagged,
            "uses": ACTIONS["attest"],
            "with": {
                "subject-name": f"{IMAGES_REPO}/{role}",
                "subject-digest": f"${{{{ steps.digests.outputs.{role} }}}}",
                "push-to-registry": True,
            },
        }
        for role in ("services", "tasks", "client")
    ]
    return {
        "name": "images",
        "on": {
            "push": {"branches": ["main"], "tags": ["v*"]},
            "pull_request": None,
            "schedule": [{"cron": "41 4 * * 1"}],
            "workflow_dispatch": None,
        },
        "permissions": {"contents": "read"},
        "concurrency": {"group": "images-${{ github.ref }}", "cancel-in-progress": False},
        "jobs": {
            "images": {
                **base,
                "name": "release images (build, test; push on tags)",
                "if": "github.event_name != 'schedule'",
                "permissions": {
                    "contents": "read",
                    "packages": "write",
                    "id-token": "write",
                    "attestations": "write",
                },
                "steps": [
                    *setup,
                    {"name": "Images", "run": f"{DX} images --json > images.json"},
                    {
                        "name": "Test them (registry on 127.0.0.1, podman)",
                        "run": ".venv/bin/python -m pytest -m e2e -q tests/test_images_e2e.py",
                    },
                    {**login, "if": tagged},
                    {
                        "name": "Push",
                        "if": tagged,
                        "id": "digests",
                        "run": f"""\
{DX} images --no-bases --push "{IMAGES_REPO}" --json > images.json
for role in services tasks client; do
    echo "$role=$({digest} "$role")" >> "$GITHUB_OUTPUT"
done
""",
                    },
                    *attest,
                ],
            },
            "bases": {
                **base,
                "name": "dated bases (weekly)",
                "if": "github.event_name == 'schedule' || github.event_name == 'workflow_dispatch'",
                "permissions": {"contents": "read", "packages": "write"},
                "steps": [
                    *setup,
                    login,
                    {
                        "name": "Bases (Debian's updates; a new tag only when the content changed)",
                        "run": f'{DX} images --no-releases --refresh-os --push "{IMAGES_REPO}"',
                    },
                ],
            },
        },
    }


def _literal(value: Any) -> Any:
    """Multi-line strings as YAML literal blocks (scripts stay readable)."""
    from ruamel.yaml.scalarstring import LiteralScalarString

    if isinstance(value, dict):
        return {k: _literal(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_literal(v) for v in value]
    if isinstance(value, str) and "\n" in value:
        return LiteralScalarString(value)
    return value


def _dump(data: dict[str, Any]) -> str:
    yaml = YAML()
    yaml.default_flow_style = False
    yaml.width = 4096
    yaml.representer.ignore_aliases = lambda *_a: True
    yaml.indent(mapping=2, sequence=4, offset=2)
    buf = io.StringIO()
    yaml.dump(_literal(data), buf)
    return HEADER + buf.getvalue()


def render(layout: Layout) -> dict[Path, str]:
    """The workflow files (relative to the project) and their text."""
    cfg = config(layout.root)
    graph, _ = load_graph(layout.root)
    construct = load_construct(layout.construct)
    floor = construct.glibc or "2.17"
    return {
        WORKFLOWS / "build.yml": _dump(build_workflow(graph, cfg, floor)),
        WORKFLOWS / "release-bot.yml": _dump(release_workflow(cfg)),
        WORKFLOWS / "images.yml": _dump(images_workflow(cfg)),
    }


@dataclass
class CiResult:
    written: list[Path] = field(default_factory=list)
    stale: list[Path] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    check: bool = False

    @property
    def status(self) -> str:
        if self.check:
            return "stale" if self.stale else "up-to-date"
        return "written" if self.written else "up-to-date"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "files": [str(p) for p in self.files],
            "written": [str(p) for p in self.written],
            "stale": [str(p) for p in self.stale],
        }


def run_ci(layout: Layout, check: bool = False) -> CiResult:
    """Write the workflows (only those that change), or with ``check`` list the stale ones."""
    result = CiResult(check=check)
    rendered = render(layout)
    expected = {layout.root / rel for rel in rendered}
    existing = (
        set((layout.root / WORKFLOWS).glob("*.yml"))
        if (layout.root / WORKFLOWS).is_dir()
        else set()
    )
    for rel, text in rendered.items():
        path = layout.root / rel
        result.files.append(path)
        current = path.read_text() if path.is_file() else None
        if current != text:
            result.stale.append(path)
            if not check:
                atomic_write_text(path, text)
                result.written.append(path)
    result.stale += sorted(existing - expected)  # workflows dxforge does not render
    return result


# ---- the local runner ----------------------------------------------------------------------


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
    """Runs the linux-64 jobs of the rendered build workflow here, ``jobs`` at a time once their
    ``needs:`` have passed, each in its own copy of the repository (no build/, as on a fresh
    runner); artifacts go to a directory beside them. Container jobs on Debian images run in
    Debian roots; others are reported skipped, with the reason."""

    def __init__(
        self, layout: Layout, work: Path, progress: Progress = SILENT, jobs: int = 2
    ) -> None:
        self.layout = layout
        self.work = work
        self.repo = work / "repo"
        self.artifacts = work / "artifacts"
        self.progress = progress
        self.jobs = max(1, jobs)

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
        if matrix.get("platform") and not matrix.get("enabled"):
            return "skipped (declared, not built on linux-64 here)"
        image = str((job.get("container") or {}).get("image", ""))
        root = None
        if "${{" in image:  # a test image of the matrix; build containers are this machine's OS
            image = expr.render(image, {"matrix": matrix}, strict=False)
            release = DEBIAN_IMAGES.get(image)
            if release is None:
                return f"skipped (no {image} image here: only Debian roots can be made)"
            root = self._root(release)
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

    def _root(self, release: str) -> Path:
        from dxforge.isolation import roots

        why = roots.why_not()
        if why:
            raise DxError(f"cannot run a {release} container job here: {why}")
        root = roots.make(
            roots.RootSpec(release), Path(tempfile.mkdtemp(dir=self.work)) / "r", self.layout.cache
        )
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
        pattern = args["path"].rstrip("/")
        matches = [Path(p) for p in glob.glob(str(ws / pattern))]
        if not matches:
            raise DxError(f"upload of {args['name']}: nothing matches {pattern}")
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
            from dxforge.isolation import roots

            (root / "work/run.sh").write_text(script)
            cmd = roots.command(
                root, ["sh", "-eu", "/work/run.sh"], cwd="/work", env={"HOME": "/root"}
            )
            cwd, env = None, None
        execute(cmd, cwd=cwd, env=env, log=log, what=f"step `{name}`")
        outputs = dict(line.partition("=")[::2] for line in out_file.read_text().splitlines())
        if "id" in step:
            values["steps"][step["id"]] = {"outputs": outputs}


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


def run_local(layout: Layout, progress: Progress = SILENT) -> LocalRun:
    """The rendered build workflow's linux-64 jobs, run here two at a time in ``needs:`` order."""
    graph, _ = load_graph(layout.root)
    floor = load_construct(layout.construct).glibc or "2.17"
    workflow = build_workflow(graph, config(layout.root), floor)
    t0 = time.monotonic()
    jobs = LocalRunner(layout, layout.work / "ci-local", progress).run(workflow)
    return LocalRun(jobs, round(time.monotonic() - t0, 1))
