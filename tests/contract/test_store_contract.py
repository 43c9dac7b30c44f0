"""The state store contract: every test runs against SQLite and PostgreSQL alike.

The ``backend`` fixture (``conftest.py``) gives each test a fresh location of each kind;
``backend.open()`` opens another store object (another connection) on the same data, which
is how a resume, a second orchestrator or a later process sees it.

The last test compares random write sequences, applied in random batches, with a small
reference model of the fencing rules written here from the protocol's documentation.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, TypeVar

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import conninfo, sql

from subplan import InputError
from subplan._errors import (
    ConfigError,
    RunExistsError,
    RunLockedError,
    RunLockLostError,
    StoreConnectError,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
    UnknownRunError,
)
from subplan._store._base import (
    AttemptEnded,
    AttemptProcess,
    AttemptRow,
    AttemptStarted,
    EpochFence,
    IntegrationRow,
    PauseRecorded,
    PauseRow,
    RunInfo,
    RunRecord,
    RunStatusChanged,
    SessionRow,
    Store,
    StoredAttemptStatus,
    Write,
)
from subplan._store._open import open_store
from subplan._store._postgres import PostgresStore

pytestmark = pytest.mark.timeout(120)

LIMIT = 10.0  # seconds any bounded wait may take before the test fails

T = TypeVar("T")


class Backend(Protocol):
    """What the ``backend`` fixture gives (see ``conftest.Backend``)."""

    name: str
    spec: dict[str, str]

    def open(self, *, create: bool = True, readonly: bool = False) -> Store: ...


def record(run_id: str = "r1", *, created: float = 100.0, **changes: object) -> RunRecord:
    base = RunRecord(
        run_id=run_id,
        status="running",
        created=created,
        updated=created,
        ended=None,
        plan_json='{"schema": "subplan.plan/1", "nodes": []}',
        config={"max_parallel": 4, "retry": {"attempts": 3, "backoff": 0.5}, "backend": None},
        command=("agent", "--files", "{files}"),
        host="build-1",
        pid=4242,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def wait_for(condition: Callable[[], T | None], what: str, limit: float = LIMIT) -> T:
    """Poll until ``condition`` returns a value; fail naming ``what`` after ``limit`` s."""
    deadline = time.monotonic() + limit
    while True:
        value = condition()
        if value is not None:
            return value
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {limit} s")
        time.sleep(0.01)


# -- runs ---------------------------------------------------------------------------------


def test_a_new_store_is_empty(store: Store, backend: Backend) -> None:
    assert backend.name == store.kind
    assert [] == store.list_runs()


def test_a_run_round_trips(store: Store) -> None:
    run = record()
    store.create_run(run)
    assert run == store.get_run("r1")
    bare = record("r2", command=None, config={}, host="", pid=0, status="failed", ended=7.5)
    store.create_run(bare)
    assert bare == store.get_run("r2")


def test_creating_a_run_twice_is_refused(store: Store) -> None:
    store.create_run(record())
    with pytest.raises(RunExistsError) as caught:
        store.create_run(record(created=200.0))
    assert "r1" == caught.value.run_id
    assert "\n" not in str(caught.value)
    assert 100.0 == store.get_run("r1").created


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.get_run("nope"), id="get_run"),
        pytest.param(lambda s: s.attempts("nope"), id="attempts"),
        pytest.param(lambda s: s.pauses("nope"), id="pauses"),
        pytest.param(lambda s: s.set_plan("nope", "{}"), id="set_plan"),
        pytest.param(lambda s: s.integrations("nope"), id="integrations"),
        pytest.param(
            lambda s: s.record_integrations([IntegrationRow("nope", "b", "a", "integrated", 1.0)]),
            id="record_integrations",
        ),
    ],
)
def test_an_unknown_run_is_an_error(store: Store, call: Callable[[Store], object]) -> None:
    store.create_run(record())
    with pytest.raises(UnknownRunError) as caught:
        call(store)
    assert "nope" == caught.value.run_id
    assert "no run 'nope'" in str(caught.value)


def test_a_write_to_an_unknown_run_applies_nothing_of_its_batch(store: Store) -> None:
    store.create_run(record())
    batch: list[Write] = [
        AttemptStarted("r1", "a", 1, 1.0),
        PauseRecorded("r1", 2.0, 3.0, "rate limit", "text"),
        RunStatusChanged("r1", "failed", 4.0, ended=4.0),
        AttemptStarted("nope", "a", 1, 1.0),
    ]
    with pytest.raises(UnknownRunError) as caught:
        store.apply(batch)
    assert "nope" == caught.value.run_id
    assert [] == store.attempts("r1")
    assert [] == store.pauses("r1")
    assert record() == store.get_run("r1")


def test_set_plan_replaces_the_plan_only(store: Store) -> None:
    store.create_run(record())
    store.set_plan("r1", '{"new": true}')
    assert record(plan_json='{"new": true}') == store.get_run("r1")


def test_run_status_changes(store: Store) -> None:
    store.create_run(record())
    assert [] == store.apply([RunStatusChanged("r1", "interrupted", 5.0, ended=5.0)])
    assert record(status="interrupted", updated=5.0, ended=5.0) == store.get_run("r1")
    store.apply([RunStatusChanged("r1", "running", 6.0, host="build-2", pid=7)])
    assert record(
        status="running", updated=6.0, ended=None, host="build-2", pid=7
    ) == store.get_run("r1")
    store.apply(
        [
            RunStatusChanged("r1", "failed", 7.0, ended=7.0),
            RunStatusChanged("r1", "succeeded", 8.0, ended=8.5),
        ]
    )
    assert record(
        status="succeeded", updated=8.0, ended=8.5, host="build-2", pid=7
    ) == store.get_run("r1")


def test_list_runs_newest_first_with_subplans_by_latest_attempt(store: Store) -> None:
    store.create_run(record("old", created=10.0))
    store.create_run(record("new", created=30.0))
    store.create_run(record("mid", created=20.0))
    store.apply(
        [
            AttemptStarted("old", "a", 1, 11.0),
            AttemptEnded("old", "a", 1, "failed", 12.0),
            AttemptStarted("old", "a", 2, 13.0),
            AttemptEnded("old", "a", 2, "succeeded", 14.0),
            AttemptStarted("old", "b", 1, 11.0),
            AttemptStarted("old", "c", 1, 11.0),
            AttemptEnded("old", "c", 1, "rate_limited", 12.0),
            AttemptStarted("old", "d", 1, 11.0),
            AttemptEnded("old", "d", 1, "succeeded", 12.0),
            # numbers compare as numbers: 10 is later than 9
            AttemptStarted("mid", "x", 9, 21.0),
            AttemptEnded("mid", "x", 9, "succeeded", 22.0),
            AttemptStarted("mid", "x", 10, 23.0),
            AttemptEnded("mid", "x", 10, "crashed", 24.0),
            RunStatusChanged("old", "failed", 15.0, ended=15.0),
        ]
    )
    expected = [
        RunInfo("new", "running", 30.0, 30.0, None, "build-1", 4242, 0, {}),
        RunInfo("mid", "running", 20.0, 20.0, None, "build-1", 4242, 2, {"crashed": 1}),
        RunInfo(
            "old",
            "failed",
            10.0,
            15.0,
            15.0,
            "build-1",
            4242,
            5,
            {"succeeded": 2, "running": 1, "rate_limited": 1},
        ),
    ]
    assert expected == store.list_runs()


# -- attempts and fencing -----------------------------------------------------------------


def test_attempts_round_trip_every_field(store: Store) -> None:
    store.create_run(record())
    rejected = store.apply(
        [
            AttemptStarted("r1", "b", 1, 10.25),
            AttemptProcess("r1", "b", 1, pid=31337),
            AttemptProcess("r1", "b", 1, pgid=31337),
            AttemptEnded(
                "r1",
                "b",
                1,
                "rate_limited",
                12.5,
                started=10.5,
                exit_code=-9,
                error="rate limited: resets 4pm",
                error_type="RateLimited",
                rate_limit=json.dumps({"retry_after": 30.0, "source": "text"}),
                cost=0.1 + 0.2,  # not exactly 0.3: floats must round-trip bit for bit
                passed=False,
                charged=False,
                detail="über 9000 ✓",
                changed=json.dumps(["src/a.py", "new file.txt"]),
            ),
            AttemptStarted("r1", "a", 2, 1e-300),
            AttemptStarted("r1", "a", 1, 1.0),
            AttemptEnded("r1", "a", 1, "succeeded", 2.0, passed=True, exit_code=0, cost=0.0),
        ]
    )
    assert [] == rejected
    expected = [
        AttemptRow("r1", "a", 1, "succeeded", 1.0, ended=2.0, exit_code=0, cost=0.0, passed=True),
        AttemptRow("r1", "a", 2, "running", 1e-300),
        AttemptRow(
            "r1",
            "b",
            1,
            "rate_limited",
            10.25,
            started=10.5,
            ended=12.5,
            pid=31337,
            pgid=31337,
            exit_code=-9,
            error="rate limited: resets 4pm",
            error_type="RateLimited",
            rate_limit=json.dumps({"retry_after": 30.0, "source": "text"}),
            cost=0.1 + 0.2,
            passed=False,
            charged=False,
            detail="über 9000 ✓",
            changed=json.dumps(["src/a.py", "new file.txt"]),
        ),
    ]
    assert expected == store.attempts("r1")
    assert isinstance(store.attempts("r1")[2].passed, bool)


def test_attempts_sort_by_subplan_bytewise_then_number(store: Store) -> None:
    store.create_run(record())
    ids = ["b", "B", "a-1", "a_1", "a", "Z", "é", "10", "9"]
    store.apply([AttemptStarted("r1", i, n, 1.0) for i in ids for n in (10, 2)])
    assert [(i, n) for i in sorted(ids) for n in (2, 10)] == [
        (a.subplan_id, a.number) for a in store.attempts("r1")
    ]


def test_unstorable_characters_are_replaced(store: Store) -> None:
    """NUL (PostgreSQL cannot store it) and lone surrogates (undecodable bytes)."""
    store.create_run(record())
    undecodable = b"caf\xe9 \xff".decode("utf-8", "surrogateescape")
    store.apply(
        [
            AttemptStarted("r1", "a", 1, 1.0),
            AttemptEnded(
                "r1",
                "a",
                1,
                "failed",
                2.0,
                error="x\0y",
                error_type="\ud800",
                rate_limit="\0",
                detail=undecodable,
            ),
            PauseRecorded("r1", 1.0, 2.0, "why\0", undecodable),
        ]
    )
    row = store.attempts("r1")[0]
    f = "\ufffd"
    expected = ("x" + f + "y", f * 3, f, "caf" + f * 3 + " " + f * 3)
    assert expected == (row.error, row.error_type, row.rate_limit, row.detail)
    assert [PauseRow("r1", 1.0, 2.0, "why" + f, expected[3])] == store.pauses("r1")


def test_an_attempt_ends_once(store: Store) -> None:
    store.create_run(record())
    first = AttemptEnded("r1", "a", 1, "failed", 2.0, error="boom")
    second = AttemptEnded("r1", "a", 1, "succeeded", 3.0)
    assert [second] == store.apply([AttemptStarted("r1", "a", 1, 1.0), first, second])
    assert [second] == store.apply([second])
    assert [AttemptRow("r1", "a", 1, "failed", 1.0, ended=2.0, error="boom")] == store.attempts(
        "r1"
    )


def test_an_attempt_starts_once(store: Store) -> None:
    store.create_run(record())
    again = AttemptStarted("r1", "a", 1, 5.0)
    assert [again] == store.apply([AttemptStarted("r1", "a", 1, 1.0), again])
    assert [again] == store.apply([again])
    store.apply([AttemptEnded("r1", "a", 1, "failed", 2.0)])
    assert [again] == store.apply([again])
    assert [AttemptRow("r1", "a", 1, "failed", 1.0, ended=2.0)] == store.attempts("r1")


def test_writes_to_an_attempt_that_does_not_exist_are_rejected(store: Store) -> None:
    store.create_run(record())
    early: list[Write] = [
        AttemptProcess("r1", "a", 1, pid=5),
        AttemptEnded("r1", "a", 1, "succeeded", 2.0),
    ]
    # rejected even when the attempt starts later in the same batch: order matters
    assert early == store.apply([*early, AttemptStarted("r1", "a", 1, 3.0)])
    assert [AttemptRow("r1", "a", 1, "running", 3.0)] == store.attempts("r1")


def test_a_stale_orchestrator_cannot_end_an_attempt_a_resume_interrupted(
    backend: Backend,
) -> None:
    stale = backend.open()
    stale.create_run(record())
    stale.apply([AttemptStarted("r1", "a", 1, 1.0), AttemptProcess("r1", "a", 1, pid=10, pgid=10)])
    resume = backend.open()
    interrupted = AttemptEnded("r1", "a", 1, "interrupted", 5.0, error="interrupted", charged=False)
    assert [] == resume.apply([interrupted])
    late: list[Write] = [
        AttemptEnded("r1", "a", 1, "succeeded", 6.0, exit_code=0),
        AttemptProcess("r1", "a", 1, pid=11),
    ]
    assert late == stale.apply(late)
    expected = AttemptRow(
        "r1",
        "a",
        1,
        "interrupted",
        1.0,
        ended=5.0,
        pid=10,
        pgid=10,
        error="interrupted",
        charged=False,
    )
    assert [expected] == resume.attempts("r1")


# -- lock epochs --------------------------------------------------------------------------


def test_a_batch_fenced_by_an_older_lock_epoch_is_refused_whole(backend: Backend) -> None:
    stale = backend.open()
    stale.create_run(record())
    mine = stale.bump_lock_epoch("r1")
    assert [] == stale.apply([EpochFence("r1", mine), AttemptStarted("r1", "a", 1, 1.0)])
    newer = backend.open()
    theirs = newer.bump_lock_epoch("r1")  # a newer orchestrator took the run
    # Not even what attempt fencing lets through: the run's status, a pause, a new attempt.
    late: list[Write] = [
        EpochFence("r1", mine),
        RunStatusChanged("r1", "failed", 9.0, 9.0),
        PauseRecorded("r1", 8.0, 20.0, "limited", "text"),
        AttemptStarted("r1", "b", 1, 9.0),
    ]
    with pytest.raises(RunLockLostError, match="taken over by a newer orchestrator") as caught:
        stale.apply(late)
    assert (mine + 1, mine, theirs) == (theirs, caught.value.epoch, caught.value.current)
    assert ("running", [("a", 1)], []) == (
        newer.get_run("r1").status,
        [(r.subplan_id, r.number) for r in newer.attempts("r1")],
        newer.pauses("r1"),
    )
    assert [] == newer.apply([EpochFence("r1", theirs), RunStatusChanged("r1", "succeeded", 10.0)])
    assert "succeeded" == stale.get_run("r1").status


def test_the_lock_epoch_of_an_unknown_run_cannot_be_bumped(store: Store) -> None:
    with pytest.raises(UnknownRunError):
        store.bump_lock_epoch("nope")


def test_a_store_of_an_earlier_release_gets_lock_epochs(backend: Backend) -> None:
    store = backend.open()
    store.create_run(record())
    store.close()
    execute_raw(backend, "ALTER TABLE runs DROP COLUMN lock_epoch")  # as releases before it
    store = backend.open()
    assert "r1" == store.get_run("r1").run_id
    assert [] == store.apply([EpochFence("r1", 0), AttemptStarted("r1", "a", 1, 1.0)])
    assert 1 == store.bump_lock_epoch("r1")  # adds the column
    with pytest.raises(RunLockLostError):
        store.apply([EpochFence("r1", 0), AttemptStarted("r1", "b", 1, 1.0)])
    assert ["a"] == [r.subplan_id for r in backend.open().attempts("r1")]


def test_process_information_merges_and_stops_at_the_end(store: Store) -> None:
    store.create_run(record())
    after = AttemptProcess("r1", "a", 1, pid=99, pgid=99)
    rejected = store.apply(
        [
            AttemptStarted("r1", "a", 1, 1.0),
            AttemptProcess("r1", "a", 1, pid=5),
            AttemptProcess("r1", "a", 1, pgid=6),
            AttemptProcess("r1", "a", 1),
            AttemptProcess("r1", "a", 1, pid=7),
            AttemptEnded("r1", "a", 1, "succeeded", 2.0),
            after,
        ]
    )
    assert [after] == rejected
    row = store.attempts("r1")[0]
    assert (7, 6) == (row.pid, row.pgid)
    # and across batches: a field left None keeps what an earlier batch stored
    store.apply([AttemptStarted("r1", "b", 1, 1.0), AttemptProcess("r1", "b", 1, pid=5)])
    store.apply([AttemptProcess("r1", "b", 1, pgid=6)])
    store.apply([AttemptProcess("r1", "b", 1)])
    row = store.attempts("r1")[1]
    assert (5, 6) == (row.pid, row.pgid)


def test_an_attempt_cannot_end_running(store: Store) -> None:
    store.create_run(record())
    with pytest.raises(InputError, match="cannot end with status 'running'"):
        store.apply([AttemptStarted("r1", "a", 1, 1.0), AttemptEnded("r1", "a", 1, "running", 2.0)])
    assert [] == store.attempts("r1")


def test_an_empty_batch_is_nothing(store: Store) -> None:
    assert [] == store.apply([])


def test_many_threads_share_one_store(store: Store) -> None:
    store.create_run(record())
    errors: list[BaseException] = []

    def work(t: int) -> None:
        try:
            for n in range(1, 6):
                store.apply([AttemptStarted("r1", f"t{t}", n, float(n))])
                store.apply([AttemptEnded("r1", f"t{t}", n, "succeeded", n + 0.5)])
                store.attempts("r1")
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIMIT * 3)
    assert [] == errors
    rows = store.attempts("r1")
    assert 40 == len(rows)
    assert {"succeeded"} == {r.status for r in rows}


# -- pauses -------------------------------------------------------------------------------


def test_pauses_are_added_and_extended(store: Store) -> None:
    store.create_run(record())
    store.create_run(record("r2"))
    store.apply(
        [
            PauseRecorded("r1", 10.0, 40.0, "rate limit", "text", "a"),
            PauseRecorded("r2", 10.0, 20.0, "other run", "json"),
            PauseRecorded("r1", 10.0, 70.0, "rate limit again", "json", None),
        ]
    )
    store.apply([PauseRecorded("r1", 100.0, 130.0, "later", "time", "b")])
    # only the last pause extends: an older one with the same start is a new pause
    store.apply([PauseRecorded("r1", 10.0, 15.0, "odd", "text")])
    store.apply([PauseRecorded("r1", 10.0, 16.0, "odd, longer", "text")])
    assert [
        PauseRow("r1", 10.0, 70.0, "rate limit again", "json", None),
        PauseRow("r1", 100.0, 130.0, "later", "time", "b"),
        PauseRow("r1", 10.0, 16.0, "odd, longer", "text", None),
    ] == store.pauses("r1")
    assert [PauseRow("r2", 10.0, 20.0, "other run", "json")] == store.pauses("r2")


def test_each_taking_of_a_run_is_a_session_closed_by_its_end(backend: Backend) -> None:
    with backend.open() as store:
        store.create_run(record(created=100.0, host="h1", pid=1))
        assert [SessionRow("r1", 100.0, None, "h1", 1)] == store.sessions("r1")
        store.apply([RunStatusChanged("r1", "failed", 130.0, 130.0)])
        # a resume hours later, by another orchestrator, which dies without an end
        store.apply([RunStatusChanged("r1", "running", 9000.0, None, "h2", 2)])
        store.apply([RunStatusChanged("r1", "running", 9100.0, None, "h3", 3)])
        store.apply([RunStatusChanged("r1", "succeeded", 9150.0, 9150.0)])
        store.create_run(record("r2", created=5.0, status="failed", ended=6.0))
    with backend.open(readonly=True) as reader:
        assert [
            SessionRow("r1", 100.0, 130.0, "h1", 1),
            SessionRow("r1", 9000.0, None, "h2", 2),  # died: the resume does not end it
            SessionRow("r1", 9100.0, 9150.0, "h3", 3),
        ] == reader.sessions("r1")
        assert [] == reader.sessions("r2")  # created ended: nobody ever ran it
        with pytest.raises(UnknownRunError):
            reader.sessions("nope")


def test_a_store_without_sessions_reads_none(backend: Backend) -> None:
    with backend.open() as store:
        store.create_run(record(status="failed", ended=120.0))
        # a store written by a release that kept no sessions has no such table
        assert [] == store.sessions("r1")


# -- durability ---------------------------------------------------------------------------


def test_a_store_opened_later_sees_everything(backend: Backend) -> None:
    first = backend.open()
    first.create_run(record())
    first.create_run(record("r2", created=200.0))
    first.apply(
        [
            AttemptStarted("r1", "a", 1, 1.0),
            AttemptProcess("r1", "a", 1, pid=3, pgid=3),
            AttemptEnded("r1", "a", 1, "timed_out", 2.0, error="timeout", cost=1.5),
            AttemptStarted("r1", "a", 2, 3.0),
            PauseRecorded("r1", 4.0, 5.0, "rate limit", "text"),
            RunStatusChanged("r1", "interrupted", 6.0, ended=6.0),
        ]
    )
    first.set_plan("r2", "{}")
    runs, attempts, pauses = first.list_runs(), first.attempts("r1"), first.pauses("r1")
    records = [first.get_run("r1"), first.get_run("r2")]
    first.close()
    first.close()  # idempotent
    with pytest.raises(StoreError, match="closed"):
        first.get_run("r1")

    for later in (backend.open(create=False), backend.open(readonly=True)):
        assert runs == later.list_runs()
        assert attempts == later.attempts("r1")
        assert pauses == later.pauses("r1")
        assert records == [later.get_run("r1"), later.get_run("r2")]
        later.close()


def test_a_read_only_store_refuses_writes(backend: Backend) -> None:
    backend.open().create_run(record())
    reader = backend.open(readonly=True)
    calls: list[Callable[[], object]] = [
        lambda: reader.create_run(record("r2")),
        lambda: reader.set_plan("r1", "{}"),
        lambda: reader.apply([AttemptStarted("r1", "a", 1, 1.0)]),
        lambda: reader.lock_run("r1"),
    ]
    for call in calls:
        with pytest.raises(StoreError, match="read-only"):
            call()
    assert record() == reader.get_run("r1")


def test_a_missing_store_is_not_created_unless_asked(backend: Backend) -> None:
    for kwargs in ({"create": False}, {"readonly": True}):
        with pytest.raises(StoreError) as caught:
            backend.open(**kwargs)
        assert "\n" not in str(caught.value)
    assert [] == backend.open().list_runs()  # and nothing half-made stands in the way


def execute_raw(backend: Backend, statement: str) -> None:
    """Run SQL on the backend's database behind the store's back."""
    if backend.name == "sqlite":
        path = Path(backend.spec["path"])
        path.parent.mkdir(parents=True, exist_ok=True)
        with sqlite3.connect(path) as conn:
            conn.execute(statement)
        conn.close()
        return
    with psycopg.connect(backend.spec["url"], autocommit=True) as server:
        schema = sql.Identifier(backend.spec["schema"])
        server.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(schema))
        server.execute(sql.SQL("SET search_path TO {}").format(schema))
        server.execute(statement.encode())


# -- integrations -------------------------------------------------------------------------


def test_integrations_round_trip_and_replace_by_run_branch_and_subplan(backend: Backend) -> None:
    store = backend.open()
    store.create_run(record())
    store.create_run(record("r2"))
    assert [] == store.integrations("r1")  # a store that never integrated has no table yet
    rows = [
        IntegrationRow("r1", "main-int", "sp-b", "conflicted", 2.0, None, ("x.py",), "git said"),
        IntegrationRow("r1", "main-int", "sp-a", "integrated", 1.0, "c" * 40, ("a.py", "b.py")),
        IntegrationRow("r1", "other", "sp-a", "dropped", 3.0, detail="exit 1"),
        IntegrationRow("r2", "main-int", "sp-a", "failed_verify", 4.0),
    ]
    store.record_integrations(rows)
    assert [rows[1], rows[0], rows[2]] == store.integrations("r1")
    again = IntegrationRow("r1", "main-int", "sp-b", "integrated", 5.0, "d" * 40, ("x.py",))
    store.record_integrations([again])
    assert [rows[1], again, rows[2]] == store.integrations("r1")
    assert [rows[3]] == store.integrations("r2")
    store.record_integrations([])  # nothing
    store.close()
    for later in (backend.open(create=False), backend.open(readonly=True)):
        assert [rows[1], again, rows[2]] == later.integrations("r1")
    with pytest.raises(StoreError, match="read-only"):
        backend.open(readonly=True).record_integrations([again])


def test_an_integration_of_an_unknown_run_records_nothing(backend: Backend) -> None:
    store = backend.open()
    store.create_run(record())
    mixed = [
        IntegrationRow("r1", "b", "sp-a", "integrated", 1.0),
        IntegrationRow("nope", "b", "sp-a", "integrated", 1.0),
    ]
    with pytest.raises(UnknownRunError):
        store.record_integrations(mixed)
    assert [] == store.integrations("r1")


def test_a_store_with_integrations_keeps_its_schema_version(backend: Backend) -> None:
    store = backend.open()
    store.create_run(record())
    store.record_integrations([IntegrationRow("r1", "b", "sp-a", "integrated", 1.0)])
    store.close()
    # The table is optional: the version stays, so earlier releases open it as before...
    execute_raw(backend, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(StoreVersionError):
        backend.open()
    execute_raw(backend, "UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    # ...and a database of an earlier release (no table) integrates after it opens.
    execute_raw(backend, "DROP TABLE integrations")
    store = backend.open()
    assert [] == store.integrations("r1")
    store.record_integrations([IntegrationRow("r1", "b", "sp-a", "dropped", 2.0)])
    assert ["dropped"] == [r.status for r in store.integrations("r1")]


def test_another_schema_version_is_refused_and_left_alone(backend: Backend) -> None:
    backend.open().close()
    execute_raw(backend, "UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    for kwargs in ({}, {"create": False}, {"readonly": True}):
        with pytest.raises(StoreVersionError) as caught:
            backend.open(**kwargs)
        assert (99, 1) == (caught.value.found, caught.value.supported)
        assert "has schema version 99, this subplan supports 1: upgrade subplan" in str(
            caught.value
        )
        assert "\n" not in str(caught.value)
    execute_raw(backend, "UPDATE meta SET value = '1' WHERE key = 'schema_version'")
    assert [] == backend.open().list_runs()  # nothing was changed or recreated


def test_tables_of_another_application_are_refused(backend: Backend) -> None:
    execute_raw(backend, "CREATE TABLE users (id integer PRIMARY KEY, name text)")
    execute_raw(backend, "INSERT INTO users (id, name) VALUES (1, 'ada')")
    with pytest.raises(StoreCorruptError) as caught:
        backend.open()
    assert "users" in str(caught.value)
    assert "not" in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        pytest.param(
            "UPDATE meta SET value = 'one' WHERE key = 'schema_version'",
            "no valid schema_version in its meta table",
            id="bad-version",
        ),
        pytest.param("DROP TABLE pauses", "lacks the tables pauses", id="missing-table"),
        pytest.param(
            "UPDATE meta SET value = 'other' WHERE key = 'application'", "", id="no-marker"
        ),
    ],
)
def test_a_damaged_store_is_refused(backend: Backend, damage: str, message: str) -> None:
    backend.open().close()
    execute_raw(backend, damage)
    with pytest.raises(StoreCorruptError) as caught:
        backend.open()
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_meta_table_of_another_shape_is_not_ours(backend: Backend) -> None:
    execute_raw(backend, "CREATE TABLE meta (name text, setting text)")
    with pytest.raises(StoreCorruptError) as caught:
        backend.open()
    assert "not" in str(caught.value)


def test_malformed_json_in_a_run_is_corruption(store: Store, backend: Backend) -> None:
    store.create_run(record())
    execute_raw(backend, "UPDATE runs SET config_json = '{' WHERE run_id = 'r1'")
    with pytest.raises(StoreCorruptError, match="run 'r1' has malformed JSON in config_json"):
        store.get_run("r1")


def test_something_that_is_not_a_write_is_refused(store: Store) -> None:
    store.create_run(record())
    bad: list[object] = [AttemptStarted("r1", "a", 1, 1.0), "not a write"]
    with pytest.raises(TypeError, match="not a store write: str"):
        store.apply(bad)  # type: ignore[arg-type]
    assert [] == store.attempts("r1")


# -- run locks ----------------------------------------------------------------------------


def test_a_run_lock_is_exclusive_until_released(backend: Backend) -> None:
    one, two = backend.open(), backend.open()
    lock = one.lock_run("r1")
    host = socket.gethostname()
    assert lock.holder.startswith(f"pid {os.getpid()} on {host} since ")
    for store in (two, one):  # another connection, and the same store again
        with pytest.raises(RunLockedError) as caught:
            store.lock_run("r1")
        assert "r1" == caught.value.run_id
        assert lock.holder == caught.value.holder
        assert f"run 'r1' is being run by {lock.holder}" == str(caught.value)
    other = two.lock_run("r2")  # other runs are not affected
    assert "held" in repr(lock)
    lock.release()
    assert "released" in repr(lock)
    assert backend.name in repr(one).lower().replace("sqlitestore", "sqlite").replace(
        "postgresstore", "postgresql"
    )
    lock.release()  # idempotent
    again = two.lock_run("r1")
    with pytest.raises(RunLockedError):
        one.lock_run("r1")
    again.release()
    other.release()


def test_closing_the_store_keeps_its_locks(backend: Backend) -> None:
    one = backend.open()
    lock = one.lock_run("r1")
    one.close()
    with pytest.raises(RunLockedError):
        backend.open().lock_run("r1")
    lock.release()
    backend.open().lock_run("r1").release()


def test_a_run_lock_admits_one_holder_at_a_time(backend: Backend) -> None:
    """Threads with their own store objects race for one lock; holds never overlap."""
    stores = [backend.open() for _ in range(6)]
    log: list[tuple[str, int]] = []
    log_lock = threading.Lock()
    refused = [0]
    errors: list[BaseException] = []
    start = threading.Barrier(len(stores))

    def contend(i: int, store: Store) -> None:
        try:
            start.wait(LIMIT)
            for _ in range(15):
                try:
                    lock = store.lock_run("r1")
                except RunLockedError:
                    with log_lock:
                        refused[0] += 1
                    continue
                with log_lock:
                    log.append(("enter", i))
                time.sleep(0.002)  # widen the window in which an overlap would show
                with log_lock:
                    log.append(("leave", i))
                lock.release()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=contend, args=(i, s)) for i, s in enumerate(stores)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIMIT * 3)
    assert [] == errors
    assert_one_holder_at_a_time(log)
    assert log, "nobody ever held the lock"
    assert refused[0] > 0, "the threads never contended"


def assert_one_holder_at_a_time(log: Sequence[tuple[str, int]]) -> None:
    holder: int | None = None
    for event, who in log:
        if event == "enter":
            assert holder is None, f"{who} entered while {holder} held the lock"
            holder = who
        else:
            assert holder == who, f"{who} left while {holder} held the lock"
            holder = None


CHILD = """
import sys, time
from conftest import open_spec
spec = dict(arg.split("=", 1) for arg in sys.argv[1:])
lock = open_spec(spec).lock_run(spec.pop("run_id"))
print("locked", flush=True)
time.sleep(600)
"""


def test_a_killed_holder_leaves_the_lock_free(backend: Backend) -> None:
    here = str(Path(__file__).parent)
    args = [f"{k}={v}" for k, v in {**backend.spec, "run_id": "r1"}.items()]
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, *args],
        cwd=here,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([here, *sys.path])},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert child.stdout is not None
        timer = threading.Timer(LIMIT * 3, child.kill)  # a hung child fails the test
        timer.start()
        line = child.stdout.readline()
        timer.cancel()
        assert "locked\n" == line
        store = backend.open()
        with pytest.raises(RunLockedError) as caught:
            store.lock_run("r1")
        assert caught.value.holder is not None
        assert caught.value.holder.startswith(f"pid {child.pid} on ")
        child.send_signal(signal.SIGKILL)
        child.wait(LIMIT)

        def take() -> object | None:
            try:
                return store.lock_run("r1")
            except RunLockedError:
                return None

        lock = wait_for(take, "the lock of a SIGKILLed holder was not free", limit=5.0)
        assert isinstance(lock.holder, str)  # type: ignore[attr-defined]
        lock.release()  # type: ignore[attr-defined]
    finally:
        child.kill()
        child.wait()
        if child.stdout is not None:
            child.stdout.close()


# -- the reference model --------------------------------------------------------------------


@dataclasses.dataclass
class Model:
    """The fencing rules of ``_base.py``, one write at a time."""

    run: RunRecord
    attempts: dict[tuple[str, int], AttemptRow] = dataclasses.field(default_factory=dict)
    pauses: list[PauseRow] = dataclasses.field(default_factory=list)

    def apply(self, w: Write) -> bool:
        """Apply ``w``; False when fencing rejects it."""
        if isinstance(w, RunStatusChanged):
            self.run = dataclasses.replace(
                self.run,
                status=w.status,
                updated=w.at,
                ended=w.ended,
                host=self.run.host if w.host is None else w.host,
                pid=self.run.pid if w.pid is None else w.pid,
            )
            return True
        if isinstance(w, PauseRecorded):
            row = PauseRow(w.run_id, w.started, w.ends, w.reason, w.source, w.subplan_id)
            if self.pauses and self.pauses[-1].started == w.started:
                self.pauses[-1] = row
            else:
                self.pauses.append(row)
            return True
        if isinstance(w, EpochFence):
            return True  # the model keeps no epochs: its batches carry none
        key = (w.subplan_id, w.number)
        current = self.attempts.get(key)
        if isinstance(w, AttemptStarted):
            if current is not None:
                return False
            self.attempts[key] = AttemptRow(
                w.run_id, w.subplan_id, w.number, "running", w.dispatched
            )
            return True
        if current is None or current.status != "running":
            return False
        if isinstance(w, AttemptProcess):
            self.attempts[key] = dataclasses.replace(
                current,
                pid=current.pid if w.pid is None else w.pid,
                pgid=current.pgid if w.pgid is None else w.pgid,
            )
        else:
            self.attempts[key] = dataclasses.replace(
                current,
                status=w.status,
                ended=w.ended,
                started=w.started,
                exit_code=w.exit_code,
                error=w.error,
                error_type=w.error_type,
                rate_limit=w.rate_limit,
                cost=w.cost,
                passed=w.passed,
                charged=w.charged,
                detail=w.detail,
            )
        return True


RUN = "R"  # replaced by each example's own run id
times = st.floats(allow_nan=False, allow_infinity=False)
ints = st.none() | st.integers(-(2**31), 2**31)
# stored as they are: no NUL, no lone surrogate (test_unstorable_characters_are_replaced)
storable = st.characters(codec="utf-8", exclude_characters="\0")
texts = st.none() | st.text(storable, max_size=8)
subplans = st.sampled_from(["a", "b", "ä"])
# few attempts, so that writes meet the same attempt often
keys = st.sampled_from([("a", 1), ("a", 2), ("ä", 1)])
final: list[StoredAttemptStatus] = [
    "succeeded",
    "failed",
    "timed_out",
    "cancelled",
    "rate_limited",
    "crashed",
    "interrupted",
]
ended_statuses = st.sampled_from(final)


@st.composite
def started(draw: st.DrawFn) -> AttemptStarted:
    return AttemptStarted(RUN, *draw(keys), draw(times))


@st.composite
def process(draw: st.DrawFn) -> AttemptProcess:
    return AttemptProcess(RUN, *draw(keys), pid=draw(ints), pgid=draw(ints))


@st.composite
def ended(draw: st.DrawFn) -> AttemptEnded:
    return AttemptEnded(
        RUN,
        *draw(keys),
        draw(ended_statuses),
        draw(times),
        started=draw(st.none() | times),
        exit_code=draw(ints),
        error=draw(texts),
        error_type=draw(texts),
        rate_limit=draw(texts),
        cost=draw(st.none() | times),
        passed=draw(st.none() | st.booleans()),
        charged=draw(st.booleans()),
        detail=draw(texts),
    )


pause = st.builds(
    PauseRecorded,
    st.just(RUN),
    st.sampled_from([1.0, 2.0, -0.5]),
    times,
    st.text(storable, max_size=4),
    st.sampled_from(["text", "json"]),
    st.none() | subplans,
)
run_status = st.builds(
    RunStatusChanged,
    st.just(RUN),
    st.sampled_from(["running", "succeeded", "failed", "cancelled", "interrupted"]),
    times,
    ended=st.none() | times,
    host=st.none() | st.sampled_from(["h1", "h2"]),
    pid=st.none() | st.integers(0, 2**31),
)
# attempt writes come three times as often as pauses and run statuses
attempt_kinds: list[st.SearchStrategy[Write]] = [started(), process(), ended()]
kinds = attempt_kinds * 3 + [pause, run_status]
writes = st.sampled_from(kinds).flatmap(lambda kind: kind)


# a write and whether its batch ends after it; long sequences, so that several writes meet
# the same attempt across batches (hypothesis's own lists are short on average)
steps = st.integers(0, 40).flatmap(
    lambda n: st.lists(st.tuples(writes, st.booleans()), min_size=n, max_size=n)
)


def test_random_batches_match_the_model(backend: Backend) -> None:
    store = backend.open()
    examples = 100 if backend.name == "postgresql" else 150

    @settings(
        max_examples=examples,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow],
    )
    @given(steps)
    def check(steps: list[tuple[Write, bool]]) -> None:
        """Each write comes with whether its batch ends after it."""
        run_id = f"run-{uuid.uuid4().hex}"
        model = Model(record(run_id))
        store.create_run(model.run)
        batches: list[list[Write]] = [[]]
        expected_rejected: list[Write] = []
        for w, cut in steps:
            w = dataclasses.replace(w, run_id=run_id)
            if not model.apply(w):
                expected_rejected.append(w)
            batches[-1].append(w)
            if cut:
                batches.append([])

        rejected = [w for batch in batches for w in store.apply(batch)]
        assert expected_rejected == rejected
        assert sorted(model.attempts.values(), key=lambda a: (a.subplan_id, a.number)) == (
            store.attempts(run_id)
        )
        assert model.pauses == store.pauses(run_id)
        assert model.run == store.get_run(run_id)

    check()


# -- PostgreSQL without a server ----------------------------------------------------------


def test_an_unreachable_server_is_one_line_without_the_password() -> None:
    url = "postgresql://ci:s3cret@127.0.0.1:1/runs?sslmode=disable"
    with pytest.raises(StoreConnectError) as caught:
        open_store(url, Path())
    text = str(caught.value)
    assert text.startswith("cannot connect to PostgreSQL at 127.0.0.1:1, database runs: ")
    assert "s3cret" not in text
    assert "\n" not in text
    assert "postgresql://ci@127.0.0.1:1/runs?sslmode=disable" == caught.value.location


def test_a_malformed_url_is_a_config_error_without_the_password() -> None:
    with pytest.raises(ConfigError) as caught:
        PostgresStore("postgresql://ci:s3%zzcret@db/runs")
    assert (
        'malformed PostgreSQL URL postgresql://ci@db/runs: invalid percent-encoded token: "***"'
        == str(caught.value)
    )


def test_without_psycopg_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg raises ImportError
    with pytest.raises(StoreConnectError) as caught:
        open_store("postgres://db/runs", Path())
    assert "the PostgreSQL store needs psycopg: pip install 'subplan[postgres]'" == str(
        caught.value
    )


def test_an_invalid_schema_name_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="invalid PostgreSQL schema name ''"):
        PostgresStore("postgresql://db/runs", schema="")


def test_a_malformed_url_without_a_password() -> None:
    with pytest.raises(ConfigError, match='invalid URI query parameter: "bogus"'):
        PostgresStore("postgresql://db/runs?bogus=1")


# -- PostgreSQL only ------------------------------------------------------------------------


def admin(url: str) -> psycopg.Connection[tuple[Any, ...]]:
    return psycopg.connect(url, autocommit=True)


def tagged(url: str) -> tuple[str, str]:
    """``url`` naming its sessions uniquely (``application_name``), and that name."""
    name = f"subplan-test-{uuid.uuid4().hex[:12]}"
    return conninfo.make_conninfo(url, application_name=name), name


def test_a_store_reconnects_after_losing_its_connection(
    postgres_url: str, postgres_schema: str
) -> None:
    url, name = tagged(postgres_url)
    store = PostgresStore(url, schema=postgres_schema)
    store.create_run(record())
    lock = store.lock_run("r1")
    with admin(postgres_url) as conn:  # the server ends the store's sessions
        ended = conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = %s",
            (name,),
        ).fetchall()
    assert [(True,), (True,)] == ended
    with pytest.raises(StoreConnectError) as caught:
        store.get_run("r1")
    assert "\n" not in str(caught.value)
    assert record() == store.get_run("r1")  # the next call opens a new connection
    lock.release()  # quietly: the lock went with its session
    store.lock_run("r1").release()
    store.close()


def test_a_user_without_create_rights_gets_a_connect_error(
    postgres_url: str, postgres_schema: str
) -> None:
    role = f"subplan_{uuid.uuid4().hex[:12]}"
    with admin(postgres_url) as conn:  # a role has no CREATE on the database by default
        conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(sql.Identifier(role)))
    try:
        url = conninfo.make_conninfo(postgres_url, user=role)
        with pytest.raises(StoreConnectError) as caught:
            PostgresStore(url, schema=postgres_schema)
        assert "permission denied" in str(caught.value)
        assert "\n" not in str(caught.value)
    finally:
        with admin(postgres_url) as conn:
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))


def test_stores_created_at_once_agree(postgres_url: str, postgres_schema: str) -> None:
    errors: list[BaseException] = []
    start = threading.Barrier(6)

    def create(i: int) -> None:
        try:
            start.wait(LIMIT)
            store = PostgresStore(postgres_url, schema=postgres_schema)
            store.create_run(record(f"r{i}"))
            store.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIMIT * 3)
    assert [] == errors
    store = PostgresStore(postgres_url, schema=postgres_schema, create=False)
    assert {f"r{i}" for i in range(6)} == {r.run_id for r in store.list_runs()}
    store.close()


def test_an_attempt_inserted_concurrently_is_fenced(
    postgres_url: str, postgres_schema: str
) -> None:
    """Another session inserts the attempt after the batch read it was missing."""
    url, name = tagged(postgres_url)
    store = PostgresStore(url, schema=postgres_schema)
    store.create_run(record())
    other = admin(postgres_url)
    other.execute(sql.SQL("SET search_path TO {}").format(sql.Identifier(postgres_schema)))
    other.execute("BEGIN")
    other.execute(
        "INSERT INTO attempts (run_id, subplan_id, number, status, dispatched) "
        "VALUES ('r1', 'a', 1, 'running', 9.0)"
    )
    late = AttemptStarted("r1", "a", 1, 1.0)
    result: list[list[Write]] = []
    applying = threading.Thread(target=lambda: result.append(store.apply([late])))
    applying.start()
    try:

        def waiting() -> bool | None:  # the batch waits for the other insert to end
            with admin(postgres_url) as conn:
                row = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE application_name = %s "
                    "AND wait_event_type = 'Lock'",
                    (name,),
                ).fetchone()
            return True if row and row[0] else None

        wait_for(waiting, "the batch did not wait for the concurrent insert")
        other.execute("COMMIT")
        applying.join(LIMIT)
        assert [[late]] == result
        assert [AttemptRow("r1", "a", 1, "running", 9.0)] == store.attempts("r1")
    finally:
        other.close()
        applying.join(LIMIT)
        store.close()


def test_a_refused_statement_is_one_line(postgres_url: str, postgres_schema: str) -> None:
    store = PostgresStore(postgres_url, schema=postgres_schema)
    with pytest.raises(StoreError) as caught:  # PostgreSQL text cannot hold NUL
        store.create_run(record(host="a\0b"))
    assert str(caught.value).startswith("cannot write to PostgreSQL at ")
    assert "\n" not in str(caught.value)
    with store.lock_run("r1") as lock:  # the lock is a context manager too
        assert "held" in repr(lock)
    assert "released" in repr(lock)
    store.close()


def test_the_holder_of_a_run_can_be_seen_without_taking_the_lock(backend: Backend) -> None:
    writer = backend.open()
    writer.create_run(record("r1"))
    other = backend.open()
    assert other.run_holder("r1") is None
    lock = writer.lock_run("r1")
    try:
        seen = other.run_holder("r1")
        assert seen is not None
        assert f"pid {os.getpid()}" in seen
        assert other.run_holder("r2") is None  # another run is free
        with pytest.raises(RunLockedError):  # looking did not take or break it
            other.lock_run("r1")
    finally:
        lock.release()
    assert other.run_holder("r1") is None
