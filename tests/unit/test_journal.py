"""The journal against a real SQLite store: batching, fencing warnings, failures, hooks."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import pytest

from execute_helpers import flat_plan
from subplan import RateLimited, StoreError, run
from subplan._dispatch._results import AttemptContext, Event
from subplan._durable._journal import StoreJournal, _KillSwitch
from subplan._model import Subplan
from subplan._store._base import AttemptStarted, RunRecord, Store
from subplan._store._open import open_store


@pytest.fixture
def store(tmp_path: Path) -> Store:
    opened = open_store(None, tmp_path)
    opened.create_run(RunRecord("r", "running", 1.0, 1.0, None, "{}"))
    return opened


def test_the_kill_switch_fires_at_the_nth_occurrence_of_its_point() -> None:
    fired: list[int] = []
    switch = _KillSwitch("after_write:3", kill=lambda: fired.append(1))
    for _ in range(2):
        switch.hit("after_write")
        switch.hit("before_write")
    assert [] == fired
    switch.hit("after_write")
    switch.hit("after_write")  # spent: fires once
    assert [1] == fired
    counted = _KillSwitch("before_success:3", kill=lambda: fired.append(2))
    counted.hit("before_success", 2)
    counted.hit("before_success", 2)
    assert [1, 2] == fired
    inert = _KillSwitch(None, kill=lambda: fired.append(3))
    inert.hit("after_write")
    assert [1, 2] == fired


def test_stale_writes_and_broken_listeners_become_warnings(store: Store) -> None:
    journal = StoreJournal(store, "r")
    store.apply([AttemptStarted("r", "a", 1, 0.0)])  # someone else got there first

    class Launch:
        unit_id, attempt, dispatched = "a", 1, 0.0

    journal.started(Launch())  # type: ignore[arg-type]

    def broken(event: Event) -> None:
        raise ValueError("listener bug")

    journal.deliver(broken)(Event(kind="run_started", time=0.0, run_id="r"))
    journal.close()
    assert 1 == len(journal.rejected)
    assert any("rejected 1 stale" in w for w in journal.warnings)
    assert any("ValueError: listener bug" in w for w in journal.warnings)


class FailingStore:
    def __init__(self, inner: Store, error: BaseException) -> None:
        self.inner, self.error = inner, error

    def __getattr__(self, name: str) -> object:
        return getattr(self.inner, name)

    def apply(self, writes: object) -> object:
        raise self.error


@pytest.mark.parametrize(
    ("error", "message"),
    [
        (StoreError("disk is full"), "disk is full"),
        (OSError("no space left"), "the state store failed: OSError: no space left"),
    ],
)
def test_a_store_failure_surfaces_on_flush(store: Store, error: Exception, message: str) -> None:
    seen: list[BaseException] = []
    journal = StoreJournal(FailingStore(store, error), "r", on_error=seen.append)  # type: ignore[arg-type]
    journal.status("failed", at=2.0, ended=2.0)
    with pytest.raises(StoreError, match=message):
        journal.flush()
    assert [error] == seen and journal.error is error
    journal.status("failed", at=3.0)  # later writes are dropped, not retried
    with pytest.raises(StoreError):
        journal.close()


def test_pauses_rate_limits_and_exit_codes_reach_the_store(tmp_path: Path) -> None:
    lock = threading.Lock()
    limited: set[str] = set()

    class ExitError(RuntimeError):
        returncode = 3

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        with lock:
            first = subplan.id not in limited
            limited.add(subplan.id)
        if subplan.label == "d0000" and first:
            raise RateLimited("slow down", retry_after=0.01)
        if subplan.label == "d0001":
            raise ExitError("exit 3")

    report = run(flat_plan(2), work, runs_dir=tmp_path, run_id="p", store="")
    assert "failed" == report.status
    with open_store(None, tmp_path) as store:
        rows = {(r.subplan_id, r.number): r for r in store.attempts("p")}
        pauses = store.pauses("p")
    (pause,) = pauses
    assert "slow down" in pause.reason
    statuses = sorted(r.status for r in rows.values())
    assert ["failed", "rate_limited", "succeeded"] == statuses
    limited_row = next(r for r in rows.values() if r.status == "rate_limited")
    assert limited_row.rate_limit is not None
    assert "signal" == json.loads(limited_row.rate_limit)["source"]
    failed_row = next(r for r in rows.values() if r.status == "failed")
    assert 3 == failed_row.exit_code


def test_a_retry_policy_round_trips_through_its_record() -> None:
    from subplan import ConfigError, RateLimited, RetryPolicy

    class Flaky(Exception):
        pass

    policy = RetryPolicy(retries=2, backoff_base=0.5, retry_on=(TimeoutError, KeyError))
    assert policy == RetryPolicy.from_dict(json.loads(json.dumps(policy.to_dict())))
    with pytest.raises(ConfigError, match="cannot be imported"):
        RetryPolicy.from_dict({"retry_on": ["no.such.module.Error"]})
    with pytest.raises(ConfigError, match="cannot be imported"):
        RetryPolicy.from_dict({"retry_on": ["builtins.len"]})  # not an exception type
    # A policy stored before the layout moved names the old private module.
    old = RetryPolicy.from_dict({"retry_on": ["subplan._execute._ratelimit.RateLimited"]})
    assert (RateLimited,) == old.retry_on
    with pytest.raises(ConfigError, match="cannot be imported"):
        RetryPolicy.from_dict({"retry_on": ["subplan._gone.NoSuchError"]})
    local = RetryPolicy(retry_on=(Flaky,)).to_dict()["retry_on"]
    with pytest.raises(ConfigError):  # a class defined in a function cannot come back
        RetryPolicy.from_dict({"retry_on": local})


def test_a_stored_run_reads_back_as_far_as_it_got(tmp_path: Path) -> None:
    from subplan import decompose
    from subplan._durable._resume import report_from_store
    from subplan._store._base import AttemptEnded

    plan = decompose([f"d{i}/a.py" for i in range(4)], min_files=1, max_files=1)
    a, b, c, _ = (leaf.id for leaf in plan.leaves)
    with open_store(None, tmp_path) as store:
        for status in ("failed", "cancelled"):
            run_id = f"r-{status}"
            store.create_run(RunRecord(run_id, status, 1.0, 2.0, 3.0, plan.to_json()))
            store.apply(
                [
                    AttemptStarted(run_id, a, 1, 1.0),
                    AttemptEnded(run_id, a, 1, "succeeded", 1.5),
                    AttemptStarted(run_id, b, 1, 1.0),
                    AttemptEnded(run_id, b, 1, "failed", 1.5, error="boom"),
                    AttemptStarted(run_id, c, 1, 1.0),
                ]
            )
        reports = {
            status: report_from_store(
                store.get_run(f"r-{status}"), store.attempts(f"r-{status}"), []
            )
            for status in ("failed", "cancelled")
        }
    failed, cancelled = reports["failed"], reports["cancelled"]
    assert ["succeeded", "failed", "failed", "skipped"] == [
        o.status for o in failed.outcomes.values()
    ]
    assert "boom" == failed.outcomes[b].reason
    assert "interrupted" == failed.outcomes[c].attempts[0].status  # left running
    assert ["succeeded", "not_run", "not_run", "not_run"] == [
        o.status for o in cancelled.outcomes.values()
    ]
    assert "cancelled" == cancelled.status


def test_abandoning_a_run_marks_it_interrupted_and_frees_it(tmp_path: Path) -> None:
    from subplan._backends._setup import Setup
    from subplan._options import RunOptions

    options = RunOptions(max_parallel=2)
    setup = Setup(
        flat_plan(2), lambda s, c: None, options, run_id="ab", runs_dir=tmp_path, store=""
    )
    setup.abandon()
    setup.abandon()  # idempotent
    with open_store(None, tmp_path) as store:
        assert "interrupted" == store.get_run("ab").status
        store.lock_run("ab").release()  # the lock was given back
