"""CycloneDX 1.6 software bills of materials (with cyclonedx-python-lib): one component per conda
package, with name, version, build string, license, sha256 and a ``pkg:conda/...`` purl.

The document depends only on the packages it lists and on the timestamp given (a release's
``SOURCE_DATE_EPOCH``): its serial number is derived from the content, so the same packages give
the same bytes wherever and whenever the SBOM is written.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections.abc import Iterable
from pathlib import Path

from dxforge import __version__
from dxforge.conda.channel import Package, local_path
from dxforge.core.util import DxError, atomic_write_text

_NAMESPACE = uuid.UUID("6f1f7c1e-2a67-5f4e-9d0c-6478666f7267")


def channel_name(channel: str) -> str:
    """How a purl names the channel: the directory name of a local channel (``dxforge``,
    ``seed``; never a build machine's path), else the channel's name or URL."""
    path = local_path(channel)
    if path is not None:
        return path.name
    return channel.rstrip("/").rsplit("/", 1)[-1] if "://" in channel else channel


def purl(p: Package) -> str:
    from packageurl import PackageURL

    return PackageURL(
        type="conda",
        name=p.name,
        version=p.version,
        qualifiers={
            "build": p.build,
            "channel": channel_name(p.channel),
            "subdir": p.subdir,
            "type": "conda" if p.file_name.endswith(".conda") else "tar.bz2",
        },
    ).to_string()


def bom_json(subject: str, version: str, packages: Iterable[Package], timestamp: int) -> str:
    """The CycloneDX 1.6 JSON document for ``subject`` (the installer or a channel)."""
    from cyclonedx.contrib.license.factories import LicenseFactory
    from cyclonedx.model import HashAlgorithm, HashType, Property
    from cyclonedx.model.bom import Bom, BomMetaData
    from cyclonedx.model.component import Component, ComponentType
    from cyclonedx.model.tool import ToolRepository
    from cyclonedx.output.json import JsonV1Dot6
    from packageurl import PackageURL

    licenses = LicenseFactory()
    pkgs = sorted(packages, key=lambda p: (p.name, p.version, p.build))
    components = []
    for p in pkgs:
        ref = purl(p)
        components.append(
            Component(
                type=ComponentType.LIBRARY,
                name=p.name,
                version=p.version,
                bom_ref=ref,
                purl=PackageURL.from_string(ref),
                hashes=[HashType(alg=HashAlgorithm.SHA_256, content=p.sha256)] if p.sha256 else [],
                licenses=[licenses.make_from_string(p.license)] if p.license else [],
                properties=[
                    Property(name="conda:build", value=p.build),
                    Property(name="conda:subdir", value=p.subdir),
                ],
            )
        )
    seed = json.dumps([subject, version, [purl(p) + p.sha256 for p in pkgs]]).encode()
    serial = uuid.uuid5(_NAMESPACE, hashlib.sha256(seed).hexdigest())
    tools = ToolRepository(
        components=[
            Component(
                type=ComponentType.APPLICATION,
                name="dxforge",
                version=__version__,
                group="DIRACGrid",
            )
        ]
    )
    main = Component(
        type=ComponentType.APPLICATION,
        name=subject,
        version=version,
        bom_ref=f"{subject}@{version}",
    )
    bom = Bom(
        components=components,
        serial_number=serial,
        metadata=BomMetaData(
            component=main,
            tools=tools,
            timestamp=dt.datetime.fromtimestamp(timestamp, tz=dt.UTC),
        ),
    )
    bom.register_dependency(main, components)
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    return json.dumps(json.loads(text), indent=2, sort_keys=True) + "\n"


def validate(text: str) -> None:
    """Check ``text`` against the CycloneDX 1.6 JSON schema (bundled with the library)."""
    from cyclonedx.schema import SchemaVersion
    from cyclonedx.validation.json import JsonStrictValidator

    error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    if error is not None:
        raise DxError(f"the SBOM is not valid CycloneDX 1.6: {error}")


def write(
    path: Path, subject: str, version: str, packages: Iterable[Package], timestamp: int
) -> Path:
    """Write a validated SBOM to ``path`` atomically."""
    text = bom_json(subject, version, packages, timestamp)
    validate(text)
    atomic_write_text(path, text)
    return path
