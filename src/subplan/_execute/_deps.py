"""Dependencies between subplans: explicit ones, or derived from the import graph."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .._decompose._order import leaf_dependencies
from .._errors import DependencyCycleError
from .._model import Plan

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["dependencies_from_imports", "expand_dependencies"]


def dependencies_from_imports(plan: Plan, graph: nx.DiGraph) -> dict[str, set[str]]:
    """Leaf dependencies from an import graph: a leaf waits for the leaves it imports.

    Leaves that import each other in a cycle are collapsed into one strongly connected
    component; edges inside a component are dropped (no order among them), edges between
    components are kept, so the result is always acyclic.

    Args:
        plan: the plan whose leaves are ordered.
        graph: a directed import graph over file paths (``a -> b``: a imports b).

    Returns:
        ``{leaf id: ids of the leaves it waits for}`` (only leaves with prerequisites).

    Example:
        >>> import networkx as nx
        >>> from subplan import decompose
        >>> plan = decompose(["a/1", "a/2", "a/3", "b/1", "b/2", "b/3"], max_files=3)
        >>> g = nx.DiGraph([("a/1", "b/1")])
        >>> deps = dependencies_from_imports(plan, g)
        >>> [plan[p].label for p in deps[plan.leaf_for("a/1").id]]
        ['b']
    """
    return leaf_dependencies(plan, graph)


def expand_dependencies(
    plan: Plan,
    dependencies: Mapping[str, Iterable[str]],
    *,
    units: Mapping[str, Iterable[str]],
) -> dict[str, set[str]]:
    """Turn subplan-level dependencies into dependencies between units of work.

    A dependency on an internal node means a dependency on every unit that makes it up
    (its leaves, or its integration step when it has one); a dependant internal node
    means every leaf under it waits.

    Args:
        plan: the plan.
        dependencies: ``{subplan id: ids it waits for}``; any node of the plan.
        units: ``{subplan id: the unit ids that stand for it}``.

    Returns:
        ``{unit id: unit ids it waits for}``.

    Raises:
        UnknownSubplanError: an id that is not in the plan.
        DependencyCycleError: the dependencies form a cycle (the error names it).
    """
    import networkx as nx

    out: dict[str, set[str]] = {}
    explicit = nx.DiGraph()
    for dependant, prerequisites in dependencies.items():
        plan[dependant]  # raises UnknownSubplanError
        for prerequisite in prerequisites:
            plan[prerequisite]
            explicit.add_edge(dependant, prerequisite)
            for unit in units[dependant]:
                out.setdefault(unit, set()).update(units[prerequisite])
    # A cycle among the ids as the caller wrote them reads best; a cycle that only appears
    # after expansion (a leaf waiting for its own ancestor) is reported in unit ids.
    for graph in (explicit, nx.DiGraph((a, b) for a, bs in out.items() for b in bs)):
        try:
            cycle = nx.find_cycle(graph)
        except nx.NetworkXNoCycle:
            continue
        raise DependencyCycleError([edge[0] for edge in cycle])
    return out
