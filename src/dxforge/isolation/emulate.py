"""Running another architecture's programs here, part of the one isolation model
(:mod:`dxforge.isolation.isolate`): a foreign Debian root (:class:`dxforge.isolation.roots.RootSpec`
with an ``arch``) is entered through a NEW user and mount namespace that has its own binfmt_misc, in
which Debian's static qemu is registered with flag ``F``. Programs of the root, their children
included, then run as if native; the machine's binfmt_misc is never touched.

The user namespace maps uids and gids 0-65535 to themselves (real root writes the maps from the
parent, as ``--map-root-user`` maps uid 0 alone), so the unprivileged user of the isolation
model exists inside; the root's command is then :func:`dxforge.isolation.roots.command` as for a
native root: own pid namespace, /proc, no network but loopback, ``setpriv`` to the user.

qemu comes from Debian's ``qemu-user-static`` package, downloaded (``apt-get download``, never
installed: its postinst registers handlers machine-wide), checked against apt's SHA256 and
unpacked with ``dpkg -x`` into the user cache, keyed by its version and sha256.
"""

from __future__ import annotations

import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, execute, run, sha256_file
from dxforge.isolation import roots

QEMU_PACKAGE = "qemu-user-static"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
USER_MAP = "0 0 65536\n"
"""uids (and gids) 0-65535 inside are the same numbers outside."""
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class Arch:
    """A foreign architecture: its names and the ELF header binfmt_misc recognises it by."""

    machine: str  # uname -m, conda's subdir suffix
    dpkg: str  # Debian's architecture
    magic: bytes  # the first 20 bytes of its ELF executables
    mask: bytes

    @property
    def qemu(self) -> str:
        return f"qemu-{self.machine}-static"

    def binfmt(self, interpreter: Path) -> str:
        """The registration line: flag ``F`` opens ``interpreter`` now, so it need not exist
        in the roots the programs run in."""

        def esc(b: bytes) -> str:
            return "".join(f"\\x{c:02x}" for c in b)

        return f":{self.qemu}:M::{esc(self.magic)}:{esc(self.mask)}:{interpreter}:F"


_ELF64_LE = b"\x7fELF\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00"
_MASK = b"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff"
ARCHES = {
    "aarch64": Arch("aarch64", "arm64", _ELF64_LE + b"\xb7\x00", _MASK + b"\xff\xff"),
    "ppc64le": Arch("ppc64le", "ppc64el", _ELF64_LE + b"\x15\x00", _MASK + b"\xff\x00"),
}


def arch(machine: str) -> Arch:
    """The :class:`Arch` of ``uname -m`` name ``machine``."""
    try:
        return ARCHES[machine]
    except KeyError:
        raise DxError(f"no emulation for {machine!r}: known are {', '.join(ARCHES)}") from None


@lru_cache(maxsize=1)
def why_not() -> str:
    """Why foreign roots cannot run here, or ``""``: it needs what native roots need, and a
    new user namespace with its own binfmt_misc (Linux 6.7 or later)."""
    why = roots.why_not()
    if why:
        return why
    if not shutil.which("dpkg") or not shutil.which("apt-get"):
        return "dpkg and apt-get are needed to fetch qemu-user-static"
    probe = execute([*launcher([]), "sh", "-c", f"test -e {BINFMT}/register"], check=False)
    if not probe.ok:
        return (
            "this kernel gives a user namespace no binfmt_misc of its own "
            f"(Linux 6.7 or later): {probe.tail(3) or 'exit ' + str(probe.returncode)}"
        )
    return ""


def qemu(machine: str, cache: Path, progress: Progress = SILENT) -> Path:
    """The static qemu for ``machine``, from Debian's package in the user cache (downloaded and
    unpacked once per package version and sha256)."""
    info = run(
        ["apt-cache", "show", "--no-all-versions", QEMU_PACKAGE],
        what=f"apt-cache show {QEMU_PACKAGE}",
        fix="apt-get update",
    )
    version = re.search(r"^Version: (\S+)$", info, re.M)
    sha = re.search(r"^SHA256: ([0-9a-f]{64})$", info, re.M)
    if not version or not sha:
        raise DxError(f"apt knows no {QEMU_PACKAGE} with a SHA256: run apt-get update")
    slug = re.sub(r"[^A-Za-z0-9.+-]", "_", version[1])
    home = cache / "emulate" / f"{QEMU_PACKAGE}-{slug}-{sha[1][:16]}"
    binary = home / "usr" / "bin" / arch(machine).qemu
    if binary.is_file():
        return binary
    progress.step(f"downloading {QEMU_PACKAGE} {version[1]} (apt-get download, not installed)")
    home.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{home.name}.", dir=home.parent))
    try:
        run(
            [
                "apt-get",
                "download",
                "-q",
                "-o",
                "APT::Sandbox::User=root",
                f"{QEMU_PACKAGE}={version[1]}",
            ],
            cwd=tmp,
            what=f"apt-get download {QEMU_PACKAGE}",
            timeout=900,
        )
        (deb,) = tmp.glob(f"{QEMU_PACKAGE}_*.deb")
        got = sha256_file(deb)
        if got != sha[1]:
            raise DxError(f"{deb}: sha256 {got}, apt's index says {sha[1]}: download again")
        run(["dpkg", "-x", str(deb), str(tmp / "x")], what=f"dpkg -x {deb.name}")
        keep = {a.qemu for a in ARCHES.values()}
        for exe in (tmp / "x" / "usr" / "bin").iterdir():  # 370 MB unpacked: keep ours
            if exe.name not in keep:
                exe.unlink()
        try:
            os.replace(tmp / "x", home)
        except OSError:
            if not binary.is_file():  # not another process that was quicker
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    if not binary.is_file():
        raise DxError(f"{QEMU_PACKAGE} {version[1]} has no {binary.name}")
    return binary


MAIN_SUITE_ONLY = frozenset({"bullseye"})
"""Releases whose foreign roots take the main suite alone: a partial mirror misses some arm64
files of bullseye's security suite."""


def root_spec(release: str, machine: str, include: Sequence[str] = ()) -> roots.RootSpec:
    """A Debian ``release`` root for ``machine``: ``?essential`` and ``include``, unpacked
    without running anything (mmdebstrap's ``extract`` variant)."""
    return roots.RootSpec(
        release,
        "extract",
        tuple(sorted(include)),
        arch(machine).dpkg,
        updates=release not in MAIN_SUITE_ONLY,
    )


PILOT_PACKAGES = ("mawk", "iproute2")
"""What a pilot's foreign root holds beyond ``?essential``: awk (the pilot checks use it) and
``ip`` (a CI step's site brings loopback up in its own network namespace)."""


def pilot_root(
    release: str, machine: str, dest: Path, cache: Path, progress: Progress = SILENT
) -> Path:
    """A Debian ``release`` root of ``machine`` for a pilot (:func:`root_spec` with
    :data:`PILOT_PACKAGES`), with ``awk`` as mawk's maintainer script makes it (the
    ``extract`` variant runs none)."""
    root = roots.make(root_spec(release, machine, PILOT_PACKAGES), dest, cache, progress)
    awk = root / "usr/bin/awk"
    if not awk.exists() and not awk.is_symlink():
        awk.symlink_to("mawk")
    return root


def tarball(spec: roots.RootSpec, cache: Path, progress: Progress = SILENT) -> Path:
    """A foreign root's tarball (:func:`dxforge.isolation.roots.tarball`). Variants other than
    ``extract`` run their maintainer scripts: mmdebstrap then runs in the emulating namespace
    (and a pid namespace of its own, for /proc), so they run chrooted in the new root as if
    native: ``cc`` and ``awk`` alternatives, the ld.so cache, users."""
    if spec.variant == "extract" or not spec.arch:
        return roots.tarball(spec, cache, progress)
    machine = next((a.machine for a in ARCHES.values() if a.dpkg == spec.arch), "")
    line = arch(machine or spec.arch).binfmt(qemu(machine or spec.arch, cache, progress))
    wrap = [*launcher([line]), "unshare", "--pid", "--fork", "--mount-proc"]
    return roots.tarball(spec, cache, progress, wrap)


LIBC_RELEASE = "bullseye"
"""The release whose C library runs foreign programs of the host's file system (staging)."""


def host_runner(machine: str, cache: Path, progress: Progress = SILENT) -> list[str]:
    """The command prefix that runs ``machine``'s programs from the host's own file system
    (staging runs an installer's python): the emulating namespace, with qemu taking the ELF
    interpreter and the C library from a foreign Debian root (``QEMU_LD_PREFIX``, inherited by
    the child processes) unpacked once in the user cache; the host's /lib is untouched."""
    why = why_not()
    if why:
        raise DxError(
            f"running {machine} programs here needs the namespaced emulation, which this "
            f"machine does not give: {why}; build on an {machine} machine instead"
        )
    tar = roots.tarball(root_spec(LIBC_RELEASE, machine), cache, progress)
    where = cache / "emulate" / f"libc-{tar.stem}"
    if not (where / "lib").is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=f".{where.name}.", dir=where.parent))
        try:
            roots.extract(tar, tmp / "root")
            try:
                os.replace(tmp / "root", where)
            except OSError:
                if not (where / "lib").is_dir():  # not another process that was quicker
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    line = arch(machine).binfmt(qemu(machine, cache, progress))
    return [*launcher([line]), "/usr/bin/env", f"QEMU_LD_PREFIX={where}"]


def launcher(binfmts: Sequence[str]) -> list[str]:
    """The host command prefix that runs what follows in a new user and mount namespace with
    its own binfmt_misc, ``binfmts`` registered there."""
    out = [sys.executable, "-m", "dxforge.isolation.emulate"]
    for line in binfmts:
        out += ["--binfmt", line]
    return [*out, "--"]


def command(
    root: Path, argv: Sequence[str], *, machine: str, interpreter: Path, **kw: object
) -> list[str]:
    """The host command that runs ``argv`` in the foreign ``root`` of ``machine``:
    :func:`dxforge.isolation.roots.command` (same keywords: network, user, env, cwd, binds)
    inside the emulating namespace."""
    inner = roots.command(root, argv, **kw)  # type: ignore[arg-type]
    return [*launcher([arch(machine).binfmt(interpreter)]), *inner]


def _libc_call(name: str, *args: object) -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if getattr(libc, name)(*args) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{name}: {os.strerror(err)}")


def _inside(binfmts: Sequence[str], argv: Sequence[str], ready: int, go: int) -> None:
    """The child: unshare, let the parent write the maps, mount and register, exec."""
    _libc_call("prctl", PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    _libc_call("unshare", CLONE_NEWUSER | CLONE_NEWNS)
    os.write(ready, b"u")
    if os.read(go, 1) != b"g":
        raise OSError("the parent did not map the user namespace")
    subprocess.run(["mount", "--make-rprivate", "/"], check=True)
    subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True)
    for line in binfmts:
        with open(BINFMT / "register", "w") as f:
            f.write(line)
    os.execvp(argv[0], list(argv))


def enter(binfmts: Sequence[str], argv: Sequence[str]) -> int:
    """Run ``argv`` in a new user (uids 0-65535 mapped) and mount namespace whose own
    binfmt_misc has ``binfmts``; its exit status."""
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(ready_r)
        os.close(go_w)
        try:
            _inside(binfmts, argv, ready_w, go_r)
        except BaseException as e:  # noqa: BLE001 - the child must never return
            print(f"dxforge.isolation.emulate: {e}", file=sys.stderr)
        os._exit(126)
    os.close(ready_w)
    os.close(go_r)
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda s, _f: _forward(pid, s))
    if os.read(ready_r, 1) == b"u":
        for name in ("uid_map", "gid_map"):
            Path(f"/proc/{pid}/{name}").write_text(USER_MAP)
        os.write(go_w, b"g")
    os.close(go_w)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


def _forward(pid: int, sig: int) -> None:
    """Pass a signal on to the namespace's first process (gone already: nothing to do)."""
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def main(args: Sequence[str]) -> int:
    """``python -m dxforge.isolation.emulate [--binfmt LINE]... -- COMMAND...``"""
    binfmts: list[str] = []
    rest = list(args)
    while rest and rest[0] == "--binfmt" and len(rest) > 1:
        binfmts.append(rest[1])
        rest = rest[2:]
    if not rest or rest[0] != "--" or len(rest) < 2:
        print(
            "usage: python -m dxforge.isolation.emulate [--binfmt LINE]... -- COMMAND...",
            file=sys.stderr,
        )
        return 2
    return enter(binfmts, rest[1:])


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.exit(code if code >= 0 else 128 - code)
