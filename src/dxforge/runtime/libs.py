"""The shared libraries a runtime carries: the DT_NEEDED closure of what it builds and of the
binary wheels, outside the C library, resolved in a Debian root to the Debian binary packages
that ship them, and named as conda-forge names them (``libffi7`` -> ``libffi``,
``libsqlite3-0`` -> ``libsqlite``) through ``data/debian_conda_names.yaml``."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path

from ruamel.yaml import YAML

from dxforge.conda.elf import in_glibc, read_elf
from dxforge.core.util import DxError, run

LIB_DIRS = ("lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu", "lib", "usr/lib")
NAMES = "debian_conda_names.yaml"
_SHARED = re.compile(r"\.so(\.\d+)*$")


@lru_cache(maxsize=1)
def _names() -> dict[str, dict[str, str]]:
    text = resources.files("dxforge").joinpath("data", NAMES).read_text()
    data = YAML(typ="safe").load(text) or {}
    return {k: dict(data.get(k) or {}) for k in ("binary", "source")}


def runtime_libraries() -> set[str]:
    """The conda names of every library package the runtime may carry."""
    names = _names()
    return set(names["binary"].values()) | set(names["source"].values())


def conda_name(binary: str, source: str, soname: str = "") -> str:
    """The conda-forge name of the library package built from Debian's ``binary`` package
    (of ``source``); an unknown one is an error naming the library and the fix."""
    names = _names()
    if binary in names["binary"]:
        return names["binary"][binary]
    if source in names["source"]:
        return names["source"][source]
    what = f"{soname} comes from" if soname else "the library package"
    raise DxError(
        f"{what} Debian's {binary} (source {source}), which has no conda-forge name in "
        f"src/dxforge/data/{NAMES}; add `{source}: <conda-forge name>` under `source:` there"
    )


@dataclass(frozen=True)
class DebPackage:
    binary: str
    source: str
    version: str


class DpkgDatabase:
    """The dpkg database of a Debian root, read from the host (``dpkg-query --admindir``)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.admindir = root / "var/lib/dpkg"
        if not (self.admindir / "status").is_file():
            raise DxError(f"{root}: not a Debian root (no var/lib/dpkg/status)")

    def _query(self, *args: str) -> str:
        return run(
            ["dpkg-query", f"--admindir={self.admindir}", *args],
            what=f"dpkg-query {' '.join(args)} in {self.root}",
        )

    def owner(self, path: str) -> str:
        """The binary package that ships ``path`` (absolute inside the root)."""
        out = self._query("-S", path)
        return out.split(":", 1)[0].strip()

    def package(self, binary: str) -> DebPackage:
        fmt = "${Package}\\t${source:Package}\\t${Version}\\n"
        name, source, version = self._query("-W", f"-f={fmt}", binary).strip().split("\t")
        return DebPackage(name, source, version)

    def files(self, binary: str) -> list[str]:
        return [ln for ln in self._query("-L", binary).splitlines() if ln.startswith("/")]


def find(root: Path, soname: str) -> str | None:
    """Where ``soname`` is in the root's library directories (as an absolute path inside it)."""
    for d in LIB_DIRS:
        if os.path.lexists(root / d / soname):
            return f"/{d}/{soname}"
    return None


@dataclass
class Library:
    """One conda package of shared libraries, gathered from Debian packages of the root."""

    name: str
    version: str  # the Debian version of its packages
    debs: list[DebPackage] = field(default_factory=list)
    files: list[str] = field(default_factory=list)  # absolute in the root
    sonames: set[str] = field(default_factory=set)


def closure(root: Path, needed: Iterable[str], provided: Iterable[str]) -> dict[str, Library]:
    """The library packages that ship ``needed`` sonames (and what those need in turn), except
    the C library's and those in ``provided``; by conda-forge name."""
    db = DpkgDatabase(root)
    done = set(provided)
    todo = sorted(set(needed) - done)
    out: dict[str, Library] = {}
    seen_debs: set[str] = set()
    while todo:
        soname = todo.pop(0)
        if soname in done or in_glibc(soname):
            continue
        done.add(soname)
        path = find(root, soname)
        if path is None:
            raise DxError(
                f"{soname} is needed but no package of the Debian root {root} ships it; add "
                "its -dev package to the build root, or find which component asks for it"
            )
        binary = db.owner(path)
        if binary in seen_debs:
            continue
        seen_debs.add(binary)
        deb = db.package(binary)
        name = conda_name(deb.binary, deb.source, soname)
        lib = out.setdefault(name, Library(name, deb.version))
        if lib.version != deb.version:
            raise DxError(
                f"{name}: its Debian packages disagree on the version ({lib.version}, "
                f"{deb.binary} {deb.version}); they must come from one source upload"
            )
        lib.debs.append(deb)
        for f in db.files(binary):
            if not _SHARED.search(f) or not any(f.startswith(f"/{d}/") for d in LIB_DIRS):
                continue
            if not os.path.lexists(root / f.lstrip("/")):
                continue
            lib.files.append(f)
            info = (
                read_elf(root / f.lstrip("/")) if not (root / f.lstrip("/")).is_symlink() else None
            )
            if info is not None:
                lib.sonames.add(info.soname or Path(f).name)
                todo += [n for n in info.needed if n not in done and not in_glibc(n)]
            else:
                lib.sonames.add(Path(f).name)
        done |= lib.sonames
    return out
