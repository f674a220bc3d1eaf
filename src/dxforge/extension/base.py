"""The DiracX distribution an extension builds on: a DiracX distribution project (a checkout's
path) and the channel its packages are in, read for the DiracX version, its package family and
the installer's Python, voms and git."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from dxforge.conda.channel import channel_url
from dxforge.core.util import DxError

BASE_METAPACKAGE = "diracx"
"""The DiracX distribution's metapackage: its recipe's version is the DiracX version."""
SHARED_SPECS = ("python", "voms", "git")
"""construct.yaml specs an extension's installer takes from DiracX's, so both ship the same."""


@dataclass(frozen=True)
class Base:
    """The DiracX distribution: its project folder (None: given as a channel only),
    channels, version and shared specs."""

    root: Path | None
    version: str
    packages: list[str]  # DiracX's recipes: diracx, diracx-core, ...
    specs: dict[str, str]  # name -> construct.yaml spec (python 3.13.*, voms, git)
    virtual_specs: list[str]
    channel: str  # the channel DiracX's packages are built into (URL)
    seed: str  # the channel their requirements come from (URL)
    files: dict[str, Path] = field(default_factory=dict)  # construct key -> the file it names
    versions: list[str] = field(default_factory=list)  # a channel's: the diracx it holds

    def as_json(self) -> dict[str, object]:
        return {
            "root": str(self.root) if self.root else None,
            "version": self.version,
            "packages": self.packages,
            "specs": self.specs,
            "channel": self.channel,
            "seed": self.seed,
        }


def _spec_name(spec: str) -> str:
    return spec.split()[0].split("=")[0].split("<")[0].split(">")[0]


def read_base(root: Path, channel: str | None = None, seed: str | None = None) -> Base:
    """The DiracX distribution at ``root`` (recipes/ and construct.yaml); its channels default
    to the ones its own build writes (``build/channels/dxforge`` and ``build/channels/seed``)."""
    from dxforge.bump.recipedoc import read_recipe
    from dxforge.project.layout import Layout
    from dxforge.project.model import Project

    root = Path(os.path.abspath(root))
    meta = root / "recipes" / BASE_METAPACKAGE / "recipe.yaml"
    construct = root / "construct.yaml"
    for need in (meta, construct):
        if not need.is_file():
            raise DxError(
                f"{need}: not found; --base names a DiracX distribution project "
                "(its recipes/ and construct.yaml), like a checkout of dxforge's"
            )
    version = read_recipe(meta).version
    spec = Project.of(Layout.of(root)).construct  # the DiracX distribution's own model
    shared = {_spec_name(s): s for s in spec.specs if _spec_name(s) in SHARED_SPECS}
    missing = [n for n in SHARED_SPECS if n not in shared]
    if missing:
        raise DxError(
            f"{construct}: key specs: no {', '.join(missing)}; an extension's "
            "installer ships the same Python, voms and git as DiracX's"
        )
    packages = sorted(p.parent.name for p in (root / "recipes").glob("*/recipe.yaml"))
    glibc = [f"__glibc >={spec.glibc}"] if spec.glibc else []
    files = {
        k: f
        for k, f in (("post_install", spec.post_install), ("license_file", spec.license_file))
        if f is not None
    }
    return Base(
        root,
        version,
        packages,
        shared,
        glibc,
        channel_url(channel) if channel else (root / "build/channels/dxforge").as_uri(),
        channel_url(seed) if seed else (root / "build/channels/seed").as_uri(),
        files,
    )
