"""Reading the per-package recipes under ``recipes/`` (rattler-build v1 format)."""

from __future__ import annotations

import os
import urllib.parse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dxforge.util import DxError

SOURCES_ENV = "DXFORGE_SOURCES"
"""Environment variable holding the base URL of the local source cache; recipes read it with
``env.get`` so that they name no host."""

SECTIONS = ("build", "host", "run", "test")


@dataclass
class Recipe:
    """One rendered recipe: what the rest of the pipeline needs from it."""

    name: str
    version: str
    path: Path
    source_filename: str
    source_sha256: str
    requirements: dict[str, list[str]] = field(default_factory=dict)
    rendered: dict[str, Any] = field(default_factory=dict)

    @property
    def dir(self) -> Path:
        return self.path.parent


def _tests_requirements(tests: list[dict[str, Any]]) -> list[str]:
    reqs: list[str] = []
    for t in tests:
        if "python" in t:
            py = t["python"]
            reqs += [
                "python " + str(py.get("python_version", "")).strip()
                if py.get("python_version")
                else "python"
            ]
            if py.get("pip_check", True):
                reqs.append("pip")
        for sec in ("run", "build"):
            reqs += list((t.get("requirements") or {}).get(sec) or [])
    return reqs


def load_recipe(path: Path, sources_url: str | None = None) -> Recipe:
    """Render ``path`` with rattler-build (for noarch) and return what it holds."""
    import rattler_build

    path = Path(path).resolve()
    if sources_url is not None:
        os.environ[SOURCES_ENV] = sources_url
    try:
        stage0 = rattler_build.Stage0Recipe.from_file(path)
        variants = stage0.render()
    except Exception as e:  # rattler-build raises its own error classes with line information
        raise DxError(f"{path}: cannot read the recipe: {e}") from None
    if not variants:
        raise DxError(f"{path}: the recipe renders to no variant")
    data = variants[0].recipe.to_dict()
    pkg = data.get("package") or {}
    sources = data.get("source") or []
    if not sources or "url" not in sources[0] or "sha256" not in sources[0]:
        raise DxError(f"{path}: key source: a url and a sha256 are required")
    url = str(sources[0]["url"])
    reqs_raw = data.get("requirements") or {}
    requirements = {
        sec: [str(r) for r in reqs_raw.get(sec) or []] for sec in ("build", "host", "run")
    }
    requirements["test"] = _tests_requirements(data.get("tests") or [])
    return Recipe(
        name=str(pkg.get("name")),
        version=str(pkg.get("version")),
        path=path,
        source_filename=urllib.parse.unquote(url.rstrip("/").rsplit("/", 1)[-1]),
        source_sha256=str(sources[0]["sha256"]),
        requirements=requirements,
        rendered=data,
    )


def recipe_paths(root: Path) -> list[Path]:
    rdir = Path(root) / "recipes"
    if not rdir.is_dir():
        raise DxError(f"{rdir}: no recipes directory; run dxforge from the project directory")
    return sorted(p for p in rdir.glob("*/recipe.yaml"))


def load_recipes(root: Path, sources_url: str | None = None) -> list[Recipe]:
    return [load_recipe(p, sources_url) for p in recipe_paths(root)]
