"""The DIRACOS-style installer: construct.yaml spec, staging, payload, shell header.

The files the tool itself puts into every installer (the header template, the install step,
the relocator) are package data of dxforge, found by :func:`shipped` alone; the files a
distribution adds (post_install, the license) are the project's, named by its construct.yaml."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from dxforge.core.util import DxError

SHIPPED = ("header.sh", "install.py", "relocate.py")
"""The tool's own installer files, in ``dxforge/installer/files/``."""


def shipped_dir() -> Path:
    """The directory of the tool's installer files: the package data ``dxforge/installer/files``."""
    packaged = Path(str(resources.files(__name__) / "files"))
    if all((packaged / name).is_file() for name in SHIPPED):
        return packaged
    raise DxError(
        f"{packaged}: dxforge's own installer files ({', '.join(SHIPPED)}) are "
        "missing; reinstall dxforge (they are package data of its wheel)"
    )


def shipped(name: str) -> Path:
    """The tool's installer file ``name`` (one of :data:`SHIPPED`)."""
    path = shipped_dir() / name
    if not path.is_file():
        raise DxError(f"{path}: not a file dxforge ships; shipped are {', '.join(SHIPPED)}")
    return path
