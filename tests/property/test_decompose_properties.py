"""Every invariant of a plan, for arbitrary file sets and configurations (DESIGN §3).

These checks do not trust :meth:`Plan.validate`: each invariant is recomputed here from
the raw nodes, so a bug in ``validate`` cannot hide a bug in the decomposer.
"""

from __future__ import annotations

import random
from collections import Counter
from dataclasses import replace

import networkx as nx
from hypothesis import assume, event, given
from hypothesis import strategies as st

from subplan import ConfigError, FileEntry, Plan, PlanConfig, decompose, subplan_id
from subplan._decompose._builder import with_default_budget

from strategies import (
    any_configs,
    configs,
    entries,
    flat_configs,
    flat_import_graphs,
    path_sets,
    paths,
    reordered,
)


def check_invariants(plan: Plan, files: list[str]) -> None:
    """Assert every invariant of DESIGN §3 on ``plan`` made from ``files``."""
    cfg = plan.config
    nodes = list(plan)
    by_id = {n.id: n for n in nodes}
    # ids unique, safe, derived from the files
    assert len(by_id) == len(nodes)
    for node in nodes:
        assert node.id == subplan_id(node.files)
        assert "/" not in node.id and ".." not in node.id and " " not in node.id
    # leaves partition the input: each file in exactly one leaf, none invented or lost
    counts = Counter(f for leaf in plan.leaves for f in leaf.files)
    assert sorted(counts) == sorted(files)
    assert set(counts.values()) == {1}
    # exact links, both ways: a node's children are exactly the nodes naming it as parent
    named_parent: dict[str | None, set[str]] = {}
    for node in nodes:
        named_parent.setdefault(node.parent, set()).add(node.id)
    assert named_parent[None] == {plan.root.id}
    for node in nodes:
        assert set(node.children) == named_parent.get(node.id, set())
        assert len(set(node.children)) == len(node.children)
        for child_id in node.children:
            child = by_id[child_id]
            assert child.depth == node.depth + 1
            # children's files within the parent's; siblings disjoint; together all of them
            assert set(child.files) <= set(node.files)
        child_files = [f for c in node.children for f in by_id[c].files]
        if node.children:
            assert len(child_files) == len(set(child_files)) == node.file_count
            assert len(node.children) >= 2
    # there is always a budget (the default one when none is given), and it is hard
    assert cfg.has_budget
    for leaf in plan.leaves:
        if leaf.file_count >= 2:
            assert cfg.fits_budget(leaf.file_count, leaf.tokens), leaf
    # depth bound, and each leaf has the first leaf reason that holds
    for node in nodes:
        assert node.depth <= cfg.max_depth
        fits = cfg.fits_budget(node.file_count, node.tokens)
        if node.is_leaf:
            if node.leaf_reason == "below_min_files":
                assert fits and node.file_count < cfg.min_files
            elif node.leaf_reason == "fits_budget":
                assert fits and node.file_count >= cfg.min_files
            else:
                assert node.leaf_reason == "oversized_file"
                assert node.file_count == 1 and not fits
        else:
            # a node is split exactly when it is over the budget, whatever min_files says
            assert node.leaf_reason is None
            assert not fits and node.file_count >= 2
    plan.validate()


def plan_or_none(
    files: list[str] | list[FileEntry], cfg: PlanConfig, graph: nx.DiGraph | None = None
) -> Plan | None:
    """The plan, or None when ``max_depth`` 0 cannot hold the files within the budget."""
    try:
        return decompose(files, config=cfg, import_graph=graph)
    except ConfigError:
        # Only a root that must split but may not is refused.
        budget = with_default_budget(cfg)
        tokens = sum(f.tokens for f in files if isinstance(f, FileEntry))
        assert cfg.max_depth == 0
        assert len(files) >= 2 and not budget.fits_budget(len(files), tokens)
        return None


@given(path_sets(), any_configs)
def test_every_invariant_holds(files: list[str], cfg: PlanConfig) -> None:
    plan = plan_or_none(files, cfg)
    if plan is not None:
        check_invariants(plan, files)


@given(entries(), any_configs)
def test_every_invariant_holds_with_token_budgets(items: list[FileEntry], cfg: PlanConfig) -> None:
    plan = plan_or_none(items, cfg)
    if plan is not None:
        check_invariants(plan, [e.path for e in items])
        assert plan.root.tokens == sum(e.tokens for e in items)


@given(entries(max_size=200), any_configs, st.integers(1, 4000))
def test_no_leaf_of_two_or_more_files_exceeds_the_budget(
    items: list[FileEntry], cfg: PlanConfig, budget: int
) -> None:
    cfg = replace(cfg, max_tokens=budget, max_depth=max(cfg.max_depth, 1))
    plan = decompose(items, config=cfg)
    for leaf in plan.leaves:
        if leaf.file_count >= 2:
            assert leaf.tokens <= budget
            assert cfg.max_files is None or leaf.file_count <= cfg.max_files
        elif leaf.tokens > budget:
            assert leaf.leaf_reason == "oversized_file"
    check_invariants(plan, [e.path for e in items])


@st.composite
def graphs(draw: st.DrawFn) -> tuple[list[str], nx.DiGraph]:
    files = draw(path_sets(min_size=2))
    graph = nx.DiGraph()
    pairs = st.tuples(st.sampled_from(files), st.sampled_from(files))
    graph.add_edges_from((a, b) for a, b in draw(st.lists(pairs, max_size=60)) if a != b)
    return files, graph


@given(graphs(), any_configs)
def test_every_invariant_holds_with_an_import_graph(
    case: tuple[list[str], nx.DiGraph], cfg: PlanConfig
) -> None:
    files, graph = case
    plan = plan_or_none(files, cfg, graph)
    if plan is not None:
        check_invariants(plan, files)


@given(graphs(), any_configs, st.randoms(use_true_random=False))
def test_same_input_in_any_order_gives_the_same_bytes(
    case: tuple[list[str], nx.DiGraph], cfg: PlanConfig, rnd: random.Random
) -> None:
    files, graph = case
    shuffled = list(files)
    rnd.shuffle(shuffled)
    # The graph too is rebuilt in another order: only its content may matter.
    cfg = replace(cfg, max_depth=max(cfg.max_depth, 1))
    first = decompose(files, config=cfg, import_graph=graph).to_json()
    second = decompose(shuffled, config=cfg, import_graph=reordered(graph, rnd)).to_json()
    assert first == second


@given(flat_import_graphs(), flat_configs, st.randoms(use_true_random=False))
def test_plan_bytes_do_not_depend_on_the_import_graphs_order(
    case: tuple[list[str], nx.DiGraph], cfg: PlanConfig, rnd: random.Random
) -> None:
    # One flat directory: only the import graph can split it, so the graph's iteration
    # order would show in the plan if any step of the strategy depended on it.
    files, graph = case
    first = decompose(files, config=cfg, import_graph=graph)
    event(f"split by imports: {any('[imports' in node.label for node in first)}")
    shuffled = list(files)
    rnd.shuffle(shuffled)
    second = decompose(shuffled, config=cfg, import_graph=reordered(graph, rnd))
    assert first.to_json() == second.to_json()


@given(path_sets(min_size=3), path_sets(), path_sets(), configs)
def test_unchanged_subtrees_keep_their_ids_when_files_change_elsewhere(
    kept: list[str], before: list[str], after: list[str], cfg: PlanConfig
) -> None:
    # Two top-level directories: "keep/" is untouched, "edit/" gains and loses files.
    cfg = replace(cfg, cuts="stable")  # full cuts may merge a leaf of keep/ into edit/
    keep = [f"keep/{p}" for p in kept]
    if len(keep) < cfg.min_files or cfg.max_depth == 0:
        return
    plan1 = decompose(keep + [f"edit/{p}" for p in before], config=cfg)
    plan2 = decompose(keep + [f"edit/{p}" for p in after], config=cfg)
    keep_set = set(keep)
    if not plan1.root.children or not plan2.root.children:
        return  # the root itself was a leaf (it fit the budget): nothing below to keep
    kept_nodes = [n for n in plan1 if set(n.files) <= keep_set]
    keep_ids = {n.id for n in kept_nodes}
    assert kept_nodes, "the keep/ subtree must exist"
    for node in kept_nodes:
        assert node.id in plan2
        # Everything but the parent of the top kept node (the root, whose files changed).
        same_parent = node.parent in keep_ids
        assert replace(plan2[node.id], parent=None) == replace(node, parent=None)
        assert (plan2[node.id].parent == node.parent) or not same_parent


@given(path_sets(), any_configs)
def test_json_round_trip_is_exact(files: list[str], cfg: PlanConfig) -> None:
    cfg = replace(cfg, max_depth=max(cfg.max_depth, 1))
    plan = decompose(files, config=cfg)
    again = Plan.from_json(plan.to_json())
    assert plan == again
    assert plan.to_json(indent=2) == again.to_json(indent=2)
    assert list(plan.leaves) == list(again.leaves)


@given(path_sets(), any_configs)
def test_levels_are_the_plan(files: list[str], cfg: PlanConfig) -> None:
    from subplan import decompose_levels

    cfg = replace(cfg, max_depth=max(cfg.max_depth, 1))
    levels = list(decompose_levels(files, config=cfg))
    plan = decompose(files, config=cfg)
    assert [tuple(level) for level in plan.levels()] == levels
    assert len(levels) == plan.depth + 1


@st.composite
def sized_graphs(draw: st.DrawFn) -> tuple[list[FileEntry], nx.DiGraph]:
    items = draw(entries(min_size=2, max_size=150))
    paths = [e.path for e in items]
    pairs = st.tuples(st.sampled_from(paths), st.sampled_from(paths))
    graph = nx.DiGraph()
    graph.add_edges_from((a, b) for a, b in draw(st.lists(pairs, max_size=200)) if a != b)
    return items, graph


@given(sized_graphs(), any_configs, st.integers(1, 4000), st.randoms(use_true_random=False))
def test_with_a_graph_the_budget_is_hard_and_the_plan_deterministic(
    case: tuple[list[FileEntry], nx.DiGraph], cfg: PlanConfig, budget: int, rnd: random.Random
) -> None:
    items, graph = case
    cfg = replace(cfg, max_tokens=budget, max_depth=max(cfg.max_depth, 1))
    plan = decompose(items, config=cfg, import_graph=graph)
    check_invariants(plan, [e.path for e in items])
    for leaf in plan.leaves:
        if leaf.file_count >= 2:
            assert leaf.tokens <= budget
    # every dependency goes to an earlier wave
    wave_of = {leaf_id: n for n, wave in enumerate(plan.waves()) for leaf_id in wave}
    for dependant, prerequisites in (plan.dependencies or {}).items():
        assert all(wave_of[p] < wave_of[dependant] for p in prerequisites)
    shuffled = list(items)
    rnd.shuffle(shuffled)
    assert plan.to_json() == decompose(shuffled, config=cfg, import_graph=graph).to_json()


# -- stable cuts -----------------------------------------------------------------------------


def _leaf_sets(plan: Plan) -> set[frozenset[str]]:
    return {frozenset(leaf.files) for leaf in plan.leaves}


@given(entries(min_size=2, max_size=150), configs, st.integers(1, 4000), st.data())
def test_a_file_that_grows_changes_only_the_leaf_that_holds_it(
    items: list[FileEntry], cfg: PlanConfig, budget: int, data: st.DataObject
) -> None:
    cfg = replace(cfg, max_tokens=budget, max_depth=max(cfg.max_depth, 1), cuts="stable")
    k = data.draw(st.integers(0, len(items) - 1), label="edited file")
    grown = items[k].size + data.draw(st.integers(1, 20_000), label="bytes added")
    edited = [*items[:k], FileEntry(items[k].path, grown), *items[k + 1 :]]
    before = _leaf_sets(decompose(items, config=cfg))
    after = _leaf_sets(decompose(edited, config=cfg))
    gone, new = before - after, after - before
    # At most the leaf that held it is re-cut, into leaves of its own files only.
    assert len(gone) <= 1
    assert set().union(*gone) == set().union(*new)
    assert all(items[k].path in leaf for leaf in gone)


@given(entries(min_size=2, max_size=150), configs, st.integers(1, 4000), st.data())
def test_a_file_that_shrinks_changes_only_the_leaf_that_comes_to_hold_it(
    items: list[FileEntry], cfg: PlanConfig, budget: int, data: st.DataObject
) -> None:
    # The same two plans as growing it back: the leaf that now holds it is the only new
    # one (it may take in the leaves its old pieces were).
    cfg = replace(cfg, max_tokens=budget, max_depth=max(cfg.max_depth, 1), cuts="stable")
    k = data.draw(st.integers(0, len(items) - 1), label="edited file")
    smaller = data.draw(st.integers(0, items[k].size), label="new size")
    edited = [*items[:k], FileEntry(items[k].path, smaller), *items[k + 1 :]]
    before = _leaf_sets(decompose(items, config=cfg))
    after = _leaf_sets(decompose(edited, config=cfg))
    new = after - before
    assert len(new) <= 1
    assert all(items[k].path in leaf for leaf in new)


def _home(path: str, present: set[str]) -> str:
    """The deepest directory above ``path`` that already holds files ("" for the top)."""
    parts = path.split("/")[:-1]
    while parts:
        prefix = "/".join(parts) + "/"
        if any(p.startswith(prefix) for p in present):
            return prefix
        parts.pop()
    return ""


@given(entries(min_size=2, max_size=150), configs, st.integers(1, 4000), paths(), st.data())
def test_an_added_file_changes_only_leaves_of_its_directory(
    items: list[FileEntry], cfg: PlanConfig, budget: int, added: str, data: st.DataObject
) -> None:
    present = {e.path for e in items}
    assume(added not in present)
    assume(not any(p.startswith(added + "/") or added.startswith(p + "/") for p in present))
    # Deep enough that no level cuts a whole subtree file by file (max_depth - 1 does).
    cfg = replace(cfg, max_tokens=budget, max_depth=8, cuts="stable")
    size = data.draw(st.integers(0, 16_000), label="size")
    before = _leaf_sets(decompose(items, config=cfg))
    after = _leaf_sets(decompose([*items, FileEntry(added, size)], config=cfg))
    gone, new = before - after, after - before
    assert set().union(*gone) | {added} == set().union(*new)
    # Only leaves holding files of the deepest directory above it that has any; when
    # those files all lay in one leaf, that leaf alone is re-cut.
    home = _home(added, present)
    mine = [leaf for leaf in before if any(p.startswith(home) for p in leaf)]
    assert all(leaf in mine for leaf in gone)
    if len(mine) == 1:
        assert len(gone) <= 1
    event(f"leaves gone: {min(len(gone), 3)}")


@given(sized_graphs(), any_configs, st.integers(1, 4000))
def test_no_two_subplans_share_a_label(
    case: tuple[list[FileEntry], nx.DiGraph], cfg: PlanConfig, budget: int
) -> None:
    items, graph = case
    cfg = replace(cfg, max_tokens=budget, max_depth=max(cfg.max_depth, 1))
    for plan in (decompose(items, config=cfg, import_graph=graph), decompose(items, config=cfg)):
        labels = [node.label for node in plan]
        assert len(labels) == len(set(labels)), Counter(labels).most_common(3)


# -- fill with a graph -----------------------------------------------------------------------


@given(sized_graphs(), configs, st.integers(1, 4000))
def test_with_a_graph_no_two_small_tied_leaves_could_be_one(
    case: tuple[list[FileEntry], nx.DiGraph], cfg: PlanConfig, budget: int
) -> None:
    # Two leaves under half the budget that import one another and fit together would
    # have been merged by the small-leaf pass.
    items, graph = case
    cfg = replace(cfg, max_tokens=budget, max_depth=max(cfg.max_depth, 1))
    plan = decompose(items, config=cfg, import_graph=graph)
    check_invariants(plan, [e.path for e in items])
    leaf_of = {f: leaf for leaf in plan.leaves for f in leaf.files}
    max_files = plan.config.max_files
    small = [
        leaf
        for leaf in plan.leaves
        if 2 * leaf.tokens < budget and (max_files is None or 2 * leaf.file_count < max_files)
    ]
    for a, b in graph.edges:
        x, y = leaf_of[a], leaf_of[b]
        if x is y or x not in small or y not in small:
            continue
        assert not plan.config.fits_budget(x.file_count + y.file_count, x.tokens + y.tokens)


@given(sized_graphs(), configs, st.integers(1, 4000))
def test_stable_cuts_are_the_cuts_without_a_graph_and_keep_its_order(
    case: tuple[list[FileEntry], nx.DiGraph], cfg: PlanConfig, budget: int
) -> None:
    # cuts="stable" takes the graph for the order of the leaves only: the tree is the one
    # made without it (so a file's edit re-cuts only its leaf, as the properties above).
    items, graph = case
    cfg = replace(cfg, max_tokens=budget, max_depth=max(cfg.max_depth, 1), cuts="stable")
    with_graph = decompose(items, config=cfg, import_graph=graph)
    without = decompose(items, config=cfg)
    assert [n.files for n in with_graph] == [n.files for n in without]
    assert with_graph.dependencies is not None and without.dependencies is None


@given(entries(min_size=2, max_size=150), configs, st.integers(1, 4000))
def test_full_cuts_without_a_graph_never_leave_more_leaves_than_stable_ones(
    items: list[FileEntry], cfg: PlanConfig, budget: int
) -> None:
    cfg = replace(cfg, max_tokens=budget, max_depth=max(cfg.max_depth, 1))
    stable = decompose(items, config=replace(cfg, cuts="stable"))
    full = decompose(items, config=replace(cfg, cuts="full"))
    check_invariants(full, [e.path for e in items])
    assert len(full.leaves) <= len(stable.leaves)
    # Every leaf of the full plan is a union of leaves of the stable one: merges only.
    stable_leaf = {f: leaf.id for leaf in stable.leaves for f in leaf.files}
    for leaf in full.leaves:
        parts = {stable_leaf[f] for f in leaf.files}
        assert sum(stable[p].file_count for p in parts) == leaf.file_count


def _spans_by_definition(
    hashes: list[int], counts: list[int], tokens: list[int], cfg: PlanConfig
) -> list[tuple[int, int]]:
    """Content-anchored spans as defined: a span over the budget is cut before its
    highest-hashed item after the first (the first of equal ones), again and again."""
    out: list[tuple[int, int]] = []

    def cut(x: int, y: int) -> None:
        if y - x == 1 or cfg.fits_budget(sum(counts[x:y]), sum(tokens[x:y])):
            out.append((x, y))
            return
        m = max(range(x + 1, y), key=lambda i: (hashes[i], -i))
        cut(x, m)
        cut(m, y)

    if hashes:
        cut(0, len(hashes))
    return out


@given(
    st.lists(
        st.tuples(st.sampled_from("abcdefgh"), st.integers(0, 3), st.integers(0, 900)),
        max_size=60,
    ),
    st.integers(1, 2_000),
    st.one_of(st.none(), st.integers(1, 12)),
)
def test_anchored_spans_are_the_spans_by_definition(
    items: list[tuple[str, int, int]], max_tokens: int, max_files: int | None
) -> None:
    # Few distinct keys: many equal hashes, so the ties are exercised too.
    from subplan._decompose._strategies import _anchor_hash, anchored_spans

    keys = [f"{word}{n}" for word, n, _ in items]
    counts = [1 + n % 2 for _, n, _ in items]
    tokens = [t for _, _, t in items]
    cfg = PlanConfig(max_tokens=max_tokens, max_files=max_files)
    expected = _spans_by_definition([_anchor_hash(k) for k in keys], counts, tokens, cfg)
    assert anchored_spans(keys, counts, tokens, cfg) == expected
