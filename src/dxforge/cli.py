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
    console.print(f"[bold red]error:[/] {e}")
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
        out=(out or base / "build/channels/seed").resolve(),
        python=python,
        index_url=index_url,
    )
    try:
        summary = build_seed(opts, console=console)
    except DxError as e:
        raise _fail(e) from None
    if json_out:
        print(json.dumps(summary, indent=2))


def main() -> None:
    """Entry point: run the app, then leave without interpreter teardown (py-rattler 0.28 may
    abort in its atexit handlers after async calls)."""
    code = 0
    try:
        app(standalone_mode=False)
    except typer.Exit as e:
        code = e.exit_code
    except SystemExit as e:
        code = e.code if isinstance(e.code, int) else 1
    except DxError as e:
        console.print(f"[bold red]error:[/] {e}")
        code = 1
    except KeyboardInterrupt:
        console.print("[red]interrupted[/]")
        code = 130
    except Exception as e:  # click usage errors and the like
        import click

        if isinstance(e, click.ClickException):
            e.show()
            code = e.exit_code
        else:
            raise
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
