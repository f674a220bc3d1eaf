"""Small helpers shared by every stage: errors, atomic writes, hashing, locks, subprocesses."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
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


def run(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str = "",
    fix: str = "",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    log: Path | None = None,
) -> str:
    """Run ``cmd`` and return its standard output. A missing program or a non-zero exit is a
    DxError naming ``what`` (default: the command), the tail of its error output and ``fix``.
    With ``log``, the command line and both outputs are written there as well."""
    args = [str(c) for c in cmd]
    label = what or " ".join(args)
    hint = f"; {fix}" if fix else ""
    try:
        proc = subprocess.run(
            args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False,
            stdin=subprocess.DEVNULL,
        )
    except FileNotFoundError:
        raise DxError(f"{label}: {args[0]} is not installed{hint}") from None
    except subprocess.TimeoutExpired:
        raise DxError(f"{label}: still running after {timeout:.0f} s, stopped{hint}") from None
    if log is not None:
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(" ".join(args) + "\n\n" + proc.stdout + proc.stderr)
    if proc.returncode != 0:
        tail = (proc.stderr.strip() or proc.stdout.strip())[-1500:]
        where = f" (log: {log})" if log is not None else ""
        raise DxError(f"{label} failed (exit {proc.returncode}){where}: {tail}{hint}")
    return proc.stdout


def user_cache() -> Path:
    """dxforge's cache outside any clone, shared by clones and CI on one machine: ``DXFORGE_CACHE``,
    else ``$XDG_CACHE_HOME/dxforge``, else ``~/.cache/dxforge`` (rattler keeps its own beside)."""
    if os.environ.get("DXFORGE_CACHE"):
        return Path(os.environ["DXFORGE_CACHE"]).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).absolute() / "dxforge"
