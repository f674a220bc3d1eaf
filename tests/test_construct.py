"""construct.yaml's schema (dxforge.project.construct): every constructor key is known and either
takes effect or is refused naming it; loading, selectors and validation."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from dxforge.core.util import DxError
from dxforge.project.construct import (
    KEYS,
    SCHEMA,
    eval_selector,
    load_construct,
    platform_namespace,
)

# constructor 3.16's CONSTRUCT.md lists these 78 keys (deprecated ones included)
CONSTRUCTOR_KEYS = frozenset(
    """
    $schema name version installer_filename installer_type license_file company
    reverse_domain_identifier uninstall_name build_outputs
    channels channels_remap mirrored_channels specs user_requested_specs virtual_specs exclude
    environment environment_file extra_envs menu_packages ignore_duplicate_files
    transmute_file_type install_in_dependency_order attempt_hardlinks
    write_condarc condarc conda_default_channels conda_channel_alias register_envs freeze_base
    keep_pkgs extra_files temp_extra_files
    batch_mode default_prefix default_prefix_domain_user default_prefix_all_users
    default_location_pkg pkg_domains pkg_name install_path_exists_error_text check_path_spaces
    check_path_length initialize_conda initialize_by_default register_python
    register_python_default uninstall_with_conda_exe
    pre_install pre_install_desc post_install post_install_desc pre_uninstall
    script_env_variables
    signing_identity_name notarization_identity_name windows_signing_tool signing_certificate
    welcome_image header_image icon_image default_image_color welcome_image_text
    header_image_text nsis_template welcome_file welcome_text readme_file readme_text
    post_install_pages conclusion_file conclusion_text progress_notifications
    docker_base_image docker_tag docker_labels docker_image_format
""".split()
)
HONOURED = sorted(k.name for k in SCHEMA if not k.refused)
REFUSED = sorted(k.name for k in SCHEMA if k.refused)

ROOT = Path(__file__).resolve().parents[1]

BASE = """\
name: DIRACOS
version: 1.2.3
channels:
  - ./chan
specs:
  - python 3.13.*
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


def test_the_schema_is_constructors_78_keys() -> None:
    assert len(CONSTRUCTOR_KEYS) == 78
    assert [k.name for k in SCHEMA] == list(KEYS) and set(KEYS) == CONSTRUCTOR_KEYS
    for k in SCHEMA:
        assert k.effect, k.name
        assert (k.fix and not k.kind and k.check is None) or (k.kind and k.check), k.name


def test_repository_construct_yaml() -> None:
    spec = load_construct(ROOT / "construct.yaml")
    assert spec.name == "DIRACOS"
    python = next(s for s in spec.specs if s.startswith("python "))
    assert spec.specs == [python, "pip", "git", "voms", f"diracx =={recipes_version()}"]
    assert spec.spec_names == ["python", "pip", "git", "voms", "diracx"]
    assert spec.virtual_specs == ["__glibc >=2.28"] and spec.glibc == "2.28"
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
    assert spec.specs == ["python 3.13.*"]
    assert spec.installer_filename == "DIRACOS-1.2.3-Linux-x86_64.sh"
    assert spec.default_prefix == "${PWD}/diracos"
    assert spec.channel_sources() == [(tmp_path / "chan").as_uri()]
    assert spec.batch_mode is False and spec.post_install is None


@pytest.mark.parametrize(
    ("selector", "kept"),
    [
        ("linux", True),
        ("not linux", False),
        ("linux64", True),
        ("osx", False),
        ("win", False),
        ("linux and not aarch64", True),
        ("(osx or win) and x86_64", False),
        ("unix", True),
    ],
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
    assert (
        "`pre_install` (a script run before the files are unpacked) is not supported by "
        "dxforge: do its work in the post_install script" in msg
    )


def test_unknown_key_suggests_nearest(tmp_path: Path) -> None:
    msg = error_of(tmp_path, BASE + "chanels:\n  - x\n")
    assert ":7:" in msg and "unknown key `chanels`" in msg and "did you mean `channels`" in msg
    msg = error_of(tmp_path, BASE + "post_instal: post.sh\n")
    assert "did you mean `post_install`" in msg


@pytest.mark.parametrize("key", REFUSED)
def test_refused_keys_are_named_with_the_fix(tmp_path: Path, key: str) -> None:
    """A constructor key dxforge does not implement is refused as such (with its line and what
    to do), never reported as a typo, nor silently ignored."""
    msg = error_of(tmp_path, BASE + f"'{key}': x\n")
    assert f":7: `{key}` ({KEYS[key].effect}) is not supported by dxforge: {KEYS[key].fix}" in msg
    assert "unknown key" not in msg


@pytest.mark.parametrize("key", HONOURED)
def test_honoured_keys_check_their_type(tmp_path: Path, key: str) -> None:
    """Every key that takes effect refuses a value of the wrong type, naming the key."""
    wrong = "{a: 1}" if dict not in KEYS[key].kind else "[1]"
    if key in ("specs", "name", "version", "channels"):
        text = "\n".join(
            ln
            for ln in BASE.splitlines()
            if not ln.startswith(key + ":")
            and not (key in ("specs", "channels") and ln.startswith("  - "))
        )
        text = text.replace("channels:", "channels:\n  - ./chan") if key == "specs" else text
        text += f"\n{key}: {wrong}\n"
        if key == "channels":
            text = text.replace("specs:", "specs:\n  - python 3.13.*")
    else:
        text = BASE + f"'{key}': {wrong}\n"
    msg = error_of(tmp_path, text)
    assert f"`{key}`" in msg and "construct.yaml:" in msg


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
        ("batch_mode: 'yes'\n", "`batch_mode`: must be true or false, not the text 'yes'"),
        ("specs_extra: 1\n", "unknown key"),
        ("register_envs: true\n", "never register environments"),
        ("keep_pkgs: true\ntransmute_file_type: .tar.bz2\n", "constructor allows `.conda`"),
        ("installer_type: pkg\n", "builds `sh` installers only"),
        ("company: ''\n", "`company`: is empty"),
        ("virtual_specs: ['__glibc 2.28']\n", "only `>=` is allowed for __glibc"),
        ("virtual_specs: ['__linux <5']\n", "only `>=` is allowed for __linux"),
        ("virtual_specs: ['__osx >=11']\n", "put it under an `# [osx]` selector"),
        ("virtual_specs: ['__cuda >=12']\n", "not __cuda; remove it"),
        ("virtual_specs: ['glibc >=2']\n", "starting with `__`"),
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


CHANNELS = "channels:\n  - ./chan\n"


@pytest.mark.parametrize(
    ("old", "new", "expect"),
    [
        (
            "version: 1.2.3",
            "version: 0.70",
            "`version`: must be text, not a number (0.7); quote it",
        ),
        (
            CHANNELS,
            "channels: {main: ./chan}\n",
            "`channels`: must be a list of channel names, URLs or paths, not a mapping",
        ),
        (
            CHANNELS,
            "channels: [./chan, {a: b}]\n",
            "`channels`: entry 2 must be non-empty text, not a mapping",
        ),
        (
            CHANNELS,
            "channels: [./chan, 1.5]\n",
            "entry 2 must be non-empty text, not a number (1.5)",
        ),
        (CHANNELS, "channels: [./chan, [x]]\n", "entry 2 must be non-empty text, not a list"),
        (
            CHANNELS,
            CHANNELS + "batch_mode: 1\n",
            "`batch_mode`: must be true or false, not a number (1)",
        ),
        (
            CHANNELS,
            CHANNELS + "script_env_variables: {A: [1]}\n",
            "the value of `A` must be text, not a list",
        ),
    ],
)
def test_type_errors_name_yaml_types_not_internal_ones(
    tmp_path: Path, old: str, new: str, expect: str
) -> None:
    """Issue 22: "not ScalarFloat", "not CommentedMap" become what YAML calls them."""
    assert old in BASE
    msg = error_of(tmp_path, BASE.replace(old, new))
    assert expect in msg, msg
    said = msg.split(": ", 1)[1]
    assert not re.search(r"Scalar|Commented|ordereddict|\b(float|int|str|dict|NoneType)\b", said)


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
    assert spec.specs == ["python 3.13.*", "numpy <2", "pip", "numpy", "python >=3.10"]
    assert spec.duplicates == ["numpy", "python"]


def test_empty_lists(tmp_path: Path) -> None:
    msg = error_of(
        tmp_path, BASE.replace("  - python 3.13.*\n", "  []\n").replace("specs:\n", "specs:")
    )
    assert "`specs`: is empty" in msg


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
    text = (
        BASE
        + """\
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
keep_pkgs: true
transmute_file_type: .conda
ignore_duplicate_files: false
virtual_specs:
  - __glibc >=2.17
  - __linux >=3.10
  - __unix
script_env_variables:
  SITE: "it's here"
install_path_exists_error_text: "{CHOSEN_PATH} exists"
company: DIRAC
"""
    )
    spec = load_construct(write(tmp_path, text))
    assert spec.specs == ["python 3.13.*", "pip", "voms"]
    assert spec.exclude == ["pip"]
    assert spec.script_env_variables == {"SITE": "it's here"}
    assert spec.where("specs").endswith("construct.yaml:5")
    assert spec.ignore_duplicate_files is False and spec.keep_pkgs is True
    assert spec.transmute_file_type == ".conda" and spec.company == "DIRAC"
    assert (spec.glibc, spec.linux) == ("2.17", "3.10")


def test_channel_option_replaces_all_but_the_build_channel(tmp_path: Path) -> None:
    from dxforge.installer.stage import channel_list
    from dxforge.project.layout import Layout

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
    from dxforge.project.layout import Layout

    spec = load_construct(ROOT / "construct.yaml")
    layout = Layout(ROOT, tmp_path / "b")
    assert channel_list(spec, None, layout) == [
        (tmp_path / "b/channels/dxforge").as_uri(),
        (tmp_path / "b/channels/seed").as_uri(),
    ]
    assert channel_list(spec, ["conda-forge"], layout) == [
        (tmp_path / "b/channels/dxforge").as_uri(),
        "conda-forge",
    ]


def test_staging_prefix_length(tmp_path: Path) -> None:
    from dxforge.installer.stage import STAGE_PREFIX_LEN, staging_prefix

    p = staging_prefix(tmp_path / "out", "DIRACOS")
    assert len(str(p)) == STAGE_PREFIX_LEN >= 200
    assert all(len(part) < 255 for part in p.parts)  # NAME_MAX
    assert str(p).startswith(str(tmp_path / "out/.stage/DIRACOS_placehold"))
    with pytest.raises(DxError, match="too long"):
        staging_prefix(tmp_path / ("d" * 230), "DIRACOS")


# --- DIRACOS2's own construct.yaml (issue 23) ------------------------------------------------

DIRACOS2 = ROOT / "tests/fixtures/diracos2/construct.yaml"


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ("transmute_file_type: .conda\n", "transmute_file_type"),
        ("keep_pkgs: false\ntransmute_file_type: .conda\n", "transmute_file_type"),
        ("ignore_duplicate_files: true\n", "ignore_duplicate_files"),
    ],
)
def test_keys_without_effect_are_noted_not_refused(tmp_path: Path, extra: str, key: str) -> None:
    spec = load_construct(write(tmp_path, BASE + extra))
    [note] = spec.notes
    assert note.startswith(f"{tmp_path / 'construct.yaml'}:")
    assert f"`{key}` has no effect here: " in note
    assert (
        load_construct(
            write(
                tmp_path,
                BASE + "keep_pkgs: true\ntransmute_file_type: .conda\n"
                "ignore_duplicate_files: false\n",
            )
        ).notes
        == []
    )


def test_diracos2_construct_yaml_passes_the_schema() -> None:
    """A DIRACOS2 maintainer tries their own file first: it loads, and the two keys that do
    nothing here are named with the reason, once each."""
    assert DIRACOS2.read_text().startswith("# DIRACOS2's construct.yaml, unedited")
    spec = load_construct(DIRACOS2)
    assert spec.name == "DIRACOS" and spec.channels == ["diracgrid", "conda-forge"]
    assert "python 3.11.*" in spec.specs and "htcondor-utils ~=25.0.0" in spec.specs
    assert "rrdtool" in spec.specs and "nordugrid-arc >=6.21" in spec.specs  # selectors kept
    assert spec.post_install == DIRACOS2.parent / "create_diracosrc.sh"
    notes = {n.split("`")[1]: n for n in spec.notes}
    assert set(notes) == {"transmute_file_type", "ignore_duplicate_files"}
    assert (
        f"{DIRACOS2}:25: `transmute_file_type` has no effect here: " in notes["transmute_file_type"]
        and "keep_pkgs: true" in notes["transmute_file_type"]
    )
    assert notes["ignore_duplicate_files"].startswith(f"{DIRACOS2}:31: ")


def _channel(root: Path, names: list[str]) -> Path:
    """A real local channel with one tiny noarch package of each name."""
    import rattler_build

    from dxforge.conda.channel import index

    for name in names:
        files = root / "files" / name
        files.mkdir(parents=True)
        (files / f"{name}.txt").write_text(name)
        rattler_build.assemble_package(
            name=name,
            version="99.0",
            target_platform="noarch",
            build_string="0",
            output_dir=str(root / "channel/noarch"),
            files_dir=str(files),
            noarch="generic",
        )
    index(root / "channel")
    return root / "channel"


def test_diracos2_reaches_the_solve_and_fails_only_on_what_the_channels_lack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`dxforge installer` on DIRACOS2's file with our channels: the notes once each, then an
    error naming exactly the specs no package in the channels matches."""
    from rattler import MatchSpec

    from dxforge.cli.main import main

    have = ["pip", "six", "certifi", "cachetools", "xmltodict", "pytest"]
    channel = _channel(tmp_path, have)
    with pytest.raises(SystemExit) as e:
        main(
            [
                "installer",
                str(DIRACOS2),
                "--channel",
                str(channel),
                "--compression",
                "gzip",
                "--out",
                str(tmp_path / "out"),
                "--build-dir",
                str(tmp_path / "build"),
            ]
        )
    out, err = capsys.readouterr()
    assert e.value.code == 1 and out == ""
    text = " ".join(err.split())
    for key in ("transmute_file_type", "ignore_duplicate_files"):
        assert text.count(f"`{key}` has no effect here") == 1, err
    spec = load_construct(DIRACOS2)
    lacking = [s for s in spec.specs if MatchSpec(s).name.normalized not in have]
    error = text[text.index("error: ") :]
    assert error.startswith(f"error: {DIRACOS2}:") and "no package in the channels" in error
    named = re.findall(r"`([^`]+)`", error.split(" matches ", 1)[1])
    assert named == lacking and len(lacking) == len(spec.specs) - len(have)
