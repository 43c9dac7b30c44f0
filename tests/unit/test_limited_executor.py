"""LimitedExecutor: nested pools that share one limiter stay within its capacity.

The selling test: five tiers of ``ThreadPoolExecutor(6)``, each wrapped over one
``Limiter(6)``, never run more than 6 calls at once; the same code unwrapped runs 30.
"""

from __future__ import annotations

import concurrent.futures
import faulthandler
import random
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from typing import TypeVar

import pytest

from subplan._errors import ConfigError
from subplan._limit._futures import LimitedExecutor
from subplan._limit._limiter import Limiter
from subplan._limit._shared import SharedLimiter
from subplan._limit._tracker import ConcurrencyTracker

_T = TypeVar("_T")
WAIT = 10.0  # seconds: a bound on waits for things that should happen at once
TIERS = 5
WIDTH = 6


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it holds; on timeout dump every thread's stack and fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            pytest.fail(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.0005)


def results(futures: Sequence[concurrent.futures.Future[_T]]) -> list[_T]:
    _, not_done = concurrent.futures.wait(futures, timeout=WAIT)
    if not_done:
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        pytest.fail(f"{len(not_done)} futures not done within {WAIT} s")
    return [f.result() for f in futures]


def hold_everything(
    pools: Sequence[concurrent.futures.Executor],
    tracker: ConcurrencyTracker,
    settled: Callable[[], bool],
) -> int:
    """Fill every pool with calls that hold until released; return the peak seen inside.

    Each call enters ``tracker`` and waits for the test's release; once ``settled()``
    says every call runs or waits for a slot, the peak is read, then all are released.
    """
    release = threading.Event()

    def hold(tier: int) -> int:
        with tracker:
            if not release.wait(WAIT):  # loud, so a wrong settle condition cannot pass
                raise AssertionError(f"a call was never released within {WAIT} s")
        return tier

    futures = [pool.submit(hold, tier) for tier, pool in enumerate(pools) for _ in range(WIDTH)]
    try:
        wait_until(settled, "every call runs or waits for a slot")
        peak = tracker.peak
    finally:
        release.set()
    assert sorted(results(futures)) == sorted(t for t in range(len(pools)) for _ in range(WIDTH))
    return peak


@pytest.fixture
def tiers_wrapped() -> Iterator[tuple[Limiter, list[LimitedExecutor]]]:
    limiter = Limiter(WIDTH)
    pools = [LimitedExecutor(limiter, WIDTH, thread_name_prefix=f"tier{i}") for i in range(TIERS)]
    yield limiter, pools
    for pool in pools:
        pool.shutdown()


def test_five_wrapped_tiers_of_six_run_at_most_six(
    tiers_wrapped: tuple[Limiter, list[LimitedExecutor]],
) -> None:
    limiter, pools = tiers_wrapped
    tracker = ConcurrencyTracker()

    def settled() -> bool:
        stats = limiter.statistics()
        return tracker.current == stats.running and stats.running + stats.waiting == 30

    assert WIDTH == hold_everything(pools, tracker, settled)
    stats = limiter.statistics()
    assert (WIDTH, 30, 30) == (stats.peak, stats.acquired, stats.released)


def test_the_same_tiers_unwrapped_run_thirty_so_the_check_can_fail() -> None:
    pools = [concurrent.futures.ThreadPoolExecutor(WIDTH) for _ in range(TIERS)]
    tracker = ConcurrencyTracker()
    try:
        peak = hold_everything(pools, tracker, lambda: tracker.current == 30)
    finally:
        for pool in pools:
            pool.shutdown()
    assert TIERS * WIDTH == peak


def test_wrapped_tiers_under_random_load_stay_within_the_bound(
    tiers_wrapped: tuple[Limiter, list[LimitedExecutor]],
) -> None:
    limiter, pools = tiers_wrapped
    tracker = ConcurrencyTracker()
    rng = random.Random(7)

    def work(n: int, spin: int) -> int:
        with tracker:
            if spin == 1:
                time.sleep(0)
            elif spin == 2:
                sum(range(300))
        return n * n

    futures = [pools[rng.randrange(TIERS)].submit(work, n, rng.randrange(3)) for n in range(3000)]
    assert [n * n for n in range(3000)] == results(futures)
    assert tracker.peak <= WIDTH
    assert limiter.statistics().peak <= WIDTH
    assert (0, 3000) == (limiter.statistics().running, limiter.statistics().released)


def test_group_caps_apply_to_a_tier() -> None:
    limiter = Limiter(6, group_caps={"tier2": 2})
    tier2 = LimitedExecutor(limiter, 6, groups=["tier2"])
    tier3 = LimitedExecutor(limiter, 6)
    assert ("tier2",) == tier2.groups
    tracker = ConcurrencyTracker()

    def settled() -> bool:
        stats = limiter.statistics()
        return tracker.current == stats.running == 6 and stats.waiting == 6

    try:
        assert 6 == hold_everything([tier2, tier3], tracker, settled)
    finally:
        tier2.shutdown()
        tier3.shutdown()
    assert 2 == limiter.statistics().groups["tier2"].peak


# -- the deadlock caveat and its remedy ---------------------------------------------------


def _parents_waiting_for_children(
    parents: LimitedExecutor, children: LimitedExecutor, child_wait: float
) -> list[str]:
    """Two parent calls that hold on together, then each wait for a child call."""
    together = threading.Barrier(2, timeout=WAIT)

    def child() -> str:
        return "child ran"

    def parent() -> str:
        together.wait()  # both parents are running before either submits
        future = children.submit(child)
        try:
            outcome = future.result(timeout=child_wait)
        except concurrent.futures.TimeoutError:
            outcome = "starved"
        together.wait()  # neither gives its slot back before both have looked
        return outcome

    return [str(r) for r in results([parents.submit(parent) for _ in range(2)])]


def test_parents_that_hold_slots_while_waiting_starve_their_children() -> None:
    limiter = Limiter(2)
    with LimitedExecutor(limiter, 4) as pool:
        # a short bounded wait for something that cannot happen while both slots are held
        assert ["starved", "starved"] == _parents_waiting_for_children(pool, pool, 0.2)
    assert 4 == limiter.statistics().released  # the children ran once the parents gave up


def test_unlimited_parent_tier_is_the_remedy() -> None:
    limiter = Limiter(2)
    with (
        LimitedExecutor(limiter, 4, limited=False) as parents,
        LimitedExecutor(limiter, 4) as children,
    ):
        assert not parents.limited
        assert "limited=False" in repr(parents)
        assert ["child ran", "child ran"] == _parents_waiting_for_children(parents, children, WAIT)
    stats = limiter.statistics()
    assert (2, 2) == (stats.acquired, stats.released)  # only the children took slots


def test_nested_tiers_with_coordinators_unlimited_complete_within_the_bound() -> None:
    limiter = Limiter(3)
    tracker = ConcurrencyTracker()
    coordinators = [LimitedExecutor(limiter, 4, limited=False) for _ in range(3)]
    leaves = LimitedExecutor(limiter, 8)

    def leaf(n: int) -> int:
        with tracker:
            time.sleep(0)
        return n

    def coordinate(level: int, n: int) -> int:
        if level == len(coordinators):
            return leaves.submit(leaf, n).result(timeout=WAIT)
        below = [coordinators[level].submit(coordinate, level + 1, n * 2 + i) for i in range(2)]
        return sum(f.result(timeout=WAIT) for f in below)

    try:
        total = coordinate(0, 0)
    finally:
        for pool in [*coordinators, leaves]:
            pool.shutdown()
    assert sum(range(8)) == total
    assert tracker.peak <= 3
    assert 8 == limiter.statistics().released


# -- Executor behaviour ---------------------------------------------------------------------


def test_exceptions_reach_the_future_and_the_slot_is_released() -> None:
    limiter = Limiter(1)
    with LimitedExecutor(limiter, 2) as pool:
        future = pool.submit(int, "not a number")
        with pytest.raises(ValueError, match="invalid literal"):
            future.result(timeout=WAIT)
        assert 7 == pool.submit(int, "7").result(timeout=WAIT)
    assert (0, 2, 2) == (
        limiter.statistics().running,
        limiter.statistics().acquired,
        limiter.statistics().released,
    )


def test_map_keeps_order() -> None:
    with LimitedExecutor(Limiter(2), 4) as pool:
        assert [0, 1, 4, 9, 16] == list(pool.map(pow, range(5), [2] * 5, timeout=WAIT))


def test_submit_after_shutdown_is_refused() -> None:
    pool = LimitedExecutor(Limiter(1), 1)
    pool.shutdown()
    with pytest.raises(RuntimeError, match="after shutdown"):
        pool.submit(print, "late")


def test_an_inner_pool_is_borrowed_not_owned() -> None:
    limiter = Limiter(1)
    with concurrent.futures.ThreadPoolExecutor(2) as inner:
        pool = LimitedExecutor(limiter, inner=inner)
        gate = threading.Event()
        started = threading.Event()

        def slow() -> str:
            started.set()
            gate.wait(WAIT)
            return "slow"

        future = pool.submit(slow)
        assert started.wait(WAIT)
        seen_at_return: list[bool] = []

        def shut() -> None:
            pool.shutdown(wait=True)
            seen_at_return.append(future.done())

        shutter = threading.Thread(target=shut)
        shutter.start()
        gate.set()
        shutter.join(WAIT)
        assert [True] == seen_at_return  # shutdown returned only once our call was done
        assert "slow" == future.result()
        assert "still open" == inner.submit(str, "still open").result(timeout=WAIT)
        with pytest.raises(RuntimeError, match="after shutdown"):
            pool.submit(str, "late")


def test_cancel_futures_cancels_calls_that_have_not_started() -> None:
    for owned in (True, False):
        limiter = Limiter(4)
        inner = None if owned else concurrent.futures.ThreadPoolExecutor(1)
        pool = LimitedExecutor(limiter, 1 if owned else None, inner=inner)
        gate = threading.Event()
        started = threading.Event()

        def block(gate: threading.Event = gate, started: threading.Event = started) -> str:
            started.set()
            gate.wait(WAIT)
            return "ran"

        running = pool.submit(block)
        assert started.wait(WAIT)
        queued = pool.submit(block)
        pool.shutdown(wait=False, cancel_futures=True)
        gate.set()
        assert "ran" == running.result(timeout=WAIT)
        assert queued.cancelled()
        if inner is not None:
            inner.shutdown()
        stats = limiter.statistics()
        assert (1, 1) == (stats.acquired, stats.released)  # the cancelled call took none


def test_done_futures_are_forgotten_by_a_borrowing_executor() -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as inner:
        pool = LimitedExecutor(Limiter(2), inner=inner)
        futures = [pool.submit(abs, -n) for n in range(50)]
        assert list(range(50)) == results(futures)
        wait_until(lambda: not pool._pending, "done futures leave the pending set")
        pool.shutdown()


def test_a_shared_limiter_bounds_threads_in_this_process() -> None:
    with tempfile.TemporaryDirectory() as directory:
        shared = SharedLimiter("executor-test", 2, directory=directory, poll_interval=0.001)
        tracker = ConcurrencyTracker()

        def work(n: int) -> int:
            with tracker:
                time.sleep(0)
            return n

        with LimitedExecutor(shared, 8) as pool:
            assert list(range(200)) == list(pool.map(work, range(200), timeout=WAIT))
        assert tracker.peak <= 2
        assert shared is pool.limiter
        stats = shared.statistics()
        assert (0, 200, 200) == (stats.running, stats.acquired, stats.released)
        shared.close()


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (
            lambda lim: LimitedExecutor(lim, 2, inner=concurrent.futures.ThreadPoolExecutor()),
            "not both",
        ),
        (lambda lim: LimitedExecutor(lim, 0), "max_workers must be >= 1"),
        (lambda lim: LimitedExecutor(lim, groups="tier2"), "not the str"),
        (
            lambda lim: LimitedExecutor("six", 2),  # type: ignore[arg-type]
            "must be a Limiter",
        ),
        (
            lambda lim: LimitedExecutor(lim, inner=concurrent.futures.ProcessPoolExecutor(1)),
            "cannot bound calls that run in other processes",
        ),
    ],
)
def test_bad_configurations_are_refused(
    make: Callable[[Limiter], LimitedExecutor], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        make(Limiter(2))


def test_a_shared_limiter_has_no_groups() -> None:
    with tempfile.TemporaryDirectory() as directory:
        shared = SharedLimiter("no-groups", 1, directory=directory)
        with pytest.raises(ConfigError, match="has no groups"):
            LimitedExecutor(shared, 1, groups=["tier2"])
        shared.close()


def test_repr_names_the_limiter() -> None:
    limiter = Limiter(3)
    with LimitedExecutor(limiter) as pool:  # ThreadPoolExecutor's default size
        assert repr(pool).startswith("LimitedExecutor(Limiter(capacity=3")
        assert pool.limited
        assert 3 == pool.submit(len, "abc").result(timeout=WAIT)
