"""Staging: solve construct.yaml's specs, install them into a long staging prefix, make the
prefix shippable, smoke-test it, and move what it records to a fixed prefix, so that the
payload does not depend on where it was built."""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dxforge.conda import channel as ch
from dxforge.conda.channel import Package
from dxforge.conda.elf import Floor, glibc_floor, lint, parse_version, walk_elf
from dxforge.conda.subdirs import machine
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, atomic_write_text, run, sha256_file, user_cache
from dxforge.installer.prefix import (
    DXFORGE_DIR,
    PYC_MODES,
    ManifestEntry,
    byte_compile,
    fix_conda_meta,
    imported_sources,
    normalize_mtimes,
    owners,
    public_url,
    record_pyc,
    scan_manifest,
    smoke_test,
)
from dxforge.isolation import emulate
from dxforge.project.construct import ConstructSpec

STAGE_PREFIX_LEN = 240  # >= 200; below conda-forge's 255-byte binary placeholder
STAGE_PAD = "_placehold"
RECORDED_BASE = Path("/opt/dxforge-installer")
"""Where the payload's files say they live until the installer relocates them: the same for
every build, so that the installer's bytes do not depend on the build directory."""
DEFAULT_EPOCH = 1577836800  # 2020-01-01, when no package has a timestamp


@dataclass
class Stage:
    """The result of staging: a prefix ready to pack."""

    prefix: Path  # where the files are
    recorded: str  # the prefix they hold (and the manifest names), RECORDED_BASE/...
    packages: list[Package]
    python_rel: str
    manifest: list[ManifestEntry]
    epoch: int
    owners: dict[str, tuple[str, int]] = field(default_factory=dict)  # path: (package, mtime)
    installed_bytes: int = 0
    warnings: list[str] = field(default_factory=list)
    smoke: list[str] = field(default_factory=list)
    glibc: str = ""  # the floor the installer enforces: declared, else what the files need
    glibc_needed: str = ""  # the highest GLIBC_x.y any ELF file needs
    glibc_file: str = ""  # one file that needs it
    elf_files: int = 0

    @property
    def has_binary(self) -> bool:
        return any(e.mode == "binary" for e in self.manifest)


def padded_prefix(head: str, length: int = STAGE_PREFIX_LEN) -> str:
    """``head`` followed by ``_placehold...`` (a path component at most every 120 bytes) to
    exactly ``length`` bytes."""
    room = length - len(head)
    if room < 20:
        raise DxError(f"{head} is too long for a {length}-byte staging prefix")
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
    return prefix


def staging_prefix(base: Path, name: str, length: int = STAGE_PREFIX_LEN) -> Path:
    """``base/.stage/<name>_placehold...`` padded to exactly ``length`` bytes."""
    head = str(Path(os.path.abspath(base)) / ".stage" / name)
    try:
        return Path(padded_prefix(head, length))
    except DxError:
        raise DxError(
            f"the output directory {base} is too long for a {length}-byte staging "
            "prefix; choose a shorter --out"
        ) from None


def recorded_prefix(name: str) -> str:
    """The prefix a payload's files hold: :data:`RECORDED_BASE`/<name>_placehold..., as long
    as the staging prefix."""
    return padded_prefix(str(RECORDED_BASE / name))


def _python_rel(prefix: Path, packages: list[Package], spec: ConstructSpec) -> str:
    py = next((p for p in packages if p.name == "python"), None)
    if py is None:
        raise DxError(
            f"{spec.where('specs')}: the specs must include python (the installer "
            "relocates itself with the bundled python); add one, like `python 3.13.*`"
        )
    mm = ".".join(py.version.split(".")[:2])
    for rel in (f"bin/python{mm}", "bin/python3"):
        if (prefix / rel).is_file() and os.access(prefix / rel, os.X_OK):
            return rel
    raise DxError(f"the python package {py.file_name} installed no bin/python{mm}")


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


def _relocate(prefix: Path, python_rel: str, new: str, runner: Sequence[str] = ()) -> None:
    """Move what the staged prefix records to ``new`` with the installer's own relocator, run
    by the staged python as the installer runs it (through ``runner``)."""
    run(
        [
            *runner,
            prefix / python_rel,
            "-I",
            "-B",
            prefix / DXFORGE_DIR / "relocate.py",
            "--root",
            prefix,
            "--prefix",
            new,
        ],
        what=f"moving the staged prefix's records to {new}",
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )


def _compile_install_step(prefix: Path, python_rel: str, runner: Sequence[str] = ()) -> None:
    """The install step's byte code, made by the staged python (unchecked-hash, named by its
    place in the prefix): the installer then compiles nothing of its own."""
    code = (
        "import os, py_compile, sys\n"
        "for f in sys.argv[1:]:\n"
        "    py_compile.compile(f, dfile='.dxforge/' + os.path.basename(f), doraise=True,\n"
        "        invalidation_mode=py_compile.PycInvalidationMode.UNCHECKED_HASH)\n"
    )
    run(
        [
            *runner,
            prefix / python_rel,
            "-I",
            "-B",
            "-c",
            code,
            prefix / DXFORGE_DIR / "install.py",
            prefix / DXFORGE_DIR / "relocate.py",
        ],
        what="compiling the install step",
        env={"PATH": "/usr/bin:/bin", "LC_ALL": "C.UTF-8"},
    )


def _epoch(packages: list[Package]) -> tuple[int, bool]:
    """The mtime of what no package owns, and whether it is every file's (SOURCE_DATE_EPOCH
    given)."""
    env = os.environ.get("SOURCE_DATE_EPOCH", "")
    if env.isdigit():
        return int(env), True
    return max((p.timestamp for p in packages), default=0) or DEFAULT_EPOCH, False


def solve(
    spec: ConstructSpec, channels: list[str], progress: Progress = SILENT
) -> tuple[list[Any], list[Package]]:
    """construct.yaml's specs solved for its platform (linux-64), less ``exclude``: the
    records and their packages (by name)."""
    if spec.duplicates:
        progress.warn(
            f"{spec.where('specs')}: {', '.join(spec.duplicates)} listed more than once in "
            "specs; the solver gets every entry and satisfies all of them (as constructor does)"
        )
    for note in spec.notes:
        progress.warn(note)
    progress.step(f"solving {len(spec.specs)} specs for {spec.platform} from {', '.join(channels)}")
    records = ch.solve(
        channels, spec.specs, where=spec.where("specs"), glibc=spec.glibc, platform=spec.platform
    )
    excluded = set(spec.exclude)
    unknown = excluded - {r.name.normalized for r in records}
    if unknown:
        raise DxError(
            f"{spec.where('exclude')}: exclude names {', '.join(sorted(unknown))}, "
            "which the solution does not contain; remove them from exclude"
        )
    records = [r for r in records if r.name.normalized not in excluded]
    return records, sorted((ch.package_of(r) for r in records), key=lambda p: p.name)


def stage(
    spec: ConstructSpec,
    channels: list[str],
    out: Path,
    installer_dir: Path,
    progress: Progress = SILENT,
    pyc: str = PYC_MODES[0],
    solved: tuple[list[Any], list[Package]] | None = None,
) -> Stage:
    """Solve (unless ``solved`` is given), install, prepare and check the staging prefix under
    ``out``; its .pyc made in the ``pyc`` mode (:data:`~dxforge.installer.prefix.PYC_MODES`)."""
    t0 = time.monotonic()
    runner = machine_runner(spec, progress)
    records, packages = solved if solved is not None else solve(spec, channels, progress)
    prefix = staging_prefix(out, spec.name)
    recorded = recorded_prefix(spec.name)
    progress.step(f"installing {len(packages)} packages into the staging prefix")
    ch.install(records, prefix, cache_dir=out / ".cache" / "pkgs", requested=spec.specs)
    python_rel = _python_rel(prefix, packages, spec)

    (prefix / "CACHEDIR.TAG").unlink(missing_ok=True)
    if not spec.ignore_duplicate_files:
        check_duplicates(prefix, spec)
    if spec.keep_pkgs:
        progress.step(f"keeping the {len(packages)} package files in pkgs/ (keep_pkgs)")
        keep_packages(prefix / "pkgs", packages, spec.transmute_file_type, channels)
    fix_conda_meta(prefix, channels)
    meta = prefix / DXFORGE_DIR
    meta.mkdir()
    for name in ("relocate.py", "install.py"):
        shutil.copy2(installer_dir / name, meta / name)
    _compile_install_step(prefix, python_rel, runner)
    if spec.post_install:
        shutil.copy2(spec.post_install, meta / "post_install.sh")
        (meta / "post_install.sh").chmod(0o755)
    if spec.license_file:
        shutil.copy2(spec.license_file, meta / "LICENSE.txt")
    condarc = _condarc(spec, channels)
    if condarc:
        atomic_write_text(prefix / ".condarc", condarc, mode=0o644)

    progress.step("checking every ELF file's libraries and glibc floor")
    floor, elf_files = check_elf(prefix, spec)
    epoch, fixed = _epoch(packages)
    normalize_mtimes(prefix, epoch, owners(prefix, fixed))
    failures: list[str] = []
    progress.step("smoke-testing the staged prefix")
    record = out / ".stage" / "imported"
    shutil.rmtree(record, ignore_errors=True)
    smoke = smoke_test(prefix, python_rel, packages, record if pyc == "imported" else None, runner)
    if pyc != "install":
        files = imported_sources(record, prefix) if pyc == "imported" else None
        shown = f"{len(files)} imported modules'" if files is not None else "every"
        progress.step(f"byte-compiling {shown} .py with the staged python ({pyc} .pyc)")
        failures = byte_compile(prefix, python_rel, recorded, pyc, files, runner=runner)
        py = next(p for p in packages if p.name == "python")
        record_pyc(prefix, "cpython-" + "".join(py.version.split(".")[:2]))
    shutil.rmtree(record, ignore_errors=True)
    entries, total = scan_manifest(prefix, str(prefix))
    _write_manifest(meta, spec, str(prefix), python_rel, entries, pyc)
    _relocate(prefix, python_rel, recorded, runner)
    record_shipped(prefix)
    owned = owners(prefix, fixed)
    normalize_mtimes(prefix, epoch, owned)
    warnings = []
    if failures:
        shown = ", ".join(failures[:5]) + (" ..." if len(failures) > 5 else "")
        warnings.append(f"{len(failures)} .py files do not compile (left as source): {shown}")
    for w in warnings:
        progress.warn(w)
    progress.step(f"staged in {time.monotonic() - t0:.1f} s: {len(entries)} files hold the prefix")
    return Stage(
        prefix=prefix,
        recorded=recorded,
        packages=packages,
        python_rel=python_rel,
        manifest=entries,
        epoch=epoch,
        owners=owned,
        installed_bytes=total,
        warnings=warnings,
        smoke=smoke,
        glibc=spec.glibc or floor.text,
        glibc_needed=floor.text,
        glibc_file=floor.path.relative_to(prefix).as_posix() if floor.path else "",
        elf_files=elf_files,
    )


def machine_runner(spec: ConstructSpec, progress: Progress = SILENT) -> list[str]:
    """What runs the payload's programs while staging (its python: smoke tests, byte-compiling,
    relocating): nothing on the installer's own machine, the namespaced emulation
    (:func:`dxforge.isolation.emulate.host_runner`) on another; refused before anything is
    installed when the emulation cannot be had."""
    arch, host = machine(spec.platform), os.uname().machine
    if arch == host:
        return []
    try:
        return emulate.host_runner(arch, user_cache(), progress)
    except DxError as e:
        raise DxError(
            f"staging the {spec.platform} installer runs its python (smoke tests, "
            f"byte-compiling) on this {host} machine: {e}"
        ) from None


def record_shipped(prefix: Path) -> None:
    """Add to the manifest what the payload ships (outside .dxforge/): each file's sha256,
    each symlink's target; the installer's relocation updates the files it rewrites, and the
    install records the result, so that an update knows what is its own and what was edited."""
    shipped: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(prefix):
        rel_dir = Path(dirpath).relative_to(prefix)
        if rel_dir == Path("."):
            dirnames[:] = [d for d in dirnames if d != DXFORGE_DIR]
        for name in sorted(filenames + [d for d in dirnames if (Path(dirpath) / d).is_symlink()]):
            path = Path(dirpath) / name
            rel = (rel_dir / name).as_posix()
            if path.is_symlink():
                shipped[rel] = "link:" + os.readlink(path)
            elif path.is_file():
                shipped[rel] = sha256_file(path)
    path = prefix / DXFORGE_DIR / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest["shipped"] = shipped
    atomic_write_text(path, json.dumps(manifest, indent=1) + "\n", mode=0o644)


def check_duplicates(prefix: Path, spec: ConstructSpec) -> None:
    """``ignore_duplicate_files: false``: no file may belong to two packages."""
    owners: dict[str, list[str]] = {}
    for path in sorted((prefix / "conda-meta").glob("*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        for rel in record.get("files", []):
            owners.setdefault(rel, []).append(record.get("name", path.stem))
    clashes = {rel: names for rel, names in owners.items() if len(names) > 1}
    if clashes:
        shown = "\n".join(f"  {rel}: {', '.join(names)}" for rel, names in sorted(clashes.items()))
        raise DxError(
            f"{spec.where('ignore_duplicate_files')}: `ignore_duplicate_files: false`, "
            f"and {len(clashes)} files belong to more than one package:\n{shown}\n"
            "drop one of the packages from the specs, or set it to true"
        )


def keep_packages(pkgs: Path, packages: list[Package], transmute: str, channels: list[str]) -> None:
    """``keep_pkgs``: the solved package files in ``pkgs/`` with conda's ``urls.txt``; with
    ``transmute_file_type: .conda``, .tar.bz2 files become .conda."""
    import conda_package_handling.api as cph

    urls = []
    for p in packages:
        got = ch.fetch_package(p, pkgs)
        if transmute == ".conda" and got.name.endswith(".tar.bz2"):
            cph.transmute(str(got), ".conda", out_folder=str(pkgs))
            got.unlink()
            urls.append(public_url(p.url[: -len(".tar.bz2")] + ".conda", channels))
        else:
            urls.append(public_url(p.url, channels))
    atomic_write_text(pkgs / "urls.txt", "\n".join(urls) + "\n", mode=0o644)


def check_elf(prefix: Path, spec: ConstructSpec) -> tuple[Floor, int]:
    """The staging lint (as auditwheel's for wheels): every library any ELF file needs is in
    the prefix, on that file's RUNPATH, or part of the C library; and no file needs a newer
    glibc than construct.yaml's virtual_specs declare; and every file is for the installer's
    machine. Returns the floor and the file count."""
    infos = list(walk_elf(prefix))
    report = lint(prefix, infos, machine(spec.platform))
    if report.problems:
        shown = "\n".join(f"  {p}" for p in report.problems[:40])
        more = f"\n  ... and {len(report.problems) - 40} more" if len(report.problems) > 40 else ""
        raise DxError(
            f"the staged prefix has {len(report.problems)} ELF problems (a library that would "
            f"come from the build host, not from the installer, or a file for another machine "
            f"than {machine(spec.platform)}):\n{shown}{more}\nship each library in a package "
            "the specs bring (the seed computes them from DT_NEEDED), point the file's RUNPATH "
            f"at the prefix's lib/, and take every package from the {spec.platform} subdir"
        )
    floor = glibc_floor(infos)
    if spec.glibc and floor.version > parse_version(spec.glibc):
        assert floor.path is not None
        raise DxError(
            f"{spec.where('virtual_specs')}: virtual_specs declares `__glibc >={spec.glibc}`, "
            f"but {floor.path.relative_to(prefix)} needs GLIBC_{floor.text}; raise the declared "
            "floor, or build that package for an older glibc"
        )
    return floor, report.files


def _write_manifest(
    meta: Path,
    spec: ConstructSpec,
    prefix: str,
    python_rel: str,
    entries: list[ManifestEntry],
    pyc: str,
) -> None:
    manifest = {
        "format": 1,
        "pyc": pyc,
        "name": spec.name,
        "version": spec.version,
        "prefix": prefix,
        "python": python_rel,
        "files": [{"path": e.path, "mode": e.mode, "owner": e.owner} for e in entries],
    }
    atomic_write_text(meta / "manifest.json", json.dumps(manifest, indent=1) + "\n", mode=0o644)
