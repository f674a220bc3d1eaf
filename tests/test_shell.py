"""Every shell file dxforge ships or runs is linted like code, with Debian's shellcheck: the
installer's header as rendered (zstd with its decoder stage, and gzip), the post-install and the
pilot scripts, the runtime's build scripts, the project's scripts, CI's entry point, and every
step the rendered workflows run."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from dxforge.installer import shipped
from dxforge.installer.payload import Payload
from dxforge.installer.shell import Decoder, render_header
from dxforge.installer.stage import Stage
from dxforge.project.construct import load_construct

ROOT = Path(__file__).resolve().parents[1]


def shellcheck(path: Path, shell: str = "sh") -> subprocess.CompletedProcess[str]:
    exe = shutil.which("shellcheck")
    if not exe:
        pytest.skip("shellcheck is not installed (apt-get install shellcheck; setup.sh does)")
    # sourced files are followed, their paths relative to the project (as the scripts cd there)
    return subprocess.run(
        [exe, f"--shell={shell}", "--severity=info", "--external-sources", str(path)],
        capture_output=True,
        text=True,
        check=False,
        cwd=ROOT,
    )


def rendered_header(
    tmp_path: Path, batch: bool, extra: str = "", compression: str = "zstd"
) -> Path:
    (tmp_path / "LICENSE").write_text("Terms: 'quoted' and \"double\" $HOME `x`\n")
    construct = tmp_path / "construct.yaml"
    construct.write_text(
        "name: DIRACOS\nversion: 1.0.0\nchannels: [conda-forge]\nspecs: [python]\n"
        f"batch_mode: {'true' if batch else 'false'}\nlicense_file: LICENSE\n"
        'script_env_variables:\n  SITE_NOTE: "it\'s $HOME"\n' + extra
    )
    spec = load_construct(construct)
    stage = Stage(
        prefix=Path("/x" * 120),
        recorded="/x" * 120,
        packages=[],
        python_rel="bin/python3.13",
        manifest=[],
        epoch=0,
        installed_bytes=10 << 20,
        glibc="2.28",
    )
    payload = Payload(tmp_path / "p.tar", compression, 12345, "ab" * 32, 20000, 10)
    decoder = Decoder(b"x" * 1000, "cd" * 32, "ef" * 32) if compression == "zstd" else None
    text = render_header(
        shipped("header.sh").read_text(),
        spec,
        stage,
        payload,
        spec.installer_filename,
        *([decoder] if decoder else []),
    )
    out = tmp_path / "header.sh"
    out.write_bytes(text)
    return out


@pytest.mark.parametrize(
    ("batch", "compression"), [(True, "zstd"), (False, "zstd"), (True, "gzip")]
)
def test_rendered_header_passes_shellcheck(tmp_path: Path, batch: bool, compression: str) -> None:
    extra = "company: DIRAC\nvirtual_specs: ['__linux >=3.10', '__glibc >=2.28']\n"
    res = shellcheck(rendered_header(tmp_path, batch, extra, compression))
    assert res.returncode == 0, res.stdout


SHIPPED = sorted(
    [
        ROOT / "installer/post_install.sh",
        ROOT / ".ci/run",
        *(ROOT / "scripts").glob("*.sh"),
        *(ROOT / "src/dxforge/data").rglob("*.sh"),
    ]
)


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: str(p.relative_to(ROOT)))
def test_every_shell_file_passes_shellcheck(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    res = shellcheck(path, "bash" if "bash" in first else "sh")
    assert res.returncode == 0, res.stdout


def workflow_steps() -> list[tuple[str, str, str]]:
    """(workflow, step name, script) of every ``run:`` step the rendered workflows hold, the
    GitHub expressions replaced by a shell word."""
    import re

    from ruamel.yaml import YAML

    out = []
    for wf in sorted((ROOT / ".github/workflows").glob("*.yml")):
        data = YAML(typ="safe").load(wf.read_text())
        for job_name, job in data["jobs"].items():
            for step in job.get("steps", []):
                if "run" in step:
                    script = "export EXPR=x\n" + re.sub(r"\$\{\{[^}]*\}\}", "${EXPR}", step["run"])
                    out.append((f"{wf.name}:{job_name}", step.get("name", ""), script))
    return out


def test_every_rendered_workflow_step_passes_shellcheck(tmp_path: Path) -> None:
    steps = workflow_steps()
    assert len(steps) > 10
    failures = []
    for i, (where, name, script) in enumerate(steps):
        path = tmp_path / f"step{i}.sh"
        path.write_text(script)
        res = shellcheck(path, "sh" if "make_site" in script else "bash")
        if res.returncode != 0:
            failures.append(f"{where} `{name}`:\n{res.stdout}")
    assert not failures, "\n".join(failures)


def test_shellcheck_would_catch_a_defect(tmp_path: Path) -> None:
    """The lint runs for real: an unquoted variable in a copy of the header is reported."""
    header = rendered_header(tmp_path, True)
    text = header.read_text().replace('rm -f "$STAGING/.unzstd"', "rm -f $STAGING/.unzstd")
    header.write_text(text)
    res = shellcheck(header)
    assert res.returncode != 0 and "SC2086" in res.stdout
