"""The recipe of one extension package, in the shape of the DiracX distribution's recipes: its
sdist (or pure-Python wheel) by file name and sha256, run requirements from its Requires-Dist in
conda-forge names with extras expanded, its own family pinned ``==${{ version }}`` and its
DiracX pin kept exact."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet

from dxforge.bump.drift import VERSION_PIN
from dxforge.core.specs import conda_spec
from dxforge.extension.discover import Found, in_family
from dxforge.project.target import Target
from dxforge.pypa.names import conda_name, conda_run_requirements

SOURCES = (
    '${{ env.get("DXFORGE_SOURCES", default="file:///DXFORGE_SOURCES-unset--run-dxforge-fetch") }}'
)
WHEEL_BUILD = "${{ PYTHON }} -m pip install %s -vv --no-deps --no-build-isolation"
SDIST_BUILD = "${{ PYTHON }} -m pip install . -vv --no-deps --no-build-isolation"


def _q(value: str) -> str:
    """A YAML scalar: JSON's double-quoted string is valid YAML."""
    return json.dumps(value)


def python_min(requires_python: str) -> str | None:
    """``3.11`` of ``>=3.11`` (the floor DiracX's recipes keep in context.python_min)."""
    m = re.search(r">=\s*(\d+\.\d+)", requires_python or "")
    return m[1] if m else None


def run_requirements(
    found: Found, family: str, target: Target, lookup: Callable[[str], list[str]] | None
) -> list[str]:
    """The recipe's run requirements: python, then Requires-Dist in conda-forge names (extras
    expanded through ``lookup``), the family pinned :data:`VERSION_PIN`, DiracX's pin kept."""
    meta = found.dist.meta
    floor = python_min(meta.requires_python)
    out = [f"python >={'${{ python_min }}'}" if floor else "python"]
    reqs = conda_run_requirements(meta.requires_dist, target, lookup, meta.source)
    for name, spec in reqs.items():
        if name != "python":
            pin = VERSION_PIN if in_family(name, family) else spec
            out.append(f"{name} {pin}".strip())
    return out


def host_requirements(found: Found) -> list[str]:
    """python and pip, and for an sdist its build system's requirements in conda-forge names."""
    out = ["python ${{ python }}.*", "pip"]
    for line in found.dist.build_requires:
        req = Requirement(line)
        name = conda_name(req.name)
        if name not in ("pip", "python"):
            out.append(conda_spec(name, SpecifierSet(str(req.specifier))))
    return out


def test_imports(found: Found, modules_of: dict[str, list[str]], family: str) -> list[str]:
    """The modules the recipe's test imports: the package's own, else (a metapackage) those of
    the family packages it requires."""
    if found.dist.modules:
        return found.dist.modules
    out: list[str] = []
    for line in found.dist.meta.requires_dist:
        req = Requirement(line)
        if in_family(req.name, family) and req.marker is None:
            out += [m for m in modules_of.get(req.name, []) if m not in out]
    return out


def _templated(filename: str, version: str) -> str:
    return filename.replace(version, "${{ version }}")


def _lines(key: str, items: list[str], indent: str = "    ") -> str:
    return f"{indent[:-2]}{key}:\n" + "".join(f"{indent}- {i}\n" for i in items)


def recipe_text(found: Found, *, extension: str, run: list[str], imports: list[str]) -> str:
    """The recipe.yaml of ``found``."""
    meta = found.dist.meta
    floor = python_min(meta.requires_python)
    source = _templated(found.file.filename, found.version)
    wheel = found.dist.kind == "wheel"
    cli = sorted(found.dist.entry_points.get("diracx.cli", {}))
    text = (
        f"# {extension} {found.name}: made by `dxforge extension init` from its "
        f"{'pure-Python wheel (no sdist published)' if wheel else 'sdist'} on the package\n"
        "# index. The run requirements follow its Requires-Dist under conda-forge names "
        "(extras expanded);\n# the extension's packages are pinned ==${{ version }}, "
        "DiracX's pin is kept exact.\nschema_version: 1\n\ncontext:\n"
        f"  name: {found.name}\n  version: {_q(found.version)}\n"
        + (f"  python_min: {_q(floor)}\n" if floor else "")
        + "\npackage:\n  name: ${{ name }}\n  version: ${{ version }}\n\nsource:\n"
        "  # No host here: dxforge fetch puts the file in build/sources and sets "
        "DXFORGE_SOURCES.\n"
        f"  url: {SOURCES}/{source}\n  sha256: {found.sha256}\n"
        + (f"  file_name: {source}\n" if wheel else "")
        + "\nbuild:\n  number: 0\n  noarch: python\n  script:\n"
        + ("" if wheel else "    env:\n      SETUPTOOLS_SCM_PRETEND_VERSION: ${{ version }}\n")
        + f"    content: {WHEEL_BUILD % source if wheel else SDIST_BUILD}\n"
        "  # pip records the build directory in direct_url.json (PEP 610): not shipped\n"
        '  files:\n    exclude:\n      - "**/*.dist-info/direct_url.json"\n\nrequirements:\n'
        + _lines("host", host_requirements(found))
        + _lines("run", run)
        + "\ntests:\n  - python:\n"
        + (_lines("imports", imports, "        ") if imports else "")
        + "      pip_check: true\n      python_version: ${{ python }}.*\n"
        + "".join(f"  - script:\n      - dirac {c} --help\n" for c in cli)
        + "\nabout:\n"
        + (f"  homepage: {_q(meta.home_page)}\n" if meta.home_page else "")
        + f"  summary: {_q(meta.summary or found.name)}\n"
        + (f"  license: {_q(meta.license)}\n" if meta.license else "")
    )
    return text
