"""What the subplan command refuses before anything runs: one line, exit 2, nothing written.

Also the dry run's JSON, which an agent reads instead of running.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from subplan import Plan, decompose
from subplan.cli import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main


def call(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(""))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for d in ("alpha", "beta"):
        for i in range(3):
            path = tmp_path / "proj" / d / f"m{i}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("import os\n" + "#" * 60_000 + "\n")
    monkeypatch.chdir(tmp_path / "proj")
    monkeypatch.delenv("SUBPLAN_RUNS_DIR", raising=False)
    monkeypatch.delenv("SUBPLAN_STORE", raising=False)
    return tmp_path / "proj"


def refused(status: int, out: str, err: str, message: str) -> None:
    assert (EXIT_USAGE, "") == (status, out), err
    assert 1 == len(err.splitlines()), err
    assert message in err


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("soon", "argument --kill-after: expected seconds, got 'soon'"),
        ("-1", "argument --kill-after: must be >= 0 seconds, got -1"),
        ("inf", "argument --kill-after: must be >= 0 seconds, got inf"),
        ("nan", "argument --kill-after: must be >= 0 seconds, got nan"),
    ],
)
def test_a_bad_kill_grace_is_refused(project: Path, value: str, message: str) -> None:
    refused(*call("run", ".", "--kill-after", value, "--", "true"), message)
    assert not (project / ".subplan").exists()


def test_a_missing_plan_file_is_refused(project: Path) -> None:
    refused(*call("run", "--plan", "nope.json", "--", "true"), "no such plan file: nope.json")


def test_a_directory_as_plan_file_is_refused(project: Path) -> None:
    refused(*call("run", "--plan", "alpha", "--", "true"), "not a file: alpha")


def test_a_plan_recording_a_root_that_is_no_string_is_refused(project: Path) -> None:
    document = json.loads(decompose(["alpha/m0.py"]).to_json())
    document["project_root"] = 7
    (project / "plan.json").write_text(json.dumps(document))
    refused(
        *call("run", "--plan", "plan.json", "--", "true"),
        "plan.json: project_root must be a string, got 7",
    )
    assert not (project / ".subplan").exists()


def test_a_plan_and_a_list_at_once_are_refused(project: Path) -> None:
    (project / "plan.json").write_text(decompose(["alpha/m0.py"]).to_json())
    refused(
        *call("run", "--plan", "plan.json", "--from-list", "-", "--", "true"),
        "subplan run: give --from-list or --plan, not both",
    )


def test_a_pool_size_without_a_pool_is_refused(project: Path) -> None:
    refused(
        *call("run", ".", "--pool-size", "3", "--", "true"),
        "subplan run: --pool-size needs --pool NAME",
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--verify"], "subplan integrate: --verify needs a command after '--'"),
        (["--", "make", "test"], "subplan integrate: a command after '--' needs --verify"),
        (["--drop-failing"], "subplan integrate: --drop-failing needs --verify"),
    ],
)
def test_integrate_options_that_need_each_other(
    project: Path, argv: list[str], message: str
) -> None:
    refused(*call("integrate", "r1", *argv), message)
    assert not (project / ".subplan").exists()


def test_a_dry_run_in_json_lists_each_leaf_with_its_command_and_order(project: Path) -> None:
    (project / "beta" / "m0.py").write_text("import alpha.m0\n" + "#" * 60_000 + "\n")
    status, out, err = call(
        "run", ".", "--dry-run", "--json", "--run-id", "d1", "--", "echo", "{id}", "{files}"
    )
    assert (EXIT_OK, "") == (status, err)
    document = json.loads(out)
    assert (True, "d1") == (document["dry_run"], document["run_id"])
    assert str(project) == document["cwd"]
    rows = {row["label"]: row for row in document["subplans"]}
    assert {"alpha", "beta"} == set(rows)
    alpha, beta = rows["alpha"], rows["beta"]
    assert ["echo", alpha["subplan_id"]] == alpha["argv"][:2]
    assert sorted(alpha["argv"][2:]) == ["alpha/m0.py", "alpha/m1.py", "alpha/m2.py"]
    assert 3 == alpha["files"]
    assert ([], [alpha["subplan_id"]]) == (alpha["after"], beta["after"])
    assert not (project / ".subplan").exists()  # nothing recorded


def test_a_plan_file_run_can_order_its_leaves_by_imports(project: Path) -> None:
    (project / "beta" / "m0.py").write_text("import alpha.m0\n" + "#" * 60_000 + "\n")
    status, out, _ = call("plan", ".", "--format", "json", "-o", "plan.json")
    assert EXIT_OK == status
    plan = Plan.from_json((project / "plan.json").read_text())
    status, out, err = call(
        "run", "--plan", "plan.json", "--import-order", "--dry-run", "--json", "--", "true"
    )
    assert (EXIT_OK, "") == (status, err)
    after = {row["label"]: row["after"] for row in json.loads(out)["subplans"]}
    alpha = next(leaf.id for leaf in plan.leaves if leaf.label == "alpha")
    assert [alpha] == after["beta"]


def test_an_interrupt_inside_a_command_is_exit_130(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from subplan import cli

    def interrupted(*_: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "_cmd_plan", interrupted)
    status, out, err = call("plan", ".")
    assert (EXIT_INTERRUPTED, "", "subplan: interrupted\n") == (status, out, err)
