"""What the state store keeps, and the protocol both stores implement.

A store records runs (id, plan, options, command, status, times), every attempt (its
subplan, number, status, times, pid and process group, exit code, error, rate-limit
information, cost), every pause, and what ``subplan integrate`` did with each subplan's
changes (integrated, conflicted, dropped). The run's orchestrator is the only writer of a run
(the run lock sees to that); it sends its writes in batches through :meth:`Store.apply`,
one transaction per batch.

**Fencing.** An attempt is keyed by ``(run_id, subplan_id, number)``. Its row is created
``running`` by :class:`AttemptStarted` and changed only while it is still ``running``:
once a resume has marked it ``interrupted`` (its orchestrator died), the late writes of
that orchestrator are rejected and returned by :meth:`Store.apply`, never applied.

**Lock epochs.** Every time an orchestrator takes a run (a new run, or a resume) it bumps
the run's *lock epoch* (:meth:`Store.bump_lock_epoch`, a counter in the runs table) and
starts each of its batches with :class:`EpochFence` carrying the epoch it got. A batch
whose epoch is no longer the run's is refused whole with
:class:`~subplan.RunLockLostError`: an orchestrator that lost its lock, was frozen
(SIGSTOP) or cut off while a newer one took the run can never write after it, not even
the run's status or a pause, which attempt fencing does not cover. The column is added
to a database of an earlier release the first time an epoch is bumped in it (the schema
version stays 1; earlier releases read their own columns and ignore it).

Times are wall-clock seconds since the epoch (floats). JSON columns hold what
:func:`json.dumps` wrote.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from .._errors import InputError, RunLockLostError, StoreError

__all__ = [
    "SCHEMA_VERSION",
    "AttemptEnded",
    "AttemptKey",
    "AttemptProcess",
    "AttemptRow",
    "AttemptStarted",
    "EpochFence",
    "FencedWrites",
    "IntegrationRow",
    "IntegrationStatus",
    "PauseRecorded",
    "PauseRow",
    "RunInfo",
    "RunLock",
    "RunRecord",
    "RunStatus",
    "RunStatusChanged",
    "Store",
    "StoredAttemptStatus",
    "Write",
    "changed_files",
    "changed_text",
    "clean_text",
    "fence",
    "run_ids_of",
]

SCHEMA_VERSION = 1


def changed_text(files: Sequence[str] | None) -> str | None:
    """How an attempt's changed files are stored: a JSON list (None: no workspace).

    Example:
        >>> changed_text(("a.py", "b/c.py")), changed_files(changed_text(("a.py",)))
        ('["a.py", "b/c.py"]', ('a.py',))
    """
    return None if files is None else json.dumps(list(files))


def changed_files(text: str | None) -> tuple[str, ...] | None:
    """The changed files of :func:`changed_text`'s form."""
    return None if text is None else tuple(json.loads(text))


RunStatus = Literal["running", "succeeded", "failed", "cancelled", "interrupted"]
"""``running`` while an orchestrator holds it (or until a resume finds it abandoned);
``interrupted`` when a resume found it ``running`` with no live orchestrator."""

StoredAttemptStatus = Literal[
    "running",
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "rate_limited",
    "crashed",
    "interrupted",
]
"""An attempt's status in the store: ``running`` until it ends; ``interrupted`` when its
orchestrator died while it ran (set by a resume)."""


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run, as created.

    Attributes:
        run_id: the run's id (no separators, at most 128 characters).
        status: see :data:`RunStatus`.
        created: when the run was created.
        updated: when its status last changed.
        ended: when it last ended, or None while running.
        plan_json: the plan, as ``Plan.to_json()`` wrote it (schema ``subplan.plan/1``).
        config: the run's options as JSON-ready data (max_parallel, retry policy,
            timeout, backend, ...); a resume runs with the same.
        command: the command template's argv for CLI runs, or None for callables.
        host: the host name of the orchestrator that last ran it.
        pid: that orchestrator's pid.
    """

    run_id: str
    status: RunStatus
    created: float
    updated: float
    ended: float | None
    plan_json: str
    config: Mapping[str, Any] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    host: str = ""
    pid: int = 0


@dataclass(frozen=True, slots=True)
class RunInfo:
    """A run as listed: no plan, with its subplans counted by their latest attempt.

    Attributes:
        run_id, status, created, updated, ended, host, pid: as in :class:`RunRecord`.
        attempts: how many attempts the run has recorded.
        latest: ``{status: number of subplans whose latest attempt has that status}``.
    """

    run_id: str
    status: RunStatus
    created: float
    updated: float
    ended: float | None
    host: str
    pid: int
    attempts: int
    latest: Mapping[str, int]


@dataclass(frozen=True, slots=True)
class AttemptRow:
    """One attempt as stored.

    Attributes:
        run_id: the run.
        subplan_id: the subplan (or integration step).
        number: 1-based, unique per subplan within the run, never reused (a resume
            continues the numbering).
        status: see :data:`StoredAttemptStatus`.
        dispatched: when the dispatcher launched it.
        started: when the work itself began (None while unknown).
        ended: when it ended (None while running).
        pid: the worker process that ran it, if any.
        pgid: the process group of its command, if any (a resume kills it if alive).
        exit_code: the command's exit code, if any.
        error: one line describing the failure.
        error_type: the exception class name.
        rate_limit: JSON text describing the rate limit that ended it, if any.
        cost: what the work reported.
        passed: what the work reported.
        charged: whether it counted against the retry budget.
        detail: the work's message.
        changed: JSON list of the files the attempt changed in its workspace (paths
            relative to the repository), or None without a workspace.
    """

    run_id: str
    subplan_id: str
    number: int
    status: StoredAttemptStatus
    dispatched: float
    started: float | None = None
    ended: float | None = None
    pid: int | None = None
    pgid: int | None = None
    exit_code: int | None = None
    error: str | None = None
    error_type: str | None = None
    rate_limit: str | None = None
    cost: float | None = None
    passed: bool | None = None
    charged: bool = True
    detail: str | None = None
    changed: str | None = None


@dataclass(frozen=True, slots=True)
class SessionRow:
    """One session of a run: from an orchestrator taking it (``run`` or ``resume``)
    to its letting go.

    Attributes:
        run_id: the run.
        started: when the session began.
        ended: when it ended; None while it runs, or when its orchestrator died.
        host: the orchestrator's host name.
        pid: its process id.
    """

    run_id: str
    started: float
    ended: float | None
    host: str
    pid: int


@dataclass(frozen=True, slots=True)
class PauseRow:
    """A pause of the whole run for a rate limit (see :class:`subplan.Pause`)."""

    run_id: str
    started: float
    ends: float
    reason: str
    source: str
    subplan_id: str | None = None


IntegrationStatus = Literal["integrated", "conflicted", "failed_verify", "dropped"]
"""What integrating a subplan's changes onto a branch came to: ``integrated`` (a commit on
the branch), ``conflicted`` (its patch did not apply; set aside), ``failed_verify`` (the
verify command found it broke its wave; held back), ``dropped`` (the same, and dropped
with ``--drop-failing``: later integrations onto the branch skip it)."""


@dataclass(frozen=True, slots=True)
class IntegrationRow:
    """What ``subplan integrate`` did with one subplan's changes on one branch.

    Attributes:
        run_id: the run.
        branch: the integration branch (``subplan/integrate/<run_id>`` by default).
        subplan_id: the subplan.
        status: see :data:`IntegrationStatus`.
        at: when it was recorded.
        commit: the subplan's commit on the branch (``integrated`` only).
        files: the files concerned: the conflicting ones for ``conflicted``, else the
            files the commit changed.
        detail: one line on why (git's message, the verify command's exit status).
    """

    run_id: str
    branch: str
    subplan_id: str
    status: IntegrationStatus
    at: float
    commit: str | None = None
    files: tuple[str, ...] = ()
    detail: str | None = None


# -- writes -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """Create the attempt's row, ``running``. Rejected if the row exists already."""

    run_id: str
    subplan_id: str
    number: int
    dispatched: float


@dataclass(frozen=True, slots=True)
class AttemptProcess:
    """Record the worker pid and/or the command's process group of a running attempt.

    Fields left None are not changed. Rejected unless the attempt is ``running``.
    """

    run_id: str
    subplan_id: str
    number: int
    pid: int | None = None
    pgid: int | None = None


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """Finish a running attempt. Rejected unless the attempt is ``running`` (fencing).

    ``status`` is the attempt's final status: never ``running``
    (:meth:`Store.apply` raises :class:`~subplan.InputError` for that).
    """

    run_id: str
    subplan_id: str
    number: int
    status: StoredAttemptStatus
    ended: float
    started: float | None = None
    exit_code: int | None = None
    error: str | None = None
    error_type: str | None = None
    rate_limit: str | None = None
    cost: float | None = None
    passed: bool | None = None
    charged: bool = True
    detail: str | None = None
    changed: str | None = None


@dataclass(frozen=True, slots=True)
class PauseRecorded:
    """Add a pause, or extend the run's last pause that started at ``started``."""

    run_id: str
    started: float
    ends: float
    reason: str
    source: str
    subplan_id: str | None = None


@dataclass(frozen=True, slots=True)
class RunStatusChanged:
    """Set the run's status (and ``ended``, None while running), host and pid."""

    run_id: str
    status: RunStatus
    at: float
    ended: float | None = None
    host: str | None = None
    pid: int | None = None


@dataclass(frozen=True, slots=True)
class EpochFence:
    """Apply the batch only while the run's lock epoch is still ``epoch``.

    Put first in a batch (it covers the whole transaction wherever it stands): when the
    run's epoch in the store differs, :meth:`Store.apply` raises
    :class:`~subplan.RunLockLostError` and applies nothing.
    """

    run_id: str
    epoch: int


Write: TypeAlias = (
    AttemptStarted | AttemptProcess | AttemptEnded | PauseRecorded | RunStatusChanged | EpochFence
)


class RunLock(Protocol):
    """A held run lock: exclusive to one orchestrator until released or its holder dies."""

    @property
    def holder(self) -> str:
        """Who holds it: ``pid N on HOST since ISO-TIME``."""

    def release(self) -> None:
        """Give the lock up (idempotent)."""


class Store(Protocol):
    """The state store. Both implementations pass the same contract tests.

    Every method raises :class:`~subplan.StoreError` subclasses for store problems and
    :class:`~subplan.UnknownRunError` for a run id it does not have. A store object may be
    used from several threads (calls are serialised inside it).
    """

    kind: Literal["sqlite", "postgresql"]
    location: str  # the file, or the URL without its password

    def create_run(self, run: RunRecord) -> None:
        """Add a run. Raises RunExistsError when the id is taken."""

    def get_run(self, run_id: str) -> RunRecord:
        """The run. Raises UnknownRunError."""

    def list_runs(self) -> list[RunInfo]:
        """Every run, newest first."""

    def set_plan(self, run_id: str, plan_json: str) -> None:
        """Replace a run's plan (a resume of a re-decomposed project)."""

    def apply(self, writes: Sequence[Write]) -> list[Write]:
        """Apply ``writes`` in order in one transaction; return those rejected by fencing.

        The transaction is durable (committed) when this returns. A write naming an
        unknown run raises UnknownRunError and applies nothing.
        """

    def attempts(self, run_id: str) -> list[AttemptRow]:
        """Every attempt of the run, by subplan id then number."""

    def pauses(self, run_id: str) -> list[PauseRow]:
        """Every pause of the run, in order."""

    def sessions(self, run_id: str) -> list[SessionRow]:
        """The run's sessions (its first run, then each resume), by start. Raises
        UnknownRunError. Empty for a run recorded by a release that kept none."""

    def record_integrations(self, rows: Sequence[IntegrationRow]) -> None:
        """Add or replace (by run, branch and subplan) integration outcomes, in one
        transaction. Raises UnknownRunError (and records nothing) for an unknown run."""

    def integrations(self, run_id: str) -> list[IntegrationRow]:
        """The run's integration outcomes, by branch then subplan id. Raises UnknownRunError."""

    def lock_run(self, run_id: str) -> RunLock:
        """Take the run's lock without waiting. Raises RunLockedError naming the holder."""

    def bump_lock_epoch(self, run_id: str) -> int:
        """Add one to the run's lock epoch (its lock just taken) and return the new value.

        Raises UnknownRunError. Later batches fenced by an older epoch are refused.
        """

    def run_holder(self, run_id: str) -> str | None:
        """Who holds the run's lock now, without taking it (works read-only); None: nobody."""

    def __enter__(self) -> Store:
        """The store itself: ``with open_store(...) as store:`` closes it at the end."""

    def __exit__(self, *exc: object) -> None:
        """Close the store."""

    def close(self) -> None:
        """Release connections (idempotent). Locks taken through the store stay held."""


# -- helpers shared by the stores ---------------------------------------------------------

AttemptKey: TypeAlias = tuple[str, str, int]
"""``(run_id, subplan_id, number)``: what identifies an attempt."""


@dataclass(frozen=True, slots=True)
class FencedWrites:
    """A batch of writes sorted by :func:`fence` into what to apply and what to reject.

    Applying ``started``, then ``process``, then ``ended``, ``pauses`` and ``statuses``
    (each in its order) has the same effect as applying the accepted writes in their
    original order: no attempt appears twice in ``started`` nor in ``ended``, an
    attempt's ``process`` entry (at most one, merged) comes from writes that preceded its
    end, and pauses and run statuses touch no attempt.

    Attributes:
        started: accepted :class:`AttemptStarted` writes.
        process: accepted :class:`AttemptProcess` writes, merged into one per attempt
            (the last non-None pid and pgid win).
        ended: accepted :class:`AttemptEnded` writes.
        pauses: every :class:`PauseRecorded` (they are never fenced).
        statuses: every :class:`RunStatusChanged` (never fenced).
        rejected: the writes fencing rejected, in their order.
    """

    started: list[AttemptStarted]
    process: list[AttemptProcess]
    ended: list[AttemptEnded]
    pauses: list[PauseRecorded]
    statuses: list[RunStatusChanged]
    rejected: list[Write]


def clean_text(text: str | None) -> str | None:
    r"""``text`` made storable: NUL and unencodable characters become U+FFFD.

    PostgreSQL cannot store NUL, and neither store can encode a lone surrogate (what
    ``errors="surrogateescape"`` leaves of undecodable bytes). Both stores apply this to
    the free-text fields of attempts and pauses (``error``, ``error_type``,
    ``rate_limit``, ``detail``, ``reason``, ``source``), so a command's message never
    fails a write and both stores keep the same text.

    Example:
        >>> clean_text("bad\x00byte") == "bad\ufffdbyte"
        True
        >>> clean_text("caf\udce9") == "caf" + "\ufffd" * 3  # byte 0xe9, escaped
        True
    """
    if text is None:
        return None
    if "\0" in text:
        text = text.replace("\0", "\ufffd")
    if not text.isascii():
        try:
            text.encode()
        except UnicodeEncodeError:
            text = text.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    return text


_WRITE_TYPES = (
    AttemptStarted,
    AttemptProcess,
    AttemptEnded,
    PauseRecorded,
    RunStatusChanged,
    EpochFence,
)


def run_ids_of(writes: Sequence[Write]) -> list[str]:
    """The distinct run ids that ``writes`` name, in order of first appearance.

    Raises:
        TypeError: something that is not a write.
    """
    ids: dict[str, None] = {}
    for w in writes:
        item: object = w  # checked at run time: callers are not always type-checked
        if not isinstance(item, _WRITE_TYPES):
            raise TypeError(f"not a store write: {type(item).__name__}")
        ids[w.run_id] = None
    return list(ids)


def fence(writes: Sequence[Write], statuses: Mapping[AttemptKey, str]) -> FencedWrites:
    """Apply the fencing rules to a batch, given the stored status of its attempts.

    Args:
        writes: the batch, in order.
        statuses: the current status of every attempt the batch names that has a row
            (attempts missing from it have none yet). Read inside the transaction that
            applies the batch, with the rows locked against other writers.

    Returns:
        The accepted writes grouped for applying, and the rejected ones.

    Raises:
        InputError: an :class:`AttemptEnded` whose status is ``running``.
        TypeError: something that is not a write.

    Example:
        >>> batch = [AttemptStarted("r", "a", 1, 0.0), AttemptEnded("r", "a", 1, "failed", 1.0),
        ...          AttemptEnded("r", "a", 1, "succeeded", 2.0)]
        >>> fenced = fence(batch, {})
        >>> [w.status for w in fenced.ended], fenced.rejected == batch[2:]
        (['failed'], True)
    """
    current: dict[AttemptKey, str] = dict(statuses)
    started: list[AttemptStarted] = []
    process: dict[AttemptKey, AttemptProcess] = {}
    ended: list[AttemptEnded] = []
    pauses: list[PauseRecorded] = []
    run_status: list[RunStatusChanged] = []
    rejected: list[Write] = []
    for item in writes:
        w: object = item  # checked at run time: callers are not always type-checked
        if isinstance(w, AttemptStarted | AttemptProcess | AttemptEnded):
            key = (w.run_id, w.subplan_id, w.number)
            status = current.get(key)
            if isinstance(w, AttemptStarted):
                if status is not None:
                    rejected.append(w)
                    continue
                current[key] = "running"
                started.append(w)
            elif status != "running":
                rejected.append(w)
            elif isinstance(w, AttemptProcess):
                before = process.get(key)
                if before is not None:
                    w = AttemptProcess(
                        w.run_id,
                        w.subplan_id,
                        w.number,
                        pid=before.pid if w.pid is None else w.pid,
                        pgid=before.pgid if w.pgid is None else w.pgid,
                    )
                process[key] = w
            else:
                if w.status == "running":
                    raise InputError(
                        f"attempt {w.number} of {w.subplan_id!r} in run {w.run_id!r} "
                        "cannot end with status 'running'"
                    )
                current[key] = w.status
                ended.append(w)
        elif isinstance(w, PauseRecorded):
            pauses.append(w)
        elif isinstance(w, RunStatusChanged):
            run_status.append(w)
        elif isinstance(w, EpochFence):
            pass  # checked by the store against the run's row, before fencing
        else:  # pragma: no cover - run_ids_of refused it first
            raise TypeError(f"not a store write: {type(w).__name__}")
    return FencedWrites(started, list(process.values()), ended, pauses, run_status, rejected)


def check_epochs(writes: Sequence[Write], epochs: Mapping[str, int], location: str) -> None:
    """Refuse a batch fenced by a lock epoch that is no longer its run's.

    Args:
        writes: the batch.
        epochs: the stored lock epoch of every run the batch's fences name, read inside
            the transaction that applies it, with the run rows locked against a bump.
        location: the store's location, for the error.

    Raises:
        RunLockLostError: a fence's epoch differs from its run's.
    """
    for w in writes:
        if isinstance(w, EpochFence):
            current = epochs.get(w.run_id, 0)
            if current != w.epoch:
                raise RunLockLostError(
                    f"run {w.run_id!r} was taken over by a newer orchestrator (lock epoch "
                    f"{current}, this one holds {w.epoch}): its write was refused",
                    location=location,
                    epoch=w.epoch,
                    current=current,
                )


def expect_updated(changed: int, expected: int, location: str) -> None:
    """Raise when a write transaction updated fewer attempts than fencing allowed.

    Both stores hold the rows locked while they apply a batch, so only a writer that
    ignores the locks (or a bug) gets here.
    """
    if changed != expected:  # pragma: no cover - see above
        raise StoreError(
            f"{location} changed under a write transaction "
            f"({changed} of {expected} attempts updated)",
            location=location,
        )
