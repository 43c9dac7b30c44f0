"""Text renderings for people: the plan tree."""

from __future__ import annotations

from ._model import Plan, PlanStatistics, Subplan

__all__ = ["human_count", "render_stats", "render_tree", "render_waves"]

_WAVE_LABELS = 4


def human_count(value: int) -> str:
    """``1234`` -> ``1.2k``, ``53000`` -> ``53k``, ``2500000`` -> ``2.5M``."""
    for limit, suffix in ((1_000_000_000, "G"), (1_000_000, "M"), (1_000, "k")):
        if value >= limit:
            scaled = value / limit
            return f"{scaled:.1f}{suffix}" if scaled < 10 else f"{scaled:.0f}{suffix}"
    return str(value)


def _line(node: Subplan) -> str:
    noun = "file" if node.file_count == 1 else "files"
    text = f"{node.label}  {node.file_count} {noun}, {human_count(node.tokens)} tokens"
    if node.leaf_reason is not None:
        text += f"  [{node.leaf_reason}]"
    return f"{text}  {node.id}"


def render_tree(plan: Plan) -> str:
    """The plan as an indented tree: label, counts, leaf reason and id per node.

    Example:
        >>> from subplan import decompose
        >>> files = ["a/1", "a/2", "a/3", "b/1", "b/2", "b/3"]
        >>> print(render_tree(decompose(files, max_files=3)), end="")
        plan: 6 files, 2 leaves, depth 1 (min_files 3, max_depth 6, max_files 3)
        .  6 files, 0 tokens  sp-131a2a7bde9ee165
        ├── a  3 files, 0 tokens  [fits_budget]  sp-fb399d6812674832
        └── b  3 files, 0 tokens  [fits_budget]  sp-31d6680cd44e0fa5
    """
    cfg = plan.config
    budget = ""
    if cfg.max_files is not None:
        budget += f", max_files {cfg.max_files}"
    if cfg.max_tokens is not None:
        budget += f", max_tokens {cfg.max_tokens}"
    if cfg.cuts != "full":
        budget += f", cuts {cfg.cuts}"
    lines = [
        f"plan: {plan.root.file_count} files, {len(plan.leaves)} leaves, depth {plan.depth} "
        f"(min_files {cfg.min_files}, max_depth {cfg.max_depth}{budget})",
        _line(plan.root),
    ]
    # Pre-order walk without recursion (plans can be deep): (node, its line's prefix,
    # the prefix its children's lines continue with).
    stack: list[tuple[Subplan, str, str]] = []

    def push_children(node: Subplan, prefix: str) -> None:
        children = plan.children(node.id)
        for n in range(len(children) - 1, -1, -1):
            last = n == len(children) - 1
            branch, cont = ("└── ", "    ") if last else ("├── ", "│   ")
            stack.append((children[n], prefix + branch, prefix + cont))

    push_children(plan.root, "")
    while stack:
        node, head, cont = stack.pop()
        lines.append(head + _line(node))
        push_children(node, cont)
    return "\n".join(lines) + "\n" + render_waves(plan)


def render_waves(plan: Plan) -> str:
    """The waves of a plan with dependencies, one line each; empty without dependencies.

    Example:
        >>> import networkx as nx
        >>> from subplan import decompose
        >>> graph = nx.DiGraph([("a/1", "b/1")])
        >>> plan = decompose(["a/1", "b/1"], max_files=1, import_graph=graph)
        >>> print(render_waves(plan), end="")
        waves: 2 (a leaf starts after the leaves it imports from)
          wave 1: 1 leaf  b
          wave 2: 1 leaf  a
    """
    if plan.dependencies is None:
        return ""
    waves = plan.waves()
    lines = [f"waves: {len(waves)} (a leaf starts after the leaves it imports from)"]
    for n, wave in enumerate(waves, start=1):
        labels = [plan[i].label for i in wave[:_WAVE_LABELS]]
        more = ", ..." if len(wave) > _WAVE_LABELS else ""
        noun = "leaf" if len(wave) == 1 else "leaves"
        lines.append(f"  wave {n}: {len(wave)} {noun}  {', '.join(labels)}{more}")
    return "\n".join(lines) + "\n"


def render_stats(stats: PlanStatistics) -> str:
    """The statistics of a plan as a few lines for people.

    Example:
        >>> from subplan import FileEntry, decompose
        >>> plan = decompose([FileEntry(f"d/{i}", 400) for i in range(10)], max_tokens=500)
        >>> print(render_stats(plan.statistics()), end="")
        stats: 2 leaves, fill 100%, largest leaf 500 tokens, 0 over budget, 0 oversized files
          small leaves (under a tenth of the budget): 0
          edges: no dependency graph; waves: 1
    """
    fill = "n/a" if stats.fill is None else f"{stats.fill:.0%}"
    first = (
        f"stats: {stats.leaves} leaves, fill {fill}, largest leaf "
        f"{human_count(stats.largest_leaf_tokens)} tokens, {stats.over_budget} over budget, "
        f"{stats.oversized_files} oversized files"
    )
    if stats.edges is None:
        second = "  edges: no dependency graph"
    else:
        share = (
            "n/a"
            if stats.intra_leaf_edge_fraction is None
            else f"{stats.intra_leaf_edge_fraction:.0%}"
        )
        second = f"  edges: {stats.edges}, {share} inside a leaf, {stats.cross_leaf_edges} across"
    small = f"  small leaves (under a tenth of the budget): {stats.small_leaves}"
    return f"{first}\n{small}\n{second}; waves: {stats.waves}\n"
