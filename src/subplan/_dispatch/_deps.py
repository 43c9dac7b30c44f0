"""Dependencies between subplans: explicit ones, or derived from the import graph."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from .._decompose._order import leaf_dependencies
from .._errors import DependencyCycleError
from .._model import Plan

if TYPE_CHECKING:
    pass

__all__ = ["dependencies_from_imports", "expand_dependencies"]


# The public name (``subplan.dependencies_from_imports``) of the decomposer's own function.
dependencies_from_imports = leaf_dependencies


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
