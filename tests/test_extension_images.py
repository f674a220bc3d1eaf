"""An extension's images, offline and fast: each role's top package, what the extension's layer
may add on DiracX's release image (and the refusals), the DiracX images it needs (and the one
command named when they are missing), and a copy of DiracX's image that keeps its digests."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import ROOT
from test_images_unit import pkg

from dxforge.bump.recipedoc import read_recipe
from dxforge.core.util import DxError
from dxforge.extension.images import diracx_images, extension_layer, fix_command, role_package
from dxforge.extension.project import read_project
from dxforge.images import layers
from dxforge.images.build import record_path, recorded_packages
from dxforge.images.oci import ImageConfig, Layout, copy_image

PIN = "9.8.7"  # a synthetic DiracX version
EXT = "2.3.4"  # a synthetic extension version
IMAGE = [pkg("python", "3.13.5", "h1_0"), pkg("diracx-core", PIN), pkg("diracx-routers", PIN)]


# -- each role's top package ------------------------------------------------------------------


def test_each_role_takes_the_extensions_package_of_diracxs_role_else_its_core() -> None:
    names = ["myext", "myext-core", "myext-routers", "myext-cli"]
    assert role_package("myext", "services", names) == "myext-routers"
    assert role_package("myext", "client", names) == "myext"
    assert role_package("myext", "tasks", names) == "myext-core"  # no myext-tasks
    assert role_package("myext", "tasks", [*names, "myext-tasks"]) == "myext-tasks"
    with pytest.raises(DxError, match="no myext-tasks nor myext-core recipe"):
        role_package("myext", "tasks", ["myext"])
    with pytest.raises(DxError, match="unknown image role 'server'"):
        role_package("myext", "server", names)


# -- the extension's layer --------------------------------------------------------------------


def test_the_layer_adds_the_extensions_packages_and_what_they_need() -> None:
    solution = [
        *IMAGE,
        pkg("myext-routers", EXT),
        pkg("myext-core", EXT),
        pkg("some-vo-lib", "0.1"),  # what the extension needs beyond DiracX
        pkg("diracx-cli", PIN),  # DiracX's, at the pin, needed by the extension
    ]
    got = extension_layer(solution, IMAGE, "services:v9.8.7", "myext", EXT, PIN)
    assert [p.name for p in got] == ["diracx-cli", "myext-core", "myext-routers", "some-vo-lib"]


def test_the_layer_never_moves_a_package_of_diracxs_image() -> None:
    solution = [pkg("python", "3.13.6", "h1_0"), *IMAGE[1:], pkg("myext-core", EXT)]
    with pytest.raises(DxError, match="moved python from 3.13.5 h1_0 to 3.13.6 h1_0"):
        extension_layer(solution, IMAGE, "services:v9.8.7", "myext", EXT, PIN)


def test_the_layer_refuses_test_only_packages() -> None:
    solution = [*IMAGE, pkg("myext-core", EXT), pkg("diracx-testing", PIN)]
    with pytest.raises(DxError, match="diracx-testing would enter a shipped image"):
        extension_layer(solution, IMAGE, "services:v9.8.7", "myext", EXT, PIN)


def test_the_layer_refuses_another_diracx_or_another_extension_version() -> None:
    off_pin = [*IMAGE, pkg("myext-core", EXT), pkg("diracx-cli", "9.9.0")]
    with pytest.raises(DxError, match=r"would add diracx-cli 9\.9\.0: .* DiracX's at its pin"):
        extension_layer(off_pin, IMAGE, "services:v9.8.7", "myext", EXT, PIN)
    old = [*IMAGE, pkg("myext-core", "2.3.3")]
    with pytest.raises(DxError, match=r"would add myext-core 2\.3\.3"):
        extension_layer(old, IMAGE, "services:v9.8.7", "myext", EXT, PIN)


def test_a_layer_without_the_extension_is_an_error() -> None:
    with pytest.raises(DxError, match="adds none of myext's packages to services:v9.8.7"):
        extension_layer([*IMAGE, pkg("zlib")], IMAGE, "services:v9.8.7", "myext", EXT, PIN)
    with pytest.raises(DxError, match="adds none of myext's packages"):
        extension_layer(IMAGE, IMAGE, "services:v9.8.7", "myext", EXT, PIN)


# -- the DiracX images it stands on -----------------------------------------------------------


def _project(tmp_path: Path, diracx: str) -> Path:
    """An extension project on a DiracX distribution whose recipe is this repository's."""
    base = tmp_path / "diracx"
    (base / "recipes/diracx").mkdir(parents=True)
    shutil.copy(ROOT / "recipes/diracx/recipe.yaml", base / "recipes/diracx/recipe.yaml")
    project = tmp_path / "myext"
    project.mkdir()
    (project / "pyproject.toml").write_text(
        "[tool.dxforge]\n"
        'extension = "myext"\n'
        f'diracx = "{diracx}"\n'
        f'base = "{base}"\n'
        'base-channel = "file:///nowhere/dxforge"\n'
        'base-seed = "file:///nowhere/seed"\n'
    )
    return project


def test_missing_diracx_images_name_the_one_command(tmp_path: Path) -> None:
    version = read_recipe(ROOT / "recipes/diracx/recipe.yaml").version
    same = read_project(_project(tmp_path / "a", version))
    assert fix_command(same) == f"`dxforge images --root {same.base}`"
    with pytest.raises(DxError, match=r"no record of services:v.*`dxforge images --root "):
        diracx_images(same, None, ["services"])
    other = read_project(_project(tmp_path / "b", PIN))
    assert fix_command(other) == f"`dxforge release --version {PIN} --images --root {other.base}`"
    with pytest.raises(DxError, match=rf"`dxforge release --version {PIN} --images --root "):
        diracx_images(other, None, ["client"])


def _layout(tmp_path: Path, ref: str) -> Layout:
    if not (shutil.which("umoci") and shutil.which("skopeo")):
        pytest.skip("umoci and skopeo are not installed (scripts/setup.sh installs them)")
    tar = layers.write([layers.Entry("etc/x", "file", 0o644, data=b"x")], tmp_path / "l.tar", 7)
    top = layers.write([layers.Entry("opt/y", "file", 0o644, data=b"y")], tmp_path / "t.tar", 7)
    lay = Layout(tmp_path / "dx" / "oci").ensure()
    lay.new(ref)
    for t in (tar, top):
        lay.add_layer(ref, t, 7, t.name)
    lay.configure(ref, ImageConfig("1000:0", ("A=1",), ("/bin/sh",), (), "/"), 7)
    return lay


def test_the_diracx_image_is_found_by_its_record_and_copied_byte_for_byte(tmp_path: Path) -> None:
    ref = f"services:v{PIN}"
    src = _layout(tmp_path, ref)
    out = src.path.parent
    record = record_path(out, "services", f"v{PIN}")
    record.parent.mkdir()
    record.write_text(
        json.dumps({"digest": src.digest(ref), "packages": [p.as_json() for p in IMAGE]})
    )
    project = read_project(_project(tmp_path, PIN))
    assert diracx_images(project, out, ["services"]) == out
    assert recorded_packages(out, "services", f"v{PIN}") == IMAGE
    dst = Layout(tmp_path / "ext" / "oci").ensure()
    assert copy_image(src, ref, dst) == src.digest(ref)
    assert dst.layers(ref) == src.layers(ref)
    assert copy_image(src, ref, dst) == src.digest(ref)  # already there: kept
    # a record that names another digest than the layout's image is refused
    record.write_text(json.dumps({"digest": "sha256:" + "0" * 64, "packages": []}))
    with pytest.raises(DxError, match=rf"services:v{PIN} is not the recorded sha256:0+; build"):
        diracx_images(project, out, ["services"])


def test_the_command_stops_naming_the_command_that_builds_diracxs_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from test_cli import dxforge

    root = _project(tmp_path, PIN)
    code, out, err = dxforge(capsys, "extension", "images", "--root", root, "--json")
    assert code == 1, (out, err)
    error = json.loads(out)["error"]
    assert f"no record of services:v{PIN}" in error
    assert f"`dxforge release --version {PIN} --images --root {tmp_path / 'diracx'}`" in error
    code, out, err = dxforge(capsys, "extension", "images", "--root", root, "--role", "x")
    assert code == 1 and "unknown image role 'x'" in err, (out, err)
