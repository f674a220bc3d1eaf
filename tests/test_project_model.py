"""The one project model: construct.yaml, the target, the recipes and the graph are read once per
command, on first use, whatever the stages ask; the platform chooses construct.yaml's selectors."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import write_construct
from test_graph import write_recipe

from dxforge.core.util import DxError
from dxforge.project import construct, recipes
from dxforge.project.layout import Layout, sources_url
from dxforge.project.model import Project


def project(tmp_path: Path) -> Project:
    write_recipe(tmp_path, "dxt-core", version="2.1")
    write_recipe(tmp_path, "dxt", ["dxt-core"], version="2.1")
    write_construct(tmp_path, "dxt")
    return Project.of(Layout.of(tmp_path))


def test_each_file_is_read_once_whatever_the_stages_ask(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    p = project(tmp_path)
    reads: list[str] = []
    real_construct, real_recipe = construct.load_construct, recipes.load_recipe
    monkeypatch.setattr(
        "dxforge.project.model.load_construct",
        lambda *a: reads.append("construct") or real_construct(*a),
    )
    monkeypatch.setattr(
        recipes, "load_recipe", lambda *a: reads.append("recipe") or real_recipe(*a)
    )
    for _ in range(3):  # three stages
        assert p.target.python == p.construct.specs[0].split()[1][:-2]
        assert [r.name for r in p.recipes] == ["dxt", "dxt-core"]
        assert p.graph.order == ["dxt-core", "dxt"] and p.version == "2.1"
        assert p.construct.name == "T"
    assert sorted(reads) == ["construct", "recipe", "recipe"]


def test_recipes_are_rendered_with_the_projects_source_cache(tmp_path: Path) -> None:
    p = project(tmp_path)
    url = sources_url(p.layout.sources)
    assert f"{url}/dxt-core-2.1.tar.gz" in str(p.recipe("dxt-core").rendered)


def test_an_unknown_recipe_names_the_known_ones(tmp_path: Path) -> None:
    with pytest.raises(DxError, match=r"no recipe builds nope; the recipes are: dxt, dxt-core$"):
        project(tmp_path).recipe("nope")


def test_the_platform_chooses_the_selectors(tmp_path: Path) -> None:
    (tmp_path / "construct.yaml").write_text(
        "name: T\nversion: 1.0.0\nchannels: [./build/channels/seed]\nspecs:\n"
        "  - python 3.13.*\n  - voms  # [linux64]\n  - git  # [aarch64]\n"
    )
    layout = Layout.of(tmp_path)
    assert Project.of(layout).construct.specs == ["python 3.13.*", "voms"]
    arm = Project.of(layout, platform="linux-aarch64")
    assert arm.construct.specs == ["python 3.13.*", "git"] and arm.platform == "linux-aarch64"


def test_channels_follow_the_build_directory_and_the_option(tmp_path: Path) -> None:
    write_construct(tmp_path, "dxt", channel="./build/channels/dxforge")
    elsewhere = tmp_path / "out"
    p = Project.of(Layout(tmp_path, elsewhere))
    own = (elsewhere / "channels/dxforge").as_uri()
    assert p.channels() == [own]
    assert p.channels(["conda-forge"]) == [own, "conda-forge"]
