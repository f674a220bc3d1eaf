"""`dxforge installer`: construct.yaml -> staged prefix -> payload -> self-extracting .sh."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from dxforge.channel import Package
from dxforge.construct import load_construct
from dxforge.installer.payload import COMPRESSIONS, SUFFIX, pack
from dxforge.installer.prefix import PYC_MODES
from dxforge.installer.shell import NO_DECODER, Decoder, installer_files_dir, write_installer
from dxforge.installer.stage import channel_list, stage
from dxforge.layout import Layout
from dxforge.progress import SILENT, Progress
from dxforge.util import DxError, file_lock


@dataclass
class InstallerOptions:
    layout: Layout
    construct: Path | None = None  # default: the project's construct.yaml
    out: Path | None = None  # default: the build directory's installer/
    channels: list[str] = field(default_factory=list)
    compression: str = COMPRESSIONS[0]
    pyc: str = PYC_MODES[0]


@dataclass
class InstallerResult:
    """What `dxforge installer` wrote, and what the installer holds."""

    name: str
    version: str
    installer: Path
    sha256: str
    size: int
    sha256_file: Path
    lockfile: Path
    package_list: Path
    channels: list[str]
    compression: str
    payload_size: int
    decoder_size: int
    payload_sha256: str
    tar_bytes: int
    installed_bytes: int
    members: int
    packages: list[Package]
    recorded_prefix: str
    staging_prefix: str
    max_prefix_len: int | None
    relocated_files: dict[str, int]
    smoke_tests: list[str]
    glibc_floor: str
    glibc_needed: str
    glibc_file: str
    elf_files: int
    warnings: list[str]
    pack_seconds: float
    seconds: float
    status: str = "built"

    @property
    def packages_size(self) -> int:
        return sum(p.size for p in self.packages)

    def as_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, Path):
                value = str(value)
            elif isinstance(value, float):
                value = round(value, 2)
            elif f.name == "packages":
                keep = ("name", "version", "build", "channel", "size", "sha256")
                value = [{k: getattr(p, k) for k in keep} for p in value]
            out[f.name] = value
        out["packages_size"] = self.packages_size
        return out


def _decoder(layout: Layout, progress: Progress) -> Path:
    """The static zstd decoder of the installer's first stage (a runtime tool, cached)."""
    from dxforge.runtime.build import tool

    try:
        return tool(layout.cache, "zstd-decoder", progress)
    except DxError as e:
        raise DxError(f"the zstd payload needs the installer's own decoder, which could not be "
                      f"had: {e}\nbuild with --compression gzip instead") from None


def build_installer(opts: InstallerOptions, progress: Progress = SILENT) -> InstallerResult:
    """Build the installer and its companions (.sha256, lockfile, package list)."""
    if opts.compression not in COMPRESSIONS:
        raise DxError(f"--compression {opts.compression}: use one of {', '.join(COMPRESSIONS)}")
    if opts.pyc not in PYC_MODES:
        raise DxError(f"--pyc {opts.pyc}: use one of {', '.join(PYC_MODES)}")
    t0 = time.monotonic()
    layout = opts.layout
    spec = load_construct(opts.construct or layout.construct)
    files = installer_files_dir(layout.root)
    channels = channel_list(spec, opts.channels, layout)
    out = (opts.out or layout.installer).absolute()
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / ".lock", f"the installer build in {out}"):
        decoder = NO_DECODER
        if opts.compression == "zstd":
            decoder = Decoder.of(_decoder(layout, progress))
        st = stage(spec, channels, out, files, progress, opts.pyc)
        progress.step(f"packing the payload ({opts.compression})")
        t_pack = time.monotonic()
        payload = pack(
            st.prefix,
            out / ".stage" / f"payload{SUFFIX[opts.compression]}",
            opts.compression,
            epoch=st.epoch,
        )
        pack_s = time.monotonic() - t_pack
        outputs = write_installer(spec, st, payload, out, files / "header.sh", decoder)
        payload.path.unlink()
        shutil.rmtree(out / ".stage", ignore_errors=True)
    return InstallerResult(
        name=spec.name,
        version=spec.version,
        installer=outputs.installer,
        sha256=outputs.sha256,
        size=outputs.size,
        sha256_file=outputs.sha256_file,
        lockfile=outputs.lockfile,
        package_list=outputs.package_list,
        channels=channels,
        compression=payload.compression,
        payload_size=payload.size,
        decoder_size=len(decoder.data),
        payload_sha256=payload.sha256,
        tar_bytes=payload.tar_bytes,
        installed_bytes=st.installed_bytes,
        members=payload.members,
        packages=st.packages,
        recorded_prefix=st.recorded,
        staging_prefix=str(st.prefix),
        max_prefix_len=len(st.recorded) if st.has_binary else None,
        relocated_files={
            m: sum(1 for e in st.manifest if e.mode == m) for m in ("text", "binary", "symlink")
        },
        smoke_tests=st.smoke,
        glibc_floor=st.glibc,
        glibc_needed=st.glibc_needed,
        glibc_file=st.glibc_file,
        elf_files=st.elf_files,
        warnings=st.warnings,
        pack_seconds=pack_s,
        seconds=time.monotonic() - t0,
    )
