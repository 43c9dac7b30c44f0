"""The run's writer: what the dispatcher decides, committed to the store in batches.

The dispatcher must not wait for a database on every start and end, and a success must
be durable before anyone is told of it. :class:`StoreJournal` satisfies both: the
dispatcher appends writes to a list and returns at once, and one writer thread commits
whatever has gathered as one transaction (group commit: the more there is to do, the
larger the batches). An idle writer woken by a write waits ``GATHER`` (5 ms) for more
before it commits, unless someone waits for the commit (``flush``, a command's process
group), so a success is durable within milliseconds either way. Events for the run's
listeners travel in the same list and are delivered by the writer thread only after
every write queued before them has been committed, so an ``attempt_ended`` event never
tells of a success the store could still lose.

A store that fails (disk full, server gone) stops the journal: ``on_error`` is told once,
later writes are dropped, and :meth:`StoreJournal.flush` raises the error.

For the kill tests, ``SUBPLAN_TEST_KILL_AT=POINT:N`` makes the orchestrator SIGKILL
itself at the N-th occurrence of POINT: ``before_write`` / ``after_write`` (a batch's
commit) or ``before_success`` (a batch holding the N-th success, before its commit: the
work finished but its success is not recorded).
"""

from __future__ import annotations

import json
import os
import signal
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TypeAlias

from .._dispatch._results import AttemptRecord
from .._errors import StoreError
from .._store._base import (
    AttemptEnded,
    AttemptProcess,
    AttemptRow,
    AttemptStarted,
    EpochFence,
    PauseRecorded,
    RunStatus,
    RunStatusChanged,
    Store,
    Write,
    changed_files,
    changed_text,
)

if TYPE_CHECKING:
    from .._dispatch._results import Event, Pause
    from .._dispatch._scheduler import AttemptEnd, Launch

__all__ = ["StoreJournal", "ended_of", "record_of"]

KILL_AT_ENV = "SUBPLAN_TEST_KILL_AT"
GATHER = 0.005  # seconds an idle writer waits for more writes before committing


# What the dispatcher queues: (_STARTED, launch), (_ENDED, record, end), (_WRITE, write)
# or (_EVENT, listener, event). Tuples, so that queueing costs next to nothing.
_STARTED, _ENDED, _WRITE, _EVENT = "started", "ended", "write", "event"
_Item: TypeAlias = tuple[Any, ...]


def record_of(row: AttemptRow) -> AttemptRecord:
    """A stored attempt as the dispatcher's :class:`AttemptRecord` (for a resume)."""
    started = row.started if row.started is not None else row.dispatched
    return AttemptRecord(
        subplan_id=row.subplan_id,
        number=row.number,
        status="interrupted" if row.status == "running" else row.status,
        started=started,
        ended=row.ended if row.ended is not None else started,
        error=row.error,
        error_type=row.error_type,
        cost=row.cost,
        passed=row.passed,
        charged=row.charged,
        detail=row.detail,
        dispatched=row.dispatched,
        changed=changed_files(row.changed),
        exit_code=row.exit_code,
    )


def ended_of(run_id: str, record: AttemptRecord, *, rate_limit: str | None = None) -> AttemptEnded:
    """The store's write that ends attempt ``record`` of ``run_id``: the record, and how
    the rate limit that ended it looked (JSON), if one did."""
    return AttemptEnded(
        run_id=run_id,
        subplan_id=record.subplan_id,
        number=record.number,
        status=record.status,
        ended=record.ended,
        started=record.started,
        exit_code=record.exit_code,
        error=record.error,
        error_type=record.error_type,
        rate_limit=rate_limit,
        cost=record.cost,
        passed=record.passed,
        charged=record.charged,
        detail=record.detail,
        changed=changed_text(record.changed),
    )


class _KillSwitch:
    """The test hook named in the module docstring; inert unless the variable is set."""

    def __init__(self, spec: str | None, kill: Callable[[], object] | None = None) -> None:
        self.point: str | None = None
        self.count = 0
        self.kill = kill or (lambda: os.kill(os.getpid(), signal.SIGKILL))
        if spec:
            point, _, count = spec.partition(":")
            self.point, self.count = point, int(count or "1")

    def hit(self, point: str, times: int = 1) -> None:
        if self.point != point or self.count <= 0:
            return
        self.count -= times
        if self.count <= 0:
            self.kill()


class StoreJournal:
    """Commit a run's writes from one thread, in batches, in order.

    Args:
        store: where to write.
        run_id: the run.
        on_error: called once, on the writer thread, when the store fails.
        fence: called before every commit; raising stops the journal like a failed store
            (the run lock was lost: another orchestrator may own the run now).
        epoch: the run's lock epoch this orchestrator holds: every batch starts with an
            :class:`EpochFence`, so the store refuses it once a newer orchestrator took
            the run (:class:`~subplan.RunLockLostError`). None writes unfenced.
    """

    def __init__(
        self,
        store: Store,
        run_id: str,
        *,
        on_error: Callable[[BaseException], None] | None = None,
        fence: Callable[[], None] | None = None,
        epoch: int | None = None,
    ) -> None:
        self.store = store
        self.run_id = run_id
        self._epoch = None if epoch is None else EpochFence(run_id, epoch)
        self._on_error = on_error
        self._fence = fence
        # The dispatcher's side is one short lock and an append; building the writes
        # happens on the writer thread.
        self._lock = threading.Lock()
        self._items: list[_Item] = []
        self._queued = 0
        self._idle = False
        self._wake = threading.Event()  # set by the first write after the writer went idle
        self._hurry = threading.Event()  # set by whoever waits for a commit
        self._done = 0
        self._done_cond = threading.Condition()
        self._closing = False
        self._error: BaseException | None = None
        self.rejected: list[Write] = []
        self.warnings: list[str] = []
        self.batches = 0
        self._kill = _KillSwitch(os.environ.get(KILL_AT_ENV))
        self._thread = threading.Thread(target=self._loop, name="subplan-journal", daemon=True)
        self._thread.start()

    # -- the dispatcher's side (the Journal protocol) -----------------------------------------

    def _put(self, item: _Item) -> int:
        with self._lock:
            self._items.append(item)
            self._queued += 1
            ticket, idle = self._queued, self._idle
        if idle:
            self._wake.set()
        return ticket

    def started(self, launch: Launch) -> None:
        """An attempt was launched: its row, ``running``."""
        self._put((_STARTED, launch))

    def ended(self, record: AttemptRecord, end: AttemptEnd) -> None:
        """An attempt ended."""
        self._put((_ENDED, record, end))

    def paused(self, pause: Pause) -> None:
        """A pause began or was extended."""
        self._put((_WRITE, self._pause_write(pause)))

    def _pause_write(self, pause: Pause) -> PauseRecorded:
        return PauseRecorded(
            self.run_id, pause.started, pause.ends, pause.reason, pause.source, pause.subplan_id
        )

    def process(
        self, subplan_id: str, number: int, *, pid: int | None, pgid: int | None, wait: bool
    ) -> None:
        """A running attempt's worker or command process; ``wait`` until it is committed.

        A resume kills the process group of an attempt its dead orchestrator left
        running, so a command's group is committed before the command runs at all
        (:func:`run_command` holds it back until then). The start row, queued before,
        commits in the same or an earlier batch, so the attempt's number is durably
        taken too.

        Raises:
            StoreError: the store failed, or (with ``wait``) it rejected the write: the
                attempt is no longer ``running`` (a newer orchestrator fenced it).
        """
        write = AttemptProcess(self.run_id, subplan_id, number, pid=pid, pgid=pgid)
        ticket = self._put((_WRITE, write))
        if wait:
            self._wait_for(ticket)
            if write in self.rejected:
                # A newer orchestrator took the attempt over (a resume marked it
                # interrupted): this one must not start its command.
                raise StoreError(
                    f"attempt {number} of {subplan_id} is no longer this orchestrator's: "
                    "the run was taken over"
                )

    def status(
        self,
        status: RunStatus,
        *,
        at: float,
        ended: float | None = None,
        host: str | None = None,
        pid: int | None = None,
    ) -> None:
        """The run's status changed."""
        self._put((_WRITE, RunStatusChanged(self.run_id, status, at, ended, host, pid)))

    def deliver(self, listener: Callable[[Event], None]) -> Callable[[Event], None]:
        """``listener``, called by the writer once what came before each event is durable."""

        def queue_event(event: Event) -> None:
            self._put((_EVENT, listener, event))

        return queue_event

    # -- waiting -----------------------------------------------------------------------------

    def _wait_for(self, ticket: int) -> None:
        self._hurry.set()
        with self._done_cond:
            while self._done < ticket and self._error is None:
                self._done_cond.wait()
            if self._error is not None:
                raise self._failure()

    def _failure(self) -> StoreError:
        error = self._error
        if isinstance(error, StoreError):
            return error
        return StoreError(f"the state store failed: {type(error).__name__}: {error}")

    def flush(self) -> None:
        """Block until everything queued so far is committed (and its events delivered).

        Raises:
            StoreError: the store failed; what came after the failure was not written.
        """
        with self._lock:
            ticket = self._queued
        self._wait_for(ticket)

    def close(self) -> None:
        """Flush, then stop the writer thread (idempotent). Raises as :meth:`flush`."""
        try:
            self.flush()
        finally:
            with self._lock:
                self._closing = True
            self._wake.set()
            self._hurry.set()
            self._thread.join()

    @property
    def error(self) -> BaseException | None:
        """The store's failure, if it failed."""
        return self._error

    # -- the writer thread -------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            with self._lock:
                batch, self._items = self._items, []
                closing = self._closing
                self._idle = not batch
            if not batch:
                if closing:
                    return
                self._wake.wait()
                self._wake.clear()
                with self._lock:
                    self._idle = False  # awake: later writes need not wake it again
                # Let writes gather for a moment (unless someone waits for them): one
                # transaction per GATHER instead of a wake-up per write, which would
                # cost the dispatcher more than the writes themselves.
                self._hurry.wait(GATHER)
                self._hurry.clear()
                continue
            if self._error is None:
                self._commit(batch)
            with self._done_cond:
                self._done += len(batch)
                self._done_cond.notify_all()

    def _writes(self, batch: Sequence[_Item]) -> list[Write]:
        run_id = self.run_id
        writes: list[Write] = []
        if self._epoch is not None:
            writes.append(self._epoch)
        for item in batch:
            kind = item[0]
            if kind is _STARTED:
                launch = item[1]
                writes.append(
                    AttemptStarted(
                        run_id=run_id,
                        subplan_id=launch.unit_id,
                        number=launch.attempt,
                        dispatched=launch.dispatched,
                    )
                )
            elif kind is _ENDED:
                record, end = item[1], item[2]
                limit = None
                if record.status == "rate_limited":
                    limit = json.dumps({"wait": end.wait, "source": end.source})
                writes.append(ended_of(run_id, record, rate_limit=limit))
            elif kind is _WRITE:
                writes.append(item[1])
        return writes

    def _commit(self, batch: Sequence[_Item]) -> None:
        writes = self._writes(batch)
        if len(writes) > (self._epoch is not None):  # more than the fence alone
            if self._kill.point is not None:
                successes = sum(
                    1 for w in writes if isinstance(w, AttemptEnded) and w.status == "succeeded"
                )
                self._kill.hit("before_write")
                if successes:
                    self._kill.hit("before_success", successes)
            try:
                if self._fence is not None:
                    self._fence()  # raises once this orchestrator may no longer write
                rejected = self.store.apply(writes)
            except BaseException as exc:
                with self._done_cond:
                    self._error = exc
                if self._on_error is not None:
                    self._on_error(exc)
                return
            self.batches += 1
            self._kill.hit("after_write")
            if rejected:
                self.rejected.extend(rejected)
                if len(self.warnings) < 10:
                    self.warnings.append(
                        f"the store rejected {len(rejected)} stale write(s), e.g. {rejected[0]}"
                    )
        for item in batch:
            if item[0] is _EVENT:
                try:
                    item[1](item[2])
                except Exception as exc:  # a broken listener must not break the run
                    if len(self.warnings) < 10:
                        self.warnings.append(f"event listener raised {type(exc).__name__}: {exc}")
