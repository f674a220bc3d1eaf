"""The release's images: built (:func:`~dxforge.images.build.build_images`: a new dated base
tag only when a base's content changed, the release images on the latest), then tested
(:func:`~dxforge.images.check.check_services`: the services health endpoints and OpenID
configuration, the client image's ``dirac`` end to end, the tasks image's scheduler and
workers). A machine that cannot run the containers records the check as ``skipped`` with
the reason, and says so: never as passed."""

from __future__ import annotations

import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from dxforge.core.progress import SILENT, Progress
from dxforge.images.build import ImagesOptions, build_images, build_test_image
from dxforge.images.check import check_services
from dxforge.images.oci import Layout
from dxforge.images.podman import why_not
from dxforge.images.result import ImageResult
from dxforge.images.roles import ROLES
from dxforge.project.model import Project


@dataclass
class ImagesCheckResult:
    """The release images' check: ``passed``, or ``skipped`` with the ``reason``."""

    status: str
    reason: str = ""
    checks: list[str] = field(default_factory=list)
    healthy_seconds: float = 0.0  # podman run of the services to /api/health/live answering
    job_id: int = 0
    seconds: float = 0.0

    def as_json(self) -> dict[str, Any]:
        return asdict(self)


def why_not_check() -> str:
    """Why the images cannot be run and checked here, or ``""``."""
    why = why_not()
    if not why and not shutil.which("redis-server"):
        why = "redis-server is not installed (apt-get install redis-server): the tasks need it"
    return why


def release_images(project: Project, progress: Progress = SILENT) -> list[ImageResult]:
    """The bases (a new dated tag only if their content changed) and the release images;
    returns the release images (``<role>:v<version>``)."""
    result = build_images(ImagesOptions(project), progress)
    return [i for i in result.images if i.name in ROLES]


def check_key(images: list[ImageResult]) -> str:
    """What a check ran against: the release images' digests (a rerun of the same is done)."""
    return ",".join(sorted(f"{i.ref}@{i.digest}" for i in images))


def check_release_images(
    project: Project, version: str, progress: Progress = SILENT
) -> ImagesCheckResult:
    """Run the release images' checks, or record why they cannot run here."""
    why = why_not_check()
    if why:
        progress.warn(f"the container images are NOT tested: {why}")
        return ImagesCheckResult("skipped", reason=why)
    t0 = time.monotonic()
    opts, layout = ImagesOptions(project), project.layout
    build_test_image(opts, "services", progress)
    layout.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="images-check-", dir=layout.work))
    try:
        res = check_services(Layout(layout.build / "images" / "oci"), version, work, "", progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ImagesCheckResult(
        "passed",
        checks=res.checks,
        healthy_seconds=res.healthy_seconds,
        job_id=res.job_id,
        seconds=round(time.monotonic() - t0, 1),
    )
