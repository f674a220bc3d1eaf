"""Which packages go in which layer: the base's specs, each role's top package as DiracX's
Helm chart uses it, and the split of a solution into what a base already holds, the role's
closure without DiracX, and DiracX's own packages.

A role's base and its release are solved from the same channels and rules as the installer,
with every package of the image they stand on pinned exactly (name, version, build), so a
release never changes a package of its base: it only adds DiracX's."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from dxforge.conda.channel import Package
from dxforge.core.util import DxError
from dxforge.project.recipes import is_sibling
from dxforge.project.target import Target

ROLES = {"services": "diracx-routers", "tasks": "diracx-tasks", "client": "diracx"}
"""Role -> the package whose closure the role's images hold (diracx-charts: uvicorn with
diracx.routers; diracx-tasks' scheduler and workers; the client's ``dirac``)."""
BASE_NEEDS = ("voms", "git", "ca-certificates")
"""What every role shares beside Python (DiracX's images add git and the grid CA policy)."""
TEST_ONLY = frozenset({"diracx-testing"})
"""Packages only tests use: never in a shipped image (the end-to-end test's image adds them in
a layer of its own, built for the test and never pushed)."""


def base_specs(target: Target) -> list[str]:
    """The ``base`` image's specs: the distribution's Python and :data:`BASE_NEEDS`."""
    return [target.spec, *BASE_NEEDS]


def pin(p: Package) -> str:
    """The match spec of exactly ``p``."""
    return f"{p.name} =={p.version} {p.build}"


def role_specs(role: str, version: str, under: Iterable[Package]) -> list[str]:
    """The specs of ``role`` at DiracX ``version`` on an image holding ``under`` (pinned)."""
    if role not in ROLES:
        raise DxError(f"unknown image role {role!r}; the roles are {', '.join(ROLES)}")
    return [pin(p) for p in under] + [f"{ROLES[role]} =={version}"]


@dataclass(frozen=True)
class Split:
    """A solution split against the image it stands on."""

    others: list[Package]  # new packages that are not DiracX's (a role base's layer)
    diracx: list[Package]  # DiracX's own packages (a release's layer)


def split(solution: Iterable[Package], under: Iterable[Package], testing: bool = False) -> Split:
    """The packages of ``solution`` that ``under`` lacks, split into DiracX's and the others.
    A package of ``under`` at another build is an error, and so is a test-only package unless
    ``testing`` (the test image's layer)."""
    held = {p.name: p for p in under}
    new = []
    for p in solution:
        old = held.get(p.name)
        if old is not None and (old.version, old.build) != (p.version, p.build):
            raise DxError(
                f"the solve moved {p.name} from {old.version} {old.build} to "
                f"{p.version} {p.build}, but the image it stands on pins it; "
                "build new bases"
            )
        if old is None:
            new.append(p)
    tests = sorted(p.name for p in new if p.name in TEST_ONLY)
    if tests and not testing:
        raise DxError(
            f"{', '.join(tests)} would enter a shipped image; test-only packages "
            "go in the test image's own layer (images.roles.TEST_ONLY)"
        )
    new.sort(key=lambda p: p.name)
    return Split([p for p in new if not is_sibling(p.name)], [p for p in new if is_sibling(p.name)])


def release_layer(
    solution: Iterable[Package], base: Iterable[Package], base_ref: str
) -> list[Package]:
    """DiracX's packages a release adds on ``base`` (named ``base_ref``); anything else it
    would need is an error: the base is out of date for this release."""
    parts = split(solution, base)
    if parts.others:
        names = ", ".join(f"{p.name} {p.version}" for p in parts.others)
        raise DxError(
            f"this DiracX release needs {names}, which {base_ref} does not hold; "
            "build new bases (`dxforge images --bases`) and release on them"
        )
    if not parts.diracx:
        raise DxError(f"the release adds no DiracX package to {base_ref}")
    return parts.diracx
