"""Making a staged prefix shippable and checking it: conda-meta records without build paths,
byte-compiled ``.pyc`` listed with their packages, one mtime, smoke tests, and the manifest of
files that hold the staging prefix."""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from dxforge.conda.channel import Package
from dxforge.core.util import DxError, atomic_write_text, execute

DXFORGE_DIR = ".dxforge"  # installer files inside the prefix


@dataclass(frozen=True)
class ManifestEntry:
    """A file of the staged prefix that holds the staging prefix."""

    path: str
    mode: str  # text | binary | symlink
    owner: str  # conda-meta json file name, "" when no package owns it


LOCAL_CHANNELS = "file:///opt/dxforge/channels"
"""What the records of an installed prefix say of a local channel: this, and its directory
name, never where it was on the build machine."""


def public_url(url: str, channels: list[str]) -> str:
    """``url`` as an installed prefix names it: a local channel's as :data:`LOCAL_CHANNELS`
    and the channel's directory name, anything else as it is."""
    for c in (c.rstrip("/") for c in channels if c.startswith("file://")):
        if url == c or url.startswith(c + "/"):
            return f"{LOCAL_CHANNELS}/{c.rsplit('/', 1)[-1]}" + url[len(c) :]
    return url


def fix_conda_meta(prefix: Path, channels: list[str] = ()) -> None:  # type: ignore[assignment]
    """Readable records without the build machine's paths: no package-cache paths, ``link``
    kept with no source (conda-pack reads it), local channels named by their directory."""
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        for key in ("extracted_package_dir", "package_tarball_full_path"):
            record.pop(key, None)
        record["link"] = {"source": "", "type": 1}
        for key in ("url", "channel"):
            if key in record:
                record[key] = public_url(str(record[key]), channels)
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n", mode=0o644)
    history = prefix / "conda-meta/history"
    if history.exists():
        history.chmod(0o644)


def record_pyc(prefix: Path, tag: str) -> None:
    """List the .pyc files we compiled (``tag``: cpython-311) in their packages' conda-meta
    records, as conda does for noarch python, so conda/mamba/pixi remove them with the
    package."""
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        files = record.get("files", [])
        known = set(files)
        entries = record.setdefault("paths_data", {"paths_version": 1, "paths": []})["paths"]
        added = []
        for rel in files:
            if not rel.endswith(".py"):
                continue
            head, _, tail = rel.rpartition("/")
            pyc = f"{head}/__pycache__/{tail[:-3]}.{tag}.pyc" if head else ""
            if pyc and pyc not in known and (prefix / pyc).is_file():
                added.append(pyc)
                known.add(pyc)
        if added:
            files.extend(added)
            entries.extend({"_path": p, "path_type": "pyc_file"} for p in added)
            atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n", mode=0o644)


def owners(prefix: Path, fixed: bool = False) -> dict[str, tuple[str, int]]:
    """Each file a package record lists (``.pyc`` included once recorded): its package's name
    and build time (0 when the record has none, or when ``fixed``: SOURCE_DATE_EPOCH is every
    file's)."""
    out: dict[str, tuple[str, int]] = {}
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        stamp = 0 if fixed else int(record.get("timestamp") or 0)
        stamp = stamp // 1000 if stamp > 10**11 else stamp  # conda's are in milliseconds
        for rel in record.get("files", []):
            out.setdefault(rel, (str(record.get("name", path.stem)), stamp))
    return out


def normalize_mtimes(prefix: Path, epoch: int, stamps: dict[str, tuple[str, int]]) -> None:
    """A packaged file gets its package's build time (``stamps``, from :func:`owners`),
    anything else ``epoch``: the payload's tar records these, the .pyc compiled next stay valid
    after extraction, and a package's files look the same from one installer to the next (so
    their compressed frames are reused)."""
    for dirpath, dirnames, filenames in os.walk(prefix):
        for name in filenames + dirnames:
            p = os.path.join(dirpath, name)
            stamp = stamps.get(os.path.relpath(p, prefix), ("", 0))[1] or epoch
            os.utime(p, (stamp, stamp), follow_symlinks=False)
    os.utime(prefix, (epoch, epoch))


PYC_MODES = ("imported", "unchecked-hash", "timestamp", "install")
"""How the installer's .pyc are made. ``imported``: unchecked-hash .pyc of every module the
installer's smoke tests import (python, dirac, the diracx packages: what a pilot's commands
load), the others compiled when first imported; ``unchecked-hash``: of every module, read
without looking at the source; ``timestamp``: conda's, valid while the sources keep their mtime;
``install``: none shipped, the installer compiles them. The first is the default, chosen by
benchmarks/bench_installer.py (its README has the figures)."""
_COMPILE = """
import compileall, importlib.util, json, py_compile, sys
job = json.load(sys.stdin)
mode = getattr(py_compile.PycInvalidationMode, job["mode"])
failed = []
for d in job["dirs"]:
    compileall.compile_dir(d, quiet=1, workers=job["workers"], force=True,
                           stripdir=job["stripdir"], prependdir=job["prependdir"],
                           invalidation_mode=mode)
for f in job["files"]:
    try:
        py_compile.compile(f, cfile=importlib.util.cache_from_source(f), doraise=True,
                           dfile=job["prependdir"] + f[len(job["stripdir"]):],
                           invalidation_mode=mode)
    except py_compile.PyCompileError:
        print(f"*** Error compiling {f!r}.")
"""


def _clean_env(prefix: Path, home: Path) -> dict[str, str]:
    return {
        "PATH": f"{prefix}/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def byte_compile(
    prefix: Path,
    python_rel: str,
    recorded: str,
    mode: str,
    files: list[str] | None = None,
    workers: int = 2,
    runner: Sequence[str] = (),
) -> list[str]:
    """Compile ``files`` (default: every .py under lib/) with the staged python, isolated,
    recording them under the prefix ``recorded`` (not where they are staged); returns the files
    that did not compile (warnings: some packages ship templates named .py). ``runner``: the
    command prefix that runs the prefix's programs (the emulation, for another machine's)."""
    job = {
        "dirs": []
        if files is not None
        else [str(p) for p in sorted((prefix / "lib").glob("python3*")) if p.is_dir()],
        "files": files or [],
        "stripdir": str(prefix),
        "prependdir": recorded,
        "mode": ("unchecked-hash" if mode == "imported" else mode).upper().replace("-", "_"),
        "workers": workers,
    }
    home = prefix.parent / (prefix.name[:20] + ".home")
    home.mkdir(exist_ok=True)
    try:
        ran = execute(
            [*runner, prefix / python_rel, "-I", "-B", "-c", _COMPILE],
            input=json.dumps(job),
            env=_clean_env(prefix, home),
            timeout=1800,
            check=False,
            what=f"byte-compiling with {prefix / python_rel}",
        )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    failures = [
        line.split("Error compiling", 1)[1].strip(" '.")
        for line in ran.stdout.splitlines()
        if "Error compiling" in line
    ]
    if ran.returncode not in (0, 1) or (ran.returncode == 1 and not failures):
        raise DxError(f"byte-compiling with {prefix / python_rel} failed:\n{ran.tail()}")
    return failures


def imported_sources(record: Path, prefix: Path) -> list[str]:
    """The .py files of ``prefix`` whose bytecode python wrote under the pycache prefix
    ``record`` (``PYTHONPYCACHEPREFIX``): the modules the recorded runs imported."""
    out = []
    for pyc in record.rglob("*.pyc"):
        rel = pyc.relative_to(record)
        source = Path("/") / rel.parent / (pyc.name.split(".", 1)[0] + ".py")
        if source.is_file() and source.is_relative_to(prefix):
            out.append(str(source))
    return sorted(out)


def smoke_test(
    prefix: Path,
    python_rel: str,
    packages: list[Package],
    record: Path | None = None,
    runner: Sequence[str] = (),
) -> list[str]:
    """Run what must work in the staged prefix (through ``runner``, as :func:`byte_compile`);
    returns the commands run. With ``record``, the bytecode of what they import is written
    there (``PYTHONPYCACHEPREFIX``)."""
    names = {p.name for p in packages}
    imports = "sys, json" + (", ssl" if "openssl" in names else "")
    checks: list[tuple[str, list[str]]] = [
        (
            "python",
            [str(prefix / python_rel), "-I", "-B", "-c", f"import {imports}; print(sys.prefix)"],
        ),
    ]
    if "git" in names:
        checks.append(("git --version", [str(prefix / "bin/git"), "--version"]))
    if "voms" in names:
        checks.append(
            ("voms-proxy-init --version", [str(prefix / "bin/voms-proxy-init"), "--version"])
        )
    if "diracx-cli" in names:
        checks.append(("dirac --help", [str(prefix / "bin/dirac"), "--help"]))
    mods = sorted(
        "diracx." + n[len("diracx-") :].replace("-", "_")
        for n in names
        if n.startswith("diracx-") and n != "diracx-testing"
    )
    if mods:
        checks.append(
            (
                f"import {', '.join(mods)}",
                [str(prefix / python_rel), "-c", f"import {', '.join(mods)}"],
            )
        )
    home = prefix.parent / (prefix.name[:20] + ".home")
    home.mkdir(exist_ok=True)
    env = _clean_env(prefix, home)
    if record is not None:
        del env["PYTHONDONTWRITEBYTECODE"]
        env["PYTHONPYCACHEPREFIX"] = str(record)
        checks = [(w, [c[0], *(a for a in c[1:] if a not in ("-I", "-B"))]) for w, c in checks]
    done = []
    try:
        for what, cmd in checks:
            res = execute(
                [*runner, *cmd],
                env=env,
                cwd=home,
                timeout=300 if not runner else 1200,
                check=False,
                what=f"smoke test `{what}` in the staged prefix {prefix}",
            )
            if not res.ok:
                raise DxError(
                    f"smoke test `{what}` in the staged prefix {prefix} failed "
                    f"(exit {res.returncode}):\n{res.tail()}"
                )
            if what == "python" and res.stdout.strip() != str(prefix):
                raise DxError(
                    f"the staged python reports sys.prefix {res.stdout.strip()}, not {prefix}"
                )
            done.append(what)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return done


def _owners(prefix: Path) -> dict[str, str]:
    owners: dict[str, str] = {}
    for path in (prefix / "conda-meta").glob("*.json"):
        for rel in json.loads(path.read_text(encoding="utf-8")).get("files", []):
            owners[rel] = path.name
    return owners


def _scan_file(p: str, rel: str, needle: bytes) -> tuple[str, int]:
    """How file ``p`` holds ``needle`` ("symlink", "binary", "text" or "") and its size (a
    symlink counts nothing)."""
    if os.path.islink(p):
        return ("symlink" if needle in os.readlink(p).encode() else ""), 0
    size = os.path.getsize(p)
    if rel.endswith(".pyc"):
        return "", size
    with open(p, "rb") as f:
        data = f.read()
    if needle not in data:
        return "", size
    return ("binary" if b"\0" in data else "text"), size


def scan_manifest(prefix: Path, holds: str) -> tuple[list[ManifestEntry], int]:
    """Every file (outside .pyc, conda-meta/ and .dxforge/) holding the prefix ``holds``, and
    the prefix's total size in bytes."""
    needle = holds.encode()
    owners = _owners(prefix)
    entries: list[ManifestEntry] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(prefix):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, prefix)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in ("conda-meta", DXFORGE_DIR)]
        for name in sorted(filenames):
            rel = os.path.normpath(os.path.join(rel_dir, name))
            mode, size = _scan_file(os.path.join(dirpath, name), rel, needle)
            total += size
            if mode:
                entries.append(ManifestEntry(rel, mode, owners.get(rel, "")))
    for d in ("conda-meta", DXFORGE_DIR):
        total += sum(
            p.stat().st_size for p in (prefix / d).rglob("*") if p.is_file() and not p.is_symlink()
        )
    return entries, total
