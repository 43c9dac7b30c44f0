"""The file run lock under contention, death and fork, with real processes.

The contention test runs many processes of many threads, each trying the lock over and
over; whoever gets it appends ``enter``/``leave`` records to a shared log (``O_APPEND``,
one ``write`` per record) while holding it. Exclusivity means the log alternates strictly:
``enter X``, ``leave X``, ``enter Y``, ... — an invariant, not a timing. The same harness
run against a deliberately broken lock (``LOCK_SH`` instead of ``LOCK_EX``) must see an
overlap, which shows that the check can fail.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

import pytest

from subplan import InputError
from subplan._errors import RunLockedError, StoreConnectError
from subplan._store._lockfile import FileRunLock, acquire_file_lock, holder_line, lock_path

pytestmark = pytest.mark.timeout(120)

LIMIT = 30.0  # seconds any single bounded wait may take before the test fails
HOLDER = re.compile(r"^pid (\d+) on (\S+) since \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")

WORKER = r"""
import fcntl, json, os, sys, threading, time
from pathlib import Path
from subplan._errors import RunLockedError
from subplan._store import _lockfile

locks, run_id, log, rounds, threads, mode = sys.argv[1:7]
if mode == "broken":  # a deliberately broken lock: shared, so everyone gets it
    fcntl.LOCK_EX = fcntl.LOCK_SH
out = os.open(log, os.O_WRONLY | os.O_APPEND)
counts = {"held": 0, "refused": 0}
mutex = threading.Lock()

def record(event):
    os.write(out, f"{event} {os.getpid()}.{threading.get_ident()}\n".encode())

def contend():
    for _ in range(int(rounds)):
        try:
            lock = _lockfile.acquire_file_lock(run_id, Path(locks))
        except RunLockedError:
            with mutex:
                counts["refused"] += 1
            continue
        record("enter")
        time.sleep(0.001)  # widen the window in which an overlap would show
        record("leave")
        lock.release()
        with mutex:
            counts["held"] += 1

print("ready", flush=True)
sys.stdin.readline()
workers = [threading.Thread(target=contend) for _ in range(int(threads))]
for w in workers:
    w.start()
for w in workers:
    w.join()
print(json.dumps(counts), flush=True)
"""


def overlaps(lines: Sequence[str]) -> list[str]:
    """Where the log shows two holders at once (empty when it alternates strictly)."""
    problems: list[str] = []
    holder: str | None = None
    for number, line in enumerate(lines, 1):
        event, who = line.split()
        if event == "enter":
            if holder is not None:
                problems.append(f"line {number}: {who} entered while {holder} held the lock")
            holder = who
        elif holder != who:
            problems.append(f"line {number}: {who} left while {holder} held the lock")
            holder = None
        else:
            holder = None
    return problems


def test_the_overlap_check_finds_overlaps() -> None:
    assert [] == overlaps(["enter 1.1", "leave 1.1", "enter 2.1", "leave 2.1"])
    assert ["line 2: 2.1 entered while 1.1 held the lock"] == overlaps(
        ["enter 1.1", "enter 2.1", "leave 2.1"]
    )[:1]


def contend(
    tmp_path: Path, *, processes: int, threads: int, rounds: int, mode: str
) -> tuple[list[str], int, int]:
    """Run the contention harness; return the log and the held and refused counts."""
    locks, log = tmp_path / "locks", tmp_path / "log"
    log.touch()
    children = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                WORKER,
                str(locks),
                "r1",
                str(log),
                str(rounds),
                str(threads),
                mode,
            ],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(processes)
    ]

    def kill_all() -> None:  # a hung harness fails instead of hanging
        for child in children:
            child.kill()

    watchdog = threading.Timer(LIMIT * 2, kill_all)
    watchdog.start()
    try:
        for child in children:  # every process is ready before any starts
            assert child.stdout is not None
            assert "ready\n" == child.stdout.readline()
        for child in children:
            assert child.stdin is not None
            child.stdin.write("go\n")
            child.stdin.flush()
        held = refused = 0
        for child in children:
            out, _ = child.communicate(timeout=LIMIT * 2)
            assert 0 == child.returncode
            counts = json.loads(out)
            held += counts["held"]
            refused += counts["refused"]
    finally:
        watchdog.cancel()
        for child in children:
            child.kill()
            child.wait()
    return log.read_text().splitlines(), held, refused


def test_one_holder_at_a_time_among_many_processes_and_threads(tmp_path: Path) -> None:
    lines, held, refused = contend(tmp_path, processes=16, threads=4, rounds=25, mode="good")
    assert [] == overlaps(lines)[:5]
    assert held > 0, "nobody ever held the lock"
    assert refused > 0, "nobody was ever refused: there was no contention"
    assert 2 * held == len(lines)
    assert (tmp_path / "locks" / "r1.lock").exists()


def test_the_contention_check_catches_a_shared_lock(tmp_path: Path) -> None:
    lines, held, _ = contend(tmp_path, processes=4, threads=4, rounds=10, mode="broken")
    assert overlaps(lines), f"{held} holds of a shared lock never overlapped"


# -- one process ----------------------------------------------------------------------------


@pytest.fixture
def locks(tmp_path: Path) -> Path:
    return tmp_path / "locks"


def test_the_holder_line_names_pid_host_and_time(locks: Path) -> None:
    locks.mkdir()
    (locks / "r1.lock").write_text("pid 1 on a-long-gone-host since long ago\n" * 3)  # dead
    with acquire_file_lock("r1", locks) as lock:
        match = HOLDER.match(lock.holder)
        assert match is not None, lock.holder
        assert (str(os.getpid()), socket.gethostname()) == match.groups()
        assert lock.holder + "\n" == (locks / "r1.lock").read_text()
    assert "pid 7 on h since 1970-01-01T00:00:10Z" == holder_line(pid=7, host="h", since=10.0)


def test_a_second_claim_in_the_same_process_is_refused(locks: Path) -> None:
    lock = acquire_file_lock("r1", locks)
    with pytest.raises(RunLockedError) as caught:
        acquire_file_lock("r1", locks, location="/x/state.db")
    assert ("r1", lock.holder, "/x/state.db") == (
        caught.value.run_id,
        caught.value.holder,
        caught.value.location,
    )
    assert f"run 'r1' is being run by {lock.holder}" == str(caught.value)
    # the refused claim did not wipe the holder's line (no truncation before locking)
    assert lock.holder + "\n" == (locks / "r1.lock").read_text()
    other = acquire_file_lock("r2", locks)  # other runs are independent
    lock.release()
    other.release()


def test_release_keeps_the_file_and_lets_the_next_claimant_in(locks: Path) -> None:
    lock = acquire_file_lock("r1", locks)
    inode = (locks / "r1.lock").stat().st_ino
    lock.release()
    lock.release()  # idempotent
    assert not lock.held
    assert "" == (locks / "r1.lock").read_text()  # the holder line is cleared
    again = acquire_file_lock("r1", locks)
    assert inode == (locks / "r1.lock").stat().st_ino  # the same file, never unlinked
    again.release()
    assert (locks / "r1.lock").exists()


def test_a_loser_of_a_race_waits_for_the_winners_line(locks: Path) -> None:
    """The winner writes its line just after taking the lock: a loser names it anyway."""
    locks.mkdir()
    fd = os.open(locks / "r1.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # won, line not written yet
        writer = threading.Timer(0.2, os.pwrite, (fd, b"pid 4242 on elsewhere since now\n", 0))
        writer.start()
        with pytest.raises(RunLockedError) as caught:
            acquire_file_lock("r1", locks)
        writer.join()
        assert "pid 4242 on elsewhere since now" == caught.value.holder
    finally:
        os.close(fd)


def test_an_unreadable_holder_is_another_process(locks: Path) -> None:
    locks.mkdir()
    fd = os.open(locks / "r1.lock", os.O_RDWR | os.O_CREAT)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # a holder that never writes its line
        with pytest.raises(RunLockedError) as caught:
            acquire_file_lock("r1", locks)
        assert caught.value.holder is None
        assert "run 'r1' is being run by another process" == str(caught.value)
    finally:
        os.close(fd)


@pytest.mark.parametrize("run_id", ["", ".", "..", "a/b", "a\0b", "x" * 129])
def test_a_run_id_must_be_a_file_name(locks: Path, run_id: str) -> None:
    with pytest.raises(InputError, match="invalid run id"):
        acquire_file_lock(run_id, locks)
    with pytest.raises(InputError):
        lock_path(locks, run_id)


def test_a_symlinked_lock_file_is_refused(locks: Path, tmp_path: Path) -> None:
    locks.mkdir()
    (locks / "r1.lock").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(StoreConnectError, match=r"cannot open the run lock .*r1\.lock"):
        acquire_file_lock("r1", locks)
    assert not (tmp_path / "elsewhere").exists()


def test_the_lock_is_a_file_run_lock(locks: Path) -> None:
    lock = acquire_file_lock("r1", locks)
    assert isinstance(lock, FileRunLock)
    assert "held" in repr(lock)
    lock.release()
    assert "released" in repr(lock)


def test_a_lock_the_filesystem_cannot_take_is_a_connect_error(
    locks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with pytest.raises(StoreConnectError, match=r"cannot lock .*r1\.lock: No locks available"):
        acquire_file_lock("r1", locks)


def test_the_lock_holds_even_when_its_line_cannot_be_written(
    locks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def disk_full(*args: object) -> int:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    with monkeypatch.context() as patch:
        patch.setattr(os, "pwrite", disk_full)
        lock = acquire_file_lock("r1", locks)
    with pytest.raises(RunLockedError) as caught:
        acquire_file_lock("r1", locks)
    assert caught.value.holder is None  # the line is missing: "another process"
    with monkeypatch.context() as patch:
        patch.setattr(os, "ftruncate", disk_full)  # clearing the line fails too...
        lock.release()
    acquire_file_lock("r1", locks).release()  # ...and the lock is released all the same


def test_an_unreadable_lock_file_has_no_holder(
    locks: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    lock = acquire_file_lock("r1", locks)

    def unreadable(*args: object) -> bytes:
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(os, "pread", unreadable)
    with pytest.raises(RunLockedError) as caught:
        acquire_file_lock("r1", locks)
    assert caught.value.holder is None
    lock.release()


def test_a_forked_child_drops_its_copy_of_the_lock(locks: Path) -> None:
    lock = acquire_file_lock("r1", locks)
    pid = os.fork()
    if pid == 0:  # the child: its copy is closed, the parent's lock stands
        try:
            acquire_file_lock("r1", locks)
            status = 3
        except RunLockedError:
            status = 0 if not lock.held else 4
        except BaseException:
            status = 5
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    assert 0 == os.waitstatus_to_exitcode(status)
    assert lock.held
    lock.release()


# -- death, exec and fork -----------------------------------------------------------------

HOLD = r"""
import os, signal, subprocess, sys, time
from pathlib import Path
from subplan._store._lockfile import acquire_file_lock
lock = acquire_file_lock("r1", Path(sys.argv[1]))
how = sys.argv[2]
if how == "fork":  # a worker forked while the lock is held outlives its parent
    child = os.fork()
    if child == 0:
        time.sleep(600)
        os._exit(0)
    print(child, flush=True)
elif how == "exec":  # a command started without closing descriptors outlives its parent
    child = subprocess.Popen(["sleep", "600"], close_fds=False)
    print(child.pid, flush=True)
else:
    print(os.getpid(), flush=True)
if how != "hold":
    os.kill(os.getpid(), signal.SIGKILL)
time.sleep(600)
"""


def claim_within(locks: Path, seconds: float) -> FileRunLock:
    deadline = time.monotonic() + seconds
    while True:
        try:
            return acquire_file_lock("r1", locks)
        except RunLockedError as exc:
            if time.monotonic() > deadline:
                pytest.fail(f"the lock was still held after {seconds} s: {exc}")
        time.sleep(0.01)


def test_a_sigkilled_holder_frees_the_lock(locks: Path) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(locks), "hold"], stdout=subprocess.PIPE, text=True
    )
    try:
        assert holder.stdout is not None
        assert f"{holder.pid}\n" == holder.stdout.readline()
        with pytest.raises(RunLockedError) as caught:
            acquire_file_lock("r1", locks)
        assert caught.value.holder is not None
        assert caught.value.holder.startswith(f"pid {holder.pid} on ")
        holder.send_signal(signal.SIGKILL)
        holder.wait(LIMIT)
        claim_within(locks, 2.0).release()
    finally:
        holder.kill()
        holder.wait()
        assert holder.stdout is not None
        holder.stdout.close()


@pytest.mark.parametrize("how", ["fork", "exec"])
def test_children_of_a_killed_holder_do_not_keep_the_lock(locks: Path, how: str) -> None:
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(locks), how], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout is not None
    orphan = int(holder.stdout.readline())
    try:
        assert -signal.SIGKILL == holder.wait(LIMIT)
        os.kill(orphan, 0)  # the child is still there...
        claim_within(locks, 2.0).release()  # ...and the lock is free
    finally:
        with_orphan_gone(orphan)
        holder.stdout.close()


def with_orphan_gone(pid: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, signal.SIGKILL)
