"""The runtime as conda packages, split as conda-forge splits it: one package per component
(``python`` with ``python_abi``, ``openssl``, ``libsqlite``, ``libcurl``, ``git``, ``voms``),
``ca-certificates`` from Debian's bundle, and one package per library of the DT_NEEDED closure
taken from the build root (``libffi``, ``libexpat``, ``libstdcxx``, ...). Each package depends,
by name, on the packages that ship the libraries its ELF files need, and on ``__glibc`` at least
the highest GLIBC symbol version it needs; files holding the build prefix are recorded with the
255-byte placeholder."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from dxforge.conda.elf import fix_runpaths, glibc_floor, in_glibc, walk_elf
from dxforge.conda.package import PLACEHOLDER, PackageSpec, assemble, prefix_files
from dxforge.core.util import DxError
from dxforge.isolation.apt import conda_version
from dxforge.project.target import Target
from dxforge.runtime.build import BUILD_RELEASE, Built, RuntimeBuild
from dxforge.runtime.libs import Library

PACKAGING_FORMAT = 2
"""Bump when how the runtime is packaged changes."""
PYTHON_DROP = {"test", "tests", "idle_test", "idlelib", "tkinter", "turtledemo", "__pycache__"}
DROP_PREFIXES = ("share/man/", "share/doc/", "bin/idle3", "bin/curl")
MIN_GLIBC = (2, 17)


@dataclass
class Provides:
    """Which package ships each shared library: ``{soname: (package, version spec)}``."""

    sonames: dict[str, tuple[str, str]] = field(default_factory=dict)

    def add(self, name: str, sonames: Iterable[str], pin: str = "") -> None:
        for s in sonames:
            self.sonames.setdefault(s, (name, pin))


def sonames_of(tree: Path) -> set[str]:
    """The sonames the shared libraries under ``tree`` provide (and their file names)."""
    out = set()
    for info in walk_elf(tree):
        if info.soname:
            out.add(info.soname)
    for p in tree.rglob("*.so*"):
        if p.is_file() or p.is_symlink():
            out.add(p.name)
    return out


def depends(tree: Path, provides: Provides, where: str) -> list[str]:
    """What the ELF files under ``tree`` need from other packages, as match specs, and their
    glibc floor as ``__glibc >=X``."""
    own = sonames_of(tree)
    infos = list(walk_elf(tree))
    deps: dict[str, str] = {}
    for info in infos:
        for soname in info.needed:
            if in_glibc(soname) or soname in own:
                continue
            if soname not in provides.sonames:
                rel = info.path.relative_to(tree)
                raise DxError(
                    f"{where}: {rel} needs {soname}, which no package of the runtime ships; "
                    "it must come from the closure (dxforge computes it from DT_NEEDED)"
                )
            name, pin = provides.sonames[soname]
            deps[name] = pin or deps.get(name, "")
    floor = max(glibc_floor(infos).version, MIN_GLIBC)
    out = [f"{n} {p}".strip() for n, p in sorted(deps.items())]
    out.append(f"__glibc >={'.'.join(map(str, floor[:2]))}")
    return out


def _digest(*parts: object) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:7]


def _copy(src: Path, dest: Path) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    if src.is_symlink():
        os.symlink(os.readlink(src), dest)
    else:
        shutil.copy2(src, dest)


def _keep(component: str, rel: str) -> bool:
    if rel.startswith(DROP_PREFIXES):
        return False
    if component == "python":
        parts = rel.split("/")
        if PYTHON_DROP.intersection(parts[:-1]) or rel.endswith((".pyc", ".pyo")):
            return False
        if len(parts) > 3 and parts[2] == "site-packages":
            return False
    return True


def stage_component(built: Built, dest: Path) -> None:
    c = built.component
    for rel in built.files:
        if _keep(c.name, rel):
            _copy(built.tree / rel, dest / rel)
    if c.name == "python":
        minor = next(p.name for p in (dest / "bin").glob("python3.*") if "-" not in p.name)
        (dest / "bin/python").symlink_to(minor)
        site = next(dest.glob("lib/python3.*")) / "site-packages"
        site.mkdir(exist_ok=True)
        (site / "README.txt").write_text(
            "This directory exists so that 3rd party packages can be installed here.\n"
        )


def _extra_depends(name: str, target: Target) -> list[str]:
    """What a component's package needs beyond its libraries (as conda-forge's recipes say)."""
    if name == "openssl":
        return ["ca-certificates"]
    if name == "python":
        return ["pip", target.python_depends()[1]]
    return []


def component_package(
    built: Built, target: Target, provides: Provides, work: Path, out: Path
) -> Path:
    c = built.component
    root = work / c.name
    shutil.rmtree(root, ignore_errors=True)
    stage_component(built, root)
    version = conda_version(built.version)
    deps = _extra_depends(c.name, target) + depends(root, provides, f"{c.name} {version}")
    text, binary = prefix_files(root, PLACEHOLDER)
    spec = PackageSpec(
        name=c.name,
        version=version,
        build=f"h{_digest(PACKAGING_FORMAT, built.fingerprint, deps)}_0"
        + ("_cpython" if c.name == "python" else ""),
        subdir=target.subdir,
        depends=deps,
        license=c.license,
        summary=f"{c.summary}, built by dxforge from {c.source} ({built.version}) in Debian "
        f"{BUILD_RELEASE} for glibc {target.glibc_text}",
        homepage=c.homepage,
        text_prefix_files=text,
        binary_prefix_files=binary,
        placeholder=PLACEHOLDER,
    )
    return assemble(spec, root, out)


def python_abi_package(short: str, work: Path, out: Path, subdir: str = "linux-64") -> Path:
    abi = "cp" + short.replace(".", "")
    empty = work / "python_abi"
    empty.mkdir(parents=True, exist_ok=True)
    return assemble(
        PackageSpec(
            name="python_abi",
            version=short,
            build=f"5_{abi}",
            subdir=subdir,
            constrains=[f"python {short}.* *_cpython"],
            license="BSD-3-Clause",
            summary="Metapackage to select the Python ABI",
        ),
        empty,
        out,
    )


def library_package(
    lib: Library,
    tree: Path,
    provides: Provides,
    work: Path,
    out: Path,
    origin: str,
    subdir: str = "linux-64",
) -> Path:
    """A conda package of ``lib``'s shared libraries, taken from the Debian tree ``tree`` (a
    root, or unpacked .debs) into ``lib/``, with their copyright files, for ``subdir``."""
    root = work / f"lib-{lib.name}-{lib.version}"
    shutil.rmtree(root, ignore_errors=True)
    (root / "lib").mkdir(parents=True)
    for f in lib.files:
        _copy(tree / f.lstrip("/"), root / "lib" / Path(f).name)
    for deb in lib.debs:
        copyright = tree / "usr/share/doc" / deb.binary / "copyright"
        if copyright.is_file():
            _copy(copyright, root / "share/doc" / lib.name / f"{deb.binary}.copyright")
    fix_runpaths(root, root / "lib")
    version = conda_version(lib.version)
    deps = depends(root, provides, f"{lib.name} {version}")
    debs = ", ".join(f"{d.binary} {d.version}" for d in lib.debs)
    spec = PackageSpec(
        name=lib.name,
        version=version,
        build=f"h{_digest(PACKAGING_FORMAT, lib.version, deps, debs)}_0",
        subdir=subdir,
        depends=deps,
        license="LicenseRef-Debian-copyright",
        summary=f"Shared libraries of Debian's {debs} ({origin}), repackaged by dxforge",
    )
    return assemble(spec, root, out)


def certificates_package(
    tree: Path, version: str, work: Path, out: Path, subdir: str = "linux-64"
) -> Path:
    """``ca-certificates``: Debian's Mozilla bundle (an unpacked ``ca-certificates`` .deb in
    ``tree``) as ``ssl/cacert.pem``, with ``ssl/cert.pem`` beside it, as conda-forge ships it."""
    certs = sorted((tree / "usr/share/ca-certificates/mozilla").glob("*.crt"))
    if not certs:
        raise DxError(f"{tree}: no Mozilla certificates in Debian's ca-certificates package")
    root = work / "ca-certificates"
    shutil.rmtree(root, ignore_errors=True)
    (root / "ssl").mkdir(parents=True)
    bundle = b"".join(c.read_bytes().rstrip(b"\n") + b"\n" for c in certs)
    (root / "ssl/cacert.pem").write_bytes(bundle)
    (root / "ssl/cert.pem").symlink_to("cacert.pem")
    return assemble(
        PackageSpec(
            name="ca-certificates",
            version=conda_version(version),
            build=f"h{_digest(PACKAGING_FORMAT, version, len(certs))}_0",
            subdir=subdir,
            license="MPL-2.0",
            summary=f"Mozilla's CA certificates ({len(certs)}), from Debian's ca-certificates "
            f"{version}",
        ),
        root,
        out,
    )


def component_sonames(rt: RuntimeBuild) -> dict[str, set[str]]:
    """What each package component's shared libraries provide."""
    return {
        name: {Path(r).name for r in b.files if r.startswith("lib/") and ".so" in r}
        for name, b in rt.parts.items()
        if not b.component.tool
    }


def component_needs(rt: RuntimeBuild) -> set[str]:
    """Every library the components' ELF files need, outside the C library."""
    return {n for info in walk_elf(rt.prefix) for n in info.needed if not in_glibc(n)}
