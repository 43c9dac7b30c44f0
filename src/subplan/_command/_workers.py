"""Worker processes that cannot poison each other: one pipe per worker, one job at a time.

``concurrent.futures.ProcessPoolExecutor`` feeds all its workers from one call queue and
one result queue. A worker that dies (SIGKILL, ``os._exit``, a segfault, the OOM killer)
may have died holding a queue lock or half-way through a message, so the executor declares
itself broken: every pending future fails, every later ``submit`` too, and nobody can
tell which call killed it. :class:`ProcessWorkers` instead gives each worker process its
**own duplex pipe** and sends it **one job at a time**:

* the parent knows which job each worker holds, so when a worker's process ends, that
  job, and only that one, ends as ``"crashed"`` (``"killed"`` when :meth:`kill` asked);
* before that end is delivered, every process group the job reported through
  :func:`report_pgid` is killed and confirmed gone, so a retry never runs next to the
  commands of the attempt that crashed;
* other workers and their jobs are untouched; the dead worker is replaced when a job next
  needs one.

One parent thread, the *watcher*, waits on every worker's pipe and death sentinel with
one long-lived :func:`select.poll` object and turns what it sees into :class:`JobEnd`
values for ``on_end``: **exactly one per submitted job**, always from that thread. A
worker's death is seen through a pidfd where the kernel has them (Linux >= 5.3), else
through multiprocessing's sentinel; the exit status comes from multiprocessing.

Workers ignore SIGINT (the parent decides what Ctrl-C means), take the parent's
``sys.path`` and working directory when they start (as ``spawn`` children do; a
``forkserver`` child would otherwise have the server's), and exit when the parent dies:
each watches its parent's pidfd and then SIGKILLs the process groups its current job
reported.

The pipe protocol (pickled with multiprocessing's pickler)::

    parent -> worker   job id (8 bytes) + length of the pickled func (8 bytes)
                       + number of descriptors that follow (8 bytes)
                       + pickle(func) + pickle(args);            b"" asks it to exit
                       (the func's length is 0 when the worker holds it already; the
                       descriptors, a job's pool slots, follow as one SCM_RIGHTS message)
                       request number (8 bytes) + 1 byte (1: recorded, 0: refused):
                       the answer to a ("pgid", ..., request) the job waits on
    worker -> parent   ("started", job_id, time)
                       ("pgid", job_id, pgid, request number or None)
                       ("returned", job_id, pickled value, started, ended)
                       ("raised", job_id, pickled exception, error line, traceback,
                        started, ended)
                       ("init_failed", error line)

A worker keeps the function of its last job: a run sends its work callable once per
worker, not once per job, so a callable that keeps state keeps it per worker process.
Values and exceptions travel pickled inside the message, so one that cannot be unpickled
in the parent fails only its own job (as a :class:`RuntimeError`), never the watcher.
Times are wall-clock (:func:`time.time`): the child's stamps cannot come from an injected
clock, and the parent's must be comparable with them.
"""

from __future__ import annotations

import atexit
import collections
import contextlib
import io
import multiprocessing.forkserver
import multiprocessing.process
import os
import pathlib
import pickle
import select
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.connection import Connection
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from multiprocessing.reduction import ForkingPickler
from types import FrameType, TracebackType
from typing import Final, Literal, NoReturn, TypeAlias, cast

from .._errors import ConfigError, StoreError
from ._process import kill_process_group

__all__ = [
    "JobEnd",
    "ProcessWorkers",
    "ProcessWorkersStatistics",
    "passed_fds",
    "report_pgid",
]

Outcome: TypeAlias = Literal["returned", "raised", "crashed", "killed"]

_ORPHANED_STATUS: Final = 70  # a worker whose parent died exits with this
_INIT_FAILED_STATUS: Final = 1
_PARENT_POLL: Final = 0.5  # without pidfds, a worker checks its parent this often
_ID_BYTES: Final = 8
_HEADER_BYTES: Final = 3 * _ID_BYTES
_ANSWER_BYTES: Final = _ID_BYTES + 1  # an answer to a pgid report (never a job: shorter)
_MAX_FDS: Final = 64  # descriptors one job may be sent


@dataclass(frozen=True, slots=True)
class JobEnd:
    """How one job submitted to :class:`ProcessWorkers` ended; exactly one per job.

    Attributes:
        job_id: the id given to :meth:`ProcessWorkers.submit`.
        outcome: ``"returned"`` (the function returned ``value``), ``"raised"`` (it raised
            ``error``; also when the job, its result or its exception could not be
            pickled), ``"crashed"`` (its worker died before delivering a result, or no
            worker could be started) or ``"killed"`` (:meth:`ProcessWorkers.kill` or
            ``shutdown(kill=True)`` killed it). A ``"crashed"`` end whose ``started`` is
            ``None`` did not run the function: the worker died before (in its
            initializer, unpickling the job, or idle just as the job was sent).
        value: what the function returned (``"returned"`` only).
        error: the exception (``"raised"`` only), unpickled in the parent, with the
            child's traceback as its ``__cause__``; a :class:`RuntimeError` naming the
            type and message of one that could not be pickled or unpickled.
        error_text: one line: ``"ValueError: x"``; for a crash
            ``"worker 1234 died: killed by signal 9"`` or ``"... exited with status 3"``
            (then ``" (its initializer raised ValueError: x)"`` when it did, and
            ``"; process group 5678 survived SIGKILL"`` when one did); for a kill
            ``"killed on request; worker 1234 died: killed by signal 9"``; when no worker
            could be started ``"could not start a worker: OSError: ..."``.
        started: wall-clock time when the function started in the child; ``None`` when it
            never started (killed or crashed while queued, or the job could not be
            unpickled).
        ended: wall-clock time when it ended: the child's for ``"returned"`` and
            ``"raised"``, the parent's when it saw the crash or the kill.
        pid: the worker's pid (0 when no worker was involved).
        pgids: the process groups the job reported with :func:`report_pgid`.

    Example:
        >>> end = JobEnd(7, "crashed", error_text="worker 1234 died: killed by signal 9")
        >>> end.outcome, end.started
        ('crashed', None)
    """

    job_id: int
    outcome: Outcome
    value: object = None
    error: BaseException | None = None
    error_text: str | None = None
    started: float | None = None
    ended: float = 0.0
    pid: int = 0
    pgids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class ProcessWorkersStatistics:
    """A snapshot of a :class:`ProcessWorkers`, taken under its lock.

    Attributes:
        size: the most workers alive at once.
        alive: workers started and not yet seen dead (never above ``size``).
        busy: workers holding a job.
        idle: ``alive - busy``.
        started_workers: workers started so far.
        crashes: jobs that ended ``"crashed"``.
        kills: jobs that ended ``"killed"``.
        replaced: workers started in place of one that died unasked (a crash, a kill,
            or an idle worker's death).
    """

    size: int
    alive: int
    busy: int
    idle: int
    started_workers: int
    crashes: int
    kills: int
    replaced: int


class _RemoteTraceback(Exception):
    """The child's traceback, attached as ``__cause__`` to an exception it raised."""

    def __init__(self, tb: str) -> None:
        super().__init__(tb)
        self.tb = tb

    def __str__(self) -> str:
        return self.tb


# --------------------------------------------------------------------------- helpers


def _dumps(obj: object, prefix: bytes = b"") -> bytes:
    buffer = io.BytesIO()
    buffer.write(prefix)
    ForkingPickler(buffer, pickle.HIGHEST_PROTOCOL).dump(obj)
    return buffer.getvalue()


def _type_name(obj: object) -> str:
    kind = type(obj)
    return (
        kind.__qualname__
        if kind.__module__ == "builtins"
        else f"{kind.__module__}.{kind.__qualname__}"
    )


def _text(exc: BaseException) -> str:
    try:
        return str(exc)
    except Exception:  # a broken __str__ must not hide the error itself
        return "<unprintable>"


def _one_line(exc: BaseException) -> str:
    lines = _text(exc).strip().splitlines()
    name = type(exc).__name__
    return f"{name}: {lines[0]}" if lines else name


def _death(pid: int, exitcode: int | None) -> str:
    if exitcode is None:
        return f"worker {pid} died (exit status unknown)"
    if exitcode < 0:
        return f"worker {pid} died: killed by signal {-exitcode}"
    return f"worker {pid} died: exited with status {exitcode}"


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid``, or None where there is none (old kernel, seccomp, gone)."""
    try:
        return os.pidfd_open(pid)
    except OSError:
        return None


def _pid_alive(pid: int) -> bool:
    """True while ``pid`` exists and is not a zombie (Linux: read from ``/proc``)."""
    try:
        data = pathlib.Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return False
    # "pid (comm) state ...": comm may hold spaces and parentheses.
    return data[data.rfind(b")") + 2 :][:1] not in (b"Z", b"X")


def _wait_for_exit(pid: int, *, poll: float = _PARENT_POLL) -> None:
    """Block until process ``pid`` has exited (a zombie counts as exited)."""
    try:
        fd = os.pidfd_open(pid)
    except ProcessLookupError:
        return
    except OSError:  # no pidfds here: look every ``poll`` seconds
        while _pid_alive(pid):
            time.sleep(poll)
        return
    try:
        poller = select.poll()
        poller.register(fd, select.POLLIN)
        poller.poll()
    finally:
        os.close(fd)


# --------------------------------------------------------------------------- the child


class _Child:
    """The worker's side: its pipe, and the process groups of the job it runs."""

    def __init__(self, conn: Connection) -> None:
        self.conn = conn
        self.lock = threading.Lock()  # report_pgid may be called from the job's threads
        self.job_id: int | None = None
        self.pgids: list[int] = []
        self.func: Callable[..., object] | None = None  # the last job's, kept for the next
        self.home_pgrp = os.getpgrp()  # the parent's group, even if a job calls setsid
        self.fds: tuple[int, ...] = ()  # descriptors the parent sent with the current job
        # Answers to pgid reports that wait: one thread reads the pipe at a time.
        self.answers: dict[int, bool] = {}
        self.answered = threading.Condition(self.lock)
        self.reading = False
        self.requests = 0
        self.stop_asked = False  # the parent's b"" came while a job waited for an answer

    def wait_answer(self, request: int) -> bool:
        """Block until the parent answers ``request`` (the pipe is read meanwhile)."""
        with self.answered:
            while request not in self.answers:
                if self.reading:  # another thread of the job reads for us
                    self.answered.wait()
                    continue
                self.reading = True
                self.lock.release()
                try:
                    data = self.conn.recv_bytes()
                except (EOFError, OSError):
                    data = None
                finally:
                    self.lock.acquire()
                    self.reading = False
                    self.answered.notify_all()
                if data is None:
                    return False  # the parent is gone: nothing was recorded
                if not data:
                    self.stop_asked = True
                elif len(data) == _ANSWER_BYTES:
                    self.answers[int.from_bytes(data[:_ID_BYTES], "little")] = data[-1] == 1
            return self.answers.pop(request)

    def send(self, message: tuple[object, ...]) -> None:
        data = _dumps(message)
        with self.lock:
            self.conn.send_bytes(data)

    def orphaned(self) -> NoReturn:
        """The parent died: take the job's commands along, then exit at once."""
        for pgid in list(self.pgids):
            with contextlib.suppress(OSError):
                os.killpg(pgid, signal.SIGKILL)
        os._exit(_ORPHANED_STATUS)


_child: _Child | None = None  # set in worker processes only


def report_pgid(pgid: int, *, wait: bool = False) -> None:
    """Tell the parent that the running job started process group ``pgid``.

    Call it inside a job right after starting a command in its own session (``pgid`` is
    then the command's pid) and before waiting for it. The message is written to the
    worker's pipe before this returns, so if the worker dies later, however it dies, the
    parent kills the group and confirms it gone before it reports the job's end. Also,
    if the parent dies, the worker SIGKILLs the group before it exits. Outside a worker
    of :class:`ProcessWorkers` this only checks ``pgid``.

    Args:
        pgid: the process group, at least 2 and not the caller's own.
        wait: also wait until the parent has recorded the group (``record_pgid`` of
            :class:`ProcessWorkers`: durably, for a run with a store), so that a command
            held back until then never runs unknown to its orchestrator.

    Raises:
        ValueError: ``pgid`` is 0, 1, negative, the caller's own group or (in a worker)
            its parent's: killing it would kill the worker and its parent.
        StoreError: (``wait``) the parent could not record it, or died first: do not
            let the command run.

    Example:
        >>> report_pgid(123456)  # outside a worker: nothing to report to
    """
    child = _child
    if pgid <= 1 or pgid == os.getpgrp() or (child is not None and pgid == child.home_pgrp):
        raise ValueError(f"not a process group a job may report: {pgid}")
    if child is None:
        return
    job_id = child.job_id
    if job_id is None:
        return  # called between jobs, e.g. by a thread a finished job left behind
    if pgid not in child.pgids:
        child.pgids.append(pgid)
    if not wait:
        child.send(("pgid", job_id, pgid, None))
        return
    with child.lock:
        child.requests += 1
        request = child.requests
    child.send(("pgid", job_id, pgid, request))
    if not child.wait_answer(request):
        raise StoreError(
            f"the orchestrator did not record process group {pgid} durably "
            "(its store failed, or the run was taken over): the command must not run"
        )


def passed_fds() -> tuple[int, ...]:
    """The descriptors the parent sent with the job running now (its pool slots).

    A job passes them to the commands it starts (``pass_fds``), so that a slot stays
    held for as long as the command lives, even after the orchestrator and this worker
    died. The worker closes its copies when the job ends. Empty outside a worker.
    """
    child = _child
    return () if child is None else child.fds


def _ignore_signal(signum: int, frame: FrameType | None) -> None:
    """SIGINT handler of workers: ignore it.

    A Python-level handler rather than ``SIG_IGN``: an ignored disposition survives
    ``exec``, so every command the job starts would ignore SIGINT too.
    """


def _returned(job_id: int, value: object, started: float, ended: float) -> tuple[object, ...]:
    try:
        blob = _dumps(value)
    except BaseException as exc:
        error = RuntimeError(
            f"the job's result cannot be pickled: {_type_name(value)}: {_one_line(exc)}"
        )
        return _raised(job_id, error, started, ended, with_traceback=False)
    return ("returned", job_id, blob, started, ended)


def _raised(
    job_id: int,
    exc: BaseException,
    started: float | None,
    ended: float,
    *,
    with_traceback: bool = True,
) -> tuple[object, ...]:
    tb = "".join(traceback.format_exception(exc)) if with_traceback else ""
    try:
        blob = _dumps(exc)
    except BaseException as reason:
        stand_in = RuntimeError(f"{_type_name(exc)}: {_text(exc)}")
        stand_in.add_note(f"the exception could not be pickled: {_one_line(reason)}")
        blob = _dumps(stand_in)
    return ("raised", job_id, blob, _one_line(exc), tb, started, ended)


def _receive_fds(child: _Child, count: int) -> tuple[int, ...]:
    """The ``count`` descriptors the parent sent right after the job's message."""
    if not count:
        return ()
    with socket.socket(fileno=os.dup(child.conn.fileno())) as sock:
        _, fds, _, _ = socket.recv_fds(sock, 1, min(count, _MAX_FDS))
    return tuple(fds)


def _run_job(child: _Child, data: bytes) -> None:
    job_id = int.from_bytes(data[:_ID_BYTES], "little", signed=True)
    func_size = int.from_bytes(data[_ID_BYTES : 2 * _ID_BYTES], "little")
    child.fds = _receive_fds(child, int.from_bytes(data[2 * _ID_BYTES : _HEADER_BYTES], "little"))
    child.job_id = job_id
    child.pgids = []
    started: float | None = None
    try:
        view = memoryview(data)
        if func_size:
            child.func = None  # until the new one loads: the parent forgets it on failure
            child.func = pickle.loads(view[_HEADER_BYTES : _HEADER_BYTES + func_size])  # noqa: S301
        func = child.func
        if func is None:  # pragma: no cover - the parent sends a function when we have none
            raise RuntimeError("the worker holds no function for this job")
        args = pickle.loads(view[_HEADER_BYTES + func_size :])  # noqa: S301 - from our parent
        started = time.time()
        child.send(("started", job_id, started))
        value = func(*args)
    except BaseException as exc:
        message = _raised(job_id, exc, started, time.time())
    else:
        assert started is not None
        message = _returned(job_id, value, started, time.time())
    child.job_id = None
    fds, child.fds = child.fds, ()
    for fd in fds:  # the parent's slot lives on in the parent's copy (and the command's)
        with contextlib.suppress(OSError):
            os.close(fd)
    child.send(message)
    child.pgids = []


def _worker_main(
    conn: Connection,
    parent_pid: int,
    initializer: Callable[[], object] | None,
    sys_path: list[str],
    cwd: str | None,
) -> None:
    """The body of a worker process: serve jobs until told to stop or the parent goes."""
    global _child
    signal.signal(signal.SIGINT, _ignore_signal)
    sys.path[:] = sys_path
    if cwd is not None:
        with contextlib.suppress(OSError):
            os.chdir(cwd)
    child = _child = _Child(conn)

    def watch_parent() -> None:
        _wait_for_exit(parent_pid)
        child.orphaned()

    threading.Thread(target=watch_parent, name="subplan-parent-watch", daemon=True).start()
    if initializer is not None:
        try:
            initializer()
        except BaseException as exc:
            with contextlib.suppress(OSError):
                child.send(("init_failed", _one_line(exc)))
            raise SystemExit(_INIT_FAILED_STATUS) from None
    while True:
        try:
            data = conn.recv_bytes()
            if not data:
                return  # asked to stop
            if len(data) == _ANSWER_BYTES:
                continue  # a late answer for a thread a finished job left waiting
            _run_job(child, data)
            if child.stop_asked:
                return  # asked to stop while the job waited for an answer
        except (EOFError, OSError):
            return  # the parent closed our pipe, or went away


# --------------------------------------------------------------------------- the parent


def _preload_in_forkserver(ctx: BaseContext) -> None:
    """Have the fork server import this module, so that new workers need not.

    Importing ``subplan`` takes a good part of a second; a worker forked from a server
    that has it already starts in milliseconds. This only works if the server is not
    running yet (it reads the list when it starts); the modules already listed stay.
    """
    server = getattr(multiprocessing.forkserver, "_forkserver", None)
    modules = list(getattr(server, "_preload_modules", None) or ["__main__"])
    if __name__ not in modules:
        ctx.set_forkserver_preload([*modules, __name__])


@dataclass(slots=True, eq=False)
class _Job:
    job_id: int
    worker: _Worker | None = None  # None once its worker is dead
    started: float | None = None
    pgids: list[int] = field(default_factory=list)
    killing: bool = False


@dataclass(slots=True, eq=False)
class _Worker:
    process: BaseProcess
    conn: Connection
    pid: int
    pidfd: int | None
    job: _Job | None = None
    func: object = None  # the function it holds from its last job (compared by identity)
    init_error: str | None = None
    eof: bool = False  # its pipe reached end of file
    broken: bool = False  # its pipe refused a job: dead, not yet buried
    stopping: bool = False  # asked to exit

    @property
    def sentinel(self) -> int:
        """Readable once the process has exited."""
        return self.pidfd if self.pidfd is not None else self.process.sentinel


class ProcessWorkers:
    """Run jobs in worker processes, each with its own pipe; a death ends only its job.

    Jobs are ``func(*args)`` calls; ``func`` and ``args`` are pickled to a worker, so
    ``func`` must be a module-level function or another picklable callable. Workers start
    only when a job needs one, at most ``size`` alive at once, and are reused. Every
    submitted job ends exactly once, through ``on_end``, called on the pool's watcher
    thread (never concurrently with itself); hand the end to your own queue there.

    Args:
        size: the most workers alive at once, and the most jobs in flight; the caller
            keeps count (:meth:`submit` raises beyond it).
        on_end: called with the :class:`JobEnd` of every job. An exception it raises is
            kept and raised by :meth:`shutdown`; later ends are still delivered.
        start_method: the multiprocessing start method. ``forkserver`` (the default) forks
            workers from a clean server process; ``fork`` from a threaded parent is
            unsafe, ``spawn`` is slower to start.
        initializer: called in each worker before its first job. If it raises, the worker
            exits and the job sent to it ends ``"crashed"``, with the error in
            ``error_text``.
        kill_grace: seconds between SIGTERM and SIGKILL when killing a dead job's process
            groups (see :func:`~subplan._command._process.kill_process_group`).
        on_pgid: called with ``(job_id, pgid)`` on the watcher thread as soon as a job
            reports a process group (to record it durably); it must not block long.
        record_pgid: called with ``(job_id, pgid)`` on a thread of its own when a job
            reports a group with ``report_pgid(pgid, wait=True)``; the job waits until
            it returns (raising refuses: the job's ``report_pgid`` raises). It may block
            (say, until the group is committed to a store). None answers at once.

    Raises:
        ConfigError: ``size`` < 1, an unknown start method, a negative ``kill_grace``, or
            an ``initializer`` that cannot be pickled.

    Notes:
        Workers are not daemonic, so jobs may start processes of their own; workers still
        running at interpreter exit are killed by an :mod:`atexit` hook. A job that
        returns is responsible for its own commands (``run_command`` kills its group
        before returning); only a dead job's reported groups are killed here. A group a
        job started but had not yet reported when its worker died cannot be found.

        With ``forkserver``, this module is added to the server's preload list when the
        server is not running yet, so a new worker starts in about 10 ms instead of
        importing ``subplan`` (0.4 s). :meth:`submit` writes a job to the pipe under the
        pool's lock; the worker is idle, so it reads at once.

    Example:
        >>> import math, queue
        >>> ends = queue.SimpleQueue()
        >>> with ProcessWorkers(2, on_end=ends.put) as workers:
        ...     workers.submit(1, math.factorial, (5,))
        ...     end = ends.get(timeout=60)
        >>> end.job_id, end.outcome, end.value
        (1, 'returned', 120)
    """

    def __init__(
        self,
        size: int,
        *,
        on_end: Callable[[JobEnd], None],
        start_method: str = "forkserver",
        initializer: Callable[[], None] | None = None,
        kill_grace: float = 2.0,
        on_pgid: Callable[[int, int], None] | None = None,
        record_pgid: Callable[[int, int], None] | None = None,
    ) -> None:
        if isinstance(size, bool) or not isinstance(size, int) or size < 1:
            raise ConfigError(f"size must be an integer >= 1, got {size!r}")
        if start_method not in get_all_start_methods():
            raise ConfigError(
                f"unknown start method {start_method!r}; "
                f"expected one of {', '.join(get_all_start_methods())}"
            )
        if not kill_grace >= 0:  # also refuses NaN
            raise ConfigError(f"kill_grace must be >= 0 seconds, got {kill_grace}")
        if initializer is not None:
            try:
                _dumps(initializer)
            except Exception as exc:
                raise ConfigError(f"the initializer cannot be pickled: {_one_line(exc)}") from exc
        self._size = size
        self._on_end = on_end
        self._ctx = get_context(start_method)
        if start_method == "forkserver":
            _preload_in_forkserver(self._ctx)
        self._initializer = initializer
        self._kill_grace = kill_grace
        self._on_pgid = on_pgid
        self._record_pgid = record_pgid
        self._lock = threading.Lock()
        self._workers: list[_Worker] = []
        self._jobs: dict[int, _Job] = {}
        self._ready: collections.deque[JobEnd] = collections.deque()
        self._closing = False
        self._lost = 0  # workers that died unasked and were not replaced yet
        self._started_workers = 0
        self._crashes = 0
        self._kills = 0
        self._replaced = 0
        self._callback_error: BaseException | None = None
        self._last_func: tuple[Callable[..., object], bytes] | None = None
        self._failure: BaseException | None = None
        self._wake_r, self._wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._wake_closed = False
        self._poller = select.poll()
        self._poller.register(self._wake_r, select.POLLIN)
        self._pipes: dict[int, _Worker] = {}
        self._deaths: dict[int, _Worker] = {}
        self._polled: set[int] = set()  # worker fds registered with the poller
        self._watcher = threading.Thread(
            target=self._watch, name="subplan-process-watcher", daemon=True
        )
        self._watcher.start()
        atexit.register(self._at_exit)

    # ------------------------------------------------------------------ public

    def submit(
        self,
        job_id: int,
        func: Callable[..., object],
        args: tuple[object, ...],
        *,
        fds: Sequence[int] = (),
    ) -> None:
        """Send ``func(*args)`` to an idle worker, starting one if none is idle.

        Returns once the job is written to the worker's pipe; its end comes through
        ``on_end``. A job that cannot be pickled never reaches a worker: it ends
        ``"raised"`` with the pickling error.

        Args:
            job_id: the job's id, unique among jobs in flight; ends carry it.
            func: a picklable callable.
            args: its positional arguments (picklable).
            fds: descriptors to send along (at most 64): the job reads its copies with
                :func:`passed_fds` (for example a pool slot's flock'd file, which the
                job's commands then inherit); the worker closes them when the job ends.

        Raises:
            RuntimeError: ``size`` jobs are already in flight, ``job_id`` is in flight,
                or the pool is shut down (each a bug in the caller).
        """
        failure: Exception | None = None
        try:
            func_blob = self._pickled_func(func)
            args_blob = _dumps(tuple(args))
        except Exception as exc:
            failure = exc
        with self._lock:
            self._check_usable()
            if job_id in self._jobs:
                raise RuntimeError(f"job {job_id} is already in flight")
            if failure is not None:
                self._ready.append(
                    JobEnd(
                        job_id,
                        "raised",
                        error=failure,
                        error_text=_one_line(failure),
                        ended=time.time(),
                    )
                )
                self._wake()
                return
            if len(self._jobs) >= self._size:
                raise RuntimeError(
                    f"{len(self._jobs)} jobs in flight already: ProcessWorkers({self._size}) "
                    f"cannot take job {job_id}"
                )
            job = _Job(job_id)
            try:
                self._place(job, func, func_blob, args_blob, tuple(fds))
            except OSError as exc:
                # No worker could be started (no forkserver, no memory, no pids): this
                # job fails, the pool does not. The next job tries again.
                self._ready.append(
                    JobEnd(
                        job_id,
                        "crashed",
                        error_text=f"could not start a worker: {_one_line(exc)}",
                        ended=time.time(),
                    )
                )
                self._crashes += 1
                self._wake()
                return
            self._jobs[job_id] = job

    def _pickled_func(self, func: Callable[..., object]) -> bytes:
        """``func`` pickled, reusing the bytes while the same object is submitted."""
        last = self._last_func
        if last is not None and last[0] is func:
            return last[1]
        blob = _dumps(func)
        self._last_func = (func, blob)
        return blob

    def kill(self, job_id: int) -> None:
        """Kill the worker running ``job_id`` (SIGKILL), for a timeout or a cancel.

        Returns at once. The watcher then sees the worker die, kills every process group
        the job reported, confirms them gone, and delivers one ``"killed"`` end. A job
        still queued in its worker's pipe is killed the same way (``started`` is
        ``None``). If the job's result was already on its way, that result is delivered
        instead. A job that has ended, is unknown, or whose worker already died is left
        alone. The dead worker is replaced when a job next needs one.

        Args:
            job_id: the job to kill.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            if job is None or job.worker is None or job.killing:
                return
            job.killing = True
            self._signal(job.worker, signal.SIGKILL)

    def started(self, job_id: int) -> bool:
        """Whether the worker has reported starting ``job_id`` (False once it ended).

        Args:
            job_id: a job in flight.

        Returns:
            True when the job is in flight and its function has started.
        """
        with self._lock:
            job = self._jobs.get(job_id)
            return job is not None and job.started is not None

    def statistics(self) -> ProcessWorkersStatistics:
        """A consistent snapshot of the workers and counters.

        Returns:
            A :class:`ProcessWorkersStatistics`.
        """
        with self._lock:
            alive = sum(not w.broken for w in self._workers)
            busy = sum(w.job is not None for w in self._workers)
            return ProcessWorkersStatistics(
                size=self._size,
                alive=alive,
                busy=busy,
                idle=alive - busy,
                started_workers=self._started_workers,
                crashes=self._crashes,
                kills=self._kills,
                replaced=self._replaced,
            )

    def shutdown(self, *, wait: bool = True, kill: bool = False) -> None:
        """Stop taking jobs and let the workers exit once their jobs end.

        Args:
            wait: block until every job has ended (its end delivered) and every worker
                has exited. Called from ``on_end`` it never blocks.
            kill: kill the running jobs first (and their process groups), as
                :meth:`kill` does: each ends ``"killed"``.

        Raises:
            BaseException: the first exception ``on_end`` raised, if any (raised once).
            RuntimeError: the watcher thread failed (a bug); workers were killed.
        """
        with self._lock:
            if not self._closing:
                self._closing = True
                atexit.unregister(self._at_exit)
            if kill:
                for job in self._jobs.values():
                    if job.worker is not None and not job.killing:
                        job.killing = True
                        self._signal(job.worker, signal.SIGKILL)
            for worker in self._workers:
                if not worker.stopping and not worker.broken:
                    worker.stopping = True
                    with contextlib.suppress(OSError):
                        worker.conn.send_bytes(b"")
            self._wake()
        if wait and threading.current_thread() is not self._watcher:
            self._watcher.join()
        with self._lock:
            error, self._callback_error = self._callback_error, None
        if self._failure is not None:
            raise RuntimeError("the process watcher thread failed") from self._failure
        if error is not None:
            raise error

    def __enter__(self) -> ProcessWorkers:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        """Shut down, waiting for the jobs; kill them if the block raised."""
        self.shutdown(wait=True, kill=exc_type is not None)

    # ------------------------------------------------------------------ submit side

    def _check_usable(self) -> None:
        if self._failure is not None:
            raise RuntimeError("the process watcher thread failed") from self._failure
        if self._closing:
            raise RuntimeError("ProcessWorkers is shut down")

    def _place(
        self,
        job: _Job,
        func: Callable[..., object],
        func_blob: bytes,
        args_blob: bytes,
        fds: tuple[int, ...] = (),
    ) -> None:
        """Send the job to an idle worker, or to a new one (lock held).

        A worker that holds ``func`` from its last job is sent only the arguments.
        """

        def message(worker: _Worker) -> bytes:
            own = worker.func is func
            size = 0 if own else len(func_blob)
            header = job.job_id.to_bytes(_ID_BYTES, "little", signed=True)
            header += size.to_bytes(_ID_BYTES, "little")
            header += len(fds).to_bytes(_ID_BYTES, "little")
            return b"".join((header, b"" if own else func_blob, args_blob))

        def send(worker: _Worker) -> None:
            worker.conn.send_bytes(message(worker))
            if fds:
                # Right after the job's message, which the worker reads to its last byte
                # first: the descriptors travel as SCM_RIGHTS on the same socket.
                with socket.socket(fileno=os.dup(worker.conn.fileno())) as sock:
                    socket.send_fds(sock, [b"F"], list(fds))

        for worker in self._workers:
            if worker.job is None and not worker.broken:
                try:
                    send(worker)
                except OSError:
                    # It died idle and the watcher has not buried it yet; try another.
                    worker.broken = True
                    self._lost += 1
                    continue
                job.worker, worker.job, worker.func = worker, job, func
                return
        worker = self._start_worker()
        job.worker, worker.job = worker, job
        with contextlib.suppress(OSError):
            # A new worker that cannot take its first job died starting up (say, in its
            # initializer): the watcher will report this job as crashed.
            send(worker)
            worker.func = func

    def _start_worker(self) -> _Worker:
        try:
            cwd: str | None = str(pathlib.Path.cwd())
        except OSError:
            cwd = None
        ours, theirs = self._ctx.Pipe(duplex=True)
        process = self._ctx.Process(  # type: ignore[attr-defined]
            target=_worker_main,
            args=(theirs, os.getpid(), self._initializer, list(sys.path), cwd),
            name=f"subplan-worker-{self._started_workers}",
            daemon=False,
        )
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        assert process.pid is not None
        # Only the watcher may collect a worker's exit status. multiprocessing polls every
        # child it knows of in each Process.start() and active_children(), from whatever
        # thread calls them; with forkserver, two threads reading one status pipe leave
        # one of them with EOF, and the exit status becomes 255.
        multiprocessing.process._children.discard(process)  # type: ignore[attr-defined]
        worker = _Worker(process, ours, process.pid, _open_pidfd(process.pid))
        self._workers.append(worker)
        self._started_workers += 1
        if self._lost:
            self._lost -= 1
            self._replaced += 1
        self._wake()
        return worker

    def _signal(self, worker: _Worker, sig: int) -> None:
        if worker.pidfd is not None:
            with contextlib.suppress(ProcessLookupError):
                signal.pidfd_send_signal(worker.pidfd, sig)
        else:
            worker.process.kill()

    def _wake(self) -> None:
        """Make the watcher look again (lock held)."""
        if not self._wake_closed:
            with contextlib.suppress(BlockingIOError):  # full: a wake-up is pending anyway
                os.write(self._wake_w, b"x")

    def _at_exit(self) -> None:
        self.shutdown(wait=True, kill=True)

    # ------------------------------------------------------------------ watcher side

    def _watch(self) -> None:
        try:
            while self._watch_once():
                pass
        except BaseException as exc:
            # A bug: nothing more will be reported, so stop everything and say so on the
            # next submit, kill or shutdown.
            self._failure = exc
            with self._lock:
                for worker in self._workers:
                    self._signal(worker, signal.SIGKILL)
        finally:
            with self._lock:
                self._wake_closed = True
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _watch_once(self) -> bool:
        """Wait for something to happen and handle it; False when all is done."""
        with self._lock:
            if self._closing and not self._workers and not self._jobs and not self._ready:
                return False
            workers = list(self._workers)
        self._sync_poller(workers)
        ready = self._poller.poll()
        pipes, deaths = self._pipes, self._deaths
        dead: list[_Worker] = []
        for fd, _events in ready:
            if fd == self._wake_r:
                with contextlib.suppress(BlockingIOError):
                    os.read(self._wake_r, 4096)
            elif fd in pipes:
                self._receive_one(pipes[fd])
            elif fd in deaths:
                dead.append(deaths[fd])
        for worker in dead:
            self._receive(worker)  # what it sent before dying counts
            self._bury(worker)
        self._deliver()
        return True

    def _sync_poller(self, workers: list[_Worker]) -> None:
        """Have the poller watch exactly these workers' pipes and deaths (watcher only).

        The poller lives as long as the watcher, so waiting costs one system call rather
        than building a selector for every wait.
        """
        pipes = {w.conn.fileno(): w for w in workers if not w.eof}
        deaths = {w.sentinel: w for w in workers}
        # By number: a buried worker's numbers may be a new worker's already.
        wanted = pipes.keys() | deaths.keys()
        for fd in self._polled - wanted:
            self._poller.unregister(fd)
        for fd in wanted - self._polled:
            self._poller.register(fd, select.POLLIN)
        self._polled = wanted
        self._pipes, self._deaths = pipes, deaths

    def _receive_one(self, worker: _Worker) -> None:
        """Read and handle one message from a pipe that polled readable."""
        if worker.eof:
            return
        try:
            raw = worker.conn.recv_bytes()
        except (EOFError, OSError):  # OSError: it died in the middle of a message
            worker.eof = True
            return
        self._handle(worker, pickle.loads(raw))  # noqa: S301 - our own worker

    def _receive(self, worker: _Worker) -> None:
        """Read and handle every message waiting in a dead ``worker``'s pipe."""
        while not worker.eof:
            try:
                if not worker.conn.poll():
                    return
            except (EOFError, OSError):
                worker.eof = True
                return
            self._receive_one(worker)

    def _handle(self, worker: _Worker, message: tuple[object, ...]) -> None:
        kind = message[0]
        if kind == "init_failed":
            worker.init_error = str(message[1])
            return
        with self._lock:
            job = worker.job
        if job is None or job.job_id != message[1]:
            return  # a late report from a thread a finished job left behind
        if kind == "started":
            with self._lock:
                job.started = cast(float, message[2])
            return
        if kind == "pgid":
            pgid = cast(int, message[2])
            request = cast("int | None", message[3] if len(message) > 3 else None)
            # Never kill ourselves: a job that left our group could still name it.
            if pgid == os.getpgrp():
                if request is not None:
                    self._answer(worker, job, request, recorded=False)
                return
            with self._lock:
                if pgid not in job.pgids:
                    job.pgids.append(pgid)
            if request is None:
                if self._on_pgid is not None:
                    self._on_pgid(job.job_id, pgid)
            elif self._record_pgid is None:
                self._answer(worker, job, request, recorded=True)
            else:
                # Recording may wait for a commit: never on the watcher thread.
                threading.Thread(
                    target=self._record,
                    args=(worker, job, pgid, request),
                    name=f"subplan-record-pgid-{job.job_id}",
                    daemon=True,
                ).start()
            return
        end = self._result(worker, job, message)  # unpickled outside the lock
        with self._lock:
            if end.started is None:
                worker.func = None  # the job failed before its call: the function may not load
            worker.job = None
            job.worker = None
            del self._jobs[job.job_id]
            self._ready.append(end)

    def _record(self, worker: _Worker, job: _Job, pgid: int, request: int) -> None:
        """Record a waiting job's group (``record_pgid``), then answer the job."""
        assert self._record_pgid is not None
        try:
            self._record_pgid(job.job_id, pgid)
        except BaseException:
            self._answer(worker, job, request, recorded=False)
        else:
            self._answer(worker, job, request, recorded=True)

    def _answer(self, worker: _Worker, job: _Job, request: int, *, recorded: bool) -> None:
        """Tell a job waiting in ``report_pgid(wait=True)`` whether its group is recorded."""
        data = request.to_bytes(_ID_BYTES, "little") + (b"\x01" if recorded else b"\x00")
        with self._lock:
            if worker.job is not job or worker.broken:
                return  # it ended (or died) meanwhile: nobody waits
            with contextlib.suppress(OSError):
                worker.conn.send_bytes(data)

    def _result(self, worker: _Worker, job: _Job, message: tuple[object, ...]) -> JobEnd:
        blob = cast(bytes, message[2])
        started = cast("float | None", message[-2])
        ended = cast(float, message[-1])
        outcome: Outcome = "raised"
        value: object = None
        error: BaseException | None = None
        line: str | None = None
        if message[0] == "returned":
            try:
                value = pickle.loads(blob)  # noqa: S301 - our own worker
                outcome = "returned"
            except BaseException as exc:
                error = RuntimeError(f"the job's result cannot be unpickled: {_one_line(exc)}")
                line = _one_line(error)
        else:
            line = cast(str, message[3])
            try:
                raised: BaseException = pickle.loads(blob)  # noqa: S301 - our own worker
            except BaseException as exc:
                raised = RuntimeError(line)
                raised.add_note(f"the exception could not be unpickled: {_one_line(exc)}")
            tb = cast(str, message[4])
            if tb:
                raised.__cause__ = _RemoteTraceback(tb)
            error = raised
        return JobEnd(
            job.job_id,
            outcome,
            value=value,
            error=error,
            error_text=line,
            started=started,
            ended=ended,
            pid=worker.pid,
            pgids=tuple(job.pgids),
        )

    def _bury(self, worker: _Worker) -> None:
        """Handle the death of ``worker``: end its job, forget it, free its resources."""
        worker.process.join()  # dead already: this only collects the exit status
        exitcode = worker.process.exitcode
        now = time.time()
        with self._lock:
            self._workers.remove(worker)
            job, worker.job = worker.job, None
            if not (worker.stopping or worker.broken):  # a broken one was counted
                self._lost += 1
            if job is not None:
                job.worker = None
                text = _death(worker.pid, exitcode)
                if worker.init_error is not None:
                    text += f" (its initializer raised {worker.init_error})"
                if job.killing:
                    outcome: Outcome = "killed"
                    text = f"killed on request; {text}"
                    self._kills += 1
                else:
                    outcome = "crashed"
                    self._crashes += 1
                end = JobEnd(
                    job.job_id,
                    outcome,
                    error_text=text,
                    started=job.started,
                    ended=now,
                    pid=worker.pid,
                    pgids=tuple(job.pgids),
                )
                if job.pgids:
                    threading.Thread(
                        target=self._kill_groups,
                        args=(job, end),
                        name=f"subplan-kill-groups-{job.job_id}",
                        daemon=True,
                    ).start()
                else:
                    del self._jobs[job.job_id]
                    self._ready.append(end)
        worker.conn.close()
        if worker.pidfd is not None:
            os.close(worker.pidfd)
        worker.process.close()

    def _kill_groups(self, job: _Job, end: JobEnd) -> None:
        """Kill a dead job's process groups, confirm them gone, then queue its end."""
        survivors: list[int] = []
        try:
            for pgid in end.pgids:
                if not kill_process_group(pgid, grace=self._kill_grace):
                    survivors.append(pgid)
        finally:
            if survivors:
                groups = ", ".join(map(str, survivors))
                end = replace(
                    end, error_text=f"{end.error_text}; process group {groups} survived SIGKILL"
                )
            with self._lock:
                del self._jobs[job.job_id]
                self._ready.append(end)
                self._wake()

    def _deliver(self) -> None:
        while True:
            with self._lock:
                if not self._ready:
                    return
                end = self._ready.popleft()
            try:
                self._on_end(end)
            except BaseException as exc:
                exc.add_note("raised by on_end on the process watcher thread")
                with self._lock:
                    if self._callback_error is None:
                        self._callback_error = exc
