"""Repackaging the host CPython 3.11 as the seed's ``python`` and ``python_abi`` packages."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dxforge.elf import fix_runpaths, strip_debug
from dxforge.seed.pack import PLACEHOLDER, PackageSpec, assemble, replace_in_text_files
from dxforge.util import DxError

DROP_DIRS = {"test", "tests", "idlelib", "tkinter", "turtledemo", "__pycache__"}
LAYOUT = 2
"""Bump when what is taken from the host interpreter changes, so the package is rebuilt."""
BIN_KEEP = ("python", "pydoc")
PROBE = (
    "import json, sys, platform; print(json.dumps({'prefix': sys.base_prefix, "
    "'version': platform.python_version(), 'impl': sys.implementation.name, "
    "'glibc': platform.libc_ver()[1]}))"
)


@dataclass(frozen=True)
class HostPython:
    """The interpreter being repackaged."""

    executable: Path
    prefix: Path
    version: str
    glibc: str

    def fingerprint(self) -> dict[str, object]:
        binary = self.prefix / "bin" / f"python{self.version.rsplit('.', 1)[0]}"
        st = binary.stat()
        return {
            "layout": LAYOUT,
            "prefix": str(self.prefix),
            "version": self.version,
            "size": st.st_size,
            "mtime": int(st.st_mtime),
        }


def host_python(executable: Path) -> HostPython:
    try:
        out = subprocess.run(
            [str(executable), "-I", "-c", PROBE],
            capture_output=True,
            text=True,
            check=True,
            timeout=60,
        ).stdout
    except (OSError, subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
        raise DxError(f"--python {executable}: cannot run it ({e})") from None
    info = json.loads(out)
    if info["impl"] != "cpython" or not info["version"].startswith("3.11."):
        raise DxError(
            f"--python {executable}: CPython 3.11 is needed, this is {info['impl']} "
            f"{info['version']}; pass a 3.11 interpreter with --python"
        )
    return HostPython(
        Path(executable),
        Path(info["prefix"]),
        info["version"],
        info["glibc"] or "2.17",
    )


def _ignore(src: str, names: list[str]) -> set[str]:
    ignored = {n for n in names if n in DROP_DIRS or n.endswith((".pyc", ".a", ".o"))}
    if os.path.basename(src) == "site-packages":
        ignored |= {n for n in names if n != "README.txt"}
    return ignored


def stage_python(host: HostPython, root: Path) -> list[str]:
    """Copy the trimmed runtime into ``root``; return the text files holding the placeholder."""
    src = host.prefix
    short = host.version.rsplit(".", 1)[0]
    (root / "bin").mkdir(parents=True)
    for p in sorted((src / "bin").iterdir()):
        if p.name.startswith(BIN_KEEP) and not p.name.endswith("-gdb.py"):
            shutil.copy2(p, root / "bin" / p.name, follow_symlinks=False)
    shutil.copytree(src / "include", root / "include", symlinks=True, ignore=_ignore)
    (root / "lib").mkdir()
    for p in sorted((src / "lib").iterdir()):
        if p.name.startswith("libpython") and not p.name.endswith(".a"):
            shutil.copy2(p, root / "lib" / p.name, follow_symlinks=False)
    if (src / "lib/pkgconfig").is_dir():
        shutil.copytree(src / "lib/pkgconfig", root / "lib/pkgconfig", symlinks=True)
    shutil.copytree(
        src / f"lib/python{short}", root / f"lib/python{short}", symlinks=True, ignore=_ignore
    )
    strip_debug(root)
    fix_runpaths(root, root / "lib")
    return replace_in_text_files(root, str(src), PLACEHOLDER)


def python_specs(host: HostPython) -> tuple[PackageSpec, PackageSpec]:
    short = host.version.rsplit(".", 1)[0]
    abi = f"cp{short.replace('.', '')}"
    glibc = ".".join(host.glibc.split(".")[:2])
    digest = hashlib.sha1(json.dumps(host.fingerprint(), sort_keys=True).encode()).hexdigest()[:7]
    python = PackageSpec(
        name="python",
        version=host.version,
        build=f"h{digest}_0_cpython",
        subdir="linux-64",
        depends=["pip", f"python_abi {short}.* *_{abi}", f"__glibc >={glibc}"],
        license="Python-2.0",
        summary=f"CPython {host.version} repackaged by dxforge from {host.prefix} "
        "(links against this OS's system libraries)",
        homepage="https://www.python.org",
    )
    python_abi = PackageSpec(
        name="python_abi",
        version=short,
        build=f"5_{abi}",
        subdir="linux-64",
        constrains=[f"python {short}.* *_cpython"],
        license="BSD-3-Clause",
        summary="Metapackage to select the Python ABI",
    )
    return python, python_abi


def build_python(host: HostPython, out_dir: Path) -> list[Path]:
    """Build ``python`` and ``python_abi`` into ``out_dir``."""
    python, python_abi = python_specs(host)
    with tempfile.TemporaryDirectory(prefix=".stage-python-", dir=out_dir) as tmp:
        root = Path(tmp) / "python"
        python.text_prefix_files = stage_python(host, root)
        made = [assemble(python, root, out_dir)]
        empty = Path(tmp) / "empty"
        empty.mkdir()
        made.append(assemble(python_abi, empty, out_dir))
    return made
