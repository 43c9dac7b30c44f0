"""Steps that drive the decomposer through the Python API."""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

import networkx as nx
from behave import given, register_type, then, when

from subplan import FileEntry, PlanConfig, decompose


def parse_options(text: str) -> PlanConfig:
    """``defaults`` or ``max_files 50, min_files 2, cuts stable`` -> a PlanConfig."""
    if text.strip() == "defaults":
        return PlanConfig()
    options: dict[str, Any] = {}
    for item in text.split(","):
        name, value = item.split()
        options[name] = value if name == "cuts" else int(value)
    return PlanConfig(**options)


parse_options.pattern = r"defaults|(?:\w+ -?\w+)(?:, \w+ -?\w+)*"  # type: ignore[attr-defined]
register_type(Options=parse_options)


def small_project() -> list[str]:
    return [
        "README.md",
        "pyproject.toml",
        "setup.cfg",
        *[f"src/app/m{i}.py" for i in range(8)],
        *[f"src/app/core/c{i}.py" for i in range(6)],
        *[f"src/app/util/u{i}.py" for i in range(5)],
        *[f"tests/unit/t{i}.py" for i in range(8)],
        *[f"tests/integration/i{i}.py" for i in range(4)],
        *[f"docs/d{i}.md" for i in range(6)],
    ]


@given("a project with 40 files over 3 directory levels")
def step_small_project(context: Any) -> None:
    context.files = [FileEntry(p) for p in small_project()]
    context.graph = None


LARGE = (
    "a project of {per_dir:d} files of {size:d} bytes per directory, {fanout:d} subdirectories "
    "each, {levels:d} levels deep"
)


@given(LARGE)
def step_large_project(context: Any, per_dir: int, size: int, fanout: int, levels: int) -> None:
    paths: list[str] = []
    dirs = [""]
    for _ in range(levels + 1):
        paths.extend(f"{d}f{i}.c" for d in dirs for i in range(per_dir))
        dirs = [f"{d}d{b}/" for d in dirs for b in range(fanout)]
    context.files = [FileEntry(p, size) for p in paths]
    context.graph = None


@given("a flat directory of {count:d} files")
def step_flat(context: Any, count: int) -> None:
    context.files = [FileEntry(f"data/f{i:04d}.txt") for i in range(count)]
    context.graph = None


@given("a flat directory of {count:d} files of {size:d} bytes each")
def step_flat_sized(context: Any, count: int, size: int) -> None:
    context.files = [FileEntry(f"data/f{i:04d}.txt", size) for i in range(count)]
    context.graph = None


@given("a project with these files:")
def step_files_table(context: Any) -> None:
    context.files = [FileEntry(row["path"]) for row in context.table]
    context.graph = None


@given(
    "a flat directory where {a:d} files import each other and {b:d} other files import each other"
)
def step_import_groups(context: Any, a: int, b: int) -> None:
    left = [f"pkg/left{i}.py" for i in range(a)]
    right = [f"pkg/right{i}.py" for i in range(b)]
    graph = nx.DiGraph()
    for group in (left, right):
        graph.add_edges_from((x, y) for x in group for y in group if x != y)
    context.groups = [left, right]
    context.files = [FileEntry(p) for p in left + right]
    context.graph = graph


@given("the project is decomposed with {options:Options}")
@when("the project is decomposed with {options:Options}")
def step_decompose(context: Any, options: PlanConfig) -> None:
    context.plan_config = options
    context.plan = decompose(context.files, config=options, import_graph=context.graph)


@when('{count:d} files are added under "{directory}" and the project is decomposed again')
def step_add_and_redecompose(context: Any, count: int, directory: str) -> None:
    context.before = context.plan
    added = [FileEntry(f"{directory}/new{i}.md") for i in range(count)]
    context.files = [*context.files, *added]
    context.plan = decompose(context.files, config=context.plan_config, import_graph=context.graph)


@when('"{path}" grows to {size:d} bytes and the project is decomposed again')
def step_grow_and_redecompose(context: Any, path: str, size: int) -> None:
    context.before = context.plan
    context.files = [FileEntry(path, size) if f.path == path else f for f in context.files]
    context.plan = decompose(context.files, config=context.plan_config, import_graph=context.graph)


@when('"{path}" is added and the project is decomposed again')
def step_add_one_and_redecompose(context: Any, path: str) -> None:
    context.before = context.plan
    context.files = [*context.files, FileEntry(path, 4000)]
    context.plan = decompose(context.files, config=context.plan_config, import_graph=context.graph)


@when("the project is decomposed twice, the second time with its files shuffled")
def step_twice(context: Any) -> None:
    shuffled = list(context.files)
    random.Random(7).shuffle(shuffled)
    context.texts = [decompose(context.files).to_json(), decompose(shuffled).to_json()]


@then("every file is in exactly one leaf")
def step_partition(context: Any) -> None:
    counts = Counter(f for leaf in context.plan.leaves for f in leaf.files)
    assert sorted(counts) == sorted(e.path for e in context.files)
    assert set(counts.values()) == {1}
    context.plan.validate()


@then("the plan is at most {depth:d} levels deep")
def step_at_most(context: Any, depth: int) -> None:
    assert context.plan.depth <= depth, context.plan.depth


@then("the plan is at least {depth:d} levels deep")
def step_at_least(context: Any, depth: int) -> None:
    assert context.plan.depth >= depth, context.plan.depth


@then('the whole project is one subplan, left whole because of "{reason}"')
def step_root_leaf(context: Any, reason: str) -> None:
    assert len(context.plan) == 1
    assert reason == context.plan.root.leaf_reason


@then("no subplan holds more than {files:d} files or {tokens:d} tokens")
def step_budget(context: Any, files: int, tokens: int) -> None:
    for leaf in context.plan.leaves:
        assert leaf.file_count <= files, leaf
        assert leaf.tokens <= tokens, leaf


@then("the top level has these subplans:")
def step_top_level(context: Any) -> None:
    expected = sorted((row["label"], int(row["files"])) for row in context.table)
    children = context.plan.children(context.plan.root.id)
    assert expected == sorted((c.label, c.file_count) for c in children)


@then("each group of files that import each other is in one subplan")
def step_groups_together(context: Any) -> None:
    for group in context.groups:
        holders = {context.plan.leaf_for(path).id for path in group}
        assert len(holders) == 1, holders


@then('the subplans under "{first}" and "{second}" keep their ids')
def step_kept(context: Any, first: str, second: str) -> None:
    for prefix in (first, second):
        before = {n.id for n in context.before if all(f.startswith(prefix + "/") for f in n.files)}
        assert before
        after = {n.id for n in context.plan}
        assert before <= after, before - after


@then("both plans are identical, byte for byte")
def step_identical(context: Any) -> None:
    first, second = context.texts
    assert first == second


@then("there are {count:d} leaves")
def step_leaf_count(context: Any, count: int) -> None:
    assert count == len(context.plan.leaves), len(context.plan.leaves)


@then("there are between {low:d} and {high:d} leaves")
def step_leaf_count_between(context: Any, low: int, high: int) -> None:
    assert low <= len(context.plan.leaves) <= high, len(context.plan.leaves)


@then("at most {count:d} leaf of the first plan is cut differently")
@then("at most {count:d} leaves of the first plan are cut differently")
def step_changed_leaves(context: Any, count: int) -> None:
    before = {frozenset(leaf.files) for leaf in context.before.leaves}
    after = {frozenset(leaf.files) for leaf in context.plan.leaves}
    assert len(before - after) <= count, before - after


@then("no leaf of two or more files holds more than {tokens:d} tokens")
def step_hard_budget(context: Any, tokens: int) -> None:
    over = [
        leaf.label for leaf in context.plan.leaves if leaf.file_count > 1 and leaf.tokens > tokens
    ]
    assert [] == over, over


@then('the leaf holding "{path}" is a new subplan')
def step_new_leaf(context: Any, path: str) -> None:
    assert context.plan.leaf_for(path).id not in context.before
