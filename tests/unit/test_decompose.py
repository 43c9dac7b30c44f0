"""Decomposition: leaf rules, strategies, packing, the guard, budgets, and regressions.

Each regression check is also run against deliberately broken code, to prove it can fail.
"""

from __future__ import annotations

from collections.abc import Sequence

import networkx as nx
import pytest

from subplan import ConfigError, FileEntry, InputError, PlanConfig, decompose, decompose_levels
from subplan._decompose import _builder, _strategies
from subplan._decompose._strategies import Cluster, Runs, Sorted, Strategy

# A ~40-file project over 3 directory levels.
SMALL_PROJECT = [
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


def large_project() -> list[str]:
    """A deep tree: 4 branches per directory, 5 directory levels, 6 files per directory."""
    files: list[str] = []
    dirs = [""]
    for _ in range(6):
        files.extend(f"{d}f{i}.c" for d in dirs for i in range(6))
        dirs = [f"{d}d{b}/" for d in dirs for b in range(4)]
    return files


FLAT = [f"data/file{i:03d}.txt" for i in range(50)]


def depth_of(files: Sequence[str], **options: int) -> int:
    """The depth the decomposer reaches, from the levels it yields (no validation)."""
    return len(list(decompose_levels(files, **options))) - 1  # type: ignore[arg-type]


# -- the three regressions, each shown to fail against broken code --------------------


def broken_guard_split(
    data: Sorted,
    node: _builder._Pending,
    tokens: int,
    cfg: PlanConfig,
    strategies: Sequence[Strategy],
) -> list[Cluster] | None:
    """A builder without the non-progress guard: one cluster counts as a split."""
    for strategy in strategies:
        clusters = [c for c in strategy(data, node.runs, tokens, cfg) if c.runs]
        if clusters:
            return clusters
    return [Cluster(node.runs, node.label)]


def broken_pack(
    groups: Sequence[tuple[Runs, str]], min_files: int, merged_label: object
) -> list[Cluster]:
    """Packing that lumps every group together: no directory split ever makes progress."""
    merged = sorted(i for runs, _ in groups for i in _strategies.indices(runs))
    return [Cluster(_strategies.runs_of(merged), "all")]


def test_a_small_project_stays_shallow() -> None:
    plan = decompose(SMALL_PROJECT)
    assert 40 == len(SMALL_PROJECT)
    assert plan.depth <= 2
    assert depth_of(SMALL_PROJECT) <= 2


def test_the_shallow_check_fails_without_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_builder, "_split", broken_guard_split)
    assert depth_of(SMALL_PROJECT) > 2


def test_a_large_project_goes_deep() -> None:
    files = large_project()
    plan = decompose(files)
    assert len(files) > 5000
    assert plan.depth >= 4
    plan.validate()


def test_the_deep_check_fails_when_splits_make_no_progress(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_strategies, "pack", broken_pack)
    assert depth_of(large_project()) < 4


def test_an_unsplittable_set_stops_with_no_progress() -> None:
    plan = decompose(FLAT)
    assert plan.depth == 0
    assert plan.root.leaf_reason == "no_progress"
    assert depth_of(FLAT) == 0


def test_the_no_progress_check_fails_without_the_guard(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_builder, "_split", broken_guard_split)
    # Without the guard the same files recurse until max_depth.
    assert depth_of(FLAT) == 6


# -- leaf rules, in order ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"min_files": 51}, "below_min_files"),
        ({"max_files": 50}, "fits_budget"),
        ({"max_tokens": 10**6}, "fits_budget"),
        ({"max_depth": 0}, "max_depth"),
        ({}, "no_progress"),
    ],
)
def test_the_first_leaf_rule_that_holds_is_recorded(options: dict[str, int], reason: str) -> None:
    assert reason == decompose(FLAT, **options).root.leaf_reason  # type: ignore[arg-type]


def test_below_min_files_wins_over_a_budget() -> None:
    assert "below_min_files" == decompose(["a", "b"], max_files=1).root.leaf_reason


def test_config_object_overrides_keywords() -> None:
    plan = decompose(FLAT, min_files=1, config=PlanConfig(max_depth=0))
    assert plan.config == PlanConfig(max_depth=0)
    assert plan.root.leaf_reason == "max_depth"


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="min_files must be >= 1"):
        decompose(FLAT, min_files=0)


# -- directory strategy and packing --------------------------------------------------------


def test_directory_split_collapses_the_common_prefix() -> None:
    files = [f"repo/src/{d}/{f}.py" for d in "abc" for f in "xyz"]
    plan = decompose(files)
    assert plan.root.label == "repo/src"
    assert ["repo/src/a", "repo/src/b", "repo/src/c"] == [
        c.label for c in plan.children(plan.root.id)
    ]


def test_loose_files_form_one_cluster_labelled_star() -> None:
    plan = decompose(["x.py", "y.py", "z.py", "a/1", "a/2", "a/3"])
    assert ["a", "*"] == [c.label for c in plan.children(plan.root.id)]


def test_small_directories_are_packed_not_singletons() -> None:
    files = [f"d{i}/f.py" for i in range(7)] + [f"big/{i}" for i in range(5)]
    plan = decompose(files)
    children = plan.children(plan.root.id)
    sizes = sorted(c.file_count for c in children)
    # seven one-file directories become two packs (3 and 4 files), not seven leaves
    assert [3, 4, 5] == sizes
    labels = {c.label for c in children}
    assert "{d0,d1,d2}" in labels
    assert "{d3,d4,d5,...}" in labels


def test_a_lone_small_cluster_stays_on_its_own() -> None:
    plan = decompose(["README.md", *[f"src/{d}/{i}.py" for d in "ab" for i in range(3)]])
    assert ["*", "src"] == sorted(c.label for c in plan.children(plan.root.id))
    src = next(c for c in plan.children(plan.root.id) if c.label == "src")
    assert not src.is_leaf  # README was not merged into src, so src still splits


def test_min_files_one_never_packs() -> None:
    plan = decompose([f"d{i}/f.py" for i in range(4)], min_files=1)
    assert 4 == len(plan.root.children)


# -- import graph ------------------------------------------------------------------------------


def test_import_graph_splits_a_flat_directory_by_communities() -> None:
    left = [f"pkg/l{i}.py" for i in range(4)]
    right = [f"pkg/r{i}.py" for i in range(4)]
    graph = nx.DiGraph()
    graph.add_edges_from((a, b) for a in left for b in left if a < b)
    graph.add_edges_from((a, b) for a in right for b in right if a < b)
    graph.add_edge(left[0], right[0])
    plan = decompose([*left, *right, "pkg/notes.txt"], import_graph=graph)
    groups = sorted(sorted(c.files) for c in plan.children(plan.root.id))
    assert [*left, "pkg/notes.txt"] in groups or sorted(left) in groups
    assert any(set(g) == set(right) for g in groups)
    assert all("[imports" in c.label for c in plan.children(plan.root.id))
    plan.validate()


def test_without_edges_inside_the_node_imports_make_no_progress() -> None:
    graph = nx.DiGraph()
    graph.add_edge("elsewhere/a.py", "elsewhere/b.py")
    plan = decompose(FLAT, import_graph=graph)
    assert plan.root.leaf_reason == "no_progress"


def test_import_communities_are_seeded() -> None:
    files = [f"m/{i}.py" for i in range(30)]
    graph = nx.gnm_random_graph(30, 60, seed=1, directed=True)
    graph = nx.relabel_nodes(graph, {i: files[i] for i in range(30)})
    assert decompose(files, import_graph=graph, seed=3).to_json() == (
        decompose(files, import_graph=graph, seed=3).to_json()
    )


# -- budgets ---------------------------------------------------------------------------------


def test_max_files_chunks_a_flat_directory_within_the_budget() -> None:
    plan = decompose(FLAT, max_files=8)
    assert all(leaf.file_count <= 8 for leaf in plan.leaves)
    assert all(leaf.leaf_reason == "fits_budget" for leaf in plan.leaves)
    sizes = [leaf.file_count for leaf in plan.leaves]
    assert max(sizes) - min(sizes) <= 1  # balanced
    assert [leaf.files for leaf in plan.leaves] == sorted(leaf.files for leaf in plan.leaves)
    assert plan.leaves[0].label == "data [chunk 1/7]"


def test_max_tokens_chunks_by_tokens() -> None:
    entries = [FileEntry(f"flat/{i:02d}", size=400) for i in range(20)]  # 100 tokens each
    plan = decompose(entries, max_tokens=350)
    assert all(leaf.tokens <= 350 for leaf in plan.leaves)
    assert plan.root.tokens == 2000


def test_a_file_over_the_token_budget_gets_a_leaf_alone() -> None:
    entries = [FileEntry("f/huge", size=40_000), *(FileEntry(f"f/s{i}", 4) for i in range(5))]
    plan = decompose(entries, max_tokens=100, min_files=1)
    huge = plan.leaf_for("f/huge")
    assert huge.files == ("f/huge",)
    assert huge.leaf_reason == "no_progress"
    plan.validate()


def test_budget_prefers_directories_before_chunks() -> None:
    files = [f"{d}/{i}" for d in "ab" for i in range(10)]
    plan = decompose(files, max_files=10)
    assert ["a", "b"] == [c.label for c in plan.children(plan.root.id)]


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("files", "message"),
    [
        ([], "no files to decompose"),
        (["a", "a"], "duplicate path 'a'"),
        (["a", "./a"], "duplicate path 'a'"),
        (["a/b", "a"], "path 'a' is both a file and a directory"),
        (["/abs"], "must be relative"),
        (["x/../../y"], "leaves the project root"),
        ([b"bytes"], "expected a path or a FileEntry, got bytes"),
    ],
)
def test_bad_input_is_an_input_error(files: list[object], message: str) -> None:
    with pytest.raises(InputError, match=message):
        decompose(files)  # type: ignore[arg-type]


def test_paths_are_normalized() -> None:
    plan = decompose(["./a//b", "c/./d", "e/"])
    assert ("a/b", "c/d", "e") == plan.files


def test_file_entries_are_normalized_with_their_tokens() -> None:
    plan = decompose([FileEntry("./x", 40), FileEntry("y", 4)])
    assert plan.root.tokens == 11
    assert ("x", "y") == plan.files
