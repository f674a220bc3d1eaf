"""Planning a bump: the target version, each package's new sdist (sha256, verified) and core
metadata, and the dependency drift. Nothing is written here but the new sdists, into the source
cache (:mod:`dxforge.bump.write` writes the recipes)."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from dxforge.bump.drift import Change, compute_drift, upstream_requirements
from dxforge.bump.edit import new_recipe_text
from dxforge.bump.recipedoc import RecipeDoc, doc_of
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError
from dxforge.project.construct import project_target
from dxforge.project.layout import Layout
from dxforge.project.model import Project
from dxforge.project.recipes import project_family
from dxforge.pypa.metadata import (
    DistMetadata,
    core_metadata,
    parse_metadata,
    read_sdist,
    wheel_metadata,
)
from dxforge.pypa.pypi import IndexFile, PackageIndex, parsed_version_of, verified, version_of


@dataclass
class BumpOptions:
    project: Project  # its recipes as the build renders them
    version: str | None = None
    index_url: str | None = None
    pre: bool = False
    check: bool = False
    dry_run: bool = False
    apply_deps: bool = False
    full_plan: bool = False  # compute sha256s and drift even with check (for --pr-body)
    retries: int = 4
    backoff: float = 0.5
    timeout: float = 30.0
    workers: int = 4

    @property
    def layout(self) -> Layout:
        return self.project.layout


@dataclass
class PackageBump:
    """One recipe's move: its document and the new sdist it moves to."""

    doc: RecipeDoc
    sdist: IndexFile | None = None
    new_sha256: str | None = None
    verified: bool = False
    metadata: DistMetadata | None = None
    drift: list[Change] = field(default_factory=list)
    drift_incomplete: list[str] = field(default_factory=list)
    new_text: str | None = None
    cached: Path | None = None
    notes: list[str] = field(default_factory=list)

    def as_json(self, root: Path) -> dict[str, Any]:
        doc = self.doc
        return {
            "name": doc.name,
            "recipe": _rel(doc.path, root),
            "old_version": doc.version,
            "sdist": self.sdist.filename if self.sdist else None,
            "old_sha256": doc.sha256,
            "new_sha256": self.new_sha256,
            "sha256_verified": self.verified,
            "old_build_number": doc.number,
            "metadata_source": self.metadata.source if self.metadata else None,
            "drift": {
                kind: [c.as_json() for c in self.drift if c.kind == kind]
                for kind in ("added", "removed", "changed")
            },
            "drift_incomplete": self.drift_incomplete,
            "notes": self.notes,
        }


@dataclass
class BumpResult:
    status: str  # up-to-date | update-available | would-update | updated
    current: str
    target: str
    root: Path
    packages: list[PackageBump] = field(default_factory=list)
    newest_common: str | None = None
    drift_applied: bool = False
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    other_changes: list[tuple[Path, str, str]] = field(default_factory=list)
    """More files the bump writes with the recipes (path, text as read, new text)."""
    base: BumpResult | None = None
    """An extension's: the DiracX distribution's bump to the version it now pins (planned,
    not written: its drift report)."""

    @property
    def update(self) -> bool:
        return self.status != "up-to-date"

    @property
    def has_drift(self) -> bool:
        return any(p.drift for p in self.packages)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "current": self.current,
            "target": self.target,
            "newest_common": self.newest_common,
            "packages": [
                {**p.as_json(self.root), "new_version": self.target} for p in self.packages
            ],
            "drift_applied": self.drift_applied,
            "written": [_rel(p, self.root) for p in self.written],
            "notes": self.notes,
            "base": self.base.as_json() if self.base else None,
        }


def _rel(path: Path, root: Path) -> str:
    try:
        return str(Path(path).resolve().relative_to(Path(root).resolve()))
    except ValueError:
        return str(path)


def _parse_version(text: str, where: str) -> Version:
    try:
        return Version(text)
    except InvalidVersion:
        raise DxError(f"{where}: {text!r} is not a valid version (PEP 440)") from None


def check_version_option(version: str | None) -> None:
    """``--version`` as given: absent (the newest version), or a PEP 440 version. Empty text is
    an error, never "the newest" (CI's ``--version "$UNSET"`` must not release anything)."""
    if version is None:
        return
    if not version.strip():
        raise DxError(
            f"--version {version!r} is empty; give the version to take (e.g. --version 1.2.3), "
            "or leave --version out for the newest version every package has"
        )
    _parse_version(version, "--version")


def _sdists(
    files: list[IndexFile], name: str, wheels: bool = False
) -> dict[Version, list[IndexFile]]:
    """The non-yanked sdists of ``name`` by version (with ``wheels``, for a recipe built from a
    pure-Python wheel as an extension's may be: its ``-none-any`` wheels)."""
    out: dict[Version, list[IndexFile]] = {}
    for f in files:
        usable = f.filename.endswith("-none-any.whl") if wheels else f.is_sdist
        if f.yanked or not usable:
            continue
        v = parsed_version_of(f.filename, name)
        if v is not None:
            out.setdefault(v, []).append(f)
    return out


def _why_missing(files: list[IndexFile], name: str, target: Version) -> str:
    mine = [f for f in files if parsed_version_of(f.filename, name) == target]
    if not mine:
        return "not published"
    if all(f.yanked for f in mine if f.is_sdist) and any(f.is_sdist for f in mine):
        return "yanked"
    return "no sdist"


def _pmap(fn: Callable[[Any], Any], items: list[Any], workers: int) -> list[Any]:
    if workers <= 1 or len(items) <= 1:
        return [fn(i) for i in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items))) as ex:
        return list(ex.map(fn, items))


def _load_docs(project: Project) -> tuple[list[RecipeDoc], str, Version]:
    """The recipes, their common current version (as written and parsed)."""
    root = project.root
    docs = [doc_of(r) for r in project.recipes]  # as the build renders them
    names = [d.name for d in docs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise DxError(f"{root / 'recipes'}: several recipes build {', '.join(dupes)}")
    versions = {d.version for d in docs}
    if len(versions) != 1:
        listing = ", ".join(f"{_rel(d.path, root)} {d.version}" for d in docs)
        raise DxError(
            f"the recipes disagree on their version ({listing}); DiracX moves in lockstep: "
            "set the same context.version in all of them, then bump"
        )
    current = versions.pop()
    return docs, current, _parse_version(current, f"{docs[0].path}: key {docs[0].version_key}")


def _choose_target(
    docs: list[RecipeDoc],
    files: dict[str, list[IndexFile]],
    sdists: dict[str, dict[Version, list[IndexFile]]],
    opts: BumpOptions,
    index_url: str,
) -> tuple[Version, Version | None]:
    """The target version and the newest version all packages have."""
    common: set[Version] | None = None
    for d in docs:
        avail = {v for v in sdists[d.name] if opts.pre or not v.is_prerelease}
        common = avail if common is None else common & avail
    newest_common = max(common) if common else None
    if opts.version:
        target = _parse_version(opts.version, "--version")
        missing = [
            f"{d.name} ({_why_missing(files[d.name], d.name, target)})"
            for d in docs
            if target not in sdists[d.name]
        ]
        if missing:
            raise DxError(
                f"version {opts.version} is missing on the package index {index_url} for "
                f"{', '.join(missing)}; nothing was changed. Versions published for all "
                f"{len(docs)} packages: {_newest_list(common)}"
            )
        return target, newest_common
    if newest_common is None:
        newest = {
            d.name: max((v for v in sdists[d.name] if opts.pre or not v.is_prerelease), default="")
            for d in docs
        }
        listing = ", ".join(f"{n} {v or 'none'}" for n, v in newest.items())
        raise DxError(
            f"no {'' if opts.pre else 'release '}version is published (as an sdist) for all "
            f"{len(docs)} packages on {index_url} (newest each: {listing}); nothing was changed"
        )
    return newest_common, newest_common


def _current_state_notes(
    docs: list[RecipeDoc],
    sdists: dict[str, dict[Version, list[IndexFile]]],
    current: str,
    root: Path,
) -> list[str]:
    """What the index says about the recipes' current version, when it disagrees with them."""
    notes = []
    cur_v = Version(current)
    for d in docs:
        fname = d.sdist_name(current)
        match = [f for f in sdists[d.name].get(cur_v, []) if f.filename == fname]
        if not match:
            notes.append(f"{fname} ({d.name} {current}) is not on the package index")
        elif match[0].sha256 and match[0].sha256 != d.sha256:
            notes.append(
                f"{_rel(d.path, root)}: source.sha256 {d.sha256} differs from the index's "
                f"{match[0].sha256} for {fname}"
            )
    return notes


def _fetch_package(
    p: PackageBump,
    files: list[IndexFile],
    index: PackageIndex,
    cache: Path | None,
    target: Version,
    progress: Progress,
) -> None:
    """The new sdist's sha256 (downloaded into ``cache`` when given, verified) and its core
    metadata: PEP 658 where the index has it (the sdist's, else a wheel's of the same version),
    else the sdist's PKG-INFO."""
    f = p.sdist
    assert f is not None
    meta_file = f if f.core_metadata else None
    if meta_file is None:
        wheels = sorted(
            (
                w
                for w in files
                if w.filename.endswith(".whl")
                and not w.yanked
                and w.core_metadata
                and version_of(w.filename, p.doc.name) == version_of(f.filename, p.doc.name)
            ),
            key=lambda w: ("-none-any" not in w.filename, w.filename),
        )
        meta_file = wheels[0] if wheels else None
    data: bytes | None = None
    if cache is not None:
        progress.step(f"downloading {f.filename}")
        p.cached = index.download(f.url, cache / f.filename, f.sha256, what=f.filename)
        data = verified(p.cached.read_bytes(), f.sha256, f.filename, f.url)
    elif meta_file is None or not f.sha256:
        progress.step(f"downloading {f.filename}")
        data = verified(index.get_bytes(f.url), f.sha256, f.filename, f.url)
    if data is not None:
        p.new_sha256 = hashlib.sha256(data).hexdigest()
        p.verified = bool(f.sha256)
        if not f.sha256:
            p.notes.append(
                f"the index gives no sha256 for {f.filename}; the recipe gets the sha256 of "
                "the downloaded file"
            )
    if meta_file is not None:
        progress.step(f"reading the core metadata of {meta_file.filename}")
        raw = core_metadata(index, meta_file)
        meta = parse_metadata(raw, f"{meta_file.filename}.metadata (PEP 658)")
    else:
        assert data is not None
        meta = (
            parse_metadata(wheel_metadata(data, f.filename), f.filename)
            if f.filename.endswith(".whl")
            else read_sdist(data, f.filename)
        )
    if canonicalize_name(meta.name) != canonicalize_name(p.doc.name) or (
        _parse_version(meta.version, meta.source) != target
    ):
        raise DxError(
            f"{meta.source}: the metadata is for {meta.name} {meta.version}, not {p.doc.name} "
            f"{target}; the package index serves a wrong file"
        )
    p.metadata = meta


def _add_drift(
    packages: list[PackageBump],
    index: PackageIndex,
    target: str,
    root: Path,
    progress: Progress,
) -> None:
    metas = {p.doc.name: p.metadata for p in packages if p.metadata is not None}
    upstream = upstream_requirements(
        metas,
        project_target(root / "construct.yaml"),
        index,
        progress=progress,
        family=project_family(root),
    )
    for p in packages:
        where = _rel(p.doc.path, root)
        up = upstream[p.doc.name]
        p.notes += up.notes
        p.drift_incomplete = up.incomplete
        if not up.known:
            continue
        if p.doc.run is None:
            p.notes.append(f"{where} has no requirements.run list")
        p.drift = compute_drift(p.doc, up.requirements, target)
        for item in p.doc.run or []:
            if item.name is None:
                p.notes.append(
                    f"{where}: requirements.run[{item.index}] "
                    f"({item.raw or 'a conditional entry'}) is not compared"
                )


def plan_bump(opts: BumpOptions, progress: Progress = SILENT) -> BumpResult:
    """Everything a bump would do, without writing recipes. In a real bump (not check, not
    dry-run) the new sdists are downloaded into the source cache, verified."""
    check_version_option(opts.version)
    root = opts.layout.root
    docs, current, cur_v = _load_docs(opts.project)
    index = PackageIndex(
        opts.index_url, retries=opts.retries, backoff=opts.backoff, timeout=opts.timeout
    )
    progress.step(f"reading {len(docs)} projects on the package index")
    projects = _pmap(lambda d: index.project(d.name), docs, opts.workers)
    files = {d.name: p.files for d, p in zip(docs, projects, strict=True)}
    sdists = {
        d.name: _sdists(files[d.name], d.name, d.sdist_name(current).endswith(".whl")) for d in docs
    }
    target_v, newest_common = _choose_target(docs, files, sdists, opts, index.url)

    first = sdists[docs[0].name][target_v][0].filename
    target = version_of(first, docs[0].name) or str(target_v)
    result = BumpResult(
        status="up-to-date",
        current=current,
        target=current,
        root=root,
        newest_common=str(newest_common) if newest_common else None,
    )
    if target_v < cur_v and opts.version:
        raise DxError(
            f"--version {opts.version} is older than the recipes' {current}: dxforge "
            "bump does not downgrade; give a newer version, or edit the recipes"
        )
    if target_v <= cur_v:
        result.notes += _current_state_notes(docs, sdists, current, root)
        result.packages = [PackageBump(d) for d in docs]
        return result

    result.target = target
    for d in docs:
        fname = d.sdist_name(target)
        match = [f for f in sdists[d.name][target_v] if f.filename == fname]
        if not match:
            have = ", ".join(f.filename for f in sdists[d.name][target_v])
            raise DxError(
                f"{d.path}: key source.url gives {fname} for {target}, but the package index "
                f"has {have}; fix the file name in source.url"
            )
        result.packages.append(PackageBump(d, sdist=match[0], new_sha256=match[0].sha256))
    if opts.check:
        result.status = "update-available"
        if not opts.full_plan:
            return result
    else:
        result.status = "would-update" if opts.dry_run else "updated"

    cache = None if (opts.check or opts.dry_run) else opts.layout.sources
    _pmap(
        lambda p: _fetch_package(p, files[p.doc.name], index, cache, target_v, progress),
        result.packages,
        opts.workers,
    )
    _add_drift(result.packages, index, target, root, progress)
    for p in result.packages:
        assert p.new_sha256 is not None
        p.new_text = new_recipe_text(
            p.doc, target, p.new_sha256, p.drift, bool(p.drift_incomplete), opts.apply_deps
        )
        if opts.apply_deps and p.drift_incomplete:
            kept = [c.name for c in p.drift if c.kind == "removed"]
            if kept:
                p.notes.append(
                    f"{p.doc.name}: not removed, as extras were not all expanded: {', '.join(kept)}"
                )
    result.drift_applied = opts.apply_deps and result.has_drift
    return result


def _newest_list(versions: set[Version] | None) -> str:
    if not versions:
        return "none"
    return ", ".join(str(v) for v in sorted(versions)[-5:])
