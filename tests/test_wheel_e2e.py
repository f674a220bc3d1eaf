"""dxforge is a tool and a distribution is a folder: dxforge's wheel, installed into a fresh
virtual environment (dxforge's dependencies from the base environment, no checkout on its path),
builds an installer from a project folder outside the checkout, and that installer installs."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from conftest import ROOT
from wheel_venv import build_wheel, dependencies_venv, fresh_venv

from dxforge.installer import SHIPPED

TESTS = Path(__file__).resolve().parent

pytestmark = pytest.mark.e2e


def test_wheel_builds_an_installer_for_a_project_folder(tmp_path: Path) -> None:
    from synth_channel import SYNTH_CONSTRUCT

    wheel = build_wheel(tmp_path)
    with zipfile.ZipFile(wheel) as z:
        members = set(z.namelist())
    for name in SHIPPED:
        assert f"dxforge/installer/files/{name}" in members, sorted(members)
    assert "dxforge/data/pilot-test.sh" in members

    env = fresh_venv(tmp_path / "venv", wheel)
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    where = subprocess.run(
        [str(env / "bin/python"), "-c", "import dxforge.installer as i; print(i.shipped_dir())"],
        cwd=tmp_path,
        env=clean,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(where.stdout.strip()).is_relative_to(env), where.stdout

    channel = tmp_path / "channel"
    subprocess.run(
        [sys.executable, str(TESTS / "synth_channel.py"), str(channel)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    project = tmp_path / "project"
    project.mkdir()
    shutil.copy2(ROOT / "installer/post_install.sh", project / "post_install.sh")
    (project / "construct.yaml").write_text(
        SYNTH_CONSTRUCT.format(channel=channel, post_install="post_install.sh")
    )

    # gzip: the zstd decoder comes from the runtime build (its own tests); this one is the wheel's
    res = subprocess.run(
        [str(env / "bin/dxforge"), "installer", "--json", "--force", "--compression", "gzip"],
        cwd=project,
        env=clean,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert res.returncode == 0, res.stderr[-5000:]
    result = json.loads(res.stdout)
    installer = Path(result["installer"])
    assert installer.parent == project / "build/installer"
    assert hashlib.sha256(installer.read_bytes()).hexdigest() == result["sha256"]

    prefix = tmp_path / "synthos"
    inst = subprocess.run(
        ["bash", str(installer), "-b", "-p", str(prefix)],
        env=clean,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert inst.returncode == 0, inst.stdout[-3000:] + inst.stderr[-3000:]
    ran = subprocess.run(
        [str(prefix / "bin/python"), "-c", "import synthpy"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0, ran.stderr


def test_an_extension_projects_setup_script_installs_the_wheel(tmp_path: Path) -> None:
    """The scripts/setup.sh `dxforge extension init` writes (the first step of the project's CI
    jobs) installs dxforge from ``DXFORGE_SPEC`` into the project's .venv, then (as root) finds
    the Debian tools dxforge runs from the wheel's own list; offline here: .venv is made with
    dxforge's dependencies first, so pip needs no index."""
    from dxforge.extension.init import SETUP, setup_script

    wheel = build_wheel(tmp_path)
    project = tmp_path / "myext-dist"
    script = project / SETUP
    script.parent.mkdir(parents=True)
    script.write_text(setup_script())
    dependencies_venv(project / ".venv")
    clean = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env = {**clean, "DXFORGE_SPEC": str(wheel), "PIP_NO_INDEX": "1"}
    res = subprocess.run(
        ["sh", str(script)], env=env, capture_output=True, text=True, timeout=600, check=False
    )
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert "apt-get" not in res.stderr  # every tool is here already (setup.sh installed them)
    ran = subprocess.run(
        [str(project / ".venv/bin/dxforge"), "extension", "--help"],
        env=clean,
        capture_output=True,
        text=True,
        check=False,
    )
    assert ran.returncode == 0 and "init" in ran.stdout, ran.stderr
