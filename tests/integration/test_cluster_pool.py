"""ClusterPool leases on a real scheduler: renewed while held, freed when not renewed.

A :class:`ClusterPool` holds leases of a ``distributed.Semaphore``. The scheduler drops a
lease not renewed within ``distributed.scheduler.locks.lease-timeout`` (checked every
``lease-validation-interval``); a holder renews every fifth of *its own* configured
timeout, and the timeout a semaphore gets on the scheduler is the one of the first
client that registers it. The README calls the pool a soft bound for that reason; these
tests pin down what that means, with a 2-second timeout instead of 30.

Time must pass for a lease to expire, but nothing here sleeps for it: each wait is for
something the scheduler does (it expired an unrenewed "probe" lease taken after ours,
which proves a full timeout went by and validation ran), with a limit that fails the
test and dumps every thread.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import dask
import distributed as _distributed
import pytest

from execute_helpers import wait_until
from subplan import ClusterPool
from subplan._backends._dask import open_local_cluster

distributed: Any = _distributed  # untyped: Any at this boundary
LEASE_TIMEOUT = 2.0
TIMEOUTS = {
    "distributed.scheduler.locks.lease-timeout": f"{LEASE_TIMEOUT}s",
    # Read once, when the scheduler starts: it must be set around the cluster's creation.
    "distributed.scheduler.locks.lease-validation-interval": "100ms",
}
LIMIT = 60.0  # the longest any wait here may take before the test fails

# Another orchestrator's pool, in a process of its own: it takes one lease, then
# releases (or closes) when told to on stdin, and says what happened.
HOLDER = (
    "import sys, distributed\n"
    "from subplan import ClusterPool\n"
    "address, name = sys.argv[1:3]\n"
    "client = distributed.Client(address, set_as_default=False)\n"
    "pool = ClusterPool(name, 1)\n"
    "pool.bind(client)\n"
    "lease = pool.acquire_nowait()\n"
    "print('held' if lease is not None else 'none', flush=True)\n"
    "for line in sys.stdin:\n"
    "    if line.strip() == 'release':\n"
    "        try:\n"
    "            pool.release(lease)\n"
    "            print(f'released held={pool.held} errors={pool.errors}', flush=True)\n"
    "        except BaseException as exc:\n"
    "            print(f'raised {exc!r}', flush=True)\n"
    "    else:\n"
    "        break\n"
    "pool.close()\n"
    "client.close()\n"
)


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with dask.config.set(TIMEOUTS), open_local_cluster(1) as cluster:
        yield str(cluster.scheduler_address)


@pytest.fixture
def client(address: str) -> Iterator[Any]:
    # The semaphores made in this process (the pools' and the probes') read the timeout.
    with dask.config.set(TIMEOUTS):
        c = distributed.Client(address, set_as_default=False)
        try:
            yield c
        finally:
            c.close()


@pytest.fixture
def name() -> str:
    return f"pool-{uuid.uuid4().hex[:8]}"


def leases(client: Any, name: str) -> set[str]:
    """The ids of the leases the scheduler counts for semaphore ``name`` now."""

    def read(dask_scheduler: Any = None) -> list[str]:
        return list(dask_scheduler.extensions["semaphores"].leases.get(name, {}))

    return set(client.run_on_scheduler(read))


def _taker(pool: ClusterPool, got: list[Any]) -> Callable[[], bool]:
    """A condition for wait_until: take a lease of ``pool`` into ``got`` if one is free."""

    def take() -> bool:
        lease = pool.acquire_nowait()
        if lease is not None:
            got.append(lease)
        return lease is not None

    return take


def a_lease_timeout_passes(client: Any) -> None:
    """Return once the scheduler has expired a lease taken now that nobody renews.

    The probe is a semaphore of its own, taken through the scheduler's handlers (no
    client object renews it). Its expiry proves that a full lease timeout passed and
    that the scheduler's validation ran since: an unrenewed lease older than the probe
    would have been dropped by then too.
    """
    probe, lease_id = f"probe-{uuid.uuid4().hex[:8]}", "probe"
    client.sync(
        client.scheduler.semaphore_register,
        name=probe,
        max_leases=1,
        lease_timeout=LEASE_TIMEOUT,
    )
    assert client.sync(client.scheduler.semaphore_acquire, name=probe, lease_id=lease_id, timeout=0)
    wait_until(lambda: lease_id not in leases(client, probe), "the scheduler expired the probe")


def test_a_live_pool_keeps_its_leases_for_several_lease_timeouts(client: Any, name: str) -> None:
    holder, other = ClusterPool(name, 2), ClusterPool(name, 2)
    holder.bind(client)
    other.bind(client)
    held = [holder.acquire_nowait(), holder.acquire_nowait()]
    assert None not in held
    ours = leases(client, name)
    assert 2 == len(ours)
    for _ in range(3):
        a_lease_timeout_passes(client)
        # A healthy long attempt keeps its lease, and nobody else gets it.
        assert ours == leases(client, name)
        assert other.acquire_nowait() is None
    for lease in held:
        assert lease is not None
        holder.release(lease)
    assert (0, 0, set()) == (holder.held, holder.errors, leases(client, name))
    holder.close()
    other.close()


def test_a_holder_that_stops_renewing_loses_its_lease_and_its_late_release_frees_nothing_else(
    client: Any, name: str
) -> None:
    mine = ClusterPool(name, 1)
    mine.bind(client)  # first to register: the pool's timeout on the scheduler is 2 s
    # An orchestrator that renews every 12 minutes (a fifth of its own 1-hour setting) is,
    # to the scheduler, one that froze the moment it took its lease.
    with dask.config.set({"distributed.scheduler.locks.lease-timeout": "1h"}):
        stalled = ClusterPool(name, 1)
        stalled.bind(client)
    stale = stalled.acquire_nowait()
    assert stale is not None
    (stale_id,) = leases(client, name)

    # The scheduler frees the lease after the timeout, and another pool takes it.
    got: list[Any] = []
    take = _taker(mine, got)

    wait_until(take, "another pool got the lease that was not renewed")
    (my_id,) = leases(client, name)
    assert stale_id != my_id  # one lease counted, and it is not the stale one
    assert 1 == stalled.held  # the stalled pool does not know yet

    # Its late release does not raise, and frees nothing of the lease it lost to mine.
    stalled.release(stale)
    assert (0, 0) == (stalled.held, stalled.errors)
    assert {my_id} == leases(client, name)
    assert stalled.acquire_nowait() is None  # the pool is full: mine holds it

    mine.release(got[0])
    assert set() == leases(client, name)
    stalled.close()
    mine.close()


def test_a_frozen_orchestrator_overbooks_the_pool_when_it_wakes_until_it_releases(
    client: Any, address: str, name: str
) -> None:
    mine = ClusterPool(name, 1)
    mine.bind(client)
    got: list[Any] = []
    take = _taker(mine, got)

    env = {**os.environ, "DASK_DISTRIBUTED__SCHEDULER__LOCKS__LEASE_TIMEOUT": f"{LEASE_TIMEOUT}s"}
    with subprocess.Popen(
        [sys.executable, "-c", HOLDER, address, name],
        env=env,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    ) as holder:
        assert holder.stdin is not None and holder.stdout is not None
        try:
            assert "held" == holder.stdout.readline().strip()
            (theirs,) = leases(client, name)
            holder.send_signal(signal.SIGSTOP)  # frozen: a stalled orchestrator renews nothing
            wait_until(take, "the scheduler freed the frozen holder's lease for another pool")
            (my_id,) = leases(client, name)
            assert theirs != my_id

            # Awake again, the holder renews the lease it still believes it has, and the
            # scheduler takes it back: two leases in a pool of one. This is the soft bound
            # the README describes; each run's own max_parallel is what stays hard.
            holder.send_signal(signal.SIGCONT)
            wait_until(
                lambda: {theirs, my_id} == leases(client, name),
                "the woken holder's renewal counted its old lease again",
            )
            # Its release ends the overbooking and frees only its own lease.
            holder.stdin.write("release\n")
            holder.stdin.flush()
            assert "released held=0 errors=0" == holder.stdout.readline().strip()
            assert {my_id} == leases(client, name)
            holder.stdin.write("close\n")
            holder.stdin.flush()
            assert 0 == holder.wait(timeout=LIMIT)
        finally:
            if holder.poll() is None:
                holder.send_signal(signal.SIGCONT)
                holder.kill()
    mine.release(got[0])
    assert set() == leases(client, name)
    mine.close()
