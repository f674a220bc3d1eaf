"""DiracX's own test suites, run against the packages we built.

Each package's sdist carries its ``tests/``. They run in one fresh environment solved from our
channels: our packages, the target's python, pytest, and the sdists' extras (``testing`` and
the others, not the ``types`` stubs) under conda-forge names, all of which the seed holds. Only
the tests are extracted (never ``src/``), next to every package's ``pyproject.toml`` (DiracX's
test plugin compares the installed entry points with them), and pytest runs with the package's
own configuration minus ``addopts`` (no coverage), in a pilot's site
(:mod:`dxforge.isolation.isolate`): unprivileged, offline. Upstream's own markers skip what needs a
live service.
"""

from __future__ import annotations

import tarfile
import time
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dxforge.conda import channel as ch
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError
from dxforge.isolation.isolate import Site
from dxforge.project.layout import Layout
from dxforge.project.recipes import Recipe, load_recipes
from dxforge.project.target import Target, project_target
from dxforge.pypa.metadata import DistMetadata, RequiresDistLookup
from dxforge.pypa.names import conda_run_requirements
from dxforge.seed.needs import has_tests, metadata, sdist_path, test_requirements


@dataclass
class SuiteResult:
    """One package's test suite."""

    package: str
    passed: int = 0
    failed: int = 0
    errors: int = 0
    skipped: int = 0
    seconds: float = 0.0
    log: str = ""
    offline: bool = True

    @property
    def ok(self) -> bool:
        return self.failed == 0 and self.errors == 0 and self.passed > 0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class UpstreamReport:
    suites: dict[str, SuiteResult] = field(default_factory=dict)
    environment: list[str] = field(default_factory=list)  # the specs solved
    seconds: float = 0.0
    without_suite: list[str] = field(default_factory=list)  # asked for, but their sdist has none

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.suites.values())

    @property
    def status(self) -> str:
        return "passed" if self.ok else "failed"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "suites": {n: s.as_json() for n, s in self.suites.items()},
            "without_suite": self.without_suite,
            "environment": self.environment,
            "seconds": round(self.seconds, 1),
        }


def environment_specs(
    recipes: list[Recipe], metas: dict[str, DistMetadata], target: Target, index_url: str | None
) -> list[str]:
    """The match specs of the test environment: our packages at their version, the target's
    python, and the test requirements (extras expanded) under conda-forge names."""
    lines = [str(r) for r in test_requirements(metas, target)]
    lookup = RequiresDistLookup(None, dict(metas), index_url=index_url)
    reqs = conda_run_requirements(lines, target, lookup, "the DiracX test requirements")
    specs = [f"{r.name} =={r.version}" for r in recipes]
    specs += [target.spec, "pip"]
    ours = {r.name for r in recipes}
    specs += [f"{n} {s}".strip() for n, s in sorted(reqs.items()) if n not in ours]
    return specs


def _members(sdist: Path, wanted: str) -> list[tuple[tarfile.TarInfo, bytes]]:
    """The files at ``wanted`` (a file or a directory) under the sdist's top directory."""
    out = []
    with tarfile.open(sdist, "r:*") as tar:
        for m in tar.getmembers():
            rel = m.name.split("/", 1)[1] if "/" in m.name else ""
            if m.isfile() and (rel == wanted or rel.startswith(wanted + "/")):
                f = tar.extractfile(m)
                assert f is not None
                out.append((m, f.read()))
    return out


def layout_tests(recipes: list[Recipe], sources: Path, work: Path) -> dict[str, Path]:
    """``work/<package>/`` with every package's pyproject.toml and its tests (no sources);
    returns the packages that have tests, with their directory."""
    with_tests = {}
    for r in recipes:
        d = work / r.name
        d.mkdir(parents=True)
        sdist = sdist_path(r, sources)
        for member, data in _members(sdist, "pyproject.toml") + _members(sdist, "tests"):
            rel = member.name.split("/", 1)[1]
            if ".." in Path(rel).parts:
                raise DxError(f"{sdist}: unsafe path {member.name!r}")
            (d / rel).parent.mkdir(parents=True, exist_ok=True)
            (d / rel).write_bytes(data)
        if has_tests(r, sources):
            with_tests[r.name] = d
    return with_tests


def plugins(pyproject: Path) -> list[str]:
    """The ``-p`` plugins of the package's pytest ``addopts`` (coverage and the rest dropped)."""
    data = tomllib.loads(pyproject.read_text())
    opts = data.get("tool", {}).get("pytest", {}).get("ini_options", {}).get("addopts", [])
    if isinstance(opts, str):
        opts = opts.split()
    out = []
    it = iter(opts)
    for o in it:
        if o == "-p":
            out += ["-p", next(it, "")]
        elif o.startswith("-p") and len(o) > 2:
            out += ["-p", o[2:]]
    return out


def _counts(junit: Path) -> tuple[int, int, int, int]:
    root = ET.parse(junit).getroot()
    suites = [root] if root.tag == "testsuite" else list(root.iter("testsuite"))
    tests = sum(int(s.get("tests", 0)) for s in suites)
    failures = sum(int(s.get("failures", 0)) for s in suites)
    errors = sum(int(s.get("errors", 0)) for s in suites)
    skipped = sum(int(s.get("skipped", 0)) for s in suites)
    return tests - failures - errors - skipped, failures, errors, skipped


def run_suites(
    recipes: list[Recipe],
    channels: list[str],
    sources: Path,
    work: Path,
    logs: Path,
    target: Target,
    *,
    index_url: str | None = None,
    only: Iterable[str] = (),
    progress: Progress = SILENT,
    jobs: int = 2,
    stop_on_failure: bool = False,
) -> UpstreamReport:
    """Run each package's own test suite against a fresh environment from ``channels``, in a
    pilot's site (unprivileged, offline) under ``work`` (the package cache is ``work/pkgs``),
    ``jobs`` suites at a time. A package whose sdist holds no suite of its own is reported as
    such. ``stop_on_failure`` (a release): no suite starts once one has failed."""
    t0 = time.monotonic()
    work.mkdir(parents=True, exist_ok=True)
    metas = metadata(recipes, sources)
    specs = environment_specs(recipes, metas, target, index_url)
    wanted = set(only)
    unknown = wanted - {r.name for r in recipes}
    if unknown:
        raise DxError(
            f"--only {', '.join(sorted(unknown))}: no such package (have "
            f"{', '.join(r.name for r in recipes)})"
        )
    report = UpstreamReport(environment=specs)
    with Site(work, prefix="suites-") as site:
        env = site.root / "env"
        progress.step(f"creating the test environment ({len(specs)} specs)")
        ch.create(channels, specs, env, cache_dir=work / "pkgs")
        (site.root / "pycache").mkdir()
        site.give(site.root / "pycache")  # the suites' byte code, compiled once as imported
        tests = layout_tests(recipes, sources, site.root / "src")
        site.give(site.root / "src")
        chosen = [n for n in tests if not wanted or n in wanted]
        report.without_suite = sorted(n for n in wanted - set(tests))
        progress.begin("upstream test suites", len(chosen))
        logs.mkdir(parents=True, exist_ok=True)
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            futures = {
                pool.submit(_run_one, name, tests[name], env, site, logs): name for name in chosen
            }
            for fut in as_completed(futures):
                if fut.cancelled():  # not started: an earlier suite failed
                    continue
                name = futures[fut]
                report.suites[name] = fut.result()
                progress.done(name, report.suites[name])
                if stop_on_failure and not report.suites[name].ok:
                    for other in futures:
                        other.cancel()
    report.suites = dict(sorted(report.suites.items(), key=lambda kv: chosen.index(kv[0])))
    report.seconds = time.monotonic() - t0
    return report


def _run_one(name: str, d: Path, env: Path, site: Site, logs: Path) -> SuiteResult:
    module = "diracx." + name.removeprefix("diracx-").replace("-", "_")
    tmp = site.tmp / name  # each suite its own TMPDIR (pytest's base temp under it)
    tmp.mkdir()
    site.give(tmp)
    environ = site.env(
        path=f"{env}/bin:/usr/bin:/bin",
        TMPDIR=str(tmp),
        PYTHONPYCACHEPREFIX=str(site.root / "pycache"),
    )
    log = logs / f"{name}.log"
    junit = tmp / "junit.xml"
    check = site.run(
        [f"{env}/bin/python", "-P", "-c", f"import {module} as m; print(m.__file__)"],
        env=environ,
        cwd=d,
    )
    where = check.stdout.strip() or check.tail(5)
    if not check.ok or not where.startswith(str(env) + "/"):
        raise DxError(f"{name}: the tests would not import the installed {module} ({where})")
    ran = site.run(
        [
            f"{env}/bin/python",
            "-P",
            "-m",
            "pytest",
            "-c",
            "pyproject.toml",
            "--rootdir",
            ".",
            "--confcutdir",
            ".",
            "-o",
            "addopts=",
            "-p",
            "no:cacheprovider",
            *plugins(d / "pyproject.toml"),
            "--import-mode=importlib",
            "-ra",
            f"--junitxml={junit}",
            "tests",
        ],
        env=environ,
        cwd=d,
        log=log,
        timeout=3600,
    )
    if not junit.is_file():
        raise DxError(f"{name}: pytest exited {ran.returncode} without results; see {log}")
    passed, failed, errors, skipped = _counts(junit)
    return SuiteResult(
        name, passed, failed, errors, skipped, round(ran.seconds, 1), str(log), site.offline
    )


def run_project(
    layout: Layout,
    *,
    index_url: str | None = None,
    only: Iterable[str] = (),
    progress: Progress = SILENT,
    jobs: int = 2,
    stop_on_failure: bool = False,
) -> UpstreamReport:
    """The suites of the project's recipes against its build and seed channels."""
    target = project_target(layout.construct)
    return run_suites(
        load_recipes(layout.root, target=target),
        [layout.channel.as_uri(), layout.seed.as_uri()],
        layout.sources,
        layout.work / "upstream",
        layout.logs / "upstream",
        target,
        index_url=index_url,
        only=only,
        progress=progress,
        jobs=jobs,
        stop_on_failure=stop_on_failure,
    )
