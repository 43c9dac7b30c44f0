"""Time, injected: the :class:`Clock` protocol and the real :class:`SystemClock`.

Nothing in subplan reads the time or sleeps directly; it asks a clock. Tests pass
:class:`subplan.testing.FakeClock` so that timing logic (backoff, pauses, deadlines) is
checked without sleeping.
"""

from __future__ import annotations

import time
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "SystemClock"]


@runtime_checkable
class Clock(Protocol):
    """Where subplan gets the time from."""

    def monotonic(self) -> float:
        """Seconds on a clock that never goes back; for durations and deadlines."""
        ...

    def time(self) -> float:
        """Seconds since the Unix epoch; for timestamps that people and other hosts read."""
        ...

    def sleep(self, seconds: float) -> None:
        """Block for ``seconds`` (no-op when not positive)."""
        ...


class SystemClock:
    """The real clock: :func:`time.monotonic`, :func:`time.time`, :func:`time.sleep`.

    Example:
        >>> clock = SystemClock()
        >>> clock.monotonic() <= clock.monotonic()
        True
    """

    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)

    def __repr__(self) -> str:
        return "SystemClock()"
