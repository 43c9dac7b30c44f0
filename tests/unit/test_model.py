"""The plan model: FileEntry, PlanConfig, Plan lookups, validate() and JSON."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import subplan
from subplan import (
    ConfigError,
    FileEntry,
    InputError,
    Plan,
    PlanConfig,
    PlanError,
    UnknownSubplanError,
    decompose,
    estimate_tokens,
    subplan_id,
)
from subplan._model import any_unclean, normalize_path, path_sort_key

FILES = [
    "README.md",
    "src/pkg/a.py",
    "src/pkg/b.py",
    "src/pkg/c.py",
    "src/pkg/sub/d.py",
    "src/pkg/sub/e.py",
    "src/pkg/sub/f.py",
    "tests/t1.py",
    "tests/t2.py",
    "tests/t3.py",
]


@pytest.fixture
def plan() -> Plan:
    return decompose(FILES, max_files=3)


def test_public_names_are_exactly_all() -> None:
    public = {name for name in dir(subplan) if not name.startswith("_")}
    assert set(subplan.__all__) == public - {"testing", "cli"}


def test_file_entry_estimates_tokens_from_size() -> None:
    assert FileEntry("a", 401).tokens == 101
    assert FileEntry("a", 401, tokens=7).tokens == 7
    assert estimate_tokens(0) == 0
    with pytest.raises(InputError, match="negative size"):
        FileEntry("a", -1)


@pytest.mark.parametrize(
    ("raw", "clean"),
    [("a", "a"), ("./a/b", "a/b"), ("a//b/", "a/b"), ("a/./b", "a/b"), ("-x", "-x")],
)
def test_normalize_path_cleans(raw: str, clean: str) -> None:
    assert clean == normalize_path(raw)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        ("", "not a usable file path"),
        ("a\x00b", "not a usable file path"),
        ("a\nb", "not a usable file path"),
        ("/etc/passwd", "must be relative"),
        ("a/../../b", "leaves the project root"),
        (".", "names no file"),
    ],
)
def test_normalize_path_refuses(raw: str, message: str) -> None:
    with pytest.raises(InputError, match=message) as info:
        normalize_path(raw)
    assert raw == info.value.path


def _clean(path: str) -> bool:
    try:
        return normalize_path(path) == path
    except InputError:
        return False


@settings(max_examples=500)
@given(st.lists(st.text(alphabet="a./\x00\r", max_size=6), min_size=1, max_size=5))
def test_any_unclean_is_true_exactly_when_a_path_is_not_clean(paths: list[str]) -> None:
    # Three substring tests on the joined paths stand for normalizing each of them.
    joined = "\n" + "\n".join(paths) + "\n"
    assert any_unclean(joined) == (not all(_clean(p) for p in paths))


def test_sort_key_keeps_directories_contiguous() -> None:
    ordered = sorted(["a-b/x", "a/y", "a/x", "a.c", "a/b/z"], key=path_sort_key)
    assert ["a/b/z", "a/x", "a/y", "a-b/x", "a.c"] == ordered


def test_ids_are_content_derived_and_safe() -> None:
    assert subplan_id(["b", "a", "a"]) == subplan_id(["a", "b"])
    assert subplan_id(["a"]) != subplan_id(["a", "b"])
    assert subplan_id(["a"]).startswith("sp-")
    assert len(subplan_id(["a"])) == 19


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"min_files": 0}, "min_files must be >= 1, got 0"),
        ({"max_depth": -1}, "max_depth must be >= 0, got -1"),
        ({"max_files": 0}, "max_files must be >= 1, got 0"),
        ({"max_tokens": 0}, "max_tokens must be >= 1, got 0"),
        ({"min_files": 1.5}, "min_files must be an integer"),
        ({"seed": True}, "seed must be an integer"),
        ({"max_files": "3"}, "max_files must be an integer or None"),
    ],
)
def test_config_refuses_out_of_range_values(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        PlanConfig(**options)
    assert message in str(info.value)
    assert isinstance(info.value, ValueError)


def test_config_budget() -> None:
    assert not PlanConfig().has_budget
    assert not PlanConfig().fits_budget(1, 1)
    assert PlanConfig(max_files=2).fits_budget(2, 10**9)
    assert not PlanConfig(max_files=2, max_tokens=5).fits_budget(2, 6)


def test_lookups(plan: Plan) -> None:
    root = plan.root
    assert root.parent is None
    assert [c.id for c in plan.children(root.id)] == list(root.children)
    leaf = plan.leaf_for("src/pkg/sub/e.py")
    assert "src/pkg/sub/e.py" in leaf.files
    assert leaf.is_leaf
    assert plan.ancestors(leaf.id)[-1] == root
    parent = plan.parent(leaf.id)
    assert parent is not None
    assert leaf.id in parent.children
    assert plan.parent(root.id) is None
    assert plan.subtree(root.id)[0] == root
    assert len(plan.subtree(root.id)) == len(plan)
    assert set(plan.leaves_under(root.id)) == set(plan.leaves)
    assert plan.files == tuple(sorted(FILES, key=path_sort_key))
    assert root.id in plan
    assert "nope" not in plan
    assert list(plan) == list(plan.nodes.values())
    assert repr(plan).startswith("Plan(root=")
    with pytest.raises(UnknownSubplanError, match="no subplan with id 'nope'") as info:
        plan["nope"]
    assert info.value.subplan_id == "nope"
    assert isinstance(info.value, KeyError)
    with pytest.raises(UnknownSubplanError):
        plan.leaf_for("missing.py")


def test_plan_equality(plan: Plan) -> None:
    assert plan == decompose(list(reversed(FILES)), max_files=3)
    assert plan != decompose(FILES, max_files=3, min_files=2)
    assert plan != "plan"


def test_leaves_carry_files_and_internal_nodes_only_counts(plan: Plan) -> None:
    data = plan.to_dict()
    assert data["schema"] == "subplan.plan/1"
    assert data["config"] == {
        "min_files": 3,
        "max_depth": 6,
        "max_files": 3,
        "max_tokens": None,
        "seed": 0,
    }
    assert data["root"] == plan.root.id
    for node in data["nodes"]:
        assert set(node) >= {"id", "parent", "children", "depth", "label", "file_count"}
        assert ("files" in node) == (not node["children"])


# -- validate() must catch every broken invariant -------------------------------------


def _rebuild(plan: Plan, node_id: str, **changes: Any) -> Plan:
    nodes = [replace(n, **changes) if n.id == node_id else n for n in plan]
    return Plan(nodes, config=plan.config, root=plan.root.id)


def test_a_valid_plan_has_no_problems(plan: Plan) -> None:
    assert plan.problems() == []
    plan.validate()


def test_validate_catches_a_child_linked_to_the_wrong_parent(plan: Plan) -> None:
    # The original system linked the wrong child; validate must notice.
    first, second = plan.root.children[0], plan.root.children[1]
    broken = _rebuild(plan, first, parent=second)
    with pytest.raises(PlanError, match="names parent") as info:
        broken.validate()
    assert any("does not list it as a child" in p for p in info.value.problems)


def test_validate_catches_wrong_depth_and_leaf_reasons(plan: Plan) -> None:
    leaf = plan.leaves[0]
    assert "has depth" in " ".join(_rebuild(plan, leaf.id, depth=9).problems())
    assert "does not hold" in " ".join(_rebuild(plan, leaf.id, leaf_reason="max_depth").problems())
    assert "without a leaf_reason" in " ".join(_rebuild(plan, leaf.id, leaf_reason=None).problems())
    internal = plan.root
    assert "internal node with leaf_reason" in " ".join(
        _rebuild(plan, internal.id, leaf_reason="no_progress").problems()
    )


def test_validate_catches_files_that_do_not_partition(plan: Plan) -> None:
    leaf = plan.leaf_for("src/pkg/sub/d.py")
    stolen = tuple(sorted({*leaf.files, "README.md"}, key=path_sort_key))
    problems = " ".join(_rebuild(plan, leaf.id, files=stolen).problems())
    assert "id does not match its files" in problems
    assert "children" in problems


def test_validate_catches_bad_tokens_ids_and_config(plan: Plan) -> None:
    leaf = plan.leaves[0]
    assert "tokens are not the sum" in " ".join(_rebuild(plan, leaf.id, tokens=5).problems())
    assert "negative tokens" in " ".join(_rebuild(plan, leaf.id, tokens=-1).problems())
    deep = Plan(list(plan), config=PlanConfig(max_depth=0), root=plan.root.id)
    assert "exceeds max_depth" in " ".join(deep.problems())
    small = Plan(list(plan), config=PlanConfig(min_files=50), root=plan.root.id)
    assert "split although below min_files" in " ".join(small.problems())
    budget = Plan(list(plan), config=PlanConfig(max_files=100), root=plan.root.id)
    assert "split although it fits the budget" in " ".join(budget.problems())


def test_validate_catches_unsorted_and_unnormalized_files() -> None:
    single = decompose(["a", "b"])
    node = single.root
    unsorted = replace(node, files=("b", "a"))
    assert "not sorted" in " ".join(Plan([unsorted], config=single.config).problems())
    dirty_files = ("./a", "b")
    dirty = replace(node, id=subplan_id(dirty_files), files=dirty_files)
    assert "not normalized" in " ".join(Plan([dirty], config=single.config).problems())
    outside = ("../a", "b")
    escaping = replace(node, id=subplan_id(outside), files=outside)
    assert "leaves the project root" in " ".join(Plan([escaping], config=single.config).problems())
    bad_id = replace(node, id="sp-XYZ")
    assert "id is not of the form" in " ".join(Plan([bad_id], config=single.config).problems())
    empty = replace(node, files=())
    assert "holds no files" in " ".join(Plan([empty], config=single.config).problems())
    rooted = replace(node, depth=1, parent=None)
    assert "expected 0" in " ".join(Plan([rooted], config=single.config).problems())


def test_validate_catches_a_single_child_split() -> None:
    plan = decompose(["a/1", "a/2", "a/3", "b/1", "b/2", "b/3"], max_files=3)
    root, first = plan.root, plan.children(plan.root.id)[0]
    lonely = replace(root, children=(first.id,))
    broken = Plan([lonely, first], config=plan.config, root=root.id)
    assert "internal node with 1 child" in " ".join(broken.problems())


def test_validate_reports_everything_at_once(plan: Plan) -> None:
    leaf = plan.leaves[0]
    broken = _rebuild(plan, leaf.id, tokens=5, leaf_reason=None)
    with pytest.raises(PlanError) as info:
        broken.validate()
    assert len(info.value.problems) >= 2
    assert "more problems" in str(info.value)


@pytest.mark.parametrize(
    ("nodes_of", "message"),
    [
        (lambda p: [*p, p.root], "duplicate subplan id"),
        (lambda p: [n for n in p if n.parent is not None], "exactly one root"),
        (lambda p: [n for n in p if n.id != p.leaves[0].id], "is not among the nodes"),
    ],
)
def test_plan_refuses_nodes_that_are_not_a_tree(plan: Plan, nodes_of: Any, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        Plan(nodes_of(plan))


def test_plan_refuses_unreachable_and_repeated_nodes(plan: Plan) -> None:
    stray = replace(plan.leaves[0], id="sp-0000000000000000", parent="sp-1111111111111111")
    with pytest.raises(PlanError, match="not reachable"):
        Plan([*plan, stray], root=plan.root.id)
    twice = replace(plan.root, children=(*plan.root.children, plan.root.children[0]))
    with pytest.raises(PlanError, match="reached twice"):
        Plan([twice, *list(plan)[1:]], root=plan.root.id)
    with pytest.raises(PlanError, match="root sp-x is not among"):
        Plan(list(plan), root="sp-x")


# -- JSON ------------------------------------------------------------------------------


def test_json_round_trip(plan: Plan) -> None:
    text = plan.to_json(indent=2)
    assert plan == Plan.from_json(text)
    assert plan == Plan.from_json(text.encode())
    assert plan == Plan.from_dict(json.loads(text))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda d: d.update(schema="subplan.plan/2"), "unsupported plan schema"),
        (lambda d: d.pop("nodes"), "malformed plan document: KeyError"),
        (lambda d: d["config"].update(min_files=0), "min_files must be >= 1"),
        (lambda d: d["nodes"].append(d["nodes"][0]), "duplicate subplan ids"),
        (lambda d: d["nodes"][-1].update(file_count=99), "file_count does not match"),
        (lambda d: d["nodes"][-1].update(leaf_reason="bored"), "unknown leaf_reason"),
        (lambda d: d["nodes"][0]["children"].append("sp-0"), "is not among the nodes"),
        (lambda d: d["nodes"][-1].update(tokens=-5), "tokens are not the sum"),
        (lambda d: d["nodes"][0].update(children=[d["root"]]), "its own descendant"),
    ],
)
def test_from_json_refuses_bad_documents(plan: Plan, mutate: Any, message: str) -> None:
    data = json.loads(plan.to_json())
    mutate(data)
    with pytest.raises(PlanError, match=message):
        Plan.from_json(json.dumps(data))


@pytest.mark.parametrize(
    ("text", "message"),
    [("{", "not valid JSON"), ("[]", "must be a JSON object"), (b"\xff", "not valid JSON")],
)
def test_from_json_refuses_non_plans(text: str | bytes, message: str) -> None:
    with pytest.raises(PlanError, match=message):
        Plan.from_json(text)


# -- dependencies and waves ---------------------------------------------------------------


def _chain_plan() -> Plan:
    import networkx as nx

    files = [f"{d}/{i}.py" for d in "abc" for i in range(3)]
    graph = nx.DiGraph([("a/0.py", "b/0.py"), ("b/1.py", "c/2.py"), ("c/0.py", "c/1.py")])
    return decompose(files, max_files=3, import_graph=graph)


def test_a_plan_made_with_a_graph_carries_waves_and_round_trips() -> None:
    plan = _chain_plan()
    a, b, c = (plan.leaf_for(f"{d}/0.py").id for d in "abc")
    assert {a: (b,), b: (c,)} == dict(plan.dependencies or {})
    assert ((c,), (b,), (a,)) == plan.waves()
    data = plan.to_dict()
    assert {a: [b], b: [c]} == data["dependencies"]
    assert [[c], [b], [a]] == data["waves"]
    again = Plan.from_json(plan.to_json())
    assert again == plan
    assert again.to_json() == plan.to_json()


def test_a_plan_without_dependencies_has_no_new_keys_and_loads_as_before(plan: Plan) -> None:
    data = plan.to_dict()
    assert "dependencies" not in data and "waves" not in data
    assert plan.dependencies is None
    assert (tuple(leaf.id for leaf in plan.leaves),) == plan.waves()
    assert Plan.from_dict(data) == plan


def test_import_cycles_between_leaves_are_collapsed() -> None:
    import networkx as nx

    files = [f"{d}/{i}.py" for d in "ab" for i in range(3)]
    graph = nx.DiGraph([("a/0.py", "b/0.py"), ("b/1.py", "a/1.py")])
    plan = decompose(files, max_files=3, import_graph=graph)
    assert {} == dict(plan.dependencies or {})
    assert 1 == len(plan.waves())


def test_validate_catches_dependency_cycles_and_unknown_leaves() -> None:
    plan = _chain_plan()
    a, b, c = (plan.leaf_for(f"{d}/0.py").id for d in "abc")
    cyclic = Plan(list(plan), config=plan.config, dependencies={a: [b], b: [a]})
    assert "cycle" in " ".join(cyclic.problems())
    with pytest.raises(PlanError, match="cycle"):
        cyclic.waves()
    unknown = Plan(list(plan), config=plan.config, dependencies={a: [plan.root.id]})
    assert "which is not a leaf" in " ".join(unknown.problems())
    data = plan.to_dict()
    data["dependencies"] = {a: [b], b: [c], c: [a]}
    with pytest.raises(PlanError, match="cycle"):
        Plan.from_dict(data)


def test_statistics_count_fill_breaches_and_edge_locality() -> None:
    import networkx as nx

    plan = _chain_plan()
    graph = nx.DiGraph([("a/0.py", "b/0.py"), ("b/1.py", "c/2.py"), ("c/0.py", "c/1.py")])
    stats = plan.statistics(graph)
    assert (3, 1.0, 0, 0, 1) == (
        stats.leaves,
        stats.fill,
        stats.over_budget,
        stats.oversized_files,
        stats.edges and 1,
    )
    assert (3, 2) == (stats.edges, stats.cross_leaf_edges)
    assert pytest.approx(1 / 3) == stats.intra_leaf_edge_fraction
    assert 3 == stats.waves
    assert stats.to_dict()["intra_leaf_edge_fraction"] == stats.intra_leaf_edge_fraction
    assert None is plan.statistics().edges


def test_statistics_count_leaves_over_the_budget() -> None:
    plan = _chain_plan()
    tighter = Plan(list(plan), config=PlanConfig(max_files=2), root=plan.root.id)
    assert 3 == tighter.statistics().over_budget


def test_sort_paths_orders_by_component_even_with_a_newline_in_a_name() -> None:
    from subplan._model import path_sort_key, sort_paths

    paths = ["a/y", "a-b/x", "a/x", "a/b\nc", "b"]
    assert sorted(paths, key=path_sort_key) == sort_paths(paths)
    assert [] == sort_paths([])
