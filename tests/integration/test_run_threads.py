"""run() and arun() with real threads, coroutines and processes.

Bounds are checked with gates, not sleeps: work blocks until the test has seen how many
run at once, so the checks are exact and never flaky.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from execute_helpers import flat_plan, nested_plan
from subplan._backends import _setup
from subplan._command._work import CommandWork
from subplan._dispatch._results import AttemptContext, Event, RunReport, WorkResult
from subplan._dispatch._retry import RetryPolicy
from subplan._limit._limiter import Limiter, Slot
from subplan._limit._tracker import ConcurrencyTracker
from subplan._model import Plan, Subplan
from subplan._run import arun, run
from subplan.testing import FakeClock

WAIT = 10.0  # the longest any gate waits before the test fails with a clear message


def wait_for(condition: object, what: str) -> None:
    deadline = time.monotonic() + WAIT
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.001)


class Gate:
    """Work that holds every attempt until the test opens the gate."""

    def __init__(self) -> None:
        self.tracker = ConcurrencyTracker()
        self.opened = threading.Event()

    def __call__(self, subplan: Subplan, ctx: AttemptContext) -> None:
        with self.tracker:
            if not self.opened.wait(WAIT):
                raise AssertionError("gate never opened")


def peak_under_gate(plan: Plan, limit: int, **options: object) -> tuple[int, RunReport]:
    """Run with every attempt held until ``limit`` are in; return the observed peak."""
    gate = Gate()
    result: list[RunReport] = []
    runner = threading.Thread(
        target=lambda: result.append(run(plan, gate, max_parallel=limit, **options))  # type: ignore[arg-type]
    )
    runner.start()
    expected = min(limit, len(plan.leaves))
    wait_for(lambda: gate.tracker.current >= expected, f"{expected} attempts to start")
    time.sleep(0.05)  # give an over-admitting dispatcher the chance to start one more
    seen = gate.tracker.current
    gate.opened.set()
    runner.join(WAIT)
    assert not runner.is_alive()
    return max(seen, gate.tracker.peak), result[0]


def test_fifteen_subplans_at_ten_peak_at_exactly_ten() -> None:
    seen, report = peak_under_gate(flat_plan(15), 10)
    assert 10 == seen == report.peak_concurrency == report.tracker_peak
    assert report.ok
    assert 15 == len(report.succeeded)


@pytest.mark.parametrize(("leaves", "limit"), [(5, 10), (50, 50), (100, 64), (30, 1)])
def test_peak_equals_the_limit_or_the_work(leaves: int, limit: int) -> None:
    seen, report = peak_under_gate(flat_plan(leaves), limit)
    assert min(leaves, limit) == seen == report.peak_concurrency


def test_nested_subtrees_share_the_bound_with_threads() -> None:
    seen, report = peak_under_gate(nested_plan(), 6)
    assert 6 == seen == report.peak_concurrency


class OverAdmittingLimiter(Limiter):
    """A broken limiter: it admits one more than its capacity."""

    def acquire_nowait(self, *, groups: Sequence[str] = ()) -> Slot | None:
        slot = super().acquire_nowait(groups=groups)
        if slot is None and self.statistics().running <= self.capacity:
            with self._lock:
                return self._admit(tuple(groups))
        return slot


def test_the_peak_check_fails_against_a_broken_limiter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_setup, "Limiter", OverAdmittingLimiter)
    seen, report = peak_under_gate(flat_plan(15), 10)
    assert seen > 10
    assert report.peak_concurrency > 10


def test_exceptions_become_attempt_results_and_never_escape() -> None:
    plan = flat_plan(4)
    raising = {
        leaf.id: exc
        for leaf, exc in zip(
            plan.leaves, [ValueError("v"), SystemExit(3), KeyboardInterrupt(), None], strict=True
        )
    }

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        exc = raising[subplan.id]
        if exc is not None:
            raise exc

    report = run(plan, work, max_parallel=4)
    assert "failed" == report.status
    assert 3 == len(report.failed)
    reasons = sorted(report.outcomes[i].reason or "" for i in report.failed)
    assert ["KeyboardInterrupt", "SystemExit: 3", "ValueError: v"] == reasons


def test_work_may_return_results_and_must_not_return_junk() -> None:
    plan = flat_plan(3)
    values: list[object] = [WorkResult(cost=2.5), False, "junk"]
    by_id = dict(zip((leaf.id for leaf in plan.leaves), values, strict=True))
    report = run(plan, lambda s, ctx: by_id[s.id], max_parallel=3)  # type: ignore[arg-type,return-value]
    first, second, third = (report.outcomes[leaf.id] for leaf in plan.leaves)
    assert ("succeeded", 2.5) == (first.status, first.cost)
    assert "failed" == second.status
    assert "TypeError: work returned str" in (third.reason or "")


def test_retries_with_real_threads() -> None:
    calls: dict[str, int] = {}
    lock = threading.Lock()

    def flaky(subplan: Subplan, ctx: AttemptContext) -> None:
        with lock:
            calls[subplan.id] = calls.get(subplan.id, 0) + 1
        if ctx.attempt < 3:
            raise ConnectionError("try again")

    report = run(
        flat_plan(5), flaky, max_parallel=2, retries=RetryPolicy(retries=2, backoff_base=0.01)
    )
    assert report.ok
    assert {3} == set(calls.values())
    assert all(len(o.attempts) == 3 for o in report.outcomes.values())


def test_a_timeout_cancels_cooperative_work_and_keeps_the_slot_until_it_returns() -> None:
    plan = flat_plan(2)
    tracker = ConcurrencyTracker()

    def slow(subplan: Subplan, ctx: AttemptContext) -> None:
        with tracker:
            ctx.wait_cancelled(WAIT)
            time.sleep(0.05)  # a slow stop: the slot must stay taken meanwhile
            raise RuntimeError("stopped")

    report = run(plan, slow, max_parallel=1, timeout=0.1)
    assert ["timed_out", "timed_out"] == [a.status for a in report.attempts]
    assert 1 == tracker.peak == report.peak_concurrency
    assert "timed out after 0.1s" in (report.outcomes[plan.leaves[0].id].reason or "")


def test_cancel_event_stops_dispatch_and_lists_what_did_not_run() -> None:
    plan = flat_plan(10)
    cancel = threading.Event()
    started = threading.Event()

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        started.set()
        ctx.wait_cancelled(WAIT)
        if ctx.cancelled:
            raise RuntimeError("interrupted")

    runner_result: list[RunReport] = []
    runner = threading.Thread(
        target=lambda: runner_result.append(run(plan, work, max_parallel=2, cancel=cancel))
    )
    runner.start()
    assert started.wait(WAIT)
    cancel.set()
    runner.join(WAIT)
    report = runner_result[0]
    assert "cancelled" == report.status
    assert 10 == len(report.not_run)
    assert 2 == len(report.attempts)
    assert all(a.status == "cancelled" for a in report.attempts)


def test_sigint_cancels_the_run_instead_of_killing_it() -> None:
    plan = flat_plan(6)
    started = threading.Event()

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        started.set()
        ctx.wait_cancelled(WAIT)

    def interrupt() -> None:
        started.wait(WAIT)
        os.kill(os.getpid(), signal.SIGINT)

    # Not default_int_handler: Python started with SIGINT ignored (a background job of a
    # shell) keeps SIG_IGN, and the run must give back whatever it found.
    before = signal.getsignal(signal.SIGINT)
    threading.Thread(target=interrupt).start()
    report = run(plan, work, max_parallel=2, handle_signals=True)
    assert "cancelled" == report.status
    assert "cancelled by signal" == report.outcomes[plan.leaves[-1].id].reason
    assert before == signal.getsignal(signal.SIGINT)


def test_events_arrive_one_at_a_time_and_in_order() -> None:
    events: list[Event] = []
    inside = ConcurrencyTracker()

    def listen(event: Event) -> None:
        with inside:  # would count 2 if two threads delivered events at once
            time.sleep(0.0005)
            events.append(event)

    run(flat_plan(40), lambda s, c: None, max_parallel=8, on_event=listen)
    assert 1 == inside.peak
    assert ["run_started", "run_ended"] == [events[0].kind, events[-1].kind]
    seen: dict[str, list[str]] = {}
    for event in events:
        if event.subplan_id is not None:
            seen.setdefault(event.subplan_id, []).append(event.kind)
    assert 40 == len(seen)
    assert all(["attempt_started", "attempt_ended"] == kinds for kinds in seen.values())


def test_artifacts_directory_is_per_run_and_subplan(tmp_path: Path) -> None:
    plan = flat_plan(2)

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        (ctx.artifacts_dir / "note.txt").write_text(subplan.label)

    run(plan, work, run_id="r1", runs_dir=tmp_path)
    for leaf in plan.leaves:
        assert leaf.label == (tmp_path / "r1" / leaf.id / "note.txt").read_text()


def test_bad_run_ids_are_refused(tmp_path: Path) -> None:
    from subplan import ConfigError

    for bad in ["", "a/b", "..", ".hidden", "-x", "a b"]:
        with pytest.raises(ConfigError, match="not a usable run id"):
            run(flat_plan(1), lambda s, c: None, run_id=bad, runs_dir=tmp_path)


def test_a_shared_limiter_bounds_two_runs_together() -> None:
    shared = Limiter(3)
    gates = [Gate(), Gate()]
    both = ConcurrencyTracker()

    def make(gate: Gate):  # type: ignore[no-untyped-def]
        def work(subplan: Subplan, ctx: AttemptContext) -> None:
            with both:
                gate(subplan, ctx)

        return work

    threads = [
        threading.Thread(
            target=run, args=(flat_plan(6), make(g)), kwargs={"max_parallel": 3, "limiter": shared}
        )
        for g in gates
    ]
    for t in threads:
        t.start()
    wait_for(lambda: both.current >= 3, "3 attempts across both runs")
    time.sleep(0.05)
    assert 3 == both.current
    for g in gates:
        g.opened.set()
    for t in threads:
        t.join(WAIT)
    assert 3 == both.peak
    assert 0 == shared.statistics().running


# -- command work -------------------------------------------------------------------------


def test_command_work_runs_one_process_per_leaf(tmp_path: Path) -> None:
    plan = flat_plan(3)
    # Literal braces in a template are written doubled.
    script = (
        "import json, os, sys; print(json.dumps({{'argv': sys.argv[1:], "
        "'id': os.environ['SUBPLAN_ID'], "
        "'list': open(os.environ['SUBPLAN_FILES_LIST']).read().split()}}))"
    )
    work = CommandWork([sys.executable, "-c", script, "{id}", "{files}"])
    report = run(plan, work, max_parallel=2, run_id="cmd", runs_dir=tmp_path)
    assert report.ok
    for leaf in plan.leaves:
        out = json.loads((tmp_path / "cmd" / leaf.id / "stdout-1.log").read_text())
        assert [leaf.id, *leaf.files] == out["argv"]
        assert leaf.id == out["id"]
        assert list(leaf.files) == out["list"]


def test_command_failures_are_reported_with_their_status(tmp_path: Path) -> None:
    plan = flat_plan(1)
    work = CommandWork([sys.executable, "-c", "import sys; sys.stderr.write('bad'); sys.exit(3)"])
    report = run(plan, work, retries=1, runs_dir=tmp_path, run_id="fail", seed=0)
    outcome = report.outcomes[plan.root.id]
    assert "failed" == outcome.status
    assert 2 == len(outcome.attempts)
    assert "exit status 3" in (outcome.reason or "")
    assert "bad" == (tmp_path / "fail" / plan.root.id / "stderr-2.log").read_text()


def test_command_timeout_kills_the_process_group(tmp_path: Path) -> None:
    plan = flat_plan(1)
    pid_file = tmp_path / "child.pid"
    script = (
        "import subprocess, sys, time; "
        f"p = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(60)']); "
        f"open({str(pid_file)!r}, 'w').write(str(p.pid)); time.sleep(60)"
    )
    work = CommandWork([sys.executable, "-c", script], kill_grace=0.2)
    report = run(plan, work, timeout=1.0, runs_dir=tmp_path)
    assert "timed_out" == report.attempts[0].status
    child = int(pid_file.read_text())
    with pytest.raises(ProcessLookupError):
        os.kill(child, 0) if not _zombie(child) else (_ for _ in ()).throw(ProcessLookupError())


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except (FileNotFoundError, IndexError):
        return False


# -- asyncio --------------------------------------------------------------------------------


def test_arun_runs_coroutines_under_the_bound() -> None:
    tracker = ConcurrencyTracker()

    async def main() -> RunReport:
        # Every attempt waits until ten are in: the peak is exact, not a race with a sleep.
        ten_in = asyncio.Event()

        async def work(subplan: Subplan, ctx: AttemptContext) -> None:
            with tracker:
                if tracker.current >= 10:
                    ten_in.set()
                await asyncio.wait_for(ten_in.wait(), WAIT)

        return await arun(flat_plan(15), work, max_parallel=10)

    report = asyncio.run(main())
    assert report.ok
    assert 10 == tracker.peak == report.peak_concurrency == report.tracker_peak


def test_arun_runs_plain_functions_on_threads_and_retries() -> None:
    plan = flat_plan(4)
    first_two = {leaf.id for leaf in plan.leaves[:2]}
    both_in = threading.Barrier(2, timeout=WAIT)

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        if ctx.attempt == 1:
            if subplan.id in first_two:
                both_in.wait()  # the first two attempts are in at once
            raise ValueError("first time")

    report = asyncio.run(
        arun(plan, work, max_parallel=2, retries=RetryPolicy(retries=1, backoff_base=0.01))
    )
    assert report.ok
    assert 8 == len(report.attempts)
    assert 2 == report.peak_concurrency == report.tracker_peak


def test_arun_timeout_cancels_a_coroutine() -> None:
    async def work(subplan: Subplan, ctx: AttemptContext) -> None:
        await asyncio.sleep(WAIT)

    report = asyncio.run(arun(flat_plan(1), work, timeout=0.05))
    assert "timed_out" == report.attempts[0].status


def test_cancelling_arun_cancels_attempts_and_reraises() -> None:
    started = asyncio.Event()

    async def work(subplan: Subplan, ctx: AttemptContext) -> None:
        started.set()
        await asyncio.sleep(WAIT)

    async def main() -> None:
        task = asyncio.ensure_future(arun(flat_plan(3), work, max_parallel=3))
        await asyncio.wait_for(started.wait(), WAIT)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(main())


def test_arun_cancel_event_returns_a_report() -> None:
    async def main() -> RunReport:
        cancel = asyncio.Event()

        async def work(subplan: Subplan, ctx: AttemptContext) -> None:
            cancel.set()
            await asyncio.sleep(0.01)

        return await arun(flat_plan(6), work, max_parallel=2, cancel=cancel)

    report = asyncio.run(main())
    assert "cancelled" == report.status
    assert report.not_run


def test_integration_steps_with_threads() -> None:
    plan = nested_plan()
    seen: list[str] = []
    lock = threading.Lock()

    def integrate(node: Subplan, ctx: AttemptContext) -> None:
        with lock:
            seen.append(node.id)

    report = run(plan, lambda s, c: None, max_parallel=4, integrate=integrate)
    assert report.ok
    assert {n.id for n in plan if not n.is_leaf} == set(seen)
    assert plan.root.id == seen[-1]  # the root integrates last


def test_a_second_signal_stops_waiting_for_in_flight_work() -> None:
    plan = flat_plan(2)
    started = threading.Event()
    release = threading.Event()

    def stubborn(subplan: Subplan, ctx: AttemptContext) -> None:
        started.set()
        release.wait(WAIT)  # ignores ctx.cancelled

    def interrupt_twice() -> None:
        started.wait(WAIT)
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.3)
        os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=interrupt_twice).start()
    report = run(plan, stubborn, max_parallel=2, handle_signals=True)
    release.set()
    assert "cancelled" == report.status
    assert 2 == len(report.not_run)


def test_retry_waits_on_a_fake_clock_take_no_real_time() -> None:
    clock = FakeClock()
    plan = flat_plan(1)

    def flaky(subplan: Subplan, ctx: AttemptContext) -> None:
        if ctx.attempt < 3:
            raise ConnectionError("again")

    began = time.monotonic()
    policy = RetryPolicy(retries=2, backoff_base=100.0, backoff_cap=100.0)
    report = run(plan, flaky, retries=policy, clock=clock, seed=3)
    assert report.ok
    assert clock.monotonic() > 0  # virtual time passed...
    assert time.monotonic() - began < WAIT  # ...real time did not


def test_arun_on_a_fake_clock_and_with_failing_coroutines() -> None:
    clock = FakeClock()

    async def work(subplan: Subplan, ctx: AttemptContext) -> None:
        if ctx.attempt == 1:
            raise ValueError("first")

    policy = RetryPolicy(retries=1, backoff_base=50.0)
    report = asyncio.run(arun(flat_plan(3), work, retries=policy, clock=clock, seed=1))
    assert report.ok
    assert 6 == len(report.attempts)
    assert {"ValueError"} == {a.error_type for a in report.attempts if a.status == "failed"}


def test_arun_cancel_event_with_work_in_flight() -> None:
    async def main() -> RunReport:
        cancel = asyncio.Event()
        started = asyncio.Event()

        async def work(subplan: Subplan, ctx: AttemptContext) -> None:
            started.set()
            await asyncio.sleep(WAIT)

        async def trigger() -> None:
            await started.wait()
            cancel.set()

        trigger_task = asyncio.ensure_future(trigger())
        report = await arun(flat_plan(4), work, max_parallel=2, cancel=cancel)
        await trigger_task
        return report

    report = asyncio.run(main())
    assert "cancelled" == report.status
    assert 4 == len(report.not_run)
    assert all(a.status == "cancelled" for a in report.attempts)
    assert 2 == report.peak_concurrency == report.tracker_peak


# -- rate limits seen in a command's output ------------------------------------------------

RATE_LIMITED_ONCE = (
    "import os, sys; marker = sys.argv[1]\n"
    "if not os.path.exists(marker):\n"
    "    open(marker, 'w').close()\n"
    "    sys.stderr.write('Error: 429 Too Many Requests. Please try again in 1s\\n')\n"
    "    sys.exit(1)\n"
)


def test_a_command_that_prints_a_rate_limit_pauses_the_run(tmp_path: Path) -> None:
    from subplan import RateLimitDetector

    plan = flat_plan(1)
    work = CommandWork(
        [sys.executable, "-c", RATE_LIMITED_ONCE, str(tmp_path / "marker")],
        rate_limits=RateLimitDetector(),
    )
    report = run(plan, work, runs_dir=tmp_path, retries=0)
    assert report.ok
    assert ["rate_limited", "succeeded"] == [a.status for a in report.attempts]
    (pause,) = report.pauses
    assert pytest.approx(1.1, abs=0.05) == pause.length
    assert report.attempts[1].started >= report.attempts[0].ended + 1.1 - 0.05


def test_a_look_alike_in_a_command_output_is_a_plain_failure(tmp_path: Path) -> None:
    from subplan import RateLimitDetector

    plan = flat_plan(1)
    script = "import sys; sys.stderr.write('SyntaxError at line 1429\\n'); sys.exit(1)"
    work = CommandWork([sys.executable, "-c", script], rate_limits=RateLimitDetector())
    report = run(plan, work, runs_dir=tmp_path)
    assert "failed" == report.status
    assert () == report.pauses
