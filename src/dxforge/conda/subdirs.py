"""conda's Linux subdirs and the machines (``uname -m``) they are for."""

from __future__ import annotations

from dxforge.core.util import DxError

MACHINES = {"linux-64": "x86_64", "linux-aarch64": "aarch64", "linux-ppc64le": "ppc64le"}
"""conda's Linux subdirs and their machines (``uname -m``)."""


def machine(subdir: str) -> str:
    """The machine of a conda Linux subdir."""
    try:
        return MACHINES[subdir]
    except KeyError:
        raise DxError(
            f"no Linux machine for subdir {subdir!r}: known are {', '.join(MACHINES)}"
        ) from None
