"""Editing a YAML file in place: scalars located by ruamel.yaml's round-trip positions, replaced
as text, so that every other byte (comments, quoting, line ends) stays as it was."""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dxforge.core.util import DxError


@dataclass(frozen=True)
class Span:
    """Where one scalar is written in a file: ``text[start:end]``, quotes included."""

    start: int
    end: int
    line: int


class SourceText:
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

    def _quoted_end(self, start: int, end_of_line: int) -> int:
        """The end of the quoted scalar at ``start`` (``"`` with backslash escapes, ``'`` with
        doubled quotes), or -1 when it does not close on its line."""
        text, q = self.text, self.text[start]
        i = start + 1
        while i < end_of_line:
            if q == '"' and text[i] == "\\":
                i += 2
            elif text[i] == q and q == "'" and text[i + 1 : i + 2] == "'":
                i += 2
            elif text[i] == q:
                return i + 1
            else:
                i += 1
        return -1

    def _plain_end(self, start: int, end_of_line: int, flow: bool) -> int:
        """The end of the plain scalar at ``start``: before a comment, and in a flow
        collection before ``,``, ``]`` or ``}``."""
        text = self.text
        stop = end_of_line
        m = re.compile(r"[ \t]#").search(text, start, end_of_line)
        if m:
            stop = m.start()
        if flow:
            m = re.compile(r",|[\]}]").search(text, start, stop)
            if m:
                stop = m.start()
        return start + len(text[start:stop].rstrip())

    def scalar(self, line: int, col: int, value: object, key: str, flow: bool = False) -> Span:
        """The span of the single-line scalar ``value`` that starts at (``line``, ``col``)."""
        start = self.starts[line] + col
        end_of_line = self.line_end(line)
        text = self.text
        q = text[start : start + 1]
        end = -1
        if q in ('"', "'"):
            end = self._quoted_end(start, end_of_line)
        elif q not in ("|", ">", ""):
            end = self._plain_end(start, end_of_line, flow)
        if end < 0 or load_scalar(text[start:end]) != as_text(value):
            raise DxError(
                f"{self.path}:{line + 1}: key {key}: dxforge bump edits single-line scalars "
                "only; write this value on one line (plain or quoted)"
            )
        return Span(start, end, line)


def as_text(value: object) -> str | None:
    if value is None or isinstance(value, dict | list):
        return None
    if isinstance(value, bool):
        return str(value).lower()
    return str(value)


def load_scalar(token: str) -> str | None:
    from ruamel.yaml import YAML
    from ruamel.yaml.error import YAMLError

    try:
        return as_text(YAML(typ="safe").load(token))
    except YAMLError:
        return None


def format_like(old_token: str, value: str, number: bool = False) -> str:
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
