"""Release notes: what changed between two releases, as DIRACOS2's release notes show it (the
installer's package diff from the ``@EXPLICIT`` lockfiles), plus what dxforge measured (sizes,
glibc floor, pilot install time, upstream test counts). ``notes.json`` holds the data,
``notes.md`` the text a release manager (or a pull request) reads."""

from __future__ import annotations

import re
import urllib.parse
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dxforge.util import DxError

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
            return {"name": a.name, "from": f"{a.version} {a.build}",
                    "to": f"{b.version} {b.build}"}

        return {
            "added": [asdict(p) for p in self.added],
            "removed": [asdict(p) for p in self.removed],
            "upgraded": [pair(a, b) for a, b in self.upgraded],
            "downgraded": [pair(a, b) for a, b in self.downgraded],
            "rebuilt": [pair(a, b) for a, b in self.rebuilt],
        }


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


def _md_table(head: list[str], rows: list[list[str]]) -> list[str]:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return lines


def _mib(n: int | None) -> str:
    return "?" if n is None else f"{n / 1024 / 1024:.1f} MiB"


def _compare(new: float | int | None, old: float | int | None, fmt: Any) -> str:
    if new is None:
        return "?"
    if old is None:
        return fmt(new)
    return f"{fmt(new)} (previous: {fmt(old)})"


def markdown(data: dict[str, Any]) -> str:
    """``notes.md`` from the data of ``notes.json``."""
    prev = data.get("previous") or {}
    inst = data["installer"]
    pinst = prev.get("installer") or {}
    old_v = prev.get("version")
    lines = [
        f"# DiracX {data['version']}" + (f" (from {old_v})" if old_v else ""),
        "",
        f"Made by `dxforge release` from the DiracX {data['version']} sources on the package "
        "index: the channel, the DIRACOS installer, its lockfile and the SBOMs.",
        "",
        "## Installer",
        "",
        f"- file: `{inst['file']}`",
        f"- sha256: `{inst['sha256']}`",
        f"- size: {_compare(inst.get('size'), pinst.get('size'), _mib)}",
        f"- packages: {_compare(inst.get('packages'), pinst.get('packages'), str)}",
        f"- glibc floor: {_compare(inst.get('glibc_floor'), pinst.get('glibc_floor'), str)}",
        "- pilot install time: "
        + _compare(inst.get("pilot_install_seconds"), pinst.get("pilot_install_seconds"),
                   lambda s: f"{s:.1f} s"),
        f"- rebuild and compare: `{data['rebuild']}`",
        "",
    ]
    d = data.get("diff")
    lines += ["## Installer packages", ""]
    if d is None:
        lines += ["No previous release to compare with.", ""]
    else:
        rows = [[p["name"], "added", "", f"{p['version']} {p['build']}"] for p in d["added"]]
        rows += [[p["name"], "removed", f"{p['version']} {p['build']}", ""] for p in d["removed"]]
        for kind in ("upgraded", "downgraded", "rebuilt"):
            rows += [[p["name"], kind, p["from"], p["to"]] for p in d[kind]]
        lines += _md_table(["package", "change", "previous", "now"], rows) if rows else [
            "The installer holds the same packages as the previous release."
        ]
        lines.append("")
    lines += ["## Channel packages", ""]
    lines += _md_table(
        ["package", "file", "sha256"],
        [[p["name"], f"`{p['file']}`", f"`{p['sha256']}`"] for p in data["packages"]],
    )
    lines += ["", "## Dependency drift", ""]
    drift = data.get("drift") or []
    if drift:
        lines += _md_table(
            ["package", "requirement", "change", "recipe", "upstream"],
            [[c["package"], c["name"], c["kind"], c["recipe"] or "—", c["upstream"] or "—"]
             for c in drift],
        )
        lines.append("")
        lines.append("Applied to the recipes (`--apply-deps`)." if data.get("drift_applied")
                     else "Not applied.")
    else:
        lines.append("The run requirements match upstream's Requires-Dist.")
    lines += ["", "## Upstream test suites", ""]
    tests = data.get("upstream_tests") or {}
    if tests:
        lines += _md_table(
            ["package", "passed", "failed", "errors", "skipped", "seconds"],
            [[n, str(t["passed"]), str(t["failed"]), str(t["errors"]), str(t["skipped"]),
              f"{t['seconds']:.0f}"] for n, t in sorted(tests.items())],
        )
        total = sum(t["passed"] for t in tests.values())
        lines += ["", f"{total} tests passed against the built packages."]
    else:
        lines.append("Not run.")
    e2e = data.get("end_to_end")
    lines += ["", "## End to end", ""]
    if e2e:
        lines.append(f"A DiracX {e2e['version']} server from these channels and the installer's "
                     f"client, {e2e['isolation']}, in {e2e['seconds']:.0f} s:")
        lines += [""] + [f"- {c}" for c in e2e["checks"]]
    else:
        lines.append("Not run.")
    lines += images_section(data.get("images"))
    stages = data.get("stages") or []
    if stages:
        total = max(s["end"] for s in stages)
        lines += ["", "## Stages", "", f"{total:.0f} s from `dxforge release` to publication.",
                  "", *gantt(stages), ""]
        lines += _md_table(["stage", "branch", "start", "end", "seconds"],
                           [[s["name"], s["branch"], f"{s['start']:.1f}", f"{s['end']:.1f}",
                             f"{s['seconds']:.1f}"] for s in stages])
    return "\n".join(lines) + "\n"


def images_section(images: list[dict[str, Any]] | None) -> list[str]:
    """The release's container images: reference, digest and the base each stands on."""
    if images is None:
        return []
    lines = ["", "## Container images", ""]
    if not images:
        return [*lines, "Not built."]
    return lines + _md_table(["image", "digest", "base", "base digest"],
                             [[f"`{i['ref']}`", f"`{i['digest']}`", f"`{i['base']}`",
                               f"`{i['base_digest']}`"] for i in images])


def gantt(stages: list[dict[str, Any]]) -> list[str]:
    """The stages as a Mermaid Gantt chart (GitHub renders it), one section per branch."""
    lines = ["```mermaid", "gantt", "    title Release stages (seconds)", "    dateFormat X",
             "    axisFormat %s"]
    branches: dict[str, list[dict[str, Any]]] = {}
    for s in stages:
        branches.setdefault(s["branch"], []).append(s)
    for branch, items in branches.items():
        lines.append(f"    section {branch}")
        for s in items:
            start, end = int(s["start"]), max(int(round(s["end"])), int(s["start"]) + 1)
            lines.append(f"    {s['name']} ({s['seconds']:.0f} s) :{start}, {end}")
    return [*lines, "```"]
