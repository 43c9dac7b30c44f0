"""What work returns, what an attempt records, what a run reports, and run events."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final, Literal

from .._fs import read_tail
from .._model import Plan

if TYPE_CHECKING:
    from .._workspace import OverlapReport
from .._limit._limiter import LimiterStatistics

__all__ = [
    "EVENT_SCHEMA",
    "REPORT_SCHEMA",
    "STDERR_TAIL_BYTES",
    "STDERR_TAIL_LINES",
    "AttemptContext",
    "AttemptRecord",
    "AttemptStatus",
    "CancelFlag",
    "Event",
    "EventKind",
    "GroupSummary",
    "Pause",
    "RunReport",
    "Session",
    "SubplanOutcome",
    "SubplanStatus",
    "WorkResult",
]

REPORT_SCHEMA: Final = "subplan.report/1"
"""The ``schema`` key of the JSON report (``src/subplan/schemas/report.schema.json``)."""
EVENT_SCHEMA: Final = "subplan.event/1"
"""The ``schema`` key of every event line (``src/subplan/schemas/events.schema.json``)."""
STDERR_TAIL_LINES: Final = 20
"""At most this many last lines of a subplan's standard error go into its report."""
STDERR_TAIL_BYTES: Final = 4096
"""... and at most this many bytes of them (a megabyte on one line stays bounded)."""

AttemptStatus = Literal[
    "succeeded", "failed", "timed_out", "cancelled", "rate_limited", "crashed", "interrupted"
]
"""How an attempt ended. ``interrupted``: its orchestrator died while it ran (a resume
found it still marked running and reclaimed it)."""
SubplanStatus = Literal["succeeded", "failed", "skipped", "not_run"]
EventKind = Literal[
    "run_started",
    "attempt_started",
    "attempt_ended",
    "retry_scheduled",
    "failed",
    "skipped",
    "paused",
    "resumed",
    "run_ended",
]


@dataclass(frozen=True, slots=True)
class WorkResult:
    """What a work callable may return to report more than "it did not raise".

    Returning ``None`` means success; returning a ``bool`` means success or failure.

    Args:
        passed: False marks the attempt failed (it is retried only when the retry policy
            says ``retry_unpassed``).
        cost: what the attempt cost (money, tokens: any unit, summed per group).
        detail: a short message for the report.
        exit_code: the exit status of the command that did the work, if one did
            (:class:`CommandWork` sets it; the report shows it per attempt).

    Example:
        >>> def work(subplan, ctx):
        ...     return WorkResult(passed=True, cost=0.25)
    """

    passed: bool = True
    cost: float | None = None
    detail: str | None = None
    exit_code: int | None = None


class CancelFlag:
    """A cancellation flag that makes a :class:`threading.Event` only when someone waits.

    Most attempts are never cancelled and never wait for it; an Event (and its Condition)
    per attempt would be a measurable part of the dispatcher's cost.
    """

    __slots__ = ("_event", "_set")
    _lock = threading.Lock()

    def __init__(self) -> None:
        self._set = False
        self._event: threading.Event | None = None

    def set(self) -> None:
        """Raise the flag and wake whoever waits."""
        with CancelFlag._lock:
            self._set = True
            event = self._event
        if event is not None:
            event.set()

    def is_set(self) -> bool:
        """True once raised."""
        return self._set

    def event(self) -> threading.Event:
        """An Event that is (or becomes) set with the flag."""
        with CancelFlag._lock:
            if self._event is None:
                self._event = threading.Event()
                if self._set:
                    self._event.set()
            return self._event

    def wait(self, timeout: float | None = None) -> bool:
        """Block until raised (True) or ``timeout`` seconds pass (False)."""
        return self._set or self.event().wait(timeout)


class AttemptContext:
    """What work gets besides the subplan: attempt number, cancellation, artifacts.

    Attributes:
        run_id: the run's id.
        subplan_id: the subplan's id.
        attempt: 1 for the first attempt, 2 for the first retry, and so on.
        deadline: monotonic time by which the attempt should end, or None.
        inherit_fds: descriptors a command of this attempt must inherit: the flock'd
            slot of a shared pool (``--pool``), so that the slot stays taken as long as
            the command lives, even if the orchestrator dies. :class:`CommandWork` passes
            them on.
    """

    __slots__ = (
        "_cancel",
        "_on_process",
        "_run_dir",
        "attempt",
        "deadline",
        "inherit_fds",
        "run_id",
        "subplan_id",
        "workspace",
    )

    def __init__(
        self,
        *,
        run_id: str,
        subplan_id: str,
        attempt: int,
        run_dir: Path,
        cancel: CancelFlag,
        deadline: float | None,
        on_process: Callable[[int, int], None] | None = None,
        inherit_fds: tuple[int, ...] = (),
    ) -> None:
        self.run_id = run_id
        self.inherit_fds = inherit_fds
        self.subplan_id = subplan_id
        self.attempt = attempt
        self.deadline = deadline
        self._run_dir = run_dir
        self._cancel = cancel
        self._on_process = on_process
        # The attempt's own git worktree (the project's directory in it), when the run
        # gives each attempt one; commands run there.
        self.workspace: Path | None = None

    def report_process(self, pid: int, pgid: int) -> None:
        """Say that this attempt started a command as process ``pid`` in group ``pgid``.

        With a state store, the group is recorded (and committed) before this returns,
        so if the orchestrator dies, ``subplan resume`` kills the group before it runs
        the subplan again. :class:`CommandWork` calls it for you.
        """
        if self._on_process is not None:
            self._on_process(pid, pgid)

    @property
    def cancelled(self) -> bool:
        """True once the run is cancelled or this attempt timed out: stop soon."""
        return self._cancel.is_set()

    def wait_cancelled(self, timeout: float | None = None) -> bool:
        """Block until cancelled (True) or ``timeout`` seconds pass (False)."""
        return self._cancel.wait(timeout)

    @property
    def cancel_event(self) -> threading.Event:
        """An event that is set on cancellation, for code that waits on events."""
        return self._cancel.event()

    @property
    def artifacts_dir(self) -> Path:
        """``<runs_dir>/<run_id>/<subplan_id>/``, created on first use."""
        # Built on demand: most no-op work never asks, and paths are not free.
        path = self._run_dir / self.subplan_id
        path.mkdir(parents=True, exist_ok=True)
        return path

    def __repr__(self) -> str:
        return f"AttemptContext(subplan_id={self.subplan_id!r}, attempt={self.attempt})"


@dataclass(frozen=True, slots=True)
class AttemptRecord:
    """One attempt at one subplan.

    Attributes:
        subplan_id: which subplan.
        number: 1-based attempt number (every start counts, charged or not).
        status: how it ended.
        started: wall-clock start (epoch seconds).
        ended: wall-clock end.
        error: one line describing the failure, or None.
        error_type: the exception class name, or None.
        cost: what the work reported.
        passed: what the work reported (None when it raised).
        charged: whether the attempt counts against the retry budget.
        detail: the work's message.
        dispatched: wall-clock time the dispatcher launched it (``started`` is when the
            work itself began, on its thread or in its worker process).
        changed: the files the attempt changed in its workspace (relative to the
            repository), or None when it had no workspace.
        exit_code: the exit status of the attempt's command: 0 when it exited normally
            (passed or not), its status when it failed, None when it was killed (timeout,
            cancellation) or the work was a Python callable.
    """

    subplan_id: str
    number: int
    status: AttemptStatus
    started: float
    ended: float
    error: str | None = None
    error_type: str | None = None
    cost: float | None = None
    passed: bool | None = None
    charged: bool = True
    detail: str | None = None
    dispatched: float | None = None
    changed: tuple[str, ...] | None = None
    exit_code: int | None = None

    @property
    def duration(self) -> float:
        """Seconds from start to end."""
        return self.ended - self.started

    def logs(self, run_dir: Path | None) -> tuple[Path | None, Path | None]:
        """(stdout, stderr) log files of this attempt under ``run_dir``, None for one that
        does not exist (a Python callable writes none)."""
        if run_dir is None:
            return None, None
        base = run_dir / self.subplan_id
        found = (base / f"stdout-{self.number}.log", base / f"stderr-{self.number}.log")
        return found[0] if found[0].is_file() else None, found[1] if found[1].is_file() else None

    def to_dict(self, run_dir: Path | None = None) -> dict[str, Any]:
        """JSON-ready form; with ``run_dir``, the paths of its logs (absolute, or null)."""
        stdout_log, stderr_log = self.logs(run_dir)
        return {
            "subplan_id": self.subplan_id,
            "number": self.number,
            "status": self.status,
            "started": self.started,
            "ended": self.ended,
            "duration": self.duration,
            "error": self.error,
            "error_type": self.error_type,
            "cost": self.cost,
            "passed": self.passed,
            "charged": self.charged,
            "detail": self.detail,
            "dispatched": self.dispatched,
            "changed": None if self.changed is None else list(self.changed),
            "exit_code": self.exit_code,
            "outcome": self.status,
            "stdout_log": _path_text(stdout_log),
            "stderr_log": _path_text(stderr_log),
        }


def _path_text(path: Path | None) -> str | None:
    return None if path is None else str(path.absolute())


def tail_text(
    path: Path, *, max_lines: int = STDERR_TAIL_LINES, max_bytes: int = STDERR_TAIL_BYTES
) -> str:
    """The last ``max_lines`` lines of a file, at most ``max_bytes`` bytes of them.

    Reads only the file's end. A line cut by the byte bound loses its start; bytes that
    are not UTF-8 become U+FFFD.

    Example:
        >>> import tempfile, pathlib
        >>> with tempfile.TemporaryDirectory() as d:
        ...     log = pathlib.Path(d, "err.log")
        ...     _ = log.write_text("a\\nb\\nc\\n")
        ...     tail_text(log, max_lines=2)
        'b\\nc\\n'
    """
    data = read_tail(path, max_bytes)[1]
    text = data.decode("utf-8", errors="replace")
    lines = text.splitlines(keepends=True)
    return "".join(lines[-max_lines:]) if max_lines > 0 else ""


@dataclass(frozen=True, slots=True)
class SubplanOutcome:
    """How one unit of work (a leaf, or an internal node's integration step) ended.

    Attributes:
        subplan_id: which subplan.
        label: its label.
        kind: ``leaf`` or ``integration``.
        status: ``succeeded``, ``failed``, ``skipped`` (a prerequisite did not succeed) or
            ``not_run`` (the run was cancelled first).
        attempts: every attempt, in order.
        reason: why it failed, was skipped or was not run.
    """

    subplan_id: str
    label: str
    kind: Literal["leaf", "integration"]
    status: SubplanStatus
    attempts: tuple[AttemptRecord, ...]
    reason: str | None = None

    @property
    def cost(self) -> float:
        """Total cost reported by all attempts."""
        return sum(a.cost or 0.0 for a in self.attempts)

    @property
    def passed(self) -> bool:
        """True when the subplan succeeded."""
        return self.status == "succeeded"

    @property
    def exit_code(self) -> int | None:
        """The exit status of the last attempt's command (see :attr:`AttemptRecord.exit_code`)."""
        return self.attempts[-1].exit_code if self.attempts else None

    @property
    def changed(self) -> tuple[str, ...] | None:
        """The files changed by its last attempt that had a workspace, or None."""
        for attempt in reversed(self.attempts):
            if attempt.changed is not None:
                return attempt.changed
        return None

    def to_dict(self, run_dir: Path | None = None) -> dict[str, Any]:
        """JSON-ready form; with ``run_dir``, the last attempt's log paths and stderr tail."""
        stdout_log = stderr_log = None
        if self.attempts:
            stdout_log, stderr_log = self.attempts[-1].logs(run_dir)
        changed = self.changed
        return {
            "subplan_id": self.subplan_id,
            "label": self.label,
            "kind": self.kind,
            "status": self.status,
            "reason": self.reason,
            "cost": self.cost,
            "attempts": [a.to_dict(run_dir) for a in self.attempts],
            "attempt_count": len(self.attempts),
            "exit_code": self.exit_code,
            "stdout_log": _path_text(stdout_log),
            "stderr_log": _path_text(stderr_log),
            "stderr_tail": None if stderr_log is None else tail_text(stderr_log),
            "changed": None if changed is None else list(changed),
        }


@dataclass(frozen=True, slots=True)
class GroupSummary:
    """Outcome statistics of the leaves below one node, derived from the outcomes.

    Attributes:
        subplan_id: the node.
        label: its label.
        leaves: how many leaves it has.
        finished: leaves that ran to an end (succeeded or failed).
        passed: leaves that succeeded.
        total_cost: cost of every attempt of its leaves.
        skipped: leaves skipped (a prerequisite did not succeed).
        not_run: leaves not run to an end (the run was cancelled, or is still going).
    """

    subplan_id: str
    label: str
    leaves: int
    finished: int
    passed: int
    total_cost: float
    skipped: int = 0
    not_run: int = 0

    @property
    def pass_rate(self) -> float:
        """passed / finished (0 when nothing finished)."""
        return self.passed / self.finished if self.finished else 0.0

    @property
    def mean_cost(self) -> float:
        """Mean cost per finished leaf (0 when nothing finished)."""
        return self.total_cost / self.finished if self.finished else 0.0

    @property
    def cost_of_pass(self) -> float | None:
        """mean_cost / pass_rate: the expected cost of one passing leaf (None when none
        passed, as ``null`` in the JSON report)."""
        return self.mean_cost / self.pass_rate if self.pass_rate else None

    def pass_rate_text(self) -> str:
        """The pass rate with what it is a rate of: ``100% of 1 run, 42 not run``.

        Example:
            >>> GroupSummary("r", "root", 43, 1, 1, 0.0, not_run=42).pass_rate_text()
            '100% of 1 run, 42 not run'
        """
        if not self.finished:
            text = "- (none run)"
        else:
            runs = "run" if self.finished == 1 else "runs"
            text = f"{self.pass_rate:.0%} of {self.finished} {runs}"
        if self.skipped:
            text += f", {self.skipped} skipped"
        if self.not_run:
            text += f", {self.not_run} not run"
        return text

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``cost_of_pass`` is null when nothing passed)."""
        return {
            "subplan_id": self.subplan_id,
            "label": self.label,
            "leaves": self.leaves,
            "finished": self.finished,
            "passed": self.passed,
            "failed": self.finished - self.passed,
            "skipped": self.skipped,
            "not_run": self.not_run,
            "pass_rate": self.pass_rate,
            "total_cost": self.total_cost,
            "mean_cost": self.mean_cost,
            "cost_of_pass": self.cost_of_pass,
        }


@dataclass(frozen=True, slots=True)
class Event:
    """Something that happened in a run, for callers that follow it live.

    Attributes:
        kind: what happened.
        time: wall-clock time (epoch seconds).
        run_id: the run.
        subplan_id: the subplan, for attempt, retry and skip events.
        attempt: the attempt number, for attempt and retry events.
        status: how an attempt or the run ended.
        error: the failure, for ended attempts.
        delay: seconds until the retry (``retry_scheduled``) or of the pause (``paused``).
        reason: why, for ``failed`` (a subplan failed for good, after its retries),
            ``skipped``, ``paused`` and ``run_ended``.
        until: wall-clock time a pause ends, for ``paused``.
        exit_code: the exit status of the attempt's command, for ``attempt_ended``.
    """

    kind: EventKind
    time: float
    run_id: str
    subplan_id: str | None = None
    attempt: int | None = None
    status: str | None = None
    error: str | None = None
    delay: float | None = None
    reason: str | None = None
    until: float | None = None
    exit_code: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (schema ``subplan.event/1``), leaving out fields that are None."""
        out: dict[str, Any] = {
            "schema": EVENT_SCHEMA,
            "event": self.kind,
            "time": self.time,
            "run_id": self.run_id,
        }
        for name in _EVENT_FIELDS:
            value = getattr(self, name)
            if value is not None:
                out[name] = value
        return out


_EVENT_FIELDS = (
    "subplan_id",
    "attempt",
    "status",
    "error",
    "delay",
    "reason",
    "until",
    "exit_code",
)


@dataclass(frozen=True, slots=True)
class Session:
    """One stretch of time an orchestrator worked on a run: the first ``run``, or a
    ``resume``.

    Attributes:
        started: wall-clock time it took the run.
        ended: when it let go (for a session whose orchestrator died: its last recorded
            activity).
        host: the orchestrator's host name.
        pid: its process id.
    """

    started: float
    ended: float
    host: str = ""
    pid: int = 0

    @property
    def length(self) -> float:
        """Seconds from start to end."""
        return max(0.0, self.ended - self.started)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "started": self.started,
            "ended": self.ended,
            "length": self.length,
            "host": self.host,
            "pid": self.pid,
        }


@dataclass(frozen=True, slots=True)
class Pause:
    """A time the whole run stopped starting work because an API rate-limited it.

    Attributes:
        started: wall-clock time the gate closed.
        ends: wall-clock time the gate really opened; while it is still closed (and
            when the run stopped during the pause) the time it is set to open: the reset
            plus a margin of 10% of the wait (at most 5 minutes), or a backoff when the
            reset was unknown. A resume honours a pause that has not ended yet.
        reason: what was detected, one line.
        source: which detector matched (``signal``, ``retry-after``, ``preflight``, ...).
        subplan_id: the subplan whose attempt was limited, if any.
    """

    started: float
    ends: float
    reason: str
    source: str
    subplan_id: str | None = None

    @property
    def length(self) -> float:
        """Seconds the gate stays closed."""
        return self.ends - self.started

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``ends_at``: the end as a local date and time with its zone)."""
        return {
            "started": self.started,
            "ends": self.ends,
            "ends_at": format_when(self.ends),
            "length": self.length,
            "reason": self.reason,
            "source": self.source,
            "subplan_id": self.subplan_id,
        }


def format_when(seconds: float) -> str:
    """A wall-clock time as a local date and time with its zone: ``2026-04-03 06:00:00 PDT``."""
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(seconds))


def time_covered(intervals: Iterable[tuple[float, float]]) -> float:
    """Seconds covered by the union of ``(start, end)`` intervals (overlaps count once).

    Example:
        >>> time_covered([(0, 10), (5, 15), (20, 21)])
        16.0
    """
    total, reach = 0.0, float("-inf")
    for start, end in sorted(intervals):
        if end <= reach:
            continue
        total += end - max(start, reach)
        reach = end
    return float(total)


@dataclass(frozen=True)
class RunReport:
    """Everything a run did, derived from its attempts.

    Attributes:
        run_id: the run's id.
        status: ``succeeded`` (every unit succeeded), ``failed`` or ``cancelled``.
        max_parallel: the global bound.
        started: wall-clock start of the run.
        ended: wall-clock end of the run.
        outcomes: per unit of work, in plan order.
        peak_concurrency: the most attempts running at once, from the attempts' intervals.
        tracker_peak: the same, counted live around each call of the work.
        warnings: problems that did not stop the run (an event callback that raised).
        slots: the run limiter's statistics at the end (acquired == released when every
            slot came back).
        pauses: every time the run paused for a rate limit, in order.
        sessions: the stretches of time orchestrators worked on the run (the first run,
            then each resume), in order; empty when unknown (then the run counts as one
            session from ``started`` to ``ended``).
        run_dir: ``<runs_dir>/<run_id>``, where the subplans' logs are, when known.
    """

    run_id: str
    status: Literal["succeeded", "failed", "cancelled"]
    max_parallel: int
    started: float
    ended: float
    outcomes: Mapping[str, SubplanOutcome]
    peak_concurrency: int
    tracker_peak: int
    plan: Plan = field(repr=False)
    warnings: tuple[str, ...] = ()
    slots: LimiterStatistics | None = None
    pauses: tuple[Pause, ...] = ()
    sessions: tuple[Session, ...] = ()
    run_dir: Path | None = None

    def _ids(self, status: SubplanStatus) -> tuple[str, ...]:
        return tuple(i for i, o in self.outcomes.items() if o.status == status)

    @property
    def ok(self) -> bool:
        """True when every unit of work succeeded."""
        return self.status == "succeeded"

    @property
    def succeeded(self) -> tuple[str, ...]:
        """Ids that succeeded."""
        return self._ids("succeeded")

    @property
    def failed(self) -> tuple[str, ...]:
        """Ids that failed after their last attempt."""
        return self._ids("failed")

    @property
    def skipped(self) -> tuple[str, ...]:
        """Ids skipped because a prerequisite did not succeed."""
        return self._ids("skipped")

    @property
    def not_run(self) -> tuple[str, ...]:
        """Ids never finished because the run was cancelled."""
        return self._ids("not_run")

    @property
    def attempts(self) -> tuple[AttemptRecord, ...]:
        """Every attempt of the run, by start time."""
        every = [a for o in self.outcomes.values() for a in o.attempts]
        return tuple(sorted(every, key=lambda a: (a.started, a.subplan_id)))

    @property
    def duration(self) -> float:
        """Seconds from the run's start to its (latest) end, idle time between sessions
        included: see :attr:`active_seconds` for the time it really ran."""
        return self.ended - self.started

    @property
    def active_seconds(self) -> float:
        """Seconds orchestrators worked on the run: the union of its sessions (the whole
        :attr:`duration` when the sessions are unknown)."""
        if not self.sessions:
            return self.duration
        return time_covered((s.started, s.ended) for s in self.sessions)

    @property
    def idle_seconds(self) -> float:
        """Seconds between sessions when nothing ran (a run, then a resume hours later)."""
        return sum((end - start for start, end in self.idle_gaps()), 0.0)

    def idle_gaps(self) -> tuple[tuple[float, float], ...]:
        """The ``(start, end)`` times between sessions, in order."""
        gaps: list[tuple[float, float]] = []
        reach: float | None = None
        for session in sorted(self.sessions, key=lambda s: s.started):
            if reach is not None and session.started > reach:
                gaps.append((reach, session.started))
            reach = session.ended if reach is None else max(reach, session.ended)
        return tuple(gaps)

    @property
    def paused_seconds(self) -> float:
        """Seconds covered by the run's pauses: their union (overlaps count once), each
        cut at the report's end (a pause the run stopped in had not ended by then)."""
        return time_covered((p.started, min(p.ends, self.ended)) for p in self.pauses)

    @property
    def total_cost(self) -> float:
        """Cost of every attempt."""
        return sum(o.cost for o in self.outcomes.values())

    def group(self, subplan_id: str) -> GroupSummary:
        """Pass rate and cost of the leaves under ``subplan_id`` (a leaf counts itself)."""
        node = self.plan[subplan_id]
        leaves = [leaf.id for leaf in self.plan.leaves_under(node.id)]
        outcomes = [self.outcomes[i] for i in leaves if i in self.outcomes]
        finished = [o for o in outcomes if o.status in ("succeeded", "failed")]
        skipped = sum(1 for o in outcomes if o.status == "skipped")
        return GroupSummary(
            subplan_id=node.id,
            label=node.label,
            leaves=len(leaves),
            finished=len(finished),
            passed=sum(1 for o in finished if o.status == "succeeded"),
            total_cost=sum(o.cost for o in outcomes),
            skipped=skipped,
            # A leaf with no outcome (an older plan's) was not run either.
            not_run=len(leaves) - len(finished) - skipped,
        )

    def logs(self, subplan_id: str) -> tuple[Path | None, Path | None]:
        """The (stdout, stderr) log files of the unit's last attempt, None for one that
        does not exist (Python work writes none; a report without ``run_dir`` knows none).

        Raises:
            KeyError: no such unit in the report.
        """
        attempts = self.outcomes[subplan_id].attempts
        return attempts[-1].logs(self.run_dir) if attempts else (None, None)

    def stderr_tail(self, subplan_id: str) -> str | None:
        """The last lines of the unit's last standard error log (at most
        :data:`STDERR_TAIL_LINES` lines, :data:`STDERR_TAIL_BYTES` bytes), or None.

        Example:
            >>> from subplan import decompose
            >>> from subplan.testing import ScriptedWork, Step, simulate
            >>> plan = decompose(["a/1.py", "b/1.py"])
            >>> report = simulate(plan, ScriptedWork(default=Step(1.0)))
            >>> report.stderr_tail(plan.leaves[0].id) is None  # no command, no log
            True
        """
        stderr_log = self.logs(subplan_id)[1]
        return None if stderr_log is None else tail_text(stderr_log)

    def changes(self) -> dict[str, tuple[str, ...]]:
        """The files each unit changed in its workspace (its last attempt that had one).

        Empty for a run without workspaces. Paths are relative to the project directory.
        """
        out: dict[str, tuple[str, ...]] = {}
        for unit_id, outcome in self.outcomes.items():
            for attempt in reversed(outcome.attempts):
                if attempt.changed is not None:
                    out[unit_id] = attempt.changed
                    break
        return out

    def overlaps(self) -> OverlapReport:
        """The changes checked against ownership: files changed outside a subplan's own
        set, and files changed by two or more subplans."""
        from .._workspace import overlaps

        changes = self.changes()
        owned = {
            unit_id: [f for leaf in self.plan.leaves_under(unit_id) for f in leaf.files]
            for unit_id in changes
        }
        return overlaps(changes, owned)

    def groups(self) -> tuple[GroupSummary, ...]:
        """A summary for every internal node, in plan order."""
        return tuple(self.group(n.id) for n in self.plan if not n.is_leaf)

    def to_dict(self) -> dict[str, Any]:
        """The report as JSON-ready data (what ``subplan run --json`` prints): schema
        ``subplan.report/1``, described by ``subplan/schemas/report.schema.json``."""
        counts = {
            status: len(self._ids(status))
            for status in ("succeeded", "failed", "skipped", "not_run")
        }
        overlap = self.overlaps()
        return {
            "schema": REPORT_SCHEMA,
            "run_id": self.run_id,
            "status": self.status,
            "max_parallel": self.max_parallel,
            "peak_concurrency": self.peak_concurrency,
            "tracker_peak": self.tracker_peak,
            "slots": None
            if self.slots is None
            else {"acquired": self.slots.acquired, "released": self.slots.released},
            "started": self.started,
            "ended": self.ended,
            "duration": self.duration,
            "active_seconds": self.active_seconds,
            "idle_seconds": self.idle_seconds,
            "sessions": [s.to_dict() for s in self.sessions],
            "run_dir": _path_text(self.run_dir),
            "counts": counts,
            "attempts": len(self.attempts),
            "total_cost": self.total_cost,
            "root": self.group(self.plan.root.id).to_dict(),
            "groups": [g.to_dict() for g in self.groups()],
            "subplans": [o.to_dict(self.run_dir) for o in self.outcomes.values()],
            "pauses": [p.to_dict() for p in self.pauses],
            "paused_seconds": self.paused_seconds,
            "workspaces": overlap.to_dict() if overlap.changed else None,
            "warnings": list(self.warnings),
        }
