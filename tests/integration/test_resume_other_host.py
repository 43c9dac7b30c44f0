"""A resume kills left-over process groups only when the run was last run on this host.

A process group id is a number on the host whose orchestrator recorded it. With a store
shared by several hosts, a run may be resumed on another host, where that number names
some unrelated process group. Each test writes a dead orchestrator's state with the
store API (the run ``running``, one attempt ``running`` with the process group of a real
``sleep`` started here in a session of its own), then resumes it through ``main(argv)``.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from execute_helpers import flat_plan
from subplan import open_store
from subplan._command._work import CommandWork
from subplan._store._base import AttemptProcess, AttemptStarted, RunRecord
from subplan.cli import EXIT_OK, main

OTHER_HOST = "build-7.other.example"


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """A real process group of this host: ``sleep`` as the leader of its own session."""
    process = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait()


def abandoned_run(runs: Path, *, host: str, pgid: int) -> str:
    """A run its orchestrator on ``host`` left behind; returns the stranded subplan's id."""
    plan = flat_plan(2)
    victim = plan.leaves[0].id
    work = CommandWork([sys.executable, "-c", "pass"])
    now = time.time()
    with contextlib.closing(open_store(None, runs)) as store:
        config = {"max_parallel": 2, "work": work.describe()}
        store.create_run(
            RunRecord("r", "running", now, now, None, plan.to_json(), config, host=host, pid=4242)
        )
        store.apply(
            [AttemptStarted("r", victim, 1, now), AttemptProcess("r", victim, 1, pgid=pgid)]
        )
    return victim


def resume(runs: Path) -> tuple[int, dict[str, Any], str]:
    out, err = io.StringIO(), io.StringIO()
    argv = ["resume", "r", "--runs-dir", str(runs), "--json", "--progress", "off"]
    status = main(argv, stdout=out, stderr=err)
    return status, json.loads(out.getvalue()), err.getvalue()


def group_alive(pgid: int) -> bool:
    try:
        os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_resume_on_another_host_leaves_the_recorded_group_alone_and_says_so(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    runs = tmp_path / "runs"
    victim = abandoned_run(runs, host=OTHER_HOST, pgid=sleeper.pid)
    status, report, err = resume(runs)
    # Killing pgid here would have hit this host's unrelated sleep: it must live on.
    assert (None, True) == (sleeper.poll(), group_alive(sleeper.pid))
    assert EXIT_OK == status, err
    warning = (
        f"1 attempt of host {OTHER_HOST} may still be running there; their commands were "
        f"not killed (this resume runs on {socket.gethostname()})"
    )
    assert [warning] == report["warnings"]
    assert f"subplan: warning: {warning}\n" == err
    # The attempt is reclaimed all the same: interrupted, not charged, and run again.
    (outcome,) = [s for s in report["subplans"] if s["subplan_id"] == victim]
    attempts = [(a["status"], a["charged"]) for a in outcome["attempts"]]
    assert [("interrupted", False), ("succeeded", True)] == attempts


def test_a_resume_on_the_same_host_kills_the_recorded_group_first(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    runs = tmp_path / "runs"
    abandoned_run(runs, host=socket.gethostname(), pgid=sleeper.pid)
    status, report, err = resume(runs)
    assert -signal.SIGTERM == sleeper.wait(timeout=30)
    assert (EXIT_OK, [], "") == (status, report["warnings"], err)
