"""`dxforge extension init`: a distribution project from an extension the test makes, served on
a 127.0.0.1 index; the DiracX distribution it builds on is this repository's (its version read
from recipes/diracx/recipe.yaml)."""

from __future__ import annotations

import hashlib
import shutil
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from extension_factory import publish
from local_index import LocalIndex, serve
from wheel_factory import build_wheel, metadata

from dxforge.bump.recipedoc import read_recipe
from dxforge.core.util import DxError
from dxforge.extension.init import InitOptions, init_extension
from dxforge.extension.project import read_project
from dxforge.project.construct import load_construct

EXT_VERSION = "1.2.3"


def diracx_version() -> str:
    return read_recipe(ROOT / "recipes/diracx/recipe.yaml").version


@pytest.fixture
def index(tmp_path: Path) -> Iterator[LocalIndex]:
    x = diracx_version()
    with serve() as idx:
        publish(idx, tmp_path / "dists", "myext", EXT_VERSION, x)
        md = metadata(
            "diracx-routers", x, ['opentelemetry-api>=1.20; extra == "otel"'], ">=3.11", ["otel"]
        )
        wheel = build_wheel(
            tmp_path / "dists",
            "diracx-routers",
            x,
            extras=["otel"],
            requires=['opentelemetry-api>=1.20; extra == "otel"'],
        )
        idx.add_file("diracx-routers", wheel.name, wheel.read_bytes(), metadata=md.encode())
        yield idx


def init(tmp_path: Path, index: LocalIndex, name: str = "myext", **kw: object):  # noqa: ANN201
    opts = InitOptions(
        name=name, dest=tmp_path / "myext-dist", base=ROOT, index_url=index.url, **kw
    )  # type: ignore[arg-type]
    return init_extension(opts)


def run_of(recipe: Path) -> list[str]:
    text = recipe.read_text()
    block = text.split("  run:\n", 1)[1].split("\n\n", 1)[0]
    return [line.strip()[2:] for line in block.splitlines()]


def test_init_writes_a_recipe_per_package(tmp_path: Path, index: LocalIndex) -> None:
    x = diracx_version()
    res = init(tmp_path, index)
    project = tmp_path / "myext-dist"
    assert res.diracx == x and res.version == EXT_VERSION
    names = sorted(p.name for p in res.packages)
    assert names == ["myext", "myext-cli", "myext-client", "myext-core", "myext-routers"]
    assert sorted(p.name for p in (project / "recipes").iterdir()) == names
    # probed like DiracX's packages, absent on the index
    assert "myext-db" in res.absent and "myext-tasks" in res.absent
    kinds = {p.name: p.dist.kind for p in res.packages}
    assert kinds == {
        "myext": "sdist",
        "myext-cli": "wheel",
        "myext-client": "wheel",
        "myext-core": "sdist",
        "myext-routers": "sdist",
    }
    for p in res.packages:
        served = index.entry(p.file.filename)
        assert p.sha256 == hashlib.sha256(served.data).hexdigest()
        doc = read_recipe(project / f"recipes/{p.name}/recipe.yaml")
        assert doc.version == EXT_VERSION and doc.sha256 == p.sha256
        assert doc.sdist_name(EXT_VERSION) == p.file.filename


def test_requirements_conda_names_extras_and_the_diracx_pin(
    tmp_path: Path, index: LocalIndex
) -> None:
    x = diracx_version()
    init(tmp_path, index)
    recipes = tmp_path / "myext-dist/recipes"
    assert run_of(recipes / "myext-core/recipe.yaml") == [
        "python >=${{ python_min }}",
        f"diracx-core =={x}",
    ]
    routers = run_of(recipes / "myext-routers/recipe.yaml")
    assert f"diracx-routers =={x}" in routers and "myext-core ==${{ version }}" in routers
    assert "opentelemetry-api >=1.20" in routers  # diracx-routers[otel], expanded
    assert f"diracx =={x}" in run_of(recipes / "myext/recipe.yaml")
    cli = (recipes / "myext-cli/recipe.yaml").read_text()
    assert "file_name: myext_cli-${{ version }}-py3-none-any.whl" in cli
    assert "pip install myext_cli-${{ version }}-py3-none-any.whl" in cli
    assert "dirac hello --help" in cli
    core = (recipes / "myext-core/recipe.yaml").read_text()
    assert "    - hatchling\n" in core and "- myext.core\n" in core
    meta = (recipes / "myext/recipe.yaml").read_text()
    assert "- myext.cli\n" in meta and "- myext.core\n" in meta  # a metapackage's imports


def test_construct_and_settings_follow_diracx(tmp_path: Path, index: LocalIndex) -> None:
    from dxforge.ci.workflows import config

    res = init(tmp_path, index)
    project = tmp_path / "myext-dist"
    spec = load_construct(project / "construct.yaml")
    base = load_construct(ROOT / "construct.yaml")
    assert spec.name == "myext" and spec.version == EXT_VERSION
    assert spec.installer_filename == f"myext-{EXT_VERSION}-Linux-x86_64.sh"
    shared = [s for s in base.specs if s.split()[0] in ("python", "voms", "git")]
    assert all(s in spec.specs for s in shared) and f"myext =={EXT_VERSION}" in spec.specs
    assert spec.glibc == base.glibc
    # DiracX's installer files (the post-install script writes diracosrc, which pilots source)
    assert spec.post_install.read_bytes() == base.post_install.read_bytes()
    assert spec.license_file.read_bytes() == base.license_file.read_bytes()
    cfg = read_project(project)
    assert cfg.extension == "myext" and cfg.diracx == res.diracx and cfg.base == ROOT
    assert cfg.base_channel == (ROOT / "build/channels/dxforge").as_uri()
    assert config(project).enabled == ["linux-64"]
    tool = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["dxforge"]
    assert set(tool) >= {"extension", "diracx", "base", "base-channel", "base-seed", "ci"}


def test_the_recipes_render_and_form_a_graph(tmp_path: Path, index: LocalIndex) -> None:
    from dxforge.project.graph import load_graph

    init(tmp_path, index)
    graph, recipes = load_graph(tmp_path / "myext-dist")
    assert graph.levels[0] == ["myext-core"] and graph.levels[-1] == ["myext"]
    assert all(r.version == EXT_VERSION for r in recipes)


def test_refusals_lose_nothing(tmp_path: Path, index: LocalIndex) -> None:
    dest = tmp_path / "myext-dist"
    dest.mkdir()
    (dest / "mine.txt").write_text("keep")
    with pytest.raises(DxError, match="exists and is not an empty folder"):
        init(tmp_path, index)
    assert [p.name for p in dest.iterdir()] == ["mine.txt"]
    with pytest.raises(DxError, match="no such project"):
        init(tmp_path, index, name="nothere")
    with pytest.raises(DxError, match="has no 9.9.9"):
        init(tmp_path, index, version="9.9.9")
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".myext-dist")]


def test_an_extension_pinning_no_diracx_is_refused(tmp_path: Path) -> None:
    with serve() as idx:
        wheel = build_wheel(tmp_path, "loose", "1.0", requires=["diracx>=0.1"])
        idx.add_file("loose", wheel.name, wheel.read_bytes())
        with pytest.raises(DxError, match="pins a DiracX version"):
            init(tmp_path, idx, name="loose")


def test_binary_wheels_only_are_refused(tmp_path: Path) -> None:
    from wheel_factory import BINARY_TAG

    with serve() as idx:
        wheel = build_wheel(
            tmp_path, "binext", "1.0", tag=BINARY_TAG, requires=[f"diracx=={diracx_version()}"]
        )
        idx.add_file("binext", wheel.name, wheel.read_bytes())
        with pytest.raises(DxError, match="only binary wheels"):
            init(tmp_path, idx, name="binext", version="1.0")


def _channel(path: Path, version: str) -> Path:
    import json

    (path / "noarch").mkdir(parents=True)
    rec = {
        "name": "diracx",
        "version": version,
        "build": "pyh_0",
        "build_number": 0,
        "depends": [],
        "subdir": "noarch",
    }
    (path / "noarch/repodata.json").write_text(
        json.dumps(
            {
                "info": {"subdir": "noarch"},
                "packages": {},
                "packages.conda": {f"diracx-{version}-pyh_0.conda": rec},
            }
        )
    )
    return path


def test_built_on_diracx_at_the_pinned_version(tmp_path: Path, index: LocalIndex) -> None:
    from dxforge.extension.build import base_channels
    from dxforge.extension.project import ExtensionProject

    x = diracx_version()
    base = tmp_path / "diracx-dist"
    project = ExtensionProject(
        tmp_path / "ext",
        "myext",
        x,
        base,
        _channel(tmp_path / "other", "0.0.1").as_uri(),
        (tmp_path / "seed").as_uri(),
    )
    with pytest.raises(DxError) as e:
        base_channels(project)
    assert f"pins DiracX {x}" in str(e.value) and "0.0.1" in str(e.value)
    assert f"`dxforge release --version {x} --root {base}`" in str(e.value)
    release = _channel(base / f"build/releases/{x}/channels/dxforge", x)
    found = base_channels(project)
    assert found.channel == release.as_uri()
    assert found.seed == (release.parent / "seed").as_uri()


def test_the_seed_leaves_diracx_to_its_channel(tmp_path: Path) -> None:
    from dxforge.seed.plan import plan

    x = diracx_version()
    sp = plan(
        tmp_path,
        {"myext", "myext-core"},
        {"r": [f"diracx-core =={x}", "myext-core ==1.0", "hatchling", "opentelemetry-api"]},
        ["python 3.13.*", "myext ==1.0"],
        {"tests": [f"diracx-testing=={x}", "pytest"]},
    )
    assert sp.requirements == ["hatchling", "opentelemetry-api", "pip", "pytest"]


def test_the_command(tmp_path: Path, index: LocalIndex) -> None:
    import json

    from conftest import run_dxforge

    nothing = (tmp_path / "no-channel").as_uri()  # whatever this checkout has built
    base = tmp_path / "diracx"  # this project's sources alone: none of its builds or releases
    for part in ("recipes", "installer"):
        shutil.copytree(ROOT / part, base / part)
    shutil.copy2(ROOT / "construct.yaml", base)
    res = run_dxforge(
        "extension",
        "init",
        "myext",
        "--base",
        base,
        "--index-url",
        index.url,
        "--base-channel",
        nothing,
        "--json",
        cwd=tmp_path,
    )
    data = json.loads(res.stdout)
    assert data["status"] == "created" and data["diracx"] == diracx_version()
    assert Path(data["project"]) == tmp_path / "myext"
    again = run_dxforge(
        "extension",
        "init",
        "myext",
        "--base",
        base,
        "--index-url",
        index.url,
        cwd=tmp_path,
        check=False,
    )
    assert again.returncode == 1 and "exists and is not an empty folder" in again.stderr
    build = run_dxforge("extension", "build", cwd=tmp_path / "myext", check=False)
    assert build.returncode == 1 and f"--version {diracx_version()}" in build.stderr
