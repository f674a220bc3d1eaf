"""``dxforge build``: build the recipes in topological order into the output channel.

Each package is built by rattler-build in a worker process whose output goes to
``build/logs/<name>.log`` (a subdirectory for another output channel than the default,
:func:`scratch_dirs`); the finished ``.conda`` is moved into the channel and the channel is
re-indexed before the next package, so later builds see earlier ones. A package is skipped when
its fingerprint (rendered recipe, recipe files, source sha256, its local dependencies'
fingerprints, channels) matches the one recorded for the file the channel holds.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dxforge import channel as ch
from dxforge.fetch import fetch_sources, missing_sources, source_cache, sources_url
from dxforge.graph import Graph, graph_of
from dxforge.recipes import SOURCES_ENV, Recipe, load_recipes
from dxforge.util import DxError, atomic_write_text, file_lock

DEFAULT_OUT = Path("build/channels/dxforge")
STATE = "dxforge-build.json"
"""Fingerprints of the packages in the output channel, next to its repodata."""
FINGERPRINT_VERSION = 1


@dataclass
class BuildOptions:
    root: Path
    out: Path
    channels: list[str] = field(default_factory=list)
    only: list[str] = field(default_factory=list)
    up_to: str | None = None
    keep_going: bool = False
    force: bool = False
    index_url: str | None = None


@dataclass
class PackageResult:
    """One row of the summary."""

    name: str
    version: str
    status: str  # built | skipped | failed | not built
    build_string: str = ""
    seconds: float = 0.0
    size_bytes: int = 0
    file: str = ""
    reason: str = ""
    log: str = ""


@dataclass
class BuildReport:
    channel: str
    channels: list[str]
    packages: list[PackageResult]
    seconds: float

    @property
    def ok(self) -> bool:
        return all(p.status in ("built", "skipped") for p in self.packages)

    def as_json(self) -> dict[str, Any]:
        return {
            "channel": self.channel,
            "channels": self.channels,
            "ok": self.ok,
            "seconds": round(self.seconds, 2),
            "packages": [asdict(p) for p in self.packages],
        }


def build_channels(opts: BuildOptions) -> list[str]:
    """The channels a build solves from: the output channel first, then ``--channel`` values or,
    by default, the seed channel."""
    extra = opts.channels or [str(opts.root / "build/channels/seed")]
    for c in extra:
        if c.startswith(("/", ".")) and not Path(c).is_dir():
            raise DxError(
                f"channel {c} does not exist; run `dxforge seed` first, or pass --channel "
                "conda-forge (or another channel URL)"
            )
    return [ch.channel_url(opts.out), *(ch.channel_url(c) for c in extra)]


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
        out[name] = hashlib.sha256(
            json.dumps(data, sort_keys=True, default=str).encode()
        ).hexdigest()
    return out


def _load_state(out: Path) -> dict[str, Any]:
    try:
        return json.loads((out / STATE).read_text())
    except (FileNotFoundError, ValueError):
        return {}


def scratch_dirs(root: Path, out: Path) -> tuple[Path, Path]:
    """The work and log directories of builds into ``out``: ``build/work`` and ``build/logs``
    for the default output channel, a subdirectory of each for any other, so that builds into
    two channels (each holding its own lock) never share a work directory or a log."""
    if out.resolve() == (root / DEFAULT_OUT).resolve():
        return root / "build/work", root / "build/logs"
    tag = f"{out.name}-{hashlib.sha256(str(out.resolve()).encode()).hexdigest()[:8]}"
    return root / "build/work" / tag, root / "build/logs" / tag


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


def _worker_command(recipe: Path, work: Path, channels: list[str]) -> list[str]:
    args = json.dumps({"recipe": str(recipe), "output_dir": str(work), "channels": channels})
    return [sys.executable, "-m", "dxforge.build", args]


def _run_worker(
    recipe: Recipe, work: Path, channels: list[str], log: Path, env: dict[str, str]
) -> dict[str, Any]:
    """Build one recipe in a child process; its output goes to ``log``."""
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    log.parent.mkdir(parents=True, exist_ok=True)
    result_file = work / "result.json"
    with open(log, "w") as f:
        f.write(f"# dxforge build {recipe.name} {recipe.version}\n# channels: {channels}\n")
        f.flush()
        proc = subprocess.run(
            _worker_command(recipe.path, work, channels),
            stdout=f,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**env, "DXFORGE_RESULT": str(result_file)},
            check=False,
        )
    if proc.returncode != 0 or not result_file.exists():
        raise DxError(
            f"{recipe.name}: rattler-build failed (exit {proc.returncode}){_log_error(log)}; "
            f"see {log}"
        )
    return json.loads(result_file.read_text())


def _publish(out: Path, built: Path, name: str) -> Path:
    """Move ``built`` into the channel and re-index; older files of the same package are
    removed only after the index stops listing them, so the repodata never names a missing
    file."""
    subdir = built.parent.name
    dest = out / subdir / built.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    os.replace(built, dest)
    older = [
        old
        for old in (out / subdir).glob(f"{name}-*.conda")
        if old != dest and old.name.rsplit("-", 2)[0] == name
    ]
    ch.index_atomic(out, exclude=older)
    for old in older:
        old.unlink()
    return dest


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


def run_build(
    opts: BuildOptions,
    on_event: Callable[[str, PackageResult | None, int], None] | None = None,
) -> BuildReport:
    """Build what ``opts`` selects; ``on_event(kind, result, total)`` reports progress
    (kinds: ``start`` with result None, ``building``, ``done``)."""
    t0 = time.monotonic()
    root, out = opts.root, opts.out
    channels = build_channels(opts)
    url = sources_url(root)
    recipes_list = load_recipes(root, url)
    graph = graph_of(recipes_list)
    recipes = {r.name: r for r in recipes_list}
    selected = _select(graph, opts)
    missing = missing_sources([recipes[n] for n in selected], source_cache(root))
    if missing:
        fetch_sources(missing, source_cache(root), opts.index_url)
    env = {**os.environ, SOURCES_ENV: url}
    work, logs = scratch_dirs(root, out)
    results: list[PackageResult] = []
    with file_lock(ch.lock_path(out), f"channel {out}"):
        out.mkdir(parents=True, exist_ok=True)
        if not (out / "noarch/repodata.json").exists():
            ch.index_atomic(out)
        prints = fingerprints(graph, recipes, channels)
        state = _load_state(out)
        failed: set[str] = set()
        stop = False
        if on_event:
            on_event("start", None, len(selected))
        for name in selected:
            r = recipes[name]
            res = PackageResult(name=name, version=r.version, status="not built")
            blocked = [d for d in graph.dependencies(name) if d in failed]
            previous = state.get(name) or {}
            if blocked:  # dependencies() is transitive: this names the packages that failed
                res.reason = f"{', '.join(blocked)} failed"
            elif stop:
                res.reason = "stopped after a failure (use --keep-going)"
            elif (
                not opts.force
                and previous.get("fingerprint") == prints[name]
                and (out / previous.get("file", "-")).exists()
            ):
                kept = {
                    k: previous[k]
                    for k in ("build_string", "size_bytes", "file", "log")
                    if k in previous
                }
                res = PackageResult(name=name, version=r.version, status="skipped", **kept)
            else:
                if on_event:
                    on_event("building", res, len(selected))
                log = logs / f"{name}.log"
                start = time.monotonic()
                try:
                    info = _run_worker(r, work / name, channels, log, env)
                    files = [Path(p) for p in info["packages"]]
                    if len(files) != 1:
                        raise DxError(f"{name}: expected one package, rattler-build made {files}")
                    dest = _publish(out, files[0], name)
                    res = PackageResult(
                        name=name,
                        version=info["version"],
                        status="built",
                        build_string=info["build_string"],
                        seconds=round(time.monotonic() - start, 2),
                        size_bytes=dest.stat().st_size,
                        file=dest.relative_to(out).as_posix(),
                        log=str(log),
                    )
                    state[name] = {
                        **{k: v for k, v in asdict(res).items() if k not in ("status",)},
                        "fingerprint": prints[name],
                    }
                    atomic_write_text(out / STATE, json.dumps(state, indent=2, sort_keys=True))
                    shutil.rmtree(work / name, ignore_errors=True)
                except DxError as e:
                    res.status = "failed"
                    res.reason = str(e)
                    absent = [
                        d
                        for d in graph.dependencies(name)
                        if not (out / (state.get(d) or {}).get("file", "-")).is_file()
                    ]
                    if absent:
                        res.reason += (
                            f"; {', '.join(absent)} (needed by {name}) not in {out}: "
                            f"build with --up-to {name}"
                        )
                    res.seconds = round(time.monotonic() - start, 2)
                    res.log = str(log)
                    failed.add(name)
                    stop = not opts.keep_going
            results.append(res)
            if on_event:
                on_event("done", res, len(selected))
    return BuildReport(
        channel=str(out), channels=channels, packages=results, seconds=time.monotonic() - t0
    )


class _LogCallback:
    """rattler-build progress callback writing every step and log line to stdout (the log file)."""

    def on_download_start(self, event: Any) -> None:
        print(f"download {event.url}", flush=True)

    def on_download_progress(self, event: Any) -> None:
        pass

    def on_download_complete(self, event: Any) -> None:
        pass

    def on_build_step(self, event: Any) -> None:
        print(f"== [{event.step_name}] {event.message}", flush=True)

    def on_log(self, event: Any) -> None:
        span = f" [{event.span}]" if event.span else ""
        print(f"{event.level}{span}: {event.message}", flush=True)


def _worker_main(arg: str) -> int:
    """Child process: one rattler-build build with tests; writes the result JSON."""
    import rattler_build

    spec = json.loads(arg)
    recipe = rattler_build.Stage0Recipe.from_file(spec["recipe"])
    results = recipe.run_build(
        tool_config=rattler_build.ToolConfiguration(test_strategy="native", compression_threads=2),
        output_dir=spec["output_dir"],
        channels=spec["channels"],
        progress_callback=_LogCallback(),
    )
    out = [
        {
            "name": r.name,
            "version": r.version,
            "build_string": r.build_string,
            "packages": [str(p) for p in r.packages],
        }
        for r in results
    ]
    if len(out) != 1:
        print(f"expected one output, got {len(out)}", file=sys.stderr)
        return 1
    atomic_write_text(Path(os.environ["DXFORGE_RESULT"]), json.dumps(out[0]))
    return 0


if __name__ == "__main__":
    code = 1
    try:
        code = _worker_main(sys.argv[1])
    except Exception as e:  # the parent reports the failure and points at this log
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
