"""``dxforge seed``: build the offline seed channel, incrementally, and swap it in atomically."""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

import dxforge
from dxforge import channel as ch
from dxforge.index import PackageIndex, index_url
from dxforge.installer.spec import load_construct
from dxforge.layout import Layout
from dxforge.names import marker_applies, pypi_name
from dxforge.progress import SILENT, Progress
from dxforge.recipes import load_recipes
from dxforge.seed import debian, wheels
from dxforge.seed.plan import SeedPlan, plan
from dxforge.seed.python import build_python, host_python
from dxforge.specs import split_spec
from dxforge.util import DxError, atomic_write_text, file_lock, replace_dir

MANIFEST = "dxforge-seed.json"


@dataclass
class SeedOptions:
    layout: Layout
    out: Path | None = None  # default: the layout's seed channel
    python: Path | None = None
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


def seed_plan(root: Path) -> SeedPlan:
    """The seed's requirements, from the recipes under ``root`` and its construct.yaml."""
    recipes = load_recipes(root)
    siblings = {r.name for r in recipes}
    reqs = {
        f"{r.path}: requirements.{sec}": specs
        for r in recipes
        for sec, specs in r.requirements.items()
    }
    return plan(root, siblings, reqs, _construct_specs(root))


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


def _asked_by(sp: SeedPlan, message: str) -> str:
    """Where the requirements that ``message`` names were asked for (recipe file and key)."""
    words = {canonicalize_name(w) for w in re.findall(r"[A-Za-z0-9][A-Za-z0-9._-]*", message)}
    lines = [
        f"\n  {spec}: asked for in {'; '.join(where)}"
        for spec, where in sp.sources.items()
        if canonicalize_name(pypi_name(split_spec(spec)[0])) in words
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
        host = host_python(self.opts.python or Path(sys.executable))
        sp = seed_plan(self.opts.layout.root)
        debs = debian.candidates() if sp.voms else []
        return {
            "dxforge": dxforge.__version__,
            "converter": wheels.CONVERTER_VERSION,
            "python": host.fingerprint(),
            "requirements": sp.requirements,
            "voms": [d.__dict__ for d in debs],
            "index_url": index_url(self.opts.index_url),
            "_plan": sp,
            "_host": host,
            "_debs": debs,
        }

    def run(self) -> SeedResult:
        t0 = time.monotonic()
        self.cache.mkdir(parents=True, exist_ok=True)
        out = self.opts.channel
        with file_lock(ch.lock_path(out), f"channel {out}"):
            inputs = self.inputs()
            public = {k: v for k, v in inputs.items() if not k.startswith("_")}
            fingerprint = _digest(public)
            manifest = out / MANIFEST
            if manifest.exists():
                try:
                    old = json.loads(manifest.read_text())
                except ValueError:
                    old = {}
                if old.get("fingerprint") == fingerprint and all(
                    (out / p).exists() for p in old.get("packages", [])
                ):
                    return SeedResult(
                        "up-to-date", out, fingerprint, old["packages"],
                        old.get("size_bytes", 0), time.monotonic() - t0, old.get("inputs", {}),
                    )
            packages = self._build(inputs)
            summary = self._publish(packages, fingerprint, public)
        return SeedResult(
            "built", out, fingerprint, summary["packages"], summary["size_bytes"],
            time.monotonic() - t0, public,
        )

    def _build(self, inputs: dict[str, Any]) -> list[Path]:
        sp: SeedPlan = inputs["_plan"]
        made: list[Path] = []
        py_dir = self.cache / "python" / _digest([inputs["python"], inputs["converter"]])[:16]
        self.progress.step("repackaging python")
        made += _cached(py_dir, "*/*.conda", lambda tmp: build_python(inputs["_host"], tmp))
        if sp.voms:
            made.append(self._voms(inputs["_debs"]))
        made += self._wheels(sp)
        return made

    def _voms(self, debs: list[debian.Deb]) -> Path:
        vdir = self.cache / "voms" / _digest([d.__dict__ for d in debs])[:16]
        self.progress.step("repackaging voms from Debian")
        made = _cached(
            vdir, "*/*.conda", lambda tmp: debian.build_voms(debs, self.cache / "debs", tmp)
        )
        return made[0]

    def _wheels(self, sp: SeedPlan) -> list[Path]:
        requirements = sp.requirements
        if not requirements:
            return []
        self.progress.step(f"resolving {len(requirements)} requirements on the index")
        try:
            resolved = wheels.resolve(requirements, self.opts.index_url, self.logs / "resolve.log")
        except DxError as e:
            raise DxError(f"{e}{_asked_by(sp, str(e))}") from None
        lookup = {r.name: r.requires_dist for r in resolved}
        wheel_dir = self.cache / "wheels"
        conda_dir = self.cache / "conda"
        results: list[Path] = []
        # Processes, not threads: conda-package-handling changes the working directory; spawned,
        # not forked, because rattler's runtime threads do not survive a fork.
        ctx = multiprocessing.get_context("spawn")
        self.progress.begin("wheels -> conda", len(resolved))
        with ProcessPoolExecutor(self.opts.workers, mp_context=ctx) as pool:
            futures = {
                pool.submit(
                    _one_wheel, r, lookup, wheel_dir, conda_dir, self.opts.index_url, self.logs
                ): r
                for r in resolved
            }
            for fut in as_completed(futures):
                r = futures[fut]
                try:
                    results.append(fut.result())
                except Exception as e:  # the worker's own errors, or a crashed worker
                    for f in futures:
                        f.cancel()
                    detail = e if isinstance(e, DxError) else f"{type(e).__name__}: {e}"
                    raise DxError(f"seed: {r.name} {r.version}: {detail}") from None
                self.progress.done(f"{r.name} {r.version}")
        return sorted(results)

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


def _one_wheel(
    r: wheels.Resolved,
    lookup: dict[str, list[str]],
    wheel_dir: Path,
    conda_dir: Path,
    index_url_: str | None,
    logs: Path,
) -> Path:
    """Download (or build) one wheel and convert it, reusing the cache; runs in a worker."""
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
    key = _digest(
        [
            sha256 or r.url,
            wheels.CONVERTER_VERSION,
            _extras_inputs(r.requires_dist, lookup),
        ]
    )[:16]
    wheel = path
    return _cached(
        conda_dir / key, "*/*.conda", lambda tmp: wheels.convert_wheel(wheel, lookup, tmp)
    )[0]


def build_seed(opts: SeedOptions, progress: Progress = SILENT) -> SeedResult:
    """Build the seed channel, or find it up to date."""
    return Seeder(opts, progress).run()
