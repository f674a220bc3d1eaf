"""Running images with podman as root without touching the machine: configuration and storage
in one directory of the caller's (``CONTAINERS_CONF``, ``CONTAINERS_STORAGE_CONF``), runc with
cgroupfs (crun fails on this cgroup layout), file events, ulimits within the machine's, and
never the default bridge network (host, none or slirp4netns only). :meth:`Podman.close`
removes the containers, the images, the storage and the cgroups podman leaves behind."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

from dxforge.core.util import DxError, Ran, execute
from dxforge.images.oci import Layout

NETWORKS = ("host", "none")
CGROUPS = Path("/sys/fs/cgroup")


def why_not() -> str:
    """Why podman cannot run images here, or ``""``."""
    if os.geteuid() != 0:
        return "running the images needs root (podman with runc and cgroupfs)"
    for tool in ("podman", "runc", "skopeo"):
        if not shutil.which(tool):
            return f"{tool} is not installed (apt-get install {tool})"
    return ""


def _conf(d: Path, short: Path) -> str:
    return f"""[containers]
netns = "none"
default_ulimits = ["nofile=20000:20000", "nproc=4096:4096"]
log_driver = "k8s-file"

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{d}/events.log"
tmp_dir = "{short}/tmp"
static_dir = "{d}/graph/libpod"
volume_path = "{d}/volumes"

[network]
network_config_dir = "{d}/networks"
"""


def _storage(d: Path, short: Path, driver: str) -> str:
    return f"""[storage]
driver = "{driver}"
graphroot = "{d}/graph"
runroot = "{short}/run"
"""


class Podman:
    """podman confined to ``directory``."""

    def __init__(self, directory: Path, driver: str = "overlay") -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "tmp").mkdir(exist_ok=True)
        # the run and exit directories under a short path: with a long one (a test's
        # directory, 64 characters) every `podman wait` took 20 s more (conmon's sockets)
        self.short = Path(tempfile.mkdtemp(prefix="dxpm-", dir="/tmp"))
        (directory / "containers.conf").write_text(_conf(directory, self.short))
        (directory / "storage.conf").write_text(_storage(directory, self.short, driver))
        (directory / "registries.conf").write_text("unqualified-search-registries = []\n")
        self.env = {
            **os.environ,
            "CONTAINERS_CONF": str(directory / "containers.conf"),
            "CONTAINERS_STORAGE_CONF": str(directory / "storage.conf"),
            "CONTAINERS_REGISTRIES_CONF": str(directory / "registries.conf"),
            "TMPDIR": str(directory / "tmp"),
        }
        self.containers: list[str] = []

    def __enter__(self) -> Podman:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __call__(
        self, *args: str, check: bool = True, timeout: float = 600, log: Path | None = None
    ) -> Ran:
        return execute(
            ["podman", *args],
            env=self.env,
            check=check,
            timeout=timeout,
            log=log,
            what=f"podman {' '.join(args[:3])}",
        )

    def load(self, layout: Layout, ref: str) -> str:
        """Copy ``ref`` of ``layout`` into this storage as ``localhost/<ref>``."""
        name = f"localhost/{ref}"
        execute(
            ["skopeo", "copy", "--quiet", f"oci:{layout.image(ref)}", f"containers-storage:{name}"],
            env=self.env,
            what=f"loading {ref} into podman",
        )
        return name

    def start(
        self,
        image: str,
        argv: list[str],
        *,
        network: str = "host",
        name: str = "",
        user: str = "",
        env: dict[str, str] | None = None,
        volumes: dict[str, str] | None = None,
        publish: str = "",
    ) -> str:
        """``podman run -d``; the container's id. ``network`` is host, none or slirp4netns
        (``publish`` ``127.0.0.1:PORT:8000`` only with slirp4netns)."""
        if network not in NETWORKS and not network.startswith("slirp4netns"):
            raise DxError(
                f"network {network!r}: only host, none or slirp4netns here (the "
                "default bridge changes the machine's network)"
            )
        args = ["run", "-d", f"--network={network}", "--cgroupns=private"]
        args += [f"--name={name}"] if name else []
        args += [f"--user={user}"] if user else []
        args += [f"--publish={publish}"] if publish else []
        for k, v in sorted((env or {}).items()):
            args.append(f"--env={k}={v}")
        for host, inside in sorted((volumes or {}).items()):
            args.append(f"--volume={host}:{inside}")
        cid = self(*args, image, *argv).stdout.strip()
        self.containers.append(cid)
        return cid

    def run(self, image: str, argv: list[str], *, timeout: float = 600, **kw: object) -> Ran:
        """Run a container to completion (removed afterwards); its result (not checked)."""
        cid = self.start(image, argv, **kw)  # type: ignore[arg-type]
        waited = self("wait", cid, check=False, timeout=timeout)
        logs = self("logs", cid, check=False)
        code = int(waited.stdout.strip() or 1) if waited.ok else 1
        self("rm", "-f", cid, check=False)
        return Ran(waited.argv, code, logs.stdout + logs.stderr)

    def close(self) -> None:
        """Remove the containers, the images, the storage and the cgroups left behind."""
        self("rm", "-af", "-t", "5", check=False, timeout=120)
        self("rmi", "-af", check=False, timeout=120)
        self("system", "reset", "-f", check=False, timeout=120)
        remove_cgroups()
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.short, ignore_errors=True)


def remove_cgroups() -> None:
    """Remove the cgroups podman leaves under ``libpod_parent`` (its ``conmon`` group and the
    containers' own), deepest first; a group that still holds a process (another podman's
    running container) cannot be removed and stays."""
    for parent in CGROUPS.glob("*/libpod_parent"):
        for d in sorted((p for p in parent.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            parent.rmdir()
