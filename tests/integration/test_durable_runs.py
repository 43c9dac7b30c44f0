"""Runs with a state store: records, resume, rerun, reclaim, the run lock, durability.

Everything here uses the real SQLite store in a temporary runs directory and real
threads; the reclaim test uses a real process group.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from execute_helpers import flat_plan, nested_plan
from subplan import ConfigError, RunLockedError, StoreError, UnknownRunError, decompose
from subplan._command._work import CommandWork
from subplan._dispatch._results import AttemptContext, Event
from subplan._durable._resume import report_from_store
from subplan._model import Plan, Subplan
from subplan._run import resume, run
from subplan._store._base import AttemptProcess, AttemptStarted, RunRecord, Store, Write
from subplan._store._open import open_store
from subplan.testing import FakeClock


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def store_at(runs: Path) -> Store:
    return open_store(None, runs)


class Calls:
    """Work that records its calls and fails the subplans (by label) it is told to."""

    def __init__(self, failing: set[str] | None = None) -> None:
        self.failing = failing or set()
        self.calls: list[tuple[str, int]] = []
        self.lock = threading.Lock()

    def __call__(self, subplan: Subplan, ctx: AttemptContext) -> bool:
        with self.lock:
            self.calls.append((subplan.label, ctx.attempt))
        return subplan.label not in self.failing


def test_a_run_with_a_store_records_every_attempt(runs: Path) -> None:
    plan = flat_plan(6)
    report = run(plan, Calls({"d0002"}), max_parallel=3, run_id="r1", runs_dir=runs, store="")
    assert "failed" == report.status
    with contextlib.closing(store_at(runs)) as store:
        record = store.get_run("r1")
        rows = store.attempts("r1")
        stored = report_from_store(record, rows, store.pauses("r1"))
    assert ("failed", 3) == (record.status, record.config["max_parallel"])
    assert Plan.from_json(record.plan_json) == plan
    assert 6 == len(rows)
    assert {o.subplan_id: o.status for o in report.outcomes.values()} == {
        o.subplan_id: o.status for o in stored.outcomes.values()
    }
    assert report.peak_concurrency == stored.peak_concurrency


def test_resume_runs_only_what_did_not_succeed(runs: Path) -> None:
    plan = flat_plan(8)
    first = Calls({"d0001", "d0005"})
    run(plan, first, max_parallel=4, run_id="r", runs_dir=runs, store="")
    second = Calls()
    report = resume("r", second, runs_dir=runs)
    assert report.ok
    assert [("d0001", 2), ("d0005", 2)] == sorted(second.calls)
    for outcome in report.outcomes.values():
        expected = ["failed", "succeeded"] if outcome.label in ("d0001", "d0005") else ["succeeded"]
        assert expected == [a.status for a in outcome.attempts]
    with contextlib.closing(store_at(runs)) as store:
        assert "succeeded" == store.get_run("r").status
        succeeded = Counter(r.subplan_id for r in store.attempts("r") if r.status == "succeeded")
    assert set(succeeded.values()) == {1}  # nothing succeeded twice
    assert 8 == len(succeeded)


def test_resume_judges_a_subplan_by_its_latest_attempt(tmp_path: Path) -> None:
    # d0001 fails once and then succeeds on its retry; d0003 fails every time.
    plan = flat_plan(4)
    state = str(tmp_path / "state.db")

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        if subplan.label == "d0003" or (subplan.label == "d0001" and ctx.attempt == 1):
            raise ConnectionError("flaky")

    first = run(
        plan, work, retries=1, clock=FakeClock(), run_id="r", runs_dir=tmp_path, store=state
    )
    by_label = {o.label: o for o in first.outcomes.values()}
    assert ["failed", "succeeded"] == [a.status for a in by_label["d0001"].attempts]
    assert "failed" == first.status
    again = Calls()
    report = resume("r", again, store=state, runs_dir=tmp_path, clock=FakeClock())
    assert report.ok
    # Only the subplan whose latest attempt failed runs again; its numbers continue.
    assert [("d0003", 3)] == again.calls
    by_label = {o.label: o for o in report.outcomes.values()}
    assert ["failed", "succeeded"] == [a.status for a in by_label["d0001"].attempts]


def test_resume_keeps_the_runs_limits_and_policy(runs: Path) -> None:
    plan = flat_plan(6)
    run(
        plan,
        Calls(set(plan.leaves[0].label)),
        max_parallel=2,
        retries=1,
        runs_dir=runs,
        run_id="r",
        store="",
    )
    seen: list[Event] = []
    report = resume("r", Calls(), runs_dir=runs, on_event=seen.append)
    assert 2 == report.max_parallel
    assert report.peak_concurrency <= 2


def test_rerun_runs_a_whole_subtree_again_and_keeps_the_rest(runs: Path) -> None:
    plan = nested_plan()
    run(plan, Calls(), max_parallel=4, run_id="r", runs_dir=runs, store="")
    subtree = plan.children(plan.root.id)[1]
    again = {leaf.label for leaf in plan.leaves_under(subtree.id)}
    second = Calls()
    report = resume("r", second, runs_dir=runs, rerun=[subtree.id])
    assert report.ok
    assert again == {label for label, _ in second.calls}
    assert all(attempt == 2 for _, attempt in second.calls)
    for outcome in report.outcomes.values():
        assert len(outcome.attempts) == (2 if outcome.label in again else 1)


def test_rerun_of_an_unknown_id_is_an_error_and_runs_nothing(runs: Path) -> None:
    run(flat_plan(3), Calls(), run_id="r", runs_dir=runs, store="")
    work = Calls()
    with pytest.raises(KeyError, match="sp-nope"):
        resume("r", work, runs_dir=runs, rerun=["sp-nope"])
    assert [] == work.calls
    with contextlib.closing(store_at(runs)) as store:
        assert "succeeded" == store.get_run("r").status


def test_a_re_decomposed_plan_keeps_results_of_unchanged_ids(runs: Path) -> None:
    files = [f"d{n}/{i}.py" for n in range(4) for i in range(3)]
    old = decompose(files, max_files=3)
    run(old, Calls(), run_id="r", runs_dir=runs, store="")
    new = decompose([*files[:-1], "d3/changed.py"], max_files=3)  # d3's id changes, d0..d2 stay
    unchanged = {leaf.id for leaf in old.leaves} & {leaf.id for leaf in new.leaves}
    assert len(unchanged) == 3
    second = Calls()
    report = resume("r", second, runs_dir=runs, plan=new)
    assert report.ok
    assert ["d3"] == [label for label, _ in second.calls]
    with contextlib.closing(store_at(runs)) as store:
        assert Plan.from_json(store.get_run("r").plan_json) == new


def test_unknown_runs_and_callable_runs_need_what_they_need(runs: Path) -> None:
    run(flat_plan(2), Calls(), run_id="r", runs_dir=runs, store="")
    with pytest.raises(UnknownRunError, match="no run 'other'"):
        resume("other", Calls(), runs_dir=runs)
    with pytest.raises(ConfigError, match="pass work="):
        resume("r", runs_dir=runs)


def test_a_second_orchestrator_is_refused_with_the_holder_named(runs: Path) -> None:
    run(flat_plan(2), Calls({"d0000"}), run_id="r", runs_dir=runs, store="")
    with contextlib.closing(store_at(runs)) as store:
        lock = store.lock_run("r")
        try:
            work = Calls()
            with pytest.raises(RunLockedError, match=f"pid {os.getpid()}"):
                resume("r", work, runs_dir=runs)
            assert [] == work.calls
        finally:
            lock.release()
    assert resume("r", Calls(), runs_dir=runs).ok


def test_a_new_run_with_a_taken_id_is_refused(runs: Path) -> None:
    run(flat_plan(2), Calls(), run_id="r", runs_dir=runs, store="")
    work = Calls()
    with pytest.raises(StoreError, match="exists already"):
        run(flat_plan(2), work, run_id="r", runs_dir=runs, store="")
    assert [] == work.calls


def test_resume_reclaims_an_attempt_left_running_and_kills_its_group(runs: Path) -> None:
    # A dead orchestrator's state: the run is 'running', one attempt 'running' with the
    # process group of a command that is still alive.
    plan = flat_plan(2)
    sleeper = subprocess.Popen(["sleep", "300"], start_new_session=True)
    try:
        with contextlib.closing(store_at(runs)) as store:
            now = time.time()
            store.create_run(
                RunRecord("r", "running", now, now, None, plan.to_json(), {"max_parallel": 2})
            )
            victim = plan.leaves[0].id
            writes: list[Write] = [
                AttemptStarted("r", victim, 1, now),
                AttemptProcess("r", victim, 1, pid=sleeper.pid, pgid=sleeper.pid),
            ]
            assert [] == store.apply(writes)
        work = Calls()
        report = resume("r", work, runs_dir=runs)
        assert sleeper.wait(timeout=10) == -signal.SIGTERM  # killed before the rerun
        assert report.ok
        attempts = report.outcomes[victim].attempts
        assert ["interrupted", "succeeded"] == [a.status for a in attempts]
        assert not attempts[0].charged
        assert sorted(label for label, _ in work.calls) == ["d0000", "d0001"]
    finally:
        if sleeper.poll() is None:
            sleeper.kill()
            sleeper.wait()


def test_a_success_is_durable_before_its_event_is_delivered(runs: Path) -> None:
    plan = flat_plan(12)
    seen_in_store: list[bool] = []
    reader = open_store(None, runs)  # its own connection: it sees only what is committed

    def on_event(event: Event) -> None:
        if event.kind == "attempt_ended" and event.status == "succeeded":
            rows = {(r.subplan_id, r.number): r.status for r in reader.attempts("r")}
            key = (str(event.subplan_id), int(event.attempt or 0))
            seen_in_store.append(rows.get(key) == "succeeded")

    try:
        run(plan, Calls(), max_parallel=4, run_id="r", runs_dir=runs, store="", on_event=on_event)
    finally:
        reader.close()
    assert [True] * 12 == seen_in_store


class FailingStore:
    """A real SQLite store whose writes start failing after ``good`` batches (disk full)."""

    def __init__(self, inner: Store, good: int) -> None:
        self.inner = inner
        self.good = good

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def apply(self, writes: Any) -> Any:
        if self.good <= 0:
            raise StoreError("database or disk is full")
        self.good -= 1
        return self.inner.apply(writes)


def test_a_store_that_fails_stops_the_run_with_a_clear_error(runs: Path) -> None:
    plan = flat_plan(40)
    gate = threading.Event()

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        gate.wait(0.01)

    with contextlib.closing(store_at(runs)) as inner:
        store = FailingStore(inner, good=2)
        with pytest.raises(StoreError, match="disk is full"):
            run(plan, work, max_parallel=2, run_id="r", runs_dir=runs, store=store)
        # The run stopped early and can be resumed: its lock is free again.
        inner.lock_run("r").release()
        assert len(inner.attempts("r")) < 40


def test_command_work_resumes_from_its_record(runs: Path, tmp_path: Path) -> None:
    log = tmp_path / "log"
    flag = tmp_path / "fail"
    flag.touch()
    script = (
        "import os, sys\n"
        "open(sys.argv[1], 'a').write(sys.argv[2] + '\\n')\n"
        "sys.exit(1 if os.path.exists(sys.argv[3]) and sys.argv[2].endswith('1') else 0)\n"
    )
    work = CommandWork([sys.executable, "-c", script, str(log), "{label}", str(flag)])
    report = run(flat_plan(3), work, run_id="r", runs_dir=runs, store="")
    assert "failed" == report.status
    flag.unlink()
    again = resume("r", runs_dir=runs)  # no work given: rebuilt from the record
    assert again.ok
    first, second = log.read_text().split()[:3], log.read_text().split()[3:]
    assert (["d0000", "d0001", "d0002"], ["d0001"]) == (sorted(first), second)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_a_commands_process_group_is_recorded_while_it_runs(
    runs: Path, tmp_path: Path, backend: str
) -> None:
    marker = tmp_path / "pgid"
    script = "import os, sys; open(sys.argv[1], 'a').write('%d\\n' % os.getpgrp())"
    work = CommandWork([sys.executable, "-c", script, str(marker)])
    report = run(flat_plan(2), work, run_id="r", runs_dir=runs, store="", backend=backend)  # type: ignore[arg-type]
    assert report.ok
    with contextlib.closing(store_at(runs)) as store:
        recorded = sorted(r.pgid for r in store.attempts("r") if r.pgid is not None)
    assert sorted(int(x) for x in marker.read_text().split()) == recorded
