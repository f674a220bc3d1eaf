"""dxforge as an installable package: the wheel built from the project carries every data file
(the runtime's build scripts, the pilot script, the name maps), reachable through
importlib.resources once installed, not editable, into a fresh virtual environment."""

from __future__ import annotations

import os
import subprocess
import sys
import sysconfig
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "src/dxforge/data"


def test_the_wheel_carries_every_data_file(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    build = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "-q",
            "--disable-pip-version-check",
            "-w",
            str(wheels),
            str(ROOT),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PIP_NO_INDEX": "1"},
    )
    assert build.returncode == 0, build.stdout + build.stderr
    [wheel] = wheels.glob("dxforge-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    install = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            str(venv / "bin/python"),
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            "--disable-pip-version-check",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    expected = sorted(
        str(p.relative_to(DATA))
        for p in DATA.rglob("*")
        if p.is_file() and "__pycache__" not in p.parts
    )
    assert "runtime/python.sh" in expected and "pilot-test.sh" in expected
    # dxforge's dependencies come from this environment's site-packages, the package itself
    # (and its data) from the fresh one's: never the editable checkout
    env = {
        "PATH": f"{venv}/bin:/usr/bin:/bin",
        "HOME": str(tmp_path),
        "PYTHONPATH": sysconfig.get_paths()["purelib"],
    }
    check = subprocess.run(
        [
            str(venv / "bin/python"),
            "-c",
            """
import json, sys
from importlib import resources
import dxforge
names = json.loads(sys.argv[1])
root = resources.files("dxforge").joinpath("data")
missing = [n for n in names if not root.joinpath(n).is_file()]
print(dxforge.__file__)
print(json.dumps(missing))
""",
            json_list(expected),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert check.returncode == 0, check.stderr
    where, missing = check.stdout.splitlines()
    assert where.startswith(str(venv)) and missing == "[]", check.stdout
    helped = subprocess.run(
        [str(venv / "bin/dxforge"), "--help"], capture_output=True, text=True, env=env, timeout=60
    )
    assert helped.returncode == 0 and "seed" in helped.stdout, helped.stderr


def json_list(items: list[str]) -> str:
    import json

    return json.dumps(items)
