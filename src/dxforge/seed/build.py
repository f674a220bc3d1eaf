"""``dxforge seed``: the offline seed channel, made once and then only assembled.

This module is long because it is the one place where the seed's pieces meet: the runtime
(built by :mod:`dxforge.runtime`), the library closure of it and of the binary wheels, the
resolution of the PyPI requirements, the wheel conversions, and the channel itself. Every piece
is kept in the user cache by what it depends on:

- the resolution (the requirement set -> the exact files with their sha256), recorded and reused
  until the requirements change, ``refresh`` is asked, or a recorded file can no longer be had;
- each download, each conversion and each group of runtime packages, by their inputs;
- the whole channel, by the seed's fingerprint (its inputs and the resolution), so that another
  clone's seed is hard links of it, checked against its repodata.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import re
import shutil
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

import dxforge
from dxforge.builder.fetch import fetch_sources
from dxforge.conda import channel as ch
from dxforge.core import store
from dxforge.core.progress import SILENT, Progress
from dxforge.core.specs import split_spec
from dxforge.core.store import Entry, Store, link_or_copy, link_tree
from dxforge.core.util import DxError, atomic_write_text, file_lock, run, sha256_file
from dxforge.isolation import roots
from dxforge.isolation.apt import conda_version, mirror
from dxforge.project.layout import Layout
from dxforge.project.model import Project
from dxforge.project.target import Target
from dxforge.pypa.names import marker_applies, pypi_name
from dxforge.pypa.pypi import PackageIndex, index_url
from dxforge.runtime import cross
from dxforge.runtime.build import BUILD_ROOT, RuntimeBuild, apt_for, build_runtime
from dxforge.runtime.libs import closure
from dxforge.runtime.packages import (
    PACKAGING_FORMAT,
    Provides,
    certificates_package,
    component_needs,
    component_package,
    component_sonames,
    library_package,
    python_abi_package,
)
from dxforge.runtime.platforms import runtime_platform
from dxforge.seed import needs, platforms, wheels
from dxforge.seed.plan import SeedPlan, plan

MANIFEST = "dxforge-seed.json"
SEED_FORMAT = 3
"""Bump when what the seed holds changes for the same inputs (a full rebuild follows)."""
CERTIFICATES = "ca-certificates"


@dataclass
class SeedOptions:
    project: Project
    out: Path | None = None  # default: the layout's seed channel
    index_url: str | None = None
    workers: int = 2
    refresh: bool = False  # resolve the requirements again, ignoring the recorded resolution
    platforms: tuple[str, ...] = ()  # subdirs beyond linux-64 (``linux-aarch64``): binary wheels

    @property
    def layout(self) -> Layout:
        return self.project.layout

    @property
    def channel(self) -> Path:
        return Path(os.path.abspath(self.out or self.layout.seed))


@dataclass
class SeedResult:
    """What ``dxforge seed`` made, assembled from the user cache, or found up to date."""

    status: str  # built | assembled | up-to-date
    channel: Path
    fingerprint: str
    packages: list[str]
    size_bytes: int
    seconds: float
    inputs: dict[str, Any] = field(default_factory=dict)
    resolution: str = ""  # recorded | resolved

    @property
    def count(self) -> int:
        return len(self.packages)

    def subdirs(self) -> dict[str, tuple[int, int]]:
        """``{subdir: (packages, bytes)}``."""
        out = {}
        for sub in ch.CHANNEL_SUBDIRS:
            files = [self.channel / p for p in self.packages if p.startswith(sub + "/")]
            if files or sub in ch.SUBDIRS:
                out[sub] = (len(files), sum(f.stat().st_size for f in files if f.exists()))
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "channel": str(self.channel),
            "fingerprint": self.fingerprint,
            "resolution": self.resolution,
            "inputs": self.inputs,
            "packages": self.packages,
            "count": self.count,
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 2),
        }


def seed_plan(project: Project, index_url: str | None = None) -> SeedPlan:
    """The seed's requirements: the recipes', construct.yaml's, and what DiracX's own test
    suites need (the sdists' extras, read from the source cache, fetched when missing)."""
    layout, target, recipes = project.layout, project.target, list(project.recipes)
    siblings = {r.name for r in recipes}
    reqs = {
        f"{r.path}: requirements.{sec}": specs
        for r in recipes
        for sec, specs in r.requirements.items()
    }
    fetch_sources(recipes, layout.sources, index_url=index_url)
    tests = {
        "the upstream test suites (the sdists' extras)": needs.seed_requirements(
            recipes, layout.sources, target
        ),
        "the end-to-end server (dxforge.seed.needs.END_TO_END)": needs.end_to_end(siblings),
    }
    specs = list(project.construct.specs) if project.construct_path.is_file() else []
    return plan(layout.root, siblings, reqs, specs, tests)


def _extras_inputs(
    requires_dist: list[str], lookup: dict[str, list[str]], target: Target
) -> dict[str, list[str]]:
    """The metadata a conversion reads to expand extras: part of its cache key."""
    used: dict[str, list[str]] = {}
    for line in requires_dist:
        req = Requirement(line)
        if req.extras and marker_applies(req.marker, target):
            name = canonicalize_name(req.name)
            used[name] = lookup.get(name, [])
    return used


def _cached(entry: Path, pattern: str, make: Callable[[Path], object]) -> list[Path]:
    """The files matching ``pattern`` in the store entry ``entry`` (each file's sha256
    checked); when it is not there, ``make(tmp)`` fills a new one."""
    kept = Store(entry.parent)
    found = kept.get(entry.name)
    if found is None:

        def fill(tmp: Path) -> dict[str, Any]:
            make(tmp)
            return {}

        found = kept.put(entry.name, fill)
    return sorted(found.path.glob(pattern))


def _spec_name(spec: str) -> str:
    """The PyPI name a seed plan's spec asks for: a PEP 508 line (the test suites') or a conda
    spec (the recipes' and construct.yaml's)."""
    try:
        name = split_spec(spec)[0]
    except DxError:
        try:
            return canonicalize_name(Requirement(spec).name)
        except InvalidRequirement:
            return spec
    return canonicalize_name(pypi_name(name.split("[", 1)[0]))


def _asked_by(sp: SeedPlan, message: str) -> str:
    """Where the requirements that ``message`` names were asked for (recipe file and key)."""
    words = {canonicalize_name(w) for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", message)}
    lines = [
        f"\n  {spec}: asked for in {'; '.join(where)}"
        for spec, where in sp.sources.items()
        if _spec_name(spec) in words
    ]
    return "\nfix the requirement where it is asked for:" + "".join(lines) if lines else ""


Fetched = tuple[wheels.Resolved, Path, set[str]]
"""A resolved distribution, its wheel in the cache, and the libraries it needs from outside."""


class Seeder:
    def __init__(self, opts: SeedOptions, progress: Progress) -> None:
        self.opts = opts
        self.progress = progress
        self.cache = opts.layout.cache / "seed"
        self.logs = opts.layout.logs / "seed"

    def run(self) -> SeedResult:
        t0 = time.monotonic()
        extra = _platforms(self.opts.platforms)
        self.cache.mkdir(parents=True, exist_ok=True)
        out = self.opts.channel
        with file_lock(ch.lock_path(out), f"channel {out}"):
            target = self.opts.project.target
            self.progress.step(
                f"planning the seed for CPython {target.python}, glibc >={target.glibc_text}"
            )
            sp = seed_plan(self.opts.project, self.opts.index_url)
            rt = build_runtime(self.opts.layout.cache, target.python, self.progress)
            target = target.with_full(conda_version(rt.versions["python"]))
            deb, deb_version = apt_for(self.opts.layout.cache).binary(
                CERTIFICATES, self.cache / "debs"
            )
            inputs = {
                "dxforge": dxforge.__version__,
                "format": SEED_FORMAT,
                "converter": wheels.CONVERTER_VERSION,
                "packaging": PACKAGING_FORMAT,
                "runtime": {"fingerprint": rt.fingerprint, "versions": rt.versions},
                "target": asdict(target),
                "requirements": sp.requirements,
                "certificates": deb_version,
            }
            runtimes = {
                subdir: build_runtime(
                    self.opts.layout.cache, target.python, self.progress, subdir=subdir
                )
                for subdir in extra
            }
            if extra:  # absent for linux-64 alone: its fingerprint is unchanged
                inputs["platforms"] = extra
                inputs["platform_runtimes"] = {
                    s: {"fingerprint": r.fingerprint, "versions": r.versions}
                    for s, r in runtimes.items()
                }
            resolved, how = self._resolution(sp, rt, target, inputs)
            fingerprint = store.fingerprint([inputs, [asdict(r) for r in resolved]])
            old = _manifest(out)
            if old.get("fingerprint") == fingerprint and all(
                (out / p).exists() for p in old.get("packages", [])
            ):
                return SeedResult(
                    "up-to-date",
                    out,
                    fingerprint,
                    old["packages"],
                    old.get("size_bytes", 0),
                    time.monotonic() - t0,
                    old.get("inputs", {}),
                    how,
                )
            channels = Store(self.cache / "channels", MANIFEST)
            stored = channels.get(fingerprint[:16], key=fingerprint)
            status = "assembled"
            if stored is None:
                status = "built"
                packages = self._build(sp, rt, target, resolved, deb, runtimes)
                stored = self._store(channels, packages, fingerprint, inputs)
            summary = self._publish(stored.path, out)
        return SeedResult(
            status,
            out,
            fingerprint,
            summary["packages"],
            summary["size_bytes"],
            time.monotonic() - t0,
            inputs,
            how,
        )

    # ---- the resolution ------------------------------------------------------------------

    def _resolution(
        self, sp: SeedPlan, rt: RuntimeBuild, target: Target, inputs: dict[str, Any]
    ) -> tuple[list[wheels.Resolved], str]:
        """The recorded resolution of these requirements, or a new one (then recorded)."""
        if not sp.requirements:
            return [], "resolved"
        key = store.fingerprint([inputs["requirements"], asdict(target)])[:16]
        record = self.cache / "resolutions" / f"{key}.json"
        if record.is_file() and not self.opts.refresh:
            data = json.loads(record.read_text())
            found = [wheels.Resolved(**r) for r in data["resolved"]]
            if all(self._obtainable(r) for r in found):
                return found, "recorded"
            self.progress.warn(
                f"a file of the recorded resolution {record} can no longer be had; resolving again"
            )
        self.progress.step(
            f"resolving {len(sp.requirements)} requirements on the index "
            f"(wheels for glibc <= {target.glibc_text})"
        )
        try:
            found = wheels.resolve(
                sp.requirements,
                self.opts.index_url,
                self.logs / "resolve.log",
                target,
                rt.prefix / f"bin/python{target.python}",
            )
        except DxError as e:
            raise DxError(f"{e}{_asked_by(sp, str(e))}") from None
        atomic_write_text(
            record,
            json.dumps(
                {
                    "requirements": inputs["requirements"],
                    "target": asdict(target),
                    "index_url": index_url(self.opts.index_url),
                    "resolved": [asdict(r) for r in found],
                },
                indent=1,
                sort_keys=True,
            )
            + "\n",
        )
        return found, "resolved"

    def _obtainable(self, r: wheels.Resolved) -> bool:
        """Whether a recorded file is in the cache with its sha256, or still on the index."""
        path = self.cache / "wheels" / r.filename
        if r.sha256 and path.is_file():
            return True
        try:
            return PackageIndex(self.opts.index_url).exists(r.url)
        except DxError:
            return False

    # ---- the packages --------------------------------------------------------------------

    def _build(
        self,
        sp: SeedPlan,
        rt: RuntimeBuild,
        target: Target,
        resolved: list[wheels.Resolved],
        deb: Path,
        runtimes: dict[str, RuntimeBuild] | None = None,
    ) -> list[Path]:
        fetched = self._fetch_wheels(resolved, rt.prefix / f"bin/python{target.python}")
        made, provides = self._runtime_packages(rt, target, fetched, deb)
        made += self._convert(fetched, provides, target)
        lookup = {r.name: r.requires_dist for r, _p, _n in fetched}
        for subdir, platform_rt in (runtimes or {}).items():
            made += self._platform(
                subdir, resolved, replace(target, subdir=subdir), lookup, platform_rt, deb
            )
        return made

    def _runtime_packages(
        self, rt: RuntimeBuild, target: Target, fetched: list[Fetched], deb: Path
    ) -> tuple[list[Path], Provides]:
        """The runtime's packages for ``target``'s subdir: its components, the libraries of
        their and the wheels' closure, ca-certificates; and which package ships each soname."""
        needs = component_needs(rt) | {n for _r, _p, ws in fetched for n in ws}
        provides = Provides()
        for name, sonames in component_sonames(rt).items():
            provides.add(name, sonames)
        libs, lib_provides = self._libraries(needs, set(provides.sonames), target.subdir)
        for soname, name in lib_provides.items():
            provides.add(name, [soname])
        made = libs + self._components(rt, target, provides)
        return made + self._certificates(deb, target.subdir), provides

    def _platform(
        self,
        subdir: str,
        resolved: list[wheels.Resolved],
        target: Target,
        lookup: dict[str, list[str]],
        rt: RuntimeBuild,
        deb: Path,
    ) -> list[Path]:
        """Another platform's subdir: its runtime's packages (cross-built, the libraries of the
        closure from its sysroot), and linux-64's pins of the binary distributions, as that
        machine's wheels at the floor, converted (pure ones are the shared noarch packages)."""
        self.progress.step(
            f"downloading the {platforms.machine(subdir)} wheels of "
            f"{sum(map(platforms.is_binary, resolved))} binary distributions "
            f"(glibc <= {target.glibc_text})"
        )
        got = platforms.download(
            resolved,
            target,
            self.cache / "wheels" / subdir,
            self.logs / f"{subdir}.json",
            self.opts.index_url,
        )
        if got.missing:
            raise DxError(
                f"seed {subdir}: the index has no {platforms.machine(subdir)} wheel at glibc "
                f"<= {target.glibc_text} for {', '.join(got.missing)} (pip's log: "
                f"{self.logs / subdir}-*.log); seed without --platform {subdir}, or pin a "
                "version that has one where it is asked for"
            )
        pinned = {r.name: r for r in resolved}
        fetched = [
            (
                replace(pinned[w.name], url=w.path.as_uri(), sha256=w.sha256, filename=w.path.name),
                w.path,
                wheels.external_needs(w.path),
            )
            for w in got.wheels
        ]
        made, provides = self._runtime_packages(rt, target, fetched, deb)
        return made + self._convert(fetched, provides, target, lookup)

    def _libraries(
        self, needs: set[str], provided: set[str], subdir: str = ch.PLATFORM
    ) -> tuple[list[Path], dict[str, str]]:
        """The closure's library packages for ``subdir`` (cached by what they answer for), and
        which package ships each soname: linux-64's from the build root, another platform's
        from its sysroot."""
        spec = BUILD_ROOT
        data: list[Any] = [PACKAGING_FORMAT, BUILD_ROOT.key(mirror())]
        if subdir != ch.PLATFORM:  # linux-64's keys are what they were
            spec = cross.sysroot(BUILD_ROOT.release, runtime_platform(subdir))
            data += [subdir, spec.key(mirror())]
        key = store.fingerprint([*data, sorted(needs - provided), sorted(provided)])[:16]
        entry = self.cache / "libraries" / key

        def make(tmp: Path) -> None:
            self.progress.step(
                f"packaging the libraries the {subdir} runtime needs from Debian "
                f"{BUILD_ROOT.release}"
            )
            work = tmp / "work"
            root = roots.make(spec, work / "root", self.opts.layout.cache, self.progress)
            found = closure(root, needs, provided, runtime_platform(subdir).lib_dirs)
            index = Provides()
            for lib in found.values():
                index.add(lib.name, lib.sonames)
            sonames = {s: n for s, (n, _p) in index.sonames.items()}
            for lib in found.values():
                library_package(lib, root, index, work, tmp, f"Debian {BUILD_ROOT.release}", subdir)
            atomic_write_text(tmp / "provides.json", json.dumps(sonames, indent=1, sort_keys=True))
            shutil.rmtree(work)

        made = _cached(entry, "*/*.conda", make)
        return made, json.loads((entry / "provides.json").read_text())

    def _components(self, rt: RuntimeBuild, target: Target, provides: Provides) -> list[Path]:
        key = store.fingerprint(
            [PACKAGING_FORMAT, rt.fingerprint, asdict(target), provides.sonames]
        )[:16]

        def make(tmp: Path) -> None:
            work = tmp / "work"
            for built in rt.parts.values():
                if built.component.tool:
                    continue
                self.progress.step(f"packaging {built.component.name}")
                component_package(built, target, provides, work, tmp)
            python_abi_package(target.python, work, tmp, target.subdir)
            shutil.rmtree(work)

        return _cached(self.cache / "runtime" / key, "*/*.conda", make)

    def _certificates(self, deb: Path, subdir: str = ch.PLATFORM) -> list[Path]:
        data: list[Any] = [PACKAGING_FORMAT, sha256_file(deb)]
        if subdir != ch.PLATFORM:  # linux-64's key is what it was
            data.append(subdir)
        key = store.fingerprint(data)[:16]

        def make(tmp: Path) -> None:
            work = tmp / "work"
            tree = work / "tree"
            tree.mkdir(parents=True)
            run(
                ["dpkg-deb", "-x", str(deb), str(tree)],
                what=f"unpacking {deb}",
                fix="dpkg-deb comes with dpkg (a Debian-family host)",
            )
            certificates_package(tree, deb.name.split("_")[1], work, tmp, subdir)
            shutil.rmtree(work)

        return _cached(self.cache / "certificates" / key, "*/*.conda", make)

    def _fetch_wheels(self, resolved: list[wheels.Resolved], python: Path) -> list[Fetched]:
        """Download (or build) every wheel, with the libraries its ELF files need from outside
        the wheel."""
        if not resolved:
            return []
        self.progress.begin("wheels", len(resolved))
        out = []
        for r, result in self._pool(
            _fetch_wheel, resolved, self.cache / "wheels", self.opts.index_url, self.logs, python
        ):
            path, needs = result
            out.append((r, path, needs))
        return sorted(out, key=lambda t: t[0].name)

    def _convert(
        self,
        fetched: list[Fetched],
        provides: Provides,
        target: Target,
        lookup: dict[str, list[str]] | None = None,
    ) -> list[Path]:
        if not fetched:
            return []
        if lookup is None:
            lookup = {r.name: r.requires_dist for r, _p, _n in fetched}
        made, jobs = [], []
        for r, p, n in fetched:
            libraries = {s: provides.sonames[s][0] for s in sorted(n) if s in provides.sonames}
            key = _conversion_key(r, p, libraries, lookup, target)
            found = Store(self.cache / "conda").get(key)
            if found is not None:
                made += sorted(found.path.glob("*/*.conda"))[:1]
            else:
                jobs.append((r, p, libraries))
        if jobs:
            self.progress.begin("wheels -> conda", len(jobs))
            made += [
                path
                for _r, path in self._pool(
                    _convert_wheel, jobs, lookup, self.cache / "conda", target
                )
            ]
        return sorted(made)

    def _pool(self, fn: Callable[..., Any], items: list[Any], *args: Any) -> list[tuple[Any, Any]]:
        """``fn(item, *args)`` for every item in worker processes; the first failure stops all
        with the item named."""
        # Processes, not threads: conda-package-handling changes the working directory;
        # spawned, not forked, because rattler's runtime threads do not survive a fork.
        ctx = multiprocessing.get_context("spawn")
        results = []
        with ProcessPoolExecutor(self.opts.workers, mp_context=ctx) as pool:
            futures = {pool.submit(fn, item, *args): item for item in items}
            for fut in as_completed(futures):
                item = futures[fut]
                r = item[0] if isinstance(item, tuple) else item
                try:
                    results.append((item, fut.result()))
                except Exception as e:  # the worker's own errors, or a crashed worker
                    for f in futures:
                        f.cancel()
                    detail = e if isinstance(e, DxError) else f"{type(e).__name__}: {e}"
                    raise DxError(f"seed: {r.name} {r.version}: {detail}") from None
                self.progress.done(f"{r.name} {r.version}")
        return results

    # ---- the channel ---------------------------------------------------------------------

    def _store(
        self, channels: Store, packages: list[Path], fingerprint: str, inputs: dict[str, Any]
    ) -> Entry:
        """The channel of ``packages`` in the user cache, indexed, under its fingerprint."""

        def fill(new: Path) -> dict[str, Any]:
            rel = [link_or_copy(pkg, new / pkg.parent.name / pkg.name) for pkg in packages]
            self.progress.step("indexing the channel")
            ch.index(new)
            return {
                "fingerprint": fingerprint,
                "inputs": inputs,
                "packages": sorted(f"{p.parent.name}/{p.name}" for p in rel),
                "count": len(rel),
                "size_bytes": ch.size_bytes(new),
            }

        return channels.put(fingerprint[:16], fill, key=fingerprint)

    def _publish(self, cached: Path, out: Path) -> dict[str, Any]:
        """The cached channel at ``out``, by hard links, every package checked against the
        repodata; one atomic swap."""
        summary = _manifest(cached)

        def fill(new: Path) -> list[str]:
            link_tree(cached, new)
            return list(summary["packages"])

        ch.publish_channel(
            out,
            fill,
            index_it=False,
            fix=f"the cached channel {cached} does not match its index: remove "
            f"{cached} and run dxforge seed again",
        )
        return summary


def _platforms(subdirs: tuple[str, ...]) -> list[str]:
    """The extra subdirs asked for, checked, sorted, without linux-64 (always there)."""
    for subdir in subdirs:
        platforms.machine(subdir)  # names the known subdirs
        if subdir not in ch.CHANNEL_SUBDIRS:
            raise DxError(
                f"--platform {subdir}: the seed makes {', '.join(ch.CHANNEL_SUBDIRS[1:])}"
            )
    return sorted(set(subdirs) - {ch.PLATFORM})


def _manifest(channel: Path) -> dict[str, Any]:
    try:
        return json.loads((channel / MANIFEST).read_text())
    except (OSError, ValueError):
        return {}


def _fetch_wheel(
    r: wheels.Resolved, wheel_dir: Path, index_url_: str | None, logs: Path, python: Path
) -> tuple[Path, set[str]]:
    """Download (or build) one wheel, reusing the cache; and what its ELF files need from
    outside it. Runs in a worker."""
    index = PackageIndex(index_url_)
    sha256 = r.sha256
    if not sha256 and not r.url.startswith("file://"):
        listed = {f.filename: f.sha256 for f in index.project(r.name).files}
        sha256 = listed.get(r.filename)
        if not sha256:
            raise DxError(
                f"{r.filename}: the package index gives no sha256 for it, so its download cannot "
                "be verified; use an index that publishes hashes"
            )
    path = index.download(r.url, wheel_dir / r.filename, sha256, what=r.name)
    if not r.filename.endswith(".whl"):
        built = wheel_dir / "built" / store.fingerprint([r.sha256 or r.url])[:16]
        logs.mkdir(parents=True, exist_ok=True)
        sdist = path
        path = _cached(
            built,
            "*.whl",
            lambda tmp: wheels.build_wheel_from_sdist(
                sdist, tmp, index_url_, logs / f"wheel-{r.name}.log", python
            ),
        )[0]
    return path, wheels.external_needs(path)


def _conversion_key(
    r: wheels.Resolved,
    wheel: Path,
    libraries: dict[str, str],
    lookup: dict[str, list[str]],
    target: Target,
) -> str:
    return store.fingerprint(
        [
            asdict(target),
            r.sha256 or r.url,
            wheel.name,
            wheels.CONVERTER_VERSION,
            _extras_inputs(r.requires_dist, lookup, target),
            libraries,
        ]
    )[:16]


def _convert_wheel(
    job: tuple[wheels.Resolved, Path, dict[str, str]],
    lookup: dict[str, list[str]],
    conda_dir: Path,
    target: Target,
) -> Path:
    """Convert one wheel for ``target``, into the cache; runs in a worker. ``job`` holds the
    packages that ship the libraries the wheel needs, by soname."""
    r, wheel, libraries = job
    key = _conversion_key(r, wheel, libraries, lookup, target)
    return _cached(
        conda_dir / key,
        "*/*.conda",
        lambda tmp: wheels.convert_wheel(wheel, lookup, tmp, target, libraries),
    )[0]


def build_seed(opts: SeedOptions, progress: Progress = SILENT) -> SeedResult:
    """Build the seed channel, assemble it from the user cache, or find it up to date."""
    return Seeder(opts, progress).run()
