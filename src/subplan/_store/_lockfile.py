"""The run lock of the SQLite store: ``flock`` on a file that is never unlinked.

The lock is ``flock(LOCK_EX | LOCK_NB)`` on ``<locks dir>/<run_id>.lock``. The kernel
drops a ``flock`` when the last descriptor of its open file goes away, so a holder that
dies (even by SIGKILL) never blocks anyone.

Two rules keep it exclusive, both broken by lock files we learnt from:

* the file is **never unlinked**: a process that opened the old file before an unlink
  would lock it while a newcomer creates and locks a new file of the same name, and both
  would hold "the" lock;
* it is **never truncated before the lock is held**: opening with ``O_TRUNC`` would wipe
  the holder line of the process that holds it.

The holder writes ``pid N on HOST since ISO-TIME`` into the file once it holds the lock;
a refused claimant reads that line back for its error message. Descriptors are
close-on-exec and are closed in children forked while the lock is held, so neither a
command nor a forked worker keeps the lock alive after its orchestrator died.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import socket
import threading
import time
import weakref
from pathlib import Path

from .._errors import InputError, RunLockedError, StoreConnectError
from .._release import ReleasedOnExit

__all__ = ["FileRunLock", "acquire_file_lock", "holder_line", "lock_path"]

_HOLDER_MAX = 4096  # bytes of a holder line read back (a line is far shorter)
_HOLDER_WAIT = 1.0  # seconds a loser waits for the winner's holder line to appear


def holder_line(
    *, pid: int | None = None, host: str | None = None, since: float | None = None
) -> str:
    """The text a holder writes: ``pid N on HOST since YYYY-MM-DDTHH:MM:SSZ``.

    Example:
        >>> holder_line(pid=42, host="build-1", since=0.0)
        'pid 42 on build-1 since 1970-01-01T00:00:00Z'
    """
    pid = os.getpid() if pid is None else pid
    host = socket.gethostname() if host is None else host
    since = time.time() if since is None else since
    return f"pid {pid} on {host} since {time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime(since))}"


def lock_path(locks_dir: Path, run_id: str) -> Path:
    """The lock file of ``run_id`` under ``locks_dir``.

    Raises:
        InputError: a run id that cannot be a file name (empty, ``.``/``..``, a path
            separator or NUL, longer than 128 characters).
    """
    if not run_id or run_id in (".", "..") or "/" in run_id or "\0" in run_id or len(run_id) > 128:
        raise InputError(f"invalid run id {run_id!r}: it must be a file name", path=run_id)
    return locks_dir / f"{run_id}.lock"


class FileRunLock(ReleasedOnExit):
    """A held run lock (see :func:`acquire_file_lock`). Also a context manager.

    Attributes:
        run_id: the run.
        path: the lock file.
    """

    def __init__(self, run_id: str, path: Path, fd: int, holder: str) -> None:
        self.run_id = run_id
        self.path = path
        self._fd: int | None = fd
        self._holder = holder
        self._mutex = threading.Lock()
        _HELD.add(self)

    @property
    def holder(self) -> str:
        """Who holds it: ``pid N on HOST since ISO-TIME``."""
        return self._holder

    @property
    def held(self) -> bool:
        """Whether this object still holds the lock (False once released)."""
        return self._fd is not None

    def release(self) -> None:
        """Give the lock up: clear the holder line, unlock, close. Idempotent.

        The file stays (it is never unlinked).
        """
        with self._mutex:
            fd, self._fd = self._fd, None
        if fd is None:
            return
        _HELD.discard(self)
        try:
            os.ftruncate(fd, 0)  # best effort: the lock matters, not the line
        except OSError:
            pass
        finally:
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<FileRunLock {self.run_id!r} {state} by {self._holder}>"


# A forked child inherits the descriptors, and with them the locks: a worker forked by
# the orchestrator would keep the run locked after the orchestrator died. The child
# closes its copies (closing a copy does not release the parent's lock; LOCK_UN would).
_HELD: weakref.WeakSet[FileRunLock] = weakref.WeakSet()


def _close_in_child() -> None:
    for lock in list(_HELD):
        fd, lock._fd = lock._fd, None
        lock._mutex = threading.Lock()  # another thread may have held it at the fork
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
    _HELD.clear()


os.register_at_fork(after_in_child=_close_in_child)


def acquire_file_lock(run_id: str, locks_dir: Path, *, location: str | None = None) -> FileRunLock:
    """Take the run lock of ``run_id`` without waiting.

    Args:
        run_id: the run.
        locks_dir: the directory of lock files (created if missing).
        location: the store's location, for errors.

    Returns:
        The held lock; its file holds the holder line.

    Raises:
        RunLockedError: another holder has it (in this process or another); ``.holder``
            is its holder line, or None when it could not be read.
        StoreConnectError: the lock file cannot be created or opened.
        InputError: a run id that cannot be a file name.

    Example:
        >>> import tempfile
        >>> locks = Path(tempfile.mkdtemp())
        >>> with acquire_file_lock("r1", locks) as lock:
        ...     acquire_file_lock("r1", locks)
        Traceback (most recent call last):
        ...
        subplan._errors.RunLockedError: run 'r1' is being run by pid ... on ... since ...
    """
    path = lock_path(locks_dir, run_id)
    try:
        locks_dir.mkdir(parents=True, exist_ok=True)
        # No O_TRUNC: the file may hold the current holder's line.
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW, 0o644)
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise StoreConnectError(
            f"cannot open the run lock {path}: {reason}", location=location
        ) from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        busy = exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN)
        holder = _wait_for_holder(fd) if busy else None
        os.close(fd)
        if busy:
            raise RunLockedError(run_id, holder, location=location) from None
        raise StoreConnectError(
            f"cannot lock {path}: {exc.strerror or type(exc).__name__}", location=location
        ) from exc
    holder = holder_line()
    try:
        data = (holder + "\n").encode()
        os.ftruncate(fd, 0)
        os.pwrite(fd, data, 0)
        os.fsync(fd)
    except OSError:
        pass  # the line is informative only; the lock is held
    return FileRunLock(run_id, path, fd, holder)


def _wait_for_holder(fd: int) -> str | None:
    """The holder line of a lock just found held, waiting briefly for it to be written.

    A winner of a race writes its line just after it takes the lock: a loser reading at
    once may find the file still empty, and would name no holder.
    """
    deadline = time.monotonic() + _HOLDER_WAIT
    while True:
        holder = _read_holder(fd)
        if holder is not None or time.monotonic() >= deadline:
            return holder
        time.sleep(0.01)


def _read_holder(fd: int) -> str | None:
    try:
        text = os.pread(fd, _HOLDER_MAX, 0).decode("utf-8", "replace")
    except OSError:
        return None
    line = text.strip().splitlines()[0].strip() if text.strip() else ""
    return line or None


def probe_file_lock(run_id: str, locks_dir: Path) -> str | None:
    """Who holds a run's lock right now, without taking it: None when nobody does.

    Read-only: a shared, non-blocking flock on the lock file (when it exists) fails only
    while an orchestrator holds the exclusive one. Returns the holder line, or
    ``"another process"`` when it cannot be read.
    """
    path = lock_path(locks_dir, run_id)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    except OSError:
        return None  # never locked (or unreadable: nothing to say)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_holder(fd) or "another process"
        fcntl.flock(fd, fcntl.LOCK_UN)
        return None
    finally:
        os.close(fd)
