"""Minimal Debian roots (mmdebstrap), for building the runtime in the oldest release supported
and for testing installers on others. A root is made once per (release, variant, packages,
mirror) and kept as a tarball in the user cache; it is extracted where it is needed. Commands
run in it through ``unshare`` (their own mount, pid and, by default, network namespaces, with
/proc mounted inside: ``$ORIGIN`` needs it) and ``chroot``, with the user and the loopback of
the one isolation model (:mod:`dxforge.isolation.isolate`); nothing is mounted on the host."""

from __future__ import annotations

import os
import shlex
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dxforge.core.progress import SILENT, Progress
from dxforge.core.store import Store, fingerprint
from dxforge.core.util import DxError, execute, run
from dxforge.isolation.apt import Mirror, mirror
from dxforge.isolation.isolate import LOOPBACK_UP, as_user

ROOT_FORMAT = 1
"""Bump when how roots are made changes."""
DPKG_DATABASE_HOOK = r"""set -eu
db=$1/var/lib/dpkg
mkdir -p "$db/info"
echo 1 > "$db/info/format"
: > "$db/status"
for deb in "$1"/var/cache/apt/archives/*.deb; do
    name=$(dpkg-deb -f "$deb" Package)
    [ "$(dpkg-deb -f "$deb" Multi-Arch)" != same ] || name=$name:$(dpkg-deb -f "$deb" Architecture)
    { dpkg-deb -f "$deb" | sed '1a Status: install ok installed'; echo; } >> "$db/status"
    dpkg-deb --fsys-tarfile "$deb" | tar -t | sed -e 's,^\./,/,' -e 's,/$,,' -e 's,^$,/.,' \
        > "$db/info/$name.list"
done"""
"""An ``extract`` root's dpkg database, written from the packages it unpacked (mmdebstrap's
extract hook, ``$1`` the root): ``dpkg-query --admindir`` then answers which package ships a
file (the runtime's library closure), as in a root whose packages were installed."""


@dataclass(frozen=True)
class RootSpec:
    """A root of a Debian ``release``. ``arch`` (a dpkg architecture, ``""`` for the host's)
    makes a foreign root: the ``extract`` variant, which runs no maintainer script (its
    ``/etc/passwd`` and ``/etc/group`` come from base-passwd's master files); it runs under
    :mod:`dxforge.isolation.emulate`. ``updates=False`` takes the release's main suite alone (a
    partial mirror may lack some files of the updates and security suites)."""

    release: str
    variant: str = "minbase"  # minbase | buildd | extract
    include: tuple[str, ...] = ()
    arch: str = ""
    updates: bool = True
    database: bool = False  # an extract root: write its dpkg database (DPKG_DATABASE_HOOK)

    def key(self, repo: Mirror) -> str:
        data: list[object] = [
            ROOT_FORMAT,
            self.release,
            self.variant,
            sorted(self.include),
            repo.archive,
            repo.security,
        ]
        if self.arch or not self.updates:  # the host's full roots keep their keys
            data += [self.arch, self.updates]
        if self.database:
            data.append("dpkg-database")
        return fingerprint(data)[:16]

    @property
    def name(self) -> str:
        return "-".join(x for x in (self.release, self.arch, self.variant) if x)

    def sources(self, repo: Mirror) -> list[str]:
        """mmdebstrap's mirror arguments."""
        lines = [f"deb {repo.archive} {self.release} main"]
        if self.updates:
            lines.append(f"deb {repo.archive} {self.release}-updates main")
            if repo.security:
                lines.append(f"deb {repo.security} {self.release}-security main")
        return lines

    def options(self) -> list[str]:
        """mmdebstrap's options (``?essential`` is a pattern: its own ``--include``)."""
        cmd = ["--mode=root", f"--variant={self.variant}", "--format=tar"]
        if self.arch:
            cmd.append(f"--arch={self.arch}")
            if (
                self.variant != "extract"
            ):  # its maintainer scripts run under dxforge.isolation.emulate
                cmd.append("--skip=check/qemu")
        if self.variant == "extract":
            cmd.append("--include=?essential")
            cmd += [
                f'--extract-hook=cp "$1/usr/share/base-passwd/{f}.master" "$1/etc/{f}"'
                for f in ("passwd", "group")
            ]
            if self.database:
                cmd.append(f"--extract-hook={DPKG_DATABASE_HOOK}")
        if self.include:
            cmd.append("--include=" + ",".join(sorted(self.include)))
        return cmd


def why_not() -> str:
    """Why Debian roots cannot be made or used here, or ``""`` when they can."""
    if os.geteuid() != 0:
        return "making and entering Debian roots needs root (mmdebstrap, chroot)"
    for tool, package in (
        ("mmdebstrap", "mmdebstrap"),
        ("unshare", "util-linux"),
        ("chroot", "coreutils"),
    ):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install {package})"
    probe = execute(["unshare", "--mount", "--pid", "--fork", "--net", "true"], check=False)
    if probe.returncode != 0:
        return f"`unshare --mount --pid --net` is not permitted here: {probe.stderr.strip()}"
    return ""


def tarball(
    spec: RootSpec, cache: Path, progress: Progress = SILENT, launcher: Sequence[str] = ()
) -> Path:
    """The root's tarball, made with mmdebstrap the first time (from the release, its updates
    and its security archive), run through ``launcher`` when given (a foreign root whose
    maintainer scripts run: :func:`dxforge.isolation.emulate.tarball`)."""
    why = why_not()
    if why:
        raise DxError(f"cannot make a Debian {spec.release} root: {why}")
    repo = mirror()
    roots = Store(cache / "roots")
    out = roots.path(f"{spec.name}-{spec.key(repo)}.tar")
    if out.is_file():
        return out
    progress.step(f"making a Debian {spec.name} root (mmdebstrap)")
    return roots.put_file(
        out.name,
        lambda tmp: run(
            [*launcher, "mmdebstrap", *spec.options(), spec.release, str(tmp), *spec.sources(repo)],
            what=f"mmdebstrap {spec.name}",
            fix="check the network and the Debian mirror in apt's sources",
            timeout=3600,
            log=roots.root / f"{out.stem}.log",
        ),
    )


def extract(archive: Path, dest: Path) -> Path:
    """Unpack a root tarball into the empty or missing directory ``dest``."""
    if dest.exists():
        shutil.rmtree(dest)
    dest.mkdir(parents=True)
    run(
        ["tar", "--numeric-owner", "-xpf", str(archive), "-C", str(dest)],
        what=f"unpacking {archive}",
    )
    (dest / "etc/hosts").write_text("127.0.0.1 localhost\n::1 localhost\n")
    return dest


def make(spec: RootSpec, dest: Path, cache: Path, progress: Progress = SILENT) -> Path:
    """A fresh root of ``spec`` at ``dest``."""
    return extract(tarball(spec, cache, progress), dest)


def command(
    root: Path,
    argv: Sequence[str],
    *,
    network: bool = False,
    user: int | None = None,
    env: dict[str, str] | None = None,
    cwd: str = "/",
    binds: dict[str, Path] | None = None,
) -> list[str]:
    """The host command that runs ``argv`` inside ``root``: own mount and pid namespaces with
    /proc mounted, no network unless asked (loopback up), optionally as uid/gid ``user``, with
    exactly ``env`` (plus PATH and LANG) and working directory ``cwd``; each host directory of
    ``binds`` is mounted at its path inside the root, for this command only."""
    environment = {
        "PATH": "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin",
        "LANG": "C.UTF-8",
        **(env or {}),
    }
    inner = ["chroot", str(root)]
    if user is not None:
        inner += as_user(user)
    inner += [
        "/usr/bin/env",
        "-i",
        *(f"{k}={v}" for k, v in environment.items()),
        "sh",
        "-c",
        f'cd {shlex.quote(cwd)} && exec "$@"',
        "sh",
        *argv,
    ]
    ns = ["unshare", "--mount", "--pid", "--fork", f"--mount-proc={root}/proc"]
    setup = [
        f"mount --bind {shlex.quote(str(host))} {shlex.quote(str(root) + inside)}"
        for inside, host in sorted((binds or {}).items())
    ]
    if not network:
        ns.append("--net")
        setup.insert(0, f"{{ {LOOPBACK_UP} 2>/dev/null || true; }}")
    if not setup:
        return [*ns, *inner]
    return [*ns, "sh", "-ec", "; ".join([*setup, 'exec "$@"']), "sh", *inner]


def run_in(
    root: Path,
    argv: Sequence[str],
    *,
    what: str,
    log: Path | None = None,
    timeout: float | None = None,
    **kw: object,
) -> str:
    """Run ``argv`` in ``root`` (see :func:`command`); errors name ``what`` and the log."""
    return run(command(root, argv, **kw), what=what, log=log, timeout=timeout)  # type: ignore[arg-type]


def workdir(base: Path, prefix: str) -> Path:
    """A new directory under ``base`` to extract a root into."""
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=base))
