"""The seed's binary wheels for linux-aarch64 (dxforge.seed.platforms): every manylinux tag up
to the floor, linux-64's pins, wheels only, each missing pin named; served on 127.0.0.1."""

from __future__ import annotations

import json
from pathlib import Path

import conda_package_handling.api as cph
import pytest
from local_index import serve
from wheel_factory import build_wheel, metadata, tar_gz

from dxforge.core.util import DxError
from dxforge.project.target import Target
from dxforge.seed import platforms
from dxforge.seed.wheels import Resolved, convert_wheel

AARCH64 = Target("3.13", subdir="linux-aarch64", glibc=(2, 28))


def test_every_manylinux_tag_up_to_the_floor_is_passed() -> None:
    tags = platforms.manylinux_tags("aarch64", (2, 28))
    assert tags[0] == "manylinux2014_aarch64"
    assert tags[1:] == [f"manylinux_2_{m}_aarch64" for m in range(17, 29)]
    x86 = platforms.manylinux_tags("x86_64", (2, 17))
    assert x86[:3] == ["manylinux1_x86_64", "manylinux2010_x86_64", "manylinux2014_x86_64"]
    assert x86[-1] == "manylinux_2_17_x86_64" and len(x86) == 3 + 13
    args = platforms.download_args(["a==1"], AARCH64, Path("/d"))
    assert [args[i + 1] for i, a in enumerate(args) if a == "--platform"] == tags
    assert "--only-binary=:all:" in args and "--no-deps" in args and args[-1] == "a==1"
    assert [args[i + 1] for i, a in enumerate(args) if a == "--abi"] == ["cp313", "abi3", "none"]


def test_a_floor_below_the_machines_first_manylinux_is_an_error() -> None:
    with pytest.raises(DxError, match="below aarch64's first manylinux"):
        platforms.manylinux_tags("aarch64", (2, 12))
    with pytest.raises(DxError, match="linux-64, linux-aarch64"):
        platforms.machine("osx-arm64")


def resolved(name: str, version: str, filename: str) -> Resolved:
    return Resolved(name, version, f"http://127.0.0.1:9/files/{filename}", None, filename)


def test_pure_wheels_are_shared_binary_ones_and_sdists_are_not() -> None:
    assert not platforms.is_binary(resolved("p", "1", "p-1-py3-none-any.whl"))
    assert platforms.is_binary(resolved("b", "1", "b-1-cp313-cp313-manylinux_2_17_x86_64.whl"))
    assert platforms.is_binary(resolved("s", "1", "s-1.tar.gz"))


def add_wheel(index, tmp: Path, name: str, version: str, tag: str) -> None:  # noqa: ANN001
    path = build_wheel(tmp, name, version, tag=tag)
    index.add_file(name, path.name, path.read_bytes(), metadata=metadata(name, version).encode())


def test_linux_64s_pins_are_downloaded_for_aarch64_at_the_floor(tmp_path: Path) -> None:
    """fast: a 2.28 and a 2.34 wheel (the floor's is taken); old: only a manylinux2014 wheel
    and an sdist (the legacy tag is passed, the sdist is not taken); x86only: no aarch64 wheel
    (named as missing, no sdist or older release instead); pure: noarch, not downloaded."""
    wheels = tmp_path / "wheels"
    with serve() as index:
        add_wheel(index, wheels, "fast", "2.0", "cp313-cp313-manylinux_2_34_aarch64")
        add_wheel(index, wheels, "fast", "2.0", "cp313-cp313-manylinux_2_28_aarch64")
        add_wheel(index, wheels, "fast", "1.0", "cp313-cp313-manylinux2014_aarch64")
        add_wheel(index, wheels, "old", "3.1", "cp313-cp313-manylinux2014_aarch64")
        index.add_file("old", "old-3.1.tar.gz", tar_gz("old-3.1", {"PKG-INFO": "x"}))
        add_wheel(index, wheels, "x86only", "1.0", "cp313-cp313-manylinux_2_17_x86_64")
        add_wheel(index, wheels, "x86only", "0.9", "cp313-cp313-manylinux2014_aarch64")
        index.add_file("x86only", "x86only-1.0.tar.gz", tar_gz("x86only-1.0", {"PKG-INFO": "x"}))
        pins = [
            resolved("fast", "2.0", "fast-2.0-cp313-cp313-manylinux_2_17_x86_64.whl"),
            resolved("old", "3.1", "old-3.1-cp313-cp313-manylinux2014_x86_64.whl"),
            resolved("x86only", "1.0", "x86only-1.0-cp313-cp313-manylinux_2_17_x86_64.whl"),
            resolved("pure", "1.0", "pure-1.0-py3-none-any.whl"),
        ]
        log = tmp_path / "logs" / "aarch64.json"
        log.parent.mkdir()
        got = platforms.download(pins, AARCH64, tmp_path / "linux-aarch64", log, index.url)
    files = sorted(w.path.name for w in got.wheels)
    assert files == [
        "fast-2.0-cp313-cp313-manylinux_2_28_aarch64.whl",
        "old-3.1-cp313-cp313-manylinux2014_aarch64.whl",
    ]
    assert got.missing == ["x86only==1.0"] and got.status == "incomplete"
    assert {w.name: w.glibc for w in got.wheels} == {
        "fast": "__glibc >=2.28",
        "old": "__glibc >=2.17",
    }
    assert json.loads(log.read_text())["missing"] == ["x86only==1.0"]
    assert not any("pure" in r for r in index.requests)


def test_an_aarch64_wheel_becomes_a_linux_aarch64_package_a_pure_one_noarch(tmp_path: Path) -> None:
    binary = build_wheel(tmp_path / "w", "fast", "2.0", tag="cp313-cp313-manylinux_2_28_aarch64")
    pure = build_wheel(tmp_path / "w", "pure", "1.0")
    for wheel, subdir in ((binary, "linux-aarch64"), (pure, "noarch")):
        conda = convert_wheel(wheel, {}, tmp_path / "out", AARCH64)
        cph.extract(str(conda), str(tmp_path / wheel.stem))
        index = json.loads((tmp_path / wheel.stem / "info" / "index.json").read_text())
        assert index["subdir"] == subdir, wheel.name
