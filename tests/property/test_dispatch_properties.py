"""Properties of the dispatcher for arbitrary work, failures and limits (virtual time)."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from execute_helpers import flat_plan, level_before, nested_plan
from subplan import Plan
from subplan._backends import _setup
from subplan._dispatch._results import RunReport
from subplan._dispatch._retry import RetryPolicy
from subplan._dispatch._scheduler import AttemptEnd, Launch, Scheduler
from subplan._limit._limiter import Limiter, Slot
from subplan.testing import FakeClock, ScriptedWork, Step, simulate

steps = st.builds(
    Step,
    duration=st.floats(min_value=0.01, max_value=5.0, allow_nan=False),
    fail=st.booleans(),
    cost=st.none() | st.floats(min_value=0, max_value=10, allow_nan=False),
)


def bound_violations(report: RunReport, plan: Plan, limit: int, retries: int) -> list[str]:
    """Every broken promise of the dispatcher in ``report`` (empty when all hold)."""
    out: list[str] = []
    leaves = {leaf.id for leaf in plan.leaves}
    if set(report.outcomes) != leaves:
        out.append("units lost or invented")
    for outcome in report.outcomes.values():
        if outcome.status not in ("succeeded", "failed", "skipped"):
            out.append(f"{outcome.subplan_id} ended {outcome.status}")
        statuses = [a.status for a in outcome.attempts]
        if statuses.count("succeeded") > 1 or ("succeeded" in statuses[:-1]):
            out.append(f"{outcome.subplan_id} ran again after succeeding")
        if len(outcome.attempts) > retries + 1:
            out.append(f"{outcome.subplan_id} had {len(outcome.attempts)} attempts")
        if outcome.status == "succeeded" and statuses[-1] != "succeeded":
            out.append(f"{outcome.subplan_id} succeeded without a successful attempt")
    if report.peak_concurrency > limit or report.tracker_peak > limit:
        out.append(f"peak {report.peak_concurrency}/{report.tracker_peak} above {limit}")
    if report.slots is None or report.slots.acquired != report.slots.released:
        out.append("slots acquired != released")
    if report.peak_concurrency < min(limit, len(leaves)):
        out.append("not work-conserving at the start")
    # Work conservation: a first attempt that started late found every slot busy before.
    for outcome in report.outcomes.values():
        first = outcome.attempts[0].started if outcome.attempts else None
        late = first is not None and first > report.started
        if late and level_before(report, first) < limit:  # type: ignore[arg-type]
            out.append(f"{outcome.subplan_id} waited while a slot was free")
    return out


@settings(max_examples=150)
@given(
    leaves=st.integers(1, 30),
    limit=st.integers(1, 12),
    retries=st.integers(0, 2),
    scripts=st.lists(st.lists(steps, min_size=1, max_size=3), min_size=30, max_size=30),
    seed=st.integers(0, 1000),
)
def test_dispatch_keeps_every_promise(
    leaves: int, limit: int, retries: int, scripts: list[list[Step]], seed: int
) -> None:
    plan = flat_plan(leaves)
    work = ScriptedWork({leaf.id: scripts[n] for n, leaf in enumerate(plan.leaves)})
    report = simulate(plan, work, max_parallel=limit, retries=retries, seed=seed)
    assert [] == bound_violations(report, plan, limit, retries)


@settings(max_examples=60)
@given(limit=st.integers(1, 12), duration=st.floats(0.1, 3.0), seed=st.integers(0, 100))
def test_nested_plans_share_one_bound(limit: int, duration: float, seed: int) -> None:
    plan = nested_plan()
    report = simulate(plan, ScriptedWork(default=Step(duration)), max_parallel=limit, seed=seed)
    assert [] == bound_violations(report, plan, limit, 0)
    assert min(limit, 24) == report.peak_concurrency


class OverAdmittingLimiter(Limiter):
    """A broken limiter: it admits one more than its capacity."""

    def acquire_nowait(self, *, groups: Sequence[str] = ()) -> Slot | None:
        slot = super().acquire_nowait(groups=groups)
        if slot is None and self.statistics().running <= self.capacity:
            with self._lock:  # sneak one past the bound
                return self._admit(tuple(groups))
        return slot


def test_the_checks_catch_a_broken_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    # The system we learn from shipped a peak test whose counter was never wired in.
    # Run the very same checks against a limiter that over-admits: they must object.
    monkeypatch.setattr(_setup, "Limiter", OverAdmittingLimiter)
    plan = flat_plan(15)
    report = simulate(plan, ScriptedWork(default=Step(0.2)), max_parallel=10)
    violations = bound_violations(report, plan, 10, 0)
    assert any("above 10" in v for v in violations), violations
    assert 11 == report.peak_concurrency == report.tracker_peak


class DispatcherMachine(RuleBasedStateMachine):
    """Drive the Scheduler by hand against a reference model of what must hold."""

    def __init__(self) -> None:
        super().__init__()
        self.plan = flat_plan(12)
        self.clock = FakeClock()
        self.limit = 4
        self.limiter = Limiter(self.limit)
        self.scheduler = Scheduler(
            self.plan,
            max_parallel=self.limit,
            run_id="machine",
            retry=RetryPolicy(retries=2, backoff_base=1.0, max_crashes=5, max_rate_limits=1000),
            clock=self.clock,
            rng=random.Random(0),
            limiter=self.limiter,
        )
        self.running: dict[str, Launch] = {}
        self.succeeded: set[str] = set()
        self.charged: dict[str, int] = {}
        self.rate_limits = 0

    def _end(
        self, launch: Launch, status: str, charge: bool = True, wait: float | None = None
    ) -> None:
        now = self.clock.time()
        end = AttemptEnd(
            status=status,  # type: ignore[arg-type]
            started=now,
            ended=now,
            error=None if status == "succeeded" else "boom",
            exception=None if status == "succeeded" else RuntimeError("boom"),
            charged=charge,
            wait=wait,
            source="test",
        )
        del self.running[launch.unit_id]
        self.scheduler.finished(launch, end)

    @rule()
    def launch(self) -> None:
        gate = self.scheduler.paused_until
        launched = self.scheduler.launch_ready()
        if gate is not None and self.clock.monotonic() < gate:
            assert [] == launched, "an attempt started while the pause gate was closed"
        for launch in launched:
            assert launch.unit_id not in self.running, "a unit running twice at once"
            assert launch.unit_id not in self.succeeded, "a unit launched after success"
            self.running[launch.unit_id] = launch

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def complete(self, data: st.DataObject) -> None:
        launch = data.draw(st.sampled_from(sorted(self.running.values(), key=lambda x: x.unit_id)))
        self._end(launch, "succeeded")
        assert launch.unit_id not in self.succeeded, "succeeded twice"
        self.succeeded.add(launch.unit_id)

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def fail(self, data: st.DataObject) -> None:
        launch = data.draw(st.sampled_from(sorted(self.running.values(), key=lambda x: x.unit_id)))
        self.charged[launch.unit_id] = self.charged.get(launch.unit_id, 0) + 1
        self._end(launch, "failed")

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def crash_innocently(self, data: st.DataObject) -> None:
        # Someone else's crash took this attempt down: requeued without spending one.
        launch = data.draw(st.sampled_from(sorted(self.running.values(), key=lambda x: x.unit_id)))
        self._end(launch, "failed", charge=False)

    @precondition(lambda self: self.running)
    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        # Its own worker died: charged, like a failure, and counted toward the crash cap.
        launch = data.draw(st.sampled_from(sorted(self.running.values(), key=lambda x: x.unit_id)))
        self.charged[launch.unit_id] = self.charged.get(launch.unit_id, 0) + 1
        self._end(launch, "crashed")

    @precondition(lambda self: self.running)
    @rule(data=st.data(), wait=st.none() | st.floats(0.0, 5.0))
    def rate_limited(self, data: st.DataObject, wait: float | None) -> None:
        launch = data.draw(st.sampled_from(sorted(self.running.values(), key=lambda x: x.unit_id)))
        charged_before = self.scheduler.units[launch.unit_id].charged
        cancelled = self.scheduler.cancelled
        self._end(launch, "rate_limited", wait=wait)
        assert charged_before == self.scheduler.units[launch.unit_id].charged, "429 spent"
        if not cancelled:  # after a cancel the unit is left for a resume: no pause
            self.rate_limits += 1

    @precondition(lambda self: self.scheduler.paused_until is not None)
    @rule()
    def pause_expires(self) -> None:
        gate = self.scheduler.paused_until
        assert gate is not None
        self.clock.set(max(self.clock.monotonic(), gate))

    @rule(seconds=st.floats(0.0, 3.0))
    def time_passes(self, seconds: float) -> None:
        self.clock.advance(seconds)

    @rule()
    def cancel(self) -> None:
        self.scheduler.cancel("test")

    @invariant()
    def never_above_the_limit(self) -> None:
        assert len(self.running) <= self.limit
        assert self.scheduler.running == len(self.running)

    @invariant()
    def slots_balance(self) -> None:
        stats = self.limiter.statistics()
        assert stats.acquired - stats.released == stats.running == len(self.running)

    @invariant()
    def every_rate_limit_is_a_pause(self) -> None:
        # One gate for the run: each limit opened or extended a pause, never more pauses.
        assert len(self.scheduler.pauses) <= self.rate_limits
        assert (self.rate_limits == 0) == (not self.scheduler.pauses)

    @invariant()
    def nothing_lost(self) -> None:
        states = {u.id: u.state for u in self.scheduler.units.values()}
        assert set(states) == {leaf.id for leaf in self.plan.leaves}
        for unit_id in self.succeeded:
            assert "succeeded" == states[unit_id]
        for unit_id, state in states.items():
            assert (state == "running") == (unit_id in self.running)
            if state == "failed":
                assert self.charged.get(unit_id, 0) == 3  # retries=2 -> three charged
        if not self.running and self.scheduler.cancelled:
            assert self.scheduler.is_done()


TestDispatcherMachine = DispatcherMachine.TestCase
TestDispatcherMachine.settings = settings(max_examples=100, stateful_step_count=60, deadline=None)
