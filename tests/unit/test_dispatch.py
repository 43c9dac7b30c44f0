"""The dispatcher's decisions, checked in virtual time through subplan.testing.simulate."""

from __future__ import annotations

import math
from collections.abc import Iterable

import networkx as nx
import pytest

from execute_helpers import flat_plan, intervals, level_before, nested_plan
from subplan import ConfigError, DependencyCycleError, UnknownSubplanError
from subplan._dispatch._deps import dependencies_from_imports
from subplan._dispatch._results import AttemptRecord, Event, RunReport
from subplan._dispatch._retry import RetryPolicy
from subplan._dispatch._scheduler import AttemptEnd, Launch, Scheduler
from subplan._limit._limiter import Limiter, Slot
from subplan._limit._tracker import peak_from_intervals
from subplan._model import Plan, Subplan
from subplan.testing import FakeClock, ScriptedError, ScriptedWork, Step, simulate

STEADY = ScriptedWork(default=Step(0.2))


@pytest.mark.parametrize(
    ("leaves", "limit", "peak"),
    [(15, 10, 10), (5, 10, 5), (100, 50, 50), (100, 100, 100), (7, 1, 1), (64, 10, 10)],
)
def test_peak_is_the_limit_when_enough_work_is_ready(leaves: int, limit: int, peak: int) -> None:
    report = simulate(flat_plan(leaves), ScriptedWork(default=Step(0.2)), max_parallel=limit)
    assert report.ok
    assert peak == report.peak_concurrency
    assert peak == report.tracker_peak
    assert math.ceil(leaves / limit) * 0.2 == pytest.approx(report.duration)


def test_fifteen_at_ten_takes_two_rounds() -> None:
    report = simulate(flat_plan(15), ScriptedWork(default=Step(0.2)), max_parallel=10)
    assert 10 == report.peak_concurrency
    assert 0.4 == pytest.approx(report.duration)
    assert report.slots is not None
    assert (15, 15, 0) == (report.slots.acquired, report.slots.released, report.slots.running)


def test_nested_subtrees_share_one_global_bound() -> None:
    plan = nested_plan()
    assert 3 == len(plan.root.children)
    report = simulate(plan, ScriptedWork(default=Step(1.0)), max_parallel=6)
    # The original bug: one pool per tier gave 3 x 6 = 18 at once.
    assert 6 == report.peak_concurrency
    assert 24 == len(report.succeeded)
    assert 4.0 == pytest.approx(report.duration)


def test_a_group_cap_bounds_its_subtree_without_blocking_others() -> None:
    plan = nested_plan()
    capped = plan.root.children[0]
    capped_leaves = {leaf.id for leaf in plan.leaves_under(capped)}
    report = simulate(plan, ScriptedWork(default=Step(1.0)), max_parallel=6, group_caps={capped: 2})
    assert report.ok
    assert 2 == peak_from_intervals(intervals(report, capped_leaves))
    # The capped subtree's leaves come first in plan order, yet the others fill the
    # remaining slots at once: no head-of-line blocking.
    assert 6 == report.peak_concurrency
    assert 6 == level_before(report, 1.0 + report.started)


def test_named_groups_are_capped_too() -> None:
    plan = flat_plan(10)
    named = {leaf.id: ["gpu"] for leaf in plan.leaves[:4]}
    report = simulate(
        plan,
        ScriptedWork(default=Step(1.0)),
        max_parallel=5,
        groups=named,
        group_caps={"gpu": 1},
    )
    assert 1 == peak_from_intervals(intervals(report, named))
    assert 5 == report.peak_concurrency


def test_priorities_start_first_and_fifo_otherwise() -> None:
    plan = flat_plan(6)
    last = plan.leaves[-1].id
    events: list[Event] = []
    simulate(
        plan,
        ScriptedWork(default=Step(1.0)),
        max_parallel=1,
        priorities={last: 5},
        on_event=events.append,
    )
    started = [e.subplan_id for e in events if e.kind == "attempt_started"]
    assert [last, *[leaf.id for leaf in plan.leaves[:-1]]] == started


# -- retries ------------------------------------------------------------------------------


def retry_while_others_wait(seed: int = 1) -> tuple[Plan, RunReport, float]:
    """Two slots; the first leaf fails at 1 s and retries; the third is short, the second long.

    Returns the plan, the report and the retry's backoff delay.
    """
    plan = flat_plan(3)
    flaky, _, third = plan.leaves
    work = ScriptedWork(
        {flaky.id: [Step(1.0, fail=True), Step(1.0)], third.id: [Step(0.25)]}, default=Step(5.0)
    )
    events: list[Event] = []
    report = simulate(
        plan,
        work,
        max_parallel=2,
        retries=RetryPolicy(retries=1, backoff_base=3.0),
        seed=seed,
        on_event=events.append,
    )
    (delay,) = [e.delay for e in events if e.kind == "retry_scheduled"]
    assert delay is not None
    return plan, report, delay


def test_a_failed_attempt_is_retried_and_the_wait_holds_no_slot() -> None:
    plan, report, delay = retry_while_others_wait()
    flaky, _, third = plan.leaves
    assert report.ok
    assert delay > 0.25  # the backoff outlasts the third leaf: the retry's start is its own

    def at(moment: float) -> float:
        return moment - report.started  # seconds into the run, on the fake clock

    attempts = report.outcomes[flaky.id].attempts
    assert ["failed", "succeeded"] == [a.status for a in attempts]
    # Fake-clock times are exact (to the float's resolution at epoch seconds): the third
    # leaf took the slot the moment the first attempt failed, and the retry started when
    # its backoff ended, in the slot the third leaf had left.
    (third_attempt,) = report.outcomes[third.id].attempts
    assert 1.0 == pytest.approx(at(attempts[0].ended), abs=1e-6)
    assert 1.0 == pytest.approx(at(third_attempt.started), abs=1e-6)
    assert 1.0 + delay == pytest.approx(at(attempts[1].started), abs=1e-6)


def test_the_slot_check_fails_against_a_dispatcher_that_keeps_the_slot_while_waiting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Broken on purpose: a unit waiting for its retry keeps a slot through its backoff.
    held: dict[str, Slot] = {}
    finished, promote = Scheduler.finished, Scheduler._promote_due

    def keep(self: Scheduler, launch: Launch, end: AttemptEnd) -> None:
        finished(self, launch, end)
        if self.units[launch.unit_id].state == "retry_wait":
            slot = self.limiter.acquire_nowait()  # the slot it just gave back
            assert slot is not None
            held[launch.unit_id] = slot

    def give_back(self: Scheduler, now: float) -> None:
        for due, _, unit_id in list(self._retry_wait):
            if due <= now:
                self.limiter.release(held.pop(unit_id))
        promote(self, now)

    monkeypatch.setattr(Scheduler, "finished", keep)
    monkeypatch.setattr(Scheduler, "_promote_due", give_back)
    plan, report, _ = retry_while_others_wait()
    (third_attempt,) = report.outcomes[plan.leaves[2].id].attempts
    assert third_attempt.started - report.started > 1.0 + 1e-6


def test_backoff_is_full_jitter_within_the_cap() -> None:
    policy = RetryPolicy(retries=5, backoff_base=1.0, backoff_cap=4.0)
    import random

    rng = random.Random(0)
    for retry, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (4, 4.0), (70, 4.0)]:
        delays = [policy.delay(retry, rng) for _ in range(200)]
        assert all(0.0 <= d <= ceiling for d in delays)
        assert max(delays) > ceiling * 0.8  # spread over the whole range
        assert min(delays) < ceiling * 0.2


def test_retries_run_out_and_dependants_are_skipped_with_the_reason() -> None:
    plan = flat_plan(3)
    bad, after, other = plan.leaves
    work = ScriptedWork({bad.id: [Step(1.0, fail=True)]}, default=Step(1.0))
    report = simulate(plan, work, max_parallel=3, retries=2, dependencies={after.id: [bad.id]})
    assert not report.ok
    assert "failed" == report.status
    assert (bad.id,) == report.failed
    assert 3 == len(report.outcomes[bad.id].attempts)
    assert (after.id,) == report.skipped
    assert f"prerequisite {bad.label} ({bad.id}) failed" == report.outcomes[after.id].reason
    assert "succeeded" == report.outcomes[other.id].status
    assert "ScriptedError: scripted failure" == report.outcomes[bad.id].reason


def test_only_the_configured_exceptions_retry() -> None:
    plan = flat_plan(2)
    fatal, transient = plan.leaves
    work = ScriptedWork(
        {fatal.id: [Step(fail=KeyError("config"))], transient.id: [Step(fail=True), Step()]}
    )
    policy = RetryPolicy(retries=3, backoff_base=0.0, retry_on=(ScriptedError,))
    report = simulate(plan, work, retries=policy)
    assert 1 == len(report.outcomes[fatal.id].attempts)
    assert "failed" == report.outcomes[fatal.id].status
    assert "succeeded" == report.outcomes[transient.id].status


def test_unpassed_results_fail_and_retry_only_when_asked() -> None:
    plan = flat_plan(1)
    work = ScriptedWork(default=Step(passed=False))
    report = simulate(plan, work, retries=2)
    assert 1 == len(report.attempts)
    assert "work reported failure" == report.outcomes[plan.root.id].reason
    again = simulate(plan, work, retries=RetryPolicy(retries=2, retry_unpassed=True))
    assert 3 == len(again.attempts)


def test_an_attempt_past_its_timeout_times_out_and_retries() -> None:
    plan = flat_plan(1)
    work = ScriptedWork(default=Step(10.0))
    report = simulate(plan, work, timeout=2.0, retries=RetryPolicy(retries=1, backoff_base=0.0))
    assert ["timed_out", "timed_out"] == [a.status for a in report.attempts]
    assert all(a.duration == pytest.approx(2.0) for a in report.attempts)
    assert "timed out after 2.0s" in (report.outcomes[plan.root.id].reason or "")


# -- dependencies and integration --------------------------------------------------------


def test_dependencies_order_the_starts() -> None:
    plan = flat_plan(3)
    a, b, c = plan.leaves
    report = simulate(
        plan,
        ScriptedWork(default=Step(1.0)),
        max_parallel=10,
        dependencies={a.id: [b.id], b.id: [c.id]},
    )
    start = {o.subplan_id: o.attempts[0].started for o in report.outcomes.values()}
    assert start[c.id] < start[b.id] < start[a.id]
    assert 1 == report.peak_concurrency


def test_a_dependency_on_an_internal_node_waits_for_all_its_leaves() -> None:
    plan = nested_plan()
    first, second, _ = plan.root.children
    report = simulate(
        plan, ScriptedWork(default=Step(1.0)), max_parallel=30, dependencies={second: [first]}
    )
    ends = max(a.ended for a in intervals_of(report, plan.leaves_under(first)))
    starts = min(a.started for a in intervals_of(report, plan.leaves_under(second)))
    assert ends <= starts


def intervals_of(report: RunReport, leaves: Iterable[Subplan]) -> list[AttemptRecord]:
    return [a for leaf in leaves for a in report.outcomes[leaf.id].attempts]


def test_a_cycle_is_an_error_that_prints_it() -> None:
    plan = flat_plan(3)
    a, b, c = (leaf.id for leaf in plan.leaves)
    with pytest.raises(DependencyCycleError) as info:
        simulate(plan, STEADY, dependencies={a: [b], b: [c], c: [a]})
    assert 3 == len(info.value.cycle)
    assert str(info.value).startswith("dependency cycle: ")
    assert str(info.value).count(" -> ") == 3
    assert isinstance(info.value, ValueError)


def test_a_leaf_waiting_for_its_own_ancestor_is_a_cycle() -> None:
    plan = nested_plan()
    leaf = plan.leaves[0]
    with pytest.raises(DependencyCycleError):
        simulate(plan, STEADY, dependencies={leaf.id: [plan.root.id]})


def test_unknown_ids_are_errors() -> None:
    plan = flat_plan(2)
    with pytest.raises(UnknownSubplanError):
        simulate(plan, STEADY, dependencies={"sp-0000000000000000": [plan.leaves[0].id]})
    with pytest.raises(UnknownSubplanError):
        simulate(plan, STEADY, groups={"nope": ["x"]})


def test_dependencies_from_imports_collapse_cycles() -> None:
    plan = flat_plan(3)
    a, b, c = plan.leaves
    graph = nx.DiGraph()
    graph.add_edge(a.files[0], b.files[0])  # a imports b
    graph.add_edge(b.files[0], a.files[0])  # ...and b imports a: a cycle, collapsed
    graph.add_edge(b.files[1], c.files[0])  # b imports c
    deps = dependencies_from_imports(plan, graph)
    assert {b.id: {c.id}} == deps
    report = simulate(plan, STEADY, dependencies={k: sorted(v) for k, v in deps.items()})
    assert report.ok


def test_integration_steps_run_after_their_children() -> None:
    plan = nested_plan()
    report = simulate(
        plan,
        ScriptedWork(default=Step(1.0)),
        max_parallel=8,
        integrate=ScriptedWork(default=Step(0.5)),
    )
    assert report.ok
    internal = [n for n in plan if not n.is_leaf]
    assert len(plan.leaves) + len(internal) == len(report.outcomes)
    for node in internal:
        step = report.outcomes[node.id]
        assert "integration" == step.kind
        children_end = max(report.outcomes[c].attempts[-1].ended for c in node.children)
        assert step.attempts[0].started >= children_end
    assert 8 >= report.peak_concurrency


def test_integration_is_skipped_when_a_child_fails() -> None:
    plan = nested_plan()
    broken = plan.leaves[0]
    work = ScriptedWork({broken.id: [Step(fail=True)]}, default=Step(1.0))
    report = simulate(plan, work, integrate=ScriptedWork())
    skipped = set(report.skipped)
    assert {a.id for a in plan.ancestors(broken.id)} == skipped


# -- cancellation, events, costs, options --------------------------------------------------


def test_cancelling_stops_dispatch_and_says_what_did_not_run() -> None:
    plan = flat_plan(30)
    report = simulate(plan, ScriptedWork(default=Step(1.0)), max_parallel=10, cancel_at=1.5)
    assert "cancelled" == report.status
    assert 20 == len(report.succeeded)  # two rounds finished (the second was in flight)
    assert 10 == len(report.not_run)
    assert all(o.reason == "cancelled" for o in report.outcomes.values() if o.status == "not_run")


def test_events_follow_the_run() -> None:
    plan = flat_plan(2)
    flaky = plan.leaves[0]
    events: list[Event] = []
    work = ScriptedWork({flaky.id: [Step(1.0, fail=True), Step(1.0)]})
    simulate(plan, work, retries=1, on_event=events.append)
    kinds = [e.kind for e in events]
    assert "run_started" == kinds[0]
    assert "run_ended" == kinds[-1]
    assert 3 == kinds.count("attempt_started") == kinds.count("attempt_ended")
    retry = next(e for e in events if e.kind == "retry_scheduled")
    assert (flaky.id, 2) == (retry.subplan_id, retry.attempt)
    assert retry.to_dict()["event"] == "retry_scheduled"
    assert "succeeded" == events[-1].status


def test_a_listener_that_raises_becomes_a_warning() -> None:
    def explode(event: Event) -> None:
        raise RuntimeError("listener bug")

    report = simulate(flat_plan(2), STEADY, on_event=explode)
    assert report.ok
    assert report.warnings
    assert "listener bug" in report.warnings[0]


def test_costs_and_pass_rates_are_derived_per_group() -> None:
    plan = nested_plan()
    first, second, third = plan.root.children
    steps = {leaf.id: [Step(cost=2.0, passed=False)] for leaf in plan.leaves_under(first)}
    steps.update({leaf.id: [Step(cost=1.0)] for leaf in plan.leaves_under(second)})
    report = simulate(plan, ScriptedWork(steps, default=Step(cost=1.0)))
    failed_group, ok_group = report.group(first), report.group(second)
    assert (0.0, 2.0, None) == (
        failed_group.pass_rate,
        failed_group.mean_cost,
        failed_group.cost_of_pass,
    )
    assert (1.0, 1.0, 1.0) == (ok_group.pass_rate, ok_group.mean_cost, ok_group.cost_of_pass)
    root = report.group(plan.root.id)
    assert pytest.approx(2 / 3) == root.pass_rate
    assert pytest.approx(32.0) == report.total_cost
    assert None is report.group(first).to_dict()["cost_of_pass"]
    assert {g.subplan_id for g in report.groups()} == {n.id for n in plan if not n.is_leaf}
    assert third in {g.subplan_id for g in report.groups()}


def test_report_to_dict_shape() -> None:
    report = simulate(flat_plan(3), STEADY, max_parallel=2)
    data = report.to_dict()
    assert "subplan.report/1" == data["schema"]
    assert {"succeeded": 3, "failed": 0, "skipped": 0, "not_run": 0} == data["counts"]
    assert 2 == data["peak_concurrency"]
    assert 3 == len(data["subplans"])
    assert {"acquired": 3, "released": 3} == data["slots"]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"max_parallel": 0}, "max_parallel must be >= 1, got 0"),
        ({"max_parallel": True}, "max_parallel must be an integer"),
        ({"retries": -1}, "retries must be >= 0, got -1"),
        ({"timeout": 0}, "timeout must be > 0 seconds"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        simulate(flat_plan(2), STEADY, **options)  # type: ignore[arg-type]


def test_a_shared_limiter_bounds_this_run_too() -> None:
    shared = Limiter(3)
    report = simulate(
        flat_plan(9), ScriptedWork(default=Step(1.0)), max_parallel=10, limiter=shared
    )
    assert 3 == report.peak_concurrency
    assert 0 == shared.statistics().running
    assert 9 == shared.statistics().acquired == shared.statistics().released


def test_time_comes_from_the_injected_clock() -> None:
    clock = FakeClock(start=100.0, wall_offset=1000.0)
    report = simulate(flat_plan(2), ScriptedWork(default=Step(2.0)), clock=clock)
    assert 1100.0 == report.started
    assert 1102.0 == report.ended


def test_a_diamond_skips_its_bottom_once() -> None:
    plan = flat_plan(3)
    a, b, c = plan.leaves
    events: list[Event] = []
    work = ScriptedWork({a.id: [Step(fail=True)], b.id: [Step(fail=True)]})
    report = simulate(plan, work, dependencies={c.id: [a.id, b.id]}, on_event=events.append)
    assert (c.id,) == report.skipped
    assert 1 == sum(1 for e in events if e.kind == "skipped")


def test_a_scheduler_fed_a_cycle_says_so_instead_of_hanging() -> None:
    import random

    from subplan._dispatch._scheduler import Scheduler

    plan = flat_plan(2)
    a, b = (leaf.id for leaf in plan.leaves)
    scheduler = Scheduler(
        plan,
        max_parallel=2,
        run_id="x",
        retry=RetryPolicy(),
        clock=FakeClock(),
        rng=random.Random(0),
        limiter=Limiter(2),
        dependencies={a: [b], b: [a]},  # expand_dependencies would refuse this
    )
    assert [] == scheduler.launch_ready()
    with pytest.raises(RuntimeError, match="never end"):
        scheduler.is_done()


def scheduler_of(plan: Plan, *, max_parallel: int = 2, capacity: int = 2) -> Scheduler:
    import random

    return Scheduler(
        plan,
        max_parallel=max_parallel,
        run_id="x",
        retry=RetryPolicy(),
        clock=FakeClock(),
        rng=random.Random(0),
        limiter=Limiter(capacity),
    )


def test_the_bound_is_the_limiters_capacity_and_no_second_number() -> None:
    assert 3 == scheduler_of(flat_plan(1), max_parallel=3, capacity=3).max_parallel
    with pytest.raises(ConfigError, match="limiter's capacity is 2"):
        scheduler_of(flat_plan(1), max_parallel=3, capacity=2)


def test_the_first_cancel_reason_wins() -> None:
    scheduler = scheduler_of(flat_plan(2))
    assert (False, None) == (scheduler.cancelled, scheduler.cancel_reason)
    scheduler.cancel("cancelled by signal")
    scheduler.cancel("halted")
    assert (True, "cancelled by signal") == (scheduler.cancelled, scheduler.cancel_reason)
    assert [] == scheduler.launch_ready()
    assert scheduler.is_done()


def test_crashes_in_virtual_time_are_charged_and_capped() -> None:
    plan = flat_plan(3)
    a, b, _ = plan.leaves
    work = ScriptedWork(
        {a.id: [Step(1.0, crash=True), Step(1.0)], b.id: [Step(1.0, crash=True)]},
        default=Step(1.0),
    )
    policy = RetryPolicy(retries=9, backoff_base=0.0, max_crashes=2)
    report = simulate(plan, work, retries=policy)
    assert ["crashed", "succeeded"] == [x.status for x in report.outcomes[a.id].attempts]
    assert ["crashed", "crashed"] == [x.status for x in report.outcomes[b.id].attempts]
    assert "failed" == report.outcomes[b.id].status


def test_a_crash_step_refuses_to_kill_a_process_that_is_not_a_worker() -> None:
    from subplan import run

    report = run(flat_plan(1), ScriptedWork(default=Step(crash=True)))
    assert "failed" == report.status
    assert "use backend='process'" in (report.attempts[0].error or "")
