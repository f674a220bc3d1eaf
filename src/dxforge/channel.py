"""Local conda channels: indexing, locking, solving and installing with rattler."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dxforge.util import DxError

SUBDIRS = ("noarch", "linux-64")


def channel_url(channel: str | Path) -> str:
    """A channel argument as rattler takes it: a name (``conda-forge``) or URL stays as given,
    an existing local directory becomes a ``file://`` URL."""
    text = str(channel)
    if "://" in text:
        return text
    path = Path(text).expanduser()
    if path.is_dir() or text.startswith((".", "/", "~")):
        return Path(os.path.abspath(path)).as_uri()
    return text


def index(channel: Path) -> None:
    """(Re)write the repodata of a local channel directory."""
    import rattler.index

    for sub in SUBDIRS:
        (channel / sub).mkdir(parents=True, exist_ok=True)
    asyncio.run(rattler.index.index_fs(channel, force=True, write_shards=False, write_zst=False))


def lock_path(channel: Path) -> Path:
    return channel.parent / f".{channel.name}.lock"


def virtual_packages() -> list[Any]:
    import rattler

    return list(rattler.VirtualPackage.detect())


def solve(
    channels: Sequence[str | Path], specs: Sequence[str], platform: str = "linux-64"
) -> list[Any]:
    """Solve ``specs`` for ``platform`` from ``channels``; an unsatisfiable spec is a DxError
    carrying the solver's explanation."""
    import rattler

    urls = [channel_url(c) for c in channels]
    try:
        return asyncio.run(
            rattler.solve(
                urls,
                list(specs),
                platforms=[platform, "noarch"],
                virtual_packages=virtual_packages(),
            )
        )
    except Exception as e:
        raise DxError(f"cannot solve {', '.join(specs)} from {', '.join(urls)}:\n{e}") from None


def install(records: list[Any], prefix: Path, cache_dir: Path | None = None) -> None:
    import rattler

    kwargs: dict[str, Any] = {"show_progress": False}
    if cache_dir is not None:
        kwargs["cache_dir"] = cache_dir
    asyncio.run(rattler.install(records, target_prefix=prefix, **kwargs))


def size_bytes(channel: Path) -> int:
    return sum(p.stat().st_size for p in channel.rglob("*") if p.is_file())


def index_atomic(channel: Path, exclude: Sequence[Path] = ()) -> None:
    """Index ``channel`` without ever leaving a half-written repodata: index a hard-linked copy
    next to it (without the ``exclude`` files), then rename each generated file into place."""
    import shutil
    import tempfile

    channel.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{channel.name}.index-", dir=channel.parent))
    try:
        for sub in SUBDIRS:
            (tmp / sub).mkdir()
            (channel / sub).mkdir(exist_ok=True)
            for pkg in (channel / sub).glob("*.conda"):
                if pkg in exclude:
                    continue
                try:
                    os.link(pkg, tmp / sub / pkg.name)
                except OSError:
                    shutil.copy2(pkg, tmp / sub / pkg.name)
        index(tmp)
        for sub in SUBDIRS:
            for generated in (tmp / sub).iterdir():
                if generated.suffix != ".conda":
                    os.replace(generated, channel / sub / generated.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
