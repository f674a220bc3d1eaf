"""Shared fixtures and helpers.

End-to-end fixtures build the real seed and dxforge channels once per session with the real
commands, in their own build directory (``build/tests``, not the one ``scripts/run-main.sh``
uses); both commands are incremental, so a second test run reuses them. The ``dxforge`` command
is the one installed next to the running interpreter.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    from dxforge.project.graph import Graph
    from dxforge.project.recipes import Recipe

ROOT = Path(__file__).resolve().parents[1]
DXFORGE = Path(sys.executable).parent / "dxforge"
E2E_BUILD = ROOT / "build" / "tests"
"""The end-to-end fixtures' own build directory."""
EPOCH = "1767225600"
"""2026-01-01: the image tests' ``SOURCE_DATE_EPOCH``."""


def write_construct(root: Path, *specs: str, channel: str | Path = "./build/channels/seed") -> Path:
    """A minimal construct.yaml in ``root``: the repository's CPython (the one the seed's
    runtime is built for), then ``specs``."""
    from dxforge.project.construct import project_target

    python = project_target(ROOT / "construct.yaml").python
    lines = "".join(f"  - {s}\n" for s in (f"python {python}.*", *specs))
    path = Path(root) / "construct.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(f"name: T\nversion: 1.0.0\nchannels: [{channel}]\nspecs:\n{lines}")
    return path


def project_graph(root: Path) -> tuple[Graph, list[Recipe]]:
    """The recipes' graph of the project at ``root``, and its recipes, as the stages see them."""
    from dxforge.project.layout import Layout
    from dxforge.project.model import Project

    project = Project.of(Layout.of(root))
    return project.graph, list(project.recipes)


def run_dxforge(
    *args: str | Path,
    cwd: Path = ROOT,
    check: bool = True,
    timeout: float = 1800,
    env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run the installed ``dxforge`` command line (waiting while another run holds a lock)."""
    deadline = time.monotonic() + timeout
    while True:
        proc = subprocess.run(
            [str(DXFORGE), *map(str, args)],
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ, **(env or {})},
            stdin=subprocess.DEVNULL,
            check=False,
        )
        if "is locked by" not in proc.stderr or time.monotonic() > deadline:
            break
        time.sleep(2)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"dxforge {' '.join(map(str, args))} exited {proc.returncode}\n"
            f"--- stdout\n{proc.stdout[-5000:]}\n--- stderr\n{proc.stderr[-5000:]}"
        )
    return proc


PILOT_CHECKS = (
    "OpenSSL 3.",
    " CA certificates",
    "top-level modules import from inside /work/diracos",
    "git --exec-path is inside the prefix",
    "voms-proxy-fake: a VOMS proxy for VO testvo and its FQAN",
    "voms-proxy-init made an RFC proxy",
    "pip installed a package from an index on 127.0.0.1",
)
"""What a pilot in a Debian root (/work/diracos) must have checked, voms and DIRACOS2's checks
included."""


def assert_pilot_checks(checks: list[str]) -> None:
    """Every one of :data:`PILOT_CHECKS` is among the pilot's passed ``checks``."""
    joined = "\n".join(checks)
    for what in PILOT_CHECKS:
        assert what in joined, what


@pytest.fixture(autouse=True)
def _signal_mask_kept() -> Iterator[None]:
    """Every test leaves this process's signal mask as it found it: a mask left blocked is
    inherited by every later subprocess, which then ignores SIGINT and SIGTERM."""
    before = signal.pthread_sigmask(signal.SIG_BLOCK, set())
    yield
    after = signal.pthread_sigmask(signal.SIG_SETMASK, before)
    assert after == before, f"the test left signals blocked: {sorted(after - before)}"


@pytest.fixture(scope="session")
def seed_channel() -> Path:
    """The real seed channel (``dxforge seed``) in the tests' build directory."""
    run_dxforge("seed", "--build-dir", E2E_BUILD)
    return E2E_BUILD / "channels/seed"


@pytest.fixture(scope="session")
def dxforge_channels(seed_channel: Path) -> tuple[Path, Path]:
    """The real output channel with the nine packages (``dxforge build``), and the seed."""
    run_dxforge("build", "--build-dir", E2E_BUILD)
    return E2E_BUILD / "channels/dxforge", seed_channel


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int:
    """``-n auto`` (pyproject's addopts): the unit layer (``-m "not e2e"``) on two workers per
    core, since its tests mostly wait on subprocesses and sockets; any selection that may hold
    end-to-end tests in this one process, since they share the session's builds and time
    their steps."""
    if "not e2e" not in (config.option.markexpr or ""):
        return 0
    return 2 * (os.cpu_count() or 1)


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


@pytest.fixture(scope="session")
def images(dxforge_channels: tuple[Path, Path]) -> dict:
    """DiracX's images: ``dxforge images --json`` in the tests' build directory."""
    import json
    import shutil

    if not (shutil.which("umoci") and shutil.which("skopeo")):
        pytest.skip("umoci and skopeo are not installed (scripts/setup.sh installs them)")
    proc = run_dxforge(
        "images", "--build-dir", E2E_BUILD, "--json", env={"SOURCE_DATE_EPOCH": EPOCH}, timeout=3600
    )
    return json.loads(proc.stdout)


@pytest.fixture(scope="session")
def diracos(dxforge_channels: tuple[Path, Path]) -> dict:
    """The repository's DIRACOS installer, built from the tests' channels (``--json``)."""
    import json

    proc = run_dxforge("installer", "--build-dir", E2E_BUILD, "--json")
    return json.loads(proc.stdout)
