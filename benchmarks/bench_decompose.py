"""ASV benchmarks of decomposition: synthetic layouts, plan quality beside a naive
directory split, and a real tree beside os.walk."""

from __future__ import annotations

import math
import os
import random
import sysconfig
import time
from collections.abc import Callable, Sequence

import networkx as nx

from subplan import FileEntry, Plan, decompose, scan

LAYOUTS = ("deep", "wide", "flat")
SIZES = (1_000, 10_000, 100_000)


def deep(n: int) -> list[str]:
    """Directories 4 wide, 8 files each, filled breadth-first until ``n`` files."""
    out: list[str] = []
    queue = [""]
    while len(out) < n:
        directory = queue.pop(0)
        out.extend(f"{directory}f{i}.c" for i in range(min(8, n - len(out))))
        queue.extend(f"{directory}d{b}/" for b in range(4))
    return out


def wide(n: int) -> list[str]:
    """One level of packages with 50 modules each."""
    return [f"pkg{i // 50:05d}/mod{i % 50}.py" for i in range(n)]


def flat(n: int) -> list[str]:
    """Everything in one directory."""
    return [f"file{i:06d}.txt" for i in range(n)]


MAKERS: dict[str, Callable[[int], list[str]]] = {"deep": deep, "wide": wide, "flat": flat}


def sized(paths: Sequence[str], seed: int = 0) -> list[FileEntry]:
    """The paths as files of 200 B to 16 KB (50 to 4,000 tokens), seeded, shuffled."""
    rnd = random.Random(seed)
    files = [FileEntry(p, rnd.randint(200, 16_000)) for p in paths]
    rnd.shuffle(files)
    return files


def synthetic_graph(paths: Sequence[str], seed: int = 0) -> nx.DiGraph:
    """Two imports per file: 80% to a neighbour in path order (its own directory, mostly),
    20% anywhere."""
    rnd = random.Random(seed)
    ordered = sorted(paths)
    graph = nx.DiGraph()
    graph.add_nodes_from(ordered)
    for i, path in enumerate(ordered):
        for step in (1, 7):
            j = (i + step) % len(ordered) if rnd.random() < 0.8 else rnd.randrange(len(ordered))
            if j != i:
                graph.add_edge(path, ordered[j])
    return graph


class DecomposeSuite:
    """Decomposition of synthetic trees: bare paths, and files with sizes (default budget)."""

    params = (SIZES, LAYOUTS, ("paths", "sized"))
    param_names = ("files", "layout", "input")
    timeout = 300

    def setup_cache(self) -> dict[tuple[int, str, str], list[str] | list[FileEntry]]:
        cache: dict[tuple[int, str, str], list[str] | list[FileEntry]] = {}
        for n in SIZES:
            for layout in LAYOUTS:
                paths = MAKERS[layout](n)
                cache[(n, layout, "sized")] = sized(paths)
                random.Random(0).shuffle(paths)
                cache[(n, layout, "paths")] = paths
        return cache

    def setup(
        self,
        cache: dict[tuple[int, str, str], list[str] | list[FileEntry]],
        n: int,
        layout: str,
        kind: str,
    ) -> None:
        self.paths = cache[(n, layout, kind)]
        self.plan: Plan = decompose(self.paths)

    def time_decompose(self, cache: object, n: int, layout: str, kind: str) -> None:
        decompose(self.paths)

    def peakmem_decompose(self, cache: object, n: int, layout: str, kind: str) -> None:
        decompose(self.paths)

    def track_depth(self, cache: object, n: int, layout: str, kind: str) -> int:
        return self.plan.depth

    track_depth.unit = "levels"  # type: ignore[attr-defined]

    def track_leaves(self, cache: object, n: int, layout: str, kind: str) -> int:
        return len(self.plan.leaves)

    track_leaves.unit = "leaves"  # type: ignore[attr-defined]


class GraphDecomposeSuite:
    """Decomposition of 100k sized files with a dependency graph (target: <= 1 s)."""

    params = (LAYOUTS,)
    param_names = ("layout",)
    timeout = 300

    def setup_cache(self) -> dict[str, tuple[list[FileEntry], nx.DiGraph]]:
        cache = {}
        for layout in LAYOUTS:
            paths = MAKERS[layout](100_000)
            cache[layout] = (sized(paths), synthetic_graph(paths))
        return cache

    def setup(self, cache: dict[str, tuple[list[FileEntry], nx.DiGraph]], layout: str) -> None:
        self.files, self.graph = cache[layout]

    def time_decompose_with_graph(self, cache: object, layout: str) -> None:
        decompose(self.files, import_graph=self.graph)

    def time_decompose_without_graph(self, cache: object, layout: str) -> None:
        decompose(self.files)


def naive_leaves(files: Sequence[FileEntry], budget: int) -> list[list[str]]:
    """A naive directory split: by directory until a node fits, flat directories cut in
    path order; no packing, no graph."""
    tokens = {f.path: f.tokens for f in files}
    out: list[list[str]] = []
    stack: list[tuple[list[str], int]] = [(sorted(tokens), 0)]
    while stack:
        paths, depth = stack.pop()
        if sum(tokens[p] for p in paths) <= budget or len(paths) == 1:
            out.append(paths)
            continue
        groups: dict[str, list[str]] = {}
        for path in paths:
            parts = path.split("/")
            groups.setdefault(parts[depth] if len(parts) - 1 > depth else "", []).append(path)
        if len(groups) > 1 or "" not in groups:
            stack.extend((g, depth + 1) for g in groups.values())
            continue
        chunk: list[str] = []
        size = 0
        for path in paths:
            if chunk and size + tokens[path] > budget:
                out.append(chunk)
                chunk, size = [], 0
            chunk.append(path)
            size += tokens[path]
        out.append(chunk)
    return out


QUALITY_BUDGET = 50_000


class PlanQualitySuite:
    """Leaves, fill, over-budget leaves and intra-leaf edge fraction of subplan's plans
    beside a naive directory split at the same budget (10k sized files with a graph)."""

    params = (LAYOUTS, ("subplan", "naive"))
    param_names = ("layout", "method")
    timeout = 300

    def setup_cache(self) -> dict[str, tuple[list[FileEntry], nx.DiGraph]]:
        cache = {}
        for layout in LAYOUTS:
            paths = MAKERS[layout](10_000)
            cache[layout] = (sized(paths), synthetic_graph(paths))
        return cache

    def setup(
        self, cache: dict[str, tuple[list[FileEntry], nx.DiGraph]], layout: str, method: str
    ) -> None:
        files, self.graph = cache[layout]
        self.total = sum(f.tokens for f in files)
        if method == "subplan":
            plan = decompose(files, max_tokens=QUALITY_BUDGET, import_graph=self.graph)
            self.leaves = [list(leaf.files) for leaf in plan.leaves]
        else:
            self.leaves = naive_leaves(files, QUALITY_BUDGET)
        self.tokens = {f.path: f.tokens for f in files}

    def _sizes(self) -> list[int]:
        return [sum(self.tokens[p] for p in leaf) for leaf in self.leaves]

    def track_leaves(self, cache: object, layout: str, method: str) -> int:
        return len(self.leaves)

    track_leaves.unit = "leaves"  # type: ignore[attr-defined]

    def track_leaves_over_ideal(self, cache: object, layout: str, method: str) -> float:
        """Leaves as a multiple of ceil(tokens / budget), the fewest that could hold them."""
        return len(self.leaves) / math.ceil(self.total / QUALITY_BUDGET)

    track_leaves_over_ideal.unit = "x ideal"  # type: ignore[attr-defined]

    def track_fill(self, cache: object, layout: str, method: str) -> float:
        return sum(self._sizes()) / len(self.leaves) / QUALITY_BUDGET

    track_fill.unit = "of budget"  # type: ignore[attr-defined]

    def track_over_budget(self, cache: object, layout: str, method: str) -> int:
        return sum(
            1
            for leaf, size in zip(self.leaves, self._sizes(), strict=True)
            if len(leaf) > 1 and size > QUALITY_BUDGET
        )

    track_over_budget.unit = "leaves"  # type: ignore[attr-defined]

    def track_intra_leaf_edge_fraction(self, cache: object, layout: str, method: str) -> float:
        leaf_of = {p: n for n, leaf in enumerate(self.leaves) for p in leaf}
        edges = list(self.graph.edges)
        return sum(1 for a, b in edges if leaf_of[a] == leaf_of[b]) / len(edges)

    track_intra_leaf_edge_fraction.unit = "of edges"  # type: ignore[attr-defined]


def _best_of(runs: int, func: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def _walk(root: str) -> int:
    count = 0
    for _, _, files in os.walk(root):
        count += len(files)
    return count


class RealTreeSuite:
    """A real tree (this Python's standard library) end to end, beside a bare os.walk."""

    timeout = 300

    def setup(self) -> None:
        self.root = sysconfig.get_paths()["stdlib"]

    def time_os_walk(self) -> None:
        _walk(self.root)

    def time_scan(self) -> None:
        scan(self.root)

    def time_plan_from_paths(self) -> None:
        decompose(scan(self.root).files)

    def track_plan_over_os_walk(self) -> float:
        """End-to-end plan (listing + stat + decomposition) as a multiple of os.walk."""
        walk = _best_of(3, lambda: _walk(self.root))
        plan = _best_of(3, lambda: decompose(scan(self.root).files))
        return plan / walk

    track_plan_over_os_walk.unit = "x os.walk"  # type: ignore[attr-defined]
