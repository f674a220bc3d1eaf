"""Typed results of the image commands."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass(frozen=True)
class LayerResult:
    digest: str
    size: int  # compressed bytes
    what: str  # os, environment, <role> closure, diracx

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ImageResult:
    """One image: its reference in the layout, digest, base and layers."""

    name: str
    tag: str
    digest: str
    layers: list[LayerResult]
    packages: int
    base: str = ""  # name:tag of the image it stands on
    base_digest: str = ""
    sbom: Path | None = None
    archive: Path | None = None
    status: str = "built"  # built | unchanged (same digest as its latest tag)

    @property
    def ref(self) -> str:
        return f"{self.name}:{self.tag}"

    @property
    def size(self) -> int:
        return sum(layer.size for layer in self.layers)

    def as_json(self) -> dict[str, Any]:
        d = asdict(self)
        d.update(
            ref=self.ref, size=self.size, sbom=str(self.sbom or ""), archive=str(self.archive or "")
        )
        return d


@dataclass
class ImagesResult:
    layout: Path
    tags: Path
    images: list[ImageResult] = field(default_factory=list)
    os_layer: str = ""
    os_packages: int = 0
    seconds: float = 0.0
    status: str = "built"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "layout": str(self.layout),
            "tags": str(self.tags),
            "os_layer": self.os_layer,
            "os_packages": self.os_packages,
            "seconds": self.seconds,
            "images": [i.as_json() for i in self.images],
        }
