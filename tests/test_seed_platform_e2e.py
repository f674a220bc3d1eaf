"""``dxforge seed --platform linux-aarch64`` on a synthetic project served by a local index:
a ``linux-aarch64`` subdir shaped like conda-forge's (the cross-built aarch64 runtime's packages,
the binary wheel's aarch64 build at the floor, its ELF files stripped by aarch64's strip),
noarch shared, linux-64 unchanged, and
linux-64's own fingerprint the same as without the option."""

from __future__ import annotations

import json
import shutil
import subprocess
import zipfile
from pathlib import Path

import conda_package_handling.api as cph
import pytest
from local_index import Dist, LocalIndex
from test_seed_e2e import PY, index, seed_in, write_recipe  # noqa: F401  (a fixture)
from wheel_factory import binary_tag, build_wheel, metadata

from dxforge.conda.elf import debug_sections, read_elf

pytestmark = pytest.mark.e2e


def aarch64_so(tmp: Path) -> bytes:
    gcc = shutil.which("aarch64-linux-gnu-gcc")
    if not gcc or not shutil.which("aarch64-linux-gnu-strip"):
        pytest.skip("needs gcc-aarch64-linux-gnu and binutils-aarch64-linux-gnu (apt-get install)")
    src = tmp / "d.c"
    src.write_text("int dashing(int x) { return x * 2; }\n")
    out = tmp / "_dashing.so"
    args = ["-g", "-shared", "-fPIC", "-nostdlib", "-o", str(out), str(src)]
    subprocess.run([gcc, *args], check=True, capture_output=True)
    return out.read_bytes()


def packages(channel: Path, subdir: str) -> dict[str, dict[str, object]]:
    path = channel / subdir / "repodata.json"
    return json.loads(path.read_text())["packages.conda"] if path.is_file() else {}


def digests(channel: Path, subdir: str) -> dict[str, object]:
    """Each package's sha256 (the index's own fields, such as its time, aside)."""
    return {name: rec["sha256"] for name, rec in packages(channel, subdir).items()}


def test_the_aarch64_subdir(index: LocalIndex, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "proj"
    wheels = tmp_path / "wheels"
    tmp_path.joinpath("cc").mkdir()
    so = aarch64_so(tmp_path / "cc")
    tool = build_wheel(wheels, "seedtest-tool", "1.0", requires=["dashing>=0.1"])
    cp = "cp" + PY.replace(".", "")
    x86 = build_wheel(wheels, "dashing", "0.1.1", tag=binary_tag(PY))
    arm = build_wheel(
        wheels,
        "dashing",
        "0.1.1",
        tag=f"{cp}-{cp}-manylinux_2_17_aarch64.manylinux2014_aarch64",
        files={"dashing/_dashing.so": so},
    )
    py38 = {"requires_python": ">=3.8"}
    index.projects["seedtest-tool"] = [
        Dist.of(tool, metadata("seedtest-tool", "1.0", ["dashing>=0.1"]), **py38)
    ]
    meta = metadata("dashing", "0.1.1")
    index.projects["dashing"] = [Dist.of(x86, meta, **py38), Dist.of(arm, meta, **py38)]
    write_recipe(root, index)
    channel = root / "build/channels/seed"

    proc = seed_in(root, index, "--refresh")
    assert proc.returncode == 0, proc.stderr
    alone = json.loads(proc.stdout)
    assert "platforms" not in alone["inputs"]
    linux64, noarch = digests(channel, "linux-64"), digests(channel, "noarch")
    assert not (channel / "linux-aarch64").exists()

    proc = seed_in(root, index, "--platform", "linux-aarch64")
    assert proc.returncode == 0, proc.stderr
    both = json.loads(proc.stdout)
    assert both["inputs"]["platforms"] == ["linux-aarch64"]
    assert both["fingerprint"] != alone["fingerprint"]
    # linux-64 and noarch: the same packages, byte for byte
    assert digests(channel, "linux-64") == linux64 and digests(channel, "noarch") == noarch
    arm64 = packages(channel, "linux-aarch64")
    assert {"python", "openssl", "voms", "git", "python_abi"} <= {r["name"] for r in arm64.values()}
    [(name, rec)] = [(n, r) for n, r in arm64.items() if r["name"] == "python-dashing"]
    assert rec["subdir"] == "linux-aarch64"
    assert "__glibc >=2.17" in rec["depends"]
    assert f"python_abi {PY}.* *_{cp}" in rec["depends"]
    out = tmp_path / "unpacked"
    cph.extract(str(channel / "linux-aarch64" / name), str(out))
    [lib] = out.rglob("_dashing.so")
    info = read_elf(lib)
    assert info is not None and info.machine == "aarch64"
    assert debug_sections(lib) == []  # stripped (by aarch64-linux-gnu-strip)
    with zipfile.ZipFile(arm) as z:
        assert len(lib.read_bytes()) < len(z.read("dashing/_dashing.so"))

    # linux-64 alone again: its own fingerprint, as before the platform was added
    proc = seed_in(root, index)
    assert proc.returncode == 0, proc.stderr
    again = json.loads(proc.stdout)
    assert again["fingerprint"] == alone["fingerprint"] and again["status"] == "assembled"
    assert not (channel / "linux-aarch64").exists()


def test_an_unknown_platform_is_refused(index: LocalIndex, tmp_path: Path) -> None:  # noqa: F811
    root = tmp_path / "proj"
    write_recipe(root, index)
    proc = seed_in(root, index, "--platform", "osx-arm64")
    assert proc.returncode == 1
    assert "no Linux machine for subdir 'osx-arm64'" in proc.stderr
