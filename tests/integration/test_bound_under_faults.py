"""The global bound holds under every fault: SIGKILLs of the orchestrator at any moment.

Real processes throughout: ``subplan run`` / ``subplan resume`` as subprocesses running
real commands that log their own starts and ends (pid and attempt) to one append-only
file. The truth is read from that log, not from the store: the true peak never exceeds
``--max-parallel``, no subplan overlaps itself, no ``(subplan, attempt)`` starts twice,
and a subplan whose success was committed never starts again.
"""

from __future__ import annotations

import contextlib
import os
import random
import shlex
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from postgres_server import postgres_url
from subplan import RunLockLostError, RunReport, SharedLimiter, decompose, resume, run
from subplan._command._work import CommandWork
from subplan._store._base import AttemptProcess
from subplan._store._open import open_store

LIMIT = 60.0  # seconds any one bounded wait may take
# A command line that restarts the test's PostgreSQL server (one of the tester's own).
RESTART_ENV = "SUBPLAN_TEST_POSTGRES_RESTART"
KILLS = 30  # SIGKILLs of the orchestrator in the chaos test before it may finish

# (No braces in it: the command template would read them as placeholders.)
# A command: note "start ID ATTEMPT PID", work a while, note "end ID ATTEMPT PID" (also
# when terminated: the resume's SIGTERM ends it, and the log must say when).
SCRIPT = """\
import os, signal, sys, time
log, sid, attempt, pause = sys.argv[1], sys.argv[2], sys.argv[3], float(sys.argv[4])
ended = []
def note(kind):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, ("%s %s %s %d\\n" % (kind, sid, attempt, os.getpid())).encode())
    os.close(fd)
def stop(signum, frame):
    if not ended:
        ended.append(1)
        note("end")
    os._exit(143)
signal.signal(signal.SIGTERM, stop)
note("start")
time.sleep(pause)
signal.signal(signal.SIGTERM, signal.SIG_IGN)
ended.append(1)
note("end")
"""


def project(root: Path, leaves: int) -> Path:
    for n in range(leaves):
        directory = root / "proj" / f"m{n:02d}"
        directory.mkdir(parents=True)
        (directory / "a.py").write_text("x = 1\n")
    return root / "proj"


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "subplan", *args]


def command(log: Path, pause: float) -> list[str]:
    return [sys.executable, "-c", SCRIPT, str(log), "{id}", "{attempt}", str(pause)]


def lines(log: Path) -> list[list[str]]:
    if not log.exists():
        return []
    return [line.split() for line in log.read_text().splitlines() if line]


# Where this session's runs live: other test sessions on the host (other checkouts) run
# runs of the same ids at the same time, and their commands are none of ours.
_SCOPE: list[bytes] = []


@pytest.fixture(autouse=True)
def _runs_of_this_session(tmp_path_factory: pytest.TempPathFactory) -> None:
    if not _SCOPE:
        base = os.fsencode(tmp_path_factory.getbasetemp().absolute())
        _SCOPE.append(b"SUBPLAN_FILES_LIST=" + base + b"/")


def processes_of(run_id: str) -> list[int]:
    """Pids of live processes whose environment names the run (commands, blocked or not),
    among the runs of this test session."""
    needle = f"SUBPLAN_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError):
            variables = (entry / "environ").read_bytes().split(b"\0")
            if needle in variables and all(
                any(v.startswith(scope) for v in variables) for scope in _SCOPE
            ):
                stat = (entry / "stat").read_text()
                if stat[stat.rfind(")") + 2] not in "ZX":
                    found.append(int(entry.name))
    return found


def wait_until_gone(run_id: str, why: str) -> None:
    deadline = time.monotonic() + LIMIT
    while processes_of(run_id):
        assert time.monotonic() < deadline, f"{why}: {processes_of(run_id)} still alive"
        time.sleep(0.02)


@dataclass
class Truth:
    """What the commands' own log says happened."""

    peak: int = 0
    self_overlaps: list[str] = field(default_factory=list)
    repeated: list[tuple[str, str]] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)


def truth(log: Path) -> Truth:
    out = Truth()
    running: dict[str, str] = {}  # pid -> subplan
    seen: Counter[tuple[str, str]] = Counter()
    for kind, sid, attempt, pid in lines(log):
        if kind == "start":
            if sid in running.values():
                out.self_overlaps.append(sid)
            running[pid] = sid
            seen[sid, attempt] += 1
            if seen[sid, attempt] == 2:
                out.repeated.append((sid, attempt))
            out.peak = max(out.peak, len(running))
        else:
            running.pop(pid, None)
    out.unfinished = sorted(running.values())
    return out


def succeeded(runs: Path, run_id: str) -> dict[str, int]:
    """{subplan: attempt number} of the successes the store holds."""
    if not (runs / "state.db").exists():
        return {}
    with contextlib.closing(open_store(None, runs, create=False)) as store:
        try:
            rows = store.attempts(run_id)
        except Exception:  # not recorded yet
            return {}
    return {r.subplan_id: r.number for r in rows if r.status == "succeeded"}


def recorded(runs: Path, run_id: str) -> bool:
    if not (runs / "state.db").exists():
        return False
    with contextlib.closing(open_store(None, runs, create=False)) as store:
        try:
            store.get_run(run_id)
        except Exception:  # not recorded yet
            return False
    return True


def reruns_of_successes(log: Path, before: dict[str, int], offset: int) -> list[str]:
    """Subplans that succeeded (in the store) and started again after line ``offset``."""
    return [sid for kind, sid, *_ in lines(log)[offset:] if kind == "start" and sid in before]


def run_argv(root: Path, runs: Path, log: Path, *, limit: int, pause: float) -> list[str]:
    return cli(
        "run",
        str(root),
        "--max-files",  # one subplan per directory (of one file)
        "1",
        "--max-parallel",
        str(limit),
        "--run-id",
        "k",
        "--runs-dir",
        str(runs),
        "--",
        *command(log, pause),
    )


def clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k != "SUBPLAN_TEST_KILL_AT"}


def test_a_kill_between_spawn_and_record_leaves_no_command_behind(tmp_path: Path) -> None:
    root = project(tmp_path, 3)
    runs, log = tmp_path / "runs", tmp_path / "log"
    # The orchestrator SIGKILLs itself right after spawning its first command, before it
    # could record anything about it.
    killed = subprocess.run(
        run_argv(root, runs, log, limit=3, pause=3.0),
        env={**clean_env(), "SUBPLAN_TEST_KILL_AT": "after_spawn:1"},
        capture_output=True,
        timeout=LIMIT,
        check=False,
    )
    assert -signal.SIGKILL == killed.returncode
    try:
        resumed = subprocess.run(
            cli("resume", "k", "--runs-dir", str(runs)),
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=LIMIT,
            check=False,
        )
        assert 0 == resumed.returncode, resumed.stderr
        wait_until_gone("k", "commands of the run outlived its resume")
    finally:
        for pid in processes_of("k"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    seen = truth(log)
    assert ([], [], []) == (seen.self_overlaps, seen.repeated, seen.unfinished)
    assert seen.peak <= 3
    # The command spawned by the killed orchestrator never ran: every subplan ran once.
    assert 3 == len([x for x in lines(log) if x[0] == "start"])


@pytest.mark.slow
def test_random_sigkills_never_break_the_bound(tmp_path: Path) -> None:
    rng = random.Random(14)
    limit, leaves = 5, 40
    root = project(tmp_path, leaves)
    runs, log = tmp_path / "runs", tmp_path / "log"
    kills = hook_kills = rounds = 0
    reruns: list[str] = []
    started = time.monotonic()
    finished = False
    while not finished:
        argv = (
            cli("resume", "k", "--runs-dir", str(runs))
            if recorded(runs, "k")
            else run_argv(root, runs, log, limit=limit, pause=0.5)
        )
        assert time.monotonic() - started < 100, f"no end after {rounds} rounds, {kills} kills"
        env = clean_env()
        hook = rng.random() < 0.3 and kills < KILLS
        if hook:  # exactly the gap between spawn and record
            env["SUBPLAN_TEST_KILL_AT"] = f"after_spawn:{rng.randint(1, 8)}"
        before, offset = succeeded(runs, "k"), len(lines(log))
        orchestrator = subprocess.Popen(
            argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        rounds += 1
        if not hook and kills < KILLS:
            with contextlib.suppress(subprocess.TimeoutExpired):
                orchestrator.wait(timeout=rng.uniform(0.2, 1.0))  # a random moment
            if orchestrator.poll() is None:
                orchestrator.kill()
        status = orchestrator.wait(timeout=LIMIT)
        kills += status == -signal.SIGKILL
        hook_kills += hook and status == -signal.SIGKILL
        reruns += reruns_of_successes(log, before, offset)
        finished = status == 0
    wait_until_gone("k", "commands outlived the finished run")
    seen = truth(log)
    done = succeeded(runs, "k")
    figures = {
        "kills": kills,
        "peak": seen.peak,
        "self overlaps": len(seen.self_overlaps),
        "repeated (subplan, attempt)": len(seen.repeated),
        "re-runs of successes": len(reruns),
        "succeeded": len(done),
    }
    what = f"{figures}, {hook_kills} kills right after a spawn, {rounds} rounds"
    assert {
        "kills": kills,
        "peak": min(seen.peak, limit),
        "self overlaps": 0,
        "repeated (subplan, attempt)": 0,
        "re-runs of successes": 0,
        "succeeded": leaves,
    } == figures, what
    assert kills >= KILLS, what


def test_resume_kills_a_command_of_the_run_the_store_never_heard_of(tmp_path: Path) -> None:
    root = project(tmp_path, 2)
    runs, log = tmp_path / "runs", tmp_path / "log"
    done = subprocess.run(
        run_argv(root, runs, log, limit=2, pause=0.0),
        env=clean_env(),
        capture_output=True,
        timeout=LIMIT,
        check=False,
    )
    assert 0 == done.returncode, done.stderr
    # A command of the run that no store row names (as after a kill in the wrong place).
    stray = subprocess.Popen(
        [sys.executable, "-c", "import time; time.sleep(600)"],
        env={
            **clean_env(),
            "SUBPLAN_RUN_ID": "k",
            "SUBPLAN_ID": "sp-x",
            "SUBPLAN_FILES_LIST": str(runs / "k" / "sp-x" / "files.txt"),
        },
        start_new_session=True,
    )
    try:
        resumed = subprocess.run(
            cli("resume", "k", "--runs-dir", str(runs)),
            env=clean_env(),
            capture_output=True,
            text=True,
            timeout=LIMIT,
            check=False,
        )
        assert (0, -signal.SIGTERM) == (resumed.returncode, stray.wait(timeout=LIMIT)), (
            resumed.stderr
        )
    finally:
        if stray.poll() is None:
            stray.kill()
            stray.wait()


def test_an_orphaned_command_keeps_its_pool_slot_until_it_is_gone(tmp_path: Path) -> None:
    root = project(tmp_path, 2)
    runs, log, pools = tmp_path / "runs", tmp_path / "log", tmp_path / "pools"
    env = {**clean_env(), "SUBPLAN_POOL_DIR": str(pools)}
    argv = run_argv(root, runs, log, limit=2, pause=600.0)
    argv[argv.index("--") : argv.index("--")] = ["--pool", "shared"]
    orchestrator = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + LIMIT
        while len([x for x in lines(log) if x[0] == "start"]) < 2:
            assert time.monotonic() < deadline, "the commands never started"
            assert orchestrator.poll() is None, "the run ended early"
            time.sleep(0.02)
        orchestrator.kill()
        orchestrator.wait(timeout=LIMIT)
        orphans = processes_of("k")
        assert orphans, "the commands died with their orchestrator"
        pool = SharedLimiter("shared", 2, directory=pools)
        try:
            # Both slots stay taken while the orphaned commands run...
            assert None is pool.acquire_nowait()
            for pid in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            wait_until_gone("k", "the orphaned commands survived SIGKILL")
            # ...and come free once they are gone. A dying process leaves /proc's list
            # (its memory, and so its environment, goes first) a moment before the kernel
            # closes its files and its flock: poll for the slots, do not race that.
            slots = [pool.acquire_nowait(), pool.acquire_nowait()]
            deadline = time.monotonic() + LIMIT
            while None in slots and time.monotonic() < deadline:
                time.sleep(0.02)
                slots = [s if s is not None else pool.acquire_nowait() for s in slots]
            assert None not in slots
        finally:
            pool.close()
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()
            orchestrator.wait()
        for pid in processes_of("k"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# A command that notes a SIGTERM and carries on: only SIGKILL ends it.
STUBBORN = (
    "import os, signal, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
    "signal.signal(signal.SIGTERM, lambda *_: os.write(fd, b'term\\n'))\n"
    "os.write(fd, b'start\\n')\n"
    "while True: time.sleep(600)\n"
)


def test_kill_after_sets_the_grace_between_sigterm_and_sigkill(tmp_path: Path) -> None:
    root = project(tmp_path, 1)
    runs, log = tmp_path / "runs", tmp_path / "log"
    argv = cli(
        "run", str(root), "--max-files", "1", "--run-id", "k", "--runs-dir", str(runs),
        "--timeout", "0.5", "--kill-after", "0.2", "--", sys.executable, "-c", STUBBORN, str(log),
    )  # fmt: skip
    began = time.monotonic()
    done = subprocess.run(argv, env=clean_env(), capture_output=True, text=True, timeout=LIMIT)
    took = time.monotonic() - began
    with contextlib.closing(open_store(None, runs, create=False)) as store:
        rows = store.attempts("k")
        grace = store.get_run("k").config["work"]["kill_grace"]
    assert (1, ["timed_out"], 0.2) == (done.returncode, [r.status for r in rows], grace)
    assert took < 5.0, "the command outlived a 0.2 s grace (the default is 5 s)"
    assert [] == processes_of("k")


def test_a_lost_postgres_run_lock_stops_the_run_and_its_commands(tmp_path: Path) -> None:
    url = postgres_url()
    restart = os.environ.get(RESTART_ENV)
    if not restart:
        pytest.skip(f"{RESTART_ENV} is not set: no way to restart the PostgreSQL server")
    run_id = f"lost-{uuid.uuid4().hex[:12]}"
    root = project(tmp_path, 2)
    runs, log = tmp_path / "runs", tmp_path / "log"
    argv = cli(
        "run", str(root), "--max-files", "1", "--max-parallel", "2", "--run-id", run_id,
        "--runs-dir", str(runs), "--store", url, "--", *command(log, 600.0),
    )  # fmt: skip
    orchestrator = subprocess.Popen(
        argv, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        deadline = time.monotonic() + LIMIT
        while len([x for x in lines(log) if x[0] == "start"]) < 2:
            assert orchestrator.poll() is None, "the orchestrator ended early"
            assert time.monotonic() < deadline, "the commands never started"
            time.sleep(0.02)
        # The server restarts: every session ends, and the run's advisory lock with it.
        subprocess.run(
            shlex.split(restart),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=LIMIT,
        )
        _, err = orchestrator.communicate(timeout=LIMIT)
        assert 75 == orchestrator.returncode, err
        assert "run lock was lost" in err
        wait_until_gone(run_id, "commands outlived their orchestrator's lost lock")
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()
            orchestrator.wait()
        for pid in processes_of(run_id):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def test_the_stray_scan_leaves_a_run_of_the_same_id_in_another_runs_dir_alone(
    tmp_path: Path,
) -> None:
    from subplan._command._process import process_groups_of_run

    def sleeper(runs: Path) -> subprocess.Popen[bytes]:
        env = {
            **clean_env(),
            "SUBPLAN_RUN_ID": "same",
            "SUBPLAN_ID": "sp-1",
            "SUBPLAN_FILES_LIST": str(runs / "same" / "sp-1" / "files.txt"),
        }
        return subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)

    ours, theirs = sleeper(tmp_path / "ours"), sleeper(tmp_path / "theirs")
    try:
        found = process_groups_of_run("same", run_dir=tmp_path / "ours" / "same")
        assert ours.pid in found
        assert theirs.pid not in found
    finally:
        for proc in (ours, theirs):
            proc.kill()
            proc.wait()


# -- the process backend ------------------------------------------------------------------

HOLD = 2.0  # seconds the first commit of a command's group is held back


class HoldsTheFirstGroupCommit:
    """A real store whose first commit of a command's process group waits until that
    command has logged its start, or ``HOLD`` seconds: it shows whether a command could
    run before the orchestrator had recorded it durably."""

    def __init__(self, store: Any, log: Path) -> None:
        self.inner = store
        self.log = log
        self.ran_before_its_record: bool | None = None

    def apply(self, writes: Any) -> Any:
        if self.ran_before_its_record is None and any(
            isinstance(w, AttemptProcess) for w in writes
        ):
            deadline = time.monotonic() + HOLD
            while not lines(self.log) and time.monotonic() < deadline:
                time.sleep(0.01)
            self.ran_before_its_record = bool(lines(self.log))
        return self.inner.apply(writes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_no_command_runs_before_its_group_is_committed(tmp_path: Path, backend: str) -> None:
    runs, log = tmp_path / "runs", tmp_path / "log"
    plan = decompose(["m00/a.py"])
    with contextlib.closing(open_store(None, runs)) as real:
        store = HoldsTheFirstGroupCommit(real, log)
        report = run(
            plan,
            CommandWork(command(log, 0.0)),
            backend=backend,  # type: ignore[arg-type]
            store=store,
            runs_dir=runs,
            run_id="k",
        )
        rows = real.attempts("k")
    assert ("succeeded", False) == (report.status, store.ran_before_its_record)
    assert [(1, True)] == [(r.number, r.pgid is not None) for r in rows]


def test_an_orphan_of_the_process_backend_keeps_its_pool_slot(tmp_path: Path) -> None:
    root = project(tmp_path, 2)
    runs, log, pools = tmp_path / "runs", tmp_path / "log", tmp_path / "pools"
    env = {**clean_env(), "SUBPLAN_POOL_DIR": str(pools)}
    argv = run_argv(root, runs, log, limit=2, pause=600.0)
    argv[argv.index("--") : argv.index("--")] = ["--pool", "shared", "--backend", "process"]
    # A group of its own: the orchestrator, its fork server and its workers die together.
    orchestrator = subprocess.Popen(
        argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + LIMIT
        while len([x for x in lines(log) if x[0] == "start"]) < 2:
            assert time.monotonic() < deadline, "the commands never started"
            assert orchestrator.poll() is None, "the run ended early"
            time.sleep(0.02)
        os.killpg(orchestrator.pid, signal.SIGKILL)
        orchestrator.wait(timeout=LIMIT)
        orphans = processes_of("k")
        assert orphans, "the commands died with their orchestrator"
        pool = SharedLimiter("shared", 2, directory=pools)
        try:
            assert None is pool.acquire_nowait()  # both slots stay taken by the orphans...
            for pid in orphans:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
            wait_until_gone("k", "the orphaned commands survived SIGKILL")
            slots = [pool.acquire_nowait(), pool.acquire_nowait()]
            assert None not in slots  # ...and come free once they are gone
        finally:
            pool.close()
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(orchestrator.pid, signal.SIGKILL)
        orchestrator.wait()
        for pid in processes_of("k"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.parametrize("backend", ["thread", "process", "dask"])
def test_a_second_ctrl_c_kills_every_command_at_once(tmp_path: Path, backend: str) -> None:
    if backend == "dask":
        pytest.importorskip("distributed")  # the run starts a LocalCluster of its own
    root = project(tmp_path, 2)
    runs, log = tmp_path / "runs", tmp_path / "log"
    # A grace of 600 s: the first Ctrl-C's SIGTERM would be followed by SIGKILL only then.
    argv = cli(
        "run", str(root), "--max-files", "1", "--max-parallel", "2", "--run-id", "k",
        "--runs-dir", str(runs), "--backend", backend, "--kill-after", "600",
        "--", sys.executable, "-c", STUBBORN, str(log),
    )  # fmt: skip
    orchestrator = subprocess.Popen(
        argv, env=clean_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + LIMIT
        while len([x for x in lines(log) if x == ["start"]]) < 2:
            assert orchestrator.poll() is None, "the orchestrator ended early"
            assert time.monotonic() < deadline, "the commands never started"
            time.sleep(0.02)
        orchestrator.send_signal(signal.SIGINT)
        while len([x for x in lines(log) if x == ["term"]]) < 2:
            assert time.monotonic() < deadline, "the first Ctrl-C sent no SIGTERM"
            time.sleep(0.02)
        orchestrator.send_signal(signal.SIGINT)
        assert 130 == orchestrator.wait(timeout=LIMIT)
        assert [] == processes_of("k"), "commands outlived the second Ctrl-C"
    finally:
        if orchestrator.poll() is None:
            orchestrator.kill()
            orchestrator.wait()
        for pid in processes_of("k"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


# -- lock epochs: a stale orchestrator never writes after a newer one took the run ---------

# A command that notes its start, waits for the file GO (or a SIGTERM), and notes its end.
GATED = """\
import os, signal, sys, time
log, sid, attempt, go = sys.argv[1], sys.argv[2], sys.argv[3], sys.argv[4]
def note(kind):
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    os.write(fd, ("%s %s %s %d\\n" % (kind, sid, attempt, os.getpid())).encode())
    os.close(fd)
def stop(signum, frame):
    note("end")
    os._exit(143)
signal.signal(signal.SIGTERM, stop)
note("start")
while not os.path.exists(go):
    time.sleep(0.01)
note("end")
"""


class Freezes:
    """A real store whose writes wait while it is frozen, as if their orchestrator were
    stopped (SIGSTOP); it keeps the run locks it hands out, so a test can lose one."""

    def __init__(self, store: Any) -> None:
        self.inner = store
        self.thawed = threading.Event()
        self.thawed.set()
        self.locks: list[Any] = []

    def apply(self, writes: Any) -> Any:
        self.thawed.wait(LIMIT)
        return self.inner.apply(writes)

    def lock_run(self, run_id: str) -> Any:
        lock = self.inner.lock_run(run_id)
        self.locks.append(lock)
        return lock

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


@pytest.fixture(params=["sqlite", "postgresql"])
def two_stores(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Any, Any]]:
    """Two store objects (two connections) on one fresh store of each kind."""
    if request.param == "sqlite":
        stores = [open_store(None, tmp_path / "runs") for _ in range(2)]
        yield stores[0], stores[1]
        for store in stores:
            store.close()
        return
    import psycopg
    from psycopg import sql

    from subplan._store._postgres import PostgresStore

    url, schema = postgres_url(), f"epochs_{uuid.uuid4().hex[:12]}"
    stores = [PostgresStore(url, schema=schema) for _ in range(2)]
    try:
        yield stores[0], stores[1]
    finally:
        for store in stores:
            store.close()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))


def test_a_stale_orchestrator_cannot_write_after_a_newer_one_took_the_run(
    tmp_path: Path, two_stores: tuple[Any, Any]
) -> None:
    runs, log, go = tmp_path / "runs", tmp_path / "log", tmp_path / "go"
    plan = decompose(["m0/a.py", "m1/a.py", "m2/a.py"], max_files=1)
    work = CommandWork([sys.executable, "-c", GATED, str(log), "{id}", "{attempt}", str(go)])
    stale = Freezes(two_stores[0])
    outcome: list[BaseException | RunReport] = []

    def first() -> None:
        try:
            outcome.append(run(plan, work, store=stale, runs_dir=runs, run_id="k", max_parallel=1))
        except BaseException as exc:
            outcome.append(exc)

    orchestrator = threading.Thread(target=first, daemon=True)
    orchestrator.start()
    deadline = time.monotonic() + LIMIT
    while not lines(log):
        assert time.monotonic() < deadline and not outcome, f"nothing started: {outcome}"
        time.sleep(0.01)
    # The first orchestrator freezes (its writes wait) and loses its lock meanwhile.
    stale.thawed.clear()
    stale.locks[0].release()
    go.touch()
    newer = resume("k", store=two_stores[1], runs_dir=runs)
    assert "succeeded" == newer.status
    stale.thawed.set()  # it wakes up, and tries to go on
    orchestrator.join(LIMIT)
    assert not orchestrator.is_alive()
    assert isinstance(outcome[0], RunLockLostError), outcome
    record = two_stores[1].get_run("k")
    rows = two_stores[1].attempts("k")
    assert ("succeeded", newer.ended) == (record.status, record.ended)
    assert {
        (leaf.id, 1, "interrupted") if leaf is plan.leaves[0] else (leaf.id, 1, "succeeded")
        for leaf in plan.leaves
    } | {(plan.leaves[0].id, 2, "succeeded")} == {(r.subplan_id, r.number, r.status) for r in rows}
    seen = truth(log)
    starts = [x for x in lines(log) if x[0] == "start"]
    assert (1, [], 4) == (seen.peak, seen.repeated, len(starts)), lines(log)
    wait_until_gone("k", "a command of the stale orchestrator outlived it")


# -- resume reclaims many stray groups at once ---------------------------------------------

IGNORES_TERM = (
    "import signal, time; signal.signal(signal.SIGTERM, signal.SIG_IGN); "
    "print('ready', flush=True); time.sleep(600)"
)


def test_resume_reclaims_many_groups_under_one_grace_period(tmp_path: Path) -> None:
    import socket

    from subplan._durable._resume import prepare_resume
    from subplan._store._base import AttemptStarted, RunRecord
    from subplan.testing import FakeClock

    runs, grace, groups = tmp_path / "runs", 2.0, 4
    plan = decompose([f"m{n}/a.py" for n in range(groups)], max_files=1)
    # Commands a dead orchestrator left running, each shrugging off SIGTERM.
    strays = [
        subprocess.Popen(
            [sys.executable, "-c", IGNORES_TERM], start_new_session=True, stdout=subprocess.PIPE
        )
        for _ in range(groups)
    ]
    clock = FakeClock()
    try:
        for stray in strays:  # each ignores SIGTERM by now
            assert stray.stdout is not None and b"ready\n" == stray.stdout.readline()
        with contextlib.closing(open_store(None, runs)) as store:
            store.create_run(
                RunRecord("k", "running", 1.0, 1.0, None, plan.to_json(), host=socket.gethostname())
            )
            store.apply(
                [
                    write
                    for leaf, stray in zip(plan.leaves, strays, strict=True)
                    for write in (
                        AttemptStarted("k", leaf.id, 1, 1.0),
                        AttemptProcess("k", leaf.id, 1, pid=stray.pid, pgid=stray.pid),
                    )
                ]
            )
            lock = store.lock_run("k")
            try:
                before = clock.monotonic()
                prepare_resume(
                    store, "k", lock=lock, plan=None, rerun=(), clock=clock, kill_grace=grace
                )
                took = clock.monotonic() - before
            finally:
                lock.release()
            statuses = [r.status for r in store.attempts("k")]
        codes = [stray.wait(timeout=LIMIT) for stray in strays]
    finally:
        for stray in strays:
            if stray.poll() is None:
                stray.kill()
                stray.wait()
            assert stray.stdout is not None
            stray.stdout.close()
    assert (["interrupted"] * groups, [-signal.SIGKILL] * groups) == (statuses, codes)
    # One grace period for all of them (on the injected clock), not one each in turn.
    assert grace <= took < 2 * grace, f"{took:.2f}s of virtual time for {groups} groups"


def test_the_stray_scan_can_pick_one_attempt_of_a_run(tmp_path: Path) -> None:
    from subplan._command._process import process_groups_of_run

    def sleeper(subplan_id: str, attempt: int) -> subprocess.Popen[bytes]:
        env = {
            **clean_env(),
            "SUBPLAN_RUN_ID": "same",
            "SUBPLAN_ID": subplan_id,
            "SUBPLAN_ATTEMPT": str(attempt),
            "SUBPLAN_FILES_LIST": str(tmp_path / "same" / subplan_id / "files.txt"),
        }
        return subprocess.Popen(["sleep", "60"], env=env, start_new_session=True)

    procs = [sleeper("sp-1", 1), sleeper("sp-1", 2), sleeper("sp-2", 1)]
    try:
        found = process_groups_of_run("same", run_dir=tmp_path / "same", attempt=("sp-1", 2))
        assert {procs[1].pid} == found
    finally:
        for proc in procs:
            proc.kill()
            proc.wait()
