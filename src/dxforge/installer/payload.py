"""The installer's payload: a deterministic tar of the staged prefix (sorted names, owner 0,
one mtime, no group/other write, regular files for hard links), compressed."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import lzma
import os
import stat
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from dxforge.util import DxError

COMPRESSIONS = ("zstd", "gzip", "xz")
"""The first is the default (chosen by benchmarks/bench_installer.py; see its README)."""
SUFFIX = {"gzip": ".tar.gz", "xz": ".tar.xz", "zstd": ".tar.zst"}
DEFAULT_LEVEL = {"gzip": 9, "xz": 9, "zstd": 19}
THREADS = 2
WINDOW_LOG = 27


@dataclass(frozen=True)
class Payload:
    path: Path
    compression: str
    size: int
    sha256: str
    tar_bytes: int
    members: int


def _walk(root: Path, rel: str = "") -> Iterator[str]:
    """Relative paths under ``root``, depth first in sorted order (a directory, then its
    contents)."""
    with os.scandir(root / rel if rel else root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        path = f"{rel}/{e.name}" if rel else e.name
        yield path
        if e.is_dir(follow_symlinks=False):
            yield from _walk(root, path)


def _info(root: Path, rel: str, epoch: int) -> tarfile.TarInfo:
    st = os.lstat(root / rel)
    ti = tarfile.TarInfo(rel)
    ti.uid = ti.gid = 0
    ti.uname = ti.gname = ""
    ti.mtime = epoch
    ti.mode = stat.S_IMODE(st.st_mode) & 0o755
    if stat.S_ISDIR(st.st_mode):
        ti.type = tarfile.DIRTYPE
        ti.mode |= 0o700
    elif stat.S_ISLNK(st.st_mode):
        ti.type = tarfile.SYMTYPE
        ti.linkname = os.readlink(root / rel)
        ti.mode = 0o777
    elif stat.S_ISREG(st.st_mode):
        ti.type = tarfile.REGTYPE
        ti.size = st.st_size
        ti.mode |= 0o600
    else:
        raise DxError(
            f"{root / rel} is neither a file, a directory nor a symlink; the payload cannot hold it"
        )
    return ti


@contextlib.contextmanager
def _compressor(path: Path, compression: str, level: int | None) -> Iterator[BinaryIO]:
    if compression == "gzip":
        with (
            open(path, "wb") as raw,
            gzip.GzipFile(
                filename="", mode="wb", fileobj=raw, compresslevel=level or DEFAULT_LEVEL["gzip"],
                mtime=0
            ) as f,
        ):
            yield f
    elif compression == "xz":
        with lzma.open(path, "wb", preset=level if level is not None else DEFAULT_LEVEL["xz"]) as f:
            yield f
    elif compression == "zstd":
        from backports import zstd  # conda-package-handling's zstd, the standard library's in 3.14

        opts = {
            zstd.CompressionParameter.compression_level: level or DEFAULT_LEVEL["zstd"],
            zstd.CompressionParameter.nb_workers: THREADS,
            zstd.CompressionParameter.checksum_flag: 1,
            # matches across the whole tree (a .pyc and its .py, a package's twins); decoders
            # accept this 128 MiB window by default
            zstd.CompressionParameter.enable_long_distance_matching: 1,
            zstd.CompressionParameter.window_log: WINDOW_LOG,
        }
        with zstd.open(path, "wb", options=opts) as f:
            yield f
    else:
        raise DxError(f"unknown compression {compression!r}; use one of {', '.join(COMPRESSIONS)}")


class _Counter:
    def __init__(self, f: BinaryIO):
        self.f = f
        self.n = 0

    def write(self, b: bytes) -> int:
        self.n += len(b)
        return self.f.write(b)


def pack(
    root: Path, dest: Path, compression: str = "gzip", epoch: int = 0, level: int | None = None
) -> Payload:
    """Write ``root``'s contents as a compressed tar to ``dest`` (replaced atomically)."""
    if compression not in COMPRESSIONS:
        raise DxError(f"unknown compression {compression!r}; use one of {', '.join(COMPRESSIONS)}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    members = 0
    try:
        with _compressor(tmp, compression, level) as f:
            counter = _Counter(f)
            with tarfile.open(fileobj=counter, mode="w|", format=tarfile.GNU_FORMAT) as tar:
                for rel in _walk(root):
                    ti = _info(root, rel, epoch)
                    if ti.type == tarfile.REGTYPE:
                        with open(root / rel, "rb") as src:
                            tar.addfile(ti, src)
                    else:
                        tar.addfile(ti)
                    members += 1
        h = hashlib.sha256()
        with open(tmp, "rb") as fh:
            while block := fh.read(1 << 20):
                h.update(block)
        os.replace(tmp, dest)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    return Payload(
        path=dest,
        compression=compression,
        size=dest.stat().st_size,
        sha256=h.hexdigest(),
        tar_bytes=counter.n,
        members=members,
    )
