"""The thread backend: each attempt on a worker thread, ends reported to the dispatcher.

A worker that finishes an attempt records it and takes the next launch itself, so a
freed slot is refilled without a hand-off to another thread; the main thread only
serves timers, deadlines and cancellation (see :class:`~._loop.Dispatch`).
"""

from __future__ import annotations

import functools
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

from ._loop import Dispatch, Live

if TYPE_CHECKING:
    from .._dispatch._results import RunReport
    from ._setup import Setup

__all__ = ["ThreadBackend", "Workers", "pool_size", "run_threads"]


def pool_size(max_parallel: int) -> int:
    """Worker threads for ``max_parallel``: deliberately more than the bound.

    The dispatcher's limiter is the one bound. A pool of exactly ``max_parallel`` threads
    would be a second, silent one: a broken limiter would queue its extra attempts inside
    the pool and every peak check would still pass. Threads are made only when needed, so
    the slack costs nothing while the limiter works.
    """
    return 2 * max_parallel + 2


class Workers:
    """Worker threads fed from one queue: the least machinery between dispatch and work.

    A thread is started only when the attempts in flight outnumber the threads, up to
    ``limit`` (see :func:`pool_size`); threads are reused. They are daemons so a run
    abandoned after a second Ctrl-C cannot keep the interpreter from exiting.
    """

    def __init__(self, limit: int) -> None:
        self._limit = limit
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []

    def submit(self, job: Callable[[], None], *, in_flight: int) -> None:
        if len(self._threads) < min(in_flight, self._limit):
            thread = threading.Thread(
                target=self._loop, name=f"subplan-work-{len(self._threads)}", daemon=True
            )
            thread.start()
            self._threads.append(thread)
        self._jobs.put(job)

    def _loop(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()

    def shutdown(self, *, wait: bool) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        if wait:
            for thread in self._threads:
                thread.join()


class ThreadBackend:
    """Attempts on :class:`Workers` threads. Threads cannot be stopped: a cancelled or
    late attempt sees ``ctx.cancelled`` and keeps its slot until it returns."""

    def __init__(self, setup: Setup, dispatch: Dispatch) -> None:
        self.setup = setup
        self.dispatch = dispatch
        self.workers = Workers(pool_size(setup.scheduler.max_parallel))

    def start(self, key: int, item: Live) -> None:
        job = functools.partial(self.attempt, key, item)
        self.workers.submit(job, in_flight=len(self.dispatch.live))

    def attempt(self, key: int, item: Live) -> None:
        """On a worker thread: run the attempt, then whatever its end launched next."""
        setup = self.setup
        clock, tracker = setup.clock, setup.tracker
        next_one: tuple[int, Live] | None = (key, item)
        while next_one is not None:
            key, item = next_one
            launch = item.launch
            ctx, target = setup.context(item), setup.target(launch)
            value: object = None
            error: BaseException | None = None
            started = clock.time()
            tracker.enter()
            try:
                value = target(launch.subplan, ctx)
            except BaseException as exc:  # nothing escapes into the pool
                error = exc
            finally:
                tracker.exit()
                ended = clock.time()
                setup.forget_process(launch.unit_id, launch.attempt)
            end = setup.end(item, started, ended, value, error)
            next_one = self.dispatch.end(key, end, keep_one=True)

    def cancel(self, key: int, item: Live) -> None:
        pass  # the work sees ctx.cancelled

    def timed_out(self, key: int, item: Live) -> None:
        pass  # the work sees ctx.cancelled; command work kills its group itself

    def tick(self, now: float) -> float | None:
        return None

    def stop_reason(self) -> str | None:
        return None

    def kill_commands(self) -> None:
        pass  # the setup kills the commands' groups; the threads are daemons


def run_threads(setup: Setup, stop: threading.Event | None, handle_signals: bool) -> RunReport:
    """The thread backend (see :func:`subplan.run`)."""
    dispatch = Dispatch(setup, stop)
    backend = ThreadBackend(setup, dispatch)
    try:
        dispatch.run(backend, handle_signals=handle_signals)
    finally:
        backend.workers.shutdown(wait=dispatch.signals_seen < 2)
    return setup.report()
