"""The self-extracting ``.sh``: header rendered from dxforge's header.sh, followed by the
payload; beside it the ``.sha256``, an ``@EXPLICIT`` lockfile and a package list."""

from __future__ import annotations

import gzip
import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

from dxforge.channel import Package
from dxforge.construct import ConstructSpec
from dxforge.installer.payload import Payload
from dxforge.installer.prefix import DXFORGE_DIR
from dxforge.installer.stage import Stage
from dxforge.util import DxError, atomic_write_text

PLATFORM = "linux-64"
NO_LIMIT = 4096  # PATH_MAX: the prefix limit when no binary file holds the prefix


@dataclass(frozen=True)
class Outputs:
    installer: Path
    sha256_file: Path
    lockfile: Path
    package_list: Path
    sha256: str
    size: int


def _sq(text: str) -> str:
    """``text`` for use inside single quotes."""
    return text.replace("'", "'\\''")


def _license_prompt(spec: ConstructSpec) -> str:
    if spec.batch_mode or not spec.license_file:
        return ""
    text = spec.license_file.read_text(encoding="utf-8", errors="replace")
    return (
        "    # shellcheck disable=SC2016  # the license text, literally\n"
        f"    printf '%s\\n' '{_sq(text)}'\n"
        "    printf '\\nDo you accept the license terms? [yes|no]\\n>>> '\n"
        "    read -r answer || exit 2\n"
        "    case \"$answer\" in [Yy][Ee][Ss] | [Yy]) ;; *) say 'license not accepted'; "
        "exit 2 ;; esac\n"
    )


@dataclass(frozen=True)
class Decoder:
    """The installer's first stage: a static zstd decoder, gzip'd, between header and payload."""

    data: bytes  # gzip'd
    sha256: str  # of ``data``
    binary_sha256: str  # of the decoder itself

    @classmethod
    def of(cls, binary: Path) -> Decoder:
        raw = binary.read_bytes()
        data = gzip.compress(raw, compresslevel=9, mtime=0)
        return cls(data, hashlib.sha256(data).hexdigest(), hashlib.sha256(raw).hexdigest())


NO_DECODER = Decoder(b"", "", "")


def render_header(
    template: str, spec: ConstructSpec, stage: Stage, payload: Payload, filename: str,
    decoder: Decoder = NO_DECODER,
) -> bytes:
    """The header with every @@FIELD@@ filled, HEADER_SIZE being its own byte length."""
    fields = {
        "NAME": spec.name,
        "VERSION": spec.version,
        "PLAT": PLATFORM,
        "MACHINE": {"linux-64": "x86_64", "linux-aarch64": "aarch64"}[PLATFORM],
        "FILENAME": filename,
        "PAYLOAD_SIZE": str(payload.size),
        "PAYLOAD_SHA256": payload.sha256,
        "COMPRESSION": payload.compression,
        "DECODER_SIZE": str(len(decoder.data)),
        "DECODER_SHA256": decoder.sha256 or "none",
        "DECODER_BIN_SHA256": decoder.binary_sha256 or "none",
        "MAX_PREFIX_LEN": str(len(str(stage.prefix)) if stage.has_binary else NO_LIMIT),
        "INSTALLED_KB": str(stage.installed_bytes // 1024 + 1),
        "PYTHON_REL": stage.python_rel,
        "GLIBC_MIN": stage.glibc,
        "LINUX_MIN": spec.linux or "",
        "POST_INSTALL_REL": f"{DXFORGE_DIR}/post_install.sh" if spec.post_install else "",
        "BATCH": "1" if spec.batch_mode else "0",
        "BATCH_WORD": "yes" if spec.batch_mode else "no",
        "EXISTS_TEXT": _sq(spec.install_path_exists_error_text),
        "SCRIPT_ENV": "\n".join(
            f"# shellcheck disable=SC2016,SC2089  # literal, from construct.yaml\n"
            f"{k}='{_sq(v)}'\n# shellcheck disable=SC2090\nexport {k}"
            for k, v in spec.script_env_variables.items()
        ),
        "DEFAULT_PREFIX": spec.default_prefix,
        "COMPANY": _sq(spec.company),
        "LICENSE_PROMPT": _license_prompt(spec),
    }
    unknown = (
        set(re.findall(r"@@([A-Z_0-9]+)@@", template)) - set(fields) - {"HEADER_SIZE", "TOTAL_SIZE"}
    )
    if unknown:
        raise DxError(f"installer/header.sh uses unknown fields {sorted(unknown)}")
    text = template
    for k, v in fields.items():
        text = text.replace(f"@@{k}@@", v)
    size = 0
    while True:
        out = (
            text.replace("@@HEADER_SIZE@@", str(size))
            .replace("@@TOTAL_SIZE@@", str(size + len(decoder.data) + payload.size))
            .encode("utf-8")
        )
        if len(out) == size:
            return out
        size = len(out)


def lockfile_text(packages: list[Package]) -> str:
    """conda's explicit format: one URL per package with its md5 (or sha256) after ``#``."""
    lines = [
        "# This file may be used to create an environment using:",
        "# $ conda create --name <env> --file <this file>",
        f"# platform: {PLATFORM}",
        "@EXPLICIT",
    ]
    for p in packages:
        digest = p.md5 or (f"sha256:{p.sha256}" if p.sha256 else "")
        lines.append(f"{p.url}#{digest}" if digest else p.url)
    return "\n".join(lines) + "\n"


def package_list_text(packages: list[Package]) -> str:
    width = max((len(p.name) for p in packages), default=4)
    lines = [
        f"# {len(packages)} packages for {PLATFORM}",
        f"# {'name':<{width}}  version  build  channel",
    ]
    lines += [f"{p.name:<{width}}  {p.version}  {p.build}  {p.channel}" for p in packages]
    return "\n".join(lines) + "\n"


def write_installer(
    spec: ConstructSpec, stage: Stage, payload: Payload, out: Path, template: Path,
    decoder: Decoder = NO_DECODER,
) -> Outputs:
    """Write the installer (header, decoder stage, payload) and its companions into ``out``,
    each file atomically."""
    if (payload.compression == "zstd") != bool(decoder.data):
        raise DxError("a zstd payload needs the decoder stage, and only a zstd payload has one")
    filename = spec.installer_filename
    dest = out / filename
    header = render_header(template.read_text(encoding="utf-8"), spec, stage, payload, filename,
                           decoder)
    tmp = dest.with_name(f".{filename}.tmp")
    h = hashlib.sha256(header)
    h.update(decoder.data)
    try:
        with open(tmp, "wb") as f:
            f.write(header)
            f.write(decoder.data)
            with open(payload.path, "rb") as src:
                while block := src.read(1 << 20):
                    h.update(block)
                    f.write(block)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o755)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return write_companions(dest, h.hexdigest(), stage.packages)


def write_companions(installer: Path, digest: str, packages: list[Package]) -> Outputs:
    """Beside ``installer`` (sha256 ``digest``): its ``.sha256``, the ``@EXPLICIT`` lockfile
    and the package list, each written atomically."""
    out, filename = installer.parent, installer.name
    stem = filename[: -len(".sh")]
    sha_file = out / f"{filename}.sha256"
    atomic_write_text(sha_file, f"{digest}  {filename}\n")
    lock = out / f"{stem}.explicit.txt"
    atomic_write_text(lock, lockfile_text(packages))
    pkgs = out / f"{stem}.packages.txt"
    atomic_write_text(pkgs, package_list_text(packages))
    return Outputs(
        installer=installer,
        sha256_file=sha_file,
        lockfile=lock,
        package_list=pkgs,
        sha256=digest,
        size=installer.stat().st_size,
    )
