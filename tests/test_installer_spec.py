"""construct.yaml loading and validation (dxforge.installer.spec)."""

from __future__ import annotations

from pathlib import Path

import pytest

from dxforge.installer.spec import (
    CONSTRUCTOR_KEYS,
    SUPPORTED,
    eval_selector,
    load_construct,
    platform_namespace,
)
from dxforge.util import DxError

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
name: DIRACOS
version: 1.2.3
channels:
  - ./chan
specs:
  - python 3.11.*
"""


def write(tmp_path: Path, text: str) -> Path:
    (tmp_path / "post.sh").write_text("#!/bin/sh\n")
    p = tmp_path / "construct.yaml"
    p.write_text(text)
    return p


def error_of(tmp_path: Path, text: str) -> str:
    with pytest.raises(DxError) as e:
        load_construct(write(tmp_path, text))
    return str(e.value)


def recipes_version() -> str:
    """The DiracX version the repository's recipes are at (all agree; the graph tests check)."""
    from ruamel.yaml import YAML

    recipe = ROOT / "recipes/diracx/recipe.yaml"
    return str(YAML(typ="safe").load(recipe.read_text())["context"]["version"])


def test_repository_construct_yaml() -> None:
    spec = load_construct(ROOT / "construct.yaml")
    assert spec.name == "DIRACOS"
    assert spec.specs == ["python 3.11.*", "pip", "git", f"diracx =={recipes_version()}"]
    assert spec.spec_names == ["python", "pip", "git", "diracx"]
    assert spec.virtual_specs == ["__glibc >=2.31"] and spec.glibc == "2.31"
    assert spec.batch_mode is True
    assert spec.default_prefix == "${PWD}/diracos"
    assert spec.post_install == ROOT / "installer/post_install.sh"
    assert spec.license_file is not None and spec.license_file.is_file()
    assert spec.installer_filename == f"DIRACOS-{spec.version}-Linux-x86_64.sh"
    assert spec.channel_sources() == [
        (ROOT / "build/channels/dxforge").as_uri(),
        (ROOT / "build/channels/seed").as_uri(),
    ]
    assert spec.conda_default_channels == ["conda-forge"]


def test_repository_versions_agree_with_recipes() -> None:
    spec = load_construct(ROOT / "construct.yaml")
    version = recipes_version()
    assert spec.version == version
    assert spec.installer_filename == f"DIRACOS-{version}-Linux-x86_64.sh"
    assert f"diracx =={version}" in spec.specs


def test_minimal_defaults(tmp_path: Path) -> None:
    (tmp_path / "chan").mkdir()
    spec = load_construct(write(tmp_path, BASE))
    assert spec.specs == ["python 3.11.*"]
    assert spec.installer_filename == "DIRACOS-1.2.3-Linux-x86_64.sh"
    assert spec.default_prefix == "${PWD}/diracos"
    assert spec.channel_sources() == [(tmp_path / "chan").as_uri()]
    assert spec.batch_mode is False and spec.post_install is None


@pytest.mark.parametrize(
    ("selector", "kept"),
    [("linux", True), ("not linux", False), ("linux64", True), ("osx", False), ("win", False),
     ("linux and not aarch64", True), ("(osx or win) and x86_64", False), ("unix", True)],
)
def test_selectors_for_linux64(tmp_path: Path, selector: str, kept: bool) -> None:
    spec = load_construct(write(tmp_path, BASE + f"  - voms  # [{selector}]\n"))
    assert ("voms" in spec.specs) is kept
    assert eval_selector(selector, platform_namespace()) is kept


def test_selector_keeps_line_numbers(tmp_path: Path) -> None:
    text = BASE + "  - gfal2  # [osx]\n  - 'numpy >=>1'\n"
    msg = error_of(tmp_path, text)
    assert "construct.yaml:8:" in msg and "numpy >=>1" in msg


def test_selector_on_quoted_value(tmp_path: Path) -> None:
    spec = load_construct(write(tmp_path, BASE + "  - 'voms >=2.1'  # [linux]\n"))
    assert spec.specs[-1] == "voms >=2.1"


def test_unknown_selector_name(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE + "  - voms  # [linnux]\n")
    assert ":7:" in msg and "linnux" in msg and "did you mean `linux`" in msg


def test_selector_rejects_code(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE + "  - voms  # [__import__('os')]\n")
    assert ":7:" in msg and "selectors may only use" in msg


def test_unsupported_constructor_key(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE + "pre_install: pre.sh\n")
    assert "construct.yaml:7:" in msg
    assert "`pre_install` is a constructor key that dxforge does not support" in msg
    assert "remove it" in msg


def test_unknown_key_suggests_nearest(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE + "chanels:\n  - x\n")
    assert ":7:" in msg and "unknown key `chanels`" in msg and "did you mean `channels`" in msg
    msg = error_of(tmp_path, BASE + "post_instal: post.sh\n")
    assert "did you mean `post_install`" in msg


def test_every_supported_key_is_a_constructor_key() -> None:
    assert set(SUPPORTED) <= CONSTRUCTOR_KEYS


@pytest.mark.parametrize("key", sorted(CONSTRUCTOR_KEYS - set(SUPPORTED)))
def test_unsupported_constructor_keys_are_named_not_unknown(tmp_path: Path, key: str) -> None:
    """A constructor key dxforge does not implement is refused as such (with the line), never
    reported as a typo, nor silently ignored."""
    msg = error_of(tmp_path, BASE + f"{key}: x\n")
    assert f":7: `{key}` is a constructor key that dxforge does not support" in msg
    assert "unknown key" not in msg


@pytest.mark.parametrize("key", ["name", "version", "channels", "specs"])
def test_required_keys(tmp_path: Path, key: str) -> None:
    lines = BASE.splitlines(keepends=True)
    start = next(i for i, line in enumerate(lines) if line.startswith(key + ":"))
    end = start + 1
    while end < len(lines) and lines[end].startswith("  "):
        end += 1
    msg = error_of(tmp_path, "".join(lines[:start] + lines[end:]))
    assert f"required key `{key}` is missing" in msg


@pytest.mark.parametrize(
    ("extra", "expect"),
    [
        ("batch_mode: 'yes'\n", "`batch_mode` must be true or false, not str"),
        ("specs_extra: 1\n", "unknown key"),
        ("register_envs: true\n", "never register environments"),
        ("keep_pkgs: true\n", "`keep_pkgs: true` is not supported"),
        ("installer_type: pkg\n", "builds `sh` installers only"),
        ("check_path_spaces: false\n", "always refuse prefixes with blanks"),
        ("installer_filename: DIRACOS.run\n", "ending in .sh"),
        ("default_prefix: '$(whoami)/x'\n", "no blanks, quotes or command substitution"),
        ("default_prefix: '/opt/my dir'\n", "no blanks"),
        ("post_install: missing.sh\n", "which is not a file"),
        ("conda_default_channels: conda-forge\n", "must be a list"),
        ("script_env_variables:\n  1BAD: x\n", "not a valid environment variable name"),
        ("install_path_exists_error_text: 'say \"no\"'\n", "double quotes"),
    ],
)
def test_bad_values(tmp_path: Path, extra: str, expect: str) -> None:
    msg = error_of(tmp_path, BASE + extra)
    assert expect in msg
    assert "construct.yaml:" in msg


def test_float_version_says_quote_it(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE.replace("version: 1.2.3", "version: 0.70"))
    assert "construct.yaml:2:" in msg and "quote it" in msg


def test_invalid_spec(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE + "  - 'numpy >=>1'\n")
    assert ":7:" in msg and "not a valid match spec" in msg


def test_duplicate_specs_are_kept_for_the_solver(tmp_path: Path) -> None:
    """DIRACOS2's construct.yaml lists numpy twice (`numpy <2` and `numpy`); constructor hands
    both to the solver, which satisfies both: so does dxforge, naming the duplicates."""
    (tmp_path / "chan").mkdir()
    text = BASE + "  - numpy <2\n  - pip\n  - numpy\n  - python >=3.10\nexclude:\n"
    spec = load_construct(write(tmp_path, text))
    assert spec.specs == ["python 3.11.*", "numpy <2", "pip", "numpy", "python >=3.10"]
    assert spec.duplicates == ["numpy", "python"]


def test_empty_lists(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE.replace("  - python 3.11.*\n", "  []\n").replace(
        "specs:\n", "specs:"))
    assert "`specs` is empty" in msg


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE + "batch_mode: [true\n")
    assert "not valid YAML" in msg and "construct.yaml:" in msg


def test_jinja_refused(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE.replace("1.2.3", "{{ environ['V'] }}"))
    assert ":2:" in msg and "jinja" in msg


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DxError, match="no such file"):
        load_construct(tmp_path / "nope.yaml")


def test_full_dxforge_style_file(tmp_path: Path) -> None:
    (tmp_path / "LICENSE").write_text("GPL\n")
    text = BASE + """\
  - pip
  - voms  # [linux]
exclude:
  - pip
post_install: post.sh
default_prefix: "${HOME}/x"
batch_mode: true
register_envs: false
write_condarc: true
conda_default_channels: [conda-forge]
license_file: LICENSE
installer_filename: X-1.sh
keep_pkgs: false
transmute_file_type: .conda
ignore_duplicate_files: true
script_env_variables:
  SITE: "it's here"
install_path_exists_error_text: "{CHOSEN_PATH} exists"
company: DIRAC
"""
    spec = load_construct(write(tmp_path, text))
    assert spec.specs == ["python 3.11.*", "pip", "voms"]
    assert spec.exclude == ["pip"]
    assert spec.script_env_variables == {"SITE": "it's here"}
    assert spec.where("specs").endswith("construct.yaml:5")
    assert spec.ignore_duplicate_files is True


def test_channel_option_replaces_all_but_the_build_channel(tmp_path: Path) -> None:
    from dxforge.installer.stage import channel_list
    from dxforge.layout import Layout

    layout = Layout(ROOT, ROOT / "build")
    spec = load_construct(ROOT / "construct.yaml")
    own = (ROOT / "build/channels/dxforge").as_uri()
    assert channel_list(spec, None, layout) == spec.channel_sources()
    assert channel_list(spec, ["conda-forge"], layout) == [own, "conda-forge"]
    local = tmp_path / "chan"
    local.mkdir()
    assert channel_list(spec, [str(local), own], layout) == [local.as_uri(), own]
    other = load_construct(write(tmp_path, BASE))
    assert channel_list(other, ["conda-forge"], layout) == ["conda-forge"]


def test_build_channels_follow_the_build_directory(tmp_path: Path) -> None:
    """construct.yaml names ./build/channels/...: with another build directory, those come
    from there; other channels stay as written."""
    from dxforge.installer.stage import channel_list
    from dxforge.layout import Layout

    spec = load_construct(ROOT / "construct.yaml")
    layout = Layout(ROOT, tmp_path / "b")
    assert channel_list(spec, None, layout) == [
        (tmp_path / "b/channels/dxforge").as_uri(), (tmp_path / "b/channels/seed").as_uri()
    ]
    assert channel_list(spec, ["conda-forge"], layout) == [
        (tmp_path / "b/channels/dxforge").as_uri(), "conda-forge"
    ]


def test_staging_prefix_length(tmp_path: Path) -> None:
    from dxforge.installer.stage import STAGE_PREFIX_LEN, staging_prefix

    p = staging_prefix(tmp_path / "out", "DIRACOS")
    assert len(str(p)) == STAGE_PREFIX_LEN >= 200
    assert all(len(part) < 255 for part in p.parts)  # NAME_MAX
    assert str(p).startswith(str(tmp_path / "out/.stage/DIRACOS_placehold"))
    with pytest.raises(DxError, match="too long"):
        staging_prefix(tmp_path / ("d" * 230), "DIRACOS")
