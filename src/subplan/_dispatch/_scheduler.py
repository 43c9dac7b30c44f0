"""The dispatcher's state machine: one owner of every slot, for the whole tree.

:class:`Scheduler` holds the units of work (leaves, and integration steps of internal
nodes), their dependencies, the ready queue and the retry queue. It never runs work and
never sleeps: a driver (threads, asyncio, or the virtual-time simulator in
:mod:`subplan.testing`) asks it what to launch, runs that, and tells it how each attempt
ended. Because one object decides every start, ``max_parallel`` is one global bound:
nested groups never get a pool of their own, and a slot is taken when the dispatcher
launches an attempt and given back when the driver reports the attempt's end, so a worker
that dies cannot keep one.

Notes:
    Launching is O(log n) per attempt (two heaps); a unit blocked only by its group's cap
    is set aside for that pass, so it never blocks units of other groups behind it.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .._clock import Clock
from .._errors import ConfigError
from .._limit._limiter import Limiter, Slot
from .._model import Plan, Subplan
from ._decision import decide
from ._gate import PauseGate
from ._halt import Halt
from ._results import AttemptRecord, AttemptStatus, Event, Pause, SubplanOutcome
from ._retry import RetryPolicy

__all__ = ["AttemptEnd", "Journal", "Launch", "Scheduler", "check_max_parallel"]

UnitState = Literal["pending", "ready", "retry_wait", "running", "succeeded", "failed", "skipped"]


def check_max_parallel(value: object) -> int:
    """``value`` as a valid ``max_parallel``, or :class:`ConfigError`."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise ConfigError(f"max_parallel must be an integer, got {value!r}")
    if value < 1:
        raise ConfigError(f"max_parallel must be >= 1, got {value}")
    return value


def exit_code_of(error: BaseException | None) -> int | None:
    """The ``exit_code`` (or ``returncode``) an error carries, if it is an int."""
    for name in ("exit_code", "returncode"):
        value = getattr(error, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


@dataclass(slots=True)
class _Unit:
    id: str
    node: Subplan
    kind: Literal["leaf", "integration"]
    groups: tuple[str, ...]
    priority: int
    seq: int
    waiting_for: set[str] = field(default_factory=set)
    dependants: list[str] = field(default_factory=list)
    state: UnitState = "pending"
    attempts: list[AttemptRecord] = field(default_factory=list)
    charged: int = 0
    crashes: int = 0
    rate_limits: int = 0
    not_before: float = 0.0
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Launch:
    """An attempt the driver must start now; it holds a slot until reported ended."""

    unit_id: str
    subplan: Subplan
    kind: Literal["leaf", "integration"]
    attempt: int
    slot: Slot
    deadline: float | None
    dispatched: float = 0.0  # wall-clock time the dispatcher launched it


@dataclass(frozen=True, slots=True, kw_only=True)
class AttemptEnd:
    """How an attempt ended, as its backend saw it: an :class:`AttemptRecord` to be.

    Its fields are the record's, by the same names (``error`` is the one-line text,
    ``charged`` whether it counts against the retry budget), and the few the backend
    alone knows: the exception itself and, for a rate limit, the wait and its source.
    The scheduler makes the record of it (:meth:`Scheduler.finished`).

    Attributes:
        status: the attempt's status.
        started: wall-clock start of the work.
        ended: wall-clock end of the work.
        error: one line describing the failure.
        exception: the exception the work raised, if any (decides whether it retries).
        cost: what the work reported.
        passed: what the work reported.
        detail: the work's message.
        charged: False when the attempt must not count against the retry budget (an
            innocent attempt requeued after someone else's crash).
        wait: for ``rate_limited``: seconds until the limit resets, None when unknown.
        source: for ``rate_limited``: which detector saw it.
        changed: the files the attempt changed in its workspace, if it had one.
        exit_code: the exit status of its command, when the work said (a
            :class:`WorkResult`'s); else the error's ``exit_code``, if any.
    """

    status: AttemptStatus
    started: float
    ended: float
    error: str | None = None
    exception: BaseException | None = None
    cost: float | None = None
    passed: bool | None = None
    detail: str | None = None
    charged: bool = True
    wait: float | None = None
    source: str | None = None
    changed: tuple[str, ...] | None = None
    exit_code: int | None = None


class Journal(Protocol):
    """Where the scheduler reports what it decides, for a durable record of the run.

    Called under the driver's lock, in the order things happen; implementations queue
    and return at once (see :mod:`subplan._durable._journal`).
    """

    def started(self, launch: Launch) -> None:
        """An attempt was launched."""

    def ended(self, record: AttemptRecord, end: AttemptEnd) -> None:
        """An attempt ended."""

    def paused(self, pause: Pause) -> None:
        """The run paused, or a pause was extended (same ``started``)."""


class Scheduler:
    """The dispatcher's state: what may start, what waits, what ended.

    Args:
        plan: the plan; its leaves are the units of work.
        max_parallel: the global bound on attempts in flight.
        run_id: the run's id, for events.
        retry: the retry policy.
        clock: time source for retry deadlines and event times.
        rng: randomness for backoff jitter (seeded by the caller).
        dependencies: ``{unit id: unit ids it waits for}`` (already expanded).
        integration: when True, every internal node gets an integration step that waits
            for its children.
        groups: ``{unit id: group names}`` whose caps apply to it.
        priorities: ``{unit id: priority}``; higher starts first, FIFO among equals.
        limiter: where slots come from: the only bound. Its capacity must be
            ``max_parallel`` (the drivers build it so; ConfigError otherwise), and
            :attr:`max_parallel` reads it; group caps live in it too.
        emit: called with each :class:`Event`, from the driver's thread.
        prior: ``{unit id: attempts of earlier sessions}`` when resuming: attempt
            numbers continue after them, and they appear in the outcomes. The retry
            budget starts afresh.
        keep: units that succeeded before and are not run again: they start
            ``succeeded`` and their dependants do not wait for them.
        journal: told of every launch, end and pause (the state store's writer).
    """

    def __init__(
        self,
        plan: Plan,
        *,
        max_parallel: int,
        run_id: str,
        retry: RetryPolicy,
        clock: Clock,
        rng: random.Random,
        limiter: Limiter,
        dependencies: Mapping[str, Iterable[str]] | None = None,
        integration: bool = False,
        groups: Mapping[str, tuple[str, ...]] | None = None,
        priorities: Mapping[str, int] | None = None,
        emit: Callable[[Event], None] | None = None,
        prior: Mapping[str, Sequence[AttemptRecord]] | None = None,
        keep: Collection[str] = (),
        journal: Journal | None = None,
        halt: Halt | None = None,
    ) -> None:
        self.plan = plan
        self.halt = halt
        self.failures = 0
        # Set when a "now" halt is due: the drivers cancel what runs (see _Setup.stop_reason).
        self.halt_reason: str | None = None
        self.journal = journal
        if check_max_parallel(max_parallel) != limiter.capacity:
            raise ConfigError(
                f"max_parallel is {max_parallel} but the limiter's capacity is "
                f"{limiter.capacity}: the limiter is the one bound"
            )
        self.run_id = run_id
        self.retry = retry
        self.clock = clock
        self.rng = rng
        self.limiter = limiter
        self._emit_to = emit
        self.warnings: list[str] = []
        self.running = 0
        # Set once, by cancel(): the first reason wins.
        self.cancel_reason: str | None = None
        self._ready: list[tuple[int, int, str]] = []
        self._retry_wait: list[tuple[float, int, str]] = []
        self._gate = PauseGate()
        groups = groups or {}
        priorities = priorities or {}
        units: dict[str, _Unit] = {}
        for seq, node in enumerate(plan):
            if node.is_leaf or integration:
                units[node.id] = _Unit(
                    id=node.id,
                    node=node,
                    kind="leaf" if node.is_leaf else "integration",
                    groups=groups.get(node.id, ()),
                    priority=priorities.get(node.id, 0),
                    seq=seq,
                )
        if integration:
            for unit in units.values():
                if unit.kind == "integration":
                    unit.waiting_for.update(unit.node.children)
        for unit_id, prerequisites in (dependencies or {}).items():
            units[unit_id].waiting_for.update(prerequisites)
        for unit in units.values():
            for prerequisite in unit.waiting_for:
                units[prerequisite].dependants.append(unit.id)
        for unit_id, attempts in (prior or {}).items():
            if unit_id in units:
                units[unit_id].attempts = list(attempts)
        kept = {unit_id for unit_id in keep if unit_id in units}
        for unit_id in kept:
            units[unit_id].state = "succeeded"
        if kept:
            for unit in units.values():
                unit.waiting_for -= kept
        # Pre-order puts parents first; ready order must follow the leaves' plan order,
        # and integration steps come after their children anyway through waiting_for.
        self.units = units
        for unit in units.values():
            if unit.state == "pending" and not unit.waiting_for:
                self._make_ready(unit)

    @property
    def max_parallel(self) -> int:
        """The global bound: the limiter's capacity."""
        return self.limiter.capacity

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called: nothing new starts."""
        return self.cancel_reason is not None

    # -- events ------------------------------------------------------------------------

    @property
    def listening(self) -> bool:
        """True when someone listens to events (drivers skip building them otherwise)."""
        return self._emit_to is not None

    def emit(self, kind: str, **fields: object) -> None:
        """Build and send an event, if anyone listens; a listener's error becomes a warning."""
        if self._emit_to is None:
            return
        event = Event(kind=kind, time=self.clock.time(), run_id=self.run_id, **fields)  # type: ignore[arg-type]
        try:
            self._emit_to(event)
        except Exception as exc:  # a broken listener must not break the run
            if len(self.warnings) < 10:
                self.warnings.append(f"event listener raised {type(exc).__name__}: {exc}")

    # -- queues ------------------------------------------------------------------------

    def _make_ready(self, unit: _Unit) -> None:
        unit.state = "ready"
        heapq.heappush(self._ready, (-unit.priority, unit.seq, unit.id))

    def _promote_due(self, now: float) -> None:
        while self._retry_wait and self._retry_wait[0][0] <= now:
            _, _, unit_id = heapq.heappop(self._retry_wait)
            self._make_ready(self.units[unit_id])

    def launch_ready(self, *, deadline_after: float | None = None) -> list[Launch]:
        """Take slots for every unit that may start now and return the launches.

        Args:
            deadline_after: the per-attempt timeout in seconds, or None.

        Returns:
            The attempts to start, in queue order (highest priority, then oldest first).
        """
        if self.cancelled or self.halt_reason:  # a halt: the driver cancels next
            return []
        now = self.clock.monotonic()
        self._promote_due(now)
        gate = self._gate.admit(now)
        if gate == "closed":
            return []  # nothing new starts
        if gate == "reopened":
            ended = self._gate.record_real_end(self.clock.time())
            if ended is not None and self.journal is not None:
                self.journal.paused(ended)
            self.emit("resumed")
        launches: list[Launch] = []
        blocked: list[tuple[int, int, str]] = []
        # The limiter is the one and only bound: the scheduler keeps no second count that
        # could hide a broken limiter from the tests that check the peak.
        while self._ready:
            if not self._gate.ramp_allows(now):
                break  # reopening after a pause: the next start is released a bit later
            entry = heapq.heappop(self._ready)
            unit = self.units[entry[2]]
            slot = self.limiter.acquire_nowait(groups=unit.groups)
            if slot is None:
                blocked.append(entry)
                if not unit.groups or self.limiter.statistics().running >= self.limiter.capacity:
                    break  # the limiter itself is full: nobody else can start either
                continue  # only this unit's group is full: others may still start
            self._gate.take_ramp_slot()
            unit.state = "running"
            self.running += 1
            attempt = len(unit.attempts) + 1
            deadline = None if deadline_after is None else now + deadline_after
            launch = Launch(
                unit.id, unit.node, unit.kind, attempt, slot, deadline, self.clock.time()
            )
            launches.append(launch)
            if self.journal is not None:
                self.journal.started(launch)
        for entry in blocked:
            heapq.heappush(self._ready, entry)
        return launches

    def next_wakeup(self) -> float | None:
        """The next monotonic time something may start without an attempt ending, or None.

        That is the earliest of: a waiting retry becoming due, the pause gate opening,
        and the next release of the ramp after a pause.
        """
        times = []
        if self._retry_wait:
            times.append(self._retry_wait[0][0])
        gate = self._gate.next_time(has_ready=bool(self._ready))
        if gate is not None:
            times.append(gate)
        return min(times) if times else None

    # -- the pause gate ------------------------------------------------------------------

    @property
    def pauses(self) -> list[Pause]:
        """The run's pauses, oldest first (the gate's own list)."""
        return self._gate.pauses

    @property
    def paused_until(self) -> float | None:
        """Monotonic time the gate opens, while it is closed."""
        return self._gate.paused_until

    def pause(
        self,
        *,
        wait: float | None,
        reason: str,
        source: str,
        subplan_id: str | None = None,
        margin: bool = True,
    ) -> float:
        """Close the gate: nothing new starts until the limit resets.

        Args:
            wait: seconds until the limit resets; None when unknown (exponential backoff
                with jitter, 30 s doubling up to 15 minutes).
            reason: what was detected, for the report.
            source: which detector saw it.
            subplan_id: whose attempt was limited, if any.
            margin: add the safety margin to a known ``wait`` (10%, at most 5 minutes);
                False for a wait that has its margin already (a stored pause a resume
                honours).

        Returns:
            The monotonic time the gate opens. A pause never shortens a longer one.
        """
        now, wall = self.clock.monotonic(), self.clock.time()
        closing = self._gate.close(
            now=now,
            wall=wall,
            wait=wait,
            reason=reason,
            source=source,
            rng=self.rng,
            ramp=self.max_parallel,
            subplan_id=subplan_id,
            margin=margin,
        )
        if closing.pause is None:
            return closing.opens  # already closed for longer
        if self.journal is not None:
            self.journal.paused(closing.pause)
        self.emit(
            "paused",
            subplan_id=subplan_id,
            reason=reason,
            delay=closing.length,
            until=wall + closing.length,
        )
        return closing.opens

    def is_done(self) -> bool:
        """True when nothing runs and nothing more can start."""
        if self.running:
            return False
        if self.cancelled:
            return True
        if self._ready or self._retry_wait:
            return False
        stuck = [u.id for u in self.units.values() if u.state == "pending"]
        if stuck:  # cannot happen with acyclic dependencies; loud if it ever does
            raise RuntimeError(f"units wait for prerequisites that never end: {stuck[:5]}")
        return True

    # -- ends --------------------------------------------------------------------------

    def finished(self, launch: Launch, end: AttemptEnd) -> None:
        """Record how an attempt ended, give its slot back, and do what follows.

        What follows is :func:`~subplan._dispatch._decision.decide`'s: this applies it.
        """
        unit = self.units[launch.unit_id]
        self.limiter.release(launch.slot)
        self.running -= 1
        record = AttemptRecord(
            subplan_id=unit.id,
            number=launch.attempt,
            status=end.status,
            started=end.started,
            ended=end.ended,
            error=end.error,
            error_type=None if end.exception is None else type(end.exception).__name__,
            cost=end.cost,
            passed=end.passed,
            charged=end.charged,
            detail=end.detail,
            dispatched=launch.dispatched,
            changed=end.changed,
            exit_code=end.exit_code if end.exit_code is not None else exit_code_of(end.exception),
        )
        unit.attempts.append(record)
        if self.journal is not None:
            self.journal.ended(record, end)
        if self._emit_to is not None:
            self.emit(
                "attempt_ended",
                subplan_id=unit.id,
                attempt=launch.attempt,
                status=end.status,
                error=end.error,
                exit_code=record.exit_code,
            )
        decision = decide(
            end.status,
            policy=self.retry,
            rng=self.rng,
            charged=unit.charged,
            crashes=unit.crashes,
            rate_limits=unit.rate_limits,
            charge=end.charged,
            exception=end.exception,
            error=end.error,
            cancel_reason=self.cancel_reason,
        )
        unit.charged = decision.charged
        unit.crashes = decision.crashes
        unit.rate_limits = decision.rate_limits
        action = decision.action
        if action == "succeed":
            self._succeed(unit)
        elif action == "retry":
            unit.state = "retry_wait"
            unit.not_before = self.clock.monotonic() + decision.delay
            heapq.heappush(self._retry_wait, (unit.not_before, unit.seq, unit.id))
            self.emit(
                "retry_scheduled",
                subplan_id=unit.id,
                attempt=launch.attempt + 1,
                delay=decision.delay,
            )
        elif action == "requeue":
            self._make_ready(unit)  # at once, no attempt spent
        elif action == "pause":
            self._make_ready(unit)
            self.pause(
                wait=end.wait,
                reason=end.error or "rate limited",
                source=end.source or "unknown",
                subplan_id=unit.id,
            )
        elif action == "stop":
            unit.state = "pending"  # left for a resume
            unit.reason = decision.reason
        else:
            unit.state = "failed"
            unit.reason = decision.reason
            self._failed(unit)

    def _succeed(self, unit: _Unit) -> None:
        unit.state = "succeeded"
        unit.reason = None
        for dependant_id in unit.dependants:
            dependant = self.units[dependant_id]
            dependant.waiting_for.discard(unit.id)
            if dependant.state == "pending" and not dependant.waiting_for:
                self._make_ready(dependant)

    def _failed(self, unit: _Unit) -> None:
        """A unit failed for good: skip its dependants, and halt the run when due."""
        self.emit("failed", subplan_id=unit.id, reason=unit.reason)
        self._skip_dependants(unit)
        self.failures += 1
        if self.halt is None or self.failures < self.halt.fail or self.halt_reason:
            return
        if self.halt.when == "soon":
            self.cancel(self.halt.reason())  # nothing new starts; what runs may finish
        else:
            self.halt_reason = self.halt.reason()

    def _skip_dependants(self, failed: _Unit) -> None:
        stack = [(failed, d) for d in failed.dependants]
        while stack:
            cause, dependant_id = stack.pop()
            dependant = self.units[dependant_id]
            if dependant.state != "pending":
                continue
            dependant.state = "skipped"
            what = "failed" if cause.state == "failed" else "was skipped"
            dependant.reason = f"prerequisite {cause.node.label} ({cause.id}) {what}"
            self.emit("skipped", subplan_id=dependant.id, reason=dependant.reason)
            stack.extend((dependant, d) for d in dependant.dependants)

    def cancel(self, reason: str = "cancelled") -> None:
        """Stop dispatch: nothing new starts; running attempts are left to end.

        The first reason wins: a later cancel (a halt after Ctrl-C) changes nothing.
        """
        if self.cancel_reason is None:
            self.cancel_reason = reason

    # -- results -------------------------------------------------------------------------

    def outcomes(self) -> dict[str, SubplanOutcome]:
        """Every unit's outcome, in plan order."""
        out: dict[str, SubplanOutcome] = {}
        for unit in self.units.values():
            status: Literal["succeeded", "failed", "skipped", "not_run"]
            reason = unit.reason
            if unit.state in ("succeeded", "failed", "skipped"):
                status = unit.state
            else:
                status = "not_run"
                reason = reason or self.cancel_reason or "not run"
            out[unit.id] = SubplanOutcome(
                subplan_id=unit.id,
                label=unit.node.label,
                kind=unit.kind,
                status=status,
                attempts=tuple(unit.attempts),
                reason=reason,
            )
        return out
