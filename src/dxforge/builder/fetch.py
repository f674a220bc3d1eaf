"""The source cache: each recipe's sdist, fetched by file name from the configured package index.

Recipes name no host: their ``source.url`` is ``${{ env.get("DXFORGE_SOURCES", ...) }}/<sdist>``
and dxforge sets ``DXFORGE_SOURCES`` to :func:`sources_url`, the ``file://`` URL of the cache
(``build/sources/``). Once every recipe's sdist is cached, building needs no network.

"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from packaging.version import Version

from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, atomic_write_bytes, sha256_file
from dxforge.project.recipes import Recipe
from dxforge.pypa.metadata import DistMetadata, read_sdist
from dxforge.pypa.pypi import IndexError_, IndexFile, PackageIndex, parsed_version_of


def sources_url(cache: Path) -> str:
    """The ``file://`` base URL of the source cache ``cache``: the value the build puts in
    ``DXFORGE_SOURCES`` for rattler-build."""
    return Path(cache).absolute().as_uri()


@dataclass
class Fetched:
    """One recipe's sdist in the cache."""

    recipe: str
    filename: str
    path: Path
    sha256: str
    size: int
    status: str  # "cached" or "downloaded"

    def as_json(self) -> dict[str, object]:
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


def _cached(recipe: Recipe, cache: Path) -> Fetched | None:
    path = cached_source(recipe, cache)
    if path is None:
        return None
    return Fetched(
        recipe.name, path.name, path, recipe.source_sha256, path.stat().st_size, "cached"
    )


def _newest_sdists(files: Iterable[IndexFile], project: str, n: int = 3) -> list[str]:
    def key(f: IndexFile) -> Version:
        return parsed_version_of(f.filename, project) or Version("0")

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
        data = index.read_url(entry.url)
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


@dataclass
class FetchReport:
    """``dxforge fetch``: every recipe's sdist in the source cache."""

    cache: Path
    files: list[Fetched]

    @property
    def status(self) -> str:
        return "downloaded" if any(f.status == "downloaded" for f in self.files) else "cached"

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "cache": str(self.cache),
            "sources_url": sources_url(self.cache),
            "files": [f.as_json() for f in self.files],
        }


def run_fetch(
    recipes: Iterable[Recipe],
    cache: Path,
    *,
    index_url: str | None = None,
    progress: Progress = SILENT,
) -> FetchReport:
    return FetchReport(cache, fetch_sources(recipes, cache, index_url=index_url, progress=progress))


def fetch_sources(
    recipes: Iterable[Recipe],
    cache: Path,
    index: PackageIndex | None = None,
    *,
    index_url: str | None = None,
    progress: Progress = SILENT,
) -> list[Fetched]:
    """Fetch every recipe's sdist into ``cache``. The index is contacted only when some sdist is
    missing; the first error stops the fetch with the files fetched so far kept."""
    recipes = list(recipes)
    progress.begin("fetch", len(recipes))
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
        progress.done(fetched.filename, fetched)
    return results


def sdist_metadata(path: Path) -> DistMetadata:
    """The core metadata of a cached sdist, with its ``[project.scripts]``."""
    fix = "; delete it and run dxforge fetch"
    try:
        data = Path(path).read_bytes()
    except OSError as e:
        raise DxError(f"{path}: cannot read the sdist: {e}{fix}") from None
    return read_sdist(data, str(path), scripts=True, fix=fix)
