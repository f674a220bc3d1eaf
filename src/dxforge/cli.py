"""The ``dxforge`` command line."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from dxforge.util import DxError, project_root

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Distribution builder for DiracX: seed channel, recipes, installer, version bumps.",
)
console = Console(stderr=True)

RootOpt = Annotated[
    Path | None,
    typer.Option("--root", help="Project directory (holds recipes/ and construct.yaml)."),
]


@app.callback()
def _main() -> None:
    """Distribution builder for DiracX: seed channel, recipes, installer, version bumps."""


def _root(root: Path | None) -> Path:
    return (root or project_root()).resolve()


def _fail(e: Exception) -> typer.Exit:
    from rich.markup import escape

    console.print(f"[bold red]error:[/] {escape(str(e))}", soft_wrap=True)
    return typer.Exit(1)


@app.command()
def seed(
    out: Annotated[Path | None, typer.Option(help="Channel directory.")] = None,
    python: Annotated[
        Path | None, typer.Option("--python", help="Interpreter to repackage (default: this one).")
    ] = None,
    index_url: Annotated[str | None, typer.Option(help="Python package index URL.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    root: RootOpt = None,
) -> None:
    """Build the offline seed channel (python, converted wheels, voms)."""
    from dxforge.seed.build import SeedOptions, build_seed

    base = _root(root)
    opts = SeedOptions(
        root=base,
        out=(out or base / "build/channels/seed").absolute(),
        python=python,
        index_url=index_url,
    )
    try:
        summary = build_seed(opts, console=console)
    except DxError as e:
        raise _fail(e) from None
    if json_out:
        print(json.dumps(summary, indent=2))


@app.command()
def fetch(
    index_url: Annotated[str | None, typer.Option(help="Python package index URL.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    root: RootOpt = None,
) -> None:
    """Download each recipe's sdist into the source cache (build/sources), sha256-verified."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn
    from rich.table import Table

    from dxforge.fetch import fetch_sources, source_cache, sources_url
    from dxforge.recipes import load_recipes

    base = _root(root)
    cache = source_cache(base)
    try:
        recipes = load_recipes(base)
        with Progress(
            TextColumn("fetch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.description}"),
            console=console,
            transient=True,
            disable=json_out,
        ) as bar:
            task = bar.add_task("", total=len(recipes))
            results = fetch_sources(
                recipes,
                cache,
                index_url=index_url,
                on_done=lambda f: bar.update(task, advance=1, description=f.filename),
            )
    except DxError as e:
        raise _fail(e) from None
    if json_out:
        summary = {
            "cache": str(cache),
            "sources_url": sources_url(base),
            "files": [f.as_dict() for f in results],
        }
        print(json.dumps(summary, indent=2))
        return
    table = Table(title=f"sources in {cache}")
    for col in ("recipe", "file", "size", "status"):
        table.add_column(col, justify="right" if col == "size" else "left", no_wrap=col == "file")
    for f in results:
        table.add_row(f.recipe, f.filename, f"{f.size / 1024:.0f} KiB", f.status)
    console.print(table)


@app.command()
def build(
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
    out: Annotated[Path | None, typer.Option(help="Output channel directory.")] = None,
    index_url: Annotated[
        str | None, typer.Option(help="Python package index URL (to fetch sources).")
    ] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
    root: RootOpt = None,
) -> None:
    """Build the recipes in dependency order into the output channel."""
    from rich.live import Live
    from rich.markup import escape
    from rich.table import Table

    from dxforge.build import BuildOptions, PackageResult, run_build

    base = _root(root)
    opts = BuildOptions(
        root=base,
        out=(out or base / "build/channels/dxforge").absolute(),
        channels=list(channel or []),
        only=list(only or []),
        up_to=up_to,
        keep_going=keep_going,
        force=force,
        index_url=index_url,
    )
    rows: list[PackageResult] = []
    state = {"current": "", "total": 0}

    def render() -> Table:
        t = Table(title=f"dxforge build -> {opts.out}")
        for col in ("package", "version", "build", "seconds", "size", "status"):
            t.add_column(col, justify="right" if col in ("seconds", "size") else "left")
        for r in rows:
            style = {"built": "green", "skipped": "dim", "failed": "red"}.get(r.status, "yellow")
            status = r.status + (f" ({r.reason})" if r.reason and r.status != "failed" else "")
            t.add_row(
                r.name,
                r.version,
                r.build_string,
                f"{r.seconds:.1f}",
                f"{r.size_bytes / 1024:.0f} KiB" if r.size_bytes else "",
                f"[{style}]{escape(status)}[/]",
            )
        if state["current"]:
            t.caption = f"building {state['current']} ({len(rows) + 1}/{state['total']}) ..."
        return t

    live = Live(render(), console=console, refresh_per_second=4, transient=json_out)

    def on_event(kind: str, res: PackageResult | None, total: int) -> None:
        state["total"] = total
        if kind == "start":  # not before: an error in the recipes shows no empty table
            live.start(refresh=True)
        if kind == "building" and res is not None:
            state["current"] = res.name
        elif kind == "done" and res is not None:
            rows.append(res)
            state["current"] = ""
        live.update(render())

    try:
        report = run_build(opts, on_event)
    except DxError as e:
        raise _fail(e) from None
    finally:
        live.stop()
    if json_out:
        print(json.dumps(report.as_json(), indent=2))
    console.print()
    for r in report.packages:
        if r.status == "failed":
            console.print(f"[red]{r.name} failed:[/] {escape(r.reason)}", soft_wrap=True)
    console.print(
        f"{sum(r.status == 'built' for r in report.packages)} built, "
        f"{sum(r.status == 'skipped' for r in report.packages)} skipped, "
        f"{sum(r.status == 'failed' for r in report.packages)} failed, "
        f"{sum(r.status == 'not built' for r in report.packages)} not built "
        f"in {report.seconds:.1f} s"
    )
    if not report.ok:
        raise typer.Exit(1)


@app.command()
def graph(
    json_out: Annotated[
        bool, typer.Option("--json", help="Print levels, order and edges.")
    ] = False,
    fmt: Annotated[
        str | None, typer.Option("--format", help="Print the graph as mermaid or dot.")
    ] = None,
    root: RootOpt = None,
) -> None:
    """Show the recipes' dependency graph in build order (edges: dependency -> dependent)."""
    from rich.table import Table

    from dxforge.graph import load_graph

    if fmt not in (None, "mermaid", "dot"):
        raise _fail(DxError(f"--format {fmt}: choose mermaid or dot"))
    if fmt and json_out:
        raise _fail(DxError("--json and --format are exclusive; give one of them"))
    try:
        g, _ = load_graph(_root(root))
    except DxError as e:
        raise _fail(e) from None
    if json_out:
        print(json.dumps(g.as_json(), indent=2))
    elif fmt == "mermaid":
        print(g.mermaid(), end="")
    elif fmt == "dot":
        print(g.dot(), end="")
    else:
        table = Table(title=f"recipes {g.version}, in build order")
        table.add_column("level", justify="right")
        table.add_column("packages")
        table.add_column("requires")
        for i, level in enumerate(g.levels):
            for j, name in enumerate(level):
                table.add_row(
                    str(i) if j == 0 else "", name, ", ".join(sorted(g.deps[name])) or "-"
                )
        Console().print(table)


@app.command()
def bump(
    version: Annotated[
        str | None, typer.Option("--version", help="Target version (default: the newest all have).")
    ] = None,
    index_url: Annotated[str | None, typer.Option(help="Python package index URL.")] = None,
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
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON result.")] = False,
    pr_body: Annotated[
        Path | None, typer.Option("--pr-body", help="Write a Markdown pull-request body here.")
    ] = None,
    retries: Annotated[int, typer.Option(help="Retries of a failed index request.")] = 4,
    backoff: Annotated[float, typer.Option(help="First retry delay in seconds (doubles).")] = 0.5,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for the index.")] = 30.0,
    root: RootOpt = None,
) -> None:
    """Move all recipes to a new upstream version in lockstep (sha256, build number, drift)."""
    from rich.console import Console as _Console

    from dxforge.bump import BumpOptions, print_result, run_bump
    from dxforge.bump import pr_body as make_pr_body
    from dxforge.util import atomic_write_text

    fail_code = 2 if check else 1
    if check and apply_deps:
        console.print("[bold red]error:[/] --check changes nothing; drop --apply-deps")
        raise typer.Exit(fail_code)
    opts = BumpOptions(
        root=_root(root),
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
    try:
        with console.status("dxforge bump") as status:
            result = run_bump(opts, log=lambda msg: status.update(msg))
        if pr_body is not None and result.update:
            atomic_write_text(pr_body, make_pr_body(result))
    except DxError as e:
        if json_out:
            print(json.dumps({"status": "error", "error": str(e)}, indent=2))
        console.print(f"[bold red]error:[/] {e}")
        raise typer.Exit(fail_code) from None
    if json_out:
        print(json.dumps(result.as_dict(), indent=2))
    else:
        print_result(result, _Console())
    if check and result.update:
        raise typer.Exit(1)


@app.command()
def installer(
    construct: Annotated[
        Path | None, typer.Argument(help="construct.yaml (default: the project's).")
    ] = None,
    channel: Annotated[
        list[str] | None,
        typer.Option(
            "--channel",
            "-c",
            help="Channel name, URL or path (repeatable); replaces "
            "construct.yaml's channels except the project's build/channels/dxforge.",
        ),
    ] = None,
    out: Annotated[Path | None, typer.Option(help="Output directory.")] = None,
    compression: Annotated[
        str, typer.Option(help="Payload compression: gzip, xz or zstd.")
    ] = "gzip",
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    root: RootOpt = None,
) -> None:
    """Build the DIRACOS-style self-extracting installer from construct.yaml."""
    from rich.table import Table

    from dxforge.installer.make import InstallerOptions, build_installer

    base = _root(root)
    opts = InstallerOptions(
        root=base,
        construct=(construct or base / "construct.yaml").resolve(),
        out=(out or base / "build/installer").resolve(),
        channels=list(channel or []),
        compression=compression,
    )
    try:
        summary = build_installer(opts, console=console)
    except DxError as e:
        raise _fail(e) from None
    if json_out:
        print(json.dumps(summary, indent=2))
        return
    mib = 1024 * 1024
    table = Table(title=f"{summary['name']} {summary['version']}")
    table.add_column("output")
    table.add_column("value")
    table.add_row("installer", summary["installer"])
    table.add_row(
        "size",
        f"{summary['size'] / mib:.1f} MiB ({summary['compression']}; "
        f"{summary['packages_size'] / mib:.1f} MiB of packages, "
        f"{summary['installed_bytes'] / mib:.1f} MiB installed)",
    )
    table.add_row("sha256", summary["sha256"])
    table.add_row("packages", f"{len(summary['packages'])} (lockfile {summary['lockfile']})")
    reloc = summary["relocated_files"]
    table.add_row(
        "relocated at install",
        f"{reloc['text']} text, {reloc['binary']} binary, "
        f"{reloc['symlink']} symlinks; prefix at most "
        f"{summary['max_prefix_len'] or 'any'} bytes",
    )
    table.add_row("smoke tests", ", ".join(summary["smoke_tests"]))
    table.add_row("time", f"{summary['seconds']} s")
    console.print(table)


def main() -> None:
    """Entry point: run the app, then leave without interpreter teardown (py-rattler 0.28 may
    abort in its atexit handlers after async calls)."""
    code = 0
    try:
        app()
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except DxError as e:
        console.print(f"[bold red]error:[/] {e}")
        code = 1
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        code = 130
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
