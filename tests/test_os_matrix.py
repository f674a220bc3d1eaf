"""The DIRACOS installer on other Linux systems: minimal Debian 11, 12 and 13 roots (mmdebstrap
minbase, cached in the user cache), /proc mounted, no network, an unprivileged user with a
read-only HOME. In each, scripts/pilot-test.sh installs it and checks python (ssl with OpenSSL 3
and the bundled CA certificates, ctypes, sqlite3, lzma, bz2, zlib, uuid, readline, diracx.core),
dirac, git (clone, https helper), pip. Also: the header refuses an older glibc before writing
anything, and conda-pack reads an installed prefix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import ROOT

from dxforge.runtime import roots
from dxforge.util import user_cache

pytestmark = pytest.mark.e2e
RELEASES = {"bullseye": "Debian 11", "bookworm": "Debian 12", "trixie": "Debian 13"}


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_pilot_on_minimal_debian(release: str, diracos: dict, tmp_path: Path) -> None:
    why = roots.why_not()
    if why:
        pytest.skip(f"no Debian root here: {why}")
    root = roots.make(roots.RootSpec(release), tmp_path / "root", user_cache())
    try:
        work = root / "work"
        work.mkdir()
        os.chown(work, roots.NOBODY, roots.NOBODY)
        installer = Path(diracos["installer"])
        shutil.copy2(installer, work / installer.name)
        shutil.copy2(ROOT / "scripts/pilot-test.sh", work / "pilot-test.sh")
        (root / "home").mkdir(mode=0o555, exist_ok=True)
        (root / "home").chmod(0o555)
        cmd = roots.command(
            root, ["sh", "/work/pilot-test.sh", f"/work/{installer.name}", "/work/diracos"],
            user=roots.NOBODY, env={"HOME": "/home", "TMPDIR": "/work"},
        )
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        out = res.stdout + res.stderr
        assert res.returncode == 0, out[-4000:]
        assert "pilot: all checks passed" in out
        assert "OpenSSL 3." in out and " CA certificates" in out
        assert os.listdir(root / "home") == []
        # nothing of the build machine: every library the installed files load is in the prefix
        from dxforge.elf import lint

        assert lint(work / "diracos").problems == []
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_older_glibc_refused_before_anything_is_written(diracos: dict, tmp_path: Path) -> None:
    floor = diracos["glibc_floor"]
    assert floor and tuple(map(int, floor.split("."))) <= (2, 31)
    work = tmp_path / "site"
    work.mkdir()
    res = subprocess.run(
        ["sh", diracos["installer"], "-b", "-p", str(work / "X")], capture_output=True,
        text=True, env={"PATH": "/usr/bin:/bin", "CONDA_OVERRIDE_GLIBC": "2.17"}, timeout=300,
    )
    assert res.returncode == 1
    assert f"Installer requires GLIBC >={floor}, but system has 2.17." in res.stderr
    assert os.listdir(work) == []  # no X, no temporary directory next to it


def test_conda_pack_reads_an_installed_prefix(diracos: dict, tmp_path: Path) -> None:
    prefix = tmp_path / "diracos"
    res = subprocess.run(["sh", diracos["installer"], "-b", "-p", str(prefix)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr
    for path in (prefix / "conda-meta").glob("*.json"):
        record = json.loads(path.read_text())
        assert record["link"] == {"source": "", "type": 1}, path  # no package-cache path
        assert "extracted_package_dir" not in record and "package_tarball_full_path" not in record
        text = path.read_text()
        assert diracos["staging_prefix"] not in text and diracos["recorded_prefix"] not in text
    packed = tmp_path / "packed.tar.gz"
    exe = Path(sys.executable).with_name("conda-pack")
    res = subprocess.run([str(exe), "-p", str(prefix), "-o", str(packed), "-q"],
                         capture_output=True, text=True, timeout=900)
    assert res.returncode == 0, res.stdout + res.stderr
    listing = subprocess.run(["tar", "-tzf", str(packed)], capture_output=True, text=True,
                             check=True).stdout.splitlines()
    assert "bin/python3.11" in listing and "bin/conda-unpack" in listing
