"""dxforge's wheel, built from the checkout's files, and fresh virtual environments holding
dxforge's dependencies (from the base environment scripts/setup.sh made in the user cache) with
or without it: dxforge as a user installs it, no checkout on its path."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pytest
from conftest import ROOT


def _make_venv_module():  # noqa: ANN202
    spec = importlib.util.spec_from_file_location("make_venv", ROOT / "scripts/make_venv.py")
    mod = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def source_tree(dest: Path) -> Path:
    """The checkout's files (tracked and new, not ignored) copied to ``dest``, the tool's
    installer files placed as package data where they still lie in the top-level installer/
    (the move they await)."""
    names = (
        subprocess.run(
            ["git", "ls-files", "-co", "--exclude-standard", "-z"],
            cwd=ROOT,
            capture_output=True,
            check=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, names):
        src = ROOT / name
        if src.is_file():
            (dest / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
    return dest


def build_wheel(tmp: Path) -> Path:
    tree = source_tree(tmp / "src")
    out = tmp / "wheels"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--no-index",
            "-q",
            "-w",
            str(out),
            str(tree),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    [wheel] = out.glob("dxforge-*.whl")
    return wheel


def dependencies_venv(path: Path) -> Path:
    """A new virtual environment holding the base environment's packages (dxforge's
    dependencies), without dxforge."""
    mv = _make_venv_module()
    base = mv.cache_dir() / mv.base_key(mv.requirements())
    if not (base / mv.STAMP).is_file():
        pytest.skip(f"no base environment at {base}: run scripts/setup.sh")
    venv.EnvBuilder(with_pip=False).create(path)
    mv.link_tree(mv.site_packages(base), mv.site_packages(path))
    return path


def fresh_venv(path: Path, wheel: Path) -> Path:
    """:func:`dependencies_venv` and dxforge from ``wheel``."""
    dependencies_venv(path)
    subprocess.run(
        [
            str(path / "bin/python"),
            "-m",
            "pip",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return path
