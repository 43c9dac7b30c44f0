"""Workspace leases and the repository's worktree lock: ``flock`` on files never unlinked.

Both reuse the run lock of the store (:mod:`subplan._store._lockfile`): ``flock`` on a
file that is never unlinked nor truncated before the lock is held, the holder line
(``pid N on HOST since ISO-TIME``) written once the lock is held, descriptors
close-on-exec and closed in forked children. A holder that dies, even by SIGKILL, never
blocks anyone: the kernel drops its lock.

* A **lease** is ``<leases dir>/<key>.lock``, where the key is the BLAKE2b hash of the
  workspace's real path (:func:`os.path.realpath` of the path, which also resolves a
  path that does not exist yet through its existing parents). ``./x``, ``x/``,
  ``a/../x`` and a symlink to ``x`` are one workspace, with one lease.
* The **worktree lock** is ``<common git dir>/subplan/worktrees.lock``: every
  ``git worktree add``, ``remove`` and ``prune`` subplan runs on a repository holds it,
  whatever runs directory the caller uses, because concurrent ones race on git's own
  files (``.git/worktrees/<name>/locked``, the emptied ``.git/worktrees`` directory).

A held lock's descriptor is passed to the git processes run under it: a git process that
outlives its SIGKILLed caller keeps the lock held until it has finished, so nobody
recovers a worktree that git is still writing.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import hashlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Final

from .._clock import Clock, SystemClock
from .._errors import RunLockedError, StoreConnectError, WorkspaceError, WorkspaceLeasedError
from .._release import ReleasedOnExit
from .._store._lockfile import FileRunLock, acquire_file_lock

__all__ = [
    "WorkspaceLease",
    "acquire_lease",
    "lease_holder",
    "lease_key",
    "real_path",
    "worktree_lock",
]

# A busy lock whose holder line is empty belongs to a prober (``lease_holder``, which
# holds LOCK_SH for microseconds) or to a holder that has not written its line yet: try
# again for this long before calling it leased.
_UNNAMED_GRACE: Final = 0.2
_POLL_MIN: Final = 0.001
_POLL_MAX: Final = 0.02
_PROBE_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
_LOCK_NAME: Final = "worktrees"


def real_path(path: str | os.PathLike[str]) -> Path:
    """The real path of ``path``: absolute, symlinks and ``..`` resolved, even if missing.

    Example:
        >>> real_path("/tmp/../tmp/x/") == real_path("/tmp/x")
        True
    """
    return Path(os.path.realpath(os.fspath(path)))


def lease_key(path: str | os.PathLike[str]) -> str:
    """The lease key of a workspace: 32 hex digits of the BLAKE2b hash of its real path.

    Example:
        >>> lease_key("/tmp/ws/./r1/") == lease_key("/tmp/ws/r1")
        True
    """
    real = os.fsencode(real_path(path))
    return hashlib.blake2b(real, digest_size=16).hexdigest()


def _fd(lock: FileRunLock) -> int:
    # FileRunLock keeps its descriptor private; git processes inherit it (module docstring).
    fd = lock._fd
    if fd is None:
        raise WorkspaceError(f"lock {lock.path} is not held")
    return fd


class WorkspaceLease(ReleasedOnExit):
    """A held lease on one workspace (see :func:`acquire_lease`). Also a context manager.

    Attributes:
        path: the workspace's real path.
        lock_file: the lease's lock file.
    """

    def __init__(self, path: Path, lock: FileRunLock) -> None:
        self.path = path
        self.lock_file = lock.path
        self._lock = lock

    @property
    def holder(self) -> str:
        """Who holds it: ``pid N on HOST since ISO-TIME``."""
        return self._lock.holder

    @property
    def held(self) -> bool:
        """Whether this object still holds the lease (False once released)."""
        return self._lock.held

    def fileno(self) -> int:
        """The lock's descriptor, to pass to a child process that works for the holder.

        Raises:
            WorkspaceError: the lease was released.
        """
        return _fd(self._lock)

    def release(self) -> None:
        """Give the lease up. Idempotent; the lock file stays (it is never unlinked)."""
        self._lock.release()

    def __repr__(self) -> str:
        state = "held" if self.held else "released"
        return f"<WorkspaceLease {os.fspath(self.path)!r} {state} by {self.holder}>"


def _acquire(
    name: str,
    directory: Path,
    *,
    timeout: float,
    clock: Clock,
    what: str,
) -> FileRunLock | str | None:
    """Poll :func:`acquire_file_lock` until it succeeds or ``timeout`` passes.

    Returns the lock, or the holder line (None when unreadable) of the lock that stayed
    busy.
    """
    start = clock.monotonic()
    delay = _POLL_MIN
    while True:
        try:
            return acquire_file_lock(name, directory)
        except RunLockedError as exc:
            waited = clock.monotonic() - start
            if waited >= timeout and (exc.holder is not None or waited >= _UNNAMED_GRACE):
                return exc.holder
        except StoreConnectError as exc:
            cause = exc.__cause__
            reason = (cause.strerror or type(cause).__name__) if isinstance(cause, OSError) else exc
            raise WorkspaceError(
                f"cannot open the {what} lock {directory / (name + '.lock')}: {reason}"
            ) from None
        clock.sleep(delay)
        delay = min(delay * 2, _POLL_MAX)


def acquire_lease(
    path: str | os.PathLike[str],
    *,
    leases_dir: str | os.PathLike[str],
    timeout: float = 0.0,
    clock: Clock | None = None,
) -> WorkspaceLease:
    """Lease the workspace at ``path`` (which need not exist yet).

    Args:
        path: the workspace, in any spelling: the lease is keyed by its real path.
        leases_dir: the directory of lease files (created if missing).
        timeout: seconds to wait for a busy lease; 0 does not wait (beyond a moment for a
            holder that has not written its line yet).
        clock: the time source of the wait.

    Returns:
        The held lease; its file holds the holder line.

    Raises:
        WorkspaceLeasedError: another holder, in this process or another, kept the lease
            for the whole ``timeout``; ``.holder`` names it.
        WorkspaceError: the lease file cannot be created or locked.

    Example:
        >>> import tempfile
        >>> leases = tempfile.mkdtemp()
        >>> with acquire_lease("/tmp/ws/x", leases_dir=leases) as lease:
        ...     acquire_lease("/tmp/ws/./x/", leases_dir=leases)
        Traceback (most recent call last):
        ...
        subplan._errors.WorkspaceLeasedError: workspace /tmp/ws/x is leased by pid ...
    """
    real = real_path(path)
    got = _acquire(
        lease_key(real),
        Path(leases_dir),
        timeout=timeout,
        clock=clock or SystemClock(),
        what="lease",
    )
    if isinstance(got, FileRunLock):
        return WorkspaceLease(real, got)
    raise WorkspaceLeasedError(os.fspath(real), got)


def lease_holder(path: str | os.PathLike[str], *, leases_dir: str | os.PathLike[str]) -> str | None:
    """Who leases the workspace at ``path`` now: the holder line, or None when it is free.

    It never creates a file. The probe holds a shared lock for microseconds; a claimant
    meeting it retries (see :func:`acquire_lease`), so probing never fails a claim.

    Returns:
        The holder line, ``"an unknown holder"`` when the line cannot be read, or None.

    Example:
        >>> import tempfile
        >>> leases = tempfile.mkdtemp()
        >>> lease_holder("/tmp/ws/y", leases_dir=leases) is None
        True
        >>> with acquire_lease("/tmp/ws/y", leases_dir=leases):
        ...     lease_holder("/tmp/ws/y", leases_dir=leases)
        'pid ... on ... since ...'
    """
    lock_file = Path(leases_dir) / f"{lease_key(path)}.lock"
    try:
        fd = os.open(lock_file, _PROBE_FLAGS)
    except OSError:
        return None  # never leased (or unreadable: nothing we could lease either)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):  # pragma: no cover
                return None  # flock refused outright (a filesystem without it): unknown
            text = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            return text.splitlines()[0].strip() if text else "an unknown holder"
        return None
    finally:
        os.close(fd)  # also drops the probe's shared lock


@contextlib.contextmanager
def worktree_lock(common_dir: Path, *, timeout: float, clock: Clock | None = None) -> Iterator[int]:
    """Hold the repository's worktree lock; yields its descriptor (for ``pass_fds``).

    Args:
        common_dir: the repository's common git directory.
        timeout: seconds to wait for it.
        clock: the time source of the wait.

    Raises:
        WorkspaceError: still held by another process after ``timeout`` (the message
            names the holder), or the lock file cannot be opened.
    """
    got = _acquire(
        _LOCK_NAME,
        common_dir / "subplan",
        timeout=timeout,
        clock=clock or SystemClock(),
        what="worktree",
    )
    if not isinstance(got, FileRunLock):
        raise WorkspaceError(
            f"the worktree lock of {common_dir} is still held by "
            f"{got or 'another process'} after {timeout:g} s",
            path=os.fspath(common_dir),
        )
    try:
        yield _fd(got)
    finally:
        got.release()
