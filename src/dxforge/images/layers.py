"""Deterministic layer archives: uncompressed tars whose bytes depend only on the files' paths,
contents, kinds and modes and on one timestamp (``SOURCE_DATE_EPOCH``): sorted entries, owner
0:0 unless said, every mtime the timestamp, parent directories present, GNU long names.

The environment is group-0 writable (``g=u``, as DiracX's ``chmod -R g=u``), so any uid in
group 0 can use and extend it."""

from __future__ import annotations

import io
import json
import os
import stat
import tarfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from dxforge.conda.channel import Package
from dxforge.core.util import DxError

PRIVATE_META = ("extracted_package_dir", "package_tarball_full_path", "indexed_timestamp")
"""conda-meta keys naming the build machine's package cache or when its channel was indexed:
dropped from the image (channel URLs are made public by the installer's ``fix_conda_meta``)."""


@dataclass(frozen=True)
class Entry:
    """One layer entry: ``path`` relative to ``/``; ``kind`` dir, file, symlink or hardlink;
    a file's bytes in ``data`` or at ``source``; a link's ``target``."""

    path: str
    kind: str
    mode: int = 0o755
    data: bytes | None = None
    source: Path | None = None
    target: str = ""
    uid: int = 0
    gid: int = 0


def group_like_user(mode: int) -> int:
    """``chmod g=u``: the group's bits become the owner's."""
    mode &= 0o7777
    return (mode & ~0o070) | ((mode & 0o700) >> 3)


def _parents(path: str) -> list[str]:
    parts = PurePosixPath(path).parts[:-1]
    return ["/".join(parts[: i + 1]) for i in range(len(parts))]


def with_parents(entries: list[Entry], dir_mode: int = 0o775) -> list[Entry]:
    """``entries`` plus a directory entry for each missing parent, sorted by path."""
    have = {e.path: e for e in entries}
    for e in list(entries):
        for parent in _parents(e.path):
            have.setdefault(parent, Entry(parent, "dir", dir_mode))
    return [have[k] for k in sorted(have)]


def _info(e: Entry, epoch: int) -> tuple[tarfile.TarInfo, Any]:
    info = tarfile.TarInfo(e.path + ("/" if e.kind == "dir" else ""))
    info.mtime, info.uid, info.gid, info.mode = epoch, e.uid, e.gid, e.mode & 0o7777
    info.uname = info.gname = ""
    if e.kind == "dir":
        info.type = tarfile.DIRTYPE
        return info, None
    if e.kind in ("symlink", "hardlink"):
        info.type = tarfile.SYMTYPE if e.kind == "symlink" else tarfile.LNKTYPE
        info.linkname = e.target
        return info, None
    data = e.data if e.data is not None else e.source.read_bytes()  # type: ignore[union-attr]
    info.size = len(data)
    return info, io.BytesIO(data)


def write(entries: list[Entry], out: Path, epoch: int) -> Path:
    """Write the layer archive of ``entries`` (parents added, sorted) to ``out`` atomically."""
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    out.parent.mkdir(parents=True, exist_ok=True)
    try:
        with tarfile.open(tmp, "w", format=tarfile.GNU_FORMAT) as tar:
            for e in with_parents(entries):
                tar.addfile(*_info(e, epoch))
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def from_tree(root: Path, rel: str, inside: str) -> Entry:
    """The entry of ``root/rel`` (a staged file), to sit at ``inside/rel`` with ``g=u``."""
    path = root / rel
    st = path.lstat()
    name = f"{inside.strip('/')}/{rel}"
    if stat.S_ISLNK(st.st_mode):
        return Entry(name, "symlink", 0o777, target=os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return Entry(name, "dir", group_like_user(st.st_mode))
    if not stat.S_ISREG(st.st_mode):
        raise DxError(
            f"{path}: neither a file, a directory nor a symlink; a package should not install it"
        )
    return Entry(name, "file", group_like_user(st.st_mode), source=path)


def meta_name(p: Package) -> str:
    return f"conda-meta/{p.name}-{p.version}-{p.build}.json"


def package_entries(
    prefix: Path, inside: str, packages: list[Package], pyc_tag: str = ""
) -> list[Entry]:
    """The entries of ``packages`` installed in the staging ``prefix``, to sit at ``inside``:
    each package's files and its conda-meta record (without the build machine's paths), and
    with ``pyc_tag`` (``cpython-313``) the ``.pyc`` compiled there for its ``.py`` files. A
    file two packages install goes with the first."""
    out: dict[str, Entry] = {}
    for p in packages:
        meta = prefix / meta_name(p)
        if not meta.is_file():
            raise DxError(f"{meta}: missing; {p.name} is not installed in the staging prefix")
        record = json.loads(meta.read_text(encoding="utf-8"))
        for key in PRIVATE_META:
            record.pop(key, None)
        if isinstance(record.get("link"), dict):
            record["link"].pop("source", None)
        text = json.dumps(record, indent=1, sort_keys=True) + "\n"
        if str(prefix) in text:
            raise DxError(
                f"{meta}: names the staging prefix {prefix}; the image would leak a build path"
            )
        name = f"{inside.strip('/')}/{meta_name(p)}"
        out[name] = Entry(name, "file", 0o664, data=text.encode())
        for rel in record.get("files", []):
            e = from_tree(prefix, rel, inside)
            out.setdefault(e.path, e)
            if pyc_tag and rel.endswith(".py"):
                pyc = pyc_of(rel, pyc_tag)
                if (prefix / pyc).is_file():
                    e = from_tree(prefix, pyc, inside)
                    out.setdefault(e.path, e)
    return list(out.values())


def pyc_of(rel: str, tag: str) -> str:
    """Where the ``.pyc`` of the source ``rel`` goes (``importlib.util.cache_from_source``)."""
    p = PurePosixPath(rel)
    return str(p.parent / "__pycache__" / f"{p.stem}.{tag}.pyc")
