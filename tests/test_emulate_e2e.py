"""arm64 Debian roots (11, 12, 13) run here under the namespaced emulation
(dxforge.isolation.emulate): as an unprivileged uid, offline, ``uname -m`` is aarch64 and python's
ssl imports, child processes included; the machine's own binfmt_misc gains nothing."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from dxforge.core.util import user_cache
from dxforge.isolation import emulate, roots
from dxforge.isolation.isolate import NOBODY

pytestmark = pytest.mark.e2e
RELEASES = ("bullseye", "bookworm", "trixie")
PROBE = (
    "uname -m; id -u; "
    "python3 -c 'import ssl, socket; print(ssl.OPENSSL_VERSION); "
    "print(sorted(n for _, n in socket.if_nameindex())); "
    's = socket.socket(); s.settimeout(2); print(s.connect_ex(("192.0.2.1", 80)) != 0)\''
)


def machine_binfmt() -> list[str] | None:
    """The machine's binfmt_misc entries (None when it is not mounted)."""
    return sorted(os.listdir(emulate.BINFMT)) if (emulate.BINFMT / "register").exists() else None


@pytest.mark.parametrize("release", RELEASES)
def test_an_arm64_root_runs_unprivileged_and_offline(release: str, tmp_path: Path) -> None:
    why = emulate.why_not()
    if why:
        pytest.skip(f"no namespaced emulation here: {why}")
    before = machine_binfmt()
    cache = user_cache()
    root = roots.make(emulate.root_spec(release, "aarch64", ["python3"]), tmp_path / "r", cache)
    try:
        assert (root / "etc/passwd").read_text().startswith("root:")
        qemu = emulate.qemu("aarch64", cache)
        cmd = emulate.command(
            root, ["sh", "-c", PROBE], machine="aarch64", interpreter=qemu, user=NOBODY
        )
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
        assert res.returncode == 0, res.stdout + res.stderr
        lines = res.stdout.splitlines()
        assert lines[0] == "aarch64"
        assert lines[1] == str(NOBODY)
        assert lines[2].startswith("OpenSSL ")
        assert lines[3] == "['lo']" and lines[4] == "True"  # offline
        assert machine_binfmt() == before
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert machine_binfmt() == before


def test_an_arm64_root_made_with_its_maintainer_scripts_builds_c(tmp_path: Path) -> None:
    """A minbase arm64 root whose maintainer scripts ran under the emulation (the native build
    root's route): ``cc`` and ``awk`` exist, a C program compiles and runs; the host's /etc
    (the chrootless trap) and binfmt_misc are unchanged."""
    why = emulate.why_not()
    if why:
        pytest.skip(f"no namespaced emulation here: {why}")
    before = machine_binfmt()
    etc = {p: p.stat().st_mtime_ns for p in Path("/etc/pam.d").iterdir()}
    cache = user_cache()
    spec = roots.RootSpec("bookworm", "minbase", ("gcc", "libc6-dev"), "arm64")
    root = roots.extract(emulate.tarball(spec, cache), tmp_path / "r")
    try:
        probe = (
            "awk 'BEGIN { print \"awk\" }' && printf 'int main(void){return 0;}' > /tmp/t.c "
            "&& cc /tmp/t.c -o /tmp/t && /tmp/t && echo compiled && uname -m"
        )
        cmd = emulate.command(
            root,
            ["sh", "-c", probe],
            machine="aarch64",
            interpreter=emulate.qemu("aarch64", cache),
            user=NOBODY,
        )
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=900)
        assert res.returncode == 0, res.stdout + res.stderr
        assert res.stdout.split() == ["awk", "compiled", "aarch64"]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert machine_binfmt() == before
    assert {p: p.stat().st_mtime_ns for p in Path("/etc/pam.d").iterdir()} == etc
