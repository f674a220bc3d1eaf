"""Client for the Python package index, configured the way the user's pip is.

The index URL comes from ``--index-url``, else ``PIP_INDEX_URL``, else pip's own configuration
(``pip config``), else pip's built-in default. Project pages are read with the PEP 691 JSON simple
API, falling back to the PEP 503 HTML page. Every download is sha256-verified.
"""

from __future__ import annotations

import hashlib
import html.parser
import os
import sys
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import requests
from packaging.utils import canonicalize_name
from packaging.version import InvalidVersion, Version

from dxforge import __version__
from dxforge.core.util import DxError, atomic_write_bytes, execute, sha256_file

JSON_ACCEPT = "application/vnd.pypi.simple.v1+json"
ACCEPT = f"{JSON_ACCEPT}, application/vnd.pypi.simple.v1+html;q=0.2, text/html;q=0.01"


class IndexError_(DxError):
    """The package index could not be read or did not have what was asked."""


class NotFound(IndexError_):
    """The index answered, and it does not have the project or file (HTTP 404)."""


@dataclass(frozen=True)
class IndexFile:
    """One file of a project on the index."""

    filename: str
    url: str
    sha256: str | None
    requires_python: str | None = None
    yanked: bool = False
    core_metadata: bool = False
    metadata_sha256: str | None = None

    @property
    def is_sdist(self) -> bool:
        return self.filename.endswith((".tar.gz", ".zip"))

    @property
    def metadata_url(self) -> str:
        return self.url.split("#", 1)[0] + ".metadata"


@dataclass
class Project:
    name: str
    files: list[IndexFile] = field(default_factory=list)
    versions: list[str] = field(default_factory=list)


@lru_cache(maxsize=1)
def _pip_config() -> dict[str, str]:
    """``pip config list`` as a dict (``global.index-url`` -> value)."""
    try:
        out = execute(
            [sys.executable, "-m", "pip", "config", "list"], timeout=60, check=False
        ).stdout
    except DxError:
        return {}
    conf: dict[str, str] = {}
    for line in out.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            conf[key.strip()] = value.strip().strip("'\"")
    return conf


def _pip_default_index() -> str:
    from pip._internal.models.index import PyPI  # pip's own default, so no host is written here

    return PyPI.simple_url


def index_url(explicit: str | None = None) -> str:
    """The primary index URL, as the user's pip would use it."""
    if explicit:
        return explicit.rstrip("/") + "/"
    if os.environ.get("PIP_INDEX_URL"):
        return os.environ["PIP_INDEX_URL"].rstrip("/") + "/"
    conf = _pip_config()
    for section in ("download", "install", "global"):
        key = f"{section}.index-url"
        if conf.get(key):
            return conf[key].rstrip("/") + "/"
    return _pip_default_index().rstrip("/") + "/"


class _LinkParser(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.links: list[dict[str, str | None]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "a":
            self.links.append(dict(attrs))


def _json_metadata(f: dict) -> object:
    value = f.get("core-metadata")
    return f.get("data-dist-info-metadata") if value is None else value


def _json_metadata_sha256(f: dict) -> str | None:
    value = _json_metadata(f)
    return value.get("sha256") if isinstance(value, dict) else None


def _html_metadata(a: dict[str, str | None]) -> str | None:
    """The PEP 714 ``data-core-metadata`` attribute (or PEP 658's older name); ``""`` when the
    attribute is present without a value."""
    for key in ("data-core-metadata", "data-dist-info-metadata"):
        if key in a:
            return a[key] or ""
    return None


def _html_metadata_sha256(a: dict[str, str | None]) -> str | None:
    value = _html_metadata(a) or ""
    return value.split("=", 1)[1] if value.startswith("sha256=") else None


def version_of(filename: str, project: str) -> str | None:
    """The version in a distribution file name, or None when it cannot be read."""
    norm = canonicalize_name(project)
    if filename.endswith(".whl"):
        parts = filename[:-4].split("-")
        if len(parts) >= 5 and canonicalize_name(parts[0]) == norm:
            return parts[1]
        return None
    for suffix in (".tar.gz", ".zip"):
        if filename.endswith(suffix):
            stem = filename[: -len(suffix)]
            name, _, version = stem.rpartition("-")
            if name and canonicalize_name(name) == norm:
                return version
    return None


def parsed_version_of(filename: str, project: str) -> Version | None:
    """The version in a distribution file name as a PEP 440 version, or None."""
    try:
        return Version(version_of(filename, project) or "")
    except InvalidVersion:
        return None


def verified(data: bytes, sha256: str | None, label: str, url: str) -> bytes:
    """``data``, when its sha256 is ``sha256`` (or no sha256 is given)."""
    got = hashlib.sha256(data).hexdigest()
    if sha256 and got != sha256:
        raise IndexError_(
            f"{label}: sha256 mismatch for {url}: expected {sha256}, got {got}; "
            "the file on the index changed or the download was corrupted; retry later"
        )
    return data


class PackageIndex:
    """A PEP 691/503 simple index, with retries and backoff on network errors."""

    def __init__(
        self,
        url: str | None = None,
        *,
        retries: int = 4,
        backoff: float = 0.5,
        timeout: float = 30.0,
        session: requests.Session | None = None,
    ) -> None:
        self.url = index_url(url)
        self.retries = retries
        self.backoff = backoff
        self.timeout = timeout
        self.session = session or requests.Session()
        self.session.headers["User-Agent"] = (
            f"dxforge/{__version__} {requests.utils.default_user_agent()}"
        )

    def _get(self, url: str, accept: str | None = None) -> requests.Response:
        if url.startswith("file://"):
            raise IndexError_(f"{url}: file:// indexes are not supported by this client")
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            try:
                headers = {"Accept": accept} if accept else {}
                r = self.session.get(url, headers=headers, timeout=self.timeout)
                if r.status_code == 404:
                    return r
                if r.status_code >= 500 or r.status_code == 429:
                    raise requests.HTTPError(f"HTTP {r.status_code}", response=r)
                r.raise_for_status()
                return r
            except (
                requests.ConnectionError,
                requests.Timeout,
                requests.HTTPError,
                requests.exceptions.ChunkedEncodingError,
            ) as e:
                last = e
                if (
                    isinstance(e, requests.HTTPError)
                    and e.response is not None
                    and e.response.status_code < 500
                    and e.response.status_code != 429
                ):
                    break
                if attempt < self.retries:
                    time.sleep(self.backoff * 2**attempt)
        raise IndexError_(
            f"the package index did not answer for {url} after {self.retries + 1} tries "
            f"({last}); check the network or the index URL (--index-url, PIP_INDEX_URL, pip.conf)"
        )

    def project(self, name: str) -> Project:
        """The files and versions of ``name``; an unknown project is an error naming it."""
        norm = canonicalize_name(name)
        url = urllib.parse.urljoin(self.url, f"{norm}/")
        r = self._get(url, ACCEPT)
        if r.status_code == 404:
            raise NotFound(f"{name}: no such project on the package index {self.url}")
        ctype = r.headers.get("Content-Type", "")
        if JSON_ACCEPT in ctype or ctype.startswith("application/json"):
            try:
                data = r.json()
                files = [
                    IndexFile(
                        filename=f["filename"],
                        url=urllib.parse.urljoin(url, f["url"]),
                        sha256=(f.get("hashes") or {}).get("sha256"),
                        requires_python=f.get("requires-python"),
                        yanked=bool(f.get("yanked")),
                        core_metadata=bool(_json_metadata(f)),
                        metadata_sha256=_json_metadata_sha256(f),
                    )
                    for f in data.get("files", [])
                ]
            except (ValueError, KeyError, TypeError, AttributeError) as e:
                raise IndexError_(
                    f"{url}: the package index sent an invalid PEP 691 JSON page ({e}); "
                    "check the index URL (--index-url, PIP_INDEX_URL, pip.conf)"
                ) from None
            versions = list(data.get("versions") or [])
        else:
            parser = _LinkParser()
            parser.feed(r.text)
            files = []
            for a in parser.links:
                href = a.get("href")
                if not href:
                    continue
                full = urllib.parse.urljoin(url, href)
                frag = urllib.parse.urlparse(full).fragment
                sha = frag.split("=", 1)[1] if frag.startswith("sha256=") else None
                fname = urllib.parse.unquote(urllib.parse.urlparse(full).path.rsplit("/", 1)[-1])
                files.append(
                    IndexFile(
                        filename=fname,
                        url=full.split("#", 1)[0],
                        sha256=sha,
                        requires_python=a.get("data-requires-python"),
                        yanked="data-yanked" in a,
                        core_metadata=_html_metadata(a) not in (None, "false"),
                        metadata_sha256=_html_metadata_sha256(a),
                    )
                )
            versions = []
        if not versions:
            seen: dict[str, None] = {}
            for f in files:
                v = version_of(f.filename, name)
                if v:
                    seen.setdefault(v)
            versions = list(seen)
        return Project(name=norm, files=files, versions=versions)

    def exists(self, url: str) -> bool:
        """Whether the index still serves ``url`` (a ``file://`` URL: whether the file is there)."""
        if url.startswith("file://"):
            return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).is_file()
        try:
            r = self.session.head(url, timeout=self.timeout, allow_redirects=True)
        except requests.RequestException as e:
            raise IndexError_(f"{url}: the package index did not answer ({e})") from None
        return r.status_code == 200

    def get_bytes(self, url: str) -> bytes:
        r = self._get(url)
        if r.status_code == 404:
            raise NotFound(f"{url}: not found on the package index")
        return r.content

    def read_url(self, url: str) -> bytes:
        """The bytes at ``url``: a ``file://`` URL is read from disk, any other from the index."""
        if not url.startswith("file://"):
            return self.get_bytes(url)
        try:
            return Path(urllib.parse.unquote(urllib.parse.urlparse(url).path)).read_bytes()
        except OSError as e:
            raise IndexError_(f"{url}: cannot read: {e}") from None

    def download(
        self,
        url: str,
        dest: Path,
        sha256: str | None,
        *,
        what: str = "",
        progress: Callable[[int], None] | None = None,
    ) -> Path:
        """Download ``url`` to ``dest`` atomically and verify its sha256. A file already at ``dest``
        with the right hash is kept without a download."""
        dest = Path(dest)
        label = what or dest.name
        if sha256 and dest.exists() and sha256_file(dest) == sha256:
            return dest
        data = self.read_url(url)
        if progress:
            progress(len(data))
        atomic_write_bytes(dest, verified(data, sha256, label, url))
        return dest
