"""The DIRACOS installer on other Linux systems: minimal Debian 11, 12 and 13 roots (mmdebstrap
minbase, cached in the user cache: no zstd, no xz there), /proc mounted, no network, an
unprivileged user with a read-only HOME. In each, the pilot script (data/pilot-test.sh) installs
it and runs every pilot check: python (ssl with OpenSSL 3 and the bundled CA certificates,
ctypes, sqlite3, lzma, bz2, zlib, uuid, readline, tarfile's filters, diracx.core), DIRACOS2's
(every top-level module imports from inside the prefix, ``git --exec-path`` inside it, pip
installs from an index on 127.0.0.1), dirac, git, and VOMS (voms-proxy-init, voms-proxy-fake with
a VO and an FQAN, voms-proxy-info, voms-verify, voms-proxy-destroy, the proxy loaded by python's
ssl) with a throwaway CA made with the prefix's openssl. Also: the header refuses glibc 2.27 and
takes 2.28 (the floor), and conda-pack reads an installed prefix."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import assert_pilot_checks

from dxforge.checks.pilot import run_in_root
from dxforge.conda.elf import lint
from dxforge.core.util import user_cache
from dxforge.isolation import roots
from dxforge.isolation.isolate import Site, limits

pytestmark = pytest.mark.e2e
RELEASES = {"bullseye": "Debian 11", "bookworm": "Debian 12", "trixie": "Debian 13"}


@pytest.mark.parametrize("release", sorted(RELEASES))
def test_pilot_on_minimal_debian(release: str, diracos: dict, tmp_path: Path) -> None:
    why = roots.why_not()
    if why:
        pytest.skip(f"no Debian root here: {why}")
    root = roots.make(roots.RootSpec(release), tmp_path / "root", user_cache())
    try:
        for tool in ("zstd", "xz"):
            assert not any((root / d / tool).exists() for d in ("bin", "usr/bin")), tool
        installer = Path(diracos["installer"])
        result = run_in_root(installer, root, tmp_path / "log", RELEASES[release], timeout=900)
        assert result.status == "passed", result
        assert_pilot_checks(result.checks)
        assert os.listdir(root / "home") == []
        # nothing of the build machine: every library the installed files load is in the prefix
        assert lint(root / "work/diracos").problems == []
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(root)], check=False)
        shutil.rmtree(root, ignore_errors=True)


def test_glibc_below_the_floor_is_refused_before_anything_is_written(diracos: dict) -> None:
    """EL8's 2.28 is the floor: 2.27 is refused naming both versions, 2.28 installs."""
    floor = diracos["glibc_floor"]
    assert floor == "2.28"
    if limits():
        pytest.skip("no pilot's site here: " + "; ".join(limits()))
    with Site() as site:
        copy = site.root / Path(diracos["installer"]).name
        shutil.copy2(diracos["installer"], copy)
        copy.chmod(0o644)
        res = site.run(
            ["sh", copy, "-b", "-p", site.work / "X"], env=site.env(CONDA_OVERRIDE_GLIBC="2.27")
        )
        assert res.returncode == 1
        assert "Installer requires GLIBC >=2.28, but system has 2.27." in res.stderr
        assert os.listdir(site.work) == []  # no X, no staging directory or lock next to it
        res = site.run(
            ["sh", copy, "-b", "-p", site.work / "Y"], env=site.env(CONDA_OVERRIDE_GLIBC="2.28")
        )
        assert res.returncode == 0, res.stderr
        assert os.listdir(site.work) == ["Y"]


def test_conda_pack_reads_an_installed_prefix(diracos: dict, tmp_path: Path) -> None:
    prefix = tmp_path / "diracos"
    res = subprocess.run(
        ["sh", diracos["installer"], "-b", "-p", str(prefix)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert res.returncode == 0, res.stderr
    for path in (prefix / "conda-meta").glob("*.json"):
        record = json.loads(path.read_text())
        assert record["link"] == {"source": "", "type": 1}, path  # no package-cache path
        assert "extracted_package_dir" not in record and "package_tarball_full_path" not in record
        text = path.read_text()
        assert diracos["staging_prefix"] not in text and diracos["recorded_prefix"] not in text
    packed = tmp_path / "packed.tar.gz"
    exe = Path(sys.executable).with_name("conda-pack")
    res = subprocess.run(
        [str(exe), "-p", str(prefix), "-o", str(packed), "-q"],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert res.returncode == 0, res.stdout + res.stderr
    listing = subprocess.run(
        ["tar", "-tzf", str(packed)], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    python = next(n for n in listing if n.startswith("bin/python3.") and n.count(".") == 1)
    assert python and "bin/conda-unpack" in listing
