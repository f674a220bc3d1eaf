"""Release notes: what changed between two releases, as DIRACOS2's release notes show it (the
installer's package diff from the ``@EXPLICIT`` lockfiles), plus what dxforge measured (sizes,
glibc floor, pilot install time, upstream test counts). :class:`Notes` is the data:
``notes.json`` holds it, ``notes.md`` is the text a release manager (or a pull request) reads;
its drift section is bump's one drift table (:func:`dxforge.bump.drift.drift_table`)."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from dxforge.bump.drift import DriftRow, drift_table
from dxforge.core.util import DxError, md_table

_FILE = re.compile(r"^(?P<name>.+)-(?P<version>[^-]+)-(?P<build>[^-]+)\.(?:conda|tar\.bz2)$")


@dataclass(frozen=True, order=True)
class Locked:
    """One package of an ``@EXPLICIT`` lockfile."""

    name: str
    version: str
    build: str


def read_lockfile(path: Path) -> dict[str, Locked]:
    """The packages of an ``@EXPLICIT`` lockfile, by name."""
    try:
        lines = Path(path).read_text().splitlines()
    except OSError as e:
        raise DxError(f"{path}: cannot read the lockfile ({e})") from None
    if "@EXPLICIT" not in (ln.strip() for ln in lines):
        raise DxError(f"{path}: not an @EXPLICIT lockfile (no @EXPLICIT line)")
    out: dict[str, Locked] = {}
    for line in lines:
        line = line.strip()
        if not line or line.startswith("#") or line == "@EXPLICIT":
            continue
        fname = urllib.parse.unquote(line.split("#", 1)[0].rstrip("/").rsplit("/", 1)[-1])
        m = _FILE.match(fname)
        if not m:
            raise DxError(f"{path}: {line!r} does not name a conda package file")
        out[m["name"]] = Locked(m["name"], m["version"], m["build"])
    return out


@dataclass
class PackageDiff:
    added: list[Locked] = field(default_factory=list)
    removed: list[Locked] = field(default_factory=list)
    upgraded: list[tuple[Locked, Locked]] = field(default_factory=list)
    downgraded: list[tuple[Locked, Locked]] = field(default_factory=list)
    rebuilt: list[tuple[Locked, Locked]] = field(default_factory=list)  # same version

    def as_json(self) -> dict[str, Any]:
        def pair(a: Locked, b: Locked) -> dict[str, str]:
            return {
                "name": a.name,
                "from": f"{a.version} {a.build}",
                "to": f"{b.version} {b.build}",
            }

        return {
            "added": [asdict(p) for p in self.added],
            "removed": [asdict(p) for p in self.removed],
            "upgraded": [pair(a, b) for a, b in self.upgraded],
            "downgraded": [pair(a, b) for a, b in self.downgraded],
            "rebuilt": [pair(a, b) for a, b in self.rebuilt],
        }

    @staticmethod
    def from_json(data: dict[str, Any]) -> PackageDiff:
        return _diff_from_json(data)


def _pair(p: dict[str, str]) -> tuple[Locked, Locked]:
    (a_version, a_build), (b_version, b_build) = p["from"].split(" ", 1), p["to"].split(" ", 1)
    return Locked(p["name"], a_version, a_build), Locked(p["name"], b_version, b_build)


def _diff_from_json(data: dict[str, Any]) -> PackageDiff:
    return PackageDiff(
        added=[Locked(**p) for p in data.get("added", [])],
        removed=[Locked(**p) for p in data.get("removed", [])],
        upgraded=[_pair(p) for p in data.get("upgraded", [])],
        downgraded=[_pair(p) for p in data.get("downgraded", [])],
        rebuilt=[_pair(p) for p in data.get("rebuilt", [])],
    )


def diff(old: dict[str, Locked], new: dict[str, Locked]) -> PackageDiff:
    """How the packages of ``new`` differ from ``old`` (conda's version order)."""
    from rattler import Version

    out = PackageDiff()
    for name in sorted(old.keys() | new.keys()):
        a, b = old.get(name), new.get(name)
        if a is None and b is not None:
            out.added.append(b)
        elif b is None and a is not None:
            out.removed.append(a)
        elif a is not None and b is not None and a != b:
            va, vb = Version(a.version), Version(b.version)
            if vb > va:
                out.upgraded.append((a, b))
            elif vb < va:
                out.downgraded.append((a, b))
            else:
                out.rebuilt.append((a, b))
    return out


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024 / 1024:.1f} MiB"


def _compare(new: float | int | str | None, old: float | int | str | None, fmt: Any) -> str:
    if new is None:
        return "?"
    if old is None:
        return fmt(new)
    return f"{fmt(new)} (previous: {fmt(old)})"


@dataclass
class InstallerFacts:
    """What the notes say of an installer (the previous release's may lack some)."""

    file: str = ""
    sha256: str = ""
    size: int | None = None
    packages: int | None = None
    glibc_floor: str | None = None
    pilot_install_seconds: float | None = None
    pilot_offline: bool | None = None


@dataclass
class Previous:
    version: str
    installer: InstallerFacts


@dataclass
class ChannelPackage:
    name: str
    file: str
    sha256: str
    version: str = ""


@dataclass
class Stage:
    """When a release stage ran, in seconds since the release began, and on which branch."""

    name: str
    start: float
    end: float
    branch: str = "release"
    seconds: float = 0.0


@dataclass
class ImageNote:
    """A release's container image: its reference, digest and the base it stands on."""

    ref: str
    digest: str
    base: str
    base_digest: str


@dataclass
class ImagesCheck:
    """The container images' check: ``passed``, or ``skipped`` with the reason."""

    status: str
    reason: str = ""
    checks: list[str] = field(default_factory=list)
    healthy_seconds: float = 0.0
    job_id: int = 0
    seconds: float = 0.0


@dataclass
class Notes:
    """A release's notes: ``notes.json`` (:meth:`as_json`, :meth:`from_json`) and ``notes.md``
    (:meth:`markdown`)."""

    version: str
    installer: InstallerFacts
    rebuild: str
    previous: Previous | None = None
    packages: list[ChannelPackage] = field(default_factory=list)
    drift: list[DriftRow] = field(default_factory=list)
    drift_applied: bool = False
    diff: PackageDiff | None = None
    upstream_tests: dict[str, dict[str, Any]] = field(default_factory=dict)
    end_to_end: dict[str, Any] | None = None
    stages: list[Stage] = field(default_factory=list)
    images: list[ImageNote] | None = None  # None: not built in this release
    images_check: ImagesCheck | None = None

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["diff"] = self.diff.as_json() if self.diff is not None else None
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Notes:
        """The notes of ``notes.json``; a key it does not know is an error naming it."""
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise DxError(f"notes.json: unknown keys {unknown}; known: {sorted(known)}")
        prev = data.get("previous")
        return cls(
            version=data["version"],
            installer=InstallerFacts(**data["installer"]),
            rebuild=data.get("rebuild", ""),
            previous=Previous(prev["version"], InstallerFacts(**prev.get("installer") or {}))
            if prev
            else None,
            packages=[ChannelPackage(**p) for p in data.get("packages") or []],
            drift=[DriftRow(**r) for r in data.get("drift") or []],
            drift_applied=bool(data.get("drift_applied")),
            diff=PackageDiff.from_json(data["diff"]) if data.get("diff") else None,
            upstream_tests=dict(data.get("upstream_tests") or {}),
            end_to_end=data.get("end_to_end"),
            stages=[Stage(**s) for s in data.get("stages") or []],
            images=[ImageNote(**i) for i in data["images"]]
            if data.get("images") is not None
            else None,
            images_check=ImagesCheck(**data["images_check"]) if data.get("images_check") else None,
        )

    def markdown(self) -> str:
        """``notes.md``."""
        lines = [
            *self._installer(),
            *self._diff(),
            *self._channel(),
            *self._drift(),
            *self._tests(),
            *self._end_to_end(),
            *self._images(),
            *self._stages(),
        ]
        return "\n".join(lines) + "\n"

    def _installer(self) -> list[str]:
        inst = self.installer
        old = self.previous.installer if self.previous else InstallerFacts()
        since = f" (from {self.previous.version})" if self.previous else ""
        return [
            f"# DiracX {self.version}{since}",
            "",
            f"Made by `dxforge release` from the DiracX {self.version} sources on the package "
            "index: the channel, the DIRACOS installer, its lockfile and the SBOMs.",
            "",
            "## Installer",
            "",
            f"- file: `{inst.file}`",
            f"- sha256: `{inst.sha256}`",
            f"- size: {_compare(inst.size, old.size, _mib)}",
            f"- packages: {_compare(inst.packages, old.packages, str)}",
            f"- glibc floor: {_compare(inst.glibc_floor, old.glibc_floor, str)}",
            "- pilot install time: "
            + _compare(
                inst.pilot_install_seconds, old.pilot_install_seconds, lambda s: f"{s:.1f} s"
            ),
            f"- rebuild and compare: `{self.rebuild}`",
            "",
        ]

    def _diff(self) -> list[str]:
        lines = ["## Installer packages", ""]
        d = self.diff
        if d is None:
            return [*lines, "No previous release to compare with.", ""]
        rows = [[p.name, "added", "", f"{p.version} {p.build}"] for p in d.added]
        rows += [[p.name, "removed", f"{p.version} {p.build}", ""] for p in d.removed]
        for kind in ("upgraded", "downgraded", "rebuilt"):
            rows += [
                [a.name, kind, f"{a.version} {a.build}", f"{b.version} {b.build}"]
                for a, b in getattr(d, kind)
            ]
        lines += (
            md_table(["package", "change", "previous", "now"], rows)
            if rows
            else ["The installer holds the same packages as the previous release."]
        )
        return [*lines, ""]

    def _channel(self) -> list[str]:
        return [
            "## Channel packages",
            "",
            *md_table(
                ["package", "file", "sha256"],
                [[p.name, f"`{p.file}`", f"`{p.sha256}`"] for p in self.packages],
            ),
        ]

    def _drift(self) -> list[str]:
        lines = ["", "## Dependency drift", ""]
        if not self.drift:
            return [*lines, "The run requirements match upstream's Requires-Dist."]
        applied = (
            "Applied to the recipes (`--apply-deps`)." if self.drift_applied else "Not applied."
        )
        return [*lines, *drift_table(self.drift), "", applied]

    def _tests(self) -> list[str]:
        lines = ["", "## Upstream test suites", ""]
        tests = self.upstream_tests
        if not tests:
            return [*lines, "Not run."]
        lines += md_table(
            ["package", "passed", "failed", "errors", "skipped", "seconds"],
            [
                [
                    n,
                    str(t["passed"]),
                    str(t["failed"]),
                    str(t["errors"]),
                    str(t["skipped"]),
                    f"{t['seconds']:.0f}",
                ]
                for n, t in sorted(tests.items())
            ],
        )
        total = sum(t["passed"] for t in tests.values())
        return [*lines, "", f"{total} tests passed against the built packages."]

    def _end_to_end(self) -> list[str]:
        lines = ["", "## End to end", ""]
        e2e = self.end_to_end
        if not e2e:
            return [*lines, "Not run."]
        return [
            *lines,
            f"A DiracX {e2e['version']} server from these channels and the installer's "
            f"client, {e2e['isolation']}, in {e2e['seconds']:.0f} s:",
            "",
            *(f"- {c}" for c in e2e["checks"]),
        ]

    def _images(self) -> list[str]:
        """The release's container images: reference, digest and the base each stands on;
        then what their check found, or why they were not tested."""
        if self.images is None:
            return []
        lines = ["", "## Container images", ""]
        if not self.images:
            return [*lines, "Not built."]
        lines += md_table(
            ["image", "digest", "base", "base digest"],
            [
                [f"`{i.ref}`", f"`{i.digest}`", f"`{i.base}`", f"`{i.base_digest}`"]
                for i in self.images
            ],
        )
        check = self.images_check
        if check is None:
            return [*lines, "", "Not tested."]
        if check.status != "passed":
            return [*lines, "", f"**Not tested** ({check.status}): {check.reason}"]
        return [
            *lines,
            "",
            f"Tested with podman in {check.seconds:.0f} s; the services were healthy "
            f"{check.healthy_seconds:.1f} s after `podman run`:",
            "",
            *(f"- {c}" for c in check.checks),
        ]

    def _stages(self) -> list[str]:
        if not self.stages:
            return []
        total = max(s.end for s in self.stages)
        return [
            "",
            "## Stages",
            "",
            f"{total:.0f} s from `dxforge release` to publication.",
            "",
            *gantt(self.stages),
            "",
            *md_table(
                ["stage", "branch", "start", "end", "seconds"],
                [
                    [s.name, s.branch, f"{s.start:.1f}", f"{s.end:.1f}", f"{s.seconds:.1f}"]
                    for s in self.stages
                ],
            ),
        ]


def gantt(stages: list[Stage]) -> list[str]:
    """The stages as a Mermaid Gantt chart (GitHub renders it), one section per branch."""
    lines = [
        "```mermaid",
        "gantt",
        "    title Release stages (seconds)",
        "    dateFormat X",
        "    axisFormat %s",
    ]
    branches: dict[str, list[Stage]] = {}
    for s in stages:
        branches.setdefault(s.branch, []).append(s)
    for branch, items in branches.items():
        lines.append(f"    section {branch}")
        for s in items:
            start, end = int(s.start), max(int(round(s.end)), int(s.start) + 1)
            lines.append(f"    {s.name} ({s.seconds:.0f} s) :{start}, {end}")
    return [*lines, "```"]
