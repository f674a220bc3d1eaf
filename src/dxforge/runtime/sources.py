"""Upstream release archives that no package registry serves (voms's), pinned by URL and sha256.

An archive is downloaded from its URL into the user cache; when the URL cannot be reached it is
read from a source mirror directory (``DXFORGE_SOURCE_MIRROR``: a folder of release archives
kept by file name, such as our machines' ``../shared/sources``). Either way its sha256 must be
the pinned one before anything uses it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dxforge.core.util import DxError, sha256_file

MIRROR_ENV = "DXFORGE_SOURCE_MIRROR"


@dataclass(frozen=True)
class Pin:
    """One upstream release archive."""

    url: str
    sha256: str
    filename: str  # the name mirrors keep it under (the URL's own may be just the tag)


def mirror_dir() -> Path | None:
    """The source mirror directory from the environment, or None."""
    value = os.environ.get(MIRROR_ENV, "").strip()
    return Path(value).expanduser().absolute() if value else None


def _download(url: str, dest: Path, timeout: float) -> str:
    """Download ``url`` to ``dest``; ``""`` on success, else why it could not."""
    import requests

    try:
        with requests.get(url, stream=True, timeout=timeout, allow_redirects=True) as r:
            if r.status_code != 200:
                return f"HTTP {r.status_code}"
            with open(dest, "wb") as f:
                for block in r.iter_content(1 << 20):
                    f.write(block)
    except requests.RequestException as e:
        return type(e).__name__
    return ""


def obtain(pin: Pin, cache: Path, mirror: Path | None = None, timeout: float = 20) -> Path:
    """The archive of ``pin`` in ``cache`` (by sha256), from the cache, its URL or the mirror
    directory (default: :func:`mirror_dir`); a DxError names the URL, the sha256 expected and
    the mirror directory when none of them gives the right bytes."""
    mirror = mirror if mirror is not None else mirror_dir()
    dest = cache / pin.sha256[:16] / pin.filename
    if dest.is_file() and sha256_file(dest) == pin.sha256:
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    tried: list[str] = []
    with tempfile.TemporaryDirectory(dir=dest.parent, prefix=".get-") as tmp:
        got = Path(tmp) / pin.filename
        why = _download(pin.url, got, timeout)
        if not why:
            digest = sha256_file(got)
            if digest == pin.sha256:
                os.replace(got, dest)
                return dest
            why = f"it gave sha256 {digest}"
        tried.append(f"{pin.url}: {why}")
        if mirror is None:
            tried.append(f"no source mirror directory (set {MIRROR_ENV} to one)")
        elif not (mirror / pin.filename).is_file():
            tried.append(f"{mirror / pin.filename}: no such file")
        else:
            shutil.copyfile(mirror / pin.filename, got)
            digest = sha256_file(got)
            if digest == pin.sha256:
                os.replace(got, dest)
                return dest
            tried.append(f"{mirror / pin.filename}: sha256 {digest}")
    raise DxError(
        f"{pin.filename}: no copy with the pinned sha256 {pin.sha256} ("
        + "; ".join(tried)
        + f"). Make {pin.url} reachable, or put the release archive, byte-identical, as "
        f"{pin.filename} in a source mirror directory named by {MIRROR_ENV}"
    )
