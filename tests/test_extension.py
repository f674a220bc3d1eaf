"""`dxforge extension init`: a distribution project from an extension the test makes, served on
a 127.0.0.1 index; the DiracX distribution it builds on is this repository's (its version read
from recipes/diracx/recipe.yaml)."""

from __future__ import annotations

import hashlib
import shutil
import stat
import subprocess
import sys
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT, project_graph
from extension_factory import publish
from local_index import LocalIndex, serve, serve_directory
from wheel_factory import build_wheel, metadata, tar_gz

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
    kw = {"base": ROOT, **kw}
    opts = InitOptions(name=name, dest=tmp_path / "myext-dist", index_url=index.url, **kw)  # type: ignore[arg-type]
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
    assert config(project).enabled == config(ROOT).enabled  # the DiracX distribution's
    tool = tomllib.loads((project / "pyproject.toml").read_text())["tool"]["dxforge"]
    assert set(tool) >= {"extension", "diracx", "base", "base-channel", "base-seed", "ci"}


def test_the_recipes_render_and_form_a_graph(tmp_path: Path, index: LocalIndex) -> None:

    init(tmp_path, index)
    graph, recipes = project_graph(tmp_path / "myext-dist")
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


def test_init_names_what_the_end_to_end_serves(tmp_path: Path, index: LocalIndex) -> None:
    from dxforge.extension.e2e import extension_check, is_extension_project

    init(tmp_path, index)
    project = tmp_path / "myext-dist"
    cfg = read_project(project)
    # the metapackage and the package with a service and an access policy; its service
    assert cfg.e2e.server == ["myext", "myext-routers"] and cfg.e2e.services == ["hello"]
    assert cfg.e2e.command == [] and cfg.e2e.expect == ""
    assert is_extension_project(project) and not is_extension_project(ROOT)
    check = extension_check(cfg, {"myext": EXT_VERSION, "myext-routers": EXT_VERSION})
    assert check.specs == [f"myext =={EXT_VERSION}", f"myext-routers =={EXT_VERSION}"]
    assert (check.name, check.services, check.command) == ("myext", ["hello"], [])
    with pytest.raises(DxError, match="server names myext-routers, which has no recipe"):
        extension_check(cfg, {"myext": EXT_VERSION})


@pytest.mark.parametrize(
    ("e2e", "error"),
    [
        ('command = ["hello", "greet"]', "command is set but expect is empty"),
        ('services = "hello"', "services must be a list of strings"),
        ("expect = 3", "expect must be a string"),
    ],
)
def test_bad_end_to_end_settings_are_named(tmp_path: Path, e2e: str, error: str) -> None:
    (tmp_path / "pyproject.toml").write_text(
        '[tool.dxforge]\nextension = "myext"\ndiracx = "1.0"\nbase-channel = "file:///c"\n'
        f'base-seed = "file:///s"\n\n[tool.dxforge.e2e]\n{e2e}\n'
    )
    with pytest.raises(DxError, match=error) as e:
        read_project(tmp_path)
    assert str(tmp_path / "pyproject.toml") in str(e.value)


def test_missing_routes_reads_the_openapi_paths() -> None:
    from dxforge.checks.endtoend import missing_routes, server_specs
    from dxforge.project.construct import project_target

    doc = {"paths": {"/api/hello/": {}, "/api/jobs/search": {}, "/api/hellos": {}}}
    assert missing_routes(doc, ["hello", "jobs"]) == []
    assert missing_routes(doc, ["hello", "lhcb", "hell"]) == ["lhcb", "hell"]
    assert missing_routes({}, ["hello"]) == ["hello"]
    target = project_target(ROOT / "construct.yaml")
    plain = server_specs("9.9.9", target)
    assert server_specs("9.9.9", target, ["myext ==1.0"]) == [*plain, "myext ==1.0"]


def _diracx_release(index: LocalIndex, base: Path, version: str) -> None:
    """Every package of the DiracX distribution at ``base`` as an sdist of ``version`` with its
    core metadata; diracx-core gains a requirement (the drift DiracX's bump must report)."""
    for recipe in sorted((base / "recipes").glob("*/recipe.yaml")):
        doc = read_recipe(recipe)
        requires = ["dxforge-newdep>=1"] if doc.name == "diracx-core" else []
        md = metadata(doc.name, version, requires, ">=3.11")
        top = doc.sdist_name(version).removesuffix(".tar.gz")
        data = tar_gz(top, {"PKG-INFO": md})
        index.add_file(doc.name, f"{top}.tar.gz", data, metadata=md.encode())


def test_bump_follows_the_extension_and_moves_diracx_with_its_pin(tmp_path: Path) -> None:
    import json

    from conftest import run_dxforge

    x, y = diracx_version(), "99.1.0"  # y: a synthetic DiracX release the extension moves to
    base = tmp_path / "diracx"  # this project's DiracX distribution, its recipes at x
    for part in ("recipes", "installer"):
        shutil.copytree(ROOT / part, base / part)
    shutil.copy2(ROOT / "construct.yaml", base)
    before = {p: p.read_bytes() for p in base.rglob("*") if p.is_file()}
    with serve() as idx:
        publish(idx, tmp_path / "d1", "myext", EXT_VERSION, x, otel=False)
        opts = InitOptions("myext", tmp_path / "myext", base, index_url=idx.url)
        init_extension(opts)
        project = tmp_path / "myext"
        # a release on the same DiracX: the recipes move, the pin and the base stay
        publish(idx, tmp_path / "d2", "myext", "1.2.4", x, otel=False)
        res = json.loads(run_dxforge("bump", "--index-url", idx.url, "--json", cwd=project).stdout)
        assert (res["status"], res["target"], res["base"]) == ("updated", "1.2.4", None)
        assert all(not any(p["drift"].values()) for p in res["packages"]), res["packages"]
        assert read_project(project).diracx == x
        # a release on a newer DiracX: the base moves with it, with DiracX's drift report
        publish(idx, tmp_path / "d3", "myext", "1.3.0", y, otel=False)
        _diracx_release(idx, base, y)
        body = tmp_path / "pr.md"
        args = ("bump", "--index-url", idx.url, "--json", "--pr-body", body)
        res = json.loads(run_dxforge(*args, cwd=project).stdout)
    assert (res["status"], res["current"], res["target"]) == ("updated", "1.2.4", "1.3.0")
    versions = {p.parent.name: read_recipe(p).version for p in project.glob("recipes/*/*.yaml")}
    assert set(versions.values()) == {"1.3.0"}, versions
    cli = read_recipe(project / "recipes/myext-cli/recipe.yaml")  # built from a wheel only
    assert cli.sdist_name("1.3.0") == "myext_cli-1.3.0-py3-none-any.whl"
    assert cli.sha256 == idx.entry("myext_cli-1.3.0-py3-none-any.whl").sha256
    core = (project / "recipes/myext-core/recipe.yaml").read_text()
    assert f"diracx-core =={y}" in core and f"=={x}" not in core
    assert read_project(project).diracx == y
    spec = load_construct(project / "construct.yaml")
    assert "myext ==1.3.0" in spec.specs and spec.installer_filename.startswith("myext-1.3.0-")
    # DiracX's own bump planned on the base: its drift, nothing written there
    b = res["base"]
    assert (b["current"], b["target"], b["status"]) == (x, y, "update-available")
    core_drift = next(p["drift"] for p in b["packages"] if p["name"] == "diracx-core")
    assert {"name": "dxforge-newdep", "kind": "added", "recipe": None, "upstream": ">=1"} in (
        core_drift["added"]
    )
    assert before == {p: p.read_bytes() for p in base.rglob("*") if p.is_file()}
    assert any(f"dxforge release --version {y} --root {base}" in n for n in res["notes"])
    text = body.read_text()
    assert "## myext 1.2.4 -> 1.3.0" in text and f"## DiracX moves with it: {x} -> {y}" in text
    assert "dxforge-newdep" in text


def _repodata(channel: Path, sub: str, records: list[dict]) -> None:
    import json

    (channel / sub).mkdir(parents=True, exist_ok=True)
    pkgs = {
        f"{r['name']}-{r['version']}-{r.get('build', 'h_0')}.conda": {
            "build": "h_0",
            "build_number": 0,
            "subdir": sub,
            **r,
        }
        for r in records
    }
    data = {"info": {"subdir": sub}, "packages": {}, "packages.conda": pkgs}
    (channel / sub / "repodata.json").write_text(json.dumps(data))


@pytest.fixture
def channels_served(tmp_path: Path) -> Iterator[str]:
    """DiracX's channel and its seed as repodata alone, served on 127.0.0.1: the diracx
    metapackage at this project's version (and an older one), its packages, and a seed with
    three Pythons (one the metapackage excludes), git and voms."""

    x = diracx_version()
    web = tmp_path / "web"
    family = [p.parent.name for p in (ROOT / "recipes").glob("*/recipe.yaml")]
    _repodata(
        web / "dxforge",
        "noarch",
        [{"name": "diracx", "version": x, "depends": ["python >=3.11,<3.14", f"diracx-core =={x}"]}]
        + [{"name": "diracx", "version": "0.0.1", "depends": ["python >=3.9"]}]
        + [{"name": n, "version": x, "depends": []} for n in family if n != "diracx"],
    )
    _repodata(web / "dxforge", "linux-64", [])
    _repodata(
        web / "seed",
        "linux-64",
        [
            {"name": "python", "version": v, "depends": ["__glibc >=2.17"]}
            for v in ("3.12.1", "3.13.5", "3.14.0")
        ]
        + [
            {"name": "git", "version": "2.47.3", "depends": ["__glibc >=2.28"]},
            {"name": "voms", "version": "2.1.0", "depends": ["__glibc >=2.17"]},
        ],
    )
    _repodata(web / "seed", "noarch", [])

    with serve_directory(web) as url:
        yield url


def test_a_base_given_as_a_channel_url_alone(
    tmp_path: Path, index: LocalIndex, channels_served: str
) -> None:
    x = diracx_version()
    channel, seed = f"{channels_served}/dxforge", f"{channels_served}/seed"
    res = init(tmp_path, index, base=None, base_channel=channel, base_seed=seed)
    assert res.diracx == x and res.base.version == x and res.base.root is None
    assert res.base.versions == ["0.0.1", x]
    assert "diracx-routers" in res.base.packages and "myext-routers" in [
        p.name for p in res.packages
    ]
    project = tmp_path / "myext-dist"
    spec = load_construct(project / "construct.yaml")
    # the metapackage allows <3.14: the seed's 3.13; git's build sets the glibc floor
    assert spec.specs[:4] == ["python 3.13.*", "pip", "git", "voms"], spec.specs
    assert spec.glibc == "2.28" and f"myext =={EXT_VERSION}" in spec.specs
    assert spec.post_install is None and not (project / "installer").exists()
    cfg = read_project(project)
    assert (cfg.base, cfg.base_channel, cfg.base_seed, cfg.diracx) == (None, channel, seed, x)
    assert any("installer files" in n for n in res.notes), res.notes
    core = (project / "recipes/myext-core/recipe.yaml").read_text()
    assert f"diracx-core =={x}" in core


def test_a_channel_base_needs_its_seed_and_a_diracx(
    tmp_path: Path, index: LocalIndex, channels_served: str
) -> None:
    with pytest.raises(DxError, match="give --base PATH .* or --base-channel URL with --base-seed"):
        init(tmp_path, index, base=None, base_channel=f"{channels_served}/dxforge")
    with pytest.raises(DxError, match="no diracx metapackage in its repodata"):
        init(
            tmp_path,
            index,
            base=None,
            base_channel=f"{channels_served}/seed",
            base_seed=f"{channels_served}/seed",
        )
    with pytest.raises(DxError, match="no python in the seed that diracx .* allows"):
        init(
            tmp_path,
            index,
            base=None,
            base_channel=f"{channels_served}/dxforge",
            base_seed=(tmp_path / "empty").as_uri(),
        )
    pythons = tmp_path / "pythons"  # a seed of Pythons alone, as a path
    _repodata(pythons, "linux-64", [{"name": "python", "version": "3.13.5", "depends": []}])
    with pytest.raises(DxError, match="the seed holds no voms, git; .* same Python, voms and git"):
        init(
            tmp_path,
            index,
            base=None,
            base_channel=f"{channels_served}/dxforge",
            base_seed=str(pythons),
        )
    assert not (tmp_path / "myext-dist").exists()


def test_the_command_takes_a_channel_base_alone(
    tmp_path: Path, index: LocalIndex, channels_served: str
) -> None:
    import json

    from conftest import run_dxforge

    args = ("extension", "init", "myext", "--index-url", index.url)
    bad = run_dxforge(
        *args, "--base-channel", f"{channels_served}/dxforge", cwd=tmp_path, check=False
    )
    assert bad.returncode == 1 and "--base-channel URL with --base-seed URL" in bad.stderr
    seed = ("--base-seed", f"{channels_served}/seed")
    res = run_dxforge(
        *args, "--base-channel", f"{channels_served}/dxforge", *seed, "--json", cwd=tmp_path
    )
    data = json.loads(res.stdout)
    assert data["base"]["root"] is None and data["diracx"] == diracx_version()


def test_the_extensions_ci_builds_and_ships_the_extension(
    tmp_path: Path, index: LocalIndex
) -> None:
    """`dxforge ci` in an extension's project: its packages built by `extension build` against
    DiracX at the pin, its installer's files kept and pilot-tested by its name, the pilot
    checks from the installed dxforge, no DiracX upstream suites nor images; the bot's pull
    request names the extension and may move its DiracX pin (pyproject.toml). The jobs start
    with the project's own scripts/setup.sh, which installs this dxforge."""
    from ruamel.yaml import YAML

    from dxforge import __version__
    from dxforge.checks.pilot import script_text
    from dxforge.ci.workflows import WORKFLOWS, run_ci
    from dxforge.project.layout import Layout
    from dxforge.project.model import Project

    res = init(tmp_path, index)
    project = tmp_path / "myext-dist"
    setup, main = project / "scripts/setup.sh", project / "scripts/run-main.sh"
    for script in (setup, main):
        assert script in res.files and script.stat().st_mode & stat.S_IXUSR
    assert "scripts/setup.sh\n" in main.read_text()
    assert f'"dxforge=={__version__}"' in setup.read_text()

    written = run_ci(Project.of(Layout.of(project))).written
    assert sorted(p.name for p in written) == ["build.yml", "release-bot.yml"]
    yaml = YAML(typ="safe")
    jobs = yaml.load((project / WORKFLOWS / "build.yml").read_text())["jobs"]
    assert "upstream-tests" not in jobs
    runs = {job: [s.get("run", "") for s in body["steps"]] for job, body in jobs.items()}
    assert "scripts/setup.sh" in runs["seed"]
    assert ".venv/bin/dxforge extension build --only myext-core" in runs["build-myext-core"]
    [keep] = [s for s in jobs["installer"]["steps"] if s.get("name", "").startswith("Keep")]
    assert keep["with"]["path"].splitlines() == [
        "build/installer/myext-*",
        "build/installer/pilot-test.sh",
    ]
    assert "ls installer/myext-*.sh" in runs["pilot"][-1]
    assert "installer/pilot-test.sh" in runs["pilot"][-1]
    bot = yaml.load((project / WORKFLOWS / "release-bot.yml").read_text())
    pr = bot["jobs"]["release"]["steps"][-1]["with"]
    assert pr["title"].startswith("myext v") and "pyproject.toml" in pr["add-paths"]
    # the step that writes the pilot checks takes them from the installed dxforge
    [step] = [r for r in runs["installer"] if "pilot-test.sh" in r]
    (tmp_path / "build/installer").mkdir(parents=True)
    python = str(Path(sys.executable).with_name("python"))
    subprocess.run(
        ["sh", "-ec", step.replace(".venv/bin/python", python)], cwd=tmp_path, check=True
    )
    assert (tmp_path / "build/installer/pilot-test.sh").read_text() == script_text()
