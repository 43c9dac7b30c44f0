"""The SQLite store on real files: WAL, damaged and foreign files, permissions, NFS.

What both stores promise is in ``tests/contract``; this is what only SQLite has. A file
that fails a check is never changed: each case compares its bytes before and after.
Permission cases run as an unprivileged user (``setpriv``) when the tests run as root,
because root may write any directory.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from subplan import ConfigError
from subplan._errors import (
    NetworkFilesystemError,
    StoreConnectError,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
)
from subplan._store import _sqlite
from subplan._store._base import SCHEMA_VERSION, AttemptStarted, RunRecord
from subplan._store._open import STORE_ENV, open_store
from subplan._store._sqlite import (
    APPLICATION_ID,
    SqliteStore,
    check_local_filesystem,
    filesystem_type,
    parse_mountinfo,
)

pytestmark = pytest.mark.timeout(120)

LIMIT = 30.0  # seconds a child process may take


def run(run_id: str = "r1", plan_json: str = "{}") -> RunRecord:
    return RunRecord(run_id, "running", 1.0, 1.0, None, plan_json)


def subplan_db(path: Path) -> Path:
    """A subplan state database of several pages, closed."""
    store = SqliteStore(path)
    for i in range(30):
        store.create_run(run(f"r{i}", "x" * 2000))
        store.apply([AttemptStarted(f"r{i}", f"s{j}", 1, 1.0) for j in range(20)])
    store.close()
    return path


def test_a_new_store_is_a_wal_database_marked_as_ours(tmp_path: Path) -> None:
    path = tmp_path / "deep" / "er" / "state.db"
    store = SqliteStore(path)
    conn = store._conn
    assert conn is not None
    assert 1 == conn.execute("PRAGMA synchronous").fetchone()[0]  # NORMAL
    assert 1 == conn.execute("PRAGMA foreign_keys").fetchone()[0]
    assert 30000 == conn.execute("PRAGMA busy_timeout").fetchone()[0]
    store.close()
    with sqlite3.connect(path) as other:
        assert "wal" == other.execute("PRAGMA journal_mode").fetchone()[0]
        assert APPLICATION_ID == other.execute("PRAGMA application_id").fetchone()[0]
        assert SCHEMA_VERSION == other.execute("PRAGMA user_version").fetchone()[0]
        meta = dict(other.execute("SELECT key, value FROM meta").fetchall())
    other.close()
    assert {"application": "subplan", "schema_version": str(SCHEMA_VERSION)} == meta
    assert str(path) == store.location


def test_a_commit_survives_the_sigkill_of_its_process(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    code = (
        "import os, signal, sys\n"
        "from pathlib import Path\n"
        "from subplan._store._sqlite import SqliteStore\n"
        "from subplan._store._base import RunRecord, AttemptStarted\n"
        "s = SqliteStore(Path(sys.argv[1]))\n"
        "s.create_run(RunRecord('r1', 'running', 1.0, 1.0, None, '{}'))\n"
        "s.apply([AttemptStarted('r1', 'a', 1, 2.0)])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run([sys.executable, "-c", code, str(path)], timeout=LIMIT, check=False)
    assert -signal.SIGKILL == child.returncode
    store = SqliteStore(path, create=False)
    assert ["a"] == [a.subplan_id for a in store.attempts("r1")]
    store.close()


def test_a_reader_sees_what_a_writer_commits_later(tmp_path: Path) -> None:
    writer = SqliteStore(tmp_path / "state.db")
    writer.create_run(run())
    reader = SqliteStore(tmp_path / "state.db", readonly=True)
    writer.apply([AttemptStarted("r1", "a", 1, 1.0)])
    assert 1 == len(reader.attempts("r1"))
    reader.close()
    writer.close()


def test_connections_creating_one_store_at_once_agree(tmp_path: Path) -> None:
    path = tmp_path / "new" / "state.db"
    errors: list[BaseException] = []
    start = threading.Barrier(8)

    def create(i: int) -> None:
        try:
            start.wait(LIMIT)
            store = SqliteStore(path)
            store.create_run(run(f"r{i}"))
            store.close()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=create, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(LIMIT)
    assert [] == errors
    store = SqliteStore(path, create=False)
    assert {f"r{i}" for i in range(8)} == {r.run_id for r in store.list_runs()}
    store.close()


# Each child creates one fresh store per round, all children at once: round r starts
# when the file go<r> appears; a failure is printed.
RACER = """
import os, sys, time
from pathlib import Path
from subplan._store._sqlite import SqliteStore
base, rounds = Path(sys.argv[1]), int(sys.argv[2])
for r in range(rounds):
    while not (base / f"go{r}").exists():
        time.sleep(0.0005)
    try:
        SqliteStore(base / f"db{r}" / "state.db").close()
    except Exception as exc:
        print(f"round {r}: {exc}", flush=True)
    (base / f"done{r}.{os.getpid()}").touch()
"""


def test_processes_racing_to_create_one_store_all_open_it(tmp_path: Path) -> None:
    # Entering WAL needs the file to itself; two openers each holding a read lock and
    # asking for more deadlock, and SQLite answers one of them SQLITE_BUSY at once, not
    # after busy_timeout: orchestrators racing for a fresh state.db failed within a
    # millisecond, saying the file was "kept locked for 30 s" (about 1 round in 5 here).
    racers, rounds = 8, 60
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    children = [
        subprocess.Popen(
            [sys.executable, "-c", RACER, str(tmp_path), str(rounds)],
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        for _ in range(racers)
    ]
    try:
        for r in range(rounds):
            (tmp_path / f"go{r}").touch()
            deadline = time.monotonic() + LIMIT
            while len(list(tmp_path.glob(f"done{r}.*"))) < racers:
                assert time.monotonic() < deadline, f"round {r} never ended"
                time.sleep(0.002)
        printed = [child.communicate(timeout=LIMIT)[0] for child in children]
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    assert [""] * racers == printed
    conn = sqlite3.connect(tmp_path / "db0" / "state.db")
    assert "wal" == conn.execute("PRAGMA journal_mode").fetchone()[0]
    conn.close()


def test_a_store_that_cannot_enter_wal_in_time_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite, "BUSY_TIMEOUT", 0.2)
    path = tmp_path / "state.db"
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT count(*) FROM sqlite_master").fetchone()
    try:
        with pytest.raises(StoreError) as caught:
            SqliteStore(path)
        assert f"cannot open {path}: another process kept it locked for 0.2 s" == str(caught.value)
    finally:
        reader.execute("COMMIT")
        reader.close()


def test_a_write_waiting_too_long_for_another_writer_fails_cleanly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_sqlite, "BUSY_TIMEOUT", 0.2)
    store = SqliteStore(tmp_path / "state.db")
    store.create_run(run())
    other = sqlite3.connect(tmp_path / "state.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
    try:
        with pytest.raises(StoreError) as caught:
            store.apply([AttemptStarted("r1", "a", 1, 1.0)])
        assert (
            f"cannot write to {tmp_path / 'state.db'}: another process kept it locked for 0.2 s"
            == str(caught.value)
        )
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert [] == store.apply([AttemptStarted("r1", "a", 1, 1.0)])  # usable again
    assert "SqliteStore" in repr(store)
    store.close()


@pytest.mark.parametrize(
    ("code", "error", "message"),
    [
        (5, StoreError, "cannot write to /x.db: another process kept it locked for 30 s"),
        (14, StoreConnectError, "cannot write to /x.db: boom"),
        (13, StoreError, "cannot write to /x.db: the disk is full"),
        (11, StoreCorruptError, "/x.db is corrupt: boom"),
        (10 | (12 << 8), StoreError, "cannot write to /x.db: boom"),  # an I/O error
    ],
)
def test_sqlite_errors_map_to_store_errors(
    code: int, error: type[StoreError], message: str
) -> None:
    exc = sqlite3.OperationalError("boom\nsecond line")
    exc.sqlite_errorcode = code
    mapped = _sqlite._store_error(exc, "write to", "/x.db")
    assert (error, message) == (type(mapped), str(mapped))


def test_a_directory_that_cannot_be_made_is_a_connect_error(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a directory")
    with pytest.raises(StoreConnectError) as caught:
        SqliteStore(tmp_path / "file" / "runs" / "state.db")
    assert (
        f"cannot create the directory {tmp_path / 'file' / 'runs'} for the state database: "
        "Not a directory"
    ) == str(caught.value)


# -- files that are not (or no longer) a usable store -------------------------------------


def random_bytes(path: Path) -> None:
    path.write_bytes(random.Random(1).randbytes(8192))


def sqlite_header_then_garbage(path: Path) -> None:
    path.write_bytes(b"SQLite format 3\0" + random.Random(2).randbytes(8192))


def another_applications_database(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        conn.execute("INSERT INTO users (name) VALUES ('ada')")
    conn.close()


def another_application_id(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("PRAGMA application_id = 1234")
        conn.execute("CREATE TABLE meta (key TEXT, value TEXT)")
    conn.close()


def a_truncated_store(path: Path) -> None:
    subplan_db(path)
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def a_damaged_index(path: Path) -> None:
    """Only the attempts index is damaged: the marker and version still read fine."""
    subplan_db(path)
    with sqlite3.connect(path) as conn:
        page = conn.execute(
            "SELECT rootpage FROM sqlite_master WHERE name = 'sqlite_autoindex_attempts_1'"
        ).fetchone()[0]
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    conn.close()
    data = bytearray(path.read_bytes())
    data[(page - 1) * size : (page - 1) * size + 8] = b"\xff" * 8
    path.write_bytes(bytes(data))


def meta_of_another_shape(path: Path) -> None:
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE meta (name TEXT, setting TEXT)")
    conn.close()


def schema_version(version: int) -> Callable[[Path], None]:
    def make(path: Path) -> None:
        subplan_db(path)
        with sqlite3.connect(path) as conn:
            conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(version),))
        conn.close()

    return make


@pytest.mark.parametrize(
    ("make", "error", "message"),
    [
        pytest.param(
            random_bytes, StoreCorruptError, "is not a SQLite database", id="random-bytes"
        ),
        pytest.param(
            sqlite_header_then_garbage,
            StoreCorruptError,
            "is corrupt: file is not a database",
            id="header-then-garbage",
        ),
        pytest.param(
            another_applications_database,
            StoreCorruptError,
            "is not a subplan state database (it has the tables users)",
            id="another-application",
        ),
        pytest.param(
            another_application_id,
            StoreCorruptError,
            "is not a subplan state database (its application id is 0x4d2)",
            id="another-application-id",
        ),
        pytest.param(
            a_truncated_store,
            StoreCorruptError,
            "is corrupt: database disk image is malformed",
            id="truncated",
        ),
        pytest.param(
            a_damaged_index,
            StoreCorruptError,
            "fails its integrity check: Page ",
            id="damaged-index",
        ),
        pytest.param(
            meta_of_another_shape,
            StoreCorruptError,
            "is not a subplan state database (its meta table: no such column: key)",
            id="meta-of-another-shape",
        ),
        pytest.param(
            schema_version(99),
            StoreVersionError,
            "has schema version 99, this subplan supports 1: upgrade subplan",
            id="newer-schema",
        ),
        pytest.param(
            schema_version(0),
            StoreVersionError,
            "has schema version 0, this subplan supports 1: it needs an older subplan",
            id="older-schema",
        ),
    ],
)
@pytest.mark.parametrize(
    "mode", [{}, {"create": False}, {"readonly": True}], ids=["write", "existing", "read"]
)
def test_an_unusable_file_is_an_error_and_stays_as_it_was(
    tmp_path: Path,
    make: Callable[[Path], None],
    error: type[StoreError],
    message: str,
    mode: dict[str, bool],
) -> None:
    path = tmp_path / "state.db"
    make(path)
    before = path.read_bytes()
    with pytest.raises(error) as caught:
        SqliteStore(path, **mode)
    text = str(caught.value)
    assert message in text
    assert text.startswith(str(path))
    assert "\n" not in text
    assert str(path) == caught.value.location
    assert before == path.read_bytes()
    wal = path.with_name("state.db-wal")
    assert not wal.exists() or 0 == wal.stat().st_size
    if isinstance(caught.value, StoreVersionError):
        assert (int(message.split()[3].rstrip(",")), 1) == (
            caught.value.found,
            caught.value.supported,
        )


def test_a_directory_is_not_a_database(tmp_path: Path) -> None:
    with pytest.raises(StoreConnectError, match="is a directory, not a state database"):
        SqliteStore(tmp_path)


@pytest.mark.parametrize("mode", [{"create": False}, {"readonly": True}])
def test_a_missing_file_is_not_created_unless_asked(tmp_path: Path, mode: dict[str, bool]) -> None:
    path = tmp_path / "runs" / "state.db"
    with pytest.raises(StoreConnectError, match=f"^no state database at {path}$"):
        SqliteStore(path, **mode)
    assert [] == list(tmp_path.iterdir())


@pytest.mark.parametrize("mode", [{"create": False}, {"readonly": True}])
def test_an_empty_file_is_not_made_a_store_unless_asked(
    tmp_path: Path, mode: dict[str, bool]
) -> None:
    path = tmp_path / "state.db"
    path.touch()
    with pytest.raises(StoreConnectError, match=f"^{path} is an empty database: no run "):
        SqliteStore(path, **mode)
    assert 0 == path.stat().st_size
    SqliteStore(path).close()  # created when asked
    assert path.stat().st_size > 0


# -- permissions --------------------------------------------------------------------------

CHILD = """
import json, sys
from pathlib import Path
from subplan._store._open import open_store
try:
    store = open_store(sys.argv[1], Path("."), readonly=sys.argv[2] == "ro")
    print(json.dumps(["ok", [r.run_id for r in store.list_runs()]]))
except Exception as exc:
    print(json.dumps([type(exc).__name__, str(exc)]))
"""


@pytest.fixture
def unwritable() -> Iterator[tuple[Path, Callable[[str, str], list[object]]]]:
    """A directory holding a store that the user running ``open_store`` may not write.

    As root (who may write anything) the store is opened by a child running as nobody.
    """
    base = Path(tempfile.mkdtemp(prefix="subplan-ro-"))
    runs = base / "runs"
    runs.mkdir()
    store = SqliteStore(runs / "state.db")
    store.create_run(run())
    store.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COVERAGE")}
    if os.geteuid() == 0:
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            shutil.rmtree(base)
            pytest.skip("running as root without setpriv: cannot drop privileges")
        base.chmod(0o755)
        runs.chmod(0o755)
        prefix = [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups"]
    else:
        runs.chmod(0o555)
        prefix = []

    def open_as_user(spec: str, mode: str) -> list[object]:
        child = subprocess.run(
            [*prefix, sys.executable, "-c", CHILD, spec, mode],
            capture_output=True,
            text=True,
            cwd=base,
            env=env,
            timeout=LIMIT,
            check=False,
        )
        assert "" == child.stderr
        result: list[object] = json.loads(child.stdout)
        return result

    try:
        yield runs, open_as_user
    finally:
        runs.chmod(0o755)
        shutil.rmtree(base)


def test_a_store_in_an_unwritable_directory_is_refused_for_writing(
    unwritable: tuple[Path, Callable[[str, str], list[object]]],
) -> None:
    runs, open_as_user = unwritable
    before = sorted(p.name for p in runs.iterdir())
    assert [
        "StoreConnectError",
        f"cannot write the state database in {runs}: permission denied",
    ] == open_as_user(str(runs / "state.db"), "rw")
    assert [
        "StoreConnectError",
        f"cannot create the directory {runs / 'new'} for the state database: Permission denied",
    ] == open_as_user(str(runs / "new" / "state.db"), "rw")
    assert before == sorted(p.name for p in runs.iterdir())


def test_reading_a_store_in_an_unwritable_directory(
    unwritable: tuple[Path, Callable[[str, str], list[object]]],
) -> None:
    runs, open_as_user = unwritable
    path = runs / "state.db"
    # nobody has it open: a reader would have to create state.db-shm
    assert [
        "StoreConnectError",
        f"cannot read {path}: SQLite must create state.db-shm next to a database in WAL "
        f"mode and {runs} is not writable; ask for write access or copy the database",
    ] == open_as_user(str(path), "ro")
    secret = runs / "secret.db"
    shutil.copy(path, secret)
    secret.chmod(0o000)
    assert [
        "StoreConnectError",
        f"cannot read {secret}: Permission denied",
    ] == open_as_user(str(secret), "ro")
    # while a writer has it open, its -shm exists and a reader can share it
    writer = SqliteStore(path)
    try:
        assert ["ok", ["r1"]] == open_as_user(f"sqlite://{path}", "ro")
    finally:
        writer.close()


# -- network filesystems ------------------------------------------------------------------

MOUNTINFO = r"""22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 27 0:27 / /work rw,relatime shared:5 - overlay overlay rw,lowerdir=/a,upperdir=/b
31 30 0:50 / /work/shared rw,relatime shared:7 master:2 - nfs4 srv:/export rw,vers=4.2
32 27 0:51 /users /mnt/team\040drive rw - cifs //nas/users rw
37 27 0:56 / /mnt/cut rw -
33 27 0:52 / /mnt/nfs rw - nfs srv:/old rw
34 33 0:53 / /mnt/nfs rw - ext4 /dev/vdb rw
35 27 0:54 / /mnt/ssh rw - fuse.sshfs me@host:/ rw
36 27 0:55 / /mnt/nfs-local rw - xfs /dev/vdc rw
this line is not a mount
"""


def test_mountinfo_is_parsed_with_escapes() -> None:
    mounts = parse_mountinfo(MOUNTINFO)
    assert ("/mnt/team drive", "cifs") in mounts
    assert ("/work/shared", "nfs4") in mounts
    assert 9 == len(mounts)


@pytest.mark.parametrize(
    ("path", "fstype"),
    [
        ("/work/shared/runs/state.db", "nfs4"),
        ("/work/shared", "nfs4"),
        ("/work/sharedness/state.db", "overlay"),  # a prefix of the name is not a parent
        ("/work/main/.subplan/state.db", "overlay"),
        ("/mnt/team drive/x/state.db", "cifs"),
        ("/mnt/nfs/state.db", "ext4"),  # mounted over the nfs mount: the later one wins
        ("/mnt/nfs-local/state.db", "xfs"),
        ("/mnt/ssh/state.db", "fuse.sshfs"),
        ("/srv/state.db", "ext4"),
    ],
)
def test_the_filesystem_of_a_path_is_its_longest_mount_point(path: str, fstype: str) -> None:
    assert fstype == filesystem_type(Path(path), MOUNTINFO)


def test_the_filesystem_of_a_real_path_is_found(tmp_path: Path) -> None:
    assert filesystem_type(tmp_path) not in (None, "")


@pytest.mark.parametrize("fstype", ["nfs4", "nfs", "cifs", "smb3", "fuse.sshfs", "9p", "NFS4"])
def test_sqlite_refuses_a_network_filesystem(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, fstype: str
) -> None:
    seen: list[Path] = []

    def fake(path: Path, mountinfo: str | None = None) -> str:
        seen.append(path)
        return fstype

    monkeypatch.setattr(_sqlite, "filesystem_type", fake)
    path = tmp_path / "runs" / "state.db"
    with pytest.raises(NetworkFilesystemError) as caught:
        SqliteStore(path)
    assert fstype == caught.value.fstype
    assert (
        f"{path.parent} is on {fstype}; SQLite's write-ahead log needs a local filesystem: "
        "use --store postgresql://USER@HOST/DB or a runs directory on a local disk"
    ) == str(caught.value)
    assert [path.parent] == seen
    assert [] == list(tmp_path.iterdir())  # nothing created


def test_a_local_filesystem_is_accepted(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_sqlite, "filesystem_type", lambda path, mountinfo=None: "ext4")
    check_local_filesystem(tmp_path)
    SqliteStore(tmp_path / "state.db").close()


# -- open_store ---------------------------------------------------------------------------


def test_open_store_defaults_to_state_db_in_the_runs_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv(STORE_ENV, raising=False)
    for spec in (None, ""):
        store = open_store(spec, tmp_path / "runs")
        assert ("sqlite", str(tmp_path / "runs" / "state.db")) == (store.kind, store.location)
        store.close()


def test_open_store_takes_the_environment_when_not_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(STORE_ENV, f"sqlite://{tmp_path}/env.db")
    store = open_store(None, tmp_path / "runs")
    assert str(tmp_path / "env.db") == store.location
    store.close()
    store = open_store(str(tmp_path / "given.db"), tmp_path / "runs")  # a spec wins
    assert str(tmp_path / "given.db") == store.location
    store.close()


@pytest.mark.parametrize(
    ("spec", "relative"),
    [
        ("sqlite://{tmp}/a.db", "a.db"),  # {tmp} starts with a slash
        ("sqlite:///{tmp}/sqlalchemy.db", "sqlalchemy.db"),
        ("sqlite://{tmp}/with%20space.db", "with space.db"),
        ("sqlite:{tmp}/b.db", "b.db"),
        ("sqlite:rel/c.db", "rel/c.db"),
        ("{tmp}/d.db", "d.db"),
        ("rel/e.db", "rel/e.db"),
        ("odd:name/f.db", "odd:name/f.db"),  # a colon without // is a path
    ],
)
def test_open_store_sqlite_forms(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, spec: str, relative: str
) -> None:
    monkeypatch.chdir(tmp_path)
    store = open_store(spec.format(tmp=tmp_path), tmp_path / "runs")
    assert "sqlite" == store.kind
    assert str(tmp_path / relative) == store.location
    assert (tmp_path / relative).exists()
    store.close()


@pytest.mark.parametrize(
    "spec", ["mysql://root:hunter2@db/x", "sqlite://host/x.db", "sqlite:", "http://x"]
)
def test_open_store_refuses_other_forms(tmp_path: Path, spec: str) -> None:
    with pytest.raises(ConfigError) as caught:
        open_store(spec, tmp_path)
    text = str(caught.value)
    assert "postgresql://USER@HOST[:PORT]/DATABASE" in text
    assert "sqlite:///ABSOLUTE/PATH" in text
    assert "hunter2" not in text
    assert [] == list(tmp_path.iterdir())


def test_open_store_takes_a_path_object(tmp_path: Path) -> None:
    store = open_store(tmp_path / "p.db", tmp_path)  # type: ignore[arg-type]
    assert str(tmp_path / "p.db") == store.location
    store.close()


def test_open_store_read_only_creates_nothing(tmp_path: Path) -> None:
    with pytest.raises(StoreConnectError):
        open_store(None, tmp_path / "runs", readonly=True)
    assert [] == list(tmp_path.iterdir())
