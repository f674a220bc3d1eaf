"""The OCI image layout, written by umoci (chosen by numbers: benchmarks/README.md): layers are
added verbatim from our deterministic archives, gzip'd by umoci, and the configuration,
history and annotations set with fixed times, so the same inputs give the same digests.

One layout holds every image (``name:tag`` references), so a release and its base share their
layer blobs on disk as in a registry."""

from __future__ import annotations

import datetime as dt
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dxforge.core.util import DxError, execute, run

MANIFEST = "application/vnd.oci.image.manifest.v1+json"


def rfc3339(epoch: int) -> str:
    return dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass(frozen=True)
class ImageConfig:
    """What a container of the image runs, as the OCI configuration says it."""

    user: str
    env: tuple[str, ...]
    entrypoint: tuple[str, ...]
    cmd: tuple[str, ...]
    workdir: str
    ports: tuple[str, ...] = ()
    labels: dict[str, str] = field(default_factory=dict)

    def options(self) -> list[str]:
        opts = [
            "--clear=config.env",
            "--clear=config.entrypoint",
            "--clear=config.cmd",
            "--clear=config.labels",
            "--clear=config.exposedports",
            "--clear=manifest.annotations",
            f"--config.user={self.user}",
            f"--config.workingdir={self.workdir}",
        ]
        opts += [f"--config.env={e}" for e in self.env]
        opts += [f"--config.entrypoint={e}" for e in self.entrypoint]
        opts += [f"--config.cmd={c}" for c in self.cmd]
        opts += [f"--config.exposedports={p}" for p in self.ports]
        for k, v in sorted(self.labels.items()):
            opts += [f"--config.label={k}={v}", f"--manifest.annotation={k}={v}"]
        return opts


@dataclass(frozen=True)
class Layer:
    digest: str
    size: int  # compressed bytes
    diff_id: str


class Layout:
    """An OCI image layout directory, written through umoci."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def umoci(self, *args: str, what: str) -> str:
        return run(["umoci", *args], what=what, fix="apt-get install umoci")

    def ensure(self) -> Layout:
        if not (self.path / "index.json").is_file():
            if self.path.exists():
                shutil.rmtree(self.path)
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self.umoci("init", "--layout", str(self.path), what=f"making the layout {self.path}")
        return self

    def image(self, ref: str) -> str:
        return f"{self.path}:{ref}"

    def refs(self) -> dict[str, str]:
        """Every reference in the layout: name -> manifest digest."""
        index = json.loads((self.path / "index.json").read_text())
        return {
            m["annotations"]["org.opencontainers.image.ref.name"]: m["digest"]
            for m in index.get("manifests") or []
            if "org.opencontainers.image.ref.name" in m.get("annotations", {})
        }

    def blob(self, digest: str) -> bytes:
        algo, hexa = digest.split(":", 1)
        path = self.path / "blobs" / algo / hexa
        if not path.is_file():
            raise DxError(f"{path}: the layout lacks blob {digest}; build the images again")
        return path.read_bytes()

    def digest(self, ref: str) -> str:
        refs = self.refs()
        if ref not in refs:
            raise DxError(f"{self.path}: no image {ref}; known: {', '.join(sorted(refs))}")
        return refs[ref]

    def manifest(self, ref: str) -> dict[str, Any]:
        return json.loads(self.blob(self.digest(ref)))

    def config(self, ref: str) -> dict[str, Any]:
        return json.loads(self.blob(self.manifest(ref)["config"]["digest"]))

    def layers(self, ref: str) -> list[Layer]:
        m, c = self.manifest(ref), self.config(ref)
        return [
            Layer(lay["digest"], lay["size"], diff)
            for lay, diff in zip(m["layers"], c["rootfs"]["diff_ids"], strict=True)
        ]

    def new(self, ref: str) -> None:
        self.umoci("new", "--image", self.image(ref), what=f"a new image {ref}")

    def tag(self, ref: str, new: str) -> None:
        self.umoci("tag", "--image", self.image(ref), new, what=f"tagging {ref} as {new}")

    def remove(self, ref: str) -> None:
        if ref in self.refs():
            self.umoci("rm", "--image", self.image(ref), what=f"removing {ref}")

    def add_layer(self, ref: str, tar: Path, epoch: int, created_by: str) -> None:
        self.umoci(
            "raw",
            "add-layer",
            "--image",
            self.image(ref),
            f"--history.created={rfc3339(epoch)}",
            f"--history.created_by={created_by}",
            str(tar),
            what=f"adding the layer {tar.name} to {ref}",
        )

    def configure(self, ref: str, config: ImageConfig, epoch: int) -> None:
        self.umoci(
            "config",
            "--image",
            self.image(ref),
            "--no-history",
            f"--created={rfc3339(epoch)}",
            "--architecture=amd64",
            "--os=linux",
            *config.options(),
            what=f"configuring {ref}",
        )

    def gc(self) -> None:
        self.umoci("gc", "--layout", str(self.path), what=f"collecting {self.path}'s garbage")


def export_archive(layout: Layout, ref: str, out: Path) -> Path:
    """``ref`` as an oci-archive (one tar, for offline use), written atomically."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.unlink(missing_ok=True)
    try:
        execute(
            ["skopeo", "copy", "--quiet", f"oci:{layout.image(ref)}", f"oci-archive:{tmp}:{ref}"],
            what=f"exporting {ref} as an oci-archive",
            fix="apt-get install skopeo",
        )
        tmp.replace(out)
    finally:
        tmp.unlink(missing_ok=True)
    return out


def copy_image(src: Layout, ref: str, dst: Layout) -> str:
    """``ref`` of ``src`` into ``dst`` under the same reference, byte for byte: the same
    manifest, hence the same layer digests (verified); returns its digest."""
    want = src.digest(ref)
    if dst.refs().get(ref) == want:
        return want
    dst.remove(ref)
    execute(
        [
            "skopeo",
            "copy",
            "--quiet",
            "--preserve-digests",
            f"oci:{src.image(ref)}",
            f"oci:{dst.image(ref)}",
        ],
        what=f"copying {ref} from {src.path} to {dst.path}",
        fix="apt-get install skopeo",
    )
    got = dst.digest(ref)
    if got != want:
        raise DxError(
            f"{dst.path}: the copy of {ref} is {got}, not {src.path}'s {want}; remove {dst.path} "
            "and build again"
        )
    return got
