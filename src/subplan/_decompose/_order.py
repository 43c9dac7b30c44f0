"""Leaf dependencies from a dependency graph: which leaf waits for which."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from .._model import Plan, Subplan
from ._strategies import Runs, owners

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["adjacency", "leaf_dependencies", "leaf_order"]


def adjacency(graph: nx.Graph) -> Mapping[Any, Mapping[Any, Any]]:
    """``{node: {successor: data}}`` of a networkx graph, read as fast as it allows.

    networkx's public ``adj`` wraps every row in a view object, which costs a third of a
    second on 100k files; its ``_adj`` dict of dicts (stable for years) is read instead
    when present.
    """
    found = getattr(graph, "_adj", None)
    return found if isinstance(found, dict) else graph.adj


def leaf_dependencies(plan: Plan | Sequence[Subplan], graph: nx.DiGraph) -> dict[str, set[str]]:
    """Leaf dependencies from a graph over files: a leaf waits for the leaves it imports.

    Leaves that import each other in a cycle are collapsed into one strongly connected
    component; edges inside a component are dropped (no order among them), edges between
    components are kept, so the result is always acyclic.

    Args:
        plan: the plan whose leaves are ordered (or its leaves, in plan order).
        graph: a directed graph over file paths (``a -> b``: a imports b).

    Returns:
        ``{leaf id: ids of the leaves it waits for}`` (only leaves with prerequisites).

    Example:
        >>> import networkx as nx
        >>> from subplan import decompose
        >>> plan = decompose(["a/1", "a/2", "a/3", "b/1", "b/2", "b/3"], max_files=3)
        >>> g = nx.DiGraph([("a/1", "b/1")])
        >>> deps = leaf_dependencies(plan, g)
        >>> [plan[p].label for p in deps[plan.leaf_for("a/1").id]]
        ['b']

    Notes:
        O(files + edges); strongly connected components by Tarjan's algorithm.
    """
    leaves = plan.leaves if isinstance(plan, Plan) else plan
    leaf_of = {f: leaf.id for leaf in leaves for f in leaf.files}
    edges: dict[str, set[str]] = {}
    for importer, successors in adjacency(graph).items():
        a = leaf_of.get(importer)
        if a is None:
            continue
        for imported in successors:
            b = leaf_of.get(imported)
            if b is not None and b != a:
                edges.setdefault(a, set()).add(b)
    return _acyclic([leaf.id for leaf in leaves], edges)


def leaf_order(
    leaves: Sequence[tuple[str, Runs]], edges: Mapping[int, Iterable[int]], size: int
) -> dict[str, set[str]]:
    """:func:`leaf_dependencies` from an indexed graph, as the decomposer holds it.

    Args:
        leaves: each leaf's id and its files, as runs of indices into the sorted input.
        edges: ``{file index: indices of the files it imports}``.
        size: the number of input files.
    """
    owner = owners([runs for _, runs in leaves], size)
    ids = [leaf_id for leaf_id, _ in leaves]
    between: dict[str, set[str]] = {}
    leaf_of = owner.__getitem__
    for i, targets in edges.items():
        a = owner[i]
        for b in set(map(leaf_of, targets)):  # at C speed
            if b != a:
                between.setdefault(ids[a], set()).add(ids[b])
    return _acyclic(ids, between)


def _acyclic(nodes: list[str], edges: dict[str, set[str]]) -> dict[str, set[str]]:
    """``edges`` without those inside a strongly connected component of them."""
    component = _components(nodes, edges)
    out: dict[str, set[str]] = {}
    for a, targets in edges.items():
        for b in targets:
            if component[a] != component[b]:
                out.setdefault(a, set()).add(b)
    return out


def _components(nodes: list[str], edges: dict[str, set[str]]) -> dict[str, int]:
    """Strongly connected components (iterative Tarjan): node -> component number."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    component: dict[str, int] = {}
    counter = components = 0
    for root in nodes:
        if root in index:
            continue
        work: list[tuple[str, list[str]]] = [(root, sorted(edges.get(root, ())))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, pending = work[-1]
            if pending:
                nxt = pending.pop()
                if nxt not in index:
                    index[nxt] = low[nxt] = counter
                    counter += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, sorted(edges.get(nxt, ()))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component[member] = components
                    if member == node:
                        break
                components += 1
    return component
