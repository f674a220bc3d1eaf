"""A recipe as written: the fields a bump reads or edits, with their places in the text."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dxforge.bump.textedit import SourceText, Span, as_text
from dxforge.core import expr
from dxforge.core.util import DxError
from dxforge.project.recipes import Recipe, read_text

_ITEM = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.\-]*)(?:\s+(.*))?$")


@dataclass
class RunItem:
    """One entry of ``requirements.run``."""

    index: int
    raw: str | None  # None for a non-string entry (if/then/else)
    name: str | None  # None when not ``name [spec]``
    spec: str
    span: Span | None
    prefix: str  # the text before the entry on its line (``    - ``)
    alone: bool  # the entry is the only thing on its line (besides a comment)
    beyond: bool = False
    """Marked ``# beyond Requires-Dist: <why>``: a requirement upstream's metadata lacks, kept
    (as a conda-forge recipe adds one), never reported as drift."""


BEYOND = "# beyond Requires-Dist"


@dataclass
class RecipeDoc:
    """The fields of a recipe that a bump reads or edits, with their places in the text."""

    path: Path
    text: str
    name: str
    version: str
    version_key: str
    version_span: Span
    context: dict[str, str]
    url: str
    sha256: str
    sha_span: Span
    number: int
    number_key: str
    number_span: Span | None
    python_min_span: Span | None
    run: list[RunItem] | None
    run_key_line: int | None
    recipe: Recipe | None = None
    """The recipe as the build renders it (:func:`dxforge.project.recipes.load_recipe`), when read
    through :func:`doc_of`."""

    def render(self, template: str, version: str) -> str:
        """``template``'s ``${{ }}`` expressions (:mod:`dxforge.core.expr`) filled from the context,
        ``version`` as the version; :class:`dxforge.core.expr.Unknown` (a KeyError) names a name
        or filter it does not know."""
        return expr.render(template, {**self.context, "version": version})

    def sdist_name(self, version: str) -> str:
        """The file name of the sdist of ``version``: the last path part of ``source.url``
        (for the recipe's own version, as the build renders it)."""
        if self.recipe is not None and version == self.version:
            return self.recipe.source_filename
        tail = expr.EXPR.sub(lambda m: "\0" * len(m.group(0)), self.url).rsplit("/", 1)[-1]
        template = self.url[len(self.url) - len(tail) :]
        try:
            return self.render(template, version)
        except KeyError as e:
            raise DxError(
                f"{self.path}: key source.url: cannot work out the sdist file name from "
                f"{template!r} ({e} is not a context variable or a supported filter); use "
                "context variables and ${{ version }} only in the file name"
            ) from None


def _child(node: Any, key: str) -> Any:
    from ruamel.yaml.comments import CommentedMap

    return node.get(key) if isinstance(node, CommentedMap) else None


def _is_flow(node: Any) -> bool:
    fa = getattr(node, "fa", None)
    return bool(fa and fa.flow_style())


def _value_span(t: SourceText, node: Any, key: str, where: str) -> Span:
    line, col = node.lc.value(key)
    return t.scalar(line, col, node[key], where, _is_flow(node))


def _load(path: Path, text: str) -> Any:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as e:
        raise DxError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, CommentedMap):
        raise DxError(f"{path}: the recipe is not a YAML mapping")
    return data


def _version_node(path: Path, context: Any, package: Any) -> tuple[str, Any]:
    """Where the version is written: ``context.version``, else a literal ``package.version``."""
    if context is not None and "version" in context:
        return "context.version", context
    if package is not None and "version" in package and "${{" not in str(package["version"]):
        return "package.version", package
    raise DxError(f'{path}: key context.version: missing; add it (version: "X.Y.Z")')


def _source(path: Path, data: Any) -> Any:
    """The one url source (the sdist)."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    source = data.get("source")
    if isinstance(source, CommentedSeq):
        with_url = [s for s in source if isinstance(s, CommentedMap) and "url" in s]
        if len(with_url) != 1:
            raise DxError(f"{path}: key source: one url source (the sdist) is expected")
        source = with_url[0]
    if not isinstance(source, CommentedMap) or "url" not in source or "sha256" not in source:
        raise DxError(f"{path}: key source: a url and a sha256 are required")
    return source


def _build_number(t: SourceText, data: Any, context: Any) -> tuple[int, str, Span | None]:
    """``build.number``, or the context variable it names, with where it is written."""
    from ruamel.yaml.comments import CommentedMap

    build = _child(data, "build")
    if build is None or "number" not in build:
        return 0, "build.number", None
    raw = build["number"]
    m = re.fullmatch(r"\s*\$\{\{\s*(\w+)\s*\}\}\s*", str(raw))
    if m and isinstance(context, CommentedMap) and m.group(1) in context:
        key = f"context.{m.group(1)}"
        span = _value_span(t, context, m.group(1), key)
        raw = context[m.group(1)]
    else:
        key = "build.number"
        span = _value_span(t, build, "number", key)
    try:
        return int(str(raw)), key, span
    except ValueError:
        raise DxError(
            f"{t.path}: key {key}: {raw!r} is not a build number; write a number"
        ) from None


def _run_item(t: SourceText, node: Any, i: int, flow: bool) -> RunItem:
    line, col = node.lc.item(i)
    item = node[i]
    prefix = t.text[t.starts[line] : t.starts[line] + col]
    if not isinstance(item, str):
        return RunItem(i, None, None, "", None, prefix, False)
    span = t.scalar(line, col, item, f"requirements.run[{i}]", flow)
    rest = t.text[span.end : t.line_end(line)].strip()
    m = _ITEM.match(str(item).strip())
    return RunItem(
        index=i,
        raw=str(item),
        name=m.group(1).lower() if m else None,
        spec=(m.group(2) or "").strip() if m else "",
        span=span,
        prefix=prefix,
        alone=not flow and prefix.strip() == "-" and (not rest or rest.startswith("#")),
        beyond=rest.startswith(BEYOND),
    )


def _run(t: SourceText, data: Any) -> tuple[list[RunItem] | None, int | None]:
    """``requirements.run`` entry by entry, and the line of its key."""
    from ruamel.yaml.comments import CommentedSeq

    node = _child(_child(data, "requirements"), "run")
    if node is None:
        return None, None
    if not isinstance(node, CommentedSeq):
        raise DxError(f"{t.path}: key requirements.run: a list is expected")
    flow = _is_flow(node)
    items = [_run_item(t, node, i, flow) for i in range(len(node))]
    return items, data["requirements"].lc.key("run")[0]


def parse_recipe(path: Path, text: str) -> RecipeDoc:
    """Read the bump-relevant fields of a recipe's ``text``; errors name the file and key."""
    from ruamel.yaml.comments import CommentedMap

    data = _load(path, text)
    t = SourceText(text, path)
    context = _child(data, "context")
    ctx = (
        {str(k): str(v) for k, v in context.items() if as_text(v) is not None}
        if isinstance(context, CommentedMap)
        else {}
    )
    package = _child(data, "package")
    version_key, vnode = _version_node(path, context, package)
    version_span = _value_span(t, vnode, "version", version_key)
    name = ctx.get("name") or str(_child(package, "name") or "")
    if not name or "${{" in name:
        raise DxError(f"{path}: key context.name: missing; add the package name there")
    source = _source(path, data)
    sha_span = _value_span(t, source, "sha256", "source.sha256")
    number, number_key, number_span = _build_number(t, data, context)
    python_min_span = None
    if isinstance(context, CommentedMap) and "python_min" in context:
        python_min_span = _value_span(t, context, "python_min", "context.python_min")
    run, run_key_line = _run(t, data)
    return RecipeDoc(
        path=path,
        text=text,
        name=name,
        version=as_text(vnode["version"]) or "",
        version_key=version_key,
        version_span=version_span,
        context=ctx,
        url=str(source["url"]),
        sha256=str(source["sha256"]),
        sha_span=sha_span,
        number=number,
        number_key=number_key,
        number_span=number_span,
        python_min_span=python_min_span,
        run=run,
        run_key_line=run_key_line,
    )


def read_recipe(path: Path) -> RecipeDoc:
    return parse_recipe(Path(path), read_text(Path(path)))


def doc_of(recipe: Recipe) -> RecipeDoc:
    """The editable view of a recipe the build renders: its text's fields and their places."""
    doc = parse_recipe(recipe.path, recipe.text)
    doc.recipe = recipe
    return doc
