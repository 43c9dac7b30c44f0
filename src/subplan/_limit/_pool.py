"""A run's limiter layered on a limiter it shares with others (in-process or host-wide)."""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, TypeVar

from .._clock import Clock
from ._limiter import Limiter, Slot

__all__ = ["LayeredLimiter", "OuterLimiter"]


SlotT = TypeVar("SlotT")


class OuterLimiter(Protocol[SlotT]):
    """What a run needs of a limiter it shares: non-blocking acquire and release."""

    def acquire_nowait(self) -> SlotT | None: ...

    def release(self, slot: SlotT) -> None: ...


class LayeredLimiter(Limiter):
    """A :class:`Limiter` whose every slot also holds a slot of an ``outer`` limiter.

    The run keeps its own bound (``capacity`` and group caps); the outer limiter bounds
    everyone who shares it: other runs in the process (a :class:`Limiter`) or on the host
    (a :class:`SharedLimiter` naming a pool). The local slot is taken first, then the
    outer one; when the outer one is full the local slot is given back at once, so a run
    waiting on a shared budget holds nothing.

    Args:
        capacity: this run's bound.
        outer: the shared limiter.
        group_caps: as for :class:`Limiter`.
        clock: the time source.

    Example:
        >>> shared = Limiter(1)
        >>> mine, theirs = LayeredLimiter(4, outer=shared), LayeredLimiter(4, outer=shared)
        >>> slot = mine.acquire_nowait()
        >>> theirs.acquire_nowait() is None
        True
        >>> mine.release(slot)
    """

    def __init__(
        self,
        capacity: int,
        *,
        outer: OuterLimiter[Any],
        group_caps: Mapping[str, int] | None = None,
        clock: Clock | None = None,
    ) -> None:
        super().__init__(capacity, group_caps=group_caps, clock=clock)
        self.outer = outer
        self._outer_slots: dict[int, object] = {}
        self._outer_lock = threading.Lock()

    def acquire_nowait(self, *, groups: Sequence[str] = ()) -> Slot | None:
        slot = super().acquire_nowait(groups=groups)
        if slot is None:
            return None
        outer = self.outer.acquire_nowait()
        if outer is None:
            super().release(slot)
            return None
        with self._outer_lock:
            self._outer_slots[slot.id] = outer
        return slot

    def acquire(
        self, *, groups: Sequence[str] = (), priority: int = 0, timeout: float | None = None
    ) -> Slot:
        # Blocking callers wait for the local slot, then poll the outer one; the run's
        # dispatcher never blocks (it uses acquire_nowait).
        slot = super().acquire(groups=groups, priority=priority, timeout=timeout)
        try:
            acquire = getattr(self.outer, "acquire")  # noqa: B009 - both kinds have it
            outer = acquire(timeout=timeout)
        except BaseException:
            super().release(slot)
            raise
        with self._outer_lock:
            self._outer_slots[slot.id] = outer
        return slot

    def held_descriptors(self, slot: Slot) -> tuple[int, ...]:
        """Descriptors that hold ``slot``'s outer slot (a shared pool's flock'd file).

        A command that inherits them keeps the pool slot as long as it lives, even after
        this process died; empty for an outer limiter that has no such descriptor.
        """
        with self._outer_lock:
            outer = self._outer_slots.get(slot.id)
        descriptor = getattr(self.outer, "descriptor", None)
        if outer is None or descriptor is None:
            return ()
        fd = descriptor(outer)
        return () if fd is None else (fd,)

    def release(self, slot: Slot) -> None:
        with self._outer_lock:
            outer = self._outer_slots.pop(slot.id, None)
        try:
            super().release(slot)
        finally:
            if outer is not None:
                self.outer.release(outer)
