"""Dated base tags, ``YYYY.MM.DD.P``, and their record (``tags.json`` next to the layout).

P counts the tags of that base already made that day. A base is tagged anew only when its
manifest digest differs from its latest tag's: the same content keeps its tag."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dxforge.core.util import DxError, atomic_write_text

TAG_RE = re.compile(r"^(\d{4}\.\d{2}\.\d{2})\.(\d+)$")


@dataclass(frozen=True)
class TagRecord:
    tag: str
    digest: str
    made: str  # when the tag was made (UTC, ISO 8601)

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def day_of(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y.%m.%d")


def next_tag(history: list[TagRecord], digest: str, day: str) -> tuple[str, bool]:
    """The tag for an image of ``digest`` made on ``day`` (``YYYY.MM.DD``), and whether it is
    new: the latest tag when its digest is the same, else ``day.P`` with P the number of tags
    already made that day."""
    if history and history[-1].digest == digest:
        return history[-1].tag, False
    made_today = [r for r in history if (m := TAG_RE.match(r.tag)) and m[1] == day]
    return f"{day}.{len(made_today)}", True


class TagBook:
    """``tags.json``: for each base image name, its tags in the order they were made."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.names: dict[str, list[TagRecord]] = {}
        if path.is_file():
            try:
                data = json.loads(path.read_text())
                self.names = {n: [TagRecord(**r) for r in rs] for n, rs in data.items()}
            except (ValueError, TypeError) as e:
                raise DxError(
                    f"{path}: not a tag record ({e}); restore it from the registry's "
                    "tags or remove it to start the dated tags afresh"
                ) from None

    def history(self, name: str) -> list[TagRecord]:
        return self.names.get(name, [])

    def latest(self, name: str) -> TagRecord | None:
        h = self.history(name)
        return h[-1] if h else None

    def find(self, name: str, tag: str) -> TagRecord:
        for r in self.history(name):
            if r.tag == tag:
                return r
        known = ", ".join(r.tag for r in self.history(name)) or "none"
        raise DxError(
            f"{self.path}: {name} has no tag {tag} (known: {known}); build the bases "
            "first (`dxforge images --bases`)"
        )

    def add(self, name: str, record: TagRecord) -> None:
        self.names.setdefault(name, []).append(record)

    def save(self) -> None:
        data = {n: [r.as_json() for r in rs] for n, rs in sorted(self.names.items())}
        atomic_write_text(self.path, json.dumps(data, indent=1) + "\n")
