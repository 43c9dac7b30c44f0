"""The process backend: the same dispatcher, attempts in crash-isolated worker processes.

Each attempt runs in one of ``max_parallel`` workers of a :class:`ProcessWorkers` pool;
the pool's watcher thread reports each end to the dispatcher, which records it and
submits what it frees at once. A timeout or a cancel kills the worker (and the groups
of the commands it started); a worker that dies breaks only its own attempt.
"""

from __future__ import annotations

import contextlib
import functools
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._command._work import kill_grace_of
from .._command._workers import JobEnd, ProcessWorkers, passed_fds, report_pgid
from .._dispatch._results import AttemptContext, CancelFlag
from .._dispatch._scheduler import AttemptEnd
from .._errors import WorkerCrashedError
from .._model import Subplan
from ._loop import Dispatch, Live

if TYPE_CHECKING:
    from .._dispatch._results import RunReport
    from ._setup import Setup

__all__ = ["ProcessBackend", "run_processes"]


def _in_worker(
    target: Callable[..., Any],
    subplan: Subplan,
    run_id: str,
    attempt: int,
    run_dir: Path,
    deadline: float | None,
) -> object:
    """Run one attempt inside a worker process (module level, so it pickles).

    A command's group is reported to the parent, which records it (durably, with a
    store) before the command may run; the pool slots the parent sent along are passed
    on to the command, so they stay held as long as it lives.
    """
    ctx = AttemptContext(
        run_id=run_id,
        subplan_id=subplan.id,
        attempt=attempt,
        run_dir=run_dir,
        cancel=CancelFlag(),
        deadline=deadline,
        on_process=_recorded_by_parent,
        inherit_fds=passed_fds(),
    )
    return target(subplan, ctx)


def _recorded_by_parent(pid: int, pgid: int) -> None:
    """In a worker: wait until the orchestrator recorded the command's group."""
    report_pgid(pgid, wait=True)


class ProcessBackend:
    """Attempts in the workers of ``pool``; keys are the pool's job ids."""

    def __init__(self, setup: Setup, dispatch: Dispatch) -> None:
        self.setup = setup
        self.dispatch = dispatch
        self.pool: ProcessWorkers | None = None
        self.killed: set[int] = set()
        self.calls: dict[int, functools.partial[object]] = {}  # targets live as long as setup
        # A shared pool's slot travels to the worker, whose command inherits it.
        self.held = getattr(setup.limiter, "held_descriptors", None)

    def start(self, key: int, item: Live) -> None:
        assert self.pool is not None
        setup, launch = self.setup, item.launch
        setup.tracker.enter()  # in flight in a worker, from hand-off to end
        target = setup.target(launch)
        # One callable object per target, so a worker that holds it is sent only the
        # arguments (see ProcessWorkers).
        func = self.calls.get(id(target))
        if func is None:
            func = self.calls[id(target)] = functools.partial(_in_worker, target)
        # Monotonic deadlines are per process, so workers get none: the parent kills
        # late ones.
        args = (launch.subplan, setup.run_id, launch.attempt, setup.run_dir, None)
        self.pool.submit(key, func, args, fds=self.held(launch.slot) if self.held else ())

    def _kill(self, key: int) -> None:
        assert self.pool is not None
        if key not in self.killed:
            self.killed.add(key)
            self.pool.kill(key)

    def cancel(self, key: int, item: Live) -> None:
        self._kill(key)

    def timed_out(self, key: int, item: Live) -> None:
        self._kill(key)

    def tick(self, now: float) -> float | None:
        return None

    def stop_reason(self) -> str | None:
        return None

    def kill_commands(self) -> None:
        assert self.pool is not None
        self.pool.shutdown(wait=False, kill=True)  # every worker, and its groups

    def to_end(self, item: Live, job: JobEnd) -> AttemptEnd:
        setup = self.setup
        started = job.started if job.started is not None else job.ended
        if job.outcome == "returned":
            return setup.end(item, started, job.ended, job.value, None)
        if job.outcome == "raised":
            return setup.end(item, started, job.ended, None, job.error)
        if job.outcome == "crashed":
            text = job.error_text or "worker died"
            # A worker that died before the function started (while starting or unpickling
            # the job) is not the subplan's fault: no attempt is spent. Crashes still count
            # toward max_crashes, so a worker that can never start does not loop forever.
            return AttemptEnd(
                status="crashed",
                started=started,
                ended=job.ended,
                error=text,
                exception=WorkerCrashedError(text),
                charged=job.started is not None,
            )
        if item.timed_out:
            return AttemptEnd(
                status="timed_out",
                started=started,
                ended=job.ended,
                error=f"timed out after {setup.timeout}s",
            )
        return setup.cancelled_end(started, job.ended)

    def _ended(self, job: JobEnd, item: Live) -> AttemptEnd:
        self.killed.discard(job.job_id)
        self.setup.tracker.exit()
        self.setup.forget_process(item.launch.unit_id, item.launch.attempt)
        return self.to_end(item, job)

    def on_end(self, job: JobEnd) -> None:
        """On the pool's watcher thread."""
        self.dispatch.end(job.job_id, functools.partial(self._ended, job))

    def on_pgid(self, job_id: int, pgid: int, *, wait: bool = False) -> None:
        """Record a command's group: on the pool's watcher thread (wait=False: a worker
        kills its job's groups itself if this process dies), or on a thread of the
        pool's while the command is held back until its group is committed (wait=True)."""
        with self.dispatch.lock:
            item = self.dispatch.live.get(job_id)
        if item is None:
            raise RuntimeError(f"job {job_id} is no longer running")
        launch = item.launch
        self.setup.record_process(launch.unit_id, launch.attempt, None, pgid, wait=wait)

    def on_pgid_seen(self, job_id: int, pgid: int) -> None:
        with contextlib.suppress(RuntimeError):  # it ended meanwhile
            self.on_pgid(job_id, pgid)


def run_processes(setup: Setup, stop: threading.Event | None, handle_signals: bool) -> RunReport:
    """The process backend (see :func:`subplan.run`)."""
    dispatch = Dispatch(setup, stop)
    backend = ProcessBackend(setup, dispatch)
    with ProcessWorkers(
        setup.scheduler.max_parallel,
        on_end=backend.on_end,
        on_pgid=backend.on_pgid_seen,
        record_pgid=functools.partial(backend.on_pgid, wait=True),
        kill_grace=kill_grace_of(setup.work),
    ) as pool:
        backend.pool = pool
        dispatch.run(backend, handle_signals=handle_signals)
    return setup.report()
