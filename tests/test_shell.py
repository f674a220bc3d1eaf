"""The shell that ships in every installer is linted like code: shellcheck (Debian's package) on
the header as rendered for an installer, and on the post-install script."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dxforge.installer.payload import Payload
from dxforge.installer.shell import render_header
from dxforge.construct import load_construct
from dxforge.installer.stage import Stage

ROOT = Path(__file__).resolve().parents[1]


def shellcheck(path: Path) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("shellcheck")
    if not exe:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; setup.sh does)")
    return subprocess.run([exe, "--shell=sh", "--severity=info", str(path)],
                          capture_output=True, text=True, check=False)


def rendered_header(tmp_path: Path, batch: bool, extra: str = "") -> Path:
    (tmp_path / "LICENSE").write_text("Terms: 'quoted' and \"double\" $HOME `x`\n")
    construct = tmp_path / "construct.yaml"
    construct.write_text(
        "name: DIRACOS\nversion: 1.0.0\nchannels: [conda-forge]\nspecs: [python]\n"
        f"batch_mode: {'true' if batch else 'false'}\nlicense_file: LICENSE\n"
        "script_env_variables:\n  SITE_NOTE: \"it's $HOME\"\n" + extra
    )
    spec = load_construct(construct)
    stage = Stage(prefix=Path("/x" * 120), recorded="/x" * 120, packages=[],
                  python_rel="bin/python3.11", manifest=[], epoch=0, installed_bytes=10 << 20,
                  glibc="2.31")
    payload = Payload(tmp_path / "p.tar.gz", "gzip", 12345, "ab" * 32, 20000, 10)
    text = render_header((ROOT / "installer/header.sh").read_text(), spec, stage, payload,
                         spec.installer_filename)
    out = tmp_path / "header.sh"
    out.write_bytes(text)
    return out


@pytest.mark.parametrize("batch", [True, False])
def test_rendered_header_passes_shellcheck(tmp_path: Path, batch: bool) -> None:
    res = shellcheck(rendered_header(tmp_path, batch))
    assert res.returncode == 0, res.stdout


def test_post_install_passes_shellcheck() -> None:
    res = shellcheck(ROOT / "installer/post_install.sh")
    assert res.returncode == 0, res.stdout


def test_shellcheck_would_catch_a_defect(tmp_path: Path) -> None:
    """The lint runs for real: an unquoted variable in a copy of the header is reported."""
    header = rendered_header(tmp_path, True)
    header.write_text(header.read_text().replace('mkdir "$T"', "mkdir $T"))
    res = shellcheck(header)
    assert res.returncode != 0 and "SC2086" in res.stdout
