"""The pause gate: one rate limit closes the whole run to new starts until the reset.

:class:`PauseGate` owns what a pause is made of: the :class:`Pause` records of the run,
the time the gate opens while it is closed, the backoff of resets nobody announced, and
the ramp of jittered start times that spreads the starts after the gate reopens. It reads
no clock and tells nobody: the :class:`~subplan._dispatch._scheduler.Scheduler` passes the times
in, and journals and emits what the gate returns.

Notes:
    A known reset is honoured with a margin of 10% of the wait, at most 5 minutes (a
    10-hour quota reset waits 10 h 5 min, not 11 h); an unknown one backs off
    exponentially (with jitter, never below half the ceiling) from 30 s up to 15 minutes.
    When the gate opens, the next ``ramp`` starts are spread over 10% of the pause (at
    most 30 s), so the provider is not hit by everyone at once.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace
from typing import Literal

from ._results import Pause

__all__ = ["Closing", "PauseGate"]

PAUSE_MARGIN_SHARE = 0.10
PAUSE_MARGIN_CAP = 300.0
UNKNOWN_PAUSE_BASE = 30.0
UNKNOWN_PAUSE_CAP = 900.0
RAMP_SHARE = 0.10
RAMP_CAP = 30.0


@dataclass(frozen=True, slots=True)
class Closing:
    """What :meth:`PauseGate.close` did.

    Attributes:
        opens: the monotonic time the gate opens (a pause never shortens a longer one).
        pause: the pause record opened or extended, for the journal; None when the gate
            was already closed for longer and nothing changed.
        length: the seconds this closing asked for, margin or backoff included.
    """

    opens: float
    pause: Pause | None
    length: float


class PauseGate:
    """The run's one gate: closed while a rate limit lasts, then reopened with a ramp.

    Example:
        >>> gate = PauseGate()
        >>> closing = gate.close(
        ...     now=0.0, wall=1000.0, wait=60.0, reason="429", source="signal",
        ...     rng=random.Random(0), ramp=2,
        ... )
        >>> closing.opens, closing.pause.ends, gate.admit(65.0), gate.admit(66.0)
        (66.0, 1066.0, 'closed', 'reopened')
    """

    __slots__ = ("_pauses", "_ramp", "_unknown", "_until")

    def __init__(self) -> None:
        self._pauses: list[Pause] = []
        self._until: float | None = None
        self._unknown = 0  # unknown resets in a row: the exponent of the backoff
        self._ramp: list[float] = []  # monotonic start times released one by one

    @property
    def pauses(self) -> list[Pause]:
        """The run's pauses, oldest first (the list itself: the report reads it)."""
        return self._pauses

    @property
    def paused_until(self) -> float | None:
        """Monotonic time the gate opens, while it is closed."""
        return self._until

    def close(
        self,
        *,
        now: float,
        wall: float,
        wait: float | None,
        reason: str,
        source: str,
        rng: random.Random,
        ramp: int,
        subplan_id: str | None = None,
        margin: bool = True,
    ) -> Closing:
        """Close the gate until the limit resets, or extend a pause that is shorter.

        Args:
            now: the monotonic time.
            wall: the wall-clock time, for the pause record.
            wait: seconds until the limit resets; None when unknown (one draw of ``rng``
                for the backoff's jitter).
            reason: what was detected, for the report.
            source: which detector saw it.
            rng: the run's randomness; the ramp draws ``ramp`` times after the backoff.
            ramp: how many starts the ramp spreads out (the run's ``max_parallel``).
            subplan_id: whose attempt was limited, if any.
            margin: add the safety margin to a known ``wait``.

        Returns:
            When the gate opens, and the pause it opened or extended, if any.
        """
        if wait is None:
            self._unknown += 1
            ceiling = min(UNKNOWN_PAUSE_CAP, UNKNOWN_PAUSE_BASE * 2.0 ** (self._unknown - 1))
            length = ceiling / 2 + rng.uniform(0.0, ceiling / 2)
        else:
            self._unknown = 0
            wait = max(0.0, wait)
            length = wait + min(wait * PAUSE_MARGIN_SHARE, PAUSE_MARGIN_CAP) if margin else wait
        until = now + length
        previous = self._until
        if previous is not None and until <= previous:
            return Closing(previous, None, length)  # already closed for longer
        self._until = until
        window = min(length * RAMP_SHARE, RAMP_CAP)
        self._ramp = sorted(until + rng.uniform(0.0, window) for _ in range(ramp))
        if previous is not None:
            # A later reset while closed extends the same pause rather than adding one.
            last = self._pauses[-1]
            self._pauses[-1] = Pause(last.started, wall + length, reason, source, subplan_id)
        else:
            self._pauses.append(Pause(wall, wall + length, reason, source, subplan_id))
        return Closing(until, self._pauses[-1], length)

    def admit(self, now: float) -> Literal["open", "closed", "reopened"]:
        """Whether starts may go through the gate at ``now``.

        Returns:
            ``"closed"`` while the pause lasts; ``"reopened"`` the first time it is asked
            after the pause (the caller then records the pause's real end with
            :meth:`record_real_end`); ``"open"`` otherwise. Open is not the ramp: ask
            :meth:`ramp_allows` before each start.
        """
        if self._until is None:
            return "open"
        if now < self._until:
            return "closed"
        self._until = None
        return "reopened"

    def ramp_allows(self, now: float) -> bool:
        """Whether the next start may go now, after the gate reopened (True off the ramp)."""
        return not self._ramp or now >= self._ramp[0]

    def take_ramp_slot(self) -> None:
        """A start went through: the ramp releases the next one at its own time."""
        if self._ramp:
            self._ramp.pop(0)

    def next_time(self, *, has_ready: bool) -> float | None:
        """The monotonic time the gate next lets a start through, if it holds one back.

        Args:
            has_ready: whether a unit waits to start (the ramp only matters then).
        """
        if self._until is not None:
            return self._until
        if self._ramp and has_ready:
            return self._ramp[0]
        return None

    def record_real_end(self, wall: float) -> Pause | None:
        """The gate opened: the last pause ends at ``wall`` (a tick late, perhaps).

        Returns:
            The pause record if its end changed (for the journal), else None.
        """
        if not self._pauses:
            return None
        last = self._pauses[-1]
        if wall == last.ends:
            return None
        self._pauses[-1] = replace(last, ends=max(last.started, wall))
        return self._pauses[-1]
