"""Running programs as a grid site's pilot meets them: the one isolation model of dxforge.

A :class:`Site` is a pilot's world: an unprivileged user (``nobody``, when we are root), no
network but loopback (one network namespace shared by every program of the site, so that a
server and its client on 127.0.0.1 see each other), a read-only HOME, and scratch directories
the user owns. The pilot test, DiracX's suites, the end-to-end test, the tests and the
rendered CI step (:func:`shell_site`) all run through it; Debian roots
(:mod:`dxforge.isolation.roots`) take their user switch and loopback from here, and roots of
another architecture run the same way inside the namespaced emulation of
:mod:`dxforge.isolation.emulate` (its own user namespace and binfmt_misc; nothing machine-wide).

Where this machine cannot give one of those (not root: no user switch; no namespaces: no
network cut), :func:`limits` says so, results record it, and tests that need it skip visibly.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

from dxforge.core.util import DxError, Ran, execute, spawn

NOBODY = 65534
"""The unprivileged user (and group) a site runs as."""
LOOPBACK_UP = "ip link set lo up"
"""A new network namespace has its loopback down; this brings it up."""
BASE_PATH = "/usr/bin:/bin"


def as_user(uid: int = NOBODY, groups: tuple[int, ...] = ()) -> list[str]:
    """The command prefix that drops to ``uid``/``uid`` with the supplementary ``groups``
    (none by default): two such users sharing a group are a shared software area's."""
    extra = f"--groups={','.join(map(str, groups))}" if groups else "--clear-groups"
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", extra]


@lru_cache(maxsize=1)
def limits() -> tuple[str, ...]:
    """What this machine cannot give a site: ``()`` when it gives everything."""
    out = []
    if os.geteuid() != 0:
        out.append("not root, so no unprivileged user: programs run as the current user")
    elif not shutil.which("setpriv"):
        out.append("setpriv (util-linux) is not installed: programs run as root")
    if not (shutil.which("unshare") and shutil.which("nsenter") and shutil.which("ip")):
        out.append("unshare, nsenter or ip is missing: programs run with the network")
    elif not execute(["unshare", "-n", "true"], check=False).ok:
        out.append("`unshare -n` is not permitted here: programs run with the network")
    return tuple(out)


def unprivileged() -> bool:
    return not any("user" in why or "root" in why for why in limits())


def offline_possible() -> bool:
    return not any("network" in why for why in limits())


def reachable(path: Path) -> bool:
    """Whether every directory down to ``path`` lets others through (so the unprivileged user
    reaches what is under it)."""
    for d in [path, *path.parents]:
        if d.exists() and not d.stat().st_mode & 0o001:
            return False
    return True


def remove(path: Path) -> None:
    """Remove a tree, files its user made read-only included."""
    if not path.exists():
        return
    for dirpath, dirnames, _ in os.walk(path):
        for d in dirnames:
            p = os.path.join(dirpath, d)
            if not os.path.islink(p):
                os.chmod(p, 0o755)
    os.chmod(path, 0o755)
    shutil.rmtree(path, ignore_errors=True)


class Site:
    """A pilot's world under a new directory of ``base`` (reachable by the unprivileged user;
    the system's temporary directory when ``base`` is not): ``home`` (read-only), ``work`` and
    ``tmp`` (the user's). Use as a context manager; every program run through it shares one
    offline network namespace."""

    def __init__(
        self, base: Path | None = None, *, offline: bool = True, prefix: str = "dxforge-site-"
    ) -> None:
        where = base if base is not None and (os.geteuid() != 0 or reachable(base)) else None
        if where is not None:
            where.mkdir(parents=True, exist_ok=True)
        self.root = Path(tempfile.mkdtemp(prefix=prefix, dir=where))
        self.root.chmod(0o755)
        self.home = self.root / "home"
        self.work = self.root / "work"
        self.tmp = self.root / "tmp"
        self.home.mkdir(mode=0o555)
        self.home.chmod(0o555)
        self.work.mkdir()
        self.tmp.mkdir()
        self.user = NOBODY if unprivileged() else None
        self.give(self.work, self.tmp)
        self._holder: subprocess.Popen[bytes] | None = None
        if offline and offline_possible():
            self._holder = subprocess.Popen(
                ["unshare", "-n", "sh", "-c", f"{LOOPBACK_UP} && exec sleep 2147483647"],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
            )
            self._wait_for_namespace()

    @property
    def offline(self) -> bool:
        return self._holder is not None

    def _wait_for_namespace(self) -> None:
        assert self._holder is not None
        mine = os.readlink("/proc/self/ns/net")
        for _ in range(200):
            if self._holder.poll() is not None:
                err = self._holder.stderr.read().decode() if self._holder.stderr else ""
                raise DxError(f"cannot make an offline network namespace: {err.strip()}")
            try:
                if os.readlink(f"/proc/{self._holder.pid}/ns/net") != mine and _loopback_up(
                    self._holder.pid
                ):
                    return
            except OSError:
                pass
            time.sleep(0.02)
        raise DxError("the offline network namespace did not come up")

    def __enter__(self) -> Site:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._holder is not None:
            self._holder.kill()
            self._holder.wait()
            self._holder = None
        remove(self.root)

    def give(self, *paths: Path) -> None:
        """Let the site's user own ``paths`` (recursively)."""
        if self.user is not None:
            for p in paths:
                execute(["chown", "-R", f"{self.user}:{self.user}", p], what=f"chown {p}")

    def env(self, path: str = BASE_PATH, **extra: str) -> dict[str, str]:
        """The environment of a site's program: nothing of ours but what is given."""
        return {
            "PATH": path,
            "HOME": str(self.home),
            "TMPDIR": str(self.tmp),
            "LANG": "C.UTF-8",
            **extra,
        }

    def command(
        self,
        argv: Sequence[str | os.PathLike[str]],
        env: dict[str, str] | None = None,
        as_site_user: bool = True,
    ) -> list[str]:
        """The host command that runs ``argv`` in the site, with exactly ``env``."""
        out: list[str] = []
        if self._holder is not None:
            out += ["nsenter", f"--net=/proc/{self._holder.pid}/ns/net", "--"]
        if as_site_user and self.user is not None:
            out += as_user(self.user)
        out += ["env", "-i", *(f"{k}={v}" for k, v in (env or self.env()).items())]
        return out + [str(a) for a in argv]

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
        timeout: float | None = 1800,
        log: Path | None = None,
        check: bool = False,
        what: str = "",
        as_site_user: bool = True,
    ) -> Ran:
        return execute(
            self.command(argv, env, as_site_user),
            cwd=cwd or self.work,
            timeout=timeout,
            log=log,
            check=check,
            what=what or " ".join(map(str, argv)),
        )

    def spawn(
        self,
        argv: Sequence[str | os.PathLike[str]],
        log: Path,
        *,
        env: dict[str, str] | None = None,
        cwd: Path | None = None,
    ) -> subprocess.Popen[bytes]:
        """Start a server in the site, its whole output in ``log``; stop it with
        :func:`stop`."""
        return spawn(self.command(argv, env), log, cwd=cwd or self.work)

    def describe(self) -> str:
        """How the site runs its programs, for results and notes."""
        who = f"uid {self.user}" if self.user is not None else "the current user"
        net = "offline (loopback only)" if self.offline else "with the network"
        return f"as {who}, {net}, read-only HOME"


def stop(proc: subprocess.Popen[bytes], timeout: float = 15) -> int:
    """Stop a program :meth:`Site.spawn` started: SIGTERM to its process group, then SIGKILL."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, 15)
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, 9)
            proc.wait()
        except ProcessLookupError:
            proc.wait()
    return proc.returncode


def _loopback_up(pid: int) -> bool:
    out = execute(
        ["nsenter", f"--net=/proc/{pid}/ns/net", "--", "ip", "-o", "link", "show", "lo"],
        check=False,
    ).stdout
    return "UP" in out.split(">", 1)[0]


def shell_site(uid: int = NOBODY) -> str:
    """The same site for a CI step written in sh (in a container, as root): ``make_site``
    makes it under ``$1`` (``$SITE``: ``home`` read-only, ``work`` and ``tmp`` the user's) and
    ``isolated`` runs ``$@`` there as ``uid`` with the site's environment and, where a network
    namespace can be made, offline with loopback up; it says which it got."""
    user = " ".join(as_user(uid))
    return (
        "make_site() {\n"
        "    SITE=$1\n"
        '    mkdir -p "$SITE/work" "$SITE/tmp"\n'
        '    mkdir -m 555 "$SITE/home"\n'
        '    chmod 755 "$SITE"\n'
        f'    chown {uid}:{uid} "$SITE/work" "$SITE/tmp"\n'
        "}\n"
        "isolated() {\n"
        f'    set -- env -i PATH={BASE_PATH} HOME="$SITE/home" TMPDIR="$SITE/tmp" LANG=C.UTF-8 '
        '"$@"\n'
        "    if command -v ip >/dev/null 2>&1 && unshare -n true 2>/dev/null; then\n"
        f'        echo "isolation: uid {uid}, offline"\n'
        f'        unshare -n sh -c \'{LOOPBACK_UP}; exec "$@"\' sh {user} "$@"\n'
        "    else\n"
        f'        echo "isolation: uid {uid}, with the network (no namespaces here)"\n'
        f'        {user} "$@"\n'
        "    fi\n"
        "}\n"
    )
