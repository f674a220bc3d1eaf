"""Resolving Python requirements on the package index and converting wheels into conda packages."""

from __future__ import annotations

import configparser
import email.parser
import hashlib
import json
import os
import re
import shutil
import sys
import tempfile
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name, parse_wheel_filename

from dxforge.conda.elf import in_glibc, origin_path, read_elf, set_runpath, strip, walk_elf
from dxforge.conda.package import PLACEHOLDER, PackageSpec, assemble
from dxforge.core.specs import conda_spec
from dxforge.core.util import DxError, Ran, execute
from dxforge.project.target import Target
from dxforge.pypa.metadata import DistMetadata, parse_metadata
from dxforge.pypa.names import conda_name, conda_run_requirements, extra_depends

CONVERTER_VERSION = "5"
"""Bump when the conversion changes, so cached packages are rebuilt."""


@dataclass
class Resolved:
    """One distribution chosen by the resolver."""

    name: str  # canonical PyPI name
    version: str
    url: str
    sha256: str | None
    filename: str
    requires_dist: list[str] = field(default_factory=list)
    requires_python: str | None = None


MANYLINUX = """\
# PEP 600: tells pip which manylinux wheels this target accepts.
def manylinux_compatible(tag_major, tag_minor, tag_arch):
    return tag_arch == {arch!r} and (tag_major, tag_minor) <= {floor}
"""


def pip(
    python: Path, args: list[str], tmp: Path, log: Path, what: str, index_url: str | None = None
) -> Ran:
    """Run this machine's pip on ``python`` (the target's interpreter, which has none), with
    pip's temporary files in ``tmp``; the whole output in ``log``."""
    import pip as host_pip

    scratch = tmp / "pip-tmp"  # pip's pip-unpack-* go here, and away with ``tmp``
    scratch.mkdir(exist_ok=True)
    path = os.pathsep.join(
        filter(
            None,
            [str(tmp), str(Path(host_pip.__file__).parent.parent), os.environ.get("PYTHONPATH")],
        )
    )
    cmd = [str(python), "-m", "pip", *args, "--disable-pip-version-check"]
    if index_url:
        cmd += ["--index-url", index_url]
    env = {**os.environ, "PIP_NO_INPUT": "1", "PYTHONPATH": path, "TMPDIR": str(scratch)}
    return execute(cmd, env=env, log=log, check=False, what=what, timeout=3600)


def resolve(
    requirements: list[str],
    index_url: str | None,
    log: Path,
    target: Target,
    python: Path,
) -> list[Resolved]:
    """Resolve ``requirements`` (PEP 508) for ``target`` with pip's resolver, as the user's pip
    is configured, preferring wheels and taking no manylinux wheel that needs a newer C library
    than the target's floor (PEP 600's ``_manylinux`` module). pip runs on ``python``, the
    target's own interpreter, so that every marker is its own. Nothing is installed."""
    if not sys.platform.startswith("linux"):
        raise DxError("dxforge seed resolves for linux-64: run it on Linux")
    arch = target.markers()["platform_machine"]
    with tempfile.TemporaryDirectory(prefix="dxforge-resolve-") as tmp:
        (Path(tmp) / "_manylinux.py").write_text(
            MANYLINUX.format(arch=arch, floor=tuple(target.glibc[:2]))
        )
        report = Path(tmp) / "report.json"
        reqfile = Path(tmp) / "requirements.txt"
        reqfile.write_text("\n".join(requirements) + "\n")
        ran = pip(
            python,
            [
                "install",
                "--dry-run",
                "--ignore-installed",
                "--prefer-binary",
                "--quiet",
                "--report",
                str(report),
                "-r",
                str(reqfile),
            ],
            Path(tmp),
            log,
            "resolving the seed's Python requirements",
            index_url,
        )
        if not ran.ok:
            tail = "\n".join(ln for ln in ran.tail(40).splitlines() if not ln.startswith("WARNING"))
            raise DxError(
                f"resolving the seed's Python requirements failed (full log: {log}):\n{tail}"
            )
        data = json.loads(report.read_text())
    out = []
    for item in data["install"]:
        meta = item["metadata"]
        info = item["download_info"]
        hashes = (info.get("archive_info") or {}).get("hashes") or {}
        url = info["url"]
        out.append(
            Resolved(
                name=canonicalize_name(meta["name"]),
                version=meta["version"],
                url=url,
                sha256=hashes.get("sha256"),
                filename=url.rsplit("/", 1)[-1].split("#", 1)[0],
                requires_dist=list(meta.get("requires_dist") or []),
                requires_python=meta.get("requires_python"),
            )
        )
    return sorted(out, key=lambda r: r.name)


def build_wheel_from_sdist(
    sdist: Path, out_dir: Path, index_url: str | None, log: Path, python: Path
) -> Path:
    """Build a wheel from an sdist-only distribution with pip on the target's ``python`` (its
    build backend from the index)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dxforge-wheel-") as tmp:
        ran = pip(
            python,
            ["wheel", "--no-deps", "-w", str(out_dir), str(sdist)],
            Path(tmp),
            log,
            f"building a wheel of {sdist.name}",
            index_url,
        )
    if not ran.ok:
        raise DxError(f"{sdist.name}: building a wheel failed; see {log}")
    wheels = sorted(out_dir.glob("*.whl"))
    if not wheels:
        raise DxError(f"{sdist.name}: pip wheel produced no wheel; see {log}")
    return wheels[0]


@dataclass
class WheelInfo:
    name: str  # canonical PyPI name
    version: str
    pure: bool
    tags: list[str]
    metadata: DistMetadata
    entry_points: list[str]
    gui_entry_points: list[str]
    dist_info: str
    data_dir: str

    @property
    def requires_dist(self) -> list[str]:
        return self.metadata.requires_dist

    @property
    def requires_python(self) -> str | None:
        return self.metadata.requires_python or None


def read_wheel(path: Path) -> WheelInfo:
    name, version, _build, tags = parse_wheel_filename(path.name)
    with zipfile.ZipFile(path) as z:
        names = z.namelist()
        dist_infos = {
            n.split("/", 1)[0] for n in names if n.split("/", 1)[0].endswith(".dist-info")
        }
        if len(dist_infos) != 1:
            raise DxError(f"{path.name}: expected one .dist-info directory, found {dist_infos}")
        dist_info = dist_infos.pop()
        meta = parse_metadata(z.read(f"{dist_info}/METADATA"), f"{path.name}: METADATA")
        wheel = email.parser.Parser().parsestr(z.read(f"{dist_info}/WHEEL").decode("utf-8"))
        eps: list[str] = []
        gui: list[str] = []
        if f"{dist_info}/entry_points.txt" in names:
            cp = configparser.ConfigParser(delimiters=("=",), interpolation=None)
            cp.optionxform = str  # type: ignore[assignment,method-assign]
            cp.read_string(z.read(f"{dist_info}/entry_points.txt").decode("utf-8"))
            for section, target in (("console_scripts", eps), ("gui_scripts", gui)):
                if cp.has_section(section):
                    target += [f"{k.strip()} = {v.strip()}" for k, v in cp.items(section)]
    pure = (wheel.get("Root-Is-Purelib", "true").strip().lower() == "true") and all(
        t.abi == "none" and t.platform == "any" for t in tags
    )
    return WheelInfo(
        name=canonicalize_name(str(name)),
        version=str(version),
        pure=pure,
        tags=sorted(str(t) for t in tags),
        metadata=meta,
        entry_points=eps,
        gui_entry_points=gui,
        dist_info=dist_info,
        data_dir=dist_info[: -len(".dist-info")] + ".data",
    )


_GLIBC_RE = re.compile(r"manylinux_(\d+)_(\d+)_")
_LEGACY_MANYLINUX = {"manylinux1": (2, 5), "manylinux2010": (2, 12), "manylinux2014": (2, 17)}


def glibc_requirement(tags: list[str]) -> str | None:
    """The lowest glibc any manylinux tag of the wheel accepts, as ``__glibc >=2.17``."""
    found: list[tuple[int, int]] = []
    for tag in tags:
        plat = tag.rsplit("-", 1)[-1]
        m = _GLIBC_RE.match(plat + "_")
        if m:
            found.append((int(m.group(1)), int(m.group(2))))
        for legacy, ver in _LEGACY_MANYLINUX.items():
            if plat.startswith(legacy + "_"):
                found.append(ver)
    if not found:
        return None
    major, minor = min(found)
    return f"__glibc >={major}.{minor}"


def python_requirement(requires_python: str | None) -> str:
    """``python`` with the wheel's Requires-Python (blanks allowed) as a conda spec."""
    if not requires_python or not requires_python.strip():
        return "python"
    return conda_spec("python", SpecifierSet(requires_python.replace(" ", "")))


def plain_entry_point(entry: str) -> str:
    """``name = module:func [extra]`` -> ``name = module:func``: conda's ``link.json`` takes no
    extras (rattler refuses to link the package)."""
    name, _, target = entry.partition("=")
    return f"{name.strip()} = {target.split('[', 1)[0].strip()}"


def entry_point_script(entry: str, python: str) -> str:
    """A console script in the style conda-forge writes for non-noarch packages."""
    name, _, target = entry.partition("=")
    module, _, func = target.strip().partition(":")
    func = func.split("[", 1)[0].strip()
    head = func.split(".", 1)[0]
    return (
        f"#!{python}\n"
        "# -*- coding: utf-8 -*-\n"
        "import re\n"
        "import sys\n\n"
        f"from {module.strip()} import {head}\n\n"
        "if __name__ == '__main__':\n"
        "    sys.argv[0] = re.sub(r'(-script\\.pyw|\\.exe)?$', '', sys.argv[0])\n"
        f"    sys.exit({func}())\n"
    )


def build_string(prefix: str, depends: list[str], extra: str = "") -> str:
    digest = hashlib.sha1(json.dumps([depends, extra, CONVERTER_VERSION]).encode()).hexdigest()
    return f"{prefix}{digest[:7]}_0"


def conversion_spec(info: WheelInfo, lookup: dict[str, list[str]], target: Target) -> PackageSpec:
    """The conda package description of a wheel (names, dependencies, build string)."""

    def extras_of(name: str) -> list[str]:
        if name not in lookup:
            raise DxError(
                f"{info.name}: needs the metadata of {name} to expand its extras, but {name} is "
                "not in the seed; add it to the seed's requirements"
            )
        return lookup[name]

    run = conda_run_requirements(
        info.requires_dist, target, extras_of, where=f"{info.name} {info.version}"
    )
    deps = [f"{n} {s}" if s else n for n, s in sorted(run.items())]
    deps += [d for d in extra_depends(conda_name(info.name)) if d.split()[0] not in run]
    if info.pure:
        depends = [python_requirement(info.requires_python), *deps]
        return PackageSpec(
            name=conda_name(info.name),
            version=info.version,
            build=build_string("pyh", depends),
            subdir="noarch",
            depends=depends,
            noarch="python",
            license=info.metadata.license,
            summary=info.metadata.summary,
            homepage=info.metadata.home_page,
            entry_points=[plain_entry_point(e) for e in info.entry_points + info.gui_entry_points],
        )
    depends = [*target.python_depends(), *deps]
    glibc = glibc_requirement(info.tags)
    if glibc:
        depends.append(glibc)
    return PackageSpec(
        name=conda_name(info.name),
        version=info.version,
        build=build_string(f"py{target.abi[2:]}h", depends, ",".join(info.tags)),
        subdir=target.subdir,
        depends=depends,
        license=info.metadata.license,
        summary=info.metadata.summary,
        homepage=info.metadata.home_page,
    )


def stage_wheel(
    wheel: Path, info: WheelInfo, spec: PackageSpec, root: Path, target: Target
) -> list[str]:
    """Unpack ``wheel`` into the conda layout under ``root``; return the files that hold the
    prefix placeholder."""
    site = "site-packages" if info.pure else target.site_packages
    scripts = "python-scripts" if info.pure else "bin"
    python = f"{PLACEHOLDER}/bin/python{target.python}"
    text_files: list[str] = []
    with zipfile.ZipFile(wheel) as z:
        for member in z.infolist():
            if member.is_dir():
                continue
            name = member.filename
            if name.startswith(info.data_dir + "/"):
                kind, _, rest = name[len(info.data_dir) + 1 :].partition("/")
                rel = {
                    "purelib": f"{site}/{rest}",
                    "platlib": f"{site}/{rest}",
                    "scripts": f"{scripts}/{rest}",
                    "data": rest,
                    "headers": f"include/python{target.python}/{info.name}/{rest}",
                }.get(kind)
                if rel is None:
                    raise DxError(f"{wheel.name}: unknown .data directory {kind!r}")
            else:
                rel = f"{site}/{name}"
            if ".." in Path(rel).parts or rel.startswith("/"):
                raise DxError(f"{wheel.name}: unsafe path {name!r} in the wheel")
            dest = root / rel
            dest.parent.mkdir(parents=True, exist_ok=True)
            data = z.read(member)
            if rel.startswith(scripts + "/") and data.startswith(b"#!python"):
                first, _, rest_ = data.partition(b"\n")
                data = b"#!" + python.encode() + first[len(b"#!python") :] + b"\n" + rest_
                text_files.append(rel)
            dest.write_bytes(data)
            mode = (member.external_attr >> 16) & 0o777
            if rel.startswith(scripts + "/"):
                mode |= 0o755
            os.chmod(dest, (mode or 0o644) | 0o644)
    dist = root / site / info.dist_info
    (dist / "INSTALLER").write_text("conda\n")
    if not info.pure:
        for entry in info.entry_points + info.gui_entry_points:
            name = entry.split("=", 1)[0].strip()
            script = root / "bin" / name
            script.parent.mkdir(parents=True, exist_ok=True)
            script.write_text(entry_point_script(entry, python))
            os.chmod(script, 0o755)
            text_files.append(f"bin/{name}")
    return sorted(set(text_files))


def external_needs(wheel: Path) -> set[str]:
    """The shared libraries the wheel's ELF files need from outside the wheel and the C
    library (``libstdc++.so.6``, ``libgcc_s.so.1``, ...)."""
    needed: set[str] = set()
    own: set[str] = set()
    with tempfile.TemporaryDirectory(prefix="dxforge-elf-") as tmp, zipfile.ZipFile(wheel) as z:
        for i, member in enumerate(z.infolist()):
            if member.is_dir():
                continue
            with z.open(member) as f:
                if f.read(4) != b"\x7fELF":
                    continue
            path = Path(tmp) / str(i)
            path.write_bytes(z.read(member))
            info = read_elf(path)
            own.add(Path(member.filename).name)
            if info is not None:
                own.add(info.soname)
                needed.update(n for n in info.needed if not in_glibc(n))
    return needed - own


def link_libraries(root: Path, libraries: dict[str, str], where: str) -> list[str]:
    """Make the ELF files under ``root`` (a staged package) find the libraries they need from
    other packages in the prefix's ``lib/``: add that directory, ``$ORIGIN``-relative, to their
    RUNPATH. Returns the packages they need (from ``libraries``: soname -> package)."""
    packages: set[str] = set()
    own = {info.soname for info in walk_elf(root) if info.soname}
    own |= {p.name for p in root.rglob("*.so*")}
    for info in walk_elf(root):
        wants = [n for n in info.needed if not in_glibc(n) and n not in own]
        if not wants:
            continue
        missing = [n for n in wants if n not in libraries]
        if missing:
            raise DxError(
                f"{where}: {info.path.relative_to(root)} needs {', '.join(missing)}, which no "
                "seed package ships"
            )
        packages.update(libraries[n] for n in wants)
        lib = origin_path(info.path, root / "lib")
        if lib not in info.runpath:
            set_runpath(info.path, ":".join([*info.runpath, lib]))
    return sorted(packages)


def convert_wheel(
    wheel: Path,
    lookup: dict[str, list[str]],
    out_dir: Path,
    target: Target,
    libraries: dict[str, str] | None = None,
) -> Path:
    """Convert one wheel into a ``.conda`` in ``out_dir`` for ``target`` and return its path.
    ``libraries`` names the packages that ship the shared libraries its ELF files need (by
    soname). Its ELF files lose their debug sections and static symbol tables, as
    ``auditwheel repair --strip`` does; what dynamic linking needs stays."""
    try:
        info = read_wheel(wheel)
        spec = conversion_spec(info, lookup, target)
    except DxError:
        raise
    except Exception as e:  # a damaged zip, missing METADATA/WHEEL, an invalid specifier
        raise DxError(
            f"{wheel.name}: not a valid wheel ({type(e).__name__}: {e}); delete {wheel} "
            "so that it is downloaded again, or check the file on the package index"
        ) from e
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".stage-", dir=out_dir) as tmp:
        root = Path(tmp) / "files"
        root.mkdir()
        try:
            spec.text_prefix_files = stage_wheel(wheel, info, spec, root, target)
            if not info.pure:
                strip(root)
                spec.depends += link_libraries(root, libraries or {}, wheel.name)
                spec.build = build_string(f"py{target.abi[2:]}h", spec.depends, ",".join(info.tags))
            return assemble(spec, root, out_dir)
        except DxError:
            raise
        except Exception as e:
            raise DxError(f"{wheel.name}: conversion to a conda package failed: {e}") from e
        finally:
            shutil.rmtree(root, ignore_errors=True)
