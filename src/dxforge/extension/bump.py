"""The bot for an extension's project: ``dxforge bump`` follows the extension's releases on the
index with DiracX's bump (:func:`dxforge.bump.plan.plan_bump`: one drift model, the family the
extension's). When the new release pins another DiracX version, the base moves with it: the
recipes' DiracX pins and ``diracx`` in ``[tool.dxforge]`` move (whatever ``--apply-deps``
says), and DiracX's own bump to that version is planned on the DiracX distribution (its drift
report, nothing written there: a checkout is not ours to edit)."""

from __future__ import annotations

import re
from dataclasses import replace

from packaging.requirements import Requirement

from dxforge.bump.drift import Change
from dxforge.bump.edit import new_recipe_text
from dxforge.bump.plan import BumpOptions, BumpResult, PackageBump, plan_bump
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError
from dxforge.extension.project import ExtensionProject, read_project
from dxforge.project.layout import Layout
from dxforge.project.model import Project
from dxforge.project.recipes import is_sibling


def pinned_diracx(packages: list[PackageBump]) -> str | None:
    """The one DiracX version the packages' new metadata pin ``==`` (None: none read)."""
    pins: dict[str, list[str]] = {}
    for p in packages:
        for line in p.metadata.requires_dist if p.metadata else []:
            req = Requirement(line)
            specs = list(req.specifier)
            if is_sibling(req.name) and len(specs) == 1 and specs[0].operator == "==":
                pins.setdefault(specs[0].version, []).append(f"{p.doc.name}: {req}")
    if len(pins) > 1:
        listing = "; ".join(f"{v} ({', '.join(w)})" for v, w in sorted(pins.items()))
        raise DxError(
            f"the extension's new packages pin different DiracX versions: {listing}; "
            "nothing was changed"
        )
    return next(iter(pins), None)


def _pin_changes(p: PackageBump) -> list[Change]:
    return [c for c in p.drift if c.kind == "changed" and is_sibling(c.name)]


def pyproject_with_pin(project: ExtensionProject, text: str, new: str) -> str:
    """pyproject.toml's text with ``diracx = "<old>"`` of ``[tool.dxforge]`` set to ``new``."""
    line = re.compile(rf'^diracx = "{re.escape(project.diracx)}"[ \t]*$', re.M)
    if len(line.findall(text)) != 1:
        raise DxError(
            f"{project.root / 'pyproject.toml'}: [tool.dxforge] key diracx: cannot find the line "
            f'diracx = "{project.diracx}" to move it to {new}; set it by hand; nothing was changed'
        )
    return line.sub(f'diracx = "{new}"', text)


def _base_bump(
    project: ExtensionProject, new: str, opts: BumpOptions, progress: Progress
) -> BumpResult | None:
    """DiracX's bump to ``new`` planned on the DiracX distribution (its drift), or None (no
    checkout named)."""
    if project.base is None or not (project.base / "recipes").is_dir():
        return None
    progress.step(f"DiracX's bump to {new} on {project.base}")
    base = replace(
        opts,
        project=Project.of(Layout.of(project.base)),
        version=new,
        check=True,
        dry_run=False,
        apply_deps=False,
        full_plan=True,
    )
    return plan_bump(base, progress)


def _move_base(
    result: BumpResult, project: ExtensionProject, new: str, opts: BumpOptions, progress: Progress
) -> None:
    """The recipes' DiracX pins, ``[tool.dxforge] diracx`` and the base's drift report."""
    for p in result.packages:
        pins = _pin_changes(p)
        if p.new_text and pins and not opts.apply_deps:
            assert p.new_sha256 is not None
            p.new_text = new_recipe_text(
                p.doc, result.target, p.new_sha256, pins, bool(p.drift_incomplete), True
            )
    result.notes.append(
        f"the recipes' DiracX pins and [tool.dxforge] diracx moved {project.diracx} -> {new} "
        "with the extension (the drift rows of DiracX's packages are applied, --apply-deps or not)"
    )
    path = project.root / "pyproject.toml"
    old = path.read_bytes().decode("utf-8")
    result.other_changes.append((path, old, pyproject_with_pin(project, old, new)))
    result.base = _base_bump(project, new, opts, progress)
    where = f" of {project.base}" if project.base else ""
    if result.base is None:
        result.notes.append(
            f"DiracX moves {project.diracx} -> {new}; no DiracX distribution checkout is named "
            "(base), so DiracX's drift is not reported"
        )
    elif result.base.update:
        result.notes.append(
            f"DiracX moves {project.diracx} -> {new} with the extension; `dxforge extension "
            f"build` needs DiracX {new}: `dxforge release --version {new} --root "
            f"{project.base}` builds it (the DiracX recipes{where} are left at "
            f"{result.base.current})"
        )


def plan_extension_bump(opts: BumpOptions, progress: Progress = SILENT) -> BumpResult:
    """DiracX's bump plan for the extension's recipes, and the base moved with its pin."""
    project = read_project(opts.layout.root)
    result = plan_bump(opts, progress)
    if not result.update:
        return result
    new = pinned_diracx(result.packages)
    if new is None:
        if any(p.metadata for p in result.packages):
            result.notes.append("the extension's new packages pin no DiracX version")
        return result
    if new != project.diracx:
        _move_base(result, project, new, opts, progress)
    return result
