"""The PostgreSQL state store (psycopg 3): for several orchestrators on several hosts.

It keeps the same tables as the SQLite store, in a schema of their own (``subplan`` by
default), with the same versioning and fencing. Each :meth:`PostgresStore.apply` is one
transaction: the attempts it changes are read ``FOR UPDATE`` first, fencing is decided
on them, and the accepted writes are applied a few set-based statements at a time.

A run lock is a session-level ``pg_try_advisory_lock`` taken on a connection of its own,
held for the lock's life; the holder line is kept in the ``run_locks`` table for others
to read. When the holder dies its connection ends and the server drops the lock.

psycopg is an optional dependency (``pip install 'subplan[postgres]'``), imported only
when a PostgreSQL store is opened.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar, Literal, cast
from urllib.parse import unquote

from .._errors import (
    ConfigError,
    RunExistsError,
    RunLockedError,
    StoreConnectError,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
    UnknownRunError,
)
from .._release import ReleasedOnExit
from ._base import (
    SCHEMA_VERSION,
    AttemptEnded,
    AttemptKey,
    AttemptProcess,
    AttemptStarted,
    RunRecord,
    RunStatusChanged,
    Write,
    check_epochs,
    clean_text,
    expect_updated,
    fence,
    run_ids_of,
)
from ._lockfile import holder_line
from ._sql import RUN_COLUMNS, SqlReads
from ._url import redact

if TYPE_CHECKING:
    import psycopg

__all__ = ["CONNECT_TIMEOUT", "PostgresRunLock", "PostgresStore", "lock_key"]

CONNECT_TIMEOUT = 10
"""Seconds to wait for a connection (unless the URL sets ``connect_timeout``)."""

APPLICATION = "subplan"
_TABLES = ("meta", "runs", "attempts", "pauses", "run_locks")
_CREATE_KEY = -0x5355_4250_4C41_4E00  # serialises concurrent schema creations
_RETRIES = 3  # transactions retried after a concurrent insert of the same attempt

_SCHEMA = (
    """CREATE TABLE meta (
        key   text PRIMARY KEY,
        value text NOT NULL
    )""",
    # Key columns sort bytewise (COLLATE "C"), like SQLite and Python.
    """CREATE TABLE runs (
        run_id       text COLLATE "C" PRIMARY KEY,
        status       text NOT NULL,
        created      double precision NOT NULL,
        updated      double precision NOT NULL,
        ended        double precision,
        plan_json    text NOT NULL,
        config_json  text NOT NULL,
        command_json text,
        host         text NOT NULL,
        pid          bigint NOT NULL,
        lock_epoch   bigint NOT NULL DEFAULT 0
    )""",
    """CREATE TABLE attempts (
        run_id     text COLLATE "C" NOT NULL REFERENCES runs (run_id),
        subplan_id text COLLATE "C" NOT NULL,
        number     bigint NOT NULL,
        status     text NOT NULL,
        dispatched double precision NOT NULL,
        started    double precision,
        ended      double precision,
        pid        bigint,
        pgid       bigint,
        exit_code  bigint,
        error      text,
        error_type text,
        rate_limit text,
        cost       double precision,
        passed     boolean,
        charged    boolean NOT NULL DEFAULT true,
        detail     text,
        changed    text,
        PRIMARY KEY (run_id, subplan_id, number)
    )""",
    """CREATE TABLE pauses (
        run_id     text COLLATE "C" NOT NULL REFERENCES runs (run_id),
        seq        bigint NOT NULL,
        started    double precision NOT NULL,
        ends       double precision NOT NULL,
        reason     text NOT NULL,
        source     text NOT NULL,
        subplan_id text,
        PRIMARY KEY (run_id, seq)
    )""",
    # Who holds a run lock (the lock itself is an advisory lock); no foreign key: a run is
    # locked before it is created.
    """CREATE TABLE run_locks (
        run_id      text COLLATE "C" PRIMARY KEY,
        holder      text NOT NULL,
        backend_pid integer NOT NULL,
        pid         bigint NOT NULL,
        host        text NOT NULL,
        since       double precision NOT NULL
    )""",
)

_INSERT_STARTED = """
INSERT INTO attempts (run_id, subplan_id, number, status, dispatched)
SELECT v.run_id, v.subplan_id, v.number, 'running', v.dispatched
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::float8[])
     AS v(run_id, subplan_id, number, dispatched)
ON CONFLICT DO NOTHING
"""
_UPDATE_PROCESS = """
UPDATE attempts AS a SET pid = coalesce(v.pid, a.pid), pgid = coalesce(v.pgid, a.pgid)
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::bigint[], %s::bigint[])
     AS v(run_id, subplan_id, number, pid, pgid)
WHERE a.run_id = v.run_id AND a.subplan_id = v.subplan_id AND a.number = v.number
  AND a.status = 'running'
"""
_UPDATE_ENDED = """
UPDATE attempts AS a SET status = v.status, ended = v.ended, started = v.started,
    exit_code = v.exit_code, error = v.error, error_type = v.error_type,
    rate_limit = v.rate_limit, cost = v.cost, passed = v.passed, charged = v.charged,
    detail = v.detail, changed = v.changed
FROM unnest(%s::text[], %s::text[], %s::bigint[], %s::text[], %s::float8[], %s::float8[],
            %s::bigint[], %s::text[], %s::text[], %s::text[], %s::float8[], %s::bool[],
            %s::bool[], %s::text[], %s::text[])
     AS v(run_id, subplan_id, number, status, ended, started, exit_code, error, error_type,
          rate_limit, cost, passed, charged, detail, changed)
WHERE a.run_id = v.run_id AND a.subplan_id = v.subplan_id AND a.number = v.number
  AND a.status = 'running'
"""
_UPDATE_RUN = (
    "UPDATE runs SET status = %s, updated = %s, ended = %s, host = coalesce(%s, host), "
    "pid = coalesce(%s, pid) WHERE run_id = %s"
)
_HOLDER_SQL = """
SELECT l.holder FROM run_locks AS l
WHERE l.run_id = %s AND l.backend_pid IN (
    SELECT k.pid FROM pg_catalog.pg_locks AS k
    WHERE k.locktype = 'advisory' AND k.granted AND k.objsubid = 1
      AND k.classid = %s::bigint::oid AND k.objid = %s::bigint::oid
      AND k.database = (SELECT oid FROM pg_catalog.pg_database
                        WHERE datname = current_database()))
"""


class _Conflict(Exception):
    """Another transaction inserted an attempt this one meant to insert: retry."""


def lock_key(schema: str, run_id: str) -> int:
    """The advisory lock key of a run: 8 bytes of BLAKE2b as a signed bigint.

    Example:
        >>> lock_key("subplan", "r1") == lock_key("subplan", "r1") != lock_key("other", "r1")
        True
    """
    digest = hashlib.blake2b(
        f"subplan run lock\0{schema}\0{run_id}".encode(), digest_size=8
    ).digest()
    return int.from_bytes(digest, "big", signed=True)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__


def _password_of(url: str) -> str | None:
    rest = url.split("://", 1)[-1].split("?", 1)[0]
    userinfo = rest.rpartition("@")[0]
    if ":" in userinfo:
        return userinfo.split(":", 1)[1] or None
    return None


def _import_psycopg() -> Any:
    try:
        import psycopg
    except ImportError as exc:
        raise StoreConnectError(
            "the PostgreSQL store needs psycopg: pip install 'subplan[postgres]'"
        ) from exc
    return psycopg


class PostgresRunLock(ReleasedOnExit):
    """A run lock held on a connection of its own (see :meth:`PostgresStore.lock_run`)."""

    def __init__(self, run_id: str, key: int, conn: psycopg.Connection[Any], holder: str) -> None:
        self.run_id = run_id
        self._key = key
        self._conn: psycopg.Connection[Any] | None = conn
        self._holder = holder
        self._mutex = threading.Lock()

    @property
    def holder(self) -> str:
        """Who holds it: ``pid N on HOST since ISO-TIME``."""
        return self._holder

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock (False once released)."""
        return self._conn is not None

    def check(self) -> str | None:
        """Why the lock is lost (its session ended: a server restart, a cut network), or None.

        The advisory lock lives exactly as long as its session: once the session is gone,
        another orchestrator may take the run, so this one must stop at once.
        """
        with self._mutex:
            conn = self._conn
            if conn is None:
                return None
            try:
                unsigned = self._key & 0xFFFF_FFFF_FFFF_FFFF
                row = conn.execute(
                    "SELECT count(*) FROM pg_catalog.pg_locks WHERE locktype = 'advisory' "
                    "AND granted AND objsubid = 1 AND pid = pg_backend_pid() "
                    "AND classid = %s::bigint::oid AND objid = %s::bigint::oid",
                    (unsigned >> 32, unsigned & 0xFFFF_FFFF),
                ).fetchone()
            except Exception as exc:
                return f"its session ended ({type(exc).__name__}: {str(exc).strip()[:200]})"
        if not row or not row[0]:
            return "the server no longer holds it"
        return None

    def release(self) -> None:
        """Unlock, forget the holder line and close the lock's connection. Idempotent."""
        with self._mutex:
            conn, self._conn = self._conn, None
        if conn is None:
            return
        try:
            # Unlock explicitly: the server drops a closed session's locks only once its
            # backend has exited, a moment after close() returns.
            conn.execute(
                "DELETE FROM run_locks WHERE run_id = %s AND backend_pid = pg_backend_pid()",
                (self.run_id,),
            )
            conn.execute("SELECT pg_advisory_unlock(%s)", (self._key,))
        except Exception:  # noqa: S110 - closing the session releases the lock anyway
            pass
        finally:
            conn.close()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<PostgresRunLock {self.run_id!r} {state} by {self._holder}>"


class PostgresStore(SqlReads):
    """The state store in a PostgreSQL database.

    Calls may come from several threads; they are serialised on one connection, which is
    opened again on the next call after it broke. Each run lock has a connection of its
    own.

    Args:
        url: a ``postgresql://`` (or ``postgres://``) URL; libpq's parameters and
            environment variables (``PGPASSWORD``, ``PGSSLMODE``, ...) apply.
        create: create the schema and its tables when missing.
        readonly: read only: nothing is created, writes raise :class:`~subplan.StoreError`.
        schema: the PostgreSQL schema holding the tables (several stores can share a
            database under different schemas).

    Raises:
        StoreConnectError: psycopg is missing, the server cannot be reached, or the store
            does not exist (``create`` False).
        StoreCorruptError: the schema holds tables that are not subplan's.
        StoreVersionError: a schema version other than :data:`SCHEMA_VERSION`.
        ConfigError: a malformed URL or schema name.

    Example (with a server)::

        store = PostgresStore("postgresql://ci:secret@db.example/runs")
        store.location  # 'postgresql://ci@db.example/runs': never the password
        with store.lock_run("nightly") as lock:
            store.create_run(record)
    """

    kind: Literal["sqlite", "postgresql"]
    location: str

    _P: ClassVar[str] = "%s"

    def __init__(
        self,
        url: str,
        *,
        create: bool = True,
        readonly: bool = False,
        schema: str = "subplan",
    ) -> None:
        self.kind = "postgresql"
        self.location = redact(url)
        self.readonly = readonly
        self.schema = schema
        if not schema or len(schema.encode()) > 63 or "\0" in schema:
            raise ConfigError(f"invalid PostgreSQL schema name {schema!r}")
        self._psycopg = _import_psycopg()
        self._url = url
        try:
            params = self._psycopg.conninfo.conninfo_to_dict(url)
        except self._psycopg.Error as exc:
            reason = _first_line(exc)
            password = _password_of(url)
            if password:
                reason = reason.replace(password, "***").replace(unquote(password), "***")
            raise ConfigError(f"malformed PostgreSQL URL {self.location}: {reason}") from None
        host = params.get("host") or params.get("hostaddr") or "localhost"
        dbname = params.get("dbname") or params.get("user") or "(default)"
        self.target = f"PostgreSQL at {host}:{params.get('port') or 5432}, database {dbname}"
        self._extra = {
            key: value
            for key, value in (
                ("connect_timeout", CONNECT_TIMEOUT),
                ("application_name", "subplan"),
            )
            if key not in params
        }
        self._mutex = threading.RLock()
        self._columns: set[str] = set()  # optional columns seen to exist
        self._conn: psycopg.Connection[Any] | None = self._connect()
        try:
            self._setup(create=create and not readonly)
        except BaseException:
            self.close()
            raise

    # -- connections ----------------------------------------------------------------------

    def _connect(self) -> psycopg.Connection[Any]:
        pg = self._psycopg
        try:
            conn = pg.connect(self._url, autocommit=True, **self._extra)
        except pg.Error as exc:
            raise StoreConnectError(
                f"cannot connect to {self.target}: {_first_line(exc)}", location=self.location
            ) from None
        try:
            conn.execute(pg.sql.SQL("SET search_path TO {}").format(pg.sql.Identifier(self.schema)))
            if self.readonly:
                conn.execute("SET default_transaction_read_only = on")
        except pg.Error as exc:  # pragma: no cover - a server failing right after connecting
            conn.close()
            raise self._error(exc, "set up a session on") from None
        return cast("psycopg.Connection[Any]", conn)

    def _error(self, exc: BaseException, action: str) -> StoreError:
        pg = self._psycopg
        reason = _first_line(exc)
        if isinstance(exc, pg.OperationalError):
            return StoreConnectError(
                f"cannot {action} {self.target}: {reason}", location=self.location
            )
        if isinstance(exc, pg.errors.InsufficientPrivilege):
            return StoreConnectError(
                f"cannot {action} {self.target}: {reason}", location=self.location
            )
        return StoreError(f"cannot {action} {self.target}: {reason}", location=self.location)

    def _connection(self) -> psycopg.Connection[Any]:
        if self._conn is None:
            raise StoreError(f"the store {self.location} is closed", location=self.location)
        if self._conn.broken or self._conn.closed:
            self._conn.close()
            self._conn = self._connect()
        return self._conn

    @contextmanager
    def _reading(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        with self._mutex:
            conn = self._connection()
            try:
                yield conn
            except self._psycopg.Error as exc:
                raise self._error(exc, action) from exc

    @contextmanager
    def _writing(self, action: str) -> Iterator[psycopg.Connection[Any]]:
        with self._reading(action) as conn:
            if self.readonly:
                raise StoreError(
                    f"cannot {action} {self.location}: the store is open read-only",
                    location=self.location,
                )
            with conn.transaction():
                yield conn

    # -- schema ---------------------------------------------------------------------------

    def _tables(self, conn: psycopg.Connection[Any]) -> set[str] | None:
        """The schema's tables, or None when the schema does not exist."""
        if not conn.execute(
            "SELECT 1 FROM pg_catalog.pg_namespace WHERE nspname = %s", (self.schema,)
        ).fetchone():
            return None
        return {
            row[0]
            for row in conn.execute(
                "SELECT c.relname FROM pg_catalog.pg_class c "
                "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname = %s AND c.relkind IN ('r', 'p', 'v', 'm', 'f')",
                (self.schema,),
            )
        }

    def _setup(self, *, create: bool) -> None:
        with self._reading("open") as conn:
            tables = self._tables(conn)
            if tables:
                self._validate(conn, tables)
                return
            if not create:
                raise StoreConnectError(
                    f"no subplan state store in schema {self.schema!r} of {self.target}",
                    location=self.location,
                )
            with conn.transaction():
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_KEY,))
                tables = self._tables(conn)  # another process may have been first
                if tables:
                    self._validate(conn, tables)
                    return
                sql = self._psycopg.sql
                conn.execute(
                    sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(self.schema))
                )
                for statement in _SCHEMA:
                    conn.execute(statement)
                with conn.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO meta (key, value) VALUES (%s, %s)",
                        [("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION))],
                    )

    def _validate(self, conn: psycopg.Connection[Any], tables: set[str]) -> None:
        where = f"schema {self.schema!r} of {self.target}"
        meta: dict[str, str] = {}
        if "meta" in tables:
            try:
                with conn.transaction():
                    meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
            except self._psycopg.errors.UndefinedColumn:
                meta = {}
        if meta.get("application") != APPLICATION:
            shown = ", ".join(sorted(tables)[:5])
            raise StoreCorruptError(
                f"{where} holds tables that are not subplan's ({shown})", location=self.location
            )
        try:
            found = int(meta.get("schema_version", ""))
        except ValueError:
            raise StoreCorruptError(
                f"{where} has no valid schema_version in its meta table", location=self.location
            ) from None
        if found != SCHEMA_VERSION:
            advice = "upgrade subplan" if found > SCHEMA_VERSION else "it needs an older subplan"
            raise StoreVersionError(
                f"{where} has schema version {found}, this subplan supports "
                f"{SCHEMA_VERSION}: {advice}",
                location=self.location,
                found=found,
                supported=SCHEMA_VERSION,
            )
        missing = [name for name in _TABLES if name not in tables]
        if missing:
            raise StoreCorruptError(
                f"{where} lacks the tables {', '.join(missing)}", location=self.location
            )

    def _has_table(self, conn: psycopg.Connection[Any], name: str) -> bool:
        found = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_class c "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s",
            (self.schema, name),
        ).fetchone()
        return found is not None

    def _has_column(self, conn: psycopg.Connection[Any], table: str, column: str) -> bool:
        if column in self._columns:
            return True
        found = conn.execute(
            "SELECT 1 FROM pg_catalog.pg_attribute a "
            "JOIN pg_catalog.pg_class c ON c.oid = a.attrelid "
            "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
            "WHERE n.nspname = %s AND c.relname = %s AND a.attname = %s "
            "AND NOT a.attisdropped",
            (self.schema, table, column),
        ).fetchone()
        if found is not None:
            self._columns.add(column)  # never dropped: remember it
        return found is not None

    def _before_ddl(self, conn: psycopg.Connection[Any]) -> None:
        # Two hosts adding the table at once would otherwise race in the catalog.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_CREATE_KEY,))

    # -- the protocol ---------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        """Add a run. Raises RunExistsError when the id is taken."""
        config_json = json.dumps(dict(run.config))
        command_json = None if run.command is None else json.dumps(list(run.command))
        with self._writing("write to") as conn:
            cursor = conn.execute(
                f"INSERT INTO runs ({RUN_COLUMNS}) VALUES "  # noqa: S608 - constant
                "(%s, %s, %s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    run.run_id,
                    run.status,
                    run.created,
                    run.updated,
                    run.ended,
                    run.plan_json,
                    config_json,
                    command_json,
                    run.host,
                    run.pid,
                ),
            )
            if cursor.rowcount == 0:
                raise RunExistsError(run.run_id, location=self.location)
            if run.status == "running" and run.ended is None:
                self._record_sessions(
                    conn,
                    [
                        RunStatusChanged(
                            run.run_id, run.status, run.created, None, run.host, run.pid
                        )
                    ],
                )

    def apply(self, writes: Sequence[Write]) -> list[Write]:
        """Apply ``writes`` in order in one transaction; return those fencing rejected.

        Raises:
            UnknownRunError: a write names a run that does not exist (nothing is applied).
            InputError: an :class:`~subplan._store._base.AttemptEnded` with status
                ``running``.
        """
        batch = list(writes)
        if not batch:
            return []
        for _ in range(_RETRIES):
            try:
                with self._writing("write to") as conn:
                    return self._apply(conn, batch)
            except _Conflict:
                continue
        raise StoreError(  # pragma: no cover - three lost races in a row
            f"cannot write to {self.location}: another writer kept inserting the same "
            "attempts (is another orchestrator running this run?)",
            location=self.location,
        )

    def _apply(self, conn: psycopg.Connection[Any], batch: list[Write]) -> list[Write]:
        run_ids = run_ids_of(batch)
        known = {
            row[0]
            for row in conn.execute("SELECT run_id FROM runs WHERE run_id = ANY(%s)", (run_ids,))
        }
        for run_id in run_ids:
            if run_id not in known:
                raise UnknownRunError(run_id, location=self.location)
        # The run rows stay locked until COMMIT: a newer orchestrator's bump waits for it.
        check_epochs(batch, self._epochs(conn, batch, " FOR UPDATE"), self.location)

        # Lock the attempts the batch names: their statuses stay true until COMMIT, so
        # fencing is decided here and the writes applied set-wise.
        subplans: dict[str, set[str]] = defaultdict(set)
        for w in batch:
            if isinstance(w, AttemptStarted | AttemptProcess | AttemptEnded):
                subplans[w.run_id].add(w.subplan_id)
        statuses: dict[AttemptKey, str] = {}
        for run_id, ids in subplans.items():
            for subplan_id, number, status in conn.execute(
                "SELECT subplan_id, number, status FROM attempts "
                "WHERE run_id = %s AND subplan_id = ANY(%s) FOR UPDATE",
                (run_id, sorted(ids)),
            ):
                statuses[(run_id, subplan_id, number)] = status
        fenced = fence(batch, statuses)

        if fenced.started:
            s = fenced.started
            cursor = conn.execute(
                _INSERT_STARTED,
                (
                    [w.run_id for w in s],
                    [w.subplan_id for w in s],
                    [w.number for w in s],
                    [w.dispatched for w in s],
                ),
            )
            if cursor.rowcount != len(s):
                raise _Conflict
        if fenced.process:
            p = fenced.process
            cursor = conn.execute(
                _UPDATE_PROCESS,
                (
                    [w.run_id for w in p],
                    [w.subplan_id for w in p],
                    [w.number for w in p],
                    [w.pid for w in p],
                    [w.pgid for w in p],
                ),
            )
            expect_updated(cursor.rowcount, len(p), self.location)
        if fenced.ended:
            e = fenced.ended
            cursor = conn.execute(
                _UPDATE_ENDED,
                (
                    [w.run_id for w in e],
                    [w.subplan_id for w in e],
                    [w.number for w in e],
                    [w.status for w in e],
                    [w.ended for w in e],
                    [w.started for w in e],
                    [w.exit_code for w in e],
                    [clean_text(w.error) for w in e],
                    [clean_text(w.error_type) for w in e],
                    [clean_text(w.rate_limit) for w in e],
                    [w.cost for w in e],
                    [w.passed for w in e],
                    [w.charged for w in e],
                    [clean_text(w.detail) for w in e],
                    [clean_text(w.changed) for w in e],
                ),
            )
            expect_updated(cursor.rowcount, len(e), self.location)
        for pause in fenced.pauses:
            last = conn.execute(
                "SELECT seq, started FROM pauses WHERE run_id = %s "
                "ORDER BY seq DESC LIMIT 1 FOR UPDATE",
                (pause.run_id,),
            ).fetchone()
            if last is not None and last[1] == pause.started:
                conn.execute(
                    "UPDATE pauses SET ends = %s, reason = %s, source = %s, subplan_id = %s "
                    "WHERE run_id = %s AND seq = %s",
                    (
                        pause.ends,
                        clean_text(pause.reason),
                        clean_text(pause.source),
                        pause.subplan_id,
                        pause.run_id,
                        last[0],
                    ),
                )
            else:
                conn.execute(
                    "INSERT INTO pauses (run_id, seq, started, ends, reason, source, subplan_id)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        pause.run_id,
                        1 if last is None else last[0] + 1,
                        pause.started,
                        pause.ends,
                        clean_text(pause.reason),
                        clean_text(pause.source),
                        pause.subplan_id,
                    ),
                )
        if fenced.statuses:
            with conn.cursor() as cursor:
                cursor.executemany(
                    _UPDATE_RUN,
                    [(w.status, w.at, w.ended, w.host, w.pid, w.run_id) for w in fenced.statuses],
                )
            self._record_sessions(conn, fenced.statuses)
        return fenced.rejected

    def lock_run(self, run_id: str) -> PostgresRunLock:
        """Take the run's lock without waiting (the run need not exist yet).

        The lock lives on a connection of its own, which it closes when released; closing
        the store leaves it held.

        Raises:
            RunLockedError: another session holds it; ``.holder`` names the holder when
                its line can be read.
            StoreError: the store is open read-only, or the server cannot be reached.
        """
        if self.readonly:
            raise StoreError(
                f"cannot lock run {run_id!r}: {self.location} is open read-only",
                location=self.location,
            )
        key = lock_key(self.schema, run_id)
        conn = self._connect()
        try:
            # The lock lives as long as this session: keep the server from ending it for
            # idleness, and let it notice a vanished client within about a minute.
            for setting in (
                "SET idle_session_timeout = 0",
                "SET idle_in_transaction_session_timeout = 0",
                "SET tcp_keepalives_idle = 30",
                "SET tcp_keepalives_interval = 10",
                "SET tcp_keepalives_count = 3",
            ):
                conn.execute(setting)
            locked = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
            if not (locked and locked[0]):
                unsigned = key & 0xFFFF_FFFF_FFFF_FFFF
                row = conn.execute(
                    _HOLDER_SQL, (run_id, unsigned >> 32, unsigned & 0xFFFF_FFFF)
                ).fetchone()
                raise RunLockedError(run_id, row[0] if row else None, location=self.location)
            since = time.time()
            holder = holder_line(since=since)
            conn.execute(
                "INSERT INTO run_locks (run_id, holder, backend_pid, pid, host, since) "
                "VALUES (%s, %s, pg_backend_pid(), %s, %s, %s) ON CONFLICT (run_id) DO UPDATE "
                "SET holder = excluded.holder, backend_pid = excluded.backend_pid, "
                "pid = excluded.pid, host = excluded.host, since = excluded.since",
                (run_id, holder, os.getpid(), socket.gethostname(), since),
            )
        except self._psycopg.Error as exc:  # pragma: no cover - a server failing mid-lock
            conn.close()
            raise self._error(exc, "lock a run in") from None
        except BaseException:
            conn.close()
            raise
        return PostgresRunLock(run_id, key, conn, holder)

    def run_holder(self, run_id: str) -> str | None:
        """Who holds the run's lock now (without taking it), or None."""
        unsigned = lock_key(self.schema, run_id) & 0xFFFF_FFFF_FFFF_FFFF
        with self._reading("read") as conn:
            row = conn.execute(
                _HOLDER_SQL, (run_id, unsigned >> 32, unsigned & 0xFFFF_FFFF)
            ).fetchone()
        return None if row is None else str(row[0])

    def __enter__(self) -> PostgresStore:
        return self

    def __exit__(self, *exc: object) -> None:
        """Close the store (``with open_store(...) as store:``)."""
        self.close()

    def close(self) -> None:
        """Close the connection (idempotent). Locks taken through the store stay held."""
        with self._mutex:
            conn, self._conn = self._conn, None
        if conn is not None:
            conn.close()

    def __repr__(self) -> str:
        return f"<PostgresStore {self.location} schema {self.schema}>"
