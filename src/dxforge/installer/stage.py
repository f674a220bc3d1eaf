"""Solve construct.yaml's specs, install them into a long staging prefix, make the prefix
shippable (conda-meta, .pyc, mtimes), smoke-test it and find every file holding the prefix."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from dxforge.installer.spec import ConstructSpec
from dxforge.util import DxError, atomic_write_text

PLATFORMS = ("linux-64", "noarch")
STAGE_PREFIX_LEN = 240  # >= 200; below conda-forge's 255-byte binary placeholder
STAGE_PAD = "_placehold"
DXFORGE_DIR = ".dxforge"  # installer files inside the prefix
DEFAULT_EPOCH = 1577836800  # 2020-01-01, when no package has a timestamp


@dataclass(frozen=True)
class Package:
    """One solved package."""

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
    timestamp: int  # seconds since the epoch, 0 if unknown


@dataclass(frozen=True)
class ManifestEntry:
    """A file of the staged prefix that holds the staging prefix."""

    path: str
    mode: str  # text | binary | symlink
    owner: str  # conda-meta json file name, "" when no package owns it


@dataclass
class Stage:
    """The result of staging: a prefix ready to pack."""

    prefix: Path
    packages: list[Package]
    python_rel: str
    manifest: list[ManifestEntry]
    epoch: int
    installed_bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    smoke: list[str] = field(default_factory=list)

    @property
    def has_binary(self) -> bool:
        return any(e.mode == "binary" for e in self.manifest)


def channel_list(spec: ConstructSpec, cli_channels: list[str] | None, root: Path) -> list[str]:
    """construct.yaml's channels, or with ``--channel``: the project's own build channel (when
    construct.yaml lists it) followed by the given channels. Paths become file:// URLs."""
    from dxforge.installer.spec import resolve_channel

    if not cli_channels:
        return spec.channel_sources()
    own = Path(os.path.abspath(root / "build/channels/dxforge")).as_uri()
    given = [resolve_channel(c, Path.cwd()) for c in cli_channels]
    keep = [own] if own in spec.channel_sources() and own not in given else []
    return keep + given


def staging_prefix(base: Path, name: str, length: int = STAGE_PREFIX_LEN) -> Path:
    """``base/.stage/<name>_placehold_...`` padded to exactly ``length`` bytes."""
    head = str(base.resolve() / ".stage" / name)
    room = length - len(head)
    if room < 20:
        raise DxError(
            f"the output directory {base} is too long for a {length}-byte staging "
            "prefix; choose a shorter --out"
        )
    parts: list[str] = []
    while room > 0:
        n = min(room, 120)
        chunk = (STAGE_PAD * 13)[:n]
        if parts:
            chunk = "/" + chunk[1:]
        parts.append(chunk)
        room -= n
    prefix = head + "".join(parts)
    assert len(prefix) == length, (len(prefix), prefix)
    return Path(prefix)


def _virtual_packages() -> list:
    """The build machine's virtual packages, with a generic x86_64 archspec (honours
    CONDA_OVERRIDE_GLIBC and friends)."""
    from rattler import BuildString, GenericVirtualPackage, PackageName, Version, VirtualPackage
    from rattler.virtual_package import VirtualPackageOverrides

    out = []
    for vp in VirtualPackage.detect(VirtualPackageOverrides.from_env()):
        g = vp.into_generic()
        if g.name.normalized == "__archspec":
            g = GenericVirtualPackage(
                PackageName("__archspec"), Version("1"), BuildString("x86_64")
            )
        out.append(g)
    return out


def _hex(b: bytes | None) -> str:
    return b.hex() if b else ""


def _package(r) -> Package:
    ts = r.timestamp
    return Package(
        name=r.name.normalized,
        version=str(r.version),
        build=str(r.build),
        subdir=str(r.subdir),
        channel=str(r.channel or ""),
        url=str(r.url),
        file_name=r.file_name,
        size=int(r.size or 0),
        sha256=_hex(r.sha256),
        md5=_hex(r.md5),
        timestamp=int(ts.timestamp()) if ts else 0,
    )


async def _solve_async(channels: list[str], specs: list[str]):
    import rattler

    return await rattler.solve(
        channels, specs, platforms=list(PLATFORMS), virtual_packages=_virtual_packages()
    )


async def _missing_specs(channels: list[str], specs: list[str]) -> list[str]:
    """Specs that no package in ``channels`` matches at all."""
    import rattler

    gateway = rattler.Gateway()
    missing = []
    for s in specs:
        found = await gateway.query(channels, list(PLATFORMS), [s], recursive=False)
        if not any(len(r) for r in found):
            missing.append(s)
    return missing


def solve(spec: ConstructSpec, channels: list[str]) -> list:
    """Solve ``spec.specs`` for linux-64; errors name the unsatisfiable specs."""
    try:
        records = asyncio.run(_solve_async(channels, spec.specs))
    except Exception as e:  # rattler's SolverError, FetchRepoDataError, ...
        msg = str(e).strip()
        chans = ", ".join(channels)
        try:
            missing = asyncio.run(_missing_specs(channels, spec.specs))
        except Exception as read_error:
            raise DxError(
                f"cannot read the channels {chans}: {read_error}\nFix the path or "
                "URL (--channel), or build the channel first (`dxforge seed`, "
                "`dxforge build`)"
            ) from None
        where = f"{spec.path}:{spec.lines.get('specs', 0)}"
        if missing:
            names = ", ".join(f"`{m}`" for m in missing)
            raise DxError(
                f"{where}: no package in the channels ({chans}) matches {names}; "
                "build or seed the channel first, or pass --channel"
            ) from None
        raise DxError(f"{where}: the specs cannot be satisfied from {chans}:\n{msg}") from None
    excluded = set(spec.exclude)
    unknown = excluded - {r.name.normalized for r in records}
    if unknown:
        raise DxError(
            f"{spec.where('exclude')}: exclude names {', '.join(sorted(unknown))}, "
            "which the solution does not contain; remove them from exclude"
        )
    return [r for r in records if r.name.normalized not in excluded]


async def _install_async(records: list, prefix: Path, cache: Path, specs: list[str]) -> None:
    import rattler

    await rattler.install(
        records,
        prefix,
        cache_dir=cache,
        show_progress=False,
        execute_link_scripts=False,
        # py-rattler 0.28 forwards this list unwrapped: pass the inner specs
        requested_specs=[rattler.MatchSpec(s)._match_spec for s in specs],
    )


def install(records: list, prefix: Path, cache: Path, specs: list[str]) -> None:
    """Install ``records`` into an empty ``prefix`` with rattler; ``specs`` are recorded as
    the requested ones in conda-meta."""
    if prefix.exists():
        shutil.rmtree(prefix)
    prefix.mkdir(parents=True)
    try:
        asyncio.run(_install_async(records, prefix, cache, specs))
    except Exception as e:
        raise DxError(f"installing the solved packages into {prefix} failed: {e}") from None


def _python_rel(prefix: Path, packages: list[Package], spec: ConstructSpec) -> str:
    py = next((p for p in packages if p.name == "python"), None)
    if py is None:
        raise DxError(
            f"{spec.where('specs')}: the specs must include python (the installer "
            "relocates itself with the bundled python); add `python 3.11.*`"
        )
    mm = ".".join(py.version.split(".")[:2])
    for rel in (f"bin/python{mm}", "bin/python3"):
        if (prefix / rel).is_file() and os.access(prefix / rel, os.X_OK):
            return rel
    raise DxError(f"the python package {py.file_name} installed no bin/python{mm}")


def _fix_conda_meta(prefix: Path) -> None:
    """Readable records without the build machine's package-cache paths."""
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        for key in ("extracted_package_dir", "package_tarball_full_path", "link"):
            record.pop(key, None)
        atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n", mode=0o644)
    history = prefix / "conda-meta/history"
    if history.exists():
        history.chmod(0o644)


def _record_pyc(prefix: Path, tag: str) -> None:
    """List the .pyc files we compiled (``tag``: cpython-311) in their packages' conda-meta
    records, as conda does for noarch python, so conda/mamba/pixi remove them with the
    package."""
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        files = record.get("files", [])
        known = set(files)
        entries = record.setdefault("paths_data", {"paths_version": 1, "paths": []})["paths"]
        added = []
        for rel in files:
            if not rel.endswith(".py"):
                continue
            head, _, tail = rel.rpartition("/")
            pyc = f"{head}/__pycache__/{tail[:-3]}.{tag}.pyc" if head else ""
            if pyc and pyc not in known and (prefix / pyc).is_file():
                added.append(pyc)
                known.add(pyc)
        if added:
            files.extend(added)
            entries.extend({"_path": p, "path_type": "pyc_file"} for p in added)
            atomic_write_text(path, json.dumps(record, indent=2, sort_keys=True) + "\n", mode=0o644)


def _normalize_mtimes(prefix: Path, epoch: int) -> None:
    """Every file gets the same mtime, the one the payload's tar records, so the .pyc compiled
    next stay valid after extraction."""
    for dirpath, dirnames, filenames in os.walk(prefix):
        for name in filenames + dirnames:
            p = os.path.join(dirpath, name)
            os.utime(p, (epoch, epoch), follow_symlinks=False)
    os.utime(prefix, (epoch, epoch))


_COMPILE = """
import compileall, py_compile, sys
ok = compileall.compile_dir(sys.argv[1], quiet=1, workers=int(sys.argv[2]),
    invalidation_mode=py_compile.PycInvalidationMode.TIMESTAMP)
"""


def _clean_env(prefix: Path, home: Path) -> dict[str, str]:
    return {
        "PATH": f"{prefix}/bin:/usr/bin:/bin",
        "HOME": str(home),
        "TMPDIR": str(home),
        "LANG": "C.UTF-8",
        "LC_ALL": "C.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
    }


def byte_compile(prefix: Path, python_rel: str, workers: int = 2) -> list[str]:
    """Compile every .py under lib/ with the staged python, isolated; returns the files that
    did not compile (warnings: some packages ship templates named .py)."""
    libdirs = sorted(p for p in (prefix / "lib").glob("python3*") if p.is_dir())
    failures: list[str] = []
    home = prefix.parent / (prefix.name[:20] + ".home")
    home.mkdir(exist_ok=True)
    try:
        for d in libdirs:
            env = _clean_env(prefix, home)
            env.pop("PYTHONDONTWRITEBYTECODE")
            res = subprocess.run(
                [str(prefix / python_rel), "-I", "-c", _COMPILE, str(d), str(workers)],
                capture_output=True,
                text=True,
                env=env,
                timeout=1800,
            )
            failures += [
                line.split("Error compiling", 1)[1].strip(" '.")
                for line in res.stdout.splitlines()
                if "Error compiling" in line
            ]
            if res.returncode not in (0, 1) or (res.returncode == 1 and not failures):
                raise DxError(
                    f"byte-compiling {d} with {prefix / python_rel} failed:\n"
                    f"{res.stdout[-2000:]}{res.stderr[-2000:]}"
                )
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return failures


def smoke_test(prefix: Path, python_rel: str, packages: list[Package]) -> list[str]:
    """Run what must work in the staged prefix; returns the commands run."""
    names = {p.name for p in packages}
    checks: list[tuple[str, list[str]]] = [
        (
            "python",
            [str(prefix / python_rel), "-I", "-c", "import sys, ssl, json; print(sys.prefix)"],
        ),
    ]
    if "voms" in names:
        checks.append(
            ("voms-proxy-init --version", [str(prefix / "bin/voms-proxy-init"), "--version"])
        )
    if "diracx-cli" in names:
        checks.append(("dirac --help", [str(prefix / "bin/dirac"), "--help"]))
    mods = sorted(
        "diracx." + n[len("diracx-") :].replace("-", "_")
        for n in names
        if n.startswith("diracx-") and n != "diracx-testing"
    )
    if mods:
        checks.append(
            (
                f"import {', '.join(mods)}",
                [str(prefix / python_rel), "-c", f"import {', '.join(mods)}"],
            )
        )
    home = prefix.parent / (prefix.name[:20] + ".home")
    home.mkdir(exist_ok=True)
    done = []
    try:
        for what, cmd in checks:
            try:
                res = subprocess.run(
                    cmd,
                    capture_output=True,
                    text=True,
                    timeout=300,
                    env=_clean_env(prefix, home),
                    cwd=home,
                )
            except (OSError, subprocess.TimeoutExpired) as e:
                raise DxError(f"smoke test `{what}` in the staged prefix failed: {e}") from None
            if res.returncode != 0:
                raise DxError(
                    f"smoke test `{what}` in the staged prefix {prefix} failed "
                    f"(exit {res.returncode}):\n{res.stdout[-1500:]}"
                    f"{res.stderr[-1500:]}"
                )
            if what == "python" and res.stdout.strip() != str(prefix):
                raise DxError(
                    f"the staged python reports sys.prefix {res.stdout.strip()}, not {prefix}"
                )
            done.append(what)
    finally:
        shutil.rmtree(home, ignore_errors=True)
    return done


def _owners(prefix: Path) -> dict[str, str]:
    owners: dict[str, str] = {}
    for path in (prefix / "conda-meta").glob("*.json"):
        for rel in json.loads(path.read_text(encoding="utf-8")).get("files", []):
            owners[rel] = path.name
    return owners


def scan_manifest(prefix: Path) -> tuple[list[ManifestEntry], int]:
    """Every file (outside .pyc, conda-meta/ and .dxforge/) holding the staging prefix, and
    the prefix's total size in bytes."""
    needle = str(prefix).encode()
    owners = _owners(prefix)
    entries: list[ManifestEntry] = []
    total = 0
    for dirpath, dirnames, filenames in os.walk(prefix):
        dirnames.sort()
        rel_dir = os.path.relpath(dirpath, prefix)
        if rel_dir == ".":
            dirnames[:] = [d for d in dirnames if d not in ("conda-meta", DXFORGE_DIR)]
        for name in sorted(filenames):
            p = os.path.join(dirpath, name)
            rel = os.path.normpath(os.path.join(rel_dir, name))
            if os.path.islink(p):
                if needle in os.readlink(p).encode():
                    entries.append(ManifestEntry(rel, "symlink", owners.get(rel, "")))
                continue
            total += os.path.getsize(p)
            if name.endswith(".pyc"):
                continue
            with open(p, "rb") as f:
                data = f.read()
            if needle in data:
                mode = "binary" if b"\0" in data else "text"
                entries.append(ManifestEntry(rel, mode, owners.get(rel, "")))
    for d in ("conda-meta", DXFORGE_DIR):
        for p in (prefix / d).rglob("*"):
            if p.is_file() and not p.is_symlink():
                total += p.stat().st_size
    return entries, total


def _condarc(spec: ConstructSpec, channels: list[str]) -> str | None:
    if not spec.write_condarc:
        return None
    remote = [c for c in channels if not c.startswith("file://")]
    chans = remote or spec.conda_default_channels
    lines = []
    if spec.conda_default_channels:
        lines += ["default_channels:"] + [f"  - {c}" for c in spec.conda_default_channels]
    if chans:
        lines += ["channels:"] + [f"  - {c}" for c in chans]
    return "\n".join(lines) + "\n" if lines else None


def stage(
    spec: ConstructSpec, channels: list[str], out: Path, installer_dir: Path, console=None
) -> Stage:
    """Solve, install, prepare and check the staging prefix under ``out``."""

    def step(msg: str) -> None:
        if console is not None:
            console.print(f"[bold]installer:[/] {msg}")

    t0 = time.monotonic()
    step(f"solving {len(spec.specs)} specs for linux-64 from {', '.join(channels)}")
    records = solve(spec, channels)
    packages = sorted((_package(r) for r in records), key=lambda p: p.name)
    prefix = staging_prefix(out, spec.name)
    step(f"installing {len(packages)} packages into the staging prefix")
    install(records, prefix, out / ".cache" / "pkgs", spec.specs)
    python_rel = _python_rel(prefix, packages, spec)

    (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)
    _fix_conda_meta(prefix)
    meta = prefix / DXFORGE_DIR
    meta.mkdir()
    shutil.copy2(installer_dir / "relocate.py", meta / "relocate.py")
    if spec.post_install:
        shutil.copy2(spec.post_install, meta / "post_install.sh")
        (meta / "post_install.sh").chmod(0o755)
    if spec.license_file:
        shutil.copy2(spec.license_file, meta / "LICENSE.txt")
    condarc = _condarc(spec, channels)
    if condarc:
        atomic_write_text(prefix / ".condarc", condarc, mode=0o644)

    env_epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    epoch = (
        int(env_epoch)
        if env_epoch.isdigit()
        else (max((p.timestamp for p in packages), default=0) or DEFAULT_EPOCH)
    )
    _normalize_mtimes(prefix, epoch)
    step("byte-compiling with the staged python")
    failures = byte_compile(prefix, python_rel)
    py = next(p for p in packages if p.name == "python")
    _record_pyc(prefix, "cpython-" + "".join(py.version.split(".")[:2]))
    step("smoke-testing the staged prefix")
    smoke = smoke_test(prefix, python_rel, packages)
    entries, total = scan_manifest(prefix)
    manifest = {
        "format": 1,
        "name": spec.name,
        "version": spec.version,
        "prefix": str(prefix),
        "python": python_rel,
        "files": [{"path": e.path, "mode": e.mode, "owner": e.owner} for e in entries],
    }
    atomic_write_text(meta / "manifest.json", json.dumps(manifest, indent=1) + "\n", mode=0o644)
    _normalize_mtimes(prefix, epoch)
    warnings = []
    if failures:
        shown = ", ".join(failures[:5]) + (" ..." if len(failures) > 5 else "")
        warnings.append(f"{len(failures)} .py files do not compile (left as source): {shown}")
    step(f"staged in {time.monotonic() - t0:.1f} s: {len(entries)} files hold the prefix")
    return Stage(
        prefix=prefix,
        packages=packages,
        python_rel=python_rel,
        manifest=entries,
        epoch=epoch,
        installed_bytes=total,
        warnings=warnings,
        smoke=smoke,
    )
