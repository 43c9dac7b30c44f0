"""Build a plan: the leaf rules, the hard budget, and the strategies in order.

The builder works level by level. A node that fits the budget (default
:data:`DEFAULT_MAX_TOKENS` tokens when neither ``max_tokens`` nor ``max_files`` is given)
is a leaf: ``below_min_files`` when it has fewer than ``min_files`` files, else
``fits_budget``. A single file over the budget is an ``oversized_file`` leaf. Every other
node is split (see :mod:`._strategies`): grouped by directory, dependency communities or
file-name prefixes; without a graph the groups are cut at content-anchored points (an
edit re-cuts only the leaf holding it), with one the groups that fit are packed by
tokens; the rest are split again one level down, and cut into fitting chunks when
nothing else splits them or the next level is ``max_depth``. So the budget is a hard
bound: no leaf of two or more files exceeds it, whatever ``max_depth`` and ``min_files``
say. Then, with ``cuts="full"`` (the default), once the tree is whole every leaf under
half the budget is merged with the leaf it is most tied to by imports (else its nearest)
when the two fit together (:func:`~._merge.merge_small_leaves`): fuller leaves, at the
cost of cuts that may move when a file changes; ``cuts="stable"`` keeps the
content-anchored cuts alone (and ignores the graph for them).

Notes:
    Files are held once, sorted with :func:`~subplan._model.path_sort_key`, and nodes are
    lists of indices into them, so a directory's files are a contiguous, sorted run and a
    split never re-sorts. Every node's id is hashed from its sorted paths, so each level
    costs O(files) time; the whole decomposition is O(files x depth).
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Final

from .._errors import ConfigError, InputError
from .._gc import gc_paused
from .._model import (
    Cuts,
    FileEntry,
    LeafReason,
    Plan,
    PlanConfig,
    Subplan,
    any_unclean,
    id_of_sorted,
    in_order,
    normalize_path,
)
from ._merge import Node, merge_small_leaves
from ._order import adjacency, leaf_order
from ._strategies import (
    Cluster,
    Graph,
    Group,
    Runs,
    Sorted,
    anchored_spans,
    cluster_of,
    common_dir,
    count_of,
    directory_groups,
    fill_chunks,
    graph_chunks,
    group_of,
    merge_runs,
    pack,
    prefix_groups,
)

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["DEFAULT_MAX_TOKENS", "decompose", "decompose_levels"]

# A node that a few leaves could hold is cut in path order when that is no worse.
_FEW: Final = 4

DEFAULT_MAX_TOKENS: Final = 50_000
"""The token budget of a leaf when neither ``max_tokens`` nor ``max_files`` is given."""


_PATH_OF: Final = operator.attrgetter("path")
_TOKENS_OF: Final = operator.attrgetter("tokens")


def _prepare(files: Iterable[str | FileEntry]) -> Sorted:
    items = files if isinstance(files, list | tuple) else list(files)
    paths: list[str]
    given: list[int] | None = None
    kinds = set(map(type, items))  # at C speed, as are the attribute reads below
    if kinds == {str}:
        paths = list(items)  # type: ignore[arg-type]
    elif kinds == {FileEntry}:
        paths = list(map(_PATH_OF, items))
        given = list(map(_TOKENS_OF, items))
    else:
        paths, given = [], []
        for item in items:
            if type(item) is str:
                paths.append(item)
                given.append(0)
            elif isinstance(item, FileEntry):
                paths.append(item.path)
                given.append(item.tokens)
            else:
                raise InputError(f"expected a path or a FileEntry, got {type(item).__name__}")
    if not paths:
        raise InputError("no files to decompose")
    # One regex pass over all paths at C speed; only a suspicious input pays for the
    # per-path normalization (which cleans what it can and names what it refuses).
    joined = "\n" + "\n".join(paths) + "\n"
    if joined.count("\n") != len(paths) + 1 or any_unclean(joined):
        paths = [normalize_path(p) for p in paths]
        joined = "\n" + "\n".join(paths) + "\n"
    # Sort keys (see path_sort_key) made and split at C speed, not one path at a time.
    unsorted = joined[1:-1].replace("/", "\x00").split("\n")
    tokens: tuple[int, ...]
    ordered = in_order(unsorted)
    if ordered:
        keys = unsorted  # given in order already (an inventory is)
        tokens = (0,) * len(keys) if given is None else tuple(given)
    elif given is None:
        keys = sorted(unsorted)
        tokens = (0,) * len(keys)
    else:
        order = sorted(range(len(unsorted)), key=unsorted.__getitem__)
        keys = list(map(unsorted.__getitem__, order))
        tokens = tuple(map(given.__getitem__, order))
    # Duplicates sort next to each other, and so does a path that is both a file and a
    # directory ("a/b" and "a/b/c"): every path below "a/b" sorts right after it. The
    # pairs are tested at C speed; only a list with such a pair is walked to name it.
    later = itertools.islice(keys, 1, None)
    for prev, nxt in itertools.pairwise(keys) if any(map(str.startswith, later, keys)) else ():
        if nxt.startswith(prev):
            shown = prev.replace("\x00", "/")
            if nxt == prev:
                raise InputError(f"duplicate path {shown!r}", path=shown)
            if nxt[len(prev)] == "\x00":
                raise InputError(f"path {shown!r} is both a file and a directory", path=shown)
    if ordered:
        sorted_paths = tuple(paths)
    else:
        sorted_paths = tuple("\n".join(keys).replace("\x00", "/").split("\n"))
    cumulative = (0, *itertools.accumulate(tokens))
    slashes = tuple(map(str.count, keys, itertools.repeat("\x00")))
    return Sorted(sorted_paths, tuple(keys), tokens, cumulative, slashes)


def _slice(paths: tuple[str, ...], runs: Runs) -> tuple[str, ...]:
    if len(runs) == 1:
        return paths[runs[0][0] : runs[0][1]]
    return tuple(itertools.chain.from_iterable(paths[a:b] for a, b in runs))


def _leaf_reason(cfg: PlanConfig, count: int, tokens: int) -> LeafReason | None:
    if cfg.fits_budget(count, tokens):
        return "below_min_files" if count < cfg.min_files else "fits_budget"
    if count == 1:
        return "oversized_file"
    return None


def _split(data: Sorted, node: Node, cfg: PlanConfig, graph: Graph | None) -> list[Cluster]:
    """Split a node over the budget into at least two clusters.

    The first grouping of the node's own files that yields two groups wins (directories,
    dependency communities, file-name prefixes); with none, the files are cut into
    fitting chunks. Groups that fit (with any groups carried down from the parent) are
    packed by tokens; groups over the budget stay whole for the next level, or are cut
    into fitting chunks when the next level is the last. Packed clusters under half the
    budget are carried down into a sibling over the budget, to fill its leaves, as long
    as two clusters remain.
    """
    own = node.runs if node.own is None else node.own
    groups: list[Group] = directory_groups(data, own)
    if len(groups) < 2:
        # A flat directory with a graph: chunks grown along its edges, unless cutting in
        # path order takes fewer leaves or keeps more edges inside them.
        chunks = graph_chunks(data, own, graph, cfg)
        if chunks:
            plain = fill_chunks(data, own, cfg)
            if len(plain) < len(chunks) or (
                len(plain) == len(chunks) and _score(plain, graph) > _score(chunks, graph)
            ):
                chunks = plain
            if not node.carried:
                return chunks
        groups = _as_groups(data, chunks)
    if len(groups) < 2:
        groups = prefix_groups(data, own)
    if len(groups) < 2:
        chunks = fill_chunks(data, own, cfg)
        if not node.carried:
            return chunks  # they fit, and greedy chunks do not pack together
        groups = _as_groups(data, chunks)
    last = node.depth + 1 >= cfg.max_depth
    if graph is None:
        return _anchored_split(data, groups, cfg, last=last)
    small = [g for g in groups if cfg.fits_budget(g.count, g.tokens)]
    big: list[Group] = []
    cut: list[Cluster] = []
    for group in groups:
        if cfg.fits_budget(group.count, group.tokens):
            continue
        if last or group.count == 1:
            # Cut on its own, not packed with siblings: its chunks then depend on its
            # files alone, so they keep their ids when a sibling changes.
            cut.extend(fill_chunks(data, group.runs, cfg))
        else:
            big.append(group)
    small.extend(node.carried)
    small.sort(key=lambda g: g.runs[0][0])
    packed = pack(data, small, cfg, graph, common_dir(data, node.runs))
    if (
        big
        and all(g.loose for g in big)
        and _need(cfg, count_of(node.runs), data.tokens_of(node.runs)) <= _FEW
    ):
        # A directory of a few budgets' worth whose own files are too many for one leaf:
        # if cutting it in path order takes no more leaves than the structured split
        # could at best, cut it (fuller, fewer leaves). Subdirectories over the budget
        # are never cut this way, so their subtrees keep their ids when a sibling changes.
        chunks = fill_chunks(data, node.runs, cfg)
        if len(chunks) <= len(packed) + len(cut) + sum(_need(cfg, g.count, g.tokens) for g in big):
            return chunks
    clusters = [Cluster(g.runs, g.label) for g in big]
    if big and not last:
        half = cfg.max_tokens // 2 if cfg.max_tokens is not None else None
        keep: list[Cluster] = []
        carry: list[Cluster] = []
        for cluster in packed:
            count, tokens = cluster.size, data.tokens_of(cluster.runs)
            under = (half is None or tokens < half) and (
                cfg.max_files is None or 2 * count < cfg.max_files
            )
            (carry if under else keep).append(cluster)
        if len(keep) + len(big) + len(cut) < 2 and carry:
            keep.append(carry.pop(0))  # the node must still split in two
        # Each small cluster fills the leaves of a big sibling: the one it has the most
        # edges with, else the next one in path order (else the last). The choice depends
        # on the two of them only, so an edit elsewhere never moves it.
        hosted: dict[int, list[Group]] = {}
        owner = {i: k for k, g in enumerate(big) for i in graph.linked_in(g.runs)}
        for cluster in carry:
            hosted.setdefault(_host(cluster, big, graph, owner), []).append(
                group_of(data, cluster.runs, cluster.label)
            )
        for target, extra in hosted.items():
            host = big[target]
            merged = merge_runs([host.runs, *(g.runs for g in extra)])
            label = f"{host.label} +{len(extra)}"
            clusters[target] = Cluster(merged, label, tuple(extra), host.runs)
        packed = keep
    clusters.extend(packed)
    clusters.extend(cut)
    clusters.sort(key=lambda c: c.runs[0][0])
    return clusters


def _anchored_split(
    data: Sorted, groups: list[Group], cfg: PlanConfig, *, last: bool
) -> list[Cluster]:
    """Groups cut into spans at content-anchored points (see :func:`anchored_spans`).

    Groups over the budget take part too: a span holding one cannot fit, so it is cut
    down to that group alone, which is split again one level down (or cut into fitting
    chunks on the last level). So a group growing over the budget only splits the span
    that held it, and every other span stays as it was.
    """
    prefix = common_dir(data, [(groups[0].runs[0][0], groups[-1].runs[-1][1])])
    # The loose files first: where they fall among the subdirectories in path order
    # changes as files come and go, and the order of the items must not.
    groups = sorted(groups, key=lambda g: (not g.loose, g.runs[0][0]))
    spans = anchored_spans(
        [g.key or g.label for g in groups],
        [g.count for g in groups],
        [g.tokens for g in groups],
        cfg,
    )
    clusters: list[Cluster] = []
    for a, b in spans:
        if b - a == 1 and not cfg.fits_budget(groups[a].count, groups[a].tokens):
            group = groups[a]
            if last or group.count == 1:
                clusters.extend(fill_chunks(data, group.runs, cfg))
            else:
                clusters.append(Cluster(group.runs, group.label))
        else:
            clusters.append(cluster_of(groups[a:b], prefix))
    clusters.sort(key=lambda c: c.runs[0][0])
    return clusters


def _host(cluster: Cluster, big: list[Group], graph: Graph, owner: dict[int, int]) -> int:
    """The big sibling that takes a small cluster in: the one it has the most edges with
    (``owner``: the big sibling of each linked file), else the next one in path order."""
    ties: dict[int, int] = {}
    for i in graph.linked_in(cluster.runs):
        for j in graph.neighbours[i]:
            k = owner.get(j)
            if k is not None:
                ties[k] = ties.get(k, 0) + 1
    if ties:
        return min(ties, key=lambda k: (-ties[k], k))
    first = cluster.runs[0][0]
    for k, group in enumerate(big):
        if group.runs[0][0] > first:
            return k
    return len(big) - 1


def _score(chunks: list[Cluster], graph: Graph | None) -> tuple[int, int]:
    """Fewer chunks first, then more edges inside a chunk."""
    inside = 0
    if graph is not None:
        chunk_of: dict[int, int] = {}
        for n, chunk in enumerate(chunks):
            for i in graph.linked_in(chunk.runs):
                chunk_of[i] = n
        for i, n in chunk_of.items():
            inside += sum(1 for j in graph.neighbours[i] if chunk_of.get(j) == n)
    return (-len(chunks), inside)


def _need(cfg: PlanConfig, count: int, tokens: int) -> int:
    """The fewest leaves that could hold ``count`` files of ``tokens`` tokens."""
    need = 1
    if cfg.max_files is not None:
        need = max(need, -(-count // cfg.max_files))
    if cfg.max_tokens is not None:
        need = max(need, -(-tokens // cfg.max_tokens))
    return need


def _as_groups(data: Sorted, clusters: list[Cluster]) -> list[Group]:
    return [group_of(data, c.runs, c.label) for c in clusters]


def _index_edges(graph: nx.DiGraph, data: Sorted) -> dict[int, set[int]]:
    """The graph's edges between input files, as indices: ``{importer: imported}``.

    Each node's successors are looked up at C speed, a set at a time; its predecessors
    are not read (another lookup of every edge by path: reversing the indexed edges, in
    :func:`_undirected`, costs less).
    """
    get = dict(zip(data.paths, range(len(data.paths)), strict=True)).get
    out: dict[int, set[int]] = {}
    for a, successors in adjacency(graph).items():
        if not successors or (i := get(a)) is None:
            continue
        found: set[int | None] = set(map(get, successors))
        found.discard(None)
        found.discard(i)
        if found:
            out[i] = found  # type: ignore[assignment]  # no None left
    return out


def _undirected(edges: dict[int, set[int]]) -> Graph | None:
    """The indexed edges both ways, as the strategies use them (None without edges)."""
    if not edges:
        return None
    neighbours = {i: set(targets) for i, targets in edges.items()}
    for i, targets in edges.items():
        for j in targets:
            if (found := neighbours.get(j)) is None:
                neighbours[j] = {i}
            else:
                found.add(i)
    return Graph(neighbours, tuple(sorted(neighbours)))


@dataclass(slots=True)
class _Order:
    """What :func:`decompose` needs besides the levels to order the leaves."""

    size: int = 0
    edges: dict[int, set[int]] = field(default_factory=dict)
    leaves: list[tuple[str, Runs]] = field(default_factory=list)


def with_default_budget(cfg: PlanConfig) -> PlanConfig:
    """``cfg`` with :data:`DEFAULT_MAX_TOKENS` when it sets no budget."""
    return cfg if cfg.has_budget else replace(cfg, max_tokens=DEFAULT_MAX_TOKENS)


def decompose_levels(
    files: Iterable[str | FileEntry],
    *,
    min_files: int = 3,
    max_depth: int = 6,
    max_files: int | None = None,
    max_tokens: int | None = None,
    seed: int = 0,
    import_graph: nx.DiGraph | None = None,
    config: PlanConfig | None = None,
    cuts: Cuts = "full",
) -> Iterator[tuple[Subplan, ...]]:
    """Decompose ``files`` into a tree of subplans, yielding one finished level at a time.

    Level 0 is the root alone; level ``d`` holds every node at depth ``d``, in plan order.
    Each yielded node is final: its children (if any) are the nodes of the next level
    that name it as their parent. Consuming the whole generator and passing the nodes to
    :class:`~subplan.Plan` gives what :func:`decompose` returns. With ``cuts="stable"``
    each level comes as soon as it is split; with ``"full"``, once the tree is whole
    (the merge of small leaves can reshape every level).

    Args:
        files: relative ``/``-separated paths, or :class:`~subplan.FileEntry` items (which
            carry token counts for the ``max_tokens`` budget).
        min_files: a leaf that fits with fewer files is labelled ``below_min_files``;
            it never keeps a node over the budget from being split.
        max_depth: the deepest level; the level above it cuts every group over the
            budget into fitting chunks, so no leaf breaks the budget. With 0, files over
            the budget are refused (``ConfigError``).
        max_files: when set, the most files a leaf of two or more files may hold.
        max_tokens: the token budget of a leaf (default :data:`DEFAULT_MAX_TOKENS`
            when ``max_files`` is not set either); only a single larger file exceeds it
            (``oversized_file``).
        seed: recorded in the plan's config; decomposition itself uses no randomness.
        import_graph: a directed graph over paths (an edge ``a -> b`` when ``a`` imports
            ``b``); ties groups when packing (across directories too), grows chunks in
            flat directories, merges small leaves with the leaves they import from or
            are imported by, and orders the leaves (:attr:`Plan.dependencies`).
        cuts: ``"full"`` (default): once the tree is built, leaves under half the
            budget are merged into others they fit with, by their import ties when
            there is a graph, else with the nearest (fuller leaves; cuts may move when
            a file changes); ``"stable"``: content-anchored cuts only, whatever the
            graph, which then only orders the leaves (an edit re-cuts only the leaf
            that holds it).
        config: all the options above at once; overrides the keyword options.

    Yields:
        Tuples of :class:`~subplan.Subplan`, one per depth.

    Raises:
        ConfigError: an option is out of range, or ``max_depth`` is 0 and the files
            exceed the budget.
        InputError: no files, a duplicate path, an unsafe path, or a path that is both a
            file and a directory.

    Example:
        >>> files = ["a/1", "a/2", "a/3", "b/1", "b/2", "b/3"]
        >>> levels = list(decompose_levels(files, max_files=3))
        >>> [len(level) for level in levels]
        [1, 2]
    """
    cfg = config or PlanConfig(
        min_files=min_files,
        max_depth=max_depth,
        max_files=max_files,
        max_tokens=max_tokens,
        seed=seed,
        cuts=cuts,
    )
    return _levels(files, import_graph, cfg, None)


def _levels(
    files: Iterable[str | FileEntry],
    import_graph: nx.DiGraph | None,
    cfg: PlanConfig,
    order: _Order | None,
) -> Iterator[tuple[Subplan, ...]]:
    """:func:`decompose_levels`, filling ``order`` (when given) as it goes."""
    cfg = with_default_budget(cfg)
    prepared = _prepare(files)
    edges = {} if import_graph is None else _index_edges(import_graph, prepared)
    if order is not None:
        order.size, order.edges = len(prepared.paths), edges
    # Stable cuts ignore the graph (it still orders the leaves, in decompose); full cuts
    # merge small leaves once the tree is whole, by the graph's ties when there is one.
    graph = None if cfg.cuts == "stable" else _undirected(edges)
    full = cfg.cuts == "full"

    every: Runs = [(0, len(prepared.paths))]
    root = Node(every, None, 0, common_dir(prepared, every))
    all_paths = prepared.paths

    def named(node: Node) -> str:
        # A node's files and id, sliced and hashed once (as a child, or as the root).
        if node.files is None:
            node.files = _slice(all_paths, node.runs)
            node.id = id_of_sorted(node.files)
        return node.id

    used: set[str] = set()

    def unique(label: str) -> str:
        # Two nodes may earn the same label (chunks of one directory on two levels, a
        # group and a pack of it): later ones get a number, so every label names one node.
        n, found = 1, label
        while found in used:
            n += 1
            found = f"{label} ({n})"
        used.add(found)
        return found

    def finished(level: list[Node]) -> tuple[Subplan, ...]:
        # Called once a level is final (its nodes' files no longer change); every node
        # but the root was named as a child on the level above.
        out: list[Subplan] = []
        for node in level:
            paths = node.files
            if paths is None:
                named(node)
                paths = node.files
                assert paths is not None
            runs = node.runs
            tokens = prepared.tokens_of(runs)
            parent = None if node.parent is None else node.parent.id
            if node.children:
                kids = tuple([named(c) for c in node.children])
                reason = None
            else:
                kids, reason = (), _leaf_reason(cfg, len(paths), tokens)
                if order is not None:
                    order.leaves.append((node.id, runs))
            # Positional: a tenth of a plan's time goes to making its nodes.
            label = unique(node.label)
            out.append(Subplan(node.id, parent, kids, node.depth, label, paths, tokens, reason))
        return tuple(out)

    level = [root]
    while level:
        next_level: list[Node] = []
        for node in level:
            count, tokens = count_of(node.runs), prepared.tokens_of(node.runs)
            if _leaf_reason(cfg, count, tokens) is not None:
                continue
            if node.depth >= cfg.max_depth:
                raise ConfigError(
                    f"max_depth {cfg.max_depth} allows no split, but {count} files "
                    f"({tokens} tokens) exceed the budget"
                )
            node.children = [
                Node(c.runs, node, node.depth + 1, c.label, c.carried, c.own)
                for c in _split(prepared, node, cfg, graph)
            ]
            next_level.extend(node.children)
        if not full:
            yield finished(level)  # stable cuts: each level is final once split
        level = next_level
    if not full:
        _unlink(root)
        return
    # The small leaves are merged once the tree is whole (across levels).
    root = merge_small_leaves(root, prepared, cfg, graph or Graph({}, ()))
    level = [root]
    while level:
        yield finished(level)
        level = [child for node in level for child in node.children]
    _unlink(root)


def _unlink(root: Node) -> None:
    """Break the tree's parent links, so that reference counting frees it at once (the
    cyclic collector may be paused; see subplan._gc)."""
    stack = [root]
    while stack:
        node = stack.pop()
        node.parent = None
        stack.extend(node.children)


def decompose(
    files: Iterable[str | FileEntry],
    *,
    min_files: int = 3,
    max_depth: int = 6,
    max_files: int | None = None,
    max_tokens: int | None = None,
    seed: int = 0,
    import_graph: nx.DiGraph | None = None,
    config: PlanConfig | None = None,
    cuts: Cuts = "full",
) -> Plan:
    """Decompose ``files`` into a :class:`~subplan.Plan`: a tree whose leaves partition them.

    The same files in any order give the same plan, byte for byte, and a subplan whose
    files did not change keeps its id when the project is decomposed again. With an
    ``import_graph``, the plan also carries :attr:`Plan.dependencies
    <subplan.Plan.dependencies>`: a leaf waits for the leaves it imports from (cycles
    collapsed), and :meth:`Plan.waves <subplan.Plan.waves>` orders the leaves by them. See
    :func:`decompose_levels` for the arguments.

    Returns:
        The plan; it satisfies :meth:`Plan.validate <subplan.Plan.validate>`.

    Raises:
        ConfigError: an option is out of range.
        InputError: no files, a duplicate path, an unsafe path, or a path that is both a
            file and a directory.

    Example:
        >>> files = [FileEntry(p, 4000) for p in ("src/a.py", "src/b.py", "src/c.py", "README.md")]
        >>> plan = decompose(files, max_tokens=3000)
        >>> [(leaf.label, leaf.tokens, leaf.leaf_reason) for leaf in plan.leaves]
        [('*', 1000, 'below_min_files'), ('src', 3000, 'fits_budget')]
    """
    cfg = config or PlanConfig(
        min_files=min_files,
        max_depth=max_depth,
        max_files=max_files,
        max_tokens=max_tokens,
        seed=seed,
        cuts=cuts,
    )
    with gc_paused():  # many objects, no garbage: see subplan._gc
        order = _Order()
        nodes = [node for level in _levels(files, import_graph, cfg, order) for node in level]
        deps = None
        if import_graph is not None:
            # The order the leaves' imports give (cycles collapsed); the levels hold the
            # leaves in another order than the plan's, which the order does not depend on.
            deps = leaf_order(order.leaves, order.edges, order.size)
        return Plan(nodes, config=with_default_budget(cfg), root=nodes[0].id, dependencies=deps)
