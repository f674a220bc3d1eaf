"""A package index served on 127.0.0.1 for the tests: PEP 691 JSON and PEP 503 HTML project
pages, files under ``/files/`` with PEP 658 ``.metadata`` files, and hooks to make it misbehave
(answer 503, close or hang; list a wrong or no sha256; damage downloads for clients other than
pip)."""

from __future__ import annotations

import hashlib
import html
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import partial
from http.server import BaseHTTPRequestHandler, SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from packaging.utils import canonicalize_name

JSON_TYPE = "application/vnd.pypi.simple.v1+json"


@dataclass
class Dist:
    """One file of a project, and what the index says about it."""

    filename: str
    data: bytes
    metadata: bytes | None = None
    """Served as ``<file>.metadata`` and advertised (PEP 658/714); None: neither."""
    listed_sha256: str | None = ""
    """The sha256 the project page lists: ``""`` the real one, None none."""
    listed_metadata_sha256: str | None = None
    """The sha256 listed for the metadata file (default: the real one)."""
    yanked: bool = False
    requires_python: str | None = None
    damaged_for_others: bytes | None = None
    """What clients other than pip (dxforge's own downloads) receive instead of ``data``."""

    @classmethod
    def of(cls, path: Path, metadata: str, **kw: object) -> Dist:
        return cls(path.name, path.read_bytes(), metadata.encode(), **kw)  # type: ignore[arg-type]

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.data).hexdigest()

    @property
    def metadata_sha256(self) -> str:
        assert self.metadata is not None
        return self.listed_metadata_sha256 or hashlib.sha256(self.metadata).hexdigest()

    @property
    def listed(self) -> str | None:
        return self.sha256 if self.listed_sha256 == "" else self.listed_sha256


@dataclass
class LocalIndex:
    """What the index serves, what it was asked, and how it misbehaves."""

    url: str = ""
    projects: dict[str, list[Dist]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)
    downloads: list[str] = field(default_factory=list)
    """Files fetched by clients other than pip (dxforge's own downloads)."""
    html_only: bool = False
    """Project pages are PEP 503 HTML whatever the client accepts."""
    html_projects: set[str] = field(default_factory=set)
    """Projects whose page is HTML whatever the client accepts."""
    fail: str | None = None
    """``"503"``, ``"close"`` (no answer) or ``"hang"`` (until released) for every request."""
    fail_files_only: bool = False
    """Fail only for ``/files/`` (the project pages answer)."""
    release: threading.Event = field(default_factory=threading.Event)
    upstream: str | None = None
    """An index whose project pages are passed through for projects not served here."""

    def add_file(self, project: str, filename: str, data: bytes, **kw: object) -> Dist:
        dist = Dist(filename, data, **kw)  # type: ignore[arg-type]
        self.projects.setdefault(canonicalize_name(project), []).append(dist)
        return dist

    def entry(self, filename: str) -> Dist:
        for dists in self.projects.values():
            for d in dists:
                if d.filename == filename:
                    return d
        raise KeyError(filename)

    def page(self, project: str, accept: str) -> tuple[bytes, str]:
        dists = self.projects[project]
        if JSON_TYPE in accept and not self.html_only and project not in self.html_projects:
            files = [
                {
                    "filename": d.filename,
                    "url": f"../../files/{d.filename}",
                    "hashes": {"sha256": d.listed} if d.listed else {},
                    **({"requires-python": d.requires_python} if d.requires_python else {}),
                    "yanked": "broken" if d.yanked else False,
                    **(
                        {"core-metadata": {"sha256": d.metadata_sha256}}
                        if d.metadata is not None
                        else {}
                    ),
                }
                for d in dists
            ]
            body = {"meta": {"api-version": "1.1"}, "name": project, "files": files}
            return json.dumps(body).encode(), JSON_TYPE
        links = []
        for d in dists:
            attrs = ""
            if d.requires_python:
                attrs += f' data-requires-python="{html.escape(d.requires_python)}"'
            if d.yanked:
                attrs += ' data-yanked="broken"'
            if d.metadata is not None:
                attrs += f' data-core-metadata="sha256={d.metadata_sha256}"'
            href = f"../../files/{d.filename}" + (f"#sha256={d.listed}" if d.listed else "")
            links.append(f'<a href="{href}"{attrs}>{d.filename}</a><br/>\n')
        body = f"<!DOCTYPE html><html><body>\n{''.join(links)}</body></html>"
        return body.encode(), "text/html"

    def pass_through(self, project: str, accept: str) -> tuple[bytes, str] | None:
        """The upstream index's page of ``project`` (its file URLs made absolute)."""
        import urllib.parse

        import requests

        url = urllib.parse.urljoin(self.upstream or "", f"{project}/")
        r = requests.get(url, headers={"Accept": accept} if accept else {}, timeout=60)
        if r.status_code != 200:
            return None
        ctype = r.headers.get("Content-Type", "text/html")
        body = r.content
        if "json" in ctype:
            data = r.json()
            for f in data.get("files", []):
                f["url"] = urllib.parse.urljoin(url, f["url"])
            body = json.dumps(data).encode()
        else:
            body = re.sub(
                rb'href="([^"]+)"',
                lambda m: b'href="' + urllib.parse.urljoin(url, m[1].decode()).encode() + b'"',
                body,
            )
        return body, ctype

    def file(self, filename: str, user_agent: str) -> bytes | None:
        meta = filename.endswith(".metadata")
        try:
            d = self.entry(filename[: -len(".metadata")] if meta else filename)
        except KeyError:
            return None
        if meta:
            return d.metadata
        if user_agent.startswith("pip/"):
            return d.data
        self.downloads.append(d.filename)
        return d.data if d.damaged_for_others is None else d.damaged_for_others


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # headers and body are two writes: without TCP_NODELAY the body waits for the client's
    # delayed ACK, 40 ms a request on loopback
    disable_nagle_algorithm = True
    index: LocalIndex

    def log_message(self, *args: object) -> None:
        pass

    def _send(self, code: int, body: bytes, ctype: str = "application/octet-stream") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _failing(self) -> bool:
        """Whether the index is told to fail this request (and has done so)."""
        index = self.index
        if not index.fail or (index.fail_files_only and not self.path.startswith("/files/")):
            return False
        if index.fail == "503":
            self._send(503, b"service unavailable", "text/plain")
        elif index.fail == "hang":
            index.release.wait(10)
        self.close_connection = True
        return True

    def _answer(self, kind: str, name: str) -> tuple[bytes, str] | None:
        index = self.index
        if kind == "simple" and name in index.projects:
            return index.page(name, self.headers.get("Accept", ""))
        if kind == "simple" and index.upstream:
            return index.pass_through(name, self.headers.get("Accept", ""))
        if kind == "files":
            data = index.file(name, self.headers.get("User-Agent", ""))
            return None if data is None else (data, "application/octet-stream")
        return None

    def do_GET(self) -> None:  # noqa: N802
        self.index.requests.append(self.path)
        if self._failing():
            return
        parts = self.path.split("?", 1)[0].strip("/").split("/")
        found = self._answer(*parts) if len(parts) == 2 else None
        if found is None:
            self._send(404, b"not found", "text/plain")
        else:
            self._send(200, *found)


def _handler(index: LocalIndex) -> type[BaseHTTPRequestHandler]:
    return type("Handler", (_Handler,), {"index": index})


class _Files(SimpleHTTPRequestHandler):
    disable_nagle_algorithm = True

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def _running(server: ThreadingHTTPServer) -> Iterator[str]:
    """Run ``server`` in a thread (polling every 50 ms, so it stops at once) until the block
    ends; its base URL."""
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serve_directory(root: Path) -> Iterator[str]:
    """Serve the files under ``root`` on a free port of 127.0.0.1; the base URL."""
    with _running(
        ThreadingHTTPServer(("127.0.0.1", 0), partial(_Files, directory=str(root)))
    ) as url:
        yield url


@contextmanager
def serve(index: LocalIndex | None = None) -> Iterator[LocalIndex]:
    """Serve ``index`` on a free port of 127.0.0.1 (its ``url`` set) until the block ends."""
    index = index or LocalIndex()
    with _running(ThreadingHTTPServer(("127.0.0.1", 0), _handler(index))) as url:
        index.url = f"{url}/simple/"
        try:
            yield index
        finally:
            index.release.set()
