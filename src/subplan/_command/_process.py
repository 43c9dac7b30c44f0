"""Running one command as a process, safely: own session, output to files, group killed.

Every command runs in a new session, so it leads its own process group (``pgid == pid``)
and everything it starts stays in that group unless it calls ``setsid``/``setpgid``
itself. When the command is done — it exited, timed out, was cancelled, or the caller
failed — the whole group is killed and **confirmed gone** before :func:`run_command`
returns, so a retried attempt never runs next to leftovers of the previous one.

"Gone" means no member of the group is alive: zombies do not count. They cannot run,
and in containers whose PID 1 never reaps orphans they would otherwise keep a group
"alive" forever. Linux only: membership is read from ``/proc``.
"""

from __future__ import annotations

import contextlib
import errno
import os
import pathlib
import select
import shutil
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Final

from .._clock import Clock, SystemClock
from .._errors import (
    ArgumentListTooLongError,
    CommandError,
    CommandNotFoundError,
    ConfigError,
    InputError,
    ProcessGroupAliveError,
)
from ._template import render_file_arg

__all__ = [
    "CommandError",
    "CommandNotFoundError",
    "CommandResult",
    "ProcessGroupAliveError",
    "kill_process_group",
    "kill_process_groups",
    "process_groups_of_run",
    "resolve_program",
    "run_command",
    "write_files_list",
]

_POLL: Final = 0.05  # longest wait between checks of cancel / deadline / group
_FIRST_POLL: Final = 0.001
_CONFIRM: Final = 5.0  # how long to wait for a SIGKILLed group to vanish
_PROC: Final = "/proc"
# Test hook: SIGKILL this process right after spawning the N-th command (see _journal).
_KILL_AT_ENV: Final = "SUBPLAN_TEST_KILL_AT"
_spawns_lock = threading.Lock()
_spawns = 0


def _kill_after_spawn_hook() -> None:
    """SIGKILL the caller at the N-th spawn when ``SUBPLAN_TEST_KILL_AT=after_spawn:N``."""
    global _spawns
    spec = os.environ.get(_KILL_AT_ENV, "")
    point, _, count = spec.partition(":")
    if point != "after_spawn":
        return
    with _spawns_lock:
        _spawns += 1
        if _spawns >= int(count or "1"):
            os.kill(os.getpid(), signal.SIGKILL)


@dataclass(frozen=True, slots=True)
class CommandResult:
    """How one command run ended.

    Attributes:
        argv: the argv that was run.
        exit_code: the exit status; ``None`` when the command was killed by a signal.
        signal: the signal that ended the command, if any.
        timed_out: the command was killed because it ran past its timeout.
        cancelled: the command was killed because the cancel event was set.
        pid: the process id of the command.
        pgid: its process group (equal to ``pid``: the command leads its own session).
        started: wall-clock time (``clock.time()``) just before the process was started.
        ended: wall-clock time when the whole process group was confirmed gone.
        stdout_path: the file holding the command's standard output.
        stderr_path: the file holding its standard error (may equal ``stdout_path``).

    Example:
        >>> import pathlib, tempfile
        >>> logs = pathlib.Path(tempfile.mkdtemp())
        >>> r = run_command(["true"], cwd=None, env={}, stdout_path=logs / "out",
        ...                 stderr_path=logs / "err")
        >>> (r.ok, r.exit_code, r.signal, r.pid == r.pgid)
        (True, 0, None, True)
    """

    argv: tuple[str, ...]
    exit_code: int | None
    signal: int | None
    timed_out: bool
    cancelled: bool
    pid: int
    pgid: int
    started: float
    ended: float
    stdout_path: pathlib.Path
    stderr_path: pathlib.Path

    @property
    def ok(self) -> bool:
        """True when the command exited with status 0 on its own (no timeout, no cancel)."""
        return self.exit_code == 0 and not self.timed_out and not self.cancelled


def _check_grace(name: str, value: float) -> None:
    if not value >= 0:  # also refuses NaN
        raise ConfigError(f"{name} must be >= 0 seconds, got {value}")


def _check_pgid(pgid: int) -> None:
    if pgid <= 1:
        raise ConfigError(f"refusing to signal process group {pgid}: must be > 1")
    if pgid == os.getpgrp():
        raise ConfigError(f"refusing to signal process group {pgid}: it is the caller's own")


def _has_live_member(pgid: int) -> bool:
    """True when ``/proc`` shows a process in group ``pgid`` that is not a zombie."""
    target = str(pgid).encode()
    try:
        with os.scandir(_PROC) as entries:
            pids = [entry.name for entry in entries if entry.name.isdigit()]
    except OSError:
        return True  # cannot tell: assume the worst
    for pid in pids:
        try:
            fd = os.open(f"{_PROC}/{pid}/stat", os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            continue  # the process went away while we looked
        try:
            data = os.read(fd, 512)  # pgrp is among the first fields
        except OSError:
            continue
        finally:
            os.close(fd)
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses.
        fields = data[data.rfind(b")") + 2 :].split(maxsplit=3)
        if len(fields) >= 3 and fields[2] == target and fields[0] not in (b"Z", b"X"):
            return True
    return False


def _group_alive(pgid: int) -> bool:
    """True while group ``pgid`` has a member that is alive (zombies do not count)."""
    try:
        with contextlib.suppress(PermissionError):  # it exists, but not a process of ours
            os.killpg(pgid, 0)
    except ProcessLookupError:
        return False
    return _has_live_member(pgid)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_gone(pgid: int, seconds: float, clock: Clock, reap: Callable[[], object] | None) -> bool:
    """Poll until group ``pgid`` is gone or ``seconds`` pass; True when it is gone."""
    deadline = clock.monotonic() + seconds
    delay = _FIRST_POLL
    while True:
        if reap is not None:
            reap()  # a zombie leader is harmless, but reaping it early frees the pid
        if not _group_alive(pgid):
            return True
        remaining = deadline - clock.monotonic()
        if remaining <= 0:
            return False
        clock.sleep(min(delay, remaining))
        delay = min(delay * 2, _POLL)


def _kill_group(
    pgid: int, grace: float, clock: Clock, reap: Callable[[], object] | None = None
) -> bool:
    if reap is not None:
        reap()
    if not _group_alive(pgid):
        return True
    _signal_group(pgid, signal.SIGTERM)
    _signal_group(pgid, signal.SIGCONT)  # a stopped process handles SIGTERM only once continued
    if _wait_gone(pgid, grace, clock, reap):
        return True
    _signal_group(pgid, signal.SIGKILL)
    return _wait_gone(pgid, _CONFIRM, clock, reap)


def kill_process_group(pgid: int, *, grace: float = 5.0, clock: Clock | None = None) -> bool:
    """Kill process group ``pgid`` and confirm that it is gone.

    Sends SIGTERM (and SIGCONT, so that stopped processes can handle it) to the group,
    waits up to ``grace`` seconds for every member to exit, then sends SIGKILL and waits
    up to 5 more seconds. A group that is already gone is not signalled.

    Args:
        pgid: the process group, for example a :attr:`CommandResult.pgid` or one recorded
            through ``on_start`` by an orchestrator that has since died.
        grace: seconds between SIGTERM and SIGKILL.
        clock: where time comes from (deadlines and sleeps); :class:`SystemClock` by default.

    Returns:
        True when no live member of the group remains (zombies do not count); False when
        one survived SIGKILL, or belongs to another user and cannot be signalled.

    Raises:
        ConfigError: ``pgid`` is 0, 1, negative or the caller's own group, or ``grace`` is
            negative.

    Notes:
        A zombie counts as gone, but its parent should still reap it: if the group's
        leader is the caller's own child, wait for it (``Popen.wait``) afterwards.

    Example:
        >>> import subprocess, sys
        >>> p = subprocess.Popen(["sleep", "30"], start_new_session=True)
        >>> kill_process_group(p.pid, grace=1.0)
        True
        >>> p.wait()
        -15
    """
    _check_pgid(pgid)
    _check_grace("grace", grace)
    return _kill_group(pgid, grace, clock or SystemClock())


def kill_process_groups(
    pgids: Collection[int], *, grace: float = 5.0, clock: Clock | None = None
) -> set[int]:
    """Kill many process groups at once: one grace period for all, not one each.

    Every group gets SIGTERM (and SIGCONT) together; those still alive after ``grace``
    seconds get SIGKILL together. Groups ``<= 1`` and the caller's own are skipped.

    Returns:
        The groups that still have a live member (survivors of SIGKILL, or another
        user's processes).

    Example:
        >>> import subprocess
        >>> ps = [subprocess.Popen(["sleep", "30"], start_new_session=True) for _ in "ab"]
        >>> kill_process_groups([p.pid for p in ps], grace=1.0)
        set()
        >>> [p.wait() for p in ps]
        [-15, -15]
    """
    _check_grace("grace", grace)
    clock = clock or SystemClock()
    own = os.getpgrp()
    alive = {g for g in pgids if g > 1 and g != own and _group_alive(g)}
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pgid in alive:
            _signal_group(pgid, sig)
            if sig == signal.SIGTERM:
                _signal_group(pgid, signal.SIGCONT)
        deadline = clock.monotonic() + (grace if sig == signal.SIGTERM else _CONFIRM)
        delay = _FIRST_POLL
        while alive:
            alive = {g for g in alive if _group_alive(g)}
            remaining = deadline - clock.monotonic()
            if not alive or remaining <= 0:
                break
            clock.sleep(min(delay, remaining))
            delay = min(delay * 2, _POLL)
    return alive


def process_groups_of_run(
    run_id: str,
    *,
    run_dir: str | os.PathLike[str] | None = None,
    subplan_variable: str = "SUBPLAN_ID",
    attempt: tuple[str, int] | None = None,
) -> set[int]:
    """Process groups on this host whose members' environment names ``run_id``.

    A command of a run has ``SUBPLAN_RUN_ID`` and ``SUBPLAN_ID`` in its environment (and
    so do its children, and a shim still waiting to exec it), whether or not the store
    knows of it. Only processes this user may read are seen; the caller's own group is
    never among them. Run ids are unique in a store, not on a host: with ``run_dir``
    (the run's own output directory) only commands whose ``SUBPLAN_FILES_LIST`` lies in
    it count, so a run of the same id in another runs directory is left alone. With
    ``attempt`` (a subplan id and an attempt number) only that attempt's commands count.
    """
    wanted = f"SUBPLAN_RUN_ID={run_id}".encode()
    only = (
        None
        if attempt is None
        else {f"{subplan_variable}={attempt[0]}".encode(), f"SUBPLAN_ATTEMPT={attempt[1]}".encode()}
    )
    marker = f"{subplan_variable}=".encode()
    inside = (
        None
        if run_dir is None
        else b"SUBPLAN_FILES_LIST=" + os.fsencode(pathlib.Path(run_dir).absolute()) + b"/"
    )
    own = os.getpgrp()
    found: set[int] = set()
    try:
        with os.scandir(_PROC) as entries:
            pids = [entry.name for entry in entries if entry.name.isdigit()]
    except OSError:
        return found
    for pid in pids:
        try:
            with open(f"{_PROC}/{pid}/environ", "rb") as handle:
                variables = handle.read().split(b"\0")
            with open(f"{_PROC}/{pid}/stat", "rb") as handle:
                data = handle.read(512)
        except OSError:
            continue  # gone, or not ours
        if wanted not in variables or not any(v.startswith(marker) for v in variables):
            continue
        if inside is not None and not any(v.startswith(inside) for v in variables):
            continue  # the same run id, of another runs directory
        if only is not None and not only <= set(variables):
            continue  # another attempt of the run
        fields = data[data.rfind(b")") + 2 :].split(maxsplit=3)
        if len(fields) >= 3 and fields[0] not in (b"Z", b"X"):
            pgid = int(fields[2])
            if pgid > 1 and pgid != own:
                found.add(pgid)
    return found


def _spawn_error(
    exc: OSError, args: Sequence[str], cwd: str | None, env: Mapping[str, str]
) -> CommandError:
    program = args[0]
    if exc.errno == errno.E2BIG:
        size = sum(len(os.fsencode(a)) + 1 for a in args) + sum(
            len(os.fsencode(k)) + len(os.fsencode(v)) + 2 for k, v in env.items()
        )
        error: CommandError = ArgumentListTooLongError(
            f"cannot run {program!r}: argument list too long ({len(args)} arguments, "
            f"{size} bytes with the environment); pass the files as a list with "
            "{files_list} instead of {files}",
            program=program,
            cwd=cwd,
            arguments=len(args),
            size=size,
        )
    elif cwd is not None and not pathlib.Path(cwd).is_dir():
        error = CommandError(
            f"cannot run {program!r}: working directory not found: {cwd!r}",
            program=program,
            cwd=cwd,
        )
    elif isinstance(exc, FileNotFoundError):
        error = CommandNotFoundError(f"program not found: {program!r}", program=program, cwd=cwd)
    else:
        error = CommandError(
            f"cannot run {program!r}: {exc.strerror or exc}", program=program, cwd=cwd
        )
    error.errno = exc.errno
    error.strerror = exc.strerror
    error.filename = exc.filename
    return error


def resolve_program(
    program: str,
    *,
    cwd: str | os.PathLike[str] | None = None,
    env: Mapping[str, str] | None = None,
) -> str:
    """Find the file :func:`run_command` would execute for ``program``, or raise.

    For checking a command up front (say, before starting a run of many subplans). A
    program containing ``/`` is a path (relative to ``cwd``); any other name is looked
    up on the ``PATH`` of ``os.environ`` merged with ``env``, as :func:`run_command` does.

    Args:
        program: the program, ``argv[0]`` of a command.
        cwd: the working directory the command will run in.
        env: the extra environment variables it will get.

    Returns:
        The path of the executable file.

    Raises:
        CommandNotFoundError: there is no such file, or no executable one on ``PATH``.
        CommandError: the path names a directory or a file that is not executable.

    Example:
        >>> resolve_program("sh").endswith("/sh")
        True
    """
    base = os.fspath(cwd) if cwd is not None else None
    if "/" in program:
        path = pathlib.Path(base, program) if base is not None else pathlib.Path(program)
        if not path.exists():
            raise CommandNotFoundError(f"program not found: {program!r}", program=program)
        if path.is_dir() or not os.access(path, os.X_OK):
            raise CommandError(f"program is not executable: {program!r}", program=program)
        return program if base is None else os.fspath(path)
    search = dict(os.environ) if env is None else {**os.environ, **env}
    found = shutil.which(program, path=search.get("PATH", os.defpath))
    if found is None:
        raise CommandNotFoundError(f"program not found: {program!r}", program=program)
    return found


def _open_output(path: pathlib.Path) -> IO[bytes]:
    path.parent.mkdir(parents=True, exist_ok=True)
    return open(path, "wb")  # closed by the caller's ExitStack


def _open_pidfd(pid: int) -> int | None:
    """A pidfd for ``pid`` (readable once it exits), or None where the kernel has none."""
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):  # not Linux >= 5.3, or blocked by seccomp
        return None


def _exit_waiter(proc: subprocess.Popen[bytes], pidfd: int | None) -> Callable[[float], bool]:
    """A function that waits up to ``seconds`` for ``proc`` to exit; True once it has."""
    if pidfd is None:

        def wait_polling(seconds: float) -> bool:
            try:
                proc.wait(timeout=seconds)  # sleeps in growing steps between checks
            except subprocess.TimeoutExpired:
                return False
            return True

        return wait_polling
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)

    def wait_pidfd(seconds: float) -> bool:
        return bool(poller.poll(seconds * 1000))  # wakes the moment the process exits

    return wait_pidfd


def _wait(
    proc: subprocess.Popen[bytes],
    deadline: float | None,
    cancel: threading.Event | None,
    clock: Clock,
) -> tuple[bool, bool]:
    """Wait for ``proc``; return ``(timed_out, cancelled)`` as soon as one holds."""
    if deadline is None and cancel is None:
        proc.wait()
        return False, False
    pidfd = _open_pidfd(proc.pid)
    try:
        exited = _exit_waiter(proc, pidfd)
        while True:
            # A command that already finished by itself keeps its own result.
            if cancel is not None and cancel.is_set():
                return False, proc.poll() is None
            step = _POLL
            if deadline is not None:
                remaining = deadline - clock.monotonic()
                if remaining <= 0:
                    return proc.poll() is None, False
                step = min(step, remaining)
            if exited(step):
                proc.wait()
                return False, False
    finally:
        if pidfd is not None:
            os.close(pidfd)


# Run by the interpreter as ``python -I -S -c _SHIM GO STATUS ARGV...``: wait for a byte
# on GO (EOF: the caller died, so exit without running anything), then exec ARGV; an exec
# failure's errno goes back on STATUS (close-on-exec, so EOF there means the exec worked).
_SHIM: Final = """\
import os, sys
go, status = int(sys.argv[1]), int(sys.argv[2])
if os.read(go, 1) != b"g":
    os._exit(111)
os.close(go)
os.set_inheritable(status, False)
try:
    os.execvp(sys.argv[3], sys.argv[3:])
except OSError as exc:
    os.write(status, str(exc.errno or 0).encode())
    os._exit(127)
"""


class _Gate:
    """The two pipes between :func:`run_command` and its blocked shim."""

    def __init__(self) -> None:
        self.go_read, self.go_write = os.pipe()
        self.status_read, self.status_write = os.pipe()
        self.child_fds = (self.go_read, self.status_write)

    def argv(self, args: Sequence[str]) -> tuple[str, ...]:
        return (
            sys.executable,
            "-I",
            "-S",
            "-c",
            _SHIM,
            str(self.go_read),
            str(self.status_write),
            *args,
        )

    def open(self) -> int | None:
        """Let the shim exec the command; None once it did, else the exec's errno."""
        self._close_child_ends()
        with contextlib.suppress(BrokenPipeError):  # the shim is gone already
            os.write(self.go_write, b"g")
        os.close(self.go_write)
        self.go_write = -1
        chunks = []
        while chunk := os.read(self.status_read, 64):
            chunks.append(chunk)
        if not chunks:
            return None
        return int(b"".join(chunks) or b"0") or errno.ENOEXEC

    def _close_child_ends(self) -> None:
        for name in ("go_read", "status_write"):
            fd = getattr(self, name)
            if fd >= 0:
                os.close(fd)
                setattr(self, name, -1)

    def __enter__(self) -> _Gate:
        return self

    def __exit__(self, *exc: object) -> None:
        self._close_child_ends()
        for fd in (self.go_write, self.status_read):
            if fd >= 0:
                os.close(fd)


def _reap(proc: subprocess.Popen[bytes]) -> int | None:
    """The leader's return code, without blocking for long on a survivor."""
    with contextlib.suppress(subprocess.TimeoutExpired):
        return proc.wait(timeout=_POLL)
    return proc.returncode


def run_command(
    argv: Sequence[str],
    *,
    cwd: str | os.PathLike[str] | None,
    env: Mapping[str, str],
    stdout_path: str | os.PathLike[str],
    stderr_path: str | os.PathLike[str],
    timeout: float | None = None,
    cancel: threading.Event | None = None,
    kill_grace: float = 5.0,
    on_start: Callable[[int, int], None] | None = None,
    clock: Clock | None = None,
    pass_fds: Sequence[int] = (),
) -> CommandResult:
    """Run ``argv`` as a process in its own session and wait until its group is gone.

    The command gets no stdin (``/dev/null``); its stdout and stderr go straight to the
    given files (parents created, files truncated; one file when both paths are equal),
    so no output is held in memory. No shell is involved: ``argv`` is executed as given.

    When the command times out, when ``cancel`` is set, or when the caller fails while
    waiting (``on_start`` raises, ``KeyboardInterrupt``), its whole process group is killed:
    SIGTERM, up to ``kill_grace`` seconds, SIGKILL (see :func:`kill_process_group`).
    **Even when the command exits on its own**, leftover background processes of its
    group are killed the same way, so a finished attempt cannot leave processes that run
    on next to its retry. The function returns only once the group is confirmed gone.

    Args:
        argv: the program and its arguments, for example from
            :meth:`CommandTemplate.render`. A relative program with a ``/`` is relative to
            ``cwd``; a bare name is looked up on ``PATH``.
        cwd: the working directory, or ``None`` for the caller's.
        env: extra environment variables, merged over ``os.environ``.
        stdout_path: the file for standard output.
        stderr_path: the file for standard error.
        timeout: seconds (on ``clock.monotonic()``, from the start of the process, so
            ``on_start`` counts) before the command is killed; ``None`` for no limit.
        cancel: when set, the command is killed; checked at least every 50 ms.
        kill_grace: seconds between SIGTERM and SIGKILL.
        on_start: called with ``(pid, pgid)`` once the process exists but **before the
            command runs**, so the caller can record them durably first: the process
            starts as a small shim (``python -c``) that waits on a pipe and execs
            ``argv`` only after ``on_start`` returned. If the caller dies before that,
            the pipe closes and the shim exits without running the command. If
            ``on_start`` raises, the group is killed and the exception propagates.
        clock: where time comes from (timeout, timestamps, kill polling);
            :class:`SystemClock` by default.
        pass_fds: descriptors the command inherits (for example a flock'd pool slot, so
            the kernel keeps the lock until the command and its children are gone).

    Returns:
        The :class:`CommandResult`. A non-zero exit, a signal, a timeout or a cancel is
        reported there, never raised.

    Raises:
        CommandNotFoundError: the program does not exist (``.program``); also a
            :class:`FileNotFoundError`.
        CommandError: the process could not be started otherwise: a missing working
            directory, a program that is not executable (``.errno`` tells which).
        ProcessGroupAliveError: a member of the group survived SIGKILL; ``.result`` holds
            what is known. Do not retry the command before the group is gone.
        ConfigError: ``argv`` is empty or a string, ``timeout`` is not positive,
            ``kill_grace`` is negative.
        InputError: an argument or environment variable contains a NUL character.

    Example:
        >>> import pathlib, sys, tempfile
        >>> out = pathlib.Path(tempfile.mkdtemp()) / "log.txt"
        >>> r = run_command([sys.executable, "-c", "print('hi')"], cwd=None, env={},
        ...                 stdout_path=out, stderr_path=out, timeout=30)
        >>> r.ok, r.stdout_path.read_text()
        (True, 'hi\\n')
    """
    if isinstance(argv, str):
        raise ConfigError(f"a command must be a list of arguments, not a string: {argv!r}")
    args = tuple(argv)
    if not args:
        raise ConfigError("no command given")
    if timeout is not None and not timeout > 0:
        raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
    _check_grace("kill_grace", kill_grace)
    for text in (*args, *env, *env.values()):
        if "\x00" in text:
            raise InputError(f"a command argument or variable contains NUL: {text!r}")
    clock = clock or SystemClock()
    out_path = pathlib.Path(stdout_path)
    err_path = pathlib.Path(stderr_path)
    workdir = os.fspath(cwd) if cwd is not None else None
    held = tuple(pass_fds)
    with contextlib.ExitStack() as files:
        out = files.enter_context(_open_output(out_path))
        same = out_path.absolute() == err_path.absolute()
        err = out if same else files.enter_context(_open_output(err_path))
        full_env = {**os.environ, **env}
        started = clock.time()
        gate: _Gate | None = None
        spawn = args
        if on_start is not None:
            # The command must not run before the caller could find it again (its group
            # recorded durably): it starts as a shim blocked on a pipe, and only execs the
            # command once on_start returned. If this process dies first, the pipe closes
            # and the shim exits without running anything.
            gate = files.enter_context(_Gate())
            spawn = gate.argv(args)
        try:
            proc = subprocess.Popen(
                spawn,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=err,
                cwd=workdir,
                env=full_env,
                close_fds=True,
                pass_fds=held if gate is None else (*held, *gate.child_fds),
                start_new_session=True,
            )
        except OSError as exc:
            raise _spawn_error(exc, args, workdir, full_env) from exc
        pid = pgid = proc.pid  # start_new_session: the child leads its own group
        _kill_after_spawn_hook()
        deadline = None if timeout is None else clock.monotonic() + timeout
        try:
            if on_start is not None:
                on_start(pid, pgid)
            if gate is not None:
                failed = gate.open()
                if failed is not None:
                    _reap(proc)
                    lost = OSError(failed, os.strerror(failed), args[0])
                    raise _spawn_error(lost, args, workdir, full_env) from None
            timed_out, cancelled = _wait(proc, deadline, cancel, clock)
        except BaseException as exc:
            if not _kill_group(pgid, kill_grace, clock, proc.poll):
                exc.add_note(f"process group {pgid} is still alive after SIGKILL")
            _reap(proc)
            raise
    gone = _kill_group(pgid, kill_grace, clock, proc.poll)
    code = _reap(proc)
    result = CommandResult(
        argv=args,
        exit_code=code if code is None or code >= 0 else None,
        signal=-code if code is not None and code < 0 else None,
        timed_out=timed_out,
        cancelled=cancelled,
        pid=pid,
        pgid=pgid,
        started=started,
        ended=clock.time(),
        stdout_path=out_path,
        stderr_path=err_path,
    )
    if not gone:
        raise ProcessGroupAliveError(pgid, result)
    return result


def write_files_list(path: str | os.PathLike[str], files: Sequence[str]) -> pathlib.Path:
    """Write ``files`` to ``path``, one per line, atomically; for ``{files_list}``.

    Each file is written as :meth:`CommandTemplate.render` passes it (``./``-prefixed when
    it starts with ``-``), encoded like a file name (:func:`os.fsencode`), and followed by
    ``\\n``. The text goes to a temporary file in the same directory, is fsynced and
    renamed over ``path``: a reader sees the old list or the new one, never a part.
    Parent directories are created first.

    Args:
        path: where to write the list.
        files: relative ``/``-separated paths.

    Returns:
        ``path`` as a :class:`pathlib.Path`.

    Raises:
        InputError: a file name is empty or contains a newline, carriage return or NUL
            (it cannot be one line); nothing is written then.

    Example:
        >>> import tempfile, pathlib
        >>> p = write_files_list(pathlib.Path(tempfile.mkdtemp()) / "files.txt", ["a.py", "-b"])
        >>> p.read_text()
        'a.py\\n./-b\\n'
    """
    target = pathlib.Path(path)
    lines: list[bytes] = []
    for name in files:
        if "\n" in name or "\r" in name:
            raise InputError(f"a file name with a line break cannot be listed: {name!r}", path=name)
        try:
            lines.append(os.fsencode(render_file_arg(name)) + b"\n")
        except UnicodeEncodeError as exc:
            raise InputError(f"file name cannot be encoded: {name!r}", path=name) from exc
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_CLOEXEC, 0o666)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(b"".join(lines))
            handle.flush()
            os.fsync(handle.fileno())
        tmp.replace(target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target
