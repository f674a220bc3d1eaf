"""What the runtime is built from: every component, its source and what it builds against.

Debian components take the newest source package of :data:`SOURCE_RELEASE` whose files the
mirror serves (the upstream tarball with Debian's security fixes); upstream components take a
release archive pinned here by URL and sha256 (:mod:`dxforge.runtime.sources`). Each is built by
its script in ``data/runtime/`` inside the build root.
"""

from __future__ import annotations

from dataclasses import dataclass

from dxforge.runtime.sources import Pin

SOURCE_RELEASE = "trixie"
"""The Debian release whose source packages the runtime is built from."""


@dataclass(frozen=True)
class Component:
    """One piece of the runtime."""

    name: str  # the conda-forge package it becomes (or the tool's name)
    script: str  # data/runtime/<script>
    summary: str
    license: str
    homepage: str
    needs: tuple[str, ...] = ()  # components whose files it is built against
    debian: str = ""  # Debian source package of SOURCE_RELEASE
    pin: Pin | None = None  # an upstream release archive
    version: str = ""  # the pinned archive's version
    tool: bool = False  # a tool dxforge itself uses, not a package of the seed

    @property
    def source(self) -> str:
        """Where it comes from, for messages and package summaries."""
        if self.pin is not None:
            return f"the upstream release archive {self.pin.url}"
        return f"Debian {SOURCE_RELEASE}'s {self.debian} source package"


VOMS = Pin(
    url="https://github.com/italiangrid/voms/archive/refs/tags/v2.1.0.tar.gz",
    sha256="2fd2468620af531c02e9ac495aaaf2a8d5b8cfbe24d4904f2e8fa7f64cdeeeec",
    filename="voms-2.1.0.tar.gz",
)


def components(python: str) -> tuple[Component, ...]:
    """The runtime's components for CPython ``python`` (``3.13``), in a dependency order."""
    return (
        Component(
            "openssl",
            "openssl.sh",
            "OpenSSL 3: TLS and cryptography",
            "Apache-2.0",
            "https://www.openssl.org",
            debian="openssl",
        ),
        Component(
            "libsqlite",
            "sqlite.sh",
            "SQLite, the library",
            "blessing",
            "https://www.sqlite.org",
            debian="sqlite3",
        ),
        Component(
            "zstd-decoder",
            "zstd.sh",
            "A static zstd decoder for the installer",
            "BSD-3-Clause",
            "https://facebook.github.io/zstd/",
            debian="libzstd",
            tool=True,
        ),
        Component(
            "python",
            "python.sh",
            f"CPython {python}",
            "Python-2.0",
            "https://www.python.org",
            needs=("openssl", "libsqlite"),
            debian=f"python{python}",
        ),
        Component(
            "libcurl",
            "curl.sh",
            "The multiprotocol file transfer library",
            "curl",
            "https://curl.se",
            needs=("openssl",),
            debian="curl",
        ),
        Component(
            "voms",
            "voms.sh",
            "The VOMS clients and API",
            "Apache-2.0",
            "https://italiangrid.github.io/voms/",
            needs=("openssl",),
            pin=VOMS,
            version="2.1.0",
        ),
        Component(
            "git",
            "git.sh",
            "Distributed version control system",
            "GPL-2.0-only",
            "https://git-scm.com",
            needs=("openssl", "libcurl"),
            debian="git",
        ),
    )


def runtime_packages() -> set[str]:
    """The packages the runtime makes (besides the libraries of its DT_NEEDED closure)."""
    return {c.name for c in components("3") if not c.tool} | {"python_abi", "ca-certificates"}
