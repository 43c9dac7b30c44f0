"""The in-process limiter: one global capacity, optional group caps, fair waiting.

A :class:`Limiter` hands out :class:`Slot` objects. Every slot counts against the global
capacity and against each of its groups; a group may have a cap. This is the one bound
the dispatcher owns (DESIGN §4): nested groups of subplans never get a capacity each.

Admission rule, applied atomically under one lock:

* a request is admitted when fewer than ``capacity`` slots are held and every capped
  group it names is below its cap;
* waiters are served by priority (higher first), then by arrival (FIFO);
* a waiter whose own group is full is skipped, so it never blocks later waiters whose
  groups have room (no head-of-line blocking), and it holds no global slot while it waits;
* a waiter held back only by the global capacity keeps its place: when a slot frees, the
  first waiter in order that can run gets it, before anyone who came later.

Slots are handed over directly: the thread that frees a slot admits the waiters and wakes
them, so a caller arriving between a release and a waiter's wake-up cannot take the slot
(no barging). It follows that whenever the lock is free, no waiter could be admitted;
``acquire_nowait`` therefore never overtakes a waiter that could run.
"""

from __future__ import annotations

import bisect
import itertools
import threading
from collections.abc import Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Any, Final, Generic, Protocol, TypeVar

from .._clock import Clock, SystemClock
from .._errors import ConfigError, LimiterTimeoutError, SlotNotHeldError
from .._release import ReleasedOnExit

__all__ = [
    "GroupStatistics",
    "Limiter",
    "LimiterStatistics",
    "LimiterTimeoutError",
    "Slot",
    "SlotNotHeldError",
]

# With a clock other than the system clock (a FakeClock in tests), a waiter with a timeout
# cannot sleep until the clock's deadline, so it re-reads the clock this often (real time).
_FOREIGN_CLOCK_SLICE: Final = 0.01


@dataclass(frozen=True, slots=True)
class GroupStatistics:
    """A snapshot of one group of a :class:`Limiter`.

    Attributes:
        cap: the group's cap, or ``None`` when it has none (it is only counted).
        running: slots held now that name this group. May exceed ``cap`` right after the
            cap was lowered: lowering a cap only holds back new work.
        peak: the most slots naming this group held at once.
        waiting: waiters that name this group.
    """

    cap: int | None
    running: int
    peak: int
    waiting: int


@dataclass(frozen=True, slots=True)
class LimiterStatistics:
    """A consistent snapshot of a :class:`Limiter`, taken under its lock.

    Attributes:
        capacity: the global bound.
        running: slots held now (never above ``capacity``).
        waiting: callers blocked in :meth:`Limiter.acquire`.
        peak: the most slots held at once.
        acquired: slots handed out so far.
        released: slots given back so far; ``acquired - released == running``.
        groups: per-group statistics, by group name (sorted), for every group that has
            or had a cap, was named by a slot, or is named by a waiter; a read-only
            mapping.
    """

    capacity: int
    running: int
    waiting: int
    peak: int
    acquired: int
    released: int
    groups: Mapping[str, GroupStatistics] = field(hash=False)


class HeldSlot(ReleasedOnExit):
    """What every held slot does: name itself, and give itself back (also on ``with`` exit).

    Subclasses set ``_id``, ``_acquired_at`` and ``_limiter`` (anything with a
    ``release(slot)``).
    """

    __slots__ = ()
    _id: int
    _acquired_at: float
    _limiter: _Releaser

    @property
    def id(self) -> int:
        """Unique among the slots of its limiter."""
        return self._id

    @property
    def acquired_at(self) -> float:
        """When the slot was admitted, on the limiter's clock (``monotonic``)."""
        return self._acquired_at

    def release(self) -> None:
        """Give the slot back to its limiter (same as ``limiter.release(slot)``).

        Raises:
            SlotNotHeldError: the slot was already released.
        """
        self._limiter.release(self)


class _Releaser(Protocol):
    def release(self, slot: Any) -> None: ...


class Slot(HeldSlot):
    """One unit of the limiter's capacity, held until released.

    A slot is immutable (its attributes are read-only) and compares by identity. It is a
    context manager that releases it on exit; the acquire has already happened.

    Attributes:
        id: unique among the slots of its limiter (1, 2, 3, ... in order of admission).
        groups: the groups it counts against, duplicates removed, in the order given.
        acquired_at: when it was admitted, on the limiter's clock (``monotonic``).

    Example:
        >>> limiter = Limiter(2)
        >>> with limiter.acquire(groups=["tier2"]) as slot:
        ...     slot.groups, limiter.statistics().running
        (('tier2',), 1)
        >>> limiter.statistics().running
        0
    """

    # A plain __slots__ class with read-only properties: a third of the cost of a
    # frozen dataclass, and creating the slot is on every task's hot path.
    __slots__ = ("_acquired_at", "_groups", "_id", "_limiter")

    def __init__(
        self, id: int, groups: tuple[str, ...], acquired_at: float, limiter: Limiter
    ) -> None:
        self._id = id
        self._groups = groups
        self._acquired_at = acquired_at
        self._limiter = limiter

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups this slot counts against."""
        return self._groups

    def __repr__(self) -> str:
        return f"Slot(id={self._id}, groups={self._groups!r}, acquired_at={self._acquired_at!r})"


SlotT = TypeVar("SlotT", bound=HeldSlot)


class WithSlot(Generic[SlotT]):
    """``with limiter:`` holds one slot; a per-thread stack lets the blocks nest.

    Subclasses provide ``acquire()``, ``release(slot)`` and a ``threading.local`` named
    ``_local``.
    """

    _local: threading.local

    def acquire(self) -> SlotT:
        raise NotImplementedError

    def release(self, slot: SlotT) -> None:
        raise NotImplementedError

    def __enter__(self) -> SlotT:
        slot = self.acquire()
        stack: list[SlotT] | None = getattr(self._local, "stack", None)
        if stack is None:
            stack = self._local.stack = []
        stack.append(slot)
        return slot

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        stack: list[SlotT] | None = getattr(self._local, "stack", None)
        if not stack:
            raise SlotNotHeldError(
                "`with limiter:` exited in a thread that did not enter it", slot_id=None
            )
        self.release(stack.pop())


class _Waiter:
    """One blocked :meth:`Limiter.acquire`: it sleeps on its own lock until handed a slot."""

    __slots__ = ("groups", "key", "lock", "slot")

    def __init__(self, key: tuple[int, int], groups: tuple[str, ...]) -> None:
        self.key = key
        self.groups = groups
        self.slot: Slot | None = None
        self.lock = threading.Lock()
        self.lock.acquire()  # the releaser unlocks it to hand the slot over


def _waiter_key(waiter: _Waiter) -> tuple[int, int]:
    return waiter.key


def check_count(what: str, value: object) -> int:
    """Return ``value`` if it is an ``int`` of at least 1 (not a bool), else raise ConfigError."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"{what} must be an integer >= 1, got {value!r}")
    if value < 1:
        raise ConfigError(f"{what} must be >= 1, got {value}")
    return value


def check_timeout(timeout: float | None) -> float | None:
    """Return ``timeout`` if it is ``None`` or a number >= 0, else raise ConfigError."""
    if timeout is None:
        return None
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout >= 0:
        raise ConfigError(f"timeout must be None or a number >= 0, got {timeout!r}")
    return timeout


def _check_group(group: object) -> str:
    if not isinstance(group, str) or not group:
        raise ConfigError(f"a group name must be a non-empty str, got {group!r}")
    return group


def normalize_groups(groups: Sequence[str]) -> tuple[str, ...]:
    """Return ``groups`` as a tuple without duplicates, or raise ConfigError if malformed."""
    if isinstance(groups, str):
        raise ConfigError(f"groups must be a sequence of group names, not the str {groups!r}")
    return tuple(dict.fromkeys(_check_group(g) for g in groups))


class _SlotContext(AbstractContextManager[Slot]):
    """What :meth:`Limiter.slot` returns: acquires on ``__enter__``, releases on exit."""

    __slots__ = ("_groups", "_limiter", "_priority", "_slot", "_timeout")

    def __init__(
        self, limiter: Limiter, groups: Sequence[str], priority: int, timeout: float | None
    ) -> None:
        self._limiter = limiter
        self._groups = groups
        self._priority = priority
        self._timeout = timeout
        self._slot: Slot | None = None

    def __enter__(self) -> Slot:
        if self._slot is not None:
            raise RuntimeError("a limiter.slot() context cannot be entered twice at once")
        self._slot = self._limiter.acquire(
            groups=self._groups, priority=self._priority, timeout=self._timeout
        )
        return self._slot

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot, self._slot = self._slot, None
        if slot is None:
            raise RuntimeError("a limiter.slot() context was exited without being entered")
        self._limiter.release(slot)


class Limiter(WithSlot[Slot]):
    """A fair, thread-safe bound on how much runs at once, with optional group caps.

    Args:
        capacity: the most slots held at once; an ``int`` >= 1.
        group_caps: optional caps for named groups (each an ``int`` >= 1). A slot that
            names a capped group counts against that cap too; groups without a cap are
            only counted for :meth:`statistics`. Change caps later with
            :meth:`set_group_cap`.
        clock: where ``Slot.acquired_at`` and timeouts are read from; the system clock
            by default.

    Raises:
        ConfigError: ``capacity`` or a cap is not an integer >= 1 (bools are refused),
            or a group name is not a non-empty str.

    Notes:
        Waiters are served by priority, then FIFO; a waiter whose own group is full does
        not hold up others (see the module docstring for the exact rule). An uncontended
        ``acquire`` + ``release`` costs about 2 µs, like a ``threading.BoundedSemaphore``;
        while some wait, each release scans the waiters: O(waiters).

    Example:
        >>> limiter = Limiter(6, group_caps={"tier2": 2})
        >>> with limiter.slot(groups=["tier2"]) as slot:
        ...     limiter.statistics().groups["tier2"].running
        1
        >>> with limiter:
        ...     limiter.statistics().running
        1
    """

    def __init__(
        self,
        capacity: int,
        *,
        group_caps: Mapping[str, int] | None = None,
        clock: Clock | None = None,
    ) -> None:
        self._capacity = check_count("capacity", capacity)
        self._caps: dict[str, int] = {}
        self._group_running: dict[str, int] = {}
        self._group_peak: dict[str, int] = {}
        for group, cap in (group_caps or {}).items():
            _check_group(group)
            self._caps[group] = check_count(f"the cap of group {group!r}", cap)
            self._group_running[group] = 0
            self._group_peak[group] = 0
        self._clock: Clock = clock if clock is not None else SystemClock()
        # the system clock's deadlines match the lock's own timeouts; others are polled
        self._slice = None if type(self._clock) is SystemClock else _FOREIGN_CLOCK_SLICE
        self._lock = threading.Lock()
        self._waiters: list[_Waiter] = []  # sorted by (-priority, arrival)
        self._arrivals = itertools.count()
        self._ids = itertools.count(1)
        # The ids of the slots held: their number is the running count, and released is
        # acquired minus running, so no second count can drift from the first.
        self._held: set[int] = set()
        self._peak = 0
        self._acquired = 0
        self._local = threading.local()  # the stack of slots taken by ``with limiter:``

    @property
    def capacity(self) -> int:
        """The global bound: the most slots held at once."""
        return self._capacity

    # -- the admission rule (lock held) ---------------------------------------------------

    def _has_room(self, groups: tuple[str, ...]) -> bool:
        """Whether a request naming ``groups`` may be admitted now (lock held).

        The single place the bound is decided; tests override it to prove that the bound
        checks can fail.
        """
        caps = self._caps
        if caps:
            running = self._group_running
            for group in groups:
                cap = caps.get(group)
                if cap is not None and running.get(group, 0) >= cap:
                    return False
        return len(self._held) < self._capacity

    def _admit(self, groups: tuple[str, ...]) -> Slot:
        """Count a new slot in and return it (lock held, ``_has_room(groups)`` true)."""
        self._acquired += 1
        if groups:
            running = self._group_running
            peak = self._group_peak
            for group in groups:
                n = running.get(group, 0) + 1
                running[group] = n
                if n > peak.get(group, 0):
                    peak[group] = n
        slot = Slot(next(self._ids), groups, self._clock.monotonic(), self)
        held = self._held
        held.add(slot.id)
        if len(held) > self._peak:
            self._peak = len(held)
        return slot

    def _release_locked(self, slot: Slot) -> None:
        self._held.remove(slot.id)
        if slot.groups:
            running = self._group_running
            for group in slot.groups:
                running[group] -= 1
        if self._waiters:
            self._wake()

    def _wake(self) -> None:
        """Hand free slots to waiters, in order, skipping those whose groups are full."""
        still_waiting: list[_Waiter] = []
        waiters = self._waiters
        for index, waiter in enumerate(waiters):
            if not self._has_room(()):
                # globally full: nobody can start, and everyone keeps their place
                still_waiting.extend(waiters[index:])
                break
            if self._has_room(waiter.groups):
                waiter.slot = self._admit(waiter.groups)
                waiter.lock.release()
            else:
                still_waiting.append(waiter)
        self._waiters = still_waiting

    # -- acquiring and releasing ----------------------------------------------------------

    def acquire(
        self, *, groups: Sequence[str] = (), priority: int = 0, timeout: float | None = None
    ) -> Slot:
        """Take a slot, waiting for one if needed.

        Args:
            groups: the groups the slot counts against (a sequence of names, not one str).
            priority: waiters with a higher priority are served first; FIFO among equals.
            timeout: the most seconds to wait (on the limiter's clock); ``None`` waits
                for ever, ``0`` fails at once unless a slot is free.

        Returns:
            The slot, to be released exactly once (``limiter.release(slot)``, or use it
            as a context manager).

        Raises:
            LimiterTimeoutError: no slot became free within ``timeout``. The waiter is
                removed and nothing is held.
            ConfigError: ``groups`` is a str or names a non-str / empty group,
                ``priority`` is not an int, or ``timeout`` is negative or not a number.

        If the wait is interrupted (``KeyboardInterrupt`` in the main thread), the waiter
        is removed, or the slot it was just handed is released, before the exception
        propagates.

        Example:
            >>> limiter = Limiter(1)
            >>> slot = limiter.acquire(priority=5, timeout=1.0)
            >>> limiter.release(slot)
        """
        groups = normalize_groups(groups) if groups else ()
        if timeout is not None:
            check_timeout(timeout)
        if priority.__class__ is not int:
            raise ConfigError(f"priority must be an int, got {priority!r}")
        with self._lock:
            if self._has_room(groups):
                # whenever the lock is free no waiter can be admitted (wake-ups are
                # handed over under the lock), so admitting now overtakes nobody
                return self._admit(groups)
            if timeout is not None and timeout <= 0:
                raise self._timeout_error(timeout, groups)
            waiter = _Waiter((-priority, next(self._arrivals)), groups)
            bisect.insort(self._waiters, waiter, key=_waiter_key)
        return self._wait(waiter, timeout)

    def _wait(self, waiter: _Waiter, timeout: float | None) -> Slot:
        try:
            if timeout is None:
                waiter.lock.acquire()
                got = True
            else:
                got = self._wait_until(waiter, timeout)
        except BaseException:
            self._abandon(waiter)
            raise
        if got:
            assert waiter.slot is not None  # set before the lock was handed over
            return waiter.slot
        with self._lock:
            if waiter.slot is not None:  # handed over just as the timeout expired
                return waiter.slot
            self._waiters.remove(waiter)
        assert timeout is not None  # an unbounded wait only ends with a slot
        raise self._timeout_error(timeout, waiter.groups)

    def _wait_until(self, waiter: _Waiter, timeout: float) -> bool:
        """Wait for the hand-over until ``timeout`` passes on the clock; True if handed."""
        clock = self._clock
        deadline = clock.monotonic() + timeout
        while True:
            remaining = deadline - clock.monotonic()
            if remaining <= 0:
                return False
            if self._slice is not None and remaining > self._slice:
                remaining = self._slice
            if waiter.lock.acquire(timeout=remaining):
                return True

    def _abandon(self, waiter: _Waiter) -> None:
        """Undo a wait that ended with an exception: dequeue it, or give back its slot."""
        with self._lock:
            if waiter.slot is not None:
                self._release_locked(waiter.slot)
            else:
                self._waiters.remove(waiter)

    def _timeout_error(self, timeout: float, groups: tuple[str, ...]) -> LimiterTimeoutError:
        named = f", groups {list(groups)}" if groups else ""
        return LimiterTimeoutError(
            f"no slot free within {timeout:g} s (capacity {self._capacity}{named})",
            timeout=timeout,
            groups=groups,
        )

    def acquire_nowait(self, *, groups: Sequence[str] = ()) -> Slot | None:
        """Take a slot if one is free now, without waiting.

        It never overtakes a waiter that could run (none exists whenever the limiter's
        lock is free, because freed slots are handed to waiters at once).

        Args:
            groups: the groups the slot counts against.

        Returns:
            The slot, or ``None`` when the limiter or one of the capped groups is full.

        Raises:
            ConfigError: ``groups`` is a str or names a non-str / empty group.

        Example:
            >>> limiter = Limiter(1)
            >>> first = limiter.acquire_nowait()
            >>> limiter.acquire_nowait() is None
            True
        """
        groups = normalize_groups(groups) if groups else ()
        with self._lock:
            if self._has_room(groups):
                return self._admit(groups)
            return None

    def release(self, slot: Slot) -> None:
        """Give a slot back, and hand freed capacity to waiters.

        Args:
            slot: a slot this limiter handed out and that is still held.

        Raises:
            SlotNotHeldError: the slot was already released or belongs to another
                limiter; nothing changes.

        Example:
            >>> limiter = Limiter(1)
            >>> limiter.release(limiter.acquire())
            >>> limiter.statistics().released
            1
        """
        if not isinstance(slot, Slot) or slot._limiter is not self:
            slot_id = slot.id if isinstance(slot, Slot) else None
            raise SlotNotHeldError(
                f"slot {slot_id} is not held: it belongs to another limiter"
                if slot_id is not None
                else f"not a slot of this limiter: {slot!r}",
                slot_id=slot_id,
            )
        with self._lock:
            if slot.id not in self._held:
                raise SlotNotHeldError(
                    f"slot {slot.id} is not held: it was already released", slot_id=slot.id
                )
            self._release_locked(slot)

    def slot(
        self, *, groups: Sequence[str] = (), priority: int = 0, timeout: float | None = None
    ) -> AbstractContextManager[Slot]:
        """Return a context manager that acquires a slot on entry and releases it on exit.

        Args:
            groups: as for :meth:`acquire`.
            priority: as for :meth:`acquire`.
            timeout: as for :meth:`acquire`.

        Returns:
            A single-use context manager whose ``__enter__`` returns the :class:`Slot`.

        Raises:
            LimiterTimeoutError: (on entry) no slot became free within ``timeout``.

        Example:
            >>> limiter = Limiter(6)
            >>> with limiter.slot(groups=["tier2"], timeout=5):
            ...     pass
        """
        return _SlotContext(self, groups, priority, timeout)

    # -- configuration and statistics ----------------------------------------------------

    def set_group_cap(self, group: str, cap: int | None) -> None:
        """Set, change or remove (``cap=None``) the cap of a group.

        Raising a cap admits waiters at once. Lowering it below the group's current use
        takes nothing away: it only holds back new work until enough slots are released.

        Args:
            group: the group's name.
            cap: an ``int`` >= 1, or ``None`` for no cap.

        Raises:
            ConfigError: ``cap`` is not ``None`` or an integer >= 1, or ``group`` is not
                a non-empty str.

        Example:
            >>> limiter = Limiter(4)
            >>> limiter.set_group_cap("tier2", 1)
            >>> limiter.statistics().groups["tier2"].cap
            1
        """
        _check_group(group)
        if cap is not None:
            check_count(f"the cap of group {group!r}", cap)
        with self._lock:
            if cap is None:
                self._caps.pop(group, None)
            else:
                self._caps[group] = cap
            self._group_running.setdefault(group, 0)
            self._group_peak.setdefault(group, 0)
            if self._waiters:
                self._wake()

    def statistics(self) -> LimiterStatistics:
        """Return a consistent, immutable snapshot of the limiter's counts.

        Example:
            >>> limiter = Limiter(3, group_caps={"a": 1})
            >>> slot = limiter.acquire(groups=["a"])
            >>> stats = limiter.statistics()
            >>> stats.running, stats.peak, stats.groups["a"]
            (1, 1, GroupStatistics(cap=1, running=1, peak=1, waiting=0))
        """
        with self._lock:
            waiting_by_group: dict[str, int] = {}
            for waiter in self._waiters:
                for group in waiter.groups:
                    waiting_by_group[group] = waiting_by_group.get(group, 0) + 1
            names = sorted({*self._caps, *self._group_running, *waiting_by_group})
            groups = {
                name: GroupStatistics(
                    cap=self._caps.get(name),
                    running=self._group_running.get(name, 0),
                    peak=self._group_peak.get(name, 0),
                    waiting=waiting_by_group.get(name, 0),
                )
                for name in names
            }
            return LimiterStatistics(
                capacity=self._capacity,
                running=len(self._held),
                waiting=len(self._waiters),
                peak=self._peak,
                acquired=self._acquired,
                released=self._acquired - len(self._held),
                groups=MappingProxyType(groups),
            )

    def __repr__(self) -> str:
        return (
            f"Limiter(capacity={self._capacity}, running={len(self._held)}, "
            f"waiting={len(self._waiters)})"
        )
