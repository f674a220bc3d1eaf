"""The nine real recipes: they render, agree on one version, form the expected graph, and follow
the Requires-Dist of the sdists they build (drift fails); plus the recipe checks."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dxforge.builder.fetch import fetch_sources, sdist_metadata
from dxforge.bump.drift import recipes_drift
from dxforge.core.util import DxError
from dxforge.project.graph import graph_of
from dxforge.project.recipes import SOURCES_ENV, Recipe, load_recipe, load_recipes, recipe_paths
from dxforge.project.target import project_target

ROOT = Path(__file__).resolve().parents[1]
TARGET = project_target(ROOT / "construct.yaml")
TEN = {
    "diracx-core",
    "diracx-db",
    "diracx-logic",
    "diracx-tasks",
    "diracx-client",
    "diracx-api",
    "diracx-cli",
    "diracx-routers",
    "diracx-testing",
    "diracx",
}
"""DiracX's packages, as conda-forge's diracx feedstock outputs them."""


@pytest.fixture(scope="module")
def recipes() -> list[Recipe]:
    return load_recipes(ROOT)


def test_the_ten_render_at_one_version(recipes: list[Recipe]) -> None:
    assert {r.name for r in recipes} == TEN
    versions = {r.version for r in recipes}
    assert len(versions) == 1, versions
    for r in recipes:
        d = r.rendered
        assert d["context"]["python_min"] == "3.11"
        assert d["build"]["noarch"] == "python" and d["build"]["number"] == 0
        assert d["build"]["script"]["env"] == {"SETUPTOOLS_SCM_PRETEND_VERSION": r.version}
        assert d["build"]["script"]["content"] == (
            "${{ PYTHON }} -m pip install . -vv --no-deps --no-build-isolation"
        )
        assert r.requirements["host"] == [
            f"python {TARGET.python}.*",
            "pip",
            "hatchling",
            "hatch-vcs",
        ]
        assert r.requirements["run"][0] == "python >=3.11"
        assert d["about"]["license"] == "GPL-3.0-only" and d["about"]["license_file"] == ["LICENSE"]
        assert d["about"]["summary"] and d["about"]["homepage"]
        py_tests = [t["python"] for t in d["tests"] if "python" in t]
        assert py_tests and py_tests[0]["imports"]
        assert py_tests[0].get("pip_check", True) is True
        assert py_tests[0]["python_version"] == TARGET.spec.split()[1]
        assert r.source_filename == f"{r.name.replace('-', '_')}-{r.version}.tar.gz"
        if r.name in ("diracx-cli", "diracx"):
            assert {"script": "dirac --help"} in d["tests"]


def test_sources_name_no_host(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(SOURCES_ENV, raising=False)
    r = load_recipe(ROOT / "recipes/diracx-core/recipe.yaml", TARGET)
    url = r.rendered["source"][0]["url"]
    assert url.startswith("file:///") and "run-dxforge-fetch" in url
    r = load_recipe(ROOT / "recipes/diracx-core/recipe.yaml", TARGET, tmp_path.as_uri())
    assert r.rendered["source"][0]["url"] == f"{tmp_path.as_uri()}/{r.source_filename}"


def test_real_levels(recipes: list[Recipe]) -> None:
    g = graph_of(recipes)
    assert g.levels == [
        ["diracx-core"],
        ["diracx-client", "diracx-db", "diracx-testing"],
        ["diracx-api", "diracx-logic"],
        ["diracx-cli", "diracx-tasks"],
        ["diracx", "diracx-routers"],
    ]
    assert g.dependents("diracx-client") == ["diracx-api", "diracx-cli", "diracx"]
    assert g.up_to("diracx-cli") == ["diracx-core", "diracx-client", "diracx-api", "diracx-cli"]


@pytest.mark.e2e
def test_run_requirements_follow_requires_dist(recipes: list[Recipe], tmp_path: Path) -> None:
    """Drift guard, with the drift model `dxforge bump` reports and applies: each recipe's run
    list equals its sdist's Requires-Dist through the conda-forge name map (sdists fetched from
    the configured index; extras of third-party packages read from the index)."""
    cache = tmp_path / "sources"
    fetch_sources(recipes, cache)
    drift = recipes_drift(recipe_paths(ROOT), cache, TARGET)
    assert all(not d.upstream.incomplete for d in drift.values()), {
        n: d.upstream.notes for n, d in drift.items()
    }
    changed = {n: [c.line() for c in d.changes] for n, d in drift.items() if d.changes}
    assert not changed, "recipes drifted from Requires-Dist:\n" + "\n".join(
        f"{name} ({'; '.join(lines)})" for name, lines in sorted(changed.items())
    )
    for r in recipes:  # console scripts exactly as upstream declares them
        scripts = sdist_metadata(cache / r.source_filename).scripts
        declared = (r.rendered["build"].get("python") or {}).get("entry_points") or []
        assert declared == [f"{k} = {v}" for k, v in scripts.items()], r.name


def test_drift_is_reported() -> None:
    from dxforge.bump.drift import compute_drift
    from dxforge.bump.recipedoc import read_recipe

    core = read_recipe(ROOT / "recipes/diracx-core/recipe.yaml")
    expected = {i.name: i.spec for i in core.run or [] if i.name}
    assert compute_drift(core, expected, core.version) == []
    expected.pop("sh")
    pydantic = expected["pydantic"]
    expected["pydantic"] = ">=99"
    expected["newdep"] = ""
    assert [c.line() for c in compute_drift(core, expected, core.version)] == [
        "+ newdep",
        f"~ pydantic: {pydantic} -> >=99",
        "- sh",
    ]


def current(key: str) -> str:
    """``context.version`` or ``source.sha256`` as diracx-core's recipe has it now."""
    from dxforge.bump.recipedoc import read_recipe

    doc = read_recipe(ROOT / "recipes/diracx-core/recipe.yaml")
    return {"version": doc.version, "sha256": doc.sha256}[key]


def _copy(tmp_path: Path, name: str = "diracx-core") -> Path:
    dest = tmp_path / name / "recipe.yaml"
    dest.parent.mkdir(parents=True)
    shutil.copy(ROOT / "recipes/diracx-core/recipe.yaml", dest)
    return dest


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        ('  version: "{version}"\n', "", "key context.version: missing"),
        ('  python_min: "3.11"\n', "", "key context.python_min: missing"),
        (
            '  version: "{version}"',
            "  version: 0.10",
            "context.version: YAML reads it as a number (0.1), not text; quote the value",
        ),
        ("    - cachetools\n", "    - cachetools\n    - diracx-db >=0.6\n", "diracx-db ==${{"),
        ("    - cachetools\n", "    - cachetools\n    - diracx-db\n", "key requirements.run"),
        ('env.get("DXFORGE_SOURCES", default=', 'env.get("OTHER", default=', "key source.url"),
        ("sha256: {sha256}", "sha256: xx", "key source.sha256"),
    ],
)
def test_recipe_checks_name_file_and_key(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = _copy(tmp_path)
    text = path.read_text()
    old = old.format(version=current("version"), sha256=current("sha256"))
    assert old in text
    path.write_text(text.replace(old, new, 1))
    with pytest.raises(DxError) as e:
        load_recipe(path, TARGET)
    assert str(path) in str(e.value) and message in str(e.value)


def test_recipe_directory_must_match_package(tmp_path: Path) -> None:
    path = _copy(tmp_path, "diracx-kore")
    with pytest.raises(DxError, match="key package.name: 'diracx-core' differs"):
        load_recipe(path, TARGET)


def test_the_bump_reads_the_recipes_the_build_renders() -> None:
    """Every recipe's editable view comes from the build's rendering: the same text, and the
    sdist of its version as rattler-build renders it; the one ``${{ }}`` evaluator gives the
    same file name from the url template (what a bump computes for a new version)."""
    from dxforge.bump.recipedoc import doc_of

    for recipe in load_recipes(ROOT):
        doc = doc_of(recipe)
        assert doc.recipe is recipe and doc.text == recipe.path.read_text()
        assert (doc.name, doc.version) == (recipe.name, recipe.version)
        assert doc.sdist_name(doc.version) == recipe.source_filename
        doc.recipe = None  # the url template, evaluated by dxforge.core.expr
        assert doc.sdist_name(doc.version) == recipe.source_filename, recipe.path
