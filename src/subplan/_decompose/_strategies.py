"""Strategies that split one node of a plan into groups, and the packing of those groups.

A node over the budget is split in three steps:

1. **Group** its files, with the first grouping that yields at least two groups:
   :func:`directory_groups` (the next path component below the node's common directory;
   files directly in it form one group, ``dir/*``); in a flat directory,
   :func:`graph_chunks` (fitting chunks grown along the dependency graph), then
   :func:`prefix_groups` (file-name prefixes, for a flat directory with no graph).
2. Without a graph, **cut** the groups at content-anchored points
   (:func:`anchored_spans`): in two, again and again until each part fits, before the
   group whose name hashes highest, so that one file's edit
   re-cuts only the leaf that holds it. With a graph, **pack** the groups that fit into
   as few clusters as the budget allows (:func:`pack`): tied groups merge first, then
   each joins the first open cluster it fits in. Groups over the budget stay whole and
   are split again one level down.
3. When no grouping yields two groups, or the next level is the last one allowed,
   :func:`fill_chunks` cuts the files at content-anchored points into chunks that each
   fit: the last resort, which never gives up. A single file over the budget becomes a
   chunk alone.

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
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Protocol
from zlib import crc32

from .._model import PlanConfig

__all__ = [
    "Cluster",
    "Graph",
    "Group",
    "Labelled",
    "Runs",
    "Sorted",
    "anchored_spans",
    "budget_bounds",
    "chunk_label",
    "cluster_of",
    "common_depth",
    "common_dir",
    "count_of",
    "directory_groups",
    "fill_chunks",
    "graph_chunks",
    "group_of",
    "indices",
    "merge_runs",
    "owners",
    "pack",
    "prefix_groups",
    "runs_of",
    "sub_runs",
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
        if len(runs) == 1:  # most nodes: one directory, one run
            a, b = runs[0]
            return cum[b] - cum[a]
        return sum([cum[b] - cum[a] for a, b in runs])


@dataclass(frozen=True, slots=True)
class Graph:
    """An undirected dependency graph over input indices.

    Attributes:
        neighbours: per index with at least one edge, its neighbours (a set: nothing
            depends on their order).
        linked: the indices that have neighbours, sorted (for bisection by run).
    """

    neighbours: dict[int, set[int]]
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
    key: str = ""  # what content-anchored cuts hash (default: the label)


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


def sub_runs(runs: Runs, start: int, stop: int) -> Runs:
    """The files ``start:stop`` of ``runs`` (positions counted across its runs), as runs."""
    if len(runs) == 1:  # most nodes: one directory, one run
        first = runs[0][0]
        return [(first + start, first + stop)]
    out: Runs = []
    pos = 0
    for a, b in runs:
        lo, hi = max(a, a + start - pos), min(b, a + stop - pos)
        if lo < hi:
            out.append((lo, hi))
        pos += b - a
        if pos >= stop:
            break
    return out


def owners(runs: Iterable[Runs], size: int) -> list[int]:
    """For each of ``size`` files, the position of the runs that hold it (0 for none),
    filled a run at a time (slice assignment, at C speed)."""
    owner = [0] * size
    for k, held in enumerate(runs):
        for a, b in held:
            owner[a:b] = [k] * (b - a)
    return owner


def merge_runs(runs: Sequence[Runs]) -> Runs:
    """The union of disjoint runs, as runs (adjacent ones joined)."""
    flat = sorted(r for group in runs for r in group)
    out: Runs = []
    for a, b in flat:
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def budget_bounds(cfg: PlanConfig, files: int, tokens: int) -> tuple[int, int]:
    """The budget as two plain bounds, on files and on tokens, for loops that test them
    often: a bound not set is one that nothing of ``files`` files and ``tokens`` tokens
    reaches, even doubled (so ``2 * size >= bound`` reads "at least half the budget")."""
    return (
        cfg.max_files if cfg.max_files is not None else 2 * files + 2,
        cfg.max_tokens if cfg.max_tokens is not None else 2 * tokens + 2,
    )


def count_of(runs: Runs) -> int:
    """Number of files in ``runs``."""
    if len(runs) == 1:
        return runs[0][1] - runs[0][0]
    return sum([b - a for a, b in runs])


def group_of(data: Sorted, runs: Runs, label: str) -> Group:
    """A :class:`Group` with its counts."""
    return Group(runs, label, count_of(runs), data.tokens_of(runs))


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
    # Each linked file's neighbours among the node's files (set operations at C speed;
    # a node that holds every linked file, as a flat root does, takes them as they are).
    if len(inside) == len(graph.linked):
        local = neighbours
    else:
        local = {i: neighbours[i] & inside for i in inside}
    if not any(local.values()):
        return []
    members = list(indices(runs))
    tokens = data.tokens
    # The budget's bounds, and the half of them a chunk must reach before it may stop
    # for a file pulled elsewhere, read once (no calls in the loop below: it runs for
    # every file and edge of the node).
    most_files, most_tokens = budget_bounds(cfg, len(members), data.cumulative[-1])
    half_files, half_tokens = -(-most_files // 2), -(-most_tokens // 2)
    taken: set[int] = set()
    push, pop, get_local = heapq.heappush, heapq.heappop, local.get
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
        grown = get_local(seed)
        while True:
            if grown:  # the last file taken: its untaken neighbours gain an edge
                for j in grown - taken:
                    g = gain[j] = gain.get(j, 0) + 1
                    push(heap, (-g, j))
            if len(chunk) >= most_files:
                break
            pick = -1
            while heap:
                g, j = pop(heap)
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
                if size + tokens[pick] > most_tokens:
                    break
            elif size + tokens[pick] > most_tokens:
                rejected.add(pick)
                grown = None
                continue
            if (
                (size >= half_tokens or len(chunk) >= half_files)
                and (mine := get_local(pick)) is not None
                and len(mine - taken) > gain.get(pick, 0)
            ):
                # Half full, and the file is more tied to files not yet placed than to
                # this chunk: it starts (or joins) another chunk instead, and a chunk
                # grown in path order stops here.
                if from_path_order:
                    break
                rejected.add(pick)
                grown = None
                continue
            chunk.append(pick)
            size += tokens[pick]
            taken.add(pick)
            grown = get_local(pick)
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


# The first word of each line's file name: after the last "/", up to "_", "-" or ".".
_PREFIX_LINES_RE = re.compile(r"^(?:[^\n]*/)?([^_.\-\n/]*)", re.M)


def prefix_groups(data: Sorted, runs: Runs) -> list[Group]:
    """Group the files of a flat directory by the first word of their names.

    ``test_api.py`` and ``test_cli.py`` share the prefix ``test``; a word ends at ``_``,
    ``-`` or ``.``. Files with one prefix are contiguous in path order. No groups when
    every file has the same prefix.
    """
    paths = data.paths
    # Every file name's first word, found by one regex pass over the paths at C speed.
    joined = "\n".join(itertools.chain.from_iterable(paths[a:b] for a, b in runs))
    words = _PREFIX_LINES_RE.findall(joined)
    if len(set(words)) in (1, len(words)):
        # One prefix: nothing groups. One file per prefix: fill_chunks makes the same
        # cuts (each group would be one file, anchored by its path).
        return []
    named: list[tuple[str, Runs]] = []
    pos = 0
    for word, group in itertools.groupby(words):
        size = sum(1 for _ in group)
        named.append((word or "", sub_runs(runs, pos, pos + size)))
        pos += size
    if all(len(r) == 1 and r[0][1] - r[0][0] == 1 for _, r in named):
        return []  # a prefix repeats, but never in a row: again one file per group
    prefix = common_dir(data, runs)
    out: list[Group] = []
    for word, r in named:
        # A group of one file is that file: named and anchored by its path, as in
        # fill_chunks, so a file sharing a prefix with another changes nothing else.
        lone = r[0][1] - r[0][0] == 1 and len(r) == 1
        # Names starting with "_", "-" or "." have an empty first word: show that sign.
        shown = word or paths[r[0][0]].rpartition("/")[2][:1]
        made = group_of(data, r, paths[r[0][0]] if lone else _join(prefix, shown + "*"))
        made.key = paths[r[0][0]]
        out.append(made)
    return out


def fill_chunks(
    data: Sorted,
    runs: Runs,
    cfg: PlanConfig,
) -> list[Cluster]:
    """Cut ``runs`` in path order into chunks that each fit the budget: the last resort.

    The cuts are anchored in the files themselves (see :func:`anchored_spans`), not in
    their positions, so editing or adding one file changes only the chunk that holds it
    (and, when it starts or ends a chunk, one neighbour). Never gives up: every chunk of
    two or more files fits; a file over the token budget is a chunk alone.

    Args:
        data: the sorted input.
        runs: the files to cut.
        cfg: the budget.
    """
    prefix = common_dir(data, runs)
    order = list(indices(runs))
    paths, tokens = data.paths, data.tokens
    keys: Sequence[str]
    weights: Sequence[int]
    if len(runs) == 1:  # one directory: its files are one slice
        a, b = runs[0]
        keys, weights = paths[a:b], tokens[a:b]
    else:
        keys, weights = [paths[i] for i in order], [tokens[i] for i in order]
    spans = anchored_spans(keys, [1] * len(order), weights, cfg)
    return [
        Cluster(sub_runs(runs, a, b), chunk_label(data, prefix, order[a], order[b - 1]))
        for a, b in spans
    ]


def chunk_label(data: Sorted, prefix: str, first: int, last: int) -> str:
    """``dir [a.py..f.py]``: a chunk named by its first and last file (unique, stable)."""
    if first == last:
        return data.paths[first]
    start = _relative(data.paths[first], prefix)
    stop = _relative(data.paths[last], prefix)
    return f"{prefix} [{start}..{stop}]"


_MIX = 0x9E3779B1


def _anchor_hash(key: str) -> int:
    """A 32-bit hash of ``key``, the same in every process (``hash()`` is salted)."""
    value = crc32(key.encode("utf-8", "surrogatepass"))
    # CRC is linear: mix it so that keys differing in one character spread evenly.
    value = (value * _MIX) & 0xFFFFFFFF
    return value ^ (value >> 16)


def anchored_spans(
    keys: Sequence[str],
    counts: Sequence[int],
    tokens: Sequence[int],
    cfg: PlanConfig,
) -> list[tuple[int, int]]:
    """Cut a sequence of items into spans that fit the budget, at content-anchored points.

    A span over the budget is cut in two, recursively, until each part fits (or is one
    item): before the item whose key hashes highest. Like content-defined chunking,
    where a cut falls depends on the items' keys, not on their weights or positions:
    when one item grows, only the span that held it is cut further, and every other
    span stays as it was; adding an item moves a cut only when it hashes higher than
    the items around it.

    Args:
        keys: each item's name (a path, a group label), which the cuts hash.
        counts: each item's files.
        tokens: each item's tokens.
        cfg: the budget.

    Returns:
        ``(start, stop)`` index ranges covering the items in order.

    Notes:
        O(items): the cuts are the Cartesian tree (a treap) of the items by hash, built
        once. Ties between equal hashes go to the first item.
    """
    n = len(keys)
    if n == 0:
        return []
    # _anchor_hash of every key, a comprehension at a time (no call per key).
    mixed = [(crc32(k.encode("utf-8", "surrogatepass")) * _MIX) & 0xFFFFFFFF for k in keys]
    hashes = [v ^ (v >> 16) for v in mixed]
    cum_t = [0, *itertools.accumulate(tokens)]
    cum_c = [0, *itertools.accumulate(counts)]
    # The budget's two bounds, read once (this loop runs for every span).
    most_files, most_tokens = budget_bounds(cfg, cum_c[-1], cum_t[-1])
    if n == 1 or (cum_c[n] <= most_files and cum_t[n] <= most_tokens):
        return [(0, n)]
    # Before the item of highest hash, whatever its position: a weight or a window by
    # position in the choice would let one file's edit or addition move the cuts around
    # it (a middle-third window gave 15-25% fewer leaves, but an added file then re-cut
    # up to 5 leaves of a large directory of redis).
    #
    # The cut of a span [x, y) is the highest of items x+1..y-1, and the cuts of its two
    # parts are the highest on each side of it: the Cartesian tree of items 1..n-1 by
    # hash (the highest on top, the first of equal ones above) holds them all, built in
    # one pass with a stack instead of a scan of every span for its highest item.
    left = [-1] * n
    right = [-1] * n
    stack: list[int] = []
    for i in range(1, n):
        h, below = hashes[i], -1
        while stack and hashes[stack[-1]] < h:
            below = stack.pop()
        left[i] = below
        if stack:
            right[stack[-1]] = i
        stack.append(i)
    out: list[tuple[int, int]] = []
    spans = [(0, n, stack[0])]  # a span, and the item it is cut before
    while spans:
        x, y, m = spans.pop()
        if y - x == 1 or (cum_c[y] - cum_c[x] <= most_files and cum_t[y] - cum_t[x] <= most_tokens):
            out.append((x, y))
            continue
        spans.append((m, y, right[m]))
        spans.append((x, m, left[m]))
    return out


class Labelled(Protocol):
    """Files as runs, with a label: a :class:`Group`, or a node of the tree being built."""

    runs: Runs
    label: str


def cluster_of(chosen: Sequence[Labelled], prefix: str) -> Cluster:
    """One cluster of ``chosen`` groups (or nodes): a lone one keeps its label."""
    if len(chosen) == 1:
        return Cluster(chosen[0].runs, chosen[0].label)
    names = [_relative(g.label, prefix) for g in chosen]
    return Cluster(merge_runs([g.runs for g in chosen]), _join(prefix, "{" + _shown(names) + "}"))


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
    # The budget's two bounds, read once: this loop runs groups x window times.
    most_files, most_tokens = budget_bounds(cfg, len(data.paths), data.cumulative[-1])
    for k in range(n):
        if find(k) != k:
            continue
        chosen = -1
        count, size = counts[k], tokens[k]
        for c in open_ids:
            if bin_counts[c] + count <= most_files and bin_tokens[c] + size <= most_tokens:
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
    clusters = [cluster_of(chosen, prefix) for chosen in packed]
    clusters.sort(key=lambda c: c.runs[0][0])
    return clusters
