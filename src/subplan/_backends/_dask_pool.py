"""The dask backend's cluster: starting or reaching one, and a pool shared across it.

:func:`connect` reaches the scheduler (or starts a ``LocalCluster``) before a run is
recorded; :class:`ClusterPool` is a ``distributed.Semaphore`` of slots that every run on
the cluster naming it shares.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import dask
import distributed as _distributed
import distributed.core as _distributed_core
import distributed.protocol.pickle as _distributed_pickle

from .._clock import Clock, SystemClock
from .._errors import ConfigError, one_line

# distributed's API is mostly untyped: its objects are Any here, at this one boundary.
_dist: Any = _distributed
_core_rpc: Any = _distributed_core
_dumps_by_value: Callable[[object], bytes] = _distributed_pickle.dumps  # cloudpickle's way
Client: TypeAlias = Any
Future: TypeAlias = Any
LocalCluster: TypeAlias = Any
Semaphore: TypeAlias = Any


# A cluster the run starts itself has at most this many worker processes.
_MAX_LOCAL_WORKERS: Final = 32
# A runner whose worker died is not started again elsewhere (it would only be told to
# stop), and queued runners wait on the scheduler for a free thread.
_CLUSTER_CONFIG: Final = {
    "distributed.scheduler.allowed-failures": 0,
    "distributed.scheduler.worker-saturation": 1.0,
}
# After a scheduler error, the pool gives no slot for this long (then tries again).
_POOL_BACKOFF: Final = 0.25


@contextlib.contextmanager
def open_local_cluster(n_workers: int, *, threads_per_worker: int = 1) -> Iterator[LocalCluster]:
    """A ``LocalCluster`` of worker processes, set up as a run sets up its own.

    Its scheduler has ``allowed-failures: 0`` (a dead worker's task is never re-run by
    dask) and ``worker-saturation: 1.0``; the dashboard is off and logging quiet. Any
    cluster works by address; this one is what the tests and benchmarks use.

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
            raise ConfigError(
                f"cluster pool {self._name!r} exists on the scheduler with another size than "
                f"{self._size}; every run naming it must give the same size "
                f"({one_line(exc)})"
            ) from None
        self._semaphore = semaphore

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self.last_error = one_line(exc)
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


def _local_size(max_parallel: int) -> tuple[int, int]:
    """(workers, threads per worker) of the cluster a run starts: room for the bound.

    One worker process per slot up to ``_MAX_LOCAL_WORKERS`` (agents wait on their
    commands, so workers need not match CPUs); beyond that, workers get more threads.
    """
    workers = min(max_parallel, _MAX_LOCAL_WORKERS)
    return workers, math.ceil(max_parallel / workers)


# Start-up takes seconds (a local cluster: ~30 s on a small machine): it is said on the
# "subplan" logger at INFO, which the CLI shows on stderr (not with --progress off).
_log = logging.getLogger("subplan.dask")


def _count(n: int, what: str) -> str:
    return f"{n} {what}{'' if n == 1 else 's'}"


@contextlib.contextmanager
def _open_client(address: str | None, max_parallel: int) -> Iterator[tuple[Client, bool]]:
    """(client, owned): a client of the cluster at ``address``, or of one started here."""
    if address is None:
        workers, threads = _local_size(max_parallel)
        _log.info(
            "starting a local Dask cluster (%s, %s each)...",
            _count(workers, "worker"),
            _count(threads, "thread"),
        )
        with open_local_cluster(workers, threads_per_worker=threads) as cluster:
            client = _dist.Client(cluster, set_as_default=False)
            try:
                yield client, True
            finally:
                client.close()
        return
    # Said once connected (and the pool checked), not before: a run refused for bad
    # input keeps to one line on stderr, its error.
    try:
        client = _dist.Client(address, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise ConfigError(f"cannot connect to the dask scheduler at {address}: {exc}") from None
    try:
        yield client, False
    finally:
        _close(client)


def _close(client: Client) -> None:
    """Close ``client``; one that lost its scheduler closes without logging tracebacks."""
    if client.status == "running":
        client.close()
        return
    # Closing stops its reconnect loop, which distributed logs as an error with a
    # traceback; the run has said what happened (a warning in its report) already.
    loggers = [logging.getLogger(name) for name in ("distributed", "distributed.client")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.CRITICAL + 1)
    try:
        client.close(timeout=5)
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


class DaskSession:
    """A run's connection to its dask cluster: the client, and the pool bound to it.

    Made by :func:`connect` before the run is recorded, closed when the run ends.
    """

    def __init__(
        self, client: Client, owned: bool, stack: contextlib.ExitStack, grace: float
    ) -> None:
        self.client = client
        self.owned = owned  # a LocalCluster started for this run (its workers may be killed)
        self.grace = grace  # how long the run waits for a lost scheduler
        self._stack = stack

    def close(self) -> None:
        """Give back the pool's leases, close the client and any cluster started here."""
        self._stack.close()


def connect(
    address: str | None, max_parallel: int, limiter: object, *, clock: Clock | None = None
) -> DaskSession:
    """Reach the cluster at ``address`` (or start one) and bind a :class:`ClusterPool`.

    Says on the ``subplan.dask`` logger (INFO) that it starts a local cluster, and, once
    ready (connected, the pool bound), the scheduler's address, its workers and how
    long it took.

    Raises:
        ConfigError: the scheduler cannot be reached, the pool exists there with
            another size, or ``$SUBPLAN_SCHEDULER_GRACE`` is not a number of seconds.
    """
    grace = scheduler_grace()
    clock = clock or SystemClock()
    began = clock.monotonic()
    stack = contextlib.ExitStack()
    try:
        client, owned = stack.enter_context(_open_client(address, max_parallel))
        if isinstance(limiter, ClusterPool):
            limiter.bind(client)
            stack.callback(limiter.close)
        if _log.isEnabledFor(logging.INFO):
            workers = len(client.scheduler_info().get("workers", {}))
            _log.info(
                "%s %s (%s) in %.1fs",
                "local Dask cluster ready at" if owned else "connected to",
                client.scheduler.address,
                _count(workers, "worker"),
                clock.monotonic() - began,
            )
    except BaseException:
        stack.close()
        raise
    return DaskSession(client, owned, stack, grace)


# A scheduler the client cannot reach for this long ends the run (cancelled, resumable).
SCHEDULER_GRACE: Final = 20.0


def scheduler_grace() -> float:
    """How long a run waits for a lost scheduler: ``$SUBPLAN_SCHEDULER_GRACE`` seconds, or
    ``SCHEDULER_GRACE``.

    Raises:
        ConfigError: the variable is not a number of seconds >= 0.
    """
    text = os.environ.get("SUBPLAN_SCHEDULER_GRACE")
    if text is None:
        return SCHEDULER_GRACE
    try:
        seconds = float(text)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds < math.inf:
        raise ConfigError(f"SUBPLAN_SCHEDULER_GRACE must be seconds >= 0, got {text!r}")
    return seconds
