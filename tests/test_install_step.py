"""The installer's install step (dxforge/installer/files/install.py, run by the payload's
python), in-process:
stand-in payloads staged as the header stages them, installed, updated, interrupted.

Each test is a user's sequence from issue 22: what an update keeps, what -f may touch, how an
interrupted install is undone, and what the lock and the staging sweep trust."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import random
import shutil
import stat
import sys
from pathlib import Path

import pytest

from dxforge.installer import shipped_dir

FILES = shipped_dir()

sys.path.insert(0, str(FILES))  # install.py imports relocate.py beside it
spec = importlib.util.spec_from_file_location("dxforge_install", FILES / "install.py")
install = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
spec.loader.exec_module(install)  # type: ignore[union-attr]

POST = b"""#!/bin/sh
set -eu
[ -z "${DX_FAIL:-}" ] || exit 3
printf 'export DIRACOS=%s\\n' "$PREFIX" > "$PREFIX/diracosrc.tmp"
mv "$PREFIX/diracosrc.tmp" "$PREFIX/diracosrc"
echo "post-install done"
"""
SITE = "lib/python3.11/site-packages"


def payload(
    version: str = "1.0", extra: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()
) -> dict[str, bytes]:
    files = {
        "bin/tool": b"#!/bin/sh\necho tool " + version.encode() + b"\n",
        "etc/tool.conf": b"setting = 1\n",
        f"{SITE}/pkg/__init__.py": b"VERSION = '" + version.encode() + b"'\n",
        f"{SITE}/pkg-{version}.dist-info/METADATA": b"Name: pkg\nVersion: " + version.encode(),
        f"{SITE}/dep-2.0.dist-info/METADATA": b"Name: dep\nVersion: 2.0\n",
        f"{SITE}/dep/__init__.py": b"",
        "share/doc/old.txt": b"old doc\n",
    }
    files.update(extra or {})
    for rel in drop:
        files.pop(rel)
    return files


def stage(prefix: Path, files: dict[str, bytes], links: dict[str, str] | None = None) -> Path:
    """A staging directory as the header makes it: next to a prefix that does not exist, else
    inside it; holding ``files``, the manifest with their sha256 and our .dxforge files."""
    inside = prefix.is_dir()
    where = prefix if inside else prefix.parent
    name = f"{'' if inside else '.' + prefix.name}.dxforge-tmp.{os.getpid()}."
    staging = where / (name + os.urandom(4).hex())
    staging.mkdir(mode=0o700)
    shipped = {}
    for rel, data in files.items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).write_bytes(data)
        shipped[rel] = hashlib.sha256(data).hexdigest()
    for rel, target in (links or {}).items():
        (staging / rel).parent.mkdir(parents=True, exist_ok=True)
        (staging / rel).symlink_to(target)
        shipped[rel] = "link:" + target
    meta = staging / ".dxforge"
    meta.mkdir()
    for f in ("relocate.py", "install.py"):
        shutil.copy(FILES / f, meta / f)
    (meta / "post_install.sh").write_bytes(POST)
    (meta / "manifest.json").write_text(
        json.dumps(
            {
                "format": 1,
                "pyc": "timestamp",
                "prefix": "/opt/recorded",
                "files": [],
                "shipped": shipped,
            }
        )
    )
    return staging


def run(
    prefix: Path,
    *flags: str,
    version: str = "1.0",
    files: dict[str, bytes] | None = None,
    links: dict[str, str] | None = None,
) -> int:
    staging = stage(prefix, payload(version) if files is None else files, links)
    args = [
        "--staging",
        str(staging),
        "--prefix",
        str(prefix),
        "--name",
        "SYNTH",
        "--version",
        version,
        "--payload",
        "p" + version,
        "--post-install",
        ".dxforge/post_install.sh",
    ]
    for f in flags:
        args += {"-u": ["--update", "1"], "-f": ["--force", "1"], "-d": ["--downgrade", "1"]}[f]
    return install.main(args)


def tree(root: Path) -> dict[str, object]:
    """Every entry under ``root``: file contents, link targets, directory modes."""
    out: dict[str, object] = {}
    for p in sorted(root.rglob("*")):
        rel = str(p.relative_to(root))
        if p.is_symlink():
            out[rel] = "-> " + os.readlink(p)
        elif p.is_dir():
            out[rel] = oct(stat.S_IMODE(p.stat().st_mode))
        else:
            out[rel] = p.read_bytes()
    return out


def test_fresh_install_records_what_it_wrote(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    prefix = tmp_path / "x"
    assert run(prefix) == 0
    assert (prefix / ".dxforge/installed").read_text() == "SYNTH 1.0 p1.0\n"
    record = json.loads((prefix / ".dxforge/record.json").read_text())
    assert record["files"]["bin/tool"] == hashlib.sha256(payload()["bin/tool"]).hexdigest()
    assert "diracosrc" in record["files"]  # made by the post-install script
    assert sorted(os.listdir(tmp_path)) == ["x"]
    assert not [n for n in os.listdir(prefix) if n.startswith(".dxforge-")]
    assert "post-install done" in capfd.readouterr().out


def test_update_keeps_what_is_not_ours(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    """pip-installed DIRAC, etc/dirac.cfg, a root file, a site script in bin/, a work/ folder:
    all stay through -u (and -f on a dxforge prefix); the shipped files are updated."""
    prefix = tmp_path / "x"
    assert run(prefix) == 0
    user = {
        f"{SITE}/DIRAC-9.0.dist-info/METADATA": b"Name: DIRAC\n",
        f"{SITE}/DIRAC/__init__.py": b"# pip installed\n",
        "etc/dirac.cfg": b"[DIRAC]\n",
        "notes.txt": b"mine\n",
        "bin/site-script": b"#!/bin/sh\n",
        "work/job/out": b"1\n",
    }
    for rel, data in user.items():
        (prefix / rel).parent.mkdir(parents=True, exist_ok=True)
        (prefix / rel).write_bytes(data)
    for flag in ("-u", "-f"):
        assert (
            run(prefix, flag, version="1.1") == 0
            if flag == "-u"
            else run(prefix, flag, version="1.1") == 0
        )
        for rel, data in user.items():
            assert (prefix / rel).read_bytes() == data, rel
        assert (prefix / "bin/tool").read_bytes() == payload("1.1")["bin/tool"]
        assert not (prefix / f"{SITE}/pkg-1.0.dist-info").exists()
        assert (prefix / f"{SITE}/pkg-1.1.dist-info/METADATA").is_file()


def test_update_keeps_edited_files_aside_and_names_them(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    prefix = tmp_path / "x"
    assert run(prefix) == 0
    (prefix / "etc/tool.conf").write_bytes(b"setting = 2  # site\n")
    (prefix / "diracosrc").write_bytes(b"# my edits\n")
    (prefix / "etc/tool.conf.dxforge-saved").write_bytes(b"an older save\n")
    capfd.readouterr()
    assert run(prefix, "-u", version="1.1") == 0
    err = capfd.readouterr().err
    assert (prefix / "etc/tool.conf.dxforge-saved.1").read_bytes() == b"setting = 2  # site\n"
    assert (prefix / "etc/tool.conf.dxforge-saved").read_bytes() == b"an older save\n"
    assert (prefix / "etc/tool.conf").read_bytes() == b"setting = 1\n"
    assert (prefix / "diracosrc.dxforge-saved").read_bytes() == b"# my edits\n"
    assert (
        f"kept your edited {prefix}/etc/tool.conf as {prefix}/etc/tool.conf.dxforge-saved.1" in err
    )


def test_files_no_longer_shipped_are_removed_edited_ones_kept(tmp_path: Path) -> None:
    prefix = tmp_path / "x"
    assert run(prefix) == 0
    assert (
        run(
            prefix,
            "-u",
            version="1.1",
            files=payload("1.1", drop=("share/doc/old.txt", "etc/tool.conf")),
        )
        == 0
    )
    assert not (prefix / "share/doc/old.txt").exists() and not (prefix / "share").exists()
    assert not (prefix / "etc/tool.conf").exists()
    assert run(prefix, "-u", version="1.2") == 0
    (prefix / "share/doc/old.txt").write_bytes(b"my notes\n")
    assert run(prefix, "-u", version="1.3", files=payload("1.3", drop=("share/doc/old.txt",))) == 0
    assert (prefix / "share/doc/old.txt.dxforge-saved").read_bytes() == b"my notes\n"


def test_pip_conflict_stops_before_anything_changes(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """The user pip-upgraded ``dep`` (a package the installer ships): the update names it and
    the fix, and changes nothing."""
    prefix = tmp_path / "x"
    assert run(prefix) == 0
    shutil.rmtree(prefix / f"{SITE}/dep-2.0.dist-info")
    (prefix / f"{SITE}/dep-3.0.dist-info").mkdir()
    (prefix / f"{SITE}/dep-3.0.dist-info/METADATA").write_bytes(b"Name: dep\nVersion: 3.0\n")
    (prefix / "bin/newtool").write_bytes(b"user's\n")  # the new version ships bin/newtool
    before = tree(prefix)
    capfd.readouterr()
    assert (
        run(prefix, "-u", version="1.1", files=payload("1.1", extra={"bin/newtool": b"ours\n"}))
        == 1
    )
    err = capfd.readouterr().err
    assert "nothing was changed" in err and "pip uninstall" in err
    assert f"{prefix}/{SITE}/dep-3.0.dist-info" in err and f"{prefix}/bin/newtool" in err
    assert tree(prefix) == before
    assert sorted(os.listdir(tmp_path)) == ["x"]


def test_downgrade_needs_an_explicit_flag(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    prefix = tmp_path / "x"
    assert run(prefix, version="2.0") == 0
    before = tree(prefix)
    assert run(prefix, "-u", version="1.9") == 1
    assert "newer than 1.9; nothing was changed: pass -d" in capfd.readouterr().err
    assert tree(prefix) == before
    assert run(prefix, "-u", version="2.0") == 0  # the same version again: a repair
    assert run(prefix, "-u", "-d", version="1.9") == 0
    assert (prefix / ".dxforge/installed").read_text().startswith("SYNTH 1.9 ")


def test_version_order() -> None:
    key = install.version_key
    assert key("0.10.0") > key("0.9.1") > key("0.9.1rc1") > key("0.9.1b2") > key("0.9.1.dev3")
    assert key("1.0") == key("1.0.0") and key("1.0.post1") > key("1.0")


def test_force_into_a_site_folder_then_update_keeps_the_sites_files(tmp_path: Path) -> None:
    """-f into an existing folder changes nothing that is there (its mode, its files, a
    directory symlink of the site); a later -u touches only what the installer shipped."""
    prefix = tmp_path / "site"
    shared = tmp_path / "shared"
    (prefix / "data").mkdir(parents=True)
    (prefix / "data/precious.txt").write_text("keep\n")
    shared.mkdir()
    (prefix / "etc").symlink_to(shared)
    prefix.chmod(0o2751)
    (prefix / "data").chmod(0o700)
    assert run(prefix, "-f") == 0
    assert (prefix / "etc").is_symlink() and (shared / "tool.conf").is_file()
    assert stat.S_IMODE(prefix.stat().st_mode) == 0o2751
    assert stat.S_IMODE((prefix / "data").stat().st_mode) == 0o700
    assert run(prefix, "-u", version="1.1", files=payload("1.1", drop=("etc/tool.conf",))) == 0
    assert (prefix / "data/precious.txt").read_text() == "keep\n"
    assert (prefix / "etc").is_symlink() and shared.is_dir() and not (shared / "tool.conf").exists()


def test_force_refuses_files_in_the_way_before_writing(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    prefix = tmp_path / "site"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "bin/tool").write_text("the site's own tool\n")
    before = tree(prefix)
    assert run(prefix, "-f") == 1
    assert f"{prefix}/bin/tool (not installed by it)" in capfd.readouterr().err
    assert tree(prefix) == before


def test_post_install_failure_restores_the_previous_state(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture
) -> None:
    prefix = tmp_path / "x"
    assert run(prefix) == 0
    (prefix / "notes.txt").write_text("mine\n")
    before = tree(prefix)
    monkeypatch.setenv("DX_FAIL", "1")
    assert run(prefix, "-u", version="1.1") == 1
    assert "restored the previous install" in capfd.readouterr().err
    assert tree(prefix) == before
    assert run(tmp_path / "y") == 1
    assert "nothing was installed" in capfd.readouterr().err
    assert sorted(os.listdir(tmp_path)) == ["x"]


def kill_after(n: int, steps: list[str], fn) -> bool:  # noqa: ANN001
    """Run ``fn`` in a child process that dies (os._exit, as a SIGKILL) at its ``n``-th
    rename, write or removal; whether it died so (else it finished)."""
    pid = os.fork()
    if pid == 0:
        count = [0]

        def counted(real):  # noqa: ANN001, ANN202
            def wrapper(*a, **k):  # noqa: ANN002, ANN003, ANN202
                count[0] += 1
                if count[0] >= n:
                    os._exit(99)
                return real(*a, **k)

            return wrapper

        for name in steps:
            setattr(install.os, name, counted(getattr(os, name)))
        os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
        try:
            fn()
        finally:
            os._exit(0)
    status = os.waitpid(pid, 0)[1]
    for name in steps:
        setattr(install.os, name, getattr(os, name))
    return os.waitstatus_to_exitcode(status) == 99


@pytest.mark.parametrize("flags", [(), ("-u",), ("-f",)])
def test_killed_at_random_moments_every_rerun_gives_a_clean_install(
    tmp_path: Path, flags: tuple[str, ...], capfd: pytest.CaptureFixture
) -> None:
    """Killed at its n-th file operation (every n until it finishes), then run again: the
    prefix is identical to a clean install, the user's files intact, nothing left beside."""
    clean = tmp_path / "clean"
    assert run(clean, version="1.0") == 0
    assert run(clean, "-u", version="1.1") == 0 if flags == ("-u",) else True
    if flags == ("-f",):
        shutil.rmtree(clean)
        clean.mkdir()
        (clean / "data").mkdir()
        (clean / "data/precious.txt").write_text("keep\n")
        assert run(clean, "-f", version="1.1") == 0
    want = tree(clean)
    for n in range(1, 200, 3):  # every third step: each kind of step is hit
        prefix = tmp_path / f"k{n}"
        if flags == ("-u",):
            assert run(prefix, version="1.0") == 0
        elif flags == ("-f",):
            (prefix / "data").mkdir(parents=True)
            (prefix / "data/precious.txt").write_text("keep\n")
        version = "1.1" if flags else "1.0"

        def attempt(prefix: Path = prefix, version: str = version) -> None:
            run(prefix, *flags, version=version)

        killed = kill_after(n, ["rename", "replace", "unlink", "rmdir", "mkdir"], attempt)
        finished = (prefix / ".dxforge/installed").is_file() and not (
            prefix / ".dxforge-journal"
        ).exists()
        assert run(prefix, *flags, version=version) == 0 or finished, (n, capfd.readouterr())
        got = tree(prefix)
        got = {k: v for k, v in got.items() if not k.endswith(".dxforge-saved")}
        assert got.keys() == want.keys(), (n, set(got) ^ set(want))
        named = ("diracosrc", ".dxforge/record.json", ".dxforge/manifest.json")  # the path
        assert [k for k in want if got[k] != want[k] and k not in named] == [], n
        assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == [], n
        shutil.rmtree(prefix)
        capfd.readouterr()
        if not killed:  # it finished: every step was tried
            break
    assert n > 10


def test_an_unfinished_fresh_install_never_looks_finished(tmp_path: Path) -> None:
    prefix = tmp_path / "x"
    kill_after(4, ["replace"], lambda: run(prefix))  # dies writing the record
    assert prefix.is_dir() and not (prefix / ".dxforge/installed").exists()
    assert (prefix / ".dxforge-journal").is_file()


def test_sweep_removes_only_our_dead_staging(tmp_path: Path) -> None:
    """Stale staging directories: ours, of a dead process, go; a symlink planted with that
    name, a live process's, and a file are left alone (and never followed)."""
    prefix = tmp_path / "x"
    victim = tmp_path / "victim"
    victim.mkdir()
    (victim / "f").write_text("x")
    (victim / "f").chmod(0o400)
    victim.chmod(0o500)
    dead = tmp_path / ".x.dxforge-tmp.999999.abc"
    (dead / "sub").mkdir(parents=True)
    (dead / "sub").chmod(0o500)
    (tmp_path / ".x.dxforge-tmp.99.lnk").symlink_to(victim)
    (tmp_path / ".x.dxforge-old.99").symlink_to(victim)
    live = tmp_path / f".x.dxforge-tmp.{os.getppid()}.live"
    live.mkdir()
    (tmp_path / ".x.dxforge-tmp.1.file").write_text("planted")
    assert run(prefix) == 0
    assert not dead.exists() and live.is_dir()
    assert stat.S_IMODE(victim.stat().st_mode) == 0o500
    assert stat.S_IMODE((victim / "f").stat().st_mode) == 0o400
    assert (tmp_path / ".x.dxforge-tmp.99.lnk").is_symlink()
    victim.chmod(0o700)


def test_lock_path_symlink_is_a_clear_error(tmp_path: Path, capfd: pytest.CaptureFixture) -> None:
    (tmp_path / ".x.dxforge-lock").symlink_to(tmp_path / "elsewhere")
    assert run(tmp_path / "x") == 1
    err = capfd.readouterr().err
    assert "cannot use the lock" in err and "owned by" in err
    assert not (tmp_path / "elsewhere").exists() and not (tmp_path / "x").exists()


def test_foreign_text_is_sanitised() -> None:
    assert (
        install.clean("a\x1b[2J\x1b[31mrun rm -rf ~/.ssh\x07\u202e")
        == "a?[2J?[31mrun rm -rf ~/.ssh??"
    )


def test_closed_stdout_and_stderr_fail_nothing(tmp_path: Path) -> None:
    """The step with stdout and stderr closed, then writing to a full device, then to a
    closed pipe: it installs (and updates), exit 0."""
    import subprocess

    prefix = tmp_path / "x"
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); import install; "
        "sys.exit(install.main(sys.argv[2:]))"
    )

    def args(*flags: str) -> list[str]:
        return [
            sys.executable,
            "-c",
            code,
            str(FILES),
            "--staging",
            str(stage(prefix, payload())),
            "--prefix",
            str(prefix),
            "--name",
            "SYNTH",
            "--version",
            "1.0",
            "--post-install",
            ".dxforge/post_install.sh",
            *flags,
        ]

    res = subprocess.run(args(), check=False, preexec_fn=lambda: (os.close(1), os.close(2)))
    assert res.returncode == 0 and (prefix / ".dxforge/installed").is_file()
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            res = subprocess.run(args("--update", "1"), stdout=full, stderr=full, check=False)
        assert res.returncode == 0
    r, w = os.pipe()
    os.close(r)
    res = subprocess.run(args("--update", "1"), stdout=w, stderr=w, check=False)
    os.close(w)
    assert res.returncode == 0
    assert sorted(os.listdir(tmp_path)) == ["x"]


def test_random_payloads_update_into_each_other(tmp_path: Path) -> None:
    """Seeded random payloads, each installed with -u over the previous one: the result is
    always what a clean install of it gives, plus the user's file."""
    rng = random.Random(22)
    prefix = tmp_path / "x"
    assert run(prefix) == 0
    (prefix / "mine.txt").write_text("mine\n")
    for i in range(6):
        files = {
            f"d{rng.randrange(4)}/f{rng.randrange(6)}": bytes([rng.randrange(256)])
            for _ in range(rng.randrange(1, 12))
        }
        assert run(prefix, "-u", "-d", version=f"2.{i}", files=files) == 0
        clean = tmp_path / f"clean{i}"
        assert run(clean, version=f"2.{i}", files=files) == 0
        got = {k: v for k, v in tree(prefix).items() if k != "mine.txt"}
        want = tree(clean)
        for t in (got, want):
            for k in (
                ".dxforge/installed",
                ".dxforge/record.json",
                ".dxforge/manifest.json",
                "diracosrc",
            ):
                t.pop(k, None)
        assert got == want, i
        assert (prefix / "mine.txt").read_text() == "mine\n"


def test_interrupted_force_then_plain_rerun_keeps_the_folders_contents(
    tmp_path: Path, capfd: pytest.CaptureFixture
) -> None:
    """-f into a site folder killed halfway, then the installer run again without -f: what
    that install made is removed, the folder's own contents stay, and the rerun says why it
    stops (the folder is not empty)."""
    prefix = tmp_path / "site"
    (prefix / "data").mkdir(parents=True)
    (prefix / "data/precious.txt").write_text("keep\n")
    before = tree(prefix)
    steps = ["rename", "replace", "unlink", "rmdir", "mkdir"]
    for n in range(10, 100):  # the first step that leaves the transaction half done
        assert kill_after(n, steps, lambda: run(prefix, "-f"))
        if (prefix / ".dxforge-journal").is_file() and (prefix / "bin").exists():
            break
        for p in prefix.iterdir():
            if p.name != "data":
                install.remove(str(p))
    assert (prefix / ".dxforge-journal").is_file()
    capfd.readouterr()
    assert run(prefix) == 1
    err = capfd.readouterr().err
    assert "holds an interrupted install; rolling it back" in err
    assert "already exists and is not empty" in err
    assert tree(prefix) == before
