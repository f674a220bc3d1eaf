"""scripts/make_venv.py: the base environment's key and how a clone's .venv takes it."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path

from conftest import ROOT

spec = importlib.util.spec_from_file_location("make_venv", ROOT / "scripts/make_venv.py")
assert spec and spec.loader
make_venv = importlib.util.module_from_spec(spec)
spec.loader.exec_module(make_venv)


def test_the_key_follows_the_dependency_set() -> None:
    reqs = make_venv.requirements()
    assert any(r.startswith("py-rattler") for r in reqs) and any("pytest" in r for r in reqs)
    key = make_venv.base_key(reqs)
    assert key == make_venv.base_key(list(reversed(reqs))) and len(key) == 16
    assert key != make_venv.base_key([*reqs, "something-new"])


def test_scripts_name_the_clones_python_and_files_are_linked(tmp_path: Path) -> None:
    base, env = tmp_path / "base", tmp_path / "clone/.venv"
    (base / "bin").mkdir(parents=True)
    (env / "bin").mkdir(parents=True)
    (base / "bin/tool").write_text(f"#!{base}/bin/python\nimport sys\n")
    (base / "bin/other").write_text("#!/bin/sh\necho hi\n")
    (base / "bin/python").symlink_to("/usr/bin/python3")
    (env / "bin/python").symlink_to("/usr/bin/python3")
    make_venv.scripts(base, env)
    assert (env / "bin/tool").read_text() == f"#!{env}/bin/python\nimport sys\n"
    assert (env / "bin/other").read_text() == "#!/bin/sh\necho hi\n"
    assert os.access(env / "bin/tool", os.X_OK)
    assert (base / "bin/tool").read_text().startswith(f"#!{base}/")  # the base is untouched

    src = base / "lib/site-packages/pkg"
    src.mkdir(parents=True)
    (src / "mod.py").write_text("x = 1\n")
    make_venv.link_tree(base / "lib/site-packages", env / "lib/site-packages")
    linked = env / "lib/site-packages/pkg/mod.py"
    assert linked.read_text() == "x = 1\n"
    assert linked.stat().st_ino == (src / "mod.py").stat().st_ino
