"""A run's durable side: its record, lock and journal in the state store, and resumes.

:class:`Durable` is what a run holds while it has a store: the run lock (taken first,
released last), the run's record, and the :class:`~subplan._durable._journal.StoreJournal`
that commits every attempt. :func:`prepare_resume` reads a stored run back: it reclaims
attempts that a dead orchestrator left ``running`` (killing their process groups first
when they ran on this host), works out which subplans keep their success, and rebuilds
the run's options.
:func:`report_from_store` turns stored rows into a :class:`RunReport` for ``status`` and
``report``.
"""

from __future__ import annotations

import json
import math
import os
import socket
import threading
from collections import defaultdict
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from .._clock import Clock
from .._command._process import kill_process_groups, process_groups_of_run
from .._dispatch._results import (
    AttemptRecord,
    Pause,
    RunReport,
    Session,
    SubplanOutcome,
    SubplanStatus,
)
from .._errors import ConfigError, RunLockLostError, StoreError
from .._limit._tracker import peak_from_intervals
from .._model import Plan
from .._store._base import (
    AttemptEnded,
    AttemptRow,
    EpochFence,
    PauseRow,
    RunLock,
    RunRecord,
    RunStatus,
    RunStatusChanged,
    SessionRow,
    Store,
)
from .._store._open import open_store
from ._journal import StoreJournal, record_of

__all__ = ["Durable", "ResumeState", "prepare_resume", "report_from_store"]

INTERRUPTED = "interrupted: the orchestrator stopped while it ran"
LOCK_CHECK_INTERVAL = 0.5  # seconds between checks of a run lock that can be lost


def is_store(value: object) -> bool:
    """True for a store object (as opposed to a URL or path naming one)."""
    return hasattr(value, "apply") and hasattr(value, "lock_run")


@dataclass(frozen=True)
class ResumeState:
    """What a resumed run starts from.

    Attributes:
        prior: the earlier attempts of every unit still in the plan.
        keep: units whose success stands (not run again).
        lock: the run lock, already held by the resume.
        warnings: what the resumed run's report must say (left-over commands of another
            host that were not killed).
        epoch: the run's lock epoch, bumped by the resume: every write of the resumed
            run is fenced by it.
    """

    prior: Mapping[str, Sequence[AttemptRecord]]
    keep: frozenset[str]
    lock: RunLock
    warnings: tuple[str, ...] = ()
    epoch: int | None = None


class Durable:
    """One session of a run in the store: lock, record, journal.

    Args:
        store: a store object, or a spec for :func:`open_store` (closed at the end when
            opened here).
        runs_dir: the runs directory (where the SQLite store lives by default).
        run_id: the run.
        plan: the run's plan.
        config: the run's options, JSON-ready.
        clock: for the record's times.
        resume: when resuming, the lock it holds (the run exists already).

    Raises:
        RunExistsError: a new run whose id is taken.
        RunLockedError: another orchestrator holds the run.
        StoreError: the store cannot be used.
    """

    def __init__(
        self,
        store: Store | str | None,
        *,
        runs_dir: Path,
        run_id: str,
        plan: Plan,
        config: Mapping[str, Any],
        clock: Clock,
        resume: ResumeState | None = None,
    ) -> None:
        self.owns_store = not is_store(store)
        self.store: Store = (
            open_store(store, runs_dir)  # type: ignore[arg-type]
            if self.owns_store
            else store  # type: ignore[assignment]
        )
        self.run_id = run_id
        self.failed = threading.Event()
        self._done = False
        self.lock: RunLock | None = None
        try:
            self.lock = resume.lock if resume is not None else self.store.lock_run(run_id)
            now = clock.time()
            host, pid = socket.gethostname(), os.getpid()
            if resume is None:
                self.store.create_run(
                    RunRecord(
                        run_id=run_id,
                        status="running",
                        created=now,
                        updated=now,
                        ended=None,
                        plan_json=plan.to_json(),
                        config=dict(config),
                        command=_command_of(config),
                        host=host,
                        pid=pid,
                    )
                )
                # A new run's first epoch: an orchestrator that takes it later gets a
                # higher one, and this one's writes are refused from then on.
                self.epoch: int | None = self.store.bump_lock_epoch(run_id)
            else:
                self.epoch = resume.epoch
                self.store.set_plan(run_id, plan.to_json())
                self.store.apply(
                    [
                        *_fences(run_id, self.epoch),
                        RunStatusChanged(run_id, "running", now, None, host, pid),
                    ]
                )
            self.lock_lost: str | None = None
            self.journal = StoreJournal(
                self.store, run_id, on_error=self._on_error, fence=self._fence, epoch=self.epoch
            )
            if resume is not None:
                self.journal.warnings.extend(resume.warnings)  # they reach the report
            self._watching = threading.Event()
            check = getattr(self.lock, "check", None)
            if callable(check):
                # A PostgreSQL lock ends with its session (a server restart): look often,
                # and stop the run the moment it is gone.
                threading.Thread(
                    target=self._watch, args=(check,), name="subplan-run-lock", daemon=True
                ).start()
        except BaseException:
            self._release()
            raise

    def _watch(self, check: Callable[[], str | None]) -> None:
        while not self._watching.wait(LOCK_CHECK_INTERVAL):
            why = check()
            if why is not None:
                self.lock_lost = f"the run lock was lost: {why}"
                self.failed.set()
                return

    def _fence(self) -> None:
        """Refuse to write once the lock is known lost: another orchestrator may hold it."""
        if self.lock_lost is not None:
            raise RunLockLostError(self.lock_lost, location=self.store.location)

    def _on_error(self, exc: BaseException) -> None:
        if isinstance(exc, RunLockLostError) and self.lock_lost is None:
            self.lock_lost = str(exc)  # a newer orchestrator took the run: stop at once
        self.failed.set()

    def failure(self) -> str | None:
        """One line naming the store's failure (or the lost lock), once it failed."""
        if self.lock_lost is not None:
            return self.lock_lost
        error = self.journal.error
        return None if error is None else f"the state store failed: {error}"

    def sessions(self) -> list[SessionRow]:
        """The run's sessions so far (this one still open), or none if the store fails."""
        try:
            return self.store.sessions(self.run_id)
        except StoreError:
            return []  # the failure itself is reported by finish()

    def finish(self, status: RunStatus, ended: float) -> None:
        """Record the run's end, commit everything, release the lock.

        Raises:
            StoreError: the store failed during the run (what it holds is what was
                committed before; the run can be resumed).
        """
        if self._done:
            return
        self._done = True
        try:
            self.journal.status(status, at=ended, ended=ended)
            self.journal.close()
            if self.lock_lost is not None:
                raise RunLockLostError(self.lock_lost, location=self.store.location)
        finally:
            self._release()

    def abandon(self, ended: float) -> None:
        """Best effort after an unexpected error: mark the run interrupted and let go."""
        if self._done:
            return
        self._done = True
        try:
            self.journal.status("interrupted", at=ended, ended=ended)
            self.journal.close()
        except Exception:  # noqa: S110 - the error being raised matters more
            pass
        finally:
            self._release()

    def _release(self) -> None:
        watching = getattr(self, "_watching", None)
        if watching is not None:
            watching.set()
        if self.lock is not None:
            self.lock.release()
        if self.owns_store:
            self.store.close()


def _fences(run_id: str, epoch: int | None) -> list[EpochFence]:
    return [] if epoch is None else [EpochFence(run_id, epoch)]


def _command_of(config: Mapping[str, Any]) -> tuple[str, ...] | None:
    work = config.get("work")
    if isinstance(work, Mapping) and work.get("kind") == "command":
        return tuple(str(a) for a in work.get("argv", ()))
    return None


def units_of(plan: Plan, integration: bool) -> list[str]:
    """The unit ids a run of ``plan`` has: its leaves, and internal nodes if integrating."""
    return [n.id for n in plan if n.is_leaf or integration]


def rerun_units(plan: Plan, ids: Collection[str], integration: bool) -> set[str]:
    """The units under the named nodes (whole subtrees). Raises UnknownSubplanError."""
    out: set[str] = set()
    for node_id in ids:
        for node in plan.subtree(node_id):
            if node.is_leaf or integration:
                out.add(node.id)
    return out


def prepare_resume(
    store: Store,
    run_id: str,
    *,
    lock: RunLock,
    plan: Plan | None,
    rerun: Collection[str],
    clock: Clock,
    kill_grace: float = 2.0,
    run_dir: str | os.PathLike[str] | None = None,
) -> tuple[RunRecord, Plan, ResumeState]:
    """Read a run back for a resume (its lock held by the caller).

    Attempts left ``running`` are reclaimed: their process groups are killed (and
    confirmed gone) first, then they are marked ``interrupted``, uncharged. A process
    group is a number on the host of the orchestrator that recorded it, so groups are
    killed only when that host (the run record's ``host``) is this one; otherwise they
    are left alone and the resumed run's report warns that those commands may still be
    running there.

    Args:
        store: the store.
        run_id: the run.
        lock: the run's lock, held.
        plan: a new plan (a re-decomposed project), or None for the stored one.
        rerun: node ids whose subtrees run again even if they succeeded.
        clock: for the reclaim times.
        kill_grace: seconds between SIGTERM and SIGKILL for a left-over command.
        run_dir: the run's output directory: stray commands of the run found on this
            host by their environment count only when their files list lies in it.

    Returns:
        The run's record, the plan to run, and the state to start from.
    """
    record = store.get_run(run_id)
    # Taking the run: from now on the writes of any older orchestrator of it are refused,
    # even one that still believes it holds the lock (frozen, cut off, its lock lost).
    epoch = store.bump_lock_epoch(run_id)
    stored = Plan.from_json(record.plan_json)
    plan = plan or stored
    integration = bool(record.config.get("integrate"))
    again = rerun_units(plan, rerun, integration)
    rows = store.attempts(run_id)
    reclaimed = []
    now = clock.time()
    # A record without a host predates host names (or was written by hand): local.
    local = record.host in ("", socket.gethostname())
    left_running = 0
    # Every group to kill before anything starts again: those recorded as running, and
    # any command of this run found on this host by its environment (a group the store
    # never heard of). All at once, under one grace period.
    doomed = process_groups_of_run(run_id, run_dir=run_dir)
    for row in rows:
        if row.status != "running":
            continue
        if row.pgid is not None and row.pgid > 1:
            if local:
                doomed.add(row.pgid)
            else:
                left_running += 1  # that number here would be some other process group
        reclaimed.append(
            AttemptEnded(
                run_id=run_id,
                subplan_id=row.subplan_id,
                number=row.number,
                status="interrupted",
                ended=now,
                started=row.started,
                error=INTERRUPTED,
                charged=False,
            )
        )
    # One grace period for all, on the run's clock: not a couple of seconds per group.
    survivors = sorted(kill_process_groups(doomed, grace=kill_grace, clock=clock))
    if reclaimed:
        store.apply([EpochFence(run_id, epoch), *reclaimed])
        rows = store.attempts(run_id)
    units = set(units_of(plan, integration))
    prior: dict[str, list[AttemptRecord]] = defaultdict(list)
    for row in rows:
        if row.subplan_id in units:
            prior[row.subplan_id].append(record_of(row))
    keep = frozenset(
        unit_id
        for unit_id, attempts in prior.items()
        if attempts[-1].status == "succeeded" and unit_id not in again
    )
    warnings: tuple[str, ...] = ()
    if survivors:
        warnings += (
            f"process group(s) {', '.join(map(str, survivors))} of this run could not be "
            "killed (another user's, or stuck in the kernel)",
        )
    if left_running:
        what = "attempt" if left_running == 1 else "attempts"
        warnings += (
            f"{left_running} {what} of host {record.host} may still be running there; "
            f"their commands were not killed (this resume runs on {socket.gethostname()})",
        )
    return record, plan, ResumeState(dict(prior), keep, lock, warnings, epoch)


def sessions_of(
    rows: Sequence[SessionRow],
    attempts: Sequence[AttemptRecord],
    pauses: Sequence[Pause],
    end: float,
) -> tuple[Session, ...]:
    """The stored sessions, each with an end: a session whose orchestrator died ends at
    its last recorded activity (an attempt's or a pause's end), the last open one no
    earlier than ``end`` (the run's last update)."""
    ordered = sorted(rows, key=lambda r: r.started)
    # An interrupted attempt "ended" when a resume found it: that says nothing of when
    # its dead orchestrator last did something.
    marks = sorted(
        [t for a in attempts for t in (a.dispatched or a.started, a.started)]
        + [a.ended for a in attempts if a.status != "interrupted"]
        + [t for p in pauses for t in (p.started, p.ends)]
    )
    out: list[Session] = []
    for i, row in enumerate(ordered):
        ended = row.ended
        if ended is None:
            limit = ordered[i + 1].started if i + 1 < len(ordered) else math.inf
            inside = [t for t in marks if row.started <= t <= limit]
            ended = max(inside, default=row.started)
            if i + 1 == len(ordered):
                ended = max(ended, end)
        out.append(Session(row.started, max(ended, row.started), row.host, row.pid))
    return tuple(out)


def report_from_store(
    record: RunRecord,
    rows: Sequence[AttemptRow],
    pauses: Sequence[PauseRow],
    sessions: Sequence[SessionRow] = (),
    *,
    run_dir: Path | None = None,
) -> RunReport:
    """A :class:`RunReport` of a stored run, as far as it got.

    ``sessions`` (the store's) separate run time from idle time between sessions;
    ``run_dir`` (``<runs_dir>/<run_id>``) lets the report name the subplans' log files.

    A unit's status comes from its latest attempt: ``succeeded``; ``failed`` once the run
    ended ``failed`` or ``succeeded``; otherwise ``not_run`` (the run was cancelled,
    interrupted, or is still going: a resume would run it). Units with no attempt are
    ``skipped`` in a run that ended ``failed`` (a prerequisite failed), else ``not_run``.
    """
    plan = Plan.from_json(record.plan_json)
    integration = bool(record.config.get("integrate"))
    finished = record.status in ("failed", "succeeded")
    by_unit: dict[str, list[AttemptRecord]] = defaultdict(list)
    for row in rows:
        by_unit[row.subplan_id].append(record_of(row))
    outcomes: dict[str, SubplanOutcome] = {}
    for unit_id in units_of(plan, integration):
        node = plan[unit_id]
        attempts = by_unit.get(unit_id, [])
        status: SubplanStatus
        reason: str | None = None
        if attempts and attempts[-1].status == "succeeded":
            status = "succeeded"
        elif attempts and finished:
            status, reason = "failed", attempts[-1].error or attempts[-1].status
        elif attempts:
            status, reason = "not_run", f"run {record.status}"
        elif finished:
            status, reason = "skipped", "a prerequisite did not succeed"
        else:
            status, reason = "not_run", f"run {record.status}"
        outcomes[unit_id] = SubplanOutcome(
            subplan_id=unit_id,
            label=node.label,
            kind="leaf" if node.is_leaf else "integration",
            status=status,
            attempts=tuple(attempts),
            reason=reason,
        )
    intervals = [(a.started, a.ended) for o in outcomes.values() for a in o.attempts]
    peak = peak_from_intervals(intervals)
    run_status: Literal["succeeded", "failed", "cancelled"] = "cancelled"
    if record.status == "succeeded" or record.status == "failed":
        run_status = record.status
    ended = record.ended if record.ended is not None else record.updated
    stops = tuple(Pause(p.started, p.ends, p.reason, p.source, p.subplan_id) for p in pauses)
    every = [a for o in outcomes.values() for a in o.attempts]
    return RunReport(
        run_id=record.run_id,
        status=run_status,
        max_parallel=int(record.config.get("max_parallel", 0)),
        started=record.created,
        ended=ended,
        outcomes=outcomes,
        peak_concurrency=peak,
        tracker_peak=peak,
        plan=plan,
        pauses=stops,
        sessions=sessions_of(sessions, every, stops, ended),
        run_dir=run_dir,
    )


def describe_work(work: Callable[..., Any]) -> dict[str, Any] | None:
    """The work's own description (command work has one), or None for a callable."""
    describe = getattr(work, "describe", None)
    if callable(describe):
        data = describe()
        json.dumps(data)  # must be JSON-ready
        return dict(data)
    return None


def check_store_spec(store: object) -> None:
    """Refuse a store argument that is neither a store, a string nor None."""
    if store is not None and not isinstance(store, str | os.PathLike) and not is_store(store):
        raise ConfigError(f"store must be a Store, a URL or a path, got {type(store).__name__}")
