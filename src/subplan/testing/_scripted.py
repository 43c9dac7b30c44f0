"""Scripted work and a virtual-time run: test scheduling without threads or sleeping."""

from __future__ import annotations

import heapq
import math
import os
import signal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._backends._loop import Dispatch, Live
from .._backends._setup import Setup
from .._clock import Clock
from .._command import _workers as _processes
from .._dispatch._halt import Halt
from .._dispatch._results import AttemptContext, Event, RunReport, WorkResult
from .._dispatch._retry import RetryPolicy
from .._dispatch._scheduler import AttemptEnd
from .._limit._pool import OuterLimiter
from .._model import Plan, Subplan
from .._options import RunOptions
from ._clock import FakeClock

__all__ = ["ScriptedWork", "Step", "simulate"]


class ScriptedError(RuntimeError):
    """The failure a :class:`Step` with ``fail=True`` raises."""


@dataclass(frozen=True, slots=True)
class Step:
    """What one attempt of a scripted subplan does.

    Args:
        duration: seconds the attempt takes (virtual seconds under :func:`simulate`).
        fail: True to raise :class:`ScriptedError`, or an exception to raise.
        passed: the result it reports when it does not raise.
        cost: the cost it reports.
        crash: the worker dies (SIGKILL): in :func:`simulate` the attempt ends
            ``crashed``; called for real it kills its process, so only inside a
            ``backend="process"`` worker (elsewhere it raises RuntimeError instead).
    """

    duration: float = 0.0
    fail: bool | BaseException = False
    passed: bool = True
    cost: float | None = None
    crash: bool = False

    def outcome(self) -> WorkResult:
        """Return the result, or raise the scripted failure (or crash the worker)."""
        if self.crash:
            if _processes._child is None:
                raise RuntimeError("a crash step kills its process: use backend='process'")
            os.kill(os.getpid(), signal.SIGKILL)
        if isinstance(self.fail, BaseException):
            raise self.fail
        if self.fail:
            raise ScriptedError("scripted failure")
        return WorkResult(passed=self.passed, cost=self.cost)


@dataclass
class ScriptedWork:
    """Work whose every attempt is scripted: how long it takes and how it ends.

    Steps are looked up by subplan id, then by label; attempt ``n`` takes step ``n`` of
    the list (the last step repeats). Called as real work (``run``), it sleeps through
    ``clock`` for the step's duration; under :func:`simulate` durations are virtual.

    Args:
        steps: ``{subplan id or label: [Step, ...]}``.
        default: the step of subplans not in ``steps``.
        clock: the clock real-work calls sleep on.

    Example:
        >>> work = ScriptedWork({"a": [Step(1.0, fail=True), Step(1.0)]}, default=Step(2.0))
        >>> work.step_for_label("a", "a", 2)
        Step(duration=1.0, fail=False, passed=True, cost=None, crash=False)
    """

    steps: Mapping[str, Sequence[Step]] = field(default_factory=dict)
    default: Step = field(default_factory=Step)
    clock: Clock | None = None
    calls: list[tuple[str, int]] = field(default_factory=list)

    def step_for_label(self, subplan_id: str, label: str, attempt: int) -> Step:
        """The step for attempt ``attempt`` of a subplan."""
        script = self.steps.get(subplan_id) or self.steps.get(label)
        if not script:
            return self.default
        return script[min(attempt, len(script)) - 1]

    def step(self, subplan: Subplan, attempt: int) -> Step:
        """The step for attempt ``attempt`` of ``subplan``."""
        return self.step_for_label(subplan.id, subplan.label, attempt)

    def __call__(self, subplan: Subplan, ctx: AttemptContext) -> WorkResult:
        self.calls.append((subplan.id, ctx.attempt))
        step = self.step(subplan, ctx.attempt)
        if self.clock is not None:
            self.clock.sleep(step.duration)
        elif step.duration > 0:
            ctx.wait_cancelled(step.duration)
        return step.outcome()


def simulate(
    plan: Plan,
    work: ScriptedWork,
    *,
    max_parallel: int = 10,
    retries: int | RetryPolicy = 0,
    timeout: float | None = None,
    dependencies: Mapping[str, Sequence[str]] | None = None,
    integrate: ScriptedWork | None = None,
    group_caps: Mapping[str, int] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    priorities: Mapping[str, int] | None = None,
    on_event: Callable[[Event], None] | None = None,
    limiter: OuterLimiter[Any] | None = None,
    clock: FakeClock | None = None,
    seed: int | None = 0,
    cancel_at: float | None = None,
    preflight: Callable[[], object] | None = None,
    halt: Halt | None = None,
) -> RunReport:
    """Run ``plan`` through the real dispatcher in virtual time: no threads, no sleeping.

    Each launched attempt ends after its step's duration on ``clock``; the dispatcher's
    decisions (what starts when, retries, skips, the global bound) are exactly those of
    :func:`subplan.run`. A run of hours takes milliseconds, so properties can be checked
    over thousands of cases.

    Args:
        plan: the plan.
        work: the script (see :class:`ScriptedWork`).
        cancel_at: virtual time at which to cancel the run, if any.
        preflight: as for :func:`subplan.run`.
        halt: as for :func:`subplan.run`.
        timeout: attempts longer than this end as timed out at the deadline.
        max_parallel: and the rest: as for :func:`subplan.run`.

    Returns:
        The :class:`~subplan.RunReport`; times are the fake clock's.

    Example:
        >>> from subplan import decompose
        >>> plan = decompose([f"{d}/{i}" for d in "abcde" for i in range(3)], max_files=3)
        >>> report = simulate(plan, ScriptedWork(default=Step(1.0)), max_parallel=2)
        >>> report.peak_concurrency, report.duration
        (2, 3.0)
    """
    fake = clock or FakeClock()
    chosen = RunOptions(
        max_parallel=max_parallel,
        retries=retries,
        timeout=timeout,
        dependencies=dependencies or {},
        group_caps=group_caps or {},
        groups=groups or {},
        priorities=priorities or {},
        seed=seed,
        halt=halt,
    )
    setup = Setup(
        plan,
        work,
        chosen,
        integrate=integrate,
        on_event=on_event,
        run_id="simulated",
        runs_dir="/nonexistent/subplan-simulated",
        limiter=limiter,
        clock=fake,
        preflight=preflight,
    )
    dispatch = Dispatch(setup)
    backend = _Simulated(setup, work, integrate or work)
    dispatch.attach(backend)
    while True:
        now = fake.monotonic()
        due = "cancelled" if cancel_at is not None and now >= cancel_at else None
        wake = dispatch.step_locked(due)  # one thread: the lock is not needed
        if wake is None:
            break
        times = [t for t in (wake, cancel_at) if t is not None and now < t < math.inf]
        if backend.pending:
            times.append(backend.pending[0][0])
        if not times:
            raise RuntimeError("simulation stalled: nothing runs and nothing is due")
        fake.set(max(now, min(times)))
        # End every attempt due by now, in (time, launch) order, before launching again.
        while backend.pending and backend.pending[0][0] <= fake.monotonic():
            ended, key, started, item, step = heapq.heappop(backend.pending)
            setup.tracker.exit()
            dispatch.finish_locked(key, _end(setup, item, step, started, ended))
    return setup.report()


class _Simulated:
    """The simulator's backend: an attempt is its step's end time on a heap."""

    def __init__(self, setup: Setup, work: ScriptedWork, integrate: ScriptedWork) -> None:
        self.setup = setup
        self.work = work
        self.integrate = integrate
        # (end time, key (launch order), start time, live attempt, its step)
        self.pending: list[tuple[float, int, float, Live, Step]] = []

    def start(self, key: int, item: Live) -> None:
        launch = item.launch
        script = self.integrate if launch.kind == "integration" else self.work
        step = script.step(launch.subplan, launch.attempt)
        script.calls.append((launch.unit_id, launch.attempt))
        self.setup.tracker.enter()
        now = self.setup.clock.monotonic()
        duration = step.duration
        timeout = self.setup.timeout
        if timeout is not None and duration > timeout:
            duration, item.timed_out = timeout, True
        heapq.heappush(self.pending, (now + duration, key, now, item, step))

    def cancel(self, key: int, item: Live) -> None:
        pass  # a scripted attempt runs its course; its end sees the cancel

    def timed_out(self, key: int, item: Live) -> None:
        pass  # cut at its deadline when it started

    def tick(self, now: float) -> float | None:
        return None

    def stop_reason(self) -> str | None:
        return None

    def kill_commands(self) -> None:
        pass  # no signals in virtual time


def _end(setup: Setup, item: Live, step: Step, started: float, ended: float) -> AttemptEnd:
    """The attempt's end; times move from the fake monotonic clock to its wall clock."""
    wall = setup.clock.time() - setup.clock.monotonic()
    value: object = None
    error: BaseException | None = None
    if step.crash and not item.timed_out:
        text = "worker died: killed by signal 9 (scripted)"
        return AttemptEnd(
            status="crashed",
            started=started + wall,
            ended=ended + wall,
            error=text,
            exception=RuntimeError(text),
        )
    if item.timed_out:  # cut at the deadline: whatever the step would have done is moot
        error = TimeoutError("scripted attempt ran past its timeout")
    else:
        try:
            value = step.outcome()
        except BaseException as exc:
            error = exc
    return setup.end(item, started + wall, ended + wall, value, error)
