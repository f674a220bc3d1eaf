"""What a recipe needs from one distribution file of an extension (its sdist or its pure-Python
wheel, as bytes): core metadata, entry points, the modules it installs and, for an sdist, what
its build system requires."""

from __future__ import annotations

import configparser
import io
import tarfile
import tomllib
import zipfile
from dataclasses import dataclass, field

from dxforge.core.util import DxError
from dxforge.pypa.metadata import DistMetadata, parse_metadata, read_sdist, wheel_metadata


@dataclass
class DistFile:
    """One distribution file read for its recipe."""

    filename: str
    kind: str  # "sdist" | "wheel"
    meta: DistMetadata
    entry_points: dict[str, dict[str, str]] = field(default_factory=dict)  # group -> name -> ref
    modules: list[str] = field(default_factory=list)  # importable packages, outermost first
    build_requires: list[str] = field(default_factory=list)  # PEP 508, sdists only


def _modules(paths: list[str]) -> list[str]:
    """The outermost regular packages among ``paths`` (``a/b/__init__.py`` -> ``a.b`` when
    ``a`` has no ``__init__.py``: a namespace package, as DiracX's ``diracx``)."""
    inits = {p[: -len("/__init__.py")] for p in paths if p.endswith("/__init__.py")}
    out = []
    for d in sorted(inits):
        parts = d.split("/")
        if any("/".join(parts[:i]) in inits for i in range(1, len(parts))):
            continue
        if parts[0] in ("tests", "test", "docs") or parts[0].endswith((".dist-info", ".data")):
            continue
        out.append(".".join(parts))
    return out


def _entry_points_txt(text: str, where: str) -> dict[str, dict[str, str]]:
    parser = configparser.ConfigParser(delimiters=("=",), interpolation=None)
    parser.optionxform = str  # type: ignore[assignment,method-assign]
    try:
        parser.read_string(text)
    except configparser.Error as e:
        raise DxError(f"{where}: entry_points.txt is not valid ({e})") from None
    return {s: dict(parser[s]) for s in parser.sections()}


def read_wheel(data: bytes, filename: str) -> DistFile:
    """A pure-Python wheel given as bytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = z.namelist()
            eps = [
                n for n in names if n.count("/") == 1 and n.endswith(".dist-info/entry_points.txt")
            ]
            ep_text = z.read(eps[0]).decode() if eps else ""
    except (zipfile.BadZipFile, OSError, UnicodeDecodeError) as e:
        raise DxError(f"{filename}: not a readable wheel ({e})") from None
    meta = parse_metadata(wheel_metadata(data, filename), filename)
    return DistFile(filename, "wheel", meta, _entry_points_txt(ep_text, filename), _modules(names))


def _sdist_files(data: bytes, filename: str) -> tuple[list[str], bytes | None]:
    """The sdist's file paths below its top directory (and ``src/``), and its pyproject.toml."""
    try:
        if filename.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                paths = [n for n in z.namelist() if not n.endswith("/")]
                top = [p for p in paths if p.count("/") == 1 and p.endswith("/pyproject.toml")]
                pyproject = z.read(top[0]) if top else None
        else:
            with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
                paths = [m.name for m in tar.getmembers() if m.isfile()]
                top = [p for p in paths if p.count("/") == 1 and p.endswith("/pyproject.toml")]
                f = tar.extractfile(top[0]) if top else None
                pyproject = f.read() if f else None
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise DxError(f"{filename}: not a readable sdist ({e})") from None
    inner = [p.split("/", 1)[1] for p in paths if "/" in p]
    inner = [p[len("src/") :] if p.startswith("src/") else p for p in inner]
    return inner, pyproject


def read_sdist_file(data: bytes, filename: str) -> DistFile:
    """An sdist given as bytes: PKG-INFO, and its pyproject.toml's entry points and build
    requirements."""
    meta = read_sdist(data, filename)
    paths, pyproject = _sdist_files(data, filename)
    eps: dict[str, dict[str, str]] = {}
    build: list[str] = []
    if pyproject is not None:
        try:
            doc = tomllib.loads(pyproject.decode())
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise DxError(f"{filename}: pyproject.toml is not valid TOML ({e})") from None
        project = doc.get("project") or {}
        eps = {g: dict(v) for g, v in (project.get("entry-points") or {}).items()}
        if project.get("scripts"):
            eps["console_scripts"] = dict(project["scripts"])
        build = [str(r) for r in (doc.get("build-system") or {}).get("requires") or []]
    return DistFile(filename, "sdist", meta, eps, _modules(paths), build)


def read_dist(data: bytes, filename: str) -> DistFile:
    return (
        read_wheel(data, filename) if filename.endswith(".whl") else read_sdist_file(data, filename)
    )
