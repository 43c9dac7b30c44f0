"""One clear reason per subplan and per run when a run is cancelled or halted: no nesting."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Literal

import pytest

from execute_helpers import flat_plan
from subplan import CommandWork, Halt, run
from subplan._dispatch._results import RunReport
from subplan.testing import ScriptedWork, Step, simulate

WAIT = 30.0
HALT_SOON = "halted: 1 subplan failed (--halt soon,fail=1)"
HALT_NOW = "halted: 1 subplan failed (--halt now,fail=1)"

# Writes a marker named after the subplan, then runs until killed.
SLEEPER = (
    "import os, pathlib, sys, time; "
    "pathlib.Path(sys.argv[1], os.environ['SUBPLAN_ID']).touch(); time.sleep(60)"
)


def reasons(report: RunReport) -> list[str]:
    """Every reason the report gives: the run's, each subplan's, each attempt's."""
    texts = [o.reason or "" for o in report.outcomes.values()]
    texts += [a.error or "" for a in report.attempts]
    return texts


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_cancelled_command_gets_the_run_reason_once(
    tmp_path: Path, backend: Literal["thread", "process"]
) -> None:
    plan = flat_plan(4)
    marks = tmp_path / "marks"
    marks.mkdir()
    work = CommandWork([sys.executable, "-c", SLEEPER, str(marks)], kill_grace=1.0)
    cancel = threading.Event()

    def cancel_when_both_run() -> None:
        for _ in range(int(WAIT / 0.01)):
            if len(list(marks.iterdir())) == 2:
                break
            threading.Event().wait(0.01)
        cancel.set()

    threading.Thread(target=cancel_when_both_run, daemon=True).start()
    report = run(
        plan, work, max_parallel=2, cancel=cancel, backend=backend, runs_dir=tmp_path / "runs"
    )
    assert "cancelled" == report.status
    assert ["cancelled", "cancelled"] == [a.status for a in report.attempts]
    # The commands said "command cancelled; its process group was killed": an echo of
    # the cancellation, not a second reason.
    assert ["cancelled"] * 2 == [a.error for a in report.attempts]
    assert ["cancelled"] * 4 == [o.reason for o in report.outcomes.values()]


def test_halt_now_names_the_halt_once_for_what_it_stopped(tmp_path: Path) -> None:
    plan = flat_plan(3)
    first = plan.leaves[0].id
    marks = tmp_path / "marks"
    marks.mkdir()
    # The first subplan fails once the second one runs; the second runs until killed.
    code = (
        "import os, pathlib, sys, time\n"
        "m, sid = pathlib.Path(sys.argv[1]), os.environ['SUBPLAN_ID']\n"
        f"if sid != {first!r}:\n"
        "    (m / sid).touch(); time.sleep(60)\n"
        "for _ in range(3000):\n"
        "    if any(m.iterdir()): sys.exit(3)\n"
        "    time.sleep(0.01)\n"
    )
    work = CommandWork([sys.executable, "-c", code, str(marks)], kill_grace=1.0)
    report = run(plan, work, max_parallel=2, halt=Halt("now", 1), runs_dir=tmp_path / "runs")
    outcomes = list(report.outcomes.values())
    assert ["failed", "not_run", "not_run"] == [o.status for o in outcomes]
    assert outcomes[0].reason is not None and outcomes[0].reason.startswith(
        "CommandFailedError: command failed with exit status 3"
    )
    assert [HALT_NOW, HALT_NOW] == [o.reason for o in outcomes[1:]]
    assert [HALT_NOW] == [a.error for a in outcomes[1].attempts]
    assert not any("cancelled (" in text for text in reasons(report))


def test_a_subplan_that_fails_on_its_own_during_halt_soon_is_a_failure() -> None:
    """``soon`` lets what runs finish: its own failure is its reason, not a cancellation."""
    plan = flat_plan(4)
    first, second = plan.leaves[0].id, plan.leaves[1].id
    work = ScriptedWork(
        {first: [Step(1.0, fail=True)], second: [Step(3.0, fail=True)]}, default=Step(1.0)
    )
    report = simulate(plan, work, max_parallel=2, halt=Halt("soon", 1))
    outcomes = list(report.outcomes.values())
    assert ["failed", "failed", "not_run", "not_run"] == [o.status for o in outcomes]
    assert "ScriptedError: scripted failure" == outcomes[1].reason
    assert [HALT_SOON, HALT_SOON] == [o.reason for o in outcomes[2:]]


def test_a_subplan_left_for_a_resume_after_its_own_failure_says_both_once() -> None:
    """Retries left, but the run halted: the halt, then what its last attempt did."""
    plan = flat_plan(4)
    first, second = plan.leaves[0].id, plan.leaves[1].id
    work = ScriptedWork(
        {first: [Step(1.0, fail=True)] * 2, second: [Step(5.0, fail=True), Step(1.0)]},
        default=Step(1.0),
    )
    report = simulate(plan, work, max_parallel=2, halt=Halt("soon", 1), retries=1)
    # the first fails for good at t=3, while the second runs on until t=5
    second_outcome = report.outcomes[second]
    assert "not_run" == second_outcome.status
    assert (
        f"{HALT_SOON}; its last attempt failed: ScriptedError: scripted failure"
        == second_outcome.reason
    )
