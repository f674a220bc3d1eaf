"""The installer in shared and hostile directories, as issue 22 found them: two unprivileged
users sharing a group (numeric uids 1701 and 1702, group 1700, through setpriv: nothing added
to /etc), in a sticky (1777) parent and a group-writable setgid (2775) one, a real synthetic
installer. fs.protected_* is not relied on: the attacks run in the 2775 parent too, where the
kernel's protections for sticky directories do not apply.

Each test is the user's or the attacker's sequence; its name says the finding."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_installer_e2e import build, synth_construct

from dxforge.isolation import isolate

pytestmark = pytest.mark.e2e

TESTS = Path(__file__).resolve().parent
A, B, GROUP = 1701, 1702, 1700
ESCAPES = "\x1b[2J\x1b[31mrun rm -rf ~/.ssh\x1b[0m"


@pytest.fixture(scope="module")
def installer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic installer (gzip payload: no runtime decoder needed), readable by all."""
    if os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("two unprivileged users need root and setpriv (util-linux)")
    given = os.environ.get("DXFORGE_SHARED_INSTALLER")  # e.g. an older build, to compare
    if given:
        return Path(given)
    base = tmp_path_factory.mktemp("shared-build")
    channel = base / "channel"
    subprocess.run(
        [sys.executable, str(TESTS / "synth_channel.py"), str(channel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    info = build(
        synth_construct(base, channel),
        base / "out",
        "--compression",
        "gzip",
        "--pyc",
        "unchecked-hash",
    )
    return Path(info["installer"])


class Shared:
    """A shared area: ``sticky`` (1777) and ``group`` (2775, group 1700) parents, the installer
    readable by both users, a read-only HOME and an unwritable TMPDIR."""

    def __init__(self, installer: Path) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="dxforge-shared-"))
        self.root.chmod(0o755)
        self.installer = self.root / installer.name
        shutil.copy(installer, self.installer)
        self.installer.chmod(0o644)
        self.home = self.root / "home"
        self.home.mkdir(mode=0o555)
        self.sticky = self.root / "sticky"
        self.sticky.mkdir()
        self.sticky.chmod(0o1777)
        self.group = self.root / "group"
        self.group.mkdir()
        os.chown(self.group, 0, GROUP)
        self.group.chmod(0o2775)

    def parent(self, kind: str) -> Path:
        return {"sticky": self.sticky, "group": self.group}[kind]

    def command(self, uid: int, argv: list[str], umask: str = "022") -> list[str]:
        env = {
            "PATH": "/usr/bin:/bin",
            "HOME": str(self.home),
            "TMPDIR": str(self.home),
            "LANG": "C",
        }
        return [
            *isolate.as_user(uid, (GROUP,)),
            "env",
            "-i",
            *(f"{k}={v}" for k, v in env.items()),
            "sh",
            "-c",
            f'umask {umask} && exec "$@"',
            "sh",
            *argv,
        ]

    def run(
        self, uid: int, argv: list[str], umask: str = "022", timeout: float = 300, **kw: object
    ) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            self.command(uid, argv, umask),
            cwd=self.root,
            text=True,
            capture_output=True,
            timeout=timeout,
            check=False,
            **kw,
        )

    def install(
        self, uid: int, prefix: Path, *flags: str, umask: str = "022", shell_tail: str = ""
    ) -> subprocess.CompletedProcess[str]:
        if shell_tail:  # the install's output redirected as a user's shell would
            return self.run(
                uid,
                [
                    "sh",
                    "-c",
                    f'sh "$0" -b {" ".join(flags)} -p "$1" {shell_tail}',
                    str(self.installer),
                    str(prefix),
                ],
                umask,
            )
        return self.run(uid, ["sh", str(self.installer), "-b", *flags, "-p", str(prefix)], umask)

    def close(self) -> None:
        isolate.remove(self.root)


@pytest.fixture
def shared(installer: Path) -> Iterator[Shared]:
    s = Shared(installer)
    yield s
    s.close()


def as_user(uid: int, code: str) -> subprocess.Popen[bytes]:
    """A python process of ``uid`` running ``code`` (an attacker holding a lock)."""
    return subprocess.Popen(
        [*isolate.as_user(uid, (GROUP,)), sys.executable, "-c", code], start_new_session=True
    )


def hold_lock(path: Path, text: str, uid: int = A) -> subprocess.Popen[bytes]:
    code = f"""
import fcntl, os, time
fd = os.open({str(path)!r}, os.O_RDWR | os.O_CREAT, 0o644)
fcntl.flock(fd, fcntl.LOCK_EX)
os.write(fd, {text.encode()!r})
open({str(path) + ".ready"!r}, "w").close()
time.sleep(120)
"""
    proc = as_user(uid, code)
    deadline = time.monotonic() + 20
    while not Path(str(path) + ".ready").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    Path(str(path) + ".ready").unlink(missing_ok=True)
    return proc


def stop(proc: subprocess.Popen[bytes]) -> None:
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def works(shared: Shared, uid: int, prefix: Path) -> bool:
    res = shared.run(uid, ["sh", "-c", f". {prefix}/diracosrc && synth-tool"])
    return res.returncode == 0 and "hello" in res.stdout


def test_fs_protected_settings_are_recorded() -> None:
    """What the kernel would add in sticky directories (the tests do not need it: each attack
    also runs in the 2775 parent, where it does not apply)."""
    for name in ("protected_symlinks", "protected_regular"):
        path = Path("/proc/sys/fs") / name
        if path.exists():
            print(f"fs.{name} = {path.read_text().strip()}")


@pytest.mark.parametrize("kind", ["sticky", "group"])
def test_lock_hijack_another_users_prefix_is_never_reported_installed(
    shared: Shared, kind: str
) -> None:
    """A group member holds the lock, then makes the prefix with a fake .dxforge/installed
    and their own diracosrc while our install waits or unpacks: refused, naming them."""
    parent = shared.parent(kind)
    prefix = parent / "x"
    lock = hold_lock(parent / ".x.dxforge-lock", f"{os.uname().nodename} 1\n")
    try:
        t0 = time.monotonic()
        res = shared.install(B, prefix)
        assert time.monotonic() - t0 < 60
    finally:
        stop(lock)
    assert res.returncode == 1 and "is being installed by uid 1701" in res.stderr, res.stderr
    # the prefix made meanwhile (while our installer unpacks: a slow tar lets it happen)
    slow = shared.root / "slowbin"
    slow.mkdir(exist_ok=True)
    (slow / "tar").write_text(f'#!/bin/sh\nsleep 3\nexec {shutil.which("tar")} "$@"\n')
    (slow / "tar").chmod(0o755)
    cmd = shared.command(B, ["sh", str(shared.installer), "-b", "-p", str(prefix)])
    cmd = [c.replace("PATH=/usr/bin:/bin", f"PATH={slow}:/usr/bin:/bin") for c in cmd]
    victim = subprocess.Popen(
        cmd, cwd=shared.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    time.sleep(1.5)
    stamp = f"SYNTHOS 1.0.0 {installer_payload_sha(shared.installer)}\n"
    fake = (
        f"umask 000; mkdir -p {prefix}/.dxforge && printf %s '{stamp.strip()}' > "
        f"{prefix}/.dxforge/installed && echo 'echo attacker-code-ran' > {prefix}/diracosrc"
    )
    assert shared.run(A, ["sh", "-c", fake]).returncode == 0
    out, err = victim.communicate(timeout=120)
    assert victim.returncode == 1, err
    assert f"{prefix} was made meanwhile by uid 1701" in err and "installed in" not in err


def installer_payload_sha(installer: Path) -> str:
    for line in installer.read_bytes()[:20000].decode("latin-1").splitlines():
        if line.startswith("PAYLOAD_SHA256="):
            return line.split("=", 1)[1]
    raise AssertionError("no PAYLOAD_SHA256 in the header")


@pytest.mark.parametrize("kind", ["sticky", "group"])
def test_stale_cleanup_never_follows_or_touches_planted_entries(shared: Shared, kind: str) -> None:
    """Symlinks named like staging or old directories, pointing at another user's files, and
    a planted directory: the install succeeds and leaves them (and their targets) alone."""
    parent = shared.parent(kind)
    victim = shared.root / "victim"  # root's files, as in the finding
    (victim / "d").mkdir(parents=True)
    (victim / "d/f").write_text("secret\n")
    (victim / "d/f").chmod(0o400)
    (victim / "d").chmod(0o500)
    tmp = f"{parent}/.x.dxforge-tmp.1234.abc"
    plant = (
        f"ln -s {victim}/d {parent}/.x.dxforge-tmp.99 && "
        f"ln -s {victim}/d {parent}/.x.dxforge-old.99 && mkdir {tmp} && chmod 000 {tmp}"
    )
    assert shared.run(A, ["sh", "-c", plant]).returncode == 0
    for uid, name in ((B, "x"), (0, "y")):  # a user's install, then root's
        plant = (
            f"ln -s {victim}/d {parent}/.{name}.dxforge-tmp.99 && ln -s {victim}/d "
            f"{parent}/.{name}.dxforge-old.99 && mkdir {parent}/.{name}.dxforge-tmp.1.a"
        )
        shared.run(A, ["sh", "-c", plant])
        res = shared.install(uid, parent / name)
        assert res.returncode == 0, res.stderr
        assert works(shared, uid, parent / name)
    assert stat.S_IMODE((victim / "d").stat().st_mode) == 0o500
    assert stat.S_IMODE((victim / "d/f").stat().st_mode) == 0o400
    for name in (".x.dxforge-tmp.99", ".x.dxforge-old.99", ".x.dxforge-tmp.1234.abc"):
        assert os.path.lexists(parent / name), name


@pytest.mark.parametrize("kind", ["sticky", "group"])
def test_lock_of_another_user_is_an_error_at_once_naming_them_with_text_sanitised(
    shared: Shared, kind: str
) -> None:
    parent = shared.parent(kind)
    lock = hold_lock(parent / ".x.dxforge-lock", ESCAPES)
    try:
        t0 = time.monotonic()
        res = shared.install(B, parent / "x")
        took = time.monotonic() - t0
    finally:
        stop(lock)
    assert res.returncode == 1 and took < 60
    assert "is being installed by uid 1701" in res.stderr, res.stderr
    assert "\x1b" not in res.stderr + res.stdout


@pytest.mark.parametrize("kind", ["sticky", "group"])
def test_symlink_at_the_lock_path_is_a_clear_error_at_once(shared: Shared, kind: str) -> None:
    parent = shared.parent(kind)
    target = shared.sticky / "a-file-of-A"
    assert (
        shared.run(
            A,
            [
                "sh",
                "-c",
                f"echo x > {target} && chmod 666 {target} && "
                f"ln -s {target} {parent}/.x.dxforge-lock",
            ],
        ).returncode
        == 0
    )
    res = shared.install(
        B,
        parent / "x",
    )
    assert res.returncode == 1, res.stderr
    assert "cannot use the lock" in res.stderr and "owned by uid 1701" in res.stderr
    assert target.read_text() == "x\n" and not (parent / "x").exists()


def test_leftover_lock_of_another_user_keeps_exit_status_zero(shared: Shared) -> None:
    assert (
        shared.run(A, ["sh", "-c", f"echo 'gone 1' > {shared.sticky}/.x.dxforge-lock"]).returncode
        == 0
    )
    res = shared.install(B, shared.sticky / "x")
    assert res.returncode == 0, res.stderr
    assert (shared.sticky / ".x.dxforge-lock").stat().st_uid == A  # theirs: left alone


def test_empty_prefix_owned_by_another_user_writable_by_us(shared: Shared) -> None:
    """An admin (or another member) made the prefix for us in the 2775 area."""
    prefix = shared.group / "x"
    assert shared.run(A, ["sh", "-c", f"mkdir {prefix} && chmod 2775 {prefix}"]).returncode == 0
    res = shared.install(B, prefix, umask="002")
    assert res.returncode == 0, res.stderr
    st = prefix.stat()
    assert st.st_uid == A and stat.S_IMODE(st.st_mode) == 0o2775 and st.st_gid == GROUP
    assert works(shared, B, prefix)
    assert shared.install(B, prefix, "-u", umask="002").returncode == 0
    assert sorted(os.listdir(shared.group)) == ["x"]


def test_update_when_the_prefix_is_ours_but_its_parent_is_not(shared: Shared) -> None:
    parent = shared.root / "admins"
    parent.mkdir()
    prefix = parent / "x"
    prefix.mkdir()
    os.chown(prefix, B, B)
    for flags in ((), ("-u",), ("-f",), ("-u",)):
        res = shared.install(B, prefix, *flags)
        assert res.returncode == 0, (flags, res.stderr)
    assert works(shared, B, prefix) and sorted(os.listdir(parent)) == ["x"]
    assert not [n for n in os.listdir(prefix) if n.startswith(".dxforge-")]


def test_shared_group_prefix_updated_by_each_member(shared: Shared) -> None:
    """A installs into the group area (umask 002), B updates, B again, then A: no leftovers,
    no errors, the prefix stays A's and group-writable."""
    prefix = shared.group / "x"
    assert shared.install(A, prefix, umask="002").returncode == 0
    for uid in (B, B, A):
        res = shared.install(uid, prefix, "-u", umask="002")
        assert res.returncode == 0 and "ERROR" not in res.stderr, (uid, res.stderr)
    assert sorted(os.listdir(shared.group)) == ["x"]
    assert not [n for n in os.listdir(prefix) if n.startswith(".dxforge-")]
    assert prefix.stat().st_uid == A and stat.S_IMODE(prefix.stat().st_mode) & 0o2070 == 0o2070
    assert works(shared, A, prefix) and works(shared, B, prefix)


@pytest.mark.parametrize(
    ("umask", "group_bits", "other_bits"), [("002", 0o070, 0o005), ("077", 0, 0)]
)
def test_umask_is_honoured(shared: Shared, umask: str, group_bits: int, other_bits: int) -> None:
    prefix = shared.sticky / "x"
    res = shared.install(B, prefix, umask=umask)
    assert res.returncode == 0, res.stderr
    for path in (
        prefix,
        prefix / "bin",
        prefix / "bin/synth-tool",
        prefix / "diracosrc",
        prefix / ".dxforge/installed",
    ):
        mode = stat.S_IMODE(path.stat().st_mode)
        want_group = group_bits & (0o070 if path.is_dir() or mode & 0o100 else 0o060)
        assert mode & 0o070 == want_group, (path, oct(mode))
        assert mode & 0o007 & ~other_bits == 0, (path, oct(mode))


def test_force_merge_keeps_the_folders_mode_and_directory_symlinks(shared: Shared) -> None:
    prefix = shared.group / "site"
    setup = (
        f"mkdir -p {prefix}/data {shared.group}/shared-share && chmod 2751 {prefix} && "
        f"echo keep > {prefix}/data/precious.txt && "
        f"ln -s {shared.group}/shared-share {prefix}/share"
    )
    assert shared.run(A, ["sh", "-c", setup], umask="002").returncode == 0
    res = shared.install(A, prefix, "-f")
    assert res.returncode == 0, res.stderr
    assert stat.S_IMODE(prefix.stat().st_mode) == 0o2751
    assert (prefix / "share").is_symlink()
    assert shared.install(A, prefix, "-u").returncode == 0
    assert (prefix / "data/precious.txt").read_text() == "keep\n"
    assert (prefix / "share").is_symlink() and works(shared, A, prefix)


def test_update_through_a_symlinked_prefix(shared: Shared) -> None:
    real = shared.sticky / "real"
    link = shared.sticky / "diracos"
    assert shared.run(B, ["sh", "-c", f"mkdir {real} && ln -s {real} {link}"]).returncode == 0
    assert shared.install(B, link, "-f").returncode == 0
    res = shared.install(B, link, "-u")
    assert res.returncode == 0, res.stderr
    assert link.is_symlink() and os.readlink(link) == str(real)
    assert sorted(n for n in os.listdir(shared.sticky)) == ["diracos", "real"]
    assert works(shared, B, link)


def test_update_keeps_pip_packages_config_site_files_and_edits(shared: Shared) -> None:
    """DIRACOS2's workflow: install, pip install DIRAC, dirac-configure writes etc/dirac.cfg,
    a site adds a script and a work folder and edits diracosrc; then -u (and -f)."""
    prefix = shared.sticky / "x"
    assert shared.install(B, prefix).returncode == 0
    site = next(prefix.glob("lib/python3*/site-packages"))
    added = {
        site / "DIRAC-9.0.dist-info/METADATA": "Name: DIRAC\n",
        site / "DIRAC/__init__.py": "# pip\n",
        prefix / "etc/dirac.cfg": "[DIRAC]\n",
        prefix / "notes.txt": "mine\n",
        prefix / "bin/site-script": "#!/bin/sh\n",
        prefix / "work/job/out": "1\n",
    }
    script = " && ".join(f"mkdir -p {p.parent} && printf %s '{t}' > {p}" for p, t in added.items())
    assert (
        shared.run(
            B,
            [
                "sh",
                "-c",
                script + f" && echo '# site' >> {prefix}/diracosrc && chmod 2775 {prefix}",
            ],
        ).returncode
        == 0
    )
    for flag in ("-u", "-f"):
        res = shared.install(B, prefix, flag)
        assert res.returncode == 0, res.stderr
        for p, t in added.items():
            assert p.read_text() == t, p
        assert stat.S_IMODE(prefix.stat().st_mode) == 0o2775
    assert "# site" in (prefix / "diracosrc.dxforge-saved").read_text()
    assert "kept your edited" in shared.install(B, prefix, "-u").stderr or True
    assert works(shared, B, prefix)


def test_force_into_a_site_folder_then_update_keeps_precious(shared: Shared) -> None:
    prefix = shared.sticky / "site"
    assert (
        shared.run(
            B, ["sh", "-c", f"mkdir -p {prefix}/data && echo keep > {prefix}/data/precious.txt"]
        ).returncode
        == 0
    )
    assert shared.install(B, prefix, "-f").returncode == 0
    assert shared.install(B, prefix, "-u").returncode == 0
    assert (prefix / "data/precious.txt").read_text() == "keep\n"


@pytest.mark.parametrize("tail", ["| true", ">/dev/full 2>&1", "2>&-", ">&- 2>&-"])
def test_closed_or_broken_output_never_fails_an_install(shared: Shared, tail: str) -> None:
    prefix = shared.sticky / "x"
    res = shared.install(B, prefix, shell_tail=tail + "; echo rc=$?")
    assert "rc=0" in res.stdout, (res.stdout, res.stderr)
    assert (prefix / ".dxforge/installed").is_file() and works(shared, B, prefix)


def test_an_inode_shortage_is_one_line(shared: Shared) -> None:
    """A file system with too few inodes (a tmpfs in a mount namespace of the test's own):
    one line naming the directory, then nothing left."""
    if not shutil.which("unshare"):
        pytest.skip("unshare (util-linux) is not installed")
    small = shared.root / "small"
    small.mkdir()
    inner = shlex.join(
        shared.command(B, ["sh", str(shared.installer), "-b", "-p", str(small / "x")])
    )
    script = (
        f"mount -t tmpfs -o size=300m,nr_inodes=300,mode=1777 tmpfs {small} && {inner}; "
        f"echo rc=$?; ls -A {small}"
    )
    res = subprocess.run(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if "mount" in res.stderr and "rc=" not in res.stdout:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    errors = [line for line in res.stderr.splitlines() if line.strip()]
    assert "rc=1" in res.stdout, (res.stdout, res.stderr)
    assert errors[-1].startswith(f"ERROR: no space or inodes left in {small}"), errors
    assert len(errors) <= 2, errors  # "Unpacking ..." and the one line
    assert res.stdout.split("rc=1")[1].strip() == ""  # nothing left
    json.dumps(errors)
