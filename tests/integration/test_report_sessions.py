"""Run time is the sum of a run's sessions: idle time before a resume is shown apart."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from execute_helpers import flat_plan
from subplan import AttemptContext, Store, StoreError, Subplan, WorkResult, open_store, resume, run
from subplan._durable._resume import report_from_store
from subplan._report._progress import render_report, render_summary
from subplan.testing import FakeClock

IDLE = 3 * 3600 + 12 * 60  # a resume 3h12m after the run ended


def test_idle_time_between_a_run_and_its_resume_is_not_run_time(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = flat_plan(3)
    flaky = plan.leaves[0].id

    def work(subplan: Subplan, ctx: AttemptContext) -> WorkResult:
        clock.advance(5.0)  # each attempt "takes" five seconds of the fake clock
        return WorkResult(passed=subplan.id != flaky or ctx.attempt > 1, cost=1.0)

    store = str(tmp_path / "state.db")
    first = run(plan, work, store=store, runs_dir=tmp_path, run_id="r", clock=clock)
    assert [flaky] == list(first.failed)
    clock.advance(IDLE)
    second = resume("r", work, store=store, runs_dir=tmp_path, clock=clock)
    assert second.ok

    with open_store(store, tmp_path, create=False, readonly=True) as reader:
        record = reader.get_run("r")
        stored = report_from_store(
            record, reader.attempts("r"), reader.pauses("r"), reader.sessions("r")
        )
    for report in (second, stored):
        one, two = report.sessions
        assert (first.started, first.ended) == (one.started, one.ended)
        assert IDLE == two.started - one.ended == report.idle_seconds
        assert one.length + two.length == report.active_seconds
        assert report.duration == report.active_seconds + report.idle_seconds
        assert 5.0 == two.length  # one attempt ran in the resume
    assert "(+3h12m idle between sessions)" in render_summary(stored, runs_dir="x")
    text = render_report(stored)
    assert "run time 20s in 2 sessions; idle between them 3h12m" in text
    assert "in 20.00s over 2 sessions" in text


def test_a_run_that_died_ends_its_session_at_its_last_activity(tmp_path: Path) -> None:
    clock = FakeClock()
    plan = flat_plan(2)
    store = str(tmp_path / "state.db")

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        clock.advance(7.0)

    run(plan, work, store=store, runs_dir=tmp_path, run_id="r", clock=clock)
    with open_store(store, tmp_path) as writer:
        from subplan._store._base import RunStatusChanged

        # An orchestrator that took the run and died: no end, no attempt.
        writer.apply([RunStatusChanged("r", "running", clock.time() + 100, None, "h", 9)])
        rows = writer.sessions("r")
        report = report_from_store(writer.get_run("r"), writer.attempts("r"), [], rows)
    assert None is rows[-1].ended
    # Its session ends where it began (nothing recorded after), not at "now".
    assert 0.0 == report.sessions[-1].length
    assert 14.0 == report.active_seconds


class SessionlessStore:
    """A real SQLite store whose session reads fail (say, a lost connection just then)."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def sessions(self, run_id: str) -> list[Any]:
        raise StoreError("connection lost")


def test_a_store_that_cannot_read_sessions_gives_the_live_session(tmp_path: Path) -> None:
    with open_store(str(tmp_path / "state.db"), tmp_path) as inner:
        report = run(
            flat_plan(2),
            lambda s, c: None,
            store=SessionlessStore(inner),
            run_id="r",
            runs_dir=tmp_path,
        )
    assert report.ok
    (only,) = report.sessions
    assert (report.started, report.ended) == (only.started, only.ended)


def test_a_killed_session_ends_at_its_last_activity_not_at_the_resumes_end(
    tmp_path: Path,
) -> None:
    for d in range(4):
        (tmp_path / "proj" / f"d{d}").mkdir(parents=True)
        (tmp_path / "proj" / f"d{d}" / "a.py").write_text("x = 1\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("SUBPLAN_STORE", None)
    argv = [
        sys.executable, "-m", "subplan", "run", "proj", "--min-files", "1", "--max-files", "1",
        "--run-id", "k", "--max-parallel", "1", "--progress", "off", "--",
        sys.executable, "-c", "pass",
    ]  # fmt: skip
    killed = subprocess.run(
        argv,
        cwd=tmp_path,
        env={**env, "SUBPLAN_TEST_KILL_AT": "before_success:3"},
        capture_output=True,
        timeout=120,
        check=False,
    )
    assert -signal.SIGKILL == killed.returncode, killed.stderr
    runs = tmp_path / ".subplan"
    with open_store(None, runs, create=False) as store:
        # The dead session's end is what a later time would be: make the resume "later".
        last_seen = max(r.ended or r.dispatched for r in store.attempts("k"))
    resumed = subprocess.run(
        [sys.executable, "-m", "subplan", "resume", "k", "--json", "--progress", "off"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert 0 == resumed.returncode, resumed.stderr
    first, second = json.loads(resumed.stdout)["sessions"]
    assert last_seen == first["ended"]  # not the resume's end
    assert first["ended"] <= second["started"]
    with open_store(None, runs, create=False) as store:
        dead, live = store.sessions("k")
    assert (None, second["ended"]) == (dead.ended, live.ended)
