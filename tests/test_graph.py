"""Unit tests of the recipe graph on small synthetic recipes."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from conftest import write_construct

from dxforge.core.util import DxError
from dxforge.project.graph import Node, build_graph, load_graph

SHA = "ab" * 32


def write_recipe(
    root: Path, name: str, run: list[str] = (), version: str = "1.0", **sections: list[str]
) -> Path:
    """A minimal valid recipe under ``root/recipes/name``; siblings given by name only are
    pinned ``==${{ version }}``."""

    def reqs(items: list[str], indent: str = "    ") -> str:
        return "\n".join(
            f"{indent}- {r} ==${{{{ version }}}}" if " " not in r else f"{indent}- {r}"
            for r in items
        )

    host = sections.get("host", [])
    test = sections.get("test", [])
    text = f"""\
context:
  version: "{version}"
  python_min: "3.11"
package:
  name: {name}
  version: ${{{{ version }}}}
source:
  url: ${{{{ env.get("DXFORGE_SOURCES", default="file:///x") }}}}/{name}-${{{{ version }}}}.tar.gz
  sha256: {SHA}
build:
  noarch: python
  script: echo
requirements:
  host:
    - python
{reqs(host) if host else ""}
  run:
    - python
{reqs(list(run)) if run else ""}
"""
    if test:
        text += (
            "tests:\n  - script:\n      - echo\n    requirements:\n      run:\n"
            + reqs(test, " " * 8)
            + "\n"
        )
    path = root / "recipes" / name / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def test_order_levels_edges_from_recipe_files(tmp_path: Path) -> None:
    write_recipe(tmp_path, "diracx-core")
    write_recipe(tmp_path, "diracx-db", ["diracx-core"])
    write_recipe(tmp_path, "diracx-client", ["diracx-core"])
    write_recipe(tmp_path, "diracx-logic", ["diracx-db", "diracx-core"])
    write_recipe(tmp_path, "diracx", ["diracx-client"], host=["diracx-logic"])
    g, recipes = load_graph(tmp_path)
    assert len(recipes) == 5
    assert g.levels == [
        ["diracx-core"],
        ["diracx-client", "diracx-db"],
        ["diracx-logic"],
        ["diracx"],
    ]
    assert g.order == ["diracx-core", "diracx-client", "diracx-db", "diracx-logic", "diracx"]
    assert g.edges == [
        ("diracx-client", "diracx"),
        ("diracx-core", "diracx-client"),
        ("diracx-core", "diracx-db"),
        ("diracx-core", "diracx-logic"),
        ("diracx-db", "diracx-logic"),
        ("diracx-logic", "diracx"),
    ]
    for a, b in g.edges:  # every dependency comes before its dependent
        assert g.order.index(a) < g.order.index(b)
    assert g.as_json() == {
        "status": "ok",
        "levels": g.levels,
        "order": g.order,
        "edges": [list(e) for e in g.edges],
    }


def test_test_section_makes_an_edge(tmp_path: Path) -> None:
    write_recipe(tmp_path, "diracx-core")
    write_recipe(tmp_path, "diracx-cli", test=["diracx-core"])
    g, _ = load_graph(tmp_path)
    assert g.edges == [("diracx-core", "diracx-cli")]


def test_cycle_is_named(tmp_path: Path) -> None:
    write_recipe(tmp_path, "diracx-a", ["diracx-b"])
    write_recipe(tmp_path, "diracx-b", ["diracx-c"])
    write_recipe(tmp_path, "diracx-c", ["diracx-a"])
    write_recipe(tmp_path, "diracx-d", ["diracx-a"])
    with pytest.raises(
        DxError,
        match=r"dependency cycle: diracx-a -> diracx-b -> diracx-c -> "
        r"diracx-a",
    ):
        load_graph(tmp_path)


def test_missing_sibling(tmp_path: Path) -> None:
    write_recipe(tmp_path, "diracx-core")
    p = write_recipe(tmp_path, "diracx-db", ["diracx-core", "diracx-testing"])
    with pytest.raises(DxError) as e:
        load_graph(tmp_path)
    msg = str(e.value)
    assert str(p) in msg and "diracx-testing" in msg and "no recipe" in msg


def test_version_mismatch_lists_every_recipe(tmp_path: Path) -> None:
    write_recipe(tmp_path, "diracx-core", version="1.0")
    write_recipe(tmp_path, "diracx-db", ["diracx-core"], version="1.0")
    write_recipe(tmp_path, "diracx-api", version="1.1")
    with pytest.raises(DxError) as e:
        load_graph(tmp_path)
    msg = str(e.value)
    assert "1.0: diracx-core" in msg and "diracx-db" in msg and "1.1: diracx-api" in msg
    assert "context.version" in msg


def test_plain_data_and_selection_helpers() -> None:
    nodes = [
        Node("core", "1", {"run": ["python >=3.11"]}),
        Node("db", "1", {"run": ["core ==1", "sqlalchemy >=2"]}),
        Node("client", "1", {"run": ["core ==1"]}),
        Node("logic", "1", {"host": ["db"], "run": ["core"]}),
        Node("api", "1", {"run": ["client"]}),
        Node("all", "1", {"run": ["api", "logic"], "test": ["all"]}),
    ]
    g = build_graph(nodes)
    assert g.levels == [["core"], ["client", "db"], ["api", "logic"], ["all"]]
    assert g.up_to("logic") == ["core", "db", "logic"]
    assert g.up_to("core") == ["core"]
    assert g.only(["all", "core"]) == ["core", "all"]
    assert g.dependents("client") == ["api", "all"]
    assert g.dependents("all") == []
    assert g.dependencies("all") == ["core", "client", "db", "api", "logic"]
    with pytest.raises(DxError, match="did you mean client"):
        g.up_to("clinet")
    with pytest.raises(DxError, match="no such recipe"):
        g.only(["core", "nothing-like-it"])


def test_self_requirement_outside_tests_is_a_cycle() -> None:
    with pytest.raises(DxError, match="dependency cycle: a -> a"):
        build_graph([Node("a", "1", {"run": ["a"]})])


def test_duplicate_package() -> None:
    with pytest.raises(DxError, match="both build a"):
        build_graph([Node("a", "1", path="x/recipe.yaml"), Node("a", "1", path="y/recipe.yaml")])


def test_renderings() -> None:
    g = build_graph([Node("diracx-core", "1"), Node("diracx", "1", {"run": ["diracx-core"]})])
    assert g.mermaid() == (
        'flowchart TD\n    diracx_core["diracx-core"]\n    diracx["diracx"]\n'
        "    diracx_core --> diracx\n"
    )
    dot = g.dot()
    assert '"diracx-core" -> "diracx";' in dot and dot.startswith("digraph")


def test_cli_graph_json_and_errors(tmp_path: Path) -> None:
    from conftest import DXFORGE as dxforge

    write_recipe(tmp_path, "diracx-core")
    write_recipe(tmp_path, "diracx", ["diracx-core"])
    out = subprocess.run(
        [dxforge, "graph", "--json", "--root", tmp_path], capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout) == {
        "status": "ok",
        "levels": [["diracx-core"], ["diracx"]],
        "order": ["diracx-core", "diracx"],
        "edges": [["diracx-core", "diracx"]],
    }
    out = subprocess.run(
        [dxforge, "graph", "--format", "mermaid", "--root", tmp_path],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 0 and "diracx_core --> diracx" in out.stdout
    write_recipe(tmp_path, "diracx-core", ["diracx"])
    out = subprocess.run([dxforge, "graph", "--root", tmp_path], capture_output=True, text=True)
    assert out.returncode == 1
    assert "dependency cycle: diracx -> diracx-core -> diracx" in " ".join(out.stderr.split())


def test_errors_are_printed_literally(tmp_path: Path) -> None:
    """Data in messages is never read as markup: `[otel]` and `[bold]` reach the user as is."""
    from typer.testing import CliRunner

    from dxforge.cli.main import app

    write_recipe(tmp_path, "diracx-core")
    write_construct(tmp_path)
    res = CliRunner().invoke(
        app,
        [
            "build",
            "--root",
            str(tmp_path),
            "--only",
            "diracx-core[otel]",
            "--channel",
            str(tmp_path),
        ],
    )
    assert res.exit_code == 1
    assert "--only diracx-core[otel]: no such recipe" in " ".join(res.stderr.split())
    res = CliRunner().invoke(app, ["graph", "--root", str(tmp_path), "--format", "[bold]x[/]"])
    assert res.exit_code == 1 and "--format [bold]x[/]: choose mermaid or dot" in res.stderr
