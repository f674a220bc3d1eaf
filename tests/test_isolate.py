"""The one isolation model (dxforge.isolation.isolate): a pilot's site is unprivileged, offline but
for a loopback that all its programs share, with a read-only HOME; the CI step's shell does the
same."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from dxforge.isolation import isolate
from dxforge.isolation.isolate import NOBODY, Site, stop

NEEDS = isolate.limits()


def needs_everything() -> None:
    if NEEDS:
        pytest.skip("this machine cannot isolate fully: " + "; ".join(NEEDS))


def test_a_site_is_unprivileged_offline_with_a_read_only_home() -> None:
    needs_everything()
    with Site() as site:
        assert site.offline and site.user == NOBODY
        ran = site.run(
            [
                "sh",
                "-c",
                'id -u; echo "$HOME"; touch "$HOME/x" 2>/dev/null && echo '
                'wrote-home; touch "$TMPDIR/y" && echo wrote-tmp; ip -o link',
            ]
        )
        lines = ran.stdout.splitlines()
        assert lines[0] == str(NOBODY) and lines[1] == str(site.home)
        assert "wrote-home" not in lines and "wrote-tmp" in lines
        links = [ln for ln in lines if ": " in ln and ln.split(": ")[0].isdigit()]
        assert [ln.split(": ")[1] for ln in links] == ["lo"]  # no other interface: offline
        assert "UP" in links[0]
        root = site.root
    assert not root.exists()


def test_the_programs_of_a_site_share_its_loopback() -> None:
    """A server started in the site answers a client run in the site, on 127.0.0.1."""
    needs_everything()
    py = "/usr/bin/python3"  # the unprivileged user reaches the system's python
    if not os.access(py, os.X_OK):
        pytest.skip(f"{py} is not installed")
    with Site() as site:
        log = site.tmp / "server.log"
        server = site.spawn(
            [
                py,
                "-u",
                "-m",
                "http.server",
                "--bind",
                "127.0.0.1",
                "0",
                "--directory",
                str(site.root),
            ],
            log,
        )
        try:
            port = ""
            for _ in range(100):
                text = log.read_text() if log.exists() else ""
                if " port " in text:
                    port = text.split(" port ")[1].split()[0]
                    break
                subprocess.run(["sleep", "0.1"], check=True)
            assert port, log.read_text()
            got = site.run(
                [
                    py,
                    "-c",
                    "import urllib.request as u; print(u.urlopen("
                    f"'http://127.0.0.1:{port}/').status)",
                ]
            )
            assert got.stdout.strip() == "200", got.stderr
        finally:
            assert stop(server) is not None
        # the host's loopback is another one: the site's server is not there
        outside = subprocess.run(
            [
                "python3",
                "-c",
                f"import socket; s = socket.socket(); print(s.connect_ex(('127.0.0.1', {port})))",
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        assert outside.stdout.strip() != "0"


def test_a_site_removes_what_its_user_made_read_only() -> None:
    with Site(offline=False) as site:
        site.run(
            [
                "sh",
                "-c",
                'mkdir -p "$TMPDIR/d/e" && touch "$TMPDIR/d/e/f" && chmod -R a-w "$TMPDIR/d"',
            ],
            check=True,
        )
        root = site.root
    assert not root.exists()


def test_a_base_the_user_cannot_reach_is_not_used(tmp_path: Path) -> None:
    closed = tmp_path / "closed"
    closed.mkdir(mode=0o700)
    assert not isolate.reachable(closed / "x")
    with Site(closed, offline=False) as site:
        assert isolate.reachable(site.root)
        assert (site.root.parent == closed) == (os.geteuid() != 0)


def test_the_ci_shell_site_isolates_the_same_way(tmp_path: Path) -> None:
    needs_everything()
    base = Path(tempfile.mkdtemp())  # reachable by the unprivileged user, unlike tmp_path
    base.chmod(0o755)
    script = tmp_path / "step.sh"
    script.write_text(
        isolate.shell_site() + f"make_site {base}/site\n"
        'isolated sh -c \'id -u; ip -o link | wc -l; touch "$HOME/x" 2>/dev/null '
        '|| echo home-read-only; touch "$TMPDIR/y" && echo "$HOME"\'\n'
    )
    functions = tmp_path / "site.sh"
    functions.write_text(isolate.shell_site())
    check = (
        subprocess.run(["shellcheck", "-s", "sh", str(functions)], capture_output=True, text=True)
        if shutil.which("shellcheck")
        else None
    )
    assert check is None or check.returncode == 0, check.stdout
    out = subprocess.run(["sh", str(script)], capture_output=True, text=True, check=True).stdout
    isolate.remove(base)
    assert out.splitlines() == [
        "isolation: uid 65534, offline",
        str(NOBODY),
        "1",
        "home-read-only",
        f"{base}/site/home",
    ]
    with Site(tmp_path / "py-site") as site:  # the Python site: the same user and environment
        env = site.env()
        assert set(env) == {"PATH", "HOME", "TMPDIR", "LANG"} and env["PATH"] == "/usr/bin:/bin"
