"""Steps that run plans through the Python API, on real threads and worker processes."""

from __future__ import annotations

import threading
import time
from typing import Any

from behave import given, then, when

from subplan import RateLimited, decompose
from subplan._dispatch._results import AttemptContext, WorkResult
from subplan._dispatch._retry import RetryPolicy
from subplan._limit._tracker import ConcurrencyTracker, peak_from_intervals
from subplan._model import Subplan
from subplan._run import run
from subplan.testing import ScriptedWork, Step

ORDINALS = {"first": 0, "second": 1, "third": 2}


@given("a plan with {count:d} leaf subplans")
def step_flat_plan(context: Any, count: int) -> None:
    files = [f"d{n:04d}/{i}.py" for n in range(count) for i in range(3)]
    context.plan = decompose(files, max_files=3)
    context.dependencies = {}


@given("a plan of {subtrees:d} subtrees with {leaves:d} leaf subplans each")
def step_nested_plan(context: Any, subtrees: int, leaves: int) -> None:
    files = [
        f"tier{t}/group{g}/leaf{n}/{i}.py"
        for t in range(subtrees)
        for g in range(2)
        for n in range(leaves // 2)
        for i in range(3)
    ]
    context.plan = decompose(files, max_files=3)
    context.dependencies = {}


@given("the {dependant} subplan depends on the {prerequisite}")
def step_depends(context: Any, dependant: str, prerequisite: str) -> None:
    leaves = context.plan.leaves
    context.dependencies = {leaves[ORDINALS[dependant]].id: [leaves[ORDINALS[prerequisite]].id]}


def _sleeper(context: Any, seconds: float):  # type: ignore[no-untyped-def]
    context.tracker = ConcurrencyTracker()

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        with context.tracker:
            time.sleep(seconds)

    return work


@when("every subplan works for {seconds:g} seconds with at most {limit:d} in parallel")
def step_run(context: Any, seconds: float, limit: int) -> None:
    context.report = run(context.plan, _sleeper(context, seconds), max_parallel=limit)


@when(
    "every subplan works for {seconds:g} seconds with at most {limit:d} in parallel "
    "and at most {cap:d} from the first subtree"
)
def step_run_capped(context: Any, seconds: float, limit: int, cap: int) -> None:
    first = context.plan.root.children[0]
    context.capped = {leaf.id for leaf in context.plan.leaves_under(first)}
    context.report = run(
        context.plan, _sleeper(context, seconds), max_parallel=limit, group_caps={first: cap}
    )


@when("the first subplan fails on its first attempt and the run allows {retries:d} retry")
def step_flaky(context: Any, retries: int) -> None:
    first = context.plan.leaves[0].id

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        if subplan.id == first and ctx.attempt == 1:
            raise ConnectionError("flaky")

    policy = RetryPolicy(retries=retries, backoff_base=0.01)
    context.report = run(context.plan, work, max_parallel=4, retries=policy)


@when("the first subplan always fails and the run allows {retries:d} retries")
def step_always_fails(context: Any, retries: int) -> None:
    first = context.plan.leaves[0].id

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        if subplan.id == first:
            raise RuntimeError("broken")

    context.report = run(context.plan, work, retries=retries, dependencies=context.dependencies)


@when("each subplan costs {cost:g} and the first one does not pass")
def step_costs(context: Any, cost: float) -> None:
    first = context.plan.leaves[0].id
    lock = threading.Lock()

    def work(subplan: Subplan, ctx: AttemptContext) -> WorkResult:
        with lock:
            return WorkResult(passed=subplan.id != first, cost=cost)

    context.report = run(context.plan, work)


@then("all {count:d} subplans succeed")
def step_all_succeed(context: Any, count: int) -> None:
    assert context.report.ok, context.report.failed
    assert count == len(context.report.succeeded)


@then("the peak concurrency is exactly {peak:d}")
def step_peak(context: Any, peak: int) -> None:
    report = context.report
    assert peak == report.peak_concurrency, report.peak_concurrency
    assert peak == report.tracker_peak, report.tracker_peak
    if hasattr(context, "tracker"):
        assert peak == context.tracker.peak, context.tracker.peak


@then("at most {cap:d} subplans of the first subtree ever run at once")
def step_cap(context: Any, cap: int) -> None:
    spans = [
        (a.started, a.ended) for a in context.report.attempts if a.subplan_id in context.capped
    ]
    assert cap == peak_from_intervals(spans)


@then("the {which} subplan took {count:d} attempts")
def step_attempts(context: Any, which: str, count: int) -> None:
    leaf = context.plan.leaves[ORDINALS[which]]
    assert count == len(context.report.outcomes[leaf.id].attempts)


@then("the {which} subplan failed")
def step_failed(context: Any, which: str) -> None:
    leaf = context.plan.leaves[ORDINALS[which]]
    assert "failed" == context.report.outcomes[leaf.id].status


@then("the {which} subplan succeeded")
def step_succeeded(context: Any, which: str) -> None:
    leaf = context.plan.leaves[ORDINALS[which]]
    assert "succeeded" == context.report.outcomes[leaf.id].status


@then("the second subplan was skipped because its prerequisite failed")
def step_skipped(context: Any) -> None:
    first, second = context.plan.leaves[0], context.plan.leaves[1]
    outcome = context.report.outcomes[second.id]
    assert "skipped" == outcome.status
    assert f"prerequisite {first.label} ({first.id}) failed" == outcome.reason


@then(
    "the whole plan has a pass rate of {rate:g}, a mean cost of {mean:g} "
    "and a cost of pass of {cost_of_pass:g}"
)
def step_summary(context: Any, rate: float, mean: float, cost_of_pass: float) -> None:
    group = context.report.group(context.plan.root.id)
    assert abs(rate - group.pass_rate) < 0.005
    assert abs(mean - group.mean_cost) < 0.005
    assert abs(cost_of_pass - group.cost_of_pass) < 0.005


@when(
    "the third subplan is rate-limited for {seconds:g} second on its first attempt "
    "while the others work for {work:g} seconds, at most {limit:d} in parallel"
)
def step_rate_limited(context: Any, seconds: float, work: float, limit: int) -> None:
    third = context.plan.leaves[2].id

    def task(subplan: Subplan, ctx: AttemptContext) -> None:
        if subplan.id == third and ctx.attempt == 1:
            raise RateLimited("429", retry_after=seconds)
        time.sleep(work)

    context.limited = third
    context.report = run(context.plan, task, max_parallel=limit)


@then("the run paused once, for {seconds:g} seconds")
def step_paused_once(context: Any, seconds: float) -> None:
    (pause,) = context.report.pauses
    assert abs(seconds - pause.length) < 0.05, pause


@then("no subplan started while the run was paused")
def step_nothing_during_pause(context: Any) -> None:
    (pause,) = context.report.pauses
    attempts = context.report.attempts
    during = [a for a in attempts if pause.started < (a.dispatched or 0) < pause.ends]
    assert not during, during


@then("the rate-limited attempt was not charged")
def step_not_charged(context: Any) -> None:
    attempts = context.report.outcomes[context.limited].attempts
    assert ["rate_limited", "succeeded"] == [a.status for a in attempts]
    assert not attempts[0].charged


@when(
    "the workers of the first two subplans die on their first attempt, "
    "in worker processes with {retries:d} retry"
)
def step_workers_die(context: Any, retries: int) -> None:
    first_two = {leaf.id: [Step(crash=True), Step()] for leaf in context.plan.leaves[:2]}
    work = ScriptedWork(first_two, default=Step(0.05))
    context.report = run(context.plan, work, max_parallel=4, retries=retries, backend="process")


@then('the first two subplans each took {count:d} attempts, the first one "{status}"')
def step_first_two(context: Any, count: int, status: str) -> None:
    for leaf in context.plan.leaves[:2]:
        attempts = context.report.outcomes[leaf.id].attempts
        assert count == len(attempts)
        assert status == attempts[0].status


@then("every other subplan took {count:d} attempt")
def step_others(context: Any, count: int) -> None:
    for leaf in context.plan.leaves[2:]:
        assert count == len(context.report.outcomes[leaf.id].attempts)


@when("every worker dies, in worker processes with {retries:d} retries and a crash cap of {cap:d}")
def step_always_crash(context: Any, retries: int, cap: int) -> None:
    policy = RetryPolicy(retries=retries, backoff_base=0.0, max_crashes=cap)
    work = ScriptedWork(default=Step(crash=True))
    context.report = run(context.plan, work, retries=policy, backend="process")


@then("every subplan failed after {count:d} crashed attempts")
def step_failed_after_crashes(context: Any, count: int) -> None:
    for outcome in context.report.outcomes.values():
        assert "failed" == outcome.status
        assert ["crashed"] * count == [a.status for a in outcome.attempts]
