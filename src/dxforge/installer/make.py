"""`dxforge installer`: construct.yaml -> staged prefix -> payload -> self-extracting .sh.

Installers are reproducible, so each is kept in the user cache by the fingerprint of what makes
its bytes (dxforge's code, construct.yaml and the files it names, the solved packages by sha256,
codec, .pyc mode, decoder); another clone, or a second run, copies it from there, checked by
its sha256, instead of staging and packing again.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import dxforge
from dxforge.conda.channel import Package
from dxforge.core import store
from dxforge.core.progress import SILENT, Progress
from dxforge.core.store import Store
from dxforge.core.util import DxError, file_lock, sha256_file
from dxforge.installer import shipped_dir
from dxforge.installer.payload import COMPRESSIONS, SUFFIX, pack
from dxforge.installer.prefix import PYC_MODES, public_url
from dxforge.installer.shell import (
    NO_DECODER,
    Decoder,
    write_companions,
    write_installer,
)
from dxforge.installer.stage import channel_list, solve, stage, staging_prefix
from dxforge.project.construct import ConstructSpec, load_construct
from dxforge.project.layout import Layout

CACHE_FORMAT = 2


@dataclass
class InstallerOptions:
    layout: Layout
    construct: Path | None = None  # default: the project's construct.yaml
    out: Path | None = None  # default: the build directory's installer/
    channels: list[str] = field(default_factory=list)
    compression: str = COMPRESSIONS[0]
    pyc: str = PYC_MODES[0]
    force: bool = False  # build even when the user cache holds this fingerprint's installer


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
    status: str = "built"  # built | cached (from the user cache)
    fingerprint: str = ""

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
                keep = ("name", "version", "build", "channel", "file_name", "size", "sha256")
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
        raise DxError(
            f"the zstd payload needs the installer's own decoder, which could not be "
            f"had: {e}\nbuild with --compression gzip instead"
        ) from None


def build_installer(opts: InstallerOptions, progress: Progress = SILENT) -> InstallerResult:
    """Build the installer and its companions (.sha256, lockfile, package list)."""
    if opts.compression not in COMPRESSIONS:
        raise DxError(f"--compression {opts.compression}: use one of {', '.join(COMPRESSIONS)}")
    if opts.pyc not in PYC_MODES:
        raise DxError(f"--pyc {opts.pyc}: use one of {', '.join(PYC_MODES)}")
    t0 = time.monotonic()
    layout = opts.layout
    construct = opts.construct or layout.construct
    spec = load_construct(construct)
    files = shipped_dir()
    channels = channel_list(spec, opts.channels, layout)
    out = (opts.out or layout.installer).absolute()
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / ".lock", f"the installer build in {out}"):
        decoder = NO_DECODER
        if opts.compression == "zstd":
            decoder = Decoder.of(_decoder(layout, progress))
        solved = solve(spec, channels, progress)
        key = fingerprint(construct, spec, files, channels, solved[1], decoder, opts)
        entry = layout.cache / "installers" / key[:24]
        cached = (
            None
            if opts.force
            else _from_cache(entry, key, spec, out, solved[1], channels, progress)
        )
        if cached is not None:
            cached.seconds = time.monotonic() - t0
            return cached
        st = stage(spec, channels, out, files, progress, opts.pyc, solved)
        progress.step(f"packing the payload ({opts.compression})")
        t_pack = time.monotonic()
        payload = pack(
            st.prefix,
            out / ".stage" / f"payload{SUFFIX[opts.compression]}",
            opts.compression,
            epoch=st.epoch,
            owners=st.owners,
            frames=layout.cache / "payload-frames",
        )
        if payload.frames_reused:
            progress.step(
                f"payload: {payload.frames_reused} zstd frames reused from the user "
                f"cache, {payload.frames_made} compressed"
            )
        pack_s = time.monotonic() - t_pack
        outputs = write_installer(spec, st, payload, out, files / "header.sh", decoder)
        payload.path.unlink()
        shutil.rmtree(out / ".stage", ignore_errors=True)
        result = InstallerResult(
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
            fingerprint=key,
        )
        _to_cache(entry, result)
    return result


@functools.cache
def _code_digest() -> str:
    """dxforge's own code and data: any change to it makes a new installer."""
    root = Path(dxforge.__file__).parent
    h = hashlib.sha256()
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix != ".pyc":
            h.update(p.relative_to(root).as_posix().encode() + b"\0" + p.read_bytes())
    return h.hexdigest()


def fingerprint(
    construct: Path,
    spec: ConstructSpec,
    files: Path,
    channels: list[str],
    packages: list[Package],
    decoder: Decoder,
    opts: InstallerOptions,
) -> str:
    """What the installer's bytes depend on (never where the project or channels lie)."""
    named = [f for f in (spec.post_install, spec.license_file) if f is not None]
    data = {
        "format": CACHE_FORMAT,
        "dxforge": _code_digest(),
        "construct": sha256_file(construct),
        "files": {p.name: sha256_file(p) for p in sorted(files.iterdir()) if p.is_file()},
        "named": [sha256_file(f) for f in named],
        "packages": [[public_url(p.url, channels), p.sha256] for p in packages],
        "decoder": hashlib.sha256(decoder.data).hexdigest(),
        "compression": opts.compression,
        "pyc": opts.pyc,
        "epoch": os.environ.get("SOURCE_DATE_EPOCH", ""),
    }
    return store.fingerprint(data)


RESULT = "result.json"


def _to_cache(entry: Path, result: InstallerResult) -> None:
    """Keep the installer and its result in the user cache (a copy: ``out`` stays its own)."""

    def fill(tmp: Path) -> dict[str, Any]:
        shutil.copy2(result.installer, tmp / result.installer.name)
        return result.as_json()

    Store(entry.parent, RESULT).put(entry.name, fill, key=result.fingerprint)


def _from_cache(
    entry: Path,
    entry_key: str,
    spec: ConstructSpec,
    out: Path,
    packages: list[Package],
    channels: list[str],
    progress: Progress,
) -> InstallerResult | None:
    """The installer of this fingerprint copied from the user cache into ``out`` with its
    companions written for this project, or None (not there, or its sha256 does not hold)."""
    found = Store(entry.parent, RESULT).get(entry.name, key=entry_key)
    if found is None:
        return None
    data = found.meta
    src = entry / spec.installer_filename
    if not src.is_file():
        return None
    dest = out / spec.installer_filename
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.copy2(src, tmp)
    if sha256_file(tmp) != data.get("sha256"):  # the copy is what is checked, once
        tmp.unlink()
        progress.warn(f"the cached installer {src} does not match its sha256; building it")
        return None
    progress.step(f"the installer of this fingerprint is in the user cache ({entry})")
    os.chmod(tmp, 0o755)
    os.replace(tmp, dest)
    outputs = write_companions(dest, data["sha256"], packages)
    kept = {f.name for f in fields(InstallerResult)} - {
        "installer",
        "sha256_file",
        "lockfile",
        "package_list",
        "channels",
        "packages",
        "staging_prefix",
        "status",
        "seconds",
    }
    return InstallerResult(
        **{k: data[k] for k in kept},
        installer=dest,
        sha256_file=outputs.sha256_file,
        lockfile=outputs.lockfile,
        package_list=outputs.package_list,
        channels=channels,
        packages=packages,
        staging_prefix=str(staging_prefix(out, spec.name)),
        status="cached",
        seconds=0.0,
    )
