"""The installer for another machine: construct.yaml's selectors and file name follow
``--platform``, and the header refuses a machine it is not for before it writes anything,
naming both architectures (a sealed installer run with a faked ``uname`` first on PATH; the
self-check of lines 2-4 still holds for it)."""

from __future__ import annotations

import random
import subprocess
from pathlib import Path

import pytest
from test_installer_selfcheck import Runner
from test_shell import rendered_header

from dxforge.conda.subdirs import machine
from dxforge.core.util import DxError
from dxforge.installer.shell import lockfile_text, package_list_text, seal, self_sha256, verify
from dxforge.project.construct import load_construct

FAKE_UNAME = """#!/bin/sh
# uname as an {arch} machine would answer; anything else from the real one
case "$1" in
    -m) echo {arch} ;;
    -s) echo Linux ;;
    *) exec /bin/uname "$@" ;;
esac
"""


def sealed(tmp_path: Path, platform: str) -> bytes:
    header = rendered_header(tmp_path, True, platform=platform).read_bytes()
    rng = random.Random(24)
    rest = bytes(rng.randrange(256) for _ in range(1000 + 12345))  # decoder, payload sizes
    data = seal(header, self_sha256(header, [rest])) + rest
    assert verify(data)
    return data


def run_as(
    tmp_path: Path, data: bytes, arch: str
) -> tuple[subprocess.CompletedProcess[str], Runner]:
    """Run the installer where ``uname -m`` says ``arch``."""
    runner = Runner(tmp_path)
    fake = tmp_path / "fake-bin"
    fake.mkdir(mode=0o755)
    (fake / "uname").write_text(FAKE_UNAME.format(arch=arch))
    (fake / "uname").chmod(0o755)
    inst = runner.base / "inst.sh"
    inst.write_bytes(data)
    env = {"PATH": f"{fake}:/usr/bin:/bin", "HOME": "/nonexistent"}
    res = subprocess.run(
        [*runner.prefix, "sh", str(inst), "-b", "-p", str(runner.base / "p")],
        cwd=runner.base,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    return res, runner


@pytest.mark.parametrize(
    ("platform", "system"), [("linux-aarch64", "x86_64"), ("linux-64", "aarch64")]
)
def test_the_wrong_machine_is_refused_before_anything_is_written(
    tmp_path: Path, platform: str, system: str
) -> None:
    res, runner = run_as(tmp_path, sealed(tmp_path, platform), system)
    arch = machine(platform)
    assert res.returncode == 1
    assert res.stderr.strip() == (
        f"ERROR: this installer is for {platform} (Linux {arch}), but this system is Linux {system}"
    )
    assert sorted(p.name for p in runner.base.iterdir()) == ["inst.sh"]


def test_the_right_machine_gets_past_the_check(tmp_path: Path) -> None:
    """On an aarch64 machine (as uname says) the aarch64 installer goes on to unpack (its
    stand-in payload then fails, and the staging directory goes)."""
    res, _runner = run_as(tmp_path, sealed(tmp_path, "linux-aarch64"), "aarch64")
    assert "this installer is for" not in res.stderr and "cannot verify" not in res.stderr
    assert "Unpacking" in res.stderr, res.stderr


def test_the_file_name_and_selectors_follow_the_platform(tmp_path: Path) -> None:
    construct = tmp_path / "construct.yaml"
    base = "name: DIRACOS\nversion: 1.2.3\nchannels: [conda-forge]\nspecs: [python]\n"
    construct.write_text(base)
    assert load_construct(construct).installer_filename == "DIRACOS-1.2.3-Linux-x86_64.sh"
    arm = load_construct(construct, "linux-aarch64")
    assert arm.installer_filename == "DIRACOS-1.2.3-Linux-aarch64.sh"
    assert arm.platform == "linux-aarch64"
    construct.write_text(
        base.replace("specs: [python]\n", "specs: [python]  # [not aarch64]\n")
        + "installer_filename: D-1.2.3-x86.sh  # [linux64]\n"
        "specs: [python, voms]  # [aarch64]\n"
    )
    assert load_construct(construct).installer_filename == "D-1.2.3-x86.sh"
    arm = load_construct(construct, "linux-aarch64")
    assert arm.installer_filename == "DIRACOS-1.2.3-Linux-aarch64.sh"
    assert arm.specs == ["python", "voms"]
    with pytest.raises(DxError, match="no Linux machine for subdir 'osx-arm64'"):
        load_construct(construct, "osx-arm64")


def test_the_project_construct_names_both_installers() -> None:
    root = Path(__file__).resolve().parents[1]
    x86 = load_construct(root / "construct.yaml")
    arm = load_construct(root / "construct.yaml", "linux-aarch64")
    assert x86.installer_filename == f"DIRACOS-{x86.version}-Linux-x86_64.sh"
    assert arm.installer_filename == f"DIRACOS-{x86.version}-Linux-aarch64.sh"


def test_the_companions_name_the_platform() -> None:
    assert "# platform: linux-aarch64\n" in lockfile_text([], "linux-aarch64")
    assert package_list_text([], "linux-aarch64").startswith("# 0 packages for linux-aarch64")
    assert "# platform: linux-64\n" in lockfile_text([])


def test_staging_for_another_machine_without_the_emulation_is_refused_before_anything(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Staging another machine's installer runs its python under the namespaced emulation;
    where that cannot be had (here: as if the kernel gave none), it is refused at once."""
    from dxforge.installer import shipped_dir
    from dxforge.installer.stage import stage
    from dxforge.isolation import emulate

    monkeypatch.setattr(emulate, "why_not", lambda: "no binfmt_misc of its own (test)")

    construct = tmp_path / "construct.yaml"
    construct.write_text("name: D\nversion: 1.0.0\nchannels: [conda-forge]\nspecs: [python]\n")
    spec = load_construct(construct, "linux-aarch64")
    with pytest.raises(
        DxError, match="staging the linux-aarch64 installer runs its python .* no binfmt_misc"
    ):
        stage(spec, [], tmp_path / "out", shipped_dir(), solved=([], []))
    assert not (tmp_path / "out").exists()
