"""`dxforge installer`: construct.yaml -> staged prefix -> payload -> self-extracting .sh."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

from dxforge.installer.payload import COMPRESSIONS, SUFFIX, pack
from dxforge.installer.shell import installer_files_dir, write_installer
from dxforge.installer.spec import load_construct
from dxforge.installer.stage import channel_list, stage
from dxforge.util import DxError, file_lock


@dataclass
class InstallerOptions:
    root: Path
    construct: Path
    out: Path
    channels: list[str] = field(default_factory=list)
    compression: str = "gzip"


def build_installer(opts: InstallerOptions, console=None) -> dict:
    """Build the installer; returns a JSON-able summary."""
    if opts.compression not in COMPRESSIONS:
        raise DxError(f"--compression {opts.compression}: use one of {', '.join(COMPRESSIONS)}")
    t0 = time.monotonic()
    spec = load_construct(opts.construct)
    files = installer_files_dir(opts.root)
    channels = channel_list(spec, opts.channels, opts.root)
    out = opts.out
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / ".lock", f"the installer build in {out}"):
        st = stage(spec, channels, out, files, console=console)
        if console is not None:
            console.print(f"[bold]installer:[/] packing the payload ({opts.compression})")
        t_pack = time.monotonic()
        payload = pack(
            st.prefix,
            out / ".stage" / f"payload{SUFFIX[opts.compression]}",
            opts.compression,
            epoch=st.epoch,
        )
        pack_s = time.monotonic() - t_pack
        outputs = write_installer(spec, st, payload, out, files / "header.sh")
        payload.path.unlink()
        shutil.rmtree(out / ".stage", ignore_errors=True)
    for w in st.warnings:
        if console is not None:
            console.print(f"[yellow]warning:[/] {w}")
    return {
        "installer": str(outputs.installer),
        "sha256": outputs.sha256,
        "size": outputs.size,
        "sha256_file": str(outputs.sha256_file),
        "lockfile": str(outputs.lockfile),
        "package_list": str(outputs.package_list),
        "name": spec.name,
        "version": spec.version,
        "channels": channels,
        "compression": payload.compression,
        "payload_size": payload.size,
        "payload_sha256": payload.sha256,
        "tar_bytes": payload.tar_bytes,
        "installed_bytes": st.installed_bytes,
        "members": payload.members,
        "packages": [
            {
                "name": p.name,
                "version": p.version,
                "build": p.build,
                "channel": p.channel,
                "size": p.size,
            }
            for p in st.packages
        ],
        "packages_size": sum(p.size for p in st.packages),
        "staging_prefix": str(st.prefix),
        "max_prefix_len": len(str(st.prefix)) if st.has_binary else None,
        "relocated_files": {
            m: sum(1 for e in st.manifest if e.mode == m) for m in ("text", "binary", "symlink")
        },
        "smoke_tests": st.smoke,
        "warnings": st.warnings,
        "pack_seconds": round(pack_s, 2),
        "seconds": round(time.monotonic() - t0, 2),
    }
