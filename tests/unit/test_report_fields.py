"""The report's per-subplan fields, pass-rate wording and sessions, on small reports."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from execute_helpers import flat_plan
from subplan import AttemptRecord, GroupSummary, Session, decompose
from subplan._dispatch._results import STDERR_TAIL_BYTES, STDERR_TAIL_LINES, Pause, tail_text
from subplan._durable._resume import sessions_of
from subplan._report._progress import render_report, render_summary, span_text
from subplan._store._base import SessionRow
from subplan.testing import ScriptedWork, Step, simulate


def test_the_stderr_tail_keeps_the_last_lines(tmp_path: Path) -> None:
    log = tmp_path / "stderr-1.log"
    log.write_text("".join(f"line {i}\n" for i in range(100)))
    tail = tail_text(log)
    assert [f"line {i}" for i in range(100 - STDERR_TAIL_LINES, 100)] == tail.splitlines()


def test_the_stderr_tail_is_bounded_in_bytes_even_on_one_long_line(tmp_path: Path) -> None:
    log = tmp_path / "stderr-1.log"
    log.write_bytes(b"x" * 1_000_000 + "\u00e9nd\n".encode())
    tail = tail_text(log)
    assert STDERR_TAIL_BYTES >= len(tail.encode())
    assert tail.endswith("\u00e9nd\n")


def test_a_tail_cut_inside_a_character_replaces_it(tmp_path: Path) -> None:
    log = tmp_path / "stderr-1.log"
    log.write_bytes("\u00e9".encode() * 10)  # 20 bytes; cutting at 5 splits one
    assert "\ufffd" + "\u00e9" * 2 == tail_text(log, max_bytes=5)
    assert "" == tail_text(log, max_lines=0)


def test_attempt_logs_are_named_only_when_they_exist(tmp_path: Path) -> None:
    attempt = AttemptRecord("sp-1", 2, "failed", 1.0, 2.0, exit_code=1)
    assert (None, None) == attempt.logs(tmp_path)
    assert (None, None) == attempt.logs(None)
    (tmp_path / "sp-1").mkdir()
    (tmp_path / "sp-1" / "stderr-2.log").write_text("boom\n")
    assert (None, tmp_path / "sp-1" / "stderr-2.log") == attempt.logs(tmp_path)
    data = attempt.to_dict(tmp_path)
    assert (None, str(tmp_path / "sp-1" / "stderr-2.log"), 1) == (
        data["stdout_log"],
        data["stderr_log"],
        data["exit_code"],
    )


@pytest.mark.parametrize(
    ("finished", "passed", "skipped", "not_run", "expected"),
    [
        (1, 1, 0, 42, "100% of 1 run, 42 not run"),
        (4, 3, 0, 0, "75% of 4 runs"),
        (2, 0, 1, 1, "0% of 2 runs, 1 skipped, 1 not run"),
        (0, 0, 0, 5, "- (none run), 5 not run"),
    ],
)
def test_a_pass_rate_says_what_it_is_a_rate_of(
    finished: int, passed: int, skipped: int, not_run: int, expected: str
) -> None:
    group = GroupSummary("r", ".", finished + skipped + not_run, finished, passed, 0.0)
    group = dataclasses.replace(group, skipped=skipped, not_run=not_run)
    assert expected == group.pass_rate_text()


def test_cost_of_pass_is_none_when_nothing_passed_in_python_and_json() -> None:
    nothing = GroupSummary("r", ".", 2, 2, 0, 4.0)
    assert None is nothing.cost_of_pass
    assert None is nothing.to_dict()["cost_of_pass"]
    half = GroupSummary("r", ".", 2, 2, 1, 4.0)
    assert 4.0 == half.cost_of_pass == half.to_dict()["cost_of_pass"]


def test_a_cancelled_run_counts_its_not_run_leaves_apart() -> None:
    plan = decompose([f"d{i}/a.py" for i in range(6)], min_files=1, max_files=1)
    work = ScriptedWork(default=Step(10.0))
    report = simulate(plan, work, max_parallel=2, cancel_at=15.0)
    root = report.group(plan.root.id)
    # two end at 10, two more run to their end after the cancel at 15, two never start
    assert (4, 4, 2) == (root.finished, root.passed, root.not_run)
    assert "pass rate 100% of 4 runs, 2 not run" in render_summary(report, runs_dir="x")
    assert "100%" not in render_report(report).split("group", 1)[1].split("\n")[0]


def test_a_group_that_ran_nothing_shows_no_rate() -> None:
    plan = decompose([f"g{g}/d{i}/a.py" for g in range(2) for i in range(3)], max_files=1)
    report = simulate(plan, ScriptedWork(default=Step(10.0)), max_parallel=1, cancel_at=5.0)
    rows = [line.split() for line in render_report(report).splitlines()]
    idle = [row for row in rows if row and row[0].startswith("sp-") and row[2] == "0"]
    assert idle and all("-" == row[4] for row in idle), rows


def test_sessions_without_an_end_end_at_their_last_activity() -> None:
    attempts = [
        # reclaimed by the resume at 95: that is not when its orchestrator was last seen
        AttemptRecord("a", 1, "interrupted", 12.0, 95.0, dispatched=11.0),
        AttemptRecord("a", 2, "succeeded", 101.0, 109.0, dispatched=100.5),
    ]
    pauses = [Pause(16.0, 18.0, "limit", "text")]
    rows = [
        SessionRow("r", 10.0, None, "h", 1),  # died: its last activity is the pause's end
        SessionRow("r", 100.0, None, "h", 2),  # still open: at least until the run's update
    ]
    assert (Session(10.0, 18.0, "h", 1), Session(100.0, 120.0, "h", 2)) == sessions_of(
        rows, attempts, pauses, 120.0
    )
    assert (Session(5.0, 5.0, "h", 3),) == sessions_of(
        [SessionRow("r", 5.0, None, "h", 3)], [], [], 1.0
    )


def test_a_report_without_sessions_counts_its_whole_duration() -> None:
    report = simulate(flat_plan(2), ScriptedWork(default=Step(3.0)))
    bare = dataclasses.replace(report, sessions=())
    assert (bare.duration, 0.0, ()) == (bare.active_seconds, bare.idle_seconds, bare.idle_gaps())


def test_overlapping_sessions_are_not_idle() -> None:
    report = simulate(flat_plan(2), ScriptedWork(default=Step(3.0)))
    sessions = (Session(0.0, 10.0), Session(5.0, 20.0), Session(50.0, 60.0))
    both = dataclasses.replace(report, sessions=sessions)
    assert ((20.0, 50.0),) == both.idle_gaps()
    assert (30.0, 30.0) == (both.active_seconds, both.idle_seconds)


@pytest.mark.parametrize(
    ("seconds", "text"),
    [(0.4, "0s"), (42, "42s"), (185, "3m05s"), (11529, "3h12m"), (2 * 86400 + 4 * 3600, "2d04h")],
)
def test_spans_read_as_people_say_them(seconds: float, text: str) -> None:
    assert text == span_text(seconds)
