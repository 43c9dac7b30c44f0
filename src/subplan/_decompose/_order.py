"""Leaf dependencies from a dependency graph: which leaf waits for which."""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._model import Plan

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["leaf_dependencies"]


def leaf_dependencies(plan: Plan, graph: nx.DiGraph) -> dict[str, set[str]]:
    """Leaf dependencies from a graph over files: a leaf waits for the leaves it imports.

    Leaves that import each other in a cycle are collapsed into one strongly connected
    component; edges inside a component are dropped (no order among them), edges between
    components are kept, so the result is always acyclic.

    Args:
        plan: the plan whose leaves are ordered.
        graph: a directed graph over file paths (``a -> b``: a imports b).

    Returns:
        ``{leaf id: ids of the leaves it waits for}`` (only leaves with prerequisites).

    Notes:
        O(files + edges).
    """
    import networkx as nx

    leaf_of = {f: leaf.id for leaf in plan.leaves for f in leaf.files}
    leaf_graph = nx.DiGraph()
    leaf_graph.add_nodes_from(leaf.id for leaf in plan.leaves)
    for importer, imported in graph.edges:
        a, b = leaf_of.get(importer), leaf_of.get(imported)
        if a is not None and b is not None and a != b:
            leaf_graph.add_edge(a, b)
    component = {}
    for n, members in enumerate(nx.strongly_connected_components(leaf_graph)):
        for member in members:
            component[member] = n
    out: dict[str, set[str]] = {}
    for a, b in leaf_graph.edges:
        if component[a] != component[b]:
            out.setdefault(a, set()).add(b)
    return out
