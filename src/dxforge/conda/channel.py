"""The one adapter to rattler: channel URLs, virtual packages, solving, installing and indexing.

Every stage (seed, build, installer, release, the tests and benchmarks) goes through here, so
that a channel path means the same thing everywhere and ``CONDA_OVERRIDE_*`` is honoured once.
py-rattler's calls are asynchronous; each is run to completion with :func:`asyncio.run`.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from dxforge.core.store import link_or_copy
from dxforge.core.util import DxError, publish, sha256_file

PLATFORM = "linux-64"
SUBDIRS = ("noarch", PLATFORM)


def channel_url(channel: str | Path, base: Path | None = None) -> str:
    """A channel as rattler takes it. A URL or a name (``conda-forge``) stays as given; a path
    (starting with ``/``, ``./``, ``../`` or ``~``, or existing under ``base``, default the
    working directory) becomes an absolute ``file://`` URL. Symlinks are kept: the seed is one."""
    text = str(channel)
    if "://" in text:
        return text
    here = Path(base) if base is not None else Path.cwd()
    path = Path(text).expanduser()
    if text.startswith(("/", "./", "../", "~")) or text in (".", "..") or (here / path).exists():
        return Path(os.path.abspath(here / path)).as_uri()
    return text


def local_path(url: str) -> Path | None:
    """The directory of a ``file://`` channel URL, else None."""
    return Path(url[len("file://") :]) if url.startswith("file://") else None


def virtual_packages(glibc: str | None = None) -> list[Any]:
    """The machine's virtual packages as the solver sees them: ``CONDA_OVERRIDE_GLIBC`` and
    friends honoured, a generic ``x86_64`` archspec (so that a solve does not depend on the
    build machine's CPU), and ``__glibc`` at ``glibc`` when given (an installer's floor)."""
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version, VirtualPackage
    from rattler.virtual_package import VirtualPackageOverrides

    out = []
    for vp in VirtualPackage.detect(VirtualPackageOverrides.from_env()):
        g = vp.into_generic()
        name = g.name.normalized
        if name == "__archspec":
            g = GenericVirtualPackage(PackageName(name), Version("1"), BuildString("x86_64"))
        elif name == "__glibc" and glibc:
            g = GenericVirtualPackage(PackageName(name), Version(glibc), BuildString("0"))
        out.append(g)
    return out


@dataclass(frozen=True)
class Package:
    """One solved package, as the outputs (lockfile, notes, SBOM) describe it."""

    name: str
    version: str
    build: str
    subdir: str
    channel: str
    url: str
    file_name: str
    size: int
    sha256: str
    md5: str
    license: str
    timestamp: int  # seconds since the epoch, 0 if unknown

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def _hex(b: bytes | None) -> str:
    return b.hex() if b else ""


def package_of(record: Any) -> Package:
    ts = record.timestamp
    return Package(
        name=record.name.normalized,
        version=str(record.version),
        build=str(record.build),
        subdir=str(record.subdir),
        channel=str(record.channel or ""),
        url=str(record.url),
        file_name=record.file_name,
        size=int(record.size or 0),
        sha256=_hex(record.sha256),
        md5=_hex(record.md5),
        license=str(record.license or ""),
        timestamp=int(ts.timestamp()) if ts else 0,
    )


async def _missing(channels: list[str], specs: Sequence[str]) -> list[str]:
    import rattler

    gateway = rattler.Gateway()
    missing = []
    for s in specs:
        found = await gateway.query(channels, list(SUBDIRS), [s], recursive=False)
        if not any(len(r) for r in found):
            missing.append(s)
    return missing


def solve(
    channels: Sequence[str | Path],
    specs: Sequence[str],
    *,
    where: str = "",
    glibc: str | None = None,
) -> list[Any]:
    """Solve ``specs`` for linux-64 from ``channels`` (names, URLs or paths), for a glibc of
    ``glibc`` when given (else this machine's). Errors say which specs no package matches, or
    the solver's explanation; ``where`` (``file:line``) leads."""
    import rattler

    urls = [channel_url(c) for c in channels]
    lead = f"{where}: " if where else ""
    chans = ", ".join(urls)
    try:
        return asyncio.run(
            rattler.solve(
                urls,
                list(specs),
                platforms=list(SUBDIRS),
                virtual_packages=virtual_packages(glibc),
            )
        )
    except Exception as e:  # rattler's SolverError, FetchRepoDataError, ...
        reason = str(e).strip()
    try:
        missing = asyncio.run(_missing(urls, specs))
    except Exception as read_error:
        raise DxError(
            f"{lead}cannot read the channels {chans}: {read_error}\nFix the path or URL "
            "(--channel), or build the channel first (`dxforge seed`, `dxforge build`)"
        ) from None
    if missing:
        names = ", ".join(f"`{m}`" for m in missing)
        raise DxError(
            f"{lead}no package in the channels ({chans}) matches {names}; "
            "build or seed the channel first, or pass --channel"
        )
    raise DxError(f"{lead}the specs cannot be satisfied from {chans}:\n{reason}")


def install(
    records: list[Any],
    prefix: Path,
    *,
    cache_dir: Path | None = None,
    requested: Sequence[str] = (),
    recorded_prefix: str | None = None,
) -> None:
    """Install ``records`` into ``prefix`` (emptied first) without link scripts; ``requested``
    are recorded as the requested specs in conda-meta, as conda does. With ``recorded_prefix``,
    the files hold that prefix instead of ``prefix`` (an image's environment, staged here)."""
    import rattler

    if prefix.exists():
        shutil.rmtree(prefix)
    prefix.mkdir(parents=True)
    kwargs: dict[str, Any] = {"show_progress": False, "execute_link_scripts": False}
    if cache_dir is not None:
        kwargs["cache_dir"] = cache_dir
    if recorded_prefix is not None:
        kwargs["alternative_target_prefix"] = recorded_prefix
    if requested:
        # py-rattler 0.28 forwards this list unwrapped: pass the inner specs
        kwargs["requested_specs"] = [rattler.MatchSpec(s)._match_spec for s in requested]
    try:
        asyncio.run(rattler.install(records, prefix, **kwargs))
    except Exception as e:
        raise DxError(f"installing {len(records)} packages into {prefix} failed: {e}") from None


def fetch_package(package: Package, dest: Path) -> Path:
    """``package``'s file in the directory ``dest``, copied from a local channel or downloaded,
    its sha256 checked."""
    dest.mkdir(parents=True, exist_ok=True)
    out = dest / package.file_name
    local = local_path(package.url)
    if local is not None:
        shutil.copyfile(local, out)
    else:
        import requests

        try:
            with requests.get(package.url, stream=True, timeout=60) as r:
                r.raise_for_status()
                with open(out, "wb") as f:
                    for block in r.iter_content(1 << 20):
                        f.write(block)
        except requests.RequestException as e:
            raise DxError(f"{package.url}: cannot download it ({e})") from None
    got = sha256_file(out)
    if package.sha256 and got != package.sha256:
        out.unlink()
        raise DxError(
            f"{package.url}: sha256 {got}, but the channel says {package.sha256}; "
            "re-index the channel or download again"
        )
    return out


def create(
    channels: Sequence[str | Path],
    specs: Sequence[str],
    prefix: Path,
    *,
    cache_dir: Path | None = None,
    where: str = "",
) -> list[Package]:
    """Solve ``specs`` and install them into a fresh ``prefix``; the packages, by name."""
    records = solve(channels, specs, where=where)
    install(records, prefix, cache_dir=cache_dir, requested=specs)
    return sorted((package_of(r) for r in records), key=lambda p: p.name)


def index(channel: Path) -> None:
    """(Re)write the repodata of a local channel directory."""
    import rattler.index

    for sub in SUBDIRS:
        (channel / sub).mkdir(parents=True, exist_ok=True)
    asyncio.run(rattler.index.index_fs(channel, force=True, write_shards=False, write_zst=False))


def index_atomic(channel: Path, exclude: Iterable[Path] = ()) -> None:
    """Index ``channel`` without ever leaving a half-written repodata: index a hard-linked copy
    next to it (without the ``exclude`` files), then rename each generated file into place."""
    skip = set(exclude)
    channel.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{channel.name}.index-", dir=channel.parent))
    try:
        for sub in SUBDIRS:
            (tmp / sub).mkdir()
            (channel / sub).mkdir(exist_ok=True)
            for pkg in (channel / sub).glob("*.conda"):
                if pkg in skip:
                    continue
                link_or_copy(pkg, tmp / sub / pkg.name)
        index(tmp)
        for sub in SUBDIRS:
            for generated in (tmp / sub).iterdir():
                if generated.suffix != ".conda":
                    os.replace(generated, channel / sub / generated.name)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def repodata_records(channel: Path) -> dict[str, dict[str, Any]]:
    """Every package the channel's repodata lists, as ``{subdir/file: record}``."""
    out: dict[str, dict[str, Any]] = {}
    for sub in SUBDIRS:
        path = channel / sub / "repodata.json"
        if not path.is_file():
            continue
        try:
            data = json.loads(path.read_text())
        except ValueError as e:
            raise DxError(f"{path}: not valid JSON ({e}); run `dxforge build --force`") from None
        for key in ("packages", "packages.conda"):
            for fname, rec in (data.get(key) or {}).items():
                out[f"{sub}/{fname}"] = rec
    return out


def verify_file(channel: Path, rel: str, record: dict[str, Any] | None) -> str:
    """Why ``channel/rel`` does not match its repodata ``record`` (size, sha256); ``""`` when it
    does."""
    path = channel / rel
    if record is None:
        return f"{rel} is not in the channel's repodata"
    if not path.is_file():
        return f"{rel} is missing"
    if path.stat().st_size != record.get("size"):
        return f"{rel} has {path.stat().st_size} bytes, the repodata says {record.get('size')}"
    got = sha256_file(path)
    if got != record.get("sha256"):
        return f"{rel} has sha256 {got}, the repodata says {record.get('sha256')}"
    return ""


def check_channel(
    channel: Path, rels: Iterable[str] | None = None, *, label: str | Path = "", fix: str = ""
) -> dict[str, dict[str, Any]]:
    """The channel's repodata records, once every package of ``rels`` (default: all the
    repodata lists) matches its record; else a DxError naming ``label`` (default: the channel),
    the problem and ``fix``."""
    records = repodata_records(channel)
    for rel in sorted(records) if rels is None else rels:
        problem = verify_file(channel, rel, records.get(rel))
        if problem:
            raise DxError(f"{label or channel}: {problem}{'; ' + fix if fix else ''}")
    return records


def publish_channel(
    out: Path, fill: Callable[[Path], Iterable[str]], *, index_it: bool = True, fix: str = ""
) -> dict[str, dict[str, Any]]:
    """The one way a channel is made: ``fill(new)`` stages its files in a new directory beside
    ``out`` and names the packages to check; the directory is indexed (unless ``index_it`` is
    false: it holds its repodata already), those packages checked against the index, and it is
    published at ``out`` by one atomic swap. Returns the repodata records."""
    out.parent.mkdir(parents=True, exist_ok=True)
    new = Path(tempfile.mkdtemp(prefix=f".{out.name}.new-", dir=out.parent))
    try:
        rels = list(fill(new))
        if index_it:
            index(new)
        records = check_channel(new, rels, label=out, fix=fix)
        os.chmod(new, 0o755)
        publish(new, out)
    finally:
        shutil.rmtree(new, ignore_errors=True)
    return records


def lock_path(channel: Path) -> Path:
    return channel.parent / f".{channel.name}.lock"


def size_bytes(channel: Path) -> int:
    return sum(p.stat().st_size for p in channel.rglob("*") if p.is_file())


@dataclass
class IndexResult:
    channel: Path
    packages: int
    status: str = "indexed"

    def as_json(self) -> dict[str, Any]:
        return {"status": self.status, "channel": str(self.channel), "packages": self.packages}


def reindex_verified(channel: Path) -> IndexResult:
    """(Re)write a local channel's repodata, then check every package against it."""
    if not channel.is_dir():
        raise DxError(f"{channel}: no such directory")
    index_atomic(channel)
    records = check_channel(channel)
    return IndexResult(channel, len(records))
