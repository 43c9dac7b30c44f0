"""ConcurrencyTracker and the interval sweeps (peak_from_intervals, concurrency_curve)."""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
import threading

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subplan._limit._tracker import (
    ConcurrencyTracker,
    TrackerStatistics,
    concurrency_curve,
    peak_from_intervals,
)

WAIT = 10.0  # seconds: a bound on waits for things that should happen at once


# -- ConcurrencyTracker -----------------------------------------------------------------


def test_counts_enter_and_exit() -> None:
    tracker = ConcurrencyTracker()
    tracker.enter()
    tracker.enter()
    tracker.exit()
    assert (1, 2, 2, 1) == (tracker.current, tracker.peak, tracker.entered, tracker.exited)
    assert TrackerStatistics(current=1, peak=2, entered=2, exited=1) == tracker.statistics()


def test_context_manager_enters_and_exits_even_on_error() -> None:
    tracker = ConcurrencyTracker()
    seen: list[int] = []

    def work() -> None:
        with tracker as inside:
            assert inside is tracker
            seen.append(tracker.current)
            raise KeyError("boom")

    with pytest.raises(KeyError):
        work()
    assert [1] == seen
    assert TrackerStatistics(current=0, peak=1, entered=1, exited=1) == tracker.statistics()


def test_exit_without_enter_is_loud_and_changes_nothing() -> None:
    tracker = ConcurrencyTracker()
    with tracker:
        pass
    with pytest.raises(RuntimeError, match="without a matching enter"):
        tracker.exit()
    assert TrackerStatistics(current=0, peak=1, entered=1, exited=1) == tracker.statistics()


def test_reset_peak_returns_the_old_peak_and_restarts_from_current() -> None:
    tracker = ConcurrencyTracker()
    tracker.enter()
    tracker.enter()
    tracker.exit()
    assert 2 == tracker.reset_peak()
    assert 1 == tracker.peak
    tracker.exit()
    assert 1 == tracker.reset_peak()
    assert 0 == tracker.peak


def test_statistics_is_a_frozen_snapshot() -> None:
    tracker = ConcurrencyTracker()
    snapshot = tracker.statistics()
    with tracker:
        pass
    assert 0 == snapshot.entered
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.peak = 5  # type: ignore[misc]


def test_repr_shows_current_and_peak() -> None:
    tracker = ConcurrencyTracker()
    with tracker:
        assert "ConcurrencyTracker(current=1, peak=1)" == repr(tracker)


def test_peak_is_exact_when_50_threads_are_inside_at_once() -> None:
    tracker = ConcurrencyTracker()
    barrier = threading.Barrier(50, timeout=WAIT)

    def work() -> None:
        with tracker:
            barrier.wait()  # nobody leaves before all 50 are inside

    threads = [threading.Thread(target=work) for _ in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert TrackerStatistics(current=0, peak=50, entered=50, exited=50) == tracker.statistics()


def test_counts_stay_exact_under_50_threads_hammering() -> None:
    tracker = ConcurrencyTracker()
    rounds = 2000
    start = threading.Barrier(50, timeout=WAIT)
    inside_seen: list[int] = []

    def work(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        most = 0
        for _ in range(rounds):
            tracker.enter()
            most = max(most, tracker.current)
            if rng.random() < 0.1:
                tracker.enter()
                tracker.exit()
            tracker.exit()
        inside_seen.append(most)

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(50)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 6)
    stats = tracker.statistics()
    assert 0 == stats.current
    assert stats.entered == stats.exited
    assert stats.entered >= 50 * rounds
    assert max(inside_seen) <= stats.peak <= 100


# -- peak_from_intervals ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intervals", "peak"),
    [
        ([], 0),
        ([(0.0, 1.0)], 1),
        ([(0, 2), (1, 3), (2, 4)], 2),
        ([(0, 1), (1, 2), (2, 3)], 1),  # back to back: no overlap
        ([(0, 10), (1, 2), (1, 2), (3, 4)], 3),
        ([(1, 1)], 1),  # instantaneous work still ran
        ([(1, 1), (1, 1)], 2),
        ([(0, 2), (1, 1)], 2),  # a point inside an interval overlaps it
        ([(0, 1), (1, 1)], 1),  # ...but not one that ends at that instant
        ([(1, 1), (1, 2)], 2),  # ...and does overlap one that starts then
    ],
)
def test_peak_from_intervals(intervals: list[tuple[float, float]], peak: int) -> None:
    assert peak == peak_from_intervals(intervals)
    assert peak == peak_from_intervals(iter(intervals))  # any iterable, consumed once


@pytest.mark.parametrize("bad", [(2.0, 1.0), (math.nan, 1.0), (0.0, math.nan)])
def test_an_interval_ending_before_it_starts_is_refused(bad: tuple[float, float]) -> None:
    with pytest.raises(ValueError, match="interval 1 ends before it starts"):
        peak_from_intervals([(0.0, 1.0), bad])
    with pytest.raises(ValueError, match="interval 1"):
        concurrency_curve([(0.0, 1.0), bad])


def _brute_peak(intervals: list[tuple[int, int]]) -> int:
    """At each start time t, count what runs: [s, e) contains t, or a point at t."""
    best = 0
    for t, _ in intervals:
        running = sum(1 for s, e in intervals if (s <= t < e) or (s == e == t))
        best = max(best, running)
    return best


interval_lists = st.lists(
    st.tuples(st.integers(0, 20), st.integers(0, 5)).map(lambda p: (p[0], p[0] + p[1])),
    max_size=30,
)


@given(interval_lists)
def test_peak_matches_a_brute_force_count(intervals: list[tuple[int, int]]) -> None:
    assert _brute_peak(intervals) == peak_from_intervals(intervals)


@given(interval_lists, st.randoms())
def test_peak_does_not_depend_on_order(
    intervals: list[tuple[int, int]], rng: random.Random
) -> None:
    shuffled = list(intervals)
    rng.shuffle(shuffled)
    assert peak_from_intervals(intervals) == peak_from_intervals(shuffled)


# -- concurrency_curve ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("intervals", "curve"),
    [
        ([], []),
        ([(0, 2), (1, 3), (3, 4)], [(0, 1), (1, 2), (2, 1), (4, 0)]),
        ([(0, 5), (5, 7)], [(0, 1), (7, 0)]),  # back to back: no dip
        ([(0, 2), (1, 1)], [(0, 1), (1, 2), (1, 1), (2, 0)]),  # a spike at an instant
        ([(1, 1)], [(1, 1), (1, 0)]),
        ([(0, 5), (5, 5)], [(0, 1), (5, 0)]),  # a point where one ends: level stays 1
    ],
)
def test_concurrency_curve(intervals: list[tuple[int, int]], curve: list[tuple[int, int]]) -> None:
    assert curve == concurrency_curve(intervals)


@given(interval_lists)
def test_curve_agrees_with_the_peak(intervals: list[tuple[int, int]]) -> None:
    curve = concurrency_curve(intervals)
    if not intervals:
        assert [] == curve
        return
    levels = [level for _, level in curve]
    times = [time for time, _ in curve]
    assert peak_from_intervals(intervals) == max(levels)
    assert 0 == levels[-1]
    assert times == sorted(times)
    assert all(a != b for a, b in itertools.pairwise(levels))
    assert all(level >= 0 for level in levels)
