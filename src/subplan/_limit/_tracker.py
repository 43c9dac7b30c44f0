"""Measuring concurrency where the work runs: a live counter and a sweep over intervals.

The dispatcher enters a :class:`ConcurrencyTracker` around the user's function (in a
``try``/``finally``), so the peak it reports is what really ran at once, not what the
limiter believes it admitted. Every attempt also records its start and end time; the
report's peak is checked again with :func:`peak_from_intervals` over those intervals, and
:func:`concurrency_curve` draws the timeline.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType

__all__ = [
    "ConcurrencyTracker",
    "TrackerStatistics",
    "concurrency_curve",
    "peak_from_intervals",
]


@dataclass(frozen=True, slots=True)
class TrackerStatistics:
    """A snapshot of a :class:`ConcurrencyTracker`, taken under its lock.

    Attributes:
        current: how many are inside now.
        peak: the most that were inside at once since creation or the last
            :meth:`ConcurrencyTracker.reset_peak`.
        entered: how many times :meth:`ConcurrencyTracker.enter` was called.
        exited: how many times :meth:`ConcurrencyTracker.exit` was called;
            ``entered - exited == current`` always.
    """

    current: int
    peak: int
    entered: int
    exited: int


class ConcurrencyTracker:
    """A thread-safe counter of how many callers are inside a region, with its peak.

    Enter it around the work itself (not around the wait for a slot), so that the peak is
    what actually ran at once. Leaving more often than entering is a bug in the caller and
    raises at once instead of letting the counts drift.

    Example:
        >>> tracker = ConcurrencyTracker()
        >>> with tracker:
        ...     with tracker:
        ...         tracker.current
        2
        >>> tracker.peak, tracker.current
        (2, 0)
    """

    __slots__ = ("_current", "_entered", "_exited", "_lock", "_peak")

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current = 0
        self._peak = 0
        self._entered = 0
        self._exited = 0

    def enter(self) -> None:
        """Count one more caller inside; raise the peak if it is a new high."""
        with self._lock:
            self._current += 1
            self._entered += 1
            if self._current > self._peak:
                self._peak = self._current

    def exit(self) -> None:
        """Count one caller out.

        Raises:
            RuntimeError: nobody is inside (``exit`` called more often than ``enter``);
                the counts are left unchanged.
        """
        with self._lock:
            if self._current == 0:
                raise RuntimeError(
                    f"ConcurrencyTracker.exit() without a matching enter() "
                    f"(entered={self._entered}, exited={self._exited})"
                )
            self._current -= 1
            self._exited += 1

    def __enter__(self) -> ConcurrencyTracker:
        self.enter()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.exit()

    @property
    def current(self) -> int:
        """How many callers are inside now."""
        return self._current

    @property
    def peak(self) -> int:
        """The most callers inside at once (since creation or :meth:`reset_peak`)."""
        return self._peak

    @property
    def entered(self) -> int:
        """How many times :meth:`enter` was called."""
        return self._entered

    @property
    def exited(self) -> int:
        """How many times :meth:`exit` was called."""
        return self._exited

    def reset_peak(self) -> int:
        """Start a new peak measurement from the current level.

        Returns:
            The peak before the reset, read atomically with the reset.

        Example:
            >>> tracker = ConcurrencyTracker()
            >>> with tracker:
            ...     pass
            >>> tracker.reset_peak(), tracker.peak
            (1, 0)
        """
        with self._lock:
            old = self._peak
            self._peak = self._current
            return old

    def statistics(self) -> TrackerStatistics:
        """Return a consistent, immutable snapshot of the counts.

        Example:
            >>> ConcurrencyTracker().statistics()
            TrackerStatistics(current=0, peak=0, entered=0, exited=0)
        """
        with self._lock:
            return TrackerStatistics(self._current, self._peak, self._entered, self._exited)

    def __repr__(self) -> str:
        s = self.statistics()
        return f"ConcurrencyTracker(current={s.current}, peak={s.peak})"


# Event kinds, in the order they are applied at equal times: a half-open interval [s, e)
# ends before another starts at e (so back-to-back work does not overlap), and a
# zero-length interval [t, t] ends only after everything starting at t has started (so
# instantaneous work still counts as running, and overlaps whatever runs across t).
_END = 0
_START = 1
_POINT_END = 2


def _events(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, int]]:
    events: list[tuple[float, int]] = []
    for index, (start, end) in enumerate(intervals):
        if not start <= end:  # also rejects NaN
            raise ValueError(
                f"interval {index} ends before it starts: start={start!r}, end={end!r}"
            )
        events.append((start, _START))
        events.append((end, _POINT_END if end == start else _END))
    events.sort()
    return events


def peak_from_intervals(intervals: Iterable[tuple[float, float]]) -> int:
    """Return the most intervals that overlap at any instant (a sweep line).

    Args:
        intervals: ``(start, end)`` pairs, in any order, on one clock.

    Returns:
        The peak overlap; 0 for no intervals.

    Raises:
        ValueError: an interval ends before it starts (or a time is NaN); the message
            names its position.

    Notes:
        An interval that ends exactly when another starts does not overlap it (intervals
        are half-open, ``[start, end)``). A zero-length interval ``(t, t)`` counts as
        running at ``t``: it overlaps intervals that contain ``t`` and other zero-length
        intervals at ``t``. O(n log n).

    Example:
        >>> peak_from_intervals([(0, 2), (1, 3), (2, 4)])
        2
        >>> peak_from_intervals([(0, 1), (1, 2)])
        1
    """
    level = 0
    peak = 0
    for _, kind in _events(intervals):
        if kind == _START:
            level += 1
            if level > peak:
                peak = level
        else:
            level -= 1
    return peak


def concurrency_curve(intervals: Iterable[tuple[float, float]]) -> list[tuple[float, int]]:
    """Return the concurrency level as a step function, for a timeline picture.

    Args:
        intervals: ``(start, end)`` pairs, in any order, on one clock.

    Returns:
        ``(time, level)`` points in time order, one per change of level: ``level`` holds
        from ``time`` until the next point. Back-to-back intervals (one ends when the
        next starts) leave no dip. A time appears twice only when zero-length intervals
        spike the level at that instant: first the spike, then the level after it. The
        last point's level is 0, and the highest level equals
        :func:`peak_from_intervals`. Empty for no intervals.

    Raises:
        ValueError: an interval ends before it starts (or a time is NaN).

    Example:
        >>> concurrency_curve([(0, 2), (1, 3), (3, 4)])
        [(0, 1), (1, 2), (2, 1), (4, 0)]
        >>> concurrency_curve([(0, 2), (1, 1)])
        [(0, 1), (1, 2), (1, 1), (2, 0)]
    """
    curve: list[tuple[float, int]] = []
    events = _events(intervals)
    level = 0
    i = 0
    n = len(events)
    while i < n:
        time = events[i][0]
        while i < n and events[i][0] == time and events[i][1] != _POINT_END:
            level += 1 if events[i][1] == _START else -1
            i += 1
        if not curve or curve[-1][1] != level:
            curve.append((time, level))
        if i < n and events[i] == (time, _POINT_END):
            while i < n and events[i] == (time, _POINT_END):
                level -= 1
                i += 1
            curve.append((time, level))
    return curve
