"""What the seed must contain, computed from the recipes and ``construct.yaml``."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from dxforge.core.specs import pep440_specifier, split_spec
from dxforge.project.recipes import is_sibling
from dxforge.pypa.names import pypi_name
from dxforge.runtime.components import runtime_packages
from dxforge.runtime.libs import runtime_libraries


@dataclass
class SeedPlan:
    """The seed's inputs: the PyPI requirements (PEP 508) besides what the runtime builds."""

    requirements: list[str] = field(default_factory=list)
    sources: dict[str, list[str]] = field(default_factory=dict)
    """conda spec -> where it was asked for (for error messages)."""


def plan(
    root: Path,
    siblings: set[str],
    recipe_reqs: dict[str, list[str]],
    construct_specs: list[str],
    pypi: dict[str, list[str]] | None = None,
) -> SeedPlan:
    """Collect every non-sibling requirement of the recipes and of ``construct.yaml``, and pip
    (which the seed's python depends on)."""
    out = SeedPlan()
    merged: dict[str, list[str]] = {}
    asked: list[tuple[str, str]] = [
        (s, where) for where, specs in recipe_reqs.items() for s in specs
    ]
    asked += [(s, f"{root / 'construct.yaml'}: specs") for s in construct_specs]
    for spec, where in asked:
        name, version = split_spec(spec, where)
        if name in siblings or is_sibling(name) or name.startswith("__"):
            continue  # DiracX's packages come from its channel (an extension's project)
        out.sources.setdefault(spec, []).append(where)
        if name in runtime_packages() or name in runtime_libraries():
            continue
        pep = pep440_specifier(version, f"{where}: {spec}")
        merged.setdefault(pypi_name(name), [])
        if pep and pep not in merged[pypi_name(name)]:
            merged[pypi_name(name)].append(pep)
    for where, lines in (pypi or {}).items():  # already PEP 508 (the upstream test suites')
        for line in lines:
            req = Requirement(line)
            name = canonicalize_name(req.name)
            if name in siblings or is_sibling(name):
                continue
            out.sources.setdefault(line, []).append(where)
            extras = f"[{','.join(sorted(req.extras))}]" if req.extras else ""
            key = name + extras
            merged.setdefault(key, [])
            if str(req.specifier) and str(req.specifier) not in merged[key]:
                merged[key].append(str(req.specifier))
    if "pip" not in merged:  # the seed's python depends on pip, as conda-forge's does
        merged["pip"] = []
        out.sources["pip"] = ["the seed's python (it depends on pip)"]
    out.requirements = [name + ",".join(specs) for name, specs in sorted(merged.items())]
    return out
