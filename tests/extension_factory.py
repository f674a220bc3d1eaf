"""A DiracX extension the tests make, shaped like DiracX's example extension (gubbins): real
wheels and sdists of ``<ext>-core`` (the ``diracx`` group's extension and config), ``-routers``
(a ``diracx.services`` router with its ``diracx.access_policies`` policy), ``-client`` (the
client classes), ``-cli`` (a ``diracx.cli`` command calling the router's route) and the
metapackage ``<ext>``, each pinned to one DiracX version; the client and the CLI published as
wheels only, the others as sdists (buildable with hatchling) beside their wheels."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from local_index import LocalIndex
from wheel_factory import build_wheel, metadata, tar_gz


@dataclass(frozen=True)
class Package:
    name: str
    requires: list[str]
    entry_points: dict[str, dict[str, str]]
    files: dict[str, str]  # below src/ (sdist) or the wheel's root
    sdist: bool


def packages(ext: str, version: str, diracx: str, otel: bool = True) -> list[Package]:
    """The extension's packages: ``ext`` ``version`` on DiracX ``diracx``."""
    pin = f"=={version}"
    routers = f"diracx-routers[otel]=={diracx}" if otel else f"diracx-routers=={diracx}"
    return [
        Package(
            f"{ext}-core",
            [f"diracx-core=={diracx}"],
            {"diracx": {"extension": ext, "config": f"{ext}.core.config:Config"}},
            {
                f"{ext}/core/__init__.py": "",
                f"{ext}/core/config.py": "from diracx.core.config.schema import Config\n",
            },
            sdist=True,
        ),
        Package(
            f"{ext}-routers",
            [routers, f"{ext}-core{pin}"],
            {
                "diracx.services": {"hello": f"{ext}.routers.hello:router"},
                "diracx.access_policies": {"HelloPolicy": f"{ext}.routers.hello:HelloPolicy"},
            },
            {f"{ext}/routers/__init__.py": "", f"{ext}/routers/hello.py": HELLO_ROUTER},
            sdist=True,
        ),
        Package(
            f"{ext}-client",
            [f"diracx-client=={diracx}", f"{ext}-core{pin}"],
            {
                "diracx": {
                    "client_class": "diracx.client._generated._client:Dirac",
                    "aio_client_class": "diracx.client._generated.aio._client:Dirac",
                }
            },
            # not `<ext>/client`: once that exists DiracX's client importer takes every
            # diracx.client module from `<ext>.client._generated` (a regenerated client)
            {f"{ext}/client_hooks/__init__.py": ""},
            sdist=False,
        ),
        Package(
            f"{ext}-cli",
            [f"diracx-cli=={diracx}", f"{ext}-client{pin}"],
            {"diracx.cli": {"hello": f"{ext}.cli.hello:app"}},
            {f"{ext}/cli/__init__.py": "", f"{ext}/cli/hello.py": HELLO_CLI},
            sdist=False,
        ),
        Package(
            ext,
            [f"diracx=={diracx}", f"{ext}-cli{pin}", f"{ext}-client{pin}", f"{ext}-core{pin}"],
            {},
            {},
            sdist=True,
        ),
    ]


HELLO_ROUTER = """\
from collections.abc import Callable
from typing import Annotated

from diracx.routers.access_policies import BaseAccessPolicy
from diracx.routers.fastapi_classes import DiracxRouter
from fastapi import Depends

router = DiracxRouter()


class HelloPolicy(BaseAccessPolicy):
    @staticmethod
    async def policy(policy_name, user_info, /):
        return


CheckHelloPolicy = Annotated[Callable, Depends(HelloPolicy.check)]


@router.get("/")
async def hello(check_permission: CheckHelloPolicy) -> dict:
    await check_permission()
    return {"hello": "from the extension"}  # GREETING
"""

HELLO_CLI = '''\
import json

from azure.core.rest import HttpRequest
from diracx.cli.utils import AsyncTyper
from diracx.client.aio import AsyncDiracClient

app = AsyncTyper()


@app.async_command()
async def greet():
    """Say hello through the extension's service (GET /api/hello/)."""
    async with AsyncDiracClient() as api:
        response = await api.send_request(HttpRequest("GET", "/api/hello/"))
        response.raise_for_status()
        print(json.dumps(response.json()))
'''

GREETING = "from the extension"
"""What the extension's route answers (``{"hello": GREETING}``) and its command prints."""


def _pyproject(p: Package, version: str, ext: str) -> str:
    eps = "".join(
        f"\n[project.entry-points.{json.dumps(g)}]\n"
        + "".join(f"{k} = {json.dumps(v)}\n" for k, v in entries.items())
        for g, entries in p.entry_points.items()
    )
    target = f'packages = ["src/{ext}"]' if p.files else "bypass-selection = true"
    return (
        f'[build-system]\nrequires = ["hatchling"]\nbuild-backend = "hatchling.build"\n\n'
        f'[project]\nname = "{p.name}"\nversion = "{version}"\n'
        f'requires-python = ">=3.11"\ndependencies = {json.dumps(p.requires)}\n'
        f'description = "{p.name}, a package of the test extension"\nlicense = "MIT"\n'
        f"{eps}\n[tool.hatch.build.targets.wheel]\n{target}\n"
    )


def publish(
    index: LocalIndex, dest: Path, ext: str, version: str, diracx: str, otel: bool = True
) -> list[Package]:
    """Build the extension's files into ``dest`` and serve them from ``index``."""
    pkgs = packages(ext, version, diracx, otel)
    for p in pkgs:
        md = metadata(p.name, version, p.requires, ">=3.11")
        wheel = build_wheel(
            dest,
            p.name,
            version,
            requires=p.requires,
            requires_python=">=3.11",
            entry_points=p.entry_points,
            files={k: v.encode() for k, v in p.files.items()},
            module=False,
        )
        index.add_file(p.name, wheel.name, wheel.read_bytes(), metadata=md.encode())
        if p.sdist:
            top = f"{p.name.replace('-', '_')}-{version}"
            files = {
                "PKG-INFO": md,
                "pyproject.toml": _pyproject(p, version, ext),
                **{f"src/{k}": v for k, v in p.files.items()},
            }
            data = tar_gz(top, files)
            (dest / f"{top}.tar.gz").write_bytes(data)
            index.add_file(p.name, f"{top}.tar.gz", data)
    return pkgs
