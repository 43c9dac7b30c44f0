"""A limiter shared by name between processes on one host: flock'd slot files.

Several ``subplan run`` processes that name the same pool (``--pool NAME``) share one
``max_parallel`` budget. The pool is a directory ``<pool dir>/<NAME>/`` holding one file per
slot, ``slot-0`` ... ``slot-<capacity-1>``. Holding a slot means holding an exclusive
``flock`` on its file through an open file descriptor, so the kernel frees the slot when
the holder's process dies, however it dies (SIGKILL included): no stale lock, no cleanup.

Rules that keep this correct (the system we learn from broke the first two):

* slot files are opened with ``O_CREAT`` and never ``O_TRUNC``, and are never unlinked:
  a lock file that is unlinked or recreated lets two processes lock two different files
  under one name and both believe they hold "the" slot;
* the holder record (pid, host, since; JSON, for diagnostics only) is written only after
  the lock is held, by truncating and rewriting the file;
* after locking, the descriptor is checked to still be the file at the slot's path; if
  something outside subplan deleted the file (a tmp cleaner), the orphan is dropped and
  the path reopened, so a lock on a deleted file can never count as a slot;
* descriptors are ``O_CLOEXEC``, and a forked child closes its copies without unlocking
  (an ``os.register_at_fork`` hook), so a child never keeps its parent's slots alive and
  never frees them either;
* the one exception is deliberate: a run's command inherits the descriptor of the slot it
  runs under (:meth:`SharedLimiter.descriptor`), so a command orphaned by a SIGKILLed
  orchestrator keeps its slot until its whole process group has exited.

Within one process a :class:`SharedLimiter` is thread-safe. Two instances (in one process
or in two) contend like two processes, because flock locks belong to open file
descriptions and each instance opens its own.

Capacities: slots are by index, so a process that says capacity 4 only uses
``slot-0..3``, and one that says 6 uses ``slot-0..5``. Across processes that disagree, at
most the largest capacity in use runs at once, and each process never holds more than its
own capacity. Give every process of a pool the same capacity: a run checks
(:meth:`SharedLimiter.check_capacity`) that no slot is held with another one before it
starts; a pool nobody holds may be used with any capacity.

Fairness: there is none across processes. A blocked acquire polls the slot files every
``poll_interval`` (with jitter), starting at a random slot so that waiters do not all
hammer ``slot-0``; under heavy contention a waiter can lose several rounds in a row.
"""

from __future__ import annotations

import contextlib
import fcntl
import itertools
import json
import math
import os
import pathlib
import random
import re
import socket
import stat
import tempfile
import threading
import weakref
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Final

from .._clock import Clock, SystemClock
from .._errors import ConfigError
from ._limiter import (
    HeldSlot,
    LimiterTimeoutError,
    SlotNotHeldError,
    WithSlot,
    check_count,
    check_timeout,
)

__all__ = [
    "SharedLimiter",
    "SharedLimiterStatistics",
    "SharedSlot",
    "SlotHolder",
    "default_pool_directory",
]

_POOL_NAME: Final = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_SLOT_FILE: Final = re.compile(r"slot-(0|[1-9][0-9]{0,8})")
_OPEN_FLAGS: Final = os.O_RDWR | os.O_CREAT | os.O_CLOEXEC | os.O_NOFOLLOW  # never O_TRUNC
_PROBE_FLAGS: Final = os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW
_REOPEN_TRIES: Final = 3


def default_pool_directory() -> pathlib.Path:
    """Return the directory that holds named pools, creating it (mode 0o700) if needed.

    The first that applies: ``$SUBPLAN_POOL_DIR``; ``$XDG_RUNTIME_DIR/subplan/pools`` when
    ``$XDG_RUNTIME_DIR`` is an existing directory; else ``<tempdir>/subplan-<uid>/pools``.

    Returns:
        The directory (not resolved: it is used as given).

    Raises:
        ConfigError: the per-user directory under the shared temp dir is not a real
            directory owned by this user and closed to others (someone else may have
            planted it; it is refused rather than trusted).

    Example:
        >>> default_pool_directory().is_dir()
        True
    """
    configured = os.environ.get("SUBPLAN_POOL_DIR")
    if configured:
        path = pathlib.Path(configured)
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
    runtime = os.environ.get("XDG_RUNTIME_DIR")
    if runtime and pathlib.Path(runtime).is_dir():
        path = pathlib.Path(runtime) / "subplan" / "pools"
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        return path
    uid = os.getuid()
    base = pathlib.Path(tempfile.gettempdir()) / f"subplan-{uid}"
    with contextlib.suppress(FileExistsError):
        base.mkdir(mode=0o700)
    info = os.lstat(base)
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != uid or info.st_mode & 0o077:
        raise ConfigError(
            f"refusing pool directory {base}: it must be a directory owned by uid {uid} "
            f"with mode 0o700 (set SUBPLAN_POOL_DIR to use another place)"
        )
    path = base / "pools"
    path.mkdir(mode=0o700, exist_ok=True)
    return path


@dataclass(frozen=True, slots=True)
class SlotHolder:
    """Who holds one slot of a shared pool, as its holder wrote it down.

    Attributes:
        index: the slot's number (its file is ``slot-<index>``).
        pid: the holder's process id, or ``None`` if its record is not readable (it is
            being written at this instant, or the disk was full).
        host: the holder's host name, or ``None`` likewise.
        since: when it took the slot (epoch seconds, the holder's clock), or ``None``.
        mine: the slot is held by the :class:`SharedLimiter` that was asked.
        capacity: the pool size the holder was given, or ``None`` if not readable.
    """

    index: int
    pid: int | None
    host: str | None
    since: float | None
    mine: bool
    capacity: int | None = None


@dataclass(frozen=True, slots=True)
class SharedLimiterStatistics:
    """A snapshot of one :class:`SharedLimiter` instance (this process's view).

    Attributes:
        name: the pool's name.
        capacity: this instance's capacity.
        running: slots this instance holds now.
        waiting: threads of this instance blocked in :meth:`SharedLimiter.acquire`.
        peak: the most slots this instance held at once.
        acquired: slots this instance took so far.
        released: slots it gave back so far (``acquired - released == running``).

    The host-wide picture (who holds what, in every process) is
    :meth:`SharedLimiter.holders`.
    """

    name: str
    capacity: int
    running: int
    waiting: int
    peak: int
    acquired: int
    released: int


class SharedSlot(HeldSlot):
    """One held slot of a shared pool; a context manager that releases it on exit.

    Immutable (read-only attributes), compared by identity.

    Attributes:
        id: unique among the slots of its :class:`SharedLimiter` instance.
        index: the slot file's number (shared with other processes, reused over time).
        path: the slot file.
        acquired_at: when it was taken, on the limiter's monotonic clock.
        groups: always ``()`` (shared pools have no groups); there for symmetry with
            :class:`~subplan._limit._limiter.Slot`.

    Example:
        >>> import tempfile
        >>> pool = SharedLimiter("doc-slot", 2, directory=tempfile.mkdtemp())
        >>> with pool.acquire() as slot:
        ...     slot.path.name in ("slot-0", "slot-1")
        True
    """

    __slots__ = ("_acquired_at", "_id", "_index", "_limiter", "_path")

    def __init__(
        self,
        id: int,
        index: int,
        path: pathlib.Path,
        acquired_at: float,
        limiter: SharedLimiter,
    ) -> None:
        self._id = id
        self._index = index
        self._path = path
        self._acquired_at = acquired_at
        self._limiter = limiter

    @property
    def index(self) -> int:
        """The slot file's number."""
        return self._index

    @property
    def path(self) -> pathlib.Path:
        """The slot file."""
        return self._path

    @property
    def groups(self) -> tuple[str, ...]:
        """Always ``()``: shared pools have no groups."""
        return ()

    def __repr__(self) -> str:
        return f"SharedSlot(id={self._id}, index={self._index}, path={str(self._path)!r})"


class _SharedSlotContext:
    """What :meth:`SharedLimiter.slot` returns: acquires on entry, releases on exit."""

    __slots__ = ("_limiter", "_slot", "_timeout")

    def __init__(self, limiter: SharedLimiter, timeout: float | None) -> None:
        self._limiter = limiter
        self._timeout = timeout
        self._slot: SharedSlot | None = None

    def __enter__(self) -> SharedSlot:
        if self._slot is not None:
            raise RuntimeError("a limiter.slot() context cannot be entered twice at once")
        self._slot = self._limiter.acquire(timeout=self._timeout)
        return self._slot

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        slot, self._slot = self._slot, None
        if slot is None:
            raise RuntimeError("a limiter.slot() context was exited without being entered")
        self._limiter.release(slot)


def _close_fds(fds: dict[int, int]) -> None:
    """Close every descriptor in ``fds`` (a finalizer: must not reference the limiter)."""
    for fd in fds.values():
        with contextlib.suppress(OSError):
            os.close(fd)
    fds.clear()


def _parse_holder(index: int, data: bytes, *, mine: bool) -> SlotHolder:
    try:
        record = json.loads(data)
    except ValueError:  # empty or half-written: the holder is writing it right now
        record = None
    if not isinstance(record, dict):
        return SlotHolder(index, None, None, None, mine)
    pid, host, since = record.get("pid"), record.get("host"), record.get("since")
    capacity = record.get("capacity")
    return SlotHolder(
        index,
        pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
        host if isinstance(host, str) else None,
        float(since) if isinstance(since, int | float) and not isinstance(since, bool) else None,
        mine,
        capacity if isinstance(capacity, int) and not isinstance(capacity, bool) else None,
    )


def _rebuild(name: str, capacity: int, directory: str, poll_interval: float) -> SharedLimiter:
    return SharedLimiter(name, capacity, directory=directory, poll_interval=poll_interval)


class SharedLimiter(WithSlot[SharedSlot]):
    """A limiter shared by name between processes on one host.

    Args:
        name: the pool's name: 1-64 characters from ``A-Z a-z 0-9 . _ -``, not starting
            with ``.``, ``_`` or ``-``.
        capacity: the most slots held at once across the host (see the module docstring
            for processes that disagree on it).
        directory: where pools live; :func:`default_pool_directory` by default. The pool
            is the subdirectory ``<directory>/<name>``, created with mode 0o700, so only
            the same user shares it.
        poll_interval: seconds between attempts of a blocked :meth:`acquire` (jittered by
            ±50%); > 0.
        clock: where deadlines, poll sleeps and the holder's ``since`` come from.
        seed: seeds the choice of the first slot to try and the poll jitter.

    Raises:
        ConfigError: a bad name, capacity or poll interval.
        OSError: the pool directory or a slot file cannot be created.

    Notes:
        The instance keeps one descriptor open per slot file (``capacity`` descriptors);
        :meth:`close` closes them. It pickles as its name, capacity, directory and poll
        interval (a child process opens the same pool with the system clock).

    Example:
        >>> import tempfile
        >>> pool = SharedLimiter("agents", 2, directory=tempfile.mkdtemp())
        >>> with pool.slot():
        ...     pool.statistics().running
        1
        >>> pool.close()
    """

    def __init__(
        self,
        name: str,
        capacity: int,
        *,
        directory: str | os.PathLike[str] | None = None,
        poll_interval: float = 0.05,
        clock: Clock | None = None,
        seed: int | None = None,
    ) -> None:
        if not isinstance(name, str) or not _POOL_NAME.fullmatch(name):
            raise ConfigError(
                f"invalid pool name {name!r}: use 1-64 characters from A-Z a-z 0-9 . _ -, "
                f"starting with a letter or digit"
            )
        self._name = name
        self._capacity = check_count("capacity", capacity)
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, int | float)
            or not 0 < poll_interval < math.inf
        ):
            raise ConfigError(f"poll_interval must be a number > 0, got {poll_interval!r}")
        self._poll_interval = float(poll_interval)
        base = pathlib.Path(directory) if directory is not None else default_pool_directory()
        self._directory = base
        self._path = base / name
        self._path.mkdir(mode=0o700, parents=True, exist_ok=True)
        self._clock: Clock = clock if clock is not None else SystemClock()
        self._rng = random.Random(seed)
        # the holder record, JSON; only the pid (it changes in a forked child) and the
        # time are filled in per acquire
        self._record = (
            f'{{"pid": %d, "host": {json.dumps(socket.gethostname()).replace("%", "%%")}, '
            f'"pool": {json.dumps(name)}, "capacity": {self._capacity}, "since": %r}}'
        )
        self._lock = threading.Lock()
        self._slot_paths = [self._path / f"slot-{i}" for i in range(self._capacity)]
        self._slot_names = [os.fspath(path) for path in self._slot_paths]
        self._fds: dict[int, int] = {}  # index -> our open descriptor of slot-<index>
        self._held: dict[int, SharedSlot] = {}  # index -> the slot we hold on it
        self._ids = itertools.count(1)
        self._running = 0
        self._waiting = 0
        self._peak = 0
        self._acquired = 0
        self._released = 0
        self._local = threading.local()
        self._finalizer = weakref.finalize(self, _close_fds, self._fds)
        with self._lock:
            for index in range(self._capacity):  # create the files now, for holders()
                self._fd(index)
        _INSTANCES.add(self)

    # -- properties ---------------------------------------------------------------------

    @property
    def name(self) -> str:
        """The pool's name."""
        return self._name

    @property
    def capacity(self) -> int:
        """This instance's capacity."""
        return self._capacity

    @property
    def path(self) -> pathlib.Path:
        """The pool's directory, holding the slot files."""
        return self._path

    # -- slot files (lock held) ---------------------------------------------------------

    def _fd(self, index: int) -> int:
        fd = self._fds.get(index)
        if fd is None:
            try:
                fd = os.open(self._slot_names[index], _OPEN_FLAGS, 0o600)
            except FileNotFoundError:  # the pool directory itself was cleaned away
                self._path.mkdir(mode=0o700, parents=True, exist_ok=True)
                fd = os.open(self._slot_names[index], _OPEN_FLAGS, 0o600)
            self._fds[index] = fd
        return fd

    def _is_current(self, index: int, fd: int) -> bool:
        """Whether ``fd`` is still the file at the slot's path (nobody deleted it)."""
        mine = os.fstat(fd)
        try:
            there = os.lstat(self._slot_names[index])
        except FileNotFoundError:
            return False
        return (mine.st_dev, mine.st_ino) == (there.st_dev, there.st_ino)

    def _lock_index(self, index: int) -> int | None:
        """Lock ``slot-<index>`` without blocking; return its descriptor, or None if taken."""
        for _ in range(_REOPEN_TRIES):
            fd = self._fd(index)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return None
            if self._is_current(index, fd):
                return fd
            # we locked a deleted file that nobody else can see: drop it (closing
            # unlocks it) and lock the file that the path names now
            del self._fds[index]
            os.close(fd)
        return None

    def _write_holder(self, fd: int) -> None:
        record = self._record % (os.getpid(), self._clock.time())
        try:
            os.ftruncate(fd, 0)  # safe: the lock is held
            os.pwrite(fd, record.encode(), 0)
        except OSError:  # the record is only a diagnostic: a full disk must not cost the slot
            pass

    def _try_acquire(self) -> SharedSlot | None:
        """One round over the slot files, from a random start (lock held)."""
        capacity = self._capacity
        if len(self._held) >= capacity:
            return None
        start = self._rng.randrange(capacity)
        for k in range(capacity):
            index = (start + k) % capacity
            if index in self._held:
                # flock would succeed again on our own descriptor: skip, never re-grant
                continue
            fd = self._lock_index(index)
            if fd is None:
                continue
            self._write_holder(fd)
            slot = SharedSlot(
                next(self._ids), index, self._slot_paths[index], self._clock.monotonic(), self
            )
            self._held[index] = slot
            self._running += 1
            self._acquired += 1
            if self._running > self._peak:
                self._peak = self._running
            return slot
        return None

    # -- acquiring and releasing ----------------------------------------------------------

    def acquire_nowait(self) -> SharedSlot | None:
        """Take a free slot of the pool if there is one now, without waiting.

        Returns:
            The slot, or ``None`` when every slot this instance may use is held.

        Raises:
            OSError: a slot file cannot be opened.

        Example:
            >>> import tempfile
            >>> pool = SharedLimiter("doc-nowait", 1, directory=tempfile.mkdtemp())
            >>> first = pool.acquire_nowait()
            >>> pool.acquire_nowait() is None
            True
        """
        with self._lock:
            return self._try_acquire()

    def acquire(self, *, timeout: float | None = None) -> SharedSlot:
        """Take a slot of the pool, polling until one is free.

        Args:
            timeout: the most seconds to wait, on the limiter's clock; ``None`` waits for
                ever, ``0`` makes one attempt.

        Returns:
            The slot; release it exactly once (or use it as a context manager).

        Raises:
            LimiterTimeoutError: no slot became free within ``timeout``.
            ConfigError: ``timeout`` is negative or not a number.

        Example:
            >>> import tempfile
            >>> pool = SharedLimiter("doc-acquire", 1, directory=tempfile.mkdtemp())
            >>> slot = pool.acquire(timeout=10)
            >>> pool.release(slot)
        """
        check_timeout(timeout)
        clock = self._clock
        deadline = math.inf if timeout is None else clock.monotonic() + timeout
        with self._lock:
            slot = self._try_acquire()
            if slot is not None:
                return slot
            self._waiting += 1
        try:
            while True:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    assert timeout is not None  # an infinite deadline never passes
                    raise LimiterTimeoutError(
                        f"no slot of pool {self._name!r} free within {timeout:g} s "
                        f"(capacity {self._capacity})",
                        timeout=timeout,
                    )
                clock.sleep(min(self._poll_interval * (0.5 + self._rng.random()), remaining))
                with self._lock:
                    slot = self._try_acquire()
                if slot is not None:
                    return slot
        finally:
            with self._lock:
                self._waiting -= 1

    def release(self, slot: SharedSlot) -> None:
        """Give a slot back to the pool (unlock its file; the file stays).

        Args:
            slot: a slot this instance handed out and that is still held.

        Raises:
            SlotNotHeldError: the slot was already released, belongs to another
                instance, or was inherited across a fork; nothing changes.

        Example:
            >>> import tempfile
            >>> pool = SharedLimiter("doc-release", 1, directory=tempfile.mkdtemp())
            >>> pool.release(pool.acquire())
            >>> pool.acquire_nowait() is not None
            True
        """
        if not isinstance(slot, SharedSlot) or slot._limiter is not self:
            slot_id = slot.id if isinstance(slot, SharedSlot) else None
            raise SlotNotHeldError(
                f"not a slot of pool {self._name!r} held by this instance: {slot!r}",
                slot_id=slot_id,
            )
        with self._lock:
            if self._held.get(slot.index) is not slot:
                raise SlotNotHeldError(
                    f"slot {slot.id} (slot-{slot.index} of pool {self._name!r}) is not "
                    f"held: it was already released",
                    slot_id=slot.id,
                )
            del self._held[slot.index]
            self._running -= 1
            self._released += 1
            fcntl.flock(self._fds[slot.index], fcntl.LOCK_UN)

    def descriptor(self, slot: SharedSlot) -> int | None:
        """The open descriptor whose flock is ``slot``, or None when it is not held here.

        A command given this descriptor (``pass_fds``) shares the lock's open file
        description: if this process dies, the slot stays taken until the command and
        every process that inherited it are gone, so an orphaned command still counts.
        """
        with self._lock:
            if self._held.get(slot.index) is not slot:
                return None
            return self._fds.get(slot.index)

    def slot(
        self, *, timeout: float | None = None
    ) -> contextlib.AbstractContextManager[SharedSlot]:
        """Return a context manager that acquires a slot on entry and releases it on exit.

        Args:
            timeout: as for :meth:`acquire`.

        Returns:
            A single-use context manager whose ``__enter__`` returns the slot.

        Raises:
            LimiterTimeoutError: (on entry) no slot became free within ``timeout``.

        Example:
            >>> import tempfile
            >>> pool = SharedLimiter("doc-ctx", 1, directory=tempfile.mkdtemp())
            >>> with pool.slot(timeout=5) as slot:
            ...     slot.index
            0
        """
        return _SharedSlotContext(self, timeout)

    # -- diagnostics ----------------------------------------------------------------------

    def _indices_on_disk(self) -> Iterable[int]:
        found = set(range(self._capacity))
        with contextlib.suppress(FileNotFoundError), os.scandir(self._path) as entries:
            for entry in entries:
                match = _SLOT_FILE.fullmatch(entry.name)
                if match:
                    found.add(int(match.group(1)))
        return sorted(found)

    def holders(self) -> tuple[SlotHolder, ...]:
        """Return who holds the pool's slots now, in every process on the host.

        It reports every ``slot-<i>`` file of the pool, including indices beyond this
        instance's capacity (used by processes with a larger one).

        Returns:
            One :class:`SlotHolder` per held slot, by index.

        Notes:
            A slot this instance holds is reported from memory: probing it would conflict
            with our own lock. Any other slot is probed with ``LOCK_SH | LOCK_NB`` on a
            fresh descriptor: if that fails, someone holds ``LOCK_EX`` on it (another
            process, or another instance in this process, whose ``mine`` is False). While
            the probe holds its shared lock (microseconds), another process's attempt on
            that slot fails and simply tries the next slot or the next poll.

        Example:
            >>> import tempfile
            >>> pool = SharedLimiter("doc-holders", 2, directory=tempfile.mkdtemp())
            >>> slot = pool.acquire()
            >>> [(h.pid == os.getpid(), h.mine) for h in pool.holders()]
            [(True, True)]
        """
        result: list[SlotHolder] = []
        with self._lock:
            for index in self._indices_on_disk():
                if index in self._held:
                    fd = self._fds[index]
                    data = os.pread(fd, 4096, 0)
                    result.append(_parse_holder(index, data, mine=True))
                    continue
                try:
                    fd = os.open(self._path / f"slot-{index}", _PROBE_FLAGS)
                except FileNotFoundError:
                    continue
                try:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    except BlockingIOError:
                        data = os.pread(fd, 4096, 0)
                        result.append(_parse_holder(index, data, mine=False))
                finally:
                    os.close(fd)  # also drops the probe's shared lock
        return tuple(result)

    def check_capacity(self) -> None:
        """Refuse to join a pool that runs with another size now.

        Processes that disagree on a pool's capacity run up to the largest one at once,
        which is rarely what anyone meant; a run checks this before it starts.

        Raises:
            ConfigError: a slot is held by a process that gave the pool another capacity.
        """
        for holder in self.holders():
            if holder.capacity is not None and holder.capacity != self._capacity:
                who = f"pid {holder.pid} on {holder.host}" if holder.pid else "another process"
                raise ConfigError(
                    f"pool {self._name!r} is in use with size {holder.capacity} ({who}), "
                    f"not {self._capacity}; every run naming it must give the same size"
                )

    def statistics(self) -> SharedLimiterStatistics:
        """Return a snapshot of this instance's counts (see :meth:`holders` for the host).

        Example:
            >>> import tempfile
            >>> SharedLimiter("doc-stats", 3, directory=tempfile.mkdtemp()).statistics()
            SharedLimiterStatistics(name='doc-stats', capacity=3, running=0, waiting=0, peak=0, acquired=0, released=0)
        """  # noqa: E501
        with self._lock:
            return SharedLimiterStatistics(
                name=self._name,
                capacity=self._capacity,
                running=self._running,
                waiting=self._waiting,
                peak=self._peak,
                acquired=self._acquired,
                released=self._released,
            )

    def close(self) -> None:
        """Close this instance's slot files; slots it still holds are freed by the kernel.

        Freed slots count as released. The instance stays usable: it reopens the files
        when it needs them.

        Example:
            >>> import tempfile
            >>> pool = SharedLimiter("doc-close", 1, directory=tempfile.mkdtemp())
            >>> slot = pool.acquire()
            >>> pool.close()
            >>> pool.statistics().running
            0
        """
        with self._lock:
            self._released += len(self._held)
            self._running = 0
            self._held.clear()
            _close_fds(self._fds)

    def _after_fork_in_child(self) -> None:
        """Forget the parent's descriptors without unlocking them (they are the parent's)."""
        self._lock = threading.Lock()  # another thread may have held it at the fork
        self._local = threading.local()
        _close_fds(self._fds)  # closing our copies keeps the parent's locks
        self._held.clear()
        self._running = 0
        self._waiting = 0

    def __reduce__(self) -> tuple[object, tuple[str, int, str, float]]:
        return (_rebuild, (self._name, self._capacity, str(self._directory), self._poll_interval))

    def __repr__(self) -> str:
        return f"SharedLimiter({self._name!r}, capacity={self._capacity}, path={str(self._path)!r})"


_INSTANCES: weakref.WeakSet[SharedLimiter] = weakref.WeakSet()


def _forget_after_fork() -> None:
    for limiter in list(_INSTANCES):
        limiter._after_fork_in_child()


os.register_at_fork(after_in_child=_forget_after_fork)
