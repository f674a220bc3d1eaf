"""The OS layer: a Debian root made by mmdebstrap (kept in the user cache by fingerprint), made
into a deterministic layer with the image's user, home and ``/tmp``.

Two roots were measured (benchmarks/README.md): Debian's ``minbase`` variant, and ``minimal``:
only the C library, a shell and tini, extracted (no maintainer script runs; its dpkg database
is written from the packages' control files, so scanners still see every OS package)."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import tarfile
from dataclasses import dataclass
from pathlib import Path

from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, file_lock, run
from dxforge.images.layers import Entry
from dxforge.isolation.apt import mirror

SUITE = "bookworm"
ROOT_FORMAT = 1
"""Bump when how OS roots are made changes."""
USER, UID, HOME = "diracx", 1000, "home/diracx"
"""The image's default user: uid 1000 in group 0 (any uid in group 0 works the same)."""


@dataclass(frozen=True)
class OsChoice:
    """How the OS root is made."""

    name: str
    variant: str
    include: tuple[str, ...]


OS_CHOICES = {
    "minimal": OsChoice("minimal", "extract", ("libc6", "dash", "tini", "tzdata")),
    "minbase": OsChoice("minbase", "minbase", ("tini", "tzdata")),
}
"""tzdata: DiracX's ``ZoneInfo("UTC")`` needs the system's time zone database."""
DEFAULT_OS = "minimal"


@dataclass(frozen=True)
class DebPackage:
    name: str
    version: str
    arch: str


@dataclass(frozen=True)
class OsRoot:
    choice: OsChoice
    tar: Path
    control: Path  # the packages' control stanzas, blank-line separated
    key: str

    def packages(self) -> list[DebPackage]:
        out = []
        for fields in stanzas(self.control.read_text(errors="replace")):
            out.append(DebPackage(fields["Package"], fields["Version"], fields["Architecture"]))
        return sorted(set(out), key=lambda d: d.name)


def stanzas(text: str) -> list[dict[str, str]]:
    """Debian control stanzas (``Field: value``, continuation lines kept)."""
    out = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        last = ""
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and last:
                fields[last] += "\n" + line
            elif ":" in line:
                last, value = line.split(":", 1)
                fields[last] = value.strip()
        if "Package" in fields:
            out.append(fields)
    return out


def _key(choice: OsChoice, archive: str, security: str | None) -> str:
    data = [ROOT_FORMAT, SUITE, choice.variant, sorted(choice.include), archive, security]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]


def control_hook(variant: str, out: Path) -> str:
    """The mmdebstrap hook that writes the root's packages' control stanzas to ``out``: from
    the downloaded packages of an extracted root, from dpkg's database of an installed one."""
    if variant == "extract":
        return (
            '--extract-hook=for f in "$1"/var/cache/apt/archives/*.deb; do '
            f'dpkg-deb -f "$f"; echo; done > "{out}"'
        )
    return f'--customize-hook=cp "$1"/var/lib/dpkg/status "{out}"'


def os_root(name: str, cache: Path, progress: Progress = SILENT, refresh: bool = False) -> OsRoot:
    """The OS root ``name`` (:data:`OS_CHOICES`) as a tarball in the user cache, made with
    mmdebstrap the first time (or again with ``refresh``: a weekly base takes Debian's
    updates)."""
    if name not in OS_CHOICES:
        raise DxError(f"unknown OS layer {name!r}; choose one of {', '.join(OS_CHOICES)}")
    choice = OS_CHOICES[name]
    repo = mirror()
    key = _key(choice, repo.archive, repo.security)
    d = cache / "images" / "os"
    root = OsRoot(choice, d / f"{name}-{key}.tar", d / f"{name}-{key}.control", key)
    with file_lock(d / f".{name}-{key}.lock", f"the {name} OS root"):
        if root.tar.is_file() and root.control.is_file() and not refresh:
            return root
        _make(choice, root, repo.archive, repo.security, progress)
    return root


def _make(
    choice: OsChoice, root: OsRoot, archive: str, security: str | None, progress: Progress
) -> None:
    if os.geteuid() != 0 or not os.access("/usr/bin/mmdebstrap", os.X_OK):
        raise DxError(
            "making the OS layer needs root and mmdebstrap (apt-get install "
            "mmdebstrap), or an OS root already in the user cache"
        )
    progress.step(f"making the {choice.name} OS root (mmdebstrap {SUITE} {choice.variant})")
    lines = [f"deb {archive} {SUITE} main", f"deb {archive} {SUITE}-updates main"]
    if security:
        lines.append(f"deb {security} {SUITE}-security main")
    tmp = root.tar.with_name(f".{root.tar.name}.{os.getpid()}.tmp")
    control = root.control.with_name(f".{root.control.name}.{os.getpid()}.tmp")
    cmd = [
        "mmdebstrap",
        "--mode=root",
        f"--variant={choice.variant}",
        "--format=tar",
        control_hook(choice.variant, control),
    ]
    cmd += [f"--include={p}" for p in choice.include]
    try:
        run(
            [*cmd, SUITE, str(tmp), *lines],
            what=f"mmdebstrap {SUITE} {choice.variant}",
            fix="check the network and the Debian mirror in apt's sources",
            timeout=1800,
            log=root.tar.with_suffix(".log"),
        )
        os.replace(control, root.control)
        os.replace(tmp, root.tar)
    finally:
        tmp.unlink(missing_ok=True)
        control.unlink(missing_ok=True)


SKIPPED = (
    "dev/",
    "proc/",
    "sys/",
    "run/",
    "var/cache/apt/",
    "var/lib/apt/lists/",
    "var/log/",
    "etc/machine-id",
    "etc/hostname",
    "etc/resolv.conf",
    "etc/hosts",
)
"""What the runtime provides, or the build leaves behind: not in the layer (the directories
themselves stay)."""


def _skipped(name: str) -> bool:
    """Whether ``name`` (no trailing slash) is left out: a file of :data:`SKIPPED`, or what is
    inside one of its directories (the directory itself stays)."""
    return any(name.startswith(s) if s.endswith("/") else name == s for s in SKIPPED)


def _entry(tar: tarfile.TarFile, m: tarfile.TarInfo, name: str) -> Entry | None:
    mode = m.mode & 0o7777
    if m.isdir():
        return Entry(name, "dir", mode)
    if m.issym():
        return Entry(name, "symlink", 0o777, target=m.linkname)
    if m.isreg() or m.islnk():  # a hard link becomes a copy: sorted, it may precede its target
        f = tar.extractfile(m)
        assert f is not None
        return Entry(name, "file", mode, data=f.read(), uid=m.uid, gid=m.gid)
    return None  # device nodes and fifos: the runtime makes /dev


def passwd(existing: str) -> str:
    """``/etc/passwd`` with root, nobody and the image's user (kept as they are when present)."""
    lines = [ln for ln in existing.splitlines() if ln.strip()]
    names = {ln.split(":", 1)[0] for ln in lines}
    for user, line in (
        ("root", "root:x:0:0:root:/root:/bin/sh"),
        ("nobody", "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin"),
        (USER, f"{USER}:x:{UID}:0:DiracX:/{HOME}:/bin/sh"),
    ):
        if user not in names:
            lines.append(line)
    return "\n".join(lines) + "\n"


def group(existing: str) -> str:
    lines = [ln for ln in existing.splitlines() if ln.strip()]
    names = {ln.split(":", 1)[0] for ln in lines}
    for name, line in (("root", "root:x:0:"), ("nogroup", "nogroup:x:65534:")):
        if name not in names:
            lines.append(line)
    return "\n".join(lines) + "\n"


def dpkg_status(control: str) -> str:
    """A dpkg database for an extracted root: each package's control fields, installed."""
    out = []
    for fields in stanzas(control):
        fields = {"Package": fields.pop("Package"), "Status": "install ok installed", **fields}
        out.append("\n".join(f"{k}: {v}" for k, v in fields.items()))
    return "\n\n".join(sorted(set(out))) + "\n"


def layer_entries(root: OsRoot) -> list[Entry]:
    """The OS layer's entries: the root's files, less :data:`SKIPPED`, with the image's
    ``/etc/passwd``, ``/etc/group``, home, ``/tmp`` and (extracted roots) dpkg database."""
    entries: dict[str, Entry] = {}
    with tarfile.open(root.tar) as tar:
        for m in tar:
            name = posixpath.normpath(m.name)
            if name == "." or _skipped(name):
                continue
            e = _entry(tar, m, name)
            if e is not None:
                entries[name] = e
    text = {
        k: (entries[k].data or b"").decode() if k in entries else ""
        for k in ("etc/passwd", "etc/group")
    }
    entries["etc/passwd"] = Entry(
        "etc/passwd", "file", 0o644, data=passwd(text["etc/passwd"]).encode()
    )
    entries["etc/group"] = Entry("etc/group", "file", 0o644, data=group(text["etc/group"]).encode())
    entries[HOME] = Entry(HOME, "dir", 0o775, uid=UID, gid=0)
    entries["tmp"] = Entry("tmp", "dir", 0o1777)
    if root.choice.variant == "extract":
        status = dpkg_status(root.control.read_text(errors="replace"))
        entries["var/lib/dpkg/status"] = Entry(
            "var/lib/dpkg/status", "file", 0o644, data=status.encode()
        )
    return list(entries.values())
