"""ProcessWorkers with real worker processes: a worker's death ends only its own job.

Workers die at every stage (initializer, unpickling the job, running it, pickling the
result, half-way through sending it), alone, together and under load; jobs are killed
for timeouts; the pool is shut down with and without killing; the parent itself is
SIGKILLed. Through all of it every submitted job ends exactly once, innocent jobs are
untouched, and the process groups a dead job reported are gone before its end arrives.

Jobs are module-level functions of this module: workers take the parent's ``sys.path``,
so they import it like the parent did. Waiting is bounded everywhere (files, events and
polls with deadlines); nothing sleeps for timing.
"""

from __future__ import annotations

import contextlib
import ctypes
import faulthandler
import fcntl
import functools
import math
import multiprocessing
import os
import pathlib
import posix
import random
import resource
import signal
import struct
import subprocess
import sys
import termios
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from subplan import ConfigError, StoreError
from subplan._command import _workers as _processes
from subplan._command._process import _group_alive
from subplan._command._workers import (
    JobEnd,
    ProcessWorkers,
    ProcessWorkersStatistics,
    report_pgid,
)

pytestmark = pytest.mark.timeout(120)

LIMIT = 60.0  # seconds any single bounded wait may take before the test fails


# --------------------------------------------------------------------------- jobs
# (run inside worker processes)


def add(a: int, b: int) -> int:
    return a + b


def pid() -> int:
    return os.getpid()


def boom(message: str) -> None:
    raise ValueError(message)


def exit_now(status: int) -> None:
    os._exit(status)


def sigkill_self() -> None:
    os.kill(os.getpid(), signal.SIGKILL)


def segfault() -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))  # no core file in the working tree
    ctypes.string_at(0)


def exit_via_sys(status: int) -> None:
    sys.exit(status)


def wait_for(path: str, limit: float = LIMIT) -> bool:
    """Block until ``path`` exists; TimeoutError after ``limit`` seconds."""
    deadline = time.monotonic() + limit
    while not os.path.exists(path):  # noqa: PTH110 - hot loop
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path} did not appear within {limit}s")
        time.sleep(0.002)
    return True


def announce(path: str, text: str) -> None:
    """Write ``text`` to ``path`` atomically (readers never see half of it)."""
    tmp = pathlib.Path(f"{path}.tmp")
    tmp.write_text(text)
    tmp.replace(path)


def signal_then_wait(ready: str, go: str, then: Callable[..., object], *args: object) -> object:
    """Say "running, pid N" in ``ready``, wait for ``go``, then return ``then(*args)``."""
    announce(ready, str(os.getpid()))
    wait_for(go)
    return then(*args)


def hang(ready: str | None = None) -> None:
    """Run until killed (or for LIMIT seconds)."""
    if ready is not None:
        announce(ready, str(os.getpid()))
    wait_for("/nonexistent/never", LIMIT)


def start_command_then(ready: str, go: str, then: Callable[..., object], *args: object) -> object:
    """Start ``sleep`` in its own session, report its group, say so, wait, then ``then``."""
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    report_pgid(proc.pid)
    announce(ready, f"{os.getpid()} {proc.pid}")
    wait_for(go)
    return then(*args)


def start_sh_then_hang(ready: str) -> None:
    """Start a shell that ignores SIGTERM in its own session, report it, run until killed."""
    proc = subprocess.Popen(["sh", "-c", IGNORES_TERM], start_new_session=True)
    report_pgid(proc.pid)
    wait_for_trap = time.monotonic() + LIMIT
    while (
        "sleep"
        not in subprocess.run(
            ["ps", "-o", "comm=", "--ppid", str(proc.pid)], capture_output=True, text=True
        ).stdout
    ):
        assert time.monotonic() < wait_for_trap, "the shell did not start sleep"
        time.sleep(0.002)
    announce(ready, f"{os.getpid()} {proc.pid}")
    hang()


def work(i: int, pause: float) -> int:
    time.sleep(pause)  # a job that takes a while, so crashes overlap with it
    return i * i


class ExitOnPickle:
    """A result whose pickling kills the worker: it dies while returning."""

    def __reduce__(self) -> tuple[Any, ...]:
        os._exit(5)


def return_exit_on_pickle() -> ExitOnPickle:
    return ExitOnPickle()


class ExitOnUnpickle:
    """An argument that pickles fine but kills the worker when it is unpickled there."""

    def __reduce__(self) -> tuple[Any, ...]:
        # posix._exit, not os._exit: coverage's patch=_exit replaces the latter with a
        # local function, which cannot be pickled.
        return (posix._exit, (4,))


class NeedsTwo(Exception):
    """Pickles, but cannot be unpickled: ``args`` holds one value, ``__init__`` wants two."""

    def __init__(self, a: str, b: str) -> None:
        super().__init__(f"{a}-{b}")


def raise_needs_two() -> None:
    raise NeedsTwo("a", "b")


class HoldsLock(Exception):
    pass


def raise_unpicklable() -> None:
    raise HoldsLock("cannot travel", threading.Lock())


def return_lock() -> object:
    return threading.Lock()


def fail_in_parent() -> object:
    raise LookupError("this only runs when the parent unpickles the result")


class LoadsBadly:
    def __reduce__(self) -> tuple[Any, ...]:
        return (fail_in_parent, ())


def return_loads_badly() -> LoadsBadly:
    return LoadsBadly()


def report_parent_group(parent_pgrp: int) -> None:
    """Leave the parent's process group, then name it as a command's group, then die."""
    os.setsid()
    try:
        report_pgid(parent_pgrp)
    except ValueError:
        refused = True
    else:
        refused = False
    child = _processes._child  # say it anyway, bypassing the check: the parent checks too
    assert child is not None and child.job_id is not None
    child.send(("pgid", child.job_id, parent_pgrp))
    child.send(("pgid", child.job_id + 1000, 999_999))  # and for another job: ignored
    os._exit(6 if refused else 7)


def report_then_exit(pgid: int) -> None:
    report_pgid(pgid)
    os._exit(3)


IGNORES_TERM = "trap '' TERM; sleep 300 & wait"


def start_a_process_of_its_own() -> int | None:
    process = multiprocessing.get_context("fork").Process(target=os.getpid)
    process.start()
    process.join()
    return process.exitcode


def report_later(go: str, done: str, pgid: int) -> str:
    """Leave a thread that calls report_pgid after this job has returned."""

    def late() -> None:
        wait_for(go)
        report_pgid(pgid)
        announce(done, "")

    threading.Thread(target=late, daemon=True).start()
    return "returned"


def send_sigint_to_self() -> str:
    os.kill(os.getpid(), signal.SIGINT)
    return "survived"


def command_ignores_sigint() -> bool:
    """Whether a command this job starts ignores SIGINT (bit 2 of SigIgn)."""
    status = subprocess.run(
        ["cat", "/proc/self/status"], capture_output=True, text=True, check=True
    ).stdout
    line = next(x for x in status.splitlines() if x.startswith("SigIgn:"))
    return bool(int(line.split()[1], 16) & (1 << (signal.SIGINT - 1)))


def open_files() -> list[str]:
    names = []
    for fd in pathlib.Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):
            names.append(str(fd.readlink()))
    return names


def where() -> tuple[str, list[str]]:
    return str(pathlib.Path.cwd()), list(sys.path)


_initialized: list[str] = []


def initialize() -> None:
    _initialized.append("yes")


def initialized() -> list[str]:
    return _initialized


def init_exit() -> None:
    os._exit(3)


def init_raise() -> None:
    raise ValueError("no database")


# --------------------------------------------------------------------------- helpers


class Ends:
    """``on_end`` for tests: keeps every end, counts duplicates, runs ``check`` first."""

    def __init__(self, check: Callable[[JobEnd], None] | None = None) -> None:
        self.check = check
        self.cond = threading.Condition()
        self.ends: list[JobEnd] = []
        self.threads: set[str] = set()

    def __call__(self, end: JobEnd) -> None:
        if self.check is not None:
            self.check(end)
        with self.cond:
            self.ends.append(end)
            self.threads.add(threading.current_thread().name)
            self.cond.notify_all()

    def wait(self, count: int, limit: float = LIMIT) -> list[JobEnd]:
        with self.cond:
            if not self.cond.wait_for(lambda: len(self.ends) >= count, limit):
                faulthandler.dump_traceback(all_threads=True)
                raise AssertionError(f"{len(self.ends)} of {count} ends in {limit}s: {self.ends}")
            return list(self.ends)

    def by_id(self) -> dict[int, JobEnd]:
        with self.cond:
            ids = [e.job_id for e in self.ends]
            assert len(ids) == len(set(ids)), f"a job ended twice: {sorted(ids)}"
            return {e.job_id: e for e in self.ends}

    def one(self, job_id: int, limit: float = LIMIT) -> JobEnd:
        deadline = time.monotonic() + limit
        with self.cond:
            while True:
                found = [e for e in self.ends if e.job_id == job_id]
                if found:
                    assert len(found) == 1, f"job {job_id} ended {len(found)} times"
                    return found[0]
                if not self.cond.wait(deadline - time.monotonic()):
                    faulthandler.dump_traceback(all_threads=True)
                    raise AssertionError(f"job {job_id} did not end in {limit}s: {self.ends}")


def wait_until(predicate: Callable[[], bool], what: str, limit: float = LIMIT) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            faulthandler.dump_traceback(all_threads=True)
            raise AssertionError(f"timed out after {limit}s waiting for {what}")
        time.sleep(0.002)


def read_when_ready(path: pathlib.Path) -> list[int]:
    wait_until(path.exists, f"{path.name} to be written")
    return [int(x) for x in path.read_text().split()]


def gone(pid: int) -> bool:
    """``pid`` does not run: it does not exist or is a zombie."""
    return not _processes._pid_alive(pid)


@pytest.fixture
def make_pool() -> Iterator[Callable[..., tuple[ProcessWorkers, Ends]]]:
    """Make pools that are killed and waited for at the end of the test."""
    pools: list[ProcessWorkers] = []

    def make(size: int, ends: Ends | None = None, **options: Any) -> tuple[ProcessWorkers, Ends]:
        ends = ends or Ends()
        pool = ProcessWorkers(size, on_end=ends, **options)
        pools.append(pool)
        return pool, ends

    yield make
    for pool in pools:
        with contextlib.suppress(Exception):
            pool.shutdown(wait=True, kill=True)


def pool_counts(pool: ProcessWorkers) -> tuple[int, int, int, int, int]:
    """(crashes, kills, replaced, started_workers, alive)."""
    s = pool.statistics()
    return (s.crashes, s.kills, s.replaced, s.started_workers, s.alive)


def stats(pool: ProcessWorkers) -> dict[str, int]:
    s = pool.statistics()
    return {k: getattr(s, k) for k in ProcessWorkersStatistics.__dataclass_fields__}


# --------------------------------------------------------------------------- basics


def test_a_job_returns_its_value_with_times_and_pid(make_pool: Any) -> None:
    pool, ends = make_pool(2)
    before = time.time()
    pool.submit(1, add, (2, 3))
    end = ends.one(1)
    assert ("returned", 5, None, None) == (end.outcome, end.value, end.error, end.error_text)
    assert end.started is not None and before <= end.started <= end.ended <= time.time()
    assert end.pid not in (0, os.getpid())
    assert {"subplan-process-watcher"} == ends.threads


def test_workers_start_lazily_and_are_reused(make_pool: Any) -> None:
    pool, ends = make_pool(3)
    assert 0 == pool.statistics().alive
    pids = set()
    for i in range(6):
        pool.submit(i, pid, ())
        pids.add(ends.one(i).value)
    assert 1 == len(pids)  # one job at a time needs one worker
    assert {
        "size": 3,
        "alive": 1,
        "busy": 0,
        "idle": 1,
        "started_workers": 1,
        "crashes": 0,
        "kills": 0,
        "replaced": 0,
    } == stats(pool)


def test_an_exception_is_raised_with_the_childs_traceback(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    pool.submit(1, boom, ("bad input",))
    end = ends.one(1)
    assert ("raised", "ValueError: bad input") == (end.outcome, end.error_text)
    assert isinstance(end.error, ValueError) and ("bad input",) == end.error.args
    assert "in boom" in str(end.error.__cause__)
    assert end.started is not None


@pytest.mark.parametrize(
    ("func", "args", "kind"),
    [(exit_via_sys, (3,), SystemExit), (boom, ("x",), ValueError)],
)
def test_the_worker_survives_what_its_job_raises(
    make_pool: Any, func: Callable[..., object], args: tuple[object, ...], kind: type
) -> None:
    pool, ends = make_pool(1)
    pool.submit(1, func, args)
    assert isinstance(ends.one(1).error, kind)
    pool.submit(2, pid, ())
    assert ends.one(1).pid == ends.one(2).value
    assert 0 == pool.statistics().crashes


def test_started_tells_whether_the_child_began_the_job(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    gate = tmp_path / "gate"
    pool, ends = make_pool(1, initializer=functools.partial(wait_for, str(gate)))
    pool.submit(1, hang, (str(tmp_path / "ready"),))
    assert not pool.started(1)  # the initializer holds it in the pipe
    gate.touch()
    wait_until(lambda: pool.started(1), "job 1 to start")
    assert not pool.started(2)
    pool.kill(1)
    assert "killed" == ends.one(1).outcome
    assert not pool.started(1)


def test_the_initializer_runs_before_the_first_job(make_pool: Any) -> None:
    pool, ends = make_pool(1, initializer=initialize)
    pool.submit(1, initialized, ())
    pool_end = ends.one(1)
    assert ["yes"] == pool_end.value


def test_workers_take_the_parents_path_and_working_directory(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    pool.submit(1, where, ())
    assert (str(pathlib.Path.cwd()), sys.path) == ends.one(1).value


def test_workers_do_not_inherit_the_parents_open_files(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    slot = tmp_path / "slot-0.lock"
    with open(slot, "w") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        pool, ends = make_pool(1)
        pool.submit(1, open_files, ())
        names = ends.one(1).value
    assert str(slot) not in names


def test_workers_ignore_sigint_but_their_commands_do_not(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    pool.submit(1, send_sigint_to_self, ())
    assert ("returned", "survived") == (ends.one(1).outcome, ends.one(1).value)
    pool.submit(2, command_ignores_sigint, ())
    assert ends.one(2).value is False


def test_a_job_may_start_processes_of_its_own(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    pool.submit(1, start_a_process_of_its_own, ())
    assert ("returned", 0) == (ends.one(1).outcome, ends.one(1).value)


# --------------------------------------------------------------------------- crashes


CRASHES: list[tuple[str, Callable[..., object], tuple[object, ...], str, bool]] = [
    # (name, func, args, how the worker died, did the function start)
    ("os._exit", exit_now, (3,), "exited with status 3", True),
    ("SIGKILL", sigkill_self, (), "killed by signal 9", True),
    ("segfault", segfault, (), "killed by signal 11", True),
    ("dies pickling its result", return_exit_on_pickle, (), "exited with status 5", True),
    ("dies unpickling the job", add, (ExitOnUnpickle(), 1), "exited with status 4", False),
]


@pytest.mark.parametrize(
    ("name", "func", "args", "death", "starts"), CRASHES, ids=[c[0] for c in CRASHES]
)
def test_a_crash_ends_only_its_own_job(
    make_pool: Any,
    tmp_path: pathlib.Path,
    name: str,
    func: Callable[..., object],
    args: tuple[object, ...],
    death: str,
    starts: bool,
) -> None:
    pool, ends = make_pool(3)
    go = tmp_path / "go"
    # Two innocent jobs are running when the crash happens.
    for i in (1, 2):
        pool.submit(i, signal_then_wait, (str(tmp_path / f"ready{i}"), str(go), add, i, i))
    innocents = {read_when_ready(tmp_path / f"ready{i}")[0] for i in (1, 2)}
    pool.submit(3, func, args)
    crash = ends.one(3)
    assert ("crashed", f"worker {crash.pid} died: {death}") == (crash.outcome, crash.error_text)
    assert crash.pid not in innocents
    assert (crash.started is not None) == starts
    assert crash.error is None and crash.value is None
    assert crash.started is None or crash.started <= crash.ended
    go.touch()
    assert [("returned", 2), ("returned", 4)] == [
        (ends.one(i).outcome, ends.one(i).value) for i in (1, 2)
    ]
    assert innocents == {ends.one(1).pid, ends.one(2).pid}
    # The dead worker is replaced when a job needs one; the others are reused.
    assert (1, 0, 0, 3, 2) == pool_counts(pool)
    go2 = tmp_path / "go2"
    for i in (4, 5, 6):
        pool.submit(i, signal_then_wait, (str(tmp_path / f"ready{i}"), str(go2), pid))
    pids = {read_when_ready(tmp_path / f"ready{i}")[0] for i in (4, 5, 6)}
    assert crash.pid not in pids and innocents < pids
    assert (1, 0, 1, 4, 3) == pool_counts(pool)
    go2.touch()
    pool.shutdown()
    assert {1, 2, 3, 4, 5, 6} == set(ends.by_id())


def test_an_initializer_that_dies_crashes_the_job_it_was_sent(make_pool: Any) -> None:
    pool, ends = make_pool(1, initializer=init_exit)
    pool.submit(1, add, (1, 1))
    end = ends.one(1)
    assert ("crashed", None, f"worker {end.pid} died: exited with status 3") == (
        end.outcome,
        end.started,
        end.error_text,
    )


def test_an_initializer_that_raises_is_named_in_the_crash(make_pool: Any) -> None:
    pool, ends = make_pool(2, initializer=init_raise)
    pool.submit(1, add, (1, 1))
    end = ends.one(1)
    assert "crashed" == end.outcome
    assert (
        f"worker {end.pid} died: exited with status 1 "
        "(its initializer raised ValueError: no database)"
    ) == end.error_text
    pool.submit(2, add, (1, 1))  # every new worker fails the same way: nothing hangs
    assert "crashed" == ends.one(2).outcome


def test_several_workers_crashing_at_once_leave_the_others_alone(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    pool, ends = make_pool(6)
    go = str(tmp_path / "go")
    plan: dict[int, tuple[Callable[..., object], tuple[object, ...]]] = {
        1: (exit_now, (3,)),
        2: (sigkill_self, ()),
        3: (segfault, ()),
        4: (add, (4, 4)),
        5: (add, (5, 5)),
        6: (return_exit_on_pickle, ()),
    }
    for i, (func, args) in plan.items():
        pool.submit(i, signal_then_wait, (str(tmp_path / f"ready{i}"), go, func, *args))
    for i in plan:
        read_when_ready(tmp_path / f"ready{i}")
    pathlib.Path(go).touch()
    ends.wait(6)
    got = {
        i: (e.outcome, e.value, (e.error_text or "").split(": ", 1)[-1])
        for i, e in ends.by_id().items()
    }
    assert {
        1: ("crashed", None, "exited with status 3"),
        2: ("crashed", None, "killed by signal 9"),
        3: ("crashed", None, "killed by signal 11"),
        4: ("returned", 8, ""),
        5: ("returned", 10, ""),
        6: ("crashed", None, "exited with status 5"),
    } == got
    assert 4 == pool.statistics().crashes
    assert 2 == pool.statistics().alive


def test_a_worker_dying_in_the_middle_of_sending_its_result_crashes_that_job(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    entered, release = threading.Event(), threading.Event()

    def block_on_job_1(end: JobEnd) -> None:
        if end.job_id == 1:  # hold the watcher: it reads no pipe meanwhile
            entered.set()
            assert release.wait(LIMIT)

    pool, ends = make_pool(2, ends=Ends(block_on_job_1))
    go = tmp_path / "go"
    big = 64 * 1024 * 1024  # far more than a socket buffer holds
    pool.submit(2, signal_then_wait, (str(tmp_path / "ready"), str(go), bytes, big))
    worker_pid = read_when_ready(tmp_path / "ready")[0]
    wait_until(lambda: pool.started(2), "job 2 to start")
    pool.submit(1, add, (1, 1))
    assert entered.wait(LIMIT)
    go.touch()
    (conn,) = [w.conn for w in pool._workers if w.pid == worker_pid]

    def unread() -> int:
        buf = fcntl.ioctl(conn.fileno(), termios.FIONREAD, b"\0\0\0\0")
        return int(struct.unpack("i", buf)[0])

    # More than 64 KiB of the 64 MiB message is waiting: the child is mid-message.
    wait_until(lambda: unread() > 64 * 1024, "the result to be half sent")
    os.kill(worker_pid, signal.SIGKILL)
    release.set()
    end = ends.one(2)
    assert ("crashed", f"worker {worker_pid} died: killed by signal 9") == (
        end.outcome,
        end.error_text,
    )
    assert end.started is not None
    assert "returned" == ends.one(1).outcome
    pool.shutdown()
    assert 2 == len(ends.by_id())


def test_forty_jobs_on_eight_workers_with_six_random_crashes(make_pool: Any) -> None:
    rng = random.Random(20240611)
    crashers: list[tuple[Callable[..., object], tuple[object, ...], str]] = [
        (exit_now, (3,), "exited with status 3"),
        (sigkill_self, (), "killed by signal 9"),
        (segfault, (), "killed by signal 11"),
        (return_exit_on_pickle, (), "exited with status 5"),
        (add, (ExitOnUnpickle(), 0), "exited with status 4"),
        (exit_now, (7,), "exited with status 7"),
    ]
    crash_ids = dict(zip(rng.sample(range(40), 6), crashers, strict=True))
    peak_alive = 0

    def watch_alive(end: JobEnd) -> None:
        nonlocal peak_alive
        peak_alive = max(peak_alive, pool.statistics().alive)

    pool, ends = make_pool(8, ends=Ends(watch_alive))
    submitted = 0
    while submitted < 40:
        if submitted - len(ends.ends) < 8:
            func, args, _ = crash_ids.get(submitted, (work, (submitted, rng.random() / 50), ""))
            pool.submit(submitted, func, args)
            submitted += 1
        else:
            ends.wait(submitted - 7)
    ends.wait(40)
    s = pool.statistics()
    pool.shutdown()
    by_id = ends.by_id()  # asserts: no job ended twice
    assert set(range(40)) == set(by_id)  # no job lost
    for i, end in by_id.items():
        if i in crash_ids:
            assert ("crashed", f"worker {end.pid} died: {crash_ids[i][2]}") == (
                end.outcome,
                end.error_text,
            )
        else:
            assert ("returned", i * i) == (end.outcome, end.value), f"innocent job {i}: {end}"
    assert 6 == s.crashes
    assert s.alive <= 8 and peak_alive <= 8
    assert s.started_workers <= 8 + 6


# --------------------------------------------------------------------------- process groups


def test_a_dead_jobs_command_group_is_gone_before_its_end_arrives(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    seen_alive: dict[int, bool] = {}

    def check(end: JobEnd) -> None:
        for pgid in end.pgids:
            seen_alive[pgid] = _group_alive(pgid)

    pool, ends = make_pool(2, ends=Ends(check), kill_grace=0.5)
    pool.submit(
        1, start_command_then, (str(tmp_path / "ready"), str(tmp_path / "never"), add, 1, 1)
    )
    worker_pid, pgid = read_when_ready(tmp_path / "ready")
    assert _group_alive(pgid)
    os.kill(worker_pid, signal.SIGKILL)
    end = ends.one(1)
    assert ("crashed", (pgid,)) == (end.outcome, end.pgids)
    assert {pgid: False} == seen_alive
    assert f"worker {worker_pid} died: killed by signal 9" == end.error_text


def test_a_job_cannot_make_the_parent_kill_its_own_group(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    pool.submit(1, report_parent_group, (os.getpgrp(),))
    end = ends.one(1)
    # report_pgid refused it (status 6), and the parent ignored it: we are still here.
    assert ("crashed", (), f"worker {end.pid} died: exited with status 6") == (
        end.outcome,
        end.pgids,
        end.error_text,
    )


def test_a_report_from_a_thread_after_its_job_returned_is_dropped(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    go, done = tmp_path / "go", tmp_path / "done"
    pool, ends = make_pool(1)
    pool.submit(1, report_later, (str(go), str(done), 999_999))
    assert "returned" == ends.one(1).outcome
    go.touch()
    wait_until(done.exists, "the late report")
    pool.submit(2, exit_now, (3,))
    assert ("crashed", ()) == (ends.one(2).outcome, ends.one(2).pgids)


def test_a_group_that_survives_sigkill_is_named_in_the_end(
    make_pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # As root every process can be killed; fake the one thing that cannot be arranged.
    monkeypatch.setattr(_processes, "kill_process_group", lambda pgid, grace: pgid != 999_999)
    pool, ends = make_pool(1)
    pool.submit(1, report_then_exit, (999_999,))
    end = ends.one(1)
    assert (
        f"worker {end.pid} died: exited with status 3; process group 999999 survived SIGKILL"
    ) == end.error_text


def test_the_end_waits_for_a_group_that_ignores_sigterm(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    seen_alive: list[bool] = []
    pool, ends = make_pool(
        1, ends=Ends(lambda e: seen_alive.extend(_group_alive(g) for g in e.pgids)), kill_grace=3.0
    )
    ready = tmp_path / "ready"
    pool.submit(1, start_sh_then_hang, (str(ready),))
    worker, pgid = read_when_ready(ready)
    os.kill(worker, signal.SIGKILL)
    # The worker is buried, its group is in its grace period: the job has not ended yet.
    wait_until(lambda: pool.statistics().alive == 0, "the worker to be buried")
    assert not ends.ends and _group_alive(pgid)
    pool.shutdown(kill=True)  # nothing left to kill: its worker is dead already
    assert ("crashed", (pgid,)) == (ends.one(1).outcome, ends.one(1).pgids)
    assert [False] == seen_alive


# --------------------------------------------------------------------------- kill


def test_kill_ends_a_running_job_and_its_command_group(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    seen_alive: list[bool] = []
    pool, ends = make_pool(
        2, ends=Ends(lambda e: seen_alive.extend(_group_alive(g) for g in e.pgids)), kill_grace=0.5
    )
    pool.submit(
        1, start_command_then, (str(tmp_path / "ready"), str(tmp_path / "never"), add, 1, 1)
    )
    worker_pid, pgid = read_when_ready(tmp_path / "ready")
    pool.submit(2, pid, ())
    other = ends.one(2).value
    pool.kill(1)
    pool.kill(1)  # twice: still one end
    end = ends.one(1)
    assert ("killed", (pgid,), worker_pid) == (end.outcome, end.pgids, end.pid)
    assert f"killed on request; worker {worker_pid} died: killed by signal 9" == end.error_text
    assert end.started is not None
    assert [False] == seen_alive
    pool.kill(1)  # ended: no-op
    pool.kill(42)  # unknown: no-op
    pool.submit(3, pid, ())
    assert other == ends.one(3).value  # the idle worker was untouched
    go = tmp_path / "go"  # two jobs at once need two workers: one replaces the dead one
    for i in (4, 5):
        pool.submit(i, signal_then_wait, (str(tmp_path / f"ready{i}"), str(go), add, i, 1))
    for i in (4, 5):
        read_when_ready(tmp_path / f"ready{i}")
    go.touch()
    assert (5, 6) == (ends.one(4).value, ends.one(5).value)
    s = pool.statistics()
    assert (0, 1, 1) == (s.crashes, s.kills, s.replaced)
    pool.shutdown()
    assert 5 == len(ends.by_id())


def test_kill_of_a_job_still_queued_in_the_pipe(make_pool: Any, tmp_path: pathlib.Path) -> None:
    pool, ends = make_pool(1, initializer=functools.partial(wait_for, str(tmp_path / "never")))
    pool.submit(1, add, (1, 1))
    pool.kill(1)
    end = ends.one(1)
    assert ("killed", None) == (end.outcome, end.started)


# --------------------------------------------------------------------------- submit errors


def test_submit_beyond_size_or_twice_or_after_shutdown_raises(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    pool, ends = make_pool(2)
    pool.submit(1, hang, ())
    pool.submit(2, hang, ())
    with pytest.raises(RuntimeError, match="2 jobs in flight already"):
        pool.submit(3, add, (1, 1))
    pool.kill(2)
    ends.one(2)
    with pytest.raises(RuntimeError, match="job 1 is already in flight"):
        pool.submit(1, add, (1, 1))
    pool.submit(3, add, (1, 1))
    assert 2 == ends.one(3).value
    pool.shutdown(kill=True)
    with pytest.raises(RuntimeError, match="shut down"):
        pool.submit(4, add, (1, 1))
    assert {1: "killed", 2: "killed", 3: "returned"} == {
        i: e.outcome for i, e in ends.by_id().items()
    }


def test_a_job_that_cannot_be_pickled_never_reaches_a_worker(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    pool.submit(1, lambda: None, ())
    pool.submit(2, add, (threading.Lock(), 1))
    one, two = ends.one(1), ends.one(2)
    assert ("raised", 0, None) == (one.outcome, one.pid, one.started)
    assert isinstance(one.error, (AttributeError, TypeError, pickle_error()))
    assert "raised" == two.outcome and isinstance(two.error, TypeError)
    assert "TypeError: cannot pickle '_thread.lock' object" == two.error_text
    assert 0 == pool.statistics().started_workers
    assert {"subplan-process-watcher"} == ends.threads


def pickle_error() -> type[Exception]:
    import pickle

    return pickle.PicklingError


def test_results_and_exceptions_that_cannot_travel_become_runtime_errors(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    jobs: list[Callable[[], object]] = [
        return_lock,
        raise_unpicklable,
        raise_needs_two,
        return_loads_badly,
    ]
    for i, func in enumerate(jobs):
        pool.submit(i, func, ())
        ends.one(i)
    pool.submit(9, pid, ())
    worker = ends.one(9).value
    texts = {}
    for i in range(len(jobs)):
        end = ends.one(i)
        assert ("raised", worker) == (end.outcome, end.pid), end  # never the worker's death
        assert isinstance(end.error, RuntimeError)
        texts[i] = (str(end.error), end.error_text)
    assert texts[0] == (
        "the job's result cannot be pickled: _thread.lock: TypeError: cannot pickle "
        "'_thread.lock' object",
        "RuntimeError: the job's result cannot be pickled: _thread.lock: TypeError: cannot "
        "pickle '_thread.lock' object",
    )
    held = f"{HoldsLock.__module__}.HoldsLock"
    assert texts[1][0].startswith(f"{held}: ('cannot travel', <unlocked _thread.lock object")
    assert "HoldsLock: ('cannot travel', <unlocked _thread.lock object" in str(texts[1][1])
    assert ("NeedsTwo: a-b", "NeedsTwo: a-b") == texts[2]
    assert "could not be unpickled" in "".join(getattr(ends.one(2).error, "__notes__", []))
    assert texts[3][0] == (
        "the job's result cannot be unpickled: LookupError: this only runs when the parent "
        "unpickles the result"
    )


# --------------------------------------------------------------------------- idle deaths


def test_an_idle_worker_that_died_is_replaced(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    pool.submit(1, pid, ())
    first = ends.one(1).value
    os.kill(first, signal.SIGKILL)
    wait_until(lambda: pool.statistics().alive == 0, "the watcher to bury the worker")
    pool.submit(2, pid, ())
    assert ends.one(2).value != first
    s = pool.statistics()
    assert (0, 1, 2) == (s.crashes, s.replaced, s.started_workers)


def test_a_job_sent_to_a_dead_idle_worker_goes_to_another(make_pool: Any) -> None:
    pool, ends = make_pool(2)
    pool.submit(1, pid, ())
    first = ends.one(1).value
    with pool._lock:  # the watcher cannot bury it while we hold the lock
        (worker,) = pool._workers
        os.kill(first, signal.SIGKILL)
        assert multiprocessing.connection.wait([worker.sentinel], LIMIT)
        job = _processes._Job(2)
        pool._place(job, pid, _processes._dumps(pid), _processes._dumps(()))
        pool._jobs[2] = job
    assert ends.one(2).value not in (first, 0)
    assert 1 == pool.statistics().replaced


def test_a_dead_forkserver_does_not_end_running_jobs(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    pool, ends = make_pool(2)
    go = tmp_path / "go"
    pool.submit(1, signal_then_wait, (str(tmp_path / "ready"), str(go), add, 1, 2))
    read_when_ready(tmp_path / "ready")
    from multiprocessing import forkserver

    server = forkserver._forkserver._forkserver_pid  # type: ignore[attr-defined]
    assert server is not None
    os.kill(server, signal.SIGKILL)
    wait_until(lambda: gone(server), "the fork server to die")
    pool.submit(2, add, (2, 2))  # a new worker: multiprocessing restarts the server
    assert 4 == ends.one(2).value
    go.touch()
    assert ("returned", 3) == (ends.one(1).outcome, ends.one(1).value)


def test_a_worker_whose_program_cannot_run_crashes_its_job(make_pool: Any) -> None:
    from multiprocessing import resource_tracker, spawn

    pool, ends = make_pool(2, start_method="spawn")
    resource_tracker.ensure_running()  # with the good executable
    executable = spawn.get_executable()
    multiprocessing.get_context("spawn").set_executable("/nonexistent/python")
    try:
        pool.submit(1, os.getpid, ())
    finally:
        multiprocessing.get_context("spawn").set_executable(executable)
    end = ends.one(1)
    assert ("crashed", None, f"worker {end.pid} died: exited with status 255") == (
        end.outcome,
        end.started,
        end.error_text,
    )
    pool.submit(2, os.getpid, ())
    assert "returned" == ends.one(2).outcome


@pytest.mark.parametrize("headroom", [0, 2], ids=["no-pipe", "pipe-but-no-process"])
def test_a_worker_that_cannot_be_started_fails_only_its_job(make_pool: Any, headroom: int) -> None:
    pool, ends = make_pool(2)
    pool.submit(1, os.getpid, ())
    ends.one(1)
    pool.submit(2, hang, ())  # the one worker is busy: job 3 needs a new one
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    lowest_free = os.open(os.devnull, os.O_RDONLY)
    os.close(lowest_free)
    # Room for `headroom` more descriptors: none, or the pipe but not the process.
    resource.setrlimit(resource.RLIMIT_NOFILE, (lowest_free + headroom, hard))
    try:
        pool.submit(3, os.getpid, ())
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    end = ends.one(3)
    assert ("crashed", 0, None) == (end.outcome, end.pid, end.started)
    assert (end.error_text or "").startswith("could not start a worker: OSError: [Errno 24]")
    pool.submit(4, os.getpid, ())
    assert "returned" == ends.one(4).outcome
    s = pool.statistics()
    assert (1, 2, 2) == (s.crashes, s.alive, s.started_workers)


def test_without_pidfds_the_multiprocessing_sentinel_tells_deaths(
    make_pool: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_processes, "_open_pidfd", lambda pid: None)  # an old kernel
    pool, ends = make_pool(2)
    pool.submit(1, add, (1, 2))
    pool.submit(2, exit_now, (3,))
    assert 3 == ends.one(1).value
    assert f"worker {ends.one(2).pid} died: exited with status 3" == ends.one(2).error_text
    pool.submit(3, hang, (str(tmp_path / "ready"),))
    read_when_ready(tmp_path / "ready")
    pool.kill(3)
    assert "killed" == ends.one(3).outcome


@pytest.mark.parametrize("method", ["fork", "forkserver"])
def test_a_parent_without_a_working_directory(
    make_pool: Any, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, method: str
) -> None:
    pool, ends = make_pool(1, start_method=method)
    doomed = tmp_path / "doomed"
    doomed.mkdir()
    monkeypatch.chdir(doomed)
    doomed.rmdir()
    pool.submit(1, add, (1, 2))
    end = ends.one(1)
    if method == "fork":  # the worker keeps the (deleted) directory it inherited
        assert ("returned", 3) == (end.outcome, end.value)
    else:  # multiprocessing itself needs os.getcwd(): the job fails, not the pool
        assert ("crashed", 0) == (end.outcome, end.pid)
        assert (end.error_text or "").startswith("could not start a worker: FileNotFoundError")
    monkeypatch.undo()
    pool.submit(2, add, (2, 2))
    assert 4 == ends.one(2).value


# --------------------------------------------------------------------------- shutdown


def test_shutdown_waits_for_running_jobs(make_pool: Any, tmp_path: pathlib.Path) -> None:
    pool, ends = make_pool(2)
    go = tmp_path / "go"
    pool.submit(1, signal_then_wait, (str(tmp_path / "ready"), str(go), add, 1, 2))
    worker = read_when_ready(tmp_path / "ready")[0]
    done = threading.Event()

    def shut_down() -> None:
        pool.shutdown()
        done.set()

    waiter = threading.Thread(target=shut_down)
    waiter.start()
    assert not done.wait(0.2)  # it cannot finish before the job can
    go.touch()
    waiter.join(LIMIT)
    assert done.is_set()
    assert ("returned", 3) == (ends.one(1).outcome, ends.one(1).value)
    assert gone(worker)
    assert 0 == pool.statistics().alive


def test_shutdown_with_kill_kills_running_jobs_and_waits_for_their_ends(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    pool, ends = make_pool(3, kill_grace=0.5)
    pool.submit(
        1, start_command_then, (str(tmp_path / "ready1"), str(tmp_path / "never"), add, 1, 1)
    )
    pool.submit(2, hang, (str(tmp_path / "ready2"),))
    pool.submit(3, add, (1, 2))
    worker1, pgid = read_when_ready(tmp_path / "ready1")
    (worker2,) = read_when_ready(tmp_path / "ready2")
    ends.one(3)
    pool.shutdown(kill=True)
    assert {1: "killed", 2: "killed", 3: "returned"} == {
        i: e.outcome for i, e in ends.by_id().items()
    }
    assert gone(worker1) and gone(worker2) and not _group_alive(pgid)
    assert ProcessWorkersStatistics(3, 0, 0, 0, 3, 0, 2, 0) == pool.statistics()
    pool.shutdown()  # again: nothing to do


def test_shutdown_without_waiting_still_delivers_every_end(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    pool, ends = make_pool(2)
    go = tmp_path / "go"
    pool.submit(1, signal_then_wait, (str(tmp_path / "ready"), str(go), add, 1, 2))
    read_when_ready(tmp_path / "ready")
    pool.shutdown(wait=False)
    go.touch()
    assert 3 == ends.one(1).value
    wait_until(lambda: not pool._watcher.is_alive(), "the watcher to finish")


def test_leaving_the_block_with_an_exception_kills_the_jobs(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    ends = Ends()

    def use_then_fail() -> None:
        with ProcessWorkers(1, on_end=ends) as pool:
            pool.submit(1, hang, (str(tmp_path / "ready"),))
            read_when_ready(tmp_path / "ready")
            raise KeyError("stop")

    with pytest.raises(KeyError):
        use_then_fail()
    assert "killed" == ends.one(1).outcome


def test_shutdown_from_on_end_does_not_deadlock(make_pool: Any) -> None:
    pool: ProcessWorkers | None = None

    def stop(end: JobEnd) -> None:
        assert pool is not None
        pool.shutdown()

    pool, ends = make_pool(1, ends=Ends(stop))
    pool.submit(1, add, (1, 1))
    assert 2 == ends.one(1).value
    wait_until(lambda: not pool._watcher.is_alive(), "the watcher to finish")


def test_an_exception_from_on_end_is_raised_by_shutdown_and_later_ends_still_come(
    make_pool: Any,
) -> None:
    def fail_twice(end: JobEnd) -> None:
        if end.job_id == 1:
            raise ZeroDivisionError("dispatcher bug")
        if end.job_id == 2:
            raise LookupError("another one")

    pool, ends = make_pool(1, ends=Ends(fail_twice))
    for i in (1, 2):
        pool.submit(i, add, (i, i))
        wait_until(lambda: pool.statistics().busy == 0, f"job {i} to end")
    pool.submit(3, add, (3, 3))
    assert 6 == ends.one(3).value
    with pytest.raises(ZeroDivisionError, match="dispatcher bug") as info:  # the first
        pool.shutdown()
    assert ["raised by on_end on the process watcher thread"] == info.value.__notes__
    pool.shutdown()  # raised once


def test_a_failing_watcher_kills_the_workers_and_makes_calls_raise(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    pool, _ = make_pool(1)

    def broken(worker: Any) -> None:
        raise OSError("watcher bug")

    pool._bury = broken
    pool.submit(1, hang, (str(tmp_path / "ready"),))
    (worker,) = read_when_ready(tmp_path / "ready")
    os.kill(worker, signal.SIGKILL)
    wait_until(lambda: not pool._watcher.is_alive(), "the watcher to fail")
    with pytest.raises(RuntimeError, match="watcher thread failed"):
        pool.submit(2, add, (1, 1))
    with pytest.raises(RuntimeError, match="watcher thread failed"):
        pool.shutdown()


# --------------------------------------------------------------------------- options


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"size": 0}, "size must be an integer >= 1"),
        ({"size": True}, "size must be an integer >= 1"),
        ({"size": 1, "start_method": "thread"}, "unknown start method 'thread'"),
        ({"size": 1, "kill_grace": -1.0}, "kill_grace must be >= 0"),
        ({"size": 1, "kill_grace": math.nan}, "kill_grace must be >= 0"),
        ({"size": 1, "initializer": lambda: None}, "the initializer cannot be pickled"),
    ],
)
def test_bad_options_are_config_errors(options: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        ProcessWorkers(on_end=Ends(), **options)


@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_every_start_method_isolates_crashes(
    make_pool: Any, tmp_path: pathlib.Path, method: str
) -> None:
    pool, ends = make_pool(2, start_method=method)
    pool.submit(1, add, (1, 2))
    pool.submit(2, exit_now, (3,))
    assert 3 == ends.one(1).value
    assert "crashed" == ends.one(2).outcome
    pool.submit(3, hang, (str(tmp_path / "ready"),))
    read_when_ready(tmp_path / "ready")
    pool.kill(3)
    assert "killed" == ends.one(3).outcome
    pool.shutdown()
    assert 3 == len(ends.by_id())


# --------------------------------------------------------------------------- exactly once


@dataclass
class Plan:
    func: Callable[..., object]
    args: tuple[object, ...]
    outcome: str
    death: str | None = None


def random_plan(rng: random.Random, job_id: int, ready_dir: pathlib.Path) -> Plan:
    kind = rng.choice(
        [
            "return",
            "return",
            "raise",
            "exit",
            "sigkill",
            "pickle-exit",
            "unpickle-exit",
            "unpicklable",
            "cannot-send",
            "hang",
            "hang",
        ]
    )
    if kind == "return":
        return Plan(add, (job_id, 1), "returned")
    if kind == "raise":
        return Plan(boom, (str(job_id),), "raised")
    if kind == "exit":
        return Plan(exit_now, (3,), "crashed", "exited with status 3")
    if kind == "sigkill":
        return Plan(sigkill_self, (), "crashed", "killed by signal 9")
    if kind == "pickle-exit":
        return Plan(return_exit_on_pickle, (), "crashed", "exited with status 5")
    if kind == "unpickle-exit":
        return Plan(add, (ExitOnUnpickle(), 1), "crashed", "exited with status 4")
    if kind == "unpicklable":
        return Plan(add, (threading.Lock(), 1), "raised")
    if kind == "cannot-send":
        return Plan(return_lock, (), "raised")
    return Plan(hang, (str(ready_dir / str(job_id)),), "killed", "killed by signal 9")


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_job_ends_exactly_once_whatever_happens(
    make_pool: Any, tmp_path: pathlib.Path, seed: int
) -> None:
    rng = random.Random(seed)
    size, total = 5, 40
    alive_seen: list[int] = []
    pool, ends = make_pool(size, ends=Ends(lambda e: alive_seen.append(pool.statistics().alive)))
    plans = {i: random_plan(rng, i, tmp_path) for i in range(total)}
    hanging: list[int] = []
    for i, plan in plans.items():
        while i - len(ends.ends) >= size:  # keep at most `size` in flight
            if hanging:
                pool.kill(hanging.pop(rng.randrange(len(hanging))))
            ends.wait(i - size + 1)
        pool.submit(i, plan.func, plan.args)
        if plan.outcome == "killed":
            hanging.append(i)
            if rng.random() < 0.3:  # sometimes kill before it even started
                pool.kill(hanging.pop())
    for i in hanging:
        pool.kill(i)
    pool.shutdown()
    by_id = ends.by_id()
    assert set(plans) == set(by_id)
    for i, end in by_id.items():
        assert plans[i].outcome == end.outcome, (i, plans[i], end)
        if plans[i].death is not None:
            assert end.error_text is not None and end.error_text.endswith(
                f"worker {end.pid} died: {plans[i].death}"
            )
    s = pool.statistics()
    outcomes = [e.outcome for e in by_id.values()]
    assert (outcomes.count("crashed"), outcomes.count("killed")) == (s.crashes, s.kills)
    assert max(alive_seen) <= size and 0 == s.alive


# --------------------------------------------------------------------------- parent death


ORCHESTRATOR = textwrap.dedent(
    """
    import os, pathlib, subprocess, sys, time
    from subplan._command._workers import ProcessWorkers, report_pgid

    def hold(out, i):
        proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
        report_pgid(proc.pid)
        pathlib.Path(out, f"job{i}.tmp").write_text(f"{os.getpid()} {proc.pid}")
        os.replace(pathlib.Path(out, f"job{i}.tmp"), pathlib.Path(out, f"job{i}"))
        proc.wait()

    def quick(out):
        pathlib.Path(out, "idle.tmp").write_text(str(os.getpid()))
        os.replace(pathlib.Path(out, "idle.tmp"), pathlib.Path(out, "idle"))

    if __name__ == "__main__":
        out, method = sys.argv[1], sys.argv[2]
        if method == "forget":  # start a job, then exit without shutting the pool down
            pool = ProcessWorkers(1, on_end=lambda end: print(end.outcome, flush=True))
            pool.submit(1, hold, (out, 1))
            while not pathlib.Path(out, "job1").exists():
                time.sleep(0.01)
            sys.exit(0)
        pool = ProcessWorkers(3, on_end=lambda end: None, start_method=method)
        pool.submit(0, quick, (out,))
        while not pathlib.Path(out, "idle").exists():
            time.sleep(0.01)
        pool.submit(1, hold, (out, 1))
        pool.submit(2, hold, (out, 2))
        time.sleep(300)  # until the test kills us
    """
)


@pytest.mark.parametrize("method", ["forkserver", "spawn", "fork"])
def test_workers_and_their_commands_die_with_their_parent(
    tmp_path: pathlib.Path, method: str
) -> None:
    script = tmp_path / "orchestrator.py"
    script.write_text(ORCHESTRATOR)
    orchestrator = subprocess.Popen([sys.executable, str(script), str(tmp_path), method])
    try:
        (idle,) = read_when_ready(tmp_path / "idle")
        worker1, group1 = read_when_ready(tmp_path / "job1")
        worker2, group2 = read_when_ready(tmp_path / "job2")
        assert not any(gone(p) for p in (idle, worker1, worker2))
    finally:
        orchestrator.kill()
        orchestrator.wait()
    wait_until(
        lambda: all(gone(p) for p in (idle, worker1, worker2)),
        "the workers to exit after their parent died",
        limit=15,
    )
    wait_until(
        lambda: not (_group_alive(group1) or _group_alive(group2)),
        "the jobs' commands to be killed",
        limit=15,
    )


def test_exit_statuses_survive_workers_starting_while_others_die(make_pool: Any) -> None:
    # Process.start() polls every child multiprocessing knows of; if it polled ours while
    # the watcher reads a dead worker's status, one of them read 255 instead.
    pool, ends = make_pool(4)
    stop = threading.Event()

    def other_code_polling_children() -> None:
        while not stop.wait(0.0002):  # a short wait lets the other threads run
            multiprocessing.active_children()

    poller = threading.Thread(target=other_code_polling_children)
    poller.start()
    try:
        for i in range(60):
            if i >= 4:
                ends.wait(i - 3)
            pool.submit(i, exit_now, (4,) if i % 2 else (3,))
        pool.shutdown()
    finally:
        stop.set()
        poller.join()
    assert {i: f"exited with status {4 if i % 2 else 3}" for i in range(60)} == {
        i: (e.error_text or "").split(": ", 1)[1] for i, e in ends.by_id().items()
    }


def test_a_program_that_forgets_shutdown_still_exits_and_leaves_nothing(
    tmp_path: pathlib.Path,
) -> None:
    script = tmp_path / "orchestrator.py"
    script.write_text(ORCHESTRATOR)
    orchestrator = subprocess.Popen(
        [sys.executable, str(script), str(tmp_path), "forget"], stdout=subprocess.PIPE, text=True
    )
    try:
        out, _ = orchestrator.communicate(timeout=LIMIT)
    finally:
        orchestrator.kill()
    assert (0, "killed\n") == (orchestrator.returncode, out)
    worker, group = read_when_ready(tmp_path / "job1")
    assert gone(worker) and not _group_alive(group)


# --------------------------------------------------------------------------- functions held


@dataclass
class Counter:
    """A callable that counts its calls in the process that runs it."""

    calls: int = 0

    def __call__(self) -> tuple[int, int]:
        self.calls += 1
        return os.getpid(), self.calls


def _load_unless(flag: str) -> Callable[[], int]:
    if pathlib.Path(flag).exists():
        raise LookupError("the flag says this function cannot load")
    return pid


@dataclass
class LoadsUnless:
    """Pickles fine; unpickling fails while ``flag`` exists."""

    flag: str

    def __reduce__(self) -> tuple[object, ...]:
        return (_load_unless, (self.flag,))


def test_a_worker_is_sent_a_function_once_and_keeps_it(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    counter, other = Counter(), Counter()
    for job_id, func in enumerate((counter, counter, counter, other, counter), start=1):
        pool.submit(job_id, func, ())
        ends.one(job_id)
    values = [ends.one(i).value for i in range(1, 6)]
    assert len({p for p, _ in values}) == 1  # one worker throughout
    # The same object is sent once and keeps counting; another object replaces it, and
    # coming back sends the first one afresh (as it is in the parent: no calls).
    assert [1, 2, 3, 1, 1] == [calls for _, calls in values]


def test_a_function_that_failed_to_load_is_sent_again(
    make_pool: Any, tmp_path: pathlib.Path
) -> None:
    flag = tmp_path / "flag"
    flag.touch()
    func = LoadsUnless(str(flag))
    pool, ends = make_pool(1)
    pool.submit(1, func, ())
    first = ends.one(1)
    assert ("raised", None) == (first.outcome, first.started)
    assert "cannot load" in (first.error_text or "")
    flag.unlink()
    pool.submit(2, func, ())
    second = ends.one(2)
    assert ("returned", 1) == (second.outcome, pool.statistics().started_workers)
    assert second.value > 0


# --------------------------------------------------------------------------- waiting reports


def report_and_wait(pgid: int) -> str:
    """Report a group and wait until the parent recorded it; say what happened."""
    try:
        report_pgid(pgid, wait=True)
    except StoreError:
        return "refused"
    return "recorded"


def read_passed_fds() -> list[bytes]:
    """What the descriptors sent along with this job read (they are pipes' ends)."""
    from subplan._command._workers import passed_fds

    return [os.read(fd, 100) for fd in passed_fds()]


def test_a_waiting_report_returns_once_the_parent_recorded_it(make_pool: Any) -> None:
    recorded: list[tuple[int, int]] = []
    pool, ends = make_pool(1, record_pgid=lambda job_id, pgid: recorded.append((job_id, pgid)))
    pool.submit(1, report_and_wait, (999_999,))
    end = ends.one(1)
    assert ("returned", "recorded", [(1, 999_999)]) == (end.outcome, end.value, recorded)


def test_a_waiting_report_the_parent_refuses_raises(make_pool: Any) -> None:
    def refuse(job_id: int, pgid: int) -> None:
        raise RuntimeError("the store failed")

    pool, ends = make_pool(1, record_pgid=refuse)
    pool.submit(1, report_and_wait, (999_999,))
    assert "refused" == ends.one(1).value


def test_a_waiting_report_is_answered_at_once_without_a_recorder(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    pool.submit(1, report_and_wait, (999_999,))
    assert "recorded" == ends.one(1).value


def test_descriptors_travel_with_their_job(make_pool: Any) -> None:
    pool, ends = make_pool(1)
    r1, w1 = os.pipe()
    r2, w2 = os.pipe()
    try:
        os.write(w1, b"one")
        os.write(w2, b"two")
        pool.submit(1, read_passed_fds, (), fds=[r1, r2])
        assert [b"one", b"two"] == ends.one(1).value
        pool.submit(2, read_passed_fds, ())  # the next job gets none
        assert [] == ends.one(2).value
    finally:
        for fd in (r1, w1, r2, w2):
            os.close(fd)


def report_from_two_threads() -> list[str]:
    """Two threads of one job wait for their answers at once (one reads for both)."""
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda g=g: results.append(report_and_wait(g)))
        for g in (999_998, 999_999)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sorted(results)


class Gate:
    """A record_pgid that waits until the test lets it answer; counts its calls."""

    def __init__(self) -> None:
        self.called = threading.Event()
        self.go = threading.Event()

    def __call__(self, job_id: int, pgid: int) -> None:
        self.called.set()
        assert self.go.wait(LIMIT)


def test_two_threads_of_a_job_get_their_answers(make_pool: Any) -> None:
    pool, ends = make_pool(1, record_pgid=lambda job_id, pgid: time.sleep(0.05))
    pool.submit(1, report_from_two_threads, ())
    assert ["recorded", "recorded"] == ends.one(1).value


def test_a_worker_asked_to_stop_while_its_job_waits_finishes_the_job_first(
    make_pool: Any,
) -> None:
    gate = Gate()
    pool, ends = make_pool(1, record_pgid=gate)
    pool.submit(1, report_and_wait, (999_999,))
    assert gate.called.wait(LIMIT)
    pool.shutdown(wait=False)  # the worker reads its b"" while the job waits
    gate.go.set()
    assert ("returned", "recorded") == (ends.one(1).outcome, ends.one(1).value)
    pool.shutdown(wait=True)
    assert 0 == pool.statistics().alive


def test_an_answer_for_a_job_that_was_killed_meanwhile_is_dropped(make_pool: Any) -> None:
    gate = Gate()
    pool, ends = make_pool(1, record_pgid=gate)
    pool.submit(1, report_and_wait, (999_999,))
    assert gate.called.wait(LIMIT)
    pool.kill(1)
    assert "killed" == ends.one(1).outcome
    gate.go.set()  # its answer finds nobody waiting
    pool.submit(2, math.factorial, (5,))
    assert 120 == ends.one(2).value
