"""Building the runtime: OpenSSL 3, CPython 3.11, libcurl and git, compiled from Debian's source
packages inside a Debian 11 (bullseye) root, so that nothing needs a newer C library than
bullseye's (glibc 2.31). Everything installs into one long placeholder prefix (255 bytes, as
conda-forge's); each component's files are recorded, debug information is stripped and every
RUNPATH made ``$ORIGIN``-relative. The result is cached in the user cache by a fingerprint of
the sources' versions, the build scripts and the build root, so that another clone (or CI) on
the machine reuses it; a cold build takes about 15-25 minutes on two cores."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from dxforge.elf import fix_runpaths, strip_debug
from dxforge.progress import SILENT, Progress
from dxforge.runtime import roots
from dxforge.runtime.apt import Apt
from dxforge.util import DxError, atomic_write_text, file_lock

RUNTIME_FORMAT = 1
"""Bump when what the build does changes outside the scripts (a rebuild follows)."""
BUILD_RELEASE = "bullseye"
GLIBC_FLOOR = (2, 31)
"""The C library of BUILD_RELEASE: nothing the seed ships (binary wheels included) needs more."""
SOURCE_RELEASE = "bookworm"
PLACEHOLDER = ("/opt/dxforge-build/" + "_placehold" * 30)[:255]
"""The prefix everything is built into; as long as conda-forge's binary placeholder."""
BUILD_ROOT = roots.RootSpec(
    BUILD_RELEASE,
    "buildd",
    ("pkg-config", "zlib1g-dev", "libbz2-dev", "liblzma-dev", "libsqlite3-dev", "libffi-dev",
     "libexpat1-dev", "libreadline-dev", "libncurses-dev", "uuid-dev", "libcrypt-dev"),
)


@dataclass(frozen=True)
class Component:
    """One piece of the runtime, built from a Debian source package."""

    name: str  # the conda-forge package it becomes
    source: str  # Debian source package
    script: str  # data/runtime/<script>
    license: str
    summary: str
    homepage: str


COMPONENTS = (
    Component("openssl", "openssl", "openssl.sh", "Apache-2.0",
              "OpenSSL 3: TLS and cryptography", "https://www.openssl.org"),
    Component("python", "python3.11", "python.sh", "Python-2.0",
              "CPython 3.11", "https://www.python.org"),
    Component("libcurl", "curl", "curl.sh", "curl",
              "The multiprotocol file transfer library", "https://curl.se"),
    Component("git", "git", "git.sh", "GPL-2.0-only",
              "Distributed version control system", "https://git-scm.com"),
)


@dataclass
class RuntimeBuild:
    """A finished runtime build in the user cache."""

    directory: Path
    fingerprint: str
    versions: dict[str, str]  # component -> Debian version
    files: dict[str, list[str]]  # component -> files (relative to the prefix)
    seconds: dict[str, float] = field(default_factory=dict)

    @property
    def prefix(self) -> Path:
        """The installed tree (its files hold :data:`PLACEHOLDER`)."""
        return self.directory / "prefix"


def script_text(name: str) -> str:
    return resources.files("dxforge").joinpath("data", "runtime", name).read_text()


def _apt(cache: Path) -> Apt:
    apt = Apt(SOURCE_RELEASE, cache / "apt" / SOURCE_RELEASE)
    try:
        apt.update()
    except DxError:
        if not (apt.dir / "updated").is_file():
            raise
    return apt


def fingerprint(cache: Path) -> tuple[str, dict[str, str]]:
    """The fingerprint of the runtime build and the source versions it would use."""
    apt = _apt(cache)
    versions = {c.name: apt.source_version(c.source) for c in COMPONENTS}
    data = {
        "format": RUNTIME_FORMAT,
        "placeholder": PLACEHOLDER,
        "root": BUILD_ROOT.key(apt.mirror),
        "components": [
            [c.name, c.source, versions[c.name],
             hashlib.sha256(script_text(c.script).encode()).hexdigest()]
            for c in COMPONENTS
        ],
    }
    digest = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    return digest, versions


def _files(tree: Path) -> set[str]:
    out = set()
    for dirpath, _dirnames, filenames in os.walk(tree):
        for name in filenames:
            out.add(os.path.relpath(os.path.join(dirpath, name), tree))
    for dirpath, dirnames, _ in os.walk(tree):
        for name in dirnames:
            p = os.path.join(dirpath, name)
            if os.path.islink(p):
                out.add(os.path.relpath(p, tree))
    return out


def _finalize(prefix: Path) -> None:
    """No static libraries, no debug information, ``$ORIGIN``-relative RUNPATHs."""
    for p in list(prefix.rglob("*")):
        if p.suffix in (".a", ".la") and p.is_file() and not p.is_symlink():
            p.unlink()
    strip_debug(prefix)
    dynload = next(prefix.glob("lib/python3*/lib-dynload"), None)
    fix_runpaths(prefix, prefix / "lib")
    if dynload is None:
        raise DxError(f"{prefix}: the python build installed no lib-dynload")


def build_runtime(cache: Path, progress: Progress = SILENT, jobs: int = 2) -> RuntimeBuild:
    """The runtime build for the current sources: from the cache, else built (slow)."""
    digest, versions = fingerprint(cache)
    base = cache / "runtime"
    out = base / digest[:16]
    meta = out / "runtime.json"
    with file_lock(base / ".lock", "the runtime build"):
        if meta.is_file():
            data = json.loads(meta.read_text())
            return RuntimeBuild(out, digest, data["versions"], data["files"],
                                data.get("seconds", {}))
        return _build(cache, out, digest, versions, progress, jobs)


def _build(cache: Path, out: Path, digest: str, versions: dict[str, str],
           progress: Progress, jobs: int) -> RuntimeBuild:
    apt = _apt(cache)
    root_tar = roots.tarball(BUILD_ROOT, cache, progress)
    work = roots.scratch(cache / "work", "runtime-")
    seconds: dict[str, float] = {}
    try:
        root = roots.extract(root_tar, work / "root")
        prefix = root / PLACEHOLDER.lstrip("/")
        prefix.mkdir(parents=True)
        files: dict[str, list[str]] = {}
        logs = out.parent / "logs" / digest[:16]
        for c in COMPONENTS:
            src = root / "build/src" / c.name
            progress.step(f"fetching Debian's {c.source} {versions[c.name]} source")
            where = cache / "sources" / c.source / versions[c.name].replace(":", "_")
            src.mkdir(parents=True)
            for f in apt.source(c.source, versions[c.name], where):
                shutil.copy2(f, src / f.name)
            (root / "build/work" / c.name).mkdir(parents=True)
            (root / "build" / c.script).write_text(script_text(c.script))
            before = _files(prefix)
            progress.step(f"building {c.name} {versions[c.name]} in Debian {BUILD_RELEASE} "
                          f"(log: {logs / (c.name + '.log')})")
            t0 = time.monotonic()
            roots.run_in(
                root, ["sh", "-eu", f"/build/{c.script}"], what=f"building {c.name}",
                log=logs / f"{c.name}.log", timeout=7200,
                env={"PH": PLACEHOLDER, "JOBS": str(jobs), "SRC": f"/build/src/{c.name}",
                     "WORK": f"/build/work/{c.name}", "HOME": "/build"},
            )
            seconds[c.name] = round(time.monotonic() - t0, 1)
            files[c.name] = sorted(_files(prefix) - before)
            if not files[c.name]:
                raise DxError(f"building {c.name} installed nothing; see {logs / c.name}.log")
        progress.step("stripping and making RUNPATHs $ORIGIN-relative")
        _finalize(prefix)
        present = _files(prefix)
        files = {k: [f for f in v if f in present] for k, v in files.items()}
        tmp = out.with_name(f".{out.name}.tmp")
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        os.replace(prefix, tmp / "prefix")
        atomic_write_text(tmp / "runtime.json", json.dumps(
            {"fingerprint": digest, "versions": versions, "files": files, "seconds": seconds},
            indent=1) + "\n")
        shutil.rmtree(out, ignore_errors=True)
        os.replace(tmp, out)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return RuntimeBuild(out, digest, versions, files, seconds)
