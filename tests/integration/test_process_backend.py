"""The process backend: the same dispatcher, attempts in crash-isolated worker processes."""

from __future__ import annotations

import itertools
import os
import sys
import time
from pathlib import Path

import pytest

from execute_helpers import (
    DiesWhileLoading,
    always_sigkill,
    crash_on_first_attempt,
    crash_some,
    flat_plan,
    hang,
    sleep_work,
)
from subplan import ConfigError, RetryPolicy, run
from subplan._command._work import CommandWork


def test_the_bound_holds_in_worker_processes() -> None:
    report = run(flat_plan(12), sleep_work, max_parallel=4, backend="process")
    assert report.ok
    assert 4 == report.peak_concurrency == report.tracker_peak


def test_a_dead_worker_breaks_only_its_own_attempt() -> None:
    plan = flat_plan(8)
    report = run(plan, crash_on_first_attempt, max_parallel=4, retries=1, backend="process")
    assert report.ok
    crashed = {leaf.id for leaf in plan.leaves if leaf.label in ("d0000", "d0001")}
    for outcome in report.outcomes.values():
        statuses = [a.status for a in outcome.attempts]
        if outcome.subplan_id in crashed:
            assert ["crashed", "succeeded"] == statuses
            assert "exited with status 3" in (outcome.attempts[0].error or "")
        else:
            assert ["succeeded"] == statuses  # innocent: never charged, never re-run


def test_a_worker_that_dies_before_the_call_spends_no_attempt(tmp_path: Path) -> None:
    flag = tmp_path / "die"
    flag.touch()
    plan = flat_plan(1)
    report = run(plan, DiesWhileLoading(str(flag)), retries=0, backend="process")
    # retries=0: had the crash been charged, the subplan would have failed.
    assert report.ok, report.outcomes
    (outcome,) = report.outcomes.values()
    assert ["crashed", "succeeded"] == [a.status for a in outcome.attempts]
    assert "exited with status 9" in (outcome.attempts[0].error or "")


def test_a_subplan_that_always_crashes_fails_at_the_crash_cap() -> None:
    plan = flat_plan(2)
    policy = RetryPolicy(retries=10, backoff_base=0.0, max_crashes=3)
    report = run(plan, always_sigkill, max_parallel=2, retries=policy, backend="process")
    assert "failed" == report.status
    for outcome in report.outcomes.values():
        assert ["crashed"] * 3 == [a.status for a in outcome.attempts]
        assert "killed by signal 9" in (outcome.reason or "")


def test_a_timeout_kills_the_worker() -> None:
    began = time.monotonic()
    report = run(flat_plan(1), hang, timeout=0.5, backend="process")
    assert "timed_out" == report.attempts[0].status
    assert time.monotonic() - began < 30


def test_fault_injection_under_load_loses_nothing() -> None:
    # 40 subplans, 8 workers; the 8 whose labels end in 3 or 7 kill their worker once.
    plan = flat_plan(40)
    report = run(plan, crash_some, max_parallel=8, retries=1, backend="process")
    crashed = [a for a in report.attempts if a.status == "crashed"]
    innocent = [o for o in report.outcomes.values() if o.label[-1:] not in ("3", "7")]
    figures = {
        "subplans": len(plan.leaves),
        "kills": len(crashed),
        "lost": len(plan.leaves) - len(report.succeeded),
        "innocent charged": sum(len(o.attempts) - 1 for o in innocent),
        "slots free at the end": report.max_parallel
        - (report.slots.acquired - report.slots.released if report.slots else -1),
    }
    assert {
        "subplans": 40,
        "kills": 8,
        "lost": 0,
        "innocent charged": 0,
        "slots free at the end": 8,
    } == figures
    assert report.peak_concurrency <= 8
    # Never twice at once: a subplan's attempts never overlap in time.
    for outcome in report.outcomes.values():
        spans = sorted((a.started, a.ended) for a in outcome.attempts)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_a_command_started_by_a_dead_worker_is_killed_before_the_retry(tmp_path: Path) -> None:
    pids = tmp_path / "pids"
    script = (
        "import os, sys, time\n"
        f"path = {str(pids)!r}\n"
        "first = not os.path.exists(path)\n"
        "open(path, 'a').write(str(os.getpid()) + '\\n')\n"
        "if first:\n"
        "    time.sleep(60)\n"
    )
    work = CommandWork([sys.executable, "-c", script])
    plan = flat_plan(1)

    import threading

    def kill_the_worker() -> None:
        deadline = time.monotonic() + 30
        while not pids.exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        command = int(pids.read_text().split()[0])
        worker = int(Path(f"/proc/{command}/stat").read_text().split(") ")[1].split()[1])
        os.kill(worker, 9)

    threading.Thread(target=kill_the_worker).start()
    report = run(plan, work, retries=1, backend="process", runs_dir=tmp_path / "runs")
    assert report.ok
    assert ["crashed", "succeeded"] == [a.status for a in report.attempts]
    first_command = int(pids.read_text().split()[0])
    stat = Path(f"/proc/{first_command}/stat")
    assert not stat.exists() or stat.read_text().split(") ")[1].startswith("Z")


def test_work_that_cannot_be_pickled_fails_with_the_reason() -> None:
    report = run(flat_plan(1), lambda s, c: None, backend="process")
    assert "failed" == report.status
    assert "pickle" in (report.attempts[0].error or "").lower()


def test_an_unknown_backend_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown backend 'gpu'"):
        run(flat_plan(1), sleep_work, backend="gpu")  # type: ignore[arg-type]
