"""The runtime by platform (dxforge.runtime.platforms): linux-64's fingerprints are what they
were before platforms existed (the same data, the scripts as written); another platform's name
it, run its scripts with the machine's words replaced, look for libraries in its multiarch
directories, and package for its subdir. The aarch64 runtime is cross-compiled
(dxforge.runtime.cross): its build root, sysroot and compiler."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import conda_package_handling.api as cph
import pytest

from dxforge.conda.package import PLACEHOLDER
from dxforge.core import store
from dxforge.core.util import DxError, user_cache
from dxforge.isolation.apt import mirror
from dxforge.runtime import build, cross, libs
from dxforge.runtime import platforms as rp
from dxforge.runtime.components import components
from dxforge.runtime.packages import python_abi_package

LINUX_64 = rp.runtime_platform("linux-64")
AARCH64 = rp.runtime_platform("linux-aarch64")


def before_platforms(c, version: str, root: str, needs: list[str]) -> str:  # noqa: ANN001
    """A component's fingerprint as dxforge computed it before platforms (the same dict)."""
    return store.fingerprint(
        {
            "format": build.RUNTIME_FORMAT,
            "placeholder": PLACEHOLDER,
            "root": root,
            "floor": build.GLIBC_FLOOR,
            "name": c.name,
            "debian": c.debian,
            "version": version,
            "pin": c.pin.sha256 if c.pin else None,
            "script": hashlib.sha256(build.script_text(c.script).encode()).hexdigest(),
            "needs": needs,
        }
    )


def test_linux_64_fingerprints_are_unchanged_and_aarch64s_differ() -> None:
    for c in components("3.13"):
        old = before_platforms(c, "1.2-3", "root-key", ["a" * 64])
        assert build.component_fingerprint(c, "1.2-3", "root-key", ["a" * 64], LINUX_64) == old
        arm = build.component_fingerprint(c, "1.2-3", "root-key", ["a" * 64], AARCH64)
        assert arm != old, c.name


def test_the_scripts_for_aarch64_differ_only_in_the_machines_words() -> None:
    for c in components("3.13"):
        text = build.script_text(c.script)
        assert LINUX_64.script(c.script, text) == text
        arm = AARCH64.script(c.script, text)
        back = arm
        for old, new in rp.WORDS.get(c.script, ()):
            back = back.replace(new.format(p=AARCH64), old)
        assert back == text, c.script
        if c.script == "openssl.sh":
            assert "./Configure linux-aarch64 shared" in arm and "linux-x86_64" not in arm
        elif c.script == "python.sh":
            assert '--host="$HOST" --build="$BUILD"' in arm and "--with-build-python" in arm
        elif c.script in ("sqlite.sh", "curl.sh", "voms.sh"):
            assert '--host="$HOST"' in arm, c.script
        elif c.script == "git.sh":
            assert "AR=$AR" in arm
        else:
            assert arm == text, c.script


def test_a_script_that_lost_its_machine_word_is_an_error() -> None:
    with pytest.raises(DxError, match=r"data/runtime/openssl.sh: `./Configure linux-x86_64`"):
        AARCH64.script("openssl.sh", "./Configure linux-generic64 shared\n")
    with pytest.raises(DxError, match="no runtime platform 'osx-arm64'"):
        rp.runtime_platform("osx-arm64")


def test_libraries_are_found_in_the_platforms_multiarch_directories(tmp_path: Path) -> None:
    assert AARCH64.lib_dirs[:2] == ("lib/aarch64-linux-gnu", "usr/lib/aarch64-linux-gnu")
    assert LINUX_64.lib_dirs == libs.LIB_DIRS
    (tmp_path / "usr/lib/aarch64-linux-gnu").mkdir(parents=True)
    (tmp_path / "usr/lib/aarch64-linux-gnu/libffi.so.7").write_bytes(b"")
    assert libs.find(tmp_path, "libffi.so.7") is None
    found = libs.find(tmp_path, "libffi.so.7", AARCH64.lib_dirs)
    assert found == "/usr/lib/aarch64-linux-gnu/libffi.so.7"


def test_python_abi_is_packaged_for_the_subdir(tmp_path: Path) -> None:
    made = python_abi_package("3.13", tmp_path / "work", tmp_path / "out", "linux-aarch64")
    assert made.parent.name == "linux-aarch64"
    cph.extract(str(made), str(tmp_path / "x"))
    assert json.loads((tmp_path / "x/info/index.json").read_text())["subdir"] == "linux-aarch64"


@pytest.mark.e2e
def test_the_aarch64_plan_names_the_cross_roots_and_keeps_linux_64s() -> None:
    """The real plan (Debian's source versions from the user cache's apt lists)."""
    cache = user_cache()
    p = build.plan(cache, "3.13", subdir="linux-aarch64")
    assert p.platform is AARCH64
    assert build.fingerprint(cache, "3.13") != build.fingerprint(cache, "3.13", "linux-aarch64")
    repo = mirror()
    assert build.root_key(LINUX_64, repo) == build.BUILD_ROOT.key(repo)
    assert cross.sysroot("bullseye", AARCH64).key(repo) in build.root_key(AARCH64, repo)
