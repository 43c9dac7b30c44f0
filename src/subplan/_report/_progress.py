"""The live progress line and the end-of-run summary for people at a terminal."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, Literal, TextIO

from .._dispatch._results import Event, RunReport, format_when
from .._store._base import RunInfo, RunRecord

__all__ = [
    "Progress",
    "ProgressMode",
    "render_report",
    "render_run_status",
    "render_runs",
    "render_summary",
    "run_status_data",
    "span_text",
    "when_text",
]


ProgressMode = Literal["bar", "plain", "off"]

_TICK = 1.0  # seconds between redraws of the bar when nothing happens (elapsed, ETA)
_HEARTBEAT = 30.0  # seconds between plain status lines
_BAR = 16  # cells of the bar


def _clock_text(seconds: float) -> str:
    """``m:ss``, or ``h:mm:ss`` past an hour."""
    whole = max(0, int(seconds))
    hours, rest = divmod(whole, 3600)
    minutes, secs = divmod(rest, 60)
    return f"{hours}:{minutes:02d}:{secs:02d}" if hours else f"{minutes}:{secs:02d}"


def _is_terminal(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):  # no such method, or closed
        return False


def when_text(epoch: float, *, now: float | None = None) -> str:
    """A wall-clock moment with its zone, and its date unless it is today.

    Example:
        >>> import time
        >>> t = time.time()
        >>> when_text(t) == time.strftime("%H:%M:%S %Z", time.localtime(t))
        True
    """
    moment = time.localtime(epoch)
    today = time.localtime(time.time() if now is None else now)
    if (moment.tm_year, moment.tm_yday) != (today.tm_year, today.tm_yday):
        return format_when(epoch)
    return time.strftime("%H:%M:%S %Z", moment)


class Progress:
    """What a run is doing, for a person: a live line on a terminal, plain lines elsewhere.

    ``bar`` redraws one line (at most ten times a second, and every second so elapsed
    time and ETA move): elapsed time, a bar, done/total, what runs, failed, skipped and
    retrying subplans, the ETA, a pause's end (with date and zone), and the labels of
    the running subplans, cut to the terminal's width. ``plain`` writes whole lines for
    what matters (a subplan that failed for good, a pause, its end), a status line every
    30 s and one at the end. ``off`` writes nothing.

    Args:
        stream: where to write (the CLI's stderr).
        total: the leaves of the plan.
        mode: ``bar``, ``plain`` or ``off``.
        labels: subplan id to label, for the running subplans' names.
        done: subplans that succeeded before (a resume), counted as done.
        width: the line's width; default the terminal's (80 when unknown).
    """

    def __init__(
        self,
        stream: TextIO,
        total: int,
        *,
        mode: ProgressMode = "bar",
        labels: Mapping[str, str] | None = None,
        done: int = 0,
        width: int | None = None,
    ) -> None:
        self.stream = stream
        self.total = total
        self.mode: ProgressMode = mode
        self.labels = dict(labels or {})
        self.width = width
        self.done = done
        self.failed = 0
        self.skipped = 0
        self.peak = 0
        self.pauses = 0
        self.paused_until: float | None = None
        self.pause_reason = ""
        self._running: dict[str, str] = {}  # id -> label, in order of start
        self._retrying: set[str] = set()
        self._finished_here = 0
        self._started = time.monotonic()
        self._last = 0.0
        self._last_beat = self._started
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ticker: threading.Thread | None = None
        self._ascii = not (getattr(stream, "encoding", None) or "utf-8").lower().startswith("utf")

    @property
    def running(self) -> int:
        """Attempts running now."""
        return len(self._running)

    @property
    def retrying(self) -> int:
        """Subplans waiting to be retried."""
        return len(self._retrying)

    def __call__(self, event: Event) -> None:
        with self._lock:
            self._count(event)
            if self.mode == "bar":
                self._draw(force=event.kind in ("run_ended", "paused", "resumed", "failed"))
                if self._ticker is None and event.kind != "run_ended":
                    self._ticker = threading.Thread(
                        target=self._tick, name="subplan-progress", daemon=True
                    )
                    self._ticker.start()
            elif self.mode == "plain":
                self._plain(event)

    def _count(self, event: Event) -> None:
        sid = event.subplan_id or ""
        kind = event.kind
        if kind == "run_started":
            self._started = time.monotonic()
        elif kind == "attempt_started":
            self._running[sid] = self.labels.get(sid, sid)
            self._retrying.discard(sid)
            self.peak = max(self.peak, len(self._running))
        elif kind == "attempt_ended":
            self._running.pop(sid, None)
            if event.status == "succeeded":
                self.done += 1
                self._finished_here += 1
        elif kind == "retry_scheduled":
            self._retrying.add(sid)
        elif kind == "failed":
            self.failed += 1
            self._finished_here += 1
            self._retrying.discard(sid)
        elif kind == "skipped":
            self.skipped += 1
            self._finished_here += 1
        elif kind == "paused":
            self.pauses += 1
            self.paused_until = event.until
            self.pause_reason = event.reason or ""
        elif kind == "resumed":
            self.paused_until = None

    def eta(self) -> float | None:
        """Seconds until every subplan has ended, at this session's pace; None if unknown."""
        remaining = self.total - self.done - self.failed - self.skipped
        if remaining <= 0:
            return 0.0
        elapsed = time.monotonic() - self._started
        if self._finished_here == 0 or elapsed <= 0:
            return None
        wait = remaining * elapsed / self._finished_here
        if self.paused_until is not None:
            wait += max(0.0, self.paused_until - time.time())
        return wait

    def line(self, width: int | None = None) -> str:
        """The status line, cut to ``width`` columns (default: the display's width)."""
        elapsed = _clock_text(time.monotonic() - self._started)
        ended = self.done + self.failed + self.skipped
        filled = round(_BAR * ended / self.total) if self.total else _BAR
        full, empty = ("#", "-") if self._ascii else ("\u2588", "\u2591")
        head = f"subplan {elapsed} [{full * filled}{empty * (_BAR - filled)}] "
        parts = [f"{self.done}/{self.total} done"]
        parts.append(f"{self.running} running")
        for count, name in (
            (self.failed, "failed"),
            (self.skipped, "skipped"),
            (self.retrying, "retrying"),
        ):
            if count:
                parts.append(f"{count} {name}")
        eta = self.eta()
        parts.append("ETA " + ("-" if eta is None else _clock_text(eta)))
        if self.paused_until is not None:
            parts.append(
                f"rate limited, paused until {when_text(self.paused_until)} "
                f"({self.pause_reason[:60]})"
            )
        text = head + ", ".join(parts)
        if self._running:
            text += " | " + ", ".join(self._running.values())
        limit = (width or self._width()) - 1  # the last column would wrap on some terminals
        if len(text) > limit:
            text = text[: max(0, limit - 1)] + ("~" if self._ascii else "\u2026")
        return text

    def _width(self) -> int:
        if self.width is not None:
            return self.width
        try:
            return os.get_terminal_size(self.stream.fileno()).columns or 80
        except (AttributeError, OSError, ValueError):
            return 80

    def _draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        self.stream.write("\r\x1b[2K" + self.line())
        self.stream.flush()

    def write_lines(self, items: Sequence[tuple[TextIO, str]]) -> None:
        """Write text (whole lines) to streams, above the live line and never inside it.

        Under the display's lock: the bar (on this display's stream) is cleared, each
        text is written and flushed in order, and the bar is drawn again below them.
        Plain status lines take the same lock, so no line lands inside another.
        """
        with self._lock:
            # Lines piped elsewhere (stdout to a file) leave the bar alone.
            live = (
                self.mode == "bar"
                and not self._stop.is_set()
                and any(stream is self.stream or _is_terminal(stream) for stream, _ in items)
            )
            if live:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()
            for stream, text in items:
                stream.write(text)
                stream.flush()
            if live:
                self._draw(force=True)

    def _tick(self) -> None:
        while not self._stop.wait(_TICK):
            with self._lock:
                if not self._stop.is_set():
                    self._draw(force=True)

    def _plain(self, event: Event) -> None:
        sid = event.subplan_id or ""
        label = self.labels.get(sid, sid)
        if event.kind == "failed":
            self._say(f"failed: {sid} {label} - {event.reason}")
        elif event.kind == "paused" and event.until is not None:
            self._say(f"rate limited, paused until {when_text(event.until)} ({event.reason})")
        elif event.kind == "resumed":
            self._say("pause over, starting again")
        now = time.monotonic()
        if event.kind == "run_ended" or now - self._last_beat >= _HEARTBEAT:
            self._last_beat = now
            self._say(self.line(width=10_000).removeprefix("subplan "))

    def _say(self, text: str) -> None:
        self.stream.write(f"subplan: {text}\n")
        self.stream.flush()

    def close(self) -> None:
        """Stop redrawing and clear the line."""
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2 * _TICK)
        if self.mode == "bar":
            with self._lock:
                self.stream.write("\r\x1b[2K")
                self.stream.flush()


def render_summary(report: RunReport, *, runs_dir: str, limit: int = 40) -> str:
    """A table of outcomes and a summary line, for the end of ``subplan run``.

    Failures, skips and not-run units are always listed (up to ``limit`` rows); the
    succeeded ones too when the whole table fits.
    """
    outcomes = list(report.outcomes.values())
    counts = dict.fromkeys(("succeeded", "failed", "skipped", "not_run"), 0)
    for outcome in outcomes:
        counts[outcome.status] += 1
    root = report.group(report.plan.root.id)
    lines = [
        f"run {report.run_id}: {report.status} in {_run_time(report)} - "
        f"{counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['skipped']} skipped, {counts['not_run']} not run; "
        f"peak {report.peak_concurrency} of max {report.max_parallel}; "
        f"{len(report.attempts)} attempts; pass rate {root.pass_rate_text()}"
    ]
    if report.pauses:
        last = report.pauses[-1]
        lines.append(
            f"paused {len(report.pauses)} times for rate limits "
            f"({report.paused_seconds:.0f}s covered); last: {last.reason} [{last.source}], "
            f"until {format_when(last.ends)}"
        )
    shown = outcomes if len(outcomes) <= limit else [o for o in outcomes if o.status != "succeeded"]
    if shown:
        lines.append(f"{'status':<10} {'id':<19} {'tries':>5} {'time':>8}  label / reason")
        for outcome in shown[:limit]:
            seconds = sum(a.duration for a in outcome.attempts)
            text = outcome.label + (f" - {outcome.reason}" if outcome.reason else "")
            lines.append(
                f"{outcome.status:<10} {outcome.subplan_id:<19} {len(outcome.attempts):>5} "
                f"{seconds:>7.2f}s  {text}"
            )
        if len(shown) > limit:
            lines.append(f"... and {len(shown) - limit} more")
    overlap = report.overlaps()
    if overlap.changed:
        touched = sum(1 for files in overlap.changed.values() if files)
        lines.append(f"workspaces: {touched} of {len(overlap.changed)} subplans changed files")
        lines.extend(overlap.lines())
    lines.append(f"output of each subplan: {runs_dir}/{report.run_id}/<id>/")
    return "\n".join(lines) + "\n"


def span_text(seconds: float) -> str:
    """A length of time for people: ``42s``, ``3m05s``, ``3h12m``, ``2d04h``.

    Example:
        >>> span_text(3 * 3600 + 12 * 60 + 9)
        '3h12m'
    """
    whole = max(0, round(seconds))
    days, rest = divmod(whole, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    if minutes:
        return f"{minutes}m{secs:02d}s"
    return f"{secs}s"


def _run_time(report: RunReport) -> str:
    """The time the run ran (its sessions), and the idle time between them if any."""
    text = f"{report.active_seconds:.2f}s"
    if len(report.sessions) > 1:
        text += f" over {len(report.sessions)} sessions"
    idle = span_text(report.idle_seconds)
    if idle != "0s":  # a resume right after the run: nothing worth saying
        text += f" (+{idle} idle between sessions)"
    return text


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_when(seconds)


def _state(status: str, holder: str | None) -> str:
    """A run's status as shown: a 'running' run nobody holds was abandoned."""
    if status == "running" and holder is None:
        return "abandoned"
    return status


def render_runs(
    runs: Sequence[RunInfo],
    holders: Mapping[str, str | None],
    *,
    counts: Mapping[str, Mapping[str, int]] | None = None,
) -> str:
    """The table of ``subplan status``: one line per run, newest first.

    A run recorded as running that no orchestrator holds shows as ``abandoned`` (its
    orchestrator died): ``subplan resume`` picks it up. With ``counts`` (per run id,
    subplans by state as ``subplan status RUN_ID`` counts them), the table shows those;
    without, the subplans by the status of their latest attempt.
    """
    if not runs:
        return "no runs\n"
    what = "subplans (latest)" if counts is None else "subplans"
    lines = [f"{'run':<24} {'status':<11} {'started':<19} {'attempts':>8}  {what}"]
    for info in runs:
        if counts is not None and info.run_id in counts:
            latest = _counts_text(counts[info.run_id])
        else:
            latest = ", ".join(f"{n} {status}" for status, n in sorted(info.latest.items())) or "-"
        state = _state(info.status, holders.get(info.run_id))
        lines.append(
            f"{info.run_id:<24} {state:<11} {_when(info.created):<19} {info.attempts:>8}  {latest}"
        )
    return "\n".join(lines) + "\n"


_STATES = ("succeeded", "failed", "skipped", "not_run")


def _counts_text(counts: Mapping[str, int]) -> str:
    """``3 succeeded, 1 failed, 0 skipped, 2 not run``: the same words everywhere."""
    return ", ".join(f"{counts.get(state, 0)} {state.replace('_', ' ')}" for state in _STATES)


def run_status_data(record: RunRecord, report: RunReport) -> dict[str, Any]:
    """``subplan status RUN_ID --json``: the run and its subplans by state."""
    by_state: dict[str, list[dict[str, Any]]] = {state: [] for state in _STATES}
    for outcome in report.outcomes.values():
        last = outcome.attempts[-1] if outcome.attempts else None
        by_state[outcome.status].append(
            {
                "subplan_id": outcome.subplan_id,
                "label": outcome.label,
                "attempts": len(outcome.attempts),
                "last_attempt": None if last is None else last.status,
                "exit_code": outcome.exit_code,
                "reason": outcome.reason,
            }
        )
    out: dict[str, Any] = {
        "schema": "subplan.run-status/1",
        "run_id": record.run_id,
        "status": record.status,
        "created": record.created,
        "updated": record.updated,
        "ended": record.ended,
        "host": record.host,
        "pid": record.pid,
        "command": None if record.command is None else list(record.command),
        "counts": {state: len(items) for state, items in by_state.items()},
        "subplans": by_state,
    }
    return out


def render_run_status(
    record: RunRecord, report: RunReport, *, holder: str | None = None, limit: int = 20
) -> str:
    """``subplan status RUN_ID``: the run, then its subplans grouped by state."""
    data = run_status_data(record, report)
    counts = _counts_text(data["counts"])
    if holder is not None:
        who = f"being run by {holder}"
    elif record.status == "running":
        who = f"abandoned: pid {record.pid} on {record.host} stopped; resume it"
    else:
        who = f"last run by pid {record.pid} on {record.host}"
    lines = [
        f"run {record.run_id}: {_state(record.status, holder)} ({who}, updated "
        f"{_when(record.updated)}) - {counts}"
    ]
    for state in _STATES:
        items = data["subplans"][state]
        if not items:
            continue
        lines.append(f"{state.replace('_', ' ')} ({len(items)}):")
        for item in items[:limit]:
            reason = f" - {item['reason']}" if item["reason"] else ""
            lines.append(
                f"  {item['subplan_id']:<19} {item['attempts']:>3} tries  {item['label']}{reason}"
            )
        if len(items) > limit:
            lines.append(f"  ... and {len(items) - limit} more")
    return "\n".join(lines) + "\n"


def render_report(report: RunReport, *, limit: int = 40) -> str:
    """``subplan report RUN_ID``: the summary table, then pass rate and cost per group."""
    lines = [render_summary(report, runs_dir="", limit=limit).rsplit("output of", 1)[0].rstrip()]
    groups = report.groups()
    if groups:
        lines.append(
            f"{'group':<19} {'leaves':>6} {'ran':>6} {'passed':>6} {'pass rate':>9} "
            f"{'cost':>10} {'cost/pass':>10}  label"
        )
        for group in groups[:limit]:
            per_pass = "-" if group.cost_of_pass is None else f"{group.cost_of_pass:.4g}"
            # A rate of nothing is no rate: "-" rather than 0% (or 100% of one of 43).
            rate = f"{group.pass_rate:.0%}" if group.finished else "-"
            lines.append(
                f"{group.subplan_id:<19} {group.leaves:>6} {group.finished:>6} {group.passed:>6} "
                f"{rate:>9} {group.total_cost:>10.4g} {per_pass:>10}  {group.label}"
            )
        if len(groups) > limit:
            lines.append(f"... and {len(groups) - limit} more groups")
    for pause in report.pauses:
        lines.append(
            f"paused {_when(pause.started)} until {_when(pause.ends)} "
            f"({pause.length:.0f}s) [{pause.source}]: {pause.reason}"
        )
    if len(report.sessions) > 1:
        for number, session in enumerate(report.sessions, 1):
            lines.append(
                f"session {number}: {_when(session.started)} to {_when(session.ended)} "
                f"({span_text(session.length)}) pid {session.pid} on {session.host}"
            )
        lines.append(
            f"run time {span_text(report.active_seconds)} in {len(report.sessions)} sessions; "
            f"idle between them {span_text(report.idle_seconds)}"
        )
    lines.append(
        f"peak concurrency {report.peak_concurrency} of max {report.max_parallel}; "
        f"total cost {report.total_cost:.4g}"
    )
    return "\n".join(lines) + "\n"
