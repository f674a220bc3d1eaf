"""The cross route to another platform's runtime (``linux-aarch64``): the bullseye build root
with Debian's cross compiler, compiling against a sysroot of the platform's bullseye ``-dev``
packages.

- The sysroot is a foreign root of mmdebstrap's ``extract`` variant (nothing runs) with its dpkg
  database written from the packages it unpacked (so the library closure can ask which package
  ships a library), unpacked at :data:`SYSROOT` inside the build root. Debian's ``-dev`` packages
  hold absolute symlinks (``libpthread.so -> /lib/aarch64-linux-gnu/libpthread.so.0``), which
  point out of the sysroot: the linker then silently takes the static library. They are made
  relative (:func:`relativize`).
- The compiler binds the sysroot's C library only with ``--sysroot`` *and* ``-B``/``-L`` into
  it (``--sysroot`` alone is ignored for libraries); the floor header is computed from the
  sysroot's C library.
- CPython is built by a build machine's CPython of the same version: linux-64's own runtime
  python, bound at :data:`BUILD_PYTHON_DIR`.
"""

from __future__ import annotations

import os
from pathlib import Path

from dxforge.isolation import roots
from dxforge.runtime.platforms import LIBRARY_DEV, RuntimePlatform

SYSROOT = "/sysroot"
BUILD_PYTHON_DIR = "/build/python-for-build"
BUILD_TRIPLET = "x86_64-linux-gnu"
SYSROOT_PACKAGES = (
    "libc6-dev",
    *LIBRARY_DEV,
    "libstdc++-10-dev",
)
"""The platform's libraries the components build against (the build root's -dev packages,
for the platform), with libstdc++ for voms's C++."""
CONFIGURE_ANSWERS = (
    "ac_cv_file__dev_ptmx=yes",
    "ac_cv_file__dev_ptc=no",
    "ac_cv_buggy_getaddrinfo=no",
    "ac_cv_func_memcmp_working=yes",
    "ac_cv_func_malloc_0_nonnull=yes",
    "ac_cv_func_realloc_0_nonnull=yes",
    "ac_cv_func_mmap_fixed_mapped=yes",
    "ac_cv_func_strnlen_working=yes",
)
"""What configure scripts cannot find out without running the platform's programs, answered as
for any glibc Linux of the floor: CPython's pty devices and getaddrinfo, and autoconf's
``AC_FUNC_*`` checks, whose cross-compiling guess is "broken": voms then compiled its own
``memcmp`` into libvomsapi, which took the place of the C library's in every library loaded
with it, and OpenSSL's object table lookups went wrong (rsaEncryption read as another OID)."""


def build_root(base: roots.RootSpec, p: RuntimePlatform) -> roots.RootSpec:
    """The native build root with the platform's cross compilers."""
    return roots.RootSpec(
        base.release,
        base.variant,
        tuple(sorted({*base.include, f"gcc-{p.triplet}", f"g++-{p.triplet}"})),
    )


def sysroot(release: str, p: RuntimePlatform) -> roots.RootSpec:
    """The platform's ``-dev`` packages of ``release``, unpacked with their dpkg database (the
    main suite alone: a partial mirror misses some foreign files of the security suite)."""
    return roots.RootSpec(
        release, "extract", SYSROOT_PACKAGES, p.debian_arch, updates=False, database=True
    )


def relativize(root: Path) -> int:
    """Make every absolute symlink under ``root`` relative, pointing at the same file inside
    ``root``; the number changed."""
    changed = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in filenames + dirnames:
            link = Path(dirpath) / name
            if not link.is_symlink():
                continue
            target = os.readlink(link)
            if target.startswith("/"):
                link.unlink()
                link.symlink_to(os.path.relpath(root / target.lstrip("/"), link.parent))
                changed += 1
    return changed


def compiler(p: RuntimePlatform, name: str, include: str) -> str:
    """The cross compiler ``name`` (``gcc``, ``g++``) bound to the sysroot, ``include`` forced."""
    libs = [f"{SYSROOT}/usr/lib/{p.triplet}", f"{SYSROOT}/lib/{p.triplet}"]
    return " ".join(
        [
            f"{p.triplet}-{name}",
            f"--sysroot={SYSROOT}",
            f"-B{libs[0]}/",
            *(f"-L{d}" for d in libs),
            f"-include {include}",
        ]
    )


def environment(p: RuntimePlatform, include: str) -> dict[str, str]:
    """What a component's script runs with on the cross route (beside linux-64's variables)."""
    tools = {t.upper(): f"{p.triplet}-{t}" for t in ("ar", "ranlib", "strip", "nm", "ld")}
    return {
        "CC": compiler(p, "gcc", include),
        "CXX": compiler(p, "g++", include),
        **tools,
        "HOST": p.triplet,
        "BUILD": BUILD_TRIPLET,
        "PKG_CONFIG_LIBDIR": f"{SYSROOT}/usr/lib/{p.triplet}/pkgconfig:"
        f"{SYSROOT}/usr/share/pkgconfig",
        "BUILD_PYTHON_DIR": BUILD_PYTHON_DIR,
        "PYTHONDONTWRITEBYTECODE": "1",  # the build python is in the user cache
    }
