"""``dxforge bump`` against a real HTTP index served on 127.0.0.1 (PEP 691 JSON, PEP 503 HTML,
PEP 658 metadata files), with small valid sdists and wheels built here."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_index import Dist, LocalIndex, serve
from typer.testing import CliRunner
from wheel_factory import metadata, tar_gz, zip_bytes

import dxforge.bump.write
from dxforge.bump import drift, edit, textedit
from dxforge.bump.recipedoc import parse_recipe, read_recipe
from dxforge.cli.main import app
from dxforge.core.specs import canonical_spec
from dxforge.core.util import DxError

# --------------------------------------------------------------------------------------------
# A package index on 127.0.0.1


def metadata_text(name: str, version: str, requires: list[str], python: str = ">=3.11") -> bytes:
    return metadata(name, version, requires, requires_python=python or None).encode()


def make_sdist(name: str, version: str, meta: bytes) -> bytes:
    """A small valid sdist: ``<dist>-<version>/`` with PKG-INFO and pyproject.toml."""
    pyproject = (
        f'[project]\nname = "{name}"\nversion = "{version}"\n'
        '[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n'
    )
    top = f"{name.replace('-', '_')}-{version}"
    return tar_gz(top, {"PKG-INFO": meta, "pyproject.toml": pyproject})


def make_wheel(name: str, version: str, meta: bytes) -> bytes:
    dist = f"{name.replace('-', '_')}-{version}.dist-info"
    wheel = "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n"
    return zip_bytes({f"{dist}/METADATA": meta, f"{dist}/WHEEL": wheel})


class Index(LocalIndex):
    """The local index, with releases built from their Requires-Dist."""

    def add(
        self,
        name: str,
        version: str,
        requires: list[str] | None = None,
        *,
        yanked: bool = False,
        metadata: bool = False,
        wheel: bool = False,
        wheel_metadata: bool = False,
        python: str = ">=3.11",
    ) -> Dist:
        meta = metadata_text(name, version, requires or [], python)
        dist = name.replace("-", "_")
        kw = {"yanked": yanked, "requires_python": ">=3.11"}
        sdist = self.add_file(
            name,
            f"{dist}-{version}.tar.gz",
            make_sdist(name, version, meta),
            metadata=meta if metadata else None,
            **kw,
        )
        if wheel:
            self.add_file(
                name,
                f"{dist}-{version}-py3-none-any.whl",
                make_wheel(name, version, meta),
                metadata=meta if wheel_metadata else None,
                **kw,
            )
        return sdist


@pytest.fixture
def index() -> Iterator[Index]:
    with serve(Index()) as idx:
        yield idx


# --------------------------------------------------------------------------------------------
# Synthetic recipes

CORE_RUN = [
    "cachetools",
    "diraccommon>=9.0.18",
    "pydantic>=2.10",
    "types-cachetools; extra == 'types'",
]
CLIENT_RUN = ["diracx-core", "httpx"]
META_RUN = ["diracx-core", "diracx-client"]
REQUIRES = {"diracx-core": CORE_RUN, "diracx-client": CLIENT_RUN, "diracx": META_RUN}

CORE_RECIPE = """\
# Recipe for diracx-core: dxforge bump keeps every byte outside the fields it edits.
schema_version: 1

context:
  name: diracx-core
  version: "1.4.0"   # lockstep with the other recipes
  python_min: '3.11'

package:
  name: ${{{{ name }}}}
  version: ${{{{ version }}}}

source:
  # the sdist, from the local source cache
  url: {src}/diracx_core-${{{{ version }}}}.tar.gz
  sha256: {sha}  # sdist

build:
  number: 3
  noarch: python
  script: ${{{{ PYTHON }}}} -m pip install . -vv --no-deps --no-build-isolation

requirements:
  host:
    - python ${{{{ python_min }}}}.*
    - pip
  run:
    - python >=${{{{ python_min }}}}
    # caching
    - cachetools   # no pin
    - diraccommon >=9.0.18
    - pydantic >=2.10

tests:
- python:
    imports: [diracx.core]
    pip_check: true

about:
  license: GPL-3.0-only
  summary: "Core:    a  long   line with odd   spacing that a dumper would fold, reflow, requote"
"""

CLIENT_RECIPE = """\
schema_version: 1
context:
    name: diracx-client
    version: 1.4.0
    python_min: "3.11"
package: {{name: "${{{{ name }}}}", version: "${{{{ version }}}}"}}
source:
    url: {src}/diracx_client-${{{{ version }}}}.tar.gz
    sha256: '{sha}'
build:
    number: 0
    noarch: python
requirements:
    run:
        - python >=${{{{ python_min }}}}
        - diracx-core ==${{{{ version }}}}
        - httpx
"""

META_RECIPE = """\
schema_version: 1

context:
  name: diracx
  version: "1.4.0"
  python_min: "3.11"

package:
  name: ${{{{ name }}}}
  version: ${{{{ version }}}}

source:
  url: {src}/${{{{ name }}}}-${{{{ version }}}}.tar.gz
  sha256: {sha}

build:
  number: 1
  noarch: python

requirements:
  run:
    - python >=${{{{ python_min }}}}
    - diracx-core ==${{{{ version }}}}
    - diracx-client ==${{{{ version }}}}
"""

SRC = '${{ env.get("DXFORGE_SOURCES", default="file:///nonexistent") }}'
CONSTRUCT = (
    "name: DIRACOS\nversion: 1.4.0\nchannels:\n  - conda-forge\n"
    "installer_filename: DIRACOS-1.4.0-Linux-x86_64.sh\nspecs:\n  - python 3.13.*\n"
    "  - diracx ==1.4.0\n"
)
TEMPLATES = {"diracx-core": CORE_RECIPE, "diracx-client": CLIENT_RECIPE, "diracx": META_RECIPE}


@pytest.fixture
def project(tmp_path: Path, index: Index) -> Path:
    """Three recipes at 1.4.0 whose sha256s match the index's 1.4.0 sdists."""
    for name, template in TEMPLATES.items():
        sdist = index.add(name, "1.4.0", REQUIRES[name])
        path = tmp_path / "recipes" / name / "recipe.yaml"
        path.parent.mkdir(parents=True)
        path.write_bytes(template.format(sha=sdist.sha256, src=SRC).encode())
    (tmp_path / "construct.yaml").write_text(CONSTRUCT)  # the target: markers are its
    return tmp_path


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.glob("recipes/*/*"))}


def run(root: Path, index: Index, *args: str) -> object:
    argv = [
        "bump",
        "--root",
        str(root),
        "--index-url",
        index.url,
        "--retries",
        "1",
        "--backoff",
        "0.01",
        "--timeout",
        "2",
        *args,
    ]
    return CliRunner().invoke(app, argv)


def add_all(
    index: Index, version: str, requires: dict[str, list[str]] | None = None, **kw: object
) -> dict[str, Dist]:
    return {n: index.add(n, version, (requires or REQUIRES)[n], **kw) for n in TEMPLATES}


# --------------------------------------------------------------------------------------------
# End-to-end through the CLI


def test_normal_bump_edits_only_the_three_fields(project: Path, index: Index) -> None:
    new = add_all(index, "1.5.0")
    index.add("diracx-core", "1.6.0", CORE_RUN)  # not published for all: not the target
    index.add("diracx-client", "1.6.0", CLIENT_RUN)
    before = snapshot(project)

    res = run(project, index)
    assert res.exit_code == 0, res.output
    assert "updated 3 recipes and construct.yaml to 1.5.0" in res.stdout

    after = snapshot(project)
    core_old = before["recipes/diracx-core/recipe.yaml"].decode()
    old_sha = {n: index.entry(f"{n.replace('-', '_')}-1.4.0.tar.gz").sha256 for n in TEMPLATES}
    expected = (
        core_old.replace('version: "1.4.0"   #', 'version: "1.5.0"   #')
        .replace(f"sha256: {old_sha['diracx-core']}  #", f"sha256: {new['diracx-core'].sha256}  #")
        .replace("  number: 3\n", "  number: 0\n")
    )
    assert after["recipes/diracx-core/recipe.yaml"].decode() == expected
    client_old = before["recipes/diracx-client/recipe.yaml"].decode()
    assert after["recipes/diracx-client/recipe.yaml"].decode() == (
        client_old.replace("version: 1.4.0\n", "version: 1.5.0\n").replace(
            f"'{old_sha['diracx-client']}'", f"'{new['diracx-client'].sha256}'"
        )
    )
    meta_old = before["recipes/diracx/recipe.yaml"].decode()
    assert after["recipes/diracx/recipe.yaml"].decode() == (
        meta_old.replace('version: "1.4.0"', 'version: "1.5.0"')
        .replace(old_sha["diracx"], new["diracx"].sha256)
        .replace("number: 1", "number: 0")
    )
    for name, e in new.items():  # the new sdists are in the source cache, verified
        cached = project / "build/sources" / e.filename
        assert cached.read_bytes() == e.data, name
    # what the recipes now say reads back through the same parser
    doc = read_recipe(project / "recipes/diracx-core/recipe.yaml")
    assert (doc.version, doc.sha256, doc.number) == ("1.5.0", new["diracx-core"].sha256, 0)

    res = run(project, index, "--check")
    assert res.exit_code == 0, res.output
    assert "up to date" in res.stdout


def test_requested_version_missing_changes_nothing(project: Path, index: Index) -> None:
    add_all(index, "1.5.0")
    index.add("diracx-core", "1.6.0", CORE_RUN)
    index.add("diracx-client", "1.6.0", CLIENT_RUN, yanked=True)
    before = snapshot(project)
    res = run(project, index, "--version", "1.6.0")
    assert res.exit_code == 1
    err = " ".join(res.stderr.split())
    assert "1.6.0 is missing" in err
    assert "diracx-client (yanked)" in err and "diracx (not published)" in err
    assert "diracx-core (" not in err
    assert snapshot(project) == before
    assert not (project / "build/sources").exists()

    res = run(project, index, "--version", "1.5.0", "--json")
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["target"] == "1.5.0"


@pytest.mark.parametrize("command", ["bump", "release"])
@pytest.mark.parametrize("given", ["", "  "])
def test_an_empty_version_is_an_error_not_the_newest(
    project: Path, index: Index, command: str, given: str
) -> None:
    """CI's ``--version "$UNSET"``: one line naming the option and the fix; nothing asked of
    the index, nothing changed, nothing released (before, the newest version was taken)."""
    add_all(index, "1.5.0")
    before = snapshot(project)
    seen = len(index.requests)
    res = CliRunner().invoke(
        app, [command, "--root", str(project), "--index-url", index.url, "--version", given]
    )
    assert res.exit_code == 1, res.output
    lines = res.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: --version {given!r} is empty;")
    assert "give the version to take (e.g. --version 1.2.3), or leave --version out" in lines[0]
    assert len(index.requests) == seen and snapshot(project) == before
    assert not (project / "build/releases").exists() and not (project / "build/sources").exists()


def test_prereleases_only_with_pre(project: Path, index: Index) -> None:
    add_all(index, "1.5.0")
    add_all(index, "1.6.0rc1")
    add_all(index, "1.5.1", yanked=True)  # yanked files are ignored
    before = snapshot(project)

    res = run(project, index, "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert (out["status"], out["current"], out["target"]) == ("would-update", "1.4.0", "1.5.0")
    assert snapshot(project) == before  # dry run
    assert not (project / "build").exists()

    res = run(project, index, "--pre", "--check", "--json")
    assert res.exit_code == 1
    assert json.loads(res.stdout)["target"] == "1.6.0rc1"

    res = run(project, index, "--pre")
    assert res.exit_code == 0, res.output
    doc = read_recipe(project / "recipes/diracx/recipe.yaml")
    assert doc.version == "1.6.0rc1"
    assert doc.sha256 == index.entry("diracx-1.6.0rc1.tar.gz").sha256


DRIFT_REQUIRES = {
    # cachetools gets a pin, diraccommon goes, msgpack comes (conda-forge: msgpack-python)
    "diracx-core": [
        "cachetools>=5",
        "msgpack",
        "pydantic>=2.10",
        "opentelemetry-sdk>=1.40; extra == 'otel'",
    ],
    # an extra of a dependency: redis[hiredis] -> redis-py and hiredis
    "diracx-client": ["diracx-core==1.5.0", "httpx", "redis[hiredis]>=5"],
    # an extra of a sibling: diracx-core[otel]; diracx-client dropped
    "diracx": ["diracx-core[otel]"],
}


def test_drift_report_and_apply_deps(project: Path, index: Index, tmp_path: Path) -> None:
    add_all(index, "1.5.0", DRIFT_REQUIRES)
    index.add("redis", "5.0.0", ["hiredis>=3.0.0; extra == 'hiredis'"], wheel=True)
    index.add("redis", "4.0.0", [], wheel=True)
    before = snapshot(project)

    res = run(project, index, "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    drift = {p["name"]: p["drift"] for p in json.loads(res.stdout)["packages"]}
    assert drift["diracx-core"] == {
        "added": [{"name": "msgpack-python", "kind": "added", "recipe": None, "upstream": ""}],
        "removed": [
            {"name": "diraccommon", "kind": "removed", "recipe": ">=9.0.18", "upstream": None}
        ],
        "changed": [{"name": "cachetools", "kind": "changed", "recipe": "", "upstream": ">=5"}],
    }
    # siblings compare as ==${{ version }} pins, whatever upstream writes
    assert [c["name"] for c in drift["diracx-client"]["added"]] == ["hiredis", "redis-py"]
    assert drift["diracx-client"]["changed"] == drift["diracx-client"]["removed"] == []
    assert drift["diracx"] == {
        "added": [
            {"name": "opentelemetry-sdk", "kind": "added", "recipe": None, "upstream": ">=1.40"}
        ],
        "removed": [
            {
                "name": "diracx-client",
                "kind": "removed",
                "recipe": "==${{ version }}",
                "upstream": None,
            }
        ],
        "changed": [],
    }
    assert snapshot(project) == before

    res = run(project, index, "--apply-deps", "--pr-body", str(tmp_path / "pr.md"))
    assert res.exit_code == 0, res.output
    core = (project / "recipes/diracx-core/recipe.yaml").read_text()
    assert core.split("  run:\n", 1)[1].split("\ntests:", 1)[0] == (
        "    - python >=${{ python_min }}\n"
        "    # caching\n"
        "    - cachetools >=5   # no pin\n"
        "    - msgpack-python\n"
        "    - pydantic >=2.10\n"
    )
    old_core = before["recipes/diracx-core/recipe.yaml"].decode()
    head_old = old_core.split("  run:\n")[0].splitlines()
    head_new = core.split("  run:\n")[0].splitlines()
    assert len(head_old) == len(head_new)
    changed = [a.split(":")[0] for a, b in zip(head_old, head_new, strict=True) if a != b]
    assert changed == ["  version", "  sha256", "  number"]
    assert core.split("\ntests:", 1)[1] == old_core.split("\ntests:", 1)[1]
    client = (project / "recipes/diracx-client/recipe.yaml").read_text()
    assert client.endswith(
        "        - diracx-core ==${{ version }}\n"
        "        - hiredis >=3.0.0\n"
        "        - httpx\n"
        "        - redis-py >=5\n"
    )
    meta = (project / "recipes/diracx/recipe.yaml").read_text()
    assert meta.endswith(
        "    - python >=${{ python_min }}\n"
        "    - diracx-core ==${{ version }}\n"
        "    - opentelemetry-sdk >=1.40\n"
    )
    res = run(project, index, "--dry-run", "--version", "1.5.0", "--json")
    assert json.loads(res.stdout)["status"] == "up-to-date"
    body = (tmp_path / "pr.md").read_text()
    assert "| diracx-core | diraccommon | removed | `>=9.0.18` | — |" in body
    assert "were applied" in body


def test_pep658_metadata_is_used_where_advertised(project: Path, index: Index) -> None:
    add_all(index, "1.5.0", metadata=True)
    res = run(project, index, "--dry-run", "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert all(p["metadata_source"].endswith(".metadata (PEP 658)") for p in out["packages"])
    assert all(p["drift"] == {"added": [], "removed": [], "changed": []} for p in out["packages"])
    assert "/files/diracx_core-1.5.0.tar.gz.metadata" in index.requests
    assert "/files/diracx_core-1.5.0.tar.gz" not in index.requests  # dry run: no sdist needed

    e = index.entry("diracx-1.5.0.tar.gz")
    e.listed_metadata_sha256 = e.metadata_sha256
    e.metadata = b"Name: diracx\nVersion: 1.5.0\n\n"
    res = run(project, index, "--dry-run")
    assert res.exit_code == 1
    assert "sha256 mismatch" in " ".join(res.stderr.split())


@pytest.mark.parametrize("mode", ["503", "close", "hang"])
def test_index_that_stops_answering_changes_nothing(project: Path, index: Index, mode: str) -> None:
    add_all(index, "1.5.0")
    before = snapshot(project)
    index.fail = mode
    res = run(project, index, "--timeout", "0.2")
    assert res.exit_code == 1
    err = " ".join(res.stderr.split())
    assert "did not answer" in err and "after 2 tries" in err
    assert "no recipe was changed" in err
    assert snapshot(project) == before

    res = run(project, index, "--check", "--timeout", "0.2")
    assert res.exit_code == 2  # an error, not "update available"


def test_downloads_failing_after_the_pages_changes_nothing(project: Path, index: Index) -> None:
    add_all(index, "1.5.0")
    before = snapshot(project)
    index.fail, index.fail_files_only = "503", True
    res = run(project, index)
    assert res.exit_code == 1
    assert "/simple/diracx-core/" in index.requests
    assert "no recipe was changed" in " ".join(res.stderr.split())
    assert snapshot(project) == before


def test_sha256_mismatch_on_download(project: Path, index: Index) -> None:
    new = add_all(index, "1.5.0")
    new["diracx-client"].listed_sha256 = "0" * 64
    before = snapshot(project)
    res = run(project, index)
    assert res.exit_code == 1
    assert "sha256 mismatch" in " ".join(res.stderr.split())
    assert snapshot(project) == before
    assert not (project / "build/sources/diracx_client-1.5.0.tar.gz").exists()


def test_check_exit_codes(project: Path, index: Index) -> None:
    res = run(project, index, "--check")
    assert res.exit_code == 0, res.output
    add_all(index, "1.5.0")
    before = snapshot(project)
    res = run(project, index, "--check", "--json")
    assert res.exit_code == 1
    out = json.loads(res.stdout)
    assert out["status"] == "update-available" and out["target"] == "1.5.0"
    assert snapshot(project) == before
    assert not (project / "build").exists()
    assert run(project, index, "--check", "--apply-deps").exit_code == 2


def test_pr_body(project: Path, index: Index, tmp_path: Path) -> None:
    new = add_all(index, "1.5.0", {**REQUIRES, "diracx": ["diracx-core", "diracx-client", "rich"]})
    body_file = tmp_path / "out" / "pr.md"
    res = run(project, index, "--dry-run", "--pr-body", str(body_file))
    assert res.exit_code == 0, res.output
    body = body_file.read_text()
    assert body.startswith("## DiracX 1.4.0 -> 1.5.0\n")
    for name, e in new.items():
        old = index.entry(e.filename.replace("1.5.0", "1.4.0")).sha256
        assert f"| {name} | `{e.filename}` | `{old}` | `{e.sha256}` |" in body
    assert "| diracx | rich | added | — | (any) |" in body
    assert "were **not applied**" in body
    assert "### Checklist" in body and body.count("- [ ] ") >= 5
    assert "127.0.0.1" not in body


def test_html_fallback(project: Path, index: Index) -> None:
    index.html_only = True
    new = add_all(index, "1.5.0", metadata=True)
    add_all(index, "1.5.1", yanked=True)
    res = run(project, index, "--json")
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert out["target"] == "1.5.0"
    assert {p["name"]: p["new_sha256"] for p in out["packages"]} == {
        n: e.sha256 for n, e in new.items()
    }
    assert all(p["sha256_verified"] for p in out["packages"])
    assert all("PEP 658" in p["metadata_source"] for p in out["packages"])


def test_a_failed_write_restores_the_recipes(
    project: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    add_all(index, "1.5.0")
    before = snapshot(project)
    real = dxforge.bump.write.atomic_write_text
    calls = []

    def flaky(path: Path, text: str, mode: int | None = None) -> None:
        calls.append(path)
        if len(calls) == 2:
            raise OSError(28, "No space left on device")
        real(path, text, mode)

    monkeypatch.setattr(dxforge.bump.write, "atomic_write_text", flaky)
    res = run(project, index)
    assert res.exit_code == 1
    assert "already written were restored" in " ".join(res.stderr.split())
    assert snapshot(project) == before
    assert len(calls) == 3  # write, failed write, restore


def test_recipes_must_agree(project: Path, index: Index) -> None:
    path = project / "recipes/diracx/recipe.yaml"
    path.write_text(path.read_text().replace('"1.4.0"', '"1.3.0"'))
    res = run(project, index, "--check")
    assert res.exit_code == 2
    assert "disagree" in res.stderr


# --------------------------------------------------------------------------------------------
# Units


def test_format_like_keeps_the_quoting() -> None:
    assert textedit.format_like('"1.4.0"', "1.5.0") == '"1.5.0"'
    assert textedit.format_like("'1.4.0'", "1.5.0") == "'1.5.0'"
    assert textedit.format_like("1.4.0", "1.5.0") == "1.5.0"
    assert textedit.format_like("1.4.0", "0.8") == '"0.8"'  # a plain 0.8 is a float
    assert textedit.format_like("3", "0", number=True) == "0"


def test_parse_errors_name_file_and_key(tmp_path: Path) -> None:
    p = tmp_path / "recipe.yaml"
    with pytest.raises(DxError, match=r"recipe.yaml: key context.version: missing"):
        parse_recipe(p, "context:\n  name: x\nsource:\n  url: a\n  sha256: b\n")
    with pytest.raises(DxError, match=r"recipe.yaml:5: key source.sha256: .*one line"):
        parse_recipe(
            p, 'context:\n  name: x\n  version: "1"\nsource:\n  sha256: >-\n    abc\n  url: u\n'
        )
    with pytest.raises(DxError, match=r"key source: a url and a sha256"):
        parse_recipe(p, 'context:\n  name: x\n  version: "1"\n')


def test_sdist_name_from_the_url_template(tmp_path: Path) -> None:
    text = (
        'context:\n  name: diracx-api\n  version: "1"\n'
        'source:\n  url: ${{ env.get("X", default="a/b") }}/'
        "${{ name | replace('-', '_') }}-${{ version }}.tar.gz\n  sha256: abc\n"
    )
    doc = parse_recipe(tmp_path / "r.yaml", text)
    assert doc.sdist_name("2.0") == "diracx_api-2.0.tar.gz"


def test_canonical_spec_and_drift_units(tmp_path: Path) -> None:
    assert canonical_spec("<2, >=1.0") == canonical_spec(">=1.0,<2")
    text = (
        'context:\n  name: a\n  version: "1"\n  python_min: "3.11"\n'
        "source:\n  url: x/a-${{ version }}.tar.gz\n  sha256: abc\n"
        "requirements:\n  run:\n    - python >=${{ python_min }}\n"
        "    - diracx-core ==${{ version }}\n    - foo <2,>=1\n"
    )
    doc = parse_recipe(tmp_path / "r.yaml", text)
    same = {"python": ">=3.11", "diracx-core": drift.VERSION_PIN, "foo": ">=1,<2"}
    assert drift.compute_drift(doc, same, "2") == []
    newer = {**same, "python": ">=3.12"}
    [change] = drift.compute_drift(doc, newer, "2")
    assert (change.name, change.kind) == ("python", "changed")
    edits = edit.drift_edits(doc, [change], apply_removals=True)
    assert '  python_min: "3.12"\n' in textedit.apply_edits(text, edits)


def test_entry_point_exit_codes(project: Path, index: Index) -> None:
    """The installed ``dxforge`` script (which ends with os._exit) keeps --check's exit codes."""
    exe = Path(sys.executable).parent / "dxforge"
    argv = [
        str(exe),
        "bump",
        "--root",
        str(project),
        "--index-url",
        index.url,
        "--check",
        "--retries",
        "0",
    ]
    assert subprocess.run(argv, capture_output=True, timeout=120).returncode == 0
    add_all(index, "1.5.0")
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1, proc.stderr
    assert "update available: 1.4.0 -> 1.5.0" in proc.stdout


def test_an_older_version_asked_for_is_an_error(project: Path, index: Index) -> None:
    add_all(index, "1.3.0")
    before = snapshot(project)
    res = run(project, index, "--version", "1.3.0")
    assert res.exit_code == 1
    assert "--version 1.3.0 is older than the recipes' 1.4.0" in res.output
    assert snapshot(project) == before


def test_a_requirement_beyond_requires_dist_is_kept_not_drift(tmp_path: Path) -> None:
    """A run entry marked `# beyond Requires-Dist: <why>` (as conda-forge adds diracx-core to
    diracx-testing) is never reported as removed, so --apply-deps keeps it."""
    text = (
        "context: {name: diracx-x, version: 1.4.0, python_min: '3.11'}\n"
        "source:\n  url: x/diracx_x-${{ version }}.tar.gz\n  sha256: aa\n"
        "build: {number: 0}\n"
        "requirements:\n  run:\n    - python >=${{ python_min }}\n"
        "    - diracx-core ==${{ version }}  # beyond Requires-Dist: it imports it\n"
        "    - gone\n"
    )
    doc = parse_recipe(tmp_path / "r.yaml", text)
    changes = drift.compute_drift(doc, {"python": ">=3.11"}, "1.4.0")
    assert [(c.name, c.kind) for c in changes] == [("gone", "removed")]


def test_flow_context_and_crlf_are_kept(tmp_path: Path) -> None:
    text = (
        "context: {name: diracx-x, version: 1.4.0, python_min: '3.11'}  # flow\r\n"
        "source:\r\n  url: x/diracx_x-${{ version }}.tar.gz\r\n  sha256: aa  # old\r\n"
        "build: {number: 2}\r\n"
        "requirements:\r\n  run:\r\n    - python >=${{ python_min }}\r\n    - b\r\n"
    )
    doc = parse_recipe(tmp_path / "r.yaml", text)
    upstream = {"python": ">=3.11", "a": "", "b": "<2", "c": ">=1"}
    changes = drift.compute_drift(doc, upstream, "1.5.0")
    new = edit.new_recipe_text(doc, "1.5.0", "bb", changes, False, apply_deps=True)
    assert new == (
        "context: {name: diracx-x, version: 1.5.0, python_min: '3.11'}  # flow\r\n"
        "source:\r\n  url: x/diracx_x-${{ version }}.tar.gz\r\n  sha256: bb  # old\r\n"
        "build: {number: 0}\r\n"
        "requirements:\r\n  run:\r\n    - python >=${{ python_min }}\r\n"
        "    - a\r\n    - b <2\r\n    - c >=1\r\n"
    )


def test_construct_yaml_moves_with_the_recipes(project: Path, index: Index) -> None:
    construct = project / "construct.yaml"
    construct.write_text(
        "name: DIRACOS\n"
        "version: 1.4.0  # moved by dxforge bump\n"
        "channels:\n  - conda-forge\n"
        "installer_filename: DIRACOS-1.4.0-Linux-x86_64.sh\n"
        "specs:\n  - python 3.11.*\n  - pip ==1.4.0\n  - diracx ==1.4.0\n"
    )
    before = construct.read_text()
    add_all(index, "1.5.0")
    res = run(project, index)
    assert res.exit_code == 0, res.output
    assert construct.read_text() == (
        before.replace("version: 1.4.0", "version: 1.5.0")
        .replace("DIRACOS-1.4.0", "DIRACOS-1.5.0")
        .replace("diracx ==1.4.0", "diracx ==1.5.0")
    )  # the pin of another package with the same version is left alone


def test_construct_yaml_is_not_written_when_the_bump_fails(project: Path, index: Index) -> None:
    construct = project / "construct.yaml"
    construct.write_text(CONSTRUCT)
    before = snapshot(project)
    index.add("diracx-core", "1.5.0", CORE_RUN)  # not published for all
    res = run(project, index, "--version", "1.5.0")
    assert res.exit_code != 0
    assert snapshot(project) == before
    assert construct.read_text() == CONSTRUCT


def test_construct_yaml_is_restored_when_a_write_fails(
    project: Path, index: Index, monkeypatch: pytest.MonkeyPatch
) -> None:
    """construct.yaml is written last, after the recipes: when its write fails, the recipes
    already written are restored and construct.yaml is as it was."""
    construct = project / "construct.yaml"
    construct.write_text(CONSTRUCT)
    add_all(index, "1.5.0")
    before = snapshot(project)
    real = dxforge.bump.write.atomic_write_text

    def flaky(path: Path, text: str, mode: int | None = None) -> None:
        if Path(path) == construct and "1.5.0" in text:
            raise OSError(28, "No space left on device")
        real(path, text, mode)

    monkeypatch.setattr(dxforge.bump.write, "atomic_write_text", flaky)
    res = run(project, index)
    assert res.exit_code == 1
    assert "already written were restored" in " ".join(res.stderr.split())
    assert snapshot(project) == before
    assert construct.read_text() == CONSTRUCT


def test_drift_table_outside_a_terminal_is_not_cut(project: Path, index: Index) -> None:
    """A log (not a terminal) gets every name and sha256 whole, however long."""
    long = "brand-new-dependency-with-a-name-longer-than-any-table-column"
    add_all(index, "1.5.0", {**REQUIRES, "diracx": ["diracx-core", "diracx-client", long]})
    res = run(project, index, "--dry-run")
    assert res.exit_code == 0, res.output
    assert long in res.stdout and "…" not in res.stdout
    sha = index.entry("diracx-1.5.0.tar.gz").sha256
    assert sha in res.stdout


def test_error_messages_are_literal(project: Path, index: Index) -> None:
    """Brackets in data (extras, versions) are not taken for markup in error messages."""
    res = run(project, index, "--version", "1.5[otel]")
    assert res.exit_code == 1
    assert "'1.5[otel]' is not a valid version" in " ".join(res.stderr.split())
