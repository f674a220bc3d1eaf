"""``dxforge release``: a DiracX release becomes a tested channel, installer, notes and SBOMs.

The stages, each timed (start and end): bump (all recipes and construct.yaml, in lockstep) ->
fetch -> drift check -> seed -> build -> then two branches side by side: DiracX's own test
suites (two at a time: they mostly wait on sqlite and the disk), and installer -> pilot test ->
end to end (a real server, the installer's client; its compressor takes the second core) ->
notes and SBOMs -> publish. A failure stops the release naming the stage (and the
package and log where there is one); what was published before stays as it was. Running it
again resumes: the bump finds the recipes current, the seed and the build skip by fingerprint,
the suites by the packages they ran against, the pilot and end-to-end checks by the installer
they checked.

Publishing writes ``<build>/releases/<version>/`` aside and renames it into place, then points
``<build>/releases/latest`` at it with one rename.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from dxforge.builder.build import BuildOptions, run_build
from dxforge.builder.fetch import fetch_sources
from dxforge.bump import BumpOptions, check_version_option, plan_bump, run_bump
from dxforge.bump.drift import DriftRow, drift_table, recipes_drift
from dxforge.checks import upstream
from dxforge.checks.endtoend import EndToEndResult, run_end_to_end
from dxforge.checks.pilot import PilotResult, run_pilot
from dxforge.conda import channel as ch
from dxforge.conda import sbom
from dxforge.core import store
from dxforge.core.progress import SILENT, Progress
from dxforge.core.store import link_tree
from dxforge.core.util import (
    DxError,
    atomic_write_text,
    file_lock,
    publish,
    sha256_file,
    world_readable,
)
from dxforge.extension.build import build_extension
from dxforge.extension.bump import plan_extension_bump
from dxforge.extension.e2e import is_extension_project, run_extension_end_to_end
from dxforge.images import stage as images_stage
from dxforge.images.result import ImageResult
from dxforge.installer.make import InstallerOptions, InstallerResult, build_installer
from dxforge.project.layout import Layout
from dxforge.project.model import Project
from dxforge.project.recipes import project_family
from dxforge.release import notes
from dxforge.seed.build import SeedOptions, build_seed

REBUILD = (
    "dxforge installer --channel <this release>/channels/dxforge --channel "
    "<this release>/channels/seed gives sha256 {sha256}"
)
"""How anyone rebuilds the release's installer, byte for byte."""

T = TypeVar("T")


@dataclass
class ReleaseOptions:
    layout: Layout
    version: str | None = None
    index_url: str | None = None
    apply_deps: bool = False
    jobs: int = 2
    images: bool = False  # build the container images (a stage beside the installer's)


@dataclass
class StageTime:
    """When a stage ran, in seconds since the release began, and on which branch."""

    name: str
    start: float
    end: float
    branch: str = "release"

    @property
    def seconds(self) -> float:
        return round(self.end - self.start, 1)


@dataclass
class ReleaseResult:
    version: str
    previous: str | None
    directory: Path
    installer: InstallerResult
    pilot: PilotResult
    end_to_end: EndToEndResult
    tests: upstream.UpstreamReport
    notes: notes.Notes
    stages: list[StageTime] = field(default_factory=list)
    status: str = "released"

    @property
    def seconds(self) -> float:
        return max((s.end for s in self.stages), default=0.0)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "version": self.version,
            "previous": self.previous,
            "directory": str(self.directory),
            "installer": str(self.directory / self.installer.installer.name),
            "sha256": self.installer.sha256,
            "seconds": self.seconds,
            "stages": [{**asdict(s), "seconds": s.seconds} for s in self.stages],
            "upstream_tests": {n: s.as_json() for n, s in self.tests.suites.items()},
            "end_to_end": self.end_to_end.as_json(),
            "images": [asdict(i) for i in self.notes.images]
            if self.notes.images is not None
            else None,
            "images_check": asdict(self.notes.images_check) if self.notes.images_check else None,
            "notes": str(self.directory / "notes.md"),
        }


class _Stages:
    """Runs the stages: progress, timing (start and end), and errors that name the stage."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.t0 = time.monotonic()
        self.times: list[StageTime] = []
        self.lock = threading.Lock()

    def __call__(self, name: str, fn: Callable[[], T], branch: str = "release") -> T:
        self.progress.step(f"stage {name}")
        start = time.monotonic() - self.t0
        try:
            out = fn()
        except DxError as e:
            raise DxError(f"the release stopped in stage `{name}`: {e}") from None
        stage = StageTime(name, round(start, 1), round(time.monotonic() - self.t0, 1), branch)
        with self.lock:
            self.times.append(stage)
        self.progress.step(f"stage {name} done in {stage.seconds:.1f} s")
        return out

    def side_by_side(self, a: Callable[[], Any], b: Callable[[], Any]) -> tuple[Any, Any]:
        """Run two branches of stages at once; once both have stopped, the failure that came
        first is raised."""
        failures: list[tuple[float, BaseException]] = []

        def guard(fn: Callable[[], Any]) -> Any:
            try:
                return fn()
            except BaseException as e:
                failures.append((time.monotonic(), e))
                return None

        with ThreadPoolExecutor(2) as pool:
            fa, fb = pool.submit(guard, a), pool.submit(guard, b)
            out = (fa.result(), fb.result())
        if failures:
            raise min(failures, key=lambda f: f[0])[1]
        return out


def _check_drift(project: Project, index_url: str | None) -> list[DriftRow]:
    found = recipes_drift(
        [r.path for r in project.recipes],
        project.layout.sources,
        project.target,
        index_url=index_url,
        family=project_family(project.root),
    )
    rows = [
        DriftRow(n, c.name, c.kind, c.recipe, c.upstream)
        for n, d in found.items()
        for c in d.changes
    ]
    if rows:
        raise DxError(
            "upstream's requirements changed; the recipes do not follow them:\n"
            + "\n".join(drift_table(rows))
            + "\napply them with `dxforge release --apply-deps`, or edit the recipes' run lists"
        )
    return rows


def _tests_key(channel: Path, seed: str) -> str:
    records = ch.repodata_records(channel)
    return store.fingerprint([sorted((k, v["sha256"]) for k, v in records.items()), seed])


def _upstream(
    project: Project, index_url: str | None, progress: Progress, seed_fingerprint: str
) -> upstream.UpstreamReport:
    """The upstream suites, or their result for the same packages when it is recorded (only a
    run where every suite passed is)."""

    def run() -> upstream.UpstreamReport:
        rep = upstream.run_project(
            project, index_url=index_url, progress=progress, jobs=2, stop_on_failure=True
        )
        failed = [s for s in rep.suites.values() if not s.ok]
        if failed:
            s = failed[0]
            raise DxError(
                f"{s.package}: its test suite failed ({s.failed} failed, {s.errors} errors, "
                f"{s.passed} passed); see {s.log}"
            )
        return rep

    def load(found: dict[str, Any]) -> upstream.UpstreamReport:
        progress.step("the upstream suites passed against these packages already")
        rep = upstream.UpstreamReport(
            environment=found["environment"], seconds=found.get("seconds", 0)
        )
        rep.suites = {n: upstream.SuiteResult(**s) for n, s in found["suites"].items()}
        return rep

    key = _tests_key(project.layout.channel, seed_fingerprint)
    return _checked(project.layout, "upstream", key, run, load, upstream.UpstreamReport.as_json)


def _previous(layout: Layout) -> tuple[notes.Notes | None, Path | None]:
    latest = layout.releases / "latest"
    path = latest / "notes.json"
    if not path.is_file():
        return None, None
    try:
        return notes.Notes.from_json(json.loads(path.read_text())), latest.resolve()
    except (ValueError, KeyError, TypeError, DxError) as e:
        raise DxError(f"{path}: not the notes of a release ({e}); move {latest} aside") from None


def _channel_packages(channel: Path) -> list[ch.Package]:
    out = []
    for rel, rec in sorted(ch.check_channel(channel, fix="run dxforge build again").items()):
        sub, fname = rel.split("/", 1)
        out.append(
            ch.Package(
                name=rec["name"],
                version=rec["version"],
                build=rec["build"],
                subdir=sub,
                channel=channel.as_uri(),
                url=f"{channel.as_uri()}/{rel}",
                file_name=fname,
                size=int(rec["size"]),
                sha256=rec["sha256"],
                md5=rec.get("md5", ""),
                license=rec.get("license", "") or "",
                timestamp=int(rec.get("timestamp", 0)) // 1000,
            )
        )
    return out


def _verify(directory: Path) -> None:
    """Every file the release lists in SHA256SUMS has that sha256."""
    for line in (directory / "SHA256SUMS").read_text().splitlines():
        digest, name = line.split("  ", 1)
        if sha256_file(directory / name) != digest:
            raise DxError(f"{directory / name}: sha256 differs from SHA256SUMS after writing")


def _checked(
    layout: Layout,
    kind: str,
    key: str,
    make: Callable[[], T],
    load: Callable[[dict[str, Any]], T],
    as_json: Callable[[T], dict[str, Any]],
) -> T:
    """A check's result for ``key`` (what it checked: the packages, an installer's sha256, the
    images' digests) when the store of the release's checks holds it, else made and put
    there: a resumed release does not check the same thing twice."""
    records = store.Store(layout.build / "release-checks")
    done = records.get(kind, key)
    if done is not None:
        return load(done.meta["result"])
    out = make()
    records.put(kind, lambda _d: {"result": as_json(out)}, key)
    return out


def _check_images(
    project: Project, version: str, built: list[ImageResult], progress: Progress
) -> notes.ImagesCheck:
    """The release images' check, recorded once it ran for these digests (a resumed release
    does not run it twice); where the containers cannot run, skipped with the reason (said,
    and never recorded as done)."""

    def check() -> notes.ImagesCheck:
        return notes.ImagesCheck(
            **images_stage.check_release_images(project, version, progress).as_json()
        )

    if images_stage.why_not_check():
        return check()
    return _checked(
        project.layout,
        "images",
        images_stage.check_key(built),
        check,
        lambda d: notes.ImagesCheck(**d),
        asdict,
    )


def run_release(opts: ReleaseOptions, progress: Progress = SILENT) -> ReleaseResult:
    """Release what upstream published (or ``opts.version``), from bump to publication."""
    check_version_option(opts.version)
    layout = opts.layout
    layout.build.mkdir(parents=True, exist_ok=True)
    ext = is_extension_project(layout.root)  # a VO's: built on DiracX at its pin
    with file_lock(layout.build / ".release.lock", "dxforge release"):
        stage = _Stages(progress)
        bumped = stage(
            "bump",
            lambda: run_bump(
                BumpOptions(
                    Project.of(layout),
                    version=opts.version,
                    index_url=opts.index_url,
                    apply_deps=opts.apply_deps,
                ),
                progress,
                plan_extension_bump if ext else plan_bump,
            ),
        )
        project = Project.of(layout)  # as the bump left the recipes
        target, recipes, version = project.target, list(project.recipes), project.version
        stage(
            "fetch",
            lambda: fetch_sources(
                recipes, layout.sources, index_url=opts.index_url, progress=progress
            ),
        )
        drift = stage("drift", lambda: _check_drift(project, opts.index_url))
        seeded = stage(
            "seed", lambda: build_seed(SeedOptions(project, index_url=opts.index_url), progress)
        )

        def build() -> None:
            bo = BuildOptions(project, index_url=opts.index_url, jobs=opts.jobs)
            report = build_extension(layout, bo, progress)[1] if ext else run_build(bo, progress)
            bad = [p for p in report.packages if not p.done]
            if bad:
                p = bad[0]
                raise DxError(
                    f"{p.name}: {p.status}: {p.reason}" + (f"; log: {p.log}" if p.log else "")
                )

        stage("build", build)
        out = layout.work / "release" / version
        channels = [layout.channel.as_uri(), layout.seed.as_uri()]
        logs = layout.logs / "release"

        images: list[notes.ImageNote] = []
        checked: list[notes.ImagesCheck] = []

        def tests() -> upstream.UpstreamReport:
            if ext:  # DiracX's suites are DiracX's release's; an extension's sdists have none
                progress.step("an extension's release runs no upstream suites")
                return upstream.UpstreamReport(without_suite=[r.name for r in recipes])
            report = stage(
                "tests",
                lambda: _upstream(project, opts.index_url, progress, seeded.fingerprint),
                "tests",
            )
            if opts.images:  # needs only the channels: beside the installer's branch
                built = stage(
                    "images", lambda: images_stage.release_images(project, progress), "tests"
                )
                images.extend(
                    notes.ImageNote(i.ref, i.digest, i.base, i.base_digest) for i in built
                )
                checked.append(
                    stage(
                        "images-check",
                        lambda: _check_images(project, version, built, progress),
                        "tests",
                    )
                )
            return report

        def installer() -> tuple[InstallerResult, PilotResult, EndToEndResult]:
            inst = stage(
                "installer",
                lambda: build_installer(InstallerOptions(project, out=out), progress),
                "installer",
            )
            pilot = stage(
                "pilot",
                lambda: _checked(
                    layout,
                    "pilot",
                    inst.sha256,
                    lambda: run_pilot(inst.installer, logs / f"pilot-{version}.log"),
                    lambda d: PilotResult(**d),
                    PilotResult.as_json,
                ),
                "installer",
            )
            e2e = stage(
                "e2e",
                lambda: _checked(
                    layout,
                    "e2e",
                    inst.sha256,
                    lambda: (
                        run_extension_end_to_end(project, inst.installer, progress)
                        if ext
                        else run_end_to_end(
                            inst.installer,
                            channels,
                            version,
                            target,
                            logs / f"e2e-{version}",
                            layout.work / "pkgs",
                            progress,
                        )
                    ),
                    lambda d: EndToEndResult(**d),
                    EndToEndResult.as_json,
                ),
                "installer",
            )
            return inst, pilot, e2e

        report, (inst, pilot, e2e) = stage.side_by_side(tests, installer)
        previous, previous_dir = _previous(layout)
        layout.releases.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f".{version}.new-", dir=layout.releases))
        try:
            data = stage(
                "notes",
                lambda: _write_outputs(
                    staged,
                    layout,
                    inst,
                    notes.Notes(
                        version=version,
                        installer=_facts(inst, pilot),
                        drift=drift,
                        drift_applied=bumped.drift_applied,
                        rebuild=REBUILD.format(sha256=inst.sha256),
                        previous=notes.Previous(previous.version, previous.installer)
                        if previous
                        else None,
                        diff=_diff(previous_dir, inst),
                        upstream_tests={n: s.as_json() for n, s in report.suites.items()},
                        end_to_end=e2e.as_json(),
                        stages=[
                            notes.Stage(s.name, s.start, s.end, s.branch, s.seconds)
                            for s in stage.times
                        ],
                        images=images if opts.images else None,
                        images_check=checked[0] if checked else None,
                    ),
                ),
            )
            directory = stage(
                "publish",
                lambda: publish(
                    staged, layout.releases / version, latest=layout.releases / "latest"
                ),
            )
        finally:
            shutil.rmtree(staged, ignore_errors=True)
    return ReleaseResult(
        version,
        previous.version if previous else None,
        directory,
        inst,
        pilot,
        e2e,
        report,
        data,
        stage.times,
    )


def _facts(inst: InstallerResult, pilot: PilotResult) -> notes.InstallerFacts:
    return notes.InstallerFacts(
        file=inst.installer.name,
        sha256=inst.sha256,
        size=inst.size,
        packages=len(inst.packages),
        glibc_floor=inst.glibc_floor,
        pilot_install_seconds=pilot.install_seconds,
        pilot_offline=pilot.offline,
    )


def _diff(previous_dir: Path | None, inst: InstallerResult) -> notes.PackageDiff | None:
    """The installer's packages against the previous release's lockfile, if there is one."""
    old_lock = next(previous_dir.glob("*.explicit.txt"), None) if previous_dir else None
    if old_lock is None:
        return None
    return notes.diff(notes.read_lockfile(old_lock), notes.read_lockfile(inst.lockfile))


def _write_outputs(d: Path, layout: Layout, inst: InstallerResult, rel: notes.Notes) -> notes.Notes:
    """Everything a release directory holds, written into ``d`` and checked."""
    d.chmod(0o755)
    for name, src in (("dxforge", layout.channel), ("seed", layout.seed)):
        for path in link_tree(src.resolve(), d / "channels" / name):  # symlinks followed at top
            if path.endswith(".conda"):
                world_readable(d / "channels" / name / path)
    for src in (inst.installer, inst.sha256_file, inst.lockfile, inst.package_list):
        shutil.copy2(src, d / src.name)
    epoch = max((p.timestamp for p in inst.packages), default=0)
    sbom.write(d / "sbom-installer.cdx.json", inst.name, rel.version, inst.packages, epoch)
    channel_pkgs = _channel_packages(layout.channel)
    sbom.write(d / "sbom-channel.cdx.json", "dxforge-channel", rel.version, channel_pkgs, epoch)
    rel.packages = [
        notes.ChannelPackage(p.name, f"{p.subdir}/{p.file_name}", p.sha256, p.version)
        for p in channel_pkgs
    ]
    atomic_write_text(d / "notes.json", json.dumps(rel.as_json(), indent=1) + "\n")
    atomic_write_text(d / "notes.md", rel.markdown())
    files = sorted(p for p in d.iterdir() if p.is_file() and p.name != "SHA256SUMS")
    atomic_write_text(d / "SHA256SUMS", "".join(f"{sha256_file(p)}  {p.name}\n" for p in files))
    _verify(d)
    return rel
