"""Steps for the report an agent reads: schemas, per-subplan fields, counts, sessions."""

from __future__ import annotations

import codecs
import contextlib
import importlib.resources
import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import jsonschema
from behave import then, when

_SCHEMA_FILES = {"subplan.report/1": "report.schema.json", "subplan.event/1": "events.schema.json"}


def _validator(schema_id: str) -> jsonschema.Draft202012Validator:
    package = importlib.resources.files("subplan")
    text = package.joinpath(f"schemas/{_SCHEMA_FILES[schema_id]}").read_text("utf-8")
    return jsonschema.Draft202012Validator(json.loads(text))


def _report(context: Any) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(context.result.stdout)
    return data


@then("the JSON report validates against {schema_id}")
def step_report_valid(context: Any, schema_id: str) -> None:
    report = _report(context)
    _validator(schema_id).validate(report)
    assert schema_id == report["schema"]


@then('every line of "{name}" validates against {schema_id}')
def step_events_valid(context: Any, name: str, schema_id: str) -> None:
    validator = _validator(schema_id)
    lines = (context.workdir / name).read_text().splitlines()
    assert lines
    for line in lines:
        validator.validate(json.loads(line))


@then("the JSON report shows these subplans:")
def step_subplans(context: Any) -> None:
    by_label = {s["label"]: s for s in _report(context)["subplans"]}
    for row in context.table:
        subplan = by_label[row["label"]]
        tail = codecs.decode(row["stderr tail"], "unicode_escape")
        expected = (row["status"], int(row["exit code"]), int(row["attempts"]), tail)
        actual = (
            subplan["status"],
            subplan["exit_code"],
            subplan["attempt_count"],
            (subplan["stderr_tail"] or "").rstrip("\n"),
        )
        assert expected == actual, (row["label"], actual)


@then("the log paths in the JSON report are the subplans' real logs")
def step_logs(context: Any) -> None:
    for subplan in _report(context)["subplans"]:
        stdout_log = Path(subplan["stdout_log"])
        assert stdout_log.is_absolute(), stdout_log
        assert f"working on {subplan['label']}\n" == stdout_log.read_text()
        assert subplan["stderr_tail"] == Path(subplan["stderr_log"]).read_text()
        assert subplan["stderr_log"] == subplan["attempts"][-1]["stderr_log"]


@then("the JSON report's cost of pass is {what} for the whole plan")
def step_cost_of_pass(context: Any, what: str) -> None:
    value = _report(context)["root"]["cost_of_pass"]
    assert (value is None) if what == "null" else isinstance(value, float), value


def _subplan(context: Any, *words: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "subplan", *words],
        cwd=context.workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8"},
        timeout=120,
        check=True,
    )
    return result.stdout


@then('"subplan status" and "subplan status {run_id}" count the same subplans')
def step_same_counts(context: Any, run_id: str) -> None:
    (listed,) = json.loads(_subplan(context, "status", "--json"))["runs"]
    one = json.loads(_subplan(context, "status", run_id, "--json"))
    assert listed["counts"] == one["counts"], (listed["counts"], one["counts"])
    table = _subplan(context, "status").splitlines()[1]
    text = _subplan(context, "status", run_id).splitlines()[0]
    counts = ", ".join(f"{n} {state.replace('_', ' ')}" for state, n in one["counts"].items())
    assert counts in table and counts in text, (table, text)


@when('run "{run_id}" is made to have ended {hours:d} hours ago')
def step_ended_ago(context: Any, run_id: str, hours: int) -> None:
    # Time is faked by moving the run's recorded times back, not by waiting.
    shift = hours * 3600.0
    columns = {
        "runs": ("created", "updated", "ended"),
        "attempts": ("dispatched", "started", "ended"),
        "pauses": ("started", "ends"),
        "sessions": ("started", "ended"),
    }
    database = sqlite3.connect(context.workdir / ".subplan" / "state.db")
    with contextlib.closing(database) as db, db:
        for table, names in columns.items():
            sets = ", ".join(f"{n} = {n} - ?" for n in names)
            db.execute(
                f"UPDATE {table} SET {sets} WHERE run_id = ?",  # noqa: S608 - constants
                (*([shift] * len(names)), run_id),
            )


@then(
    "the JSON report has {count:d} sessions, about {hours:d} hours idle "
    "and less than a minute of run time"
)
def step_sessions(context: Any, count: int, hours: int) -> None:
    report = _report(context)
    assert count == len(report["sessions"]), report["sessions"]
    assert hours * 3600 <= report["idle_seconds"] < hours * 3600 + 60, report["idle_seconds"]
    assert report["active_seconds"] < 60, report["active_seconds"]
    assert report["duration"] >= report["idle_seconds"] + report["active_seconds"] - 1e-6
