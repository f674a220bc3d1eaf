"""DiracX's container images for real: built from the tests' channels (``dxforge images``),
rebuilt from an empty cache to the same digests, pushed to Debian's ``docker-registry`` on
127.0.0.1 and pulled back, and run with podman under a configuration in the test's directory
(runc, cgroupfs, host or slirp4netns networking only)."""

from __future__ import annotations

import io
import json
import os
import shutil
import socket
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import E2E_BUILD, EPOCH, ROOT

from dxforge.images.oci import Layout
from dxforge.project.recipes import load_recipes

pytestmark = pytest.mark.e2e

ROLES = ("services", "tasks", "client")


def _version() -> str:
    return next(r.version for r in load_recipes(ROOT) if r.name == "diracx")


def _by_ref(result: dict) -> dict[str, dict]:
    return {i["ref"]: i for i in result["images"]}


def test_bases_and_releases_stand_on_their_bases_byte_for_byte(images: dict) -> None:
    version = _version()
    got = _by_ref(images)
    layout = Layout(Path(images["layout"]))
    base = next(i for i in images["images"] if i["name"] == "base")
    assert len(base["tag"].split(".")) == 4, base["tag"]
    for role in ROLES:
        rb = next(i for i in images["images"] if i["name"] == f"{role}-base")
        rel = got[f"{role}:v{version}"]
        # role base = base's layers + one; release = the role base's layers + one (diracx)
        assert [la["digest"] for la in rb["layers"][:-1]] == [la["digest"] for la in base["layers"]]
        assert [la["digest"] for la in rel["layers"][:-1]] == [la["digest"] for la in rb["layers"]]
        assert rel["layers"][-1]["what"] == "diracx"
        assert rel["base"] == rb["ref"] and rel["base_digest"] == rb["digest"]
        ann = layout.manifest(rel["ref"])["annotations"]
        assert ann["org.opencontainers.image.base.name"] == rb["ref"]
        assert ann["org.opencontainers.image.base.digest"] == rb["digest"]
        assert ann["org.opencontainers.image.version"] == version
        assert ann["org.opencontainers.image.created"] == "2026-01-01T00:00:00Z"
        cfg = layout.config(rel["ref"])["config"]
        assert cfg["User"] == "1000:0"
        assert cfg["Entrypoint"] == ["/usr/bin/tini", "--", "/entrypoint.sh"]
        assert ("8000/tcp" in cfg.get("ExposedPorts", {})) == (role == "services")
        sbom = json.loads(Path(rel["sbom"]).read_text())
        names = {c["name"] for c in sbom["components"]}
        assert "python" in names and "diracx-core" in names and "diracx-testing" not in names
    assert Path(got[f"services:v{version}"]["archive"]).is_file()


def _layer_names(layout: Layout, digest: str) -> list[str]:
    with tarfile.open(fileobj=io.BytesIO(layout.blob(digest)), mode="r:gz") as tar:
        return tar.getnames()


def test_layers_ship_the_byte_code_of_their_python(images: dict) -> None:
    """Every layer with Python ships its .pyc (unchecked-hash, recorded at /opt/diracx): the
    stdlib in the base's environment layer, DiracX's in the release's layer."""
    from dxforge.project.construct import project_target

    tag = "cpython-" + project_target(ROOT / "construct.yaml").python.replace(".", "")
    layout = Layout(Path(images["layout"]))
    rel = _by_ref(images)[f"services:v{_version()}"]
    env, dirac = rel["layers"][1], rel["layers"][-1]
    for layer, module in ((env, "/json/__init__"), (dirac, "/diracx/routers/__init__")):
        names = set(_layer_names(layout, layer["digest"]))
        source = next(n for n in names if n.endswith(module + ".py"))
        pyc = source.rsplit("/", 1)[0] + f"/__pycache__/__init__.{tag}.pyc"
        assert pyc in names, (layer["what"], pyc)
        with tarfile.open(fileobj=io.BytesIO(layout.blob(layer["digest"])), mode="r:gz") as tar:
            head = tar.extractfile(pyc).read()  # type: ignore[union-attr]
        flags = int.from_bytes(head[4:8], "little")
        assert flags == 0b01, "unchecked-hash: hash-based (bit 0), check_source off (bit 1)"
        assert b"/opt/diracx/lib/" in head and b"stage-" not in head


def test_a_rebuild_from_an_empty_cache_gives_the_same_digests(
    images: dict, tmp_path: Path, monkeypatch
) -> None:
    from dxforge.images.build import ImagesOptions, build_images
    from dxforge.project.layout import Layout as ProjectLayout
    from dxforge.project.model import Project

    out = tmp_path / "again"
    out.mkdir()
    shutil.copy(Path(images["tags"]), out / "tags.json")  # the dated tags made so far
    monkeypatch.setenv("DXFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    again = build_images(
        ImagesOptions(Project.of(ProjectLayout.of(ROOT, E2E_BUILD)), out=out, archives=False)
    )
    first = {i["ref"]: i["digest"] for i in images["images"]}
    assert {i.ref: i.digest for i in again.images} == first
    assert {i.status for i in again.images if ":v" not in i.ref} == {"unchanged"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[str]:
    """Debian's docker-registry on 127.0.0.1 with its storage in the test's directory."""
    if not shutil.which("docker-registry"):
        pytest.skip("docker-registry is not installed (apt-get install docker-registry)")
    port = _free_port()
    cfg = tmp_path / "registry.yml"
    cfg.write_text(
        f"version: 0.1\nlog:\n  level: warn\nstorage:\n  filesystem:\n"
        f"    rootdirectory: {tmp_path / 'storage'}\nhttp:\n"
        f"  addr: 127.0.0.1:{port}\n"
    )
    with open(tmp_path / "registry.log", "wb") as log:
        proc = subprocess.Popen(
            ["docker-registry", "serve", str(cfg)], stdout=log, stderr=subprocess.STDOUT
        )
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as s:
                if s.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_push_pull_back_and_a_release_sends_only_its_new_layer(
    images: dict, registry: str, tmp_path: Path
) -> None:
    from dxforge.images import registry as reg
    from dxforge.images.result import ImageResult, ImagesResult, LayerResult

    result = ImagesResult(
        Path(images["layout"]),
        Path(images["tags"]),
        [
            ImageResult(
                i["name"],
                i["tag"],
                i["digest"],
                [LayerResult(**la) for la in i["layers"]],
                i["packages"],
            )
            for i in images["images"]
        ],
    )
    pushed = reg.push_images(result, f"{registry}/diracx", tls_verify=False)
    for image in images["images"]:
        got = reg.pull(
            f"{registry}/diracx/{image['ref']}", tmp_path / "pulled", image["ref"], tls_verify=False
        )
        assert got == image["digest"], image["ref"]
    # the next release changes only DiracX (here: its layer made at another time), on the
    # same base tags: pushed where the previous release is, it sends its DiracX layer alone
    from dxforge.images.build import ImagesOptions, build_images
    from dxforge.project.layout import Layout as ProjectLayout
    from dxforge.project.model import Project

    os.environ["SOURCE_DATE_EPOCH"] = str(int(EPOCH) + 86400)
    try:
        nxt = build_images(
            ImagesOptions(
                Project.of(ProjectLayout.of(ROOT, E2E_BUILD)), bases=False, archives=False
            )
        )
    finally:
        os.environ["SOURCE_DATE_EPOCH"] = EPOCH
    again = reg.push_images(nxt, f"{registry}/diracx", tls_verify=False)
    for image, sent in zip(nxt.images, again.images, strict=True):
        old = _by_ref(images)[image.ref]
        assert [la.digest for la in image.layers[:-1]] == [
            la["digest"] for la in old["layers"][:-1]
        ]
        assert image.digest != old["digest"]
        assert sent.blobs_sent == 1, sent
        assert sent.bytes_sent == image.layers[-1].size
    print(json.dumps({"first": pushed.as_json(), "release": again.as_json()}, indent=1))


@pytest.fixture(scope="session")
def testing_image(images: dict) -> dict:
    """``services-testing:v<version>``: the services image plus the test-only layer."""
    from dxforge.images.build import ImagesOptions, build_test_image
    from dxforge.project.layout import Layout as ProjectLayout
    from dxforge.project.model import Project

    os.environ.setdefault("SOURCE_DATE_EPOCH", EPOCH)
    return build_test_image(ImagesOptions(Project.of(ProjectLayout.of(ROOT, E2E_BUILD)))).as_json()


def _libpod_cgroups() -> set[Path]:
    return set(Path("/sys/fs/cgroup").glob("*/libpod_parent/libpod-*"))


def _machine_untouched(before: set[Path]) -> None:
    """No bridge, no forwarding, and none of the containers' cgroups left (others' running
    containers, there before the test, are not ours to judge)."""
    assert (
        subprocess.run(
            ["ip", "link", "show", "cni-podman0"], capture_output=True, check=False
        ).returncode
        != 0
    )
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text().strip() == "0"
    assert not _libpod_cgroups() - before


@pytest.mark.parametrize("user", ["", "12345:0"], ids=["image-user", "uid-12345-gid-0"])
def test_services_client_and_tasks_containers_end_to_end(
    images: dict, testing_image: dict, tmp_path: Path, user: str
) -> None:
    from dxforge.images.check import check_services
    from dxforge.images.podman import why_not

    why = why_not()
    if why:
        pytest.skip(why)
    assert testing_image["base"] == f"services:v{_version()}"
    assert testing_image["layers"][-1]["what"] == "testing"
    before = _libpod_cgroups()
    try:
        res = check_services(Layout(Path(images["layout"])), _version(), tmp_path / "c", user)
    finally:
        _machine_untouched(before)
    checks = " | ".join(res.checks)
    for what in (
        "/api/health/live",
        "openid-configuration",
        "dirac whoami:",
        f"dirac jobs submit and search: job {res.job_id}",
        "the same bytes back",
        f"job {res.job_id} Received -> Done",
    ):
        assert what in checks, checks
    assert res.healthy_seconds > 0
    (tmp_path / "result.json").write_text(json.dumps(res.as_json(), indent=1))
