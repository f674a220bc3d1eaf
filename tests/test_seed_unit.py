"""Fast unit tests of the seed: conda-forge names, specifiers, markers, extras, the seed plan,
wheel conversion (entry points, placeholders, stripping) and Debian versions. The target is the
tests' own (CPython 3.11.7); the project's comes from construct.yaml."""

from __future__ import annotations

import json
import os
import shutil
import zipfile
from pathlib import Path

import conda_package_handling.api as cph
import pytest
from packaging.requirements import Requirement
from wheel_factory import BINARY_TAG, build_wheel

from dxforge.conda.package import PLACEHOLDER
from dxforge.core.specs import conda_spec, conda_specifier, pep440_specifier, split_spec
from dxforge.core.util import DxError
from dxforge.isolation.apt import conda_version
from dxforge.project.target import Target
from dxforge.pypa import names
from dxforge.pypa.names import (
    conda_name,
    conda_run_requirements,
    expand,
    marker_applies,
    pypi_name,
)
from dxforge.seed.plan import plan
from dxforge.seed.wheels import (
    conversion_spec,
    convert_wheel,
    glibc_requirement,
    plain_entry_point,
    python_requirement,
    read_wheel,
)

TARGET = Target("3.11", "3.11.7")
SHEBANG = f"#!{PLACEHOLDER}/bin/python3.11"

# --- names ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pypi", "conda"),
    [
        ("msgpack", "msgpack-python"),
        ("redis", "redis-py"),
        ("typing-extensions", "typing_extensions"),
        ("Typing_Extensions", "typing_extensions"),
        ("typing.extensions", "typing_extensions"),
        ("docker", "docker-py"),
        ("dask", "dask-core"),
        ("requests", "requests"),
        ("PyYAML", "pyyaml"),
        ("Pydantic_Settings", "pydantic-settings"),
        ("hatch-vcs", "hatch-vcs"),
    ],
)
def test_conda_name(pypi: str, conda: str) -> None:
    assert conda_name(pypi) == conda


@pytest.mark.parametrize(
    ("conda", "pypi"),
    [
        ("msgpack-python", "msgpack"),
        ("redis-py", "redis"),
        ("typing_extensions", "typing-extensions"),
        ("dask-core", "dask"),
        ("pyyaml", "pyyaml"),
        ("hatchling", "hatchling"),
    ],
)
def test_pypi_name_inverts_conda_name(conda: str, pypi: str) -> None:
    assert pypi_name(conda) == pypi
    assert conda_name(pypi_name(conda)) == conda


def test_name_map_is_data_with_its_source() -> None:
    from importlib import resources

    text = resources.files("dxforge").joinpath("data", "conda_forge_names.yaml").read_text()
    assert "grayskull" in text and "strategy/config.yaml" in text
    mapping = names.name_map()
    assert len(mapping) > 50
    # keys are canonical PyPI names, so lookups of any spelling agree
    assert all(k == k.lower() and "_" not in k and "." not in k for k in mapping)


# --- specifiers -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("pep440", "conda"),
    [
        (">= 3.10", ">=3.10"),
        (">=1.0 , <2", ">=1.0,<2"),
        ("~=1.4.2", ">=1.4.2,1.4.*"),
        ("~=1.4", ">=1.4,1.*"),
        ("==2.*", "2.*"),
        ("==1.0", "==1.0"),
        ("===1.0", "==1.0"),
        ("!=1.5", "!=1.5"),
        ("!=1.5.*", "!=1.5.*"),
        (">=1,>=1,<2", ">=1,<2"),
        ("<2,>=1", ">=1,<2"),
        ("", ""),
    ],
)
def test_conda_specifier(pep440: str, conda: str) -> None:
    import rattler

    assert conda_specifier(pep440) == conda
    if conda:  # what we write must be a valid conda match spec
        assert str(rattler.MatchSpec(f"foo {conda}").version) == conda


def test_conda_specifier_is_stable_and_merges_duplicates() -> None:
    from packaging.specifiers import SpecifierSet

    merged = SpecifierSet(">=1.0") & SpecifierSet("<2") & SpecifierSet(">=1.0")
    assert conda_specifier(merged) == ">=1.0,<2"
    assert conda_specifier("<2,>=1.0") == conda_specifier(">=1.0, <2")
    assert conda_spec("python", ">= 3.10") == "python >=3.10"
    assert conda_spec("python") == "python"


@pytest.mark.parametrize(
    ("requires_python", "spec"),
    [
        (">= 3.8", "python >=3.8"),
        (">=3.9, <4", "python >=3.9,<4"),
        (" >= 3.10 , != 3.10.1 ", "python >=3.10,!=3.10.1"),
        ("~=3.11", "python >=3.11,3.*"),
        ("", "python"),
        ("   ", "python"),
        (None, "python"),
    ],
)
def test_python_requirement_allows_blanks(requires_python: str | None, spec: str) -> None:
    assert python_requirement(requires_python) == spec


# --- markers and extras -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("marker", "applies"),
    [
        ('sys_platform == "linux"', True),
        ('sys_platform == "win32"', False),
        ('sys_platform != "darwin"', True),
        ('python_version >= "3.11"', True),
        ('python_version < "3.11"', False),
        ('python_version < "3.12"', True),
        ('python_full_version >= "3.11.0"', True),
        ('platform_machine == "x86_64"', True),
        ('platform_machine == "aarch64"', False),
        ('os_name == "nt"', False),
        ('os_name == "posix"', True),
        ('platform_system == "Windows"', False),
        ('implementation_name == "cpython"', True),
        ('platform_python_implementation == "PyPy"', False),
        ('extra == "test"', False),
    ],
)
def test_markers_for_linux_64_cp311(marker: str, applies: bool) -> None:
    assert marker_applies(Requirement(f"x; {marker}").marker, TARGET) is applies


def test_extra_markers_need_the_extra() -> None:
    marker = Requirement('x; extra == "test" and sys_platform == "linux"').marker
    assert marker_applies(marker, TARGET, ["test"]) and not marker_applies(marker, TARGET)
    win = Requirement('x; extra == "test" and sys_platform == "win32"').marker
    assert not marker_applies(win, TARGET, ["test"])


def test_windows_and_old_python_deps_are_dropped() -> None:
    run = conda_run_requirements(
        [
            "pywin32>=300; sys_platform == 'win32'",
            "colorama; os_name == 'nt'",
            "tomli>=1.1; python_version < '3.11'",
            "uvloop; sys_platform != 'win32' and platform_python_implementation == 'CPython'",
            "exceptiongroup; python_version<'3.11'",
            "typing-extensions>=4.6; python_version < '3.13'",
            "pytest; extra == 'test'",
        ],
        TARGET,
    )
    assert run == {"uvloop": "", "typing_extensions": ">=4.6"}
    on_313 = conda_run_requirements(
        ["typing-extensions>=4.6; python_version < '3.13'"], Target("3.13", "3.13.5")
    )
    assert on_313 == {}


EXTRAS_LOOKUP = {
    "redis": ["async-timeout>=4; python_version < '3.11.3'", "hiredis>=3.0; extra == 'hiredis'"],
    "uvicorn": [
        "click>=7.0",
        "h11>=0.8",
        "httptools>=0.6.3; extra == 'standard'",
        "uvloop>=0.15.1; (sys_platform != 'win32' and sys_platform != 'cygwin') and "
        "extra == 'standard'",
        "colorama>=0.4; sys_platform == 'win32' and extra == 'standard'",
        "websockets[speedups]>=10.4; extra == 'standard'",
    ],
    "websockets": ["cffi>=1.0; extra == 'speedups'", "unrelated; extra == 'other'"],
    "cycle": ["cycle[b]; extra == 'a'", "cycle[a]; extra == 'b'", "msgpack; extra == 'b'"],
}


def test_extras_expand_recursively() -> None:
    got = expand(Requirement("uvicorn[standard]>=0.30"), EXTRAS_LOOKUP.__getitem__, TARGET)
    assert [str(r) for r in got] == [
        "uvicorn>=0.30",
        "httptools>=0.6.3",
        "uvloop>=0.15.1",
        "websockets>=10.4",
        "cffi>=1.0",
    ]


def test_extras_cycles_terminate() -> None:
    got = expand(Requirement("cycle[a]"), EXTRAS_LOOKUP.__getitem__, TARGET)
    assert sorted({str(r) for r in got}) == ["cycle", "msgpack"]


def test_extra_without_metadata_is_an_error() -> None:
    with pytest.raises(DxError, match=r"where: redis\[hiredis\] asks for extra \[hiredis\]"):
        expand(Requirement("redis[hiredis]"), None, TARGET, "where")


def test_conda_run_requirements_merge_and_rename() -> None:
    run = conda_run_requirements(
        [
            "redis[hiredis] >= 5.0",
            "redis<6",
            "msgpack >= 1.0",
            "Typing_Extensions",
            "uvicorn[standard]; python_version >= '3.8'",
            "pytest; extra == 'test'",
        ],
        TARGET,
        EXTRAS_LOOKUP.__getitem__,
    )
    assert run == {
        "redis-py": ">=5.0,<6",
        "hiredis": ">=3.0",
        "msgpack-python": ">=1.0",
        "typing_extensions": "",
        "uvicorn": "",
        "httptools": ">=0.6.3",
        "uvloop": ">=0.15.1",
        "websockets": ">=10.4",
        "cffi": ">=1.0",
    }


# --- the seed plan ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "split"),
    [
        ("python 3.11.*", ("python", "3.11.*")),
        ("pydantic >=2.10", ("pydantic", ">=2.10")),
        ("aiohttp >=3.0, <4", ("aiohttp", ">=3.0,<4")),
        ("aiohttp >= 3.0 , < 4", ("aiohttp", ">=3.0,<4")),
        ("aiohttp>=3.0,<4", ("aiohttp", ">=3.0,<4")),
        ("aiohttp>=3.0, <4", ("aiohttp", ">=3.0,<4")),
        ("pip", ("pip", "")),
        ("foo =1.2", ("foo", "=1.2")),
        ("foo!=1.2", ("foo", "!=1.2")),
    ],
)
def test_split_spec(spec: str, split: tuple[str, str]) -> None:
    assert split_spec(spec) == split


def test_split_spec_rejects_build_strings_naming_the_place() -> None:
    with pytest.raises(DxError, match=r"recipe\.yaml: 'foo 1.0 py_0': a build string"):
        split_spec("foo 1.0 py_0", "recipe.yaml")
    with pytest.raises(DxError, match="recipe.yaml"):
        split_spec("  ", "recipe.yaml")


@pytest.mark.parametrize(
    ("conda", "pep440"),
    [
        ("3.11.*", "==3.11.*"),
        ("=1.2", "==1.2.*"),
        ("=1.2.*", "==1.2.*"),
        ("1.2", "==1.2"),
        (">=1,<2", ">=1,<2"),
        (">=1,", ">=1"),
        ("!=1.5", "!=1.5"),
        ("*", ""),
        ("", ""),
    ],
)
def test_pep440_specifier(conda: str, pep440: str) -> None:
    assert pep440_specifier(conda, "w") == pep440


def test_pep440_specifier_errors_name_the_place() -> None:
    with pytest.raises(DxError, match=r"^recipe\.yaml: foo: version spec '>=1\|<0' uses '\|'"):
        pep440_specifier(">=1|<0", "recipe.yaml: foo")
    with pytest.raises(DxError, match=r"^recipe\.yaml: foo: cannot translate"):
        pep440_specifier(">=1.0.*.x", "recipe.yaml: foo")


def test_plan_excludes_siblings_virtual_and_runtime_packages(tmp_path: Path) -> None:
    reqs = {
        "a/recipe.yaml: requirements.host": ["python 3.11.*", "pip", "hatchling"],
        "a/recipe.yaml: requirements.run": [
            "python >=3.11",
            "diracx-core ==9.8.0",
            "msgpack-python >=1.0",
            "redis-py >=5, <6",
            "typing_extensions",
            "__glibc >=2.17",
            "python_abi 3.11.*",
        ],
        "b/recipe.yaml: requirements.run": ["msgpack-python >=1.0", "msgpack-python <2", "pip"],
    }
    sp = plan(tmp_path, {"diracx-core", "a", "b"}, reqs, ["python 3.11.*", "pip", "voms"])
    assert sp.requirements == [
        "hatchling",
        "msgpack>=1.0,<2",
        "pip",
        "redis>=5,<6",
        "typing-extensions",
    ]
    assert sp.sources["msgpack-python >=1.0"] == [
        "a/recipe.yaml: requirements.run",
        "b/recipe.yaml: requirements.run",
    ]
    assert sp.sources["voms"] == [f"{tmp_path / 'construct.yaml'}: specs"]
    assert not any(k.startswith(("diracx-core", "__glibc")) for k in sp.sources)
    assert not any(r.startswith(("voms", "python", "openssl", "git")) for r in sp.requirements)


def test_plan_error_names_the_recipe(tmp_path: Path) -> None:
    with pytest.raises(DxError, match=r"^r/recipe\.yaml: requirements\.run: foo >=1\|<0"):
        plan(tmp_path, set(), {"r/recipe.yaml: requirements.run": ["foo >=1|<0"]}, [])


# --- wheels -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tags", "glibc"),
    [
        (["cp311-cp311-manylinux_2_17_x86_64", "cp311-cp311-manylinux2014_x86_64"], "2.17"),
        (["cp311-cp311-manylinux_2_28_x86_64"], "2.28"),
        (["cp311-cp311-manylinux1_x86_64", "cp311-cp311-manylinux_2_5_x86_64"], "2.5"),
        (["cp311-cp311-manylinux2010_x86_64"], "2.12"),
        (["cp311-cp311-manylinux_2_34_x86_64", "cp311-cp311-manylinux_2_17_x86_64"], "2.17"),
        (["cp311-cp311-musllinux_1_2_x86_64"], None),
        (["py3-none-any"], None),
    ],
)
def test_glibc_requirement(tags: list[str], glibc: str | None) -> None:
    assert glibc_requirement(tags) == (f"__glibc >={glibc}" if glibc else None)


@pytest.mark.parametrize(
    ("entry", "plain"),
    [
        ("tiny = tiny_tool:main", "tiny = tiny_tool:main"),
        ("tiny=tiny_tool.cli:app.run", "tiny = tiny_tool.cli:app.run"),
        ("tiny = tiny_tool:main [extra1, extra2]", "tiny = tiny_tool:main"),
        ("tiny = tiny_tool:main[extra]", "tiny = tiny_tool:main"),
    ],
)
def test_plain_entry_point(entry: str, plain: str) -> None:
    assert plain_entry_point(entry) == plain


def pure_wheel(tmp_path: Path) -> Path:
    return build_wheel(
        tmp_path / "wheels",
        "Tiny-Tool",
        "1.2.0",
        requires_python=">= 3.9",
        requires=[
            "msgpack >= 1.0",
            "redis[hiredis]",
            "pywin32; sys_platform == 'win32'",
            "pytest; extra == 'test'",
        ],
        extras=["test"],
        console_scripts={"tiny": "tiny_tool:main", "tiny-sub": "tiny_tool.sub:run [extra]"},
        gui_scripts={"tiny-gui": "tiny_tool:main"},
        scripts={
            "tiny-run": b"#!python\nimport tiny_tool\ntiny_tool.main()\n",
            "tiny.sh": b"#!/bin/sh\necho plain\n",
        },
    )


def binary_wheel(tmp_path: Path) -> Path:
    return build_wheel(
        tmp_path / "wheels",
        "fast-thing",
        "0.3.1",
        tag=BINARY_TAG,
        requires=["typing-extensions>=4"],
        console_scripts={"fast": "fast_thing.cli:main"},
        scripts={"fast-run": b"#!python -u\nprint('fast')\n"},
        files={"fast_thing/_speed.cpython-311-x86_64-linux-gnu.so": b"\x7fELF\x02\x01\x00binary"},
    )


def test_read_wheel(tmp_path: Path) -> None:
    info = read_wheel(pure_wheel(tmp_path))
    assert (info.name, info.version, info.pure) == ("tiny-tool", "1.2.0", True)
    assert info.tags == ["py3-none-any"]
    assert info.entry_points == ["tiny = tiny_tool:main", "tiny-sub = tiny_tool.sub:run [extra]"]
    assert info.gui_entry_points == ["tiny-gui = tiny_tool:main"]
    assert info.dist_info == "Tiny_Tool-1.2.0.dist-info"
    assert info.data_dir == "Tiny_Tool-1.2.0.data"
    assert info.requires_python == ">= 3.9" and len(info.requires_dist) == 4
    binary = read_wheel(binary_wheel(tmp_path))
    assert binary.pure is False and binary.entry_points == ["fast = fast_thing.cli:main"]
    assert binary.tags == [
        "cp311-cp311-manylinux2014_x86_64",
        "cp311-cp311-manylinux_2_17_x86_64",
    ]


def test_py3_none_any_with_platlib_root_is_not_pure(tmp_path: Path) -> None:
    path = pure_wheel(tmp_path)
    patched = tmp_path / "patched" / path.name
    patched.parent.mkdir()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(patched, "w") as dst:
        for item in src.infolist():
            data = src.read(item)
            if item.filename.endswith("/WHEEL"):
                data = data.replace(b"Root-Is-Purelib: true", b"Root-Is-Purelib: false")
            dst.writestr(item, data)
    assert read_wheel(patched).pure is False


LOOKUP = {"redis": ["hiredis>=3.0; extra == 'hiredis'"]}


def test_conversion_spec_pure_is_noarch_python(tmp_path: Path) -> None:
    spec = conversion_spec(read_wheel(pure_wheel(tmp_path)), LOOKUP, TARGET)
    assert (spec.name, spec.version, spec.subdir, spec.noarch) == (
        "tiny-tool",
        "1.2.0",
        "noarch",
        "python",
    )
    assert spec.depends == ["python >=3.9", "hiredis >=3.0", "msgpack-python >=1.0", "redis-py"]
    assert spec.build.startswith("pyh") and spec.build.endswith("_0")
    # conda's link.json takes no extras: rattler refuses to link `module:func [extra]`
    assert spec.entry_points == [
        "tiny = tiny_tool:main",
        "tiny-sub = tiny_tool.sub:run",
        "tiny-gui = tiny_tool:main",
    ]
    assert spec.license == "MIT" and spec.summary
    # the build string follows the dependencies
    other = conversion_spec(read_wheel(pure_wheel(tmp_path)), {"redis": []}, TARGET)
    assert other.build != spec.build and "hiredis >=3.0" not in other.depends


def test_conversion_spec_binary_is_linux_64(tmp_path: Path) -> None:
    spec = conversion_spec(read_wheel(binary_wheel(tmp_path)), {}, TARGET)
    assert (spec.name, spec.subdir, spec.noarch) == ("fast-thing", "linux-64", None)
    assert spec.depends == [
        "python >=3.11,<3.12.0a0",
        "python_abi 3.11.* *_cp311",
        "typing_extensions >=4",
        "__glibc >=2.17",
    ]
    assert spec.build.startswith("py311h")


def test_conversion_needs_metadata_for_extras(tmp_path: Path) -> None:
    with pytest.raises(DxError, match=r"tiny-tool: needs the metadata of redis"):
        conversion_spec(read_wheel(pure_wheel(tmp_path)), {}, TARGET)


def unpack(conda: Path, dest: Path) -> Path:
    cph.extract(str(conda), dest_dir=str(dest))
    return dest


def paths_by_name(root: Path) -> dict[str, dict]:
    return {e["_path"]: e for e in json.loads((root / "info/paths.json").read_text())["paths"]}


def test_convert_pure_wheel(tmp_path: Path) -> None:
    conda = convert_wheel(pure_wheel(tmp_path), LOOKUP, tmp_path / "out", TARGET)
    assert conda == tmp_path / "out/noarch" / f"tiny-tool-1.2.0-{conda.stem.split('-')[-1]}.conda"
    assert sorted(p.name for p in (tmp_path / "out").rglob("*")) == ["noarch", conda.name]
    root = unpack(conda, tmp_path / "pkg")
    index = json.loads((root / "info/index.json").read_text())
    assert index["name"] == "tiny-tool" and index["version"] == "1.2.0"
    assert index["subdir"] == "noarch" and index["noarch"] == "python"
    assert index["depends"] == [
        "python >=3.9",
        "hiredis >=3.0",
        "msgpack-python >=1.0",
        "redis-py",
    ]
    link = json.loads((root / "info/link.json").read_text())
    assert link == {
        "noarch": {
            "type": "python",
            "entry_points": [
                "tiny = tiny_tool:main",
                "tiny-sub = tiny_tool.sub:run",
                "tiny-gui = tiny_tool:main",
            ],
        },
        "package_metadata_version": 1,
    }
    paths = paths_by_name(root)
    assert set(paths) == {
        "python-scripts/tiny-run",
        "python-scripts/tiny.sh",
        "site-packages/tiny_tool/__init__.py",
        *(
            f"site-packages/Tiny_Tool-1.2.0.dist-info/{f}"
            for f in ("INSTALLER", "METADATA", "RECORD", "WHEEL", "entry_points.txt")
        ),
    }
    script = paths["python-scripts/tiny-run"]
    assert script["prefix_placeholder"] == PLACEHOLDER and script["file_mode"] == "text"
    assert (root / "python-scripts/tiny-run").read_text().splitlines() == [
        SHEBANG,
        "import tiny_tool",
        "tiny_tool.main()",
    ]
    assert os.access(root / "python-scripts/tiny-run", os.X_OK)
    # files without the placeholder are not marked
    assert "prefix_placeholder" not in paths["python-scripts/tiny.sh"]
    assert "prefix_placeholder" not in paths["site-packages/tiny_tool/__init__.py"]
    assert (root / "site-packages/Tiny_Tool-1.2.0.dist-info/INSTALLER").read_text() == "conda\n"
    assert (root / "info/has_prefix").read_text() == f"{PLACEHOLDER} text python-scripts/tiny-run\n"
    assert (root / "info/files").read_text().splitlines() == sorted(paths)


def test_convert_binary_wheel(tmp_path: Path) -> None:
    conda = convert_wheel(binary_wheel(tmp_path), {}, tmp_path / "out", TARGET)
    assert conda.parent == tmp_path / "out/linux-64" and conda.name.startswith("fast-thing-0.3.1-")
    root = unpack(conda, tmp_path / "pkg")
    index = json.loads((root / "info/index.json").read_text())
    assert index["subdir"] == "linux-64" and "noarch" not in index
    assert "__glibc >=2.17" in index["depends"] and "python_abi 3.11.* *_cp311" in index["depends"]
    assert not (root / "info/link.json").exists()
    site = "lib/python3.11/site-packages"
    paths = paths_by_name(root)
    assert f"{site}/fast_thing/_speed.cpython-311-x86_64-linux-gnu.so" in paths
    assert f"{site}/fast_thing-0.3.1.dist-info/INSTALLER" in paths
    # the generated console script and the wheel's #!python script both carry the placeholder
    for name in ("bin/fast", "bin/fast-run"):
        assert paths[name]["prefix_placeholder"] == PLACEHOLDER, name
        assert paths[name]["file_mode"] == "text", name
        assert os.access(root / name, os.X_OK), name
    fast = (root / "bin/fast").read_text()
    assert fast.startswith(SHEBANG + "\n")
    assert "from fast_thing.cli import main" in fast and "sys.exit(main())" in fast
    assert (root / "bin/fast-run").read_text() == f"{SHEBANG} -u\nprint('fast')\n"
    so = paths[f"{site}/fast_thing/_speed.cpython-311-x86_64-linux-gnu.so"]
    assert "prefix_placeholder" not in so


@pytest.mark.skipif(not shutil.which("gcc"), reason="gcc is not installed")
def test_binary_wheels_lose_their_debug_info_and_keep_what_linking_needs(tmp_path: Path) -> None:
    """As ``auditwheel repair --strip``: no debug sections or static symbols are left, and the
    library still loads and its exported function still runs."""
    import ctypes
    import subprocess

    from dxforge.conda.elf import debug_sections

    src = tmp_path / "speed.c"
    src.write_text(
        "static int helper(int x) { return x * 2; }\nint fast_double(int x) { return helper(x); }\n"
    )
    so = tmp_path / "speed.so"
    subprocess.run(["gcc", "-g", "-O0", "-shared", "-fPIC", "-o", str(so), str(src)], check=True)
    assert debug_sections(so)
    name = "fast_thing/_speed.cpython-311-x86_64-linux-gnu.so"
    wheel = build_wheel(
        tmp_path / "wheels", "fast-thing", "0.3.1", tag=BINARY_TAG, files={name: so.read_bytes()}
    )
    root = unpack(convert_wheel(wheel, {}, tmp_path / "out", TARGET), tmp_path / "pkg")
    stripped = root / "lib/python3.11/site-packages" / name
    assert debug_sections(stripped) == []
    assert stripped.stat().st_size < so.stat().st_size
    assert ctypes.CDLL(str(stripped)).fast_double(21) == 42


def test_convert_damaged_wheel_names_it(tmp_path: Path) -> None:
    good = pure_wheel(tmp_path)
    bad = tmp_path / "bad" / good.name
    bad.parent.mkdir()
    bad.write_bytes(good.read_bytes()[:200])
    with pytest.raises(DxError, match=r"Tiny_Tool-1\.2\.0-py3-none-any\.whl: not a valid wheel"):
        convert_wheel(bad, LOOKUP, tmp_path / "out", TARGET)
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").rglob("*.conda"))


def test_wheel_with_unsafe_path_is_refused(tmp_path: Path) -> None:
    path = build_wheel(tmp_path / "w", "evil", "1.0", files={"../../etc/evil": b"x"})
    with pytest.raises(DxError, match=r"evil-1\.0-py3-none-any\.whl: unsafe path"):
        convert_wheel(path, {}, tmp_path / "out", TARGET)
    assert not list((tmp_path / "out").rglob("*.conda"))


# --- Debian versions -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("debian", "conda"),
    [
        ("2.1.0~rc3-4", "2.1.0rc3"),
        ("2.1.0~rc3-4+deb12u1", "2.1.0rc3"),
        ("1:2.1.0-1", "2.1.0"),
        ("2:2.1.0~rc3-4", "2.1.0rc3"),
        ("2.1.0", "2.1.0"),
        ("2.1.0-1ubuntu2", "2.1.0"),
    ],
)
def test_debian_conda_version(debian: str, conda: str) -> None:
    assert conda_version(debian) == conda


def test_resolve_errors_name_where_a_requirement_was_asked_for() -> None:
    from dxforge.seed.build import _asked_by
    from dxforge.seed.plan import SeedPlan

    sp = SeedPlan(
        requirements=["msgpack>=9", "pip"],
        sources={
            "msgpack-python >=9": ["recipes/diracx-tasks/recipe.yaml: requirements.run"],
            "pip": ["recipes/diracx-core/recipe.yaml: requirements.host"],
        },
    )
    text = _asked_by(sp, "ERROR: No matching distribution found for msgpack>=9")
    where = "recipes/diracx-tasks/recipe.yaml: requirements.run"
    assert f"msgpack-python >=9: asked for in {where}" in text
    assert "pip:" not in text
    assert _asked_by(sp, "network is down") == ""
