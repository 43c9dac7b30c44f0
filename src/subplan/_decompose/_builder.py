"""Build a plan: the leaf rules, the strategies in order, and the non-progress guard.

The builder works level by level. Each node is first checked against the leaf rules, in
order (``below_min_files``, ``fits_budget``, ``max_depth``); otherwise the strategies are
tried in order (directory, import-graph communities, balanced chunks) and the first that
yields at least two non-empty clusters splits the node. When none does, the node is a
``no_progress`` leaf: the guard stops instead of recursing to ``max_depth``.

Notes:
    Files are held once, sorted with :func:`~subplan._model.path_sort_key`, and nodes are
    lists of indices into them, so a directory's files are a contiguous, sorted run and a
    split never re-sorts. Every node's id is hashed from its sorted paths, so each level
    costs O(files) time; the whole decomposition is O(files x depth).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._errors import InputError
from .._model import (
    FileEntry,
    LeafReason,
    Plan,
    PlanConfig,
    Subplan,
    id_of_sorted,
    normalize_path,
    path_sort_key,
)
from ._strategies import (
    Cluster,
    Runs,
    Sorted,
    Strategy,
    chunk_clusters,
    common_dir,
    directory_clusters,
    import_clusters,
)

if TYPE_CHECKING:
    import networkx as nx

__all__ = ["decompose", "decompose_levels"]


@dataclass(slots=True)
class _Pending:
    """A node whose files are known but whose fate (leaf or split) is not yet decided."""

    runs: Runs
    parent: str | None
    depth: int
    label: str


# What normalize_path would change or refuse, seen in paths joined by newlines (with a
# newline before the first and after the last): an empty path, a leading or trailing "/",
# "//", a "." or ".." component, NUL or CR. Substring tests run at C speed.
_UNCLEAN: tuple[str, ...] = ("\n/", "/\n", "\n\n", "//", "\x00", "\r", "/./", "/../", "/.\n")
_UNCLEAN += ("/..\n", "\n./", "\n../", "\n.\n", "\n..\n")


def _prepare(files: Iterable[str | FileEntry]) -> Sorted:
    paths: list[str] = []
    tokens_of: dict[str, int] = {}
    for item in files:
        if type(item) is str:
            paths.append(item)
        elif isinstance(item, FileEntry):
            paths.append(item.path)
            tokens_of[item.path] = item.tokens
        else:
            raise InputError(f"expected a path or a FileEntry, got {type(item).__name__}")
    if not paths:
        raise InputError("no files to decompose")
    # One regex pass over all paths at C speed; only a suspicious input pays for the
    # per-path normalization (which cleans what it can and names what it refuses).
    joined = "\n" + "\n".join(paths) + "\n"
    if joined.count("\n") != len(paths) + 1 or any(bad in joined for bad in _UNCLEAN):
        clean = [normalize_path(p) for p in paths]
        tokens_of = {normalize_path(p): t for p, t in tokens_of.items()}
        paths = clean
    keys = sorted([path_sort_key(p) for p in paths])
    paths = [k.replace("\x00", "/") for k in keys]
    # Duplicates sort next to each other, and so does a path that is both a file and a
    # directory ("a/b" and "a/b/c"): every path below "a/b" sorts right after it.
    for prev, nxt in itertools.pairwise(keys):
        if nxt.startswith(prev):
            shown = prev.replace("\x00", "/")
            if nxt == prev:
                raise InputError(f"duplicate path {shown!r}", path=shown)
            if nxt[len(prev)] == "\x00":
                raise InputError(f"path {shown!r} is both a file and a directory", path=shown)
    sorted_paths = tuple(paths)
    if tokens_of:
        tokens = tuple([tokens_of.get(p, 0) for p in sorted_paths])
    else:
        tokens = (0,) * len(sorted_paths)
    return Sorted(paths=sorted_paths, keys=tuple(keys), tokens=tokens)


def _slice(paths: tuple[str, ...], runs: Runs) -> tuple[str, ...]:
    if len(runs) == 1:
        return paths[runs[0][0] : runs[0][1]]
    return tuple(itertools.chain.from_iterable(paths[a:b] for a, b in runs))


def _leaf_reason(cfg: PlanConfig, depth: int, count: int, tokens: int) -> LeafReason | None:
    if count < cfg.min_files:
        return "below_min_files"
    if cfg.fits_budget(count, tokens):
        return "fits_budget"
    if depth >= cfg.max_depth:
        return "max_depth"
    return None


def _split(
    data: Sorted,
    node: _Pending,
    tokens: int,
    cfg: PlanConfig,
    strategies: Sequence[Strategy],
) -> list[Cluster] | None:
    """The clusters of the first strategy that makes progress, or None (the guard)."""
    for strategy in strategies:
        # Progress means at least two non-empty clusters; anything less is no split.
        clusters = [c for c in strategy(data, node.runs, tokens, cfg) if c.runs]
        if len(clusters) >= 2:
            return clusters
    return None


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
) -> Iterator[tuple[Subplan, ...]]:
    """Decompose ``files`` into a tree of subplans, yielding one finished level at a time.

    Level 0 is the root alone; level ``d`` holds every node at depth ``d``, in plan order.
    Each yielded node is final: its children (if any) are the nodes of the next level
    that name it as their parent. Consuming the whole generator and passing the nodes to
    :class:`~subplan.Plan` gives what :func:`decompose` returns.

    Args:
        files: relative ``/``-separated paths, or :class:`~subplan.FileEntry` items (which
            carry token counts for the ``max_tokens`` budget).
        min_files: a node with fewer files is a leaf (``below_min_files``).
        max_depth: nodes at this depth are leaves (``max_depth``).
        max_files: when set, a node with at most this many files (and within
            ``max_tokens``) is a leaf (``fits_budget``).
        max_tokens: when set, the token budget of a leaf.
        seed: seed of the import-graph community detection (Louvain).
        import_graph: a directed graph over paths (an edge ``a -> b`` when ``a`` imports
            ``b``); used to split a node that directories cannot split.
        config: all the options above at once; overrides the keyword options.

    Yields:
        Tuples of :class:`~subplan.Subplan`, one per depth.

    Raises:
        ConfigError: an option is out of range.
        InputError: no files, a duplicate path, an unsafe path, or a path that is both a
            file and a directory.

    Example:
        >>> levels = list(decompose_levels(["a/1", "a/2", "a/3", "b/1", "b/2", "b/3"]))
        >>> [len(level) for level in levels]
        [1, 2]
    """
    cfg = config or PlanConfig(
        min_files=min_files,
        max_depth=max_depth,
        max_files=max_files,
        max_tokens=max_tokens,
        seed=seed,
    )
    prepared = _prepare(files)
    strategies: list[Strategy] = [directory_clusters]
    if import_graph is not None and import_graph.number_of_edges() > 0:
        strategies.append(import_clusters(import_graph))
    if cfg.has_budget:
        strategies.append(chunk_clusters)

    every: Runs = [(0, len(prepared.paths))]
    level = [_Pending(every, None, 0, common_dir(prepared, every))]
    all_paths, all_tokens = prepared.paths, prepared.tokens
    ids: dict[tuple[tuple[int, int], ...], str] = {}

    def id_of(runs: Runs) -> str:
        key = tuple(runs)
        found = ids.get(key)
        if found is None:
            found = ids[key] = id_of_sorted(_slice(all_paths, runs))
        return found

    while level:
        finished: list[Subplan] = []
        next_level: list[_Pending] = []
        for node in level:
            paths = _slice(all_paths, node.runs)
            node_id = id_of(node.runs)
            tokens = sum(sum(all_tokens[a:b]) for a, b in node.runs)
            reason = _leaf_reason(cfg, node.depth, len(paths), tokens)
            clusters = None
            if reason is None:
                clusters = _split(prepared, node, tokens, cfg, strategies)
                if clusters is None:
                    reason = "no_progress"
            children: list[str] = []
            for cluster in clusters or ():
                children.append(id_of(cluster.runs))
                next_level.append(_Pending(cluster.runs, node_id, node.depth + 1, cluster.label))
            finished.append(
                Subplan(
                    id=node_id,
                    parent=node.parent,
                    children=tuple(children),
                    depth=node.depth,
                    label=node.label,
                    files=paths,
                    tokens=tokens,
                    leaf_reason=reason,
                )
            )
        yield tuple(finished)
        level = next_level


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
) -> Plan:
    """Decompose ``files`` into a :class:`~subplan.Plan`: a tree whose leaves partition them.

    The same files in any order give the same plan, byte for byte, and a subplan whose
    files did not change keeps its id when the project is decomposed again. See
    :func:`decompose_levels` for the arguments.

    Returns:
        The plan; it satisfies :meth:`Plan.validate <subplan.Plan.validate>`.

    Raises:
        ConfigError: an option is out of range.
        InputError: no files, a duplicate path, an unsafe path, or a path that is both a
            file and a directory.

    Example:
        >>> plan = decompose(["src/a.py", "src/b.py", "src/c.py", "README.md"])
        >>> [(leaf.label, leaf.leaf_reason) for leaf in plan.leaves]
        [('*', 'below_min_files'), ('src', 'no_progress')]
    """
    cfg = config or PlanConfig(
        min_files=min_files,
        max_depth=max_depth,
        max_files=max_files,
        max_tokens=max_tokens,
        seed=seed,
    )
    nodes = [
        node
        for level in decompose_levels(files, import_graph=import_graph, config=cfg)
        for node in level
    ]
    return Plan(nodes, config=cfg, root=nodes[0].id)
