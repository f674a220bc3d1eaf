"""The namespaced emulation's pieces (dxforge.isolation.emulate) and foreign root specs, offline."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

import pytest

from dxforge.core.util import DxError
from dxforge.isolation import emulate, roots
from dxforge.isolation.apt import Mirror

REPO = Mirror("http://127.0.0.1:9/debian", "http://127.0.0.1:9/debian-security")


def test_the_aarch64_registration_is_the_elf_header_of_arm64_executables() -> None:
    line = emulate.arch("aarch64").binfmt(Path("/c/qemu-aarch64-static"))
    assert line == (
        r":qemu-aarch64-static:M::\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00"
        r"\x00\x02\x00\xb7\x00:\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff"
        r"\xff\xfe\xff\xff\xff:/c/qemu-aarch64-static:F"
    )
    for a in emulate.ARCHES.values():
        assert len(a.magic) == len(a.mask) == 20


def test_an_unknown_machine_names_the_known_ones() -> None:
    with pytest.raises(DxError, match="aarch64, ppc64le"):
        emulate.arch("s390x")


def test_a_foreign_root_is_extracted_with_essential_its_own_include_and_base_passwd() -> None:
    spec = emulate.root_spec("bookworm", "aarch64", ["python3", "gcc"])
    opts = spec.options()
    assert "--arch=arm64" in opts and "--variant=extract" in opts
    assert opts.index("--include=?essential") < opts.index("--include=gcc,python3")
    assert sum(o.startswith("--extract-hook=") and ".master" in o for o in opts) == 2
    assert spec.sources(REPO) == [
        "deb http://127.0.0.1:9/debian bookworm main",
        "deb http://127.0.0.1:9/debian bookworm-updates main",
        "deb http://127.0.0.1:9/debian-security bookworm-security main",
    ]
    assert spec.name == "bookworm-arm64-extract"


def test_bullseye_foreign_roots_take_the_main_suite_alone() -> None:
    spec = emulate.root_spec("bullseye", "aarch64")
    assert spec.sources(REPO) == ["deb http://127.0.0.1:9/debian bullseye main"]
    assert spec.key(REPO) != emulate.root_spec("bookworm", "aarch64").key(REPO)


def test_the_host_roots_keep_their_cache_keys() -> None:
    """Existing cached roots stay valid: the key of a host root is computed as before."""
    spec = roots.RootSpec("bullseye", "buildd", ("gcc", "make"))
    old = [roots.ROOT_FORMAT, "bullseye", "buildd", ["gcc", "make"], REPO.archive, REPO.security]
    assert spec.key(REPO) == hashlib.sha256(json.dumps(old).encode()).hexdigest()[:16]
    assert spec.name == "bullseye-buildd"
    assert spec.options() == [
        "--mode=root",
        "--variant=buildd",
        "--format=tar",
        "--include=gcc,make",
    ]
    assert spec.key(REPO) != roots.RootSpec("bullseye", "buildd", ("gcc", "make"), "arm64").key(
        REPO
    )


def test_the_command_is_the_native_root_command_inside_the_launcher(tmp_path: Path) -> None:
    qemu = tmp_path / "qemu-aarch64-static"
    cmd = emulate.command(
        tmp_path, ["uname", "-m"], machine="aarch64", interpreter=qemu, user=65534
    )
    native = roots.command(tmp_path, ["uname", "-m"], user=65534)
    assert cmd[:4] == [sys.executable, "-m", "dxforge.isolation.emulate", "--binfmt"]
    assert cmd[4].endswith(f":{qemu}:F") and cmd[5] == "--"
    assert cmd[6:] == native


def test_the_launcher_refuses_a_command_line_without_a_command() -> None:
    assert emulate.main(["--binfmt", "x"]) == 2
    assert emulate.main([]) == 2


def test_the_namespace_maps_the_unprivileged_users_and_has_its_own_binfmt_misc() -> None:
    why = emulate.why_not()
    if why:
        pytest.skip(f"no namespaced emulation here: {why}")
    before = sorted(emulate.BINFMT.iterdir()) if emulate.BINFMT.is_dir() else None
    out = subprocess.run(
        [
            *emulate.launcher([]),
            "sh",
            "-c",
            "cat /proc/self/uid_map /proc/self/gid_map; ls /proc/sys/fs/binfmt_misc; "
            "setpriv --reuid=1701 --regid=1701 --clear-groups id -u",
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert out[:6] == ["0", "0", "65536"] * 2
    assert out[6:] == ["register", "status", "1701"]
    assert (sorted(emulate.BINFMT.iterdir()) if emulate.BINFMT.is_dir() else None) == before
