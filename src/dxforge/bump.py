"""Lockstep version bump of all recipes from the package index (``dxforge bump``).

All recipes move to one target version together: ``context.version``, the sdist's sha256 and
build number 0. Edits are made in the original text at the positions ruamel.yaml's round-trip
loader reports for the nodes, so every other byte of a file stays as it was. Each package's new
Requires-Dist is compared with the recipe's run requirements (the dependency drift), and
``--apply-deps`` edits the run lists the same way. Recipes are written all or none.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.specifiers import InvalidSpecifier
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from dxforge.fetch import source_cache
from dxforge.index import IndexFile, PackageIndex, parsed_version_of, verified, version_of
from dxforge.metadata import (
    DistMetadata,
    RequiresDistLookup,
    core_metadata,
    parse_metadata,
    read_sdist,
)
from dxforge.recipes import metadata_run_requirements
from dxforge.seed.names import conda_specifier, split_spec
from dxforge.util import DxError, atomic_write_text, file_lock

VERSION_PIN = "==${{ version }}"
_EXPR = re.compile(r"\$\{\{(.*?)\}\}")
_ITEM = re.compile(r"^([A-Za-z0-9_][A-Za-z0-9_.\-]*)(?:\s+(.*))?$")
_PYTHON_MIN_PIN = re.compile(r"^>=\s*\$\{\{\s*python_min\s*\}\}$")

Log = Callable[[str], None]


# --------------------------------------------------------------------------------------------
# Scalar spans in the original text


@dataclass(frozen=True)
class Span:
    """Where one scalar is written in a file: ``text[start:end]``, quotes included."""

    start: int
    end: int
    line: int


class _Text:
    """The original text of a recipe, addressed by ruamel.yaml's (line, column) positions."""

    def __init__(self, text: str, path: Path) -> None:
        self.text = text
        self.path = path
        self.starts = [0] + [m.end() for m in re.finditer("\n", text)]

    def line_end(self, line: int) -> int:
        """Offset of the end of ``line``'s content (before ``\\r\\n`` / ``\\n``)."""
        end = self.starts[line + 1] - 1 if line + 1 < len(self.starts) else len(self.text)
        if end > self.starts[line] and self.text[end - 1] == "\r":
            end -= 1
        return end

    def line_next(self, line: int) -> int:
        """Offset of the start of the next line (or the end of the text)."""
        return self.starts[line + 1] if line + 1 < len(self.starts) else len(self.text)

    def scalar(self, line: int, col: int, value: object, key: str, flow: bool = False) -> Span:
        """The span of the single-line scalar ``value`` that starts at (``line``, ``col``)."""
        start = self.starts[line] + col
        end_of_line = self.line_end(line)
        text = self.text
        q = text[start : start + 1]
        end = -1
        if q == '"':
            i = start + 1
            while i < end_of_line:
                if text[i] == "\\":
                    i += 2
                    continue
                if text[i] == '"':
                    end = i + 1
                    break
                i += 1
        elif q == "'":
            i = start + 1
            while i < end_of_line:
                if text[i] == "'":
                    if text[i + 1 : i + 2] == "'":
                        i += 2
                        continue
                    end = i + 1
                    break
                i += 1
        elif q not in ("|", ">", ""):
            stop = end_of_line
            m = re.compile(r"[ \t]#").search(text, start, end_of_line)
            if m:
                stop = m.start()
            if flow:
                m = re.compile(r",|[\]}]").search(text, start, stop)
                if m:
                    stop = m.start()
            end = start + len(text[start:stop].rstrip())
        if end < 0 or _load_scalar(text[start:end]) != _as_text(value):
            raise DxError(
                f"{self.path}:{line + 1}: key {key}: dxforge bump edits single-line scalars "
                "only; write this value on one line (plain or quoted)"
            )
        return Span(start, end, line)


def _as_text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def _load_scalar(token: str) -> str | None:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return _as_text(YAML(typ="safe").load(token))
    except YAMLError:
        return None


def _format_like(old_token: str, value: str, number: bool = False) -> str:
    """``value`` written in the quoting style of ``old_token``. A plain string that would not
    read back as the same string (``0.8`` is a float) is double-quoted; ``number`` keeps a
    plain number plain."""
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    q = old_token[:1]
    if q == "'":
        return "'" + value.replace("'", "''") + "'"
    if q == '"':
        return json.dumps(value)
    if number:
        return value
    try:
        loaded = YAML(typ="safe").load(value) if "\n" not in value else None
    except YAMLError:
        loaded = None
    return value if loaded == value and isinstance(loaded, str) else json.dumps(value)


@dataclass(frozen=True)
class Edit:
    start: int
    end: int
    new: str


def apply_edits(text: str, edits: Iterable[Edit]) -> str:
    """``text`` with non-overlapping ``edits`` applied."""
    ordered = sorted(edits, key=lambda e: (e.start, e.end))
    for a, b in zip(ordered, ordered[1:], strict=False):
        if b.start < a.end:
            raise DxError(f"internal error: overlapping edits at offsets {a.start} and {b.start}")
    out = text
    for e in reversed(ordered):
        out = out[: e.start] + e.new + out[e.end :]
    return out


# --------------------------------------------------------------------------------------------
# Recipes as written


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

    def render(self, template: str, version: str) -> str:
        """``template`` with ``${{ var }}`` (and the ``lower``/``upper``/``replace`` filters)
        filled from the context, ``version`` as the version."""
        values = {**self.context, "version": version}

        def sub(m: re.Match[str]) -> str:
            parts = [p.strip() for p in m.group(1).split("|")]
            if parts[0] not in values:
                raise KeyError(parts[0])
            value = str(values[parts[0]])
            for f in parts[1:]:
                r = re.fullmatch(r"""replace\(\s*(['"])(.*?)\1\s*,\s*(['"])(.*?)\3\s*\)""", f)
                if f == "lower":
                    value = value.lower()
                elif f == "upper":
                    value = value.upper()
                elif r:
                    value = value.replace(r.group(2), r.group(4))
                else:
                    raise KeyError(f)
            return value

        return _EXPR.sub(sub, template)

    def sdist_name(self, version: str) -> str:
        """The file name of the sdist of ``version``: the last path part of ``source.url``."""
        tail = _EXPR.sub(lambda m: "\0" * len(m.group(0)), self.url).rsplit("/", 1)[-1]
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


def _value_span(t: _Text, node: Any, key: str, where: str) -> Span:
    line, col = node.lc.value(key)
    return t.scalar(line, col, node[key], where, _is_flow(node))


def parse_recipe(path: Path, text: str) -> RecipeDoc:
    """Read the bump-relevant fields of a recipe's ``text``; errors name the file and key."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as e:
        raise DxError(f"{path}: not valid YAML: {e}") from None
    if not isinstance(data, CommentedMap):
        raise DxError(f"{path}: the recipe is not a YAML mapping")
    t = _Text(text, path)
    context = _child(data, "context")
    ctx = (
        {str(k): str(v) for k, v in context.items() if _as_text(v) is not None}
        if isinstance(context, CommentedMap)
        else {}
    )
    package = _child(data, "package")
    if context is not None and "version" in context:
        version_key, vnode = "context.version", context
    elif package is not None and "version" in package and "${{" not in str(package["version"]):
        version_key, vnode = "package.version", package
    else:
        raise DxError(f'{path}: key context.version: missing; add it (version: "X.Y.Z")')
    version_span = _value_span(t, vnode, "version", version_key)
    name = ctx.get("name") or str(_child(package, "name") or "")
    if not name or "${{" in name:
        raise DxError(f"{path}: key context.name: missing; add the package name there")

    source = data.get("source")
    if isinstance(source, CommentedSeq):
        with_url = [s for s in source if isinstance(s, CommentedMap) and "url" in s]
        if len(with_url) != 1:
            raise DxError(f"{path}: key source: one url source (the sdist) is expected")
        source = with_url[0]
    if not isinstance(source, CommentedMap) or "url" not in source or "sha256" not in source:
        raise DxError(f"{path}: key source: a url and a sha256 are required")
    sha_span = _value_span(t, source, "sha256", "source.sha256")

    build = _child(data, "build")
    number, number_key, number_span = 0, "build.number", None
    if build is not None and "number" in build:
        raw = build["number"]
        m = re.fullmatch(r"\s*\$\{\{\s*(\w+)\s*\}\}\s*", str(raw))
        if m and isinstance(context, CommentedMap) and m.group(1) in context:
            number_key = f"context.{m.group(1)}"
            number_span = _value_span(t, context, m.group(1), number_key)
            raw = context[m.group(1)]
        else:
            number_span = _value_span(t, build, "number", number_key)
        try:
            number = int(str(raw))
        except ValueError:
            raise DxError(
                f"{path}: key {number_key}: {raw!r} is not a build number; write a number"
            ) from None
    python_min_span = None
    if isinstance(context, CommentedMap) and "python_min" in context:
        python_min_span = _value_span(t, context, "python_min", "context.python_min")

    run_node = _child(_child(data, "requirements"), "run")
    run: list[RunItem] | None = None
    run_key_line = None
    if isinstance(run_node, CommentedSeq):
        run = []
        run_key_line = data["requirements"].lc.key("run")[0]
        flow = _is_flow(run_node)
        for i, item in enumerate(run_node):
            line, col = run_node.lc.item(i)
            prefix = text[t.starts[line] : t.starts[line] + col]
            if not isinstance(item, str):
                run.append(RunItem(i, None, None, "", None, prefix, False))
                continue
            span = t.scalar(line, col, item, f"requirements.run[{i}]", flow)
            rest = text[span.end : t.line_end(line)].strip()
            alone = not flow and prefix.strip() == "-" and (not rest or rest.startswith("#"))
            m = _ITEM.match(str(item).strip())
            run.append(
                RunItem(
                    index=i,
                    raw=str(item),
                    name=m.group(1).lower() if m else None,
                    spec=(m.group(2) or "").strip() if m else "",
                    span=span,
                    prefix=prefix,
                    alone=alone,
                )
            )
    elif run_node is not None:
        raise DxError(f"{path}: key requirements.run: a list is expected")
    return RecipeDoc(
        path=path,
        text=text,
        name=name,
        version=_as_text(vnode["version"]) or "",
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
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except OSError as e:
        raise DxError(f"{path}: cannot read: {e}") from None
    except UnicodeDecodeError as e:
        raise DxError(f"{path}: not UTF-8 text ({e})") from None
    return parse_recipe(Path(path), text)


def recipe_files(root: Path) -> list[Path]:
    rdir = Path(root) / "recipes"
    paths = sorted(rdir.glob("*/recipe.yaml")) if rdir.is_dir() else []
    if not paths:
        raise DxError(
            f"{rdir}: no */recipe.yaml found; run dxforge bump in the project directory "
            "or pass --root"
        )
    return paths


# --------------------------------------------------------------------------------------------
# Dependency drift


@dataclass
class Change:
    """One difference between upstream's Requires-Dist and a recipe's run requirements."""

    name: str
    kind: str  # added | removed | changed
    recipe: str | None  # the spec as written in the recipe (None: not there)
    upstream: str | None  # the spec the recipe should have (None: not there)

    def as_dict(self) -> dict[str, str | None]:
        return {
            "name": self.name,
            "kind": self.kind,
            "recipe": self.recipe,
            "upstream": self.upstream,
        }


def canonical_spec(spec: str) -> str:
    """A version spec in a canonical form for comparison (blanks dropped, clauses ordered)."""
    s = re.sub(r"\s+", "", spec)
    if not s:
        return ""
    try:
        return conda_specifier(s)
    except InvalidSpecifier:
        return ",".join(sorted(c for c in s.split(",") if c))


def compute_drift(doc: RecipeDoc, upstream: dict[str, str], version: str) -> list[Change]:
    """How ``doc``'s run requirements differ from ``upstream`` (for ``version``)."""
    have: dict[str, str] = {}
    for item in doc.run or []:
        if item.name is not None:
            have[item.name] = item.spec

    def rendered(spec: str) -> str:
        try:
            return canonical_spec(doc.render(spec, version))
        except KeyError:
            return canonical_spec(spec)

    changes: list[Change] = []
    for name, spec in upstream.items():
        if name not in have:
            changes.append(Change(name, "added", None, spec))
        elif rendered(have[name]) != rendered(spec):
            changes.append(Change(name, "changed", have[name], spec))
    for name, spec in have.items():
        if name not in upstream and not (name == "python" and "python" not in upstream):
            changes.append(Change(name, "removed", spec, None))
    order = {"added": 0, "changed": 1, "removed": 2}
    return sorted(changes, key=lambda c: (order[c.kind], c.name))


def _item_text(name: str, spec: str) -> str:
    return f"{name} {spec}" if spec else name


def drift_edits(doc: RecipeDoc, changes: list[Change], apply_removals: bool) -> list[Edit]:
    """The text edits that bring ``doc``'s run list in line with ``changes``."""
    if not changes:
        return []
    t = _Text(doc.text, doc.path)
    nl = "\r\n" if "\r\n" in doc.text else "\n"
    items = {i.name: i for i in doc.run or [] if i.name is not None}
    edits: list[Edit] = []
    for c in changes:
        if c.kind == "changed":
            item = items[c.name]
            assert item.span is not None
            spec = c.upstream or ""
            if (
                c.name == "python"
                and doc.python_min_span is not None
                and _PYTHON_MIN_PIN.match(item.spec)
                and re.fullmatch(r">=[0-9][0-9.]*", spec)
            ):
                span = doc.python_min_span
                old = doc.text[span.start : span.end]
                edits.append(Edit(span.start, span.end, _format_like(old, spec[2:])))
                continue
            old = doc.text[item.span.start : item.span.end]
            token = _format_like(old, _item_text(c.name, spec))
            edits.append(Edit(item.span.start, item.span.end, token))
        elif c.kind == "removed" and apply_removals:
            item = items[c.name]
            if item.span is None or not item.alone:
                raise DxError(
                    f"{doc.path}:{item.span.line + 1 if item.span else '?'}: key "
                    f"requirements.run: cannot remove {item.raw!r} automatically (not alone on "
                    "its line); remove it by hand"
                )
            line = item.span.line
            edits.append(Edit(t.starts[line], t.line_next(line), ""))
    added = sorted(c.name for c in changes if c.kind == "added")
    if not added:
        return edits
    by_name = {c.name: c for c in changes}
    plain = [i for i in doc.run or [] if i.name is not None and i.alone and i.span is not None]
    if not plain:
        raise DxError(
            f"{doc.path}: key requirements.run: no block-style list to add "
            f"{', '.join(added)} to; add them by hand"
        )
    others = [i for i in plain if i.name != "python"]
    sorted_list = [i.name for i in others] == sorted(i.name or "" for i in others)
    inserts: dict[int, list[str]] = {}
    for name in added:
        spec = by_name[name].upstream or ""
        after = plain[-1]
        before = None
        if sorted_list:
            before = next((i for i in others if (i.name or "") > name), None)
        ref = before or after
        assert ref.span is not None
        quote = doc.text[ref.span.start]
        token = _format_like(quote if quote in "'\"" else "", _item_text(name, spec))
        new_line = f"{ref.prefix}{token}{nl}"
        at = t.starts[ref.span.line] if before is not None else t.line_next(after.span.line)
        if before is None and at == len(doc.text) and not doc.text.endswith("\n"):
            new_line = nl + new_line.rstrip("\r\n")
        inserts.setdefault(at, []).append(new_line)
    edits += [Edit(at, at, "".join(lines)) for at, lines in inserts.items()]
    return edits


# --------------------------------------------------------------------------------------------
# The bump


@dataclass
class BumpOptions:
    root: Path
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


@dataclass
class PackageResult:
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

    def as_dict(self, root: Path) -> dict[str, Any]:
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
                kind: [c.as_dict() for c in self.drift if c.kind == kind]
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
    packages: list[PackageResult] = field(default_factory=list)
    newest_common: str | None = None
    drift_applied: bool = False
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def update(self) -> bool:
        return self.status != "up-to-date"

    @property
    def has_drift(self) -> bool:
        return any(p.drift for p in self.packages)

    def as_dict(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "current": self.current,
            "target": self.target,
            "newest_common": self.newest_common,
            "packages": [
                {**p.as_dict(self.root), "new_version": self.target} for p in self.packages
            ],
            "drift_applied": self.drift_applied,
            "written": [_rel(p, self.root) for p in self.written],
            "notes": self.notes,
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


def _sdists(files: list[IndexFile], name: str) -> dict[Version, list[IndexFile]]:
    """The non-yanked sdists of ``name`` by version."""
    out: dict[Version, list[IndexFile]] = {}
    for f in files:
        if f.yanked or not f.is_sdist:
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


def _load_docs(root: Path) -> tuple[list[RecipeDoc], str, Version]:
    """The recipes, their common current version (as written and parsed)."""
    docs = [read_recipe(p) for p in recipe_files(root)]
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
    p: PackageResult,
    files: list[IndexFile],
    index: PackageIndex,
    cache: Path | None,
    target: Version,
    log: Log,
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
        log(f"downloading {f.filename}")
        p.cached = index.download(f.url, cache / f.filename, f.sha256, what=f.filename)
        data = verified(p.cached.read_bytes(), f.sha256, f.filename, f.url)
    elif meta_file is None or not f.sha256:
        log(f"downloading {f.filename}")
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
        log(f"reading the core metadata of {meta_file.filename}")
        raw = core_metadata(index, meta_file)
        meta = parse_metadata(raw, f"{meta_file.filename}.metadata (PEP 658)")
    else:
        assert data is not None
        meta = read_sdist(data, f.filename)
    if canonicalize_name(meta.name) != canonicalize_name(p.doc.name) or (
        _parse_version(meta.version, meta.source) != target
    ):
        raise DxError(
            f"{meta.source}: the metadata is for {meta.name} {meta.version}, not {p.doc.name} "
            f"{target}; the package index serves a wrong file"
        )
    p.metadata = meta


def _add_drift(
    packages: list[PackageResult], index: PackageIndex, target: str, root: Path, log: Log
) -> None:
    siblings = {p.doc.name for p in packages}
    local = {p.doc.name: p.metadata for p in packages if p.metadata is not None}
    lookup = RequiresDistLookup(index, local, skip_missing=True, log=log)
    for p in packages:
        assert p.metadata is not None
        where = _rel(p.doc.path, root)
        if "requires-dist" in p.metadata.dynamic:
            p.notes.append(f"{p.metadata.source} declares Requires-Dist dynamic; no drift computed")
            continue
        lookup.skipped = []
        meta = p.metadata
        upstream = metadata_run_requirements(
            meta.requires_dist, meta.requires_python, VERSION_PIN, lookup, meta.source, siblings
        )
        if not meta.requires_python:
            del upstream["python"]
        p.drift_incomplete = sorted(set(lookup.skipped))
        for name in p.drift_incomplete:
            p.notes.append(
                f"{p.doc.name}: extras of {name} not expanded "
                f"({lookup.why.get(name, 'no metadata')}); requirements they bring may be "
                "missing from the drift"
            )
        if p.doc.run is None:
            p.notes.append(f"{where} has no requirements.run list")
        p.drift = compute_drift(p.doc, upstream, target)
        for item in p.doc.run or []:
            if item.name is None:
                p.notes.append(
                    f"{where}: requirements.run[{item.index}] "
                    f"({item.raw or 'a conditional entry'}) is not compared"
                )


def plan_bump(opts: BumpOptions, log: Log | None = None) -> BumpResult:
    """Everything a bump would do, without writing recipes. In a real bump (not check, not
    dry-run) the new sdists are downloaded into the source cache, verified."""
    log = log or (lambda _msg: None)
    root = Path(opts.root).resolve()
    docs, current, cur_v = _load_docs(root)
    index = PackageIndex(
        opts.index_url, retries=opts.retries, backoff=opts.backoff, timeout=opts.timeout
    )
    log(f"reading {len(docs)} projects on the package index")
    projects = _pmap(lambda d: index.project(d.name), docs, opts.workers)
    files = {d.name: p.files for d, p in zip(docs, projects, strict=True)}
    sdists = {d.name: _sdists(files[d.name], d.name) for d in docs}
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
    if target_v <= cur_v:
        if target_v < cur_v:
            result.notes.append(
                f"the target {target} is older than the recipes' {current}; no downgrade"
            )
        result.notes += _current_state_notes(docs, sdists, current, root)
        result.packages = [PackageResult(d) for d in docs]
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
        result.packages.append(PackageResult(d, sdist=match[0], new_sha256=match[0].sha256))
    if opts.check:
        result.status = "update-available"
        if not opts.full_plan:
            return result
    else:
        result.status = "would-update" if opts.dry_run else "updated"

    cache = None if (opts.check or opts.dry_run) else source_cache(root)
    _pmap(
        lambda p: _fetch_package(p, files[p.doc.name], index, cache, target_v, log),
        result.packages,
        opts.workers,
    )
    _add_drift(result.packages, index, target, root, log)
    for p in result.packages:
        p.new_text = new_recipe_text(p, target, opts.apply_deps)
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


def new_recipe_text(p: PackageResult, target: str, apply_deps: bool) -> str:
    """The recipe of ``p`` moved to ``target``; checked by reading it back."""
    doc = p.doc
    assert p.new_sha256 is not None
    edits = []
    old = doc.text[doc.version_span.start : doc.version_span.end]
    edits.append(Edit(doc.version_span.start, doc.version_span.end, _format_like(old, target)))
    old = doc.text[doc.sha_span.start : doc.sha_span.end]
    edits.append(Edit(doc.sha_span.start, doc.sha_span.end, _format_like(old, p.new_sha256)))
    if doc.number != 0 and doc.number_span is not None:
        old = doc.text[doc.number_span.start : doc.number_span.end]
        edits.append(
            Edit(doc.number_span.start, doc.number_span.end, _format_like(old, "0", number=True))
        )
    if apply_deps:
        edits += drift_edits(doc, p.drift, apply_removals=not p.drift_incomplete)
    text = apply_edits(doc.text, edits)
    new = parse_recipe(doc.path, text)
    problems = []
    if new.version != target:
        problems.append(f"{doc.version_key} reads {new.version!r}")
    if new.sha256 != p.new_sha256:
        problems.append(f"source.sha256 reads {new.sha256!r}")
    if new.number != 0:
        problems.append(f"{doc.number_key} reads {new.number}")
    if apply_deps:
        fixed = {c.name for c in p.drift if not (c.kind == "removed" and p.drift_incomplete)}
        left = {c.name for c in compute_drift(new, _upstream_of(p), target)} & fixed
        if left:
            problems.append(f"run requirements still differ for {', '.join(sorted(left))}")
    if problems:
        raise DxError(
            f"{doc.path}: internal error: the edited recipe does not read back as intended "
            f"({'; '.join(problems)}); nothing was written"
        )
    return text


def _upstream_of(p: PackageResult) -> dict[str, str]:
    """The upstream requirements implied by ``p``'s recipe and drift."""
    have = {i.name: i.spec for i in p.doc.run or [] if i.name is not None}
    out = dict(have)
    for c in p.drift:
        if c.kind == "removed":
            out.pop(c.name, None)
        else:
            out[c.name] = c.upstream or ""
    return out


_CONSTRUCT_LINES = (
    re.compile(r"^(version:[ \t]*[\"']?)(?P<v>[^\"'\s#]+)", re.M),
    re.compile(r"^([ \t]*-[ \t]*diracx[ \t]*==[ \t]*)(?P<v>[^\s#]+)", re.M),
    re.compile(r"^(installer_filename:.*?)(?P<v>\d+\.\d+[^\s\"'#-]*)(?=-Linux)", re.M),
)


def new_construct_text(path: Path, text: str, current: str, target: str) -> str | None:
    """``construct.yaml`` with its ``version``, its ``diracx ==`` pin and the version in
    ``installer_filename`` moved from ``current`` to ``target``; None when it pins nothing."""
    out = text
    for pattern in _CONSTRUCT_LINES:
        out = pattern.sub(
            lambda m: m.group(1) + (target if m.group("v") == current else m.group("v")), out
        )
    if out == text:
        return None
    import tempfile

    from dxforge.installer.spec import load_construct

    with tempfile.NamedTemporaryFile(
        "w", dir=path.parent, prefix=".construct-", suffix=".yaml", delete=False
    ) as f:
        f.write(out)
    try:
        spec = load_construct(f.name)
    finally:
        os.unlink(f.name)
    pins = [split_spec(s, f"{path}: key specs") for s in spec.specs]
    if spec.version != target or any(v != f"=={target}" for n, v in pins if n == "diracx"):
        raise DxError(
            f"{path}: internal error: the edited construct.yaml does not read back with version "
            f"{target}; nothing was written"
        )
    return out


def write_all(result: BumpResult) -> list[Path]:
    """Write every changed recipe and construct.yaml, or none: on an error the ones written
    are restored."""
    changes = [(p.doc.path, p.doc.text, p.new_text) for p in result.packages if p.new_text]
    construct = result.root / "construct.yaml"
    if construct.exists():
        old_text = construct.read_bytes().decode("utf-8")
        new_text = new_construct_text(construct, old_text, result.current, result.target)
        if new_text is not None:
            changes.append((construct, old_text, new_text))
    for path, old, _new in changes:
        try:
            now = path.read_bytes().decode("utf-8")
        except (OSError, UnicodeDecodeError) as e:
            raise DxError(
                f"{path}: cannot read it again before writing ({e}); nothing was written"
            ) from None
        if now != old:
            raise DxError(
                f"{path} changed while dxforge bump ran; nothing was written; run it again"
            )
    written: list[tuple[Path, str]] = []
    try:
        for path, old, new in changes:
            if new != old:
                atomic_write_text(path, new)
                written.append((path, old))
    except BaseException as e:
        failed = []
        for path, old in reversed(written):
            try:
                atomic_write_text(path, old)
            except OSError as e2:
                failed.append(f"{path} ({e2})")
        if not isinstance(e, OSError | DxError):
            raise
        if failed:
            raise DxError(
                f"writing the recipes failed ({e}) and restoring {', '.join(failed)} failed too; "
                "restore them from version control (git checkout recipes/)"
            ) from None
        raise DxError(
            f"writing the recipes failed ({e}); the {len(written)} already written were "
            "restored, nothing was changed"
        ) from None
    return [p for p, _ in written]


def run_bump(opts: BumpOptions, log: Log | None = None) -> BumpResult:
    """Plan the bump and, unless checking or dry-running, write all recipes atomically."""
    if opts.check or opts.dry_run:
        return plan_bump(opts, log)
    root = Path(opts.root).resolve()
    with file_lock(root / "build" / ".bump.lock", "dxforge bump"):
        try:
            result = plan_bump(opts, log)
        except DxError as e:
            msg = str(e)
            if "nothing was changed" not in msg:
                msg += "; no recipe was changed"
            raise DxError(msg) from None
        if result.status == "updated":
            result.written = write_all(result)
    return result


# --------------------------------------------------------------------------------------------
# Reports


def _short(sha: str | None) -> str:
    return sha[:8] if sha else "?"


def drift_rows(result: BumpResult) -> list[tuple[str, Change]]:
    return [(p.doc.name, c) for p in result.packages for c in p.drift]


def pr_body(result: BumpResult) -> str:
    """A Markdown pull-request body for the bump, in the manner of conda-forge's autotick bot."""
    old, new = result.current, result.target
    lines = [
        f"## DiracX {old} -> {new}",
        "",
        f"This pull request moves all {len(result.packages)} recipes from **{old}** to "
        f"**{new}** in lockstep: `context.version`, the sdist sha256 (from the package index, "
        "checked against the downloaded file) and build number 0. It was made by `dxforge bump`.",
        "",
        "### Sources",
        "",
        "| package | sdist | old sha256 | new sha256 |",
        "|---|---|---|---|",
    ]
    for p in result.packages:
        lines.append(
            f"| {p.doc.name} | `{p.sdist.filename if p.sdist else '?'}` | `{p.doc.sha256}` | "
            f"`{p.new_sha256 or '?'}` |"
        )
    lines += ["", "### Dependency analysis", ""]
    rows = drift_rows(result)
    if rows:
        state = (
            "These changes **were applied** to the run requirements (`--apply-deps`)."
            if result.drift_applied
            else "These changes were **not applied**: update the run requirements, or run "
            "`dxforge bump --apply-deps`."
        )
        lines += [
            f"The run requirements of the recipes differ from the Requires-Dist of {new} "
            "(through the conda-forge name map). " + state,
            "",
            "| package | requirement | change | recipe | upstream |",
            "|---|---|---|---|---|",
        ]
        for name, c in rows:
            lines.append(f"| {name} | {c.name} | {c.kind} | {_md(c.recipe)} | {_md(c.upstream)} |")
    else:
        lines.append(f"The run requirements match the Requires-Dist of {new}: no drift found.")
    notes = result.notes + [n for p in result.packages for n in p.notes]
    if notes:
        lines += ["", "### Notes", ""] + [f"- {n}" for n in notes]
    lines += [
        "",
        "### Checklist",
        "",
        "- [ ] Dependencies checked: the drift above is resolved (run requirements match "
        "upstream, siblings pinned `==${{ version }}`)",
        "- [ ] `context.python_min` still matches upstream's Requires-Python",
        "- [ ] Console scripts (`python.entry_points`) still match upstream's",
        "- [ ] License and license file unchanged (GPL-3.0-only)",
        "- [ ] `dxforge fetch` and `dxforge build` succeed; all recipe tests pass",
        "- [ ] `construct.yaml` (version, `diracx` pin, file name) moved with the recipes",
        "",
    ]
    return "\n".join(lines)


def _plain(spec: str | None) -> str:
    return "-" if spec is None else (spec or "(any)")


def _md(spec: str | None) -> str:
    if spec is None:
        return "—"
    return f"`{spec}`" if spec else "(any)"


def print_result(result: BumpResult, out: Any) -> None:
    """The human summary: a table per package, the drift table, notes and the outcome."""
    from rich.table import Table

    if not result.update:
        out.print(
            f"[green]up to date[/]: the recipes are at {result.current}"
            + (
                f" (newest on the index for all: {result.newest_common})"
                if result.newest_common
                else ""
            )
        )
        for n in result.notes:
            out.print(f"[yellow]note:[/] {n}")
        return
    table = Table(title=f"dxforge bump {result.current} -> {result.target}")
    for col in ("package", "version", "sha256", "build", "drift"):
        table.add_column(col)
    for p in result.packages:
        counts = {k: sum(c.kind == k for c in p.drift) for k in ("added", "removed", "changed")}
        drift = " ".join(
            f"{s}{counts[k]}"
            for k, s in (("added", "+"), ("removed", "-"), ("changed", "~"))
            if counts[k]
        )
        table.add_row(
            p.doc.name,
            f"{p.doc.version} -> {result.target}",
            f"{_short(p.doc.sha256)} -> {_short(p.new_sha256)}",
            f"{p.doc.number} -> 0",
            drift or ("none" if p.metadata else "-"),
        )
    out.print(table)
    rows = drift_rows(result)
    if rows:
        dt = Table(title="dependency drift (recipe run requirements vs upstream Requires-Dist)")
        for col in ("package", "requirement", "change", "recipe", "upstream"):
            dt.add_column(col)
        for name, c in rows:
            dt.add_row(name, c.name, c.kind, _plain(c.recipe), _plain(c.upstream))
        out.print(dt)
    for n in result.notes + [n for p in result.packages for n in p.notes]:
        out.print(f"[yellow]note:[/] {n}")
    verdict = {
        "update-available": f"update available: {result.current} -> {result.target}",
        "would-update": f"dry run: {len(result.packages)} recipes would move to {result.target}",
        "updated": f"updated {len(result.written)} recipes to {result.target}",
    }[result.status]
    if rows and result.status != "update-available":
        verdict += "; drift " + (
            "applied" if result.drift_applied else "not applied (use --apply-deps)"
        )
    out.print(f"[bold]{verdict}[/]")
