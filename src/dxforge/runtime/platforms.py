"""The platforms the runtime is built for: where a Debian root keeps each one's C library and
libraries, and the machine-specific words of the components' build scripts.

linux-64 is built natively in the bullseye build root, with the scripts exactly as written;
its fingerprints carry nothing of this module, so they are what they were before it. Another
platform's scripts are linux-64's with the machine's words replaced (each replacement must
find its word, so that a script edited without its platform is an error, not a silent x86_64
build), and its fingerprints name it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from dxforge.core.util import DxError

NATIVE = "linux-64"
"""The platform of the build root itself: built with the scripts as written."""

LIBRARY_DEV = (
    "zlib1g-dev",
    "libbz2-dev",
    "liblzma-dev",
    "libffi-dev",
    "libexpat1-dev",
    "libreadline-dev",
    "libncurses-dev",
    "uuid-dev",
    "libmpdec-dev",
)
"""The Debian -dev packages of the libraries the runtime's components build against: in the
build root for linux-64, in the cross sysroot for another platform (one list, so both follow)."""


@dataclass(frozen=True)
class RuntimePlatform:
    subdir: str  # conda's: linux-aarch64
    machine: str  # uname -m: aarch64
    triplet: str  # Debian's multiarch directory: aarch64-linux-gnu
    debian_arch: str  # dpkg's: arm64
    openssl_target: str  # OpenSSL's Configure target: linux-aarch64

    @property
    def native(self) -> bool:
        return self.subdir == NATIVE

    @property
    def lib_dirs(self) -> tuple[str, ...]:
        """Where a Debian root of this platform keeps shared libraries, searched in order."""
        return (f"lib/{self.triplet}", f"usr/lib/{self.triplet}", "lib", "usr/lib")

    @property
    def libc_dir(self) -> str:
        """The directory of the C library (its version definitions give the floor's plan)."""
        return f"lib/{self.triplet}"

    def script(self, name: str, text: str) -> str:
        """The build script ``name`` (its linux-64 ``text``) as it runs for this platform."""
        if self.native:
            return text
        for old, new in WORDS.get(name, ()):
            if old not in text:
                raise DxError(
                    f"data/runtime/{name}: `{old.strip()}` is no longer in the script, so "
                    f"dxforge cannot make its {self.subdir} build; update WORDS in "
                    "runtime/platforms.py to the script's machine-specific words"
                )
            text = text.replace(old, new.format(p=self))
        return text

    def key(self) -> dict[str, Any] | None:
        """What a fingerprint adds for this platform: nothing for linux-64."""
        if self.native:
            return None
        return {"subdir": self.subdir, "triplet": self.triplet, "route": "cross"}


PLATFORMS = {
    p.subdir: p
    for p in (
        RuntimePlatform("linux-64", "x86_64", "x86_64-linux-gnu", "amd64", "linux-x86_64"),
        RuntimePlatform("linux-aarch64", "aarch64", "aarch64-linux-gnu", "arm64", "linux-aarch64"),
        RuntimePlatform(
            "linux-ppc64le", "ppc64le", "powerpc64le-linux-gnu", "ppc64el", "linux-ppc64le"
        ),
    )
}

CONFIGURE = './configure --prefix="$PH"'
CROSS_CONFIGURE = './configure --host="$HOST" --build="$BUILD" --prefix="$PH"'
WORDS: dict[str, tuple[tuple[str, str], ...]] = {
    "openssl.sh": (("./Configure linux-x86_64 ", "./Configure {p.openssl_target} "),),
    "sqlite.sh": ((CONFIGURE, CROSS_CONFIGURE),),
    "curl.sh": ((CONFIGURE, CROSS_CONFIGURE),),
    "voms.sh": ((CONFIGURE, CROSS_CONFIGURE),),
    "python.sh": (
        (CONFIGURE, CROSS_CONFIGURE + ' --with-build-python="$BUILD_PYTHON_DIR/bin/python3"'),
    ),
    "git.sh": (("CC=$CC\n", "CC=$CC\nAR=$AR\n"),),
}
"""Per script: the linux-64 words and their replacement for another platform (``{p}`` is the
:class:`RuntimePlatform`): the cross route's configure arguments (the variables are set by
:func:`dxforge.runtime.cross.environment`) and OpenSSL's target."""


def runtime_platform(subdir: str = NATIVE) -> RuntimePlatform:
    """The platform of a conda subdir."""
    try:
        return PLATFORMS[subdir]
    except KeyError:
        raise DxError(
            f"no runtime platform {subdir!r}: dxforge builds the runtime for {', '.join(PLATFORMS)}"
        ) from None
