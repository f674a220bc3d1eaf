"""Make the project's .venv: dxforge installed editable, with its dependencies and test tools.

The dependencies are installed once per dependency set (pyproject.toml's dependencies and test
extra, this Python) into a base environment in the user cache; a clone's .venv is a new virtual
environment that takes the base's packages by hard links (a copy across file systems) and its
scripts with their shebangs pointed at the clone's python, then dxforge itself editable with no
network. A changed dependency set is a new base.

usage: python3 scripts/make_venv.py [--quiet]    (run by scripts/setup.sh)
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
VENV = ROOT / ".venv"
STAMP = ".dxforge-base"
FORMAT = 1


def requirements() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [*project["dependencies"], *project["optional-dependencies"]["test"]]


def cache_dir() -> Path:
    xdg = os.environ.get("XDG_CACHE_HOME", "").strip()
    return (Path(xdg) if xdg else Path.home() / ".cache") / "dxforge" / "venvs"


def base_key(reqs: list[str]) -> str:
    data = [FORMAT, sys.version, sysconfig.get_platform(), sorted(reqs)]
    return hashlib.sha256(json.dumps(data).encode()).hexdigest()[:16]


def pip(python: Path, *args: str) -> None:
    """pip in ``python``'s environment; its notes about ignored extra index locations are
    noise here and dropped, everything else shown."""
    proc = subprocess.run(
        [str(python), "-m", "pip", "--disable-pip-version-check", "-q", *args],
        capture_output=True,
        text=True,
        check=False,
    )
    noise = "is ignored"
    for line in (proc.stdout + proc.stderr).splitlines():
        if not (line.startswith("WARNING: Location '") and noise in line):
            print(line, file=sys.stderr)
    if proc.returncode != 0:
        sys.exit(f"venv: pip {' '.join(args[:2])} ... failed (exit {proc.returncode})")


def make_base(base: Path, reqs: list[str]) -> None:
    """The base environment with ``reqs``, made in place (its scripts name its python), and
    complete only once its stamp is written: an interrupted one is made again."""
    shutil.rmtree(base, ignore_errors=True)
    venv.EnvBuilder(with_pip=True).create(base)
    pip(base / "bin/python", "install", *reqs)
    (base / STAMP).write_text(base.name + "\n")


def site_packages(env: Path) -> Path:
    [sp] = (env / "lib").glob("python3*/site-packages")
    return sp


def link_tree(src: Path, dest: Path) -> None:
    """``src``'s files under ``dest`` by hard links, copies where links cannot be made."""

    def link(s: str, d: str) -> None:
        try:
            os.link(s, d)
        except OSError:
            shutil.copy2(s, d)

    shutil.copytree(src, dest, symlinks=True, copy_function=link, dirs_exist_ok=True)


def scripts(base: Path, env: Path) -> None:
    """The base's console scripts in ``env``'s bin, their shebangs naming ``env``'s python."""
    old = f"#!{base}/bin/".encode()
    for s in sorted((base / "bin").iterdir()):
        d = env / "bin" / s.name
        if s.is_symlink() or not s.is_file() or d.exists():
            continue
        data = s.read_bytes()
        if data.startswith(old):
            data = f"#!{env}/bin/".encode() + data[len(old) :]
        d.write_bytes(data)
        d.chmod(0o755)


def main() -> int:
    reqs = requirements()
    key = base_key(reqs)
    base = cache_dir() / key
    if not (base / STAMP).is_file():
        print(
            f"venv: installing dxforge's dependencies into {base} (once per dependency set)",
            file=sys.stderr,
        )
        base.parent.mkdir(parents=True, exist_ok=True)
        make_base(base, reqs)
    if not ((VENV / STAMP).is_file() and (VENV / STAMP).read_text().strip() == key):
        shutil.rmtree(VENV, ignore_errors=True)
        venv.EnvBuilder(with_pip=False).create(VENV)
        link_tree(site_packages(base), site_packages(VENV))
        scripts(base, VENV)
        (VENV / STAMP).write_text(key + "\n")
    pip(
        VENV / "bin/python",
        "install",
        "--no-deps",
        "--no-build-isolation",
        "--no-index",
        "-e",
        str(ROOT),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
