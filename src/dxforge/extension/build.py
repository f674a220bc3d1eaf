"""Built on DiracX at the pinned version: the DiracX channel an extension's project builds
against must hold exactly the DiracX version its packages pin; the configured channel, else the
DiracX distribution's release of that version. None holds it: the error names the version and
the one command that builds it. Then ``dxforge build`` of the project against that channel, its
seed and the project's own seed."""

from __future__ import annotations

import json
import urllib.parse
from dataclasses import dataclass

import requests

from dxforge.builder.build import BuildOptions, BuildReport, run_build
from dxforge.conda.channel import SUBDIRS, local_path, repodata_records
from dxforge.core.progress import SILENT, Progress
from dxforge.core.util import DxError
from dxforge.extension.base import BASE_METAPACKAGE
from dxforge.extension.project import ExtensionProject, read_project
from dxforge.project.layout import Layout


@dataclass(frozen=True)
class BaseChannels:
    channel: str  # holds diracx at the pinned version
    seed: str


def diracx_versions(channel: str) -> set[str]:
    """The versions of the DiracX metapackage a channel (path or URL) holds."""
    path = local_path(channel)
    if path is not None:
        records = repodata_records(path).values() if path.is_dir() else []
        return {str(r["version"]) for r in records if r.get("name") == BASE_METAPACKAGE}
    found: set[str] = set()
    for sub in SUBDIRS:
        url = urllib.parse.urljoin(channel.rstrip("/") + "/", f"{sub}/repodata.json")
        try:
            r = requests.get(url, timeout=30)
        except requests.RequestException as e:
            raise DxError(f"{url}: the DiracX channel did not answer ({e})") from None
        if r.status_code != 200:
            continue
        try:
            data = r.json()
        except json.JSONDecodeError:
            raise DxError(f"{url}: not valid repodata") from None
        for key in ("packages", "packages.conda"):
            found |= {
                str(rec["version"])
                for rec in (data.get(key) or {}).values()
                if rec.get("name") == BASE_METAPACKAGE
            }
    return found


def base_channels(project: ExtensionProject) -> BaseChannels:
    """The DiracX channel (and its seed) holding exactly ``project.diracx``."""
    pin = project.diracx
    candidates = [BaseChannels(project.base_channel, project.base_seed)]
    if project.base is not None:
        release = project.base / "build/releases" / pin / "channels"
        candidates.append(BaseChannels((release / "dxforge").as_uri(), (release / "seed").as_uri()))
    seen = {}
    for c in candidates:
        seen[c.channel] = sorted(diracx_versions(c.channel))
        if pin in seen[c.channel]:
            return c
    have = "; ".join(f"{ch}: {', '.join(v) or 'no diracx'}" for ch, v in seen.items())
    where = f" --root {project.base}" if project.base else ""
    raise DxError(
        f"{project.root / 'pyproject.toml'}: the extension {project.extension} pins DiracX {pin}, "
        f"and no DiracX channel holds it ({have}); build DiracX {pin} with "
        f"`dxforge release --version {pin}{where}` (its channels go to "
        f"build/releases/{pin}/channels, where this command looks), or set base-channel and "
        "base-seed in [tool.dxforge] to channels that hold it"
    )


def build_extension(
    layout: Layout, opts: BuildOptions | None = None, progress: Progress = SILENT
) -> tuple[BaseChannels, BuildReport]:
    """``dxforge build`` of the extension's project against DiracX at its pinned version."""
    project = read_project(layout.root)
    base = base_channels(project)
    progress.step(f"DiracX {project.diracx} from {base.channel}")
    opts = opts or BuildOptions(layout)
    opts.channels = [base.channel, base.seed, str(layout.seed)]
    return base, run_build(opts, progress)
