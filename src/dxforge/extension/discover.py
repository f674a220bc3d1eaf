"""An extension's packages on the package index: its metapackage, the packages it requires of
its own family (``<ext>-*``), and the ones named like DiracX's (``<ext>-core``, ``-routers``,
...) that exist at that version; for each, the file a recipe builds from (the sdist where
there is one, else the pure-Python wheel), downloaded and sha256-verified."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name
from packaging.version import Version

from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError
from dxforge.extension.dists import DistFile, read_dist
from dxforge.pypa.pypi import IndexFile, NotFound, PackageIndex, parsed_version_of, verified


@dataclass
class Found:
    """One package of the extension and the file its recipe builds from."""

    name: str
    version: str
    file: IndexFile
    sha256: str
    dist: DistFile

    def as_json(self) -> dict[str, object]:
        return {
            "name": self.name,
            "version": self.version,
            "source": self.file.filename,
            "kind": self.dist.kind,
            "sha256": self.sha256,
            "entry_points": self.dist.entry_points,
        }


@dataclass
class Discovery:
    extension: str
    version: str
    packages: list[Found] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)  # names like DiracX's not on the index


def in_family(name: str, family: str) -> bool:
    """Whether ``name`` is ``family`` or ``family-*`` (canonical names)."""
    n, f = canonicalize_name(name), canonicalize_name(family)
    return n == f or n.startswith(f + "-")


def _usable(f: IndexFile) -> bool:
    return not f.yanked and (f.is_sdist or f.filename.endswith("-none-any.whl"))


def newest_version(files: list[IndexFile], name: str) -> str:
    """The newest release of ``name`` with an sdist or a pure-Python wheel."""
    versions = [
        v
        for f in files
        if _usable(f)
        if (v := parsed_version_of(f.filename, name)) and not v.is_prerelease
    ]
    if not versions:
        raise DxError(
            f"{name}: no release with an sdist or a pure-Python wheel on the package "
            "index; pass --version, or check the name"
        )
    return str(max(versions))


def choose_file(files: list[IndexFile], name: str, version: str) -> IndexFile | None:
    """The sdist of ``name`` ``version``, else its pure-Python wheel; None when it has neither
    (binary wheels alone are an error: a noarch recipe cannot be made of them)."""
    want = Version(version)
    at = [f for f in files if not f.yanked and parsed_version_of(f.filename, name) == want]
    for ok in (lambda f: f.is_sdist, lambda f: f.filename.endswith("-none-any.whl")):
        chosen = sorted((f for f in at if ok(f)), key=lambda f: f.filename)
        if chosen:
            return chosen[0]
    if at:
        raise DxError(
            f"{name} {version}: only binary wheels on the package index "
            f"({', '.join(f.filename for f in at)}); an extension's package is built "
            "from its sdist or its pure-Python wheel: publish one of them"
        )
    return None


def exact_pin(req: Requirement) -> str | None:
    """``X`` of ``name==X`` (one exact version), else None."""
    specs = list(req.specifier)
    if len(specs) == 1 and specs[0].operator == "==" and "*" not in specs[0].version:
        return specs[0].version
    return None


class _Walk:
    def __init__(self, index: PackageIndex, family: str, progress: Progress) -> None:
        self.index, self.family, self.progress = index, family, progress
        self.found: dict[str, Found] = {}
        self.absent: list[str] = []

    def visit(self, name: str, version: str, required: bool, why: str) -> None:
        norm = canonicalize_name(name)
        if norm in self.found or norm in self.absent:
            return
        try:
            project = self.index.project(norm)
        except NotFound:
            if required:
                raise DxError(
                    f"{norm}: {why}, but it is not on the package index {self.index.url}"
                ) from None
            self.absent.append(norm)
            return
        f = choose_file(project.files, norm, version)
        if f is None:
            if required:
                raise DxError(
                    f"{norm}: {why}, but the package index has no {version} of it "
                    f"(it has {', '.join(project.versions) or 'none'})"
                )
            self.absent.append(norm)
            return
        self.progress.step(f"reading {f.filename}")
        data = verified(self.index.get_bytes(f.url), f.sha256, f.filename, f.url)
        dist = read_dist(data, f.filename)
        self.found[norm] = Found(norm, version, f, hashlib.sha256(data).hexdigest(), dist)
        for line in dist.meta.requires_dist:
            req = Requirement(line)
            if in_family(req.name, self.family):
                self.visit(
                    req.name, exact_pin(req) or version, True, f"{norm} {version} requires {req}"
                )


def discover(
    index: PackageIndex,
    extension: str,
    version: str | None,
    like: list[str],
    progress: Progress = SILENT,
) -> Discovery:
    """The packages of ``extension`` (its metapackage's name) at ``version`` (default: the
    newest): the metapackage, what it requires of its family, and ``<extension>-<s>`` for each
    ``s`` of ``like`` found at that version."""
    ext = canonicalize_name(extension)
    try:
        files = index.project(ext).files
    except NotFound:
        raise DxError(
            f"{ext}: no such project on the package index {index.url}; name the "
            "extension's metapackage (the one that requires diracx), or pass "
            "--index-url"
        ) from None
    version = version or newest_version(files, ext)
    walk = _Walk(index, ext, progress)
    walk.visit(ext, version, True, "the extension's metapackage")
    for suffix in like:
        walk.visit(f"{ext}-{suffix}", version, False, "")
    return Discovery(
        ext, version, sorted(walk.found.values(), key=lambda f: f.name), sorted(walk.absent)
    )
