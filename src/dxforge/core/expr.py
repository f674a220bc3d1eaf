"""The one evaluator of ``${{ }}`` expressions dxforge reads itself.

Recipes are rendered by rattler-build; this evaluates the small forms dxforge needs beside
it: a recipe's source file name and run specs for another version (``${{ name | replace('-',
'_') }}-${{ version }}``), and, in the local CI runner, the workflows' ``${{ matrix.image }}``
and step conditions (``!matrix.enabled``, ``steps.check.outputs.update == 'true'``).

An expression is a dotted name looked up in nested mappings, then filters (``lower``,
``upper``, ``replace('a', 'b')``); a condition is an optionally negated expression or
literal (``true``, ``false``), optionally compared with ``==`` to a quoted string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from dxforge.core.util import DxError

EXPR = re.compile(r"\$\{\{(.*?)\}\}")
_REPLACE = re.compile(r"""replace\(\s*(['"])(.*?)\1\s*,\s*(['"])(.*?)\3\s*\)""")


class Unknown(KeyError):
    """A name or filter the values do not hold; ``args[0]`` names it."""


def _text(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def lookup(name: str, values: Mapping[str, Any]) -> Any:
    """``values[a][b][c]`` for ``a.b.c``."""
    node: Any = values
    for part in name.split("."):
        if not isinstance(node, Mapping) or part not in node:
            raise Unknown(name)
        node = node[part]
    return node


def _filter(value: str, f: str) -> str:
    if f == "lower":
        return value.lower()
    if f == "upper":
        return value.upper()
    m = _REPLACE.fullmatch(f)
    if m:
        return value.replace(m.group(2), m.group(4))
    raise Unknown(f)


def evaluate(expression: str, values: Mapping[str, Any]) -> str:
    """One expression (without ``${{ }}``) as text."""
    name, *filters = (p.strip() for p in expression.split("|"))
    value = _text(lookup(name, values))
    for f in filters:
        value = _filter(value, f)
    return value


def render(template: str, values: Mapping[str, Any], strict: bool = True) -> str:
    """``template`` with every ``${{ expression }}`` evaluated; an unknown name or filter is
    :class:`Unknown`, or with ``strict`` false leaves its expression as written."""

    def sub(m: re.Match[str]) -> str:
        try:
            return evaluate(m.group(1), values)
        except Unknown:
            if strict:
                raise
            return m.group(0)

    return EXPR.sub(sub, template)


def condition(text: str, values: Mapping[str, Any]) -> bool:
    """A condition (``${{ }}`` optional): ``[!]expression [== 'value']``. A property that is
    not there is empty; an unknown top-level name is a DxError naming the condition."""
    body = text.strip()
    m = EXPR.fullmatch(body)
    if m:
        body = m.group(1).strip()
    negate = body.startswith("!")
    left, eq, right = (t.strip() for t in body.lstrip("!").partition("=="))
    if left in ("true", "false"):
        value = left
    elif left.split(".", 1)[0] not in values:
        raise DxError(f"cannot evaluate the condition {text!r}: {left} is not known")
    else:
        try:
            value = evaluate(left, values)
        except Unknown:  # a property that is not there is empty, as in GitHub Actions
            value = ""
    result = value == right.strip("'\"") if eq else value == "true"
    return result != negate
