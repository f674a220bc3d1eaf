"""``dxforge build``: build the recipes in topological order into the output channel.

Each package is built by rattler-build (with the target's variant) in a worker process whose
output goes to ``<build>/logs/<name>.log`` (a subdirectory for another output channel than the
default, :func:`scratch_dirs`). A package starts as soon as those it needs are in the channel,
up to ``--jobs`` at once (:mod:`dxforge.core.schedule`); each joins the channel in its own publish
(a new channel directory, indexed and checked, swapped in atomically), so its dependents see it.

A package's fingerprint covers its rendered recipe, recipe files, source sha256, its local
dependencies' fingerprints and the channels it is built against (the seed by its content). It is
skipped when the channel's file has that fingerprint and still matches the repodata; else it is
copied from the user cache, where every built package is kept by fingerprint (its sha256
checked); else built.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dxforge.builder.fetch import fetch_sources, missing_sources, sources_url
from dxforge.conda import channel as ch
from dxforge.core import schedule
from dxforge.core.progress import SILENT, Progress
from dxforge.core.store import Store, fingerprint, link_or_copy
from dxforge.core.util import DxError, atomic_write_text, execute, file_lock, world_readable
from dxforge.project.graph import Graph, graph_of
from dxforge.project.layout import Layout
from dxforge.project.recipes import SOURCES_ENV, Recipe, load_recipes, variant_config
from dxforge.project.target import project_target

STATE = "dxforge-build.json"
"""Fingerprints of the packages in the output channel, next to its repodata."""
FINGERPRINT_VERSION = 2


@dataclass
class BuildOptions:
    layout: Layout
    out: Path | None = None  # default: the layout's output channel
    channels: list[str] = field(default_factory=list)
    only: list[str] = field(default_factory=list)
    up_to: str | None = None
    keep_going: bool = False
    force: bool = False
    index_url: str | None = None
    jobs: int = 1

    @property
    def channel(self) -> Path:
        return Path(os.path.abspath(self.out or self.layout.channel))


@dataclass
class PackageResult:
    """One row of the summary."""

    name: str
    version: str
    status: str  # built | cached (from the user cache) | skipped | failed | not built
    build_string: str = ""
    seconds: float = 0.0
    size_bytes: int = 0
    file: str = ""
    sha256: str = ""
    reason: str = ""
    log: str = ""

    @property
    def done(self) -> bool:
        """The package is in the channel: built now, taken from the user cache, or unchanged
        (the one definition of "done" every stage uses)."""
        return self.status in DONE


DONE = ("built", "cached", "skipped")


@dataclass
class BuildReport:
    channel: str
    channels: list[str]
    packages: list[PackageResult]
    seconds: float
    jobs: int = 1

    @property
    def ok(self) -> bool:
        return all(p.done for p in self.packages)

    @property
    def status(self) -> str:
        return "built" if self.ok else "failed"

    def count(self, status: str) -> int:
        return sum(p.status == status for p in self.packages)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "channel": self.channel,
            "channels": self.channels,
            "jobs": self.jobs,
            "seconds": round(self.seconds, 2),
            "packages": [asdict(p) for p in self.packages],
        }


def build_channels(opts: BuildOptions) -> list[str]:
    """The channels a build solves from: the output channel first, then ``--channel`` values or,
    by default, the seed channel."""
    extra = opts.channels or [str(opts.layout.seed)]
    urls = [ch.channel_url(c) for c in extra]
    for given, url in zip(extra, urls, strict=True):
        path = ch.local_path(url)
        if path is not None and not path.is_dir():
            raise DxError(
                f"channel {given} does not exist; run `dxforge seed` first, or pass --channel "
                "conda-forge (or another channel URL)"
            )
    return [ch.channel_url(opts.channel), *urls]


def _tree_digest(directory: Path) -> str:
    h = hashlib.sha256()
    for p in sorted(directory.rglob("*")):
        if p.is_file():
            h.update(p.relative_to(directory).as_posix().encode() + b"\0")
            h.update(p.read_bytes() + b"\0")
    return h.hexdigest()


def _channel_identity(url: str) -> str:
    """A local seed channel is identified by its content fingerprint (so moving the project
    rebuilds nothing); other channels by their URL."""
    if url.startswith("file://"):
        manifest = Path(url[len("file://") :]) / "dxforge-seed.json"
        if manifest.exists():
            try:
                return f"dxforge-seed#{json.loads(manifest.read_text())['fingerprint']}"
            except (ValueError, KeyError):
                pass
    return url


def fingerprints(graph: Graph, recipes: dict[str, Recipe], channels: list[str]) -> dict[str, str]:
    """Per-package fingerprints, each covering its local dependencies' fingerprints."""
    import rattler_build

    fixed = {
        "v": FINGERPRINT_VERSION,
        "rattler_build": rattler_build.rattler_build_version(),
        "channels": [_channel_identity(c) for c in channels[1:]],
    }
    out: dict[str, str] = {}
    for name in graph.order:
        r = recipes[name]
        rendered = dict(r.rendered)
        rendered.pop("source", None)
        data = {
            **fixed,
            "recipe": rendered,
            "files": _tree_digest(r.dir),
            "source_sha256": r.source_sha256,
            "deps": {d: out[d] for d in graph.dependencies(name)},
        }
        out[name] = fingerprint(data)
    return out


def _load_state(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / STATE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def scratch_dirs(layout: Layout, out: Path) -> tuple[Path, Path]:
    """The work and log directories of builds into ``out``: ``work`` and ``logs`` of the build
    directory for the layout's own channel, a subdirectory of each for any other, so that
    builds into two channels (each holding its own lock) never share a work directory or a
    log."""
    if Path(os.path.abspath(out)) == layout.channel:
        return layout.work, layout.logs
    real = os.path.realpath(out)
    tag = f"{Path(real).name}-{hashlib.sha256(real.encode()).hexdigest()[:8]}"
    return layout.work / tag, layout.logs / tag


def _log_error(log: Path) -> str:
    """The last ``error:`` line the worker wrote to ``log``, as ``: <error>``."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except OSError:
        return ""
    errors = [ln for ln in lines if ln.startswith("error:")]
    if not errors:
        return ""
    text = errors[-1][len("error:") :].strip()
    return f": {text[:300]}{'...' if len(text) > 300 else ''}"


def _worker_command(
    recipe: Path, work: Path, channels: list[str], variant: dict[str, list[str]]
) -> list[str]:
    args = json.dumps(
        {"recipe": str(recipe), "output_dir": str(work), "channels": channels, "variant": variant}
    )
    return [sys.executable, "-m", "dxforge.builder.worker", args]


def _run_worker(
    recipe: Recipe,
    work: Path,
    channels: list[str],
    log: Path,
    env: dict[str, str],
    variant: dict[str, list[str]],
) -> dict[str, Any]:
    """Build one recipe in a child process; its output goes to ``log``."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    result_file = work / "result.json"
    proc = execute(
        _worker_command(recipe.path, work, channels, variant),
        log=log,
        check=False,
        env={**env, "DXFORGE_RESULT": str(result_file)},
        what=f"building {recipe.name} {recipe.version}",
    )
    if proc.returncode != 0 or not result_file.exists():
        raise DxError(
            f"{recipe.name}: rattler-build failed (exit {proc.returncode}){_log_error(log)}; "
            f"see {log}"
        )
    return json.loads(result_file.read_text())


def _publish(out: Path, built: dict[str, Path], state: dict[str, Any]) -> dict[str, str]:
    """One publish of the channel with ``built`` (name -> a new ``.conda``) in place of those
    packages' older files (:func:`dxforge.conda.channel.publish_channel`: the rest hard-linked, the
    new files checked against the index). Returns the new files' sha256 by name."""
    rels = {name: f"{pkg.parent.name}/{pkg.name}" for name, pkg in built.items()}

    def fill(new: Path) -> list[str]:
        for p in sorted(out.rglob("*.conda")) if out.is_dir() else []:
            if p.name.rsplit("-", 2)[0] not in built:
                link_or_copy(p, new / p.relative_to(out))
        for name, pkg in built.items():  # a copy: the user cache's entry stays its own file
            (new / pkg.parent.name).mkdir(parents=True, exist_ok=True)
            shutil.copy2(pkg, new / rels[name])
        atomic_write_text(new / STATE, json.dumps(state, indent=2, sort_keys=True))
        for p in new.rglob("*.conda"):  # rattler-build writes its packages 0600
            world_readable(p)
        return list(rels.values())

    records = ch.publish_channel(out, fill)
    return {name: str(records[rel]["sha256"]) for name, rel in rels.items()}


def _builds(cache: Path) -> Store:
    """Built packages in the user cache, by fingerprint."""
    return Store(cache / "builds", "package.json")


def _from_cache(cache: Path, fingerprint: str) -> tuple[Path, dict[str, Any]] | None:
    """The package built for ``fingerprint``, from the user cache, when its sha256 holds."""
    entry = _builds(cache).get(fingerprint[:24], key=fingerprint)
    if entry is None:
        return None
    pkg = entry.file(entry.meta["file"])
    world_readable(pkg)  # an entry written before packages were made readable by all
    return pkg, entry.meta


def _to_cache(cache: Path, fingerprint: str, pkg: Path, meta: dict[str, Any]) -> None:
    def fill(tmp: Path) -> dict[str, Any]:
        world_readable(pkg)  # rattler-build writes its packages 0600
        link_or_copy(pkg, tmp / pkg.parent.name / pkg.name)
        return {**meta, "file": f"{pkg.parent.name}/{pkg.name}"}

    _builds(cache).put(fingerprint[:24], fill, key=fingerprint)


def _select(graph: Graph, opts: BuildOptions) -> list[str]:
    """The packages ``--only`` / ``--up-to`` select, in build order."""
    if opts.up_to and opts.only:
        raise DxError("--only and --up-to select in different ways; give one of them")
    try:
        if opts.up_to:
            return graph.up_to(opts.up_to)
        if opts.only:
            return graph.only(opts.only)
    except DxError as e:
        raise DxError(f"{'--up-to' if opts.up_to else '--only'} {e}") from None
    return graph.order


@dataclass
class _Run:
    """What one build run knows while it goes."""

    opts: BuildOptions
    graph: Graph
    recipes: dict[str, Recipe]
    channels: list[str]
    prints: dict[str, str]
    state: dict[str, Any]
    env: dict[str, str]
    work: Path
    logs: Path
    variant: dict[str, list[str]]
    cache: Path
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def out(self) -> Path:
        return self.opts.channel

    def decide(self, name: str) -> PackageResult | str:
        """The result of a package that is unchanged in the channel (skipped), or why it must
        be built (``""``: it is new or changed)."""
        with self.lock:
            previous = dict(self.state.get(name) or {})
            repodata = ch.repodata_records(self.out) if previous else {}
        if self.opts.force or previous.get("fingerprint") != self.prints[name]:
            return ""
        problem = ch.verify_file(self.out, previous["file"], repodata.get(previous["file"]))
        if problem:
            return f"rebuilt, as the channel's file did not match its index: {problem}"
        kept = {
            k: previous[k]
            for k in ("build_string", "size_bytes", "file", "sha256", "log")
            if k in previous
        }
        return PackageResult(name, self.recipes[name].version, "skipped", **kept)

    def job(self, name: str) -> PackageResult:
        """One package: skipped when unchanged, else taken from the user cache or built, then
        published into the channel (so the packages that need it see it)."""
        why = self.decide(name)
        if isinstance(why, PackageResult):
            return why
        hit = None if self.opts.force else self.cached(name, why)
        if hit is None:
            t0 = time.monotonic()
            outcome = _run_worker(
                self.recipes[name],
                self.work / name,
                self.channels,
                self.logs / f"{name}.log",
                self.env,
                self.variant,
            )
            hit = self.built(name, outcome, time.monotonic() - t0, why)
        self.publish(*hit)
        return hit[0]

    def failed(self, name: str, error: BaseException, seconds: float) -> PackageResult:
        """A package whose build or publish failed, and what it needed that is not there."""
        res = PackageResult(
            name,
            self.recipes[name].version,
            "failed",
            reason=str(error),
            seconds=round(seconds, 2),
            log=str(self.logs / f"{name}.log"),
        )
        absent = [
            d
            for d in self.graph.dependencies(name)
            if not (self.out / (self.state.get(d) or {}).get("file", "-")).is_file()
        ]
        if absent:
            res.reason += (
                f"; {', '.join(absent)} (needed by {name}) not in {self.out}: "
                f"build with --up-to {name}"
            )
        return res

    def built(
        self, name: str, outcome: dict[str, Any], seconds: float, why: str
    ) -> tuple[PackageResult, Path]:
        """A finished build, kept in the user cache."""
        files = [Path(p) for p in outcome["packages"]]
        if len(files) != 1:
            raise DxError(f"{name}: expected one package, rattler-build made {files}")
        res = PackageResult(
            name=name,
            version=outcome["version"],
            status="built",
            build_string=outcome["build_string"],
            seconds=round(seconds, 2),
            size_bytes=files[0].stat().st_size,
            file=f"{files[0].parent.name}/{files[0].name}",
            reason=why,
            log=str(self.logs / f"{name}.log"),
        )
        _to_cache(
            self.cache,
            self.prints[name],
            files[0],
            {"name": name, "version": res.version, "build_string": res.build_string},
        )
        return res, files[0]

    def cached(self, name: str, why: str) -> tuple[PackageResult, Path] | None:
        """The package of this fingerprint from the user cache, as a result to publish."""
        found = _from_cache(self.cache, self.prints[name])
        if found is None:
            return None
        pkg, meta = found
        reason = "; ".join(
            filter(
                None,
                [
                    why,
                    f"built before with this fingerprint: taken from the user cache ({pkg.parent})",
                ],
            )
        )
        return PackageResult(
            name,
            meta["version"],
            "cached",
            build_string=meta["build_string"],
            size_bytes=pkg.stat().st_size,
            file=meta["file"],
            reason=reason,
        ), pkg

    def publish(self, res: PackageResult, pkg: Path) -> None:
        """A package into the channel, its state beside it (one publish at a time)."""
        with self.lock:
            state = {
                **self.state,
                res.name: {
                    **{k: v for k, v in asdict(res).items() if k not in ("status", "reason")},
                    "fingerprint": self.prints[res.name],
                },
            }
            sha = _publish(self.out, {res.name: pkg}, state)
            res.sha256 = state[res.name]["sha256"] = sha[res.name]
            atomic_write_text(self.out / STATE, json.dumps(state, indent=2, sort_keys=True))
            self.state = state
        shutil.rmtree(self.work / res.name, ignore_errors=True)

    def result(self, event: schedule.Event) -> PackageResult:
        """The summary row of a finished, failed or never started package."""
        version = self.recipes[event.name].version
        if event.kind == "done":
            assert isinstance(event.result, PackageResult)
            return event.result
        if event.kind == "failed":
            assert event.error is not None
            return self.failed(event.name, event.error, event.seconds)
        if event.kind == "blocked":
            return PackageResult(
                event.name, version, "not built", reason=f"{', '.join(event.failed)} failed"
            )
        return PackageResult(
            event.name, version, "not built", reason="stopped after a failure (use --keep-going)"
        )


def run_build(opts: BuildOptions, progress: Progress = SILENT) -> BuildReport:
    """Build what ``opts`` selects, each package once those it needs are in the channel (up to
    ``opts.jobs`` at once); skip a package whose fingerprint and file in the channel are
    unchanged."""
    t0 = time.monotonic()
    layout, out = opts.layout, opts.channel
    channels = build_channels(opts)
    url = sources_url(layout.sources)
    target = project_target(layout.construct)
    recipes_list = load_recipes(layout.root, url, target)
    graph = graph_of(recipes_list)
    recipes = {r.name: r for r in recipes_list}
    selected = _select(graph, opts)
    missing = missing_sources([recipes[n] for n in selected], layout.sources)
    if missing:
        progress.step(f"fetching {len(missing)} sources")
        fetch_sources(missing, layout.sources, index_url=opts.index_url)
    work, logs = scratch_dirs(layout, out)
    results: dict[str, PackageResult] = {}
    with file_lock(ch.lock_path(out), f"channel {out}"):
        if not (out / "noarch/repodata.json").exists():
            _publish(out, {}, {})
        for p in out.glob("*/*.conda"):  # kept from a build that left them 0600
            world_readable(p)
        run = _Run(
            opts,
            graph,
            recipes,
            channels,
            fingerprints(graph, recipes, channels),
            _load_state(out),
            {**os.environ, SOURCES_ENV: url},
            work,
            logs,
            variant_config(target),
            layout.cache,
        )
        progress.begin("build", len(selected))
        chosen = set(selected)

        def report(event: schedule.Event) -> None:
            if event.kind == "start":
                progress.start(event.name)
                return
            results[event.name] = run.result(event)
            progress.done(event.name, results[event.name])

        schedule.run(
            {n: [d for d in graph.dependencies(n) if d in chosen] for n in selected},
            run.job,
            jobs=opts.jobs,
            report=report,
            keep_going=opts.keep_going,
        )
    return BuildReport(
        channel=str(out),
        channels=channels,
        packages=[results[n] for n in selected],
        seconds=time.monotonic() - t0,
        jobs=opts.jobs,
    )
