"""Small helpers shared by every stage: errors, atomic writes, hashing, locks, the one
subprocess runner, the one publish (an atomic directory swap)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any


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


def read_utf8(path: Path, fix: str = "save it as UTF-8") -> str:
    """The text of ``path``; a byte that is not UTF-8 is a DxError naming the line, the column
    and the byte offset (an unreadable file raises OSError as usual)."""
    data = Path(path).read_bytes()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - data.rfind(b"\n", 0, e.start)
        raise DxError(
            f"{path}: line {line}, column {column} (byte offset {e.start}): byte "
            f"0x{data[e.start]:02x} is not UTF-8; {fix}"
        ) from None


def yaml_kind(value: Any) -> str:
    """What ``value`` is in YAML's words (never a Python or ruamel class name)."""
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return f"a boolean ({str(value).lower()})"
    if isinstance(value, int | float):
        return f"a number ({value})"
    if isinstance(value, str):
        return f"the text {str(value)!r}" if value.strip() else "empty text"
    if isinstance(value, dict):
        return "a mapping"
    if isinstance(value, list | tuple):
        return "a list"
    return "a YAML value of another kind"


PACKAGE_MODE = 0o644
"""The mode of every package dxforge writes (channels, the user cache, releases): readable by
all, as a channel others install from must be."""


def world_readable(path: Path, mode: int = PACKAGE_MODE) -> None:
    """Give ``path`` ``mode`` when it is ours and has another (a file of another user, which we
    may only read, is left as it is)."""
    st = os.stat(path)
    if st.st_mode & 0o7777 != mode and st.st_uid == os.geteuid():
        os.chmod(path, mode)


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


def publish(new: Path, target: Path, latest: Path | None = None) -> Path:
    """Publish directory ``new`` at ``target`` in one atomic step: ``target`` becomes a symlink
    to a versioned sibling (``.<name>.v-*``) and is replaced by a single rename, so a reader sees
    the old or the new directory, never neither; the previous version is removed afterwards.
    With ``latest``, that symlink then points at ``target`` (one rename too). The one way
    dxforge publishes a channel or a release."""
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
    if latest is not None:
        pointer = latest.with_name(f".{latest.name}.link-{os.getpid()}")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(pointer)
        os.symlink(os.path.relpath(target, latest.parent), pointer)
        os.replace(pointer, latest)
    return target


def project_root(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` (default: cwd) holding ``recipes/`` or
    ``construct.yaml``."""
    here = Path(start or Path.cwd()).resolve()
    for d in (here, *here.parents):
        if (d / "recipes").is_dir() or (d / "construct.yaml").is_file():
            return d
    return here


TAIL_LINES = 30
"""How much of a failed command's output an error shows (its log holds all of it)."""


@dataclass
class Ran:
    """A finished command: its exit status and output (standard output and error, in order,
    when they went to a log; standard output alone otherwise)."""

    argv: list[str]
    returncode: int
    stdout: str
    stderr: str = ""
    seconds: float = 0.0
    log: Path | None = None

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    def tail(self, lines: int = TAIL_LINES) -> str:
        text = (
            (self.stderr.strip() + "\n" + self.stdout.strip()).strip()
            if not self.log
            else self.stdout.strip()
        )
        return "\n".join(text.splitlines()[-lines:])


def execute(
    cmd: Sequence[str | os.PathLike[str]],
    *,
    what: str = "",
    fix: str = "",
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
    timeout: float | None = None,
    log: Path | None = None,
    check: bool = True,
    input: str | None = None,
) -> Ran:
    """Run ``cmd``: the one way dxforge runs a program. With ``log``, the command line and its
    whole output go there as it runs (read it while it works). A missing program, a timeout, or
    (with ``check``) a non-zero exit is a DxError naming ``what`` (default: the command), the
    log, the tail of the output and ``fix``."""
    args = [str(c) for c in cmd]
    label = what or " ".join(args)
    hint = f"; {fix}" if fix else ""
    where = f" (log: {log})" if log is not None else ""
    t0 = time.monotonic()
    try:
        if log is not None:
            log.parent.mkdir(parents=True, exist_ok=True)
            with open(log, "w") as f:
                f.write(" ".join(args) + "\n\n")
                f.flush()
                proc = subprocess.run(
                    args,
                    cwd=cwd,
                    env=env,
                    stdout=f,
                    stderr=subprocess.STDOUT,
                    text=True,
                    timeout=timeout,
                    check=False,
                    input=input,
                    stdin=None if input is not None else subprocess.DEVNULL,
                )
            text = log.read_text(errors="replace").split("\n\n", 1)[-1]
            ran = Ran(args, proc.returncode, text, "", time.monotonic() - t0, log)
        else:
            proc = subprocess.run(
                args,
                cwd=cwd,
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                input=input,
                stdin=None if input is not None else subprocess.DEVNULL,
            )
            ran = Ran(args, proc.returncode, proc.stdout, proc.stderr, time.monotonic() - t0)
    except FileNotFoundError:
        raise DxError(f"{label}: {args[0]} is not installed{hint}") from None
    except OSError as e:
        raise DxError(f"{label}: cannot run {args[0]}: {e}{hint}") from None
    except subprocess.TimeoutExpired:
        raise DxError(
            f"{label}: still running after {timeout:.0f} s, stopped{where}{hint}"
        ) from None
    if check and not ran.ok:
        raise DxError(f"{label} failed (exit {ran.returncode}){where}:\n{ran.tail()}{hint}")
    return ran


def spawn(
    cmd: Sequence[str | os.PathLike[str]],
    log: Path,
    *,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``cmd`` in the background (a server), in a session of its own, the command line and
    its whole output in ``log``; stop it with :func:`dxforge.isolation.isolate.stop`."""
    args = [str(c) for c in cmd]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as f:
        f.write((" ".join(args) + "\n\n").encode())
        f.flush()
        try:
            return subprocess.Popen(
                args,
                cwd=cwd,
                env=env,
                stdout=f,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        except OSError as e:
            raise DxError(f"cannot start {args[0]}: {e}") from None


def run(cmd: Sequence[str | os.PathLike[str]], **kw: Any) -> str:
    """:func:`execute` ``cmd`` and return its standard output."""
    return execute(cmd, **kw).stdout


def user_cache() -> Path:
    """dxforge's cache outside any clone, shared by clones and CI on one machine: ``DXFORGE_CACHE``,
    else ``$XDG_CACHE_HOME/dxforge``, else ``~/.cache/dxforge`` (rattler keeps its own beside)."""
    if os.environ.get("DXFORGE_CACHE"):
        return Path(os.environ["DXFORGE_CACHE"]).expanduser().absolute()
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base).absolute() / "dxforge"


def md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    """A Markdown table, cells as given (never cut)."""
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines
