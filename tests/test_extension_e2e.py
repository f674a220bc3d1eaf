"""A VO's distribution end to end: the test's extension (tests/extension_factory.py) served on
127.0.0.1 (everything else passed through from the index the user's pip is configured with),
`dxforge extension init` on this repository's DiracX distribution built by the session's
fixtures, then the extension project's seed, build and installer, and the pilot checks of that
installer naming the extension and listing its command."""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest
from conftest import ROOT, run_dxforge
from extension_factory import publish
from local_index import serve

from dxforge.bump.recipedoc import read_recipe
from dxforge.isolation import isolate
from dxforge.pypa.pypi import index_url

pytestmark = pytest.mark.e2e

EXT_VERSION = "1.2.3"


@pytest.fixture(scope="module")
def extension(
    dxforge_channels: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict:
    channel, seed = dxforge_channels
    x = read_recipe(ROOT / "recipes/diracx/recipe.yaml").version
    tmp = tmp_path_factory.mktemp("extension")
    times: dict[str, float] = {}

    def step(name: str, *args: str | Path, cwd: Path) -> str:
        t0 = time.monotonic()
        out = run_dxforge(*args, cwd=cwd).stdout
        times[name] = round(time.monotonic() - t0, 1)
        return out

    with serve() as idx:
        idx.upstream = index_url()
        publish(idx, tmp / "dists", "myext", EXT_VERSION, x, otel=False)
        step(
            "init",
            "extension",
            "init",
            "myext",
            "--base",
            ROOT,
            "--base-channel",
            channel,
            "--base-seed",
            seed,
            "--index-url",
            idx.url,
            cwd=tmp,
        )
        project = tmp / "myext"
        step("seed", "seed", "--index-url", idx.url, cwd=project)
        built = json.loads(
            step("build", "extension", "build", "--index-url", idx.url, "--json", cwd=project)
        )
    inst = json.loads(step("installer", "installer", "--json", cwd=project))
    print(f"extension sequence seconds: {times}")
    return {"project": project, "build": built, "installer": inst, "times": times, "x": x}


def test_the_extension_builds_on_diracx(extension: dict) -> None:
    built = extension["build"]
    assert built["base_channel"].endswith("/channels/dxforge")
    status = {p["name"]: p["status"] for p in built["packages"]}
    assert sorted(status) == ["myext", "myext-cli", "myext-client", "myext-core", "myext-routers"]
    assert set(status.values()) <= {"built", "cached", "skipped"}, status
    inst = extension["installer"]
    assert Path(inst["installer"]).name == f"myext-{EXT_VERSION}-Linux-x86_64.sh"
    names = {p["name"]: p["version"] for p in inst["packages"]}
    assert names["myext"] == EXT_VERSION and names["diracx"] == extension["x"]
    assert "myext-routers" not in names  # not required by the metapackage (as diracx-routers)


def test_the_pilot_checks_name_the_extension(extension: dict) -> None:
    if isolate.limits():
        pytest.skip("no pilot's site here: " + "; ".join(isolate.limits()))
    res = run_dxforge("pilot", extension["installer"]["installer"], "--json")
    checks = json.loads(res.stdout)["checks"]
    assert "extension myext, the only one, first in priority; dirac --help lists: hello" in checks
