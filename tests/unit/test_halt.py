"""--halt: a run stops once enough subplans failed; soon lets what runs finish, now does not."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from execute_helpers import cli_call, flat_plan
from subplan import AttemptContext, ConfigError, Halt, Plan, Subplan, run
from subplan.testing import ScriptedWork, Step, simulate

HALT = "halted: 1 subplan failed (--halt {},fail=1)"


def script(plan: Plan) -> ScriptedWork:
    """Leaf 0 fails at t=1; leaf 1 runs until t=3; the other four take 1 s each."""
    first, second = plan.leaves[0].id, plan.leaves[1].id
    return ScriptedWork({first: [Step(1.0, fail=True)], second: [Step(3.0)]}, default=Step(1.0))


def statuses(plan: Plan, halt: Halt | None) -> list[tuple[str, str | None]]:
    report = simulate(plan, script(plan), max_parallel=2, halt=halt)
    return [(o.status, o.reason) for o in report.outcomes.values()]


def test_without_halt_every_subplan_runs() -> None:
    plan = flat_plan(6)
    assert ["failed"] + ["succeeded"] * 5 == [s for s, _ in statuses(plan, None)]


def test_soon_starts_nothing_new_and_lets_what_runs_finish() -> None:
    plan = flat_plan(6)
    found = statuses(plan, Halt("soon", 1))
    assert ["failed", "succeeded", "not_run", "not_run", "not_run", "not_run"] == [
        s for s, _ in found
    ]
    assert [HALT.format("soon")] * 4 == [r for _, r in found[2:]]


def test_now_also_cancels_what_runs() -> None:
    """With real threads: the attempt in flight sees ctx.cancelled and is cut short."""
    plan = flat_plan(6)
    first, second = plan.leaves[0].id, plan.leaves[1].id
    running = threading.Event()

    def work(leaf: Subplan, ctx: AttemptContext) -> bool:
        if leaf.id == second:
            running.set()
            # only the halt ends this attempt; cut short, it did not do its work
            return not ctx.wait_cancelled(30)
        if leaf.id == first:
            assert running.wait(30)
            raise RuntimeError("broken")
        return True

    report = run(plan, work, max_parallel=2, halt=Halt("now", 1))
    found = [(o.status, o.reason) for o in report.outcomes.values()]
    assert ["failed"] + ["not_run"] * 5 == [s for s, _ in found]
    assert "cancelled" == report.outcomes[second].attempts[-1].status
    assert [HALT.format("now")] * 4 == [r for _, r in found[2:]]


def test_fewer_failures_than_the_threshold_do_not_halt() -> None:
    plan = flat_plan(6)
    assert ["failed"] + ["succeeded"] * 5 == [s for s, _ in statuses(plan, Halt("now", 2))]


@pytest.mark.parametrize(
    ("text", "expected"),
    [("soon,fail=1", Halt("soon", 1)), ("now,fail=12", Halt("now", 12))],
)
def test_the_cli_spelling_is_parsed(text: str, expected: Halt) -> None:
    assert expected == Halt.parse(text)


@pytest.mark.parametrize("text", ["never", "now", "soon,fail=0", "now,fail=-1", "later,fail=1"])
def test_other_spellings_are_config_errors(text: str) -> None:
    with pytest.raises(ConfigError, match="expected now,fail=N or soon,fail=N"):
        Halt.parse(text)


@pytest.mark.parametrize(
    ("when", "fail", "message"),
    [
        ("later", 1, "halt must be 'now' or 'soon', got 'later'"),
        ("now", 0, "halt needs fail >= 1, got 0"),
        ("soon", 1.5, "halt needs fail >= 1, got 1.5"),
    ],
)
def test_a_halt_built_in_python_is_checked(when: str, fail: object, message: str) -> None:
    with pytest.raises(ConfigError) as caught:
        Halt(when, fail)  # type: ignore[arg-type]
    assert message == str(caught.value)


def test_the_cli_halts_and_exits_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for d in range(4):
        (tmp_path / f"d{d}").mkdir()
        for i in range(3):
            (tmp_path / f"d{d}" / f"m{i}.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    fail = "import sys; sys.exit(3)"
    status, out, err = cli_call(
        "run", ".", "--max-files", "3", "--max-parallel", "1", "--halt", "soon,fail=1", "--json",
        "--", sys.executable, "-c", fail,
    )  # fmt: skip
    assert 1 == status, err
    report = json.loads(out)
    assert {"failed": 1, "not_run": 3} == {k: v for k, v in report["counts"].items() if v}
    status, _, err = cli_call("run", ".", "--halt", "sometimes", "--", "true")
    assert 2 == status
    assert "--halt: expected now,fail=N or soon,fail=N" in err
