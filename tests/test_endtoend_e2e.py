"""DiracX end to end from our packages: a real server from the two channels (diracx-testing's
sqlite stand-in for OpenSearch, moto's server for S3) on free loopback ports, and the client
from our installer, offline and unprivileged (``dxforge e2e``)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from conftest import E2E_BUILD, ROOT, run_dxforge

from dxforge.isolation.isolate import NOBODY
from dxforge.project.recipes import load_recipes

pytestmark = pytest.mark.e2e


def test_diracx_works_end_to_end_with_a_sandbox_round_trip(diracos: dict) -> None:
    proc = run_dxforge(
        "e2e", diracos["installer"], "--build-dir", E2E_BUILD, "--json", check=False, timeout=1800
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    res = json.loads(proc.stdout)
    assert res["status"] == "passed"
    assert res["version"] == load_recipes(ROOT)[0].version
    assert "offline" in res["isolation"] and "read-only HOME" in res["isolation"], res
    if os.geteuid() == 0:
        assert f"as uid {NOBODY}" in res["isolation"], res
    checks = " | ".join(res["checks"])
    for what in (
        "health, OpenAPI, well-known and JWKS",
        "dirac whoami:",
        f"dirac jobs submit and search: job {res['job_id']}",
        "sandbox round trip:",
        "the same bytes back",
    ):
        assert what in checks, checks
    assert res["job_id"] > 0 and res["sandbox_files"] > 0 and res["sandbox_bytes"] > 0
    # the server came from our channels: diracx's own packages and the stand-ins
    specs = " ".join(res["server_specs"])
    assert "diracx-routers ==" in specs and "diracx-testing ==" in specs and "moto" in specs
    assert Path(res["log"]).is_dir() or Path(res["log"]).is_file()
