"""Shared fixtures: the real seed and dxforge channels, built once per test session.

The channels are built in the project's own ``build/`` directory with the real commands, so a
test run after ``scripts/run-main.sh`` reuses them (both commands are incremental) and a fresh
clone builds them once.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DXFORGE = Path(sys.executable).parent / "dxforge"


def run_dxforge(*args: str, cwd: Path = ROOT, check: bool = True, timeout: float = 1800,
                env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run the installed ``dxforge`` command line (waiting while another run holds the
    channel lock)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(
            [str(DXFORGE), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
            env={**os.environ, **(env or {})}, stdin=subprocess.DEVNULL, check=False,
        )
        if "is locked by" not in proc.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"dxforge {' '.join(args)} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-5000:]}\n--- stderr\n{proc.stderr[-5000:]}"
        )
    return proc


@pytest.fixture(scope="session")
def seed_channel() -> Path:
    """The real seed channel (``dxforge seed``)."""
    run_dxforge("seed")
    return ROOT / "build/channels/seed"


@pytest.fixture(scope="session")
def dxforge_channels(seed_channel: Path) -> tuple[Path, Path]:
    """The real output channel with the nine packages (``dxforge build``), and the seed."""
    run_dxforge("build")
    return ROOT / "build/channels/dxforge", seed_channel


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    session.config._dxforge_exitstatus = int(exitstatus)  # type: ignore[attr-defined]


@pytest.hookimpl(trylast=True)
def pytest_unconfigure(config: pytest.Config) -> None:
    """py-rattler 0.28 can abort in its exit handlers after async calls made in this process:
    leave with pytest's own status once pytest is done."""
    status = getattr(config, "_dxforge_exitstatus", None)
    if status is not None and "rattler" in sys.modules:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
