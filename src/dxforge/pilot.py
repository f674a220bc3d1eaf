"""The pilot smoke test of an installer (``scripts/pilot-test.sh``), run as a pilot meets it:
an unprivileged user, no network, a read-only HOME, a temporary directory of its own."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dxforge import isolate
from dxforge.util import DxError


@dataclass
class PilotResult:
    installer: str
    install_seconds: float
    offline: bool
    log: str

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def run_pilot(installer: Path, script: Path, log: Path, timeout: float = 1200) -> PilotResult:
    """Install ``installer`` into a new prefix with the pilot script and check it; a failure is
    a DxError naming the check and the log."""
    if not script.is_file():
        raise DxError(f"{script}: the pilot test script is missing; restore it from git")
    site = isolate.scratch(Path(tempfile.gettempdir()), "dxforge-pilot-")
    try:
        (site / "home").mkdir(mode=0o555)
        for d in ("work", "tmp"):
            (site / d).mkdir()
        copy = site / installer.name
        shutil.copy2(installer, copy)
        copy.chmod(0o644)
        shutil.copy2(script, site / "pilot-test.sh")
        isolate.give_to_nobody(site / "work", site / "tmp")
        (site / "home").chmod(0o555)
        cmd, offline = isolate.prefix()
        cmd += ["env", "-i", "PATH=/usr/bin:/bin", f"HOME={site}/home", f"TMPDIR={site}/tmp",
                "LANG=C.UTF-8", "sh", str(site / "pilot-test.sh"), str(copy),
                str(site / "work/diracos")]
        proc = subprocess.run(cmd, cwd=site, capture_output=True, text=True, timeout=timeout,
                              check=False)
        log.parent.mkdir(parents=True, exist_ok=True)
        log.write_text(" ".join(cmd) + "\n\n" + proc.stdout + proc.stderr)
        if proc.returncode != 0 or "pilot: all checks passed" not in proc.stdout:
            failed = re.findall(r"pilot: FAILED: .*", proc.stderr + proc.stdout)
            why = failed[-1] if failed else f"exit {proc.returncode}"
            raise DxError(f"the pilot test of {installer.name} failed ({why}); see {log}")
        m = re.search(r"pilot: install seconds ([0-9.]+)", proc.stdout)
        return PilotResult(installer.name, float(m[1]) if m else 0.0, offline, str(log))
    finally:
        isolate.remove(site)
