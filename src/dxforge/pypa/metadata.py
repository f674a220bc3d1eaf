"""Core metadata of distributions (``PKG-INFO`` / ``METADATA``): parsed from bytes, read from an
sdist or a wheel, or fetched from the package index (PEP 658 file, else the wheel), verified."""

from __future__ import annotations

import email.parser
import io
import tarfile
import zipfile
from dataclasses import dataclass, field

from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name
from packaging.version import Version

from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError
from dxforge.pypa.pypi import IndexFile, NotFound, PackageIndex, parsed_version_of, verified


@dataclass
class DistMetadata:
    """The parts of a distribution's core metadata that dxforge follows."""

    name: str
    version: str
    requires_dist: list[str] = field(default_factory=list)
    requires_python: str = ""
    dynamic: list[str] = field(default_factory=list)
    source: str = ""  # where it was read (for messages and reports)
    license: str | None = None
    summary: str | None = None
    home_page: str | None = None
    scripts: dict[str, str] = field(default_factory=dict)  # an sdist's [project.scripts]


def _header(msg: email.message.Message, key: str) -> str | None:
    value = msg.get(key)
    return None if value is None else str(value)


def parse_metadata(data: bytes, where: str) -> DistMetadata:
    """Core metadata bytes as :class:`DistMetadata`; ``where`` names the file in errors."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise DxError(f"{where}: the core metadata is not UTF-8 ({e})") from None
    msg = email.parser.HeaderParser().parsestr(text)
    if not msg.get("Name") or not msg.get("Version"):
        raise DxError(f"{where}: no Name/Version in the core metadata; not a valid distribution")
    return DistMetadata(
        name=str(msg["Name"]).strip(),
        version=str(msg["Version"]).strip(),
        requires_dist=[" ".join(str(v).split()) for v in msg.get_all("Requires-Dist") or []],
        requires_python=" ".join(str(msg.get("Requires-Python") or "").split()),
        dynamic=[str(v).strip().lower() for v in msg.get_all("Dynamic") or []],
        source=where,
        license=_header(msg, "License-Expression") or _header(msg, "License"),
        summary=_header(msg, "Summary"),
        home_page=_header(msg, "Home-page"),
    )


def _top_level(name: str, base: str) -> bool:
    return name.count("/") == 1 and name.endswith("/" + base)


def _sdist_members(data: bytes, where: str, fix: str) -> dict[str, bytes]:
    """The top-level ``PKG-INFO`` and ``pyproject.toml`` files of an sdist, in archive order."""
    wanted = ("PKG-INFO", "pyproject.toml")
    try:
        if where.endswith(".zip"):
            with zipfile.ZipFile(io.BytesIO(data)) as z:
                names = [n for n in z.namelist() if any(_top_level(n, b) for b in wanted)]
                return {n: z.read(n) for n in names}
        out: dict[str, bytes] = {}
        with tarfile.open(fileobj=io.BytesIO(data), mode="r:*") as tar:
            for m in tar.getmembers():
                if m.isfile() and any(_top_level(m.name, b) for b in wanted):
                    f = tar.extractfile(m)
                    if f is not None:
                        out[m.name] = f.read()
        return out
    except (tarfile.TarError, zipfile.BadZipFile, EOFError, OSError) as e:
        raise DxError(f"{where}: not a readable sdist ({e}){fix}") from None


def read_sdist(data: bytes, where: str, *, scripts: bool = False, fix: str = "") -> DistMetadata:
    """The core metadata of an sdist (``.tar.*`` or ``.zip``) given as bytes: its top-level
    ``PKG-INFO``, and with ``scripts`` the ``[project.scripts]`` of the ``pyproject.toml`` beside
    it. ``fix`` ends the error messages."""
    files = _sdist_members(data, where, fix)
    pkg_info = [n for n in files if n.endswith("/PKG-INFO")]
    if not pkg_info:
        raise DxError(f"{where}: no top-level PKG-INFO; is this an sdist?{fix}")
    meta = parse_metadata(files[pkg_info[0]], f"{where} PKG-INFO")
    pyproject = pkg_info[0].rsplit("/", 1)[0] + "/pyproject.toml"
    if scripts and pyproject in files:
        import tomllib

        try:
            project = tomllib.loads(files[pyproject].decode()).get("project") or {}
        except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
            raise DxError(f"{where}: {pyproject} is not valid TOML ({e}){fix}") from None
        meta.scripts = dict(project.get("scripts") or {})
    return meta


def wheel_metadata(data: bytes, filename: str) -> bytes:
    """The ``*.dist-info/METADATA`` of a wheel given as bytes."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            names = [
                n for n in z.namelist() if n.count("/") == 1 and n.endswith(".dist-info/METADATA")
            ]
            if names:
                return z.read(names[0])
    except (zipfile.BadZipFile, OSError) as e:
        raise DxError(f"{filename}: not a readable wheel ({e})") from None
    raise DxError(f"{filename}: no .dist-info/METADATA in the wheel")


def core_metadata(index: PackageIndex, f: IndexFile) -> bytes:
    """The PEP 658/714 metadata file of ``f`` (the index advertises it), sha256-verified."""
    return verified(
        index.get_bytes(f.metadata_url),
        f.metadata_sha256,
        f"{f.filename}.metadata",
        f.metadata_url,
    )


def wheel_file_metadata(index: PackageIndex, f: IndexFile) -> DistMetadata:
    """The core metadata of the wheel ``f`` on the index: its PEP 658 file where the index has
    one, else read from the downloaded wheel; sha256-verified either way."""
    if f.core_metadata:
        data = core_metadata(index, f)
    else:
        wheel = verified(index.get_bytes(f.url), f.sha256, f.filename, f.url)
        data = wheel_metadata(wheel, f.filename)
    return parse_metadata(data, f.filename)


class RequiresDistLookup:
    """Requires-Dist of a distribution by name, to expand extras (``redis[hiredis]``).

    Names in ``local`` (the DiracX packages at hand) answer from there; any other name from the
    newest release wheel on the index that satisfies ``specs[name]`` (if set). A name with no such
    wheel is an error, or with ``skip_missing`` answers ``[]`` and is recorded in ``skipped``
    (the reason in ``why``)."""

    def __init__(
        self,
        index: PackageIndex | None = None,
        local: dict[str, DistMetadata] | None = None,
        *,
        index_url: str | None = None,
        skip_missing: bool = False,
        progress: Progress = SILENT,
    ) -> None:
        self._index = index
        self._index_url = index_url
        self.local = {canonicalize_name(k): v for k, v in (local or {}).items()}
        self.skip_missing = skip_missing
        self.progress = progress
        self.specs: dict[str, SpecifierSet] = {}
        self.resolved: dict[str, DistMetadata | None] = {}
        self.why: dict[str, str] = {}
        self.skipped: list[str] = []

    @property
    def index(self) -> PackageIndex:
        if self._index is None:
            self._index = PackageIndex(self._index_url)
        return self._index

    def __call__(self, name: str) -> list[str]:
        meta = self.metadata(name)
        if meta is None:
            self.skipped.append(canonicalize_name(name))
            return []
        return meta.requires_dist

    def metadata(self, name: str) -> DistMetadata | None:
        """The metadata of ``name``; None when it is missing and ``skip_missing`` is set."""
        norm = canonicalize_name(name)
        if norm in self.local:
            return self.local[norm]
        if norm not in self.resolved:
            self.resolved[norm] = self._from_index(norm)
        return self.resolved[norm]

    def _from_index(self, name: str) -> DistMetadata | None:
        try:
            project = self.index.project(name)
        except NotFound:
            if not self.skip_missing:
                raise
            self.why[name] = "not on the package index"
            return None
        spec = self.specs.get(name, SpecifierSet())
        wheels: dict[Version, list[IndexFile]] = {}
        for f in project.files:
            if f.yanked or not f.filename.endswith(".whl"):
                continue
            v = parsed_version_of(f.filename, name)
            if v is not None and not v.is_prerelease and v in spec:
                wheels.setdefault(v, []).append(f)
        if not wheels:
            matching = f" matching {spec}" if str(spec) else ""
            missing = f"no release wheel{matching} on the package index"
            if not self.skip_missing:
                raise DxError(f"{name}: {missing} {self.index.url}, so its extras cannot be read")
            self.why[name] = missing
            return None
        newest = max(wheels)
        f = min(
            wheels[newest],
            key=lambda f: (not f.core_metadata, "-none-any" not in f.filename, f.filename),
        )
        self.progress.step(f"reading the metadata of {f.filename} (for its extras)")
        return wheel_file_metadata(self.index, f)
