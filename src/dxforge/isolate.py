"""Running a program as a site's pilot would: as an unprivileged user (when we are root) and
without network (in a network namespace of its own, loopback up), where this machine allows."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from functools import lru_cache
from pathlib import Path

NOBODY = 65534


@lru_cache(maxsize=1)
def offline_prefix() -> tuple[str, ...]:
    """The command prefix that cuts the network (``()`` where no namespace can be made)."""
    if not shutil.which("unshare"):
        return ()
    if subprocess.run(["unshare", "-n", "true"], capture_output=True).returncode != 0:
        return ()
    return ("unshare", "-n", "sh", "-c", 'ip link set lo up 2>/dev/null || true; exec "$@"', "sh")


def prefix() -> tuple[list[str], bool]:
    """The command prefix for an unprivileged, offline run, and whether it is offline."""
    out = list(offline_prefix())
    if os.geteuid() == 0 and shutil.which("setpriv"):
        out += ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
    return out, bool(offline_prefix())


def give_to_nobody(*paths: os.PathLike[str] | str) -> None:
    """Let the unprivileged user own ``paths`` (when we are root)."""
    if os.geteuid() == 0:
        subprocess.run(["chown", "-R", f"{NOBODY}:{NOBODY}", *map(str, paths)], check=True)


def reachable(path: Path) -> bool:
    """Whether every directory down to ``path`` lets others through (so the unprivileged user
    reaches what is under it)."""
    for d in [path, *path.parents]:
        if d.exists() and not d.stat().st_mode & 0o001:
            return False
    return True


def scratch(base: Path, prefix: str) -> Path:
    """A new world-readable directory under ``base``, or under the system's temporary
    directory when the unprivileged user could not reach ``base``."""
    where = base if os.geteuid() != 0 or reachable(base) else None
    path = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
    path.chmod(0o755)
    return path


def remove(path: Path) -> None:
    """Remove what :func:`scratch` made, files the unprivileged user made read-only included."""
    subprocess.run(["chmod", "-R", "u+w", str(path)], check=False)
    shutil.rmtree(path, ignore_errors=True)
