"""ASV quality suite on real trees: subplan's plan beside a naive directory split and a
Louvain partition packed to the same budget, all computed in the same run.

The trees are real projects unpacked under ``$SUBPLAN_BENCH_TREES`` (default
``/work/trees``: ``flask``, ``redis``, ``prometheus``, each a ``git archive`` of the
project's default branch). A missing tree skips its benchmarks (``NotImplementedError``).
Run ``python benchmarks/bench_quality.py`` for the markdown table.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import networkx as nx

from subplan import Cuts, FileEntry, decompose, import_graph, scan

from .bench_decompose import naive_leaves

TREES = ("flask", "redis", "prometheus")
METHODS = ("subplan", "subplan-no-graph", "subplan-no-graph-stable", "naive", "louvain")
BUDGETS = (20_000, 50_000)


def trees_dir() -> Path:
    """Where the real trees lie."""
    return Path(os.environ.get("SUBPLAN_BENCH_TREES", "/work/trees"))


def louvain_leaves(
    files: Sequence[FileEntry], graph: nx.DiGraph, budget: int, seed: int = 0
) -> list[list[str]]:
    """Louvain communities of the import graph (files without edges: one community per
    directory), each cut in path order to fit, then packed first-fit in path order of
    their first file to the budget."""
    tokens = {f.path: f.tokens for f in files}
    undirected = nx.Graph()
    undirected.add_nodes_from(p for p in tokens if p in graph)
    undirected.add_edges_from((a, b) for a, b in graph.edges if a in tokens and b in tokens)
    communities = [sorted(c) for c in nx.community.louvain_communities(undirected, seed=seed)]
    placed = {p for c in communities for p in c}
    by_dir: dict[str, list[str]] = {}
    for path in sorted(tokens):
        if path not in placed:
            by_dir.setdefault(path.rpartition("/")[0], []).append(path)
    pieces: list[list[str]] = []
    for community in [*communities, *by_dir.values()]:
        chunk: list[str] = []
        size = 0
        for path in community:
            if chunk and size + tokens[path] > budget:
                pieces.append(chunk)
                chunk, size = [], 0
            chunk.append(path)
            size += tokens[path]
        pieces.append(chunk)
    pieces.sort(key=lambda piece: piece[0])
    bins: list[list[str]] = []
    sizes: list[int] = []
    for piece in pieces:
        weight = sum(tokens[p] for p in piece)
        for n, size in enumerate(sizes):
            if size + weight <= budget:
                bins[n].extend(piece)
                sizes[n] += weight
                break
        else:
            bins.append(list(piece))
            sizes.append(weight)
    return bins


def measure(
    files: Sequence[FileEntry], graph: nx.DiGraph, leaves: list[list[str]], budget: int
) -> dict[str, float]:
    """Leaves, leaves over ceil(tokens / budget), fill, over-budget leaves and the
    fraction of import edges inside a leaf."""
    tokens = {f.path: f.tokens for f in files}
    total = sum(tokens.values())
    sizes = [sum(tokens[p] for p in leaf) for leaf in leaves]
    leaf_of = {p: n for n, leaf in enumerate(leaves) for p in leaf}
    edges = [(a, b) for a, b in graph.edges if a in leaf_of and b in leaf_of]
    inside = sum(1 for a, b in edges if leaf_of[a] == leaf_of[b])
    return {
        "leaves": len(leaves),
        "over_ideal": len(leaves) / max(1, math.ceil(total / budget)),
        "fill": total / len(leaves) / budget,
        "over_budget": sum(
            1 for leaf, size in zip(leaves, sizes, strict=True) if len(leaf) > 1 and size > budget
        ),
        "intra_edges": inside / len(edges) if edges else 0.0,
    }


def leaves_of(
    method: str, files: list[FileEntry], graph: nx.DiGraph, budget: int
) -> list[list[str]]:
    """The leaves (as file lists) of ``method`` at ``budget``."""
    if method.startswith("subplan"):
        use = graph if method == "subplan" else None  # no graph: content-anchored cuts
        cuts: Cuts = "stable" if method.endswith("-stable") else "full"
        plan = decompose(files, max_tokens=budget, import_graph=use, cuts=cuts)
        return [list(leaf.files) for leaf in plan.leaves]
    if method == "naive":
        return naive_leaves(files, budget)
    return louvain_leaves(files, graph, budget)


def load(tree: str) -> tuple[list[FileEntry], nx.DiGraph]:
    """The files (sized, weighted as ``subplan plan`` weighs them) and import graph."""
    root = trees_dir() / tree
    if not root.is_dir():
        raise NotImplementedError(f"no tree at {root}")
    inventory = scan(root)
    return list(inventory.files), import_graph(root, inventory.paths)


class RealTreeQualitySuite:
    """Plan quality on real trees beside a naive directory split and packed Louvain."""

    params = (TREES, BUDGETS, METHODS)
    param_names = ("tree", "budget", "method")
    timeout = 600

    def setup_cache(self) -> dict[tuple[str, int, str], dict[str, float]]:
        out: dict[tuple[str, int, str], dict[str, float]] = {}
        for tree in TREES:
            try:
                files, graph = load(tree)
            except NotImplementedError:
                continue
            for budget in BUDGETS:
                for method in METHODS:
                    leaves = leaves_of(method, files, graph, budget)
                    out[(tree, budget, method)] = measure(files, graph, leaves, budget)
        return out

    def setup(
        self,
        cache: dict[tuple[str, int, str], dict[str, float]],
        tree: str,
        budget: int,
        method: str,
    ) -> None:
        if (tree, budget, method) not in cache:
            raise NotImplementedError(f"no tree {tree}")
        self.found = cache[(tree, budget, method)]

    def track_leaves(self, cache: object, tree: str, budget: int, method: str) -> float:
        return self.found["leaves"]

    track_leaves.unit = "leaves"  # type: ignore[attr-defined]

    def track_leaves_over_ideal(self, cache: object, tree: str, budget: int, method: str) -> float:
        return self.found["over_ideal"]

    track_leaves_over_ideal.unit = "x ideal"  # type: ignore[attr-defined]

    def track_fill(self, cache: object, tree: str, budget: int, method: str) -> float:
        return self.found["fill"]

    track_fill.unit = "of budget"  # type: ignore[attr-defined]

    def track_over_budget(self, cache: object, tree: str, budget: int, method: str) -> float:
        return self.found["over_budget"]

    track_over_budget.unit = "leaves"  # type: ignore[attr-defined]

    def track_intra_leaf_edge_fraction(
        self, cache: object, tree: str, budget: int, method: str
    ) -> float:
        return self.found["intra_edges"]

    track_intra_leaf_edge_fraction.unit = "of edges"  # type: ignore[attr-defined]


def table() -> str:
    """The markdown table of every tree, budget and method."""
    rows = ["| tree | budget | method | leaves | x ideal | fill | over budget | intra-leaf edges |"]
    rows.append("|---|---:|---|---:|---:|---:|---:|---:|")
    for tree in TREES:
        try:
            files, graph = load(tree)
        except NotImplementedError:
            continue
        for budget in BUDGETS:
            for method in METHODS:
                m = measure(files, graph, leaves_of(method, files, graph, budget), budget)
                rows.append(
                    f"| {tree} ({len(files)} files, {graph.number_of_edges()} edges) | {budget} "
                    f"| {method} | {m['leaves']} | {m['over_ideal']:.2f} | {m['fill']:.2f} "
                    f"| {m['over_budget']} | {m['intra_edges']:.2f} |"
                )
    return "\n".join(rows)


if __name__ == "__main__":
    print(table())
