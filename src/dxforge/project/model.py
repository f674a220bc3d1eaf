"""The one project model: a distribution project read once, then handed to every stage.

A :class:`Project` holds where things are (:class:`~dxforge.project.layout.Layout`),
construct.yaml (:class:`~dxforge.project.construct.ConstructSpec`), the target it declares, the
recipes as the build renders them (their sources in the project's source cache) and their graph.
Each is read on first use and kept, so a command reads each file once whatever its stages ask.
The CLI and the release make the project; the stages receive it and read none of these files
themselves. A stage that changes the recipes (the release's bump) makes the project anew.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from dxforge.conda import channel as ch
from dxforge.core.util import DxError
from dxforge.project.construct import PLATFORM, ConstructSpec, load_construct, target_of
from dxforge.project.graph import Graph, graph_of
from dxforge.project.layout import Layout, sources_url
from dxforge.project.recipes import Recipe, load_recipes
from dxforge.project.target import Target


@dataclass(frozen=True)
class Project:
    """A distribution project: its layout, construct.yaml, target, rendered recipes, graph."""

    layout: Layout
    construct_path: Path
    platform: str = PLATFORM  # the conda subdir construct.yaml's selectors are evaluated for

    @classmethod
    def of(
        cls, layout: Layout, construct: Path | None = None, platform: str | None = None
    ) -> Project:
        """The project at ``layout`` (``construct``: another construct.yaml than its own), for
        ``platform`` (default linux-64)."""
        path = Path(construct) if construct else layout.construct
        return cls(layout, path, platform or PLATFORM)

    @property
    def root(self) -> Path:
        return self.layout.root

    @cached_property
    def construct(self) -> ConstructSpec:
        return load_construct(self.construct_path, self.platform)

    @cached_property
    def target(self) -> Target:
        """construct.yaml's target; a project without construct.yaml renders its recipes for
        any CPython 3 (enough to read them)."""
        return target_of(self.construct) if self.construct_path.is_file() else Target("3")

    @cached_property
    def recipes(self) -> tuple[Recipe, ...]:
        """Every recipe, rendered for the target with its sources in the project's cache."""
        return tuple(load_recipes(self.root, sources_url(self.layout.sources), self.target))

    @cached_property
    def graph(self) -> Graph:
        return graph_of(self.recipes)

    @property
    def version(self) -> str:
        """The recipes' one version (the graph refuses two)."""
        return self.graph.version

    def recipe(self, name: str) -> Recipe:
        """The recipe that builds ``name``; another name is an error listing the known ones."""
        for r in self.recipes:
            if r.name == name:
                return r
        known = ", ".join(r.name for r in self.recipes)
        raise DxError(f"{self.layout.recipes}: no recipe builds {name}; the recipes are: {known}")

    def channels(self, given: list[str] | None = None) -> list[str]:
        """The channels to install from: :func:`channel_list` of construct.yaml."""
        return channel_list(self.construct, given, self.layout)

    @cached_property
    def settings(self) -> dict[str, Any]:
        """``[tool.dxforge]`` of the project's pyproject.toml (empty when there is none)."""
        return tool_settings(self.root)

    @property
    def extension(self) -> str | None:
        """The extension this project distributes on top of DiracX (``[tool.dxforge]
        extension``), None for a DiracX distribution."""
        name = self.settings.get("extension")
        return str(name) if name else None


def tool_settings(root: Path) -> dict[str, Any]:
    """``[tool.dxforge]`` of ``root``'s pyproject.toml: empty when the file or the table is
    absent; a file that is not TOML is an error naming it."""
    path = Path(root) / "pyproject.toml"
    if not path.is_file():
        return {}
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise DxError(f"{path}: not valid TOML ({e}); fix the file") from None
    tool = data.get("tool", {}).get("dxforge", {})
    if not isinstance(tool, dict):
        raise DxError(f"{path}: [tool.dxforge] must be a table")
    return tool


def channel_list(spec: ConstructSpec, given: list[str] | None, layout: Layout) -> list[str]:
    """``spec``'s channels (paths under the project's ``build/`` follow the build directory),
    or with ``given`` (``--channel``): the build's own output channel (when ``spec`` lists it)
    followed by the given channels. Paths become file:// URLs."""

    def local(url: str) -> str:
        path = ch.local_path(url)
        return layout.rebase(path).as_uri() if path is not None else url

    listed = [local(ch.channel_url(c, spec.path.parent)) for c in spec.channels]
    if not given:
        return listed
    own = layout.channel.as_uri()
    urls = [ch.channel_url(c) for c in given]
    return ([own] if own in listed and own not in urls else []) + urls
