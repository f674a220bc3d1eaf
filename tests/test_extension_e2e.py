"""A VO's distribution end to end: the test's extension (tests/extension_factory.py) served on
127.0.0.1 (everything else passed through from the index the user's pip is configured with),
`dxforge extension init` (dxforge's wheel in a fresh venv) on this repository's DiracX
distribution built by the session's fixtures, then the extension project's own main job (its
set-up, seed, build and installer), and the pilot checks of that
installer naming the extension and listing its command; then DiracX's end to end with the
server built from the extension's channel, serving its route, which the installer's `dirac`
calls through the extension's command."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import EPOCH, ROOT, run_dxforge
from extension_factory import GREETING, publish
from local_index import serve
from wheel_venv import build_wheel, dependencies_venv, fresh_venv

from dxforge.bump.recipedoc import read_recipe
from dxforge.isolation import isolate
from dxforge.pypa.pypi import index_url

pytestmark = pytest.mark.e2e

EXT_VERSION = "1.2.3"
NEXT_VERSION = "1.2.4"  # the extension's next release, on the same DiracX
WHERE = "import dxforge; print(dxforge.__file__)"


def _timed(times: dict[str, float], name: str, args: list[str | Path], **kw: object) -> str:
    """Run ``args`` (the wheel's dxforge or the project's main job), keep its seconds."""
    t0 = time.monotonic()
    proc = subprocess.run(
        [str(a) for a in args], capture_output=True, text=True, timeout=3600, check=False, **kw
    )
    times[name] = round(time.monotonic() - t0, 1)
    assert proc.returncode == 0, f"{name}: {args}\n{proc.stdout[-4000:]}\n{proc.stderr[-8000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def extension(
    dxforge_channels: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict]:
    """The sequence a VO follows, with dxforge's wheel as a user installs it: init by the
    wheel's dxforge, then the project's own main job (scripts/run-main.sh: its set-up installs
    the wheel into the project's .venv, then seed, extension build, installer)."""
    channel, seed = dxforge_channels
    x = read_recipe(ROOT / "recipes/diracx/recipe.yaml").version
    tmp = tmp_path_factory.mktemp("extension")
    times: dict[str, float] = {}
    wheel = build_wheel(tmp / "wheel")
    tool = fresh_venv(tmp / "tool", wheel)  # `pip install dxforge`
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}

    with serve() as idx:
        idx.upstream = index_url()
        publish(idx, tmp / "dists", "myext", EXT_VERSION, x, otel=False)
        env = {**clean, "PIP_INDEX_URL": idx.url, "DXFORGE_SPEC": str(wheel)}
        init = [tool / "bin/dxforge", "extension", "init", "myext", "--base", ROOT]
        init += ["--base-channel", channel, "--base-seed", seed]
        _timed(times, "init", init, cwd=tmp, env=env)
        project = tmp / "myext"
        # the project's .venv starts with dxforge's dependencies, so its set-up is offline
        dependencies_venv(project / ".venv")
        _timed(times, "main job", [project / "scripts/run-main.sh"], cwd=tmp, env=env)
        dx = project / ".venv/bin/dxforge"
        where = _timed(times, "where", [project / ".venv/bin/python", "-c", WHERE], env=clean)
        assert Path(where.strip()).is_relative_to(project / ".venv"), where  # from the wheel
        built = json.loads(
            _timed(times, "build again", [dx, "extension", "build", "--json"], cwd=project, env=env)
        )
        inst = json.loads(
            _timed(times, "installer again", [dx, "installer", "--json"], cwd=project, env=env)
        )
        print(f"extension sequence seconds: {times}")
        yield {
            "project": project,
            "build": built,
            "installer": inst,
            "times": times,
            "x": x,
            "index": idx,
            "tmp": tmp,
        }


def name_the_command(project: Path) -> None:
    """Name the extension's command that calls its route in [tool.dxforge.e2e] (as the VO
    does: init cannot know which of its commands calls a route)."""
    pyproject = project / "pyproject.toml"
    text = pyproject.read_text()
    pyproject.write_text(
        text.replace(
            'command = []\nexpect = ""',
            f'command = ["hello", "greet"]\nexpect = {json.dumps(GREETING)}',
        )
    )


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


def test_the_installers_dirac_calls_the_extensions_route_on_its_server(extension: dict) -> None:
    if isolate.limits():
        pytest.skip("no pilot's site here: " + "; ".join(isolate.limits()))
    project = extension["project"]
    text = (project / "pyproject.toml").read_text()
    # init found the server's packages and the service; the VO names the command
    assert 'server = ["myext", "myext-routers"]\nservices = ["hello"]\n' in text, text
    name_the_command(project)
    t0 = time.monotonic()
    proc = run_dxforge("e2e", "--json", cwd=project, check=False, timeout=1800)
    print(f"extension end to end: {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    res = json.loads(proc.stdout)
    assert (res["status"], res["extension"], res["version"]) == ("passed", "myext", extension["x"])
    assert f"myext-routers =={EXT_VERSION}" in res["server_specs"], res["server_specs"]
    checks = " | ".join(res["checks"])
    for what in (
        "dirac whoami:",
        "the server's app serves the extension myext's routes: /api/hello",
        f"dirac hello greet (the extension's command) said {GREETING!r}",
    ):
        assert what in checks, checks


def test_the_extensions_images_stand_on_diracxs_and_serve_its_route(
    extension: dict, images: dict
) -> None:
    """``dxforge extension images`` on DiracX's images of the tests' build (the ``images``
    fixture): each ``myext-<role>`` is DiracX's ``<role>`` image byte for byte plus one layer
    of the extension; the services image, run with podman, serves ``/api/hello/`` and
    ``/api/health/live``."""
    from dxforge.extension.images import check_extension_images
    from dxforge.images.oci import Layout
    from dxforge.images.podman import why_not
    from dxforge.project.layout import Layout as ProjectLayout

    project, x = extension["project"], extension["x"]
    t0 = time.monotonic()
    proc = run_dxforge(
        "extension",
        "images",
        "--base-images",
        Path(images["layout"]).parent,
        "--json",
        cwd=project,
        env={"SOURCE_DATE_EPOCH": EPOCH},
        check=False,
        timeout=3600,
    )
    print(f"extension images: {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    res = json.loads(proc.stdout)
    assert (res["extension"], res["version"], res["diracx"]) == ("myext", EXT_VERSION, x)
    dx = {i["ref"]: i for i in images["images"]}
    got = {i["ref"]: i for i in res["images"]}
    layout = Layout(Path(res["layout"]))
    sizes = {}
    for role in ("services", "tasks", "client"):
        img, base = got[f"myext-{role}:v{EXT_VERSION}"], dx[f"{role}:v{x}"]
        assert (img["base"], img["base_digest"]) == (base["ref"], base["digest"])
        assert [la["digest"] for la in img["layers"][:-1]] == [
            la["digest"] for la in base["layers"]
        ]
        assert img["layers"][-1]["what"] == "myext"
        ann = layout.manifest(img["ref"])["annotations"]
        assert ann["org.opencontainers.image.base.name"] == base["ref"]
        assert ann["org.opencontainers.image.base.digest"] == base["digest"]
        assert ann["org.opencontainers.image.version"] == EXT_VERSION
        assert layout.digest(base["ref"]) == base["digest"]  # DiracX's image, copied as is
        names = {c["name"] for c in json.loads(Path(img["sbom"]).read_text())["components"]}
        assert {"myext-core", "diracx-core"} <= names and "diracx-testing" not in names
        sizes[role] = (img["layers"][-1]["size"], base["size"])
    sbom = Path(got[f"myext-services:v{EXT_VERSION}"]["sbom"]).read_text()
    assert "myext-routers" in {c["name"] for c in json.loads(sbom)["components"]}
    print(f"extension layer vs DiracX image (compressed bytes): {sizes}")
    why = why_not()
    if why:
        pytest.skip(f"the extension's images are built, but cannot run here: {why}")
    before = set(Path("/sys/fs/cgroup").glob("*/libpod_parent/libpod-*"))
    t0 = time.monotonic()
    try:
        check = check_extension_images(ProjectLayout.of(project))
    finally:
        assert not set(Path("/sys/fs/cgroup").glob("*/libpod_parent/libpod-*")) - before
        bridge = subprocess.run(["ip", "link", "show", "cni-podman0"], capture_output=True)
        assert bridge.returncode != 0
    print(f"extension images check: {time.monotonic() - t0:.1f} s; {check.as_json()}")
    assert check.status == "passed", check
    checks = " | ".join(check.checks)
    assert "/api/health/live" in checks, checks
    assert "GET /api/hello/ answers 200: " in checks, checks
    assert f'"hello":"{GREETING}"' in checks, checks
    assert check.healthy_seconds > 0


def test_release_follows_the_extensions_new_version(extension: dict) -> None:
    if isolate.limits():
        pytest.skip("no pilot's site here: " + "; ".join(isolate.limits()))
    project, idx, x = extension["project"], extension["index"], extension["x"]
    name_the_command(project)
    publish(idx, extension["tmp"] / "dists-next", "myext", NEXT_VERSION, x, otel=False)
    t0 = time.monotonic()
    proc = run_dxforge("release", "--index-url", idx.url, "--json", cwd=project, check=False)
    print(f"extension release: {time.monotonic() - t0:.1f} s")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    res = json.loads(proc.stdout)
    assert (res["status"], res["version"]) == ("released", NEXT_VERSION)
    assert Path(res["installer"]).name == f"myext-{NEXT_VERSION}-Linux-x86_64.sh"
    assert Path(res["installer"]).is_file()
    stages = [s["name"] for s in res["stages"]]
    for name in ("bump", "fetch", "drift", "seed", "build", "installer", "pilot", "e2e"):
        assert name in stages, stages
    e2e = res["end_to_end"]
    assert (e2e["extension"], e2e["version"]) == ("myext", x)
    assert f"myext-routers =={NEXT_VERSION}" in e2e["server_specs"]
    assert any("(the extension's command) said" in c for c in e2e["checks"]), e2e["checks"]
    assert res["upstream_tests"] == {}
