"""dxforge fetch against a real PEP 691 index served on 127.0.0.1."""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import subprocess
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from dxforge.fetch import (
    fetch_sources,
    missing_sources,
    sdist_metadata,
    sources_url,
    upstream_run_requirements,
)
from dxforge.index import PackageIndex
from dxforge.recipes import load_recipe, load_recipes, run_drift
from dxforge.util import DxError

ROOT = Path(__file__).resolve().parents[1]


def core_metadata(name: str, version: str, requires: list[str]) -> str:
    lines = ["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}"]
    lines += ["Requires-Python: >=3.11"] + [f"Requires-Dist: {r}" for r in requires]
    return "\n".join(lines) + "\n\n"


def make_sdist(name: str, version: str, requires: list[str], scripts: str = "") -> bytes:
    top = f"{name.replace('-', '_')}-{version}"
    files = {
        "PKG-INFO": core_metadata(name, version, requires),
        "pyproject.toml": f'[project]\nname = "{name}"\n'
        + (f"\n[project.scripts]\n{scripts}\n" if scripts else ""),
        "LICENSE": "GPL-3.0-only\n",
    }
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for fname, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(f"{top}/{fname}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def make_wheel(name: str, version: str, requires: list[str]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as z:
        z.writestr(f"{name}-{version}.dist-info/METADATA", core_metadata(name, version, requires))
    return buf.getvalue()


@dataclass
class Served:
    filename: str
    data: bytes
    listed_sha256: str | None = None  # what the project page says; None: no hash listed
    metadata: bytes | None = None  # PEP 658 file, or None for a 404


@dataclass
class Index:
    url: str
    projects: dict[str, list[Served]] = field(default_factory=dict)
    requests: list[str] = field(default_factory=list)

    def add(self, project: str, filename: str, data: bytes, **kw: object) -> Served:
        entry = Served(filename, data, hashlib.sha256(data).hexdigest(), **kw)  # type: ignore[arg-type]
        self.projects.setdefault(project, []).append(entry)
        return entry


@pytest.fixture
def index() -> Iterator[Index]:
    state = Index(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def _send(self, code: int, body: bytes, ctype: str = "application/octet-stream") -> None:
            self.send_response(code)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            state.requests.append(self.path)
            parts = self.path.strip("/").split("/")
            if parts[0] == "simple" and len(parts) == 2 and parts[1] in state.projects:
                files = [
                    {
                        "filename": e.filename,
                        "url": f"../../files/{e.filename}",
                        "hashes": {"sha256": e.listed_sha256} if e.listed_sha256 else {},
                        "core-metadata": e.metadata is not None,
                    }
                    for e in state.projects[parts[1]]
                ]
                body = json.dumps({"meta": {"api-version": "1.1"}, "name": parts[1],
                                   "files": files}).encode()
                return self._send(200, body, "application/vnd.pypi.simple.v1+json")
            if parts[0] == "files" and len(parts) == 2:
                for entries in state.projects.values():
                    for e in entries:
                        if parts[1] == e.filename:
                            return self._send(200, e.data)
                        if parts[1] == e.filename + ".metadata" and e.metadata is not None:
                            return self._send(200, e.metadata)
            self._send(404, b"not found", "text/plain")

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    state.url = f"http://127.0.0.1:{server.server_address[1]}/simple/"
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()


def write_recipe(root: Path, name: str, version: str, sha256: str, run: list[str]) -> Path:
    fname = f"{name.replace('-', '_')}-${{{{ version }}}}.tar.gz"
    body = "\n".join(f"    - {r}" for r in ["python >=${{ python_min }}", *run])
    path = root / "recipes" / name / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""\
context:
  version: "{version}"
  python_min: "3.11"
package:
  name: {name}
  version: ${{{{ version }}}}
source:
  url: ${{{{ env.get("DXFORGE_SOURCES", default="file:///x") }}}}/{fname}
  sha256: {sha256}
build:
  noarch: python
  script: echo
requirements:
  run:
{body}
"""
    )
    return path


def pkg(index: Index, tmp_path: Path, recipe_sha: str | None = None, **served: object) -> Path:
    data = make_sdist("diracx-demo", "1.0", ["cachetools"])
    index.add("diracx-demo", "diracx_demo-1.0.tar.gz", data, **served)
    sha = recipe_sha or hashlib.sha256(data).hexdigest()
    return write_recipe(tmp_path, "diracx-demo", "1.0", sha, ["cachetools"])


def test_download_then_cached_without_network(index: Index, tmp_path: Path) -> None:
    pkg(index, tmp_path)
    recipes = load_recipes(tmp_path)
    cache = tmp_path / "build/sources"
    assert missing_sources(recipes, cache) == recipes
    [got] = fetch_sources(recipes, cache, index_url=index.url)
    assert got.status == "downloaded" and got.path == cache / "diracx_demo-1.0.tar.gz"
    assert hashlib.sha256(got.path.read_bytes()).hexdigest() == recipes[0].source_sha256
    assert sorted(p.name for p in cache.iterdir()) == ["diracx_demo-1.0.tar.gz"]
    assert missing_sources(recipes, cache) == []
    seen = len(index.requests)
    [again] = fetch_sources(recipes, cache, index_url=index.url)
    assert again.status == "cached" and len(index.requests) == seen
    assert sources_url(tmp_path) == cache.resolve().as_uri()
    # the recipe renders to the cached file once DXFORGE_SOURCES is set
    r = load_recipe(recipes[0].path, sources_url(tmp_path))
    assert r.rendered["source"][0]["url"] == got.path.resolve().as_uri()


def test_recipe_hash_differs_from_index(index: Index, tmp_path: Path) -> None:
    path = pkg(index, tmp_path, recipe_sha="ab" * 32)
    cache = tmp_path / "build/sources"
    with pytest.raises(DxError) as e:
        fetch_sources(load_recipes(tmp_path), cache, index_url=index.url)
    msg = str(e.value)
    assert str(path) in msg and "key source.sha256" in msg and "ab" * 32 in msg
    assert not cache.exists() or not any(cache.iterdir())
    assert not any(r.startswith("/files/") for r in index.requests)


def test_download_with_wrong_content_leaves_nothing(index: Index, tmp_path: Path) -> None:
    path = pkg(index, tmp_path)
    index.projects["diracx-demo"][0].data = b"corrupted on the way"
    index.projects["diracx-demo"][0].listed_sha256 = None  # the index does not tell
    cache = tmp_path / "build/sources"
    with pytest.raises(DxError) as e:
        fetch_sources(load_recipes(tmp_path), cache, index_url=index.url)
    msg = str(e.value)
    assert str(path) in msg and "key source.sha256" in msg and "nothing was written" in msg
    assert not cache.exists() or not any(cache.iterdir())


def test_wrong_cached_file_is_replaced(index: Index, tmp_path: Path) -> None:
    pkg(index, tmp_path)
    cache = tmp_path / "build/sources"
    cache.mkdir(parents=True)
    (cache / "diracx_demo-1.0.tar.gz").write_bytes(b"stale")
    [got] = fetch_sources(load_recipes(tmp_path), cache, index_url=index.url)
    assert got.status == "downloaded" and got.path.read_bytes() != b"stale"


def test_file_missing_on_index(index: Index, tmp_path: Path) -> None:
    data = make_sdist("diracx-demo", "0.9", [])
    index.add("diracx-demo", "diracx_demo-0.9.tar.gz", data)
    path = write_recipe(tmp_path, "diracx-demo", "1.0", "ab" * 32, [])
    with pytest.raises(DxError) as e:
        fetch_sources(load_recipes(tmp_path), tmp_path / "c", index_url=index.url)
    msg = str(e.value)
    assert str(path) in msg and "diracx_demo-1.0.tar.gz is not on the package index" in msg
    assert "diracx_demo-0.9.tar.gz" in msg


def test_project_missing_on_index(index: Index, tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "diracx-nowhere", "1.0", "ab" * 32, [])
    with pytest.raises(DxError) as e:
        fetch_sources(load_recipes(tmp_path), tmp_path / "c", index_url=index.url)
    assert str(path) in str(e.value) and "no such project" in str(e.value)


def test_cli_fetch_json(index: Index, tmp_path: Path) -> None:
    pkg(index, tmp_path)
    cmd = [ROOT / ".venv/bin/dxforge", "fetch", "--index-url", index.url, "--json",
           "--root", tmp_path]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    summary = json.loads(out.stdout)
    assert summary["sources_url"] == (tmp_path / "build/sources").resolve().as_uri()
    assert [f["status"] for f in summary["files"]] == ["downloaded"]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert [f["status"] for f in json.loads(out.stdout)["files"]] == ["cached"]
    index.projects["diracx-demo"][0].listed_sha256 = "cd" * 32
    (tmp_path / "build/sources/diracx_demo-1.0.tar.gz").unlink()
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert out.returncode == 1 and "key source.sha256" in out.stderr


def test_upstream_requirements_expand_extras(index: Index, tmp_path: Path) -> None:
    """Extras of siblings come from their sdist, others from the newest release wheel on the
    index (PEP 658 metadata, else the wheel itself)."""
    core = make_sdist(
        "diracx-core", "1.0", ["cachetools", "opentelemetry-sdk>=1.40; extra == 'otel'"]
    )
    tasks = make_sdist(
        "diracx-tasks",
        "1.0",
        ["diracx-core[otel]", "redis[hiredis]<3", "msgpack", "types-x; extra == 'types'"],
        scripts='diracx-tasks = "diracx.tasks.task_run:main"',
    )
    index.add("diracx-core", "diracx_core-1.0.tar.gz", core)
    index.add("diracx-tasks", "diracx_tasks-1.0.tar.gz", tasks)
    for version, hiredis, meta in (("1.0", ">=1", True), ("2.0", ">=3", False),
                                   ("3.0", ">=4", True), ("2.1rc1", ">=5", True)):
        reqs = ["async-timeout; python_version < '3.11'", f"hiredis{hiredis}; extra == 'hiredis'"]
        wheel = make_wheel("redis", version, reqs)
        md = core_metadata("redis", version, reqs).encode() if meta else None
        index.add("redis", f"redis-{version}-py3-none-any.whl", wheel, metadata=md)
    write_recipe(tmp_path, "diracx-core", "1.0", hashlib.sha256(core).hexdigest(), ["cachetools"])
    write_recipe(
        tmp_path,
        "diracx-tasks",
        "1.0",
        hashlib.sha256(tasks).hexdigest(),
        ["diracx-core ==${{ version }}", "opentelemetry-sdk >=1.40", "redis-py <3",
         "hiredis >=3", "msgpack-python"],
    )
    recipes = load_recipes(tmp_path)
    cache = tmp_path / "build/sources"
    expected = upstream_run_requirements(recipes, cache, PackageIndex(index.url))
    assert expected["diracx-tasks"] == {
        "python": ">=3.11",
        "diracx-core": "==1.0",
        "opentelemetry-sdk": ">=1.40",
        "redis-py": "<3",
        "hiredis": ">=3",  # from redis 2.0: the newest release below 3, read from the wheel
        "msgpack-python": "",
    }
    assert "/files/redis-2.0-py3-none-any.whl" in index.requests
    assert [run_drift(r, expected[r.name]) for r in recipes] == [[], []]
    assert sdist_metadata(cache / "diracx_tasks-1.0.tar.gz").scripts == {
        "diracx-tasks": "diracx.tasks.task_run:main"
    }
