"""Conda packages from staged files: assembled with rattler-build, then ``info/`` patched; and
the one placeholder prefix every package dxforge assembles is built into.

``assemble_package`` compares files against its own temporary prefix, so it records no placeholder
for files staged here, and it cannot write ``info/link.json``: both are added afterwards.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

PLACEHOLDER = ("/opt/dxforge-build/" + "_placehold" * 30)[:255]
"""The prefix packages are built into and record (text and binary): as long as conda-forge's,
so that a binary file relocates into any prefix of up to 255 bytes."""

FIXED_TIMESTAMP = datetime(2025, 1, 1, tzinfo=UTC)


@dataclass
class PackageSpec:
    """What goes into one conda package besides its files."""

    name: str
    version: str
    build: str
    subdir: str  # "noarch" or "linux-64"
    depends: list[str] = field(default_factory=list)
    constrains: list[str] = field(default_factory=list)
    noarch: str | None = None
    license: str | None = None
    summary: str | None = None
    homepage: str | None = None
    text_prefix_files: list[str] = field(default_factory=list)
    binary_prefix_files: list[str] = field(default_factory=list)
    placeholder: str = PLACEHOLDER
    entry_points: list[str] = field(default_factory=list)

    @property
    def filename(self) -> str:
        return f"{self.name}-{self.version}-{self.build}.conda"


def assemble(spec: PackageSpec, files_dir: Path, out_dir: Path) -> Path:
    """Build ``out_dir/<subdir>/<name>-<version>-<build>.conda`` from the tree ``files_dir``."""
    import conda_package_handling.api as cph
    import rattler_build

    # absolute: conda-package-handling names the .conda's components after the path it is given
    out_dir = out_dir.resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".assemble-") as tmp:
        tmpd = Path(tmp)
        raw = rattler_build.assemble_package(
            spec.name,
            spec.version,
            spec.subdir,
            spec.build,
            tmpd / "raw",
            files_dir=files_dir,
            depends=spec.depends,
            constrains=spec.constrains or None,
            noarch=spec.noarch,  # type: ignore[arg-type]
            license=spec.license,
            summary=spec.summary,
            homepage=spec.homepage,
            compression_level=1,
            compression_threads=1,
            timestamp=FIXED_TIMESTAMP,
            detect_prefix=False,
        )
        unpacked = tmpd / "pkg"
        cph.extract(str(raw.path), dest_dir=str(unpacked))
        _patch_info(unpacked, spec)
        files = sorted(
            str(p.relative_to(unpacked))
            for p in unpacked.rglob("*")
            if not p.is_dir() or p.is_symlink()
        )
        built = tmpd / spec.filename
        cph.create(str(unpacked), files, str(built), compression_level=16, compression_threads=1)
        final = out_dir / spec.subdir / spec.filename
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(built, final)
    return final


def _patch_info(root: Path, spec: PackageSpec) -> None:
    info = root / "info"
    paths_file = info / "paths.json"
    paths = json.loads(paths_file.read_text())
    modes = {p: "text" for p in spec.text_prefix_files}
    modes.update({p: "binary" for p in spec.binary_prefix_files})
    for entry in paths["paths"]:
        mode = modes.pop(entry["_path"], None)
        if mode:
            entry["prefix_placeholder"] = spec.placeholder
            entry["file_mode"] = mode
    if modes:
        missing = sorted(modes)
        raise RuntimeError(f"{spec.filename}: placeholder files not in the package: {missing}")
    paths_file.write_text(json.dumps(paths, indent=2, sort_keys=True) + "\n")
    index_file = info / "index.json"
    index = json.loads(index_file.read_text())
    index["timestamp"] = int(FIXED_TIMESTAMP.timestamp() * 1000)
    index_file.write_text(json.dumps(index, indent=2, sort_keys=True) + "\n")
    if spec.noarch == "python":
        link = {
            "noarch": {"type": "python", "entry_points": spec.entry_points},
            "package_metadata_version": 1,
        }
        (info / "link.json").write_text(json.dumps(link, indent=2, sort_keys=True) + "\n")
    has_prefix = [f"{spec.placeholder} text {p}" for p in sorted(spec.text_prefix_files)]
    has_prefix += [f"{spec.placeholder} binary {p}" for p in sorted(spec.binary_prefix_files)]
    if has_prefix:
        (info / "has_prefix").write_text("\n".join(has_prefix) + "\n")
    files_list = sorted(e["_path"] for e in paths["paths"])
    (info / "files").write_text("\n".join(files_list) + "\n")


def prefix_files(root: Path, prefix: str) -> tuple[list[str], list[str]]:
    """The files under ``root`` holding ``prefix``: (text files, binary files). A file is text
    when it has no NUL byte. A symlink holding it is an error: it would not relocate."""
    text: list[str] = []
    binary: list[str] = []
    needle = prefix.encode()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root).as_posix()
        if p.is_symlink():
            if needle in os.readlink(p).encode():
                raise RuntimeError(f"{p}: a symlink to the build prefix; make it relative")
            continue
        if not p.is_file():
            continue
        data = p.read_bytes()
        if needle in data:
            (binary if b"\0" in data else text).append(rel)
    return text, binary
