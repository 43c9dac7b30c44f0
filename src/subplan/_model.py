"""Value types of a plan: :class:`FileEntry`, :class:`Subplan`, :class:`PlanConfig`, :class:`Plan`.

A plan is a tree of subplans over a set of files. Every node records the files below it;
leaves are the units of work. The types are frozen; :meth:`Plan.validate` checks every
invariant of the design (partition, exact links, depth bound, content-derived ids), and
the JSON form (schema ``subplan.plan/1``) round-trips exactly.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import operator
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, Literal, get_args

from ._errors import ConfigError, InputError, PlanError, UnknownSubplanError

__all__ = [
    "PLAN_SCHEMA",
    "Cuts",
    "FileEntry",
    "LeafReason",
    "Plan",
    "PlanConfig",
    "PlanStatistics",
    "Subplan",
    "estimate_tokens",
    "normalize_path",
    "path_sort_key",
    "subplan_id",
]

PLAN_SCHEMA: Final = "subplan.plan/1"

LeafReason = Literal["below_min_files", "fits_budget", "oversized_file", "max_depth", "no_progress"]
LEAF_REASONS: Final[frozenset[str]] = frozenset(get_args(LeafReason))
Cuts = Literal["full", "stable"]
"""How a plan is cut: ``full`` (the default: leaves under half the budget merged into
others they fit with; fuller leaves, cuts that may move when a file changes) or
``stable`` (content-anchored cuts only, whatever the graph: an edit re-cuts only the leaf
that holds it)."""
CUTS: Final[tuple[str, ...]] = get_args(Cuts)

_ID_RE: Final = re.compile(r"^sp-[0-9a-f]{16}$")


def estimate_tokens(size: int) -> int:
    """Estimate the tokens of a file of ``size`` bytes without reading it (bytes / 4, rounded up).

    Example:
        >>> estimate_tokens(10)
        3
    """
    return (size + 3) // 4


def sort_paths(paths: Iterable[str]) -> list[str]:
    """``sorted(paths, key=path_sort_key)``, with the keys made and undone at C speed.

    Example:
        >>> sort_paths(["a/y", "a-b/x", "a/x"])
        ['a/x', 'a/y', 'a-b/x']
    """
    items = list(paths)
    joined = "\n".join(items)
    if not items or joined.count("\n") != len(items) - 1:
        return sorted(items, key=path_sort_key)  # a path holds a newline
    keys = sorted(joined.replace("/", "\x00").split("\n"))
    return "\n".join(keys).replace("\x00", "/").split("\n")


def path_sort_key(path: str) -> str:
    """Sort key that orders paths component by component.

    Plain string order puts ``a-b/x`` between ``a/x`` and ``a/y`` (``-`` sorts before ``/``),
    which would split a directory's files apart. Replacing ``/`` by NUL, which sorts before
    every other character and cannot occur in a path, makes string order equal to the order
    of component tuples, so every directory's files are one contiguous run.

    Example:
        >>> sorted(["a/y", "a-b/x", "a/x"], key=path_sort_key)
        ['a/x', 'a/y', 'a-b/x']
    """
    return path.replace("/", "\x00")


def normalize_path(path: str) -> str:
    """Return ``path`` as a clean relative ``/``-separated path, or raise :class:`InputError`.

    ``./`` prefixes, doubled and trailing separators are removed. Absolute paths, paths that
    leave the root through ``..``, empty paths and paths with NUL or newline characters are
    refused: they cannot name a file inside the project.

    Example:
        >>> normalize_path("./src//a.py")
        'src/a.py'
    """
    if not path or "\x00" in path or "\n" in path or "\r" in path:
        raise InputError(f"not a usable file path: {path!r}", path=path)
    if path.startswith("/"):
        raise InputError(f"path must be relative to the project root: {path!r}", path=path)
    parts = [p for p in path.split("/") if p not in ("", ".")]
    if not parts:
        raise InputError(f"path names no file: {path!r}", path=path)
    if ".." in parts:
        raise InputError(f"path leaves the project root: {path!r}", path=path)
    return "/".join(parts)


def in_order(keys: Sequence[str]) -> bool:
    """True when ``keys`` are sorted (each at most the next), tested at C speed."""
    return all(map(operator.le, keys, itertools.islice(keys, 1, None)))


def any_unclean(joined: str) -> bool:
    r"""True when :func:`normalize_path` might change or refuse one of the paths in
    ``joined``: the paths joined by newlines, with a newline before the first and after
    the last.

    That is an empty path, a leading or trailing ``/``, ``//``, a ``.`` or ``..``
    component, NUL or CR. With every newline read as ``/``, each of those is ``//``,
    ``/./`` or ``/../``: three substring tests at C speed, not one per pattern.

    Example:
        >>> any_unclean("\nsrc/a.py\nb.py\n"), any_unclean("\n./a.py\n")
        (False, True)
    """
    if "\x00" in joined or "\r" in joined:
        return True
    flat = joined.replace("\n", "/")
    return "//" in flat or "/./" in flat or "/../" in flat


def subplan_id(files: Iterable[str]) -> str:
    """Derive the id of the subplan that holds exactly ``files``.

    The id depends only on the set of paths, so the same files give the same id whatever
    their order, and a subplan whose files did not change keeps its id when the project is
    decomposed again. Ids are ``sp-`` and 16 hex digits: safe as file and branch names.

    Example:
        >>> subplan_id(["b.py", "a.py"]) == subplan_id(["a.py", "b.py"])
        True
    """
    return id_of_sorted(sorted(set(files), key=path_sort_key))


def id_of_sorted(files: Sequence[str]) -> str:
    """:func:`subplan_id` of paths already sorted with :func:`path_sort_key` and unique."""
    data = "\n".join(files).encode("utf-8", "surrogatepass")
    return "sp-" + hashlib.blake2b(data, digest_size=8).hexdigest()


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of the project.

    Args:
        path: relative, ``/``-separated path.
        size: size in bytes (0 when unknown).
        tokens: token count; when negative (the default) it is estimated from ``size``.

    Example:
        >>> FileEntry("src/a.py", 400).tokens
        100
    """

    path: str
    size: int = 0
    tokens: int = -1

    def __post_init__(self) -> None:
        if self.size < 0:
            raise InputError(f"negative size for {self.path!r}: {self.size}", path=self.path)
        if self.tokens < 0:
            object.__setattr__(self, "tokens", estimate_tokens(self.size))


@dataclass(frozen=True, slots=True)
class PlanConfig:
    """The options a plan was made with.

    Args:
        min_files: a node with fewer files is a leaf (``below_min_files``); at least 1.
        max_depth: nodes at this depth are leaves (``max_depth``); at least 0.
        max_files: when set, a node with at most this many files (and within
            ``max_tokens``) is a leaf (``fits_budget``).
        max_tokens: when set, the token budget of a leaf.
        seed: kept in the config for compatibility; decomposition uses no randomness.
        cuts: ``"full"`` or ``"stable"`` (see :data:`Cuts`).

    Raises:
        ConfigError: an option is out of range.
    """

    min_files: int = 3
    max_depth: int = 6
    max_files: int | None = None
    max_tokens: int | None = None
    seed: int = 0
    cuts: Cuts = "full"

    def __post_init__(self) -> None:
        for name in ("min_files", "max_depth", "seed"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int):
                raise ConfigError(f"{name} must be an integer, got {value!r}")
        for name in ("max_files", "max_tokens"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ConfigError(f"{name} must be an integer or None, got {value!r}")
        if self.min_files < 1:
            raise ConfigError(f"min_files must be >= 1, got {self.min_files}")
        if self.max_depth < 0:
            raise ConfigError(f"max_depth must be >= 0, got {self.max_depth}")
        if self.max_files is not None and self.max_files < 1:
            raise ConfigError(f"max_files must be >= 1, got {self.max_files}")
        if self.max_tokens is not None and self.max_tokens < 1:
            raise ConfigError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.cuts not in CUTS:
            raise ConfigError(f"cuts must be one of {', '.join(CUTS)}, got {self.cuts!r}")

    @property
    def has_budget(self) -> bool:
        """True when ``max_files`` or ``max_tokens`` is set."""
        return self.max_files is not None or self.max_tokens is not None

    def fits_budget(self, file_count: int, tokens: int) -> bool:
        """True when a budget is set and a node of this size fits all of it."""
        # Called for every node and span a plan weighs: no helper calls.
        most_files, most_tokens = self.max_files, self.max_tokens
        if most_files is None:
            return most_tokens is not None and tokens <= most_tokens
        return file_count <= most_files and (most_tokens is None or tokens <= most_tokens)

    def to_dict(self) -> dict[str, int | str | None]:
        """The ``config`` object of the JSON form (``cuts`` only when not ``full``, so
        plans made with the default read as before)."""
        out: dict[str, int | str | None] = {
            "min_files": self.min_files,
            "max_depth": self.max_depth,
            "max_files": self.max_files,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
        }
        if self.cuts != "full":
            out["cuts"] = self.cuts
        return out


@dataclass(frozen=True, slots=True)
class Subplan:
    """One node of a plan.

    Attributes:
        id: content-derived id (see :func:`subplan_id`).
        parent: id of the parent, ``None`` for the root.
        children: ids of the children, in plan order; empty for a leaf.
        depth: 0 for the root.
        label: a human name, such as the common directory of the files.
        files: every file below this node, sorted with :func:`path_sort_key`.
        tokens: total tokens of ``files``.
        leaf_reason: why the node was not split; ``None`` for internal nodes.
    """

    id: str
    parent: str | None
    children: tuple[str, ...]
    depth: int
    label: str
    files: tuple[str, ...] = field(repr=False)
    tokens: int
    leaf_reason: LeafReason | None

    @property
    def is_leaf(self) -> bool:
        """True when the node has no children."""
        return not self.children

    @property
    def file_count(self) -> int:
        """Number of files below this node."""
        return len(self.files)

    def to_dict(self) -> dict[str, Any]:
        """The node's object in the JSON form; only leaves list their files."""
        out: dict[str, Any] = {
            "id": self.id,
            "parent": self.parent,
            "children": list(self.children),
            "depth": self.depth,
            "label": self.label,
            "file_count": self.file_count,
            "tokens": self.tokens,
            "leaf_reason": self.leaf_reason,
        }
        if self.is_leaf:
            out["files"] = list(self.files)
        return out


def _waves(
    leaves: Sequence[Subplan], deps: Mapping[str, Sequence[str]]
) -> tuple[tuple[str, ...], ...]:
    """Leaf ids by wave (longest chain of prerequisites before them), in plan order."""
    order = {leaf.id: n for n, leaf in enumerate(leaves)}
    wave: dict[str, int] = {}
    for start in order:
        if start in wave:
            continue
        # Iterative depth-first walk: plans can hold long chains.
        stack: list[tuple[str, int]] = [(start, 0)]
        on_path = {start}
        while stack:
            node, i = stack[-1]
            prerequisites = deps.get(node, ())
            if i < len(prerequisites):
                stack[-1] = (node, i + 1)
                nxt = prerequisites[i]
                if nxt in wave:
                    continue
                if nxt in on_path:
                    raise PlanError(f"the dependencies form a cycle through {nxt}")
                if nxt not in order:
                    raise PlanError(f"dependency on {nxt}, which is not a leaf")
                on_path.add(nxt)
                stack.append((nxt, 0))
                continue
            stack.pop()
            on_path.discard(node)
            wave[node] = 1 + max((wave[p] for p in prerequisites), default=-1)
    count = max(wave.values(), default=-1) + 1
    out: list[list[str]] = [[] for _ in range(count)]
    for leaf_id in order:
        out[wave[leaf_id]].append(leaf_id)
    return tuple(tuple(w) for w in out)


@dataclass(frozen=True, slots=True)
class PlanStatistics:
    """How good a plan is for agents: a frozen snapshot from :meth:`Plan.statistics`.

    Attributes:
        leaves: number of leaves.
        fill: mean leaf size over the budget (tokens over ``max_tokens``, else files over
            ``max_files``); 1.0 means every leaf is full. ``None`` without a budget.
        largest_leaf_tokens: tokens of the largest leaf.
        over_budget: leaves of two or more files over the budget (0 for a sound plan).
        oversized_files: single-file leaves over the budget.
        edges: dependency edges between files of the plan; ``None`` without a graph.
        intra_leaf_edge_fraction: the fraction of those edges inside one leaf.
        cross_leaf_edges: the edges between two leaves.
        waves: the number of waves (see :meth:`Plan.waves`).
        small_leaves: leaves under a tenth of the budget (tokens under ``max_tokens``,
            else files under ``max_files``): work too small to hand to an agent alone.
    """

    leaves: int
    fill: float | None
    largest_leaf_tokens: int
    over_budget: int
    oversized_files: int
    edges: int | None
    intra_leaf_edge_fraction: float | None
    cross_leaf_edges: int | None
    waves: int
    small_leaves: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The statistics as a JSON object."""
        return {
            "leaves": self.leaves,
            "fill": self.fill,
            "largest_leaf_tokens": self.largest_leaf_tokens,
            "over_budget": self.over_budget,
            "oversized_files": self.oversized_files,
            "edges": self.edges,
            "intra_leaf_edge_fraction": self.intra_leaf_edge_fraction,
            "cross_leaf_edges": self.cross_leaf_edges,
            "waves": self.waves,
            "small_leaves": self.small_leaves,
        }


class Plan:
    """A tree of subplans: the result of decomposition.

    Nodes are kept in pre-order (a parent before its children, children in order), so
    iteration, :attr:`leaves` and the JSON form are stable.

    Args:
        nodes: every node of the tree, in any order.
        config: the options the plan was made with.
        root: id of the root; found from the nodes when omitted.
        dependencies: ``{leaf id: ids of the leaves it waits for}``, or ``None`` (the
            default) when the order of the leaves is not known. In the JSON form they
            appear as ``dependencies`` and ``waves``; a plan without them has neither key.

    Raises:
        PlanError: the nodes do not form one tree (missing root, dangling or repeated ids).
            Use :meth:`validate` for the full invariant check.

    Example:
        >>> from subplan import decompose
        >>> files = ["a/x.py", "a/y.py", "a/z.py", "b/x.py", "b/y.py", "b/z.py"]
        >>> plan = decompose(files, max_files=3)
        >>> [leaf.label for leaf in plan.leaves]
        ['a', 'b']
    """

    __slots__ = ("_by_id", "_config", "_deps", "_leaf_of", "_leaves", "_root", "_waves")

    def __init__(
        self,
        nodes: Iterable[Subplan],
        *,
        config: PlanConfig | None = None,
        root: str | None = None,
        dependencies: Mapping[str, Iterable[str]] | None = None,
    ) -> None:
        by_id: dict[str, Subplan] = {}
        for node in nodes:
            if node.id in by_id:
                raise PlanError(f"duplicate subplan id {node.id}")
            by_id[node.id] = node
        if root is None:
            roots = [n.id for n in by_id.values() if n.parent is None]
            if len(roots) != 1:
                raise PlanError(f"a plan needs exactly one root, found {len(roots)}")
            root = roots[0]
        if root not in by_id:
            raise PlanError(f"root {root} is not among the nodes")
        ordered: dict[str, Subplan] = {}
        stack = [root]
        while stack:
            node_id = stack.pop()
            if node_id in ordered:
                raise PlanError(f"subplan {node_id} is reached twice: the nodes are not a tree")
            found = by_id.get(node_id)
            if found is None:
                raise PlanError(f"child {node_id} is not among the nodes")
            ordered[node_id] = found
            stack.extend(reversed(found.children))
        if len(ordered) != len(by_id):
            stray = sorted(set(by_id) - set(ordered))
            raise PlanError(f"subplan {stray[0]} is not reachable from the root")
        self._by_id: dict[str, Subplan] = ordered
        self._root = root
        self._config = config if config is not None else PlanConfig()
        self._leaves = tuple(n for n in ordered.values() if n.is_leaf)
        self._leaf_of: dict[str, str] | None = None
        self._deps: dict[str, tuple[str, ...]] | None = None
        if dependencies is not None:
            self._deps = {
                k: tuple(sorted(set(v)))
                for k, v in sorted(dependencies.items())
                if v  # a leaf without prerequisites is not listed
            }
        self._waves: tuple[tuple[str, ...], ...] | None = None

    # -- lookups ---------------------------------------------------------------------

    @property
    def config(self) -> PlanConfig:
        """The options the plan was made with."""
        return self._config

    @property
    def dependencies(self) -> Mapping[str, tuple[str, ...]] | None:
        """``{leaf id: ids of the leaves it waits for}``, or ``None`` when unknown.

        Decomposing with an import graph fills it: a leaf waits for the leaves it imports
        from, with import cycles between leaves collapsed (no order among them). Only
        leaves with prerequisites are listed.
        """
        return self._deps

    def waves(self) -> tuple[tuple[str, ...], ...]:
        """The leaves in waves: each wave's leaves wait only for leaves of earlier waves.

        Without dependencies every leaf is in the first wave. Within a wave, leaves are
        in plan order.

        Raises:
            PlanError: the dependencies form a cycle or name an unknown leaf.

        Example:
            >>> from subplan import decompose
            >>> plan = decompose(["a/1", "b/1"], max_files=1)
            >>> [len(wave) for wave in plan.waves()]
            [2]
        """
        if self._waves is None:
            self._waves = _waves(self._leaves, self._deps or {})
        return self._waves

    def statistics(self, import_graph: Any = None) -> PlanStatistics:
        """Leaves, fill, largest leaf, budget breaches, edge locality and waves.

        Args:
            import_graph: a directed graph over the plan's files (anything with an
                ``edges`` iterable of path pairs, such as a ``networkx.DiGraph``), for
                the edge counts; ``None`` leaves them ``None``.

        Returns:
            A frozen :class:`PlanStatistics`.

        Example:
            >>> from subplan import FileEntry, decompose
            >>> plan = decompose([FileEntry(f"d/{i}", 400) for i in range(10)], max_tokens=500)
            >>> stats = plan.statistics()
            >>> stats.leaves, round(stats.fill, 2), stats.over_budget
            (2, 1.0, 0)
        """
        cfg = self._config
        leaves = self._leaves
        fill: float | None = None
        if cfg.max_tokens is not None:
            fill = sum(leaf.tokens for leaf in leaves) / len(leaves) / cfg.max_tokens
        elif cfg.max_files is not None:
            fill = sum(leaf.file_count for leaf in leaves) / len(leaves) / cfg.max_files
        over = sum(
            1
            for leaf in leaves
            if cfg.has_budget
            and not cfg.fits_budget(leaf.file_count, leaf.tokens)
            and leaf.file_count > 1
        )
        oversized = sum(
            1
            for leaf in leaves
            if cfg.has_budget and not cfg.fits_budget(1, leaf.tokens) and leaf.file_count == 1
        )
        if cfg.max_tokens is not None:
            small = sum(1 for leaf in leaves if 10 * leaf.tokens < cfg.max_tokens)
        elif cfg.max_files is not None:
            small = sum(1 for leaf in leaves if 10 * leaf.file_count < cfg.max_files)
        else:
            small = 0
        edges = intra = cross = None
        fraction = None
        if import_graph is not None:
            if self._leaf_of is None:
                self._leaf_of = {f: leaf.id for leaf in leaves for f in leaf.files}
            leaf_of = self._leaf_of
            edges = intra = 0
            for a, b in import_graph.edges:
                la, lb = leaf_of.get(a), leaf_of.get(b)
                if la is not None and lb is not None and a != b:
                    edges += 1
                    intra += la == lb
            cross = edges - intra
            fraction = intra / edges if edges else None
        return PlanStatistics(
            leaves=len(leaves),
            fill=fill,
            largest_leaf_tokens=max(leaf.tokens for leaf in leaves),
            over_budget=over,
            oversized_files=oversized,
            edges=edges,
            intra_leaf_edge_fraction=fraction,
            cross_leaf_edges=cross,
            waves=len(self.waves()),
            small_leaves=small,
        )

    @property
    def root(self) -> Subplan:
        """The root node, which holds every file."""
        return self._by_id[self._root]

    @property
    def nodes(self) -> Mapping[str, Subplan]:
        """Every node by id, in pre-order."""
        return self._by_id

    @property
    def leaves(self) -> tuple[Subplan, ...]:
        """The leaves in plan order (left to right)."""
        return self._leaves

    @property
    def files(self) -> tuple[str, ...]:
        """Every file of the plan, sorted."""
        return self.root.files

    @property
    def depth(self) -> int:
        """The depth of the deepest node (0 for a plan that is a single leaf)."""
        return max(n.depth for n in self._by_id.values())

    def __len__(self) -> int:
        return len(self._by_id)

    def __iter__(self) -> Iterator[Subplan]:
        return iter(self._by_id.values())

    def __contains__(self, subplan_id: object) -> bool:
        return subplan_id in self._by_id

    def __getitem__(self, subplan_id: str) -> Subplan:
        try:
            return self._by_id[subplan_id]
        except KeyError:
            raise UnknownSubplanError(subplan_id) from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Plan):
            return NotImplemented
        return (
            self._root == other._root
            and self._config == other._config
            and self._deps == other._deps
            and list(self._by_id.values()) == list(other._by_id.values())
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Plan(root={self._root!r}, nodes={len(self._by_id)}, "
            f"leaves={len(self._leaves)}, depth={self.depth})"
        )

    def children(self, subplan_id: str) -> tuple[Subplan, ...]:
        """The children of a node, in order.

        Raises:
            UnknownSubplanError: no such id.
        """
        return tuple(self._by_id[c] for c in self[subplan_id].children)

    def parent(self, subplan_id: str) -> Subplan | None:
        """The parent of a node, ``None`` for the root.

        Raises:
            UnknownSubplanError: no such id.
        """
        parent = self[subplan_id].parent
        return None if parent is None else self._by_id[parent]

    def ancestors(self, subplan_id: str) -> tuple[Subplan, ...]:
        """The ancestors of a node, nearest first, ending with the root."""
        out: list[Subplan] = []
        parent = self[subplan_id].parent
        while parent is not None:
            node = self._by_id[parent]
            out.append(node)
            parent = node.parent
        return tuple(out)

    def subtree(self, subplan_id: str) -> tuple[Subplan, ...]:
        """A node and all its descendants, in pre-order."""
        out: list[Subplan] = []
        stack = [self[subplan_id]]
        while stack:
            node = stack.pop()
            out.append(node)
            stack.extend(self._by_id[c] for c in reversed(node.children))
        return tuple(out)

    def leaves_under(self, subplan_id: str) -> tuple[Subplan, ...]:
        """The leaves of a node's subtree, in plan order."""
        return tuple(n for n in self.subtree(subplan_id) if n.is_leaf)

    def leaf_for(self, path: str) -> Subplan:
        """The leaf that holds ``path``.

        Raises:
            UnknownSubplanError: no leaf holds the path.
        """
        if self._leaf_of is None:
            self._leaf_of = {f: leaf.id for leaf in self._leaves for f in leaf.files}
        try:
            return self._by_id[self._leaf_of[path]]
        except KeyError:
            raise UnknownSubplanError(path) from None

    def levels(self) -> tuple[tuple[Subplan, ...], ...]:
        """The nodes grouped by depth, each level in plan order."""
        out: list[list[Subplan]] = [[] for _ in range(self.depth + 1)]
        for node in self._by_id.values():
            out[node.depth].append(node)
        return tuple(tuple(level) for level in out)

    # -- invariants ------------------------------------------------------------------

    def problems(self) -> list[str]:
        """Every broken invariant, as one-line descriptions (empty when the plan is valid)."""
        cfg = self._config
        out: list[str] = []
        by_id = self._by_id
        root = self.root
        if root.parent is not None:
            out.append(f"root {root.id} has parent {root.parent}")
        if root.depth != 0:
            out.append(f"root {root.id} has depth {root.depth}, expected 0")
        for node in by_id.values():
            where = f"subplan {node.id} ({node.label})"
            if not _ID_RE.match(node.id):
                out.append(f"{where}: id is not of the form sp-<16 hex digits>")
            if not node.files:
                out.append(f"{where}: holds no files")
                continue
            if list(node.files) != sorted(set(node.files), key=path_sort_key):
                out.append(f"{where}: files are not sorted and unique")
            if node.id != subplan_id(node.files):
                out.append(f"{where}: id does not match its files")
            if node.depth > cfg.max_depth:
                out.append(f"{where}: depth {node.depth} exceeds max_depth {cfg.max_depth}")
            if node.tokens < 0:
                out.append(f"{where}: negative tokens")
            for child_id in node.children:
                child = by_id[child_id]
                if child.parent != node.id:
                    out.append(f"{where}: child {child_id} names parent {child.parent}")
                if child.depth != node.depth + 1:
                    out.append(f"{where}: child {child_id} has depth {child.depth}")
            if node.parent is not None:
                parent = by_id.get(node.parent)
                if parent is None or node.id not in parent.children:
                    out.append(f"{where}: parent {node.parent} does not list it as a child")
            if node.is_leaf:
                out.extend(self._leaf_problems(node, where))
            else:
                out.extend(self._internal_problems(node, where))
        if self._deps is not None:
            leaf_ids = {leaf.id for leaf in self._leaves}
            for dependant, prerequisites in self._deps.items():
                for node_id in (dependant, *prerequisites):
                    if node_id not in leaf_ids:
                        out.append(f"dependency on or of {node_id}, which is not a leaf")
                if dependant in prerequisites:
                    out.append(f"leaf {dependant} depends on itself")
            if not out:
                try:
                    _waves(self._leaves, self._deps)
                except PlanError as exc:
                    out.append(str(exc))
        for path in root.files:
            try:
                if normalize_path(path) != path:
                    out.append(f"path {path!r} is not normalized")
            except InputError as exc:
                out.append(str(exc))
        return out

    def _leaf_problems(self, node: Subplan, where: str) -> list[str]:
        cfg = self._config
        reason = node.leaf_reason
        n, tokens = node.file_count, node.tokens
        if reason is None:
            return [f"{where}: leaf without a leaf_reason"]
        if reason not in LEAF_REASONS:
            return [f"{where}: unknown leaf_reason {reason!r}"]
        # The reasons are tried in order; the recorded one must be the first that holds.
        if reason == "below_min_files":
            ok = n < cfg.min_files
        elif reason == "oversized_file":
            ok = n == 1 and cfg.has_budget and not cfg.fits_budget(n, tokens)
        elif reason == "fits_budget":
            ok = n >= cfg.min_files and cfg.fits_budget(n, tokens)
        elif reason == "max_depth":
            ok = (
                n >= cfg.min_files
                and not cfg.fits_budget(n, tokens)
                and node.depth == cfg.max_depth
            )
        else:
            ok = (
                n >= cfg.min_files and not cfg.fits_budget(n, tokens) and node.depth < cfg.max_depth
            )
        return [] if ok else [f"{where}: leaf_reason {reason} does not hold"]

    def _internal_problems(self, node: Subplan, where: str) -> list[str]:
        cfg = self._config
        out: list[str] = []
        if node.leaf_reason is not None:
            out.append(f"{where}: internal node with leaf_reason {node.leaf_reason}")
        if len(node.children) < 2:
            out.append(f"{where}: internal node with {len(node.children)} child(ren)")
        # With a budget, a node over it is split whatever min_files says (a hard bound).
        if node.file_count < cfg.min_files and not cfg.has_budget:
            out.append(f"{where}: split although below min_files")
        if cfg.fits_budget(node.file_count, node.tokens):
            out.append(f"{where}: split although it fits the budget")
        children = [self._by_id[c] for c in node.children]
        seen: set[str] = set()
        for child in children:
            overlap = seen.intersection(child.files)
            if overlap:
                out.append(f"{where}: children share {sorted(overlap)[0]!r}")
            seen.update(child.files)
        if seen != set(node.files):
            out.append(f"{where}: children's files are not exactly its files")
        if sum(c.tokens for c in children) != node.tokens:
            out.append(f"{where}: tokens are not the sum of its children's")
        return out

    def validate(self) -> None:
        """Check every invariant of a plan.

        Checked: one root at depth 0; exact parent/child links and depths; every internal
        node split into at least two children whose files partition its own; leaves carry
        the first leaf reason that holds; depth within ``max_depth``; tokens add up; files
        sorted, unique and normalized; ids derived from the files.

        Raises:
            PlanError: with ``.problems`` listing everything that is wrong.
        """
        problems = self.problems()
        if problems:
            raise PlanError(problems)

    # -- JSON --------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The JSON form as Python objects (schema ``subplan.plan/1``)."""
        out: dict[str, Any] = {
            "schema": PLAN_SCHEMA,
            "config": self._config.to_dict(),
            "root": self._root,
            "nodes": [n.to_dict() for n in self._by_id.values()],
        }
        if self._deps is not None:
            # Additive keys: readers of plans without them see the same document as before.
            out["dependencies"] = {k: list(v) for k, v in self._deps.items()}
            out["waves"] = [list(wave) for wave in self.waves()]
        return out

    def to_json(self, *, indent: int | None = None) -> str:
        """The JSON form as text; the same plan always gives the same bytes."""
        return json.dumps(self.to_dict(), indent=indent, ensure_ascii=False) + "\n"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Plan:
        """Rebuild a plan from :meth:`to_dict` output.

        Raises:
            PlanError: the document is not a ``subplan.plan/1`` plan, or it breaks an invariant.
        """
        try:
            return cls._from_dict(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            if isinstance(exc, PlanError):
                raise
            raise PlanError(f"malformed plan document: {type(exc).__name__}: {exc}") from None

    @classmethod
    def _from_dict(cls, data: Mapping[str, Any]) -> Plan:
        if not isinstance(data, Mapping):
            raise PlanError("a plan document must be a JSON object")
        schema = data.get("schema")
        if schema != PLAN_SCHEMA:
            raise PlanError(f"unsupported plan schema {schema!r}, expected {PLAN_SCHEMA!r}")
        config = PlanConfig(**dict(data["config"]))
        raw_nodes: Sequence[Mapping[str, Any]] = data["nodes"]
        raw_by_id = {str(n["id"]): n for n in raw_nodes}
        if len(raw_by_id) != len(raw_nodes):
            raise PlanError("duplicate subplan ids in the plan document")
        files_of: dict[str, tuple[str, ...]] = {}

        def files(node_id: str, trail: frozenset[str]) -> tuple[str, ...]:
            if node_id in files_of:
                return files_of[node_id]
            if node_id in trail:
                raise PlanError(f"subplan {node_id} is its own descendant")
            raw = raw_by_id.get(node_id)
            if raw is None:
                raise PlanError(f"child {node_id} is not among the nodes")
            if raw["children"]:
                merged: list[str] = []
                for child in raw["children"]:
                    merged.extend(files(str(child), trail | {node_id}))
                result = tuple(sorted(merged, key=path_sort_key))
            else:
                result = tuple(str(f) for f in raw["files"])
            files_of[node_id] = result
            return result

        nodes = []
        for raw in raw_nodes:
            node_id = str(raw["id"])
            node_files = files(node_id, frozenset())
            if int(raw["file_count"]) != len(node_files):
                raise PlanError(f"subplan {node_id}: file_count does not match its files")
            reason = raw["leaf_reason"]
            if reason is not None and reason not in LEAF_REASONS:
                raise PlanError(f"subplan {node_id}: unknown leaf_reason {reason!r}")
            nodes.append(
                Subplan(
                    id=node_id,
                    parent=None if raw["parent"] is None else str(raw["parent"]),
                    children=tuple(str(c) for c in raw["children"]),
                    depth=int(raw["depth"]),
                    label=str(raw["label"]),
                    files=node_files,
                    tokens=int(raw["tokens"]),
                    leaf_reason=reason,
                )
            )
        raw_deps = data.get("dependencies")
        deps: dict[str, list[str]] | None = None
        if raw_deps is not None:
            if not isinstance(raw_deps, Mapping):
                raise PlanError("dependencies must be a JSON object")
            deps = {str(k): [str(x) for x in v] for k, v in raw_deps.items()}
        plan = cls(nodes, config=config, root=str(data["root"]), dependencies=deps)
        plan.validate()
        return plan

    @classmethod
    def from_json(cls, text: str | bytes) -> Plan:
        """Parse and validate a plan from its JSON form.

        Raises:
            PlanError: the text is not JSON, not a plan, or the plan breaks an invariant.
        """
        try:
            data = json.loads(text)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise PlanError(f"plan is not valid JSON: {exc}") from None
        return cls.from_dict(data)
