"""``dxforge seed``: build the offline seed channel, incrementally, and swap it in atomically."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import canonicalize_name

import dxforge
from dxforge import channel as ch
from dxforge import upstream
from dxforge.fetch import fetch_sources
from dxforge.index import PackageIndex, index_url
from dxforge.installer.spec import load_construct
from dxforge.layout import Layout
from dxforge.names import marker_applies, pypi_name, set_target_python
from dxforge.progress import SILENT, Progress
from dxforge.recipes import load_recipes
from dxforge.runtime import roots
from dxforge.runtime.apt import conda_version
from dxforge.runtime.apt import mirror as apt_mirror
from dxforge.runtime.build import (
    BUILD_ROOT,
    COMPONENTS,
    GLIBC_FLOOR,
    RuntimeBuild,
    build_runtime,
    fingerprint,
)
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
from dxforge.seed import debian, wheels
from dxforge.seed.plan import SeedPlan, plan
from dxforge.specs import split_spec
from dxforge.util import DxError, atomic_write_text, file_lock, replace_dir

MANIFEST = "dxforge-seed.json"
SEED_FORMAT = 2
"""Bump when what the seed holds changes for the same inputs (a full rebuild follows)."""


@dataclass
class SeedOptions:
    layout: Layout
    out: Path | None = None  # default: the layout's seed channel
    index_url: str | None = None
    workers: int = 2

    @property
    def channel(self) -> Path:
        return Path(os.path.abspath(self.out or self.layout.seed))


@dataclass
class SeedResult:
    """What ``dxforge seed`` made (or found up to date)."""

    status: str  # built | up-to-date
    channel: Path
    fingerprint: str
    packages: list[str]
    size_bytes: int
    seconds: float
    inputs: dict[str, Any] = field(default_factory=dict)

    @property
    def count(self) -> int:
        return len(self.packages)

    def subdirs(self) -> dict[str, tuple[int, int]]:
        """``{subdir: (packages, bytes)}``."""
        out = {}
        for sub in ch.SUBDIRS:
            files = [self.channel / p for p in self.packages if p.startswith(sub + "/")]
            out[sub] = (len(files), sum(f.stat().st_size for f in files if f.exists()))
        return out

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "channel": str(self.channel),
            "fingerprint": self.fingerprint,
            "inputs": self.inputs,
            "packages": self.packages,
            "count": self.count,
            "size_bytes": self.size_bytes,
            "seconds": round(self.seconds, 2),
        }


def _construct_specs(root: Path) -> list[str]:
    path = root / "construct.yaml"
    return list(load_construct(path).specs) if path.exists() else []


def seed_plan(layout: Layout, index_url: str | None = None) -> SeedPlan:
    """The seed's requirements: the recipes', construct.yaml's, and what DiracX's own test
    suites need (the sdists' extras, read from the source cache, fetched when missing)."""
    recipes = load_recipes(layout.root)
    siblings = {r.name for r in recipes}
    reqs = {
        f"{r.path}: requirements.{sec}": specs
        for r in recipes
        for sec, specs in r.requirements.items()
    }
    fetch_sources(recipes, layout.sources, index_url=index_url)
    tests = {"the upstream test suites (the sdists' extras)":
             upstream.seed_requirements(recipes, layout.sources)}
    return plan(layout.root, siblings, reqs, _construct_specs(layout.root), tests)


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def _extras_inputs(requires_dist: list[str], lookup: dict[str, list[str]]) -> dict[str, list[str]]:
    """The metadata a conversion reads to expand extras: part of its cache key."""
    used: dict[str, list[str]] = {}
    for line in requires_dist:
        req = Requirement(line)
        if req.extras and marker_applies(req.marker):
            name = canonicalize_name(req.name)
            used[name] = lookup.get(name, [])
    return used


def _cached(entry: Path, pattern: str, make: Callable[[Path], object]) -> list[Path]:
    """The files matching ``pattern`` in the cache directory ``entry``; when there are none,
    ``make(tmp)`` fills a temporary sibling directory, which then replaces ``entry`` whole."""
    found = sorted(entry.glob(pattern))
    if found:
        return found
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{entry.name}-", dir=entry.parent))
    try:
        make(tmp)
        shutil.rmtree(entry, ignore_errors=True)
        os.replace(tmp, entry)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return sorted(entry.glob(pattern))


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


class Seeder:
    def __init__(self, opts: SeedOptions, progress: Progress) -> None:
        self.opts = opts
        self.progress = progress
        self.cache = opts.layout.cache / "seed"
        self.logs = opts.layout.logs / "seed"

    def inputs(self) -> dict[str, Any]:
        """Everything the seed's content depends on; equal inputs mean nothing to do."""
        sp = seed_plan(self.opts.layout, self.opts.index_url)
        runtime, versions = fingerprint(self.opts.layout.cache)
        debs = debian.candidates(debian.DEBS if sp.voms else debian.CERTS)
        return {
            "dxforge": dxforge.__version__,
            "format": SEED_FORMAT,
            "converter": wheels.CONVERTER_VERSION,
            "packaging": PACKAGING_FORMAT,
            "runtime": {"fingerprint": runtime, "versions": versions},
            "glibc": ".".join(map(str, GLIBC_FLOOR)),
            "requirements": sp.requirements,
            "debian": [d.as_json() for d in debs],
            "index_url": index_url(self.opts.index_url),
            "_plan": sp,
            "_debs": debs,
        }

    def run(self) -> SeedResult:
        t0 = time.monotonic()
        self.cache.mkdir(parents=True, exist_ok=True)
        out = self.opts.channel
        with file_lock(ch.lock_path(out), f"channel {out}"):
            inputs = self.inputs()
            public = {k: v for k, v in inputs.items() if not k.startswith("_")}
            fingerprint_ = _digest(public)
            manifest = out / MANIFEST
            if manifest.exists():
                try:
                    old = json.loads(manifest.read_text())
                except ValueError:
                    old = {}
                if old.get("fingerprint") == fingerprint_ and all(
                    (out / p).exists() for p in old.get("packages", [])
                ):
                    return SeedResult(
                        "up-to-date", out, fingerprint_, old["packages"],
                        old.get("size_bytes", 0), time.monotonic() - t0, old.get("inputs", {}),
                    )
            packages = self._build(inputs)
            summary = self._publish(packages, fingerprint_, public)
        return SeedResult(
            "built", out, fingerprint_, summary["packages"], summary["size_bytes"],
            time.monotonic() - t0, public,
        )

    def _build(self, inputs: dict[str, Any]) -> list[Path]:
        sp: SeedPlan = inputs["_plan"]
        rt = build_runtime(self.opts.layout.cache, self.progress)
        self.python = conda_version(rt.versions["python"])
        set_target_python(self.python)
        fetched = self._fetch_wheels(sp, rt)
        needs = component_needs(rt) | {n for _r, _p, ws in fetched for n in ws}
        provides = Provides()
        for name, sonames in component_sonames(rt).items():
            provides.add(name, sonames)
        libs, lib_provides = self._libraries(rt, needs, set(provides.sonames))
        for soname, name in lib_provides.items():
            provides.add(name, [soname])
        made = libs + self._components(rt, provides)
        made += self._debian(inputs["_debs"], provides)
        made += self._convert(fetched, provides)
        return made

    def _libraries(
        self, rt: RuntimeBuild, needs: set[str], provided: set[str]
    ) -> tuple[list[Path], dict[str, str]]:
        """The closure's library packages (cached by what they answer for), and which package
        ships each soname."""
        repo = apt_mirror()
        key = _digest([PACKAGING_FORMAT, BUILD_ROOT.key(repo), sorted(needs - provided),
                       sorted(provided)])[:16]
        entry = self.cache / "libraries" / key

        def make(tmp: Path) -> None:
            self.progress.step(f"packaging the libraries the runtime needs from Debian "
                               f"{BUILD_ROOT.release}")
            work = tmp / "work"
            root = roots.make(BUILD_ROOT, work / "root", self.opts.layout.cache, self.progress)
            found = closure(root, needs, provided)
            index = Provides()
            for lib in found.values():
                index.add(lib.name, lib.sonames)
            sonames = {s: n for s, (n, _p) in index.sonames.items()}
            for lib in found.values():
                library_package(lib, root, index, work, tmp, f"Debian {BUILD_ROOT.release}")
            atomic_write_text(tmp / "provides.json", json.dumps(sonames, indent=1, sort_keys=True))
            shutil.rmtree(work)

        made = _cached(entry, "*/*.conda", make)
        return made, json.loads((entry / "provides.json").read_text())

    def _components(self, rt: RuntimeBuild, provides: Provides) -> list[Path]:
        key = _digest([PACKAGING_FORMAT, rt.fingerprint, provides.sonames])[:16]

        def make(tmp: Path) -> None:
            work = tmp / "work"
            for c in COMPONENTS:
                self.progress.step(f"packaging {c.name}")
                component_package(rt, c, provides, work, tmp)
            python_abi_package(conda_version(rt.versions["python"]), work, tmp)
            shutil.rmtree(work)

        return _cached(self.cache / "runtime" / key, "*/*.conda", make)

    def _debian(self, debs: list[debian.Deb], provides: Provides) -> list[Path]:
        key = _digest([PACKAGING_FORMAT, [d.as_json() for d in debs], provides.sonames])[:16]

        def make(tmp: Path) -> None:
            self.progress.step("packaging " + ", ".join(d.package for d in debs) + " from "
                               "this machine's Debian release")
            work = tmp / "work"
            release = _tool_release()
            if any(d.package == "voms-clients" for d in debs):
                debian.build_debian_packages(debs, self.cache / "debs", provides, work, tmp,
                                             release)
            else:
                files = debian.download(debs, self.cache / "debs")
                tree = work / "tree"
                tree.mkdir(parents=True)
                debian.unpack(files, tree)
                certificates_package(tree, debs[0].version, work, tmp)
            shutil.rmtree(work)

        return _cached(self.cache / "debian" / key, "*/*.conda", make)

    def _fetch_wheels(
        self, sp: SeedPlan, rt: RuntimeBuild
    ) -> list[tuple[wheels.Resolved, Path, set[str]]]:
        """Resolve the requirements and download (or build) every wheel, with the libraries
        its ELF files need from outside the wheel."""
        requirements = sp.requirements
        if not requirements:
            return []
        self.progress.step(f"resolving {len(requirements)} requirements on the index "
                           f"(wheels for glibc <= {'.'.join(map(str, GLIBC_FLOOR))})")
        try:
            resolved = wheels.resolve(
                requirements, self.opts.index_url, self.logs / "resolve.log", GLIBC_FLOOR,
                rt.prefix / "bin/python3.11",
            )
        except DxError as e:
            raise DxError(f"{e}{_asked_by(sp, str(e))}") from None
        self.progress.begin("wheels", len(resolved))
        out = []
        for r, result in self._pool(_fetch_wheel, resolved, self.cache / "wheels",
                                    self.opts.index_url, self.logs):
            path, needs = result
            out.append((r, path, needs))
        return sorted(out, key=lambda t: t[0].name)

    def _convert(
        self, fetched: list[tuple[wheels.Resolved, Path, set[str]]], provides: Provides
    ) -> list[Path]:
        if not fetched:
            return []
        lookup = {r.name: r.requires_dist for r, _p, _n in fetched}
        jobs = [(r, p, {s: provides.sonames[s][0] for s in sorted(n) if s in provides.sonames})
                for r, p, n in fetched]
        self.progress.begin("wheels -> conda", len(jobs))
        made = [path for _r, path in self._pool(_convert_wheel, jobs, lookup,
                                                self.cache / "conda", self.python)]
        return sorted(made)

    def _pool(self, fn: Callable[..., Any], items: list[Any], *args: Any
              ) -> list[tuple[Any, Any]]:
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

    def _publish(
        self, packages: list[Path], fingerprint: str, public: dict[str, Any]
    ) -> dict[str, Any]:
        out = self.opts.channel
        out.parent.mkdir(parents=True, exist_ok=True)
        new = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
        try:
            rel = []
            for pkg in packages:
                subdir = pkg.parent.name
                dest = new / subdir / pkg.name
                dest.parent.mkdir(parents=True, exist_ok=True)
                try:
                    os.link(pkg, dest)
                except OSError:
                    shutil.copy2(pkg, dest)
                rel.append(f"{subdir}/{pkg.name}")
            self.progress.step("indexing the channel")
            ch.index(new)
            records = ch.repodata_records(new)
            for r in rel:
                problem = ch.verify_file(new, r, records.get(r))
                if problem:
                    raise DxError(f"seed: the new channel does not match its index: {problem}")
            summary = {
                "fingerprint": fingerprint,
                "inputs": public,
                "packages": sorted(rel),
                "count": len(rel),
                "size_bytes": ch.size_bytes(new),
            }
            atomic_write_text(new / MANIFEST, json.dumps(summary, indent=2) + "\n")
            os.chmod(new, 0o755)
            replace_dir(new, out)
        finally:
            shutil.rmtree(new, ignore_errors=True)
        return summary


def _fetch_wheel(
    r: wheels.Resolved, wheel_dir: Path, index_url_: str | None, logs: Path
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
        built = wheel_dir / "built" / _digest([r.sha256 or r.url])[:16]
        logs.mkdir(parents=True, exist_ok=True)
        sdist = path
        path = _cached(
            built,
            "*.whl",
            lambda tmp: wheels.build_wheel_from_sdist(
                sdist, tmp, index_url_, logs / f"wheel-{r.name}.log"
            ),
        )[0]
    return path, wheels.external_needs(path)


def _convert_wheel(
    job: tuple[wheels.Resolved, Path, dict[str, str]],
    lookup: dict[str, list[str]],
    conda_dir: Path,
    python: str,
) -> Path:
    """Convert one wheel for CPython ``python``, reusing the cache; runs in a worker. ``job``
    holds the packages that ship the libraries the wheel needs, by soname."""
    set_target_python(python)
    r, wheel, libraries = job
    key = _digest(
        [
            python,
            r.sha256 or r.url,
            wheel.name,
            wheels.CONVERTER_VERSION,
            _extras_inputs(r.requires_dist, lookup),
            libraries,
        ]
    )[:16]
    return _cached(
        conda_dir / key, "*/*.conda",
        lambda tmp: wheels.convert_wheel(wheel, lookup, tmp, libraries),
    )[0]


def _tool_release() -> str:
    """This machine's Debian release name (``bookworm``)."""
    for line in Path("/etc/os-release").read_text().splitlines():
        if line.startswith("VERSION_CODENAME="):
            return line.split("=", 1)[1].strip('"')
    return "this release"


def build_seed(opts: SeedOptions, progress: Progress = SILENT) -> SeedResult:
    """Build the seed channel, or find it up to date."""
    return Seeder(opts, progress).run()
