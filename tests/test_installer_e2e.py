"""`dxforge installer` end to end: real channels, real solve and install, real installer runs in
a pilot's site (dxforge.isolation.isolate: unprivileged, offline, read-only HOME, here with a TMPDIR
that cannot be written either) in temporary dirs."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, run_dxforge

from dxforge.core.util import Ran, user_cache
from dxforge.isolation import isolate

TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.e2e


def build(construct: Path, out: Path, *extra: str) -> dict:
    res = run_dxforge("installer", construct, "--out", out, "--json", *extra)
    return json.loads(res.stdout)


@pytest.fixture(scope="session")
def synth_channel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    dest = tmp_path_factory.mktemp("synth") / "channel"
    subprocess.run(
        [sys.executable, str(TESTS / "synth_channel.py"), str(dest)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return dest


def synth_construct(directory: Path, channel: Path, extra_specs: str = "") -> Path:
    from synth_channel import SYNTH_CONSTRUCT

    directory.mkdir(parents=True, exist_ok=True)
    text = SYNTH_CONSTRUCT.format(channel=channel, post_install=ROOT / "installer/post_install.sh")
    path = directory / "construct.yaml"
    path.write_text(text + extra_specs)
    return path


@pytest.fixture(scope="module")
def synth_installer(synth_channel: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The synthetic installer with every .pyc shipped (unchecked-hash): its smoke tests import
    only the standard library, so the default (`imported`) mode would ship little; the real
    installer's test checks that mode."""
    base = tmp_path_factory.mktemp("synth-build")
    return build(synth_construct(base, synth_channel), base / "out", "--pyc", "unchecked-hash")


class Site(isolate.Site):
    """A pilot's site (dxforge.isolation.isolate) holding a copy of an installer, whose programs get
    a TMPDIR they cannot write (``notmp``): an installer must not need one."""

    def __init__(self, installer: Path) -> None:
        if isolate.limits():
            pytest.skip("no pilot's site here: " + "; ".join(isolate.limits()))
        super().__init__()
        self.base = self.root
        self.installer = self.base / installer.name
        shutil.copy2(installer, self.installer)
        self.installer.chmod(0o644)
        self.notmp = self.base / "notmp"
        self.notmp.mkdir(mode=0o555)
        self.notmp.chmod(0o555)

    def run(
        self,
        args: list,
        *,
        env: dict | None = None,
        timeout: int = 600,  # type: ignore[override]
        **_: object,
    ) -> Ran:
        """Run ``args`` as the unprivileged user, offline, with the site's HOME and TMPDIR."""
        full = self.env(
            TMPDIR=str(self.notmp),
            LANG="C",
            PYTHONPATH="/nonexistent",
            PYTHONHOME="/nonexistent",
            LD_LIBRARY_PATH="/nonexistent",
        )
        full.update(env or {})
        return super().run(args, env=full, timeout=timeout)

    def install(
        self,
        prefix: Path,
        *flags: str,
        installer: Path | None = None,
        shell: str = "sh",
        env: dict | None = None,
    ) -> Ran:
        return self.run(
            [shell, str(installer or self.installer), "-b", *flags, "-p", str(prefix)], env=env
        )

    def listing(self) -> list[str]:
        return sorted(str(p.relative_to(self.base)) for p in self.base.rglob("*"))

    def cleanup(self) -> None:
        self.close()


@pytest.fixture
def site(synth_installer: dict) -> Iterator[Site]:
    s = Site(Path(synth_installer["installer"]))
    yield s
    s.cleanup()


def staging_leftovers(prefix: Path, staging: str) -> list[str]:
    """Installed files outside .pyc and conda-meta/ that still name ``staging``."""
    needle = staging.encode()
    bad = []
    for p in prefix.rglob("*"):
        rel = p.relative_to(prefix)
        if p.is_symlink():
            if needle in os.readlink(p).encode():
                bad.append(str(rel))
            continue
        if not p.is_file() or p.suffix == ".pyc" or rel.parts[0] == "conda-meta":
            continue
        if needle in p.read_bytes():
            bad.append(str(rel))
    return bad


def test_build_outputs(synth_installer: dict) -> None:
    s = synth_installer
    inst = Path(s["installer"])
    assert inst.name == "SYNTHOS-1.0.0-Linux-x86_64.sh"
    assert inst.stat().st_mode & 0o777 == 0o755
    data = inst.read_bytes()
    assert data.startswith(b"#!/bin/sh\n")
    sha_line = Path(s["sha256_file"]).read_text()
    assert sha_line == f"{s['sha256']}  {inst.name}\n"
    import hashlib

    assert hashlib.sha256(data).hexdigest() == s["sha256"]
    lock = Path(s["lockfile"]).read_text().splitlines()
    assert "@EXPLICIT" in lock
    urls = [line for line in lock if line.startswith("file://")]
    assert len(urls) == 3 and all("#" in u and len(u.split("#")[1]) == 32 for u in urls)
    assert {p["name"] for p in s["packages"]} == {"python", "synth-tool", "synthpy"}
    assert "synth-tool" in Path(s["package_list"]).read_text()
    assert len(s["staging_prefix"]) == len(s["recorded_prefix"]) == 240
    assert s["recorded_prefix"].startswith("/opt/dxforge-installer/SYNTHOS_placehold")
    assert s["max_prefix_len"] == 240
    assert s["relocated_files"]["binary"] == 1
    assert s["relocated_files"]["text"] >= 5
    assert s["smoke_tests"] == ["python"]
    header = len(data) - s["payload_size"] - s["decoder_size"]
    assert 2000 < header < 20000
    assert s["compression"] == "zstd" and 50_000 < s["decoder_size"] < 1_000_000
    assert f"HEADER_SIZE={header}\n".encode() in data[:header]
    from dxforge.installer.shell import verify

    assert verify(data)  # line 2 holds the sha256 of the rest, which line 3 checks


def test_install_as_unprivileged_user_offline(site: Site, synth_installer: dict) -> None:
    prefix = site.work / "x"
    res = site.install(prefix)
    assert res.returncode == 0, res.stderr
    assert "SYNTHOS 1.0.0 installed in" in res.stderr
    assert prefix.stat().st_uid == isolate.NOBODY
    assert sorted(os.listdir(site.work)) == ["x"]  # no staging directory, no lock left
    assert os.listdir(site.home) == [] and os.listdir(site.notmp) == []
    pyc_before = {p: p.stat().st_mtime_ns for p in prefix.rglob("*.pyc")}
    assert len(pyc_before) > 20  # every module's (unchecked-hash)

    script = f"""set -eu
. {prefix}/diracosrc
test "$DIRACOS" = {prefix}
test -z "${{PYTHONPATH:-}}" && test -z "${{LD_LIBRARY_PATH:-}}"
synth-tool
python -c 'import sys, synthpy, json; print(sys.prefix)'
synthpy
synth-script
synth-args
synth-sh
"""
    res = site.run(["sh", "-c", script])
    assert res.returncode == 0, res.stderr
    out = res.stdout.splitlines()
    assert out[0] == "synth-lib says hello from the prefix"
    assert out[1:] == [
        str(prefix),
        f"synthpy {prefix}",
        f"synth-script runs on {prefix}",
        "synth-args 1",
        f"synth-sh in {prefix}",
    ]
    # first imports used the shipped .pyc: nothing was rewritten
    assert {p: p.stat().st_mtime_ns for p in prefix.rglob("*.pyc")} == pyc_before

    for built in (synth_installer["staging_prefix"], synth_installer["recorded_prefix"]):
        assert staging_leftovers(prefix, built) == []
    for name in ("synthpy", "synth-script", "synth-args"):
        first = (prefix / "bin" / name).read_text().splitlines()[0]
        assert first.startswith(f"#!{prefix}/bin/python3.11"), first
    assert not (prefix / "CACHEDIR.TAG").exists()
    assert (prefix / ".diracos_version").read_text() == "SYNTHOS 1.0.0\n"
    assert (prefix / ".condarc").read_text().startswith("default_channels:\n  - conda-forge")
    assert (prefix / ".dxforge/installed").is_file()
    # the record names every file the install wrote with its sha256 as installed
    import hashlib

    record = json.loads((prefix / ".dxforge/record.json").read_text())
    assert len(record["files"]) > 100
    for rel, digest in record["files"].items():
        p = prefix / rel
        got = (
            "link:" + os.readlink(p)
            if p.is_symlink()
            else hashlib.sha256(p.read_bytes()).hexdigest()
        )
        assert got == digest, rel


def test_conda_meta_valid_and_manageable(site: Site) -> None:
    prefix = site.work / "m"
    assert site.install(prefix).returncode == 0
    records = sorted((prefix / "conda-meta").glob("*.json"))
    assert len(records) == 3
    for path in records:
        assert path.stat().st_mode & 0o644 == 0o644
        record = json.loads(path.read_text())
        assert "extracted_package_dir" not in record and record["link"] == {"source": "", "type": 1}
        for entry in record["paths_data"]["paths"]:
            if "sha256_in_prefix" in entry and entry["path_type"] != "softlink":
                import hashlib

                data = (prefix / entry["_path"]).read_bytes()
                assert hashlib.sha256(data).hexdigest() == entry["sha256_in_prefix"]
                assert len(data) == entry["size_in_bytes"]
    tool = json.loads((prefix / "conda-meta/synthpy-2.0-synth_0.json").read_text())
    assert (
        "lib/python3.11/site-packages/synthpy/__pycache__/helper.cpython-311.pyc" in (tool["files"])
    )
    # rattler reads the records and removes a package with its compiled files
    code = f"""
import asyncio, os, pathlib, rattler
prefix = pathlib.Path({str(prefix)!r})
installed = [rattler.PrefixRecord.from_path(p) for p in sorted(prefix.glob("conda-meta/*.json"))]
keep = [r for r in installed if r.name.normalized != "synthpy"]
asyncio.run(rattler.install(keep, prefix, installed_packages=installed, show_progress=False))
print("ok", flush=True)
os._exit(0)
"""
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert res.returncode == 0 and "ok" in res.stdout, res.stderr
    assert not (prefix / "lib/python3.11/site-packages/synthpy").exists()
    assert not (prefix / "bin/synthpy").exists()
    assert (prefix / "bin/synth-tool").exists()


def flip_byte(src: Path, dst: Path, offset_from_end: int) -> None:
    data = bytearray(src.read_bytes())
    data[len(data) - offset_from_end] ^= 0x01
    dst.write_bytes(bytes(data))
    dst.chmod(0o644)


def test_flipped_byte_refused_nothing_written(site: Site) -> None:
    bad = site.base / "flipped.sh"
    flip_byte(site.installer, bad, 5000)
    before = site.listing()
    res = site.install(site.work / "new/x", installer=bad)
    assert res.returncode != 0
    assert "cannot verify" in res.stderr and "download it again" in res.stderr
    assert site.listing() == before


@pytest.mark.parametrize("cut", [100, 10_000_000, -1])
def test_truncated_installer_refused(site: Site, cut: int) -> None:
    data = site.installer.read_bytes()
    bad = site.base / "truncated.sh"
    bad.write_bytes(data[: len(data) - cut] if cut > 0 else data[:600])
    bad.chmod(0o644)
    before = site.listing()
    res = site.install(site.work / "t", installer=bad)
    assert res.returncode != 0
    assert "truncated" in res.stderr, res.stderr
    assert site.listing() == before


def test_second_install_refused_update_replaces(site: Site) -> None:
    prefix = site.work / "u"
    assert site.install(prefix).returncode == 0
    sentinel = prefix / "user-file"
    site.run(["sh", "-c", f"echo mine > {sentinel}"])
    before = site.listing()
    res = site.install(prefix)
    assert res.returncode == 1
    assert "already exists and is not empty; use -u" in res.stderr
    assert site.listing() == before and sentinel.read_text() == "mine\n"

    res = site.install(prefix, "-u", shell="bash")
    assert res.returncode == 0, res.stderr
    assert sentinel.read_text() == "mine\n"  # not the installer's: an update keeps it
    assert sorted(os.listdir(site.work)) == ["u"]
    res = site.run(["sh", "-c", f". {prefix}/diracosrc && synth-tool"])
    assert res.returncode == 0 and "hello" in res.stdout


def test_force_into_foreign_directory_keeps_its_files(site: Site) -> None:
    prefix = site.work / "foreign"
    site.run(["sh", "-c", f"mkdir {prefix} && echo keep > {prefix}/notes.txt"])
    res = site.install(prefix, "-u")
    assert res.returncode == 1 and "is not one (it has no .dxforge/)" in res.stderr
    res = site.install(prefix, "-f")
    assert res.returncode == 0, res.stderr
    assert (prefix / "notes.txt").read_text() == "keep\n"
    assert site.run([str(prefix / "bin/synth-tool")]).returncode == 0
    assert sorted(os.listdir(site.work)) == ["foreign"]


def test_empty_existing_prefix_is_fine(site: Site) -> None:
    prefix = site.work / "empty"
    site.run(["mkdir", str(prefix)])
    res = site.install(prefix)
    assert res.returncode == 0, res.stderr


def slow_tar(site: Site, seconds: int = 30) -> Path:
    """A directory with a ``tar`` that waits before it works: an install to interrupt."""
    slow = site.base / "slowbin"
    slow.mkdir(mode=0o755)
    (slow / "tar").write_text(f'#!/bin/sh\nsleep {seconds}\nexec {shutil.which("tar")} "$@"\n')
    (slow / "tar").chmod(0o755)
    return slow


def start_install(site: Site, prefix: Path, path: str) -> subprocess.Popen[bytes]:
    env = site.env(path=path, TMPDIR=str(site.notmp))
    return subprocess.Popen(
        site.command(["sh", str(site.installer), "-b", "-p", str(prefix)], env),
        cwd=site.work,
        start_new_session=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def test_killed_install_leaves_nothing_finished_and_rerun_succeeds(site: Site) -> None:
    prefix = site.work / "k"
    proc = start_install(site, prefix, f"{slow_tar(site)}:/usr/bin:/bin")
    deadline = time.monotonic() + 60
    while not list(site.work.glob(".k.dxforge-tmp.*")) and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert list(site.work.glob(".k.dxforge-tmp.*")), "the install never started"
    assert not prefix.exists()

    res = site.install(prefix)
    assert res.returncode == 0, res.stderr
    assert "left by an interrupted install" in res.stderr
    assert sorted(os.listdir(site.work)) == ["k"]


def test_three_pilots_installing_into_one_prefix_at_once(site: Site) -> None:
    """One installs, the others wait for it and find it done, naming it; nothing of theirs is
    mistaken for an interrupted install, and the prefix then works."""
    prefix = site.work / "shared"
    slow = slow_tar(site, 3)
    procs = [start_install(site, prefix, f"{slow}:/usr/bin:/bin") for _ in range(3)]
    outs = [p.communicate(timeout=300) for p in procs]
    codes = [p.returncode for p in procs]
    errs = [e.decode() for _o, e in outs]
    assert codes == [0, 0, 0], errs
    assert sum("installed in" in e and "was installed in" not in e for e in errs) == 1, errs
    others = [e for e in errs if "was installed in" in e]
    assert len(others) == 2
    assert all(f"{os.uname().nodename} " in e for e in others if "waiting for the install" in e)
    assert not any("interrupted install" in e or "disk full" in e or "Cannot" in e for e in errs), (
        errs
    )
    assert sorted(os.listdir(site.work)) == ["shared"]
    assert site.run([str(prefix / "bin/synth-tool")]).returncode == 0


def test_a_second_install_gives_up_naming_the_first(site: Site) -> None:
    """Another install of the same user holds the lock: this one waits (bounded, saying so),
    then gives up naming it."""
    prefix = site.work / "busy"
    lock = site.work / ".busy.dxforge-lock"
    holder = subprocess.Popen(
        site.command(
            ["sh", "-c", f'echo "pilot-host 4242" > {lock} && exec flock {lock} sleep 60']
        ),
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while not (lock.exists() and lock.stat().st_size) and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)
    try:
        res = site.install(prefix, env={"DXFORGE_LOCK_WAIT": "1"})
    finally:
        os.killpg(holder.pid, signal.SIGKILL)
        holder.wait()
    assert res.returncode == 1
    assert "waiting for the install into" in res.stderr and "(at most 1 s;" in res.stderr
    assert "is being installed by pilot-host 4242" in res.stderr, res.stderr
    assert "did not finish within 1 s" in res.stderr
    assert sorted(os.listdir(site.work)) == [".busy.dxforge-lock"]  # its holder's, kept


def test_an_install_left_without_its_stamp_is_updated(site: Site) -> None:
    prefix = site.work / "half"
    assert site.install(prefix).returncode == 0
    # an install of an older installer, moved in place and never marked finished
    (prefix / ".dxforge/installed").unlink()
    (prefix / ".dxforge/record.json").unlink()
    (prefix / "diracosrc").unlink()
    res = site.install(prefix)
    assert res.returncode == 1 and "already exists and is not empty" in res.stderr
    res = site.install(prefix, "-u")
    assert res.returncode == 0, res.stderr
    assert "holds an unfinished install of an older installer; updating it" in res.stderr
    assert (prefix / "diracosrc").is_file() and (prefix / ".dxforge/installed").is_file()


@pytest.mark.parametrize(
    ("prefix", "message"),
    [
        ("with blank/x", "contains a blank or a shell-special character"),
        ("semi;colon", "contains a blank or a shell-special character"),
        ("a:b", "contains a blank or a shell-special character"),
        ("long/" + "d" * 240, "this installer allows at most 240"),
        ("..", "must end in a directory name"),
    ],
)
def test_bad_prefixes_refused(site: Site, prefix: str, message: str) -> None:
    before = site.listing()
    res = site.install(site.work / prefix)
    assert res.returncode == 1
    assert message in res.stderr, res.stderr
    assert site.listing() == before


def test_relative_prefix_and_help(site: Site) -> None:
    res = site.run(["sh", str(site.installer), "-b", "-p", "rel/x"])
    assert res.returncode == 0, res.stderr
    assert (site.work / "rel/x/diracosrc").read_text().count(f"DIRACOS='{site.work}/rel/x'") == 1
    res = site.run(["sh", str(site.installer), "-h"])
    assert res.returncode == 2 and "-p PREFIX" in res.stdout and "-u" in res.stdout
    assert f"default: {site.work}/synthos" in res.stdout


def test_sourcing_the_installer_is_refused(site: Site, synth_installer: dict) -> None:
    before = site.listing()
    res = site.run(["sh", "-c", f". {site.installer}"])
    assert "it was sourced (run it with sh)" in res.stderr and "cannot open" not in res.stderr
    # bash refuses a file with NUL bytes by itself; the header alone (text) is what a shell
    # that reads it runs: it must refuse being sourced in bash too, and write nothing
    data = site.installer.read_bytes()
    header = site.base / "header-only.sh"
    header.write_bytes(
        data[: len(data) - synth_installer["payload_size"] - synth_installer["decoder_size"]]
    )
    header.chmod(0o644)
    before = site.listing()
    for shell in ("bash", "sh"):  # the refusal returns from the sourced file, not the shell
        res = site.run([shell, "-c", f". {header}; echo returned $?"])
        assert res.stdout.strip() == "returned 3", (shell, res.stdout, res.stderr)
        assert "it was sourced (run it with sh)" in res.stderr, (shell, res.stderr)
    assert site.listing() == before


def test_diracosrc_set_u_set_x_and_x509(site: Site) -> None:
    prefix = site.work / "rc"
    assert site.install(prefix).returncode == 0
    certs = site.work / "certs"
    site.run(["sh", "-c", f"mkdir -p {certs} {site.work}/emptyvoms && touch {certs}/ca.pem"])
    script = f"""set -eux
X509_CERT_DIR={certs}; X509_VOMS_DIR={site.work}/emptyvoms; export X509_CERT_DIR X509_VOMS_DIR
. {prefix}/diracosrc
echo "CERT=$X509_CERT_DIR VOMS=$X509_VOMS_DIR VOMSES=$X509_VOMSES"
"""
    for shell in ("sh", "bash"):
        res = site.run([shell, "-c", script])
        assert res.returncode == 0, res.stderr
        etc = Path("/etc/grid-security/vomsdir")
        voms = etc if etc.is_dir() and any(etc.iterdir()) else prefix / "etc/grid-security/vomsdir"
        assert res.stdout.strip().startswith(f"CERT={certs} VOMS={voms} VOMSES=")
        traced = [line for line in res.stderr.splitlines() if line.startswith("+")]
        start = next(i for i, line in enumerate(traced) if line.startswith("+ . "))
        inner = traced[start + 1 : -1]  # what diracosrc traced: switching xtrace off, no more
        assert inner[-1].endswith("+ set +x") and len(inner) <= 2, traced


BASE_TOOLS = (
    "sh",
    "tail",
    "tar",
    "gzip",
    "sha256sum",
    "cut",
    "wc",
    "head",
    "dirname",
    "basename",
    "cat",
    "sed",
    "ls",
    "mkdir",
    "df",
    "awk",
    "rm",
    "mv",
    "uname",
    "chmod",
    "flock",
    "stat",
    "getconf",
    "date",
    "env",
    "printf",
    "rmdir",
    "cksum",
    "mktemp",
)


def base_tools(site: Site) -> Path:
    """A directory with only the base tools of a minimal image (no zstd, no xz)."""
    tools = site.base / "tools"
    tools.mkdir(mode=0o755)
    for t in BASE_TOOLS:
        if shutil.which(t):
            (tools / t).symlink_to(shutil.which(t))
    return tools


def test_zstd_installer_needs_no_zstd_command(synth_installer: dict) -> None:
    """The default payload is zstd, decoded by the installer's own static decoder (its first
    stage, sha256-checked): a system with no zstd installs it."""
    assert synth_installer["compression"] == "zstd"
    s = Site(Path(synth_installer["installer"]))
    try:
        tools = base_tools(s)
        assert not (tools / "zstd").exists()
        res = s.install(s.work / "z", env={"PATH": str(tools)})
        assert res.returncode == 0, res.stderr
        assert s.run([str(s.work / "z/bin/synth-tool")]).returncode == 0
        assert sorted(os.listdir(s.work)) == ["z"]  # the decoder went with the staging dir
    finally:
        s.cleanup()


def test_a_damaged_decoder_is_refused_before_anything_is_written(synth_installer: dict) -> None:
    s = Site(Path(synth_installer["installer"]))
    try:
        data = bytearray(s.installer.read_bytes())
        header = len(data) - synth_installer["payload_size"] - synth_installer["decoder_size"]
        data[header + 100] ^= 0x01
        bad = s.base / "bad-decoder.sh"
        bad.write_bytes(bytes(data))
        bad.chmod(0o644)
        before = s.listing()
        res = s.install(s.work / "d", installer=bad)
        assert res.returncode == 3 and "cannot verify" in res.stderr, res.stderr
        assert s.listing() == before
    finally:
        s.cleanup()


def test_a_missing_decompressor_is_named(synth_channel: Path, tmp_path: Path) -> None:
    info = build(synth_construct(tmp_path, synth_channel), tmp_path / "out", "--compression", "xz")
    assert info["compression"] == "xz" and info["decoder_size"] == 0
    s = Site(Path(info["installer"]))
    try:
        tools = base_tools(s)
        before = s.listing()
        res = s.install(s.work / "x", env={"PATH": str(tools)})
        assert res.returncode == 1
        assert "needs the 'xz' command, which is not installed here" in res.stderr
        assert s.listing() == before
        assert s.install(s.work / "x").returncode == 0
    finally:
        s.cleanup()


def test_construct_keys_take_effect(synth_channel: Path, tmp_path: Path) -> None:
    """company, keep_pkgs with transmute_file_type, and virtual_specs at install time, in a
    real installer."""
    construct = synth_construct(tmp_path, synth_channel)
    text = construct.read_text().replace(
        "keep_pkgs: false\n", "keep_pkgs: true\ntransmute_file_type: .conda\n"
    )
    construct.write_text(
        text + "company: DIRAC Consortium\nvirtual_specs:\n  - __linux >=3.2\n  - __unix\n"
    )
    info = build(construct, tmp_path / "out")
    s = Site(Path(info["installer"]))
    try:
        res = s.run(["sh", str(s.installer), "-h"])
        assert res.returncode == 2 and "(linux-64) by DIRAC Consortium, offline" in res.stdout
        prefix = s.work / "kept"
        assert s.install(prefix).returncode == 0
        kept = sorted(p.name for p in (prefix / "pkgs").iterdir())
        assert kept == sorted([*(p["file_name"] for p in info["packages"]), "urls.txt"])
        urls = (prefix / "pkgs/urls.txt").read_text().splitlines()
        assert all(u.startswith("file:///opt/dxforge/channels/") for u in urls), urls
        before = s.listing()
        res = s.install(s.work / "old-kernel", env={"CONDA_OVERRIDE_LINUX": "3.1"})
        assert res.returncode == 1
        assert "Installer requires Linux >=3.2, but system has 3.1." in res.stderr
        assert s.listing() == before
    finally:
        s.cleanup()


def test_a_future_kernel_fails_the_install_with_constructors_wording(
    synth_channel: Path, tmp_path: Path
) -> None:
    construct = synth_construct(tmp_path, synth_channel)
    construct.write_text(construct.read_text() + "virtual_specs:\n  - __linux >=99\n")
    info = build(construct, tmp_path / "out")
    s = Site(Path(info["installer"]))
    try:
        before = s.listing()
        res = s.install(s.work / "k")
        assert res.returncode == 1
        kernel = re.match(r"[0-9.]*[0-9]", os.uname().release)
        assert kernel is not None
        assert f"Installer requires Linux >=99, but system has {kernel[0]}." in res.stderr
        assert s.listing() == before
    finally:
        s.cleanup()


def test_unsatisfiable_spec_is_named(synth_channel: Path, tmp_path: Path) -> None:
    construct = synth_construct(tmp_path, synth_channel, "  - nothing-like-this >=1\n")
    res = run_dxforge("installer", construct, "--out", tmp_path / "out", check=False)
    assert res.returncode == 1
    assert "`nothing-like-this >=1`" in res.stderr
    assert not list((tmp_path / "out").glob("*.sh"))


def test_unknown_key_fails_before_work(tmp_path: Path) -> None:
    (tmp_path / "construct.yaml").write_text(
        "name: A\nversion: 1\nchannels: [x]\nspecs: [python]\nbatchmode: true\n"
    )
    res = run_dxforge(
        "installer", tmp_path / "construct.yaml", "--out", tmp_path / "out", check=False
    )
    assert res.returncode == 1 and "did you mean `batch_mode`" in res.stderr


def test_payload_deterministic_and_xz(tmp_path: Path) -> None:
    from dxforge.installer.payload import pack

    src = tmp_path / "src"
    (src / "bin").mkdir(parents=True)
    (src / "bin/tool").write_text("#!/bin/sh\n")
    (src / "bin/tool").chmod(0o777)
    (src / "b.txt").write_text("b")
    (src / "a.txt").write_text("a")
    (src / "link").symlink_to("a.txt")
    os.link(src / "a.txt", src / "hard.txt")
    one = pack(src, tmp_path / "one.tar.gz", "gzip", epoch=1_600_000_000)
    time.sleep(0.01)
    (src / "b.txt").touch()
    two = pack(src, tmp_path / "two.tar.gz", "gzip", epoch=1_600_000_000)
    assert one.sha256 == two.sha256 and one.members == 6
    xz = pack(src, tmp_path / "p.tar.xz", "xz", epoch=1_600_000_000)
    listing = subprocess.run(
        ["sh", "-c", f"xz -dc {xz.path} | tar -tvf -"], capture_output=True, text=True, check=True
    ).stdout
    assert "bin/tool" in listing
    with tarfile.open(xz.path) as tar:
        members = tar.getmembers()
    assert [m.name for m in members] == ["a.txt", "b.txt", "bin", "bin/tool", "hard.txt", "link"]
    for m in members:
        assert m.uid == 0 and m.gid == 0 and m.mtime == 1_600_000_000
        assert m.issym() or not m.mode & 0o022
        assert not m.islnk()
    assert stat.S_IMODE(next(m for m in members if m.name == "bin/tool").mode) == 0o755


# ---- the real thing: seed + dxforge channels (fixture `dxforge_channels` in conftest.py) ----


def test_real_diracos_installer(dxforge_channels: tuple[Path, Path], diracos: dict) -> None:
    # the repository's construct.yaml: its ./build/channels follow --build-dir
    info = diracos
    dx, seed = dxforge_channels
    assert info["channels"] == [dx.as_uri(), seed.as_uri()]
    names = {p["name"] for p in info["packages"]}
    assert {
        "python",
        "pip",
        "git",
        "voms",
        "openssl",
        "diracx",
        "diracx-core",
        "diracx-cli",
    } <= names
    assert "dirac --help" in info["smoke_tests"] and "git --version" in info["smoke_tests"]
    assert "voms-proxy-init --version" in info["smoke_tests"]
    # the floor: every ELF file needs glibc 2.28 at most (EL8), as construct.yaml declares
    assert info["glibc_floor"] == "2.28" and tuple(map(int, info["glibc_needed"].split("."))) <= (
        2,
        28,
    )
    assert info["size"] <= 40 << 20 and info["size"] <= 1.15 * info["packages_size"]
    s = Site(Path(info["installer"]))
    try:
        prefix = s.work / "x"
        res = s.install(prefix, shell="bash")
        assert res.returncode == 0, res.stderr
        script = f"""set -eu
source {prefix}/diracosrc
python -c "import diracx.core, diracx.cli, sys; assert sys.prefix == '{prefix}'"
dirac --help
git --version
pip --version
"""
        res = s.run(["bash", "-c", script])
        assert res.returncode == 0, res.stdout + res.stderr
        # no build path: the staging and recorded prefixes, the build tree, the seed's
        # placeholder, the host python
        from dxforge.conda.package import PLACEHOLDER

        for build_path in (
            info["staging_prefix"],
            info["recorded_prefix"],
            str(ROOT / "build"),
            PLACEHOLDER,
            sys.base_prefix,
        ):
            assert staging_leftovers(prefix, build_path) == [], build_path
        # stripped: no ELF file carries debug sections (the wheels' ones neither)
        from dxforge.conda.elf import debug_sections, walk_elf

        elves = list(walk_elf(prefix))
        assert len(elves) > 100
        assert [str(e.path) for e in elves if debug_sections(e.path)] == []
    finally:
        s.cleanup()


def test_long_prefix_keeps_working_shebangs(site: Site) -> None:
    # a pilot-like deep work dir: shebangs cannot hold it (> 127 bytes), binaries still can
    deep = site.work / "pilot+job@site=1,x%2"
    prefix = deep / ("d" * (230 - len(str(deep)) - 1))
    assert 127 < len(str(prefix)) + len("/bin/python3.11") + 2 and len(str(prefix)) <= 240
    res = site.install(prefix)
    assert res.returncode == 0, res.stderr
    first = (prefix / "bin/synthpy").read_text().splitlines()[:2]
    assert first[0] == "#!/bin/sh" and f'"{prefix}/bin/python3.11"' in first[1]
    res = site.run(["sh", "-c", f". {prefix}/diracosrc && synthpy && synth-script && synth-tool"])
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines() == [
        f"synthpy {prefix}",
        f"synth-script runs on {prefix}",
        "synth-lib says hello from the prefix",
    ]


def test_post_install_environment_and_failure_rollback(synth_channel: Path, tmp_path: Path) -> None:
    post = tmp_path / "post.sh"
    post.write_text(
        '#!/bin/sh\nset -eu\n[ -z "${DX_FAIL:-}" ] || exit 3\n'
        'printf "%s|%s|%s|%s|%s|%s\\n" "$PREFIX" "$INSTALLER_NAME" "$INSTALLER_VER" '
        '"$INSTALLER_PLAT" "$SITE_NOTE" "$(pwd)" > "$PREFIX/env.txt"\n'
        'touch "$TMPDIR/scratch"\n'
    )
    construct = synth_construct(tmp_path, synth_channel)
    text = construct.read_text().replace(str(ROOT / "installer/post_install.sh"), str(post))
    construct.write_text(text + 'script_env_variables:\n  SITE_NOTE: "it\'s $HOME"\n')
    info = build(construct, tmp_path / "out")
    s = Site(Path(info["installer"]))
    try:
        prefix = s.work / "p"
        res = s.install(prefix)
        assert res.returncode == 0, res.stderr
        fields = (prefix / "env.txt").read_text().strip().split("|")
        assert fields[:5] == [str(prefix), "SYNTHOS", "1.0.0", "linux-64", "it's $HOME"]
        assert sorted(os.listdir(s.work)) == ["p"]

        before = s.listing()
        res = s.install(s.work / "q", env={"DX_FAIL": "1"})
        assert res.returncode == 1 and "post-install script failed" in res.stderr
        assert s.listing() == before

        res = s.install(prefix, "-u", env={"DX_FAIL": "1"})
        assert res.returncode == 1 and "restored the previous install" in res.stderr
        assert s.listing() == before and (prefix / ".dxforge/installed").is_file()
    finally:
        s.cleanup()


def test_installer_bytes_do_not_depend_on_where_or_when(
    synth_channel: Path, tmp_path: Path
) -> None:
    """Two builds from the same channels, in output directories of different lengths, a
    while apart: the installer, its lockfile and package list are byte-identical."""
    construct = synth_construct(tmp_path / "c", synth_channel)
    one = build(construct, tmp_path / "one", "--force")
    time.sleep(1.1)
    two = build(construct, tmp_path / "a-much-longer-output-directory" / "two", "--force")
    assert one["status"] == two["status"] == "built"
    assert one["staging_prefix"] != two["staging_prefix"]
    assert one["recorded_prefix"] == two["recorded_prefix"]
    assert one["sha256"] == two["sha256"] and one["fingerprint"] == two["fingerprint"]
    for key in ("installer", "lockfile", "package_list", "sha256_file"):
        assert Path(one[key]).read_bytes() == Path(two[key]).read_bytes(), key


def test_an_installer_built_before_comes_from_the_user_cache(
    synth_channel: Path, tmp_path: Path
) -> None:
    """Another output directory (another clone): the same installer, copied from the user
    cache, with the same result; a damaged cache entry is built again; a changed
    construct.yaml is a new installer."""
    construct = synth_construct(tmp_path / "c", synth_channel)
    first = build(construct, tmp_path / "one")
    again = build(construct, tmp_path / "two")
    assert again["status"] == "cached" and again["fingerprint"] == first["fingerprint"]
    for key in ("sha256", "size", "glibc_floor", "smoke_tests", "relocated_files", "packages"):
        assert again[key] == first[key], key
    for key in ("installer", "lockfile", "package_list", "sha256_file"):
        assert Path(again[key]).read_bytes() == Path(first[key]).read_bytes(), key
    entry = user_cache() / "installers" / first["fingerprint"][:24]
    (entry / Path(first["installer"]).name).write_bytes(b"damaged")
    third = build(construct, tmp_path / "three")
    assert third["status"] == "built" and third["sha256"] == first["sha256"]
    assert build(construct, tmp_path / "four")["status"] == "cached"
    construct.write_text(construct.read_text() + "\n# a new line: a new fingerprint\n")
    assert build(construct, tmp_path / "five")["status"] == "built"


def test_summary_outside_a_terminal_is_not_cut(synth_channel: Path, tmp_path: Path) -> None:
    """In a log (not a terminal, 80 columns), the installer's path and sha256 are whole."""
    construct = synth_construct(tmp_path, synth_channel)
    out = tmp_path / ("a-long-directory-name-" * 3) / "out"
    res = run_dxforge("installer", construct, "--out", out, env={"COLUMNS": "80"})
    info = json.loads(run_dxforge("installer", construct, "--out", out, "--json").stdout)
    lines = res.stdout.splitlines()  # the result on stdout, progress on stderr
    assert any(ln.split() == ["installer:", info["installer"]] for ln in lines), res.stdout
    assert any(ln.split() == ["sha256:", info["sha256"]] for ln in lines), res.stdout
    assert "…" not in res.stdout + res.stderr
    assert "installer: solving" in res.stderr and "installer: solving" not in res.stdout
