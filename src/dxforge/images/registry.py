"""Pushing images to a registry and pulling them back, with skopeo (credentials from the usual
auth file: ``$REGISTRY_AUTH_FILE``, ``${XDG_RUNTIME_DIR}/containers/auth.json`` or
``~/.docker/config.json``). Digests are preserved: what the registry serves is what we built.
The bytes sent are the compressed sizes of the blobs the registry did not already hold."""

from __future__ import annotations

import re
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, execute
from dxforge.images.oci import Layout
from dxforge.images.result import ImagesResult

DEST_RE = re.compile(r"^[A-Za-z0-9.-]+(:\d+)?(/[a-z0-9._-]+)+$")
SKIPPED_RE = re.compile(
    r"Skipping blob (sha256:[0-9a-f]{64}) \(already present\)|"
    r"Copying blob (sha256:[0-9a-f]{64}) skipped: already exists"
)


@dataclass(frozen=True)
class PushedImage:
    ref: str  # destination reference
    digest: str
    blobs_sent: int
    bytes_sent: int

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class PushResult:
    destination: str
    images: list[PushedImage] = field(default_factory=list)
    status: str = "pushed"

    @property
    def bytes_sent(self) -> int:
        return sum(i.bytes_sent for i in self.images)

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "destination": self.destination,
            "bytes_sent": self.bytes_sent,
            "images": [i.as_json() for i in self.images],
        }


def check_destination(dest: str) -> str:
    dest = dest.strip().rstrip("/")
    if not DEST_RE.match(dest):
        raise DxError(f"--push {dest!r}: give REGISTRY/NAMESPACE, like 127.0.0.1:5000/diracx")
    return dest


def sent_blobs(output: str, blobs: list[str]) -> list[str]:
    """Which of ``blobs`` skopeo sent: those its output (``--debug``) does not say it skipped
    as already present in the repository."""
    skipped = {m[1] or m[2] for m in SKIPPED_RE.finditer(output)}
    return [b for b in blobs if b not in skipped]


def push(layout: Layout, ref: str, dest: str, tls_verify: bool = True) -> PushedImage:
    """Push ``ref`` of ``layout`` to ``dest/<name>:<tag>``; the registry's digest must be
    the layout's."""
    name, tag = ref.split(":", 1)
    target = f"{dest}/{name}:{tag}"
    with tempfile.TemporaryDirectory(prefix="dxforge-push-") as tmp:
        digestfile = Path(tmp) / "digest"
        ran = execute(
            [
                "skopeo",
                "--debug",
                "copy",
                "--preserve-digests",
                f"--digestfile={digestfile}",
                f"--dest-tls-verify={'true' if tls_verify else 'false'}",
                f"oci:{layout.image(ref)}",
                f"docker://{target}",
            ],
            what=f"pushing {ref} to {target}",
            fix="log in first (`skopeo login`), or check the registry's address",
        )
        digest = digestfile.read_text().strip()
    if digest != layout.digest(ref):
        raise DxError(f"{target}: the registry holds {digest}, not {layout.digest(ref)}")
    sizes = {lay.digest: lay.size for lay in layout.layers(ref)}
    sent = sent_blobs(ran.stdout + ran.stderr, list(sizes))
    return PushedImage(target, digest, len(sent), sum(sizes[b] for b in sent))


def push_images(
    result: ImagesResult, dest: str, tls_verify: bool = True, progress: Progress = SILENT
) -> PushResult:
    """Push every image of ``result`` (bases first, so a release sends its own layer only)."""
    dest = check_destination(dest)
    layout = Layout(result.layout)
    out = PushResult(dest)
    for image in result.images:
        progress.step(f"pushing {image.ref} to {dest}")
        out.images.append(push(layout, image.ref, dest, tls_verify))
    return out


def pull(ref: str, layout: Path, name: str, tls_verify: bool = True) -> str:
    """Copy the registry's ``ref`` into the OCI layout ``layout`` as ``name``; its digest."""
    layout.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="dxforge-pull-") as tmp:
        digestfile = Path(tmp) / "digest"
        execute(
            [
                "skopeo",
                "copy",
                "--preserve-digests",
                f"--digestfile={digestfile}",
                f"--src-tls-verify={'true' if tls_verify else 'false'}",
                f"docker://{ref}",
                f"oci:{layout}:{name}",
            ],
            what=f"pulling {ref}",
        )
        return digestfile.read_text().strip()
