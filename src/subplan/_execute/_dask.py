"""The dask backend: the same dispatcher, attempts on the workers of a ``distributed`` cluster.

The dispatcher is the one of the thread and process backends: one lock guards the
:class:`~subplan._execute._core.Scheduler`, a watcher thread records each end and submits
what it frees, and the main thread serves timers, deadlines, cancellation and signals.
Dask only runs what the dispatcher hands it; the run's own limiter is the hard bound, so
nothing here relies on dask's scheduling for ``max_parallel``.

Decisions (each one is a trade-off; the README says the same in users' words):

* **Exactly once per attempt.** Dask re-runs a task whose worker died on another worker
  up to ``distributed.scheduler.allowed-failures`` times (3 by default) and only then
  raises :class:`distributed.KilledWorker`. A silent re-run would run an attempt twice
  behind the dispatcher's back, so the cluster a run starts itself is created with
  ``allowed-failures: 0``: a dead worker turns each of its attempts into
  ``KilledWorker`` at once, which the dispatcher records as ``crashed`` (charged, counted
  toward ``RetryPolicy.max_crashes``) and retries under the policy as a *new* attempt.
  On a cluster given by address the scheduler's own setting applies; a value above 0 is
  reported as a warning in the run's report (set ``allowed-failures: 0`` there).
  Results are fetched and their keys released at once, so a worker dying after it
  finished cannot make dask recompute a finished attempt either.
* **Timeouts and cancellation.** Dask cannot stop Python code running in a worker
  thread: cancelling a future only forgets its result. So the deadline travels with the
  attempt: the worker sets ``ctx.cancelled`` when it passes (command work kills its
  process group then and returns timed out). The attempt keeps its slot until the
  worker really returns, so the peak stays honest. On a cluster the run started itself
  (same host, our processes) an attempt still running ``KILL_GRACE`` seconds after its
  deadline, or still running when the run is cancelled, has its worker process killed;
  the nanny starts a fresh worker. On a cluster given by address nothing is killed: the
  run waits for such attempts as the thread backend does (a second signal stops waiting).
* **Worker death.** With one thread per worker and ``worker-saturation: 1.0`` (the
  cluster a run starts itself), a worker holds only the attempt it runs, so its death
  breaks only that attempt. On a cluster with multi-threaded workers, every attempt the
  dead worker was running (or had been handed and not started) is charged a crash.
* **Clock skew.** Each attempt's start and end are read with ``time.time()`` on the
  worker that ran it, so a report's intervals and its peak mix the clocks of every host
  of the cluster. On one host (a ``LocalCluster``) they are one clock; across hosts the
  peak computed from the intervals is only as good as the hosts' clock sync (NTP: a few
  ms). The bound itself never depends on those clocks.
* **A cluster-wide pool** (:class:`ClusterPool`) takes one lease of a
  ``distributed.Semaphore`` per attempt, layered on the run's own limiter. Leases are a
  soft bound (the scheduler drops a lease that is not renewed in
  ``distributed.scheduler.locks.lease-timeout``); the run's ``max_parallel`` stays the
  hard one. A lease that cannot be acquired, or a scheduler that cannot be reached,
  blocks new starts ("no slot now", retried on the next tick); it never stops an
  attempt that already runs.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import pickle
import queue
import secrets
import signal
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeAlias

import dask
import distributed as _distributed

from .._clock import SystemClock
from .._errors import ConfigError
from .._model import Subplan
from ._core import AttemptEnd
from ._results import AttemptContext, CancelFlag, RunReport
from ._run import (
    _TICK,
    WorkerCrashedError,
    _Live,
    _one_line,
    _Setup,
    _signals_cancel,
)

__all__ = ["KILL_GRACE", "ClusterPool", "open_local_cluster"]

# distributed's API is mostly untyped: its objects are Any here, at this one boundary.
_dist: Any = _distributed
Client: TypeAlias = Any
Future: TypeAlias = Any
LocalCluster: TypeAlias = Any
Semaphore: TypeAlias = Any
KilledWorker: type[Exception] = _dist.KilledWorker

# A worker of a cluster we started is killed this long after its attempt's deadline, if
# the attempt has not returned by then (command work returns at the deadline by itself).
KILL_GRACE: Final = 2.0
# A cluster the run starts itself has at most this many worker processes.
_MAX_LOCAL_WORKERS: Final = 32
# The scheduler settings that give exactly-once accounting (see the module docstring).
_CLUSTER_CONFIG: Final = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.scheduler.worker-saturation": 1.0,
}
# After a scheduler error, the pool gives no slot for this long (then tries again).
_POOL_BACKOFF: Final = 0.25


@contextlib.contextmanager
def open_local_cluster(n_workers: int, *, threads_per_worker: int = 1) -> Iterator[LocalCluster]:
    """A ``LocalCluster`` of worker processes set up for exactly-once attempts.

    Its scheduler has ``allowed-failures: 0`` (a dead worker's task is never re-run by
    dask) and ``worker-saturation: 1.0``; the dashboard is off and logging quiet.

    Args:
        n_workers: worker processes.
        threads_per_worker: threads in each.

    Yields:
        The cluster; it is closed on exit.

    Example (starts real worker processes)::

        with open_local_cluster(1) as cluster:
            report = run(plan, work, backend="dask", scheduler=cluster.scheduler_address)
    """
    with dask.config.set(_CLUSTER_CONFIG):
        cluster = _dist.LocalCluster(
            n_workers=n_workers,
            threads_per_worker=threads_per_worker,
            processes=True,
            dashboard_address=None,
            # No dashboard, and its HTTP endpoints on a free port (not 8787: two clusters).
            scheduler_kwargs={"dashboard_address": "127.0.0.1:0"},
            silence_logs=logging.CRITICAL,
        )
    try:
        yield cluster
    finally:
        cluster.close()


@dataclass(frozen=True, slots=True)
class _Lease:
    """One lease of a :class:`ClusterPool` (leases are interchangeable)."""

    number: int


class ClusterPool:
    """A budget shared by every run on a dask cluster: a named ``distributed.Semaphore``.

    Give it as ``limiter=`` to :func:`~subplan.run` with ``backend="dask"``; each attempt
    then holds a lease of the semaphore as well as a slot of the run's own limiter, so
    runs of several orchestrators (on any host) that name the same pool never run more
    than ``size`` attempts together. Every user of a pool must give the same ``size``.

    The semaphore is a soft bound: the scheduler frees a lease that was not renewed for
    ``distributed.scheduler.locks.lease-timeout`` (30 s by default), which can overbook
    the pool while the scheduler is overloaded; each run's ``max_parallel`` stays a hard
    bound. Errors talking to the scheduler never stop running work: they count as "no
    lease now", and the dispatcher asks again on its next tick.

    Args:
        name: the pool's name (the semaphore's).
        size: how many attempts may hold a lease at once, cluster-wide.

    Raises:
        ConfigError: an empty name or a size below 1.

    Example:
        >>> pool = ClusterPool("agents", 20)
        >>> pool.name, pool.size
        ('agents', 20)
    """

    # The dispatcher binds it to the run's client; a thread or process run cannot use it.
    needs_dask: Final = True

    def __init__(self, name: str, size: int) -> None:
        if not name or not isinstance(name, str):
            raise ConfigError(f"a cluster pool needs a name, got {name!r}")
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"a cluster pool's size must be an integer >= 1, got {size!r}")
        self._name = name
        self._size = size
        self._semaphore: Semaphore | None = None
        self._lock = threading.Lock()
        self._numbers = itertools.count(1)
        self._held = 0
        self._blocked_until = 0.0
        self.errors = 0  # scheduler errors seen (each blocked new starts for a moment)
        self.last_error: str | None = None

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._name

    @property
    def size(self) -> int:
        """Leases available cluster-wide."""
        return self._size

    @property
    def held(self) -> int:
        """Leases this object holds now."""
        return self._held

    def bind(self, client: Client) -> None:
        """Register the semaphore with ``client``'s scheduler (the dispatcher does this).

        Raises:
            ConfigError: the pool exists on the scheduler with another size.
        """
        semaphore = _dist.Semaphore(
            max_leases=self._size, name=self._name, scheduler_rpc=client.scheduler, loop=client.loop
        )
        try:
            semaphore.register()
        except ValueError as exc:
            raise ConfigError(f"cluster pool {self._name!r}: {_one_line(exc)}") from None
        self._semaphore = semaphore

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = _one_line(exc)
        self._blocked_until = time.monotonic() + _POOL_BACKOFF

    def acquire_nowait(self) -> _Lease | None:
        """A lease if one is free now, else None (also when the scheduler cannot be reached)."""
        semaphore = self._semaphore
        if semaphore is None or time.monotonic() < self._blocked_until:
            return None
        try:
            got = semaphore.acquire(timeout=0)
        except Exception as exc:  # any scheduler trouble means "not now"
            self._failed(exc)
            return None
        if not got:
            return None
        with self._lock:
            self._held += 1
        return _Lease(next(self._numbers))

    def release(self, slot: _Lease) -> None:
        """Give a lease back; a failure leaves it to expire on the scheduler, never raises."""
        semaphore = self._semaphore
        with self._lock:
            if self._held < 1:
                return
            self._held -= 1
        if semaphore is None:
            return
        try:
            if not semaphore.release():
                self._failed(RuntimeError("the scheduler did not confirm a release"))
        except Exception as exc:  # the lease expires on the scheduler
            self._failed(exc)

    def close(self) -> None:
        """Give back what is still held and stop renewing (the pool stays for others)."""
        semaphore = self._semaphore
        if semaphore is None:
            return
        while self._held:
            self.release(_Lease(0))
        refresh = getattr(semaphore, "refresh_callback", None)
        if refresh is not None:
            refresh.stop()
        self._semaphore = None

    def __repr__(self) -> str:
        return f"ClusterPool({self._name!r}, {self._size})"


@dataclass(frozen=True, slots=True)
class _WorkerEnd:
    """What the worker reports of one attempt: its own clock's times and the outcome."""

    started: float
    ended: float
    value: object
    error: BaseException | None


def _portable(error: BaseException) -> BaseException:
    """``error`` if it pickles, else a RuntimeError carrying its one-line description."""
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made
    except Exception:  # anything that does not survive the trip
        return RuntimeError(_one_line(error))
    return error


def _on_worker(
    target: Callable[..., Any],
    subplan: Subplan,
    run_id: str,
    attempt: int,
    run_dir: Path,
    timeout: float | None,
) -> _WorkerEnd:
    """Run one attempt on a dask worker and time it there (module level, so it pickles).

    Monotonic time is per process, so the deadline is made here from the timeout; when
    it passes, ``ctx.cancelled`` becomes true (command work kills its group then).
    """
    cancel = CancelFlag()
    timer: threading.Timer | None = None
    deadline = None
    if timeout is not None:
        deadline = time.monotonic() + timeout
        timer = threading.Timer(timeout, cancel.set)
        timer.daemon = True
        timer.start()
    started = time.time()
    value: object = None
    error: BaseException | None = None
    try:
        ctx = AttemptContext(
            run_id=run_id,
            subplan_id=subplan.id,
            attempt=attempt,
            run_dir=run_dir,
            cancel=cancel,
            deadline=deadline,
        )
        value = target(subplan, ctx)
    except BaseException as exc:  # every ending is reported, none escapes
        error = _portable(exc)
    finally:
        ended = time.time()
        if timer is not None:
            timer.cancel()
    return _WorkerEnd(started, ended, value, error)


def _processing_on(key: str, dask_scheduler: Any = None) -> str | None:
    """On the scheduler: the address of the worker running ``key``, or None."""
    task = dask_scheduler.tasks.get(key)
    worker = None if task is None else task.processing_on
    return None if worker is None else str(worker.address)


def _allowed_failures(dask_scheduler: Any = None) -> int:
    """On the scheduler: its ``allowed-failures`` setting."""
    return int(dask_scheduler.allowed_failures)


def _local_size(max_parallel: int) -> tuple[int, int]:
    """(workers, threads per worker) of the cluster a run starts: room for the bound.

    One worker process per slot up to ``_MAX_LOCAL_WORKERS`` (agents wait on their
    commands, so workers need not match CPUs); beyond that, workers get more threads.
    """
    workers = min(max_parallel, _MAX_LOCAL_WORKERS)
    return workers, math.ceil(max_parallel / workers)


@contextlib.contextmanager
def _open_client(address: str | None, max_parallel: int) -> Iterator[tuple[Client, bool]]:
    """(client, owned): a client of the cluster at ``address``, or of one started here."""
    if address is None:
        workers, threads = _local_size(max_parallel)
        with open_local_cluster(workers, threads_per_worker=threads) as cluster:
            client = _dist.Client(cluster, set_as_default=False)
            try:
                yield client, True
            finally:
                client.close()
        return
    try:
        client = _dist.Client(address, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot connect to the dask scheduler at {address}: {exc}") from None
    try:
        yield client, False
    finally:
        client.close()


def _cluster_pool(setup: _Setup) -> ClusterPool | None:
    outer = getattr(setup.limiter, "outer", None)
    return outer if isinstance(outer, ClusterPool) else None


def _run_dask(
    setup: _Setup,
    max_parallel: int,
    cancel: threading.Event | None,
    handle_signals: bool,
    scheduler: str | None,
) -> RunReport:
    """The dask backend (see :func:`subplan.run` and the module docstring)."""
    with _open_client(scheduler, max_parallel) as (client, owned):
        pool = _cluster_pool(setup)
        if pool is not None:
            pool.bind(client)
        try:
            if not owned:
                allowed = client.run_on_scheduler(_allowed_failures)
                if allowed > 0:
                    setup.scheduler.warnings.append(
                        f"the dask scheduler re-runs a task whose worker died up to {allowed} "
                        "times (allowed-failures): an attempt may run twice; set "
                        "distributed.scheduler.allowed-failures to 0"
                    )
            return _DaskDriver(setup, client, owned=owned).run(cancel, handle_signals)
        finally:
            if pool is not None:
                pool.close()


class _DaskDriver:
    """One run on one client: the lock, the live attempts, the watcher and the main loop."""

    def __init__(self, setup: _Setup, client: Client, *, owned: bool) -> None:
        self.setup = setup
        self.client = client
        self.owned = owned
        self.lock = threading.Lock()
        self.changed = threading.Event()
        self.live: dict[str, _Live] = {}
        self.futures: dict[str, Future] = {}
        self.ends: queue.SimpleQueue[Future | None] = queue.SimpleQueue()
        self.failures: list[BaseException] = []
        self.killing: set[str] = set()
        self.signals_seen = 0
        self.keys = itertools.count(1)
        # Keys are unique per driver: a key still known to the scheduler from an earlier
        # orchestrator of this run would hand back that old future instead of running.
        self.prefix = f"subplan-attempt-{secrets.token_hex(4)}-"

    # -- dispatch (under the lock) -------------------------------------------------------

    def launch_locked(self) -> None:
        setup = self.setup
        sched = setup.scheduler
        for launch in sched.launch_ready(deadline_after=setup.timeout):
            item = _Live(launch, CancelFlag())
            key = f"{self.prefix}{next(self.keys)}"
            self.live[key] = item
            if sched.listening:
                sched.emit("attempt_started", subplan_id=launch.unit_id, attempt=launch.attempt)
            setup.tracker.enter()  # in flight on the cluster, from hand-off to end
            future = self.client.submit(
                _on_worker,
                setup.target(launch),
                launch.subplan,
                setup.run_id,
                launch.attempt,
                setup.run_dir,
                setup.timeout,
                key=key,
                pure=False,
            )
            self.futures[key] = future
            future.add_done_callback(self.ends.put)

    def to_end(self, item: _Live, future: Future, got: object) -> AttemptEnd:
        """The attempt's end from what its future says (``got``: its result or error)."""
        setup = self.setup
        if isinstance(got, _WorkerEnd):
            return setup.end(item, got.started, got.ended, got.value, got.error)
        now = setup.clock.time()
        started = item.launch.dispatched
        if isinstance(got, KilledWorker) or future.status == "cancelled":
            if item.timed_out:
                return AttemptEnd(
                    "timed_out", started, now, None, f"timed out after {setup.timeout}s"
                )
            if item.cancel.is_set() or setup.scheduler.cancelled:
                return AttemptEnd("cancelled", started, now, None, "cancelled", charge=False)
            if isinstance(got, KilledWorker):
                text = f"the dask worker died: {_one_line(got)}"
                return AttemptEnd("crashed", started, now, WorkerCrashedError(text), text)
            # Dask dropped the task (its scheduler restarted, say): not the subplan's
            # fault, but a crash all the same, so it cannot loop past max_crashes.
            text = "dask cancelled the task before it ended"
            return AttemptEnd("crashed", started, now, WorkerCrashedError(text), text, charge=False)
        error = got if isinstance(got, BaseException) else RuntimeError(repr(got))
        return setup.end(item, started, now, None, error)

    # -- the watcher thread --------------------------------------------------------------

    def collect(self, batch: list[Future]) -> list[tuple[Future, object]]:
        """Each future with its result or error; finished ones fetched in one round trip."""
        finished = [f for f in batch if f.status == "finished"]
        values: dict[str, object] = {}
        if finished:
            try:
                for future, value in zip(finished, self.client.gather(finished), strict=True):
                    values[future.key] = value
            except Exception:  # one was lost: fetch them one by one
                for future in finished:
                    try:
                        values[future.key] = future.result(timeout=30)
                    except Exception as exc:  # its result is gone
                        values[future.key] = exc
        out: list[tuple[Future, object]] = []
        for future in batch:
            if future.key in values:
                out.append((future, values[future.key]))
            elif future.status == "cancelled":
                out.append((future, None))
            else:
                try:
                    out.append((future, future.exception(timeout=30)))
                except Exception as exc:  # cancelled or lost meanwhile
                    out.append((future, exc))
        return out

    def watch(self) -> None:
        while True:
            first = self.ends.get()
            if first is None:
                return
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while True:
                    more = self.ends.get_nowait()
                    if more is None:
                        self.ends.put(None)  # seen after this batch
                        break
                    batch.append(more)
            try:
                results = self.collect(batch)
                with self.lock:
                    sched = self.setup.scheduler
                    for future, got in results:
                        item = self.live.pop(future.key, None)
                        if item is None:
                            continue  # ended already (a run abandoned meanwhile)
                        self.futures.pop(future.key, None)
                        self.killing.discard(future.key)
                        self.setup.tracker.exit()
                        sched.finished(item.launch, self.to_end(item, future, got))
                    self.launch_locked()
                    if not self.live:
                        self.changed.set()
                for future, _ in results:
                    future.release()  # the scheduler forgets it: no recompute, ever
            except BaseException as exc:  # a bug in the dispatcher itself: stop loudly
                self.failures.append(exc)
                self.changed.set()
                return

    # -- killing (only the workers of a cluster this run started) ------------------------

    def kill_locked(self, key: str) -> None:
        if not self.owned or key in self.killing:
            return
        self.killing.add(key)
        threading.Thread(
            target=self._kill, args=(key,), name="subplan-dask-kill", daemon=True
        ).start()

    def _kill(self, key: str) -> None:
        # Our own LocalCluster: its workers are processes of this host. SIGKILL the one
        # running the attempt; the scheduler then fails the task (KilledWorker, never a
        # re-run: allowed-failures is 0) and the nanny starts a fresh worker.
        try:
            address = self.client.run_on_scheduler(_processing_on, key)
            if address is None:
                return
            pid = self.client.run(os.getpid, workers=[address]).get(address)
            if pid is not None:
                os.kill(int(pid), signal.SIGKILL)
        except Exception:  # noqa: S110 - it ended meanwhile, or its worker did
            pass

    # -- the main thread -----------------------------------------------------------------

    def on_signal(self, signum: int) -> None:
        self.signals_seen += 1
        self.stop.set()
        self.changed.set()

    def run(self, cancel: threading.Event | None, handle_signals: bool) -> RunReport:
        setup = self.setup
        sched = setup.scheduler
        clock_ = setup.clock
        self.stop = cancel or threading.Event()
        watcher = threading.Thread(target=self.watch, name="subplan-dask-watcher", daemon=True)
        watcher.start()
        try:
            with _signals_cancel(handle_signals, self.on_signal):
                while True:
                    with self.lock:
                        if self.failures:
                            raise self.failures[0]
                        reason = setup.stop_reason(self.signals_seen)
                        if (self.stop.is_set() or reason) and not sched.cancelled:
                            sched.cancel(setup.cancel_reason(self.signals_seen))
                            for key, item in self.live.items():
                                item.cancel.set()
                                self.kill_locked(key)
                        if self.signals_seen > 1:
                            break  # asked twice: stop waiting for in-flight work
                        self.launch_locked()
                        if sched.is_done():
                            break
                        deadline = None
                        if setup.timeout is not None:
                            deadline = setup.check_deadlines(self.live)
                            now = clock_.monotonic()
                            for key, item in self.live.items():
                                late = item.launch.deadline
                                if item.timed_out and late is not None:
                                    if now >= late + KILL_GRACE:
                                        self.kill_locked(key)
                                    elif deadline is None or late + KILL_GRACE < deadline:
                                        deadline = late + KILL_GRACE
                        wake = [t for t in (sched.next_wakeup(), deadline) if t]
                        idle = not self.live
                        self.changed.clear()
                    wait = _TICK
                    if wake:
                        wait = max(0.0, min(_TICK, min(wake) - clock_.monotonic()))
                    if idle and not isinstance(clock_, SystemClock):
                        clock_.sleep(wait)
                    else:
                        self.changed.wait(wait)
        finally:
            self.ends.put(None)
            watcher.join(timeout=30)
            with self.lock:
                leftover = list(self.futures.values())
                self.futures.clear()
            if leftover:
                # Abandoned (a second signal, or an error): dask must not run them on.
                with contextlib.suppress(Exception):
                    self.client.cancel(leftover, force=True)
        return setup.report()
