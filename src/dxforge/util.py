"""Small file-system helpers shared by every stage: atomic writes, hashing, locks, errors."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path


class DxError(Exception):
    """A user-facing error: the message names the file, key or package, and the fix."""


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def atomic_write_bytes(path: Path, data: bytes, mode: int | None = None) -> None:
    """Write ``data`` to ``path`` through a temporary file in the same directory and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        if mode is not None:
            os.chmod(tmp, mode)
        elif path.exists():
            os.chmod(tmp, path.stat().st_mode & 0o7777)
        else:
            os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: Path, text: str, mode: int | None = None) -> None:
    atomic_write_bytes(path, text.encode("utf-8"), mode)


@contextlib.contextmanager
def file_lock(path: Path, what: str) -> Iterator[None]:
    """Hold an exclusive lock on ``path``; fail at once if another process holds it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.seek(0)
            holder = f.read().strip() or "another process"
            raise DxError(
                f"{what} is locked by {holder} ({path}); wait for it to finish, "
                f"or remove {path} if that process is gone"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(f"pid {os.getpid()}\n")
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def replace_dir(new: Path, target: Path) -> None:
    """Publish directory ``new`` at ``target`` in one atomic step: ``target`` becomes a symlink
    to a versioned sibling (``.<name>.<n>``) and is replaced by a single rename, so a reader sees
    the old or the new directory, never neither. The previous version is removed afterwards."""
    target = Path(target)
    versioned = Path(tempfile.mkdtemp(prefix=f".{target.name}.v-", dir=target.parent))
    os.rmdir(versioned)
    os.replace(new, versioned)
    link = target.with_name(f".{target.name}.link-{os.getpid()}")
    with contextlib.suppress(FileNotFoundError):
        os.unlink(link)
    os.symlink(versioned.name, link)
    previous: Path | None = None
    if target.is_symlink():
        previous = target.parent / os.readlink(target)
    elif target.exists():  # a plain directory from elsewhere: moved aside first
        previous = target.with_name(f".{target.name}.old")
        if previous.exists():
            shutil.rmtree(previous)
        os.replace(target, previous)
    os.replace(link, target)
    if previous is not None and previous.resolve() != versioned.resolve():
        shutil.rmtree(previous, ignore_errors=True)


def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding ``recipes/`` or
    ``construct.yaml``."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "recipes").is_dir() or (d / "construct.yaml").is_file():
            return d
    return here
