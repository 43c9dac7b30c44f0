"""The JSON report and the events of real `subplan` runs, against the shipped schemas.

A real `subplan run` subprocess runs a fake agent that succeeds, fails, times out and
rate-limits (one subplan each); then `subplan resume` and `subplan report` read the same
run back. Every document and every event line must validate, and the fields an agent
acts on (exit code, log paths, stderr tail, attempts) must say what really happened.
"""

from __future__ import annotations

import importlib.resources
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from subplan import EVENT_SCHEMA, REPORT_SCHEMA, CommandWork, decompose, run

AGENT = """\
import os, pathlib, sys, time
label = os.environ["SUBPLAN_LABEL"]
attempt = int(os.environ["SUBPLAN_ATTEMPT"])
print("working on", label)
if label == "bad":
    print("oops: line 1", file=sys.stderr)
    print("oops: line 2", file=sys.stderr)
    sys.exit(3)
if label == "slow" and attempt == 1:
    time.sleep(60)
if label == "limit" and attempt == 1:
    print("Rate limit reached: try again in 1s", file=sys.stderr)
    sys.exit(1)
pathlib.Path(os.environ["SUBPLAN_RESULT_FILE"]).write_text('{"passed": true, "cost": 0.5}')
"""


def schema(name: str) -> jsonschema.Draft202012Validator:
    text = importlib.resources.files("subplan").joinpath(f"schemas/{name}").read_text("utf-8")
    document = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(document)
    return jsonschema.Draft202012Validator(document)


def subplan(cwd: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("SUBPLAN_STORE", None)
    env.pop("SUBPLAN_RUNS_DIR", None)
    return subprocess.run(
        [sys.executable, "-m", "subplan", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def by_label(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["label"]: s for s in report["subplans"]}


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    here = tmp_path_factory.mktemp("schema")
    for name in ("ok", "bad", "slow", "limit"):
        (here / "proj" / name).mkdir(parents=True)
        (here / "proj" / name / "a.py").write_text("x = 1\n")
    (here / "agent.py").write_text(AGENT)
    first = subplan(
        here, "run", "proj", "--min-files", "1", "--max-files", "1", "--run-id", "r",
        "--timeout", "1", "--events", "events.jsonl", "--progress", "off", "--json", "--",
        sys.executable, str(here / "agent.py"),
    )  # fmt: skip
    again = subplan(here, "resume", "r", "--progress", "off", "--json")
    stored = subplan(here, "report", "r", "--json")
    return {"here": here, "run": first, "resume": again, "report": stored}


def test_the_report_of_a_run_validates_and_says_what_each_subplan_did(
    runs: dict[str, Any],
) -> None:
    done = runs["run"]
    assert 1 == done.returncode, done.stderr
    report = json.loads(done.stdout)
    schema("report.schema.json").validate(report)
    assert REPORT_SCHEMA == report["schema"]
    subplans = by_label(report)

    bad = subplans["bad"]
    assert ("failed", 3, 1) == (bad["status"], bad["exit_code"], bad["attempt_count"])
    assert bad["stderr_tail"].endswith("oops: line 1\noops: line 2\n")
    assert bad["stderr_log"].endswith(f"{bad['subplan_id']}/stderr-1.log")
    assert Path(bad["stderr_log"]).is_absolute() and Path(bad["stdout_log"]).is_file()
    assert "working on bad\n" == Path(bad["stdout_log"]).read_text()
    (attempt,) = bad["attempts"]
    assert (1, "failed", 3) == (attempt["number"], attempt["outcome"], attempt["exit_code"])
    assert attempt["stderr_log"] == bad["stderr_log"]
    assert attempt["started"] <= attempt["ended"]

    slow = subplans["slow"]
    assert ("failed", None) == (slow["status"], slow["exit_code"])  # killed: no status
    assert ["timed_out"] == [a["status"] for a in slow["attempts"]]

    limit = subplans["limit"]
    assert [("rate_limited", 1), ("succeeded", 0)] == [
        (a["status"], a["exit_code"]) for a in limit["attempts"]
    ]
    assert "Rate limit reached" in Path(limit["attempts"][0]["stderr_log"]).read_text()
    assert limit["stderr_log"].endswith("stderr-2.log")  # the last attempt's
    assert 1 == len(report["pauses"])

    ok = subplans["ok"]
    assert ("succeeded", 0, 0.5, "") == (
        ok["status"],
        ok["exit_code"],
        ok["cost"],
        ok["stderr_tail"],
    )
    assert None is ok["changed"]  # no workspaces
    assert {"succeeded": 2, "failed": 2, "skipped": 0, "not_run": 0} == report["counts"]
    assert 1 == len(report["sessions"]) and 0.0 == report["idle_seconds"]


def test_every_event_line_validates(runs: dict[str, Any]) -> None:
    validator = schema("events.schema.json")
    lines = (runs["here"] / "events.jsonl").read_text().splitlines()
    events = [json.loads(line) for line in lines]
    for event in events:
        validator.validate(event)
    assert {EVENT_SCHEMA} == {e["schema"] for e in events}
    kinds = {e["event"] for e in events}
    assert {"run_started", "attempt_started", "attempt_ended", "paused", "run_ended"} <= kinds
    ended = {(e["subplan_id"], e["attempt"]): e for e in events if e["event"] == "attempt_ended"}
    assert 3 in {e.get("exit_code") for e in ended.values()}


def test_a_resume_and_the_stored_report_validate_and_agree(runs: dict[str, Any]) -> None:
    again = runs["resume"]
    assert 1 == again.returncode, again.stderr  # "bad" fails again
    resumed = json.loads(again.stdout)
    stored = json.loads(runs["report"].stdout)
    validator = schema("report.schema.json")
    validator.validate(resumed)
    validator.validate(stored)
    for report in (resumed, stored):
        assert {"succeeded": 3, "failed": 1, "skipped": 0, "not_run": 0} == report["counts"]
        assert 2 == len(report["sessions"])
        slow = by_label(report)["slow"]
        assert [("timed_out", None), ("succeeded", 0)] == [
            (a["status"], a["exit_code"]) for a in slow["attempts"]
        ]
        bad = by_label(report)["bad"]
        assert [1, 2] == [a["number"] for a in bad["attempts"]]
        assert bad["stderr_log"].endswith("stderr-2.log")
    assert resumed["started"] == stored["started"]  # both from the run's first session
    assert resumed["counts"] == stored["counts"]
    first, second = stored["sessions"]
    assert first["ended"] <= second["started"]
    assert pytest.approx(second["started"] - first["ended"]) == stored["idle_seconds"]
    assert pytest.approx(first["length"] + second["length"]) == stored["active_seconds"]


def test_a_document_missing_a_key_or_with_a_wrong_type_does_not_validate(
    runs: dict[str, Any],
) -> None:
    report = json.loads(runs["run"].stdout)
    validator = schema("report.schema.json")
    del report["subplans"][0]["exit_code"]
    assert not validator.is_valid(report)
    event = {"schema": EVENT_SCHEMA, "event": "attempt_ended", "time": 1.0, "run_id": "r"}
    assert not schema("events.schema.json").is_valid(event)  # no subplan, attempt, status


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_the_exit_code_of_a_failed_command_reaches_the_report_from_any_backend(
    tmp_path: Path, backend: str
) -> None:
    # The process backend sends the command's error to the parent pickled: it must keep
    # its exit code on the way.
    for name in ("ok", "bad"):
        (tmp_path / "proj" / name).mkdir(parents=True)
        (tmp_path / "proj" / name / "a.py").write_text("x = 1\n")
    (tmp_path / "agent.py").write_text(AGENT)
    done = subplan(
        tmp_path, "run", "proj", "--min-files", "1", "--max-files", "1", "--backend", backend,
        "--progress", "off", "--json", "--", sys.executable, str(tmp_path / "agent.py"),
    )  # fmt: skip
    report = json.loads(done.stdout)
    schema("report.schema.json").validate(report)
    subplans = by_label(report)
    assert (3, "CommandFailedError") == (
        subplans["bad"]["exit_code"],
        subplans["bad"]["attempts"][-1]["error_type"],
    )
    assert 0 == subplans["ok"]["exit_code"]


def test_the_python_report_names_the_same_logs_and_tail(tmp_path: Path) -> None:
    (tmp_path / "agent.py").write_text(AGENT)
    plan = decompose(["ok/a.py", "bad/a.py"], min_files=1, max_files=1)
    work = CommandWork([sys.executable, str(tmp_path / "agent.py")])
    report = run(plan, work, runs_dir=tmp_path / "runs", run_id="py")
    bad = next(o for o in report.outcomes.values() if o.label == "bad")
    stdout_log, stderr_log = report.logs(bad.subplan_id)
    assert (tmp_path / "runs" / "py" / bad.subplan_id / "stderr-1.log") == stderr_log
    assert stdout_log is not None and "working on bad\n" == stdout_log.read_text()
    assert "oops: line 1\noops: line 2\n" == report.stderr_tail(bad.subplan_id)
    assert 3 == bad.exit_code
    (entry,) = (s for s in report.to_dict()["subplans"] if s["label"] == "bad")
    assert (str(stderr_log.absolute()), report.stderr_tail(bad.subplan_id)) == (
        entry["stderr_log"],
        entry["stderr_tail"],
    )
