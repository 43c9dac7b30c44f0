"""Decomposition: leaf rules, strategies, packing, the guard, the hard budget, regressions.

Each regression check is also run against deliberately broken code, to prove it can fail.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import networkx as nx
import pytest

from subplan import (
    ConfigError,
    FileEntry,
    InputError,
    Plan,
    PlanConfig,
    decompose,
    decompose_levels,
)
from subplan._decompose import _builder, _strategies
from subplan._decompose._builder import DEFAULT_MAX_TOKENS
from subplan._decompose._merge import Node
from subplan._decompose._strategies import Cluster, Runs, Sorted

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


def depth_of(files: Sequence[str | FileEntry], **options: int) -> int:
    """The depth the decomposer reaches, from the levels it yields (no validation)."""
    return len(list(decompose_levels(files, **options))) - 1  # type: ignore[arg-type]


def sized(paths: Sequence[str], size: int = 4000) -> list[FileEntry]:
    """The paths as files of ``size`` bytes (1000 tokens each by default)."""
    return [FileEntry(p, size) for p in paths]


def over_budget(plan: Plan) -> list[str]:
    """Labels of leaves of two or more files over the plan's budget."""
    cfg = plan.config
    return [
        leaf.label
        for leaf in plan.leaves
        if leaf.file_count >= 2 and not cfg.fits_budget(leaf.file_count, leaf.tokens)
    ]


# -- regressions, each shown to fail against broken code ------------------------------


def giving_up_chunks(data: Sorted, runs: Runs, cfg: PlanConfig) -> list[Cluster]:
    """The old chunker: balanced by weight, giving up once there are as many chunks as files."""
    order = list(_strategies.indices(runs))
    total = sum(data.tokens[i] for i in order) or 1
    want = 2
    while True:
        chunks: list[list[int]] = [[] for _ in range(want)]
        before = 0
        for i in order:
            t = data.tokens[i]
            chunks[min(want - 1, int((before + t / 2) * want / total))].append(i)
            before += t
        chunks = [c for c in chunks if c]
        fits = all(
            len(c) == 1 or cfg.fits_budget(len(c), sum(data.tokens[i] for i in c)) for c in chunks
        )
        if fits or want >= min(len(order), 4):
            break
        want += 1
    return [Cluster(_strategies.runs_of(c), "chunk") for c in chunks]


def one_cluster_split(data: Sorted, node: Node, cfg: PlanConfig, graph: object) -> list[Cluster]:
    """A builder without the progress guard: a grouping of one counts as a split."""
    if not _strategies.directory_groups(data, node.runs):
        return [Cluster(node.runs, node.label)]
    return _real_split(data, node, cfg, graph)  # type: ignore[arg-type]


_real_split = _builder._split


def test_a_small_project_stays_shallow() -> None:
    plan = decompose(SMALL_PROJECT, max_files=10)
    assert 40 == len(SMALL_PROJECT)
    assert plan.depth <= 2
    assert depth_of(SMALL_PROJECT, max_files=10) <= 2


def test_a_large_project_goes_deep() -> None:
    files = sized(large_project())
    plan = decompose(files)
    assert len(files) > 5000
    assert plan.depth >= 4
    assert [] == over_budget(plan)
    plan.validate()


def test_the_budget_is_hard_for_many_small_files_beside_big_ones() -> None:
    # Big files first pull the balanced cut apart; the small ones then pile up together.
    entries = [FileEntry(f"flat/x_{i:03d}", 400_000 if i < 3 else 4000) for i in range(200)]
    plan = decompose(entries, max_tokens=20_000, max_depth=1)
    assert [] == over_budget(plan)
    assert all(leaf.tokens <= 20_000 for leaf in plan.leaves if leaf.file_count > 1)
    plan.validate()


def test_the_hard_budget_check_fails_with_a_chunker_that_gives_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_builder, "fill_chunks", giving_up_chunks)
    entries = [FileEntry(f"flat/x_{i:03d}", 400_000 if i < 3 else 4000) for i in range(200)]
    with pytest.raises(ConfigError, match="allows no split"):
        decompose(entries, max_tokens=20_000, max_depth=1)


def test_max_depth_and_min_files_never_keep_a_node_over_budget() -> None:
    files = sized([f"{d}/{s}/{i}.py" for d in "abcd" for s in "xyz" for i in range(10)])
    plan = decompose(files, max_tokens=5_000, max_depth=1, min_files=1000)
    assert plan.depth == 1
    assert [] == over_budget(plan)
    assert all(leaf.file_count <= 5 for leaf in plan.leaves)
    plan.validate()


def test_a_flat_directory_over_budget_is_chunked_in_one_level() -> None:
    plan = decompose(sized(FLAT), max_tokens=10_000)
    assert plan.depth == 1
    # Content-anchored cuts: at least the 5 leaves the budget needs, at most twice that.
    assert 5 <= len(plan.leaves) <= 10
    assert [] == over_budget(plan)
    assert depth_of(sized(FLAT), max_tokens=10_000) == 1


def test_the_one_level_check_fails_without_the_progress_guard(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(_builder, "_split", one_cluster_split)
    # Without the guard the same files recurse until max_depth refuses them.
    with pytest.raises(ConfigError, match="max_depth 6 allows no split"):
        depth_of(sized(FLAT), max_tokens=10_000)


def test_max_depth_zero_refuses_files_over_the_budget() -> None:
    with pytest.raises(ConfigError, match="max_depth 0 allows no split, but 50 files"):
        decompose(sized(FLAT), max_tokens=10_000, max_depth=0)


# -- leaf rules, in order ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "reason"),
    [
        ({"min_files": 51}, "below_min_files"),
        ({"max_files": 50}, "fits_budget"),
        ({"max_tokens": 10**6}, "fits_budget"),
        ({"max_depth": 0}, "fits_budget"),
        ({}, "fits_budget"),
    ],
)
def test_the_first_leaf_rule_that_holds_is_recorded(options: dict[str, int], reason: str) -> None:
    assert reason == decompose(FLAT, **options).root.leaf_reason  # type: ignore[arg-type]


def test_without_a_budget_the_default_is_50k_tokens() -> None:
    assert 50_000 == decompose(FLAT).config.max_tokens
    assert 50_000 == DEFAULT_MAX_TOKENS
    plan = decompose(sized(FLAT, 4004))  # 1001 tokens each: 50,050 in all
    assert 2 == len(plan.leaves)
    assert decompose(FLAT, max_files=5).config.max_tokens is None


def test_a_budget_wins_over_min_files() -> None:
    plan = decompose(["a", "b"], max_files=1)
    assert ["below_min_files", "below_min_files"] == [leaf.leaf_reason for leaf in plan.leaves]
    plan.validate()


def test_config_object_overrides_keywords() -> None:
    plan = decompose(FLAT, min_files=1, config=PlanConfig(max_depth=0))
    assert plan.config == PlanConfig(max_depth=0, max_tokens=DEFAULT_MAX_TOKENS)
    assert plan.root.leaf_reason == "fits_budget"


def test_bad_options_are_config_errors() -> None:
    with pytest.raises(ConfigError, match="min_files must be >= 1"):
        decompose(FLAT, min_files=0)


# -- directory strategy and packing --------------------------------------------------------


def test_directory_split_collapses_the_common_prefix() -> None:
    files = [f"repo/src/{d}/{f}.py" for d in "abc" for f in "xyz"]
    plan = decompose(files, max_files=3)
    assert plan.root.label == "repo/src"
    assert ["repo/src/a", "repo/src/b", "repo/src/c"] == [
        c.label for c in plan.children(plan.root.id)
    ]


def test_loose_files_form_one_cluster_labelled_star() -> None:
    plan = decompose(["x.py", "y.py", "z.py", "a/1", "a/2", "a/3"], max_files=3)
    assert ["a", "*"] == [c.label for c in plan.children(plan.root.id)]


def test_small_directories_are_packed_by_tokens() -> None:
    files = sized([f"d{i}/f.py" for i in range(7)] + [f"big/{i}" for i in range(5)])
    plan = decompose(files, max_tokens=4000, cuts="stable")
    children = plan.children(plan.root.id)
    # seven one-file directories share leaves (of up to 4 files), not seven leaves
    assert ("big", 5) == (children[0].label, children[0].file_count)
    assert 2 <= len(children[1:]) < 7
    assert all(c.file_count <= 4 for c in children[1:])
    assert [] == over_budget(plan)


def test_leaves_come_near_the_fewest_the_budget_allows() -> None:
    # 120 directories of 1 to 9 files of 1,000 tokens: packing by tokens, not by count.
    files = sized([f"pkg{d:03d}/m{i}.py" for d in range(120) for i in range(1 + d % 9)])
    plan = decompose(files, max_tokens=50_000)
    ideal = -(-plan.root.tokens // 50_000)
    # Content-anchored cuts trade fill for stability: within twice the fewest.
    assert len(plan.leaves) <= 2 * ideal
    assert [] == over_budget(plan)


def test_a_directory_just_over_budget_keeps_its_loose_files_in_two_leaves() -> None:
    # 53 loose test files of 1,000 tokens and two tiny subdirectories: 55k tokens in all.
    files = sized([f"tests/test_{i:02d}.py" for i in range(53)])
    files += sized(["tests/static/a.css", "tests/templates/b.html"], 4000)
    plan = decompose(files, max_tokens=50_000, cuts="stable")
    loose = [leaf for leaf in plan.leaves if leaf.files[0].startswith("tests/test_")]
    assert 2 == len(loose)
    assert len(plan.leaves) <= 4
    assert plan.depth <= 2
    assert [] == over_budget(plan)


def test_packing_prefers_directories_tied_by_imports() -> None:
    files = sized([f"{d}/{i}.py" for d in "abcd" for i in range(2)])
    graph = nx.DiGraph([("a/0.py", "c/0.py"), ("b/1.py", "d/1.py")])
    plan = decompose(files, max_tokens=4000, import_graph=graph)
    assert [["a", "c"], ["b", "d"]] == sorted(
        sorted({f.split("/")[0] for f in leaf.files}) for leaf in plan.leaves
    )
    # Without a graph, the cuts are content-anchored and know no ties.
    without = decompose(files, max_tokens=4000)
    assert ["a", "c"] not in [
        sorted({f.split("/")[0] for f in leaf.files}) for leaf in without.leaves
    ]


def test_a_flat_directory_without_a_graph_splits_by_name_prefix() -> None:
    files = sized([f"t/{w}_{i}.py" for w in ("api", "cli", "db") for i in range(6)])
    plan = decompose(files, max_tokens=6000)
    assert [["t/api*"], ["t/cli*"], ["t/db*"]] == [[leaf.label] for leaf in plan.leaves]


# -- import graph ------------------------------------------------------------------------------


def test_import_graph_splits_a_flat_directory_by_communities() -> None:
    left = [f"pkg/l{i}.py" for i in range(4)]
    right = [f"pkg/r{i}.py" for i in range(4)]
    graph = nx.DiGraph()
    graph.add_edges_from((a, b) for a in left for b in left if a < b)
    graph.add_edges_from((a, b) for a in right for b in right if a < b)
    graph.add_edge(left[0], right[0])
    plan = decompose(sized([*left, *right, "pkg/notes.txt"]), max_tokens=5000, import_graph=graph)
    groups = [set(leaf.files) for leaf in plan.leaves]
    assert any(set(left) <= g for g in groups)
    assert any(set(right) <= g for g in groups)
    plan.validate()


def test_graph_chunks_are_deterministic() -> None:
    files = [f"m/{i}.py" for i in range(30)]
    graph = nx.gnm_random_graph(30, 60, seed=1, directed=True)
    graph = nx.relabel_nodes(graph, {i: files[i] for i in range(30)})
    assert decompose(files, import_graph=graph, seed=3, max_files=5).to_json() == (
        decompose(files, import_graph=graph, seed=3, max_files=5).to_json()
    )


# -- budgets ---------------------------------------------------------------------------------


def test_max_files_chunks_a_flat_directory_within_the_budget() -> None:
    plan = decompose(FLAT, max_files=8)
    assert all(leaf.file_count <= 8 for leaf in plan.leaves)
    assert {"fits_budget", "below_min_files"} >= {leaf.leaf_reason for leaf in plan.leaves}
    assert 7 <= len(plan.leaves) <= 14
    assert [leaf.files for leaf in plan.leaves] == sorted(leaf.files for leaf in plan.leaves)
    first = plan.leaves[0].files
    assert plan.leaves[0].label == f"data [{first[0][5:]}..{first[-1][5:]}]"


def test_max_tokens_chunks_by_tokens() -> None:
    entries = [FileEntry(f"flat/{i:02d}", size=400) for i in range(20)]  # 100 tokens each
    plan = decompose(entries, max_tokens=350)
    assert all(leaf.tokens <= 350 for leaf in plan.leaves)
    assert plan.root.tokens == 2000
    assert 6 <= len(plan.leaves) <= 12


def test_a_file_over_the_token_budget_gets_a_leaf_alone() -> None:
    entries = [FileEntry("f/huge", size=40_000), *(FileEntry(f"f/s{i}", 4) for i in range(5))]
    plan = decompose(entries, max_tokens=100, min_files=1)
    huge = plan.leaf_for("f/huge")
    assert huge.files == ("f/huge",)
    assert huge.leaf_reason == "oversized_file"
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


def test_no_two_subplans_share_a_label() -> None:
    # Names starting with "_" are their own prefix group, "pkg/_*", not a second "pkg/*".
    files = sized(
        [f"pkg/__init__{i}.py" for i in range(6)]
        + [f"pkg/mod{i}.py" for i in range(6)]
        + [f"pkg/sub/{i}.py" for i in range(6)]
    )
    labels = [node.label for node in decompose(files, max_tokens=3000)]
    assert "pkg/_*" in labels
    assert len(labels) == len(set(labels)), labels


def test_a_label_earned_twice_gets_a_number() -> None:
    # A directory named like the chunk of another: "pkg [b.py..d.py]" twice.
    files = sized([f"pkg/{c}.py" for c in "abcdef"])
    files += sized([f"pkg [b.py..d.py]/{c}.py" for c in "xyz"], 1000)
    plan = decompose(files, max_tokens=3000)
    labels = [node.label for node in plan]
    assert {"pkg [b.py..d.py]", "pkg [b.py..d.py] (2)"} <= set(labels), labels
    assert len(labels) == len(set(labels)), labels


def test_with_a_graph_a_small_pack_joins_the_big_sibling_it_imports() -> None:
    # "aaa" (a small directory) imports "zeta", the second of two big siblings: it is
    # carried into zeta's leaves, not into alpha, the next one in path order.
    files = sized([f"alpha/{i}.py" for i in range(6)] + [f"zeta/{i}.py" for i in range(6)])
    files += sized(["aaa/util.py"])
    graph = nx.DiGraph([("aaa/util.py", "zeta/3.py"), ("alpha/0.py", "alpha/1.py")])
    plan = decompose(files, max_tokens=4000, import_graph=graph)
    holder = plan.leaf_for("aaa/util.py")
    assert any(f.startswith("zeta/") for f in holder.files), holder
    assert [] == over_budget(plan)


def test_with_a_graph_a_directory_of_a_few_budgets_is_cut_whole() -> None:
    # 53 loose files and two tiny subdirectories, 55k tokens, with a graph among the
    # loose files: cutting the whole directory takes two leaves.
    files = sized([f"tests/test_{i:02d}.py" for i in range(53)])
    files += sized(["tests/static/a.css", "tests/templates/b.html"])
    graph = nx.DiGraph([("tests/test_00.py", "tests/test_01.py")])
    plan = decompose(files, max_tokens=50_000, import_graph=graph)
    assert 2 == len(plan.leaves)
    assert [] == over_budget(plan)


def test_anchored_spans_of_nothing_is_nothing() -> None:
    from subplan._decompose._strategies import anchored_spans

    assert [] == anchored_spans([], [], [], PlanConfig(max_tokens=10))
    assert [(0, 1), (1, 2)] == anchored_spans(["a", "b"], [1, 1], [8, 8], PlanConfig(max_tokens=10))


# flask's tests/ at 50k tokens (its real names and token counts): 23 files directly in it,
# 53k tokens, beside 38 small files in four subdirectories, 1.6k tokens.
FLASK_TESTS = {
    "conftest": 824, "appctx": 1707, "async": 834, "basic": 13531, "blueprints": 7864,
    "cli": 5096, "config": 1937, "converters": 274, "helpers": 2805, "instance_config": 830,
    "json": 2186, "json_tag": 500, "logging": 633, "regression": 178, "reqctx": 1875,
    "request": 476, "session_interface": 196, "signals": 1216, "subclassing": 120,
    "templating": 3851, "testing": 2555, "user_error_handler": 2109, "views": 1794,
}  # fmt: skip


def flask_tests() -> list[FileEntry]:
    """flask's tests/: its 23 files, and 38 files of 41 tokens in four subdirectories."""
    files = [
        FileEntry(f"tests/{'' if name == 'conftest' else 'test_'}{name}.py", 4 * tokens)
        for name, tokens in FLASK_TESTS.items()
    ]
    for sub, count in (("test_apps", 23), ("templates", 9), ("static", 3), ("type_check", 3)):
        files += [FileEntry(f"tests/{sub}/f{i:02d}.txt", 4 * 41) for i in range(count)]
    return files


def test_with_a_graph_a_directory_of_a_budget_and_a_bit_is_two_leaves_not_slivers() -> None:
    files = flask_tests()
    graph = nx.DiGraph([("tests/test_cli.py", "tests/test_apps/f00.txt")])
    plan = decompose(files, max_tokens=50_000, import_graph=graph)
    # 54.9k tokens: two leaves, not a big group plus conftest.py alone and the small
    # subdirectories alone (four leaves before small leaves were merged).
    assert len(plan.leaves) == 2
    assert all(leaf.file_count >= 3 for leaf in plan.leaves)
    plan.validate()


def test_with_a_graph_small_leaves_merge_across_directories_by_their_imports() -> None:
    # Two packages, each a budget and a bit: each leaves a small remainder; the two
    # remainders import each other, so they are one leaf under the root.
    files = [FileEntry(f"a/m{i:02d}.py", 4 * 3_000) for i in range(12)]
    files += [FileEntry(f"b/n{i:02d}.py", 4 * 3_000) for i in range(12)]
    graph = nx.DiGraph([("a/m11.py", "b/n11.py"), ("b/n11.py", "a/m11.py")])
    plan = decompose(files, max_tokens=30_000, import_graph=graph)
    tied = plan.leaf_for("a/m11.py")
    assert tied is plan.leaf_for("b/n11.py")
    assert tied.parent == plan.root.id
    assert len(plan.leaves) == 3  # 36k + 36k tokens at 30k: ceil(72 / 30) leaves
    plan.validate()


def test_full_cuts_merge_small_leaves_without_a_graph_too() -> None:
    files = flask_tests()
    stable = decompose(files, max_tokens=50_000, cuts="stable")
    full = decompose(files, max_tokens=50_000)
    assert stable.config.cuts == "stable" and full.config.cuts == "full"
    assert len(full.leaves) == 2 < len(stable.leaves)
    # Stable: conftest.py alone (824 tokens) and the small subdirectories in three leaves.
    assert (0, 4) == (full.statistics().small_leaves, stable.statistics().small_leaves)
    full.validate()
    again = Plan.from_json(stable.to_json())
    assert again == stable and again.config.cuts == "stable"
    assert "cuts" not in json.loads(full.to_json())["config"]  # the default: as before


def test_cuts_must_be_full_or_stable() -> None:
    with pytest.raises(ConfigError, match="cuts must be one of full, stable"):
        PlanConfig(cuts="some")  # type: ignore[arg-type]
