"""What the SQLite and PostgreSQL stores share: the columns, the run listing query, rows
turned into records, and the reads (the same SQL but for the placeholder).

A store class puts :class:`SqlReads` first in its bases and provides ``_reading(action)``
(a connection for reads), ``_writing(action)`` (one transaction), ``location`` and its
placeholder, ``_P``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import AbstractContextManager
from typing import Any, ClassVar, cast

from .._errors import StoreCorruptError, UnknownRunError
from ._base import (
    AttemptRow,
    IntegrationRow,
    IntegrationStatus,
    PauseRow,
    RunInfo,
    RunRecord,
    RunStatus,
    RunStatusChanged,
    SessionRow,
    StoredAttemptStatus,
    clean_text,
)

__all__ = [
    "ATTEMPT_COLUMNS",
    "INTEGRATIONS_TABLE",
    "LIST_RUNS_SQL",
    "LOCK_EPOCH_COLUMN",
    "RUN_COLUMNS",
    "SESSIONS_TABLE",
    "SqlReads",
    "attempt_from_row",
    "runs_from_rows",
]

RUN_COLUMNS = (
    "run_id, status, created, updated, ended, plan_json, config_json, command_json, host, pid"
)
ATTEMPT_COLUMNS = (
    "run_id, subplan_id, number, status, dispatched, started, ended, pid, pgid, exit_code, "
    "error, error_type, rate_limit, cost, passed, charged, detail, changed"
)
# Added after schema version 1 without changing it: the table is optional, made by the
# first integration written (CREATE ... IF NOT EXISTS, in that write's transaction), and
# a store without it has simply integrated nothing. So databases of earlier releases open
# as before, and earlier releases still open databases that have it (they check only the
# tables they need).
INTEGRATIONS_TABLE = """CREATE TABLE IF NOT EXISTS integrations (
    run_id     TEXT NOT NULL REFERENCES runs (run_id),
    branch     TEXT NOT NULL,
    subplan_id TEXT NOT NULL,
    status     TEXT NOT NULL,
    at         DOUBLE PRECISION NOT NULL,
    commit_sha TEXT,
    files      TEXT NOT NULL,
    detail     TEXT,
    PRIMARY KEY (run_id, branch, subplan_id)
)"""
# Added after schema version 1 in the same way as ``integrations``: made by the first
# session written; a run without rows (an earlier release's) counts as one session. No
# foreign key: creating one would lock ``runs`` while other transactions write it (a
# deadlock with a concurrent create_run on PostgreSQL); rows are only written together
# with their run's row anyway.
SESSIONS_TABLE = """CREATE TABLE IF NOT EXISTS sessions (
    run_id  TEXT NOT NULL,
    started DOUBLE PRECISION NOT NULL,
    ended   DOUBLE PRECISION,
    host    TEXT NOT NULL,
    pid     BIGINT NOT NULL,
    PRIMARY KEY (run_id, started)
)"""
_INTEGRATION_COLUMNS = "run_id, branch, subplan_id, status, at, commit_sha, files, detail"
# Added after schema version 1 without changing it, like the integrations table: new
# databases have it from the start, older ones get it with their first epoch bump.
LOCK_EPOCH_COLUMN = "ALTER TABLE runs ADD COLUMN lock_epoch BIGINT NOT NULL DEFAULT 0"

# Subplans counted by the status of their highest-numbered attempt, per run, in one query.
LIST_RUNS_SQL = """
WITH ranked AS (
    SELECT run_id, status,
           row_number() OVER (PARTITION BY run_id, subplan_id ORDER BY number DESC) AS rank
    FROM attempts
),
latest AS (
    SELECT run_id, status, count(*) AS n FROM ranked WHERE rank = 1 GROUP BY run_id, status
),
counts AS (
    SELECT run_id, count(*) AS n FROM attempts GROUP BY run_id
)
SELECT r.run_id, r.status, r.created, r.updated, r.ended, r.host, r.pid,
       coalesce(c.n, 0), l.status, l.n
FROM runs r
LEFT JOIN counts c ON c.run_id = r.run_id
LEFT JOIN latest l ON l.run_id = r.run_id
ORDER BY r.created DESC, r.run_id DESC, l.status
"""


def attempt_from_row(row: Sequence[Any]) -> AttemptRow:
    """An :class:`AttemptRow` from a row of ``ATTEMPT_COLUMNS``."""
    return AttemptRow(
        run_id=row[0],
        subplan_id=row[1],
        number=row[2],
        status=cast(StoredAttemptStatus, row[3]),
        dispatched=row[4],
        started=row[5],
        ended=row[6],
        pid=row[7],
        pgid=row[8],
        exit_code=row[9],
        error=row[10],
        error_type=row[11],
        rate_limit=row[12],
        cost=row[13],
        passed=None if row[14] is None else bool(row[14]),
        charged=bool(row[15]),
        detail=row[16],
        changed=row[17],
    )


def runs_from_rows(rows: Sequence[Sequence[Any]]) -> list[RunInfo]:
    """:class:`RunInfo` objects from the rows of :data:`LIST_RUNS_SQL`, in their order."""
    runs: dict[str, tuple[Sequence[Any], dict[str, int]]] = {}
    for row in rows:
        entry = runs.get(row[0])
        if entry is None:
            entry = runs[row[0]] = (row, {})
        if row[8] is not None:
            entry[1][row[8]] = row[9]
    return [
        RunInfo(
            run_id=row[0],
            status=cast(RunStatus, row[1]),
            created=row[2],
            updated=row[3],
            ended=row[4],
            host=row[5],
            pid=row[6],
            attempts=row[7],
            latest=latest,
        )
        for row, latest in runs.values()
    ]


class SqlReads:
    """The reads (and the plan update) of a SQL store; see the module docstring."""

    __slots__ = ()
    _P: ClassVar[str]  # the driver's placeholder: "?" or "%s"
    location: str

    def _reading(self, action: str) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _writing(self, action: str) -> AbstractContextManager[Any]:
        raise NotImplementedError

    def _has_table(self, conn: Any, name: str) -> bool:
        raise NotImplementedError

    def _has_column(self, conn: Any, table: str, column: str) -> bool:
        raise NotImplementedError

    def _ensure_lock_epoch(self, conn: Any) -> None:
        """Add the runs table's ``lock_epoch`` column to a database of an earlier release."""
        if not self._has_column(conn, "runs", "lock_epoch"):
            self._before_ddl(conn)
            if not self._has_column(conn, "runs", "lock_epoch"):
                conn.execute(LOCK_EPOCH_COLUMN)

    def bump_lock_epoch(self, run_id: str) -> int:
        """Add one to the run's lock epoch and return it (see ``_base``). Raises
        UnknownRunError."""
        with self._writing("write to") as conn:
            self._ensure_lock_epoch(conn)
            cursor = conn.execute(
                f"UPDATE runs SET lock_epoch = lock_epoch + 1 WHERE run_id = {self._P}",  # noqa: S608
                (run_id,),
            )
            if cursor.rowcount == 0:
                raise UnknownRunError(run_id, location=self.location)
            row = conn.execute(
                f"SELECT lock_epoch FROM runs WHERE run_id = {self._P}",  # noqa: S608 - constant
                (run_id,),
            ).fetchone()
        return int(row[0])

    def _epochs(self, conn: Any, writes: Sequence[Any], lock: str = "") -> dict[str, int]:
        """The stored lock epochs of the runs the batch's fences name (rows locked)."""
        from ._base import EpochFence

        wanted = sorted({w.run_id for w in writes if isinstance(w, EpochFence)})
        epochs: dict[str, int] = {}
        if not wanted or not self._has_column(conn, "runs", "lock_epoch"):
            return epochs  # never bumped: every run's epoch is 0
        for run_id in wanted:
            row = conn.execute(
                f"SELECT lock_epoch FROM runs WHERE run_id = {self._P}{lock}",  # noqa: S608
                (run_id,),
            ).fetchone()
            if row is not None:
                epochs[run_id] = int(row[0])
        return epochs

    def _before_ddl(self, conn: Any) -> None:
        """Serialise schema changes with other processes (PostgreSQL); SQLite's
        ``BEGIN IMMEDIATE`` does already."""

    def _require_run(self, conn: Any, run_id: str) -> None:
        sql = f"SELECT 1 FROM runs WHERE run_id = {self._P}"  # noqa: S608 - constant
        if conn.execute(sql, (run_id,)).fetchone() is None:
            raise UnknownRunError(run_id, location=self.location)

    def _json(self, text: str, run_id: str, column: str) -> Any:
        try:
            return json.loads(text)
        except ValueError:
            raise StoreCorruptError(
                f"{self.location}: run {run_id!r} has malformed JSON in {column}",
                location=self.location,
            ) from None

    def get_run(self, run_id: str) -> RunRecord:
        """The run. Raises UnknownRunError."""
        with self._reading("read") as conn:
            row = conn.execute(
                f"SELECT {RUN_COLUMNS} FROM runs WHERE run_id = {self._P}",  # noqa: S608 - constant
                (run_id,),
            ).fetchone()
        if row is None:
            raise UnknownRunError(run_id, location=self.location)
        config = self._json(row[6], run_id, "config_json")
        command = None if row[7] is None else self._json(row[7], run_id, "command_json")
        return RunRecord(
            run_id=row[0],
            status=cast(RunStatus, row[1]),
            created=row[2],
            updated=row[3],
            ended=row[4],
            plan_json=row[5],
            config=config,
            command=None if command is None else tuple(command),
            host=row[8],
            pid=row[9],
        )

    def list_runs(self) -> list[RunInfo]:
        """Every run, newest first, with its subplans counted by their latest attempt."""
        with self._reading("read") as conn:
            rows = conn.execute(LIST_RUNS_SQL).fetchall()
        return runs_from_rows(rows)

    def set_plan(self, run_id: str, plan_json: str) -> None:
        """Replace a run's plan. Raises UnknownRunError."""
        with self._writing("write to") as conn:
            cursor = conn.execute(
                f"UPDATE runs SET plan_json = {self._P} WHERE run_id = {self._P}",  # noqa: S608
                (plan_json, run_id),
            )
            if cursor.rowcount == 0:
                raise UnknownRunError(run_id, location=self.location)

    def attempts(self, run_id: str) -> list[AttemptRow]:
        """Every attempt of the run, by subplan id then number. Raises UnknownRunError."""
        with self._reading("read") as conn:
            rows = conn.execute(
                f"SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE run_id = {self._P} "  # noqa: S608
                "ORDER BY subplan_id, number",
                (run_id,),
            ).fetchall()
            if not rows:
                self._require_run(conn, run_id)
        return [attempt_from_row(row) for row in rows]

    def pauses(self, run_id: str) -> list[PauseRow]:
        """Every pause of the run, in order. Raises UnknownRunError."""
        with self._reading("read") as conn:
            rows = conn.execute(
                "SELECT run_id, started, ends, reason, source, subplan_id FROM pauses "  # noqa: S608
                f"WHERE run_id = {self._P} ORDER BY seq",
                (run_id,),
            ).fetchall()
            if not rows:
                self._require_run(conn, run_id)
        return [PauseRow(*row) for row in rows]

    def _record_sessions(self, conn: Any, statuses: Sequence[RunStatusChanged]) -> None:
        """Open a session for each change to ``running`` (a run or resume taking the
        run) and close the latest at each end, in the caller's transaction."""
        p = self._P
        opens = any(w.status == "running" and w.ended is None for w in statuses)
        if opens and not self._has_table(conn, "sessions"):
            self._before_ddl(conn)
            conn.execute(SESSIONS_TABLE)
        for w in statuses:
            if w.status == "running" and w.ended is None:
                conn.execute(
                    "INSERT INTO sessions (run_id, started, ended, host, pid) "  # noqa: S608
                    f"VALUES ({p}, {p}, NULL, {p}, {p}) ON CONFLICT DO NOTHING",
                    (w.run_id, w.at, w.host or "", w.pid or 0),
                )
            elif w.ended is not None and self._has_table(conn, "sessions"):
                # Only the latest: an earlier open one is a session whose orchestrator
                # died; it ends at its last activity (see ``sessions_of``), not now.
                conn.execute(
                    f"UPDATE sessions SET ended = {p} "  # noqa: S608 - constant
                    f"WHERE run_id = {p} AND ended IS NULL AND started = "
                    f"(SELECT max(started) FROM sessions WHERE run_id = {p})",
                    (w.ended, w.run_id, w.run_id),
                )

    def sessions(self, run_id: str) -> list[SessionRow]:
        """The run's sessions by start. Raises UnknownRunError."""
        with self._reading("read") as conn:
            self._require_run(conn, run_id)
            if not self._has_table(conn, "sessions"):
                return []
            rows = conn.execute(
                "SELECT run_id, started, ended, host, pid FROM sessions "  # noqa: S608
                f"WHERE run_id = {self._P} ORDER BY started",
                (run_id,),
            ).fetchall()
        return [SessionRow(*row) for row in rows]

    def record_integrations(self, rows: Sequence[IntegrationRow]) -> None:
        """Add or replace integration outcomes (by run, branch, subplan) in one transaction.

        Raises:
            UnknownRunError: a row names a run that does not exist (nothing is recorded).
        """
        batch = list(rows)
        if not batch:
            return
        p = self._P
        upsert = (
            f"INSERT INTO integrations ({_INTEGRATION_COLUMNS}) "  # noqa: S608 - constant
            f"VALUES ({', '.join([p] * 8)}) "
            "ON CONFLICT (run_id, branch, subplan_id) DO UPDATE SET status = excluded.status, "
            "at = excluded.at, commit_sha = excluded.commit_sha, files = excluded.files, "
            "detail = excluded.detail"
        )
        with self._writing("write to") as conn:
            for run_id in dict.fromkeys(r.run_id for r in batch):
                self._require_run(conn, run_id)
            if not self._has_table(conn, "integrations"):
                self._before_ddl(conn)
                conn.execute(INTEGRATIONS_TABLE)
            for r in batch:
                conn.execute(
                    upsert,
                    (
                        r.run_id,
                        r.branch,
                        r.subplan_id,
                        r.status,
                        r.at,
                        r.commit,
                        json.dumps(list(r.files)),
                        clean_text(r.detail),
                    ),
                )

    def integrations(self, run_id: str) -> list[IntegrationRow]:
        """The run's integration outcomes, by branch then subplan id.

        Raises:
            UnknownRunError: no such run.
        """
        with self._reading("read") as conn:
            self._require_run(conn, run_id)
            if not self._has_table(conn, "integrations"):
                return []
            rows = conn.execute(
                f"SELECT {_INTEGRATION_COLUMNS} FROM integrations "  # noqa: S608 - constant
                f"WHERE run_id = {self._P} ORDER BY branch, subplan_id",
                (run_id,),
            ).fetchall()
        return [
            IntegrationRow(
                run_id=row[0],
                branch=row[1],
                subplan_id=row[2],
                status=cast(IntegrationStatus, row[3]),
                at=row[4],
                commit=row[5],
                files=tuple(self._json(row[6], run_id, "integrations.files")),
                detail=row[7],
            )
            for row in rows
        ]
