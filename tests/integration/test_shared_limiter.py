"""SharedLimiter with real processes: one bound per host, freed by the kernel on death.

Worker processes run ``python -c WORKER`` and report through small files (written
atomically) in the test's directory; the test waits for those files with deadlines. The
checks of the bound are also run against a deliberately unshared setup (one pool
directory per process) to prove they can fail.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import faulthandler
import fcntl
import json
import multiprocessing
import os
import pathlib
import pickle
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import subplan._limit._shared as shared_module
from execute_helpers import flat_plan
from subplan._dispatch._results import AttemptContext, RunReport
from subplan._errors import ConfigError
from subplan._limit._futures import LimitedExecutor
from subplan._limit._limiter import LimiterTimeoutError, SlotNotHeldError
from subplan._limit._shared import (
    SharedLimiter,
    SharedLimiterStatistics,
    SharedSlot,
    SlotHolder,
    default_pool_directory,
)
from subplan._limit._tracker import ConcurrencyTracker, peak_from_intervals
from subplan._model import Subplan
from subplan._run import run
from subplan.testing import FakeClock

WAIT = 20.0  # seconds: a bound on waits for things that should happen soon
POOL = "test-pool"

WORKER = r"""
import json, os, pathlib, random, sys, time
from subplan._limit import _shared
from subplan._limit._shared import SharedLimiter

cfg = json.loads(sys.argv[1])
out = pathlib.Path(cfg["out"])
pool = SharedLimiter(
    cfg["name"], cfg["capacity"], directory=cfg["directory"], poll_interval=0.002,
    seed=cfg.get("seed"),
)

def note(suffix, data):
    tmp = out.with_name(out.name + suffix + ".tmp")
    tmp.write_text(json.dumps(data))
    os.replace(tmp, out.with_name(out.name + suffix))

def wait_for(path, timeout=60.0):
    deadline = time.monotonic() + timeout
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            sys.exit(f"worker {os.getpid()}: timed out waiting for {path}")
        time.sleep(0.001)

mode = cfg["mode"]
if mode == "stress":
    rng = random.Random(cfg["seed"])
    note(".ready", os.getpid())
    wait_for(cfg["go"])
    intervals = []
    for _ in range(cfg["rounds"]):
        slot = pool.acquire(timeout=60)
        start = time.monotonic()      # CLOCK_MONOTONIC: one clock for the whole host
        time.sleep(rng.random() * 0.002)  # the work, done while holding the slot
        end = time.monotonic()
        pool.release(slot)
        intervals.append((start, end))
    note(".done", intervals)
elif mode == "hold":
    note(".trying", os.getpid())
    slot = pool.acquire(timeout=60)
    start = time.monotonic()
    note(".held", {"pid": os.getpid(), "index": slot.index})
    wait_for(cfg["release"])
    end = time.monotonic()
    pool.release(slot)
    note(".done", [(start, end)])
elif mode == "hold-forever":
    slot = pool.acquire(timeout=60)
    note(".held", {"pid": os.getpid(), "index": slot.index})
    sys.stdin.read()  # until killed
elif mode == "fork-hold":
    slot = pool.acquire(timeout=60)
    if not cfg["at_fork_hook"]:
        _shared._INSTANCES.clear()  # broken on purpose: the child keeps our descriptors
    child = os.fork()
    if child == 0:
        note(".child", os.getpid())  # the at-fork hooks have run by now
        sys.stdin.read()
        os._exit(0)
    note(".held", {"pid": os.getpid(), "child": child, "index": slot.index})
    sys.stdin.read()
"""


def wait_until(predicate: Callable[[], bool], what: str, timeout: float = WAIT) -> None:
    """Poll ``predicate`` until it holds; on timeout dump every thread's stack and fail."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
            pytest.fail(f"timed out after {timeout} s waiting until {what}")
        time.sleep(0.002)


class Workers:
    """Starts worker processes and kills whatever is left of them at the end."""

    def __init__(self, base: pathlib.Path) -> None:
        self.base = base
        self.procs: list[subprocess.Popen[bytes]] = []
        self.extra_pids: list[int] = []

    def start(
        self, label: str, mode: str, directory: pathlib.Path, capacity: int, **cfg: Any
    ) -> pathlib.Path:
        out = self.base / label
        config = {
            "mode": mode,
            "name": POOL,
            "capacity": capacity,
            "directory": str(directory),
            "out": str(out),
            **cfg,
        }
        stderr = (self.base / f"{label}.stderr").open("wb")
        proc = subprocess.Popen(
            [sys.executable, "-c", WORKER, json.dumps(config)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        stderr.close()
        self.procs.append(proc)
        return out

    def wait_all(self) -> None:
        for proc in self.procs:
            try:
                code = proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                pytest.fail(f"worker {proc.pid} did not finish within 60 s")
            if code != 0:
                errors = "\n".join(p.read_text() for p in self.base.glob("*.stderr"))
                pytest.fail(f"worker {proc.pid} exited with {code}:\n{errors}")

    def cleanup(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
            proc.wait(timeout=WAIT)
            if proc.stdin is not None:
                proc.stdin.close()
        for pid in self.extra_pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def workers(tmp_path: pathlib.Path) -> Iterator[Workers]:
    reports = tmp_path / "reports"
    reports.mkdir()
    started = Workers(reports)
    yield started
    started.cleanup()


def read_report(out: pathlib.Path, suffix: str) -> Any:
    return json.loads(out.with_name(out.name + suffix).read_text())


def has_report(out: pathlib.Path, suffix: str) -> bool:
    return out.with_name(out.name + suffix).exists()


def slot_inodes(directory: pathlib.Path) -> dict[str, int]:
    return {p.name: p.stat().st_ino for p in (directory / POOL).glob("slot-*")}


# -- many processes, one bound ------------------------------------------------------------


def test_processes_never_exceed_the_shared_bound(workers: Workers, tmp_path: pathlib.Path) -> None:
    capacity, processes, rounds = 2, 6, 25
    probe = SharedLimiter(POOL, capacity, directory=tmp_path)
    before = slot_inodes(tmp_path)
    go = tmp_path / "go"
    outs = [
        workers.start(f"w{i}", "stress", tmp_path, capacity, seed=i, rounds=rounds, go=str(go))
        for i in range(processes)
    ]
    wait_until(lambda: all(has_report(o, ".ready") for o in outs), "every worker is ready")
    go.touch()
    workers.wait_all()
    intervals = [tuple(i) for o in outs for i in read_report(o, ".done")]
    assert processes * rounds == len(intervals)
    assert 1 <= peak_from_intervals(intervals) <= capacity
    assert before == slot_inodes(tmp_path)  # slot files were neither unlinked nor replaced
    assert () == probe.holders()
    probe.close()


def saturate(workers: Workers, tmp_path: pathlib.Path, *, shared: bool) -> tuple[int, int]:
    """Start 5 holders on capacity 2; return (holding at once, peak over their intervals).

    With ``shared=False`` every process gets its own pool directory: a deliberately
    broken setup in which nothing is shared, so the bound must be seen to fail.
    """
    capacity, processes = 2, 5
    pool_dir = tmp_path / "pools"
    probe = SharedLimiter(POOL, capacity, directory=pool_dir)
    release = tmp_path / "release"
    outs = [
        workers.start(
            f"h{i}",
            "hold",
            pool_dir if shared else tmp_path / f"own-{i}",
            capacity,
            release=str(release),
        )
        for i in range(processes)
    ]

    def holding() -> int:
        return sum(has_report(o, ".held") for o in outs)

    def settled() -> bool:
        if not all(has_report(o, ".trying") for o in outs):
            return False
        held = holding()
        return held == processes or (held == capacity and len(probe.holders()) == capacity)

    wait_until(settled, "every holder holds a slot or waits for one")
    at_once = holding()
    release.touch()
    workers.wait_all()
    intervals = [tuple(i) for o in outs for i in read_report(o, ".done")]
    probe.close()
    return at_once, peak_from_intervals(intervals)


def test_a_saturated_pool_holds_exactly_its_capacity(
    workers: Workers, tmp_path: pathlib.Path
) -> None:
    assert (2, 2) == saturate(workers, tmp_path, shared=True)


def test_the_saturation_check_detects_an_unshared_pool(
    workers: Workers, tmp_path: pathlib.Path
) -> None:
    assert (5, 5) == saturate(workers, tmp_path, shared=False)


# -- the kernel frees a dead holder's slot ------------------------------------------------


def test_a_holder_killed_with_sigkill_frees_its_slot_for_the_next_waiter(
    workers: Workers, tmp_path: pathlib.Path
) -> None:
    probe = SharedLimiter(POOL, 1, directory=tmp_path)
    inodes = slot_inodes(tmp_path)
    victim = workers.start("victim", "hold-forever", tmp_path, 1)
    wait_until(lambda: has_report(victim, ".held"), "the victim holds the slot")
    assert probe.acquire_nowait() is None
    (holder,) = probe.holders()
    assert (0, workers.procs[0].pid, False) == (holder.index, holder.pid, holder.mine)
    assert isinstance(holder.since, float)
    heir = workers.start("heir", "hold", tmp_path, 1, release=str(tmp_path / "release"))
    wait_until(lambda: has_report(heir, ".trying"), "the heir is waiting")
    workers.procs[0].send_signal(signal.SIGKILL)
    workers.procs[0].wait(timeout=WAIT)
    # the heir polls every 2 ms; a few seconds is a generous bound for "promptly"
    wait_until(lambda: has_report(heir, ".held"), "the heir takes the freed slot", timeout=5.0)
    (holder,) = probe.holders()
    assert workers.procs[1].pid == holder.pid
    (tmp_path / "release").touch()
    workers.procs[1].wait(timeout=WAIT)
    slot = probe.acquire_nowait()
    assert slot is not None
    assert inodes == slot_inodes(tmp_path)  # the same files throughout
    probe.release(slot)
    probe.close()


@pytest.mark.parametrize("at_fork_hook", [True, False])
def test_a_forked_child_does_not_keep_its_dead_parents_slot(
    workers: Workers, tmp_path: pathlib.Path, at_fork_hook: bool
) -> None:
    probe = SharedLimiter(POOL, 1, directory=tmp_path)
    parent = workers.start("parent", "fork-hold", tmp_path, 1, at_fork_hook=at_fork_hook)
    wait_until(
        lambda: has_report(parent, ".held") and has_report(parent, ".child"),
        "the parent holds the slot and its child is past the fork",
    )
    child = read_report(parent, ".held")["child"]
    assert child == read_report(parent, ".child")
    workers.extra_pids.append(child)
    workers.procs[0].send_signal(signal.SIGKILL)
    workers.procs[0].wait(timeout=WAIT)
    os.kill(child, 0)  # the child is still alive
    slot = probe.acquire_nowait()
    if at_fork_hook:
        assert slot is not None, "the slot stayed locked after its holder died"
        probe.release(slot)
    else:
        # without the hook the child's inherited descriptor keeps the lock: this is the
        # failure the hook prevents, shown here so that the check above can fail
        assert slot is None
        os.kill(child, signal.SIGKILL)
        wait_until(lambda: _take_and_give_back(probe), "the slot is free once the child dies")
    probe.close()


def _take_and_give_back(limiter: SharedLimiter) -> bool:
    slot = limiter.acquire_nowait()
    if slot is None:
        return False
    limiter.release(slot)
    return True


# -- never truncate before the lock, never unlink -----------------------------------------


def test_failed_attempts_leave_a_held_slot_file_untouched(
    workers: Workers, tmp_path: pathlib.Path
) -> None:
    holder = workers.start("holder", "hold-forever", tmp_path, 1)
    wait_until(lambda: has_report(holder, ".held"), "the holder holds the slot")
    path = tmp_path / POOL / "slot-0"
    with path.open("ab") as extra:  # a long old record: must vanish only after locking
        extra.write(b" " * 300 + b"trailing junk from an older, longer record")
    before = (path.read_bytes(), path.stat().st_size, path.stat().st_mtime_ns)
    other = SharedLimiter(POOL, 1, directory=tmp_path)  # opens with O_CREAT: no truncation
    assert other.acquire_nowait() is None
    with pytest.raises(LimiterTimeoutError):
        other.acquire(timeout=0)
    fake = SharedLimiter(POOL, 1, directory=tmp_path, clock=FakeClock())
    with pytest.raises(LimiterTimeoutError):
        fake.acquire(timeout=1.0)
    other.holders()
    assert before == (path.read_bytes(), path.stat().st_size, path.stat().st_mtime_ns)
    workers.procs[0].kill()
    workers.procs[0].wait(timeout=WAIT)
    slot = other.acquire(timeout=5.0)
    record = json.loads(path.read_bytes())  # truncated and rewritten: no junk left
    assert (os.getpid(), POOL, 1) == (record["pid"], record["pool"], record["capacity"])
    other.release(slot)
    other.close()
    fake.close()


class Spy:
    """Records the file-system calls the shared limiter makes (and passes them through)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, pool: pathlib.Path) -> None:
        self.pool = str(pool)
        self.events: list[tuple[str, Any, Any]] = []
        self.fd_paths: dict[int, str] = {}
        real_open, real_flock, real_ftruncate = os.open, fcntl.flock, os.ftruncate

        def spy_open(path: Any, flags: int, *args: Any, **kwargs: Any) -> int:
            fd = real_open(path, flags, *args, **kwargs)
            if str(path).startswith(self.pool):
                self.fd_paths[fd] = str(path)
                self.events.append(("open", str(path), flags))
            return fd

        def spy_flock(fd: int, operation: int) -> None:
            real_flock(fd, operation)  # raises BlockingIOError when taken: not recorded
            self.events.append(("flock", fd, operation))

        def spy_ftruncate(fd: int, length: int) -> None:
            self.events.append(("ftruncate", fd, length))
            real_ftruncate(fd, length)

        monkeypatch.setattr(os, "open", spy_open)
        monkeypatch.setattr(fcntl, "flock", spy_flock)
        monkeypatch.setattr(os, "ftruncate", spy_ftruncate)
        for name in ("unlink", "remove", "rename", "replace", "truncate", "rmdir"):
            monkeypatch.setattr(os, name, self._forbidden(name))

    def _forbidden(self, name: str) -> Callable[..., None]:
        def call(*args: Any, **kwargs: Any) -> None:
            self.events.append((name, args, kwargs))
            raise AssertionError(f"the shared limiter called os.{name}{args}")

        return call


def test_slot_files_are_never_truncated_before_locking_nor_unlinked(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    spy = Spy(monkeypatch, tmp_path)
    first = SharedLimiter(POOL, 3, directory=tmp_path, seed=1)
    second = SharedLimiter(POOL, 3, directory=tmp_path, seed=2)
    held = [first.acquire_nowait(), second.acquire_nowait(), second.acquire_nowait()]
    assert first.acquire_nowait() is None
    first.holders()
    for slot in held:
        assert slot is not None
        slot.release()
    for _ in range(20):
        with first.slot(), second.slot():
            pass
    first.close()
    second.close()
    monkeypatch.undo()

    opens = [e for e in spy.events if e[0] == "open"]
    assert opens
    for _, path, flags in opens:
        assert not flags & os.O_TRUNC, f"{path} opened with O_TRUNC"
        if flags & os.O_RDWR:
            assert flags & os.O_CREAT
    locked: set[int] = set()
    for kind, fd, arg in spy.events:
        if kind == "flock" and arg & fcntl.LOCK_EX:
            locked.add(fd)
        elif kind == "flock" and arg == fcntl.LOCK_UN:
            locked.discard(fd)
        elif kind == "ftruncate":
            assert fd in locked, f"{spy.fd_paths.get(fd)} truncated without its lock"
    assert sum(1 for e in spy.events if e[0] == "ftruncate") == 43  # 3 + 2 x 20 acquires
    assert not [e for e in spy.events if e[0] not in ("open", "flock", "ftruncate")]


def test_a_slot_file_deleted_from_outside_is_recreated_not_trusted(tmp_path: pathlib.Path) -> None:
    first = SharedLimiter(POOL, 1, directory=tmp_path)
    second = SharedLimiter(POOL, 1, directory=tmp_path)
    path = tmp_path / POOL / "slot-0"
    path.unlink()  # a tmp cleaner; both instances still have the old file open
    assert () == second.holders()  # a missing file holds nothing
    slot = first.acquire_nowait()
    assert slot is not None
    assert path.exists()
    # the second instance must see the lock on the file the path names now, not lock the
    # deleted one it still has open
    assert second.acquire_nowait() is None
    assert [0] == [h.index for h in second.holders()]
    first.release(slot)
    again = second.acquire_nowait()
    assert again is not None
    second.release(again)
    first.close()
    second.close()


def test_a_pool_directory_deleted_from_outside_is_recreated(tmp_path: pathlib.Path) -> None:
    first = SharedLimiter(POOL, 2, directory=tmp_path)
    second = SharedLimiter(POOL, 2, directory=tmp_path)
    for path in first.path.iterdir():
        path.unlink()
    first.path.rmdir()
    assert () == second.holders()
    slot = first.acquire_nowait()
    assert slot is not None
    assert 0o700 == stat.S_IMODE(first.path.stat().st_mode)
    assert [slot.index] == [h.index for h in second.holders()]
    first.release(slot)
    first.close()
    second.close()


def test_a_slot_file_that_keeps_being_replaced_is_given_up_on(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    pool = SharedLimiter(POOL, 1, directory=tmp_path)
    monkeypatch.setattr(pool, "_is_current", lambda index, fd: False)
    assert pool.acquire_nowait() is None
    monkeypatch.undo()
    slot = pool.acquire_nowait()  # nothing was left locked by the failed round
    assert slot is not None
    pool.release(slot)
    pool.close()


# -- within one process -------------------------------------------------------------------


@pytest.mark.parametrize(
    "name", ["", ".hidden", "-x", "_x", "a/b", "..", "a b", "ä", "x" * 65, "pool\n", 3]
)
def test_bad_pool_names_are_refused_by_name(name: object, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ConfigError, match="invalid pool name") as info:
        SharedLimiter(name, 1, directory=tmp_path)  # type: ignore[arg-type]
    assert repr(name) in str(info.value)
    assert [] == list(tmp_path.iterdir())


@pytest.mark.parametrize("name", ["a", "Agents-1", "x" * 64, "team.pool_2"])
def test_good_pool_names_make_a_private_directory(name: str, tmp_path: pathlib.Path) -> None:
    pool = SharedLimiter(name, 2, directory=tmp_path)
    assert tmp_path / name == pool.path
    assert name == pool.name
    assert 0o700 == stat.S_IMODE(pool.path.stat().st_mode)
    files = sorted(p.name for p in pool.path.iterdir())
    assert ["slot-0", "slot-1"] == files
    assert all(0o600 == stat.S_IMODE(p.stat().st_mode) for p in pool.path.iterdir())
    pool.close()


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"capacity": 0}, "capacity must be >= 1"),
        ({"capacity": True}, "capacity must be an integer"),
        ({"poll_interval": 0}, "poll_interval"),
        ({"poll_interval": float("inf")}, "poll_interval"),
        ({"poll_interval": True}, "poll_interval"),
    ],
)
def test_bad_settings_are_refused(
    kwargs: dict[str, Any], message: str, tmp_path: pathlib.Path
) -> None:
    settings: dict[str, Any] = {"capacity": 1, **kwargs}
    capacity = settings.pop("capacity")
    with pytest.raises(ConfigError, match=message):
        SharedLimiter(POOL, capacity, directory=tmp_path, **settings)


def test_default_pool_directory_prefers_subplan_pool_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.setenv("SUBPLAN_POOL_DIR", str(tmp_path / "mine" / "pools"))
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    path = default_pool_directory()
    assert tmp_path / "mine" / "pools" == path
    assert 0o700 == stat.S_IMODE(path.stat().st_mode)
    pool = SharedLimiter("via-env", 1)
    assert path / "via-env" == pool.path
    pool.close()


def test_default_pool_directory_uses_the_runtime_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.delenv("SUBPLAN_POOL_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert tmp_path / "subplan" / "pools" == default_pool_directory()
    assert 0o700 == stat.S_IMODE((tmp_path / "subplan" / "pools").stat().st_mode)


def test_default_pool_directory_falls_back_to_a_private_temp_dir(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    monkeypatch.delenv("SUBPLAN_POOL_DIR", raising=False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path / "missing"))  # set but absent
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    base = tmp_path / f"subplan-{os.getuid()}"
    assert base / "pools" == default_pool_directory()
    assert 0o700 == stat.S_IMODE(base.stat().st_mode)
    assert base / "pools" == default_pool_directory()  # and again, once it exists


@pytest.mark.parametrize("plant", ["open-mode", "symlink", "file"])
def test_a_planted_temp_dir_is_refused(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, plant: str
) -> None:
    monkeypatch.delenv("SUBPLAN_POOL_DIR", raising=False)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    base = tmp_path / f"subplan-{os.getuid()}"
    if plant == "open-mode":
        base.mkdir()
        base.chmod(0o777)
    elif plant == "symlink":
        (tmp_path / "elsewhere").mkdir(mode=0o700)
        base.symlink_to(tmp_path / "elsewhere")
    else:
        base.write_text("not a directory")
    with pytest.raises(ConfigError, match="refusing pool directory"):
        default_pool_directory()


def test_acquire_release_and_statistics_in_one_process(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(start=50.0)
    pool = SharedLimiter(POOL, 2, directory=tmp_path, clock=clock, seed=3)
    first = pool.acquire()
    second = pool.acquire_nowait()
    assert second is not None
    assert pool.acquire_nowait() is None
    assert {0, 1} == {first.index, second.index}
    assert (1, 2) == (first.id, second.id)
    assert (50.0, ()) == (first.acquired_at, first.groups)
    assert tmp_path / POOL / f"slot-{first.index}" == first.path
    assert f"SharedSlot(id=1, index={first.index}" in repr(first)
    assert "SharedLimiter('test-pool', capacity=2" in repr(pool)
    assert 2 == pool.capacity
    assert SharedLimiterStatistics(POOL, 2, 2, 0, 2, 2, 0) == pool.statistics()
    with pytest.raises(AttributeError):
        first.index = 5  # type: ignore[misc]
    first.release()
    with pytest.raises(SlotNotHeldError, match="already released") as info:
        pool.release(first)
    assert first.id == info.value.slot_id
    with second:
        pass
    assert SharedLimiterStatistics(POOL, 2, 0, 0, 2, 2, 2) == pool.statistics()
    pool.close()


def test_foreign_slots_are_refused(tmp_path: pathlib.Path) -> None:
    mine = SharedLimiter(POOL, 2, directory=tmp_path)
    theirs = SharedLimiter(POOL, 2, directory=tmp_path)
    slot = theirs.acquire()
    with pytest.raises(SlotNotHeldError, match="held by this instance") as info:
        mine.release(slot)
    assert slot.id == info.value.slot_id
    with pytest.raises(SlotNotHeldError) as info:
        mine.release("slot")  # type: ignore[arg-type]
    assert info.value.slot_id is None
    theirs.release(slot)
    mine.close()
    theirs.close()


def test_two_instances_in_one_process_contend_like_two_processes(tmp_path: pathlib.Path) -> None:
    first = SharedLimiter(POOL, 1, directory=tmp_path)
    second = SharedLimiter(POOL, 1, directory=tmp_path)
    with first.slot():
        assert second.acquire_nowait() is None
        (holder,) = second.holders()
        assert (os.getpid(), False) == (holder.pid, holder.mine)
        (holder,) = first.holders()
        assert (os.getpid(), True) == (holder.pid, holder.mine)
    assert () == first.holders()
    first.close()
    second.close()


def test_holders_include_slots_beyond_this_instances_capacity(tmp_path: pathlib.Path) -> None:
    big = SharedLimiter(POOL, 3, directory=tmp_path)
    small = SharedLimiter(POOL, 1, directory=tmp_path)
    slots = [big.acquire_nowait() for _ in range(3)]
    assert [0, 1, 2] == [h.index for h in small.holders()]
    assert small.acquire_nowait() is None  # slot-0 is taken, and it may use only slot-0
    for slot in slots:
        assert slot is not None
        big.release(slot)
    (tmp_path / POOL / "slot-notes").write_text("not a slot file")
    assert () == small.holders()
    big.close()
    small.close()


def test_unreadable_holder_records_are_reported_as_unknown(tmp_path: pathlib.Path) -> None:
    holder_pool = SharedLimiter(POOL, 1, directory=tmp_path)
    viewer = SharedLimiter(POOL, 1, directory=tmp_path)
    slot = holder_pool.acquire()
    for content in [b"", b'{"pid": 12', b"[1, 2]", b'{"pid": true, "host": 3, "since": "x"}']:
        slot.path.write_bytes(content)  # as if the holder were half-way through writing
        assert (SlotHolder(0, None, None, None, mine=False),) == viewer.holders()
        assert (SlotHolder(0, None, None, None, mine=True),) == holder_pool.holders()
    holder_pool.release(slot)
    holder_pool.close()
    viewer.close()


def test_a_full_disk_does_not_cost_the_slot(
    monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    pool = SharedLimiter(POOL, 1, directory=tmp_path)

    def disk_full(fd: int, data: bytes, offset: int) -> int:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "pwrite", disk_full)
    slot = pool.acquire_nowait()
    monkeypatch.undo()
    assert slot is not None
    assert (SlotHolder(0, None, None, None, mine=True),) == pool.holders()
    pool.release(slot)
    pool.close()


def test_timeouts_follow_the_injected_clock(tmp_path: pathlib.Path) -> None:
    holder = SharedLimiter(POOL, 1, directory=tmp_path)
    held = holder.acquire()
    clock = FakeClock()
    waiter = SharedLimiter(POOL, 1, directory=tmp_path, clock=clock, poll_interval=0.1, seed=0)
    with pytest.raises(LimiterTimeoutError, match=r"within 2 s \(capacity 1\)") as info:
        waiter.acquire(timeout=2.0)
    assert 2.0 == info.value.timeout
    assert 2.0 == pytest.approx(sum(clock.slept))
    assert all(0.0 < s <= 0.15 for s in clock.slept)  # jittered polls of ~0.1 s
    assert 0 == waiter.statistics().waiting
    with pytest.raises(ConfigError, match="timeout"):
        waiter.acquire(timeout=-1)
    holder.release(held)
    holder.close()
    waiter.close()


def test_a_blocked_acquire_gets_the_slot_when_it_is_released(tmp_path: pathlib.Path) -> None:
    holder = SharedLimiter(POOL, 1, directory=tmp_path)
    waiter = SharedLimiter(POOL, 1, directory=tmp_path, poll_interval=0.001)
    held = holder.acquire()
    got: list[SharedSlot] = []
    thread = threading.Thread(target=lambda: got.append(waiter.acquire(timeout=WAIT)))
    thread.start()
    wait_until(lambda: waiter.statistics().waiting == 1, "the waiter polls")
    holder.release(held)
    thread.join(WAIT)
    assert 1 == len(got)
    waiter.release(got[0])
    holder.close()
    waiter.close()


def test_with_limiter_takes_one_slot_per_entry_and_nests(tmp_path: pathlib.Path) -> None:
    pool = SharedLimiter(POOL, 2, directory=tmp_path)
    with pool as outer, pool as inner:
        assert outer.index != inner.index
        assert 2 == pool.statistics().running
    with pytest.raises(SlotNotHeldError, match="did not enter it"):
        pool.__exit__(None, None, None)
    assert (0, 2, 2) == (
        pool.statistics().running,
        pool.statistics().acquired,
        pool.statistics().released,
    )
    pool.close()


def test_one_instance_is_thread_safe(tmp_path: pathlib.Path) -> None:
    pool = SharedLimiter(POOL, 3, directory=tmp_path, poll_interval=0.001)
    tracker = ConcurrencyTracker()
    start = threading.Barrier(16, timeout=WAIT)

    def work() -> None:
        start.wait()
        for _ in range(40):
            with pool.slot(timeout=WAIT), tracker:
                time.sleep(0)

    threads = [threading.Thread(target=work) for _ in range(16)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 3)
    assert 1 <= tracker.peak <= 3
    stats = pool.statistics()
    assert (0, 640, 640) == (stats.running, stats.acquired, stats.released)
    assert stats.peak <= 3
    pool.close()


def test_slot_contexts_are_single_use_at_a_time(tmp_path: pathlib.Path) -> None:
    pool = SharedLimiter(POOL, 2, directory=tmp_path)
    context = pool.slot()
    with context, pytest.raises(RuntimeError, match="entered twice"):
        context.__enter__()
    with pytest.raises(RuntimeError, match="without being entered"):
        context.__exit__(None, None, None)
    pool.close()


def test_close_frees_held_slots_and_the_instance_stays_usable(tmp_path: pathlib.Path) -> None:
    pool = SharedLimiter(POOL, 1, directory=tmp_path)
    other = SharedLimiter(POOL, 1, directory=tmp_path)
    slot = pool.acquire()
    pool.close()
    assert SharedLimiterStatistics(POOL, 1, 0, 0, 1, 1, 1) == pool.statistics()
    with pytest.raises(SlotNotHeldError):
        pool.release(slot)
    taken = other.acquire_nowait()
    assert taken is not None  # the kernel dropped the lock with the descriptor
    other.release(taken)
    with pool.slot():  # reopens its files
        assert other.acquire_nowait() is None
    pool.close()
    other.close()


def test_after_a_fork_the_child_forgets_the_parents_slots(tmp_path: pathlib.Path) -> None:
    # the bookkeeping half of the at-fork hook (the process half is tested above)
    pool = SharedLimiter(POOL, 2, directory=tmp_path)
    slot = pool.acquire()
    shared_module._forget_after_fork()
    assert (0, 0) == (pool.statistics().running, pool.statistics().waiting)
    with pytest.raises(SlotNotHeldError):
        pool.release(slot)
    pool.close()


def test_a_pickled_limiter_opens_the_same_pool(tmp_path: pathlib.Path) -> None:
    pool = SharedLimiter(POOL, 1, directory=tmp_path, poll_interval=0.25)
    copy = pickle.loads(pickle.dumps(pool))  # noqa: S301 (our own bytes)
    assert (POOL, 1, pool.path) == (copy.name, copy.capacity, copy.path)
    with pool.slot():
        assert copy.acquire_nowait() is None
    pool.close()
    copy.close()


def _record_interval(report_dir: str, n: int) -> int:
    """Work for a process pool: note when it ran (one file per call)."""
    start = time.monotonic()
    time.sleep(0.002)
    end = time.monotonic()
    pathlib.Path(report_dir, f"{n}.json").write_text(json.dumps([start, end]))
    return n


def test_limited_process_pool_shares_the_bound(tmp_path: pathlib.Path) -> None:
    pool = SharedLimiter(POOL, 2, directory=tmp_path / "pools", poll_interval=0.002)
    reports = tmp_path / "reports"
    reports.mkdir()
    context = multiprocessing.get_context("spawn")
    with (
        concurrent.futures.ProcessPoolExecutor(4, mp_context=context) as inner,
        LimitedExecutor(pool, inner=inner) as limited,
    ):
        done = list(limited.map(_record_interval, [str(reports)] * 24, range(24), timeout=60))
    assert list(range(24)) == done
    intervals = [tuple(json.loads(p.read_text())) for p in reports.glob("*.json")]
    assert 24 == len(intervals)
    assert 1 <= peak_from_intervals(intervals) <= 2
    pool.close()


class RefusalsCounted(SharedLimiter):
    """A real pool that counts the slots it could not give (to see a run wait on it)."""

    refused = 0

    def acquire_nowait(self) -> SharedSlot | None:
        slot = super().acquire_nowait()
        if slot is None:
            self.refused += 1
        return slot


def test_a_run_started_while_the_pool_is_full_finishes_once_it_frees(
    tmp_path: pathlib.Path,
) -> None:
    # Another holder (an instance of its own contends like another process) fills the pool.
    other = SharedLimiter(POOL, 2, directory=tmp_path / "pools")
    held = [other.acquire(timeout=0), other.acquire(timeout=0)]
    pool = RefusalsCounted(POOL, 2, directory=tmp_path / "pools")
    tracker = ConcurrencyTracker()

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        with tracker:
            pass

    reports: list[RunReport] = []
    runner = threading.Thread(
        target=lambda: reports.append(
            run(flat_plan(5), work, max_parallel=2, limiter=pool, runs_dir=tmp_path / "runs")
        ),
        daemon=True,  # a run that never ends must not keep the test process alive
    )
    runner.start()
    wait_until(lambda: pool.refused >= 2, "the run has found the pool full twice")
    assert 0 == tracker.entered  # nothing ran while the pool was full
    for slot in held:
        other.release(slot)
    runner.join(WAIT)
    if runner.is_alive():
        faulthandler.dump_traceback(file=sys.stderr, all_threads=True)
        pytest.fail(f"the run did not finish within {WAIT} s of the pool freeing")
    (report,) = reports
    assert report.ok
    assert 5 == tracker.entered
    stats = pool.statistics()
    assert (5, 5, 0) == (stats.acquired, stats.released, stats.running)
    assert report.slots is not None
    # The run's own slots too, with those it gave back at once while the pool was full.
    assert (report.slots.acquired, 0) == (report.slots.released, report.slots.running)
    assert () == other.holders()  # every slot of the pool is free again
    pool.close()
    other.close()
