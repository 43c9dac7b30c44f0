"""The live progress line and the end-of-run summary for people at a terminal."""

from __future__ import annotations

import threading
import time
from typing import TextIO

from ._execute._results import Event, RunReport

__all__ = ["Progress", "render_summary"]


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
            ends = time.strftime("%H:%M:%S", time.localtime(self.paused_until))
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
        total = sum(p.length for p in report.pauses)
        lines.append(
            f"paused {len(report.pauses)} times for rate limits ({total:.0f}s in all); "
            f"last: {report.pauses[-1].reason} [{report.pauses[-1].source}]"
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
    lines.append(f"output of each subplan: {runs_dir}/{report.run_id}/<id>/")
    return "\n".join(lines) + "\n"
