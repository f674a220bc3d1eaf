"""The linux-aarch64 installer, built here by the cross route and really run here: ``dxforge seed
--platform linux-aarch64`` cross-compiles the aarch64 runtime (python, openssl, voms, git, ...)
and adds its packages, ``dxforge installer --platform linux-aarch64`` stages the payload under
the namespaced emulation and writes ``DIRACOS-<v>-Linux-aarch64.sh``; the pilot checks
(data/pilot-test.sh, through dxforge.checks.pilot) then pass in arm64 Debian 11, 12 and 13 roots
under the emulation, as an unprivileged user, offline, with a read-only HOME, and the machine's
own binfmt_misc stays as it was. The installer refuses this x86_64 machine before writing
anything."""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import E2E_BUILD, assert_pilot_checks, run_dxforge

from dxforge.checks.pilot import run_in_root
from dxforge.conda.elf import lint, walk_elf
from dxforge.core.util import user_cache
from dxforge.isolation import emulate

pytestmark = pytest.mark.e2e
RELEASES = {"bullseye": "Debian 11", "bookworm": "Debian 12", "trixie": "Debian 13"}
FLOOR = (2, 28)


def machine_binfmt() -> list[str] | None:
    """The machine's binfmt_misc entries (None when it is not mounted)."""
    return sorted(os.listdir(emulate.BINFMT)) if (emulate.BINFMT / "register").exists() else None


REPLACED = frozenset({"memcmp", "malloc", "realloc", "strnlen", "mmap"})
"""C library functions an autoconf ``AC_FUNC_*`` check replaces when it guesses them broken
(as it does when cross-compiling): an exported replacement takes the C library's place in
every library loaded with it."""


def libc_functions(path: Path) -> set[str]:
    """The C library functions of :data:`REPLACED` that ``path`` defines and exports."""
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        dynsym = ELFFile(f).get_section_by_name(".dynsym")
        if dynsym is None:
            return set()
        return {
            s.name
            for s in dynsym.iter_symbols()
            if s.name in REPLACED and s["st_shndx"] != "SHN_UNDEF"
        }


ARM_BUILD = E2E_BUILD.with_name("tests-aarch64")
"""This file's own build directory: its seed has the linux-aarch64 subdir, the session's seed
(which the other end-to-end tests build against) stays as it is."""


@pytest.fixture(scope="module")
def aarch64_installer(dxforge_channels: tuple[Path, Path]) -> dict:
    """The aarch64 installer from the tests' DiracX channel and a seed with its linux-aarch64
    subdir (the cross-built runtime from the user cache, or built)."""
    why = emulate.why_not()
    if why:
        pytest.skip(f"no namespaced emulation here (staging and the pilots need it): {why}")
    before = machine_binfmt()
    t0 = time.monotonic()
    run_dxforge("seed", "--build-dir", ARM_BUILD, "--platform", "linux-aarch64")
    seeded = time.monotonic() - t0
    # construct.yaml names the build's own DiracX channel: the session's, the same packages
    own = ARM_BUILD / "channels/dxforge"
    if own.is_symlink():
        own.unlink()
    shutil.rmtree(own, ignore_errors=True)
    own.symlink_to(dxforge_channels[0])
    proc = run_dxforge(
        "installer", "--build-dir", ARM_BUILD, "--platform", "linux-aarch64", "--json"
    )
    info = json.loads(proc.stdout)
    info["seed_seconds"] = round(seeded, 1)
    info["installer_seconds"] = round(time.monotonic() - t0 - seeded, 1)
    assert machine_binfmt() == before
    return info


def test_the_seed_has_the_aarch64_runtime(aarch64_installer: dict) -> None:
    repodata = json.loads((ARM_BUILD / "channels/seed/linux-aarch64/repodata.json").read_text())
    records = list(repodata["packages.conda"].values())
    names = {r["name"] for r in records}
    for name in ("python", "openssl", "voms", "git", "libcurl", "libsqlite", "ca-certificates"):
        assert name in names, name
    assert {"libffi", "libexpat"} <= names  # the closure, from the arm64 sysroot
    assert all(r["subdir"] == "linux-aarch64" for r in records)
    python = next(r for r in records if r["name"] == "python")
    glibc = next(d for d in python["depends"] if d.startswith("__glibc"))
    assert tuple(int(x) for x in glibc.split(">=")[1].split(".")) <= FLOOR


def test_the_aarch64_installer_is_named_for_its_machine(aarch64_installer: dict) -> None:
    installer = Path(aarch64_installer["installer"])
    assert installer.name.endswith("-Linux-aarch64.sh") and installer.name.startswith("DIRACOS-")
    assert tuple(int(x) for x in aarch64_installer["glibc_floor"].split(".")) <= FLOOR
    for what in ("python", "git --version", "voms-proxy-init --version", "dirac --help"):
        assert what in aarch64_installer["smoke_tests"]  # run under the emulation


def test_the_aarch64_installer_refuses_this_machine(
    aarch64_installer: dict, tmp_path: Path
) -> None:
    if platform.machine() == "aarch64":
        pytest.skip("this machine is aarch64: the installer is for it")
    res = subprocess.run(
        ["sh", aarch64_installer["installer"], "-b", "-p", str(tmp_path / "X")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert res.returncode != 0
    assert (
        f"this installer is for linux-aarch64 (Linux aarch64), but this system is Linux "
        f"{platform.machine()}" in res.stderr
    )
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_pilot_in_an_arm64_debian_root(
    release: str, aarch64_installer: dict, tmp_path: Path
) -> None:
    """Every pilot check, voms and DIRACOS2's included, in an arm64 root of ``release``; the
    installed prefix holds only aarch64 ELF files needing at most the floor, and nothing of the
    build machine."""
    before = machine_binfmt()
    cache = user_cache()
    root = emulate.pilot_root(release, "aarch64", tmp_path / "root", cache)
    try:
        for tool in ("zstd", "xz"):
            assert not any((root / d / tool).exists() for d in ("bin", "usr/bin")), tool
        t0 = time.monotonic()
        result = run_in_root(
            Path(aarch64_installer["installer"]),
            root,
            tmp_path / "pilot.log",
            f"{RELEASES[release]} arm64",
            emulate.qemu("aarch64", cache),
            "aarch64",
        )
        seconds = time.monotonic() - t0
        assert_pilot_checks(result.checks)
        assert os.listdir(root / "home") == []
        prefix = root / "work/diracos"
        infos = list(walk_elf(prefix))
        assert infos and {i.machine for i in infos} == {"aarch64"}
        assert max(i.glibc for i in infos) <= FLOOR
        assert lint(prefix, infos, "aarch64").problems == []
        assert not {i.path.name: libc_functions(i.path) for i in infos if libc_functions(i.path)}
        print(f"\npilot {release} arm64: {seconds:.0f} s (install {result.install_seconds:.0f} s)")
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)
    assert machine_binfmt() == before
