"""The one dispatch loop every backend runs under, and the protocol a backend adapts to.

A run's dispatcher is the same whatever executes its attempts: it cancels when asked
(a caller's event, a signal, a failed store, a halt, a lost cluster), stops waiting on
a second signal without leaving a command behind, launches what the scheduler admits,
flags attempts past their deadline, and sleeps until the next thing is due or an
attempt ends. :class:`Dispatch` is that loop, once. A :class:`Backend` only starts an
attempt, tells one to stop, and reports its end through :meth:`Dispatch.end` (or
:meth:`Dispatch.finish_locked`): threads, worker processes, asyncio tasks, a dask
cluster and the simulator of ``subplan.testing`` are adapters of a few dozen lines.

Everything that touches the scheduler holds :attr:`Dispatch.lock`, from whichever
thread: the main loop, a worker thread that ends an attempt and takes the next one
itself, a pool's watcher thread.
"""

from __future__ import annotations

import contextlib
import itertools
import math
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import FrameType
from typing import TYPE_CHECKING, Protocol

from .._clock import SystemClock
from .._dispatch._results import CancelFlag
from .._dispatch._scheduler import AttemptEnd, Launch

if TYPE_CHECKING:
    from ._setup import Setup

__all__ = ["TICK", "Backend", "Dispatch", "Live", "signals_cancel"]

# The dispatcher re-checks cancellation and timeouts at least this often.
TICK = 0.25


@dataclass(slots=True)
class Live:
    """A launched attempt the dispatcher is watching."""

    launch: Launch
    cancel: CancelFlag
    timed_out: bool = False
    # A coroutine attempt can be cancelled; a thread cannot, so a thread attempt keeps its
    # slot (and its place in the tracker) until the function really returns.
    cancellable: bool = False


class Stop(Protocol):
    """What the dispatcher needs of a caller's cancel event (threading's or asyncio's)."""

    def is_set(self) -> bool: ...

    def set(self) -> None: ...


class Backend(Protocol):
    """What executes attempts. Every method but :meth:`stop_reason` is called under the
    dispatcher's lock; none may block."""

    def start(self, key: int, item: Live) -> None:
        """Begin attempt ``item``; report its end with ``key`` to the dispatcher."""

    def cancel(self, key: int, item: Live) -> None:
        """The run was cancelled (``item.cancel`` is set): stop the attempt if it can."""

    def timed_out(self, key: int, item: Live) -> None:
        """The attempt is past its deadline (``item.timed_out`` is set); every tick."""

    def tick(self, now: float) -> float | None:
        """The backend's own chores; the next monotonic time one is due, if any."""

    def stop_reason(self) -> str | None:
        """Why the run must stop now (a lost cluster, say), or None. Outside the lock."""

    def kill_commands(self) -> None:
        """A second signal: kill whatever the backend runs, before the run lets go."""


class Dispatch:
    """One run's dispatcher: the lock, the live attempts, cancellation and the loop.

    Args:
        setup: the run's setup (its scheduler, clock, timeout and stop reasons).
        stop: the caller's cancel event, if any (set on the first signal too).
    """

    def __init__(self, setup: Setup, stop: Stop | None = None) -> None:
        self.setup = setup
        self.scheduler = setup.scheduler
        self.clock = setup.clock
        self.lock = threading.Lock()
        self.changed = threading.Event()  # set when the main loop should look again
        self.live: dict[int, Live] = {}
        self.stop: Stop = stop if stop is not None else threading.Event()
        self.signals_seen = 0
        self.failures: list[BaseException] = []
        self.backend: Backend | None = None
        self._keys = itertools.count(1)

    def attach(self, backend: Backend) -> None:
        self.backend = backend

    def _backend(self) -> Backend:
        assert self.backend is not None, "attach a backend first"
        return self.backend

    # -- from any thread -----------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        """SIGINT/SIGTERM: the first cancels the run, the second stops waiting for it."""
        self.signals_seen += 1
        self.stop.set()
        self.changed.set()

    def fail(self, exc: BaseException) -> None:
        """A bug in the dispatcher itself, off the main thread: the main loop re-raises it."""
        self.failures.append(exc)
        self.changed.set()

    def end(
        self,
        key: int,
        end: AttemptEnd | Callable[[Live], AttemptEnd],
        *,
        keep_one: bool = False,
    ) -> tuple[int, Live] | None:
        """An attempt ended: record it and launch what its slot frees.

        ``end`` may be a function of the attempt, called under the lock. With
        ``keep_one`` the first new attempt is returned instead of started, for the
        calling thread to run itself. Nothing escapes: a failure is handed to the main
        loop (see :meth:`fail`).
        """
        try:
            with self.lock:
                self.finish_locked(key, end)
                return self.refill_locked(keep_one=keep_one)
        except BaseException as exc:
            self.fail(exc)
            return None

    # -- under the lock ------------------------------------------------------------------

    def finish_locked(self, key: int, end: AttemptEnd | Callable[[Live], AttemptEnd]) -> None:
        """Record attempt ``key``'s end (no launch); an attempt that ended already is left."""
        item = self.live.pop(key, None)
        if item is None:
            return
        self.scheduler.finished(item.launch, end if isinstance(end, AttemptEnd) else end(item))

    def refill_locked(self, *, keep_one: bool = False) -> tuple[int, Live] | None:
        """Launch what is ready; wake the main loop when nothing runs any more."""
        kept = self.launch_locked(keep_one=keep_one)
        if not self.live:
            self.changed.set()  # the run may be over, or waiting on a timer
        return kept

    def launch_locked(self, *, keep_one: bool = False) -> tuple[int, Live] | None:
        """Start every attempt the scheduler admits now (one kept back with ``keep_one``)."""
        backend = self._backend()
        sched = self.scheduler
        kept: tuple[int, Live] | None = None
        for launch in sched.launch_ready(deadline_after=self.setup.timeout):
            key = next(self._keys)
            item = Live(launch, CancelFlag())
            self.live[key] = item
            if sched.listening:
                sched.emit("attempt_started", subplan_id=launch.unit_id, attempt=launch.attempt)
            if keep_one and kept is None:
                kept = (key, item)
            else:
                backend.start(key, item)
        return kept

    def cancel_locked(self, reason: str) -> None:
        """Cancel the run: nothing new starts, every live attempt is told."""
        backend = self._backend()
        self.scheduler.cancel(reason)
        for key, item in list(self.live.items()):
            item.cancel.set()
            backend.cancel(key, item)

    def _deadlines_locked(self) -> float | None:
        """Flag attempts past their deadline (the backend stops them); the next deadline."""
        if self.setup.timeout is None:
            return None
        upcoming = self.setup.check_deadlines(self.live)
        backend = self._backend()
        for key, item in list(self.live.items()):
            if item.timed_out:
                backend.timed_out(key, item)
        return upcoming

    def step_locked(self, reason: str | None = None) -> float | None:
        """One turn of the loop: None when the run is over, else when to look again.

        ``reason`` is a stop reason from outside the lock (the backend's). The time is
        monotonic and lies in the future (``math.inf``: nothing is due), so a start that
        is due but blocked by a full limiter waits for an end instead of spinning.

        Raises:
            BaseException: the first failure another thread handed over.
        """
        if self.failures:
            raise self.failures[0]
        setup, sched = self.setup, self.scheduler
        reason = setup.stop_reason(self.signals_seen) or reason
        if (self.stop.is_set() or reason) and not sched.cancelled:
            self.cancel_locked(reason or setup.cancel_reason(self.signals_seen))
        if self.signals_seen > 1:
            # Asked twice: stop waiting for in-flight work, but leave no command running
            # behind this process.
            setup.kill_commands()
            self._backend().kill_commands()
            return None
        self.launch_locked()
        if sched.is_done():
            return None
        now = self.clock.monotonic()
        times = (sched.next_wakeup(), self._deadlines_locked(), self._backend().tick(now))
        self.changed.clear()
        return min((t for t in times if t is not None and t > now), default=math.inf)

    # -- the main thread -----------------------------------------------------------------

    def wait_of(self, due: float) -> float:
        """Seconds to sleep until ``due``, at most a tick."""
        return max(0.0, min(TICK, due - self.clock.monotonic()))

    def run(self, backend: Backend, *, handle_signals: bool = False) -> None:
        """Dispatch until the run is over (or a second signal), on the calling thread."""
        self.attach(backend)
        with signals_cancel(handle_signals, self.on_signal):
            while True:
                reason = backend.stop_reason()
                with self.lock:
                    due = self.step_locked(reason)
                    idle = not self.live
                if due is None:
                    return
                wait = self.wait_of(due)
                if idle and not isinstance(self.clock, SystemClock):
                    self.clock.sleep(wait)  # nothing can end meanwhile: a fake clock moves on
                else:
                    # Ends and signals set `changed`; a caller's cancel event is seen
                    # within a tick.
                    self.changed.wait(wait)


@contextlib.contextmanager
def signals_cancel(enabled: bool, on_signal: Callable[[int], None]) -> Iterator[None]:
    """While active, SIGINT and SIGTERM call ``on_signal`` instead of killing the process."""
    if not enabled or threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        on_signal(signum)

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
