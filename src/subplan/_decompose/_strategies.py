"""Strategies that split one node of a plan into groups, and the packing of those groups.

A node over the budget is split in three steps:

1. **Group** its files, with the first grouping that yields at least two groups:
   :func:`directory_groups` (the next path component below the node's common directory;
   files directly in it form one group, ``dir/*``); in a flat directory,
   :func:`graph_chunks` (fitting chunks grown along the dependency graph), then
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

import heapq
import itertools
import re
from bisect import bisect_left, bisect_right
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
    "graph_chunks",
    "group_of",
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
    slashes: tuple[int, ...]  # "/" in each path: its number of directories

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
    slashes = data.slashes
    if all(max(slashes[a:b]) == depth for a, b in runs):
        return []  # every file is directly in the common directory: one group
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


def graph_chunks(data: Sorted, runs: Runs, graph: Graph | None, cfg: PlanConfig) -> list[Cluster]:
    """Cut a flat set of files into fitting chunks grown along the dependency graph.

    Each chunk starts at the first file (in path order) not yet taken and grows by the
    file with the most edges into the chunk (ties: path order) while it fits the budget;
    when no linked file fits, it takes the next files in path order. So files that
    import each other land together, and every chunk of two or more files fits. No
    chunks when the node has no edge inside it.

    Notes:
        O((files + edges) log edges); deterministic, no randomness.
    """
    if graph is None:
        return []
    inside = set(graph.linked_in(runs))
    neighbours = graph.neighbours
    if not any(j in inside for i in inside for j in neighbours[i]):
        return []
    members = list(indices(runs))
    tokens, max_files, max_tokens = data.tokens, cfg.max_files, cfg.max_tokens
    taken: set[int] = set()

    def half_full(count: int, size: int) -> bool:
        return (max_tokens is not None and 2 * size >= max_tokens) or (
            max_files is not None and 2 * count >= max_files
        )

    def pulled_away(i: int, into_chunk: int) -> bool:
        if i not in inside:
            return False
        elsewhere = sum(1 for j in neighbours[i] if j in inside and j not in taken)
        return elsewhere > into_chunk

    chunks: list[list[int]] = []
    pos = 0
    while True:
        while pos < len(members) and members[pos] in taken:
            pos += 1
        if pos >= len(members):
            break
        seed = members[pos]
        chunk, size = [seed], tokens[seed]
        taken.add(seed)
        gain: dict[int, int] = {}
        heap: list[tuple[int, int]] = []
        rejected: set[int] = set()
        scan = pos

        def grow(i: int, gain: dict[int, int] = gain, heap: list[tuple[int, int]] = heap) -> None:
            if i not in inside:
                return
            for j in neighbours[i]:
                if j in inside and j not in taken:
                    g = gain[j] = gain.get(j, 0) + 1
                    heapq.heappush(heap, (-g, j))

        grow(seed)
        while True:
            if max_files is not None and len(chunk) >= max_files:
                break
            pick = -1
            while heap:
                g, j = heapq.heappop(heap)
                if j in taken or j in rejected or -g != gain.get(j):
                    continue
                pick = j
                break
            from_path_order = pick < 0
            if from_path_order:
                # Nothing linked is left: the next untaken file in path order, if it fits.
                while scan < len(members) and members[scan] in taken:
                    scan += 1
                if scan >= len(members):
                    break
                pick = members[scan]
                if max_tokens is not None and size + tokens[pick] > max_tokens:
                    break
            elif max_tokens is not None and size + tokens[pick] > max_tokens:
                rejected.add(pick)
                continue
            if half_full(len(chunk), size) and pulled_away(pick, gain.get(pick, 0)):
                # A file more tied to files not yet placed than to this chunk starts
                # (or joins) another chunk instead: a half-full chunk may stop here.
                if from_path_order:
                    break
                rejected.add(pick)
                continue
            chunk.append(pick)
            size += tokens[pick]
            taken.add(pick)
            grow(pick)
        chunks.append(chunk)
    if len(chunks) < 2:
        return []
    prefix = common_dir(data, runs)
    total = len(chunks)
    return [
        Cluster(
            runs_of(sorted(chunk)),
            data.paths[chunk[0]] if len(chunk) == 1 else f"{prefix} [imports {n}/{total}]",
        )
        for n, chunk in enumerate(chunks, start=1)
    ]


_PREFIX_LINES_RE = re.compile(r"^[^_.\-\n]*", re.M)


def prefix_groups(data: Sorted, runs: Runs) -> list[Group]:
    """Group the files of a flat directory by the first word of their names.

    ``test_api.py`` and ``test_cli.py`` share the prefix ``test``; a word ends at ``_``,
    ``-`` or ``.``. Files with one prefix are contiguous in path order. No groups when
    every file has the same prefix.
    """
    order = list(indices(runs))
    paths = data.paths
    # Every file name's first word, found by one regex pass over all of them at C speed.
    names = "\n".join([paths[i].rpartition("/")[2] for i in order])
    words = _PREFIX_LINES_RE.findall(names)
    distinct = len(set(words))
    if distinct in (1, len(words)):
        return []  # one prefix, or one file per prefix: nothing groups
    named: list[tuple[str, Runs]] = []
    for word, group in itertools.groupby(zip(words, order, strict=True), key=lambda x: x[0]):
        named.append((word or "", runs_of([i for _, i in group])))
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
    prefix = common_dir(data, runs)
    if order is None and len(runs) == 1:
        spans = _contiguous_chunks(data, runs[0][0], runs[0][1], cfg)
        total = len(spans)
        return [
            Cluster([(a, b)], data.paths[a] if b - a == 1 else f"{prefix} [{kind} {n}/{total}]")
            for n, (a, b) in enumerate(spans, start=1)
        ]
    sequence = list(indices(runs)) if order is None else list(order)
    chunks = _greedy(data, sequence, cfg)
    balanced = _balanced(data, sequence, len(chunks), cfg)
    if balanced is not None:
        chunks = balanced
    total = len(chunks)
    return [
        Cluster(
            runs_of(sorted(chunk)),
            data.paths[chunk[0]] if len(chunk) == 1 else f"{prefix} [{kind} {n}/{total}]",
        )
        for n, chunk in enumerate(chunks, start=1)
    ]


def _contiguous_chunks(
    data: Sorted, start: int, stop: int, cfg: PlanConfig
) -> list[tuple[int, int]]:
    """:func:`fill_chunks` of one contiguous run, by bisection on the token prefix sums.

    The same cut as the general path: greedy for the count, then balanced by tokens
    (each file in the chunk holding the middle of its weight) when every chunk fits.
    O(chunks x log files) instead of O(files).
    """
    cum, max_files, max_tokens = data.cumulative, cfg.max_files, cfg.max_tokens
    greedy: list[tuple[int, int]] = []
    a = start
    while a < stop:
        b = stop
        if max_tokens is not None:
            b = max(a + 1, bisect_right(cum, cum[a] + max_tokens, a + 1, stop + 1) - 1)
        if max_files is not None:
            b = min(b, a + max_files)
        greedy.append((a, b))
        a = b
    count = len(greedy)
    if count < 2:
        return greedy
    total = cum[stop] - cum[start]
    spans: list[tuple[int, int]] = []
    first = start
    for j in range(1, count):
        if max_tokens is not None and total > 0:
            # First file whose middle, 2*cum[i] + t_i = cum[i] + cum[i+1], passes j/count.
            target = 2 * cum[start] + 2 * total * j / count
            cut = bisect_left(range(start, stop), target, key=lambda i: cum[i] + cum[i + 1])
            boundary = start + cut
        else:
            boundary = start + ((stop - start) * j * 2 + count) // (2 * count)
        boundary = max(first, min(stop, boundary))
        if boundary > first:
            spans.append((first, boundary))
            first = boundary
    spans.append((first, stop))
    spans = [(x, y) for x, y in spans if y > x]
    for x, y in spans:
        if y - x > 1 and not cfg.fits_budget(y - x, cum[y] - cum[x]):
            return greedy
    return spans


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
