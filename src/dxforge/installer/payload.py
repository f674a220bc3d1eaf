"""The installer's payload: a deterministic tar of the staged prefix (sorted names, owner 0,
no group/other write, regular files for hard links), compressed.

With zstd, each package's files are one frame (frames concatenate into one stream any zstd
decoder reads), kept in the user cache by content: a release that changes the DiracX packages
compresses only their frames and the records, not Python, OpenSSL and git again."""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import lzma
import os
import stat
import tarfile
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from dxforge.core.util import DxError, atomic_write_bytes

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
    frames_reused: int = 0  # zstd frames taken from the frame cache
    frames_made: int = 0


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
def _compressor(raw: BinaryIO, compression: str, level: int | None) -> Iterator[BinaryIO]:
    if compression == "gzip":
        with gzip.GzipFile(
            filename="",
            mode="wb",
            fileobj=raw,
            compresslevel=level or DEFAULT_LEVEL["gzip"],
            mtime=0,
        ) as f:
            yield f  # type: ignore[misc]
    elif compression == "xz":
        with lzma.open(raw, "wb", preset=level if level is not None else DEFAULT_LEVEL["xz"]) as f:
            yield f  # type: ignore[misc]
    else:
        raise DxError(f"unknown compression {compression!r}; use one of {', '.join(COMPRESSIONS)}")


class _Sink:
    """Where the tar writer writes: the bytes since the last :meth:`take`."""

    def __init__(self) -> None:
        self.buf = bytearray()
        self.n = 0

    def write(self, b: bytes) -> int:
        self.buf += b
        self.n += len(b)
        return len(b)

    def tell(self) -> int:
        return self.n

    def take(self) -> bytes:
        out = bytes(self.buf)
        self.buf.clear()
        return out


def _groups(root: Path, owners: Mapping[str, tuple[str, int]]) -> list[list[str]]:
    """The members in payload order: the directories, then each package's files (packages by
    name), then what no package owns. Each list is one zstd frame."""
    dirs: list[str] = []
    by: dict[str, list[str]] = {}
    for rel in _walk(root):
        if os.path.isdir(root / rel) and not os.path.islink(root / rel):
            dirs.append(rel)
        else:
            by.setdefault(owners.get(rel, ("", 0))[0], []).append(rel)
    rest = by.pop("", [])
    return [dirs, *(by[k] for k in sorted(by)), rest]


def _zstd_options(level: int | None, threads: int) -> dict[Any, int]:
    from backports import zstd

    return {
        zstd.CompressionParameter.compression_level: level or DEFAULT_LEVEL["zstd"],
        zstd.CompressionParameter.nb_workers: threads,
        zstd.CompressionParameter.checksum_flag: 1,
        # matches across a package (a .pyc and its .py, twins); decoders accept this
        # 128 MiB window by default
        zstd.CompressionParameter.enable_long_distance_matching: 1,
        zstd.CompressionParameter.window_log: WINDOW_LOG,
    }


class Frames:
    """Compressed zstd frames kept by the sha256 of what they hold (and the compressor's
    settings and version), so an installer that changes a few packages compresses only
    theirs; a kept frame is decompressed and checked before it is reused."""

    def __init__(self, cache: Path | None, level: int | None = None):
        from backports import zstd

        self.cache = cache
        self.level = level or DEFAULT_LEVEL["zstd"]
        version = ".".join(map(str, zstd.zstd_version_info))
        self.tag = f"{self.level}-{WINDOW_LOG}-zstd{version}"
        self.reused = 0
        self.made = 0

    def frame(self, data: bytes) -> bytes:
        from backports import zstd

        digest = hashlib.sha256(data).hexdigest()
        path = self.cache / f"{digest}-{self.tag}.zst" if self.cache else None
        if path is not None and path.is_file():
            kept = path.read_bytes()
            try:
                ok = hashlib.sha256(zstd.decompress(kept)).hexdigest() == digest
            except zstd.ZstdError:
                ok = False
            if ok:
                self.reused += 1
                return kept
        out = zstd.compress(data, options=_zstd_options(self.level, THREADS))
        self.made += 1
        if path is not None:
            atomic_write_bytes(path, out)
        return out


def pack(
    root: Path,
    dest: Path,
    compression: str = "gzip",
    epoch: int = 0,
    level: int | None = None,
    owners: Mapping[str, tuple[str, int]] | None = None,
    frames: Path | None = None,
) -> Payload:
    """Write ``root``'s contents as a compressed tar to ``dest`` (replaced atomically).

    ``owners`` (path: (package, mtime)) groups the members by package, each with its package's
    mtime (others get ``epoch``); zstd then writes one frame per group, reusing those kept in
    ``frames`` (a directory) when the same bytes were compressed before."""
    if compression not in COMPRESSIONS:
        raise DxError(f"unknown compression {compression!r}; use one of {', '.join(COMPRESSIONS)}")
    owners = owners or {}
    groups = _groups(root, owners) if owners else [list(_walk(root))]
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(f".{dest.name}.tmp")
    members = 0
    sink = _Sink()
    framer = Frames(frames, level) if compression == "zstd" else None
    try:
        with open(tmp, "wb") as raw, contextlib.ExitStack() as stack:
            out: BinaryIO = (
                raw if framer else stack.enter_context(_compressor(raw, compression, level))
            )
            tar = tarfile.open(fileobj=sink, mode="w", format=tarfile.GNU_FORMAT)  # type: ignore[arg-type]
            for i, group in enumerate(groups):
                for rel in group:
                    ti = _info(root, rel, owners.get(rel, ("", 0))[1] or epoch)
                    if ti.type == tarfile.REGTYPE:
                        with open(root / rel, "rb") as src:
                            tar.addfile(ti, src)
                    else:
                        tar.addfile(ti)
                    members += 1
                    if not framer:
                        out.write(sink.take())
                if i == len(groups) - 1:
                    tar.close()  # the end-of-archive blocks go with the last frame
                data = sink.take()
                out.write(framer.frame(data) if framer else data)
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
        tar_bytes=sink.n,
        members=members,
        frames_reused=framer.reused if framer else 0,
        frames_made=framer.made if framer else 0,
    )
