"""The images end to end, with podman (:mod:`.podman`): the services image started as DiracX's
Helm chart starts it (a key from ``rotate-jwk``, databases from ``init-sql``, a configuration
repository from the client image's ``dirac internal generate-cs``, then uvicorn with the chart's
command), driven by the client image's ``dirac`` as ``dxforge e2e`` drives the installer's
(the same scripts: :mod:`dxforge.checks.endtoend`); and the tasks image's scheduler and worker
against a Redis on 127.0.0.1.

Everything runs on the host's network namespace (``--network=host``) and binds 127.0.0.1
only. The services run from the ``services-testing`` image: the release image plus one layer
of diracx-testing's stand-ins (OpenSearch in sqlite) and moto's S3 server."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dxforge.checks.endtoend import (
    BUCKET,
    GROUP,
    JDL,
    MAKE_TOKEN,
    SANDBOX_ROUND_TRIP,
    SUB,
    USERNAME,
    VO,
    config_commands,
    db_urls,
    missing_routes,
    submitted_job,
)
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, Ran, spawn
from dxforge.images.oci import Layout
from dxforge.images.podman import Podman
from dxforge.isolation.isolate import stop

DATA = "/data"
SIZES = ("small", "medium", "large")
"""A worker per size, as a deployment runs them. diracx-tasks 0.7.0's monitor task (small)
schedules the executor task through a binding that carries no labels, so the executor
(declared large) is sent to the default stream, ``normal:medium``: without a medium worker
the job stays Waiting forever."""


@dataclass
class ContainersResult:
    version: str
    user: str
    job_id: int = 0
    sandbox_bytes: int = 0
    healthy_seconds: float = 0.0  # podman run of the services to /api/health/live answering
    steps: dict[str, float] = field(default_factory=dict)
    checks: list[str] = field(default_factory=list)
    status: str = "passed"

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def free_ports(n: int) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def get(url: str, timeout: float = 2, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(urllib.request.Request(url, headers=headers or {}), timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()
    except OSError as e:
        return 0, repr(e).encode()


class _Containers:
    def __init__(
        self, pm: Podman, data: Path, user: str, result: ContainersResult, progress: Progress
    ) -> None:
        self.pm, self.data, self.user, self.result, self.progress = pm, data, user, result, progress

    def run(self, name: str, image: str, argv: list[str], env: dict[str, str] | None = None) -> Ran:
        self.progress.step(f"containers: {name}")
        t0 = time.monotonic()
        ran = self.pm.run(
            image, argv, network="host", user=self.user, env=env, volumes={str(self.data): DATA}
        )
        self.result.steps[name] = round(time.monotonic() - t0, 2)
        if not ran.ok:
            raise DxError(f"containers: {name} failed (exit {ran.returncode}):\n{ran.tail()}")
        return ran

    def wait(self, name: str, cid: str, url: str, timeout: float) -> float:
        t0 = time.monotonic()
        last = ""
        while time.monotonic() - t0 < timeout:
            status, body = get(url)
            if status == 200:
                return time.monotonic() - t0
            last = f"{status} {body[:200]!r}"
            state = self.pm("inspect", "-f", "{{.State.Running}}", cid, check=False).stdout
            if state.strip() == "false":
                break
            time.sleep(0.2)
        logs = self.pm("logs", cid, check=False)
        raise DxError(
            f"containers: the {name} is not ready at {url} ({last}):\n"
            f"{(logs.stdout + logs.stderr)[-3000:]}"
        )


def _server_env(db: dict[str, str], port: int, moto: int, key: str) -> dict[str, str]:
    url = f"http://127.0.0.1:{port}"
    s3 = {
        "endpoint_url": f"http://127.0.0.1:{moto}",
        "aws_access_key_id": "testing",
        "aws_secret_access_key": "testing",
    }
    return {
        **db,
        "DIRACX_CONFIG_BACKEND_URL": f"git+file://{DATA}/cs_repo",
        "DIRACX_SERVICE_AUTH_TOKEN_KEYSTORE": f"file://{DATA}/keystore/jwks.json",
        "DIRACX_SERVICE_AUTH_TOKEN_ISSUER": url,
        "DIRACX_SERVICE_AUTH_STATE_KEY": key,
        "DIRACX_SERVICE_AUTH_ALLOWED_REDIRECTS": json.dumps([f"{url}/api/docs/oauth2-redirect"]),
        "DIRACX_SANDBOX_STORE_BUCKET_NAME": BUCKET,
        "DIRACX_SANDBOX_STORE_AUTO_CREATE_BUCKET": "true",
        "DIRACX_SANDBOX_STORE_S3_CLIENT_KWARGS": json.dumps(s3),
    }


def _prepare(c: _Containers, server: str, client: str) -> dict[str, str]:
    """The chart's jobs: a key, a configuration repository, the databases. The DB settings."""
    py = ["python"]
    c.run(
        "rotate-jwk",
        server,
        [*py, "-m", "diracx.logic", "rotate-jwk", "--jwks-path", f"{DATA}/keystore/jwks.json"],
    )
    repo = f"git+file://{DATA}/cs_repo"
    for what, argv in config_commands("dirac", repo):
        c.run(f"{what} (client image)", client, argv)
    urls = c.run(
        "generate-local-urls", server, [*py, "-m", "diracx.db", "generate-local-urls", f"{DATA}/db"]
    )
    db = db_urls(urls.stdout)
    c.run("init-sql", server, [*py, "-m", "diracx.db", "init-sql"], db)
    return db


def _drive(c: _Containers, client: str, env: dict[str, str]) -> None:
    """The client image's dirac, as :func:`dxforge.checks.endtoend.run_end_to_end` drives it."""
    who = json.loads(c.run("dirac whoami", client, ["dirac", "whoami"], env).stdout)
    if (who.get("vo"), who.get("dirac_group"), who.get("preferred_username")) != (
        VO,
        GROUP,
        USERNAME,
    ):
        raise DxError(f"containers: dirac whoami says {who}")
    c.result.checks.append(f"dirac whoami: {USERNAME} in {VO}/{GROUP}")
    (c.data / "job.jdl").write_text(JDL)
    sub = c.run(
        "dirac jobs submit", client, ["dirac", "jobs", "submit", f"{DATA}/job.jdl"], env
    ).stdout
    job = submitted_job(sub, "containers")
    found = json.loads(
        c.run(
            "dirac jobs search",
            client,
            ["dirac", "jobs", "search", "--condition", f"JobID eq {job}"],
            env,
        ).stdout
    )
    if [j.get("JobName") for j in found if j.get("JobID") == job] != ["dxforge-e2e"]:
        raise DxError(f"containers: dirac jobs search did not find job {job}: {found}")
    c.result.job_id = job
    c.result.checks.append(f"dirac jobs submit and search: job {job}")
    (c.data / "sandbox").mkdir(exist_ok=True)
    (c.data / "sandbox").chmod(0o777)
    out = c.run(
        "sandbox round trip", client, ["python", "-c", SANDBOX_ROUND_TRIP, f"{DATA}/sandbox"], env
    ).stdout
    rt = json.loads(out.strip().splitlines()[-1])
    if not rt["same"]:
        raise DxError(f"containers: the downloaded sandbox differs: {rt}")
    c.result.sandbox_bytes = rt["bytes"]
    c.result.checks.append(
        f"sandbox round trip: {rt['files']} files, {rt['bytes']} bytes, the same bytes back"
    )


def redis(work: Path, port: int) -> subprocess.Popen[bytes]:
    """Debian's redis-server on 127.0.0.1:``port``, nothing kept on disk."""
    if not shutil.which("redis-server"):
        raise DxError("redis-server is not installed (apt-get install redis-server)")
    work.mkdir(parents=True, exist_ok=True)
    return spawn(
        [
            "redis-server",
            "--bind",
            "127.0.0.1",
            "--port",
            str(port),
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(work),
        ],
        work / "redis.log",
    )


def _tasks(
    c: _Containers,
    tasks: str,
    client: str,
    env: dict[str, str],
    cenv: dict[str, str],
    job: int,
    timeout: float = 180,
) -> None:
    """The tasks image's scheduler and a worker of each size (:data:`SIZES`) with diracx-tasks'
    demo executor on: the submitted job goes Received -> Waiting -> Matched -> Running -> Done
    (the status is the last one set)."""
    port = free_ports(1)[0]
    server = redis(c.data.parent / "redis", port)
    try:
        tenv = {
            **env,
            "DIRACX_TASKS_REDIS_URL": f"redis://127.0.0.1:{port}",
            "DIRACX_TASKS_DUMMY_JOB_EXECUTOR_ENABLED": "true",
            "DIRACX_TASKS_DUMMY_JOB_EXECUTOR_INTERVAL_SECONDS": "2",
        }
        vols = {str(c.data): DATA}
        ids = [
            c.pm.start(
                tasks,
                ["diracx-tasks", "scheduler"],
                network="host",
                user=c.user,
                env=tenv,
                volumes=vols,
            )
        ]
        for size in SIZES:
            ids.append(
                c.pm.start(
                    tasks,
                    ["diracx-tasks", "worker", f"--worker-size={size}", "--max-concurrent-tasks=2"],
                    network="host",
                    user=c.user,
                    env=tenv,
                    volumes=vols,
                )
            )
        t0 = time.monotonic()
        status = ""
        while time.monotonic() - t0 < timeout:
            found = json.loads(
                c.run(
                    "dirac jobs search (status)",
                    client,
                    [
                        "dirac",
                        "jobs",
                        "search",
                        "--parameter",
                        "Status",
                        "--condition",
                        f"JobID eq {job}",
                    ],
                    cenv,
                ).stdout
            )
            status = str(found[0].get("Status")) if found else "not found"
            if status == "Done":  # the monitor task, then the executor task, ran
                c.result.steps["tasks took the job to Done"] = round(time.monotonic() - t0, 2)
                c.result.checks.append(
                    f"tasks: the scheduler and workers ran DiracX's job monitor and executor "
                    f"tasks: job {job} Received -> Done"
                )
                return
            time.sleep(2)
        logs = "\n".join(_logs(c.pm, i, 3000) for i in ids)
        raise DxError(
            f"containers: job {job} is {status}, not Done, after {timeout:.0f} s of "
            f"the tasks' scheduler and workers:\n{logs}"
        )
    finally:
        stop(server)


def _logs(pm: Podman, cid: str, tail: int) -> str:
    """The end of a container's output, stdout and stderr (Python logs to stderr)."""
    ran = pm("logs", cid, check=False)
    return f"--- {cid[:12]}\n{(ran.stdout + ran.stderr)[-tail:]}"


@dataclass(frozen=True)
class _Served:
    """A services container answering on 127.0.0.1:``port``: its environment, the client's."""

    port: int
    env: dict[str, str]
    cenv: dict[str, str]


def _serve(c: _Containers, server: str, client: str) -> _Served:
    """The chart's jobs, moto, then the services container (uvicorn, DiracX's test factory)
    healthy, with a token for the client's ``dirac`` (``{DATA}/credentials.json``)."""
    pm, data, user = c.pm, c.data, c.user
    db = _prepare(c, server, client)
    port, moto = free_ports(2)
    key = c.run(
        "state key",
        server,
        [
            "python",
            "-c",
            "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())",
        ],
    )
    env = _server_env(db, port, moto, key.stdout.strip().splitlines()[-1])
    ms = pm.start(
        server, ["moto_server", "-H", "127.0.0.1", "-p", str(moto)], network="host", user=user
    )
    c.wait("moto", ms, f"http://127.0.0.1:{moto}/", 60)
    t0 = time.monotonic()
    # the chart's command with DiracX's test factory: OpenSearch is diracx-testing's
    # sqlite stand-in here (as in `dxforge e2e`); the real factory needs an OpenSearch
    sid = pm.start(
        server,
        [
            "uvicorn",
            "--factory",
            "diracx.testing.routers:create_app",
            "--host=127.0.0.1",
            f"--port={port}",
            "--proxy-headers",
            "--forwarded-allow-ips=*",
        ],
        network="host",
        user=user,
        env=env,
        volumes={str(data): DATA},
    )
    c.wait("services", sid, f"http://127.0.0.1:{port}/api/health/live", 180)
    c.result.healthy_seconds = round(time.monotonic() - t0, 2)
    for path in ("/.well-known/openid-configuration", "/api/health/ready"):
        status, body = get(f"http://127.0.0.1:{port}{path}", 10)
        if status != 200:
            raise DxError(f"containers: {path} answered {status}: {body[:300]!r}")
    c.result.checks.append(
        "/api/health/live, /api/health/ready and /.well-known/openid-configuration answer"
    )
    c.run(
        "make a token",
        server,
        ["python", "-c", MAKE_TOKEN, VO, GROUP, SUB, USERNAME, f"{DATA}/credentials.json"],
        env,
    )
    cenv = {
        "DIRACX_URL": f"http://127.0.0.1:{port}",
        "DIRACX_CREDENTIALS_PATH": f"{DATA}/credentials.json",
        "DIRACX_OUTPUT_FORMAT": "JSON",
    }
    return _Served(port, env, cenv)


def _volumes(work: Path) -> Path:
    data = work / "data"
    for d in (data, data / "keystore", data / "db"):  # the chart's volumes, any uid writes
        d.mkdir(parents=True)
        d.chmod(0o777)
    return data


def check_services(
    oci: Layout, version: str, work: Path, user: str = "", progress: Progress = SILENT
) -> ContainersResult:
    """The services (``services-testing``) and client images end to end as ``user`` (default:
    the images' own user)."""
    result = ContainersResult(version, user or "image default (1000:0)")
    data = _volumes(work)
    with Podman(work / "podman") as pm:
        server = pm.load(oci, f"services-testing:v{version}")
        client = pm.load(oci, f"client:v{version}")
        c = _Containers(pm, data, user, result, progress)
        served = _serve(c, server, client)
        _drive(c, client, served.cenv)
        _tasks(c, pm.load(oci, f"tasks:v{version}"), client, served.env, served.cenv, result.job_id)
    return result


def _routes(port: int, services: list[str], token: str) -> list[str]:
    """Each service's routes in the app's OpenAPI document, and its GET ``/api/<service>/``
    answering 200 with ``token``; the checks passed."""
    base = f"http://127.0.0.1:{port}"
    status, doc = get(f"{base}/api/openapi.json", 20)
    if status != 200:
        raise DxError(f"containers: /api/openapi.json answered {status}: {doc[:300]!r}")
    missing = missing_routes(json.loads(doc), services)
    if missing:
        raise DxError(f"containers: the app serves no route under /api/{', /api/'.join(missing)}")
    checks = []
    for service in services:
        url = f"{base}/api/{service}/"
        status, body = get(url, 20, {"Authorization": f"Bearer {token}"})
        if status != 200:
            raise DxError(f"containers: GET {url} answered {status}: {body[:300]!r}")
        checks.append(f"GET /api/{service}/ answers 200: {body[:200].decode(errors='replace')}")
    return checks


def check_extension_services(
    oci: Layout,
    server_ref: str,
    client_ref: str,
    services: list[str],
    work: Path,
    user: str = "",
    progress: Progress = SILENT,
) -> ContainersResult:
    """An extension's services image (its test image ``server_ref``) started as the chart
    starts DiracX's, the configuration from its client image ``client_ref``: healthy, and
    serving each of the extension's ``services`` (``GET /api/<service>/``, authenticated)."""
    result = ContainersResult(server_ref, user or "image default (1000:0)")
    data = _volumes(work)
    with Podman(work / "podman") as pm:
        server, client = pm.load(oci, server_ref), pm.load(oci, client_ref)
        c = _Containers(pm, data, user, result, progress)
        served = _serve(c, server, client)
        token = json.loads((data / "credentials.json").read_text())["access_token"]
        result.checks += _routes(served.port, services, token)
    return result
