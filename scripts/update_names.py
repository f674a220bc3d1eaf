#!/usr/bin/env python3
"""Regenerate src/dxforge/data/conda_forge_names.yaml from grayskull's maintained PyPI ->
conda-forge map (``grayskull/strategy/config.yaml`` inside the grayskull wheel on the configured
package index).

Usage: python scripts/update_names.py [--index-url URL] [--version X.Y.Z]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import zipfile
from pathlib import Path

from packaging.utils import canonicalize_name
from packaging.version import Version
from ruamel.yaml import YAML

from dxforge.core.util import atomic_write_text
from dxforge.pypa.pypi import PackageIndex

OUT = Path(__file__).resolve().parents[1] / "src/dxforge/data/conda_forge_names.yaml"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--index-url")
    ap.add_argument("--version")
    args = ap.parse_args()
    idx = PackageIndex(args.index_url)
    proj = idx.project("grayskull")
    wheels = [f for f in proj.files if f.filename.endswith(".whl") and not f.yanked]
    if args.version:
        wheels = [f for f in wheels if f.filename.split("-")[1] == args.version]
    if not wheels:
        print("no grayskull wheel found on the index", file=sys.stderr)
        return 1
    wheel = max(wheels, key=lambda f: Version(f.filename.split("-")[1]))
    with tempfile.TemporaryDirectory() as tmp:
        path = idx.download(wheel.url, Path(tmp) / wheel.filename, wheel.sha256)
        data = zipfile.ZipFile(path).read("grayskull/strategy/config.yaml")
    yaml = YAML(typ="safe")
    config = yaml.load(io.BytesIO(data))
    names = {
        canonicalize_name(k): v["conda_forge"]
        for k, v in sorted(config.items())
        if isinstance(v, dict) and v.get("conda_forge") and v["conda_forge"] != canonicalize_name(k)
    }
    header = (
        "# PyPI (normalised name) -> conda-forge package name, where they differ.\n"
        f"# Source: {wheel.filename} (sha256 {wheel.sha256}),\n"
        "#   file grayskull/strategy/config.yaml, key `conda_forge`.\n"
        "# Regenerate with: python scripts/update_names.py\n"
        "# Names not listed map to their normalised PyPI name. Local additions go to\n"
        "# dxforge_overrides.yaml beside this file, which wins over this one.\n"
    )
    body = "".join(f"{k}: {v}\n" for k, v in sorted(names.items()))
    atomic_write_text(OUT, header + body)
    print(f"wrote {len(names)} names to {OUT}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
