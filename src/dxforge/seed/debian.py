"""Repackaging Debian's VOMS client binaries (``voms-clients``, ``libvomsapi1v5``) as ``voms``."""

from __future__ import annotations

import hashlib
import json
import platform
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from dxforge.elf import fix_runpaths
from dxforge.seed.pack import PackageSpec, assemble
from dxforge.util import DxError, run, sha256_file

DEBS = ("voms-clients", "libvomsapi1v5")
MULTIARCH = "usr/lib/x86_64-linux-gnu"
_ALTERNATIVE_RE = re.compile(
    r"update-alternatives --install /usr/bin/(\S+)\s+(?:\\\s*)?\S+\s+/usr/bin/(\S+)"
)
"""The postinst's ``update-alternatives`` lines: voms-proxy-init -> voms-proxy-init2 and so on."""


@dataclass(frozen=True)
class Deb:
    package: str
    version: str
    sha256: str
    filename: str


def _tool(cmd: list[str], cwd: Path | None = None) -> str:
    return run(
        cmd, cwd=cwd, fix="voms is repackaged from Debian's packages, so the seed needs apt-get "
        "and dpkg-deb (a Debian-family host)",
    )


def candidates() -> list[Deb]:
    """The candidate version and its SHA256 of each Debian package, from apt's signed lists."""
    out = []
    for pkg in DEBS:
        text = _tool(["apt-cache", "show", "--no-all-versions", pkg])
        fields = dict(re.findall(r"^([A-Za-z0-9-]+): (.*)$", text, re.M))
        if "Version" not in fields or "SHA256" not in fields:
            raise DxError(f"{pkg}: apt knows no candidate; run apt-get update (as root) first")
        out.append(
            Deb(
                pkg,
                fields["Version"],
                fields["SHA256"],
                fields.get("Filename", "").rsplit("/", 1)[-1],
            )
        )
    return out


def conda_version(debian_version: str) -> str:
    """Debian ``2.1.0~rc3-4`` -> conda ``2.1.0rc3`` (epoch and Debian revision dropped)."""
    upstream = debian_version.split(":", 1)[-1].rsplit("-", 1)[0]
    return upstream.replace("~", "")


def download(debs: list[Deb], dest: Path) -> list[Path]:
    """``apt-get download`` each package into ``dest`` and verify its SHA256."""
    dest.mkdir(parents=True, exist_ok=True)
    paths = []
    for deb in debs:
        cached = dest / deb.filename
        if not (cached.exists() and sha256_file(cached) == deb.sha256):
            with tempfile.TemporaryDirectory(dir=dest, prefix=".apt-") as tmp:
                _tool(["apt-get", "download", "-q", f"{deb.package}={deb.version}"], cwd=Path(tmp))
                got = list(Path(tmp).glob("*.deb"))
                if len(got) != 1:
                    raise DxError(f"{deb.package}: apt-get download gave {len(got)} files")
                if sha256_file(got[0]) != deb.sha256:
                    raise DxError(
                        f"{deb.package}: sha256 mismatch on the downloaded .deb; "
                        "run apt-get update and try again"
                    )
                shutil.move(got[0], cached)
        paths.append(cached)
    return paths


def stage_voms(debs: list[Path], root: Path) -> None:
    """Lay out the binaries, libraries and licence of the .debs in a conda prefix ``root``."""
    with tempfile.TemporaryDirectory(prefix=".deb-", dir=root.parent) as tmp:
        tree = Path(tmp)
        alternatives: list[tuple[str, str]] = []
        for deb in debs:
            _tool(["dpkg-deb", "-x", str(deb), str(tree)])
            control = Path(tmp) / f"control-{deb.name}"
            _tool(["dpkg-deb", "-e", str(deb), str(control)])
            if (control / "postinst").exists():
                alternatives += _ALTERNATIVE_RE.findall((control / "postinst").read_text())
        (root / "bin").mkdir(parents=True)
        (root / "lib").mkdir()
        for p in sorted((tree / "usr/bin").iterdir()):
            shutil.copy2(p, root / "bin" / p.name, follow_symlinks=False)
        for link, target in alternatives:
            if (root / "bin" / target).exists() and not (root / "bin" / link).exists():
                (root / "bin" / link).symlink_to(target)
        for p in sorted((tree / MULTIARCH).glob("libvomsapi.so*")):
            shutil.copy2(p, root / "lib" / p.name, follow_symlinks=False)
        doc = root / "share/doc/voms"
        doc.mkdir(parents=True)
        for d in sorted((tree / "usr/share/doc").iterdir()):
            if (d / "copyright").exists():
                shutil.copy2(d / "copyright", doc / f"{d.name}.copyright")
    fix_runpaths(root, root / "lib")


def voms_spec(debs: list[Deb]) -> PackageSpec:
    version = conda_version(next(d.version for d in debs if d.package == "voms-clients"))
    glibc = ".".join(platform.libc_ver()[1].split(".")[:2]) or "2.17"
    digest = hashlib.sha1(json.dumps([d.sha256 for d in debs]).encode()).hexdigest()[:7]
    return PackageSpec(
        name="voms",
        version=version,
        build=f"h{digest}_0",
        subdir="linux-64",
        depends=[f"__glibc >={glibc}"],
        license="Apache-2.0",
        summary="VOMS clients repackaged by dxforge from Debian's "
        + ", ".join(f"{d.package} {d.version}" for d in debs)
        + " (links against this OS's OpenSSL and libexpat)",
        homepage="https://italiangrid.github.io/voms/",
    )


def build_voms(debs: list[Deb], cache: Path, out_dir: Path) -> Path:
    files = download(debs, cache)
    spec = voms_spec(debs)
    with tempfile.TemporaryDirectory(prefix=".stage-voms-", dir=out_dir) as tmp:
        root = Path(tmp) / "voms"
        stage_voms(files, root)
        return assemble(spec, root, out_dir)
