"""The live progress line and the end-of-run summary for people at a terminal."""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from ._execute._results import Event, RunReport, format_when
from ._store._base import RunInfo, RunRecord

__all__ = [
    "Progress",
    "render_report",
    "render_run_status",
    "render_runs",
    "render_summary",
    "run_status_data",
]


class Progress:
    """A one-line live display (running, done, failed, peak) redrawn on ``stream``.

    Fed with run events; redraws at most ten times a second, and only when ``stream`` is
    a terminal. :meth:`close` clears the line.
    """

    def __init__(self, stream: TextIO, total: int, *, enabled: bool) -> None:
        self.stream = stream
        self.total = total
        self.enabled = enabled
        self.running = 0
        self.peak = 0
        self.done = 0
        self.failed_attempts = 0
        self.skipped = 0
        self.retrying = 0
        self.pauses = 0
        self.paused_until: float | None = None
        self.pause_reason = ""
        self._last = 0.0
        self._lock = threading.Lock()

    def __call__(self, event: Event) -> None:
        with self._lock:
            if event.kind == "attempt_started":
                self.running += 1
                self.peak = max(self.peak, self.running)
            elif event.kind == "attempt_ended":
                self.running -= 1
                if event.status == "succeeded":
                    self.done += 1
                else:
                    self.failed_attempts += 1
            elif event.kind == "retry_scheduled":
                self.retrying += 1
            elif event.kind == "skipped":
                self.skipped += 1
            elif event.kind == "paused":
                self.pauses += 1
                self.paused_until = event.until
                self.pause_reason = event.reason or ""
            elif event.kind == "resumed":
                self.paused_until = None
            self._draw(force=event.kind == "run_ended")

    @property
    def failed(self) -> int:
        """Subplans that failed for good: failed attempts that were not retried."""
        return self.failed_attempts - self.retrying

    def line(self) -> str:
        """The text of the progress line (with the pause's end while paused)."""
        text = (
            f"subplan: {self.running} running, {self.done}/{self.total} done, "
            f"{self.failed} failed, {self.retrying} retries, {self.skipped} skipped, "
            f"peak {self.peak}"
        )
        if self.paused_until is not None:
            ends = format_when(self.paused_until)
            reason = self.pause_reason[:60]
            text += f" - rate limited, paused until {ends} ({reason})"
        return text

    def _draw(self, *, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.1:
            return
        self._last = now
        self.stream.write("\r\x1b[2K" + self.line())
        self.stream.flush()

    def close(self) -> None:
        """Clear the line."""
        if self.enabled:
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
        f"run {report.run_id}: {report.status} in {report.duration:.2f}s - "
        f"{counts['succeeded']} succeeded, {counts['failed']} failed, "
        f"{counts['skipped']} skipped, {counts['not_run']} not run; "
        f"peak {report.peak_concurrency} of max {report.max_parallel}; "
        f"{len(report.attempts)} attempts; pass rate {root.pass_rate:.0%}"
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


def _when(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    return format_when(seconds)


def _state(status: str, holder: str | None) -> str:
    """A run's status as shown: a 'running' run nobody holds was abandoned."""
    if status == "running" and holder is None:
        return "abandoned"
    return status


def render_runs(runs: Sequence[RunInfo], holders: Mapping[str, str | None]) -> str:
    """The table of ``subplan status``: one line per run, newest first.

    A run recorded as running that no orchestrator holds shows as ``abandoned`` (its
    orchestrator died): ``subplan resume`` picks it up.
    """
    if not runs:
        return "no runs\n"
    lines = [f"{'run':<24} {'status':<11} {'started':<19} {'attempts':>8}  subplans (latest)"]
    for info in runs:
        latest = ", ".join(f"{n} {status}" for status, n in sorted(info.latest.items())) or "-"
        state = _state(info.status, holders.get(info.run_id))
        lines.append(
            f"{info.run_id:<24} {state:<11} {_when(info.created):<19} {info.attempts:>8}  {latest}"
        )
    return "\n".join(lines) + "\n"


_STATES = ("succeeded", "failed", "skipped", "not_run")


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
    counts = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in data["counts"].items())
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
            f"{'group':<19} {'leaves':>6} {'passed':>6} {'pass rate':>9} {'cost':>10} "
            f"{'cost/pass':>10}  label"
        )
        for group in groups[:limit]:
            per_pass = "-" if group.cost_of_pass == float("inf") else f"{group.cost_of_pass:.4g}"
            lines.append(
                f"{group.subplan_id:<19} {group.leaves:>6} {group.passed:>6} "
                f"{group.pass_rate:>9.0%} {group.total_cost:>10.4g} {per_pass:>10}  {group.label}"
            )
        if len(groups) > limit:
            lines.append(f"... and {len(groups) - limit} more groups")
    for pause in report.pauses:
        lines.append(
            f"paused {_when(pause.started)} until {_when(pause.ends)} "
            f"({pause.length:.0f}s) [{pause.source}]: {pause.reason}"
        )
    lines.append(
        f"peak concurrency {report.peak_concurrency} of max {report.max_parallel}; "
        f"total cost {report.total_cost:.4g}"
    )
    return "\n".join(lines) + "\n"
