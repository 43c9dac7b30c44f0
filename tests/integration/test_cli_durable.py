"""resume, status, report and workspaces through main(argv), in-process, on real stores."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from execute_helpers import cli_call as call
from subplan import Plan, open_store
from subplan._store._base import AttemptStarted, RunRecord
from subplan.cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE

FAIL_IF_D1 = "import os, sys; sys.exit(1 if os.environ['SUBPLAN_LABEL'] == 'd1' else 0)"


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for d in range(3):
        (tmp_path / "proj" / f"d{d}").mkdir(parents=True)
        (tmp_path / "proj" / f"d{d}" / "a.py").write_text("x = 1\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("SUBPLAN_STORE", raising=False)
    monkeypatch.delenv("SUBPLAN_RUNS_DIR", raising=False)
    return tmp_path


def first_run(*extra: str) -> tuple[int, str, str]:
    return call(
        "run", "proj", "--min-files", "1", "--max-files", "1", "--run-id", "n", *extra, "--",
        sys.executable, "-c", FAIL_IF_D1,
    )  # fmt: skip


def test_status_report_and_resume_of_a_failed_run(
    here: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    status, out, _ = first_run()
    assert EXIT_FAILED == status
    assert "resume with: subplan resume n" in out

    status, out, _ = call("status")
    assert EXIT_OK == status and "n " in out and "failed" in out
    status, out, _ = call("status", "--json")
    (info,) = json.loads(out)["runs"]
    assert ("n", "failed", None, {"failed": 1, "succeeded": 2}) == (
        info["run_id"], info["status"], info["holder"], info["latest"]
    )  # fmt: skip
    status, out, _ = call("status", "n")
    assert "failed (1):" in out and "succeeded (2):" in out and "last run by pid" in out
    status, out, _ = call("status", "n", "--json")
    data = json.loads(out)
    assert {"succeeded": 2, "failed": 1, "skipped": 0, "not_run": 0} == data["counts"]
    assert data["counts"] == info["counts"]  # the list counts as `status ID` does
    (failed,) = data["subplans"]["failed"]
    assert (1, "failed") == (failed["exit_code"], failed["last_attempt"])
    _, table, _ = call("status")
    assert "2 succeeded, 1 failed, 0 skipped, 0 not run" in table.splitlines()[1]

    status, out, _ = call("report", "n")
    assert EXIT_OK == status
    assert "peak concurrency" in out and "pass rate" in out
    status, out, _ = call("report", "n", "--json", "--timeline", "t.png")
    assert "subplan.report/1" == json.loads(out)["schema"]
    assert (here / "t.png").read_bytes().startswith(b"\x89PNG")

    monkeypatch.setenv("PYTHONDONTWRITEBYTECODE", "1")
    # Fix the failing subplan's command by changing what it reads, then resume.
    status, out, _ = call("resume", "n", "--json")
    assert EXIT_FAILED == status  # d1 still fails: the command is the run's own
    assert 1 == json.loads(out)["counts"]["failed"]
    with open_store(None, here / ".subplan") as store:
        plan = Plan.from_json(store.get_run("n").plan_json)
    d1 = next(leaf.id for leaf in plan.leaves if leaf.label == "d1")
    d0 = next(leaf.id for leaf in plan.leaves if leaf.label == "d0")
    status, out, _ = call("resume", "n", "--rerun", d0)
    assert EXIT_FAILED == status
    with open_store(None, here / ".subplan") as store:
        numbers = {r.subplan_id: r.number for r in store.attempts("n")}
    assert 3 == numbers[d1] and 2 == numbers[d0]


def test_resume_with_a_new_plan_file(here: Path) -> None:
    first_run()
    (here / "proj" / "d1" / "b.py").write_text("y = 2\n")
    status, _, _ = call(
        "plan", "proj", "--min-files", "1", "--max-files", "2", "--format", "json", "-o", "p.json"
    )
    assert EXIT_OK == status
    status, _, err = call("resume", "n", "--plan", "p.json")
    assert EXIT_FAILED == status, err  # d1 (a new id now) runs, and fails again


def test_an_abandoned_run_is_shown_as_such(here: Path) -> None:
    with open_store(None, here / ".subplan") as store:
        plan_json = json.dumps({"schema": "x"})
        store.create_run(RunRecord("gone", "running", 1.0, 1.0, None, plan_json, pid=99999))
        store.apply([AttemptStarted("gone", "sp-1", 1, 1.0)])
    _, out, _ = call("status")
    assert "abandoned" in out


def test_bad_input(here: Path) -> None:
    assert EXIT_USAGE == call("status", "nope")[0]
    assert EXIT_USAGE == call("report", "nope")[0]
    status, _, err = call("resume", "nope")
    assert EXIT_USAGE == status and "no state database" in err
    first_run()
    status, _, err = call("resume", "other")
    assert EXIT_USAGE == status and "no run 'other'" in err
    (here / ".subplan" / "state.db").write_bytes(b"garbage" * 500)
    status, _, err = call("status")
    assert EXIT_USAGE == status and 1 == len(err.splitlines())


def git(repo: Path, *args: str) -> None:
    env = {**os.environ, "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@e",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@e"}  # fmt: skip
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, env=env)


def test_workspaces_list_and_clean(here: Path) -> None:
    repo = here / "proj"
    git(repo, "init", "-q")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "base")
    edit = "import pathlib; pathlib.Path('new.txt').write_text('x')"
    status, out, err = call(
        "run", "proj", "--min-files", "1", "--max-files", "1",
        "--workspaces", "--keep-workspaces", "--json",
        "--", sys.executable, "-c", edit,
    )  # fmt: skip
    assert EXIT_OK == status, err
    assert 3 == len(json.loads(out)["workspaces"]["shared"]["new.txt"])  # all three wrote it
    status, out, _ = call("workspaces", "list", "--repo", "proj")
    assert 3 == sum("ready" in line for line in out.splitlines())
    status, out, _ = call("workspaces", "list", "--repo", "proj", "--json")
    assert {True} == {w["dirty"] for w in json.loads(out)["workspaces"]}
    status, out, _ = call("workspaces", "clean", "--repo", "proj", "--json")
    data = json.loads(out)
    assert (3, 3, []) == (len(data["removed"]), len(data["patches"]), data["kept"])
    status, out, _ = call("workspaces", "list", "--repo", "proj")
    assert "no workspaces\n" == out
    status, out, _ = call("workspaces", "clean", "--repo", "proj")
    assert (EXIT_OK, "removed 0 workspaces\n") == (status, out)


def test_the_dask_backend_from_the_command_line(here: Path) -> None:
    status, _, err = call("run", "proj", "--scheduler", "tcp://127.0.0.1:1", "--", "true")
    assert EXIT_USAGE == status and 1 == len(err.splitlines())
    status, out, err = call(
        "run", "proj", "--min-files", "1", "--max-files", "1",
        "--backend", "dask", "--max-parallel", "2",
        "--json", "--", sys.executable, "-c", "pass",
    )  # fmt: skip
    assert EXIT_OK == status, err
    data = json.loads(out)
    assert (3, 2) == (data["counts"]["succeeded"], data["max_parallel"])
    assert data["peak_concurrency"] <= 2
