"""The whole error tree of subplan.

Every error subplan raises on purpose derives from :class:`SubplanError`; where a builtin
fits, the error subclasses it too, so ``except ValueError`` keeps working for callers that
do not know subplan::

    SubplanError
    ├── UsageError (ValueError)           the command line itself is wrong (the CLI's exit 2)
    ├── ConfigError (ValueError)          an option out of range: min_files < 1, max_parallel <= 0
    │   ├── DependencyCycleError          explicit dependencies form a cycle (.cycle)
    │   └── TemplateError                 a malformed command template or a missing value
    │                                     (.placeholder, .index, .argument)
    ├── InputError (ValueError)           bad input data: a missing path, an empty file set,
    │                                     a malformed path list, an unsafe path (.path)
    ├── PlanError (ValueError)            a plan that breaks an invariant, or a malformed
    │                                     plan file (.problems)
    ├── UnknownSubplanError (KeyError)    an id that is not in the plan (.subplan_id)
    ├── LimiterTimeoutError (TimeoutError)  no slot within the timeout (.timeout, .groups)
    ├── SlotNotHeldError (RuntimeError)   a slot released twice or to the wrong limiter
    ├── CommandError (OSError)            a command could not be started (.program, .cwd)
    │   ├── CommandNotFoundError (FileNotFoundError)   no such program
    │   └── ArgumentListTooLongError      its arguments and environment pass the system's
    │                                     limit (E2BIG); never retried: use {files_list}
    ├── CommandFailedError (RuntimeError) a subplan's command ended with a non-zero status
    │                                     or a signal (.exit_code, .signal, .stderr_path)
    ├── CommandTimeoutError (TimeoutError)  a command ran past --timeout; its group was killed
    ├── WorkerCrashedError (RuntimeError) the worker process (or dask worker) running an
    │                                     attempt died before delivering its result
    ├── ProcessGroupAliveError (RuntimeError)          a command's processes survived
    │                                                  SIGKILL (.pgid, .result)
    ├── WorkspaceError                    a workspace (a git worktree) cannot be made,
    │   │                                 inspected or removed (.path)
    │   ├── NotAGitRepositoryError (InputError)   the repository is not a git work tree
    │   ├── DirtyBaseError                the repository has uncommitted changes and a
    │   │                                 clean base was asked for (.path, .changes)
    │   └── WorkspaceLeasedError          another process holds the workspace's lease
    │                                     (.path, .holder)
    └── StoreError                        the state store cannot be used (.location)
        ├── StoreConnectError (ConnectionError)   the store cannot be reached or opened
        ├── StoreCorruptError                 the database fails its integrity check
        ├── StoreVersionError                 a schema newer (or older) than this subplan's
        ├── NetworkFilesystemError            SQLite on NFS/SMB/...: use PostgreSQL
        ├── UnknownRunError (KeyError)        no run with that id (.run_id)
        ├── RunExistsError                    a run with that id exists already (.run_id)
        ├── RunLockedError                    another orchestrator holds the run
        │                                     (.run_id, .holder)
        └── RunLockLostError                  the run's lock was lost while it ran (its
                                              PostgreSQL session ended): the run stopped

Not in the tree: :class:`subplan.RateLimited` is a *signal* that work raises to say an
API rate-limited it (a plain ``Exception``); the run pauses instead of failing.

Errors carry their data as attributes, not only in the message. Messages are one line and
name what is wrong, because the CLI prints them as they are.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._command._process import CommandResult

__all__ = [
    "ArgumentListTooLongError",
    "CommandError",
    "CommandFailedError",
    "CommandNotFoundError",
    "CommandTimeoutError",
    "ConfigError",
    "DependencyCycleError",
    "DirtyBaseError",
    "InputError",
    "LimiterTimeoutError",
    "NetworkFilesystemError",
    "NotAGitRepositoryError",
    "PlanError",
    "ProcessGroupAliveError",
    "RunExistsError",
    "RunLockLostError",
    "RunLockedError",
    "SlotNotHeldError",
    "StoreConnectError",
    "StoreCorruptError",
    "StoreError",
    "StoreVersionError",
    "SubplanError",
    "TemplateError",
    "UnknownRunError",
    "UnknownSubplanError",
    "UsageError",
    "WorkerCrashedError",
    "WorkspaceError",
    "WorkspaceLeasedError",
]


class SubplanError(Exception):
    """Base class of every error subplan raises on purpose."""


class ConfigError(SubplanError, ValueError):
    """An option or argument has a value out of its range.

    Example:
        >>> from subplan import decompose
        >>> decompose(["a.py"], min_files=0)
        Traceback (most recent call last):
        ...
        subplan._errors.ConfigError: min_files must be >= 1, got 0
    """


class DependencyCycleError(ConfigError):
    """Explicit dependencies between subplans form a cycle.

    Attributes:
        cycle: the ids on the cycle, in order; the first is not repeated at the end.
    """

    def __init__(self, cycle: Sequence[str]) -> None:
        self.cycle: tuple[str, ...] = tuple(cycle)
        shown = " -> ".join((*self.cycle, self.cycle[0])) if self.cycle else "?"
        super().__init__(f"dependency cycle: {shown}")


class InputError(SubplanError, ValueError):
    """Input data is unusable: a missing path, an empty file set, a malformed list.

    Attributes:
        path: the offending path or file name, when there is one.
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path


class PlanError(SubplanError, ValueError):
    """A plan breaks an invariant, or a plan document cannot be read.

    Attributes:
        problems: every problem found; the message names the first and counts the rest.
    """

    def __init__(self, problems: str | Sequence[str]) -> None:
        self.problems: tuple[str, ...] = (
            (problems,) if isinstance(problems, str) else tuple(problems)
        )
        first = self.problems[0] if self.problems else "invalid plan"
        more = len(self.problems) - 1
        super().__init__(first if more == 0 else f"{first} (and {more} more problems)")


class UnknownSubplanError(SubplanError, KeyError):
    """A subplan id that the plan does not contain.

    Attributes:
        subplan_id: the id that was asked for.
    """

    def __init__(self, subplan_id: str) -> None:
        super().__init__(subplan_id)
        self.subplan_id = subplan_id

    def __str__(self) -> str:
        return f"no subplan with id {self.subplan_id!r}"


class TemplateError(ConfigError):
    """A command template is malformed, or a value it needs is missing.

    Attributes:
        placeholder: the placeholder at fault (without braces), when there is one.
        index: the argv index of the argument at fault (0 is the program), when known.
        argument: that argument as written in the template.

    Example:
        >>> from subplan._command._exec import CommandTemplate
        >>> CommandTemplate.parse(["agent", "{nope}"])
        Traceback (most recent call last):
        ...
        subplan._errors.TemplateError: unknown placeholder {nope} in \
argument 1 ('{nope}'); known: {id}, {files}, {files_list}, {attempt}, {run_id}, \
{workspace}, {label}
    """

    def __init__(
        self,
        message: str,
        *,
        placeholder: str | None = None,
        index: int | None = None,
        argument: str | None = None,
    ) -> None:
        super().__init__(message)
        self.placeholder = placeholder
        self.index = index
        self.argument = argument


class CommandError(SubplanError, OSError):
    """A command could not be started: not executable, a missing working directory, ...

    ``errno`` is copied from the operating system's error, which is chained as
    ``__cause__``.

    Attributes:
        program: the program (``argv[0]``).
        cwd: the working directory asked for, or ``None``.

    Example:
        >>> import pathlib, tempfile
        >>> from subplan._command._exec import run_command
        >>> logs = pathlib.Path(tempfile.mkdtemp())
        >>> run_command(["true"], cwd="/no/such/dir", env={}, stdout_path=logs / "out",
        ...             stderr_path=logs / "err")
        Traceback (most recent call last):
        ...
        subplan._errors.CommandError: cannot run 'true': working \
directory not found: '/no/such/dir'
    """

    def __init__(self, message: str, *, program: str = "", cwd: str | None = None) -> None:
        super().__init__(message)
        self.program = program
        self.cwd = cwd

    def __str__(self) -> str:
        return str(self.args[0])


class CommandNotFoundError(CommandError, FileNotFoundError):
    """The program of a command does not exist (neither as a path nor on ``PATH``).

    Attributes:
        program: the program that was not found.

    Example:
        >>> from subplan._command._exec import resolve_program
        >>> resolve_program("no-such-agent-xyz")
        Traceback (most recent call last):
        ...
        subplan._errors.CommandNotFoundError: program not found: \
'no-such-agent-xyz'
    """


class ArgumentListTooLongError(CommandError):
    """A command's arguments and environment are longer than the system allows (E2BIG).

    The same command would fail the same way again, so it is never retried
    (``retryable`` is False). The fix is in the template: pass the files as a list file,
    ``{files_list}`` (or ``$SUBPLAN_FILES_LIST``), instead of one argument each.

    Attributes:
        program: the program that could not be started.
        arguments: how many arguments the command had.
        size: their length in bytes, with the environment's.
    """

    retryable = False

    def __init__(
        self, message: str, *, program: str, cwd: str | None, arguments: int, size: int
    ) -> None:
        super().__init__(message, program=program, cwd=cwd)
        self.arguments = arguments
        self.size = size


class ProcessGroupAliveError(SubplanError, RuntimeError):
    """Processes of a command's group survived SIGKILL (for example stuck in the kernel).

    Running the command again could run it twice at once, so the caller must not retry
    until the group is gone (see :func:`kill_process_group`).

    Attributes:
        pgid: the process group.
        result: what is known of the command's run (``ended`` is when we gave up).
    """

    def __init__(self, pgid: int, result: CommandResult | None = None) -> None:
        super().__init__(f"process group {pgid} is still alive after SIGKILL")
        self.pgid = pgid
        self.result = result

    def __reduce__(self) -> tuple[type[ProcessGroupAliveError], tuple[int, CommandResult | None]]:
        return (type(self), (self.pgid, self.result))


class LimiterTimeoutError(SubplanError, TimeoutError):
    """No slot became free within the timeout.

    Attributes:
        timeout: the timeout that expired, in seconds.
        groups: the groups the request named.

    Example:
        >>> from subplan import Limiter
        >>> limiter = Limiter(1)
        >>> slot = limiter.acquire()
        >>> limiter.acquire(timeout=0)
        Traceback (most recent call last):
        ...
        subplan._errors.LimiterTimeoutError: no slot free within 0 s (capacity 1)
    """

    def __init__(self, message: str, *, timeout: float, groups: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.timeout = timeout
        self.groups: tuple[str, ...] = tuple(groups)


class SlotNotHeldError(SubplanError, RuntimeError):
    """A slot was released that is not held: released twice, or from another limiter.

    The limiter's counts are left unchanged.

    Attributes:
        slot_id: the id of the slot that was passed, or ``None`` if it was not a slot.

    Example:
        >>> from subplan import Limiter
        >>> limiter = Limiter(1)
        >>> slot = limiter.acquire()
        >>> limiter.release(slot)
        >>> limiter.release(slot)
        Traceback (most recent call last):
        ...
        subplan._errors.SlotNotHeldError: slot 1 is not held: it was already released
    """

    def __init__(self, message: str, *, slot_id: int | None) -> None:
        super().__init__(message)
        self.slot_id = slot_id


class StoreError(SubplanError):
    """The state store cannot be used.

    Attributes:
        location: the database file or a URL with its password removed.
    """

    def __init__(self, message: str, *, location: str | None = None) -> None:
        super().__init__(message)
        self.location = location


class StoreConnectError(StoreError, ConnectionError):
    """The store cannot be reached or opened (no server, bad URL, unreadable file)."""


class StoreCorruptError(StoreError):
    """The database file fails its integrity check or is not a subplan store."""


class StoreVersionError(StoreError):
    """The database's schema version is not one this subplan can use.

    Attributes:
        found: the version in the database.
        supported: the version this subplan writes.
    """

    def __init__(
        self, message: str, *, location: str | None = None, found: int, supported: int
    ) -> None:
        super().__init__(message, location=location)
        self.found = found
        self.supported = supported


class NetworkFilesystemError(StoreError):
    """SQLite's write-ahead log needs a local filesystem; the runs directory is not on one.

    Attributes:
        fstype: the filesystem type (``nfs4``, ``cifs``, ...).
    """

    def __init__(self, message: str, *, location: str | None = None, fstype: str) -> None:
        super().__init__(message, location=location)
        self.fstype = fstype


class UnknownRunError(StoreError, KeyError):
    """No run with this id in the store.

    Attributes:
        run_id: the id asked for.
    """

    def __init__(self, run_id: str, *, location: str | None = None) -> None:
        where = f" in {location}" if location else ""
        super().__init__(f"no run {run_id!r}{where}", location=location)
        self.run_id = run_id

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class RunExistsError(StoreError):
    """A run with this id exists already (resume it, or pick another id).

    Attributes:
        run_id: the id.
    """

    def __init__(self, run_id: str, *, location: str | None = None) -> None:
        super().__init__(
            f"run {run_id!r} exists already: resume it with 'subplan resume {run_id}' "
            "or choose another --run-id",
            location=location,
        )
        self.run_id = run_id


class RunLockLostError(StoreError):
    """The run lock was lost while the run ran (its PostgreSQL session ended), or a newer
    orchestrator took the run: the store refused a write fenced by an older lock epoch.

    Another orchestrator may take the run from then on, so this one stops starting work,
    ends its commands and writes nothing more. ``subplan resume`` finishes the run.

    Attributes:
        epoch: the lock epoch the refused write carried (None for a lost lock).
        current: the run's lock epoch in the store then (None for a lost lock).
    """

    def __init__(
        self,
        message: str,
        *,
        location: str | None = None,
        epoch: int | None = None,
        current: int | None = None,
    ) -> None:
        super().__init__(message, location=location)
        self.epoch = epoch
        self.current = current


class RunLockedError(StoreError):
    """Another orchestrator holds the run's lock.

    Attributes:
        run_id: the run.
        holder: who holds it, as the holder wrote it (pid, host, since), or None when
            unreadable.
    """

    def __init__(self, run_id: str, holder: str | None, *, location: str | None = None) -> None:
        who = holder or "another process"
        super().__init__(f"run {run_id!r} is being run by {who}", location=location)
        self.run_id = run_id
        self.holder = holder


class WorkspaceError(SubplanError):
    """A workspace (a git worktree) cannot be made, inspected or removed.

    Attributes:
        path: the workspace or repository at fault, when there is one.

    Example:
        >>> from subplan._workspace import Workspaces
        >>> Workspaces("/no/such/repo", "/tmp/ws")
        Traceback (most recent call last):
        ...
        subplan._errors.NotAGitRepositoryError: not a git repository: /no/such/repo \
(no such directory)
    """

    def __init__(self, message: str, *, path: str | None = None) -> None:
        super().__init__(message)
        self.path = path

    def __str__(self) -> str:
        return str(self.args[0])

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.args[0],), self.__dict__)


class NotAGitRepositoryError(WorkspaceError, InputError):
    """The repository path is missing, not in a git repository, or in a bare one.

    Attributes:
        path: the path given.
    """


class DirtyBaseError(WorkspaceError):
    """The repository has uncommitted changes, and a clean base was asked for.

    Attributes:
        path: the repository's work tree.
        changes: the changed paths (modified, staged, deleted or untracked), relative to
            it; the message names the first three.
    """

    def __init__(self, path: str, changes: Sequence[str]) -> None:
        self.changes: tuple[str, ...] = tuple(changes)
        shown = ", ".join(self.changes[:3])
        if len(self.changes) > 3:
            shown += f" and {len(self.changes) - 3} more"
        super().__init__(
            f"uncommitted changes in {path}: {shown}; commit or stash them first", path=path
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.changes))


class WorkspaceLeasedError(WorkspaceError):
    """Another process (or another lease in this one) holds the workspace's lease.

    Attributes:
        path: the workspace, as a real path.
        holder: who holds it, as the holder wrote it (pid, host, since), or None when
            unreadable.
    """

    def __init__(self, path: str, holder: str | None) -> None:
        super().__init__(f"workspace {path} is leased by {holder or 'another process'}", path=path)
        self.holder = holder

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.path, self.holder))


class UsageError(SubplanError, ValueError):
    """The command line itself is wrong (an unknown option, a missing argument)."""


class CommandFailedError(SubplanError, RuntimeError):
    """A subplan's command ended with a non-zero status or a signal.

    Attributes:
        exit_code: the exit status, or None when killed by a signal.
        signal: the signal that ended it, or None.
        stderr_path: where its standard error went.
    """

    def __init__(
        self, message: str, *, exit_code: int | None, signal: int | None, stderr_path: Path
    ) -> None:
        super().__init__(message)
        self.exit_code = exit_code
        self.signal = signal
        self.stderr_path = stderr_path

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only arguments: the default reduction (args only) cannot rebuild it, and
        # the process backend sends it to the parent pickled.
        return (_rebuild_failed, (type(self), str(self.args[0])), self.__dict__)


def _rebuild_failed(cls: type[CommandFailedError], message: str) -> CommandFailedError:
    return cls(message, exit_code=None, signal=None, stderr_path=Path())  # state follows


class CommandTimeoutError(SubplanError, TimeoutError):
    """A subplan's command ran past its timeout; its whole process group was killed."""


class WorkerCrashedError(SubplanError, RuntimeError):
    """The worker process running an attempt died before delivering its result."""


def one_line(exc: BaseException) -> str:
    """``Type: first line of the message``: an error as one line of a report or a log."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__
