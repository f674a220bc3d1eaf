"""The install step of a dxforge installer, run by the payload's own python (-I -B, standard
library only) once the header has verified the whole installer and extracted the payload into
a new private staging directory: the lock, the install mode, relocation, the transaction and
its rollback, the post-install script, the record and the stamp.

usage: python -I -B install.py --staging DIR --prefix PREFIX [--update 0|1] [--force 0|1]
       [--downgrade 0|1] --name NAME --version VER [--payload SHA256] [--post-install REL]
       [--exists-text TEXT]

Layout: everything transient lives in the prefix's own directory (``.dxforge-lock``,
``.dxforge-journal``, ``.dxforge-tmp.<pid>.*``) or, for a prefix that does not exist yet, next
to it (``.<name>.dxforge-lock``, ``.<name>.dxforge-tmp.<pid>.*``); ``.dxforge/record.json``
records every file the install wrote with its sha256, ``.dxforge/installed`` is the stamp.
"""

from __future__ import annotations

# Every module is imported here, and few: the python's own files move with the install, and
# each import is install time.
import errno
import fcntl
import hashlib
import json
import os
import pwd
import re
import signal
import stat
import sys
import time

import relocate  # noqa: I001  # .dxforge/relocate.py, beside this file

META = ".dxforge"
LOCK = ".dxforge-lock"
JOURNAL = ".dxforge-journal"
TMP = ".dxforge-tmp."
RECORD = META + "/record.json"
STAMP = META + "/installed"
SAVED = ".dxforge-saved"
BACKUP = ".dxforge-old"  # inside the staging directory
TRANSIENT = (LOCK, JOURNAL)
LOCK_WAIT = 600  # seconds a same-user install waits for another (DXFORGE_LOCK_WAIT)


class Fail(Exception):
    """A refusal or a failure: its message is one clear line (or a list), exit status 1."""


class Interrupted(BaseException):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# ---- output: never fails the install, never prints foreign text raw -------------------------

_UNSAFE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def clean(text: object) -> str:
    """``text`` with control characters and terminal escapes shown as ``?``."""
    return _UNSAFE.sub("?", str(text))


def say(text: str, fd: int = 2) -> None:
    try:
        os.write(fd, (clean(text) + "\n").encode("utf-8", "replace"))
    except OSError:
        pass


def reopen_std() -> None:
    """A closed stdin, stdout or stderr becomes /dev/null, so that no file we open lands there."""
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)


def user(uid: int) -> str:
    try:
        return f"{clean(pwd.getpwuid(uid).pw_name)} (uid {uid})"
    except KeyError:
        return f"uid {uid}"


# ---- files ------------------------------------------------------------------------------------


def lexists(path: str) -> bool:
    return os.path.lexists(path)


def transient(name: str) -> bool:
    """Whether a name in the prefix is one of an install's own passing files."""
    return name in TRANSIENT or name.startswith((TMP, JOURNAL + "."))


def sha256(path: str) -> str:
    """A file's sha256, or ``link:TARGET`` for a symlink, or "" when it is neither."""
    try:
        st = os.lstat(path)
    except OSError:
        return ""
    if stat.S_ISLNK(st.st_mode):
        return "link:" + os.readlink(path)
    if not stat.S_ISREG(st.st_mode):
        return ""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def remove(path: str) -> None:
    """Remove what this install made at ``path``: a tree (its read-only directories made
    writable first, never following a symlink), a file or a symlink."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISDIR(st.st_mode):
        os.unlink(path)
        return
    if st.st_uid == os.getuid() and (st.st_mode & 0o700) != 0o700:
        os.chmod(path, stat.S_IMODE(st.st_mode) | 0o700)
    with os.scandir(path) as entries:
        names = [e.name for e in entries]
    for name in names:
        remove(os.path.join(path, name))
    os.rmdir(path)


def move(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst``; across file systems (a directory symlink of the site), copy."""
    try:
        os.rename(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise
        copy(src, dst)
        remove(src)


def copy(src: str, dst: str) -> None:
    """Copy a tree, file or symlink (symlinks as symlinks, modes kept)."""
    st = os.lstat(src)
    if stat.S_ISLNK(st.st_mode):
        os.symlink(os.readlink(src), dst)
    elif stat.S_ISDIR(st.st_mode):
        os.mkdir(dst, 0o700)
        for name in os.listdir(src):
            copy(os.path.join(src, name), os.path.join(dst, name))
        os.chmod(dst, stat.S_IMODE(st.st_mode))
    else:
        with open(src, "rb") as f, open(dst, "xb") as g:
            while block := f.read(1 << 20):
                g.write(block)
        os.chmod(dst, stat.S_IMODE(st.st_mode))


def write_json(path: str, data: dict) -> None:
    """Write ``data`` atomically (a new file renamed over ``path``)."""
    tmp = path + ".tmp"  # one name: an interrupted write's is replaced by the next one
    if lexists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        json.dump(data, f, indent=0, sort_keys=True)
        f.write("\n")
    os.replace(tmp, path)


def write_text(path: str, text: str) -> None:
    tmp = path + ".tmp"
    if lexists(tmp):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o666)
    with os.fdopen(fd, "w", encoding="utf-8") as f:
        f.write(text)
    os.replace(tmp, path)


def umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def widen(root: str, mask: int) -> None:
    """tar gives the archive's modes less the umask; where the umask lets the group (or
    others) write, as in a shared area's 002, they get the owner's permissions too, as a file
    made there would."""
    if mask & 0o022 == 0o022:
        return
    for dirpath, dirnames, filenames in os.walk(root):
        for name in (*dirnames, *filenames):
            path = os.path.join(dirpath, name)
            st = os.lstat(path)
            if stat.S_ISLNK(st.st_mode):
                continue
            mode = stat.S_IMODE(st.st_mode)
            want = mode | (((mode & 0o700) >> 3 | (mode & 0o700) >> 6) & ~mask)
            if want != mode:
                os.chmod(path, want)


def read_json(path: str) -> dict | None:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as f:
        try:
            data = json.load(f)
        except ValueError:
            return None
    return data if isinstance(data, dict) else None


def safe_rel(rel: object) -> bool:
    """Whether ``rel`` (read from a journal or record) is a plain relative path."""
    return (
        isinstance(rel, str)
        and rel != ""
        and not rel.startswith("/")
        and ".." not in rel.split("/")
        and "\0" not in rel
    )


# ---- versions ---------------------------------------------------------------------------------

_PRE = {"dev": -4, "a": -3, "alpha": -3, "b": -2, "beta": -2, "rc": -1, "c": -1}


def version_key(text: str) -> tuple:
    """A PEP 440-ish order: release numbers, then dev < a < b < rc < final < post."""
    m = re.match(r"v?(\d+(?:\.\d+)*)(.*)", text.strip().lower())
    if not m:
        return ((0,), 0, 0)
    release = tuple(int(x) for x in m.group(1).split("."))
    while len(release) > 1 and release[-1] == 0:
        release = release[:-1]
    tail = re.match(r"[-_.]?(dev|alpha|beta|rc|post|a|b|c)?[-_.]?(\d*)", m.group(2))
    kind, num = (tail.group(1), tail.group(2)) if tail else (None, "")
    rank = _PRE.get(kind or "", 1 if kind == "post" else 0)
    return (release, rank, int(num or 0))


# ---- the lock ---------------------------------------------------------------------------------


def holder_uid(fd: int) -> tuple[int | None, int | None]:
    """(uid, pid) of the process holding a flock on ``fd``'s file, from /proc/locks."""
    st = os.fstat(fd)
    key = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    try:
        with open("/proc/locks", encoding="ascii", errors="replace") as f:
            lines = f.read().splitlines()
    except OSError:
        return None, None
    for line in lines:
        parts = line.split()
        if "->" in parts or len(parts) < 6 or parts[1] != "FLOCK" or parts[5] != key:
            continue
        try:
            pid = int(parts[4])
            return os.stat(f"/proc/{pid}").st_uid, pid
        except (ValueError, OSError):
            return None, None
    return None, None


def describe(fd: int) -> str:
    """What the holder wrote in the lock (host and pid), sanitised; it writes just after taking
    the lock: give it a moment."""
    for _ in range(20):
        try:
            text = os.pread(fd, 200, 0).decode("utf-8", "replace").strip()
        except OSError:
            text = ""
        if text:
            return clean(text.splitlines()[0])
        time.sleep(0.1)
    return "an unknown installer"


def _open_lock(path: str) -> int:
    flags = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT | flags, 0o644)
        except PermissionError:
            fd = os.open(path, os.O_RDONLY | flags)
    except OSError as e:
        try:
            owner = user(os.lstat(path).st_uid)
        except OSError:
            owner = "nobody known"
        raise Fail(
            f"cannot use the lock {path} (owned by {owner}): {e.strerror}; it is not an "
            "installer's lock file: ask its owner or an admin to remove it, or choose "
            "another prefix with -p"
        ) from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode):
        os.close(fd)
        raise Fail(
            f"{path} is not a lock file (owned by {user(st.st_uid)}); ask its owner or an "
            "admin to remove it, or choose another prefix with -p"
        )
    return fd


def _busy(fd: int, path: str, prefix: str) -> None:
    """Refuse at once when another user holds the lock."""
    uid, pid = holder_uid(fd)
    if uid is None:
        uid = os.fstat(fd).st_uid
    if uid != os.getuid():
        raise Fail(
            f"{prefix} is being installed by {user(uid)}"
            f"{f', pid {pid}' if pid else ''} (lock {path}); wait for them to finish, or "
            "choose another prefix with -p"
        )


def lock(path: str, prefix: str, wait: float) -> int:
    """Take the install lock ``path`` (flock): at once, or after waiting at most ``wait``
    seconds for an install by the same user; another user's is an error at once."""
    deadline = time.monotonic() + wait
    waited = False
    while True:
        fd = _open_lock(path)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            try:
                _busy(fd, path, prefix)
                if not waited:
                    say(
                        f"waiting for the install into {prefix} by {describe(fd)} to finish (at "
                        f"most {wait:g} s; lock {path})"
                    )
                    waited = True
                while time.monotonic() < deadline:
                    time.sleep(0.2)
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        continue
                else:
                    raise Fail(
                        f"{prefix} is being installed by {describe(fd)} (lock {path}); it "
                        f"did not finish within {wait:g} s: wait for it, or set "
                        "DXFORGE_LOCK_WAIT"
                    )
            except BaseException:
                os.close(fd)
                raise
        st = os.fstat(fd)
        try:
            now = os.lstat(path)
        except OSError:
            now = None
        if now is not None and (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
            if st.st_uid == os.getuid():
                os.ftruncate(fd, 0)
                os.pwrite(fd, f"{os.uname().nodename} {os.getpid()}\n".encode(), 0)
            return fd
        os.close(fd)  # the holder removed the file as it finished: take the new one


def unlock(fd: int, path: str) -> None:
    """Release the lock; remove its file when it is ours (another user's is left)."""
    try:
        st, now = os.fstat(fd), os.lstat(path)
        if st.st_uid == os.getuid() and (now.st_ino, now.st_dev) == (st.st_ino, st.st_dev):
            os.unlink(path)
    except OSError:
        pass
    os.close(fd)


# ---- the install ------------------------------------------------------------------------------


class Install:
    """One run of the install step."""

    def __init__(self, args: dict[str, str]) -> None:
        self.staging = os.path.abspath(args["--staging"])
        self.prefix = args["--prefix"].rstrip("/") or "/"
        self.parent, self.base = os.path.split(self.prefix)
        self.update = args.get("--update") == "1"
        self.force = args.get("--force") == "1"
        self.downgrade = args.get("--downgrade") == "1"
        self.name = args["--name"]
        self.version = args["--version"]
        self.payload = args.get("--payload", "")
        self.post_install = args.get("--post-install", "")
        self.exists_text = args.get("--exists-text", "")
        self.fresh_intent = os.path.dirname(self.staging) != self.prefix
        self.uid = os.getuid()
        self.locks: list[tuple[int, str]] = []
        self.shipped: dict[str, str] = {}
        self.finished = False
        self.stamp = f"{self.name} {self.version} {self.payload}".strip() + "\n"

    def p(self, rel: str = "") -> str:
        return os.path.join(self.prefix, rel) if rel else self.prefix

    # -- steps --

    def relocate(self) -> None:
        """Relocate the staged files to the prefix (the payload's relocate.py, in-process)."""
        try:
            relocate.relocate(self.staging, self.prefix, True)
        except (relocate.RelocationError, OSError, ValueError, KeyError) as e:
            raise Fail(f"relocation to {self.prefix} failed: {e}") from None
        manifest = read_json(os.path.join(self.staging, META, "manifest.json")) or {}
        self.shipped = manifest.get("shipped") or {}
        widen(self.staging, umask())

    def take_locks(self) -> None:
        wait = float(os.environ.get("DXFORGE_LOCK_WAIT", LOCK_WAIT))
        if self.fresh_intent or os.access(self.parent, os.W_OK):
            path = os.path.join(self.parent, f".{self.base}{LOCK}")
            self.locks.append((lock(path, self.prefix, wait), path))
        if os.path.isdir(self.prefix):
            path = self.p(LOCK)
            self.locks.append((lock(path, self.prefix, wait), path))

    def release(self) -> None:
        while self.locks:
            unlock(*self.locks.pop())

    def sweep(self) -> None:
        """Remove staging directories of ours that an interrupted install left (only real
        directories we own, whose process is gone); anything else is left alone."""
        places = [(self.parent, f".{self.base}{TMP}")]
        if os.path.isdir(self.prefix):
            places.append((self.prefix, TMP))
        for where, start in places:
            try:
                names = os.listdir(where)
            except OSError:
                continue
            for name in names:
                path = os.path.join(where, name)
                if not name.startswith(start) or path == self.staging:
                    continue
                try:
                    st = os.lstat(path)
                    pid = int(name[len(start) :].split(".")[0])
                except (OSError, ValueError):
                    continue
                if not stat.S_ISDIR(st.st_mode) or st.st_uid != self.uid or alive(pid):
                    continue
                say(f"removing {path}, left by an interrupted install")
                try:
                    remove(path)
                except OSError as e:
                    say(f"warning: could not remove {path}: {e.strerror}")

    def recover(self) -> None:
        """An interrupted install of this prefix: roll it back (or forward, once committed)."""
        path = self.p(JOURNAL)
        try:
            tmp = os.lstat(path + ".tmp")  # a journal write that was interrupted
            if stat.S_ISREG(tmp.st_mode) and tmp.st_uid == self.uid:
                os.unlink(path + ".tmp")
        except OSError:
            pass
        try:
            st = os.lstat(path)
        except OSError:
            return
        if not stat.S_ISREG(st.st_mode) or st.st_uid != self.uid:
            raise Fail(
                f"{self.prefix} holds an unfinished install by {user(st.st_uid)} "
                f"({path}); they must run their installer again to finish it"
            )
        journal = read_json(path)
        if journal is None:
            raise Fail(
                f"{path} is damaged; remove {self.prefix} (an interrupted install) and "
                "run the installer again"
            )
        if journal.get("state") == "committed":
            say(f"finishing the interrupted install in {self.prefix}")
            Transaction(self, journal).finish()
            self.finished = self.read_stamp() == self.stamp
        else:
            say(f"{self.prefix} holds an interrupted install; rolling it back")
            Transaction(self, journal).rollback()

    def plan(self) -> Transaction | None:
        """The install mode and what to do; None: this payload is installed already."""
        if not lexists(self.prefix):
            if not self.fresh_intent:
                raise Fail(f"{self.prefix} disappeared during the install; run the installer again")
            return Transaction(self, {"kind": "fresh"})
        if not os.path.isdir(self.prefix):
            raise Fail(
                f"{self.prefix} exists and is not a directory; remove it or choose "
                "another prefix with -p"
            )
        owner = os.stat(self.prefix).st_uid
        stamp = self.read_stamp()
        if self.fresh_intent and stamp is not None:
            if owner != self.uid:
                raise Fail(
                    f"{self.prefix} was made meanwhile by {user(owner)}, not by this "
                    "install: it is not trusted; check it, or choose another prefix "
                    "with -p"
                )
            if stamp == self.stamp and self.verify():
                return None
        return self.plan_existing(stamp)

    def plan_existing(self, stamp: str | None) -> Transaction:
        """An existing prefix: empty (install into it), ours (needs -u or -f), or a folder
        that is not (needs -f)."""
        names = [n for n in os.listdir(self.prefix) if not transient(n)]
        ours = os.path.isdir(self.p(META)) and not os.path.islink(self.p(META))
        if not names:
            return Transaction(self, {"kind": "into"})
        if ours and (stamp is not None or read_json(self.p(RECORD)) is not None):
            if not (self.update or self.force):
                raise Fail(self.exists_message())
            self.check_version()
            return Transaction(
                self,
                {"kind": "into", "legacy": stamp is not None and read_json(self.p(RECORD)) is None},
            )
        if ours and (self.update or self.force):
            say(f"{self.prefix} holds an unfinished install of an older installer; updating it")
            return Transaction(self, {"kind": "into", "legacy": True})
        if self.update:
            raise Fail(
                f"-u updates an install made by a dxforge installer, and {self.prefix} is "
                "not one (it has no .dxforge/); use -f to install into it anyway, or "
                "choose another prefix with -p"
            )
        if self.force:
            return Transaction(self, {"kind": "into"})
        raise Fail(self.exists_message())

    def exists_message(self) -> str:
        if self.exists_text:
            return self.exists_text.replace("{CHOSEN_PATH}", self.prefix)
        return (
            f"{self.prefix} already exists and is not empty; use -u to update an existing "
            "install, -f to install into it anyway, or choose another prefix with -p"
        )

    def read_stamp(self) -> str | None:
        try:
            fd = os.open(self.p(STAMP), os.O_RDONLY | os.O_NOFOLLOW)
        except OSError:
            return None
        with os.fdopen(fd, encoding="utf-8", errors="replace") as f:
            return f.read(1000)

    def check_version(self) -> None:
        record = read_json(self.p(RECORD)) or {}
        old = record.get("version") or ((self.read_stamp() or "").split() + ["", ""])[1]
        if old and not self.downgrade and version_key(old) > version_key(self.version):
            raise Fail(
                f"{self.prefix} holds {self.name} {clean(old)}, newer than "
                f"{self.version}; nothing was changed: pass -d as well to install the "
                "older version"
            )

    def verify(self) -> bool:
        """Whether every file the prefix's record lists has its recorded sha256."""
        record = read_json(self.p(RECORD))
        files = (record or {}).get("files")
        if not isinstance(files, dict) or not files:
            return False
        return all(safe_rel(rel) and sha256(self.p(rel)) == digest for rel, digest in files.items())

    def run(self) -> int:
        self.relocate()
        self.take_locks()
        self.recover()
        self.sweep()
        tx = None if self.finished else self.plan()
        if tx is None:
            remove(self.staging)
            say(
                f"{self.name} {self.version} was installed in {self.prefix} by "
                + (
                    "the interrupted install, now finished"
                    if self.finished
                    else "the install we waited for"
                )
            )
            return 0
        tx.apply()
        say(f"{self.name} {self.version} installed in {self.prefix}")
        return 0


def alive(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


_DIST = re.compile(r"^(?P<name>.+?)-[^-]+\.dist-info$")


def project(dist_info: str) -> str | None:
    m = _DIST.match(os.path.basename(dist_info))
    return re.sub(r"[-_.]+", "-", m["name"]).lower() if m else None


class Transaction:
    """The change to the prefix, journaled so that an interrupted one is undone (or, once
    committed, finished) by the next run."""

    def __init__(self, inst: Install, journal: dict) -> None:
        self.i = inst
        self.j = journal

    # -- planning (nothing is changed) --

    def walk(self) -> dict[str, str]:
        """The staged entries: {rel: "dir"|"file"|"link"}."""
        out: dict[str, str] = {}
        root = self.i.staging
        for dirpath, dirnames, filenames in os.walk(root):
            rel_dir = os.path.relpath(dirpath, root)
            rel_dir = "" if rel_dir == "." else rel_dir + "/"
            for d in list(dirnames):
                kind = "link" if os.path.islink(os.path.join(dirpath, d)) else "dir"
                out[rel_dir + d] = kind
            dirnames[:] = [
                d for d in dirnames if out[rel_dir + d] == "dir" and (rel_dir or d != BACKUP)
            ]
            for f in filenames:
                if not rel_dir and f in TRANSIENT:
                    continue
                kind = "link" if os.path.islink(os.path.join(dirpath, f)) else "file"
                out[rel_dir + f] = kind
        out.pop(BACKUP, None)
        return out

    def plan_into(self) -> None:
        """What moving the staged files into the existing prefix does: created, replaced,
        removed and kept-aside paths; conflicts stop it before anything changes."""
        i = self.i
        record = read_json(i.p(RECORD)) or {}
        files = record.get("files") if isinstance(record.get("files"), dict) else {}
        legacy = bool(self.j.get("legacy")) and not files
        new = self.new = self.walk()
        self.files, self.legacy = files, legacy
        out: dict[str, list] = {"created": [], "replaced": [], "saved": [], "conflicts": []}
        skip: set[str] = set()
        for rel, kind in new.items():
            if not any(rel.startswith(s + "/") for s in skip):
                where = self.classify(rel, kind)
                if where:
                    out[where].append(
                        [rel, self.saved_name(rel)]
                        if where == "saved"
                        else i.p(rel)
                        if where == "conflicts"
                        else rel
                    )
                if kind == "dir" and where:
                    skip.add(rel)
        removed = []
        for rel in sorted(files):
            if rel in new or not safe_rel(rel) or not lexists(i.p(rel)):
                continue
            if self.edited(rel):
                out["saved"].append([rel, self.saved_name(rel)])
            else:
                removed.append(rel)
        conflicts = [
            f"{c} ({'a directory' if os.path.isdir(c) else 'not installed by it'})"
            for c in out.pop("conflicts")
        ]
        conflicts += self.dist_conflicts(new, files)
        if conflicts:
            more = f"\n  ... and {len(conflicts) - 20} more" if len(conflicts) > 20 else ""
            shown = "\n  ".join(conflicts[:20]) + more
            raise Fail(
                f"nothing was changed: these paths are in the way of {i.name} "
                f"{i.version} in {i.prefix}:\n  {shown}\nremove or rename them (a "
                "package you installed with pip: `pip uninstall` it with the prefix's "
                "pip), or choose another prefix with -p"
            )
        self.j.update(out, removed=removed, dirs=sorted(set(record.get("dirs") or []) - set(new)))

    def ours(self, rel: str) -> bool:
        """Whether the prefix's ``rel`` is the install's own (recorded, or in .dxforge/)."""
        known = bool(self.files) or self.legacy
        return rel in self.files or self.legacy or (rel.startswith(META + "/") and known)

    def edited(self, rel: str) -> bool:
        want = self.files.get(rel)
        return bool(want) and sha256(self.i.p(rel)) != want

    def classify(self, rel: str, kind: str) -> str:
        """What the staged ``rel`` (of ``kind``) does to the prefix: "created", "replaced",
        "saved" (an edited file kept aside first), "conflicts", or "" (an existing directory,
        a site's directory symlink included, to go into)."""
        path = self.i.p(rel)
        try:
            st = os.lstat(path)
        except FileNotFoundError:
            return "created"
        if kind == "dir" and os.path.isdir(path):
            return ""
        if stat.S_ISDIR(st.st_mode) or not self.ours(rel):
            return "conflicts"
        return "saved" if self.edited(rel) else "replaced"

    def dist_conflicts(self, new: dict[str, str], files: dict[str, str]) -> list[str]:
        """Distributions installed in the prefix by someone else (pip) that the payload ships
        too, under another directory name."""
        shipped: dict[tuple[str, str], str] = {}
        for rel, kind in new.items():
            if kind == "dir" and rel.endswith(".dist-info") and project(rel):
                shipped[(os.path.dirname(rel), project(rel))] = rel
        out = []
        for site in sorted({d for d, _ in shipped}):
            try:
                names = os.listdir(self.i.p(site))
            except OSError:
                continue
            for name in sorted(names):
                rel = f"{site}/{name}"
                key = (site, project(rel))
                if (
                    key in shipped
                    and rel not in new
                    and not any(f.startswith(rel + "/") for f in files)
                ):
                    out.append(
                        f"{self.i.p(rel)} (installed by you, e.g. with pip; {self.i.name} "
                        f"ships {os.path.basename(shipped[key])})"
                    )
        return out

    def saved_name(self, rel: str) -> str:
        n, name = 0, rel + SAVED
        while lexists(self.i.p(name)):
            n += 1
            name = f"{rel}{SAVED}.{n}"
        return name

    # -- applying --

    def write(self, where: str) -> None:
        self.j["staging"] = self.i.staging
        write_json(os.path.join(where, JOURNAL), self.j)

    def apply(self) -> None:
        i = self.i
        if self.j["kind"] == "into":
            self.plan_into()
        self.j["state"] = "applying"
        try:
            if self.j["kind"] == "fresh":
                self.apply_fresh()
            else:
                self.apply_into()
            self.post_install()
        except BaseException as e:
            with signals_blocked():
                had = i.read_stamp() is not None and self.j["kind"] == "into"
                self.rollback()
            if isinstance(e, Fail):
                raise Fail(
                    f"{e}; restored the previous install in {i.prefix}"
                    if had
                    else f"{e}; nothing was installed"
                ) from None
            raise
        self.j["state"] = "committed"
        self.j["record"] = self.record()
        self.write(i.prefix)
        self.finish()

    def apply_fresh(self) -> None:
        """The staging directory becomes the prefix, its lock held as it appears."""
        i = self.i
        mask = umask()
        setgid = os.stat(i.staging).st_mode & stat.S_ISGID
        os.chmod(i.staging, (0o777 & ~mask) | setgid)
        path = os.path.join(i.staging, LOCK)
        i.locks.append((lock(path, i.prefix, 0), i.p(LOCK)))
        self.write(i.staging)
        if lexists(i.prefix):
            raise Fail(f"{i.prefix} was made by someone else during the install")
        os.rename(i.staging, i.prefix)

    def apply_into(self) -> None:
        i, j = self.i, self.j
        self.write(i.prefix)
        backup = os.path.join(i.staging, BACKUP)
        for rel, aside in j["saved"]:
            os.rename(i.p(rel), i.p(aside))
            say(f"kept your edited {i.p(rel)} as {i.p(aside)}")
        for rel in j["replaced"] + j["removed"]:
            os.makedirs(os.path.dirname(os.path.join(backup, rel)), exist_ok=True)
            os.rename(i.p(rel), os.path.join(backup, rel))
        new = self.new
        for rel in j["created"] + j["replaced"] + [r for r, _ in j["saved"] if r in new]:
            move(os.path.join(i.staging, rel), i.p(rel))
        for rel in sorted(j["dirs"], reverse=True):
            if safe_rel(rel):
                try:
                    os.rmdir(i.p(rel))
                except OSError:
                    pass

    def post_install(self) -> None:
        """Run the post-install script with a scratch TMPDIR; its output relayed (a closed or
        broken stdout or stderr fails nothing)."""
        i = self.i
        self.j["before_post"] = sorted(os.listdir(i.prefix))
        self.write(i.prefix)
        if not i.post_install:
            return
        script = i.p(i.post_install)
        with open(script, "rb") as f:
            first = f.readline().decode("utf-8", "replace").strip()
        interp = first[2:].split() if first.startswith("#!") else ["/bin/sh"]
        scratch = mkscratch(i.prefix)
        env = dict(os.environ, PREFIX=i.prefix, TMPDIR=scratch, TMP=scratch, TEMP=scratch)
        outs = [os.path.join(scratch, f".out{fd}") for fd in (1, 2)]
        try:
            actions = [(os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0)]
            actions += [
                (os.POSIX_SPAWN_OPEN, fd, out, os.O_WRONLY | os.O_CREAT, 0o600)
                for fd, out in zip((1, 2), outs, strict=True)
            ]
            pid = os.posix_spawn(
                interp[0],
                [*interp, script],
                env,
                file_actions=actions,
                setsigdef=(signal.SIGPIPE, signal.SIGINT, signal.SIGTERM),
            )
            code = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
            for fd, out in zip((1, 2), outs, strict=True):
                with open(out, "rb") as f:
                    text = f.read().decode("utf-8", "replace").rstrip("\n")
                if text:
                    say(text, fd)
        finally:
            remove(scratch)
        if code != 0:
            raise Fail(f"the post-install script failed (exit status {code})")

    def record(self) -> dict:
        """What this install wrote: every shipped file's sha256 as installed, the files the
        post-install script made, the directories it made."""
        i = self.i
        files = dict(i.shipped)
        before = set(self.j.get("before_post", []))
        for name in sorted(set(os.listdir(i.prefix)) - before):
            if not transient(name) and os.path.isfile(i.p(name)):
                files[name] = sha256(i.p(name))
        dirs = sorted({r.rsplit("/", n)[0] for r in files for n in range(1, r.count("/") + 1)})
        if self.j["kind"] == "into":
            mine = set(self.j.get("created", []))
            dirs = [d for d in dirs if any(d == c or d.startswith(c + "/") for c in mine)]
            dirs += (read_json(i.p(RECORD)) or {}).get("dirs", [])
        return {
            "name": i.name,
            "version": i.version,
            "payload": i.payload,
            "files": files,
            "dirs": sorted(set(dirs)),
        }

    def finish(self) -> None:
        """The committed install: write the record and the stamp, drop the backups."""
        i = self.i
        write_json(i.p(RECORD), self.j["record"])
        rec = self.j["record"]
        write_text(i.p(STAMP), f"{rec['name']} {rec['version']} {rec['payload']}".strip() + "\n")
        staging = self.j.get("staging", "")
        if self.j["kind"] == "into" and self.owned_staging(staging):
            remove(staging)
        os.unlink(i.p(JOURNAL))

    def owned_staging(self, path: str) -> bool:
        """Whether ``path`` (from a journal) is a staging directory of ours."""
        i = self.i
        if not isinstance(path, str) or os.path.dirname(path) not in (i.prefix, i.parent):
            return False
        if not os.path.basename(path).startswith((TMP, f".{i.base}{TMP}")):
            return False
        try:
            st = os.lstat(path)
        except OSError:
            return False
        return stat.S_ISDIR(st.st_mode) and st.st_uid == i.uid

    def rollback(self) -> None:
        """Undo an applying transaction: the prefix as it was before it."""
        i, j = self.i, self.j
        if j.get("kind") == "fresh":
            self.rollback_fresh()
            return
        for name in set(os.listdir(i.prefix)) - set(j.get("before_post", os.listdir(i.prefix))):
            if not transient(name):
                remove(i.p(name))
        for rel in reversed(j.get("created", [])):
            if safe_rel(rel):
                remove(i.p(rel))
        staged = self.owned_staging(j.get("staging", ""))
        if staged:
            self.restore(os.path.join(j["staging"], BACKUP))
        for rel, aside in j.get("saved", []):
            if safe_rel(rel) and safe_rel(aside) and lexists(i.p(aside)):
                remove(i.p(rel))
                os.rename(i.p(aside), i.p(rel))
        if staged:
            remove(j["staging"])
        os.unlink(i.p(JOURNAL))

    def restore(self, backup: str) -> None:
        """Put back what the transaction moved into ``backup``."""
        for rel in self.j.get("replaced", []) + self.j.get("removed", []):
            if safe_rel(rel) and lexists(os.path.join(backup, rel)):
                remove(self.i.p(rel))
                os.makedirs(os.path.dirname(self.i.p(rel)), exist_ok=True)
                os.rename(os.path.join(backup, rel), self.i.p(rel))

    def rollback_fresh(self) -> None:
        """Undo an install that made the prefix: remove what it holds (our own staging
        directory and lock inside it excepted), then the prefix itself unless our staging
        directory is in it (the prefix is then an empty directory of ours to install into)."""
        i = self.i
        if not (lexists(i.p(JOURNAL)) and os.lstat(i.prefix).st_uid == i.uid):
            remove(i.staging)
            return
        inside = os.path.dirname(i.staging) == i.prefix
        for name in os.listdir(i.prefix):
            if name not in (LOCK, JOURNAL) and not (inside and i.p(name) == i.staging):
                remove(i.p(name))
        os.unlink(i.p(JOURNAL))
        if not inside:
            for fd, path in list(i.locks):
                if path == i.p(LOCK):
                    i.locks.remove((fd, path))
                    os.close(fd)
            remove(i.prefix)


def mkscratch(prefix: str) -> str:
    """A new private directory for the post-install script's temporary files."""
    while True:
        path = os.path.join(prefix, f"{TMP}{os.getpid()}.post.{os.urandom(6).hex()}")
        try:
            os.mkdir(path, 0o700)
            return path
        except FileExistsError:
            continue


class signals_blocked:  # noqa: N801  # used as a `with` statement, like a function
    """SIGINT, SIGTERM and SIGHUP held while the block runs (a rollback is not interrupted),
    then the caller's mask again: a signal that came meanwhile is delivered on leaving."""

    HELD = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}

    def __enter__(self) -> None:
        self.old = signal.pthread_sigmask(signal.SIG_BLOCK, self.HELD)

    def __exit__(self, *_exc: object) -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, self.old)


def _interrupt(signum: int, _frame: object) -> None:
    raise Interrupted(128 + signum)


def parse(argv: list[str]) -> dict[str, str]:
    args = dict(zip(argv[::2], argv[1::2], strict=False))
    if len(argv) % 2 or not {"--staging", "--prefix", "--name", "--version"} <= set(args):
        raise Fail(
            "usage: install.py --staging DIR --prefix PREFIX --name NAME --version VER "
            "[--update 0|1] [--force 0|1] [--downgrade 0|1] [--payload SHA256] "
            "[--post-install REL] [--exists-text TEXT]"
        )
    return args


def main(argv: list[str]) -> int:
    reopen_std()
    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _interrupt)
    inst = None
    try:
        inst = Install(parse(argv))
        return inst.run()
    except Fail as e:
        say(f"ERROR: {e}")
        return 1
    except Interrupted as e:
        say(
            f"interrupted; {inst.prefix if inst else 'the prefix'} is as it was before (run the "
            "installer again to install)"
        )
        return e.code
    except OSError as e:
        say(f"ERROR: {e.strerror or e}: {e.filename or ''}; nothing was installed")
        return 1
    finally:
        if inst is not None:
            try:
                remove(inst.staging)
            except OSError:
                pass
            inst.release()


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
