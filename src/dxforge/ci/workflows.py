"""``dxforge ci``: the GitHub Actions workflows, rendered from the recipe graph, construct.yaml
and ``[tool.dxforge.ci]`` in pyproject.toml (as conda-smithy rerenders a feedstock), never
written by hand; ``--check`` tells when the committed ones are stale; ``--run-local`` runs the
linux-64 jobs here, in ``needs:`` order, so that a workflow change is proven before it is pushed.

This module is long because it holds both halves of one contract: what the workflows say, and
the small runner that executes exactly those steps here (``uses:`` steps are the few actions
the renderer itself writes, each given a local meaning).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ruamel.yaml import YAML

from dxforge.core.util import DxError, atomic_write_text
from dxforge.isolation.isolate import shell_site
from dxforge.project.graph import Graph
from dxforge.project.model import Project, tool_settings

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
    # linux-aarch64's pilot matrix, on native arm64 runners (the images' arm64 variants)
    "arm-runs-on": "ubuntu-24.04-arm",
    "arm-pilot-images": [
        {"image": "almalinux:8", "glibc": "2.28"},
        {"image": "almalinux:9", "glibc": "2.34"},
        {"image": "almalinux:10", "glibc": "2.39"},
        {"image": "debian:11", "glibc": "2.31"},
        {"image": "debian:12", "glibc": "2.36"},
        {"image": "debian:13", "glibc": "2.41"},
    ],
}
ARM = "linux-aarch64"
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
    arm_runs_on: str = DEFAULTS["arm-runs-on"]
    arm_images: list[dict[str, str]] = field(default_factory=list)

    def pilots(self) -> list[tuple[str, str, dict[str, str]]]:
        """(platform, runner, image) of every pilot job: linux-64's images, then, when
        linux-aarch64 is enabled, its images on arm64 runners."""
        out = [("linux-64", self.runs_on, i) for i in self.images]
        if ARM in self.enabled:
            out += [(ARM, self.arm_runs_on, i) for i in self.arm_images]
        return out


def config(root: Path) -> CiConfig:
    """``[tool.dxforge.ci]`` of the project's pyproject.toml, over the defaults."""
    path = root / "pyproject.toml"
    data: dict[str, Any] = tool_settings(root).get("ci", {})
    unknown = set(data) - set(DEFAULTS)
    if unknown:
        raise DxError(
            f"{path}: [tool.dxforge.ci] has unknown keys {sorted(unknown)}; "
            f"known: {', '.join(DEFAULTS)}"
        )
    c = {**DEFAULTS, **data}
    for img in [*c["pilot-images"], *c["arm-pilot-images"]]:
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
        c["arm-runs-on"],
        list(c["arm-pilot-images"]),
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


def _seed_command(cfg: CiConfig) -> str:
    """The seed: linux-64's, and the subdir of every other Linux platform enabled."""
    others = [p for p in cfg.enabled if p.startswith("linux-") and p != "linux-64"]
    return " ".join([f"{DX} seed", *(f"--platform {p}" for p in others)])


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


@dataclass(frozen=True)
class Flavour:
    """What differs between the workflows of a DiracX distribution and of an extension's
    (``[tool.dxforge] extension``), which builds on DiracX at the version it pins."""

    name: str  # the distribution: diracx, or the extension
    installer: str  # construct.yaml's name: the installer's files start with it
    build: str  # the command that builds one package ({name})
    upstream: bool  # DiracX's own test suites (an extension's sdists carry none)
    paths: str  # what the release bot's pull request may change


def flavour(project: Project) -> Flavour:
    """The project's flavour: an extension's when ``[tool.dxforge]`` names one."""
    installer = project.construct.name
    if project.extension:
        return Flavour(
            project.extension,
            installer,
            f"{DX} extension build --only {{name}}",
            False,
            "recipes/**\nconstruct.yaml\npyproject.toml",
        )
    build = f"{DX} build --only {{name}} --channel build/channels/seed"
    return Flavour("diracx", installer, build, True, "recipes/**\nconstruct.yaml")


def job_id(package: str) -> str:
    return f"build-{package}"


def build_workflow(project: Project, cfg: CiConfig) -> dict[str, Any]:
    """``build.yml``: the seed, a job per package in the graph's order, the channel indexed
    once, the installer, the pilot matrix, the end to end and (DiracX's) upstream suites."""
    graph, kind, floor = project.graph, flavour(project), floor_of(project)
    container = {"image": cfg.container, "options": "--privileged"}
    base = {"runs-on": cfg.runs_on, "container": container}
    jobs: dict[str, Any] = {
        "seed": {
            **base,
            "name": "seed channel",
            "steps": [
                *_setup(),
                {"name": "Seed", "run": _seed_command(cfg)},
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
                    "run": kind.build.format(name=name),
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
                'built (enabled-platforms in [tool.dxforge.ci])"',
            },
            *({**s, "if": "${{ matrix.enabled }}"} for s in _setup()),
            {**_download("seed", "build/channels/seed"), "if": "${{ matrix.enabled }}"},
            {**_download("channel", "build/channels/dxforge"), "if": "${{ matrix.enabled }}"},
            {
                "name": "Installer",
                "if": "${{ matrix.enabled }}",
                "run": f"{DX} installer --platform ${{{{ matrix.platform }}}}",
            },
            {
                "name": "The pilot checks of this dxforge",
                "if": "${{ matrix.enabled }}",
                "run": f"{PILOT_SCRIPT} > build/installer/pilot-test.sh",
            },
            {
                **_upload(
                    "installer-${{ matrix.platform }}",
                    f"build/installer/{kind.installer}-*\nbuild/installer/pilot-test.sh",
                ),
                "if": "${{ matrix.enabled }}",
            },
        ],
    }
    pilot_matrix = [
        {
            "platform": platform,
            "runner": runner,
            "image": i["image"],
            "glibc": i["glibc"],
            "expect": "refused" if _older(i["glibc"], floor) else "installed",
        }
        for platform, runner, i in cfg.pilots()
    ]
    jobs["pilot"] = {
        "runs-on": "${{ matrix.runner }}",
        "name": "pilot on ${{ matrix.image }} (${{ matrix.platform }})",
        "needs": ["installer"],
        "container": {"image": "${{ matrix.image }}"},
        "strategy": {"fail-fast": False, "matrix": {"include": pilot_matrix}},
        "steps": [
            _download("installer-${{ matrix.platform }}", "installer"),
            {
                "name": "Pilot test as a user with a read-only HOME, offline",
                "shell": "sh",
                "run": pilot_step(kind.installer),
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
    if kind.upstream:
        jobs["upstream-tests"] = _upstream_job(base, graph)
    return {
        "name": "build",
        "on": {"push": {"branches": ["main"]}, "pull_request": None, "workflow_dispatch": None},
        "permissions": {"contents": "read"},
        "concurrency": {"group": "build-${{ github.ref }}", "cancel-in-progress": True},
        "jobs": jobs,
    }


def _upstream_job(base: dict[str, Any], graph: Graph) -> dict[str, Any]:
    """DiracX's own test suites, one job per package."""
    return {
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


PILOT_SCRIPT = (
    ".venv/bin/python -c 'from importlib.resources import files; "
    'print(files("dxforge").joinpath("data/pilot-test.sh").read_text(), end="")\''
)
"""Prints the pilot checks of the installed dxforge (package data: an extension's project has
no copy of dxforge's sources)."""


def pilot_step(installer: str) -> str:
    """The pilot step: the installer and the pilot checks run in a site made as
    :class:`dxforge.isolation.isolate.Site` makes one (by
    :func:`dxforge.isolation.isolate.shell_site`)."""
    return (
        shell_site()
        + f"""\
set -eu
installer=$(ls installer/{installer}-*.sh)
make_site /tmp/pilot-site
cp "$installer" installer/pilot-test.sh /tmp/pilot-site/
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


def release_workflow(cfg: CiConfig, kind: Flavour) -> dict[str, Any]:
    """``release-bot.yml``: daily, ``dxforge bump --check``; a new release is released and
    proposed as a pull request."""
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
                            "title": f"{kind.name} v${{{{ steps.check.outputs.version }}}}",
                            "body-path": "pr-body.md",
                            "branch": f"dxforge/{kind.name}-v"
                            "${{ steps.check.outputs.version }}",
                            "commit-message": "updated v${{ steps.check.outputs.version }}",
                            "add-paths": kind.paths,
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


def floor_of(project: Project) -> str:
    """The glibc floor the jobs test at: construct.yaml's, else 2.17."""
    return project.construct.glibc or "2.17"


def render(project: Project) -> dict[Path, str]:
    """The workflow files (relative to the project) and their text. An extension's project
    gets no images workflow (its images are not built by `dxforge images`)."""
    cfg, kind = config(project.root), flavour(project)
    files = {
        WORKFLOWS / "build.yml": _dump(build_workflow(project, cfg)),
        WORKFLOWS / "release-bot.yml": _dump(release_workflow(cfg, kind)),
    }
    if not project.extension:
        files[WORKFLOWS / "images.yml"] = _dump(images_workflow(cfg))
    return files


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


def run_ci(project: Project, check: bool = False) -> CiResult:
    """Write the workflows (only those that change), or with ``check`` list the stale ones."""
    layout = project.layout
    result = CiResult(check=check)
    rendered = render(project)
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
