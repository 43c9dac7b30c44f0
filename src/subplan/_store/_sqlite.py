"""The SQLite state store: one file under the runs directory, in WAL mode.

Durability: ``journal_mode=WAL`` with ``synchronous=NORMAL``. A committed transaction
survives a killed process (the commit is in the write-ahead log, which the OS holds);
a power cut or kernel crash may lose the last few commits, never corrupt the file.

Every write transaction is ``BEGIN IMMEDIATE`` ... ``COMMIT``: it takes the write lock at
its start, so the fencing reads it makes are still true when it writes. Other processes
wait up to :data:`BUSY_TIMEOUT` seconds for the lock.

The file is checked when opened (``PRAGMA quick_check``, the application marker, the
schema version) and is never recreated or changed when a check fails: a corrupt file, a
database of another application, or one of another schema version is an error.

SQLite's WAL needs shared memory between the processes using the file, which network
filesystems (NFS, SMB, ...) do not provide: the store refuses to write there and points
to the PostgreSQL store.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import ClassVar, Literal

from .._errors import (
    NetworkFilesystemError,
    RunExistsError,
    StoreConnectError,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
    UnknownRunError,
)
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
from ._lockfile import FileRunLock, acquire_file_lock, probe_file_lock
from ._sql import RUN_COLUMNS, SqlReads

__all__ = [
    "BUSY_TIMEOUT",
    "NETWORK_FILESYSTEMS",
    "SqliteStore",
    "check_local_filesystem",
    "filesystem_type",
    "parse_mountinfo",
]

BUSY_TIMEOUT = 30.0
"""Seconds a statement waits for another process's write lock before failing."""

APPLICATION = "subplan"
APPLICATION_ID = 0x53504C4E  # "SPLN", in the database header (PRAGMA application_id)

NETWORK_FILESYSTEMS = frozenset(
    {
        "nfs",
        "nfs4",
        "cifs",
        "smb3",
        "smbfs",
        "9p",
        "fuse.sshfs",
        "sshfs",
        "ceph",
        "glusterfs",
        "fuse.glusterfs",
        "lustre",
        "afs",
        "ncpfs",
        "fuse.s3fs",
        "davfs",
    }
)
"""Filesystem types (as in ``/proc/self/mountinfo``) the SQLite store refuses."""

_TABLES = ("meta", "runs", "attempts", "pauses")

_SCHEMA = (
    """CREATE TABLE meta (
        key   TEXT PRIMARY KEY,
        value TEXT NOT NULL
    )""",
    """CREATE TABLE runs (
        run_id       TEXT PRIMARY KEY,
        status       TEXT NOT NULL,
        created      REAL NOT NULL,
        updated      REAL NOT NULL,
        ended        REAL,
        plan_json    TEXT NOT NULL,
        config_json  TEXT NOT NULL,
        command_json TEXT,
        host         TEXT NOT NULL,
        pid          INTEGER NOT NULL,
        lock_epoch   INTEGER NOT NULL DEFAULT 0
    )""",
    # The primary key (run_id first) is the index of every per-run query.
    """CREATE TABLE attempts (
        run_id     TEXT NOT NULL REFERENCES runs (run_id),
        subplan_id TEXT NOT NULL,
        number     INTEGER NOT NULL,
        status     TEXT NOT NULL,
        dispatched REAL NOT NULL,
        started    REAL,
        ended      REAL,
        pid        INTEGER,
        pgid       INTEGER,
        exit_code  INTEGER,
        error      TEXT,
        error_type TEXT,
        rate_limit TEXT,
        cost       REAL,
        passed     INTEGER,
        charged    INTEGER NOT NULL DEFAULT 1,
        detail     TEXT,
        changed    TEXT,
        PRIMARY KEY (run_id, subplan_id, number)
    )""",
    """CREATE TABLE pauses (
        run_id     TEXT NOT NULL REFERENCES runs (run_id),
        seq        INTEGER NOT NULL,
        started    REAL NOT NULL,
        ends       REAL NOT NULL,
        reason     TEXT NOT NULL,
        source     TEXT NOT NULL,
        subplan_id TEXT,
        PRIMARY KEY (run_id, seq)
    )""",
)

_INSERT_WHOLE = (
    "INSERT INTO attempts (run_id, subplan_id, number, status, dispatched, started, ended, "
    "pid, pgid, exit_code, error, error_type, rate_limit, cost, passed, charged, detail, "
    "changed) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)
_UPDATE_PROCESS = (
    "UPDATE attempts SET pid = coalesce(?, pid), pgid = coalesce(?, pgid) "
    "WHERE run_id = ? AND subplan_id = ? AND number = ? AND status = 'running'"
)
_UPDATE_ENDED = (
    "UPDATE attempts SET status = ?, ended = ?, started = ?, exit_code = ?, error = ?, "
    "error_type = ?, rate_limit = ?, cost = ?, passed = ?, charged = ?, detail = ?, "
    "changed = ? "
    "WHERE run_id = ? AND subplan_id = ? AND number = ? AND status = 'running'"
)
_UPDATE_RUN = (
    "UPDATE runs SET status = ?, updated = ?, ended = ?, host = coalesce(?, host), "
    "pid = coalesce(?, pid) WHERE run_id = ?"
)
_CHUNK = 500  # bound parameters per IN (...) list, well under SQLite's limits

# primary result codes (the low byte of an extended code)
_SQLITE_PERM, _SQLITE_BUSY, _SQLITE_LOCKED, _SQLITE_READONLY = 3, 5, 6, 8
_SQLITE_CORRUPT, _SQLITE_CANTOPEN, _SQLITE_FULL, _SQLITE_NOTADB = 11, 14, 13, 26

_MAGIC = b"SQLite format 3\x00"


# -- network filesystems ------------------------------------------------------------------

_OCTAL_ESCAPE = re.compile(r"\\([0-7]{3})")


def _unescape(field: str) -> str:
    return _OCTAL_ESCAPE.sub(lambda m: chr(int(m.group(1), 8)), field)


def parse_mountinfo(text: str) -> list[tuple[str, str]]:
    r"""The ``(mount point, filesystem type)`` of each line of ``/proc/self/mountinfo``.

    Octal escapes (``\040`` for a space) are decoded; malformed lines are skipped.

    Example:
        >>> parse_mountinfo("36 35 98:0 / /mnt/my\\040disk rw - nfs4 srv:/x rw\n")
        [('/mnt/my disk', 'nfs4')]
    """
    mounts: list[tuple[str, str]] = []
    for line in text.splitlines():
        fields = line.split(" ")
        # id parent major:minor root mount-point options [optional...] - type source super
        try:
            separator = fields.index("-", 6)
        except ValueError:
            continue
        if separator + 1 < len(fields):
            mounts.append((_unescape(fields[4]), _unescape(fields[separator + 1])))
    return mounts


def filesystem_type(path: Path, mountinfo: str | None = None) -> str | None:
    """The type of the filesystem holding ``path`` (which need not exist yet).

    The mount whose mount point is the longest prefix of the resolved path wins (the
    later one of two on the same point: it is mounted on top).

    Args:
        path: a file or directory.
        mountinfo: the text of ``/proc/self/mountinfo``; read when None.

    Returns:
        ``ext4``, ``nfs4``, ...; None when the mount table cannot be read.

    Example:
        >>> table = "1 0 8:1 / / rw - ext4 /dev/sda1 rw\\n2 1 0:5 / /srv rw - nfs4 h:/ rw\\n"
        >>> filesystem_type(Path("/srv/runs/state.db"), table)
        'nfs4'
    """
    if mountinfo is None:
        try:
            mountinfo = Path("/proc/self/mountinfo").read_text(encoding="utf-8", errors="replace")
        except OSError:  # pragma: no cover - Linux always has it
            return None
    target = str(path.resolve())
    best: str | None = None
    best_length = -1
    for mount_point, fstype in parse_mountinfo(mountinfo):
        inside = (
            mount_point == "/"
            or target == mount_point
            or target.startswith(mount_point.rstrip("/") + "/")
        )
        if inside and len(mount_point) >= best_length:
            best, best_length = fstype, len(mount_point)
    return best


def check_local_filesystem(directory: Path, *, location: str | None = None) -> None:
    """Refuse a directory on a network filesystem, where SQLite's WAL is unsafe.

    Raises:
        NetworkFilesystemError: ``directory`` is on one of :data:`NETWORK_FILESYSTEMS`.
    """
    fstype = filesystem_type(directory)
    if fstype is not None and fstype.lower() in NETWORK_FILESYSTEMS:
        raise NetworkFilesystemError(
            f"{directory} is on {fstype}; SQLite's write-ahead log needs a local filesystem: "
            "use --store postgresql://USER@HOST/DB or a runs directory on a local disk",
            location=location,
            fstype=fstype,
        )


# -- the store ----------------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def _store_error(exc: sqlite3.Error, action: str, location: str) -> StoreError:
    """The store error for an sqlite3 error met while doing ``action``."""
    code = getattr(exc, "sqlite_errorcode", None)
    primary = code & 0xFF if isinstance(code, int) else None
    reason = _first_line(exc)
    if primary in (_SQLITE_CORRUPT, _SQLITE_NOTADB):
        return StoreCorruptError(f"{location} is corrupt: {reason}", location=location)
    if primary in (_SQLITE_BUSY, _SQLITE_LOCKED):
        return StoreError(
            f"cannot {action} {location}: another process kept it locked for {BUSY_TIMEOUT:g} s",
            location=location,
        )
    if primary in (_SQLITE_CANTOPEN, _SQLITE_PERM, _SQLITE_READONLY):
        return StoreConnectError(f"cannot {action} {location}: {reason}", location=location)
    if primary == _SQLITE_FULL:
        return StoreError(f"cannot {action} {location}: the disk is full", location=location)
    return StoreError(f"cannot {action} {location}: {reason}", location=location)


def _enter_wal(conn: sqlite3.Connection) -> str:
    """Switch to write-ahead logging, waiting up to BUSY_TIMEOUT for the other openers.

    Changing the journal mode needs the database to itself, and SQLite reports
    SQLITE_BUSY at once, without calling the busy handler, while another connection reads
    it (processes racing to create one fresh state.db): so the wait is ours. Returns the
    journal mode in force.
    """
    deadline = time.monotonic() + BUSY_TIMEOUT
    pause = 0.005
    while True:
        try:
            return str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0])
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code not in (_SQLITE_BUSY, _SQLITE_LOCKED) or time.monotonic() >= deadline:
                raise
        time.sleep(pause)
        pause = min(pause * 2, 0.1)


def _chunks(items: Sequence[str]) -> Iterator[Sequence[str]]:
    for start in range(0, len(items), _CHUNK):
        yield items[start : start + _CHUNK]


def _placeholders(n: int) -> str:
    return ", ".join("?" * n)


class SqliteStore(SqlReads):
    """The state store in one SQLite file (the default: ``<runs_dir>/state.db``).

    Calls may come from several threads; they are serialised on one connection. Run
    locks are ``flock`` files in ``locks/`` next to the database (see
    :func:`~subplan._store._lockfile.acquire_file_lock`).

    Args:
        path: the database file; its parent directories are created when ``create``.
        create: create the file (and its schema) when missing; when False a missing file
            is an error.
        readonly: open for reading only (``status``, ``report``): nothing is created or
            written, writes raise :class:`~subplan.StoreError`.

    Raises:
        StoreConnectError: the file is missing (``create`` False or ``readonly``), or it
            or its directory cannot be written or read.
        StoreCorruptError: not a SQLite database, another application's database, or one
            failing its integrity check.
        StoreVersionError: a schema version other than :data:`SCHEMA_VERSION`.
        NetworkFilesystemError: opened for writing on NFS, SMB, ...

    Example:
        >>> import tempfile
        >>> store = SqliteStore(Path(tempfile.mkdtemp()) / "state.db")
        >>> store.list_runs()
        []
        >>> store.close()
    """

    kind: Literal["sqlite", "postgresql"]
    location: str

    _P: ClassVar[str] = "?"

    def __init__(self, path: Path, *, create: bool = True, readonly: bool = False) -> None:
        self.kind = "sqlite"
        self.path = Path(path).absolute()
        self.location = str(self.path)
        self.readonly = readonly
        self._mutex = threading.RLock()
        self._columns: set[str] = set()  # optional columns seen to exist
        self._conn: sqlite3.Connection | None = (
            self._open_readonly() if readonly else self._open_writable(create=create)
        )

    # -- opening --------------------------------------------------------------------------

    def _check_file(self) -> bool:
        """Whether the file exists; refuse a directory or a file that is not SQLite."""
        path = self.path
        if path.is_dir():
            raise StoreConnectError(
                f"{path} is a directory, not a state database", location=self.location
            )
        try:
            with path.open("rb") as file:
                head = file.read(len(_MAGIC))
        except (FileNotFoundError, NotADirectoryError):
            return False
        except OSError as exc:
            raise StoreConnectError(
                f"cannot read {path}: {exc.strerror or type(exc).__name__}",
                location=self.location,
            ) from exc
        # An empty file is an empty database (or one whose pages are all in its WAL).
        if head and head != _MAGIC:
            raise StoreCorruptError(
                f"{path} is not a SQLite database (it is not a subplan state store)",
                location=self.location,
            )
        return True

    def _open_writable(self, *, create: bool) -> sqlite3.Connection:
        path, directory = self.path, self.path.parent
        exists = self._check_file()
        if not exists and not create:
            raise StoreConnectError(f"no state database at {path}", location=self.location)
        check_local_filesystem(directory, location=self.location)
        if not exists:
            try:
                directory.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreConnectError(
                    f"cannot create the directory {directory} for the state database: "
                    f"{exc.strerror or type(exc).__name__}",
                    location=self.location,
                ) from exc
        # SQLite creates <db>-wal and <db>-shm next to the file: the directory must be
        # writable even when the file is.
        if not os.access(directory, os.W_OK | os.X_OK) or (
            exists and not os.access(path, os.R_OK | os.W_OK)
        ):
            raise StoreConnectError(
                f"cannot write the state database in {directory}: permission denied",
                location=self.location,
            )
        try:
            conn = sqlite3.connect(
                path,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:  # pragma: no cover - sqlite reports at the first query
            raise _store_error(exc, "open", self.location) from exc
        try:
            self._configure(conn)
            if not self._validate(conn):
                if not create:
                    raise StoreConnectError(
                        f"{path} is an empty database: no run has been recorded in it",
                        location=self.location,
                    )
                self._create_schema(conn)
            mode = _enter_wal(conn)
            if str(mode).lower() != "wal":  # pragma: no cover - a filesystem without mmap
                raise StoreConnectError(
                    f"cannot use write-ahead logging on {path} (journal mode stays {mode})",
                    location=self.location,
                )
            conn.execute("PRAGMA synchronous = NORMAL")
        except sqlite3.Error as exc:
            conn.close()
            raise _store_error(exc, "open", self.location) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    def _open_readonly(self) -> sqlite3.Connection:
        path = self.path
        if not self._check_file():
            raise StoreConnectError(f"no state database at {path}", location=self.location)
        try:
            conn = sqlite3.connect(
                f"{path.as_uri()}?mode=ro",
                uri=True,
                timeout=BUSY_TIMEOUT,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error as exc:  # pragma: no cover - sqlite reports at the first query
            raise _store_error(exc, "open", self.location) from exc
        try:
            self._configure(conn)
            if not self._validate(conn):
                raise StoreConnectError(
                    f"{path} is an empty database: no run has been recorded in it",
                    location=self.location,
                )
        except sqlite3.Error as exc:
            conn.close()
            # With no <db>-shm yet (no writer has the file open), a reader must create
            # one, which it cannot in a directory it may not write.
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF
            if code in (_SQLITE_CANTOPEN, _SQLITE_READONLY) and not os.access(path.parent, os.W_OK):
                raise StoreConnectError(
                    f"cannot read {path}: SQLite must create {path.name}-shm next to a "
                    f"database in WAL mode and {path.parent} is not writable; "
                    "ask for write access or copy the database",
                    location=self.location,
                ) from exc
            raise _store_error(exc, "read", self.location) from exc
        except BaseException:
            conn.close()
            raise
        return conn

    @staticmethod
    def _configure(conn: sqlite3.Connection) -> None:
        conn.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT * 1000)}")
        conn.execute("PRAGMA foreign_keys = ON")

    def _not_ours(self, why: str) -> StoreCorruptError:
        return StoreCorruptError(
            f"{self.path} is not a subplan state database ({why})", location=self.location
        )

    def _validate(self, conn: sqlite3.Connection) -> bool:
        """Check an opened database without writing to it; False when it is empty."""
        tables = {
            row[0]
            for row in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%'"
            )
        }
        application_id = conn.execute("PRAGMA application_id").fetchone()[0]
        if application_id not in (0, APPLICATION_ID):
            raise self._not_ours(f"its application id is {application_id:#x}")
        if not tables:
            return False
        if "meta" not in tables:
            shown = ", ".join(sorted(tables)[:5])
            raise self._not_ours(f"it has the tables {shown}")
        try:
            meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
        except sqlite3.OperationalError as exc:  # a "meta" table of another shape
            raise self._not_ours(f"its meta table: {_first_line(exc)}") from exc
        if meta.get("application") != APPLICATION:
            raise self._not_ours("no 'application = subplan' in its meta table")
        try:
            found = int(meta.get("schema_version", ""))
        except ValueError:
            raise StoreCorruptError(
                f"{self.path} has no valid schema_version in its meta table",
                location=self.location,
            ) from None
        if found != SCHEMA_VERSION:
            advice = "upgrade subplan" if found > SCHEMA_VERSION else "it needs an older subplan"
            raise StoreVersionError(
                f"{self.path} has schema version {found}, this subplan supports "
                f"{SCHEMA_VERSION}: {advice}",
                location=self.location,
                found=found,
                supported=SCHEMA_VERSION,
            )
        report = [str(row[0]) for row in conn.execute("PRAGMA quick_check")]
        if report != ["ok"]:
            problems = [
                line.strip()
                for text in report
                for line in text.splitlines()
                if line.strip() and not line.startswith("***")
            ] or ["no result"]
            more = f" (and {len(problems) - 1} more problems)" if len(problems) > 1 else ""
            raise StoreCorruptError(
                f"{self.path} fails its integrity check: {problems[0]}{more}",
                location=self.location,
            )
        missing = [name for name in _TABLES if name not in tables]
        if missing:
            raise StoreCorruptError(
                f"{self.path} lacks the tables {', '.join(missing)}", location=self.location
            )
        return True

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        _enter_wal(conn)
        conn.execute("BEGIN IMMEDIATE")
        try:
            # Another process may have created it while we waited for the write lock.
            if conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]:
                conn.execute("ROLLBACK")
                self._validate(conn)
                return
            for statement in _SCHEMA:
                conn.execute(statement)
            conn.executemany(
                "INSERT INTO meta (key, value) VALUES (?, ?)",
                [("application", APPLICATION), ("schema_version", str(SCHEMA_VERSION))],
            )
            conn.execute(f"PRAGMA application_id = {APPLICATION_ID}")
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:  # pragma: no cover - a disk failing while the schema is made
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    # -- plumbing -------------------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"the store {self.location} is closed", location=self.location)
        return self._conn

    @contextmanager
    def _reading(self, action: str) -> Iterator[sqlite3.Connection]:
        with self._mutex:
            conn = self._connection()
            try:
                yield conn
            except sqlite3.Error as exc:
                raise _store_error(exc, action, self.location) from exc

    @contextmanager
    def _writing(self, action: str) -> Iterator[sqlite3.Connection]:
        """One ``BEGIN IMMEDIATE`` ... ``COMMIT`` transaction, rolled back on any error."""
        with self._mutex:
            conn = self._connection()
            if self.readonly:
                raise StoreError(
                    f"cannot {action} {self.location}: the store is open read-only",
                    location=self.location,
                )
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    yield conn
                    conn.execute("COMMIT")
                except BaseException:
                    if conn.in_transaction:
                        with suppress(sqlite3.Error):
                            conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise _store_error(exc, action, self.location) from exc

    def _has_table(self, conn: sqlite3.Connection, name: str) -> bool:
        sql = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
        return conn.execute(sql, (name,)).fetchone() is not None

    def _has_column(self, conn: sqlite3.Connection, table: str, column: str) -> bool:
        if column in self._columns:
            return True
        names = {row[1] for row in conn.execute(f"PRAGMA table_info({table})")}
        if column in names:
            self._columns.add(column)  # columns are never dropped: remember it
        return column in names

    # -- the protocol ---------------------------------------------------------------------

    def create_run(self, run: RunRecord) -> None:
        """Add a run. Raises RunExistsError when the id is taken."""
        config_json = json.dumps(dict(run.config))
        command_json = None if run.command is None else json.dumps(list(run.command))
        with self._writing("write to") as conn:
            if conn.execute("SELECT 1 FROM runs WHERE run_id = ?", (run.run_id,)).fetchone():
                raise RunExistsError(run.run_id, location=self.location)
            conn.execute(
                f"INSERT INTO runs ({RUN_COLUMNS}) VALUES ({_placeholders(10)})",  # noqa: S608
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
        with self._writing("write to") as conn:
            return self._apply(conn, batch)

    def _apply(self, conn: sqlite3.Connection, batch: list[Write]) -> list[Write]:
        run_ids = run_ids_of(batch)
        known: set[str] = set()
        for chunk in _chunks(run_ids):
            known.update(
                row[0]
                for row in conn.execute(
                    f"SELECT run_id FROM runs WHERE run_id IN ({_placeholders(len(chunk))})",  # noqa: S608
                    chunk,
                )
            )
        for run_id in run_ids:
            if run_id not in known:
                raise UnknownRunError(run_id, location=self.location)
        # Under the write lock: no newer orchestrator can bump an epoch until COMMIT.
        check_epochs(batch, self._epochs(conn, batch), self.location)

        # The write lock is ours since BEGIN IMMEDIATE: these statuses stay true until
        # COMMIT, so fencing can be decided here and the writes grouped by kind.
        subplans: dict[str, set[str]] = defaultdict(set)
        for w in batch:
            if isinstance(w, AttemptStarted | AttemptProcess | AttemptEnded):
                subplans[w.run_id].add(w.subplan_id)
        statuses: dict[AttemptKey, str] = {}
        for run_id, ids in subplans.items():
            for chunk in _chunks(sorted(ids)):
                for subplan_id, number, status in conn.execute(
                    "SELECT subplan_id, number, status FROM attempts WHERE run_id = ? AND "  # noqa: S608
                    f"subplan_id IN ({_placeholders(len(chunk))})",
                    (run_id, *chunk),
                ):
                    statuses[(run_id, subplan_id, number)] = status
        fenced = fence(batch, statuses)

        # An attempt that starts and ends within the batch (most do: batches gather for
        # milliseconds) is inserted whole, instead of inserted and then updated.
        new = {(w.run_id, w.subplan_id, w.number): w for w in fenced.started}
        ended = [w for w in fenced.ended if (w.run_id, w.subplan_id, w.number) not in new]
        last_end = {(w.run_id, w.subplan_id, w.number): w for w in fenced.ended}
        process = [w for w in fenced.process if (w.run_id, w.subplan_id, w.number) not in new]
        last_process = {(w.run_id, w.subplan_id, w.number): w for w in fenced.process}
        if new:
            rows = []
            for key, w in new.items():
                proc = last_process.get(key)
                end = last_end.get(key)
                rows.append(
                    (
                        w.run_id,
                        w.subplan_id,
                        w.number,
                        "running" if end is None else end.status,
                        w.dispatched,
                        None if end is None else end.started,
                        None if end is None else end.ended,
                        None if proc is None else proc.pid,
                        None if proc is None else proc.pgid,
                        None if end is None else end.exit_code,
                        None if end is None else clean_text(end.error),
                        None if end is None else clean_text(end.error_type),
                        None if end is None else clean_text(end.rate_limit),
                        None if end is None else end.cost,
                        None if end is None else end.passed,
                        True if end is None else end.charged,
                        None if end is None else clean_text(end.detail),
                        None if end is None else clean_text(end.changed),
                    )
                )
            conn.executemany(_INSERT_WHOLE, rows)
        if process:
            cursor = conn.executemany(
                _UPDATE_PROCESS,
                [(w.pid, w.pgid, w.run_id, w.subplan_id, w.number) for w in process],
            )
            expect_updated(cursor.rowcount, len(process), self.location)
        if ended:
            cursor = conn.executemany(
                _UPDATE_ENDED,
                [
                    (
                        w.status,
                        w.ended,
                        w.started,
                        w.exit_code,
                        clean_text(w.error),
                        clean_text(w.error_type),
                        clean_text(w.rate_limit),
                        w.cost,
                        w.passed,
                        w.charged,
                        clean_text(w.detail),
                        clean_text(w.changed),
                        w.run_id,
                        w.subplan_id,
                        w.number,
                    )
                    for w in ended
                ],
            )
            expect_updated(cursor.rowcount, len(ended), self.location)
        for p in fenced.pauses:
            last = conn.execute(
                "SELECT seq, started FROM pauses WHERE run_id = ? ORDER BY seq DESC LIMIT 1",
                (p.run_id,),
            ).fetchone()
            if last is not None and last[1] == p.started:
                conn.execute(
                    "UPDATE pauses SET ends = ?, reason = ?, source = ?, subplan_id = ? "
                    "WHERE run_id = ? AND seq = ?",
                    (
                        p.ends,
                        clean_text(p.reason),
                        clean_text(p.source),
                        p.subplan_id,
                        p.run_id,
                        last[0],
                    ),
                )
            else:
                conn.execute(
                    "INSERT INTO pauses (run_id, seq, started, ends, reason, source, subplan_id)"
                    " VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (
                        p.run_id,
                        1 if last is None else last[0] + 1,
                        p.started,
                        p.ends,
                        clean_text(p.reason),
                        clean_text(p.source),
                        p.subplan_id,
                    ),
                )
        if fenced.statuses:
            conn.executemany(
                _UPDATE_RUN,
                [(w.status, w.at, w.ended, w.host, w.pid, w.run_id) for w in fenced.statuses],
            )
            self._record_sessions(conn, fenced.statuses)
        return fenced.rejected

    def lock_run(self, run_id: str) -> FileRunLock:
        """Take the run's lock without waiting (the run need not exist yet).

        Raises:
            RunLockedError: another holder has it; ``.holder`` names it.
            StoreError: the store is open read-only.
        """
        if self.readonly:
            raise StoreError(
                f"cannot lock run {run_id!r}: {self.location} is open read-only",
                location=self.location,
            )
        return acquire_file_lock(run_id, self.path.parent / "locks", location=self.location)

    def run_holder(self, run_id: str) -> str | None:
        """Who holds the run's lock now (without taking it), or None."""
        return probe_file_lock(run_id, self.path.parent / "locks")

    def __enter__(self) -> SqliteStore:
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
        return f"<SqliteStore {self.location}{' (read-only)' if self.readonly else ''}>"
