"""Version specifiers: PEP 440 (Python packaging) <-> conda match-spec versions.

The one converter every stage uses; it imports nothing of dxforge but the error type.
"""

from __future__ import annotations

import re

from packaging.specifiers import InvalidSpecifier, SpecifierSet

from dxforge.core.util import DxError


def conda_specifier(spec: SpecifierSet | str) -> str:
    """A PEP 440 specifier set as a conda version spec: ``>= 3.10`` -> ``>=3.10``,
    ``~=1.4.2`` -> ``>=1.4.2,1.4.*``, ``==2.*`` -> ``2.*``; clauses joined by commas in a stable
    order, without repeats."""
    if isinstance(spec, str):
        spec = SpecifierSet(spec.replace(" ", ""))
    parts: list[str] = []
    for s in sorted(spec, key=lambda s: (s.version, s.operator)):
        op, ver = s.operator, s.version
        if op == "~=":
            head = ver.split(".")[:-1] or [ver]
            clauses = [f">={ver}", f"{'.'.join(head)}.*"]
        elif op == "===" or (op == "==" and not ver.endswith(".*")):
            clauses = [f"=={ver}"]
        elif op == "==":
            clauses = [ver]
        else:
            clauses = [f"{op}{ver}"]
        parts += [c for c in clauses if c not in parts]
    return ",".join(parts)


def conda_spec(name: str, spec: SpecifierSet | str = "") -> str:
    """``name`` and its conda version spec, in conda-forge's ``name >=1.0,<2`` form."""
    version = conda_specifier(spec) if str(spec) else ""
    return f"{name} {version}" if version else name


def pep440_specifier(version: str, where: str) -> str:
    """A conda version spec as a PEP 440 specifier set (``3.11.*`` -> ``==3.11.*``)."""
    if not version or version == "*":
        return ""
    if "|" in version:
        raise DxError(f"{where}: version spec {version!r} uses '|', which the seed cannot resolve")
    clauses = []
    for clause in filter(None, version.split(",")):
        if clause[0].isdigit():
            clause = "==" + clause
        elif clause.startswith("=") and not clause.startswith("=="):
            clause = "=" + clause if clause.endswith("*") else "=" + clause + ".*"
        clauses.append(clause)
    text = ",".join(clauses)
    try:
        SpecifierSet(text)
    except InvalidSpecifier:
        raise DxError(f"{where}: cannot translate version spec {version!r} to PEP 440") from None
    return text


def canonical_spec(spec: str) -> str:
    """A conda version spec in a canonical form for comparison (blanks dropped, clauses in
    :func:`conda_specifier`'s order, or sorted when it is not PEP 440 shaped)."""
    s = re.sub(r"\s+", "", spec)
    if not s:
        return ""
    try:
        return conda_specifier(s)
    except InvalidSpecifier:
        return ",".join(sorted(c for c in s.split(",") if c))


def split_spec(spec: str, where: str = "") -> tuple[str, str]:
    """A match spec as name and version: ``name >=1, <2`` -> (``name``, ``>=1,<2``), blanks
    allowed where conda allows them. dxforge writes no build strings: they are refused."""
    label = f"{where}: " if where else ""
    text = re.sub(r"(?<=[<>=!~])\s+", "", re.sub(r"\s*,\s*", ",", spec.strip()))
    m = re.match(r"([^\s<>=!~]+)(.*)$", text)
    if not m:
        raise DxError(f"{label}{spec!r}: not a match spec (name and version expected)")
    name, rest = m.group(1), m.group(2).split()
    if len(rest) > 1:
        raise DxError(
            f"{label}{spec!r}: a build string is not supported in dxforge's requirements; "
            "write the name and version only"
        )
    return name, "".join(rest)
