"""The small parts of the process pool, in this process: texts, pickling fallbacks,
waiting for a parent to exit, and what a worker does when its parent is gone."""

from __future__ import annotations

import errno
import multiprocessing
import os
import pickle
import signal
import subprocess
import threading
import time
from collections.abc import Iterator

import pytest

from subplan._command import _workers as _processes
from subplan._command._process import _group_alive
from subplan._command._workers import JobEnd, report_pgid

LIMIT = 30.0


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(["sleep", "300"], start_new_session=True)
    yield proc
    proc.kill()
    proc.wait()


def test_job_end_defaults() -> None:
    end = JobEnd(3, "returned")
    assert (None, None, None, None, 0.0, 0, ()) == (
        end.value,
        end.error,
        end.error_text,
        end.started,
        end.ended,
        end.pid,
        end.pgids,
    )


@pytest.mark.parametrize(
    ("code", "text"),
    [
        (None, "worker 7 died (exit status unknown)"),
        (-9, "worker 7 died: killed by signal 9"),
        (3, "worker 7 died: exited with status 3"),
        (0, "worker 7 died: exited with status 0"),
    ],
)
def test_death_texts(code: int | None, text: str) -> None:
    assert text == _processes._death(7, code)


class Unprintable(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no")


@pytest.mark.parametrize(
    ("exc", "line"),
    [
        (ValueError("x"), "ValueError: x"),
        (ValueError("first\nsecond"), "ValueError: first"),
        (KeyError(), "KeyError"),
        (Unprintable(), "Unprintable: <unprintable>"),
    ],
)
def test_one_line(exc: BaseException, line: str) -> None:
    assert line == _processes._one_line(exc)


def test_type_names() -> None:
    assert "ValueError" == _processes._type_name(ValueError())
    assert f"{__name__}.Unprintable" == _processes._type_name(Unprintable())


def test_remote_traceback_reads_as_the_traceback() -> None:
    assert "Traceback ..." == str(_processes._RemoteTraceback("Traceback ..."))


def test_report_pgid_outside_a_worker_only_checks() -> None:
    report_pgid(999_999)
    for bad in (0, 1, -5, os.getpgrp()):
        with pytest.raises(ValueError, match="not a process group a job may report"):
            report_pgid(bad)


def test_a_result_that_cannot_be_pickled_becomes_a_runtime_error() -> None:
    message = _processes._returned(4, threading.Lock(), 1.0, 2.0)
    kind, job_id, blob, line, tb, started, ended = message
    assert ("raised", 4, "", 1.0, 2.0) == (kind, job_id, tb, started, ended)
    error = pickle.loads(blob)  # type: ignore[arg-type]  # noqa: S301
    assert isinstance(error, RuntimeError)
    assert line == (
        "RuntimeError: the job's result cannot be pickled: _thread.lock: "
        "TypeError: cannot pickle '_thread.lock' object"
    )


def test_an_exception_that_cannot_be_pickled_is_named_by_a_runtime_error() -> None:
    try:
        raise Unprintable(threading.Lock())
    except Unprintable as exc:
        message = _processes._raised(5, exc, None, 2.0)
    kind, job_id, blob, line, tb, started, _ = message
    assert ("raised", 5, "Unprintable: <unprintable>", None) == (kind, job_id, line, started)
    assert "raise Unprintable(threading.Lock())" in str(tb)
    error = pickle.loads(blob)  # type: ignore[arg-type]  # noqa: S301
    assert isinstance(error, RuntimeError)
    assert f"{__name__}.Unprintable: <unprintable>" == str(error)
    assert [
        "the exception could not be pickled: TypeError: cannot pickle '_thread.lock' object"
    ] == (error.__notes__)


def test_open_pidfd_of_a_process_that_is_gone() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    assert _processes._open_pidfd(proc.pid) is None


def test_pid_alive() -> None:
    assert _processes._pid_alive(os.getpid())
    proc = subprocess.Popen(["true"])
    deadline = time.monotonic() + LIMIT
    while _processes._pid_alive(proc.pid):  # a zombie until reaped: not alive
        assert time.monotonic() < deadline, "true did not exit"
        time.sleep(0.002)
    assert os.path.exists(f"/proc/{proc.pid}")  # noqa: PTH110 - still a zombie
    proc.wait()
    assert not _processes._pid_alive(proc.pid)


def waits_for(target: int, *, poll: float = _processes._PARENT_POLL) -> threading.Thread:
    waiter = threading.Thread(
        target=_processes._wait_for_exit, args=(target,), kwargs={"poll": poll}
    )
    waiter.start()
    return waiter


@pytest.mark.parametrize("pidfds", [True, False])
def test_wait_for_exit_returns_once_the_process_is_gone(
    sleeper: subprocess.Popen[bytes], monkeypatch: pytest.MonkeyPatch, pidfds: bool
) -> None:
    if not pidfds:

        def no_pidfds(pid: int, flags: int = 0) -> int:
            raise OSError(errno.ENOSYS, "pidfd_open is not implemented")

        monkeypatch.setattr(os, "pidfd_open", no_pidfds)
    waiter = waits_for(sleeper.pid, poll=0.01)
    waiter.join(0.05)
    assert waiter.is_alive()  # the process runs: still waiting
    sleeper.kill()  # not reaped: a zombie counts as exited
    waiter.join(LIMIT)
    assert not waiter.is_alive()


def test_wait_for_exit_of_a_process_already_gone() -> None:
    proc = subprocess.Popen(["true"])
    proc.wait()
    waiter = waits_for(proc.pid)
    waiter.join(LIMIT)
    assert not waiter.is_alive()


def test_an_orphaned_worker_kills_its_jobs_groups_and_exits(
    sleeper: subprocess.Popen[bytes],
) -> None:
    ours, theirs = multiprocessing.Pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the forked child ends in os._exit
        state = _processes._Child(theirs)
        state.pgids.append(sleeper.pid)
        state.pgids.append(999_999)  # gone already: ignored
        state.orphaned()
    _, status = os.waitpid(child, 0)
    assert _processes._ORPHANED_STATUS == os.waitstatus_to_exitcode(status)
    assert -signal.SIGKILL == sleeper.wait(LIMIT)
    assert not _group_alive(sleeper.pid)
    ours.close()
    theirs.close()


def test_the_sigint_handler_does_nothing() -> None:
    _processes._ignore_signal(signal.SIGINT, None)
