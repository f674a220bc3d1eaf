"""What the checks of a release need beyond our packages, for the seed to hold it: DiracX's own
test suites (read from the recipes' sdists: their metadata, whether they carry a suite of their
own, every extra but the typing stubs), run by :mod:`dxforge.checks.upstream`; and the end-to-end
server's own needs, for :mod:`dxforge.checks.endtoend`."""

from __future__ import annotations

import re
import tarfile
from collections.abc import Iterable
from pathlib import Path

from packaging.requirements import Requirement

from dxforge.core.util import DxError
from dxforge.project.recipes import Recipe
from dxforge.project.target import Target
from dxforge.pypa.metadata import DistMetadata, parse_metadata, read_sdist, wheel_metadata
from dxforge.pypa.names import extra_requirements

SKIPPED_EXTRAS = {"types"}
"""Extras that are not needed to run tests (typing stubs)."""
END_TO_END = ["moto[server]"]
"""What the end-to-end server environment needs besides our packages (PEP 508): S3 on
127.0.0.1 from moto's server mode."""
SERVER_RECIPES = frozenset({"diracx-routers", "diracx-testing"})
"""The recipes the end-to-end server is made of: without them there is no end-to-end check."""


def end_to_end(recipe_names: Iterable[str]) -> list[str]:
    """:data:`END_TO_END` when the recipes make the end-to-end server, else nothing."""
    return list(END_TO_END) if SERVER_RECIPES <= set(recipe_names) else []


def sdist_path(recipe: Recipe, sources: Path) -> Path:
    path = sources / recipe.source_filename
    if not path.is_file():
        raise DxError(
            f"{path}: the sdist of {recipe.name} is not in the source cache; run dxforge fetch"
        )
    return path


def metadata(recipes: Iterable[Recipe], sources: Path) -> dict[str, DistMetadata]:
    """Each recipe's core metadata, from its sdist (or its wheel: some extensions publish no
    sdist)."""
    out = {}
    for r in recipes:
        data = sdist_path(r, sources).read_bytes()
        out[r.name] = (
            parse_metadata(wheel_metadata(data, r.source_filename), r.source_filename)
            if r.source_filename.endswith(".whl")
            else read_sdist(data, r.source_filename)
        )
    return out


def test_requirements(
    metas: dict[str, DistMetadata], target: Target, pytest: bool = True
) -> list[Requirement]:
    """What the test suites need besides the packages: every extra of the DiracX sdists but
    the typing stubs, DiracX packages themselves left out (they are built here), and pytest
    (when there are suites to run)."""
    out: dict[str, Requirement] = {}
    for meta in metas.values():
        extras = set()
        for line in meta.requires_dist:
            extras |= set(re.findall(r"extra\s*==\s*['\"]([^'\"]+)['\"]", line))
        for extra in sorted(extras - SKIPPED_EXTRAS):
            for req in extra_requirements(
                meta.requires_dist, extra, target, f"{meta.name}[{extra}]"
            ):
                if req.name in metas:
                    continue
                req.marker = None  # evaluated for the target, with the extra, already
                key = str(req)
                out.setdefault(key, req)
    if pytest:
        out.setdefault("pytest", Requirement("pytest"))
    return [out[k] for k in sorted(out)]


def has_tests(recipe: Recipe, sources: Path) -> bool:
    """Whether the package's sdist carries a test suite of its own code: ``tests/`` beside
    ``src/`` (the metapackage's sdist is the whole repository, whose ``tests/`` check the
    repository, not an installed package); a wheel carries none."""
    if recipe.source_filename.endswith(".whl"):
        return False
    with tarfile.open(sdist_path(recipe, sources), "r:*") as tar:
        tops = {m.name.split("/")[1] for m in tar.getmembers() if m.name.count("/") >= 2}
    return {"tests", "src"} <= tops


def seed_requirements(recipes: list[Recipe], sources: Path, target: Target) -> list[str]:
    """The test requirements as PEP 508 lines for the seed's resolver."""
    metas = metadata(recipes, sources)
    suites = any(has_tests(r, sources) for r in recipes)
    return [str(r) for r in test_requirements(metas, target, pytest=suites)]
