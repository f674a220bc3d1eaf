"""An extension's end to end: DiracX's (:func:`dxforge.checks.endtoend.run_end_to_end`) with the
server built from the extension's channel (its packages, then DiracX's channel at the pinned
version and the seeds), its routes served, and its ``dirac`` command calling one of them."""

from __future__ import annotations

from pathlib import Path

from dxforge.checks.endtoend import EndToEndResult, ExtensionCheck, run_end_to_end
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError
from dxforge.extension.build import base_channels
from dxforge.extension.project import ExtensionProject, read_project
from dxforge.project.model import Project, tool_settings


def is_extension_project(root: Path) -> bool:
    """Whether ``root``'s pyproject.toml names an extension in ``[tool.dxforge]`` (a file that
    is not TOML: no)."""
    try:
        return "extension" in tool_settings(root)
    except DxError:
        return False


def extension_check(project: ExtensionProject, versions: dict[str, str]) -> ExtensionCheck:
    """The extension's part of the end to end: its server packages at their recipes'
    versions (``versions``: recipe name -> version)."""
    path = project.root / "pyproject.toml"
    specs = []
    for name in project.e2e.server:
        if name not in versions:
            raise DxError(
                f"{path}: [tool.dxforge.e2e] server names {name}, which has no recipe in "
                f"{project.root / 'recipes'}; name the extension's packages"
            )
        specs.append(f"{name} =={versions[name]}")
    if not project.e2e.services:
        raise DxError(
            f"{path}: [tool.dxforge.e2e] services is empty; name the extension's services "
            "(its diracx.services entry points) the server must serve"
        )
    return ExtensionCheck(
        project.extension, specs, project.e2e.services, project.e2e.command, project.e2e.expect
    )


def run_extension_end_to_end(
    dist: Project, installer: Path, progress: Progress = SILENT
) -> EndToEndResult:
    """DiracX's end to end on the extension's distribution project, with its installer."""
    layout, target = dist.layout, dist.target
    project = read_project(layout.root)
    check = extension_check(project, {r.name: r.version for r in dist.recipes})
    base = base_channels(project)
    channels = [layout.channel.as_uri(), base.channel, base.seed, layout.seed.as_uri()]
    return run_end_to_end(
        installer,
        channels,
        project.diracx,
        target,
        layout.logs / "e2e",
        layout.work / "pkgs",
        progress,
        extension=check,
    )
