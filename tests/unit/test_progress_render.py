"""The progress line and the status/report renderings, on reports of simulated runs."""

from __future__ import annotations

import io

from subplan import RateLimited, decompose
from subplan._report._progress import Progress, render_report, render_run_status, render_runs
from subplan._store._base import RunInfo, RunRecord
from subplan.testing import ScriptedWork, Step, simulate


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_the_progress_line_follows_a_run_with_a_pause() -> None:
    plan = decompose([f"d{i}/a.py" for i in range(4)], min_files=1, max_files=1)
    first = plan.leaves[0].id
    work = ScriptedWork(
        {first: [Step(1.0, fail=RateLimited("429: try again in 30s", retry_after=30)), Step(1.0)]},
        default=Step(1.0),
    )
    stream = Tty()
    progress = Progress(stream, len(plan.leaves), mode="bar")
    lines: list[str] = []

    def listen(event: object) -> None:
        progress(event)  # type: ignore[arg-type]
        lines.append(progress.line(width=400))

    report = simulate(plan, work, max_parallel=2, on_event=listen)
    progress.close()
    assert report.ok
    assert any("rate limited, paused until" in line and "429" in line for line in lines)
    assert "4/4 done" in lines[-1] and "paused" not in lines[-1]  # resumed
    assert 1 == progress.pauses
    assert "subplan 0:" in stream.getvalue()


def test_report_status_and_runs_renderings_cover_every_part() -> None:
    plan = decompose(
        [f"g{g}/d{i}/a.py" for g in range(2) for i in range(3)], min_files=1, max_files=1
    )
    bad = plan.leaves[1].id
    work = ScriptedWork(
        {
            plan.leaves[0].id: [
                Step(1.0, fail=RateLimited("slow down", retry_after=5)),
                Step(1.0, cost=2.0),
            ],
            bad: [Step(1.0, fail=True)],
        },
        default=Step(1.0, cost=1.0),
    )
    report = simulate(plan, work, max_parallel=2)
    text = render_report(report, limit=1)
    assert "... and" in text  # more outcomes and groups than the limit
    assert "paused" in text and "slow down" in text
    assert "peak concurrency 2 of max 2" in text
    record = RunRecord("r", "running", 1.0, 2.0, None, plan.to_json(), host="h", pid=7)
    assert "abandoned: pid 7 on h stopped" in render_run_status(record, report, limit=1)
    held = render_run_status(record, report, holder="pid 8 on h since t")
    assert "being run by pid 8" in held and "failed (1):" in held
    done = RunRecord("r", "failed", 1.0, 2.0, 2.0, plan.to_json(), host="h", pid=7)
    assert "last run by pid 7 on h" in render_run_status(done, report)
    infos = [
        RunInfo("a", "running", 1.0, 1.0, None, "h", 1, 3, {"succeeded": 3}),
        RunInfo("b", "running", 1.0, 1.0, None, "h", 2, 0, {}),
    ]
    table = render_runs(infos, {"a": "pid 1 on h", "b": None})
    assert "a " in table and "abandoned" in table.splitlines()[2]
    assert "no runs\n" == render_runs([], {})


def test_lines_for_the_terminal_clear_the_bar_and_redraw_it_below() -> None:
    bar, piped = Tty(), io.StringIO()
    progress = Progress(bar, 2, mode="bar", width=80)
    progress.write_lines([(piped, "a\tto a file\n")])
    assert "" == bar.getvalue()  # nothing of the bar moves for a line sent elsewhere
    assert "a\tto a file\n" == piped.getvalue()
    progress.write_lines([(bar, "a\ton the terminal\n")])
    head, rest = bar.getvalue().split("a\ton the terminal\n")
    assert "\r\x1b[2K" == head
    assert rest.startswith("\r\x1b[2Ksubplan ")
    progress.close()
