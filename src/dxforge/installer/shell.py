"""The self-extracting ``.sh``: header rendered from dxforge's header.sh, followed by the
payload; beside it the ``.sha256``, an ``@EXPLICIT`` lockfile and a package list."""

from __future__ import annotations

import gzip
import hashlib
import itertools
import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from dxforge.conda.channel import Package
from dxforge.core.util import DxError, atomic_write_text
from dxforge.installer.payload import Payload
from dxforge.installer.prefix import DXFORGE_DIR
from dxforge.installer.stage import Stage
from dxforge.project.construct import ConstructSpec

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
    template: str,
    spec: ConstructSpec,
    stage: Stage,
    payload: Payload,
    filename: str,
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
        "SELF_SHA256": UNSEALED,
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
        set(re.findall(r"@@([A-Z_0-9]+)@@", template))
        - set(fields)
        - {"HEADER_SIZE", "TOTAL_SIZE", "CHECK_CKSUM"}
    )
    if unknown:
        raise DxError(f"dxforge/installer/files/header.sh uses unknown fields {sorted(unknown)}")
    text = template
    for k, v in fields.items():
        text = text.replace(f"@@{k}@@", v)
    lines = text.split("\n", 3)
    if lines[0] != "#!/bin/sh" or lines[1] != f"# {UNSEALED}":
        raise DxError(
            "dxforge/installer/files/header.sh must start with `#!/bin/sh` and `# @@SELF_SHA256@@`"
        )
    text = text.replace("@@CHECK_CKSUM@@", posix_cksum(lines[2].encode() + b"\n"))
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


UNSEALED = "0" * 64
"""Line 2 of a rendered header until :func:`seal` writes the installer's own sha256 there."""


def _without_line2(header: bytes) -> bytes:
    one = header.index(b"\n") + 1
    return header[:one] + header[header.index(b"\n", one) + 1 :]


def self_sha256(header: bytes, rest: Iterable[bytes] = ()) -> str:
    """What line 3 of the installer checks: the sha256 of the installer (``header`` then the
    ``rest`` of its bytes) without its line 2, which holds this digest."""
    h = hashlib.sha256(_without_line2(header))
    for block in rest:
        h.update(block)
    return h.hexdigest()


def seal(header: bytes, digest: str) -> bytes:
    """``header`` with ``digest`` in its line 2 (same length: HEADER_SIZE holds)."""
    one = header.index(b"\n") + 1
    line2 = f"# {digest}\n".encode()
    assert len(digest) == 64 and header[one : one + len(line2)] == f"# {UNSEALED}\n".encode()
    return header[:one] + line2 + header[one + len(line2) :]


def verify(data: bytes) -> bool:
    """Whether an installer's bytes pass its line-3 check (the unit tests' definition)."""
    one = data.index(b"\n") + 1
    two = data.index(b"\n", one)
    return data[one:two] == f"# {self_sha256(data)}".encode()


def _crc_table() -> list[int]:
    table = []
    for i in range(256):
        c = i << 24
        for _ in range(8):
            c = ((c << 1) ^ 0x04C11DB7) if c & 0x80000000 else c << 1
        table.append(c & 0xFFFFFFFF)
    return table


_CRC = _crc_table()


def posix_cksum(data: bytes) -> str:
    """What POSIX ``cksum`` prints for ``data`` (without a file name): CRC and length."""
    crc = 0
    n = len(data)
    for b in data + n.to_bytes((n.bit_length() + 7) // 8, "little"):
        crc = ((crc << 8) & 0xFFFFFFFF) ^ _CRC[(crc >> 24) ^ b]
    return f"{~crc & 0xFFFFFFFF} {n}"


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
    spec: ConstructSpec,
    stage: Stage,
    payload: Payload,
    out: Path,
    template: Path,
    decoder: Decoder = NO_DECODER,
) -> Outputs:
    """Write the installer (header, decoder stage, payload) and its companions into ``out``,
    each file atomically."""
    if (payload.compression == "zstd") != bool(decoder.data):
        raise DxError("a zstd payload needs the decoder stage, and only a zstd payload has one")
    filename = spec.installer_filename
    dest = out / filename
    header = render_header(
        template.read_text(encoding="utf-8"), spec, stage, payload, filename, decoder
    )
    tmp = dest.with_name(f".{filename}.tmp")

    def payload_blocks() -> Iterable[bytes]:
        with open(payload.path, "rb") as src:
            while block := src.read(1 << 20):
                yield block

    header = seal(header, self_sha256(header, itertools.chain([decoder.data], payload_blocks())))
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
