"""What dxforge builds for: one CPython version, one conda platform, one glibc floor.

construct.yaml is where a project says it (the installer's ``python X.Y.*`` spec and its
``__glibc >=X.Y`` virtual spec); the seed, the recipes' builds, the upstream test environment
and the name map all take it from the :class:`Target` made here, never from a constant.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from pathlib import Path

from dxforge.core.util import DxError

DEFAULT_GLIBC = (2, 28)
"""The floor when construct.yaml declares none: EL8's C library, as DIRACOS2's."""


@dataclass(frozen=True)
class Target:
    python: str  # "3.13"
    python_full: str = ""  # "3.13.5": the runtime's own patch release, once it is known
    subdir: str = "linux-64"
    glibc: tuple[int, ...] = DEFAULT_GLIBC

    @property
    def abi(self) -> str:
        """``cp313``."""
        return "cp" + self.python.replace(".", "")

    @property
    def site_packages(self) -> str:
        return f"lib/python{self.python}/site-packages"

    @property
    def spec(self) -> str:
        """The match spec of the interpreter: ``python 3.13.*``."""
        return f"python {self.python}.*"

    @property
    def glibc_text(self) -> str:
        return ".".join(map(str, self.glibc))

    def python_depends(self) -> list[str]:
        """What a package built for this CPython depends on (conda-forge's two pins)."""
        major, minor = self.python.split(".")
        return [
            f"python >={self.python},<{major}.{int(minor) + 1}.0a0",
            f"python_abi {self.python}.* *_{self.abi}",
        ]

    def with_full(self, full: str) -> Target:
        if not full.startswith(self.python + "."):
            raise DxError(f"the runtime's python is {full}, not CPython {self.python}")
        return replace(self, python_full=full)

    def markers(self, extra: str = "") -> dict[str, str]:
        """PEP 508's marker environment of the target."""
        full = self.python_full or f"{self.python}.0"
        return {
            "implementation_name": "cpython",
            "implementation_version": full,
            "os_name": "posix",
            "platform_machine": "x86_64" if self.subdir == "linux-64" else "aarch64",
            "platform_python_implementation": "CPython",
            "platform_release": "",
            "platform_system": "Linux",
            "platform_version": "",
            "python_full_version": full,
            "python_version": self.python,
            "sys_platform": "linux",
            "extra": extra,
        }


_PYTHON_SPEC = re.compile(r"^python\s*(?:==\s*)?(\d+\.\d+)(?:\.\*)?$")


def python_of(specs: list[str], where: str) -> str:
    """The ``X.Y`` of the ``python X.Y.*`` spec in ``specs``."""
    for s in specs:
        if s.split()[0] == "python" or s.startswith("python="):
            m = _PYTHON_SPEC.match(s.strip())
            if not m:
                raise DxError(
                    f"{where}: `{s}`: pin the interpreter to one minor version, like "
                    "`python 3.13.*`; dxforge builds the seed's runtime for it"
                )
            return m[1]
    raise DxError(
        f"{where}: no `python X.Y.*` in specs; add one (like `python 3.13.*`): it "
        "says which CPython the channel and the installer are built for"
    )


def project_target(construct: Path) -> Target:
    """The target construct.yaml declares."""
    from dxforge.project.construct import load_construct

    spec = load_construct(construct)
    glibc = tuple(int(p) for p in spec.glibc.split(".")) if spec.glibc else DEFAULT_GLIBC
    return Target(python_of(spec.specs, spec.where("specs")), glibc=glibc)
