"""Steps for durable runs: killing the orchestrator, holding a run, reading the store."""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from collections import Counter
from typing import Any

from behave import given, then, when

from subplan import Plan, open_store

RUN = [sys.executable, "-m", "subplan"]


def _argv(arguments: str) -> list[str]:
    words = [sys.executable if w == "python" else w for w in shlex.split(arguments)]
    return [*RUN, *words]


def _run(context: Any, argv: list[str], env: dict[str, str] | None = None) -> None:
    context.result = subprocess.run(
        argv,
        cwd=context.workdir,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONIOENCODING": "utf-8", **(env or {})},
        timeout=120,
        check=False,
    )


def _store(context: Any) -> Any:
    return contextlib.closing(open_store(None, context.workdir / ".subplan", create=False))


def _ran(context: Any) -> list[str]:
    log = context.workdir / "ran.log"
    return log.read_text().split() if log.exists() else []


@when('the orchestrator of "subplan {arguments}" is killed before its {n:d}rd success is recorded')
def step_killed(context: Any, arguments: str, n: int) -> None:
    _run(context, _argv(arguments), {"SUBPLAN_TEST_KILL_AT": f"before_success:{n}"})
    assert -signal.SIGKILL == context.result.returncode, context.result.stderr
    run_id = shlex.split(arguments)[shlex.split(arguments).index("--run-id") + 1]
    with _store(context) as store:
        plan = Plan.from_json(store.get_run(run_id).plan_json)
        labels = {leaf.id: leaf.label for leaf in plan.leaves}
        done = {r.subplan_id for r in store.attempts(run_id) if r.status == "succeeded"}
    context.succeeded_before = {labels[i] for i in done}
    context.ran_before = len(_ran(context))
    assert context.succeeded_before, "the kill came before any success was recorded"


@when('the agent fails for "{label}" and I run "subplan {arguments}"')
def step_run_failing(context: Any, label: str, arguments: str) -> None:
    _run(context, _argv(arguments), {"FAIL_LABEL": label})


@when('I resume run "{run_id}" rerunning the subplan "{label}"')
def step_rerun(context: Any, run_id: str, label: str) -> None:
    with _store(context) as store:
        plan = Plan.from_json(store.get_run(run_id).plan_json)
    (leaf,) = [leaf for leaf in plan.leaves if leaf.label == label]
    _run(context, [*RUN, "resume", run_id, "--rerun", leaf.id])


@then("no subplan recorded as succeeded before the kill ran again")
def step_not_again(context: Any) -> None:
    again = set(_ran(context)[context.ran_before :])
    assert not (again & context.succeeded_before), (again, context.succeeded_before)


@then('every subplan has exactly one successful attempt in run "{run_id}"')
def step_once(context: Any, run_id: str) -> None:
    with _store(context) as store:
        plan = Plan.from_json(store.get_run(run_id).plan_json)
        wins = Counter(r.subplan_id for r in store.attempts(run_id) if r.status == "succeeded")
    assert {leaf.id: 1 for leaf in plan.leaves} == dict(wins)


@then('"{name}" lists "{words}" in any order')
def step_lists(context: Any, name: str, words: str) -> None:
    assert sorted(words.split()) == sorted((context.workdir / name).read_text().split())


@given('run "{run_id}" is being run by another orchestrator')
def step_held(context: Any, run_id: str) -> None:
    argv = _argv(
        f"run . --min-files 1 --run-id {run_id} -- python -c 'import time; time.sleep(60)'"
    )
    holder = subprocess.Popen(
        argv, cwd=context.workdir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    context.add_cleanup(_stop, holder)
    deadline = time.monotonic() + 60
    while True:  # wait until its attempts are recorded: it holds the run by then
        assert time.monotonic() < deadline, "the holder never started"
        with contextlib.suppress(Exception), _store(context) as store:
            if store.attempts(run_id):
                return
        time.sleep(0.05)


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.send_signal(signal.SIGINT)
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


@given('a run "{run_id}" that succeeded')
def step_a_run(context: Any, run_id: str) -> None:
    _run(context, _argv(f"run . --min-files 1 --exclude *.py --run-id {run_id} -- python agent.py"))
    assert 0 == context.result.returncode, context.result.stderr
    context.store_bytes = (context.workdir / ".subplan" / "state.db").read_bytes()


@given("a corrupt state database")
def step_corrupt(context: Any) -> None:
    runs = context.workdir / ".subplan"
    runs.mkdir()
    (runs / "state.db").write_bytes(b"this is not a database" * 100)
    context.store_bytes = (runs / "state.db").read_bytes()


@then('the JSON status counts {ok:d} "succeeded" and {bad:d} "failed"')
def step_status_counts(context: Any, ok: int, bad: int) -> None:
    data = json.loads(context.result.stdout)
    assert (ok, bad) == (data["counts"]["succeeded"], data["counts"]["failed"]), data


@then('"{name}" is a PNG picture')
def step_png(context: Any, name: str) -> None:
    data = (context.workdir / name).read_bytes()
    assert data.startswith(b"\x89PNG\r\n\x1a\n"), data[:8]
    assert len(data) > 1000


@then("the state database is unchanged")
def step_unchanged(context: Any) -> None:
    runs = context.workdir / ".subplan"
    assert context.store_bytes == (runs / "state.db").read_bytes()
    # Nothing new beside it either: no lock file for a run that does not exist.
    assert not (runs / "locks" / "other.lock").exists()
