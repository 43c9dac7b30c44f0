"""Text renderings for people: the plan tree."""

from __future__ import annotations

from ._model import Plan, Subplan

__all__ = ["human_count", "render_tree"]


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
    return "\n".join(lines) + "\n"
