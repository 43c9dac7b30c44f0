"""Strategies that split one node of a plan into clusters.

A strategy takes the sorted input and one node's files and returns clusters that
partition them. A strategy that cannot split returns one cluster or none; the builder
then tries the next one. The order is:

1. :func:`directory_clusters` — by the next path component below the node's common
   directory; files directly in that directory form one cluster (labelled ``dir/*``).
2. :func:`import_clusters` — Louvain communities of the import graph among the node's
   files (fixed seed); files with no import edge inside the node form one cluster.
3. :func:`chunk_clusters` — only when a budget is set and exceeded: balanced contiguous
   chunks in path order, each within the budget.

Clusters smaller than ``min_files`` are packed together (in path order) instead of
becoming many tiny leaves; see :func:`pack`.

Notes:
    A node's files are held as *runs*: sorted, disjoint ``(start, stop)`` ranges of
    indices into the input sorted with :func:`~subplan._model.path_sort_key`. In that
    order every directory's files are one contiguous run, so a directory split finds each
    subdirectory's run by bisection: O(groups x log files) per node, not O(files).
"""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._model import PlanConfig

if TYPE_CHECKING:
    import networkx as nx

__all__ = [
    "Cluster",
    "Runs",
    "Sorted",
    "Strategy",
    "chunk_clusters",
    "common_dir",
    "directory_clusters",
    "import_clusters",
    "indices",
    "pack",
    "runs_of",
]

Runs = list[tuple[int, int]]
"""Sorted, disjoint, non-empty ``(start, stop)`` index ranges."""


@dataclass(frozen=True, slots=True)
class Sorted:
    """The input, sorted once: paths, their sort keys and their tokens."""

    paths: tuple[str, ...]
    keys: tuple[str, ...]
    tokens: tuple[int, ...]

    def parts(self, i: int) -> list[str]:
        """The components of path ``i`` (split on demand: only group starts need them)."""
        return self.paths[i].split("/")


@dataclass(frozen=True, slots=True)
class Cluster:
    """The files of one child (as runs) and the child's label."""

    runs: Runs
    label: str

    @property
    def size(self) -> int:
        """Number of files."""
        return sum(stop - start for start, stop in self.runs)


Strategy = Callable[[Sorted, Runs, int, PlanConfig], list[Cluster]]
"""``(input, node runs, node tokens, config) -> clusters``."""

_SHOWN_NAMES = 3


def indices(runs: Runs) -> Iterator[int]:
    """Every index of ``runs``, in order."""
    for start, stop in runs:
        yield from range(start, stop)


def runs_of(sorted_indices: Sequence[int]) -> Runs:
    """Compress sorted, unique indices into runs."""
    out: Runs = []
    for i in sorted_indices:
        if out and out[-1][1] == i:
            out[-1] = (out[-1][0], i + 1)
        else:
            out.append((i, i + 1))
    return out


def _merge(runs: Sequence[Runs]) -> Runs:
    return runs_of(sorted(indices([r for group in runs for r in group])))


def common_depth(data: Sorted, runs: Runs) -> int:
    """How many directory components every file of ``runs`` shares."""
    # In sorted order the common prefix of the first and last paths is everyone's.
    first, last = data.parts(runs[0][0]), data.parts(runs[-1][1] - 1)
    limit = min(len(first), len(last)) - 1
    depth = 0
    while depth < limit and first[depth] == last[depth]:
        depth += 1
    return depth


def common_dir(data: Sorted, runs: Runs) -> str:
    """The deepest directory holding every file of ``runs`` (``.`` for the top)."""
    return "/".join(data.parts(runs[0][0])[: common_depth(data, runs)]) or "."


def _join(prefix: str, name: str) -> str:
    return name if prefix == "." else f"{prefix}/{name}"


def _shown(names: list[str]) -> str:
    return ",".join(names[:_SHOWN_NAMES]) + (",..." if len(names) > _SHOWN_NAMES else "")


def pack(
    groups: Sequence[tuple[Runs, str]],
    min_files: int,
    merged_label: Callable[[list[str]], str],
) -> list[Cluster]:
    """Turn labelled groups into clusters, packing groups under ``min_files`` together.

    Groups with at least ``min_files`` files stay as they are. Smaller ones are packed in
    order into packs of at least ``min_files`` files; a last pack that stays too small
    joins the pack before it. A lone small group with no other small group to join stays
    on its own: merging it into a big sibling would make that sibling unsplittable by
    directory. Clusters come back ordered by their first file.

    Args:
        groups: ``(runs, label)`` per group, in path order of their first file.
        min_files: the leaf threshold.
        merged_label: the label of a pack, from the labels of its groups.

    Returns:
        The clusters, ordered by first file.
    """
    clusters: list[Cluster] = []
    packs: list[list[tuple[Runs, str]]] = []
    current: list[tuple[Runs, str]] = []
    size = 0
    for runs, label in groups:
        count = sum(stop - start for start, stop in runs)
        if count >= min_files:
            clusters.append(Cluster(runs, label))
            continue
        current.append((runs, label))
        size += count
        if size >= min_files:
            packs.append(current)
            current, size = [], 0
    if current:
        if packs:
            packs[-1].extend(current)
        else:
            packs.append(current)
    for members in packs:
        if len(members) == 1:
            clusters.append(Cluster(*members[0]))
        else:
            merged = _merge([runs for runs, _ in members])
            clusters.append(Cluster(merged, merged_label([label for _, label in members])))
    clusters.sort(key=lambda c: c.runs[0][0])
    return clusters


def directory_clusters(
    data: Sorted, runs: Runs, node_tokens: int, cfg: PlanConfig
) -> list[Cluster]:
    """Split by the next path component below the node's common directory.

    Files directly in the common directory form one group (labelled ``dir/*``); each
    subdirectory forms one group. Each subdirectory is one contiguous run in sorted
    order, found by bisection.
    """
    depth = common_depth(data, runs)
    prefix = "/".join(data.parts(runs[0][0])[:depth]) or "."
    keys, paths = data.keys, data.paths
    groups: dict[str | None, Runs] = {}
    for start, stop in runs:
        i = start
        while i < stop:
            components = paths[i].split("/")
            if len(components) - 1 > depth:
                name: str | None = components[depth]
                # Every key below directory X starts with X + NUL and sorts before X + \x01.
                bound = "\x00".join(components[: depth + 1]) + "\x01"
                end = bisect_left(keys, bound, i, stop)
            else:
                name, end = None, i + 1
            group = groups.setdefault(name, [])
            if group and group[-1][1] == i:
                group[-1] = (group[-1][0], end)
            else:
                group.append((i, end))
            i = end
    if len(groups) < 2:
        return []
    named = [(g, _join(prefix, "*" if name is None else name)) for name, g in groups.items()]
    named.sort(key=lambda item: item[0][0][0])

    def merged_label(labels: list[str]) -> str:
        return _join(prefix, "{" + _shown([label.rsplit("/", 1)[-1] for label in labels]) + "}")

    return pack(named, cfg.min_files, merged_label)


def import_clusters(graph: nx.DiGraph) -> Strategy:
    """A strategy that splits by Louvain communities of ``graph`` (seeded by ``cfg.seed``).

    Edges are taken undirected. Only edges between the node's own files count; files with
    no such edge form one group. A node with no import edge inside it is not split.
    """
    import networkx as nx

    def strategy(data: Sorted, runs: Runs, node_tokens: int, cfg: PlanConfig) -> list[Cluster]:
        position = {data.paths[i]: i for i in indices(runs) if data.paths[i] in graph}
        edges: set[tuple[int, int]] = set()
        for path, i in position.items():
            for neighbour in (*graph.successors(path), *graph.predecessors(path)):
                j = position.get(neighbour)
                if j is not None and j != i:
                    edges.add((min(i, j), max(i, j)))
        if not edges:
            return []
        # Build the graph in sorted order: Louvain's result depends on insertion order.
        sub = nx.Graph()
        connected = sorted({i for edge in edges for i in edge})
        sub.add_nodes_from(connected)
        sub.add_edges_from(sorted(edges))
        communities = nx.community.louvain_communities(sub, seed=cfg.seed)
        linked = set(connected)
        groups = [sorted(c) for c in communities]
        loose = [i for i in indices(runs) if i not in linked]
        if loose:
            groups.append(loose)
        groups.sort(key=lambda g: g[0])
        count = len(groups)
        named = [(runs_of(g), str(n)) for n, g in enumerate(groups, start=1)]
        prefix = common_dir(data, runs)
        clusters = pack(named, cfg.min_files, "+".join)
        return [Cluster(c.runs, f"{prefix} [imports {c.label}/{count}]") for c in clusters]

    return strategy


def _cut(weights: Sequence[float], count: int) -> list[int]:
    """Chunk number of each item: contiguous, balanced by weight, at most ``count`` chunks."""
    total = sum(weights) or 1.0
    out: list[int] = []
    before = 0.0
    for weight in weights:
        # An item goes to the chunk that holds the middle of its weight.
        out.append(min(count - 1, int((before + weight / 2) * count / total)))
        before += weight
    return out


def chunk_clusters(data: Sorted, runs: Runs, node_tokens: int, cfg: PlanConfig) -> list[Cluster]:
    """Cut the node into balanced contiguous chunks in path order, each within the budget.

    The chunk count starts at the fewest that could fit (at least two). Files are cut by
    weight (tokens when ``max_tokens`` is set, else one per file) into that many nearly
    equal contiguous chunks; while some chunk of two or more files still exceeds the
    budget, one more chunk is tried. A single file over the token budget ends up alone.
    Only used when a budget is set and the node exceeds it.
    """
    order = list(indices(runs))
    count = len(order)
    if not cfg.has_budget or cfg.fits_budget(count, node_tokens) or count < 2:
        return []
    want = 2
    if cfg.max_files is not None:
        want = max(want, math.ceil(count / cfg.max_files))
    if cfg.max_tokens is not None:
        want = max(want, math.ceil(node_tokens / cfg.max_tokens))
    # Zero-token files still weigh a little, so they spread instead of piling up.
    by_tokens = cfg.max_tokens is not None
    weights = [data.tokens[i] + 1e-6 if by_tokens else 1.0 for i in order]
    while True:
        want = min(want, count)
        chunks: list[list[int]] = [[] for _ in range(want)]
        for i, chunk in zip(order, _cut(weights, want), strict=True):
            chunks[chunk].append(i)
        chunks = [c for c in chunks if c]
        fits = all(
            len(c) == 1 or cfg.fits_budget(len(c), sum(data.tokens[i] for i in c)) for c in chunks
        )
        if fits or want == count:
            break
        want += 1
    prefix = common_dir(data, runs)
    total = len(chunks)
    return [
        Cluster(runs_of(chunk), f"{prefix} [chunk {n}/{total}]")
        for n, chunk in enumerate(chunks, start=1)
    ]
