"""The cross route's pieces (dxforge.runtime.cross) without building: the sysroot's links made
relative, the compiler bound to the sysroot, the roots it names, and the dpkg database an
extract root gets from the packages it unpacked (the hook run on a real .deb)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dxforge.isolation import roots
from dxforge.runtime import build, cross
from dxforge.runtime import platforms as rp

AARCH64 = rp.runtime_platform("linux-aarch64")


def test_absolute_links_are_made_relative_inside_the_sysroot(tmp_path: Path) -> None:
    lib = tmp_path / "lib/aarch64-linux-gnu"
    dev = tmp_path / "usr/lib/aarch64-linux-gnu"
    lib.mkdir(parents=True)
    dev.mkdir(parents=True)
    (lib / "libpthread.so.0").write_bytes(b"x")
    (dev / "libpthread.so").symlink_to("/lib/aarch64-linux-gnu/libpthread.so.0")
    (dev / "libz.so").symlink_to("libz.so.1")
    assert cross.relativize(tmp_path) == 1
    assert os.readlink(dev / "libpthread.so") == "../../../lib/aarch64-linux-gnu/libpthread.so.0"
    assert (dev / "libpthread.so").read_bytes() == b"x"
    assert os.readlink(dev / "libz.so") == "libz.so.1"
    assert cross.relativize(tmp_path) == 0


def test_the_compiler_binds_the_sysroots_libraries_and_the_floor() -> None:
    env = cross.environment(AARCH64, "/build/floor/glibc-floor.h")
    cc = env["CC"].split()
    assert cc[0] == "aarch64-linux-gnu-gcc" and "--sysroot=/sysroot" in cc
    assert "-B/sysroot/usr/lib/aarch64-linux-gnu/" in cc
    assert {"-L/sysroot/usr/lib/aarch64-linux-gnu", "-L/sysroot/lib/aarch64-linux-gnu"} <= set(cc)
    assert env["CC"].endswith("-include /build/floor/glibc-floor.h")
    assert env["CXX"].startswith("aarch64-linux-gnu-g++ ")
    assert env["AR"] == "aarch64-linux-gnu-ar" and env["HOST"] == "aarch64-linux-gnu"
    assert env["PKG_CONFIG_LIBDIR"].startswith("/sysroot/usr/lib/aarch64-linux-gnu/pkgconfig")


def test_the_roots_of_the_cross_route() -> None:
    host = cross.build_root(build.BUILD_ROOT, AARCH64)
    assert {"gcc-aarch64-linux-gnu", "g++-aarch64-linux-gnu"} <= set(host.include)
    assert set(build.BUILD_ROOT.include) <= set(host.include)
    sysroot = cross.sysroot("bullseye", AARCH64)
    assert sysroot.arch == "arm64" and sysroot.variant == "extract" and not sysroot.updates
    opts = sysroot.options()
    assert f"--extract-hook={roots.DPKG_DATABASE_HOOK}" in opts
    assert not any("dpkg/status" in o for o in roots.RootSpec("bookworm", "extract").options())


@pytest.mark.skipif(not shutil.which("dpkg-deb"), reason="dpkg-deb is not installed")
def test_the_hook_writes_a_dpkg_database_that_dpkg_query_reads(tmp_path: Path) -> None:
    pkg = tmp_path / "pkg"
    (pkg / "DEBIAN").mkdir(parents=True)
    (pkg / "usr/lib/aarch64-linux-gnu").mkdir(parents=True)
    (pkg / "usr/lib/aarch64-linux-gnu/libdemo.so.1").write_bytes(b"\x7fELF")
    (pkg / "DEBIAN/control").write_text(
        "Package: libdemo1\nSource: demo\nVersion: 1.2-3\nArchitecture: arm64\n"
        "Multi-Arch: same\nMaintainer: nobody <nobody@localhost>\nDescription: demo\n"
    )
    root = tmp_path / "root"
    archives = root / "var/cache/apt/archives"
    archives.mkdir(parents=True)
    subprocess.run(
        ["dpkg-deb", "-b", "--root-owner-group", str(pkg), str(archives / "libdemo1.deb")],
        check=True,
        capture_output=True,
    )
    subprocess.run(["sh", "-c", roots.DPKG_DATABASE_HOOK, "hook", str(root)], check=True)
    admin = f"--admindir={root}/var/lib/dpkg"

    def query(*args: str) -> str:
        return subprocess.run(
            ["dpkg-query", admin, *args], check=True, capture_output=True, text=True
        ).stdout

    assert query("-S", "/usr/lib/aarch64-linux-gnu/libdemo.so.1").startswith("libdemo1:arm64:")
    assert query("-W", "-f=${Package} ${source:Package} ${Version}", "libdemo1") == (
        "libdemo1 demo 1.2-3"
    )
    assert "/usr/lib/aarch64-linux-gnu/libdemo.so.1" in query("-L", "libdemo1").splitlines()


def test_configure_is_told_the_c_library_works() -> None:
    """Cross-compiling, autoconf guesses ``memcmp`` broken and compiles its own (voms then
    exported it, and OpenSSL looked objects up with it); the answers say what glibc does."""
    assert "ac_cv_func_memcmp_working=yes" in cross.CONFIGURE_ANSWERS
    assert "ac_cv_file__dev_ptmx=yes" in cross.CONFIGURE_ANSWERS
