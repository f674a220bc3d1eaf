"""``dxforge images``: the dated bases and the release images, from the same channels and solve
rules as the installer, into one OCI layout under ``<build>/images``.

- ``base``: the OS layer, then one layer with the environment at :data:`PREFIX` (Python,
  voms, git, CA certificates), ``/activate.sh`` and ``/entrypoint.sh``;
- ``<role>-base``: ``base``'s layers byte for byte, plus the role's closure without DiracX;
- ``<role>:v<version>``: a *named* ``<role>-base`` tag's layers, plus one layer of DiracX's
  packages; the base's name and digest in the annotations.

Layer archives are kept in the user cache by fingerprint; each image's packages are recorded
next to the layout (``records/``) so a later release can stand on a tag made before."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dxforge.checks.endtoend import server_specs
from dxforge.conda import channel as ch
from dxforge.conda import sbom
from dxforge.conda.channel import Package
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, atomic_write_text, execute, file_lock
from dxforge.images import layers, pyc, rootfs
from dxforge.images.oci import ImageConfig, Layout, export_archive, rfc3339
from dxforge.images.result import ImageResult, ImagesResult, LayerResult
from dxforge.images.roles import ROLES, base_specs, pin, release_layer, role_specs, split
from dxforge.images.tags import TagBook, TagRecord, day_of, next_tag
from dxforge.installer.prefix import fix_conda_meta
from dxforge.project.layout import Layout as ProjectLayout
from dxforge.project.model import Project

IMAGE_FORMAT = 3
"""Bump when how layers are made changes (it is part of every layer's fingerprint)."""
PREFIX = "/opt/diracx"
SOURCE = "https://github.com/DIRACGrid/diracx"
ACTIVATE_SH = f"""\
# Activates DiracX's environment ({PREFIX}); sourced by /entrypoint.sh.
CONDA_PREFIX={PREFIX}
case ":${{PATH:-}}:" in
    *":{PREFIX}/bin:"*) ;;
    *) PATH="{PREFIX}/bin:${{PATH:-/usr/bin:/bin}}" ;;
esac
export CONDA_PREFIX PATH
"""
ENTRYPOINT_SH = """\
#!/bin/sh
# DiracX's entrypoint: activate the environment, run /pre-run-hook.sh when present, then the
# command (tini, PID 1, forwards signals to it).
set -e
. /activate.sh
if [ -f /pre-run-hook.sh ]; then
    if [ -x /pre-run-hook.sh ]; then /pre-run-hook.sh; else sh /pre-run-hook.sh; fi
fi
exec "$@"
"""
ENV = (
    f"PATH={PREFIX}/bin:/usr/local/bin:/usr/bin:/bin",
    f"HOME=/{rootfs.HOME}",
    "LANG=C.UTF-8",
    f"CONDA_PREFIX={PREFIX}",
)
SERVICES_CMD = (
    "uvicorn",
    "--factory",
    "diracx.routers:create_app",
    "--host=0.0.0.0",
    "--port=8000",
    "--proxy-headers",
    "--forwarded-allow-ips=*",
)
CMDS = {
    "base": ("/bin/sh",),
    "services": SERVICES_CMD,
    "tasks": ("diracx-tasks", "--help"),
    "client": ("dirac", "--help"),
}


@dataclass
class ImagesOptions:
    project: Project
    channels: list[str] = field(default_factory=list)
    os: str = rootfs.DEFAULT_OS
    bases: bool = True
    releases: bool = True
    roles: tuple[str, ...] = tuple(ROLES)
    base_tag: str | None = None  # the <role>-base tag releases stand on (default: the latest)
    refresh_os: bool = False
    archives: bool = True  # oci-archives of the release images
    pyc: bool = True  # byte code in the layers (False: the benchmark's "before")
    out: Path | None = None  # default <build>/images
    now: dt.datetime | None = None
    version: str | None = None  # the images' version (default: the diracx recipe's)

    @property
    def layout(self) -> ProjectLayout:
        return self.project.layout


def fingerprint(data: Any) -> str:
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()[:24]


def image_epoch(packages: list[Package]) -> int:
    """``SOURCE_DATE_EPOCH`` when set, else the newest package's time (content-derived)."""
    env = os.environ.get("SOURCE_DATE_EPOCH", "")
    if env.isdigit():
        return int(env)
    return max((p.timestamp for p in packages), default=0) or 1577836800


def _git(root: Path, *args: str) -> str:
    ran = execute(["git", "-C", str(root), *args], check=False)
    return ran.stdout.strip() if ran.ok else ""


def record_path(out: Path, name: str, tag: str) -> Path:
    """Where the images' directory ``out`` records the packages of ``name:tag``."""
    return out / "records" / f"{name}_{tag}.json"


def recorded_packages(out: Path, name: str, tag: str, fix: str = "") -> list[Package]:
    """The packages recorded for ``name:tag`` in the images' directory ``out`` (its layout
    ``oci/`` must hold that image at the recorded digest); ``fix``: the command that builds it."""
    path = record_path(out, name, tag)
    if not path.is_file():
        fix = fix or "build the bases first (`dxforge images --bases`)"
        raise DxError(f"{path}: no record of {name}:{tag}; {fix}")
    data = json.loads(path.read_text())
    oci = out / "oci"
    refs = Layout(oci).refs() if (oci / "index.json").is_file() else {}
    if refs.get(f"{name}:{tag}") != data["digest"]:
        raise DxError(
            f"{oci}: {name}:{tag} is not the recorded {data['digest']};"
            f" {fix or 'build the bases again'}"
        )
    return [Package(**p) for p in data["packages"]]


class ImagesBuild:
    """One run of ``dxforge images``: the inputs, the layout and the tag record."""

    def __init__(self, opts: ImagesOptions, progress: Progress) -> None:
        self.opts, self.progress = opts, progress
        lay = opts.layout
        self.out = opts.out or lay.build / "images"
        self.oci = Layout(self.out / "oci").ensure()
        self.book = TagBook(self.out / "tags.json")
        self.glibc = opts.project.construct.glibc
        self.channels = opts.project.channels(opts.channels)
        self.target = opts.project.target
        # the release images take it (an extension's images: the extension's version)
        self.version = opts.version or opts.project.recipe("diracx").version
        self.cache = lay.cache / "images" / "layers"
        self.pkgs = lay.work / "pkgs"
        self.stages = lay.work / "images"
        self.staged: dict[str, Path] = {}
        self.day = day_of(opts.now or dt.datetime.now(dt.UTC))
        self.revision = _git(lay.root, "rev-parse", "HEAD")

    # -- solving, staging and layers --------------------------------------------------------

    def solve(self, specs: list[str], what: str) -> tuple[list[Any], list[Package]]:
        self.progress.step(f"solving {what} ({len(specs)} specs)")
        records = ch.solve(self.channels, specs, where=what, glibc=self.glibc)
        return records, sorted((ch.package_of(r) for r in records), key=lambda p: p.name)

    def stage(self, records: list[Any]) -> Path:
        """The solution installed in a staging directory, its files holding :data:`PREFIX`."""
        key = fingerprint(sorted(ch.package_of(r).sha256 for r in records))
        if key not in self.staged:
            prefix = self.stages / f"stage-{key[:12]}"
            self.progress.step(f"installing {len(records)} packages (files hold {PREFIX})")
            ch.install(records, prefix, cache_dir=self.pkgs, recorded_prefix=PREFIX)
            fix_conda_meta(prefix, self.channels)  # the installer's: no build machine's paths
            self.staged[key] = prefix
        return self.staged[key]

    def layer(self, key: str, make: Callable[[Path], Path]) -> Path:
        """The layer archive of fingerprint ``key``: from the user cache, else made there."""
        out = self.cache / f"{key}.tar"
        if out.is_file():
            self.progress.step(f"layer {key} from the user cache")
            return out
        make(out)
        return out

    def env_layer(
        self, records: list[Any], packages: list[Package], epoch: int, extra: list[layers.Entry]
    ) -> Path:
        key = fingerprint(
            [
                IMAGE_FORMAT,
                PREFIX,
                [p.sha256 for p in packages],
                epoch,
                [(e.path, e.data.decode() if e.data else "") for e in extra],
                *([] if self.opts.pyc else ["no pyc"]),
            ]
        )

        def make(out: Path) -> Path:
            prefix = self.stage(records)
            python = self.target.python
            if self.opts.pyc:
                self.progress.step(f"byte-compiling the layer's .py ({pyc.MODE} .pyc)")
                failed = pyc.compile_layer(prefix, packages, python, PREFIX)
                if failed:
                    self.progress.step(f"{len(failed)} .py files do not compile (left as source)")
            tag = pyc.cache_tag(python) if self.opts.pyc else ""
            entries = layers.package_entries(prefix, PREFIX, packages, tag)
            return layers.write(entries + extra, out, epoch)

        return self.layer(f"env-{key}", make)

    # -- images -------------------------------------------------------------------------------

    def config(self, name: str, labels: dict[str, str], role: str = "") -> ImageConfig:
        role = role or name.removesuffix("-base").removesuffix("-testing")
        ports = ("8000/tcp",) if role == "services" else ()
        cmd = CMDS["base"] if name.endswith("base") else CMDS[role]
        return ImageConfig(
            user=f"{rootfs.UID}:0",
            env=ENV,
            entrypoint=("/usr/bin/tini", "--", "/entrypoint.sh"),
            cmd=cmd,
            workdir=f"/{rootfs.HOME}",
            ports=ports,
            labels=labels,
        )

    def labels(
        self, name: str, epoch: int, base: str = "", base_digest: str = "", version: str = ""
    ) -> dict[str, str]:
        out = {
            "org.opencontainers.image.title": f"diracx/{name}",
            "org.opencontainers.image.source": SOURCE,
            "org.opencontainers.image.created": rfc3339(epoch),
        }
        if base:
            out["org.opencontainers.image.base.name"] = base
            out["org.opencontainers.image.base.digest"] = base_digest
        if version:
            out["org.opencontainers.image.version"] = version
            if self.revision:
                out["org.opencontainers.image.revision"] = self.revision
        return out

    def assemble(
        self,
        name: str,
        base: str,
        tars: list[tuple[Path, str]],
        labels: dict[str, str],
        epoch: int,
        role: str = "",
    ) -> str:
        """A new image on ``base`` (a ref in the layout, or none) with ``tars`` added, under a
        temporary ref; returns that ref. ``role``: whose configuration (default: from the
        name)."""
        tmp = f"{name}:building-{os.getpid()}"
        self.oci.remove(tmp)
        if base:
            self.oci.tag(base, tmp)
        else:
            self.oci.new(tmp)
        for tar, what in tars:
            self.progress.step(f"{name}: adding the {what} layer ({tar.stat().st_size} bytes)")
            self.oci.add_layer(tmp, tar, epoch, f"dxforge images: {what}")
        self.oci.configure(tmp, self.config(name, labels, role), epoch)
        return tmp

    def finish(
        self,
        name: str,
        tmp: str,
        tag: str | None,
        packages: list[Package],
        whats: list[str],
        epoch: int,
        base: str = "",
        base_digest: str = "",
    ) -> ImageResult:
        """Give the image built under ``tmp`` its tag (``None``: the next dated one), record
        it and write its SBOM."""
        digest = self.oci.digest(tmp)
        status = "built"
        if tag is None:
            tag, new = next_tag(self.book.history(name), digest, self.day)
            if new:
                self.book.add(name, TagRecord(tag, digest, dt.datetime.now(dt.UTC).isoformat()))
            else:
                status = "unchanged"
        ref = f"{name}:{tag}"
        self.oci.remove(ref)
        self.oci.tag(tmp, ref)
        self.oci.remove(tmp)
        lays = self.oci.layers(ref)
        result = ImageResult(
            name,
            tag,
            digest,
            [LayerResult(lay.digest, lay.size, w) for lay, w in zip(lays, whats, strict=True)],
            len(packages),
            base,
            base_digest,
            status=status,
        )
        result.sbom = sbom.write(
            self.out / "sbom" / f"{name}_{tag}.cdx.json", f"diracx/{name}", tag, packages, epoch
        )
        record = {
            "ref": ref,
            "digest": digest,
            "base": base,
            "base_digest": base_digest,
            "packages": [p.as_json() for p in packages],
        }
        atomic_write_text(self.record_path(name, tag), json.dumps(record, indent=1) + "\n")
        self.progress.step(f"{ref} {digest} ({result.size} bytes compressed, {status})")
        return result

    def record_path(self, name: str, tag: str) -> Path:
        return record_path(self.out, name, tag)

    def packages_of(self, name: str, tag: str) -> list[Package]:
        """The packages recorded for ``name:tag``."""
        return recorded_packages(self.out, name, tag)

    def whats(self, ref: str) -> list[str]:
        history = self.oci.config(ref).get("history", [])
        return [
            h.get("created_by", "").removeprefix("dxforge images: ")
            for h in history
            if not h.get("empty_layer")
        ]


def build_base(b: ImagesBuild) -> tuple[ImageResult, list[Package]]:
    records, packages = b.solve(base_specs(b.target), "the base image")
    epoch = image_epoch(packages)
    root = rootfs.os_root(b.opts.os, b.opts.layout.cache, b.progress, b.opts.refresh_os)
    os_tar = b.layer(
        f"os-{root.key}-{IMAGE_FORMAT}-{epoch}",
        lambda out: layers.write(rootfs.layer_entries(root), out, epoch),
    )
    scripts = [
        layers.Entry("activate.sh", "file", 0o664, data=ACTIVATE_SH.encode()),
        layers.Entry("entrypoint.sh", "file", 0o775, data=ENTRYPOINT_SH.encode()),
    ]
    env_tar = b.env_layer(records, packages, epoch, scripts)
    whats = [f"os ({root.choice.name})", "environment"]
    tmp = b.assemble(
        "base", "", list(zip([os_tar, env_tar], whats, strict=True)), b.labels("base", epoch), epoch
    )
    return b.finish("base", tmp, None, packages, whats, epoch), packages


def build_role_base(
    b: ImagesBuild, role: str, base: ImageResult, under: list[Package]
) -> ImageResult:
    name = f"{role}-base"
    records, packages = b.solve(role_specs(role, b.version, under), f"the {name} image")
    added = split(packages, under).others
    epoch = image_epoch(under + added)
    tar = b.env_layer(records, added, epoch, [])
    whats = [*b.whats(base.ref), f"{role} closure"]
    tmp = b.assemble(
        name,
        base.ref,
        [(tar, f"{role} closure")],
        b.labels(name, epoch, base.ref, base.digest),
        epoch,
    )
    return b.finish(name, tmp, None, under + added, whats, epoch, base.ref, base.digest)


def build_release(b: ImagesBuild, role: str, base_tag: str) -> ImageResult:
    base_name = f"{role}-base"
    base_ref = f"{base_name}:{base_tag}"
    under = b.packages_of(base_name, base_tag)
    base_digest = b.oci.digest(base_ref)
    records, packages = b.solve(role_specs(role, b.version, under), f"the {role} image")
    dirac = release_layer(packages, under, base_ref)
    epoch = image_epoch(under + dirac)
    tar = b.env_layer(records, dirac, epoch, [])
    whats = [*b.whats(base_ref), "diracx"]
    tmp = b.assemble(
        role,
        base_ref,
        [(tar, "diracx")],
        b.labels(role, epoch, base_ref, base_digest, b.version),
        epoch,
    )
    result = b.finish(
        role, tmp, f"v{b.version}", under + dirac, whats, epoch, base_ref, base_digest
    )
    if b.opts.archives:
        result.archive = export_archive(
            b.oci, result.ref, b.out / "archives" / f"{role}_v{b.version}.oci.tar"
        )
    return result


@contextlib.contextmanager
def building(opts: ImagesOptions, progress: Progress) -> Iterator[ImagesBuild]:
    """A build holding the layout's lock; its staging directories removed afterwards."""
    out = opts.out or opts.layout.build / "images"
    out.mkdir(parents=True, exist_ok=True)
    with file_lock(out / ".lock", "the image layout"):
        b = ImagesBuild(opts, progress)
        try:
            yield b
            b.book.save()
        finally:
            for ref in b.oci.refs():  # an image left half-built (under the lock: no other run)
                if ":building-" in ref:
                    b.oci.remove(ref)
            b.oci.gc()
            for staged in b.staged.values():
                shutil.rmtree(staged, ignore_errors=True)


def build_images(opts: ImagesOptions, progress: Progress = SILENT) -> ImagesResult:
    """Build the bases (``opts.bases``) and the release images (``opts.releases``)."""
    t0 = time.monotonic()
    with building(opts, progress) as b:
        result = ImagesResult(b.oci.path, b.book.path, os_layer=opts.os)
        if opts.bases:
            base, under = build_base(b)
            result.images.append(base)
            for role in opts.roles:
                result.images.append(build_role_base(b, role, base, under))
        if opts.releases:
            for role in opts.roles:
                tag = opts.base_tag or _latest(b, f"{role}-base")
                result.images.append(build_release(b, role, tag))
    root = rootfs.os_root(opts.os, opts.layout.cache)
    result.os_packages = len(root.packages())
    result.seconds = round(time.monotonic() - t0, 1)
    return result


def build_test_image(
    opts: ImagesOptions,
    role: str = "services",
    progress: Progress = SILENT,
    on: str = "",
    diracx: str = "",
) -> ImageResult:
    """``<on>-testing:v<version>``: the image ``<on>:v<version>`` (default ``on``: the role's
    release image; an extension's: ``<ext>-services``) plus one layer of what only the tests
    need (diracx-testing's stand-ins, moto's S3 server: the end-to-end server's specs at DiracX
    ``diracx``, default the version). Built for the tests, never pushed: that is where
    test-only packages go."""
    with building(opts, progress) as b:
        tag = f"v{b.version}"
        on = on or role
        ref = f"{on}:{tag}"
        under = b.packages_of(on, tag)
        specs = [pin(p) for p in under] + server_specs(diracx or b.version, b.target)
        name = f"{on}-testing"
        records, packages = b.solve(specs, f"the {name} image")
        parts = split(packages, under, testing=True)
        added = parts.others + parts.diracx
        epoch = image_epoch(under + added)
        tar = b.env_layer(records, added, epoch, [])
        tmp = b.assemble(
            name,
            ref,
            [(tar, "testing")],
            b.labels(name, epoch, ref, b.oci.digest(ref), b.version),
            epoch,
            role,
        )
        return b.finish(
            name, tmp, tag, under + added, [*b.whats(ref), "testing"], epoch, ref, b.oci.digest(ref)
        )


def _latest(b: ImagesBuild, name: str) -> str:
    latest = b.book.latest(name)
    if latest is None:
        raise DxError(
            f"{b.book.path}: no {name} tag yet; build the bases first (`dxforge images --bases`)"
        )
    return latest.tag
