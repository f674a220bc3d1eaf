"""The ``dxforge`` command line: parses options, calls the logic, renders its typed result.

Every command's result (``status``, ``as_json()``) goes to stdout: as a summary, or with
``--json`` as JSON; its progress goes to stderr, through one :func:`_progress` that is always
closed. Every command's errors are :class:`~dxforge.core.util.DxError`, caught in one place
(:class:`_Group`), printed literally on stderr, with ``--json`` also as a JSON object on stdout.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.console import Console
from typer.core import TyperGroup

from dxforge.cli import render
from dxforge.core.util import DxError
from dxforge.project.layout import BUILD_ENV, Layout

if TYPE_CHECKING:
    from dxforge.project.model import Project

err = Console(stderr=True)
out = Console()

RESUME = {
    "build": "run `dxforge build` again to resume: finished packages are kept",
    "release": "run `dxforge release` again to resume: finished stages are kept",
    "seed": "run `dxforge seed` again to resume: the runtime's components and the converted "
    "wheels built so far are kept in the user cache",
    "fetch": "run `dxforge fetch` again to resume: downloaded sources are kept",
    "test-upstream": "run `dxforge test-upstream` again",
    "ci": "run `dxforge ci --run-local` again",
}
"""How to resume each long command after an interruption (others: run it again)."""
DOING = {
    "build": "building",
    "seed": "building",
    "fetch": "downloading",
    "test-upstream": "testing",
    "release": "working on",
    "ci": "running",
    "e2e": "at",
}


@dataclass
class _Invocation:
    """One command's state, kept on its click context (nothing module-wide): what the error
    handler needs to know."""

    json: bool = False
    error_code: int = 1
    progress: render.ConsoleProgress | None = None


class Interrupted(KeyboardInterrupt):
    """SIGTERM (a CI runner's cancel, a batch system's kill), unwinding like Ctrl-C."""

    def __init__(self, signum: int) -> None:
        super().__init__(f"signal {signum}")
        self.signum = signum


def _invocation(ctx: typer.Context) -> _Invocation:
    obj = ctx.find_object(_Invocation)
    assert obj is not None, "a dxforge command runs inside the dxforge group"
    return obj


def interrupted_message(command: str, progress: render.ConsoleProgress | None) -> str:
    """``interrupted while building diracx-core; run `dxforge build` again to resume: ...``."""
    what = ""
    if progress is not None and progress.running:
        what = f" while {DOING.get(command, 'working on')} {', '.join(progress.running)}"
    elif progress is not None and progress.stage:
        what = f" during: {progress.stage}"
    return f"interrupted{what}; {RESUME.get(command, f'run `dxforge {command}` again')}"


class _Group(TyperGroup):
    """The one place where a command's DxError or interruption becomes a message and an exit
    code."""

    def invoke(self, ctx: Any) -> Any:
        ctx.obj = state = _Invocation()
        try:
            return super().invoke(ctx)
        except DxError as e:
            self._fail(state, str(e), "error")
            raise typer.Exit(state.error_code) from None
        except KeyboardInterrupt as e:
            if state.progress is not None:
                state.progress.close()
            msg = interrupted_message(ctx.invoked_subcommand or "", state.progress)
            self._fail(state, msg, "interrupted")
            signum = e.signum if isinstance(e, Interrupted) else signal.SIGINT
            raise typer.Exit(128 + signum) from None

    @staticmethod
    def _fail(state: _Invocation, msg: str, status: str) -> None:
        if state.json:
            print(json.dumps({"status": status, "error": msg}, indent=2))
        render.line(err, msg if status == "interrupted" else f"error: {msg}", "bold red")


app = typer.Typer(
    cls=_Group,
    add_completion=False,
    no_args_is_help=True,
    help="Distribution builder for DiracX: seed channel, recipes, installer, releases.",
)

RootOpt = Annotated[
    Path | None,
    typer.Option("--root", help="Project directory (holds recipes/ and construct.yaml)."),
]
BuildDirOpt = Annotated[
    Path | None,
    typer.Option(
        "--build-dir", envvar=BUILD_ENV, help="Where outputs go (default: <project>/build)."
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]
IndexOpt = Annotated[
    str | None,
    typer.Option(help="Python package index URL (default: as pip is configured)."),
]


@app.callback()
def _main() -> None:
    """Distribution builder for DiracX: seed channel, recipes, installer, releases."""


def _start(ctx: typer.Context, json_out: bool, error_code: int = 1) -> _Invocation:
    """The command's state: how its errors are printed and with which exit code."""
    state = _invocation(ctx)
    state.json = json_out
    state.error_code = error_code
    return state


def _layout(root: Path | None, build_dir: Path | None) -> Layout:
    return Layout.of(root, build_dir)


def _project(
    root: Path | None,
    build_dir: Path | None,
    construct: Path | None = None,
    platform: str | None = None,
) -> Project:
    """The project the command works on, read once (lazily) and handed to its logic."""
    from dxforge.project.model import Project

    return Project.of(_layout(root, build_dir), construct, platform)


def _print_json(data: object) -> None:
    print(json.dumps(data, indent=2))


@contextlib.contextmanager
def _progress(
    state: _Invocation, label: str, describe: Callable[[str, object], str] | None = None
) -> Iterator[render.ConsoleProgress]:
    """The command's progress on stderr, closed whatever happens."""
    progress = render.ConsoleProgress(err, label, describe)
    state.progress = progress
    try:
        yield progress
    finally:
        progress.close()


@app.command()
def seed(
    ctx: typer.Context,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Channel directory.")] = None,
    index_url: IndexOpt = None,
    refresh: Annotated[
        bool,
        typer.Option(
            "--refresh", help="Resolve the requirements again (ignore the recorded resolution)."
        ),
    ] = False,
    platform: Annotated[
        list[str] | None,
        typer.Option(
            "--platform",
            help="Another subdir to seed besides linux-64 (linux-aarch64): its binary wheels "
            "(repeatable).",
        ),
    ] = None,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Build the offline seed channel: the runtime (python, openssl, git, their libraries),
    the wheels converted under conda-forge names, voms."""
    from dxforge.seed.build import SeedOptions, build_seed

    state = _start(ctx, json_out)
    opts = SeedOptions(
        _project(root, build_dir),
        out_dir,
        index_url,
        refresh=refresh,
        platforms=tuple(platform or ()),
    )
    with _progress(state, "seed") as progress:
        result = build_seed(opts, progress)
    if json_out:
        _print_json(result.as_json())
        return
    if result.status == "up-to-date":
        render.line(out, f"seed channel {result.channel} is up to date")
        return
    rows = [(sub, n, render.mib(size)) for sub, (n, size) in result.subdirs().items()]
    how = "built" if result.status == "built" else "assembled from the user cache"
    render.table(
        out,
        f"seed channel {result.channel}",
        ("subdir", "packages", "size"),
        rows,
        f"{result.count} packages, {render.mib(result.size_bytes)}, {how} in "
        f"{result.seconds:.1f} s (resolution {result.resolution})",
    )


@app.command()
def fetch(
    ctx: typer.Context,
    index_url: IndexOpt = None,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Download each recipe's sdist into the source cache (<build>/sources), sha256-verified."""
    from dxforge.builder.fetch import run_fetch

    state = _start(ctx, json_out)
    project = _project(root, build_dir)
    with _progress(state, "fetch") as progress:
        report = run_fetch(
            project.recipes, project.layout.sources, index_url=index_url, progress=progress
        )
    if json_out:
        _print_json(report.as_json())
        return
    rows = [
        (f.recipe, f.filename, f"{f.size / 1024:.0f} KiB", f.status, f.sha256) for f in report.files
    ]
    render.table(
        out, f"sources in {report.cache}", ("recipe", "file", "size", "status", "sha256"), rows
    )


def _row(item: str, res: object) -> str:
    """The line of one finished item, whatever stage (build, test suites, CI jobs) made it."""
    from dxforge.builder.build import PackageResult
    from dxforge.checks.upstream import SuiteResult
    from dxforge.ci.local import LocalJob

    if isinstance(res, PackageResult):
        text = f"{res.name} {res.version} {res.status}"
        if res.status == "built":
            text += f" in {res.seconds:.1f} s"
        if res.reason and res.status != "failed":
            text += f" ({res.reason})"
        return text
    if isinstance(res, SuiteResult):
        return (
            f"{res.package}: {res.passed} passed, {res.failed} failed, {res.errors} errors, "
            f"{res.skipped} skipped in {res.seconds:.0f} s ({res.log})"
        )
    if isinstance(res, LocalJob):
        matrix = " ".join(f"{k}={v}" for k, v in res.matrix.items())
        return f"{res.name} {matrix}: {res.status} ({res.seconds:.0f} s)".replace(" :", ":")
    return item


@app.command()
def build(
    ctx: typer.Context,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Build only these packages.")
    ] = None,
    up_to: Annotated[
        str | None, typer.Option("--up-to", help="Build this package and what it needs.")
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option("--channel", help="Channel to solve from instead of the seed (repeatable)."),
    ] = None,
    keep_going: Annotated[
        bool, typer.Option("--keep-going", help="Build independent packages after a failure.")
    ] = False,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when up to date.")] = False,
    jobs: Annotated[
        int | None,
        typer.Option(
            "--jobs",
            "-j",
            min=1,
            help="Packages of one graph level built at once (default: the CPU count).",
        ),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output channel.")] = None,
    index_url: IndexOpt = None,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Build the recipes in dependency order into the output channel."""
    from dxforge.builder.build import BuildOptions, run_build

    state = _start(ctx, json_out)
    opts = BuildOptions(
        _project(root, build_dir),
        out=out_dir,
        channels=list(channel or []),
        only=list(only or []),
        up_to=up_to,
        keep_going=keep_going,
        force=force,
        index_url=index_url,
        jobs=jobs or os.cpu_count() or 1,
    )
    with _progress(state, "build", _row) as progress:
        report = run_build(opts, progress)
    if json_out:
        _print_json(report.as_json())
    else:
        rows = [
            (
                r.name,
                r.version,
                r.build_string,
                f"{r.seconds:.1f}",
                f"{r.size_bytes / 1024:.0f} KiB" if r.size_bytes else "",
                r.status + (f" ({r.reason})" if r.reason and r.status != "failed" else ""),
            )
            for r in report.packages
        ]
        render.table(
            out,
            f"dxforge build -> {report.channel}",
            ("package", "version", "build", "seconds", "size", "status"),
            rows,
        )
        render.line(
            out,
            f"{report.count('built')} built, {report.count('cached')} from the user cache, "
            f"{report.count('skipped')} skipped, {report.count('failed')} failed, "
            f"{report.count('not built')} not built in {report.seconds:.1f} s "
            f"(--jobs {report.jobs})",
        )
    for r in report.packages:
        if r.status == "failed":
            render.line(err, f"{r.name} failed: {r.reason}", "red")
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def graph(
    ctx: typer.Context,
    json_out: Annotated[
        bool, typer.Option("--json", help="Print levels, order and edges.")
    ] = False,
    fmt: Annotated[
        str | None, typer.Option("--format", help="Print the graph as mermaid or dot.")
    ] = None,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Show the recipes' dependency graph in build order (edges: dependency -> dependent)."""
    _start(ctx, json_out)
    if fmt not in (None, "mermaid", "dot"):
        raise DxError(f"--format {fmt}: choose mermaid or dot")
    if fmt and json_out:
        raise DxError("--json and --format are exclusive; give one of them")
    g = _project(root, build_dir).graph
    if json_out:
        _print_json(g.as_json())
    elif fmt == "mermaid":
        print(g.mermaid(), end="")
    elif fmt == "dot":
        print(g.dot(), end="")
    else:
        rows = [
            (str(i), name, ", ".join(sorted(g.deps[name])) or "-")
            for i, level in enumerate(g.levels)
            for name in level
        ]
        render.table(
            out, f"recipes {g.version}, in build order", ("level", "package", "requires"), rows
        )


@app.command()
def bump(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Option("--version", help="Target version (default: the newest all have).")
    ] = None,
    index_url: IndexOpt = None,
    pre: Annotated[bool, typer.Option("--pre", help="Consider pre-releases.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Change nothing; exit 1 when an update exists, 0 when current, 2 on error.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show the changes, write nothing.")
    ] = False,
    apply_deps: Annotated[
        bool, typer.Option("--apply-deps", help="Also edit the run requirements to match upstream.")
    ] = False,
    json_out: JsonOpt = False,
    pr_body: Annotated[
        Path | None, typer.Option("--pr-body", help="Write a Markdown pull-request body here.")
    ] = None,
    retries: Annotated[int, typer.Option(help="Retries of a failed index request.")] = 4,
    backoff: Annotated[float, typer.Option(help="First retry delay in seconds (doubles).")] = 0.5,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the index.")] = 30.0,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Move all recipes to a new upstream version in lockstep (sha256, build number, drift).
    In an extension's project: its new release, and DiracX's pin with it (DiracX's drift)."""
    from dxforge.bump import BumpOptions, plan_bump, run_bump
    from dxforge.bump.report import pr_body as make_pr_body
    from dxforge.core.util import atomic_write_text
    from dxforge.extension.bump import plan_extension_bump
    from dxforge.extension.e2e import is_extension_project

    state = _start(ctx, json_out, error_code=2 if check else 1)
    if check and apply_deps:
        raise DxError("--check changes nothing; drop --apply-deps")
    opts = BumpOptions(
        _project(root, build_dir),
        version=version,
        index_url=index_url,
        pre=pre,
        check=check,
        dry_run=dry_run,
        apply_deps=apply_deps,
        full_plan=pr_body is not None,
        retries=max(0, retries),
        backoff=max(0.0, backoff),
        timeout=timeout,
    )
    plan = plan_extension_bump if is_extension_project(opts.layout.root) else plan_bump
    with _progress(state, "bump") as progress:
        result = run_bump(opts, progress, plan)
    if pr_body is not None and result.update:
        atomic_write_text(pr_body, make_pr_body(result))
    if json_out:
        _print_json(result.as_json())
    else:
        print_bump(result, out)
    if check and result.update:
        raise typer.Exit(1)


def print_bump(result: Any, console: Console) -> None:
    """The human summary of a bump: packages, drift, notes and the verdict."""
    from dxforge.bump.report import drift_rows, drift_summary, plain, verdict

    if result.update:
        rows = [
            (
                p.doc.name,
                f"{p.doc.version} -> {result.target}",
                p.doc.sha256,
                p.new_sha256 or "?",
                f"{p.doc.number} -> 0",
                drift_summary(p.drift) or ("none" if p.metadata else "-"),
            )
            for p in result.packages
        ]
        render.table(
            console,
            f"dxforge bump {result.current} -> {result.target}",
            ("package", "version", "old sha256", "new sha256", "build", "drift"),
            rows,
        )
        drift = drift_rows(result)
        if drift:
            render.table(
                console,
                "dependency drift (recipe run requirements vs upstream Requires-Dist)",
                ("package", "requirement", "change", "recipe", "upstream"),
                [(n, c.name, c.kind, plain(c.recipe), plain(c.upstream)) for n, c in drift],
            )
    if result.base is not None and result.base.update:
        render.line(console, f"the DiracX distribution it builds on ({result.base.root}):", "bold")
        print_bump(result.base, console)
    for n in result.notes + [n for p in result.packages for n in p.notes]:
        render.line(console, f"note: {n}", "yellow")
    render.line(console, verdict(result), "bold")


@app.command()
def installer(
    ctx: typer.Context,
    construct: Annotated[
        Path | None, typer.Argument(help="construct.yaml (default: the project's).")
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            "-c",
            help="Channel name, URL or path (repeatable); replaces "
            "construct.yaml's channels except the build's own output channel.",
        ),
    ] = None,
    out_dir: Annotated[Path | None, typer.Option("--out", help="Output directory.")] = None,
    compression: Annotated[
        str,
        typer.Option(
            help="Payload compression: zstd (with the installer's own decoder), gzip or xz."
        ),
    ] = "zstd",
    pyc: Annotated[
        str,
        typer.Option(
            help="The .pyc shipped: imported (what the smoke tests import, "
            "unchecked-hash), unchecked-hash or timestamp (all), or install "
            "(none: compiled by the installer)."
        ),
    ] = "imported",
    force: Annotated[
        bool,
        typer.Option(
            "--force",
            help="Build it even when the user cache holds the installer of this fingerprint.",
        ),
    ] = False,
    platform: Annotated[
        str,
        typer.Option(
            "--platform",
            help="The conda subdir it is for: linux-64 or linux-aarch64 (construct.yaml's "
            "selectors are evaluated for it; named DIRACOS-<v>-Linux-<machine>.sh).",
        ),
    ] = "linux-64",
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Build the DIRACOS-style self-extracting installer from construct.yaml."""
    from dxforge.installer.make import InstallerOptions, build_installer

    state = _start(ctx, json_out)
    opts = InstallerOptions(
        _project(root, build_dir, construct.absolute() if construct else None, platform),
        out=out_dir,
        channels=list(channel or []),
        compression=compression,
        pyc=pyc,
        force=force,
    )
    with _progress(state, "installer") as progress:
        result = build_installer(opts, progress)
    if json_out:
        _print_json(result.as_json())
        return
    reloc = result.relocated_files
    render.fields(
        out,
        f"{result.name} {result.version}",
        [
            ("installer", result.installer),
            ("sha256", result.sha256),
            (
                "size",
                f"{render.mib(result.size)} ({result.compression}; "
                f"{render.mib(result.packages_size)} of packages, "
                f"{render.mib(result.installed_bytes)} installed)",
            ),
            ("packages", len(result.packages)),
            ("lockfile", result.lockfile),
            ("package list", result.package_list),
            (
                "relocated at install",
                f"{reloc['text']} text, {reloc['binary']} binary, "
                f"{reloc['symlink']} symlinks; prefix at most "
                f"{result.max_prefix_len or 'any'} bytes",
            ),
            (
                "glibc floor",
                f"{result.glibc_floor or 'none'} (the files need "
                f"{result.glibc_needed or 'none'}: {result.glibc_file or '-'}; "
                f"{result.elf_files} ELF files checked)",
            ),
            ("smoke tests", ", ".join(result.smoke_tests)),
            (
                "time",
                f"{result.seconds:.1f} s"
                + (
                    " (built before with this fingerprint: copied from the user cache)"
                    if result.status == "cached"
                    else ""
                ),
            ),
        ],
    )


@app.command()
def release(
    ctx: typer.Context,
    version: Annotated[
        str | None, typer.Option("--version", help="Target version (default: the newest all have).")
    ] = None,
    index_url: IndexOpt = None,
    apply_deps: Annotated[
        bool, typer.Option("--apply-deps", help="Apply upstream's new or removed requirements.")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", "-j", min=1, help="Parallel builds (default: CPUs).")
    ] = None,
    pr_body: Annotated[
        Path | None, typer.Option("--pr-body", help="Write the release notes here too (Markdown).")
    ] = None,
    images: Annotated[
        bool,
        typer.Option(
            "--images",
            help="Build the container images too (a stage beside "
            "the installer's; the notes list their digests).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Release DiracX: bump, fetch, build, upstream tests, installer, pilot test, notes, SBOMs,
    publish into <build>/releases/<version> (and `latest`). Run again, it resumes."""
    from dxforge.core.util import atomic_write_text
    from dxforge.release.release import ReleaseOptions, run_release

    state = _start(ctx, json_out)
    opts = ReleaseOptions(
        _layout(root, build_dir),
        version,
        index_url,
        apply_deps,
        jobs or os.cpu_count() or 1,
        images=images,
    )
    with _progress(state, "release", _row) as progress:
        result = run_release(opts, progress)
    if pr_body is not None:
        atomic_write_text(pr_body, (result.directory / "notes.md").read_text())
    if json_out:
        _print_json(result.as_json())
        return
    tests = result.tests.suites
    render.fields(
        out,
        f"DiracX {result.version} released",
        [
            ("directory", result.directory),
            ("installer", result.directory / result.installer.installer.name),
            ("sha256", result.installer.sha256),
            ("previous", result.previous or "none"),
            (
                "upstream tests",
                f"{sum(s.passed for s in tests.values())} passed in {len(tests)} suites",
            ),
            ("pilot install", f"{result.pilot.install_seconds:.1f} s"),
            ("end to end", "; ".join(result.end_to_end.checks)),
            *_release_images_rows(result.notes),
            ("stages", ", ".join(f"{s.name} {s.seconds:.0f} s" for s in result.stages)),
            ("total", f"{result.seconds:.0f} s"),
            ("notes", result.directory / "notes.md"),
        ],
    )


def _release_images_rows(notes: Any) -> list[tuple[str, object]]:
    """The release's images (reference and digest, never cut) and their check's outcome."""
    if notes.images is None:
        return []
    rows: list[tuple[str, object]] = [("image", f"{i.ref} {i.digest}") for i in notes.images]
    check = notes.images_check
    if check is None or check.status != "passed":
        why = check.reason if check else "not run"
        return [*rows, ("images check", f"NOT tested: {why}")]
    return [*rows, ("images check", f"passed: {'; '.join(check.checks)}")]


@app.command("test-upstream")
def test_upstream(
    ctx: typer.Context,
    only: Annotated[
        list[str] | None, typer.Option("--only", help="Run only these packages' suites.")
    ] = None,
    index_url: IndexOpt = None,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Run DiracX's own test suites (from the sdists) against the built channel."""
    from dxforge.checks.upstream import run_project

    state = _start(ctx, json_out)
    project = _project(root, build_dir)
    with _progress(state, "tests", _row) as progress:
        report = run_project(project, index_url=index_url, only=only or (), progress=progress)
    if json_out:
        _print_json(report.as_json())
    else:
        render.table(
            out,
            "DiracX's own test suites",
            ("package", "passed", "failed", "errors", "skipped", "seconds", "log"),
            [
                (s.package, s.passed, s.failed, s.errors, s.skipped, f"{s.seconds:.0f}", s.log)
                for s in report.suites.values()
            ],
            f"{sum(s.passed for s in report.suites.values())} passed in "
            f"{len(report.suites)} suites in {report.seconds:.0f} s",
        )
        for name in report.without_suite:
            render.line(out, f"{name}: its sdist carries no test suite of its own")
    if not report.ok:
        for s in report.suites.values():
            if not s.ok:
                render.line(err, f"{s.package}: its test suite failed; see {s.log}", "red")
        raise typer.Exit(1)


def _installer_path(project: Project, installer: Path | None) -> Path:
    path = installer or project.layout.installer / project.construct.installer_filename
    if not path.is_file():
        raise DxError(f"{path}: no such installer; build it with `dxforge installer` or name one")
    return path.absolute()


InstallerArg = Annotated[
    Path | None, typer.Argument(help="The installer (default: the one dxforge installer made).")
]


@app.command()
def pilot(
    ctx: typer.Context,
    installer: InstallerArg = None,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Install an installer as a pilot would (unprivileged, offline, read-only HOME) and run
    the pilot checks on it."""
    from dxforge.checks.pilot import run_pilot

    _start(ctx, json_out)
    project = _project(root, build_dir)
    path = _installer_path(project, installer)
    result = run_pilot(path, project.layout.logs / f"pilot-{path.stem}.log")
    if json_out:
        _print_json(result.as_json())
        return
    render.fields(
        out,
        f"pilot test of {result.installer}: {result.status}",
        [
            ("install", f"{result.install_seconds:.2f} s"),
            ("isolation", result.isolation),
            *(("check", c) for c in result.checks),
            ("log", result.log),
        ],
    )


@app.command()
def e2e(
    ctx: typer.Context,
    installer: InstallerArg = None,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """DiracX end to end: a server from the channels, the installer's client, a sandbox round
    trip; unprivileged, offline, loopback only. In an extension's project, the server is
    built from its channel and serves its routes, and its dirac command calls one."""
    from dxforge.checks.endtoend import run_end_to_end
    from dxforge.extension.e2e import is_extension_project, run_extension_end_to_end

    state = _start(ctx, json_out)
    project = _project(root, build_dir)
    layout = project.layout
    path = _installer_path(project, installer)
    with _progress(state, "e2e") as progress:
        if is_extension_project(layout.root):
            result = run_extension_end_to_end(project, path, progress)
        else:
            result = run_end_to_end(
                path,
                [layout.channel.as_uri(), layout.seed.as_uri()],
                project.version,
                project.target,
                layout.logs / "e2e",
                layout.work / "pkgs",
                progress,
            )
    if json_out:
        _print_json(result.as_json())
        return
    render.fields(
        out,
        f"end to end with DiracX {result.version}"
        + (f" and {result.extension}" if result.extension else "")
        + f": {result.status}",
        [
            ("isolation", result.isolation),
            *(("check", c) for c in result.checks),
            ("time", f"{result.seconds:.0f} s"),
            ("logs", result.log),
        ],
    )


@app.command()
def ci(
    ctx: typer.Context,
    check: Annotated[
        bool, typer.Option("--check", help="Change nothing; exit 1 naming stale workflows.")
    ] = False,
    run_local: Annotated[
        bool,
        typer.Option(
            "--run-local", help="Run the linux-64 jobs here, two at a time, in needs: order."
        ),
    ] = False,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Render .github/workflows/ from the recipe graph, construct.yaml and pyproject.toml's
    \\[tool.dxforge.ci]."""
    from dxforge.ci import local
    from dxforge.ci.workflows import run_ci

    state = _start(ctx, json_out)
    project = _project(root, build_dir)
    result = run_ci(project, check=check)
    if not run_local or (check and result.stale):
        if json_out:
            _print_json(result.as_json())
        else:
            for p in result.stale if check else []:
                render.line(out, f"stale: {p} (run `dxforge ci`)", "red")
            for p in result.written:
                render.line(out, f"wrote {p}")
            if result.status == "up-to-date":
                render.line(out, "the workflows are up to date")
        if check and result.stale:
            raise typer.Exit(1)
        return
    with _progress(state, "ci", _row) as progress:
        ran = local.run_local(project, progress)
    if json_out:
        _print_json(ran.as_json())
    else:
        render.line(out, f"{len(ran.jobs)} jobs in {ran.seconds:.0f} s")


@app.command()
def index(
    ctx: typer.Context,
    channel: Annotated[Path, typer.Argument(help="A local channel directory.")],
    json_out: JsonOpt = False,
) -> None:
    """(Re)write a local channel's repodata, checking every package against it."""
    from dxforge.conda.channel import reindex_verified

    _start(ctx, json_out)
    result = reindex_verified(channel)
    if json_out:
        _print_json(result.as_json())
    else:
        render.line(out, f"indexed {result.channel}: {result.packages} packages")


@app.command()
def images(
    ctx: typer.Context,
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            "-c",
            help="Channel name, URL or path (repeatable); as for `dxforge installer`.",
        ),
    ] = None,
    bases: Annotated[
        bool,
        typer.Option(
            "--bases/--no-bases",
            help="Build the dated bases (base, "
            "<role>-base); a new YYYY.MM.DD.P tag only when the content changed.",
        ),
    ] = True,
    releases: Annotated[
        bool,
        typer.Option(
            "--releases/--no-releases",
            help="Build the release images (<role>:v<version>) on a named <role>-base tag.",
        ),
    ] = True,
    base_tag: Annotated[
        str | None,
        typer.Option(
            "--base-tag",
            help="The <role>-base tag the release images stand on (default: the latest).",
        ),
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="services, tasks or client (repeatable; default: all three)."),
    ] = None,
    os_layer: Annotated[
        str,
        typer.Option("--os", help="The OS layer: minimal (libc6, dash, tini, tzdata) or minbase."),
    ] = "minimal",
    refresh_os: Annotated[
        bool, typer.Option("--refresh-os", help="Make the OS root again (Debian's updates).")
    ] = False,
    archive: Annotated[
        bool,
        typer.Option("--archive/--no-archive", help="Export the release images as oci-archives."),
    ] = True,
    push: Annotated[
        str | None,
        typer.Option(
            "--push",
            help="REGISTRY/NAMESPACE to push the images to (credentials from the usual auth file).",
        ),
    ] = None,
    tls_verify: Annotated[
        bool, typer.Option("--tls-verify/--no-tls-verify", help="Verify the registry's TLS.")
    ] = True,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Build DiracX's container images (OCI layouts, no daemon) from the channels."""
    from dxforge.images.build import ImagesOptions, build_images
    from dxforge.images.roles import ROLES

    state = _start(ctx, json_out)
    opts = ImagesOptions(
        _project(root, build_dir),
        channels=list(channel or []),
        os=os_layer,
        bases=bases,
        releases=releases,
        base_tag=base_tag,
        roles=tuple(role or ROLES),
        refresh_os=refresh_os,
        archives=archive,
    )
    with _progress(state, "images") as progress:
        result = build_images(opts, progress)
        pushed = None
        if push:
            from dxforge.images.registry import push_images

            pushed = push_images(result, push, tls_verify=tls_verify, progress=progress)
    if json_out:
        _print_json({**result.as_json(), "pushed": pushed.as_json() if pushed else None})
        return
    render.table(
        out,
        f"images in {result.layout} ({result.seconds:.1f} s; tags: {result.tags})",
        ["image", "digest", "compressed", "layers", "base", "status"],
        [
            (i.ref, i.digest, render.mib(i.size), len(i.layers), i.base or "-", i.status)
            for i in result.images
        ],
    )
    if pushed:
        render.table(
            out,
            f"pushed to {pushed.destination}",
            ["image", "digest", "bytes sent"],
            [(p.ref, p.digest, p.bytes_sent) for p in pushed.images],
        )


@app.command()
def fingerprint(
    ctx: typer.Context,
    what: Annotated[str, typer.Argument(help="runtime")],
    platform: Annotated[
        str, typer.Option("--platform", help="The conda subdir: linux-64, linux-aarch64.")
    ] = "linux-64",
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Print a fingerprint (for CI cache keys): `runtime` is the runtime build's."""
    from dxforge.runtime.build import fingerprint as runtime_fingerprint

    _start(ctx, False)
    if what != "runtime":
        raise DxError(f"{what}: dxforge fingerprint knows `runtime`")
    project = _project(root, build_dir)
    print(runtime_fingerprint(project.layout.cache, project.target.python, platform))


def _children() -> list[int]:
    """The pids of this process's children (from /proc: every thread's children)."""
    me, pids = os.getpid(), []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        if len(fields) > 1 and fields[1] == str(me):
            pids.append(int(stat.parent.name))
    return pids


# ---- dxforge extension: a VO's own distribution on top of DiracX -------------------------

extension_app = typer.Typer(
    cls=_Group, no_args_is_help=True, help="A VO's own distribution: DiracX with its extension."
)
app.add_typer(extension_app, name="extension")


@extension_app.command("init")
def extension_init(
    ctx: typer.Context,
    name: Annotated[str, typer.Argument(help="The extension's metapackage on the index.")],
    base: Annotated[
        Path | None,
        typer.Option(
            "--base",
            help="The DiracX distribution project it builds on (a checkout's path); without "
            "it, --base-channel and --base-seed alone.",
        ),
    ] = None,
    dest: Annotated[
        Path | None, typer.Option("--out", help="The new project's folder (default: ./NAME).")
    ] = None,
    version: Annotated[
        str | None, typer.Option(help="The extension's version (default: the newest).")
    ] = None,
    base_channel: Annotated[
        str | None,
        typer.Option(
            "--base-channel", help="DiracX's channel, path or URL (default: the base's build)."
        ),
    ] = None,
    base_seed: Annotated[
        str | None,
        typer.Option("--base-seed", help="The seed of DiracX's channel (default: the base's)."),
    ] = None,
    index_url: IndexOpt = None,
    json_out: JsonOpt = False,
) -> None:
    """Write a distribution project from an extension's packages on the package index."""
    from dxforge.extension.init import InitOptions, init_extension

    state = _start(ctx, json_out)
    opts = InitOptions(name, dest or Path(name), base, base_channel, base_seed, version, index_url)
    with _progress(state, "extension init") as progress:
        result = init_extension(opts, progress)
    if json_out:
        _print_json(result.as_json())
        return
    render.table(
        out,
        f"{result.extension} {result.version} on DiracX {result.diracx} -> {result.project}",
        ("package", "from", "sha256", "entry-point groups"),
        [
            (p.name, p.file.filename, p.sha256, ", ".join(sorted(p.dist.entry_points)))
            for p in result.packages
        ],
    )
    for note in result.notes:
        render.line(out, f"note: {note}", "yellow")
    render.line(
        out,
        f"next: cd {result.project} && dxforge seed && dxforge extension build "
        "&& dxforge installer",
        "bold",
    )


@extension_app.command("build")
def extension_build(
    ctx: typer.Context,
    force: Annotated[bool, typer.Option("--force", help="Rebuild even when up to date.")] = False,
    only: Annotated[
        list[str] | None,
        typer.Option("--only", help="Build only these packages (a CI job builds one)."),
    ] = None,
    index_url: IndexOpt = None,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Build the extension's recipes against DiracX's channel at the version they pin."""
    from dxforge.builder.build import BuildOptions
    from dxforge.extension.build import build_extension

    state = _start(ctx, json_out)
    project = _project(root, build_dir)
    opts = BuildOptions(
        project,
        only=list(only or []),
        force=force,
        index_url=index_url,
        jobs=os.cpu_count() or 1,
    )
    with _progress(state, "extension build", _row) as progress:
        base, report = build_extension(project.layout, opts, progress)
    if json_out:
        _print_json({**report.as_json(), "base_channel": base.channel, "base_seed": base.seed})
    else:
        render.table(
            out,
            f"dxforge extension build -> {report.channel} (DiracX from {base.channel})",
            ("package", "version", "seconds", "status"),
            [
                (
                    r.name,
                    r.version,
                    f"{r.seconds:.1f}",
                    r.status + (f" ({r.reason})" if r.reason else ""),
                )
                for r in report.packages
            ],
        )
    if not report.ok:
        raise typer.Exit(1)


@extension_app.command("images")
def extension_images(
    ctx: typer.Context,
    base_images: Annotated[
        Path | None,
        typer.Option(
            "--base-images",
            help="The DiracX images' directory (oci/ and records/, as `dxforge images` writes "
            "it; default: the DiracX distribution's build/images).",
        ),
    ] = None,
    role: Annotated[
        list[str] | None,
        typer.Option("--role", help="services, tasks or client (repeatable; default: all three)."),
    ] = None,
    archive: Annotated[
        bool,
        typer.Option("--archive/--no-archive", help="Export the images as oci-archives."),
    ] = True,
    check: Annotated[
        bool,
        typer.Option(
            "--check",
            help="Then run the services image (plus the test-only layer) with podman and "
            "check it serves the extension's services ([tool.dxforge.e2e] services).",
        ),
    ] = False,
    json_out: JsonOpt = False,
    root: RootOpt = None,
    build_dir: BuildDirOpt = None,
) -> None:
    """Build the extension's images (<ext>-services, -tasks, -client) on DiracX's release
    images at the version it pins."""
    from dxforge.extension.images import build_extension_images, check_extension_images
    from dxforge.images.roles import ROLES

    state = _start(ctx, json_out)
    project = _project(root, build_dir)
    with _progress(state, "extension images") as progress:
        result = build_extension_images(
            project.layout, base_images, tuple(role or ROLES), archive, progress
        )
        checked = check_extension_images(project.layout, progress=progress) if check else None
    if json_out:
        _print_json({**result.as_json(), "check": checked.as_json() if checked else None})
        return
    render.table(
        out,
        f"{result.extension} {result.version} images on DiracX {result.diracx} in "
        f"{result.layout} ({result.seconds:.1f} s)",
        ["image", "digest", "compressed", f"{result.extension} layer", "base", "base digest"],
        [
            (
                i.ref,
                i.digest,
                render.mib(i.size),
                render.mib(i.layers[-1].size),
                i.base,
                i.base_digest,
            )
            for i in result.images
        ],
    )
    if checked is not None:
        what = "; ".join(checked.checks) if checked.status == "passed" else checked.reason
        render.line(out, f"check: {checked.status}: {what}")


def _terminated(signum: int, _frame: object) -> None:
    """SIGINT or SIGTERM: stop this process's own children too (a build's workers, a test
    suite; a signal sent to this process alone reaches none of them), then unwind, so every
    `finally` runs and the command says what it stopped."""
    for pid in _children():
        with contextlib.suppress(OSError):
            os.kill(pid, signum)
    raise Interrupted(signum)


def main(argv: list[str] | None = None) -> None:
    """Run one dxforge command (``argv``, default: the process's arguments) in this process;
    it ends in SystemExit with the command's exit status (130/143 when interrupted)."""
    signals = (signal.SIGINT, signal.SIGTERM)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = [signal.signal(s, _terminated) for s in signals] if in_main_thread else []
    try:
        app(args=argv, prog_name="dxforge")
    finally:
        for s, handler in zip(signals, previous, strict=False):
            if handler is not None:
                signal.signal(s, handler)


def entry() -> None:
    """The ``dxforge`` console script: :func:`main`, then leave without interpreter teardown
    (py-rattler 0.28 may abort in its atexit handlers after async calls)."""
    code = 0
    try:
        main()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except KeyboardInterrupt:  # before or after a command ran (while parsing its options)
        render.line(err, "interrupted", "red")
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
