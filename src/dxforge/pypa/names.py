"""PyPI -> conda-forge names, and a distribution's Requires-Dist -> conda-forge run requirements
(markers evaluated for the target, extras expanded). The map is data in ``dxforge/data/``."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from functools import lru_cache
from importlib import resources

from packaging.markers import Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from ruamel.yaml import YAML

from dxforge.core.specs import conda_specifier
from dxforge.core.util import DxError
from dxforge.project.target import Target


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
def _extra_depends() -> dict[str, list[str]]:
    text = resources.files("dxforge").joinpath("data", "conda_forge_depends.yaml").read_text()
    return {str(k): [str(d) for d in v] for k, v in (YAML(typ="safe").load(text) or {}).items()}


def extra_depends(conda: str) -> list[str]:
    """What conda-forge's recipe of ``conda`` adds to its run requirements (``gitpython`` ->
    ``git``): programs it runs, which PyPI metadata cannot name."""
    return list(_extra_depends().get(conda, []))


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


def marker_applies(marker: Marker | None, target: Target, extras: Iterable[str] = ()) -> bool:
    """Whether ``marker`` holds on ``target`` for any of ``extras`` (or for no extra)."""
    if marker is None:
        return True
    return any(marker.evaluate(target.markers(extra)) for extra in ("", *extras))


def parse_requirement(text: str, where: str = "") -> Requirement:
    try:
        return Requirement(text)
    except InvalidRequirement as e:
        raise DxError(f"{where or 'requirement'}: cannot parse {text!r}: {e}") from None


ExtrasLookup = Callable[[str], list[str]]
"""Given a PyPI name, the Requires-Dist lines of that distribution (to expand its extras)."""


def base_requirements(
    requires_dist: Iterable[str], target: Target, where: str = ""
) -> list[Requirement]:
    """The Requires-Dist entries that apply on ``target`` without any extra."""
    out = []
    for line in requires_dist:
        req = parse_requirement(line, where)
        if marker_applies(req.marker, target):
            out.append(req)
    return out


def extra_requirements(
    requires_dist: Iterable[str], extra: str, target: Target, where: str = ""
) -> list[Requirement]:
    """The Requires-Dist entries brought in by ``extra`` (and only by it) on ``target``."""
    out = []
    for line in requires_dist:
        req = parse_requirement(line, where)
        if req.marker is None or marker_applies(req.marker, target):
            continue
        if marker_applies(req.marker, target, [extra]):
            out.append(req)
    return out


def expand(
    req: Requirement, lookup: ExtrasLookup | None, target: Target, where: str = ""
) -> list[Requirement]:
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
            for sub in extra_requirements(lookup(name), extra, target, f"{name}[{extra}]"):
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
    requires_dist: Iterable[str],
    target: Target,
    lookup: ExtrasLookup | None = None,
    where: str = "",
) -> dict[str, str]:
    """A distribution's Requires-Dist as conda-forge run requirements: ``{name: version spec}``,
    extras expanded, markers evaluated for ``target``, specifiers normalised."""
    expanded: list[Requirement] = []
    for req in base_requirements(requires_dist, target, where):
        expanded += expand(req, lookup, target, where)
    return {name: conda_specifier(spec) for name, spec in merge(expanded).items()}
