"""Unit tests of the one ``${{ }}`` evaluator (recipe templates, workflow expressions)."""

from __future__ import annotations

import pytest

from dxforge.core import expr
from dxforge.core.util import DxError


def test_render_names_filters_and_nested_values() -> None:
    values = {"name": "diracx-api", "version": "2.0", "matrix": {"enabled": True, "n": 3}}
    template = "${{ name | replace('-', '_') }}-${{version}}.tar.gz"
    assert expr.render(template, values) == "diracx_api-2.0.tar.gz"
    assert expr.render("${{ name | upper }} ${{ matrix.enabled }} ${{ matrix.n }}", values) == (
        "DIRACX-API true 3"
    )


def test_unknown_names_and_filters() -> None:
    with pytest.raises(expr.Unknown, match="nope"):
        expr.render("${{ nope }}", {})
    with pytest.raises(expr.Unknown, match="title"):
        expr.render("${{ name | title }}", {"name": "x"})
    kept = "${{ hashFiles('recipes/**') }}-${{ matrix.os }}"
    assert expr.render(kept, {"matrix": {"os": "linux"}}, strict=False) == (
        "${{ hashFiles('recipes/**') }}-linux"
    )


def test_conditions_as_the_workflows_write_them() -> None:
    values = {"matrix": {"enabled": False}, "steps": {"check": {"outputs": {"update": "true"}}}}
    assert expr.condition("${{ !matrix.enabled }}", values)
    assert not expr.condition("${{ matrix.enabled }}", values)
    assert expr.condition("steps.check.outputs.update == 'true'", values)
    assert not expr.condition("steps.other.outputs.update == 'true'", values)  # empty
    assert expr.condition("true", {}) and not expr.condition("!true", {})
    with pytest.raises(DxError, match="cannot evaluate the condition 'github.ref == 1'"):
        expr.condition("github.ref == 1", values)
