"""The plan's tree while it is built, and the pass that merges its small leaves.

A plan split level by level leaves small leaves behind: the last chunk of a directory,
a package beside a larger sibling, a group that had to be a child so that its parent
split in two. Under ``cuts="full"`` (the default), :func:`merge_small_leaves` merges each
leaf under half the budget with the leaf it is most tied to by imports (across
directories too; without a graph, no leaf is), else its nearest leaf in the tree,
whenever the two fit the budget together, and then reshapes the tree around the merged
leaves.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .._model import PlanConfig
from ._strategies import (
    Graph,
    Group,
    Runs,
    Sorted,
    budget_bounds,
    cluster_of,
    common_dir,
    count_of,
    merge_runs,
    owners,
)

__all__ = ["Node", "merge_small_leaves"]

# How many leaves on each side, in plan order, a small leaf without ties may merge with.
_NEAR = 2


@dataclass(slots=True, eq=False)
class Node:
    """One node of the tree being built: its files as runs, its place and its label."""

    runs: Runs
    parent: Node | None
    depth: int
    label: str
    # Small groups carried down from the parent to fill this node's leaves, and the runs
    # of the node's own files without them (None when nothing was carried).
    carried: tuple[Group, ...] = ()
    own: Runs | None = None
    children: list[Node] = field(default_factory=list)
    # The node's paths and id, filled once the tree is final (see decompose_levels).
    files: tuple[str, ...] | None = None
    id: str = ""


def merge_small_leaves(root: Node, data: Sorted, cfg: PlanConfig, graph: Graph) -> Node:
    """Merge leaves under half the budget into others they fit with; reshape the tree.

    Each leaf under half the budget (in files and tokens, whichever are set) is paired
    with every leaf its files share import edges with and with its nearest leaves in plan
    order. Pairs are taken the most edges first, then the deepest common ancestor, then
    the nearest; two leaves merge when one of them is still under half the budget and
    together they fit. A merged leaf hangs from the deepest common ancestor of the
    leaves it joins. Then, bottom up, a node left with no child goes, a node with one
    child is replaced by it, and a node that now fits the budget becomes a leaf.

    Args:
        root: the tree, built; it is changed in place.
        data: the sorted input.
        cfg: the budget (a hard bound: no merge breaks it).
        graph: the dependency graph over input indices.

    Returns:
        The root of the reshaped tree (the old root, or the one node that replaced it).

    Notes:
        O(files + edges + leaves x log leaves), deterministic: the result depends on the
        tree and the graph only.
    """
    # The leaves in plan order, each with the chain of nodes above it (the root first):
    # siblings share one chain, so a leaf costs no list of its own.
    leaves: list[Node] = []
    chains: list[tuple[Node, ...]] = []
    stack: list[tuple[Node, tuple[Node, ...]]] = [(root, ())]
    while stack:
        node, above = stack.pop()
        if node.children:
            below = (*above, node)
            stack.extend([(child, below) for child in reversed(node.children)])
        else:
            leaves.append(node)
            chains.append(above)
    if len(leaves) < 2:
        return root
    counts = [count_of(leaf.runs) for leaf in leaves]
    tokens = [data.tokens_of(leaf.runs) for leaf in leaves]

    # The budget as two bounds read once (the loops below test them often); a leaf is
    # small while 2 * its tokens < most_tokens and 2 * its files < most_files.
    most_files, most_tokens = budget_bounds(cfg, len(data.paths), data.cumulative[-1])

    # The leaf of every file, when there are edges to follow.
    owner = owners([leaf.runs for leaf in leaves], len(data.paths)) if graph.linked else []

    def shared(a: int, b: int) -> int:
        x, y = chains[a], chains[b]
        if x is y:  # siblings
            return len(x)
        depth = 0
        for p, q in zip(x, y, strict=False):
            if p is not q:
                break
            depth += 1
        return depth

    last = len(leaves) - 1
    small = [
        a for a in range(len(leaves)) if 2 * tokens[a] < most_tokens and 2 * counts[a] < most_files
    ]
    # Each small leaf with its nearest leaves in plan order, and with every leaf its
    # files share edges with (counted).
    near = {(a, b) for a in small for b in range(a + 1, min(last, a + _NEAR) + 1)}
    near.update((b, a) for a in small for b in range(max(0, a - _NEAR), a))
    ties: dict[tuple[int, int], int] = {}
    for a in small if owner else ():
        for i in graph.linked_in(leaves[a].runs):
            for b in [owner[j] for j in graph.neighbours[i]]:
                if b != a:
                    key = (a, b) if a < b else (b, a)
                    ties[key] = ties.get(key, 0) + 1
    near.update(ties)
    # Sorted as tuples (no key function): the most edges, the deepest common ancestor,
    # the nearest, then the pair itself.
    tie = ties.get
    order = sorted([(-tie((a, b), 0), -shared(a, b), b - a, a, b) for a, b in near])
    root_of = list(range(len(leaves)))

    def find(x: int) -> int:
        while root_of[x] != x:
            root_of[x] = root_of[root_of[x]]
            x = root_of[x]
        return x

    merged_any = False
    for _, _, _, a, b in order:
        x = a if root_of[a] == a else find(a)
        y = b if root_of[b] == b else find(b)
        if x == y:
            continue
        count, size = counts[x] + counts[y], tokens[x] + tokens[y]
        if count > most_files or size > most_tokens:
            continue  # they do not fit together
        if (2 * tokens[x] >= most_tokens or 2 * counts[x] >= most_files) and (
            2 * tokens[y] >= most_tokens or 2 * counts[y] >= most_files
        ):
            continue  # neither is small any more
        x, y = min(x, y), max(x, y)
        root_of[y] = x
        counts[x] += counts[y]
        tokens[x] += tokens[y]
        merged_any = True
    if not merged_any:
        return root
    members: dict[int, list[int]] = {}
    for k in range(len(leaves)):
        members.setdefault(find(k), []).append(k)
    # The nodes above a merged leaf: only they can lose files or children.
    dirty: set[int] = set()
    for ks in members.values():
        if len(ks) < 2:
            continue
        for k in ks:
            dirty.update(map(id, chains[k]))
        parts = [leaves[k] for k in ks]
        # Every chain starts at the root: the deepest ancestor all of them share.
        home = chains[ks[0]][min(shared(ks[0], k) for k in ks[1:]) - 1]
        for part in parts:
            parent = part.parent
            assert parent is not None
            parent.children.remove(part)
            if not parent.children:
                parent.runs = []  # emptied, not a leaf: _reshape drops it
        # The common directory needs only the first and the last file.
        span = [(min(p.runs[0][0] for p in parts), max(p.runs[-1][1] for p in parts))]
        cluster = cluster_of(parts, common_dir(data, span))
        home.children.append(Node(cluster.runs, home, home.depth + 1, cluster.label))
    reshaped = _reshape(root, data, cfg, dirty)
    assert reshaped is not None  # the files are all still there
    reshaped.parent = None
    _renumber(reshaped)
    return reshaped


def _reshape(node: Node, data: Sorted, cfg: PlanConfig, dirty: set[int]) -> Node | None:
    """``node`` after its children lost or gained leaves: gone, replaced, or a leaf
    (``dirty``: the ids of the nodes that may have; the others are kept as they are)."""
    if not node.children:
        return node if node.runs else None
    if id(node) not in dirty:
        return node
    kept: list[Node] = []
    for child in node.children:
        found = _reshape(child, data, cfg, dirty)
        if found is not None:
            found.parent = node
            kept.append(found)
    if not kept:
        return None
    if len(kept) == 1:
        return kept[0]
    kept.sort(key=lambda c: c.runs[0][0])
    node.children = kept
    node.runs = merge_runs([c.runs for c in kept])
    if cfg.fits_budget(count_of(node.runs), data.tokens_of(node.runs)):
        node.children = []
    return node


def _renumber(root: Node) -> None:
    stack = [(root, 0)]
    while stack:
        node, depth = stack.pop()
        node.depth = depth
        for child in node.children:
            child.parent = node
            stack.append((child, depth + 1))
