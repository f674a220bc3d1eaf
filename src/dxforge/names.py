"""PyPI -> conda-forge names, and a distribution's Requires-Dist -> conda-forge run requirements
(markers evaluated for the target, extras expanded). The map is data in ``dxforge/data/``."""

from __future__ import annotations

import platform
import sys
from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib import resources

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from ruamel.yaml import YAML

from dxforge.specs import conda_specifier
from dxforge.util import DxError

_FULL = platform.python_version() if sys.version_info[:2] == (3, 11) else "3.11.0"

# Marker environment of the only target we build for: CPython 3.11 on linux-64 (the patch level
# is the resolving interpreter's, so that conversions agree with pip's resolution).
TARGET_ENV: dict[str, str] = {
    "implementation_name": "cpython",
    "implementation_version": _FULL,
    "os_name": "posix",
    "platform_machine": "x86_64",
    "platform_python_implementation": "CPython",
    "platform_release": "",
    "platform_system": "Linux",
    "platform_version": "",
    "python_full_version": _FULL,
    "python_version": "3.11",
    "sys_platform": "linux",
}


@lru_cache(maxsize=1)
def name_map() -> dict[str, str]:
    """The PyPI -> conda-forge map: grayskull's data, then our overrides."""
    yaml = YAML(typ="safe")
    merged: dict[str, str] = {}
    for fname in ("conda_forge_names.yaml", "dxforge_overrides.yaml"):
        text = resources.files("dxforge").joinpath("data").joinpath(fname).read_text()
        merged.update({canonicalize_name(k): str(v) for k, v in (yaml.load(text) or {}).items()})
    return merged


@lru_cache(maxsize=1)
def _reverse_map() -> dict[str, str]:
    return {v: k for k, v in name_map().items()}


def conda_name(pypi_name: str) -> str:
    """The conda-forge name of a PyPI distribution (msgpack -> msgpack-python)."""
    norm = canonicalize_name(pypi_name)
    return name_map().get(norm, norm)


def pypi_name(conda: str) -> str:
    """The PyPI name of a conda-forge package name (the inverse of :func:`conda_name`)."""
    return _reverse_map().get(conda, conda)


def set_target_python(version: str) -> None:
    """Evaluate markers for this CPython 3.11 patch release (the seed's own python)."""
    TARGET_ENV["python_full_version"] = TARGET_ENV["implementation_version"] = version


def marker_applies(marker: Marker | None, extras: Iterable[str] = ()) -> bool:
    """Whether ``marker`` holds on the target for any of ``extras`` (or for no extra)."""
    if marker is None:
        return True
    for extra in ("", *extras):
        if marker.evaluate({**TARGET_ENV, "extra": extra}):
            return True
    return False


def parse_requirement(text: str, where: str = "") -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as e:
        raise DxError(f"{where or 'requirement'}: cannot parse {text!r}: {e}") from None


ExtrasLookup = Callable[[str], list[str]]
"""Given a PyPI name, the Requires-Dist lines of that distribution (to expand its extras)."""


def base_requirements(requires_dist: Iterable[str], where: str = "") -> list[Requirement]:
    """The Requires-Dist entries that apply on the target without any extra."""
    out = []
    for line in requires_dist:
        req = parse_requirement(line, where)
        if marker_applies(req.marker):
            out.append(req)
    return out


def extra_requirements(
    requires_dist: Iterable[str], extra: str, where: str = ""
) -> list[Requirement]:
    """The Requires-Dist entries brought in by ``extra`` (and only by it) on the target."""
    out = []
    for line in requires_dist:
        req = parse_requirement(line, where)
        if req.marker is None or marker_applies(req.marker):
            continue
        if marker_applies(req.marker, [extra]):
            out.append(req)
    return out


def expand(req: Requirement, lookup: ExtrasLookup | None, where: str = "") -> list[Requirement]:
    """``req`` with its extras replaced by the requirements they bring, recursively
    (``redis[hiredis]`` -> ``redis``, ``hiredis>=3``)."""
    result: list[Requirement] = []
    seen: set[tuple[str, str]] = set()

    def walk(r: Requirement) -> None:
        name = canonicalize_name(r.name)
        plain = Requirement(str(r))
        plain.extras = set()
        plain.marker = None
        result.append(plain)
        for extra in sorted(r.extras):
            if (name, extra) in seen:
                continue
            seen.add((name, extra))
            if lookup is None:
                raise DxError(f"{where}: {r} asks for extra [{extra}] but no metadata is at hand")
            for sub in extra_requirements(lookup(name), extra, f"{name}[{extra}]"):
                walk(sub)

    walk(req)
    return result


def merge(reqs: Iterable[Requirement]) -> dict[str, SpecifierSet]:
    """Requirements grouped by conda-forge name, specifier sets intersected, order kept."""
    merged: dict[str, SpecifierSet] = {}
    for r in reqs:
        name = conda_name(r.name)
        merged[name] = merged.get(name, SpecifierSet()) & r.specifier
    return merged


def conda_run_requirements(
    requires_dist: Iterable[str], lookup: ExtrasLookup | None = None, where: str = ""
) -> dict[str, str]:
    """A distribution's Requires-Dist as conda-forge run requirements: ``{name: version spec}``,
    extras expanded, markers evaluated for the target, specifiers normalised."""
    expanded: list[Requirement] = []
    for req in base_requirements(requires_dist, where):
        expanded += expand(req, lookup, where)
    return {name: conda_specifier(spec) for name, spec in merge(expanded).items()}
