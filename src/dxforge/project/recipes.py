"""Reading the per-package recipes under ``recipes/`` (rattler-build v1 format)."""

from __future__ import annotations

import contextlib
import os
import re
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dxforge.core.specs import split_spec
from dxforge.core.util import DxError, read_utf8, yaml_kind
from dxforge.project.target import Target, project_target

SOURCES_ENV = "DXFORGE_SOURCES"
"""Environment variable holding the base URL of the local source cache; recipes read it with
``env.get`` so that they name no host."""

SECTIONS = ("build", "host", "run", "test")

SIBLING_RE = re.compile(r"^diracx(-[a-z0-9][a-z0-9-]*)?$")
"""Names of DiracX packages: their requirements must be pinned ``==${{ version }}``."""

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


def is_sibling(name: str, siblings: Iterable[str] = (), family: str = "diracx") -> bool:
    """Whether ``name`` is a package of the project's family (``diracx``, ``diracx-*`` or one of
    ``siblings``; an extension's project: ``<ext>``, ``<ext>-*``)."""
    if family != "diracx":
        return name in set(siblings) or bool(
            re.match(rf"^{re.escape(family)}(-[a-z0-9][a-z0-9-]*)?$", name)
        )
    return name in set(siblings) or bool(SIBLING_RE.match(name))


def project_family(root: Path) -> str:
    """The package family the project's recipes belong to: ``diracx``, or an extension's name
    (``extension`` in ``[tool.dxforge]`` of its pyproject.toml)."""
    import tomllib

    path = Path(root) / "pyproject.toml"
    try:
        tool = tomllib.loads(path.read_text()).get("tool", {}).get("dxforge", {})
    except FileNotFoundError:
        return "diracx"
    except tomllib.TOMLDecodeError as e:
        raise DxError(f"{path}: not valid TOML ({e})") from None
    return str(tool.get("extension") or "diracx")


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
    text: str = ""
    """The file as written (what ``dxforge bump`` edits)."""

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


def _yaml_error(path: Path, e: Exception) -> str:
    """A YAML syntax error as ``file: line L, column C: problem; fix``."""
    from ruamel.yaml.error import MarkedYAMLError

    mark = getattr(e, "problem_mark", None)
    if not isinstance(e, MarkedYAMLError) or mark is None:
        return f"{path}: not valid YAML: {e}; fix the syntax"
    context = ""
    if e.context and e.context_mark is not None:
        context = f" ({e.context} from line {e.context_mark.line + 1})"
    return (
        f"{path}: line {mark.line + 1}, column {mark.column + 1}: not valid YAML: {e.problem}"
        f"{context}; fix the syntax there or above it (an unclosed quote or bracket, a wrong "
        "indentation, a repeated key)"
    )


def _render_error(path: Path, e: Exception) -> str:
    """rattler-build's render error (a Rust debug print) as ``file: line L, column C: reason``."""
    text = str(e)
    where = re.search(r"\bline: (\d+), column: (\d+)", text)
    why = re.search(r'\b(?:reason|message): "((?:[^"\\]|\\.)*)"', text)
    if where and why:
        return f"{path}: line {where[1]}, column {where[2]}: {why[1]}; fix the recipe there"
    return f"{path}: cannot read the recipe: {text}"


_UTF8_FIX = "save the recipe as UTF-8 (retype that character)"


def read_text(path: Path) -> str:
    """The recipe file's text: the one place a recipe file is read."""
    try:
        return read_utf8(path, _UTF8_FIX)
    except OSError as e:
        raise DxError(f"{path}: cannot read the recipe: {e}") from None


def _check_raw(path: Path, text: str) -> None:
    """Checks on the file as written, before rendering: errors name the file and the key."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        raw = YAML(typ="safe").load(text)
    except YAMLError as e:
        raise DxError(_yaml_error(path, e)) from None
    if not isinstance(raw, dict):
        raise DxError(f"{path}: the recipe is not a YAML mapping")
    _check_context(path, raw)
    _check_source(path, raw)


def _check_context(path: Path, raw: dict[str, Any]) -> None:
    context = raw.get("context")
    if not isinstance(context, dict):
        raise DxError(f"{path}: key context: missing; add context.version and context.python_min")
    for key, example in (("version", "0.7.0"), ("python_min", "3.11")):
        value = context.get(key)
        if value is None:
            raise DxError(f'{path}: key context.{key}: missing; add it (e.g. {key}: "{example}")')
        if not isinstance(value, str):
            raise DxError(
                f"{path}: key context.{key}: YAML reads it as {yaml_kind(value)}, not text; "
                f'quote the value as written, e.g. {key}: "{example}"'
            )


def _check_source(path: Path, raw: dict[str, Any]) -> None:
    source = raw.get("source")
    first = (source[0] if source else None) if isinstance(source, list) else source
    if not isinstance(first, dict) or "url" not in first or "sha256" not in first:
        raise DxError(f"{path}: key source: a url and a sha256 are required")
    if not re.search(r"env\.get\(\s*[\"']" + SOURCES_ENV + r"[\"']", str(first["url"])):
        raise DxError(
            f"{path}: key source.url: {first['url']!r} does not read {SOURCES_ENV}; recipes name "
            f'no host: write url: ${{{{ env.get("{SOURCES_ENV}", default=...) }}}}/<sdist file>'
        )
    if not _SHA256_RE.match(str(first["sha256"])):
        raise DxError(
            f"{path}: key source.sha256: {first['sha256']!r} is not a sha256 (64 lowercase hex "
            "digits); put the sdist's sha256 there"
        )


def _check_rendered(recipe: Recipe) -> None:
    if recipe.name != recipe.dir.name:
        raise DxError(
            f"{recipe.path}: key package.name: {recipe.name!r} differs from the recipe directory "
            f"{recipe.dir.name!r}; rename one of them"
        )
    family = project_family(recipe.path.parents[2])
    for sec in SECTIONS:
        key = "tests[].requirements" if sec == "test" else f"requirements.{sec}"
        for line in recipe.requirements.get(sec, []):
            name, spec = split_spec(line, f"{recipe.path}: key {key}")
            if is_sibling(name, family=family) and spec != f"=={recipe.version}":
                raise DxError(
                    f"{recipe.path}: key {key}: {line!r}: the {family} packages are pinned to "
                    f"the same version; write `{name} ==${{{{ version }}}}`"
                )


def variant_config(target: Target) -> dict[str, list[str]]:
    """The variant the recipes are built with: ``${{ python }}`` is the target's CPython (the
    host and test environments'), ``python_min`` stays each recipe's own floor."""
    return {"python": [target.python]}


@contextlib.contextmanager
def sources_env(sources_url: str | None) -> Iterator[None]:
    """``DXFORGE_SOURCES`` set to ``sources_url`` while rattler-build renders (its ``env.get``
    reads the process environment), then restored."""
    old = os.environ.get(SOURCES_ENV)
    if sources_url is not None:
        os.environ[SOURCES_ENV] = sources_url
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(SOURCES_ENV, None)
        else:
            os.environ[SOURCES_ENV] = old


def load_recipe(path: Path, target: Target, sources_url: str | None = None) -> Recipe:
    """Render ``path`` with rattler-build (for noarch, with the target's variant), check it and
    return what it holds."""
    import rattler_build

    path = Path(path).resolve()
    text = read_text(path)
    _check_raw(path, text)
    try:
        with sources_env(sources_url):
            stage0 = rattler_build.Stage0Recipe.from_file(path)
            variants = stage0.render(
                variant_config=rattler_build.VariantConfig(variant_config(target))
            )
    except Exception as e:  # rattler-build raises its own error classes with line information
        raise DxError(_render_error(path, e)) from None
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
    recipe = Recipe(
        name=str(pkg.get("name")),
        version=str(pkg.get("version")),
        path=path,
        source_filename=urllib.parse.unquote(url.rstrip("/").rsplit("/", 1)[-1]),
        source_sha256=str(sources[0]["sha256"]),
        requirements=requirements,
        rendered=data,
        text=text,
    )
    _check_rendered(recipe)
    return recipe


def recipe_paths(root: Path) -> list[Path]:
    """The project's ``recipes/*/recipe.yaml``, sorted; none is an error naming the directory."""
    rdir = Path(root) / "recipes"
    paths = sorted(rdir.glob("*/recipe.yaml")) if rdir.is_dir() else []
    if not paths:
        raise DxError(
            f"{rdir}: no */recipe.yaml found; run dxforge in the project directory or pass --root"
        )
    return paths


def load_recipes(
    root: Path, sources_url: str | None = None, target: Target | None = None
) -> list[Recipe]:
    """Every recipe of the project, rendered for ``target`` (default: construct.yaml's; a
    project without one renders them for any CPython 3, enough to read them)."""
    construct = Path(root) / "construct.yaml"
    target = target or (project_target(construct) if construct.is_file() else Target("3"))
    return [load_recipe(p, target, sources_url) for p in recipe_paths(root)]
