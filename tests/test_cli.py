"""The command line in-process (``main([...])``) and as users meet it: one-line errors for bad
input files, and what an interruption says (what it stopped, how to resume) and exits with."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import DXFORGE, ROOT
from local_index import LocalIndex, serve

from dxforge.cli import main as cli
from dxforge.cli.main import main
from dxforge.project.recipes import recipe_paths


def dxforge(capsys: pytest.CaptureFixture[str], *args: str | Path) -> tuple[int, str, str]:
    """``dxforge ARGS`` in this process: (exit status, stdout, stderr)."""
    with pytest.raises(SystemExit) as e:
        main([str(a) for a in args])
    out, err = capsys.readouterr()
    code = e.value.code
    return (code if isinstance(code, int) else int(code is not None)), out, err


def project(tmp_path: Path) -> Path:
    """A copy of this project's inputs: recipes, construct.yaml, the installer's files."""
    root = tmp_path / "proj"
    for rel in ("recipes", "installer"):
        shutil.copytree(ROOT / rel, root / rel)
    shutil.copy2(ROOT / "construct.yaml", root / "construct.yaml")
    return root


def test_main_runs_in_process_with_no_state_left_between_calls(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert not hasattr(cli, "_state")
    code, out, err = dxforge(capsys, "graph", "--root", ROOT, "--json", "--format", "dot")
    assert code == 1 and json.loads(out)["status"] == "error"
    assert err.strip() == "error: --json and --format are exclusive; give one of them"
    # the next command in the same process does not inherit the first one's --json
    code, out, err = dxforge(capsys, "graph", "--root", ROOT, "--format", "x")
    assert (code, out) == (1, "") and err.strip() == "error: --format x: choose mermaid or dot"
    code, out, _ = dxforge(capsys, "graph", "--root", ROOT, "--json")
    assert code == 0 and "diracx-core" in json.loads(out)["order"]
    code, out, _ = dxforge(capsys, "--help")
    assert code == 0 and "release" in out


@pytest.mark.parametrize(
    "command",
    [
        ("graph",),
        ("build", "--channel", "{tmp}"),
        ("fetch",),
        ("ci", "--check"),
        ("bump", "--dry-run", "--index-url", "http://127.0.0.1:9/"),
    ],
)
def test_a_recipe_that_is_not_utf8_is_one_line_naming_file_line_and_fix(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], command: tuple[str, ...]
) -> None:
    """Issue 22: a Latin-1 byte in a recipe gave a 100-line traceback naming no file."""
    root = project(tmp_path)
    recipe = root / "recipes/diracx-api/recipe.yaml"
    text = recipe.read_bytes()
    at = text.index(b"\nabout:\n") + len(b"\nabout:\n")  # a comment after `about:`
    line = text[:at].count(b"\n") + 1
    recipe.write_bytes(text[:at] + b"  # r\xe9sum\xe9\n" + text[at:])
    args = [a.format(tmp=tmp_path) for a in command]
    code, out, err = dxforge(capsys, *args, "--root", root)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        f"error: {recipe}: line {line}, column 6 (byte offset {at + 5}): byte 0xe9 is not "
        "UTF-8; save the recipe as UTF-8 (retype that character)"
    ], err


def test_a_construct_yaml_that_is_not_utf8_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = project(tmp_path)
    construct = root / "construct.yaml"
    construct.write_bytes(b"# \xff\n" + construct.read_bytes())
    code, _, err = dxforge(capsys, "graph", "--root", root)
    assert code == 1 and err.splitlines() == [
        f"error: {construct}: line 1, column 3 (byte offset 2): byte 0xff is not UTF-8; save "
        "construct.yaml as UTF-8 (retype that character)"
    ], err


@pytest.mark.parametrize(("signum", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_an_interrupted_build_says_what_it_stopped_and_how_to_resume(
    tmp_path: Path, signum: int, code: int
) -> None:
    """Issue 22: Ctrl-C or SIGTERM on `dxforge build` exited silently. Here the build waits for
    an index that does not answer, fetching its sources, and is interrupted there."""
    root = project(tmp_path)
    (tmp_path / "channel").mkdir()
    with serve(LocalIndex(fail="hang")) as index:
        proc = subprocess.Popen(
            [
                str(DXFORGE),
                "build",
                "--root",
                str(root),
                "--channel",
                str(tmp_path / "channel"),
                "--index-url",
                index.url,
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        deadline = time.monotonic() + 60
        while not index.requests:
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "the build never asked the index"
            time.sleep(0.05)
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == code, err
    assert err.splitlines()[-1] == (
        f"interrupted during: fetching {len(recipe_paths(root))} sources; run `dxforge build` "
        "again to resume: finished packages are kept"
    ), err
    assert "Traceback" not in err and out == ""


def test_index_fingerprint_and_graph_in_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The small commands, in-process: `index` re-indexes a channel checking each package,
    `fingerprint runtime` is one stable line, `graph` draws the same graph three ways."""
    import rattler_build

    files = tmp_path / "files"
    (files / "share").mkdir(parents=True)
    (files / "share/x.txt").write_text("x")
    rattler_build.assemble_package(
        name="dxt-x",
        version="1.0",
        target_platform="noarch",
        build_string="0",
        output_dir=str(tmp_path / "chan/noarch"),
        files_dir=str(files),
        noarch="generic",
    )
    code, out, _ = dxforge(capsys, "index", tmp_path / "chan", "--json")
    assert code == 0 and json.loads(out)["packages"] == 1
    assert json.loads((tmp_path / "chan/noarch/repodata.json").read_text())["packages.conda"]
    code, out, _ = dxforge(capsys, "index", tmp_path / "chan")
    assert code == 0 and out.strip() == f"indexed {tmp_path / 'chan'}: 1 packages"

    first = dxforge(capsys, "fingerprint", "runtime", "--root", ROOT)
    assert first[0] == 0 and len(first[1].strip()) >= 16
    assert dxforge(capsys, "fingerprint", "runtime", "--root", ROOT) == first
    code, _, err = dxforge(capsys, "fingerprint", "nope", "--root", ROOT)
    assert code == 1 and err.strip() == "error: nope: dxforge fingerprint knows `runtime`"

    code, mermaid, _ = dxforge(capsys, "graph", "--root", ROOT, "--format", "mermaid")
    assert code == 0 and "diracx_core --> diracx_client" in mermaid
    code, dot, _ = dxforge(capsys, "graph", "--root", ROOT, "--format", "dot")
    assert code == 0 and dot.startswith("digraph")
    code, table, _ = dxforge(capsys, "graph", "--root", ROOT)
    assert code == 0 and "level: 0  package: diracx-core  requires: -" in table
