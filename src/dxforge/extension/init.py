"""``dxforge extension init``: a new distribution project from an extension's packages on the
package index, built on a DiracX distribution: a recipe per package, a construct.yaml named
after the extension, and a pyproject.toml with ``[tool.dxforge]`` (the DiracX version pinned,
the base), its CI configuration, the ``scripts/setup.sh`` its CI jobs start with and its main
job, ``scripts/run-main.sh``. Written into a new folder in one rename."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError, atomic_write_text
from dxforge.extension.base import Base, read_base
from dxforge.extension.channelbase import read_channel_base
from dxforge.extension.discover import Discovery, Found, discover, exact_pin
from dxforge.extension.project import (
    SERVER_GROUPS,
    EndToEnd,
    construct_text,
    installer_files,
    pyproject_text,
)
from dxforge.extension.recipe import recipe_text, run_requirements, test_imports
from dxforge.project.target import Target, python_of
from dxforge.pypa.metadata import RequiresDistLookup
from dxforge.pypa.pypi import PackageIndex


@dataclass
class InitOptions:
    name: str  # the extension's metapackage on the index
    dest: Path  # the new project's folder
    base: Path | None  # the DiracX distribution project (None: base_channel alone)
    base_channel: str | None = None
    base_seed: str | None = None
    version: str | None = None
    index_url: str | None = None


@dataclass
class InitResult:
    project: Path
    extension: str
    version: str
    diracx: str  # the DiracX version its packages pin
    base: Base
    packages: list[Found]
    absent: list[str]
    files: list[Path]
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def status(self) -> str:
        return "created"

    def as_json(self) -> dict[str, object]:
        return {
            "status": self.status,
            "project": str(self.project),
            "extension": self.extension,
            "version": self.version,
            "diracx": self.diracx,
            "base": self.base.as_json(),
            "packages": [p.as_json() for p in self.packages],
            "absent": self.absent,
            "files": [str(f) for f in self.files],
            "notes": self.notes,
            "seconds": round(self.seconds, 2),
        }


def diracx_pin(found: list[Found], base: Base) -> str:
    """The one DiracX version the extension's packages pin ``==``."""
    pins: dict[str, list[str]] = {}
    for f in found:
        for line in f.dist.meta.requires_dist:
            req = Requirement(line)
            if canonicalize_name(req.name) in base.packages:
                pin = exact_pin(req)
                if pin:
                    pins.setdefault(pin, []).append(f"{f.name}: {req}")
    if not pins:
        raise DxError(
            f"{found[0].name}: none of {', '.join(f.name for f in found)} pins a "
            "DiracX version (like diracx==X.Y.Z); an extension is built on exactly one"
        )
    if len(pins) > 1:
        listing = "; ".join(f"{v} ({', '.join(w)})" for v, w in sorted(pins.items()))
        raise DxError(
            f"the extension's packages pin different DiracX versions: {listing}; "
            "they must agree on one"
        )
    return next(iter(pins))


def _lookup(index: PackageIndex, disc: Discovery, progress: Progress) -> RequiresDistLookup:
    """Requires-Dist by name, to expand extras: the extension's own from the files read, others
    (``diracx-routers[otel]``) from the index, at the version they are required at."""
    lookup = RequiresDistLookup(
        index, {f.name: f.dist.meta for f in disc.packages}, skip_missing=True, progress=progress
    )
    for f in disc.packages:
        for line in f.dist.meta.requires_dist:
            req = Requirement(line)
            norm = canonicalize_name(req.name)
            if req.extras and norm not in lookup.local:
                lookup.specs[norm] = lookup.specs.get(norm, SpecifierSet()) & req.specifier
    return lookup


def _recipes(disc: Discovery, target: Target, lookup: RequiresDistLookup) -> dict[str, str]:
    modules_of = {f.name: f.dist.modules for f in disc.packages}
    out = {}
    for f in disc.packages:
        run = run_requirements(f, disc.extension, target, lookup)
        imports = test_imports(f, modules_of, disc.extension)
        out[f.name] = recipe_text(f, extension=disc.extension, run=run, imports=imports)
    return out


def end_to_end(disc: Discovery) -> EndToEnd:
    """What ``dxforge e2e`` serves of the extension: its metapackage and the packages with
    server entry points, and the services they register."""
    server = [
        f.name
        for f in disc.packages
        if f.name == disc.extension or any(g in f.dist.entry_points for g in SERVER_GROUPS)
    ]
    services = sorted(
        {n for f in disc.packages for n in f.dist.entry_points.get("diracx.services", {})}
    )
    return EndToEnd(server, services)


def _ci_settings(base: Base) -> dict[str, object]:
    path = base.root / "pyproject.toml" if base.root else None
    if path is None or not path.is_file():
        return {}
    return dict(tomllib.loads(path.read_text()).get("tool", {}).get("dxforge", {}).get("ci", {}))


SETUP = "scripts/setup.sh"
"""The project's set-up script: .venv with dxforge, and the Debian tools it runs."""
MAIN = "scripts/run-main.sh"
"""The project's main job: set up, seed, build on DiracX, installer."""


def setup_script() -> str:
    """The set-up script an extension's project gets, installing this dxforge's version."""
    from dxforge import __version__

    return _data("extension-setup.sh").replace("@DXFORGE_VERSION@", __version__)


def _data(name: str) -> str:
    from importlib import resources

    return resources.files("dxforge").joinpath("data", name).read_text()


def _write(dest: Path, files: dict[str, str]) -> list[Path]:
    """``files`` (relative path -> text) in the new folder ``dest``, made beside it and renamed
    into place: a folder that exists is never touched."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DxError(f"{dest}: exists and is not an empty folder; name a new folder")
    dest.parent.mkdir(parents=True, exist_ok=True)
    stage = Path(tempfile.mkdtemp(prefix=f".{dest.name}.init-", dir=dest.parent))
    try:
        for rel, text in files.items():
            atomic_write_text(stage / rel, text, 0o755 if text.startswith("#!") else None)
        if dest.is_dir():
            dest.rmdir()
        os.rename(stage, dest)
    except BaseException:
        shutil.rmtree(stage, ignore_errors=True)
        raise
    return [dest / rel for rel in files]


def _notes(disc: Discovery, diracx: str, base: Base, lookup: RequiresDistLookup) -> list[str]:
    notes = []
    if diracx != base.version:
        notes.append(
            f"the extension pins DiracX {diracx} but the DiracX distribution at "
            f"{base.root or base.channel} is at {base.version}: `dxforge extension build` "
            f"needs a DiracX channel holding exactly {diracx} (it names the command)"
        )
    if base.root is None:
        notes.append(
            f"the DiracX distribution is the channel {base.channel} alone: its version, "
            "packages, Python, voms, git and glibc floor come from its repodata and its "
            "seed's; its installer files (post_install.sh, which writes diracosrc, and the "
            "licence) are not in a channel: add them to construct.yaml by hand"
        )
    notes += [
        f"extras of {n} not expanded ({lookup.why.get(n, 'no metadata')}); add what they "
        "bring to the recipes by hand"
        for n in sorted(set(lookup.skipped))
    ]
    wheels = [f.name for f in disc.packages if f.dist.kind == "wheel"]
    if wheels:
        notes.append(f"built from pure-Python wheels (no sdist published): {', '.join(wheels)}")
    if not any("extension" in f.dist.entry_points.get("diracx", {}) for f in disc.packages):
        notes.append(
            "no package registers the `extension` entry point of the `diracx` group; "
            "DiracX will not see it as an extension"
        )
    return notes


def _base(opts: InitOptions) -> Base:
    """The DiracX distribution: a checkout (``--base``), else its channel alone."""
    if opts.base is not None:
        return read_base(opts.base, opts.base_channel, opts.base_seed)
    if not opts.base_channel or not opts.base_seed:
        raise DxError(
            "no DiracX distribution named: give --base PATH (a checkout), or --base-channel "
            "URL with --base-seed URL (DiracX's channel and the seed it was built with)"
        )
    return read_channel_base(opts.base_channel, opts.base_seed)


def init_extension(opts: InitOptions, progress: Progress = SILENT) -> InitResult:
    """Write the extension's distribution project (see the module's doc)."""
    t0 = time.monotonic()
    base = _base(opts)
    index = PackageIndex(opts.index_url)
    like = [p.removeprefix("diracx-") for p in base.packages if p.startswith("diracx-")]
    disc = discover(index, opts.name, opts.version, like, progress)
    diracx = diracx_pin(disc.packages, base)
    if base.root is None and diracx != base.version and diracx in base.versions:
        base = read_channel_base(base.channel, base.seed, diracx)  # the pinned metapackage's
    where = str(base.root / "construct.yaml") if base.root else base.channel
    target = Target(python_of([base.specs["python"]], where))
    lookup = _lookup(index, disc, progress)
    files = {
        f"recipes/{name}/recipe.yaml": text for name, text in _recipes(disc, target, lookup).items()
    }
    files["construct.yaml"] = construct_text(disc.extension, disc.version, base)
    for key, rel in installer_files(base).items():
        files[rel] = base.files[key].read_text()
    files["pyproject.toml"] = pyproject_text(
        disc.extension, diracx, base, _ci_settings(base), end_to_end(disc)
    )
    files[SETUP] = setup_script()
    files[MAIN] = _data("extension-main.sh")
    dest = Path(os.path.abspath(opts.dest))
    written = _write(dest, files)
    return InitResult(
        dest,
        disc.extension,
        disc.version,
        diracx,
        base,
        disc.packages,
        disc.absent,
        written,
        _notes(disc, diracx, base, lookup),
        time.monotonic() - t0,
    )
