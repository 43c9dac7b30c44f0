"""The asyncio backend of :func:`subplan.arun`: the same dispatcher, on the running loop.

Coroutine work runs as tasks (a timeout or a cancel cancels the task); plain functions
run on a pool of threads, awaited from the loop. Attempts end on the loop's thread, so
the dispatcher's lock is never contended.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from .._clock import SystemClock
from .._dispatch._results import AttemptContext
from .._dispatch._scheduler import AttemptEnd
from ._loop import Dispatch, Live
from ._setup import is_async
from ._threads import pool_size

if TYPE_CHECKING:
    from .._dispatch._results import RunReport
    from ._setup import Setup

__all__ = ["AsyncioBackend", "run_asyncio"]


class AsyncioBackend:
    """Attempts as tasks of the running event loop."""

    def __init__(self, setup: Setup) -> None:
        self.setup = setup
        self.loop = asyncio.get_running_loop()
        self.pool: ThreadPoolExecutor | None = None
        self.tasks: dict[asyncio.Task[AttemptEnd], int] = {}
        self.by_key: dict[int, asyncio.Task[AttemptEnd]] = {}

    def start(self, key: int, item: Live) -> None:
        target = self.setup.target(item.launch)
        item.cancellable = is_async(target)
        task = asyncio.ensure_future(self.attempt(item, self.setup.context(item), target))
        self.tasks[task] = key
        self.by_key[key] = task

    def done(self, task: asyncio.Task[AttemptEnd]) -> int:
        key = self.tasks.pop(task)
        del self.by_key[key]
        return key

    async def attempt(
        self, item: Live, ctx: AttemptContext, target: Callable[..., Any]
    ) -> AttemptEnd:
        setup = self.setup
        clock, tracker = setup.clock, setup.tracker
        value: object = None
        error: BaseException | None = None
        started = clock.time()
        tracker.enter()
        try:
            if item.cancellable:
                value = await target(item.launch.subplan, ctx)
            else:
                if self.pool is None:
                    self.pool = ThreadPoolExecutor(
                        pool_size(setup.scheduler.max_parallel), thread_name_prefix="subplan-work"
                    )
                value = await self.loop.run_in_executor(self.pool, target, item.launch.subplan, ctx)
        except asyncio.CancelledError as exc:
            error = exc
            if not (item.timed_out or item.cancel.is_set()):
                raise
        except Exception as exc:
            error = exc
        finally:
            tracker.exit()
            ended = clock.time()
        return setup.end(item, started, ended, value, error)

    def _stop(self, key: int, item: Live) -> None:
        task = self.by_key.get(key)
        if item.cancellable and task is not None and not task.done():
            task.cancel()

    def cancel(self, key: int, item: Live) -> None:
        self._stop(key, item)

    def timed_out(self, key: int, item: Live) -> None:
        self._stop(key, item)

    def tick(self, now: float) -> float | None:
        return None

    def stop_reason(self) -> str | None:
        return None

    def kill_commands(self) -> None:
        pass  # arun takes no signals: a second one never comes

    def close(self) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=False, cancel_futures=True)


async def run_asyncio(setup: Setup, cancel: asyncio.Event | threading.Event | None) -> RunReport:
    """Dispatch on the running loop (see :func:`subplan.arun`)."""
    dispatch = Dispatch(setup, cancel)
    backend = AsyncioBackend(setup)
    dispatch.attach(backend)
    clock = setup.clock
    try:
        while True:
            with dispatch.lock:
                due = dispatch.step_locked()
            if due is None:
                break
            wait = dispatch.wait_of(due)
            if not backend.tasks:
                if isinstance(clock, SystemClock):
                    await asyncio.sleep(wait)
                else:
                    clock.sleep(wait)  # nothing can end meanwhile: a fake clock moves on
                    await asyncio.sleep(0)
                continue
            done, _ = await asyncio.wait(
                backend.tasks, timeout=wait, return_when=asyncio.FIRST_COMPLETED
            )
            with dispatch.lock:
                for task in done:
                    dispatch.finish_locked(backend.done(task), task.result())
    except asyncio.CancelledError:
        # The arun task itself was cancelled: cancel what runs, wait for it, re-raise.
        with dispatch.lock:
            dispatch.cancel_locked("cancelled")
        for task in list(backend.tasks):
            with contextlib.suppress(asyncio.CancelledError):
                end = await task
                with dispatch.lock:
                    dispatch.finish_locked(backend.done(task), end)
        raise
    finally:
        backend.close()
    return setup.report()
