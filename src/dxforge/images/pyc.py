"""Byte code in the image layers: each layer's ``.py`` files are compiled when the layer is
made, by the environment's own python (the installer's
:func:`~dxforge.installer.prefix.byte_compile`), as ``unchecked-hash`` ``.pyc`` (no mtime
inside, never checked against the source at import) recorded under the image's prefix, not
the staging directory. So a container imports DiracX without compiling it first, and the same
channels and ``SOURCE_DATE_EPOCH`` still give the same layer bytes."""

from __future__ import annotations

import json
from pathlib import Path

from dxforge.conda.channel import Package
from dxforge.core.util import DxError
from dxforge.images.layers import pyc_of
from dxforge.installer.prefix import byte_compile

MODE = "unchecked-hash"


def cache_tag(python: str) -> str:
    """``cpython-313`` for ``3.13``: the tag of the ``.pyc`` names."""
    return "cpython-" + "".join(python.split(".")[:2])


def _files(prefix: Path, p: Package) -> list[str]:
    meta = prefix / "conda-meta" / f"{p.name}-{p.version}-{p.build}.json"
    try:
        return list(json.loads(meta.read_text(encoding="utf-8")).get("files", []))
    except (OSError, ValueError) as e:
        raise DxError(f"{meta}: cannot read {p.name}'s installed files ({e})") from None


def sources(prefix: Path, packages: list[Package], python: str) -> list[str]:
    """The ``.py`` files of ``packages`` under ``lib/python<X.Y>/`` (absolute, in the staging
    ``prefix``) that ship no ``.pyc`` of their own."""
    tag, lib = cache_tag(python), f"lib/python{python}/"
    out = []
    for p in packages:
        files = _files(prefix, p)
        shipped = set(files)
        out += [
            str(prefix / rel)
            for rel in files
            if rel.startswith(lib) and rel.endswith(".py") and pyc_of(rel, tag) not in shipped
        ]
    return sorted(out)


def compile_layer(prefix: Path, packages: list[Package], python: str, recorded: str) -> list[str]:
    """Compile the ``.py`` files of ``packages`` in the staging ``prefix`` with its python,
    recorded under ``recorded``; returns those that do not compile (some packages ship
    templates named ``.py``). Nothing to compile (no python in the layer's files): ``[]``."""
    files = sources(prefix, packages, python)
    if not files:
        return []
    return byte_compile(prefix, f"bin/python{python}", recorded, MODE, files, workers=1)
