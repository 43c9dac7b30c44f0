"""A clock that only moves when told to."""

from __future__ import annotations

import threading

__all__ = ["FakeClock"]


class FakeClock:
    """A :class:`subplan.Clock` whose time moves only through :meth:`advance` or :meth:`sleep`.

    ``sleep`` advances the time at once instead of blocking, so code under test that waits
    for a deadline finishes immediately and the test can read how long it *would* have
    waited from :attr:`slept`.

    Args:
        start: the initial monotonic time.
        wall_offset: added to the monotonic time to give :meth:`time` (epoch seconds).

    Example:
        >>> clock = FakeClock()
        >>> clock.sleep(2.5)
        >>> clock.monotonic()
        2.5
    """

    def __init__(self, start: float = 0.0, *, wall_offset: float = 1_700_000_000.0) -> None:
        self._now = start
        self._wall_offset = wall_offset
        self._lock = threading.Lock()
        self.slept: list[float] = []

    def monotonic(self) -> float:
        with self._lock:
            return self._now

    def time(self) -> float:
        with self._lock:
            return self._now + self._wall_offset

    def sleep(self, seconds: float) -> None:
        with self._lock:
            self.slept.append(seconds)
            if seconds > 0:
                self._now += seconds

    def advance(self, seconds: float) -> None:
        """Move the time forward by ``seconds`` (which must not be negative)."""
        if seconds < 0:
            raise ValueError(f"cannot move a clock back by {seconds}")
        with self._lock:
            self._now += seconds

    def set(self, now: float) -> None:
        """Move the monotonic time to ``now`` (which must not be in the past)."""
        with self._lock:
            if now < self._now:
                raise ValueError(f"cannot move a clock back from {self._now} to {now}")
            self._now = now

    def __repr__(self) -> str:
        return f"FakeClock(now={self._now})"
