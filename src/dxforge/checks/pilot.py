"""The pilot test of an installer (``data/pilot-test.sh``), run in a pilot's site
(:class:`dxforge.isolation.isolate.Site`), or in a Debian root of the installer's machine (another
machine's under the namespaced emulation, :mod:`dxforge.isolation.emulate`): an unprivileged
user, no network, a read-only HOME."""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from dxforge.core.util import DxError, execute
from dxforge.isolation import emulate, roots
from dxforge.isolation.isolate import NOBODY, Site

SCRIPT = "pilot-test.sh"
"""The one list of pilot checks: the release, the OS matrix and CI run it."""


def script_text() -> str:
    return resources.files("dxforge").joinpath("data", SCRIPT).read_text()


@dataclass
class PilotResult:
    installer: str
    install_seconds: float
    offline: bool
    isolation: str
    log: str
    checks: list[str] = field(default_factory=list)
    status: str = "passed"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def parse(output: str, installer: str, log: Path, site: str, offline: bool) -> PilotResult:
    """The result of a pilot script run from its output; a failure names the check."""
    if "pilot: all checks passed" not in output:
        failed = re.findall(r"pilot: FAILED: .*", output)
        why = failed[-1] if failed else "the script stopped before its last check"
        raise DxError(f"the pilot test of {installer} failed ({why}); see {log}")
    m = re.search(r"pilot: install seconds ([0-9.]+)", output)
    checks = re.findall(r"^pilot: ok (.*)$", output, re.M)
    return PilotResult(installer, float(m[1]) if m else 0.0, offline, site, str(log), checks)


def run_pilot(installer: Path, log: Path, timeout: float = 1200) -> PilotResult:
    """Install ``installer`` into a new prefix with the pilot script and check it."""
    with Site(prefix="dxforge-pilot-") as site:
        copy = site.root / installer.name
        shutil.copy2(installer, copy)
        copy.chmod(0o644)
        script = site.root / SCRIPT
        script.write_text(script_text())
        ran = site.run(["sh", script, copy, site.work / "diracos"], log=log, timeout=timeout)
        return parse(ran.stdout, installer.name, log, site.describe(), site.offline)


def run_in_root(
    installer: Path,
    root: Path,
    log: Path,
    name: str,
    qemu: Path | None = None,
    machine: str = "",
    timeout: float = 3600,
) -> PilotResult:
    """Install ``installer`` with the pilot script in the Debian ``root`` (called ``name``) and
    check it: as the unprivileged user, offline, HOME a read-only /home, in /work; a root of
    another ``machine`` runs under the namespaced emulation with ``qemu``. The prefix stays at
    /work/diracos inside the root."""
    work = root / "work"
    work.mkdir(exist_ok=True)
    os.chown(work, NOBODY, NOBODY)
    shutil.copy2(installer, work / installer.name)
    (work / installer.name).chmod(0o644)
    (work / SCRIPT).write_text(script_text())
    (root / "home").mkdir(exist_ok=True)
    (root / "home").chmod(0o555)
    argv = ["sh", f"/work/{SCRIPT}", f"/work/{installer.name}", "/work/diracos"]
    kw: dict[str, Any] = {"user": NOBODY, "env": {"HOME": "/home", "TMPDIR": "/work"}}
    if qemu is not None:
        cmd = emulate.command(root, argv, machine=machine, interpreter=qemu, **kw)
    else:
        cmd = roots.command(root, argv, **kw)
    ran = execute(cmd, check=False, timeout=timeout, what=f"the pilot test in {name}")
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text(ran.stdout + ran.stderr)
    return parse(ran.stdout, installer.name, log, name, True)
