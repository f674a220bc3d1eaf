"""``dxforge extension images``: an extension's container images, each on the DiracX release
image of the DiracX version its packages pin.

``<ext>-services``, ``<ext>-tasks`` and ``<ext>-client`` at ``v<extension version>`` (DiracX's
packaging design calls them mydiracx-routers, -tasks and mydiracx; the role names are DiracX's
images'): the DiracX image ``<role>:v<pin>`` byte for byte (copied into the project's layout,
the same manifest and layer digests), plus one layer of the extension's packages and what they
need. The solve pins every package of the DiracX image exactly; the layer may add only the
extension's packages (at its version), DiracX's at the pin, and what they need.

The DiracX images come from ``dxforge images`` run in the DiracX distribution (its
``build/images``: the layout and the packages recorded per image); where they are missing,
the error names the one command that builds them."""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dxforge.conda.channel import Package
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError
from dxforge.extension.build import base_channels
from dxforge.extension.project import ExtensionProject, read_project
from dxforge.images.build import (
    ImagesBuild,
    ImagesOptions,
    build_test_image,
    building,
    image_epoch,
    recorded_packages,
)
from dxforge.images.check import check_extension_services
from dxforge.images.oci import Layout, copy_image, export_archive
from dxforge.images.podman import why_not
from dxforge.images.result import ImageResult
from dxforge.images.roles import ROLES, pin, split
from dxforge.images.stage import ImagesCheckResult
from dxforge.project.layout import Layout as ProjectLayout
from dxforge.project.model import Project

SUFFIX = {"services": "-routers", "tasks": "-tasks", "client": ""}
"""Role -> the suffix of the extension's package in the role of DiracX's (:data:`ROLES`):
``<ext>-routers``, ``<ext>-tasks``, the metapackage ``<ext>``."""


@dataclass
class ExtensionImagesResult:
    """The extension's images and the DiracX images they stand on."""

    extension: str
    version: str
    diracx: str  # the pinned DiracX version
    diracx_images: Path  # the DiracX images' directory (oci/, records/)
    layout: Path
    images: list[ImageResult] = field(default_factory=list)
    seconds: float = 0.0
    status: str = "built"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "extension": self.extension,
            "version": self.version,
            "diracx": self.diracx,
            "diracx_images": str(self.diracx_images),
            "layout": str(self.layout),
            "seconds": self.seconds,
            "images": [i.as_json() for i in self.images],
        }


def role_package(ext: str, role: str, recipes: Iterable[str]) -> str:
    """The extension's top package of ``role``: ``<ext>-routers``, ``<ext>-tasks`` or ``<ext>``;
    where the extension has none, ``<ext>-core`` (its registration: the ``extension`` entry
    point and its configuration, which DiracX's server, tasks and client load)."""
    if role not in SUFFIX:
        raise DxError(f"unknown image role {role!r}; the roles are {', '.join(SUFFIX)}")
    names = set(recipes)
    for name in (f"{ext}{SUFFIX[role]}", f"{ext}-core"):
        if name in names:
            return name
    raise DxError(
        f"recipes/: no {ext}{SUFFIX[role]} nor {ext}-core recipe; the {role} image adds the "
        "extension's package of that role (run `dxforge extension init` again)"
    )


def _is_own(name: str, ext: str) -> bool:
    return name == ext or name.startswith(f"{ext}-")


def extension_layer(
    solution: Iterable[Package],
    image: Iterable[Package],
    image_ref: str,
    ext: str,
    version: str,
    diracx: str,
) -> list[Package]:
    """The packages the extension's image adds on the DiracX image ``image_ref`` (holding
    ``image``): the extension's (at ``version``), DiracX's (at the pin ``diracx``) and what they
    need. A moved package of the image, a test-only package, an extension package at another
    version, a DiracX package off the pin, or no extension package at all is an error."""
    parts = split(solution, image)  # a moved pinned package, a test-only one: errors
    added = sorted(parts.others + parts.diracx, key=lambda p: p.name)
    own = [p for p in added if _is_own(p.name, ext)]
    if not own:
        raise DxError(f"the solve adds none of {ext}'s packages to {image_ref}")
    wrong = [f"{p.name} {p.version}" for p in own if p.version != version]
    wrong += [f"{p.name} {p.version}" for p in parts.diracx if p.version != diracx]
    if wrong:
        raise DxError(
            f"the {ext} {version} image on {image_ref} would add {', '.join(wrong)}: "
            f"the extension's packages must be at {version} and DiracX's at its pin {diracx}; "
            "fix the recipes' pins (`dxforge bump`) and build the channel again"
        )
    return added


def fix_command(project: ExtensionProject) -> str:
    """The one command that builds the DiracX release images at the extension's pin."""
    if project.base is None:
        return (
            f"`dxforge images` in the DiracX {project.diracx} distribution, then "
            "--base-images DIR naming its build/images"
        )
    from dxforge.bump.recipedoc import read_recipe

    meta = project.base / "recipes" / "diracx" / "recipe.yaml"
    if meta.is_file() and read_recipe(meta).version == project.diracx:
        return f"`dxforge images --root {project.base}`"
    return f"`dxforge release --version {project.diracx} --images --root {project.base}`"


def diracx_images(project: ExtensionProject, given: Path | None, roles: Iterable[str]) -> Path:
    """The DiracX images' directory (``given``, else the DiracX distribution's
    ``build/images``), holding the release image of every role at the pin, as recorded."""
    if given is not None:
        out = Path(given).resolve()
    elif project.base is not None:
        out = project.base / "build" / "images"
    else:
        raise DxError(
            f"{project.root / 'pyproject.toml'}: [tool.dxforge] names no DiracX distribution "
            f"(base); name the DiracX images with --base-images DIR ({fix_command(project)})"
        )
    for role in roles:
        recorded_packages(
            out, role, f"v{project.diracx}", f"build them with {fix_command(project)}"
        )
    return out


def _build_role(
    b: ImagesBuild, project: ExtensionProject, role: str, top: str, dx: Path
) -> ImageResult:
    """``<ext>-<role>:v<version>`` on DiracX's ``<role>:v<pin>``."""
    ext, version, tag = project.extension, b.version, f"v{project.diracx}"
    base_ref = f"{role}:{tag}"
    under = recorded_packages(dx, role, tag, f"build them with {fix_command(project)}")
    base_digest = copy_image(Layout(dx / "oci"), base_ref, b.oci)
    name = f"{ext}-{role}"
    specs = [pin(p) for p in under] + [f"{top} =={version}"]
    records, packages = b.solve(
        specs, f"the {name} image on {base_ref} (every package of {base_ref} pinned)"
    )
    added = extension_layer(packages, under, base_ref, ext, version, project.diracx)
    epoch = image_epoch(under + added)
    tar = b.env_layer(records, added, epoch, [])
    labels = b.labels(name, epoch, base_ref, base_digest, version)
    labels["org.opencontainers.image.title"] = f"{ext}/{name}"
    labels.pop("org.opencontainers.image.source", None)  # DiracX's; the extension's is the VO's
    tmp = b.assemble(name, base_ref, [(tar, ext)], labels, epoch, role)
    whats = [*b.whats(base_ref), ext]
    result = b.finish(name, tmp, f"v{version}", under + added, whats, epoch, base_ref, base_digest)
    if b.opts.archives:
        result.archive = export_archive(
            b.oci, result.ref, b.out / "archives" / f"{name}_v{version}.oci.tar"
        )
    return result


def extension_options(
    layout: ProjectLayout, archives: bool = True, roles: tuple[str, ...] = tuple(ROLES)
) -> tuple[ExtensionProject, ImagesOptions]:
    """The extension project and the image options of its images: its channel, DiracX's at
    the pin and both seeds; the extension's version."""
    project = read_project(layout.root)
    base = base_channels(project)
    model = Project.of(layout)
    opts = ImagesOptions(
        model,
        channels=[layout.channel.as_uri(), base.channel, base.seed, layout.seed.as_uri()],
        roles=roles,
        archives=archives,
        version=model.recipe(project.extension).version,
    )
    return project, opts


def build_extension_images(
    layout: ProjectLayout,
    base_images: Path | None = None,
    roles: tuple[str, ...] = tuple(ROLES),
    archives: bool = True,
    progress: Progress = SILENT,
) -> ExtensionImagesResult:
    """The extension's images, one per role, into ``<build>/images/oci`` of its project."""
    t0 = time.monotonic()
    unknown = [r for r in roles if r not in SUFFIX]
    if unknown:
        raise DxError(f"unknown image role {unknown[0]!r}; the roles are {', '.join(SUFFIX)}")
    dx = diracx_images(read_project(layout.root), base_images, roles)
    project, opts = extension_options(layout, archives, roles)
    tops = {
        r: role_package(project.extension, r, (p.name for p in opts.project.recipes)) for r in roles
    }
    with building(opts, progress) as b:
        result = ExtensionImagesResult(project.extension, b.version, project.diracx, dx, b.oci.path)
        for role in roles:
            progress.step(f"{project.extension}-{role}: {tops[role]} on DiracX's {role} image")
            result.images.append(_build_role(b, project, role, tops[role], dx))
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def build_extension_test_image(layout: ProjectLayout, progress: Progress = SILENT) -> ImageResult:
    """``<ext>-services-testing``: the extension's services image plus the test-only layer
    (:func:`dxforge.images.build.build_test_image`), for its check; never pushed."""
    project, opts = extension_options(layout, archives=False, roles=("services",))
    return build_test_image(
        opts, "services", progress, on=f"{project.extension}-services", diracx=project.diracx
    )


def check_extension_images(
    layout: ProjectLayout, user: str = "", progress: Progress = SILENT
) -> ImagesCheckResult:
    """Run the extension's services image (plus the test-only layer) as the chart runs
    DiracX's and check it serves the extension's services ([tool.dxforge.e2e] services), or
    record why the containers cannot run here (never passed)."""
    why = why_not()
    if why:
        progress.warn(f"the extension's images are NOT tested: {why}")
        return ImagesCheckResult("skipped", reason=why)
    t0 = time.monotonic()
    project = read_project(layout.root)
    if not project.e2e.services:
        raise DxError(
            f"{project.root / 'pyproject.toml'}: [tool.dxforge.e2e] services is empty; name the "
            "extension's diracx.services (`dxforge extension init` lists them)"
        )
    test = build_extension_test_image(layout, progress)
    ext, tag = project.extension, test.tag
    layout.work.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="ext-images-check-", dir=layout.work))
    try:
        res = check_extension_services(
            Layout(layout.build / "images" / "oci"),
            test.ref,
            f"{ext}-client:{tag}",
            project.e2e.services,
            work,
            user,
            progress,
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return ImagesCheckResult(
        "passed",
        checks=res.checks,
        healthy_seconds=res.healthy_seconds,
        seconds=round(time.monotonic() - t0, 1),
    )
