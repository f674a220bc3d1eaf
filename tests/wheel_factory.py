"""Tiny real distributions for the tests: core metadata, wheels (zip files with METADATA, WHEEL,
RECORD, entry points and scripts) and sdist archives."""

from __future__ import annotations

import base64
import gzip
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

PURE_TAG = "py3-none-any"
BINARY_TAG = "cp311-cp311-manylinux_2_17_x86_64.manylinux2014_x86_64"


def binary_tag(python: str) -> str:
    """A manylinux2014 binary wheel's tag for CPython ``python`` (``3.13``)."""
    cp = "cp" + python.replace(".", "")
    return f"{cp}-{cp}-manylinux_2_17_x86_64.manylinux2014_x86_64"


def metadata(
    name: str,
    version: str,
    requires: list[str] = (),  # type: ignore[assignment]
    requires_python: str | None = ">=3.8",
    extras: list[str] = (),  # type: ignore[assignment]
) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += ["Summary: a tiny test distribution", "License: MIT"]
    if requires_python is not None:
        lines.append(f"Requires-Python: {requires_python}")
    lines += [f"Provides-Extra: {e}" for e in extras]
    lines += [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n\n"


def _record_hash(data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"sha256={digest},{len(data)}"


def build_wheel(
    dest: Path,
    name: str,
    version: str,
    *,
    tag: str = PURE_TAG,
    requires: list[str] = (),  # type: ignore[assignment]
    requires_python: str | None = ">=3.8",
    extras: list[str] = (),  # type: ignore[assignment]
    console_scripts: dict[str, str] | None = None,
    gui_scripts: dict[str, str] | None = None,
    scripts: dict[str, bytes] | None = None,
    files: dict[str, bytes] | None = None,
    entry_points: dict[str, dict[str, str]] | None = None,
    module: bool = True,
) -> Path:
    """Write ``dest/<name>-<version>-<tag>.whl`` and return its path. ``files`` go to the wheel's
    root (site-packages); ``scripts`` to ``<name>-<version>.data/scripts/``; ``entry_points``
    are further groups beside the scripts; without ``module`` no ``<name>/__init__.py``."""
    dist = f"{name.replace('-', '_')}-{version}"
    package = name.replace("-", "_").lower()
    pure = tag.endswith("-none-any")
    members: dict[str, bytes] = (
        {
            f"{package}/__init__.py": b"def main():\n    print('hello from "
            + package.encode()
            + b"')\n",
        }
        if module
        else {}
    )
    members.update(files or {})
    for script, data in (scripts or {}).items():
        members[f"{dist}.data/scripts/{script}"] = data
    members[f"{dist}.dist-info/METADATA"] = metadata(
        name, version, requires, requires_python, extras
    ).encode()
    wheel = ["Wheel-Version: 1.0", "Generator: dxforge-tests"]
    wheel.append(f"Root-Is-Purelib: {str(pure).lower()}")
    interp, abi, plats = tag.split("-")
    wheel += [f"Tag: {interp}-{abi}-{p}" for p in plats.split(".")]
    members[f"{dist}.dist-info/WHEEL"] = ("\n".join(wheel) + "\n\n").encode()
    sections = {
        "console_scripts": console_scripts,
        "gui_scripts": gui_scripts,
        **(entry_points or {}),
    }
    eps = "".join(
        f"[{sec}]\n" + "".join(f"{k} = {v}\n" for k, v in entries.items()) + "\n"
        for sec, entries in sections.items()
        if entries
    )
    if eps:
        members[f"{dist}.dist-info/entry_points.txt"] = eps.encode()
    record = [f"{path},{_record_hash(data)}" for path, data in members.items()]
    record.append(f"{dist}.dist-info/RECORD,,")
    members[f"{dist}.dist-info/RECORD"] = ("\n".join(record) + "\n").encode()
    dest.mkdir(parents=True, exist_ok=True)
    path = dest / f"{dist}-{tag}.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in members.items():
            info = zipfile.ZipInfo(member, date_time=(2024, 1, 1, 0, 0, 0))
            executable = "/scripts/" in member
            info.external_attr = (0o100755 if executable else 0o100644) << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, data)
    return path


def tar_gz(top: str, files: dict[str, bytes | str]) -> bytes:
    """A ``.tar.gz`` with ``files`` (relative path -> content) under the directory ``top``; the
    same files give the same bytes (no time in the gzip header)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for rel, content in files.items():
            data = content.encode() if isinstance(content, str) else content
            info = tarfile.TarInfo(f"{top}/{rel}")
            info.size, info.mtime = len(data), 1_700_000_000
            tar.addfile(info, io.BytesIO(data))
    return gzip.compress(buf.getvalue(), mtime=0)


def zip_bytes(files: dict[str, bytes | str]) -> bytes:
    """A zip archive (a wheel, when the files make one) of ``files`` (path -> content)."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        for name, content in files.items():
            z.writestr(name, content)
    return buf.getvalue()
