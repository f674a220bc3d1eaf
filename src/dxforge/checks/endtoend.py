"""DiracX end to end: a real DiracX server from our channels, the installer's ``dirac`` client,
a sandbox round trip; all in one pilot site (:class:`dxforge.isolation.isolate.Site`): unprivileged,
offline, loopback only, nothing from the host on any PATH.

The server runs DiracX's own test factory (``diracx.testing.routers:create_app``, as DiracX's
``run_local.sh``): sqlite databases, diracx-testing's sqlite stand-in for OpenSearch, a git
configuration repository made with ``dirac internal``, a key made with ``rotate-jwk``, and S3 from
moto's server mode on 127.0.0.1. The client authenticates with a token signed by the server's
key, made as DiracX's ``make_token_local.py`` makes it.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dxforge.conda import channel as ch
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, Ran
from dxforge.isolation.isolate import Site, stop
from dxforge.project.target import Target
from dxforge.pypa.metadata import RequiresDistLookup
from dxforge.pypa.names import conda_run_requirements
from dxforge.seed.needs import END_TO_END

VO, GROUP, USERNAME = "diracAdmin", "admin", "localuser"
SUB = "75212b23-14c2-47be-9374-eb0113b0575e"
BUCKET = "sandboxes"
JDL = """\
Executable = "echo";
Arguments = "hello from dxforge";
JobName = "dxforge-e2e";
JobGroup = "dxforge";
JobType = User;
LogLevel = INFO;
Priority = 1;
Site = ANY;
StdOutput = std.out;
StdError = std.err;
OutputSandbox = {std.out, std.err};
"""

FREE_PORTS = """
import socket
socks = [socket.socket() for _ in range(2)]
for s in socks:
    s.bind(("127.0.0.1", 0))
print(" ".join(str(s.getsockname()[1]) for s in socks))
"""

WAIT_HTTP = """
import sys, time, urllib.error, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
last = "no answer"
while time.monotonic() < deadline:
    try:
        with opener.open(url, timeout=2) as r:
            if r.status == 200:
                sys.exit(0)
            last = f"HTTP {r.status}"
    except urllib.error.HTTPError as e:
        last = f"HTTP {e.code}: {e.read()[:200]!r}"
    except OSError as e:
        last = repr(e)
    time.sleep(0.25)
sys.exit(f"{url}: not ready ({last})")
"""

MAKE_TOKEN = """
import sys
from datetime import timedelta
from pathlib import Path
from uuid_utils import uuid7
from diracx.core.models.auth import AccessTokenPayload, TokenResponse
from diracx.core.properties import NORMAL_USER
from diracx.core.settings import AuthSettings
from diracx.core.utils import write_credentials
from diracx.db.sql.utils import uuid7_to_datetime
from diracx.logic.auth.token import create_token

vo, group, sub, username, out = sys.argv[1:6]
settings = AuthSettings()
jti = uuid7()
payload = AccessTokenPayload(
    sub=f"{vo}:{sub}", vo=vo, iss=settings.token_issuer, dirac_properties=[str(NORMAL_USER)],
    jti=str(jti), preferred_username=username, dirac_group=group,
    exp=uuid7_to_datetime(jti) + timedelta(hours=1), dirac_policies={},
)
token = TokenResponse(access_token=create_token(payload, settings), expires_in=3600,
                      refresh_token=None)
write_credentials(token, location=Path(out))
"""

SANDBOX_ROUND_TRIP = """
import asyncio, hashlib, json, secrets, sys
from pathlib import Path
from diracx.api.jobs import create_sandbox, download_sandbox

work = Path(sys.argv[1])
src = work / "payload"
(src / "nested").mkdir(parents=True)
(src / "random.bin").write_bytes(secrets.token_bytes(256 * 1024))
(src / "nested" / "hello.txt").write_text("hello sandbox\\n")
(src / "empty.dat").write_bytes(b"")

def digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}

async def main():
    pfn = await create_sandbox([src])
    dest = work / "downloaded"
    await download_sandbox(pfn, dest)
    before, after = digest(src), digest(dest / "payload")
    print(json.dumps({"pfn": pfn, "files": len(before), "bytes": sum(
        p.stat().st_size for p in src.rglob("*") if p.is_file()), "same": before == after}))
    return 0 if before and before == after else 1

sys.exit(asyncio.run(main()))
"""


@dataclass
class EndToEndResult:
    """What the end-to-end run checked, with the time each step took."""

    version: str
    isolation: str
    job_id: int
    sandbox_files: int
    sandbox_bytes: int
    steps: dict[str, float] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    server_specs: list[str] = field(default_factory=list)
    log: str = ""
    seconds: float = 0.0
    status: str = "passed"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def server_specs(version: str, target: Target) -> list[str]:
    """The server environment: DiracX's server, its test stand-ins, its client, and moto with
    its server extra (under conda-forge names)."""
    extras = conda_run_requirements(
        END_TO_END, target, RequiresDistLookup(None, {}), "the end-to-end test's server environment"
    )
    specs = [
        target.spec,
        f"diracx-routers =={version}",
        f"diracx-testing =={version}",
        f"diracx =={version}",
    ]
    return specs + [f"{n} {s}".strip() for n, s in sorted(extras.items())]


class _Run:
    def __init__(self, site: Site, logs: Path, progress: Progress) -> None:
        self.site = site
        self.logs = logs
        self.progress = progress
        self.steps: dict[str, float] = {}
        self.checks: list[str] = []

    def step(self, name: str, fn: Callable[[], Ran]) -> Ran:
        self.progress.step(f"end to end: {name}")
        t0 = time.monotonic()
        ran = fn()
        self.steps[name] = round(time.monotonic() - t0, 2)
        if not ran.ok:
            raise DxError(
                f"end to end: {name} failed (exit {ran.returncode}; log: {ran.log}):\n{ran.tail()}"
            )
        return ran

    def wait(
        self,
        name: str,
        proc: subprocess.Popen[bytes],
        url: str,
        python: str,
        env: dict[str, str],
        timeout: float,
    ) -> None:
        """Until ``url`` answers 200 in the site; a server that exits, or does not answer in
        ``timeout`` seconds, is an error showing the end of its log."""
        self.progress.step(f"end to end: waiting for the {name} ({url})")
        t0 = time.monotonic()
        why = ""
        while time.monotonic() - t0 < timeout:
            if proc.poll() is not None:
                why = f"it exited with {proc.returncode}"
                break
            ran = self.site.run([python, "-c", WAIT_HTTP, url, "3"], env=env, timeout=30)
            if ran.ok:
                self.steps[f"{name} ready"] = round(time.monotonic() - t0, 2)
                return
            why = ran.tail(3)
        else:
            why = f"no answer in {timeout:.0f} s ({why})"
        log = self.logs / f"{name}.log"
        text = log.read_text(errors="replace")[-3000:] if log.exists() else ""
        raise DxError(f"end to end: the {name} is not ready: {why}\nits log ({log}):\n{text}")

    def run(
        self, name: str, argv: list[str | Path], env: dict[str, str], timeout: float = 300
    ) -> Ran:
        log = self.logs / (re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-") + ".log")
        return self.step(name, lambda: self.site.run(argv, env=env, log=log, timeout=timeout))


def config_commands(dirac: str, repo: str) -> list[tuple[str, list[str]]]:
    """The configuration repository's jobs (as the chart's): create it, add the test VO and
    its user; ``dirac`` is the client's command."""
    return [
        ("generate-cs", [dirac, "internal", "generate-cs", repo]),
        (
            "add-vo",
            [
                dirac,
                "internal",
                "add-vo",
                repo,
                f"--vo={VO}",
                "--idp-url=https://idp.invalid",
                "--idp-client-id=dxforge-e2e",
                f"--default-group={GROUP}",
            ],
        ),
        (
            "add-user",
            [
                dirac,
                "internal",
                "add-user",
                repo,
                f"--vo={VO}",
                f"--group={GROUP}",
                f"--sub={SUB}",
                f"--preferred-username={USERNAME}",
            ],
        ),
    ]


def _run_all(r: _Run, commands: list[tuple[str, list[str]]], env: dict[str, str]) -> None:
    """Run each named command with ``r`` (the end to end's runner), in order."""
    for what, argv in commands:
        r.run(what, argv, env)


def submitted_job(said: str, where: str) -> int:
    """The first job id in what ``dirac jobs submit`` printed; else a DxError naming ``where``."""
    m = re.search(r"Inserted (\d+) jobs with ids: ([\d, ]+)", said)
    if not m:
        raise DxError(f"{where}: dirac jobs submit said {said!r}")
    return int(m[2].split(",")[0])


def db_urls(generated: str) -> dict[str, str]:
    """The ``DIRACX_*`` settings ``python -m diracx.db generate-local-urls`` printed."""
    return {
        m[1]: shlex.split(m[2])[0]
        for m in re.finditer(r"^export (DIRACX_[A-Z0-9_]+)=(.*)$", generated, re.M)
    }


def run_end_to_end(
    installer: Path,
    channels: list[str],
    version: str,
    target: Target,
    logs: Path,
    cache: Path,
    progress: Progress = SILENT,
    start_timeout: float = 180,
) -> EndToEndResult:
    """The whole end-to-end check; a failure is a DxError naming the step and its log."""
    t0 = time.monotonic()
    logs.mkdir(parents=True, exist_ok=True)
    with Site(prefix="dxforge-e2e-") as site:
        r = _Run(site, logs, progress)
        server = site.root / "server"
        specs = server_specs(version, target)
        progress.step(f"end to end: the server environment ({len(specs)} specs)")
        t = time.monotonic()
        ch.create(channels, specs, server, cache_dir=cache, where="the end-to-end server")
        r.steps["server environment"] = round(time.monotonic() - t, 2)
        client = site.work / "diracos"
        copy = site.root / installer.name
        copy.write_bytes(installer.read_bytes())
        r.run(
            "install the client", ["sh", copy, "-b", "-p", client], site.env(path="/usr/bin:/bin")
        )
        w = site.work
        senv = site.env(path=f"{server}/bin")  # nothing from the host: git is the server's
        repo = f"git+file://{w}/cs_repo"
        py = str(server / "bin/python")
        (w / "db").mkdir()
        site.give(w / "db")
        r.run(
            "rotate-jwk",
            [py, "-m", "diracx.logic", "rotate-jwk", "--jwks-path", w / "jwks.json"],
            senv,
        )
        dirac = str(server / "bin/dirac")
        _run_all(r, config_commands(dirac, repo), senv)
        urls = r.run(
            "generate-local-urls", [py, "-m", "diracx.db", "generate-local-urls", w / "db"], senv
        )
        db = db_urls(urls.stdout)
        if not any(k.startswith("DIRACX_OS_DB_") for k in db):
            raise DxError(f"end to end: generate-local-urls gave no DIRACX_OS_DB_*: {urls.stdout}")
        key = r.run(
            "state key",
            [
                py,
                "-c",
                "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())",
            ],
            senv,
        )
        ports = r.run("free ports", [py, "-c", FREE_PORTS], senv).stdout.split()
        moto_port, port = ports
        url = f"http://127.0.0.1:{port}"
        s3 = {
            "endpoint_url": f"http://127.0.0.1:{moto_port}",
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
        }
        senv = {
            **senv,
            **db,
            "DIRACX_CONFIG_BACKEND_URL": repo,
            "DIRACX_SERVICE_AUTH_TOKEN_KEYSTORE": f"file://{w}/jwks.json",
            "DIRACX_SERVICE_AUTH_TOKEN_ISSUER": url,
            "DIRACX_SERVICE_AUTH_STATE_KEY": key.stdout.strip(),
            "DIRACX_SERVICE_AUTH_ALLOWED_REDIRECTS": json.dumps(
                [f"{url}/api/docs/oauth2-redirect"]
            ),
            "DIRACX_SANDBOX_STORE_BUCKET_NAME": BUCKET,
            "DIRACX_SANDBOX_STORE_AUTO_CREATE_BUCKET": "true",
            "DIRACX_SANDBOX_STORE_S3_CLIENT_KWARGS": json.dumps(s3),
        }
        procs = []
        try:
            procs.append(
                site.spawn(
                    [server / "bin/moto_server", "-H", "127.0.0.1", "-p", moto_port],
                    logs / "moto.log",
                    env=senv,
                )
            )
            r.wait("moto", procs[-1], f"http://127.0.0.1:{moto_port}/", py, senv, 60)
            procs.append(
                site.spawn(
                    [
                        server / "bin/uvicorn",
                        "--factory",
                        "diracx.testing.routers:create_app",
                        "--host",
                        "127.0.0.1",
                        "--port",
                        port,
                        "--workers",
                        "1",
                    ],
                    logs / "server.log",
                    env=senv,
                )
            )
            r.wait("server", procs[-1], f"{url}/api/health/ready", py, senv, start_timeout)
            for path in (
                "/api/openapi.json",
                "/.well-known/openid-configuration",
                "/.well-known/jwks.json",
            ):
                r.run(f"GET {path}", [py, "-c", WAIT_HTTP, url + path, "10"], senv)
            r.checks.append("health, OpenAPI, well-known and JWKS endpoints answer")
            creds = w / "credentials.json"
            r.run("make a token", [py, "-c", MAKE_TOKEN, VO, GROUP, SUB, USERNAME, creds], senv)
            cenv = site.env(
                path=f"{client}/bin",
                DIRACX_URL=url,
                DIRACX_CREDENTIALS_PATH=str(creds),
                DIRACX_OUTPUT_FORMAT="JSON",
            )
            cdirac = client / "bin/dirac"
            out = r.run("dirac --help", [cdirac, "--help"], cenv).stdout
            if "jobs" not in out or "whoami" not in out:
                raise DxError(f"end to end: dirac --help lists no jobs/whoami:\n{out}")
            who = json.loads(r.run("dirac whoami", [cdirac, "whoami"], cenv).stdout)
            if (who.get("vo"), who.get("dirac_group"), who.get("preferred_username")) != (
                VO,
                GROUP,
                USERNAME,
            ):
                raise DxError(f"end to end: dirac whoami says {who}")
            r.checks.append(f"dirac whoami: {USERNAME} in {VO}/{GROUP}")
            cfg = json.loads(r.run("dirac config dump", [cdirac, "config", "dump"], cenv).stdout)
            if SUB not in cfg.get("Registry", {}).get(VO, {}).get("Users", {}):
                raise DxError("end to end: dirac config dump does not show the user")
            jdl = w / "job.jdl"
            jdl.write_text(JDL)
            site.give(jdl)
            sub = r.run("dirac jobs submit", [cdirac, "jobs", "submit", jdl], cenv).stdout
            job = submitted_job(sub, "end to end")
            found = json.loads(
                r.run(
                    "dirac jobs search",
                    [cdirac, "jobs", "search", "--condition", f"JobID eq {job}"],
                    cenv,
                ).stdout
            )
            if [j.get("JobName") for j in found if j.get("JobID") == job] != ["dxforge-e2e"]:
                raise DxError(f"end to end: dirac jobs search did not find job {job}: {found}")
            r.checks.append(f"dirac jobs submit and search: job {job}")
            sandbox = w / "sandbox"
            sandbox.mkdir()
            site.give(sandbox)
            rt = json.loads(
                r.run(
                    "sandbox round trip",
                    [client / "bin/python", "-c", SANDBOX_ROUND_TRIP, sandbox],
                    cenv,
                )
                .stdout.strip()
                .splitlines()[-1]
            )
            if not rt["same"]:
                raise DxError(f"end to end: the downloaded sandbox differs: {rt}")
            r.checks.append(
                f"sandbox round trip: {rt['files']} files, {rt['bytes']} bytes, the same bytes back"
            )
        finally:
            for p in reversed(procs):
                stop(p)
        return EndToEndResult(
            version,
            site.describe(),
            job,
            rt["files"],
            rt["bytes"],
            r.steps,
            r.checks,
            specs,
            str(logs),
            round(time.monotonic() - t0, 1),
        )
