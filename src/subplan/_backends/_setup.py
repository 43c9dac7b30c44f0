"""What every backend of a run shares: the validated options, the scheduler, the
contexts and ends of attempts, the stop reasons and the report (``Setup``).

The dispatch loop (``_loop``) and its backends (threads, processes, asyncio, dask, the
simulator in ``subplan.testing``) take it from here, never from each other.
"""

from __future__ import annotations

import dataclasses
import functools
import inspect
import os
import random
import secrets
import socket
import threading
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from .._clock import Clock, SystemClock
from .._command._in_workspace import InWorkspaces, changed_of
from .._command._process import kill_process_groups
from .._dispatch._deps import expand_dependencies
from .._dispatch._results import AttemptContext, Event, RunReport, Session, WorkResult
from .._dispatch._scheduler import AttemptEnd, Launch, Scheduler
from .._durable._resume import (
    Durable,
    ResumeState,
    check_store_spec,
    describe_work,
    sessions_of,
)
from .._errors import ConfigError, one_line
from .._fs import default_runs_dir, mark_runs_dir
from .._limit._limiter import Limiter
from .._limit._pool import LayeredLimiter, OuterLimiter
from .._limit._tracker import ConcurrencyTracker, peak_from_intervals
from .._model import Plan, Subplan
from .._ratelimit._detector import RateLimitDetector, RateLimited, RateLimitInfo

if TYPE_CHECKING:
    from .._options import RunOptions
    from .._store._base import Store
    from ._dask_pool import DaskSession
    from ._loop import Live


WorkReturn: TypeAlias = WorkResult | bool | None
Work: TypeAlias = Callable[[Subplan, AttemptContext], WorkReturn]
AsyncWork: TypeAlias = Callable[[Subplan, AttemptContext], Awaitable[WorkReturn]]


def new_run_id(clock: Clock | None = None) -> str:
    """A fresh run id: UTC time to the second and 6 random hex digits, sortable by age.

    Example:
        >>> len(new_run_id())
        22
    """
    now = (clock or SystemClock()).time()
    return time.strftime("%Y%m%d-%H%M%S", time.gmtime(now)) + "-" + secrets.token_hex(3)


def check_run_id(run_id: str) -> str:
    if (
        not run_id
        or "/" in run_id
        or "\\" in run_id
        or run_id in (".", "..")
        or run_id.startswith((".", "-"))
        or any(c.isspace() or not c.isprintable() for c in run_id)
        or len(run_id) > 128
    ):
        raise ConfigError(f"not a usable run id: {run_id!r} (no separators, spaces or dots first)")
    return run_id


def _interpret(value: object) -> tuple[bool, float | None, str | None]:
    """(passed, cost, detail) from what the work returned."""
    if value is None:
        return True, None, None
    if isinstance(value, bool):
        return value, None, None
    if isinstance(value, WorkResult):
        return value.passed, value.cost, value.detail
    raise TypeError(f"work returned {type(value).__name__}; return None, a bool or a WorkResult")


def is_async(target: Callable[..., Any]) -> bool:
    return inspect.iscoroutinefunction(target) or inspect.iscoroutinefunction(
        getattr(target, "__call__", None)  # noqa: B004 - an object with an async __call__
    )


def _wait_of(signal: RateLimited, now: float) -> float | None:
    if signal.retry_after is not None:
        return max(0.0, signal.retry_after)
    if signal.reset_at is not None:
        return max(0.0, signal.reset_at - now)
    return None


class Setup:
    """What every backend shares: the options, the scheduler, contexts and ends.

    Args:
        plan: the plan.
        work: the work callable.
        options: the run's options (validated when they were built).
        integrate: the integration callable, if any.
        on_event: the run's listener.
        run_id: the run's id (default: a new one).
        runs_dir: the runs directory (default: :func:`default_runs_dir`).
        limiter: a limiter shared with others.
        clock: the time source.
        preflight: the pre-flight check.
        store: the state store (or its spec) to record the run in.
        resume: what a resume carries over from the stored run.
    """

    def __init__(
        self,
        plan: Plan,
        work: Callable[..., Any],
        options: RunOptions,
        *,
        integrate: Callable[..., Any] | None = None,
        on_event: Callable[[Event], None] | None = None,
        run_id: str | None = None,
        runs_dir: str | os.PathLike[str] | None = None,
        limiter: OuterLimiter[Any] | None = None,
        clock: Clock | None = None,
        preflight: Callable[[], object] | None = None,
        store: Store | str | os.PathLike[str] | None = None,
        resume: ResumeState | None = None,
    ) -> None:
        if getattr(limiter, "needs_dask", False) and options.backend != "dask":
            raise ConfigError(f"a cluster pool needs backend='dask', not {options.backend!r}")
        check_store_spec(store)
        self.options = options
        max_parallel = options.max_parallel
        # The process groups of commands running now, by (unit, attempt).
        self._groups: dict[tuple[str, int], int] = {}
        self._groups_lock = threading.Lock()
        self.work = work
        self.clock = clock or SystemClock()
        self.plan = plan
        self.run_id = check_run_id(run_id) if run_id is not None else new_run_id(self.clock)
        self.runs_dir = Path(runs_dir) if runs_dir is not None else default_runs_dir()
        self.run_dir = self.runs_dir / self.run_id
        self.integrate = integrate
        caps = options.group_caps
        unit_groups = self._unit_groups(plan, caps, options.groups)
        # The run's own limiter is the bound; a shared one is layered on top of it.
        self.limiter: Limiter = (
            Limiter(max_parallel, group_caps=caps, clock=self.clock)
            if limiter is None
            else LayeredLimiter(max_parallel, outer=limiter, group_caps=caps, clock=self.clock)
        )
        deps: dict[str, set[str]] = {}
        if options.dependencies:
            units = {
                n.id: (
                    {n.id} if n.is_leaf or integrate else {x.id for x in plan.leaves_under(n.id)}
                )
                for n in plan
            }
            deps = expand_dependencies(plan, options.dependencies, units=units)
        prio: dict[str, int] = {}
        for node_id, value in options.priorities.items():
            for node in plan.subtree(node_id):
                prio[node.id] = value
        self.tracker = ConcurrencyTracker()
        self.in_workspaces: InWorkspaces | None = None
        workspaces = options.workspaces
        if workspaces is not None:
            # Checked (and left-overs of killed runs recovered) before anything is recorded.
            self.in_workspaces = InWorkspaces.prepare(work, workspaces, self.runs_dir)
            self.work = self.in_workspaces
            if integrate is not None:
                self.integrate = InWorkspaces.prepare(integrate, workspaces, self.runs_dir)
        # A pool that runs with another size now is refused before anything is recorded.
        check_capacity = getattr(limiter, "check_capacity", None)
        if check_capacity is not None:
            check_capacity()
        # A dask cluster is reached (and its pool checked) before anything is recorded:
        # a scheduler that cannot be reached, or a pool of another size, leaves no run.
        self.cluster: DaskSession | None = None
        if options.backend == "dask":
            from ._dask_pool import connect

            self.cluster = connect(options.scheduler, max_parallel, limiter, clock=self.clock)
        try:
            try:
                mark_runs_dir(self.runs_dir)
            except OSError as exc:
                raise ConfigError(
                    f"cannot create the runs directory {self.runs_dir}: "
                    f"{exc.strerror or type(exc).__name__}"
                ) from exc
            self.durable: Durable | None = None
            if store is not None or resume is not None:
                config = {
                    **options.to_dict(),
                    "integrate": integrate is not None,
                    "pool": getattr(limiter, "name", None),
                    "work": describe_work(work),
                    # "project": the absolute project directory, so that `integrate` finds
                    # the repository from anywhere (``repo`` is as the caller spelled it).
                    "workspaces": None
                    if self.in_workspaces is None or workspaces is None
                    else {
                        **workspaces.to_dict(),
                        "base": self.in_workspaces.base,
                        "project": os.path.realpath(workspaces.repo),
                    },
                }
                if config["pool"] is not None:
                    # A resume rebuilds the pool with this size (a ClusterPool's ``size``, a
                    # SharedLimiter's ``capacity``), which may differ from max_parallel.
                    config["pool_size"] = getattr(limiter, "size", None) or getattr(
                        limiter, "capacity", None
                    )
                self.durable = Durable(
                    os.fspath(store) if isinstance(store, os.PathLike) else store,
                    runs_dir=self.runs_dir,
                    run_id=self.run_id,
                    plan=plan,
                    config=config,
                    clock=self.clock,
                    resume=resume,
                )
                if on_event is not None:
                    on_event = self.durable.journal.deliver(on_event)
            self.scheduler = Scheduler(
                plan,
                max_parallel=max_parallel,
                run_id=self.run_id,
                retry=options.retry,
                clock=self.clock,
                rng=random.Random(options.seed),
                limiter=self.limiter,
                dependencies=deps,
                integration=integrate is not None,
                groups=unit_groups,
                priorities=prio,
                emit=on_event,
                prior=resume.prior if resume is not None else None,
                keep=resume.keep if resume is not None else (),
                journal=self.durable.journal if self.durable is not None else None,
                halt=options.halt,
            )
            self.started = self.clock.time()
            rate_limits = options.rate_limits
            self.detector: RateLimitDetector | None = (
                RateLimitDetector(clock=self.clock)
                if rate_limits is True
                else (rate_limits or None)
            )
            self.scheduler.emit("run_started")
            if preflight is not None:
                self.preflight(preflight)
        except BaseException:
            self.close_backend()
            raise

    @property
    def timeout(self) -> float | None:
        """Seconds per attempt, or None."""
        return self.options.timeout

    @property
    def backend(self) -> str:
        return self.options.backend

    def preflight(self, check: Callable[[], object]) -> None:
        """Run the pre-flight check; a rate limit it reports pauses the run before it starts.

        The check may return None (go), a number of seconds to wait, a
        :class:`RateLimitInfo`, or raise :class:`RateLimited`.
        """
        now = self.clock.time()
        try:
            answer = check()
        except RateLimited as exc:
            self.scheduler.pause(wait=_wait_of(exc, now), reason=one_line(exc), source="preflight")
            return
        if answer is None:
            return
        if isinstance(answer, RateLimitInfo):
            wait, reason = answer.wait(now), answer.evidence
        elif isinstance(answer, int | float) and not isinstance(answer, bool):
            wait, reason = float(answer), f"pre-flight check asked to wait {answer}s"
        else:
            raise ConfigError(
                f"preflight returned {type(answer).__name__}; return None, seconds, "
                "a RateLimitInfo, or raise RateLimited"
            )
        self.scheduler.pause(wait=wait, reason=reason, source="preflight")

    @staticmethod
    def _unit_groups(
        plan: Plan, caps: Mapping[str, int], groups: Mapping[str, Sequence[str]]
    ) -> dict[str, tuple[str, ...]]:
        for node_id in groups:
            plan[node_id]
        out: dict[str, tuple[str, ...]] = {}
        if not caps and not groups:
            return out
        for node in plan:
            names: list[str] = []
            for ancestor in (node, *plan.ancestors(node.id)):
                if ancestor.id in caps:
                    names.append(ancestor.id)
                names.extend(groups.get(ancestor.id, ()))
            if names:
                out[node.id] = tuple(dict.fromkeys(names))
        return out

    def context(self, live: Live) -> AttemptContext:
        launch = live.launch
        on_process = functools.partial(
            self.record_process, launch.unit_id, launch.attempt, wait=True
        )
        held = getattr(self.limiter, "held_descriptors", None)
        return AttemptContext(
            run_id=self.run_id,
            subplan_id=launch.unit_id,
            attempt=launch.attempt,
            run_dir=self.run_dir,
            cancel=live.cancel,
            deadline=launch.deadline,
            on_process=on_process,
            inherit_fds=() if held is None else held(launch.slot),
        )

    def record_process(
        self, unit_id: str, attempt: int, pid: int | None, pgid: int | None, *, wait: bool
    ) -> None:
        """Record a running attempt's command process (and wait for the commit)."""
        if pgid is not None:
            with self._groups_lock:
                self._groups[unit_id, attempt] = pgid
        if self.durable is not None:
            self.durable.journal.process(unit_id, attempt, pid=pid, pgid=pgid, wait=wait)

    def forget_process(self, unit_id: str, attempt: int) -> None:
        """The attempt ended: its command's group (if any) is gone."""
        with self._groups_lock:
            self._groups.pop((unit_id, attempt), None)

    def kill_commands(self) -> None:
        """Kill the process group of every command still running (a second Ctrl-C)."""
        with self._groups_lock:
            groups = set(self._groups.values())
        kill_process_groups(groups, grace=1.0)

    def stop_reason(self, signals_seen: int) -> str | None:
        """Why the run must stop now: the store failed, or a halt; None when it need not."""
        if self.durable is not None and self.durable.failed.is_set():
            return self.durable.failure()
        return self.scheduler.halt_reason

    def cancel_reason(self, signals_seen: int) -> str:
        """The reason a driver gives when it cancels the run."""
        return self.stop_reason(signals_seen) or (
            "cancelled by signal" if signals_seen else "cancelled"
        )

    def close_backend(self) -> None:
        """Let go of the dask cluster (a no-op for the other backends, and when done)."""
        cluster, self.cluster = self.cluster, None
        if cluster is not None:
            cluster.close()

    def abandon(self) -> None:
        """After an unexpected error in a driver: leave the store consistent."""
        if self.durable is not None:
            self.durable.abandon(self.clock.time())

    def target(self, launch: Launch) -> Callable[..., Any]:
        if launch.kind == "integration":
            assert self.integrate is not None
            return self.integrate
        return self.work

    def end(
        self,
        live: Live,
        started: float,
        ended: float,
        value: object = None,
        error: BaseException | None = None,
    ) -> AttemptEnd:
        """Turn what the call did into an :class:`AttemptEnd`."""
        value, changed = changed_of(value, error)
        end = self._end(live, started, ended, value, error)
        return end if changed is None else dataclasses.replace(end, changed=changed)

    def _end(
        self,
        live: Live,
        started: float,
        ended: float,
        value: object,
        error: BaseException | None,
    ) -> AttemptEnd:
        interrupted = live.timed_out or live.cancel.is_set()
        exit_code = value.exit_code if isinstance(value, WorkResult) else None
        if error is None:
            try:
                passed, cost, detail = _interpret(value)
            except TypeError as exc:
                error, passed, cost, detail = exc, False, None, None
        if error is None:
            if passed:
                late = "finished after its timeout" if live.timed_out else None
                return AttemptEnd(
                    status="succeeded",
                    started=started,
                    ended=ended,
                    cost=cost,
                    passed=True,
                    detail=late,
                    exit_code=exit_code,
                )
            if not interrupted:
                return AttemptEnd(
                    status="failed",
                    started=started,
                    ended=ended,
                    error=detail or "work reported failure",
                    cost=cost,
                    passed=False,
                    detail=detail,
                    exit_code=exit_code,
                )
        text = one_line(error) if error is not None else "stopped"
        limited = self.rate_limit(error)
        if limited is not None and not (self.scheduler.cancelled and interrupted):
            wait, source = limited
            return AttemptEnd(
                status="rate_limited",
                started=started,
                ended=ended,
                error=text,
                exception=error,
                charged=False,
                wait=wait,
                source=source,
            )
        if live.timed_out or isinstance(error, TimeoutError):
            # Our timeout stopped the work: its "command cancelled" is an echo of that.
            echo = live.timed_out and text.startswith("CommandFailedError: command cancelled")
            why = "its process group was killed" if echo else text
            return AttemptEnd(
                status="timed_out",
                started=started,
                ended=ended,
                error=f"timed out after {self.timeout}s ({why})",
                exception=error,
            )
        if self.scheduler.cancelled and (interrupted or error is None):
            # Stopped by our cancellation, not by its own fault: no attempt is spent, and
            # the subplan stays resumable. What the work said as it stopped ("command
            # cancelled") is an echo of the cancellation: the reason is the run's.
            return self.cancelled_end(started, ended, error)
        # Failed on its own, even while the run stops (``--halt soon`` lets it finish).
        return AttemptEnd(
            status="failed", started=started, ended=ended, error=text, exception=error
        )

    def cancelled_end(
        self, started: float, ended: float, error: BaseException | None = None
    ) -> AttemptEnd:
        """An attempt stopped by the run's cancellation: uncharged, the run's reason."""
        reason = self.scheduler.cancel_reason or "cancelled"
        return AttemptEnd(
            status="cancelled",
            started=started,
            ended=ended,
            error=reason,
            exception=error,
            charged=False,
        )

    def rate_limit(self, error: BaseException | None) -> tuple[float | None, str] | None:
        """(seconds to wait or None, source) when ``error`` says the API rate-limited us."""
        if error is None:
            return None
        now = self.clock.time()
        if isinstance(error, RateLimited):
            return _wait_of(error, now), "signal"
        if self.detector is None or not isinstance(error, Exception):
            return None
        info = self.detector.from_exception(error, now=now)
        return None if info is None else (info.wait(now), info.source)

    def check_deadlines(self, live: Mapping[int, Live]) -> float | None:
        """Flag attempts past their deadline; return the next deadline."""
        now = self.clock.monotonic()
        upcoming: float | None = None
        for item in live.values():
            deadline = item.launch.deadline
            if deadline is None or item.timed_out:
                continue
            if deadline <= now:
                item.timed_out = True
                item.cancel.set()
            elif upcoming is None or deadline < upcoming:
                upcoming = deadline
        return upcoming

    def report(self) -> RunReport:
        sched = self.scheduler
        outcomes = sched.outcomes()
        intervals = [(a.started, a.ended) for o in outcomes.values() for a in o.attempts]
        status: Literal["succeeded", "failed", "cancelled"]
        if sched.cancelled:
            status = "cancelled"
        elif all(o.status == "succeeded" for o in outcomes.values()):
            status = "succeeded"
        else:
            status = "failed"
        ended = self.clock.time()
        sched.emit("run_ended", status=status, reason=sched.cancel_reason)
        warnings = list(sched.warnings)
        started = self.started
        sessions: tuple[Session, ...] = (
            Session(started, ended, socket.gethostname(), os.getpid()),
        )
        if self.durable is not None:
            rows = self.durable.sessions()
            if rows:
                # A resume's report covers the run since it began, as `subplan report`'s.
                every = [a for o in outcomes.values() for a in o.attempts]
                sessions = sessions_of(rows, every, sched.pauses, ended)
                started = min(started, sessions[0].started)
            # Everything is committed (and every event delivered) before the report
            # exists: what it says succeeded is durable. A store that failed raises here.
            self.durable.finish(status, ended)
            warnings += self.durable.journal.warnings
        return RunReport(
            run_id=self.run_id,
            status=status,
            max_parallel=sched.max_parallel,
            started=started,
            ended=ended,
            outcomes=outcomes,
            peak_concurrency=peak_from_intervals(intervals),
            tracker_peak=self.tracker.peak,
            plan=self.plan,
            warnings=tuple(warnings),
            slots=self.limiter.statistics(),
            pauses=tuple(sched.pauses),
            sessions=sessions,
            run_dir=self.run_dir,
        )
