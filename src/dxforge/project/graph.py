"""The dependency graph of the recipes, in topological levels.

Edges run from a dependency to its dependent (``diracx-core -> diracx-db``: build core first).
There is an edge when a recipe names another recipe's package in any requirement section (build,
host, run or test). The graph is built from plain data (:class:`Node`), so tests can use small
synthetic recipes; :func:`load_graph` reads the real ones.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dxforge.core import schedule
from dxforge.core.specs import split_spec
from dxforge.core.util import DxError
from dxforge.project.recipes import SECTIONS, Recipe, is_sibling, load_recipes, project_family


@dataclass(frozen=True)
class Node:
    """What the graph needs from one recipe."""

    name: str
    version: str
    requirements: dict[str, list[str]] = field(default_factory=dict)
    path: str = ""

    @property
    def where(self) -> str:
        return self.path or f"recipe {self.name}"


@dataclass
class Graph:
    """Recipes and the recipes each one requires, grouped in topological levels."""

    nodes: dict[str, Node]
    deps: dict[str, frozenset[str]]
    levels: list[list[str]]

    @property
    def order(self) -> list[str]:
        """A build order: the levels one after the other."""
        return [n for level in self.levels for n in level]

    @property
    def version(self) -> str:
        return next(iter(self.nodes.values())).version if self.nodes else ""

    @property
    def edges(self) -> list[tuple[str, str]]:
        """``(dependency, dependent)`` pairs, sorted."""
        return sorted((d, n) for n, ds in self.deps.items() for d in ds)

    def _check(self, name: str) -> str:
        if name not in self.nodes:
            near = difflib.get_close_matches(name, list(self.nodes), n=1)
            hint = f"did you mean {near[0]}?" if near else f"known: {', '.join(self.order)}"
            raise DxError(f"{name}: no such recipe; {hint}")
        return name

    def _in_order(self, names: Iterable[str]) -> list[str]:
        chosen = set(names)
        return [n for n in self.order if n in chosen]

    def _closure(self, start: Iterable[str], step: Callable[[str], Iterable[str]]) -> set[str]:
        seen: set[str] = set()
        todo = [self._check(n) for n in start]
        while todo:
            for m in step(todo.pop()):
                if m not in seen:
                    seen.add(m)
                    todo.append(m)
        return seen

    def dependencies(self, name: str) -> list[str]:
        """Every recipe ``name`` needs, directly or not, in build order."""
        return self._in_order(self._closure([name], lambda n: self.deps[n]))

    def dependents(self, name: str) -> list[str]:
        """Every recipe that needs ``name``, directly or not, in build order: what to rebuild
        when ``name`` changes."""
        users: dict[str, set[str]] = {n: set() for n in self.nodes}
        for dep, user in self.edges:
            users[dep].add(user)
        return self._in_order(self._closure([name], lambda n: users[n]))

    def up_to(self, name: str) -> list[str]:
        """``name`` and everything it needs, in build order (``--up-to``)."""
        return self._in_order({self._check(name), *self.dependencies(name)})

    def only(self, names: Iterable[str]) -> list[str]:
        """Just ``names``, in build order (``--only``)."""
        return self._in_order(self._check(n) for n in names)

    status = "ok"

    def as_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "levels": [list(level) for level in self.levels],
            "order": self.order,
            "edges": [list(e) for e in self.edges],
        }

    def mermaid(self) -> str:
        """A Mermaid flowchart, dependencies above their dependents."""

        def nid(n: str) -> str:
            return re.sub(r"\W", "_", n)

        lines = ["flowchart TD"]
        lines += [f'    {nid(n)}["{n}"]' for n in self.order]
        lines += [f"    {nid(a)} --> {nid(b)}" for a, b in self.edges]
        return "\n".join(lines) + "\n"

    def dot(self) -> str:
        """A Graphviz digraph, one rank a level."""
        lines = ["digraph recipes {", "    rankdir=TB;", "    node [shape=box];"]
        for level in self.levels:
            lines.append("    { rank=same; " + " ".join(f'"{n}";' for n in level) + " }")
        lines += [f'    "{a}" -> "{b}";' for a, b in self.edges]
        lines.append("}")
        return "\n".join(lines) + "\n"


def _by_name(nodes: Iterable[Node]) -> dict[str, Node]:
    """The nodes by name, all at one version."""
    by_name: dict[str, Node] = {}
    for node in nodes:
        if node.name in by_name:
            raise DxError(
                f"{node.where} and {by_name[node.name].where} both build {node.name}; "
                "remove one of them"
            )
        by_name[node.name] = node
    versions: dict[str, list[Node]] = {}
    for node in by_name.values():
        versions.setdefault(node.version, []).append(node)
    if len(versions) > 1:
        listing = "; ".join(
            f"{v}: " + ", ".join(f"{n.name} ({n.where})" for n in sorted(ns, key=lambda n: n.name))
            for v, ns in sorted(versions.items())
        )
        raise DxError(
            f"the recipes disagree on the version ({listing}); DiracX packages move together: "
            "set context.version to one value in all of them (dxforge bump does this)"
        )
    return by_name


def _needs(node: Node, known: Iterable[str], sibling: Callable[[str], bool]) -> set[str]:
    """The recipes ``node`` requires (its own name in its tests aside)."""
    found = set()
    for sec in SECTIONS:
        for line in node.requirements.get(sec, []):
            req = split_spec(line)[0]
            if req == node.name and sec == "test":
                continue
            if req in known:
                found.add(req)
            elif sibling(req):
                raise DxError(
                    f"{node.where}: requirements.{sec}: {req} is a DiracX package with no "
                    f"recipe (no recipes/{req}/recipe.yaml); add that recipe or remove "
                    "the requirement"
                )
    return found


def build_graph(nodes: Iterable[Node], sibling: Callable[[str], bool] = is_sibling) -> Graph:
    """The graph of ``nodes``. Errors: two recipes of one package, recipes at different versions,
    a ``sibling`` requirement with no recipe, a dependency cycle."""
    by_name = _by_name(nodes)
    deps = {n.name: _needs(n, by_name, sibling) for n in by_name.values()}
    try:
        levels = schedule.levels(deps)
    except schedule.CycleError as e:
        raise DxError(
            f"dependency cycle: {' -> '.join(e.cycle)} (each requires the next; see "
            f"{by_name[e.cycle[0]].where}); remove one of these requirements"
        ) from None
    return Graph(nodes=by_name, deps={n: frozenset(ds) for n, ds in deps.items()}, levels=levels)


def node_of(recipe: Recipe) -> Node:
    return Node(recipe.name, recipe.version, recipe.requirements, str(recipe.path))


def graph_of(recipes: Iterable[Recipe]) -> Graph:
    recipes = list(recipes)
    family = project_family(recipes[0].path.parents[2]) if recipes else "diracx"
    return build_graph((node_of(r) for r in recipes), lambda name: is_sibling(name, family=family))


def load_graph(root: Path, sources_url: str | None = None) -> tuple[Graph, list[Recipe]]:
    """The graph of the recipes under ``root/recipes`` and the recipes themselves."""
    recipes = load_recipes(root, sources_url)
    return graph_of(recipes), recipes
