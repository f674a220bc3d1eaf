"""An extension's distribution project: its construct.yaml and pyproject.toml as written by
``dxforge extension init``, and ``[tool.dxforge]`` read back (the extension, the DiracX version
it pins, and the DiracX distribution it builds on)."""

from __future__ import annotations

import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from dxforge.ci.workflows import DEFAULTS
from dxforge.core.util import DxError
from dxforge.extension.base import Base

KEYS = ("extension", "diracx", "base", "base-channel", "base-seed")

SERVER_GROUPS = ("diracx.services", "diracx.access_policies", "diracx.dbs.sql", "diracx.dbs.os")
"""Entry-point groups that make a package part of DiracX's server."""


@dataclass(frozen=True)
class EndToEnd:
    """``[tool.dxforge.e2e]``: what ``dxforge e2e`` serves and calls of the extension."""

    server: list[str] = field(default_factory=list)  # its packages the server installs
    services: list[str] = field(default_factory=list)  # diracx.services names
    command: list[str] = field(default_factory=list)  # a dirac command calling a route
    expect: str = ""  # text that command's output holds

    def toml_lines(self) -> list[str]:
        return [
            "",
            "# `dxforge e2e`: the extension's packages DiracX's server installs, its services",
            "# (their /api/<service> routes must be served), and a `dirac` command of the",
            "# extension that calls one of its routes, with a text its output holds (empty:",
            '# not run), e.g. command = ["hello", "greet"].',
            "[tool.dxforge.e2e]",
            f"server = {_toml(self.server)}",
            f"services = {_toml(self.services)}",
            f"command = {_toml(self.command)}",
            f"expect = {_toml(self.expect)}",
        ]


def _strings(value: object, key: str, path: Path) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise DxError(f"{path}: [tool.dxforge.e2e] {key} must be a list of strings")
    return list(value)


def read_e2e(tool: dict[str, object], path: Path) -> EndToEnd:
    """``[tool.dxforge.e2e]`` of ``tool`` (the ``[tool.dxforge]`` table of ``path``)."""
    raw = tool.get("e2e", {})
    if not isinstance(raw, dict):
        raise DxError(f"{path}: [tool.dxforge] e2e must be a table")
    expect = raw.get("expect", "")
    if not isinstance(expect, str):
        raise DxError(f"{path}: [tool.dxforge.e2e] expect must be a string")
    lists = {k: _strings(raw.get(k, []), k, path) for k in ("server", "services", "command")}
    if lists["command"] and not expect:
        raise DxError(
            f"{path}: [tool.dxforge.e2e] command is set but expect is empty; set expect to "
            "a text the command's output holds"
        )
    return EndToEnd(lists["server"], lists["services"], lists["command"], expect)


@dataclass(frozen=True)
class ExtensionProject:
    """``[tool.dxforge]`` of an extension's project."""

    root: Path
    extension: str
    diracx: str  # the DiracX version its packages pin
    base: Path | None  # the DiracX distribution project
    base_channel: str  # where DiracX's packages are (URL)
    base_seed: str  # where their requirements are (URL)
    e2e: EndToEnd = field(default_factory=EndToEnd)


def _toml(value: object) -> str:
    """``value`` in TOML: strings, numbers and booleans as JSON writes them, lists as arrays,
    tables inline."""
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{k} = {_toml(v)}" for k, v in value.items()) + " }"
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(value)


def read_project(root: Path) -> ExtensionProject:
    """The extension settings of the project at ``root``; a project without them is an error."""
    path = Path(root) / "pyproject.toml"
    try:
        tool = tomllib.loads(path.read_text()).get("tool", {}).get("dxforge", {})
    except FileNotFoundError:
        raise DxError(
            f"{path}: not found; run `dxforge extension init` to make an extension's "
            "project, or --root to name one"
        ) from None
    except tomllib.TOMLDecodeError as e:
        raise DxError(f"{path}: not valid TOML ({e})") from None
    missing = [k for k in ("extension", "diracx", "base-channel", "base-seed") if k not in tool]
    if missing:
        raise DxError(
            f"{path}: [tool.dxforge] lacks {', '.join(missing)}; not an extension's "
            "project (`dxforge extension init` writes them)"
        )
    base = tool.get("base")
    return ExtensionProject(
        Path(root),
        str(tool["extension"]),
        str(tool["diracx"]),
        (Path(root) / base).resolve() if base else None,
        str(tool["base-channel"]),
        str(tool["base-seed"]),
        read_e2e(tool, path),
    )


def pyproject_text(
    extension: str, diracx: str, base: Base, ci: dict[str, object], e2e: EndToEnd | None = None
) -> str:
    """The project's pyproject.toml: the extension settings and the CI configuration."""
    lines = [
        f"# The {extension} distribution: DiracX with the {extension} extension, built by dxforge",
        "# (`pip install dxforge`; every command runs in this folder).",
        "[tool.dxforge]",
        f"extension = {_toml(extension)}",
        "# The DiracX version the extension's packages pin; its channel must hold exactly it.",
        f"diracx = {_toml(diracx)}",
        "# The DiracX distribution it builds on: its project, its channel and its seed.",
        *([f"base = {_toml(str(base.root))}"] if base.root else []),
        f"base-channel = {_toml(base.channel)}",
        f"base-seed = {_toml(base.seed)}",
        "",
        "# `dxforge ci` renders .github/workflows from this (keys as in the DiracX distribution).",
        "[tool.dxforge.ci]",
    ]
    lines += [f"{key} = {_toml(value)}" for key, value in {**DEFAULTS, **ci}.items()]
    lines += (e2e or EndToEnd()).toml_lines()
    return "\n".join(lines) + "\n"


INSTALLER_FILES = {
    "post_install": "installer/post_install.sh",
    "license_file": "installer/LICENSE.txt",
}
"""Where the project keeps the files its construct.yaml names, copied from DiracX's."""


def installer_files(base: Base) -> dict[str, str]:
    """construct.yaml key -> the project's path of each file DiracX's construct.yaml names (the
    post-install script writes diracosrc, which pilots source)."""
    return {k: v for k, v in INSTALLER_FILES.items() if k in base.files}


def construct_text(extension: str, version: str, base: Base) -> str:
    """The construct.yaml of the extension's installer: named after it, with DiracX's Python,
    voms and git, from its own channel, DiracX's and the seeds."""
    specs = [
        base.specs["python"],
        "pip",
        base.specs["git"],
        base.specs["voms"],
        f"{extension} =={version}",
    ]
    virtual = "".join(f"  - {v}  # [linux]\n" for v in base.virtual_specs)
    return (
        f"# The installer of the {extension} distribution: DiracX with the {extension} "
        "extension, in\n# conda constructor's format. Made by `dxforge extension init`; "
        "build it with `dxforge installer`.\n"
        f"name: {extension}\nversion: {version}\n\n"
        "# This project's packages, then the DiracX distribution's channel and seed, then the "
        "seed of\n# what the extension needs beyond DiracX (`dxforge seed`).\nchannels:\n"
        "  - ./build/channels/dxforge\n"
        f"  - {base.channel}\n  - {base.seed}\n  - ./build/channels/seed\n\n"
        "write_condarc: true\nconda_default_channels:\n  - conda-forge\n\n"
        + "".join(f"{key}: {path}\n" for key, path in installer_files(base).items())
        + f'default_prefix: "${{PWD}}/{extension}"\nbatch_mode: true\nregister_envs: false\n'
        f"keep_pkgs: false\ninstaller_filename: {extension}-{version}-Linux-x86_64.sh\n\n"
        + (f"virtual_specs:\n{virtual}\n" if virtual else "")
        + "# Python, voms and git as in the DiracX distribution's construct.yaml.\nspecs:\n"
        + "".join(f"  - {s}\n" for s in specs)
    )
