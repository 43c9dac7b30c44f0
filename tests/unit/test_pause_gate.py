"""The pause gate: one rate limit pauses the whole run, and nothing is spent on it."""

from __future__ import annotations

import functools
import random
from typing import ClassVar

import pytest

from execute_helpers import flat_plan
from subplan import ConfigError
from subplan._dispatch._gate import Closing, PauseGate
from subplan._dispatch._results import Event, RunReport
from subplan._dispatch._retry import RetryPolicy
from subplan._dispatch._scheduler import Scheduler
from subplan._limit._limiter import Limiter
from subplan._ratelimit._detector import RateLimited, RateLimitInfo
from subplan.testing import FakeClock, ScriptedWork, Step, simulate


def starts_after(report: RunReport, moment: float) -> list[float]:
    return sorted(a.started for a in report.attempts if a.started > moment)


def gate_violations(report: RunReport, limited_at: float, wait: float) -> list[str]:
    """Starts the gate should have held back, and a reset not honoured."""
    opens = limited_at + wait * 1.1
    early = [t for t in starts_after(report, limited_at) if t < opens]
    out = [f"{len(early)} attempts started while the gate was closed"] if early else []
    if not report.pauses:
        out.append("no pause recorded")
    return out


def test_the_gate_check_fails_against_a_dispatcher_that_does_not_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Scheduler, "pause", lambda self, **kw: 0.0)
    plan = flat_plan(30)
    work = ScriptedWork(
        {plan.leaves[4].id: [Step(0.5, fail=RateLimited(retry_after=60)), Step(1.0)]},
        default=Step(1.0),
    )
    report = simulate(plan, work, max_parallel=10)
    assert len(gate_violations(report, report.started + 0.5, 60)) == 2


def test_one_rate_limit_pauses_every_start_until_the_reset_plus_ten_percent() -> None:
    plan = flat_plan(30)
    limited = plan.leaves[4]
    work = ScriptedWork(
        {limited.id: [Step(0.5, fail=RateLimited("429", retry_after=60)), Step(1.0)]},
        default=Step(1.0),
    )
    events: list[Event] = []
    report = simulate(plan, work, max_parallel=10, on_event=events.append, seed=7)
    assert report.ok
    assert [] == gate_violations(report, report.started + 0.5, 60)
    gate_closed = report.started + 0.5
    opens = gate_closed + 66.0  # 60 s and the 10% buffer
    # Nothing started while the gate was closed, even though 9 slots were free...
    assert [] == [t for t in starts_after(report, gate_closed) if t < opens]
    # ...and work resumed within the ramp after the reset (honoured within 10%).
    first = starts_after(report, gate_closed)[0]
    assert opens <= first <= opens + 6.6
    # The limited attempt cost nothing: one charged attempt in all, and no retry needed.
    attempts = report.outcomes[limited.id].attempts
    assert ["rate_limited", "succeeded"] == [a.status for a in attempts]
    assert [False, True] == [a.charged for a in attempts]
    assert 1 == len(report.pauses)
    pause = report.pauses[0]
    assert pytest.approx(66.0) == pause.length
    assert ("signal", limited.id) == (pause.source, pause.subplan_id)
    kinds = [e.kind for e in events]
    assert 1 == kinds.count("paused") == kinds.count("resumed")


def test_in_flight_work_finishes_during_a_pause() -> None:
    plan = flat_plan(3)
    first, second, _ = plan.leaves
    work = ScriptedWork(
        {
            first.id: [Step(0.1, fail=RateLimited(retry_after=10)), Step(1.0)],
            second.id: [Step(5.0)],
        },
        default=Step(1.0),
    )
    report = simulate(plan, work, max_parallel=3)
    assert report.ok
    (long_attempt,) = report.outcomes[second.id].attempts
    assert pytest.approx(5.0) == long_attempt.duration  # it ran on through the pause


def test_a_storm_of_limits_is_one_pause_that_never_shortens() -> None:
    plan = flat_plan(20)
    steps = {
        leaf.id: [Step(0.2 + n * 0.01, fail=RateLimited(retry_after=30 - n)), Step(1.0)]
        for n, leaf in enumerate(plan.leaves[:10])
    }
    report = simulate(plan, ScriptedWork(steps, default=Step(1.0)), max_parallel=10)
    assert report.ok
    # The first limit closed the gate for 33 s; the others asked for less: no new pause.
    assert 1 == len(report.pauses)
    assert 10 == sum(1 for a in report.attempts if a.status == "rate_limited")
    assert all(a.charged is False for a in report.attempts if a.status == "rate_limited")


def test_a_longer_limit_extends_the_pause() -> None:
    plan = flat_plan(2)
    a, b = plan.leaves
    work = ScriptedWork(
        {
            a.id: [Step(0.1, fail=RateLimited(retry_after=10)), Step(1.0)],
            b.id: [Step(0.2, fail=RateLimited(retry_after=100)), Step(1.0)],
        }
    )
    report = simulate(plan, work)
    # One pause, extended: from the first limit (at 0.1 s) to the second one's reset + 10%.
    (pause,) = report.pauses
    assert pytest.approx(0.2 + 110.0 - 0.1) == pause.length
    assert "signal" == pause.source
    assert b.id == pause.subplan_id
    assert min(starts_after(report, report.started + 0.3)) >= report.started + 0.2 + 110.0


def test_a_later_shorter_limit_never_shortens_the_pause() -> None:
    plan = flat_plan(4)
    a, b, *_ = plan.leaves
    work = ScriptedWork(
        {
            a.id: [Step(0.1, fail=RateLimited(retry_after=100)), Step(1.0)],
            b.id: [Step(0.2, fail=RateLimited(retry_after=5)), Step(1.0)],
        },
        default=Step(1.0),
    )
    report = simulate(plan, work, max_parallel=2)
    assert report.ok
    # The gate closed at 0.1 s until 0.1 + 110 s; the 5 s limit at 0.2 s changed nothing.
    (pause,) = report.pauses
    assert (0.1, 110.1) == pytest.approx(
        (pause.started - report.started, pause.ends - report.started), abs=1e-6
    )
    assert a.id == pause.subplan_id
    assert [] == gate_violations(report, report.started + 0.1, 100)


def test_the_gate_stays_closed_until_the_first_reset() -> None:
    clock = FakeClock()
    sched = Scheduler(
        flat_plan(2),
        max_parallel=2,
        run_id="r",
        retry=RetryPolicy(),
        clock=clock,
        rng=random.Random(0),
        limiter=Limiter(2),
    )
    opens = sched.pause(wait=100, reason="first", source="signal")
    assert 110.0 == pytest.approx(opens, abs=1e-9)  # the reset and its 10% buffer
    clock.set(0.1)
    assert opens == sched.pause(wait=5, reason="second", source="signal")
    assert opens == sched.paused_until
    for moment in (5.7, 50.0, 109.9):
        clock.set(moment)
        assert [] == sched.launch_ready()
    (pause,) = sched.pauses
    assert "first" == pause.reason
    assert 110.0 == pytest.approx(pause.length, abs=1e-6)
    clock.set(opens + 11.0)  # the reset, and the ramp (10% of the pause) after it
    assert 2 == len(sched.launch_ready())


def test_an_unknown_reset_backs_off_exponentially() -> None:
    plan = flat_plan(1)
    work = ScriptedWork(default=Step(0.1, fail=RateLimited()))
    report = simulate(plan, work, retries=0, seed=3)
    assert "failed" == report.status  # gave up after max_rate_limits (20) in a row
    assert "rate limited 21 times in a row" in (report.outcomes[plan.root.id].reason or "")
    lengths = [p.length for p in report.pauses]
    for n, length in enumerate(lengths[:5]):
        ceiling = 30.0 * 2**n
        assert ceiling / 2 <= length <= ceiling
    assert max(lengths) <= 900.0


def test_a_reset_time_is_honoured() -> None:
    clock = FakeClock(wall_offset=1_000_000.0)
    plan = flat_plan(1)
    work = ScriptedWork(
        default=Step(1.0),
        steps={plan.root.id: [Step(1.0, fail=RateLimited(reset_at=1_000_101.0)), Step(1.0)]},
    )
    report = simulate(plan, work, clock=clock)
    assert pytest.approx(110.0) == report.pauses[0].length  # 100 s to the reset, +10%


def test_preflight_pauses_before_anything_starts() -> None:
    plan = flat_plan(3)
    answers: list[object] = [
        45.0,
        RateLimitInfo(reset_at=1_700_000_045.0, source="x", evidence="x"),
    ]
    for answer in answers:
        report = simulate(
            plan, ScriptedWork(default=Step(1.0)), preflight=functools.partial(lambda a: a, answer)
        )
        assert pytest.approx(49.5) == report.pauses[0].length
        assert "preflight" == report.pauses[0].source
        assert min(a.started for a in report.attempts) >= report.started + 49.5

    def limited() -> None:
        raise RateLimited("quota", retry_after=10)

    report = simulate(plan, ScriptedWork(default=Step(1.0)), preflight=limited)
    assert pytest.approx(11.0) == report.pauses[0].length
    assert simulate(plan, ScriptedWork(), preflight=lambda: None).pauses == ()
    with pytest.raises(ConfigError, match="preflight returned str"):
        simulate(plan, ScriptedWork(), preflight=lambda: "later")


def test_plain_exceptions_that_look_like_rate_limits_are_detected() -> None:
    class APIError(Exception):
        status_code = 429
        headers: ClassVar[dict[str, str]] = {"retry-after": "20"}

    plan = flat_plan(1)
    work = ScriptedWork({plan.root.id: [Step(0.1, fail=APIError("too many requests")), Step(1.0)]})
    report = simulate(plan, work)
    assert report.ok
    assert 1 == len(report.pauses)
    assert "rate_limited" == report.attempts[0].status


def test_a_prerequisite_stopped_by_the_rate_limit_cap_skips_its_dependants() -> None:
    # a is rate-limited every time; b waits for a, c for b; d waits for nobody.
    plan = flat_plan(4)
    a, b, c, d = plan.leaves
    work = ScriptedWork({a.id: [Step(0.1, fail=RateLimited("429", retry_after=5))]})
    events: list[Event] = []
    report = simulate(
        plan,
        work,
        retries=RetryPolicy(retries=2, max_rate_limits=3),
        dependencies={b.id: [a.id], c.id: [b.id]},
        on_event=events.append,
    )
    assert "failed" == report.status
    outcomes = report.outcomes
    assert ("failed", "rate limited 4 times in a row (RateLimited: 429)") == (
        outcomes[a.id].status,
        outcomes[a.id].reason,
    )
    # Rate-limited attempts spend nothing: the cap, not the retries, ended it.
    assert 4 * [("rate_limited", False)] == [(x.status, x.charged) for x in outcomes[a.id].attempts]
    assert ("skipped", f"prerequisite {a.label} ({a.id}) failed") == (
        outcomes[b.id].status,
        outcomes[b.id].reason,
    )
    assert ("skipped", f"prerequisite {b.label} ({b.id}) was skipped") == (
        outcomes[c.id].status,
        outcomes[c.id].reason,
    )
    assert "succeeded" == outcomes[d.id].status
    assert {b.id, c.id} == {e.subplan_id for e in events if e.kind == "skipped"}
    assert {a.id, d.id} == {x.subplan_id for x in report.attempts}  # b and c never started


def test_cancelling_during_a_pause_leaves_the_limited_unit_not_run() -> None:
    plan = flat_plan(2)
    a, _ = plan.leaves
    work = ScriptedWork({a.id: [Step(0.1, fail=RateLimited(retry_after=100))]}, default=Step(1.0))
    report = simulate(plan, work, cancel_at=5.0)
    assert "cancelled" == report.status
    assert (a.id,) == report.not_run


# -- the gate on its own -------------------------------------------------------------------


def close(gate: PauseGate, now: float, wait: float | None, seed: int = 0) -> Closing:
    return gate.close(
        now=now, wall=1000.0 + now, wait=wait, reason="429", source="signal",
        rng=random.Random(seed), ramp=3,
    )  # fmt: skip


def test_the_gate_reopens_once_then_releases_its_ramp_one_start_at_a_time() -> None:
    gate = PauseGate()
    assert "open" == gate.admit(0.0)
    closing = close(gate, 0.0, 100.0)
    assert (110.0, 110.0) == (closing.opens, gate.paused_until)
    assert ["closed", "reopened", "open"] == [gate.admit(t) for t in (109.9, 110.0, 110.0)]
    assert gate.paused_until is None
    released = 0
    now = 110.0
    while gate.next_time(has_ready=True) is not None:
        now = gate.next_time(has_ready=True) or now
        assert gate.ramp_allows(now)
        gate.take_ramp_slot()
        released += 1
    assert 3 == released  # one per slot of the run, then no ramp
    assert now <= 110.0 + 11.0  # within 10% of the pause
    assert gate.ramp_allows(now)


def test_a_shorter_closing_changes_nothing_and_a_longer_one_extends_the_pause() -> None:
    gate = PauseGate()
    first = close(gate, 0.0, 100.0)
    assert first.pause is not None
    shorter = close(gate, 1.0, 5.0)
    assert (first.opens, None) == (shorter.opens, shorter.pause)
    longer = close(gate, 2.0, 200.0)
    assert longer.pause is not None
    assert [longer.pause] == gate.pauses
    assert (1000.0, 1000.0 + 2.0 + 220.0) == (longer.pause.started, longer.pause.ends)


def test_unknown_resets_back_off_and_a_known_one_resets_the_backoff() -> None:
    gate = PauseGate()
    for step, ceiling in enumerate((30.0, 60.0, 120.0, 240.0)):
        length = close(gate, 10_000.0 * step, None, seed=step).length
        assert ceiling / 2 <= length <= ceiling, (step, length)
    close(gate, 100_000.0, 1.0)
    assert 15.0 <= close(gate, 200_000.0, None).length <= 30.0


def test_the_real_end_of_a_pause_is_recorded_once() -> None:
    gate = PauseGate()
    assert gate.record_real_end(5.0) is None  # no pause yet
    closing = close(gate, 0.0, 10.0)
    assert closing.pause is not None
    assert gate.record_real_end(closing.pause.ends) is None  # ended as planned
    late = gate.record_real_end(closing.pause.ends + 0.5)
    assert late is not None
    assert [late] == gate.pauses
    assert closing.pause.ends + 0.5 == late.ends
