"""dxforge fetch against a real PEP 691 index served on 127.0.0.1."""

from __future__ import annotations

import hashlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import DXFORGE
from local_index import LocalIndex, serve
from wheel_factory import metadata, tar_gz, zip_bytes

from dxforge.builder.fetch import fetch_sources, missing_sources, sdist_metadata, sources_url
from dxforge.bump.drift import VERSION_PIN, recipes_drift
from dxforge.core.util import DxError
from dxforge.project.recipes import load_recipe, load_recipes, recipe_paths
from dxforge.project.target import Target
from dxforge.pypa.pypi import PackageIndex


def core_metadata(name: str, version: str, requires: list[str]) -> str:
    return metadata(name, version, requires, requires_python=">=3.11")


def make_sdist(name: str, version: str, requires: list[str], scripts: str = "") -> bytes:
    return tar_gz(
        f"{name.replace('-', '_')}-{version}",
        {
            "PKG-INFO": core_metadata(name, version, requires),
            "pyproject.toml": f'[project]\nname = "{name}"\n'
            + (f"\n[project.scripts]\n{scripts}\n" if scripts else ""),
            "LICENSE": "GPL-3.0-only\n",
        },
    )


def make_wheel(name: str, version: str, requires: list[str]) -> bytes:
    meta = core_metadata(name, version, requires)
    return zip_bytes({f"{name}-{version}.dist-info/METADATA": meta})


@pytest.fixture
def index() -> Iterator[LocalIndex]:
    with serve() as idx:
        yield idx


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


def pkg(index: LocalIndex, tmp_path: Path, recipe_sha: str | None = None, **served: object) -> Path:
    data = make_sdist("diracx-demo", "1.0", ["cachetools"])
    index.add_file("diracx-demo", "diracx_demo-1.0.tar.gz", data, **served)
    sha = recipe_sha or hashlib.sha256(data).hexdigest()
    return write_recipe(tmp_path, "diracx-demo", "1.0", sha, ["cachetools"])


def test_download_then_cached_without_network(index: LocalIndex, tmp_path: Path) -> None:
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
    assert sources_url(cache) == cache.resolve().as_uri()
    # the recipe renders to the cached file once DXFORGE_SOURCES is set
    r = load_recipe(recipes[0].path, Target("3"), sources_url(cache))
    assert r.rendered["source"][0]["url"] == got.path.resolve().as_uri()


def test_recipe_hash_differs_from_index(index: LocalIndex, tmp_path: Path) -> None:
    path = pkg(index, tmp_path, recipe_sha="ab" * 32)
    cache = tmp_path / "build/sources"
    with pytest.raises(DxError) as e:
        fetch_sources(load_recipes(tmp_path), cache, index_url=index.url)
    msg = str(e.value)
    assert str(path) in msg and "key source.sha256" in msg and "ab" * 32 in msg
    assert not cache.exists() or not any(cache.iterdir())
    assert not any(r.startswith("/files/") for r in index.requests)


def test_download_with_wrong_content_leaves_nothing(index: LocalIndex, tmp_path: Path) -> None:
    path = pkg(index, tmp_path)
    index.projects["diracx-demo"][0].data = b"corrupted on the way"
    index.projects["diracx-demo"][0].listed_sha256 = None  # the index does not tell
    cache = tmp_path / "build/sources"
    with pytest.raises(DxError) as e:
        fetch_sources(load_recipes(tmp_path), cache, index_url=index.url)
    msg = str(e.value)
    assert str(path) in msg and "key source.sha256" in msg and "nothing was written" in msg
    assert not cache.exists() or not any(cache.iterdir())


def test_wrong_cached_file_is_replaced(index: LocalIndex, tmp_path: Path) -> None:
    pkg(index, tmp_path)
    cache = tmp_path / "build/sources"
    cache.mkdir(parents=True)
    (cache / "diracx_demo-1.0.tar.gz").write_bytes(b"stale")
    [got] = fetch_sources(load_recipes(tmp_path), cache, index_url=index.url)
    assert got.status == "downloaded" and got.path.read_bytes() != b"stale"


def test_file_missing_on_index(index: LocalIndex, tmp_path: Path) -> None:
    data = make_sdist("diracx-demo", "0.9", [])
    index.add_file("diracx-demo", "diracx_demo-0.9.tar.gz", data)
    path = write_recipe(tmp_path, "diracx-demo", "1.0", "ab" * 32, [])
    with pytest.raises(DxError) as e:
        fetch_sources(load_recipes(tmp_path), tmp_path / "c", index_url=index.url)
    msg = str(e.value)
    assert str(path) in msg and "diracx_demo-1.0.tar.gz is not on the package index" in msg
    assert "diracx_demo-0.9.tar.gz" in msg


def test_project_missing_on_index(index: LocalIndex, tmp_path: Path) -> None:
    path = write_recipe(tmp_path, "diracx-nowhere", "1.0", "ab" * 32, [])
    with pytest.raises(DxError) as e:
        fetch_sources(load_recipes(tmp_path), tmp_path / "c", index_url=index.url)
    assert str(path) in str(e.value) and "no such project" in str(e.value)


def test_cli_fetch_json(index: LocalIndex, tmp_path: Path) -> None:
    pkg(index, tmp_path)
    cmd = [DXFORGE, "fetch", "--index-url", index.url, "--json", "--root", tmp_path]
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


def test_upstream_requirements_expand_extras(index: LocalIndex, tmp_path: Path) -> None:
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
    index.add_file("diracx-core", "diracx_core-1.0.tar.gz", core)
    index.add_file("diracx-tasks", "diracx_tasks-1.0.tar.gz", tasks)
    for version, hiredis, meta in (
        ("1.0", ">=1", True),
        ("2.0", ">=3", False),
        ("3.0", ">=4", True),
        ("2.1rc1", ">=5", True),
    ):
        reqs = ["async-timeout; python_version < '3.11'", f"hiredis{hiredis}; extra == 'hiredis'"]
        wheel = make_wheel("redis", version, reqs)
        md = core_metadata("redis", version, reqs).encode() if meta else None
        index.add_file("redis", f"redis-{version}-py3-none-any.whl", wheel, metadata=md)
    write_recipe(tmp_path, "diracx-core", "1.0", hashlib.sha256(core).hexdigest(), ["cachetools"])
    write_recipe(
        tmp_path,
        "diracx-tasks",
        "1.0",
        hashlib.sha256(tasks).hexdigest(),
        [
            "diracx-core ==${{ version }}",
            "opentelemetry-sdk >=1.40",
            "redis-py <3",
            "hiredis >=3",
            "msgpack-python",
        ],
    )
    recipes = load_recipes(tmp_path)
    cache = tmp_path / "build/sources"
    fetch_sources(recipes, cache, index_url=index.url)
    drift = recipes_drift(
        recipe_paths(tmp_path), cache, Target("3.13", "3.13.5"), PackageIndex(index.url)
    )
    assert drift["diracx-tasks"].upstream.requirements == {
        "python": ">=3.11",
        "diracx-core": VERSION_PIN,
        "opentelemetry-sdk": ">=1.40",
        "redis-py": "<3",
        "hiredis": ">=3",  # from redis 2.0: the newest release below 3, read from the wheel
        "msgpack-python": "",
    }
    assert "/files/redis-2.0-py3-none-any.whl" in index.requests
    assert [d.changes for d in drift.values()] == [[], []]
    assert sdist_metadata(cache / "diracx_tasks-1.0.tar.gz").scripts == {
        "diracx-tasks": "diracx.tasks.task_run:main"
    }
