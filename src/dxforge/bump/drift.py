"""Dependency drift: how a recipe's run requirements differ from the Requires-Dist of the sdist
it builds (through the conda-forge name map, extras expanded, DiracX siblings pinned
``==${{ version }}``). The one model ``dxforge bump`` reports and applies, and the drift guard
test checks the repository's recipes with."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.utils import canonicalize_name

from dxforge.builder.fetch import sdist_metadata
from dxforge.bump.recipedoc import RecipeDoc, doc_of
from dxforge.core.progress import SILENT, Progress
from dxforge.core.specs import canonical_spec, conda_specifier
from dxforge.core.util import DxError, md_table
from dxforge.project.recipes import is_sibling, load_recipe
from dxforge.project.target import Target
from dxforge.pypa.metadata import DistMetadata, RequiresDistLookup
from dxforge.pypa.names import conda_run_requirements
from dxforge.pypa.pypi import PackageIndex

VERSION_PIN = "==${{ version }}"
"""How a recipe pins a DiracX sibling."""


@dataclass
class Change:
    """One difference between upstream's Requires-Dist and a recipe's run requirements."""

    name: str
    kind: str  # added | removed | changed
    recipe: str | None  # the spec as written in the recipe (None: not there)
    upstream: str | None  # the spec the recipe should have (None: not there)

    def as_json(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "kind": self.kind,
            "recipe": self.recipe,
            "upstream": self.upstream,
        }

    def line(self) -> str:
        """``+ name spec``, ``- name spec`` or ``~ name: recipe -> upstream``."""
        if self.kind == "added":
            return f"+ {self.name} {self.upstream or ''}".rstrip()
        if self.kind == "removed":
            return f"- {self.name} {self.recipe or ''}".rstrip()
        return f"~ {self.name}: {self.recipe or '(any)'} -> {self.upstream or '(any)'}"


@dataclass
class Upstream:
    """What one package's metadata asks of its recipe."""

    requirements: dict[str, str]
    incomplete: list[str] = field(default_factory=list)
    """Dependencies whose extras could not be expanded (no metadata found)."""
    notes: list[str] = field(default_factory=list)
    known: bool = True
    """False when the metadata does not say (Requires-Dist is dynamic)."""


def run_requirements(
    requires_dist: Iterable[str],
    requires_python: str,
    lookup: Callable[[str], list[str]] | None,
    target: Target,
    where: str = "",
    siblings: Iterable[str] = (),
) -> dict[str, str]:
    """The run requirements a recipe must have for this Requires-Dist, as ``{conda name: spec}``:
    python from Requires-Python (left out when there is none), extras expanded through
    ``lookup``, conda-forge names, DiracX packages pinned :data:`VERSION_PIN`."""
    out: dict[str, str] = {}
    if requires_python:
        try:
            out["python"] = conda_specifier(requires_python)
        except InvalidSpecifier:
            raise DxError(
                f"{where}: Requires-Python {requires_python!r} is not a valid specifier"
            ) from None
    known = set(siblings)
    for name, spec in conda_run_requirements(requires_dist, target, lookup, where).items():
        out[name] = VERSION_PIN if is_sibling(name, known) else spec
    return out


def upstream_requirements(
    metas: Mapping[str, DistMetadata],
    target: Target,
    index: PackageIndex | None = None,
    *,
    index_url: str | None = None,
    progress: Progress = SILENT,
) -> dict[str, Upstream]:
    """For each package (by recipe name), the run requirements its metadata asks for. Extras of
    the packages in ``metas`` expand from there; others from the newest release wheel on the
    index that the requirements allow (a dependency without one is listed as incomplete)."""
    lookup = RequiresDistLookup(
        index, dict(metas), index_url=index_url, skip_missing=True, progress=progress
    )
    for meta in metas.values():
        for line in meta.requires_dist:
            req = Requirement(line)
            norm = canonicalize_name(req.name)
            if req.extras and norm not in lookup.local:
                lookup.specs[norm] = lookup.specs.get(norm, SpecifierSet()) & req.specifier
    out: dict[str, Upstream] = {}
    for name, meta in metas.items():
        if "requires-dist" in meta.dynamic:
            out[name] = Upstream(
                {},
                notes=[f"{meta.source} declares Requires-Dist dynamic; no drift computed"],
                known=False,
            )
            continue
        lookup.skipped = []
        reqs = run_requirements(
            meta.requires_dist, meta.requires_python, lookup, target, meta.source, metas.keys()
        )
        up = Upstream(reqs, sorted(set(lookup.skipped)))
        up.notes += [
            f"{name}: extras of {dep} not expanded ({lookup.why.get(dep, 'no metadata')}); "
            "requirements they bring may be missing from the drift"
            for dep in up.incomplete
        ]
        out[name] = up
    return out


def _differs(doc: RecipeDoc, version: str) -> Callable[[str, str], bool]:
    """Whether two specs differ once rendered for ``version`` and made canonical."""

    def rendered(spec: str) -> str:
        try:
            return canonical_spec(doc.render(spec, version))
        except KeyError:
            return canonical_spec(spec)

    return lambda a, b: rendered(a) != rendered(b)


def compute_drift(doc: RecipeDoc, upstream: Mapping[str, str], version: str) -> list[Change]:
    """How ``doc``'s run requirements differ from ``upstream`` (for ``version``)."""
    have = {i.name: i.spec for i in doc.run or [] if i.name is not None}
    beyond = {i.name for i in doc.run or [] if i.name is not None and i.beyond}
    differs = _differs(doc, version)
    changes = [
        Change(name, "added", None, spec)
        if name not in have
        else Change(name, "changed", have[name], spec)
        for name, spec in upstream.items()
        if name not in have or differs(have[name], spec)
    ]
    kept = beyond | ({"python"} if "python" not in upstream else set())
    changes += [
        Change(name, "removed", spec, None)
        for name, spec in have.items()
        if name not in upstream and name not in kept
    ]
    order = {"added": 0, "changed": 1, "removed": 2}
    return sorted(changes, key=lambda c: (order[c.kind], c.name))


@dataclass
class RecipeDrift:
    """One recipe compared with the sdist it builds."""

    doc: RecipeDoc
    upstream: Upstream
    changes: list[Change]


def recipes_drift(
    paths: Iterable[Path],
    sources: Path,
    target: Target,
    index: PackageIndex | None = None,
    *,
    index_url: str | None = None,
) -> dict[str, RecipeDrift]:
    """Each recipe at ``paths`` compared with the Requires-Dist of the sdist it names, read from
    the source cache ``sources`` (``dxforge fetch`` fills it); by package name."""
    docs = [doc_of(load_recipe(p, target)) for p in paths]  # as the build renders them
    metas: dict[str, DistMetadata] = {}
    for doc in docs:
        fname = doc.sdist_name(doc.version)
        meta = sdist_metadata(Path(sources) / fname)
        if canonicalize_name(meta.name) != doc.name or meta.version != doc.version:
            raise DxError(
                f"{doc.path}: the source {fname} holds {meta.name} {meta.version}, not "
                f"{doc.name} {doc.version}; fix key source.url or context.version"
            )
        metas[doc.name] = meta
    upstream = upstream_requirements(metas, target, index, index_url=index_url)
    return {
        d.name: RecipeDrift(
            d, upstream[d.name], compute_drift(d, upstream[d.name].requirements, d.version)
        )
        for d in docs
    }


@dataclass(frozen=True)
class DriftRow:
    """One difference between a recipe's run requirements and upstream's Requires-Dist."""

    package: str
    name: str
    kind: str  # added | removed | changed
    recipe: str | None  # the spec in the recipe (None: not there)
    upstream: str | None  # the spec upstream asks for (None: not there)


def drift_table(rows: list[DriftRow]) -> list[str]:
    """The one drift table (Markdown), for the bump's pull request and the release notes."""

    def cell(spec: str | None) -> str:
        return "—" if spec is None else f"`{spec}`" if spec else "(any)"

    return md_table(
        ["package", "requirement", "change", "recipe", "upstream"],
        [[r.package, r.name, r.kind, cell(r.recipe), cell(r.upstream)] for r in rows],
    )
