"""Lockstep version bump of all recipes from the package index (``dxforge bump``).

All recipes move to one target version together: ``context.version``, the sdist's sha256 and
build number 0, with construct.yaml's version, ``diracx`` pin and file name. The modules:
:mod:`~dxforge.bump.textedit` (in-place YAML scalar edits), :mod:`~dxforge.bump.recipedoc` (a
recipe as written), :mod:`~dxforge.bump.drift` (the dependency drift model),
:mod:`~dxforge.bump.plan` (target, sdists, metadata), :mod:`~dxforge.bump.edit` (new texts),
:mod:`~dxforge.bump.write` (all or none) and :mod:`~dxforge.bump.report` (PR body, verdict).
"""

from dxforge.bump.plan import (
    BumpOptions,
    BumpResult,
    PackageBump,
    check_version_option,
    plan_bump,
)
from dxforge.bump.write import run_bump

__all__ = [
    "BumpOptions",
    "BumpResult",
    "PackageBump",
    "check_version_option",
    "plan_bump",
    "run_bump",
]
