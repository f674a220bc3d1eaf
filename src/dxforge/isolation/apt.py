"""Debian's archive as this machine's apt is configured: the mirror URLs (read from apt's
sources, never written down), and a private apt configuration per release, in the user cache,
to download source and binary packages verified against Debian's signed Release files. Nothing
machine-wide is touched: apt runs with ``APT_CONFIG`` pointing at the private configuration."""

from __future__ import annotations

import functools
import json
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

from dxforge.core.util import DxError, atomic_write_text, execute, run

SOURCES = Path("/etc/apt/sources.list")
SOURCES_DIR = Path("/etc/apt/sources.list.d")
KEYRING = Path("/usr/share/keyrings/debian-archive-keyring.gpg")
LISTS_MAX_AGE = 6 * 3600
"""Package lists older than this are refreshed (``apt-get update``)."""


@dataclass(frozen=True)
class Mirror:
    """Where Debian's packages come from: the archive and its security archive."""

    archive: str
    security: str | None = None


def _entries(sources: Path, sources_dir: Path) -> list[tuple[str, list[str]]]:
    """``(URI, suites)`` of every ``deb`` entry in apt's sources (one-line and deb822 formats)."""
    out: list[tuple[str, list[str]]] = []
    if sources.is_file():
        for line in sources.read_text().splitlines():
            m = re.match(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m:
                out.append((m[1], [m[2]]))
    if sources_dir.is_dir():
        for path in sorted(sources_dir.glob("*.list")):
            out += _entries(path, Path("/nonexistent"))
        for path in sorted(sources_dir.glob("*.sources")):
            for stanza in re.split(r"\n\s*\n", path.read_text()):
                fields = dict(re.findall(r"^([A-Za-z-]+):\s*(.*)$", stanza, re.M))
                if "deb" not in fields.get("Types", "").split() or "URIs" not in fields:
                    continue
                for uri in fields["URIs"].split():
                    out.append((uri, fields.get("Suites", "").split()))
    return out


def mirror(sources: Path = SOURCES, sources_dir: Path = SOURCES_DIR) -> Mirror:
    """The Debian mirror apt is configured with (the entry of a plain release suite), and its
    security archive (the entry of a ``*-security`` suite) when there is one."""
    archive = security = None
    for uri, suites in _entries(sources, sources_dir):
        if any(s.endswith("-security") for s in suites):
            security = security or uri.rstrip("/")
        elif any(re.fullmatch(r"[a-z]+", s) for s in suites):
            archive = archive or uri.rstrip("/")
    if archive is None:
        raise DxError(
            f"no Debian archive in apt's sources ({SOURCES}, {SOURCES_DIR}); the runtime is "
            "built from Debian's packages: configure apt with a Debian mirror"
        )
    return Mirror(archive, security)


def debian_compare(a: str, b: str) -> int:
    """Debian's version order (``dpkg --compare-versions``): -1, 0 or 1."""
    if a == b:
        return 0
    lt = execute(["dpkg", "--compare-versions", a, "lt", b], check=False).ok
    return -1 if lt else 1


def conda_version(debian_version: str) -> str:
    """Debian ``1:6.2+20201114-2+deb11u2`` -> conda ``6.2.20201114``: the upstream part (epoch
    and Debian revision dropped), ``~`` removed and ``+`` as a dot."""
    upstream = debian_version.split(":", 1)[-1].rsplit("-", 1)[0]
    return upstream.replace("~", "").replace("+", ".")


class Apt:
    """A private apt configuration for one Debian release (binary and source indexes of the
    release, its updates and its security archive), kept under ``directory``."""

    def __init__(self, release: str, directory: Path, repo: Mirror | None = None) -> None:
        self.release = release
        self.mirror = repo or mirror()
        self.dir = directory
        self.conf = directory / "apt.conf"

    def lines(self) -> list[str]:
        signed = f"[signed-by={KEYRING}]"
        archive = self.mirror.archive
        suites = [(archive, self.release), (archive, f"{self.release}-updates")]
        if self.mirror.security:
            suites.append((self.mirror.security, f"{self.release}-security"))
        return [
            f"{kind} {signed} {uri} {suite} main"
            for uri, suite in suites
            for kind in ("deb", "deb-src")
        ]

    def env(self) -> dict[str, str]:
        return {**os.environ, "APT_CONFIG": str(self.conf), "DEBIAN_FRONTEND": "noninteractive"}

    def update(self, force: bool = False) -> None:
        """Write the configuration and refresh the package lists when they are old."""
        if not KEYRING.is_file():
            raise DxError(f"{KEYRING} is missing: apt-get install debian-archive-keyring")
        for sub in ("lists/partial", "cache/archives/partial"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        sources = "\n".join(self.lines()) + "\n"
        atomic_write_text(self.dir / "sources.list", sources)
        atomic_write_text(
            self.conf,
            "".join(
                f'{k} "{v}";\n'
                for k, v in (
                    ("Dir::Etc::SourceList", self.dir / "sources.list"),
                    ("Dir::Etc::SourceParts", "/dev/null"),
                    ("Dir::Etc::Preferences", "/dev/null"),
                    ("Dir::Etc::PreferencesParts", "/dev/null"),
                    ("Dir::State::Lists", self.dir / "lists"),
                    ("Dir::State::status", "/dev/null"),
                    ("Dir::Cache", self.dir / "cache"),
                    ("APT::Sandbox::User", "root"),
                )
            ),
        )
        stamp = self.dir / "updated"
        fresh = stamp.is_file() and time.time() - stamp.stat().st_mtime < LISTS_MAX_AGE
        if fresh and not force and stamp.read_text() == sources:
            return
        run(
            ["apt-get", "update", "-q"],
            env=self.env(),
            what=f"apt-get update ({self.release})",
            fix="check the network and apt's sources",
            timeout=900,
        )
        atomic_write_text(stamp, sources)

    def source_uris(self, package: str, version: str) -> list[tuple[str, str, str]]:
        """``(url, file name, sha256)`` of each file of a source package."""
        text = run(
            ["apt-get", "source", "--print-uris", "-qq", f"{package}={version}"],
            env=self.env(),
            what=f"apt-get source --print-uris {package}={version}",
        )
        return [
            (u, f, h)
            for u, f, h in re.findall(r"^'([^']+)' (\S+) \d+ SHA256:([0-9a-f]{64})", text, re.M)
        ]

    def source_version(self, package: str) -> str:
        """The newest version of a source package whose files the mirror serves (a mirror may
        list a security update whose files it does not carry). The answer is kept until the
        package lists are refreshed: asking the mirror again gives the same one."""
        lists = self.dir / "updated"
        known = self.dir / "source-versions.json"
        try:
            state = f"{lists.stat().st_mtime_ns}:{lists.read_text()}"
            answers = json.loads(known.read_text()) if known.is_file() else {}
        except (OSError, ValueError):
            state, answers = "", {}
        if state and answers.get(package, {}).get("lists") == state:
            return str(answers[package]["version"])
        version = self._served_version(package)
        if state:
            answers[package] = {"lists": state, "version": version}
            atomic_write_text(known, json.dumps(answers, indent=1, sort_keys=True) + "\n")
        return version

    def _served_version(self, package: str) -> str:
        import requests

        text = run(
            ["apt-cache", "showsrc", "--only-source", package],
            env=self.env(),
            what=f"apt-cache showsrc {package} ({self.release})",
        )
        versions = sorted(
            set(re.findall(r"^Version: (\S+)$", text, re.M)),
            key=functools.cmp_to_key(debian_compare),
            reverse=True,
        )
        for version in versions:
            uris = self.source_uris(package, version)
            try:
                if uris and all(
                    requests.head(u, timeout=30, allow_redirects=True).ok for u, _f, _h in uris
                ):
                    return version
            except requests.RequestException as e:
                raise DxError(f"{package}: cannot reach the Debian mirror ({e})") from None
        raise DxError(
            f"{package}: no source package of Debian {self.release} is served whole by the "
            f"mirror (versions listed: {', '.join(versions) or 'none'})"
        )

    def source(self, package: str, version: str, dest: Path) -> list[Path]:
        """Download the source package files (``.dsc``, tarballs) into ``dest``, each verified by
        apt against the signed indexes; returns them."""
        dest.mkdir(parents=True, exist_ok=True)
        run(
            ["apt-get", "source", "--download-only", "-q", f"{package}={version}"],
            env=self.env(),
            cwd=dest,
            what=f"apt-get source {package}={version} ({self.release})",
            fix="the mirror may lack this source package",
            timeout=1800,
        )
        return sorted(p for p in dest.iterdir() if p.is_file())

    def binary(self, package: str, dest: Path) -> tuple[Path, str]:
        """The newest .deb of a binary package of the release, downloaded under ``dest`` (apt
        checks it against the signed indexes; kept by package and version), and its version."""
        text = run(
            ["apt-cache", "show", "--no-all-versions", package],
            env=self.env(),
            what=f"apt-cache show {package} ({self.release})",
        )
        version = re.search(r"^Version: (\S+)$", text, re.M)
        if version is None:
            raise DxError(f"{package}: Debian {self.release} has no such binary package")
        dest = dest / package / version[1].replace(":", "_")
        dest.mkdir(parents=True, exist_ok=True)
        found = sorted(dest.glob(f"{package}_*.deb"))
        if not found:
            run(
                ["apt-get", "download", "-q", f"{package}={version[1]}"],
                env=self.env(),
                cwd=dest,
                what=f"apt-get download {package} ({self.release})",
                timeout=900,
            )
            found = sorted(dest.glob(f"{package}_*.deb"))
        if len(found) != 1:
            raise DxError(f"{dest}: expected one {package} .deb, found {len(found)}")
        return found[0], version[1]
