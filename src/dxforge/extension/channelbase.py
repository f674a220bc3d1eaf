"""A DiracX distribution given only as its channel (a path or URL, no checkout): the records of
its repodata, and from them the DiracX version (the ``diracx`` metapackage's), DiracX's
package family and the installer's shared specs: Python (the newest minor of the seed's that
the metapackage allows), voms and git (from the seed), and the glibc floor their builds need."""

from __future__ import annotations

import json
import re
import urllib.parse
from typing import Any

import requests
from packaging.specifiers import InvalidSpecifier, SpecifierSet
from packaging.version import InvalidVersion, Version

from dxforge.conda.channel import SUBDIRS, channel_url, local_path, repodata_records
from dxforge.core.util import DxError
from dxforge.extension.base import BASE_METAPACKAGE, SHARED_SPECS, Base
from dxforge.project.recipes import is_sibling


def _remote_records(channel: str) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    for sub in SUBDIRS:
        url = urllib.parse.urljoin(channel.rstrip("/") + "/", f"{sub}/repodata.json")
        try:
            r = requests.get(url, timeout=30)
        except requests.RequestException as e:
            raise DxError(f"{url}: the channel did not answer ({e})") from None
        if r.status_code != 200:
            continue
        try:
            data = r.json()
        except json.JSONDecodeError:
            raise DxError(f"{url}: not valid repodata") from None
        for key in ("packages", "packages.conda"):
            found += list((data.get(key) or {}).values())
    return found


def channel_records(channel: str) -> list[dict[str, Any]]:
    """Every record of a channel's repodata (noarch and this platform); a path or URL."""
    path = local_path(channel)
    if path is not None:
        return list(repodata_records(path).values()) if path.is_dir() else []
    return _remote_records(channel)


def _version(rec: dict[str, Any]) -> Version:
    try:
        return Version(str(rec.get("version")))
    except InvalidVersion:
        return Version("0")


def _newest(records: list[dict[str, Any]], name: str) -> dict[str, Any] | None:
    mine = [r for r in records if r.get("name") == name]
    return max(mine, key=_version) if mine else None


def _python(meta: dict[str, Any], seed: list[dict[str, Any]], where: str) -> dict[str, Any]:
    """The newest of the seed's Pythons the metapackage allows (its record)."""
    allowed = SpecifierSet()
    for dep in meta.get("depends") or []:
        name, _, spec = str(dep).partition(" ")
        if name == "python" and spec.strip():
            try:
                allowed = SpecifierSet(spec.replace(" ", ""))
            except InvalidSpecifier:
                pass
    pythons = [r for r in seed if r.get("name") == "python"]
    fit = [r for r in pythons if _version(r) in allowed]
    if not fit:
        raise DxError(
            f"{where}: no python in the seed that {BASE_METAPACKAGE} {meta.get('version')} "
            f"allows ({allowed or 'any'}; the seed has "
            f"{sorted(str(r.get('version')) for r in pythons) or 'none'}); "
            "--base-seed names the seed DiracX's channel was built with"
        )
    return max(fit, key=_version)


def _glibc_floor(records: list[dict[str, Any]]) -> str | None:
    floors = [
        Version(m[1])
        for r in records
        for dep in r.get("depends") or []
        if (m := re.match(r"^__glibc\s*>=\s*([\d.]+)$", str(dep)))
    ]
    return str(max(floors)) if floors else None


def read_channel_base(channel: str, seed: str, version: str | None = None) -> Base:
    """The DiracX distribution of ``channel`` (its seed ``seed``) at ``version`` (default: the
    newest ``diracx`` the channel holds)."""
    channel, seed = channel_url(channel), channel_url(seed)
    records = channel_records(channel)
    metas = {str(r["version"]): r for r in records if r.get("name") == BASE_METAPACKAGE}
    if not metas:
        raise DxError(
            f"{channel}: no {BASE_METAPACKAGE} metapackage in its repodata; --base-channel "
            "names DiracX's channel (dxforge build's output, or a release's channels/dxforge)"
        )
    if version is None or version not in metas:
        version = max(metas, key=Version)
    seed_records = channel_records(seed)
    python = _python(metas[version], seed_records, seed)
    py = _version(python)
    specs = {"python": f"python {py.major}.{py.minor}.*"}
    shared = [r for n in SHARED_SPECS[1:] if (r := _newest(seed_records, n))]
    missing = [n for n in SHARED_SPECS[1:] if not _newest(seed_records, n)]
    if missing:
        raise DxError(
            f"{seed}: the seed holds no {', '.join(missing)}; an extension's installer ships "
            "the same Python, voms and git as DiracX's: --base-seed names the seed DiracX's "
            "channel was built with"
        )
    specs |= {str(r["name"]): str(r["name"]) for r in shared}
    floor = _glibc_floor([*shared, python])
    return Base(
        None,
        version,
        sorted({str(r["name"]) for r in records if is_sibling(str(r.get("name")))}),
        specs,
        [f"__glibc >={floor}"] if floor else [],
        channel,
        seed,
        {},
        sorted(metas, key=Version),
    )
