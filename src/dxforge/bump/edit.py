"""The new text of a recipe and of construct.yaml after a bump: version, sha256, build number 0
and, with ``--apply-deps``, the run list brought in line with upstream. Each result is read
back through the same parser before it may be written."""

from __future__ import annotations

import os
import re
import tempfile
from pathlib import Path

from dxforge.bump.drift import Change, compute_drift
from dxforge.bump.recipedoc import RecipeDoc, RunItem, parse_recipe
from dxforge.bump.textedit import Edit, SourceText, apply_edits, format_like
from dxforge.core.specs import split_spec
from dxforge.core.util import DxError
from dxforge.project.construct import load_construct

_PYTHON_MIN_PIN = re.compile(r"^>=\s*\$\{\{\s*python_min\s*\}\}$")


def _item_text(name: str, spec: str) -> str:
    return f"{name} {spec}" if spec else name


def _changed_edit(doc: RecipeDoc, item: RunItem, c: Change) -> Edit:
    """A changed requirement: its entry rewritten, or ``context.python_min`` for python."""
    assert item.span is not None
    spec = c.upstream or ""
    if (
        c.name == "python"
        and doc.python_min_span is not None
        and _PYTHON_MIN_PIN.match(item.spec)
        and re.fullmatch(r">=[0-9][0-9.]*", spec)
    ):
        span = doc.python_min_span
        return Edit(span.start, span.end, format_like(doc.text[span.start : span.end], spec[2:]))
    old = doc.text[item.span.start : item.span.end]
    return Edit(item.span.start, item.span.end, format_like(old, _item_text(c.name, spec)))


def _removal_edit(doc: RecipeDoc, t: SourceText, item: RunItem) -> Edit:
    """A removed requirement: its line goes (only an entry alone on its line)."""
    if item.span is None or not item.alone:
        raise DxError(
            f"{doc.path}:{item.span.line + 1 if item.span else '?'}: key "
            f"requirements.run: cannot remove {item.raw!r} automatically (not alone on "
            "its line); remove it by hand"
        )
    line = item.span.line
    return Edit(t.starts[line], t.line_next(line), "")


def _insert(
    doc: RecipeDoc, t: SourceText, plain: list[RunItem], before: RunItem | None, text: str
) -> tuple[int, str]:
    """Where a new entry ``text`` goes (before ``before``, else after the last entry) and the
    line to insert there, indented and quoted like its neighbour."""
    nl = "\r\n" if "\r\n" in doc.text else "\n"
    after = plain[-1]
    ref = before or after
    assert ref.span is not None and after.span is not None
    quote = doc.text[ref.span.start]
    token = format_like(quote if quote in "'\"" else "", text)
    new_line = f"{ref.prefix}{token}{nl}"
    at = t.starts[ref.span.line] if before is not None else t.line_next(after.span.line)
    if before is None and at == len(doc.text) and not doc.text.endswith("\n"):
        new_line = nl + new_line.rstrip("\r\n")
    return at, new_line


def _addition_edits(doc: RecipeDoc, t: SourceText, added: list[Change]) -> list[Edit]:
    """New requirements, in name order where the list is sorted, else at its end."""
    plain = [i for i in doc.run or [] if i.name is not None and i.alone and i.span is not None]
    if not plain:
        raise DxError(
            f"{doc.path}: key requirements.run: no block-style list to add "
            f"{', '.join(c.name for c in added)} to; add them by hand"
        )
    others = [i for i in plain if i.name != "python"]
    sorted_list = [i.name for i in others] == sorted(i.name or "" for i in others)
    inserts: dict[int, list[str]] = {}
    for c in sorted(added, key=lambda c: c.name):
        before = next((i for i in others if (i.name or "") > c.name), None) if sorted_list else None
        at, line = _insert(doc, t, plain, before, _item_text(c.name, c.upstream or ""))
        inserts.setdefault(at, []).append(line)
    return [Edit(at, at, "".join(lines)) for at, lines in inserts.items()]


def drift_edits(doc: RecipeDoc, changes: list[Change], apply_removals: bool) -> list[Edit]:
    """The text edits that bring ``doc``'s run list in line with ``changes``."""
    if not changes:
        return []
    t = SourceText(doc.text, doc.path)
    items = {i.name: i for i in doc.run or [] if i.name is not None}
    edits = [_changed_edit(doc, items[c.name], c) for c in changes if c.kind == "changed"]
    if apply_removals:
        edits += [_removal_edit(doc, t, items[c.name]) for c in changes if c.kind == "removed"]
    added = [c for c in changes if c.kind == "added"]
    return edits + (_addition_edits(doc, t, added) if added else [])


def new_recipe_text(
    doc: RecipeDoc,
    target: str,
    sha256: str,
    drift: list[Change],
    drift_incomplete: bool,
    apply_deps: bool,
) -> str:
    """The recipe ``doc`` moved to ``target`` (its sdist's ``sha256``; with ``apply_deps``, its
    run list following ``drift``); checked by reading it back."""
    edits = []
    old = doc.text[doc.version_span.start : doc.version_span.end]
    edits.append(Edit(doc.version_span.start, doc.version_span.end, format_like(old, target)))
    old = doc.text[doc.sha_span.start : doc.sha_span.end]
    edits.append(Edit(doc.sha_span.start, doc.sha_span.end, format_like(old, sha256)))
    if doc.number != 0 and doc.number_span is not None:
        old = doc.text[doc.number_span.start : doc.number_span.end]
        edits.append(
            Edit(doc.number_span.start, doc.number_span.end, format_like(old, "0", number=True))
        )
    if apply_deps:
        edits += drift_edits(doc, drift, apply_removals=not drift_incomplete)
    text = apply_edits(doc.text, edits)
    new = parse_recipe(doc.path, text)
    problems = []
    if new.version != target:
        problems.append(f"{doc.version_key} reads {new.version!r}")
    if new.sha256 != sha256:
        problems.append(f"source.sha256 reads {new.sha256!r}")
    if new.number != 0:
        problems.append(f"{doc.number_key} reads {new.number}")
    if apply_deps:
        fixed = {c.name for c in drift if not (c.kind == "removed" and drift_incomplete)}
        left = {c.name for c in compute_drift(new, _upstream_of(doc, drift), target)} & fixed
        if left:
            problems.append(f"run requirements still differ for {', '.join(sorted(left))}")
    if problems:
        raise DxError(
            f"{doc.path}: internal error: the edited recipe does not read back as intended "
            f"({'; '.join(problems)}); nothing was written"
        )
    return text


def _upstream_of(doc: RecipeDoc, drift: list[Change]) -> dict[str, str]:
    """The upstream requirements implied by ``doc``'s run list and ``drift``."""
    have = {i.name: i.spec for i in doc.run or [] if i.name is not None}
    out = dict(have)
    for c in drift:
        if c.kind == "removed":
            out.pop(c.name, None)
        else:
            out[c.name] = c.upstream or ""
    return out


def construct_edits(path: Path, text: str, current: str, target: str) -> list[Edit]:
    """The edits that move construct.yaml's ``version``, the version inside
    ``installer_filename`` and a ``diracx ==current`` spec from ``current`` to ``target``,
    located with ruamel.yaml's round-trip positions."""
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.error import YAMLError

    try:
        data = YAML(typ="rt").load(text)
    except YAMLError as e:
        raise DxError(f"{path}: not valid YAML ({e}); fix the syntax") from None
    if not isinstance(data, CommentedMap):
        return []
    t = SourceText(text, path)
    edits: list[Edit] = []
    for key, moved in (
        ("version", lambda v: target if v == current else v),
        ("installer_filename", lambda v: v.replace(f"-{current}-", f"-{target}-")),
    ):
        value = data.get(key)
        if value is None or moved(str(value)) == str(value):
            continue
        line, col = data.lc.value(key)
        span = t.scalar(line, col, value, key)
        old = text[span.start : span.end]
        edits.append(Edit(span.start, span.end, format_like(old, moved(str(value)))))
    specs = data.get("specs")
    if isinstance(specs, CommentedSeq):
        for i, item in enumerate(specs):
            if not isinstance(item, str):
                continue
            name, version = split_spec(item.split("#", 1)[0], f"{path}: key specs")
            if name == "diracx" and version == f"=={current}":
                line, col = specs.lc.item(i)
                span = t.scalar(line, col, item, f"specs[{i}]")
                old = text[span.start : span.end]
                edits.append(
                    Edit(span.start, span.end, format_like(old, item.replace(current, target)))
                )
    return edits


def new_construct_text(path: Path, text: str, current: str, target: str) -> str | None:
    """``construct.yaml`` with its ``version``, its ``diracx ==`` pin and the version in
    ``installer_filename`` moved from ``current`` to ``target``; None when it pins nothing.
    Checked by loading the result as ``dxforge installer`` does."""
    edits = construct_edits(path, text, current, target)
    if not edits:
        return None
    out = apply_edits(text, edits)
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
