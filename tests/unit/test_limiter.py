"""Limiter: the global bound, group caps, fairness, timeouts, statistics.

Threads that must hold a slot wait on an Event the test controls; the test waits for
states (a waiter queued, a slot handed over) with deadlines, never for durations. The bound
checks run against deliberately broken limiters too, to prove they can fail.
"""

from __future__ import annotations

import dataclasses
import faulthandler
import random
import sys
import threading
import time
from collections.abc import Callable, Sequence

import pytest
from hypothesis import HealthCheck, Phase, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from subplan._errors import ConfigError, SubplanError
from subplan._limit._limiter import (
    GroupStatistics,
    Limiter,
    LimiterStatistics,
    LimiterTimeoutError,
    Slot,
    SlotNotHeldError,
)
from subplan._limit._tracker import ConcurrencyTracker
from subplan.testing import FakeClock

WAIT = 10.0  # seconds: a bound on waits for things that should happen at once


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it holds; on timeout dump every thread's stack and fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            pytest.fail(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.0005)


def join_all(threads: Sequence[threading.Thread]) -> None:
    for thread in threads:
        thread.join(WAIT)
        if thread.is_alive():
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            pytest.fail(f"thread {thread.name} did not finish within {WAIT} s")


class Holder:
    """A thread that acquires a slot, then holds it until the test sets ``release``."""

    def __init__(
        self,
        limiter: Limiter,
        name: str,
        *,
        groups: Sequence[str] = (),
        priority: int = 0,
        timeout: float | None = WAIT,
        tracker: ConcurrencyTracker | None = None,
    ) -> None:
        self.limiter = limiter
        self.name = name
        self.groups = groups
        self.priority = priority
        self.timeout = timeout
        self.tracker = tracker
        self.slot: Slot | None = None
        self.error: BaseException | None = None
        self.admitted = threading.Event()
        self.release = threading.Event()
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._run, name=name, daemon=True)

    def _run(self) -> None:
        try:
            slot = self.limiter.acquire(
                groups=self.groups, priority=self.priority, timeout=self.timeout
            )
        except BaseException as exc:
            self.error = exc
            self.done.set()
            return
        self.slot = slot
        if self.tracker is not None:
            self.tracker.enter()
        self.admitted.set()
        if not self.release.wait(WAIT):  # loud: a test that forgot to release is wrong
            self.error = AssertionError(f"{self.name} was never released within {WAIT} s")
        if self.tracker is not None:
            self.tracker.exit()
        self.limiter.release(slot)
        self.done.set()

    def start(self) -> Holder:
        self.thread.start()
        return self

    def wait_admitted(self) -> Slot:
        if not self.admitted.wait(WAIT):
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            pytest.fail(f"{self.name} was not admitted within {WAIT} s")
        assert self.slot is not None
        return self.slot

    def finish(self) -> None:
        self.release.set()
        if not self.done.wait(WAIT):
            pytest.fail(f"{self.name} did not finish within {WAIT} s")
        self.thread.join(WAIT)
        if isinstance(self.error, AssertionError):
            raise self.error


def queue_waiter(limiter: Limiter, holder: Holder) -> Holder:
    """Start ``holder`` and return once it is queued (the limiter counts one more waiter)."""
    before = limiter.statistics().waiting
    holder.start()
    wait_until(lambda: limiter.statistics().waiting == before + 1, f"{holder.name} is queued")
    return holder


def admission_order(holders: Sequence[Holder]) -> list[str]:
    """The holders' names in the order they were admitted (slot ids count up)."""
    admitted = [h for h in holders if h.slot is not None]
    return [h.name for h in sorted(admitted, key=lambda h: h.slot.id if h.slot else 0)]


# -- construction and bad arguments ---------------------------------------------------------


@pytest.mark.parametrize("capacity", [0, -1, True, 1.5, "3", None])
def test_capacity_must_be_an_int_of_at_least_one(capacity: object) -> None:
    with pytest.raises(ConfigError, match="capacity must be"):
        Limiter(capacity)  # type: ignore[arg-type]


@pytest.mark.parametrize("cap", [0, False, 2.0])
def test_group_caps_must_be_ints_of_at_least_one(cap: object) -> None:
    with pytest.raises(ConfigError, match="the cap of group 'a'"):
        Limiter(2, group_caps={"a": cap})  # type: ignore[dict-item]
    limiter = Limiter(2)
    with pytest.raises(ConfigError, match="the cap of group 'a'"):
        limiter.set_group_cap("a", cap)  # type: ignore[arg-type]


@pytest.mark.parametrize("group", ["", 3, None])
def test_group_names_must_be_non_empty_strs(group: object) -> None:
    limiter = Limiter(2)
    with pytest.raises(ConfigError, match="group name"):
        limiter.acquire(groups=[group])  # type: ignore[list-item]
    with pytest.raises(ConfigError, match="group name"):
        limiter.set_group_cap(group, 1)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="group name"):
        Limiter(2, group_caps={group: 1})  # type: ignore[dict-item]
    assert 0 == limiter.statistics().running


def test_groups_given_as_one_str_are_refused() -> None:
    limiter = Limiter(2)
    with pytest.raises(ConfigError, match="not the str 'tier2'"):
        limiter.acquire(groups="tier2")
    with pytest.raises(ConfigError, match="not the str 'tier2'"):
        limiter.acquire_nowait(groups="tier2")


@pytest.mark.parametrize("timeout", [-1, -0.001, float("nan"), True, "1"])
def test_timeout_must_be_none_or_a_number_of_at_least_zero(timeout: object) -> None:
    limiter = Limiter(1)
    with pytest.raises(ConfigError, match="timeout must be"):
        limiter.acquire(timeout=timeout)  # type: ignore[arg-type]
    assert 0 == limiter.statistics().running


@pytest.mark.parametrize("priority", [1.5, None, True, "1"])
def test_priority_must_be_an_int(priority: object) -> None:
    limiter = Limiter(1)
    with pytest.raises(ConfigError, match="priority must be an int"):
        limiter.acquire(priority=priority)  # type: ignore[arg-type]
    assert 0 == limiter.statistics().running


def test_errors_belong_to_the_tree_and_to_the_builtins() -> None:
    assert issubclass(LimiterTimeoutError, SubplanError)
    assert issubclass(LimiterTimeoutError, TimeoutError)
    assert issubclass(SlotNotHeldError, SubplanError)
    assert issubclass(SlotNotHeldError, RuntimeError)
    assert issubclass(ConfigError, ValueError)


# -- acquire, release, slots ----------------------------------------------------------------


def test_slots_are_counted_and_carry_their_data() -> None:
    clock = FakeClock(start=100.0)
    limiter = Limiter(3, clock=clock)
    first = limiter.acquire(groups=["b", "a", "b"])
    clock.advance(1.5)
    second = limiter.acquire_nowait()
    assert second is not None
    assert (1, ("b", "a"), 100.0) == (first.id, first.groups, first.acquired_at)
    assert (2, (), 101.5) == (second.id, second.groups, second.acquired_at)
    assert "Slot(id=1, groups=('b', 'a'), acquired_at=100.0)" == repr(first)
    assert 3 == limiter.capacity
    assert "Limiter(capacity=3, running=2, waiting=0)" == repr(limiter)
    with pytest.raises(AttributeError):
        first.id = 7  # type: ignore[misc]
    first.release()
    limiter.release(second)
    assert 0 == limiter.statistics().running


def test_slot_as_context_manager_releases_on_exit_even_on_error() -> None:
    limiter = Limiter(1)

    def work() -> None:
        with limiter.acquire() as slot:
            assert isinstance(slot, Slot)
            assert 1 == limiter.statistics().running
            raise KeyError("boom")

    with pytest.raises(KeyError):
        work()
    assert (0, 1, 1) == _counts(limiter)


def _counts(limiter: Limiter) -> tuple[int, int, int]:
    stats = limiter.statistics()
    return stats.running, stats.acquired, stats.released


def test_slot_context_acquires_on_entry_only() -> None:
    limiter = Limiter(1)
    context = limiter.slot(groups=["g"], priority=3, timeout=1)
    assert 0 == limiter.statistics().running  # nothing taken before entry
    with context as slot:
        assert ("g",) == slot.groups
        assert 1 == limiter.statistics().running
        with pytest.raises(RuntimeError, match="entered twice"):
            context.__enter__()
    assert 0 == limiter.statistics().running
    with pytest.raises(RuntimeError, match="without being entered"):
        context.__exit__(None, None, None)
    with context:  # single use at a time, but reusable after exit
        assert 1 == limiter.statistics().running


def test_with_limiter_takes_one_slot_per_entry_and_nests() -> None:
    limiter = Limiter(2)
    with limiter as outer:
        assert () == outer.groups
        with limiter:
            assert 2 == limiter.statistics().running
        assert 1 == limiter.statistics().running
    assert (0, 2, 2) == _counts(limiter)


def test_with_limiter_exit_in_another_thread_is_an_error() -> None:
    limiter = Limiter(1)
    limiter.__enter__()
    errors: list[BaseException] = []

    def exit_elsewhere() -> None:
        try:
            limiter.__exit__(None, None, None)
        except SlotNotHeldError as exc:
            errors.append(exc)

    thread = threading.Thread(target=exit_elsewhere)
    thread.start()
    join_all([thread])
    assert 1 == len(errors)
    assert errors[0].slot_id is None  # type: ignore[attr-defined]
    assert 1 == limiter.statistics().running
    limiter.__exit__(None, None, None)
    with pytest.raises(SlotNotHeldError):
        limiter.__exit__(None, None, None)
    assert (0, 1, 1) == _counts(limiter)


def test_releasing_twice_is_an_error_that_changes_nothing() -> None:
    limiter = Limiter(2)
    slot = limiter.acquire()
    other = limiter.acquire()
    limiter.release(slot)
    before = limiter.statistics()
    with pytest.raises(SlotNotHeldError, match="already released") as info:
        limiter.release(slot)
    assert slot.id == info.value.slot_id
    with pytest.raises(SlotNotHeldError):
        slot.release()
    assert before == limiter.statistics()
    limiter.release(other)


def test_releasing_a_foreign_slot_is_an_error_that_changes_nothing() -> None:
    limiter = Limiter(2)
    stranger = Limiter(2)
    mine = limiter.acquire()
    theirs = stranger.acquire()  # same id as ``mine``
    assert mine.id == theirs.id
    with pytest.raises(SlotNotHeldError, match="another limiter"):
        limiter.release(theirs)
    with pytest.raises(SlotNotHeldError, match="not a slot") as info:
        limiter.release("slot 1")  # type: ignore[arg-type]
    assert info.value.slot_id is None
    assert (1, 1, 0) == _counts(limiter)
    assert (1, 1, 0) == _counts(stranger)
    limiter.release(mine)
    stranger.release(theirs)


def test_acquire_nowait_returns_none_when_full() -> None:
    limiter = Limiter(2, group_caps={"a": 1})
    first = limiter.acquire_nowait(groups=["a"])
    assert first is not None
    assert limiter.acquire_nowait(groups=["a"]) is None  # group full
    second = limiter.acquire_nowait(groups=["b"])
    assert second is not None
    assert limiter.acquire_nowait() is None  # globally full
    assert (2, 2, 0) == _counts(limiter)


# -- fairness ---------------------------------------------------------------------------


def test_waiters_are_admitted_in_arrival_order() -> None:
    limiter = Limiter(1)
    first = limiter.acquire()
    holders = [queue_waiter(limiter, Holder(limiter, f"w{i}")) for i in range(6)]
    limiter.release(first)
    for i, holder in enumerate(holders):
        holder.wait_admitted()
        stats = limiter.statistics()
        assert (1, 5 - i) == (stats.running, stats.waiting)
        assert [h.name for h in holders[: i + 1]] == admission_order(holders)
        holder.finish()
    assert (0, 7, 7) == _counts(limiter)


def test_higher_priority_waiters_go_first_then_fifo() -> None:
    limiter = Limiter(1)
    first = limiter.acquire()
    arrivals = [("a", 0), ("b", 0), ("c", 5), ("d", 1), ("e", 5), ("f", -1), ("g", 1)]
    holders = [
        queue_waiter(limiter, Holder(limiter, name, priority=priority))
        for name, priority in arrivals
    ]
    limiter.release(first)
    by_name = {h.name: h for h in holders}
    for name in ["c", "e", "d", "g", "a", "b", "f"]:
        by_name[name].wait_admitted()
        by_name[name].finish()
    assert ["c", "e", "d", "g", "a", "b", "f"] == admission_order(holders)


def test_a_waiter_blocked_by_its_group_does_not_block_later_waiters() -> None:
    limiter = Limiter(3, group_caps={"a": 1})
    holder_a = Holder(limiter, "holder-a", groups=["a"]).start()
    holder_a.wait_admitted()
    blocked = queue_waiter(limiter, Holder(limiter, "blocked", groups=["a"]))
    later = Holder(limiter, "later", groups=["b"]).start()
    later.wait_admitted()  # admitted at once, though "blocked" came first
    plain = limiter.acquire(timeout=0)  # and so is work without groups
    stats = limiter.statistics()
    assert (3, 1) == (stats.running, stats.waiting)
    assert GroupStatistics(cap=1, running=1, peak=1, waiting=1) == stats.groups["a"]
    limiter.release(plain)
    holder_a.finish()
    blocked.wait_admitted()
    for holder in (blocked, later):
        holder.finish()


def test_a_group_blocked_waiter_holds_no_global_slot() -> None:
    limiter = Limiter(2, group_caps={"a": 1})
    held = limiter.acquire(groups=["a"])
    waiter = queue_waiter(limiter, Holder(limiter, "w", groups=["a"]))
    assert 1 == limiter.statistics().running
    other = limiter.acquire_nowait()
    assert other is not None  # the second global slot is still free for others
    limiter.release(other)
    limiter.release(held)
    waiter.wait_admitted()
    waiter.finish()


def test_when_a_slot_frees_the_first_waiter_that_can_run_gets_it() -> None:
    limiter = Limiter(2, group_caps={"a": 1})
    holder_a = Holder(limiter, "holder-a", groups=["a"]).start()
    holder_a.wait_admitted()
    holder_x = Holder(limiter, "holder-x").start()
    holder_x.wait_admitted()
    # globally full; w1 is also blocked by its group, w2 and w3 only by the global bound
    w1 = queue_waiter(limiter, Holder(limiter, "w1", groups=["a"]))
    w2 = queue_waiter(limiter, Holder(limiter, "w2", groups=["b"]))
    w3 = queue_waiter(limiter, Holder(limiter, "w3"))
    holder_x.finish()  # w1 cannot run (group a is full): w2 is first in line
    w2.wait_admitted()
    assert 2 == limiter.statistics().waiting
    assert limiter.acquire_nowait() is None  # nowait does not jump w3
    w2.finish()  # w1 still cannot run; w3 keeps its place ahead of any newcomer
    w3.wait_admitted()
    holder_a.finish()  # now group a has room and a global slot is free
    w1.wait_admitted()
    assert ["w2", "w3", "w1"] == admission_order([w1, w2, w3])
    for holder in (w1, w3):
        holder.finish()
    assert (0, 0) == (limiter.statistics().running, limiter.statistics().waiting)


def test_a_waiter_blocked_only_globally_is_not_overtaken() -> None:
    limiter = Limiter(1)
    first = limiter.acquire()
    early = queue_waiter(limiter, Holder(limiter, "early", groups=["b"]))
    late = queue_waiter(limiter, Holder(limiter, "late"))
    limiter.release(first)
    early.wait_admitted()
    newcomer = limiter.acquire_nowait()
    assert newcomer is None
    assert 1 == limiter.statistics().waiting
    early.finish()
    late.wait_admitted()
    late.finish()
    assert ["early", "late"] == admission_order([early, late])


def test_nowait_does_not_overtake_a_waiter_that_could_run() -> None:
    limiter = Limiter(1)
    first = limiter.acquire()
    waiter = queue_waiter(limiter, Holder(limiter, "waiter"))
    limiter.release(first)
    # the slot is handed to the waiter inside release(): nobody can take it in between
    assert limiter.acquire_nowait() is None
    stats = limiter.statistics()
    assert (1, 0) == (stats.running, stats.waiting)
    waiter.wait_admitted()
    waiter.finish()


# -- timeouts -----------------------------------------------------------------------------


def test_timeout_zero_fails_at_once_without_queueing() -> None:
    limiter = Limiter(1, group_caps={"a": 1})
    slot = limiter.acquire(groups=["a"])
    with pytest.raises(LimiterTimeoutError, match=r"within 0 s \(capacity 1\)") as info:
        limiter.acquire(timeout=0)
    assert (0, ()) == (info.value.timeout, info.value.groups)
    with pytest.raises(LimiterTimeoutError, match=r"groups \['a'\]") as info:
        limiter.acquire(groups=["a"], timeout=0)
    assert ("a",) == info.value.groups
    assert (1, 0) == (limiter.statistics().running, limiter.statistics().waiting)
    limiter.release(slot)


def test_timeout_on_the_system_clock_removes_the_waiter() -> None:
    limiter = Limiter(1)
    slot = limiter.acquire()
    with pytest.raises(LimiterTimeoutError) as info:
        limiter.acquire(timeout=0.02)
    assert 0.02 == info.value.timeout
    assert isinstance(info.value, TimeoutError)
    assert (1, 0) == (limiter.statistics().running, limiter.statistics().waiting)
    limiter.release(slot)
    assert limiter.acquire_nowait() is not None  # nothing leaked, nothing stuck


def test_timeout_follows_an_injected_clock() -> None:
    clock = FakeClock()
    limiter = Limiter(1, clock=clock)
    slot = limiter.acquire()
    waiter = queue_waiter(limiter, Holder(limiter, "w", timeout=30.0))
    clock.advance(29.0)
    assert not waiter.done.wait(0.05)  # not yet: 1 s left on the fake clock
    clock.advance(1.0)
    assert waiter.done.wait(WAIT), "the waiter did not notice the fake clock's deadline"
    assert isinstance(waiter.error, LimiterTimeoutError)
    assert 0 == limiter.statistics().waiting
    limiter.release(slot)


def test_a_waiter_that_times_out_does_not_disturb_the_others() -> None:
    clock = FakeClock()
    limiter = Limiter(1, clock=clock)
    slot = limiter.acquire()
    patient = queue_waiter(limiter, Holder(limiter, "patient", timeout=None))
    hasty = queue_waiter(limiter, Holder(limiter, "hasty", timeout=5.0))
    clock.advance(5.0)
    assert hasty.done.wait(WAIT)
    assert isinstance(hasty.error, LimiterTimeoutError)
    limiter.release(slot)
    patient.wait_admitted()
    patient.finish()
    assert (0, 2, 2) == _counts(limiter)


class _Interrupt(BaseException):
    """Stands for a KeyboardInterrupt delivered while a thread waits for a slot."""


class GateClock(FakeClock):
    """A fake clock that stops the waiter thread inside ``monotonic()`` when armed.

    The test can then change the limiter's state at a chosen point of the wait, and let
    the clock return (optionally past the deadline) or raise.
    """

    def __init__(self) -> None:
        super().__init__()
        self.main = threading.get_ident()
        self.armed = False
        self.entered = threading.Event()
        self.proceed = threading.Event()
        self.raise_on_proceed: BaseException | None = None
        self.waiter_calls = 0

    def monotonic(self) -> float:
        if threading.get_ident() != self.main:
            self.waiter_calls += 1
        if self.armed and threading.get_ident() != self.main:
            self.armed = False
            self.entered.set()
            self.proceed.wait(WAIT)
            if self.raise_on_proceed is not None:
                raise self.raise_on_proceed
        return super().monotonic()


def _gated_waiter(limiter: Limiter, clock: GateClock) -> Holder:
    waiter = queue_waiter(limiter, Holder(limiter, "gated", timeout=5.0))
    # past the deadline's computation and into the wait loop (it re-reads every 10 ms)
    wait_until(lambda: clock.waiter_calls >= 2, "the waiter re-reads the clock")
    clock.armed = True
    assert clock.entered.wait(WAIT), "the waiter did not come back to the clock"
    return waiter


def test_a_slot_handed_over_as_the_timeout_expires_is_kept() -> None:
    clock = GateClock()
    limiter = Limiter(1, clock=clock)
    slot = limiter.acquire()
    waiter = _gated_waiter(limiter, clock)
    limiter.release(slot)  # handed to the waiter while it is inside the clock
    clock.advance(10.0)  # ...which then reports the deadline as passed
    clock.proceed.set()
    waiter.wait_admitted()
    assert waiter.error is None
    waiter.finish()
    assert (0, 2, 2) == _counts(limiter)


def test_an_interrupted_wait_leaves_the_queue() -> None:
    clock = GateClock()
    limiter = Limiter(1, clock=clock)
    slot = limiter.acquire()
    waiter = _gated_waiter(limiter, clock)
    clock.raise_on_proceed = _Interrupt()
    clock.proceed.set()
    assert waiter.done.wait(WAIT)
    assert isinstance(waiter.error, _Interrupt)
    assert (1, 0) == (limiter.statistics().running, limiter.statistics().waiting)
    limiter.release(slot)


def test_an_interrupted_wait_gives_back_a_slot_it_was_just_handed() -> None:
    clock = GateClock()
    limiter = Limiter(1, clock=clock)
    slot = limiter.acquire()
    waiter = _gated_waiter(limiter, clock)
    limiter.release(slot)  # handed over...
    clock.raise_on_proceed = _Interrupt()
    clock.proceed.set()  # ...but the waiter is interrupted before it can return it
    assert waiter.done.wait(WAIT)
    assert isinstance(waiter.error, _Interrupt)
    stats = limiter.statistics()
    assert (0, 0, 2, 2) == (stats.running, stats.waiting, stats.acquired, stats.released)
    assert limiter.acquire_nowait() is not None


# -- group caps ---------------------------------------------------------------------------


def test_raising_or_removing_a_cap_admits_waiters() -> None:
    limiter = Limiter(4, group_caps={"a": 1})
    holder = Holder(limiter, "h", groups=["a"]).start()
    holder.wait_admitted()
    w1 = queue_waiter(limiter, Holder(limiter, "w1", groups=["a"]))
    w2 = queue_waiter(limiter, Holder(limiter, "w2", groups=["a"]))
    limiter.set_group_cap("a", 2)
    w1.wait_admitted()
    assert 1 == limiter.statistics().waiting
    limiter.set_group_cap("a", None)
    w2.wait_admitted()
    assert (
        GroupStatistics(cap=None, running=3, peak=3, waiting=0)
        == (limiter.statistics().groups["a"])
    )
    for h in (holder, w1, w2):
        h.finish()


def test_lowering_a_cap_below_use_only_holds_back_new_work() -> None:
    limiter = Limiter(5)
    slots = [limiter.acquire(groups=["a"]) for _ in range(3)]
    limiter.set_group_cap("a", 1)
    assert 3 == limiter.statistics().groups["a"].running  # nothing taken away
    assert limiter.acquire_nowait(groups=["a"]) is None
    limiter.release(slots.pop())
    assert limiter.acquire_nowait(groups=["a"]) is None  # 2 still above the cap of 1
    limiter.release(slots.pop())
    assert limiter.acquire_nowait(groups=["a"]) is None  # 1: at the cap
    limiter.release(slots.pop())
    again = limiter.acquire_nowait(groups=["a"])
    assert again is not None
    assert limiter.acquire_nowait(groups=["b"]) is not None  # other groups never blocked


def test_a_slot_counts_against_every_group_it_names() -> None:
    limiter = Limiter(5, group_caps={"a": 2, "b": 1})
    both = limiter.acquire(groups=["a", "b"])
    assert limiter.acquire_nowait(groups=["b"]) is None
    assert limiter.acquire_nowait(groups=["a", "b"]) is None
    only_a = limiter.acquire_nowait(groups=["a"])
    assert only_a is not None
    assert limiter.acquire_nowait(groups=["a", "c"]) is None
    limiter.release(both)
    assert limiter.acquire_nowait(groups=["b", "c"]) is not None


# -- statistics -----------------------------------------------------------------------------


def test_statistics_fields_are_exact() -> None:
    limiter = Limiter(3, group_caps={"a": 1})
    s1 = limiter.acquire(groups=["a", "x"])
    s2 = limiter.acquire(groups=["x"])
    s3 = limiter.acquire()
    w = queue_waiter(limiter, Holder(limiter, "w", groups=["a", "y"]))
    limiter.release(s3)  # w is blocked by group a: stays queued, the slot stays free
    expected = LimiterStatistics(
        capacity=3,
        running=2,
        waiting=1,
        peak=3,
        acquired=3,
        released=1,
        groups={
            "a": GroupStatistics(cap=1, running=1, peak=1, waiting=1),
            "x": GroupStatistics(cap=None, running=2, peak=2, waiting=0),
            "y": GroupStatistics(cap=None, running=0, peak=0, waiting=1),
        },
    )
    assert expected == limiter.statistics()
    assert ["a", "x", "y"] == list(limiter.statistics().groups)
    limiter.release(s1)
    w.wait_admitted()
    w.finish()
    limiter.release(s2)
    expected = LimiterStatistics(
        capacity=3,
        running=0,
        waiting=0,
        peak=3,
        acquired=4,
        released=4,
        groups={
            "a": GroupStatistics(cap=1, running=0, peak=1, waiting=0),
            "x": GroupStatistics(cap=None, running=0, peak=2, waiting=0),
            "y": GroupStatistics(cap=None, running=0, peak=1, waiting=0),
        },
    )
    assert expected == limiter.statistics()


def test_statistics_is_an_immutable_snapshot() -> None:
    limiter = Limiter(2, group_caps={"a": 1})
    snapshot = limiter.statistics()
    limiter.acquire(groups=["a"])
    assert (0, 0) == (snapshot.running, snapshot.groups["a"].running)
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.running = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        snapshot.groups["b"] = GroupStatistics(None, 0, 0, 0)  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        snapshot.groups["a"].running = 1  # type: ignore[misc]
    assert isinstance(hash(snapshot), int)  # hashable, though it holds a mapping


def test_peak_is_the_high_water_mark() -> None:
    limiter = Limiter(4)
    slots = [limiter.acquire() for _ in range(3)]
    for slot in slots:
        limiter.release(slot)
    limiter.release(limiter.acquire())
    stats = limiter.statistics()
    assert (0, 3, 4, 4) == (stats.running, stats.peak, stats.acquired, stats.released)


# -- the bound, under load, and proof that its checks can fail ------------------------------


class OffByOneLimiter(Limiter):
    """Deliberately broken: admits one slot more than its capacity."""

    def _has_room(self, groups: tuple[str, ...]) -> bool:
        self._capacity += 1
        try:
            return super()._has_room(groups)
        finally:
            self._capacity -= 1


class GroupBlindLimiter(Limiter):
    """Deliberately broken: ignores group caps."""

    def _has_room(self, groups: tuple[str, ...]) -> bool:
        return super()._has_room(())


def check_bound(
    limiter: Limiter, *, threads: int = 64, rounds: int = 60, seed: int = 0
) -> list[str]:
    """Run the bound checks against ``limiter``; return the violations found.

    1. Saturation (deterministic): more holders than capacity (and, per capped group, more
       than the cap) all try at once and hold what they get; once every one is running or
       queued, what runs at once is measured by a tracker inside the "work".
    2. Stress: ``threads`` threads x ``rounds`` acquisitions with random groups,
       priorities, nowait / timeout calls and short random work; trackers inside the work
       measure the global and per-group peaks.
    3. Bookkeeping: acquired == released, nothing running or waiting at the end.
    """
    stats = limiter.statistics()
    capacity = stats.capacity
    caps = {name: g.cap for name, g in stats.groups.items() if g.cap is not None}
    violations: list[str] = []

    def saturate(groups: Sequence[str], bound: int, label: str) -> None:
        tracker = ConcurrencyTracker()
        holders = [
            Holder(limiter, f"{label}-{i}", groups=groups, tracker=tracker).start()
            for i in range(bound + 3)
        ]

        def settled() -> bool:
            now = limiter.statistics()
            return (
                now.running + now.waiting == len(holders)
                and tracker.current == now.running
                and now.running == sum(h.admitted.is_set() for h in holders)
            )

        wait_until(settled, f"every {label} holder runs or waits")
        if tracker.peak > bound:
            violations.append(f"{label}: {tracker.peak} ran at once, bound {bound}")
        for holder in holders:
            holder.release.set()
        for holder in holders:
            holder.finish()

    saturate((), capacity, "global")
    for group, cap in caps.items():
        if cap < capacity:
            saturate((group,), cap, f"group {group}")

    tracker = ConcurrencyTracker()
    group_trackers = {group: ConcurrencyTracker() for group in caps}
    names = [*caps, "free"]
    start = threading.Barrier(threads, timeout=WAIT)

    def work(thread_seed: int) -> None:
        rng = random.Random(thread_seed)
        start.wait()
        for _ in range(rounds):
            groups = rng.sample(names, rng.randint(0, 2))
            style = rng.random()
            slot: Slot | None
            if style < 0.2:
                slot = limiter.acquire_nowait(groups=groups)
            elif style < 0.3:
                try:
                    slot = limiter.acquire(groups=groups, timeout=0)
                except LimiterTimeoutError:
                    slot = None
            else:
                slot = limiter.acquire(groups=groups, priority=rng.randint(0, 2), timeout=WAIT)
            if slot is None:
                continue
            inside = [tracker] + [group_trackers[g] for g in slot.groups if g in caps]
            for t in inside:
                t.enter()
            spin = rng.randint(0, 3)
            if spin == 1:
                time.sleep(0)  # let another thread in while the slot is held
            elif spin == 2:
                sum(range(200))
            for t in inside:
                t.exit()
            limiter.release(slot)

    workers = [threading.Thread(target=work, args=(seed * 1000 + i,)) for i in range(threads)]
    for worker in workers:
        worker.start()
    join_all(workers)
    if tracker.peak > capacity:
        violations.append(f"stress: {tracker.peak} ran at once, capacity {capacity}")
    for group, group_tracker in group_trackers.items():
        if group_tracker.peak > caps[group]:
            violations.append(f"stress: group {group} peak {group_tracker.peak} > {caps[group]}")
    end = limiter.statistics()
    if end.peak > capacity:
        violations.append(f"statistics: peak {end.peak} > capacity {capacity}")
    if (end.running, end.waiting) != (0, 0) or end.acquired != end.released:
        violations.append(f"bookkeeping: {end}")
    return violations


def test_the_bound_holds_under_64_threads() -> None:
    limiter = Limiter(5, group_caps={"a": 2, "b": 3})
    assert [] == check_bound(limiter, threads=64, rounds=150)
    stats = limiter.statistics()
    assert stats.peak == 5  # the load did reach the bound
    assert stats.groups["a"].peak == 2


def test_the_bound_checks_detect_an_off_by_one_limiter() -> None:
    violations = check_bound(OffByOneLimiter(5, group_caps={"a": 2}), rounds=20)
    assert "global: 6 ran at once, bound 5" in violations


def test_the_bound_checks_detect_a_limiter_that_ignores_group_caps() -> None:
    violations = check_bound(GroupBlindLimiter(5, group_caps={"a": 2}), rounds=20)
    assert "group a: 5 ran at once, bound 2" in violations


# -- stateful property test against a reference model -------------------------------------

GROUPS = ("a", "b", "c")


class Model:
    """The admission rule, written plainly: FIFO by priority, skip group-blocked waiters."""

    def __init__(self, capacity: int, caps: dict[str, int]) -> None:
        self.capacity = capacity
        self.caps: dict[str, int | None] = dict(caps)
        self.running = 0
        self.group_running = dict.fromkeys(GROUPS, 0)
        self.ceiling = {g: caps.get(g, 0) for g in GROUPS}  # most a group may run now
        self.waiters: list[tuple[int, int, tuple[str, ...], Holder]] = []
        self.arrivals = 0

    def room(self, groups: Sequence[str]) -> bool:
        if self.running >= self.capacity:
            return False
        for g in groups:
            cap = self.caps.get(g)
            if cap is not None and self.group_running[g] >= cap:
                return False
        return True

    def admit(self, groups: Sequence[str]) -> None:
        self.running += 1
        for g in groups:
            self.group_running[g] += 1

    def release(self, groups: Sequence[str]) -> None:
        self.running -= 1
        for g in groups:
            self.group_running[g] -= 1

    def queue(self, priority: int, groups: tuple[str, ...], holder: Holder) -> None:
        self.waiters.append((-priority, self.arrivals, groups, holder))
        self.arrivals += 1
        self.waiters.sort(key=lambda w: (w[0], w[1]))

    def wake(self) -> list[Holder]:
        admitted: list[Holder] = []
        for entry in list(self.waiters):
            if self.running >= self.capacity:
                break
            if self.room(entry[2]):
                self.admit(entry[2])
                self.waiters.remove(entry)
                admitted.append(entry[3])
        return admitted


group_lists = st.lists(st.sampled_from(GROUPS), max_size=2, unique=True)


class LimiterMachine(RuleBasedStateMachine):
    """Random nowait / blocking acquisitions, releases and cap changes, checked step by step.

    Blocking acquisitions run in Holder threads. Slots are handed over inside the call that
    frees them, so after a release the limiter's counts are exact at once; the machine
    waits (with a deadline) only for a new thread to be queued or admitted.
    """

    limiter_class: type[Limiter] = Limiter

    def __init__(self) -> None:
        super().__init__()
        self.limiter: Limiter = Limiter(1)
        self.model = Model(1, {})
        self.held: list[Slot] = []
        self.holders: list[Holder] = []

    @initialize(
        capacity=st.integers(1, 4),
        caps=st.dictionaries(st.sampled_from(GROUPS), st.integers(1, 3)),
    )
    def configure(self, capacity: int, caps: dict[str, int]) -> None:
        self.limiter = self.limiter_class(capacity, group_caps=caps)
        self.model = Model(capacity, caps)

    def _collect(self, admitted: Sequence[Holder]) -> None:
        for holder in admitted:
            self.held.append(holder.wait_admitted())
        assert len(self.model.waiters) == self.limiter.statistics().waiting

    def _give_back(self, slot: Slot) -> None:
        holder = next((h for h in self.holders if h.slot is slot), None)
        if holder is not None:
            holder.finish()  # the holder's thread releases it
        else:
            self.limiter.release(slot)

    @rule(groups=group_lists)
    def acquire_nowait(self, groups: list[str]) -> None:
        expected = self.model.room(groups)
        slot = self.limiter.acquire_nowait(groups=groups)
        assert expected == (slot is not None), f"nowait({groups}) admission differs"
        if slot is not None:
            self.model.admit(groups)
            self.held.append(slot)

    @rule(groups=group_lists, priority=st.integers(0, 2))
    def acquire_blocking(self, groups: list[str], priority: int) -> None:
        holder = Holder(self.limiter, f"h{len(self.holders)}", groups=groups, priority=priority)
        self.holders.append(holder)
        if self.model.room(groups):
            self.model.admit(groups)
            holder.start()
            self.held.append(holder.wait_admitted())
            return
        self.model.queue(priority, tuple(groups), holder)
        expected = len(self.model.waiters)
        holder.start()
        wait_until(
            lambda: holder.admitted.is_set() or self.limiter.statistics().waiting == expected,
            f"{holder.name} is queued or admitted",
        )
        assert not holder.admitted.is_set(), f"acquire({groups}) was admitted, model says wait"

    @precondition(lambda self: self.held)
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        slot = data.draw(st.sampled_from(self.held))
        self.held.remove(slot)
        self.model.release(slot.groups)
        for g in slot.groups:
            cap = self.model.caps.get(g)
            if cap is not None:
                self.model.ceiling[g] = max(cap, self.model.group_running[g])
        self._give_back(slot)
        self._collect(self.model.wake())

    @rule(group=st.sampled_from(GROUPS), cap=st.none() | st.integers(1, 3))
    def set_group_cap(self, group: str, cap: int | None) -> None:
        self.limiter.set_group_cap(group, cap)
        self.model.caps[group] = cap
        if cap is not None:
            self.model.ceiling[group] = max(cap, self.model.group_running[group])
        self._collect(self.model.wake())

    @invariant()
    def counts_match_the_model(self) -> None:
        stats = self.limiter.statistics()
        assert stats.running <= stats.capacity
        assert self.model.running == stats.running
        assert stats.acquired - stats.released == stats.running
        assert len(self.model.waiters) == stats.waiting
        for g in GROUPS:
            running = stats.groups[g].running if g in stats.groups else 0
            assert self.model.group_running[g] == running
            if self.model.caps.get(g) is not None:
                assert running <= self.model.ceiling[g]

    def teardown(self) -> None:
        # no checks here: also after a failure, free everything and end every thread
        for g in GROUPS:
            self.limiter.set_group_cap(g, None)
        for holder in self.holders:
            holder.release.set()
        owned = {id(h.slot) for h in self.holders}
        for slot in self.held:
            if id(slot) not in owned:
                self.limiter.release(slot)
        join_all([h.thread for h in self.holders])


MACHINE_SETTINGS = settings(
    max_examples=100,
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def test_limiter_matches_the_reference_model() -> None:
    run_state_machine_as_test(LimiterMachine, settings=MACHINE_SETTINGS)


class OffByOneMachine(LimiterMachine):
    limiter_class = OffByOneLimiter


def test_the_model_check_detects_an_off_by_one_limiter() -> None:
    with pytest.raises(AssertionError):
        run_state_machine_as_test(
            OffByOneMachine,
            # detection is the point: no shrinking, no example database, one report
            settings=settings(
                MACHINE_SETTINGS,
                database=None,
                phases=[Phase.generate],
                report_multiple_bugs=False,
                print_blob=False,
            ),
        )
