"""The source cache: each recipe's sdist, fetched by file name from the configured package index.

Recipes name no host: their ``source.url`` is ``${{ env.get("DXFORGE_SOURCES", ...) }}/<sdist>``
and dxforge sets ``DXFORGE_SOURCES`` to :func:`sources_url`, the ``file://`` URL of the cache
(``build/sources/``). Once every recipe's sdist is cached, building needs no network.

This module also reads distribution metadata (an sdist's ``PKG-INFO``, a wheel's ``METADATA``) for
the comparison of recipes with upstream's Requires-Dist.
"""

from __future__ import annotations

import email.parser
import hashlib
import io
import tarfile
import urllib.parse
import zipfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from dxforge.index import IndexError_, IndexFile, PackageIndex, version_of
from dxforge.recipes import Recipe
from dxforge.util import DxError, atomic_write_bytes, sha256_file

CACHE_DIR = Path("build/sources")


def source_cache(root: Path) -> Path:
    """The source cache directory of the project at ``root``."""
    return (Path(root) / CACHE_DIR).resolve()


def sources_url(root: Path) -> str:
    """The ``file://`` base URL of the source cache: the value build.py puts in
    ``DXFORGE_SOURCES`` for rattler-build."""
    return source_cache(root).as_uri()


@dataclass
class Fetched:
    """One recipe's sdist in the cache."""

    recipe: str
    filename: str
    path: Path
    sha256: str
    size: int
    status: str  # "cached" or "downloaded"

    def as_dict(self) -> dict[str, object]:
        return {
            "recipe": self.recipe,
            "filename": self.filename,
            "path": str(self.path),
            "sha256": self.sha256,
            "size": self.size,
            "status": self.status,
        }


def cached_source(recipe: Recipe, cache: Path) -> Path | None:
    """The cached sdist of ``recipe`` when it is there with the recipe's sha256, else None."""
    path = Path(cache) / recipe.source_filename
    if path.is_file() and sha256_file(path) == recipe.source_sha256:
        return path
    return None


def missing_sources(recipes: Iterable[Recipe], cache: Path) -> list[Recipe]:
    """The recipes whose sdist is not (correctly) in the cache: what a build has to fetch."""
    return [r for r in recipes if cached_source(r, cache) is None]


def _read_url(index: PackageIndex, url: str) -> bytes:
    if url.startswith("file://"):
        path = Path(urllib.parse.unquote(urllib.parse.urlparse(url).path))
        try:
            return path.read_bytes()
        except OSError as e:
            raise IndexError_(f"{url}: cannot read: {e}") from None
    return index.get_bytes(url)


def _cached(recipe: Recipe, cache: Path) -> Fetched | None:
    path = cached_source(recipe, cache)
    if path is None:
        return None
    return Fetched(
        recipe.name, path.name, path, recipe.source_sha256, path.stat().st_size, "cached"
    )


def _newest_sdists(files: Iterable[IndexFile], project: str, n: int = 3) -> list[str]:
    def key(f: IndexFile) -> Version:
        try:
            return Version(version_of(f.filename, project) or "0")
        except InvalidVersion:
            return Version("0")

    return [f.filename for f in sorted((f for f in files if f.is_sdist), key=key)[-n:]]


def _download(recipe: Recipe, cache: Path, index: PackageIndex) -> Fetched:
    fname = recipe.source_filename
    try:
        project = index.project(recipe.name)
    except IndexError_ as e:
        raise DxError(f"{recipe.path}: {e}") from None
    match = [f for f in project.files if f.filename == fname]
    if not match:
        newest = _newest_sdists(project.files, recipe.name)
        raise DxError(
            f"{recipe.path}: key source.url: {fname} is not on the package index {index.url} "
            f"(newest sdists there: {', '.join(newest) or 'none'}); check context.version, "
            "or point --index-url at an index that has it"
        )
    entry = match[0]
    if entry.sha256 and entry.sha256 != recipe.source_sha256:
        raise DxError(
            f"{recipe.path}: key source.sha256: the recipe says {recipe.source_sha256} but the "
            f"package index lists {entry.sha256} for {fname}; if the new file is the right one, "
            "put its sha256 in the recipe (dxforge bump does this), else check the index"
        )
    try:
        data = _read_url(index, entry.url)
    except IndexError_ as e:
        raise DxError(f"{recipe.path}: {e}") from None
    got = hashlib.sha256(data).hexdigest()
    if got != recipe.source_sha256:
        raise DxError(
            f"{recipe.path}: key source.sha256: {fname} downloaded from {index.url} has sha256 "
            f"{got}, the recipe says {recipe.source_sha256}; nothing was written to {cache}. "
            "Retry (the download may be corrupt), or if the file on the index is the right one, "
            "put its sha256 in the recipe"
        )
    dest = Path(cache) / fname
    atomic_write_bytes(dest, data)
    return Fetched(recipe.name, fname, dest, got, len(data), "downloaded")


def fetch_source(recipe: Recipe, cache: Path, index: PackageIndex) -> Fetched:
    """Put ``recipe``'s sdist in ``cache``, downloading it only when it is not there already.
    The file is written only after its sha256 matched the recipe's."""
    return _cached(recipe, cache) or _download(recipe, cache, index)


def fetch_sources(
    recipes: Iterable[Recipe],
    cache: Path,
    index: PackageIndex | None = None,
    *,
    index_url: str | None = None,
    on_done: Callable[[Fetched], None] | None = None,
) -> list[Fetched]:
    """Fetch every recipe's sdist into ``cache``. The index is contacted only when some sdist is
    missing; the first error stops the fetch with the files fetched so far kept."""
    recipes = list(recipes)
    seen: dict[str, Recipe] = {}
    for r in recipes:
        other = seen.setdefault(r.source_filename, r)
        if other is not r and other.source_sha256 != r.source_sha256:
            raise DxError(
                f"{r.path} and {other.path} name the same source file {r.source_filename} "
                "with different sha256; fix key source.sha256 in the wrong one"
            )
    results: list[Fetched] = []
    for r in recipes:
        fetched = _cached(r, cache)
        if fetched is None:
            index = index or PackageIndex(index_url)
            fetched = _download(r, cache, index)
        results.append(fetched)
        if on_done:
            on_done(fetched)
    return results


@dataclass
class DistMetadata:
    """The parts of a distribution's core metadata that recipes follow."""

    name: str
    version: str
    requires_dist: list[str] = field(default_factory=list)
    requires_python: str = ""
    scripts: dict[str, str] = field(default_factory=dict)


def parse_metadata(text: str, where: str) -> DistMetadata:
    """Core metadata (PKG-INFO / METADATA) text as :class:`DistMetadata`."""
    msg = email.parser.HeaderParser().parsestr(text)
    if not msg.get("Name") or not msg.get("Version"):
        raise DxError(
            f"{where}: no Name/Version in the core metadata; the file is not a valid distribution"
        )
    return DistMetadata(
        name=str(msg["Name"]),
        version=str(msg["Version"]),
        requires_dist=[str(v) for v in msg.get_all("Requires-Dist") or []],
        requires_python=str(msg.get("Requires-Python") or "").strip(),
    )


def _member_text(tar: tarfile.TarFile, name: str) -> str:
    f = tar.extractfile(name)
    if f is None:
        raise DxError(f"{tar.name}: {name} is not a regular file")
    return f.read().decode()


def sdist_metadata(path: Path) -> DistMetadata:
    """The ``PKG-INFO`` of an sdist (``.tar.gz``), plus its ``[project.scripts]``."""
    import tomllib

    path = Path(path)
    try:
        with tarfile.open(path, "r:gz") as tar:
            files = {m.name for m in tar.getmembers() if m.isfile()}
            top = [n for n in files if n.count("/") == 1 and n.endswith("/PKG-INFO")]
            if not top:
                raise DxError(f"{path}: no top-level PKG-INFO; is this an sdist?")
            meta = parse_metadata(_member_text(tar, top[0]), f"{path}:PKG-INFO")
            pyproject = top[0].rsplit("/", 1)[0] + "/pyproject.toml"
            if pyproject in files:
                data = tomllib.loads(_member_text(tar, pyproject))
                meta.scripts = dict((data.get("project") or {}).get("scripts") or {})
    except (tarfile.TarError, OSError, EOFError, UnicodeDecodeError, ValueError) as e:
        raise DxError(
            f"{path}: cannot read the sdist: {e}; delete it and run dxforge fetch"
        ) from None
    return meta


def wheel_metadata(data: bytes, where: str) -> DistMetadata:
    """The ``*.dist-info/METADATA`` of a wheel given as bytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [
                n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ]
            if not names:
                raise DxError(f"{where}: no .dist-info/METADATA in the wheel")
            return parse_metadata(z.read(names[0]).decode(), where)
    except zipfile.BadZipFile as e:
        raise DxError(f"{where}: not a valid wheel: {e}") from None


class RequiresDistLookup:
    """Requires-Dist of a distribution by name, to expand extras (``redis[hiredis]``).

    Names in ``local`` (the siblings, from the sdists being built) are answered from there; any
    other name from the newest release on the index that satisfies ``specs[name]`` (if set) and
    has a wheel: its PEP 658 metadata file, else the wheel itself."""

    def __init__(
        self,
        index: PackageIndex | None = None,
        local: dict[str, DistMetadata] | None = None,
        *,
        index_url: str | None = None,
    ) -> None:
        self._index = index
        self._index_url = index_url
        self.local = {canonicalize_name(k): v for k, v in (local or {}).items()}
        self.specs: dict[str, SpecifierSet] = {}
        self.resolved: dict[str, DistMetadata] = {}

    @property
    def index(self) -> PackageIndex:
        if self._index is None:
            self._index = PackageIndex(self._index_url)
        return self._index

    def __call__(self, name: str) -> list[str]:
        return self.metadata(name).requires_dist

    def metadata(self, name: str) -> DistMetadata:
        norm = canonicalize_name(name)
        if norm in self.local:
            return self.local[norm]
        if norm not in self.resolved:
            self.resolved[norm] = self._from_index(norm)
        return self.resolved[norm]

    def _from_index(self, name: str) -> DistMetadata:
        project = self.index.project(name)
        spec = self.specs.get(name, SpecifierSet())
        wheels: dict[Version, list] = {}
        for f in project.files:
            if not f.filename.endswith(".whl") or f.yanked:
                continue
            v = version_of(f.filename, name)
            try:
                ver = Version(v or "")
            except InvalidVersion:
                continue
            if ver.is_prerelease or ver not in spec:
                continue
            wheels.setdefault(ver, []).append(f)
        if not wheels:
            raise DxError(
                f"{name}: no release wheel{f' matching {spec}' if str(spec) else ''} on the "
                f"package index {self.index.url}, so its extras cannot be read"
            )
        newest = max(wheels)
        files = sorted(wheels[newest], key=lambda f: ("none-any" not in f.filename, f.filename))
        f = files[0]
        where = f"{name} {newest} ({f.filename})"
        try:
            text = self.index.get_bytes(f.metadata_url).decode()
            return parse_metadata(text, where)
        except IndexError_:
            return wheel_metadata(self.index.get_bytes(f.url), where)


def upstream_run_requirements(
    recipes: Iterable[Recipe],
    cache: Path,
    index: PackageIndex | None = None,
    *,
    index_url: str | None = None,
) -> dict[str, dict[str, str]]:
    """For each recipe (by name), the run requirements the Requires-Dist of the sdist it builds
    calls for (:func:`dxforge.recipes.metadata_run_requirements`). Sdists come from the cache
    and are fetched when missing; extras of non-DiracX packages are read from the index."""
    from packaging.requirements import Requirement

    from dxforge.recipes import metadata_run_requirements

    recipes = list(recipes)
    fetched = fetch_sources(recipes, cache, index, index_url=index_url)
    metas: dict[str, DistMetadata] = {}
    for r, f in zip(recipes, fetched, strict=True):
        meta = sdist_metadata(f.path)
        if canonicalize_name(meta.name) != r.name or meta.version != r.version:
            raise DxError(
                f"{r.path}: the source {f.filename} holds {meta.name} {meta.version}, not "
                f"{r.name} {r.version}; fix key source.url or context.version"
            )
        metas[r.name] = meta
    lookup = RequiresDistLookup(index, local=metas, index_url=index_url)
    for meta in metas.values():
        for line in meta.requires_dist:
            req = Requirement(line)
            norm = canonicalize_name(req.name)
            if req.extras and norm not in lookup.local:
                lookup.specs[norm] = lookup.specs.get(norm, SpecifierSet()) & req.specifier
    return {
        r.name: metadata_run_requirements(
            metas[r.name].requires_dist,
            metas[r.name].requires_python,
            r.version,
            lookup,
            where=r.source_filename,
        )
        for r in recipes
    }
