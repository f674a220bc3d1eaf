"""The one store of cached results, and the one link-or-copy.

Every expensive, deterministic result (a built package, a runtime component, an installer, a
converted wheel, the seed channel, a Debian root) is kept in the user cache under a key made
by :func:`fingerprint` (the sha256 of the canonical JSON of what made it). A :class:`Store` is
one folder of such entries: :meth:`Store.put` fills a directory with an unpredictable name
beside the entry, records every file's sha256 in the entry's manifest, makes it readable by
the other users of the cache (files 0644, or 0755 when executable; directories 0755) and
renames it into place in one step; :meth:`Store.get` gives the entry only when its manifest
names the key and every file still has its sha256.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dxforge.core.util import DxError, atomic_write_text, sha256_file

DIGESTS = "files_sha256"
"""The manifest key holding ``{relative path: sha256}`` of the entry's files."""


def fingerprint(data: object) -> str:
    """The sha256 of ``data`` as canonical JSON (sorted keys; other types by ``str``): the one
    key function of every cache."""
    return hashlib.sha256(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def link_or_copy(src: Path, dest: Path) -> Path:
    """``dest`` as a hard link of ``src``, or a copy where links cannot be made (another file
    system); symlinks are recreated as symlinks. Parents are created."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dest)
        return dest
    try:
        os.link(src, dest)
    except OSError:
        shutil.copy2(src, dest)
    return dest


def link_tree(src: Path, dest: Path) -> list[str]:
    """Every file and symlink under ``src`` at the same place under ``dest`` (by
    :func:`link_or_copy`); their relative paths, sorted."""
    rels = []
    for dirpath, dirnames, filenames in os.walk(src):
        links = [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        for name in sorted(filenames + links):
            rel = os.path.relpath(os.path.join(dirpath, name), src)
            link_or_copy(Path(dirpath) / name, dest / rel)
            rels.append(rel)
    return sorted(rels)


def share(root: Path) -> None:
    """Make the tree at ``root`` readable by every user: directories 0755, files 0644 (0755
    when executable by their owner); symlinks are left alone."""
    for dirpath, _dirnames, filenames in os.walk(root):
        os.chmod(dirpath, 0o755)
        for name in filenames:
            p = os.path.join(dirpath, name)
            mode = os.lstat(p).st_mode
            if stat.S_ISREG(mode):
                os.chmod(p, 0o755 if mode & stat.S_IXUSR else 0o644)


def _files(root: Path) -> list[str]:
    out = []
    for dirpath, _dirnames, filenames in os.walk(root):
        for name in filenames:
            p = os.path.join(dirpath, name)
            if not os.path.islink(p):
                out.append(os.path.relpath(p, root))
    return sorted(out)


def _swap_in(tmp: Path, entry: Path, attempts: int = 5) -> None:
    """Rename the finished directory ``tmp`` to ``entry``; an older entry is moved aside first
    (to an unpredictable name) and removed after, so a reader never sees half of one. When
    other writers keep putting the same entry, one of theirs stays."""
    for attempt in range(attempts):
        try:
            os.rename(tmp, entry)
            return
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                raise DxError(
                    f"{entry}: cannot put the new cache entry in place ({e.strerror}); check "
                    f"the permissions of {entry.parent}"
                ) from None
        if attempt == attempts - 1:
            return  # the last rename found another writer's entry in place: it stays
        aside = Path(tempfile.mkdtemp(prefix=f".{entry.name}.old-", dir=entry.parent))
        with contextlib.suppress(FileNotFoundError):
            os.rename(entry, aside / "entry")
        shutil.rmtree(aside, ignore_errors=True)


@dataclass(frozen=True)
class Entry:
    """One entry of a store: its directory and its manifest."""

    path: Path
    meta: dict[str, Any]

    def file(self, rel: str) -> Path:
        return self.path / rel


@dataclass(frozen=True)
class Store:
    """A folder of entries in the user cache, each a directory named by (a prefix of) its key,
    holding a JSON manifest ``manifest`` with the key and its files' sha256. ``legacy``
    accepts entries written before the store, without sha256 (same layout, read as before)."""

    root: Path
    manifest: str = "entry.json"
    legacy: bool = False

    def path(self, name: str) -> Path:
        return self.root / name

    def get(self, name: str, key: str | None = None) -> Entry | None:
        """The entry ``name`` when its manifest names ``key`` (when given) and every file it
        lists still has its sha256; else None (absent, damaged or another key's)."""
        path = self.path(name)
        try:
            meta = json.loads((path / self.manifest).read_text())
        except (OSError, ValueError):
            return None
        if not isinstance(meta, dict) or (key is not None and meta.get("key") != key):
            return None
        digests = meta.get(DIGESTS)
        if not isinstance(digests, dict):
            return Entry(path, meta) if self.legacy else None
        for rel, digest in digests.items():
            try:
                if sha256_file(path / rel) != digest:
                    return None
            except OSError:
                return None
        return Entry(path, meta)

    def put(
        self, name: str, fill: Callable[[Path], dict[str, Any]], key: str | None = None
    ) -> Entry:
        """A new entry ``name``: ``fill(directory)`` writes its files and returns its metadata;
        the manifest adds ``key`` and every file's sha256; then it is shared and renamed into
        place in one step (replacing an older entry of that name)."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.new-", dir=self.root))
        try:
            meta = dict(fill(tmp))
            if key is not None:
                meta["key"] = key
            meta[DIGESTS] = {
                rel: sha256_file(tmp / rel) for rel in _files(tmp) if rel != self.manifest
            }
            atomic_write_text(
                tmp / self.manifest, json.dumps(meta, indent=1, sort_keys=True) + "\n"
            )
            share(tmp)
            _swap_in(tmp, self.path(name))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return Entry(self.path(name), meta)

    def put_file(self, name: str, fill: Callable[[Path], object]) -> Path:
        """A single-file entry ``name``: ``fill(path)`` writes it at a path not yet there, in a
        directory with an unpredictable name beside it; it is made readable (0644) and renamed
        into place."""
        self.root.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{name}.new-", dir=self.root))
        try:
            fill(tmp / name)
            os.chmod(tmp / name, 0o644)
            os.replace(tmp / name, self.path(name))
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
        return self.path(name)
