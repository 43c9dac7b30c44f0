"""Strategies that split one node of a plan into groups, and the packing of those groups.

A node over the budget is split in three steps:

1. **Group** its files, with the first grouping that yields at least two groups:
   :func:`directory_groups` (the next path component below the node's common directory;
   files directly in it form one group, ``dir/*``), :func:`import_groups` (Louvain
   communities of the dependency graph among the node's files, fixed seed), then
   :func:`prefix_groups` (file-name prefixes, for a flat directory with no graph).
2. **Pack** the groups that fit the budget into as few clusters as the budget allows
   (:func:`pack`): groups are taken in path order and each goes to the open cluster it
   has the most dependency edges with, else the first open cluster it fits in, else a
   new one. Groups over the budget stay whole and are split again one level down.
3. When no grouping yields two groups, or the next level is the last one allowed,
   :func:`fill_chunks` cuts the files in path order into chunks that each fit: the last
   resort, which never gives up. A single file over the budget becomes a chunk alone.

Notes:
    A node's files are held as *runs*: sorted, disjoint ``(start, stop)`` ranges of
    indices into the input sorted with :func:`~subplan._model.path_sort_key`. In that
    order every directory's files are one contiguous run, so a directory split finds each
    subdirectory's run by bisection: O(groups x log files) per node, not O(files). Token
    sums come from a prefix-sum array, O(1) per run.
"""

from __future__ import annotations

import re
from bisect import bisect_left
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from .._model import PlanConfig

__all__ = [
    "Cluster",
    "Graph",
    "Group",
    "Runs",
    "Sorted",
    "common_depth",
    "common_dir",
    "directory_groups",
    "fill_chunks",
    "group_of",
    "import_groups",
    "indices",
    "pack",
    "prefix_groups",
    "runs_of",
]

Runs = list[tuple[int, int]]
"""Sorted, disjoint, non-empty ``(start, stop)`` index ranges."""


@dataclass(frozen=True, slots=True)
class Sorted:
    """The input, sorted once: paths, their sort keys, tokens and token prefix sums."""

    paths: tuple[str, ...]
    keys: tuple[str, ...]
    tokens: tuple[int, ...]
    cumulative: tuple[int, ...]  # cumulative[i] = sum(tokens[:i])

    def parts(self, i: int) -> list[str]:
        """The components of path ``i`` (split on demand: only group starts need them)."""
        return self.paths[i].split("/")

    def tokens_of(self, runs: Runs) -> int:
        """Total tokens of ``runs``."""
        cum = self.cumulative
        return sum(cum[b] - cum[a] for a, b in runs)


@dataclass(frozen=True, slots=True)
class Graph:
    """An undirected dependency graph over input indices.

    Attributes:
        neighbours: per index with at least one edge, its neighbours (sorted, unique).
        linked: the indices that have neighbours, sorted (for bisection by run).
    """

    neighbours: dict[int, tuple[int, ...]]
    linked: tuple[int, ...]

    def linked_in(self, runs: Runs) -> Iterator[int]:
        """The linked indices inside ``runs``, in order."""
        linked = self.linked
        for a, b in runs:
            lo = bisect_left(linked, a)
            hi = bisect_left(linked, b, lo)
            yield from linked[lo:hi]


@dataclass(slots=True)
class Group:
    """Files that belong together (a directory, a community, a prefix), before packing."""

    runs: Runs
    label: str
    count: int
    tokens: int
    loose: bool = False  # the files directly in the node's directory


@dataclass(frozen=True, slots=True)
class Cluster:
    """The files of one child (as runs) and the child's label."""

    runs: Runs
    label: str
    # Groups carried into this child to fill its leaves, and the child's own runs.
    carried: tuple[Group, ...] = ()
    own: Runs | None = None

    @property
    def size(self) -> int:
        """Number of files."""
        return sum(stop - start for start, stop in self.runs)


_SHOWN_NAMES = 3
# How many of the most recent open clusters a group may join without a dependency tie:
# a bounded window keeps packing linear and keeps neighbouring directories together.
_OPEN_WINDOW = 16


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
    flat = sorted(r for group in runs for r in group)
    out: Runs = []
    for a, b in flat:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _count(runs: Runs) -> int:
    return sum(b - a for a, b in runs)


def group_of(data: Sorted, runs: Runs, label: str) -> Group:
    """A :class:`Group` with its counts."""
    return Group(runs, label, _count(runs), data.tokens_of(runs))


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


def _relative(label: str, prefix: str) -> str:
    if prefix == ".":
        return label
    return label[len(prefix) + 1 :] if label.startswith((prefix + "/", prefix + " ")) else label


def _shown(names: list[str]) -> str:
    return ",".join(names[:_SHOWN_NAMES]) + (",..." if len(names) > _SHOWN_NAMES else "")


def directory_groups(data: Sorted, runs: Runs) -> list[Group]:
    """Group by the next path component below the node's common directory.

    Files directly in the common directory form one group (labelled ``dir/*``); each
    subdirectory forms one group. Each subdirectory is one contiguous run in sorted
    order, found by bisection. Groups come back in path order of their first file.
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
    out: list[Group] = []
    for name, found in groups.items():
        made = group_of(data, found, _join(prefix, "*" if name is None else name))
        made.loose = name is None
        out.append(made)
    out.sort(key=lambda g: g.runs[0][0])
    return out


def import_groups(data: Sorted, runs: Runs, graph: Graph | None, seed: int) -> list[Group]:
    """Group by Louvain communities of the dependency graph among the node's files.

    Only edges between the node's own files count; files with no such edge form one
    group. A node with no edge inside it yields no groups.
    """
    if graph is None:
        return []
    inside = set(graph.linked_in(runs))
    edges: list[tuple[int, int]] = []
    for i in sorted(inside):
        edges.extend((i, j) for j in graph.neighbours[i] if j > i and j in inside)
    if not edges:
        return []
    import networkx as nx

    # Build the graph in sorted order: Louvain's result depends on insertion order.
    sub = nx.Graph()
    connected = sorted({i for edge in edges for i in edge})
    sub.add_nodes_from(connected)
    sub.add_edges_from(edges)
    communities = [sorted(c) for c in nx.community.louvain_communities(sub, seed=seed)]
    linked = set(connected)
    loose = [i for i in indices(runs) if i not in linked]
    if loose:
        communities.append(loose)
    if len(communities) < 2:
        return []
    communities.sort(key=lambda g: g[0])
    prefix = common_dir(data, runs)
    total = len(communities)
    return [
        group_of(data, runs_of(c), f"{prefix} [imports {n}/{total}]")
        for n, c in enumerate(communities, start=1)
    ]


_PREFIX_RE = re.compile(r"[^_.\-]+")


def prefix_groups(data: Sorted, runs: Runs) -> list[Group]:
    """Group the files of a flat directory by the first word of their names.

    ``test_api.py`` and ``test_cli.py`` share the prefix ``test``; a word ends at ``_``,
    ``-`` or ``.``. Files with one prefix are contiguous in path order. No groups when
    every file has the same prefix.
    """
    named: list[tuple[str, Runs]] = []
    for i in indices(runs):
        name = data.paths[i].rsplit("/", 1)[-1]
        found = _PREFIX_RE.match(name)
        word = found.group(0) if found else name
        if named and named[-1][0] == word and named[-1][1][-1][1] == i:
            last = named[-1][1]
            last[-1] = (last[-1][0], i + 1)
        elif named and named[-1][0] == word:
            named[-1][1].append((i, i + 1))
        else:
            named.append((word, [(i, i + 1)]))
    if len(named) < 2 or all(r == [(r[0][0], r[0][0] + 1)] for _, r in named):
        return []  # one prefix, or one file per prefix: nothing groups
    prefix = common_dir(data, runs)
    return [group_of(data, r, _join(prefix, word + "*")) for word, r in named]


def fill_chunks(
    data: Sorted,
    runs: Runs,
    cfg: PlanConfig,
    *,
    order: Sequence[int] | None = None,
    kind: str = "chunk",
) -> list[Cluster]:
    """Cut ``runs`` in path order into chunks that each fit the budget: the last resort.

    A greedy pass (a chunk takes files until the next would break the token or file
    budget; a file over the token budget is a chunk alone) finds the fewest chunks; the
    same number of chunks balanced by tokens is used instead when each of those fits, so
    the last chunk is not a sliver. Never gives up: every chunk of two or more files fits.

    Args:
        data: the sorted input.
        runs: the files to cut.
        cfg: the budget.
        order: the files of ``runs`` in the order to cut them (default: path order);
            import communities one after the other keep each community together.
        kind: the word in the chunks' labels (``dir [chunk 2/5]``).
    """
    sequence = list(indices(runs)) if order is None else list(order)
    chunks = _greedy(data, sequence, cfg)
    balanced = _balanced(data, sequence, len(chunks), cfg)
    if balanced is not None:
        chunks = balanced
    prefix = common_dir(data, runs)
    total = len(chunks)
    return [
        Cluster(
            runs_of(sorted(chunk)),
            data.paths[chunk[0]] if len(chunk) == 1 else f"{prefix} [{kind} {n}/{total}]",
        )
        for n, chunk in enumerate(chunks, start=1)
    ]


def _balanced(
    data: Sorted, order: list[int], count: int, cfg: PlanConfig
) -> list[list[int]] | None:
    """``order`` cut into ``count`` contiguous chunks of nearly equal weight, if all fit."""
    if count < 2:
        return None
    by_tokens = cfg.max_tokens is not None
    tokens = data.tokens
    # Zero-token files still weigh a little, so they spread instead of piling up.
    weights = [tokens[i] + 1e-6 if by_tokens else 1.0 for i in order]
    total = sum(weights) or 1.0
    chunks: list[list[int]] = [[] for _ in range(count)]
    before = 0.0
    for i, weight in zip(order, weights, strict=True):
        # An item goes to the chunk that holds the middle of its weight.
        chunks[min(count - 1, int((before + weight / 2) * count / total))].append(i)
        before += weight
    out = [c for c in chunks if c]
    for chunk in out:
        if len(chunk) > 1 and not cfg.fits_budget(len(chunk), sum(tokens[i] for i in chunk)):
            return None
    return out


def _greedy(data: Sorted, order: list[int], cfg: PlanConfig) -> list[list[int]]:
    max_files, max_tokens = cfg.max_files, cfg.max_tokens
    tokens = data.tokens
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i in order:
        t = tokens[i]
        if current and (
            (max_files is not None and len(current) >= max_files)
            or (max_tokens is not None and size + t > max_tokens)
        ):
            chunks.append(current)
            current, size = [], 0
        current.append(i)
        size += t
    if current:
        chunks.append(current)
    return chunks


def pack(
    data: Sorted,
    groups: Sequence[Group],
    cfg: PlanConfig,
    graph: Graph | None,
    prefix: str,
) -> list[Cluster]:
    """Pack groups that fit the budget into as few clusters as fit, by tokens.

    First, groups tied by dependency edges are merged, the most edges first, while the
    merged cluster fits. Then the clusters are taken in path order and each joins the
    first of the most recent open clusters it fits in, else starts a new one. Ties go to
    the earlier group, so the result depends only on the groups. A cluster of one group
    keeps that group's label; a merged one is labelled ``prefix/{a,b,...}``.

    Args:
        data: the sorted input.
        groups: the groups, each within the budget, in path order of their first file.
        cfg: the budget.
        graph: the dependency graph, or ``None``.
        prefix: the common directory of the node, for labels.

    Returns:
        The clusters, ordered by first file.

    Notes:
        O(groups x window + E log E) for the E edges of the groups' files.
    """
    n = len(groups)
    root = list(range(n))
    counts = [g.count for g in groups]
    tokens = [g.tokens for g in groups]

    def find(x: int) -> int:
        while root[x] != x:
            root[x] = root[root[x]]
            x = root[x]
        return x

    if graph is not None and n > 1:
        owner: dict[int, int] = {}
        for k, group in enumerate(groups):
            for i in graph.linked_in(group.runs):
                owner[i] = k
        ties: dict[tuple[int, int], int] = {}
        for i, k in owner.items():
            for j in graph.neighbours[i]:
                m = owner.get(j)
                if m is not None and m > k:
                    ties[(k, m)] = ties.get((k, m), 0) + 1
        for (k, m), _ in sorted(ties.items(), key=lambda item: (-item[1], item[0])):
            a, b = find(k), find(m)
            if a != b and cfg.fits_budget(counts[a] + counts[b], tokens[a] + tokens[b]):
                a, b = min(a, b), max(a, b)
                root[b] = a
                counts[a] += counts[b]
                tokens[a] += tokens[b]
    members: list[list[int]] = []
    bin_counts: list[int] = []
    bin_tokens: list[int] = []
    open_ids: list[int] = []
    for k in range(n):
        if find(k) != k:
            continue
        chosen = -1
        for c in open_ids:
            if cfg.fits_budget(bin_counts[c] + counts[k], bin_tokens[c] + tokens[k]):
                chosen = c
                break
        if chosen < 0:
            chosen = len(members)
            members.append([])
            bin_counts.append(0)
            bin_tokens.append(0)
            open_ids.append(chosen)
            if len(open_ids) > _OPEN_WINDOW:
                open_ids.pop(0)
        members[chosen].append(k)
        bin_counts[chosen] += counts[k]
        bin_tokens[chosen] += tokens[k]
    # Each merged group set goes where its representative went.
    bin_of = {k: c for c, ks in enumerate(members) for k in ks}
    packed: list[list[Group]] = [[] for _ in members]
    for k, group in enumerate(groups):
        packed[bin_of[find(k)]].append(group)
    clusters: list[Cluster] = []
    for chosen_groups in packed:
        if len(chosen_groups) == 1:
            clusters.append(Cluster(chosen_groups[0].runs, chosen_groups[0].label))
            continue
        names = [_relative(g.label, prefix) for g in chosen_groups]
        clusters.append(
            Cluster(
                _merge([g.runs for g in chosen_groups]), _join(prefix, "{" + _shown(names) + "}")
            )
        )
    clusters.sort(key=lambda c: c.runs[0][0])
    return clusters
