"""Unit tests of ``dxforge build``'s fingerprints and channel list, on small synthetic recipes."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from conftest import write_construct

from dxforge.builder.build import (
    BuildOptions,
    build_channels,
    fingerprints,
    run_build,
    scratch_dirs,
)
from dxforge.core.util import DxError
from dxforge.project.graph import graph_of
from dxforge.project.layout import Layout
from dxforge.project.recipes import SOURCES_ENV, load_recipes

SHA = {n: f"{i:x}" * 64 for i, n in enumerate("abcd", start=1)}


def lay(root: Path) -> Layout:
    write_construct(root)
    return Layout(root, root / "build")


SEED = "file:///nonexistent/seed"


def write_recipe(
    root: Path, name: str, run: tuple[str, ...] = (), sha256: str | None = None, extra: str = ""
) -> Path:
    """A minimal valid recipe ``dxt-<name>`` whose run requirements are ``dxt-<run...>``."""
    deps = "".join(f"    - dxt-{d} ==${{{{ version }}}}\n" for d in run)
    path = root / "recipes" / f"dxt-{name}" / "recipe.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(
        f"""\
context:
  version: "1.0"
  python_min: "3.11"
package:
  name: dxt-{name}
  version: ${{{{ version }}}}
source:
  url: ${{{{ env.get("DXFORGE_SOURCES", default="file:///x") }}}}/dxt_{name}-1.0.tar.gz
  sha256: {sha256 or SHA[name]}
build:
  noarch: python
  script: echo
requirements:
  host:
    - python
  run:
    - python >=${{{{ python_min }}}}
{deps}about:
  summary: package {name}
{extra}"""
    )
    return path


@pytest.fixture(autouse=True)
def _sources_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """load_recipe sets DXFORGE_SOURCES in this process: restore it after each test."""
    monkeypatch.setenv(SOURCES_ENV, "file:///unset")


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """a <- b <- c (b requires a, c requires b) and an independent d."""
    root = tmp_path / "proj"
    write_recipe(root, "a")
    write_recipe(root, "b", ("a",))
    write_recipe(root, "c", ("b",))
    write_recipe(root, "d")
    return root


def prints(root: Path, channels: list[str] | None = None) -> dict[str, str]:
    recipes = load_recipes(root, (root / "build/sources").as_uri())
    chans = channels or [(root / "build/channels/dxforge").as_uri(), SEED]
    return {
        k[len("dxt-") :]: v
        for k, v in fingerprints(graph_of(recipes), {r.name: r for r in recipes}, chans).items()
    }


def changed(before: dict[str, str], after: dict[str, str]) -> set[str]:
    assert before.keys() == after.keys()
    return {n for n in before if before[n] != after[n]}


def test_stable_and_distinct(project: Path) -> None:
    first = prints(project)
    assert set(first) == {"a", "b", "c", "d"}
    assert len(set(first.values())) == 4
    assert all(len(v) == 64 for v in first.values())
    assert prints(project) == first


def test_stable_when_the_project_moves(project: Path, tmp_path: Path) -> None:
    """Nothing in a fingerprint depends on where the project (or its source cache) lives."""
    moved = tmp_path / "elsewhere"
    shutil.copytree(project, moved)
    assert prints(moved) == prints(project)


def test_recipe_text_change_propagates_to_dependents_only(project: Path) -> None:
    before = prints(project)
    path = project / "recipes/dxt-b/recipe.yaml"
    path.write_text(
        "# a comment changes nothing rendered, but the recipe text\n" + path.read_text()
    )
    after_comment = prints(project)
    assert changed(before, after_comment) == {"b", "c"}
    path.write_text(path.read_text().replace("summary: package b", "summary: package B"))
    assert changed(after_comment, prints(project)) == {"b", "c"}


def test_leaf_change_touches_only_the_leaf(project: Path) -> None:
    before = prints(project)
    write_recipe(project, "c", ("b",), extra="  description: more words\n")
    assert changed(before, prints(project)) == {"c"}


def test_other_recipe_files_count(project: Path) -> None:
    before = prints(project)
    (project / "recipes/dxt-a/build.sh").write_text("echo\n")
    after = prints(project)
    assert changed(before, after) == {"a", "b", "c"}
    (project / "recipes/dxt-a/build.sh").write_text("echo 2\n")
    assert changed(after, prints(project)) == {"a", "b", "c"}


def test_source_sha256_change(project: Path) -> None:
    before = prints(project)
    write_recipe(project, "a", sha256="f" * 64)
    assert changed(before, prints(project)) == {"a", "b", "c"}
    write_recipe(project, "d", sha256="e" * 64)
    write_recipe(project, "a")
    assert changed(before, prints(project)) == {"d"}


def test_dependency_fingerprint_is_part_of_the_dependent(project: Path) -> None:
    """c does not name a, yet a change to a reaches c through b."""
    before = prints(project)
    write_recipe(project, "a", extra="  description: new\n")
    assert changed(before, prints(project)) == {"a", "b", "c"}


def test_new_dependency_edge(project: Path) -> None:
    before = prints(project)
    write_recipe(project, "d", ("a",))
    assert changed(before, prints(project)) == {"d"}
    after = prints(project)
    write_recipe(project, "a", extra="  description: new\n")
    assert changed(after, prints(project)) == {"a", "b", "c", "d"}


def test_channels_change_everything(project: Path, tmp_path: Path) -> None:
    out = (project / "build/channels/dxforge").as_uri()
    before = prints(project, [out, SEED])
    assert changed(before, prints(project, [out, "conda-forge"])) == set("abcd")
    assert changed(before, prints(project, [out, SEED, "conda-forge"])) == set("abcd")
    assert changed(before, prints(project, [out, "conda-forge", SEED])) == set("abcd")
    # the output channel is where the fingerprints are kept, not an input
    assert prints(project, [(tmp_path / "other").as_uri(), SEED]) == before


def test_seed_content_fingerprint_counts(project: Path, tmp_path: Path) -> None:
    """A local channel carrying dxforge-seed.json is identified by its content, not its path."""
    seed = tmp_path / "seed"
    seed.mkdir()
    out = (project / "build/channels/dxforge").as_uri()
    (seed / "dxforge-seed.json").write_text(json.dumps({"fingerprint": "1" * 64}))
    before = prints(project, [out, seed.as_uri()])
    assert prints(project, [out, seed.as_uri()]) == before
    (seed / "dxforge-seed.json").write_text(json.dumps({"fingerprint": "2" * 64}))
    assert changed(before, prints(project, [out, seed.as_uri()])) == set("abcd")
    (seed / "dxforge-seed.json").write_text("{not json")  # falls back to the URL
    assert changed(before, prints(project, [out, seed.as_uri()])) == set("abcd")


def test_build_channels_default_is_the_seed(tmp_path: Path) -> None:
    seed = tmp_path / "build/channels/seed"
    seed.mkdir(parents=True)
    out = tmp_path / "build/channels/dxforge"
    opts = BuildOptions(layout=lay(tmp_path), out=out)
    assert build_channels(opts) == [out.as_uri(), seed.as_uri()]


def test_build_channels_option_replaces_the_seed(tmp_path: Path) -> None:
    (tmp_path / "build/channels/seed").mkdir(parents=True)
    local = tmp_path / "mirror"
    local.mkdir()
    out = tmp_path / "out"
    opts = BuildOptions(
        layout=lay(tmp_path),
        out=out,
        channels=["conda-forge", str(local), "https://example.invalid/c"],
    )
    assert build_channels(opts) == [
        out.as_uri(),
        "conda-forge",
        local.as_uri(),
        "https://example.invalid/c",
    ]


def test_build_channels_without_seed_without_option(tmp_path: Path) -> None:
    """A fresh clone that skipped `dxforge seed`: the error names the channel and the fix."""
    with pytest.raises(DxError) as e:
        build_channels(BuildOptions(layout=lay(tmp_path), out=tmp_path / "out"))
    msg = str(e.value)
    assert str(tmp_path / "build/channels/seed") in msg
    assert "does not exist" in msg and "dxforge seed" in msg and "--channel" in msg


@pytest.mark.parametrize("given", ["/nonexistent/seed", "./no-such-channel"])
def test_build_channels_missing_local_channel(tmp_path: Path, given: str) -> None:
    (tmp_path / "build/channels/seed").mkdir(parents=True)
    with pytest.raises(DxError, match=rf"channel {given} does not exist"):
        build_channels(BuildOptions(layout=lay(tmp_path), out=tmp_path / "out", channels=[given]))


def _opts(root: Path, **kw: object) -> BuildOptions:
    (root / "build/channels/seed").mkdir(parents=True, exist_ok=True)
    return BuildOptions(layout=lay(root), **kw)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"only": ["dxt-b", "zzz"]}, r"^--only zzz: no such recipe; known: dxt-a, dxt-d, "),
        ({"only": ["dxt-bb"]}, r"^--only dxt-bb: no such recipe; did you mean dxt-b\?"),
        ({"up_to": "dxt-cc"}, r"^--up-to dxt-cc: no such recipe; did you mean dxt-c\?"),
        ({"up_to": "dxt-c", "only": ["dxt-a"]}, r"^--only and --up-to .*give one of them"),
    ],
)
def test_selection_errors_name_the_option(project: Path, kw: dict, message: str) -> None:
    with pytest.raises(DxError, match=message):
        run_build(_opts(project, **kw))
    assert not (project / "build/channels/dxforge").exists()  # refused before anything


def test_recipe_yaml_error_names_file_line_and_fix(project: Path) -> None:
    path = project / "recipes/dxt-b/recipe.yaml"
    path.write_text(path.read_text().replace('python_min: "3.11"', 'python_min: "3.11'))
    with pytest.raises(DxError) as e:
        run_build(_opts(project))
    msg = str(e.value)
    assert msg.startswith(f"{path}: line ") and "not valid YAML" in msg and "fix the syntax" in msg
    assert not (project / "build/channels/dxforge").exists()


def test_recipe_duplicate_key_names_the_line(project: Path) -> None:
    path = project / "recipes/dxt-d/recipe.yaml"
    path.write_text(path.read_text().replace("build:\n", "build:\n  number: 1\n  number: 2\n"))
    with pytest.raises(DxError, match=rf'^{path}: line 12, column 3: .*duplicate key "number"'):
        run_build(_opts(project))


def test_recipe_render_error_names_file_and_line(project: Path) -> None:
    path = project / "recipes/dxt-c/recipe.yaml"
    path.write_text(path.read_text().replace("name: dxt-c", "name: ${{ nme }}"))
    with pytest.raises(DxError, match=rf"^{path}: line 5, column 9: .*undefined.*fix the recipe"):
        run_build(_opts(project))


def test_scratch_dirs_per_output_channel(tmp_path: Path) -> None:
    """Builds into two channels hold two locks, so they must not share work dirs or logs."""
    layout = lay(tmp_path)
    default = scratch_dirs(layout, tmp_path / "build/channels/dxforge")
    assert default == (tmp_path / "build/work", tmp_path / "build/logs")
    one = scratch_dirs(layout, tmp_path / "a/out")
    two = scratch_dirs(layout, tmp_path / "b/out")
    assert len({default[0], one[0], two[0]}) == 3 and len({default[1], one[1], two[1]}) == 3
    assert one[0].parent == tmp_path / "build/work" and one[1].parent == tmp_path / "build/logs"
    assert scratch_dirs(layout, tmp_path / "a/../a/out") == one


def _package(tmp_path: Path, name: str) -> Path:
    """A real, tiny noarch .conda, written 0600 as rattler-build writes its packages."""
    import rattler_build

    files = tmp_path / f"{name}-files"
    (files / "share").mkdir(parents=True)
    (files / "share" / f"{name}.txt").write_text(name)
    res = rattler_build.assemble_package(
        name=name,
        version="1.0",
        target_platform="noarch",
        build_string="0",
        output_dir=str(tmp_path / "rattler" / "noarch"),
        files_dir=str(files),
        noarch="generic",
    )
    pkg = Path(res.path)
    pkg.chmod(0o600)
    return pkg


def test_packages_are_readable_by_all_wherever_written(tmp_path: Path) -> None:
    """Issue 22: another user installs from the channel README advertises. A package built
    0600 goes into the user cache, comes back from it and into the channel 0644; so does an
    entry the cache held 0600 from before, and a package already in the channel at 0600 once
    the channel is published again."""
    from dxforge.builder.build import _from_cache, _publish, _to_cache

    cache, out = tmp_path / "cache", tmp_path / "channel"
    one, two = _package(tmp_path, "dxt-one"), _package(tmp_path, "dxt-two")
    _to_cache(cache, "f" * 64, one, {"name": "dxt-one"})
    entry = cache / "builds" / ("f" * 24) / "noarch" / one.name
    assert entry.stat().st_mode & 0o777 == 0o644
    entry.chmod(0o600)  # written by an older dxforge
    found = _from_cache(cache, "f" * 64)
    assert found is not None and found[0] == entry and entry.stat().st_mode & 0o777 == 0o644
    _publish(out, {"dxt-one": one}, {})
    (out / "noarch" / one.name).chmod(0o600)
    _publish(out, {"dxt-two": two}, {})
    modes = {p.name: p.stat().st_mode & 0o777 for p in out.rglob("*.conda")}
    assert modes == {one.name: 0o644, two.name: 0o644}
    assert out.stat().st_mode & 0o777 == 0o755
