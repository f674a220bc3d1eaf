"""The seed's binary wheels for another Linux platform (``linux-aarch64``).

linux-64's resolution (:func:`dxforge.seed.wheels.resolve`) decides every distribution and
version; pure wheels become noarch packages that every platform shares. Another platform needs
only the binary distributions again, for its machine: the same pins, downloaded with pip for
that machine's manylinux tags. pip's ``--platform`` is literal (one tag and it silently falls
back to an sdist or an older release), so every tag from the machine's first manylinux up to
the target's glibc floor is passed, and only wheels are taken (``--only-binary=:all:``); a pin
with no such wheel is named, never replaced.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import parse_wheel_filename

from dxforge.core.util import DxError, sha256_file
from dxforge.project.target import Target
from dxforge.seed.wheels import Resolved, glibc_requirement, pip

MACHINES = {"linux-64": "x86_64", "linux-aarch64": "aarch64", "linux-ppc64le": "ppc64le"}
"""conda's Linux subdirs and their machines (``uname -m``)."""
FIRST_GLIBC = {"x86_64": (2, 5), "aarch64": (2, 17), "ppc64le": (2, 17)}
"""The oldest C library a manylinux wheel of the machine may target."""
LEGACY = {(2, 5): "manylinux1", (2, 12): "manylinux2010", (2, 17): "manylinux2014"}
"""PEP 513/571/599's names of what PEP 600 calls ``manylinux_2_5``, ``_2_12``, ``_2_17``."""


def machine(subdir: str) -> str:
    """The machine of a conda Linux subdir."""
    try:
        return MACHINES[subdir]
    except KeyError:
        raise DxError(
            f"no Linux machine for subdir {subdir!r}: known are {', '.join(MACHINES)}"
        ) from None


def manylinux_tags(arch: str, floor: tuple[int, ...]) -> list[str]:
    """Every manylinux platform tag of ``arch`` a C library of ``floor`` accepts, oldest first
    (legacy aliases included): pip's ``--platform`` takes each literally."""
    first = FIRST_GLIBC.get(arch)
    if first is None:
        raise DxError(f"no manylinux tags for {arch!r}: known are {', '.join(FIRST_GLIBC)}")
    major, top = floor[0], floor[1]
    if (major, top) < first:
        raise DxError(
            f"a glibc floor of {major}.{top} is below {arch}'s first manylinux "
            f"({first[0]}.{first[1]})"
        )
    out = [f"{LEGACY[g]}_{arch}" for g in sorted(LEGACY) if first <= g <= (major, top)]
    return out + [f"manylinux_{major}_{minor}_{arch}" for minor in range(first[1], top + 1)]


def is_binary(r: Resolved) -> bool:
    """Whether the resolved file is platform-specific (a binary wheel or an sdist, which the
    seed builds into one): pure wheels are noarch and shared."""
    if not r.filename.endswith(".whl"):
        return True
    return any(t.platform != "any" for t in parse_wheel_filename(r.filename)[3])


def download_args(pins: list[str], target: Target, dest: Path) -> list[str]:
    """``pip download`` of ``pins`` (``name==version``) as wheels for ``target``'s machine,
    CPython and glibc floor, without their dependencies (the resolution has them all)."""
    args = [
        "download",
        "--only-binary=:all:",
        "--no-deps",
        "--quiet",
        "--dest",
        str(dest),
        "--python-version",
        target.python,
        "--implementation",
        "cp",
    ]
    for abi in (target.abi, "abi3", "none"):
        args += ["--abi", abi]
    for tag in manylinux_tags(machine(target.subdir), target.glibc):
        args += ["--platform", tag]
    return [*args, *pins]


@dataclass
class Wheel:
    """A wheel downloaded for the platform."""

    name: str
    version: str
    path: Path
    sha256: str
    glibc: str  # the lowest C library it accepts: "__glibc >=2.17"


@dataclass
class PlatformWheels:
    """The binary wheels of one platform: what was found, and the pins no wheel serves."""

    subdir: str
    wheels: list[Wheel] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)  # "name==version"

    @property
    def status(self) -> str:
        return "complete" if not self.missing else "incomplete"

    def as_json(self) -> dict[str, object]:
        return {
            "subdir": self.subdir,
            "status": self.status,
            "wheels": [
                {
                    "name": w.name,
                    "version": w.version,
                    "file": w.path.name,
                    "sha256": w.sha256,
                    "glibc": w.glibc,
                }
                for w in self.wheels
            ],
            "missing": self.missing,
        }


def _check(path: Path, arch: str, target: Target) -> Wheel:
    """The downloaded wheel, refused when it is not for ``arch`` at the floor."""
    name, version, _build, tags = parse_wheel_filename(path.name)
    if not any(_fits(t, arch, target) for t in tags):
        raise DxError(
            f"{path}: pip chose a wheel that is not {arch} at glibc "
            f"{target.glibc_text} or older; delete it and report the index's files"
        )
    glibc = glibc_requirement([str(t) for t in tags]) or ""
    return Wheel(str(name), str(version), path, sha256_file(path), glibc)


def _fits(tag: Tag, arch: str, target: Target) -> bool:
    return tag.platform in manylinux_tags(arch, target.glibc)


def download(
    resolved: list[Resolved], target: Target, dest: Path, log: Path, index_url: str | None = None
) -> PlatformWheels:
    """The wheels of ``target``'s platform for the binary distributions of ``resolved``, in
    ``dest`` (one pip run a pin, so that each missing one is named)."""
    arch = machine(target.subdir)
    out = PlatformWheels(target.subdir)
    dest.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.pip"
    tmp.mkdir(exist_ok=True)
    for r in sorted(resolved, key=lambda r: r.name):
        if not is_binary(r):
            continue
        pin = f"{r.name}=={r.version}"
        before = set(dest.glob("*.whl"))
        ran = pip(
            Path(sys.executable),
            download_args([pin], target, dest),
            tmp,
            log.with_name(f"{log.stem}-{r.name}.log"),
            f"pip download {pin} ({arch})",
            index_url,
        )
        new = sorted(set(dest.glob("*.whl")) - before) or _already(dest, r)
        if not ran.ok or len(new) != 1:
            out.missing.append(pin)
            continue
        out.wheels.append(_check(new[0], arch, target))
    log.write_text(json.dumps(out.as_json(), indent=1) + "\n")
    return out


def _already(dest: Path, r: Resolved) -> list[Path]:
    """A wheel of ``r`` downloaded before (pip leaves it and says nothing)."""
    found = []
    for p in dest.glob("*.whl"):
        name, version, _b, _t = parse_wheel_filename(p.name)
        if name == r.name and str(version) == r.version:
            found.append(p)
    return found
