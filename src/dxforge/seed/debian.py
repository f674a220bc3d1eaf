"""Debian binary packages of this machine's release, taken with its apt (each .deb checked
against the SHA256 in apt's signed lists), for what the seed takes as built by Debian: the CA
bundle (``ca-certificates``) and the VOMS clients (``voms-clients``, ``libvomsapi1v5``) with
the C++ runtime they were built against (``libstdc++6``, ``libgcc-s1``).

VOMS is not rebuilt: the Debian mirror serves no ``voms`` source tarball for any release (only
the ``.dsc``), and bullseye's binaries link OpenSSL 1.1. So ``voms`` needs the glibc of this
release (2.34 for bookworm's binaries), and says so in its ``__glibc`` dependency.
"""

from __future__ import annotations

import re
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from dxforge.elf import fix_runpaths
from dxforge.runtime.apt import conda_version
from dxforge.runtime.libs import DebPackage, Library, conda_name
from dxforge.runtime.packages import Provides, depends, library_package, sonames_of
from dxforge.seed.pack import PackageSpec, assemble
from dxforge.util import DxError, run, sha256_file

VOMS = ("voms-clients", "libvomsapi1v5")
CXX = ("libgcc-s1", "libstdc++6")  # libstdc++ needs libgcc_s: packaged in this order
CERTS = ("ca-certificates",)
DEBS = VOMS + CXX + CERTS
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
    source: str = ""

    def as_json(self) -> dict[str, str]:
        return asdict(self)


def _tool(cmd: list[str], cwd: Path | None = None) -> str:
    return run(
        cmd, cwd=cwd, fix="the seed takes these from Debian's packages, so it needs apt-get "
        "and dpkg-deb (a Debian-family host)",
    )


def candidates(packages: tuple[str, ...] = DEBS) -> list[Deb]:
    """The candidate version and its SHA256 of each Debian package, from apt's signed lists."""
    out = []
    for pkg in packages:
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
                fields.get("Source", pkg).split()[0],
            )
        )
    return out


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


def unpack(files: list[Path], tree: Path) -> list[tuple[str, str]]:
    """Unpack the .debs into ``tree``; return the ``update-alternatives`` links of their
    postinst scripts as ``(link, target)`` names in /usr/bin."""
    alternatives: list[tuple[str, str]] = []
    for deb in files:
        _tool(["dpkg-deb", "-x", str(deb), str(tree)])
        control = tree.parent / f"control-{deb.name}"
        _tool(["dpkg-deb", "-e", str(deb), str(control)])
        if (control / "postinst").exists():
            alternatives += _ALTERNATIVE_RE.findall((control / "postinst").read_text())
    return alternatives


def stage_voms(tree: Path, alternatives: list[tuple[str, str]], root: Path) -> None:
    """Lay out the VOMS binaries, library and licences of the unpacked ``tree`` in ``root``."""
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
    for name in VOMS:
        copyright = tree / "usr/share/doc" / name / "copyright"
        if copyright.exists():
            shutil.copy2(copyright, doc / f"{name}.copyright")
    fix_runpaths(root, root / "lib")


def build_debian_packages(
    debs: list[Deb], cache: Path, provides: Provides, work: Path, out: Path, release: str
) -> list[Path]:
    """``libstdcxx``, ``libgcc``, ``voms`` and ``ca-certificates`` from this release's .debs."""
    from dxforge.runtime.packages import certificates_package

    by_name = {d.package: d for d in debs}
    files = dict(zip([d.package for d in debs], download(debs, cache), strict=True))
    tree = work / "debian-tree"
    shutil.rmtree(tree, ignore_errors=True)
    tree.mkdir(parents=True)
    alternatives = unpack(list(files.values()), tree)
    made: list[Path] = []
    cxx = provides
    for pkg in CXX:
        d = by_name[pkg]
        lib = Library(conda_name(d.package, d.source), d.version,
                      [DebPackage(d.package, d.source, d.version)])
        lib.files = _shared_libraries(files[pkg])
        made.append(library_package(lib, tree, cxx, work, out, f"Debian {release}"))
        staged = work / f"lib-{lib.name}-{lib.version}"
        cxx = cxx.override(lib.name, sonames_of(staged), f">={conda_version(d.version)}")
    root = work / "voms"
    shutil.rmtree(root, ignore_errors=True)
    stage_voms(tree, alternatives, root)
    voms = by_name["voms-clients"]
    version = conda_version(voms.version)
    made.append(assemble(
        PackageSpec(
            name="voms",
            version=version,
            build=f"h{voms.sha256[:7]}_0",
            subdir="linux-64",
            depends=depends(root, cxx, f"voms {version}"),
            license="Apache-2.0",
            summary="VOMS clients repackaged by dxforge from Debian's "
            + ", ".join(f"{by_name[p].package} {by_name[p].version}" for p in VOMS)
            + f" (Debian {release}'s binaries: no voms source is on the mirror to rebuild)",
            homepage="https://italiangrid.github.io/voms/",
        ),
        root, out,
    ))
    made.append(certificates_package(tree, by_name["ca-certificates"].version, work, out))
    return made


def _shared_libraries(deb: Path) -> list[str]:
    """The shared libraries a .deb ships in the multiarch library directories."""
    out = []
    for line in _tool(["dpkg-deb", "-c", str(deb)]).splitlines():
        path = line.split()[5] if len(line.split()) > 5 else ""
        path = path.removeprefix(".")
        if re.search(r"^/(usr/)?lib/x86_64-linux-gnu/[^/]+\.so(\.\d+)*$", path):
            out.append(path)
    if not out:
        raise DxError(f"{deb.name}: no shared library in it; is it the right package?")
    return sorted(out)
