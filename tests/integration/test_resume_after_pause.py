"""A rate-limit pause outlives the orchestrator: a resume waits for the stored reset.

Real stores and the thread driver, on a fake clock (nothing sleeps): a run is limited for
an hour and cancelled during the pause (Ctrl-C); its resume ten minutes later must not
start anything before the stored end of the pause, and the report counts the time the
pauses covered, not their planned lengths added up.
"""

from __future__ import annotations

import random
import threading
from pathlib import Path

import pytest

from execute_helpers import flat_plan
from subplan import resume, run
from subplan._dispatch._results import AttemptContext, Event, Pause, RunReport
from subplan._dispatch._retry import RetryPolicy
from subplan._dispatch._scheduler import Scheduler
from subplan._limit._limiter import Limiter
from subplan._model import Subplan
from subplan._ratelimit._detector import RateLimited
from subplan.testing import FakeClock

HOUR = 3600.0
LIMIT = 30.0  # seconds a bounded wait may take


def test_a_resume_waits_for_the_stored_reset(tmp_path: Path) -> None:
    plan = flat_plan(6)
    limited = plan.leaves[0].id
    cancel = threading.Event()

    class HeldClock(FakeClock):
        """Virtual time that does not jump past the pause before the Ctrl-C below."""

        def sleep(self, seconds: float) -> None:
            assert cancel.wait(LIMIT), "the pause was never announced"
            super().sleep(seconds)

    clock = HeldClock(wall_offset=1_000_000.0)

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        if subplan.id == limited and ctx.attempt == 1:
            raise RateLimited("quota exhausted", retry_after=HOUR)

    def on_event(event: Event) -> None:
        if event.kind == "paused":
            cancel.set()  # Ctrl-C during the pause (the event comes once it is committed)

    store = tmp_path / "state.db"
    first = run(
        plan,
        work,
        max_parallel=1,
        store=store,
        runs_dir=tmp_path,
        run_id="r",
        clock=clock,
        cancel=cancel,
        on_event=on_event,
    )
    assert "cancelled" == first.status
    reset = first.pauses[-1].ends
    clock.advance(600)  # the user resumes ten minutes later: the limit still holds
    second = resume("r", work, store=store, runs_dir=tmp_path, clock=clock)

    assert "succeeded" == second.status, second.outcomes
    restarted = [a.started for a in second.attempts if a.started > first.ended]
    early = [t - reset for t in restarted if t < reset]
    assert [] == early, f"{len(early)} attempts started before the stored reset"
    assert restarted, "nothing ran after the resume"


def test_the_margin_is_a_tenth_of_the_wait_at_most_five_minutes() -> None:
    clock = FakeClock()
    plan = flat_plan(2)

    def scheduler() -> Scheduler:
        return Scheduler(
            plan,
            max_parallel=2,
            run_id="r",
            retry=RetryPolicy(),
            clock=clock,
            limiter=Limiter(2, clock=clock),
            rng=random.Random(0),
        )

    short, long = scheduler(), scheduler()
    assert pytest.approx(clock.monotonic() + 66.0) == short.pause(
        wait=60, reason="x", source="signal"
    )
    assert pytest.approx(clock.monotonic() + 10 * HOUR + 300.0) == long.pause(
        wait=10 * HOUR, reason="x", source="signal"
    )


def test_the_report_counts_the_time_pauses_covered_not_their_sum() -> None:
    plan = flat_plan(1)
    report = RunReport(
        run_id="r",
        status="cancelled",
        max_parallel=1,
        started=0.0,
        ended=500.0,
        outcomes={},
        peak_concurrency=0,
        tracker_peak=0,
        plan=plan,
        pauses=(
            Pause(10.0, 110.0, "a", "signal"),
            Pause(60.0, 160.0, "b", "signal"),  # overlaps the first
            Pause(400.0, 400.0 + HOUR, "c", "signal"),  # the run stopped during it
        ),
    )

    assert 150.0 + 100.0 == report.paused_seconds
