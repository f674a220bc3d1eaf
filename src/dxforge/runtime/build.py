"""Building the runtime's components in the build root, each once, cached by fingerprint.

Every component (:mod:`dxforge.runtime.components`) is compiled by its script inside a Debian
11 (bullseye) build root, for the glibc floor (:mod:`dxforge.runtime.floor`), into the one long
placeholder prefix (:data:`dxforge.conda.package.PLACEHOLDER`). A component sees, at that prefix,
exactly the files of the components it needs (bind-mounted in its own mount namespace), so
independent components build side by side and what each installs is exactly what it adds.
Its files are stripped, their RUNPATHs made ``$ORIGIN``-relative and checked against the floor,
then kept in the user cache under the component's fingerprint: its source, its script, the
build root, the floor and the fingerprints of what it needs. Another clone, CI, or a change to
one component reuses every other.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from dxforge.conda.elf import above_floor, fix_runpaths, strip, walk_elf
from dxforge.conda.package import PLACEHOLDER
from dxforge.core import schedule, store
from dxforge.core.progress import SILENT, Progress
from dxforge.core.store import Store, link_or_copy
from dxforge.core.util import DxError, file_lock
from dxforge.isolation import roots
from dxforge.isolation.apt import Apt, Mirror
from dxforge.runtime import cross
from dxforge.runtime import floor as floors
from dxforge.runtime.components import SOURCE_RELEASE, Component, components
from dxforge.runtime.platforms import LIBRARY_DEV, NATIVE, RuntimePlatform, runtime_platform
from dxforge.runtime.sources import obtain

RUNTIME_FORMAT = 2
"""Bump when what the build does changes outside the scripts (a rebuild follows)."""
BUILD_RELEASE = "bullseye"
GLIBC_FLOOR = (2, 28)
"""The oldest C library the runtime runs on (EL8); binary wheels are chosen for it too."""
BUILD_ROOT = roots.RootSpec(
    BUILD_RELEASE,
    "buildd",
    (
        "pkg-config",
        *LIBRARY_DEV,
        "tcl",
        "autoconf",
        "automake",
        "libtool",
        "bison",
        "flex",
    ),
)
FLOOR_DIR = "/build/floor"


@dataclass
class Built:
    """One component's files in the user cache."""

    component: Component
    directory: Path
    fingerprint: str
    version: str
    files: list[str]
    seconds: float = 0.0

    @property
    def tree(self) -> Path:
        """Its files, at their place under the prefix (holding :data:`PLACEHOLDER`)."""
        return self.directory / "tree"


@dataclass
class RuntimeBuild:
    """The runtime: every component built, and one tree holding them all."""

    directory: Path
    fingerprint: str
    python: str
    parts: dict[str, Built] = field(default_factory=dict)

    @property
    def prefix(self) -> Path:
        """Every package component's files in one tree (hard links into the cache)."""
        return self.directory / "prefix"

    @property
    def versions(self) -> dict[str, str]:
        return {n: b.version for n, b in self.parts.items()}

    @property
    def files(self) -> dict[str, list[str]]:
        return {n: b.files for n, b in self.parts.items()}

    @property
    def seconds(self) -> dict[str, float]:
        return {n: b.seconds for n, b in self.parts.items()}

    def tool(self, name: str) -> Path:
        """The file of a tool component (``zstd-decoder``)."""
        built = self.parts[name]
        return built.tree / built.files[0]


def script_text(name: str) -> str:
    return resources.files("dxforge").joinpath("data", "runtime", name).read_text()


def apt_for(cache: Path) -> Apt:
    """The private apt of :data:`SOURCE_RELEASE`, its lists refreshed when they are old."""
    apt = Apt(SOURCE_RELEASE, cache / "apt" / SOURCE_RELEASE)
    try:
        apt.update()
    except DxError:
        if not (apt.dir / "updated").is_file():
            raise
    return apt


@dataclass(frozen=True)
class Plan:
    """What a runtime build will use: each component's version and fingerprint."""

    python: str
    components: tuple[Component, ...]
    versions: dict[str, str]
    fingerprints: dict[str, str]
    floor: floors.FloorPlan | None  # None until the build root is at hand
    platform: RuntimePlatform = field(default_factory=runtime_platform)

    @property
    def fingerprint(self) -> str:
        return store.fingerprint(sorted(self.fingerprints.items()))[:32]


def component_fingerprint(
    c: Component,
    version: str,
    root: str,
    needs: list[str],
    platform: RuntimePlatform,
) -> str:
    """What one component's build depends on: its source, its script as it runs for
    ``platform``, the build root, the floor and what it needs (``needs``: their
    fingerprints). linux-64's carries no platform, so that it is what it was before
    platforms."""
    data: dict[str, object] = {
        "format": RUNTIME_FORMAT,
        "placeholder": PLACEHOLDER,
        "root": root,
        "floor": GLIBC_FLOOR,
        "name": c.name,
        "debian": c.debian,
        "version": version,
        "pin": c.pin.sha256 if c.pin else None,
        "script": hashlib.sha256(
            platform.script(c.script, script_text(c.script)).encode()
        ).hexdigest(),
        "needs": needs,
    }
    key = platform.key()
    if key is not None:
        data["platform"] = key
    return store.fingerprint(data)


def plan(cache: Path, python: str, only: set[str] | None = None, subdir: str = NATIVE) -> Plan:
    """The fingerprints of the runtime for CPython ``python`` on ``subdir`` and the sources it
    would use (of the components ``only`` names and what they need, when given)."""
    platform = runtime_platform(subdir)
    apt = apt_for(cache)
    comps = components(python)
    if only is not None:
        wanted = set(only)
        for c in reversed(comps):
            if c.name in wanted:
                wanted.update(c.needs)
        comps = tuple(c for c in comps if c.name in wanted)
    versions = {c.name: c.version if c.pin else apt.source_version(c.debian) for c in comps}
    root = root_key(platform, apt.mirror)
    fps: dict[str, str] = {}
    for c in comps:
        needs = [fps[n] for n in c.needs]
        fps[c.name] = component_fingerprint(c, versions[c.name], root, needs, platform)
    return Plan(python, comps, versions, fps, None, platform)


def root_key(platform: RuntimePlatform, mirror: Mirror) -> str:
    """What the components of ``platform`` are built in: the build root (linux-64's key as it
    was), or the cross route's build root and sysroot."""
    if platform.native:
        return BUILD_ROOT.key(mirror)
    host = cross.build_root(BUILD_ROOT, platform).key(mirror)
    answers = store.fingerprint(cross.CONFIGURE_ANSWERS)[:16]  # in the config.site
    return f"{host}+{cross.sysroot(BUILD_RELEASE, platform).key(mirror)}+{answers}"


def fingerprint(cache: Path, python: str, subdir: str = NATIVE) -> str:
    """The runtime's fingerprint for ``subdir`` (a CI cache key)."""
    return plan(cache, python, subdir=subdir).fingerprint


def components_store(cache: Path) -> Store:
    """Built components in the user cache (entries made before the store, without sha256,
    keep their layout and are read as before)."""
    return Store(cache / "runtime" / "components", "component.json", legacy=True)


def _files(tree: Path) -> list[str]:
    """Files and symlinks under ``tree``, relative, sorted."""
    out = []
    for dirpath, dirnames, filenames in os.walk(tree):
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            out.append(os.path.relpath(os.path.join(dirpath, name), tree))
    return sorted(out)


def _load(c: Component, kept: Store, fp: str) -> Built | None:
    entry = kept.get(f"{c.name}-{fp[:16]}")
    if entry is None:
        return None
    data = entry.meta
    return Built(c, entry.path, fp, data["version"], data["files"], data.get("seconds", 0.0))


class _Builder:
    """One runtime build session: the build root, and the components still to make."""

    def __init__(
        self, cache: Path, p: Plan, progress: Progress, jobs: int, build_python: Path | None = None
    ) -> None:
        self.cache = cache
        self.build_python = build_python  # the cross route's: linux-64's runtime prefix
        self.plan = p
        self.progress = progress
        self.jobs = jobs
        self.base = cache / "runtime"
        self.logs = self.base / "logs"
        self.work: Path | None = None
        self.root: Path | None = None
        self.floor: floors.FloorPlan | None = None
        self.lock = threading.Lock()
        self.apt: Apt | None = None
        self.store = components_store(cache)

    def entry(self, c: Component) -> str:
        return f"{c.name}-{self.plan.fingerprints[c.name][:16]}"

    def _root(self) -> Path:
        with self.lock:
            if self.root is None:
                platform = self.plan.platform
                spec = BUILD_ROOT if platform.native else cross.build_root(BUILD_ROOT, platform)
                tar = roots.tarball(spec, self.cache, self.progress)
                self.work = roots.workdir(self.cache / "work", "runtime-")
                self.progress.step(f"unpacking the Debian {BUILD_RELEASE} build root")
                self.root = roots.extract(tar, self.work / "root")
                libc = self.root / platform.libc_dir
                site = ""
                if not platform.native:
                    libc = self._sysroot(self.root) / platform.libc_dir
                    site = "\n".join(cross.CONFIGURE_ANSWERS) + "\n"
                self.floor = floors.plan(libc, GLIBC_FLOOR)
                d = self.root / FLOOR_DIR.lstrip("/")
                d.mkdir(parents=True)
                (d / "glibc-floor.h").write_text(self.floor.header())
                (d / "config.site").write_text(self.floor.config_site() + site)
                (self.root / PLACEHOLDER.lstrip("/")).mkdir(parents=True)
                self.apt = apt_for(self.cache)
            return self.root

    def _sysroot(self, root: Path) -> Path:
        """The platform's sysroot, unpacked inside the build root, its links made relative."""
        platform = self.plan.platform
        spec = cross.sysroot(BUILD_RELEASE, platform)
        self.progress.step(f"unpacking the {platform.debian_arch} sysroot ({spec.name})")
        where = roots.extract(
            roots.tarball(spec, self.cache, self.progress), root / cross.SYSROOT.lstrip("/")
        )
        cross.relativize(where)
        (root / cross.BUILD_PYTHON_DIR.lstrip("/")).mkdir(parents=True)
        return where

    def _sources(self, c: Component, dest: Path) -> None:
        version = self.plan.versions[c.name]
        if c.pin is not None:
            shutil.copy2(obtain(c.pin, self.cache / "sources" / "upstream"), dest / c.pin.filename)
            return
        assert self.apt is not None
        where = self.cache / "sources" / c.debian / version.replace(":", "_")
        for f in self.apt.source(c.debian, version, where):
            shutil.copy2(f, dest / f.name)

    def _environment(
        self, c: Component, version: str, stage: Path
    ) -> tuple[dict[str, str], dict[str, Path]]:
        """What ``c``'s script runs with, and the host directories bound into the root."""
        cc = f"-include {FLOOR_DIR}/glibc-floor.h"
        env = {
            "PH": PLACEHOLDER,
            "JOBS": str(self.jobs),
            "SRC": f"/build/{c.name}/src",
            "WORK": f"/build/{c.name}/work",
            "HOME": f"/build/{c.name}",
            "CC": f"gcc {cc}",
            "CXX": f"g++ {cc}",
            "CONFIG_SITE": f"{FLOOR_DIR}/config.site",
            "VERSION": version,
        }
        binds = {PLACEHOLDER: stage}
        if not self.plan.platform.native:
            env.update(cross.environment(self.plan.platform, f"{FLOOR_DIR}/glibc-floor.h"))
            if self.build_python is not None:
                binds[cross.BUILD_PYTHON_DIR] = self.build_python
        return env, binds

    def build(self, c: Component, needs: list[Built]) -> Built:
        root = self._root()
        assert self.work is not None and self.floor is not None
        fp = self.plan.fingerprints[c.name]
        version = self.plan.versions[c.name]
        log = self.logs / f"{c.name}-{fp[:16]}.log"
        stage = self.work / "prefix" / c.name
        stage.mkdir(parents=True)
        inherited: dict[str, tuple[int, int]] = {}
        for dep in needs:
            for rel in dep.files:
                src, dst = dep.tree / rel, stage / rel
                dst.parent.mkdir(parents=True, exist_ok=True)
                if src.is_symlink():
                    os.symlink(os.readlink(src), dst)
                else:
                    shutil.copy2(src, dst)
                    st = dst.stat()
                    inherited[rel] = (st.st_size, st.st_mtime_ns)
                inherited.setdefault(rel, (-1, -1))
        home = root / "build" / c.name
        for sub in ("src", "work"):
            (home / sub).mkdir(parents=True)
        self.progress.step(f"fetching {c.name} {version} ({c.source})")
        self._sources(c, home / "src")
        (home / c.script).write_text(self.plan.platform.script(c.script, script_text(c.script)))
        self.progress.step(
            f"building {c.name} {version} in Debian {BUILD_RELEASE} for glibc "
            f"{self.floor.text} (log: {log})"
        )
        t0 = time.monotonic()
        env, binds = self._environment(c, version, stage)
        roots.run_in(
            root,
            ["sh", "-eu", f"/build/{c.name}/{c.script}"],
            what=f"building {c.name}",
            log=log,
            timeout=7200,
            binds=binds,
            env=env,
        )
        seconds = round(time.monotonic() - t0, 1)
        for rel, (size, mtime) in inherited.items():
            p = stage / rel
            if size >= 0 and (
                not p.is_file() or (p.stat().st_size, p.stat().st_mtime_ns) != (size, mtime)
            ):
                raise DxError(
                    f"building {c.name} changed {rel}, a file of a component it needs; "
                    f"its script must not install over it (log: {log})"
                )
        own = [rel for rel in _files(stage) if rel not in inherited]

        def fill(tmp: Path) -> dict[str, object]:
            tree = tmp / "tree"
            tree.mkdir()
            for rel in own:
                (tree / rel).parent.mkdir(parents=True, exist_ok=True)
                os.replace(stage / rel, tree / rel)
            shutil.rmtree(stage)
            assert self.floor is not None
            _finalize(c, tree, own, log, self.floor)
            files = _files(tree)
            if not files:
                raise DxError(f"building {c.name} installed nothing; see {log}")
            return {
                "name": c.name,
                "fingerprint": fp,
                "version": version,
                "files": files,
                "seconds": seconds,
                "floor": self.floor.text,
            }

        entry = self.store.put(self.entry(c), fill)
        return Built(c, entry.path, fp, version, entry.meta["files"], seconds)

    def close(self) -> None:
        if self.work is not None:
            shutil.rmtree(self.work, ignore_errors=True)


def _finalize(
    c: Component, tree: Path, files: list[str], log: Path, floor: floors.FloorPlan
) -> None:
    """No static libraries, no debug information, ``$ORIGIN``-relative RUNPATHs, and nothing
    that needs a C library newer than the floor."""
    for rel in files:
        p = tree / rel
        if p.suffix in (".a", ".la") and p.is_file() and not p.is_symlink():
            p.unlink()
    strip(tree)
    if not c.tool:
        fix_runpaths(tree, tree / "lib")
    over = {
        info.path.relative_to(tree).as_posix(): above_floor(info.path, floor.floor)
        for info in walk_elf(tree)
    }
    over = {k: v for k, v in over.items() if v}
    if over:
        shown = "; ".join(f"{k}: {', '.join(v)}" for k, v in sorted(over.items()))
        raise DxError(
            f"{c.name} needs a C library newer than glibc {floor.text}: {shown}. Tell its "
            f"configure that the function is missing (the build root's {FLOOR_DIR}/config.site "
            f"holds those dxforge found), or patch it out in data/runtime/{c.script} (log: {log})"
        )


def _merge(parts: dict[str, Built], dest: Path) -> None:
    """One tree of every package component, by hard links (copies across file systems)."""
    tmp = dest.with_name(f".{dest.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for built in parts.values():
        if built.component.tool:
            continue
        for rel in built.files:
            link_or_copy(built.tree / rel, tmp / rel)
    os.replace(tmp, dest)


def build_runtime(
    cache: Path,
    python: str,
    progress: Progress = SILENT,
    jobs: int = 2,
    parallel: int = 2,
    only: set[str] | None = None,
    subdir: str = NATIVE,
) -> RuntimeBuild:
    """The runtime for CPython ``python`` on ``subdir``: every component (or those ``only``
    names, with what they need) from the cache, or built (up to ``parallel`` at a time, each
    with ``jobs`` make jobs). Another platform than linux-64 is cross-compiled
    (:mod:`dxforge.runtime.cross`); its CPython by linux-64's own, built first when missing."""
    p = plan(cache, python, only, subdir)
    base = cache / "runtime"
    out = base / "merged" / p.fingerprint[:16]
    build_python = None
    if not p.platform.native and "python" in p.fingerprints and not _all_built(cache, p):
        build_python = build_runtime(cache, python, progress, jobs, parallel, {"python"}).prefix
    with file_lock(base / ".lock", "the runtime build"):
        builder = _Builder(cache, p, progress, jobs, build_python)
        parts: dict[str, Built] = {}
        todo = {c.name: c for c in p.components}
        for c in p.components:
            found = _load(c, builder.store, p.fingerprints[c.name])
            if found is not None:
                parts[c.name] = found
                del todo[c.name]
        if todo:
            progress.begin("runtime components", len(todo))
        try:
            _schedule(todo, parts, builder, progress, parallel)
        finally:
            builder.close()
        if not (out / "prefix").is_dir():
            out.mkdir(parents=True, exist_ok=True)
            _merge(parts, out / "prefix")
    return RuntimeBuild(out, p.fingerprint, python, parts)


def _all_built(cache: Path, p: Plan) -> bool:
    kept = components_store(cache)
    return all(_load(c, kept, p.fingerprints[c.name]) is not None for c in p.components)


def _schedule(
    todo: dict[str, Component],
    parts: dict[str, Built],
    builder: _Builder,
    progress: Progress,
    parallel: int,
) -> None:
    """Build ``todo`` in dependency order, each component once those it needs are built (up to
    ``parallel`` at a time); the first failure stops the rest and is raised."""
    unknown = sorted(
        c.name for c in todo.values() if any(n not in todo and n not in parts for n in c.needs)
    )
    if unknown:
        raise DxError(
            f"runtime components {', '.join(unknown)} need components that "
            "are not in the runtime; fix `needs` in runtime/components.py"
        )

    def report(event: schedule.Event) -> None:
        if event.kind == "start":
            progress.start(event.name)
        elif event.kind == "done":
            assert isinstance(event.result, Built)
            parts[event.name] = event.result
            progress.done(f"{event.name} {event.result.version} ({event.result.seconds:.0f} s)")

    schedule.run(
        {c.name: [n for n in c.needs if n in todo] for c in todo.values()},
        lambda name: builder.build(todo[name], _closure(todo[name], parts)),
        jobs=parallel,
        report=report,
    ).raise_first()


def _closure(c: Component, parts: dict[str, Built]) -> list[Built]:
    """What ``c`` needs, with what those need, each once."""
    out: dict[str, Built] = {}
    todo = list(c.needs)
    while todo:
        n = todo.pop(0)
        if n not in out:
            out[n] = parts[n]
            todo += parts[n].component.needs
    return list(out.values())


def tool(cache: Path, name: str, progress: Progress = SILENT, subdir: str = NATIVE) -> Path:
    """The file of a tool component (``zstd-decoder``) for ``subdir``'s machine, from the
    cache or built."""
    rt = build_runtime(cache, "3", progress, only={name}, subdir=subdir)
    return rt.tool(name)
