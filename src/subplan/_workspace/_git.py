"""Running git for workspaces: argv lists, the repository's hooks off, one-line errors.

Every call goes through :func:`run_git`, which

* passes ``-c core.hooksPath=/dev/null`` (git looks for ``/dev/null/<hook>``, which can
  never exist, so no hook runs: ``worktree add`` would otherwise run ``post-checkout``),
  ``core.fsmonitor=false`` (a configured fsmonitor is a program git would start) and
  ``gc.auto=0`` (no background ``gc`` racing the next ``worktree add``). Git exports
  ``-c`` settings to the git processes it starts itself, so they hold there too;
* runs ``git -C <dir>`` with an argv list, never a shell, and ``LC_ALL=C`` (messages are
  parsed), ``GIT_TERMINAL_PROMPT=0`` (never wait for a password) and
  ``GIT_OPTIONAL_LOCKS=0`` (a ``git status`` we run beside a working agent must not take
  its ``index.lock``);
* drops ``GIT_DIR``, ``GIT_WORK_TREE``, ``GIT_INDEX_FILE``... inherited from a caller
  running inside a git hook, which would point git at another repository;
* turns a failure into :class:`WorkspaceError` carrying git's first error line.

:func:`check_repository` is the up-front check of a repository: a git work tree, and
clean when the caller asks for a clean base.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from .._errors import DirtyBaseError, NotAGitRepositoryError, WorkspaceError
from .._inventory._listing import _GIT_LOCATION_VARS

__all__ = ["GIT_CONFIG", "Repository", "check_repository", "git_env", "run_git"]

#: The ``-c`` options of every git call.
GIT_CONFIG: Final = (
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "core.fsmonitor=false",
    "-c",
    "gc.auto=0",
)


def git_env(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The environment of a git call: ours, minus location variables, plus safety ones.

    Args:
        extra: variables to add last (``GIT_INDEX_FILE`` of a temporary index, ...).
    """
    env = {k: v for k, v in os.environ.items() if k not in _GIT_LOCATION_VARS}
    env["LC_ALL"] = "C"
    env["GIT_TERMINAL_PROMPT"] = "0"
    env["GIT_OPTIONAL_LOCKS"] = "0"
    if extra:
        env.update(extra)
    return env


def _first_error_line(stderr: bytes) -> str:
    """Git's first ``fatal:``/``error:`` line (else its first line), without the prefix."""
    lines = [ln.strip() for ln in stderr.decode("utf-8", "replace").splitlines() if ln.strip()]
    for line in lines:
        for prefix in ("fatal: ", "error: "):
            if line.startswith(prefix):
                return line[len(prefix) :]
    return lines[0] if lines else "no message"


def run_git(
    cwd: str | os.PathLike[str],
    *args: str,
    env: Mapping[str, str] | None = None,
    pass_fds: Sequence[int] = (),
    check: bool = True,
    path: str | os.PathLike[str] | None = None,
) -> subprocess.CompletedProcess[bytes]:
    """Run ``git -C cwd <GIT_CONFIG> args...`` and capture its output.

    Args:
        cwd: the directory git runs in (``-C``).
        *args: the git command and its arguments.
        env: extra environment variables (see :func:`git_env`).
        pass_fds: descriptors the git process inherits. Held locks are passed so that a
            git process outliving a SIGKILLed caller keeps them held until it ends.
        check: raise on a non-zero exit status.
        path: the workspace or repository the call is about, for the error.

    Returns:
        The completed process (stdout and stderr as bytes).

    Raises:
        WorkspaceError: git is missing, cannot start, or (with ``check``) failed; the
            message names the git command and git's first error line.
    """
    argv = ["git", "-C", os.fspath(cwd), *GIT_CONFIG, *args]
    shown = os.fspath(path) if path is not None else None
    try:
        proc = subprocess.run(
            argv,
            env=git_env(env),
            capture_output=True,
            stdin=subprocess.DEVNULL,
            pass_fds=tuple(pass_fds),
            check=False,
        )
    except FileNotFoundError:
        raise WorkspaceError("git is not installed (not found on PATH)", path=shown) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise WorkspaceError(f"cannot run git: {reason}", path=shown) from None
    if check and proc.returncode != 0:
        command = " ".join(a for a in args[:2] if not a.startswith("-"))
        raise WorkspaceError(f"git {command} failed: {_first_error_line(proc.stderr)}", path=shown)
    return proc


@dataclass(frozen=True, slots=True)
class Repository:
    """A checked git repository.

    Attributes:
        top: the top of its work tree, absolute and resolved.
        common_dir: its common git directory (``.git`` of the main work tree), where
            ``worktrees/`` lives; absolute and resolved.
    """

    top: Path
    common_dir: Path


def check_repository(
    path: str | os.PathLike[str],
    *,
    require_clean: bool,
    ignore: Collection[str | os.PathLike[str]] = (),
) -> Repository:
    """Check that ``path`` is in a git work tree, and clean when that is asked for.

    Args:
        path: a directory inside the repository's work tree.
        require_clean: also fail when the work tree has uncommitted changes: modified,
            staged, deleted or new (untracked, not ignored) files. Workspaces are made
            from commits, so such changes would be missing from every workspace.
        ignore: directories whose contents do not count as changes (the runs directory
            when it lies inside the repository); relative to ``path`` or absolute.

    Returns:
        The repository's top and common git directory.

    Raises:
        NotAGitRepositoryError: ``path`` is missing, not in a git repository, or in a
            bare one (no work tree).
        DirtyBaseError: ``require_clean`` and the work tree has uncommitted changes.
        WorkspaceError: git is missing or fails otherwise.

    Example:
        >>> import tempfile
        >>> check_repository(tempfile.mkdtemp(), require_clean=False)
        Traceback (most recent call last):
        ...
        subplan._errors.NotAGitRepositoryError: not a git repository: ...
    """
    shown = os.fspath(path)
    if not Path(path).is_dir():
        why = "not a directory" if Path(path).exists() else "no such directory"
        raise NotAGitRepositoryError(f"not a git repository: {shown} ({why})", path=shown)
    proc = run_git(path, "rev-parse", "--show-toplevel", "--git-common-dir", check=False)
    lines = proc.stdout.decode("utf-8", "surrogateescape").splitlines()
    if proc.returncode != 0 or len(lines) != 2:
        problem = _first_error_line(proc.stderr)
        if "must be run in a work tree" in problem:
            raise NotAGitRepositoryError(
                f"not a git work tree: {shown} (a bare repository or a .git directory)", path=shown
            )
        if "not a git repository" in problem:
            raise NotAGitRepositoryError(f"not a git repository: {shown}", path=shown)
        # dubious ownership (safe.directory), an unreadable .git...: git's reason helps most
        raise NotAGitRepositoryError(
            f"cannot use the git repository {shown}: {problem}", path=shown
        )
    top = Path(os.path.realpath(lines[0]))
    common = Path(os.path.realpath(Path(path, lines[1])))
    repo = Repository(top=top, common_dir=common)
    if require_clean:
        changes = _uncommitted(repo, path, ignore)
        if changes:
            raise DirtyBaseError(str(top), changes)
    return repo


def _uncommitted(
    repo: Repository, path: str | os.PathLike[str], ignore: Collection[str | os.PathLike[str]]
) -> list[str]:
    """The work tree's changed paths (``git status``), leaving out ``ignore``."""
    specs = ["."]
    for item in ignore:
        absolute = os.path.realpath(Path(path, item))
        rel = os.path.relpath(absolute, repo.top)
        if rel == "." or rel == os.pardir or rel.startswith(os.pardir + os.sep):
            continue  # outside the work tree (or all of it): nothing to leave out
        specs.append(f":(top,exclude,literal){rel}")
    proc = run_git(
        repo.top,
        "status",
        "--porcelain=v1",
        "-z",
        "--untracked-files=normal",
        "--",
        *specs,
        path=repo.top,
    )
    found: list[str] = []
    entries = iter(proc.stdout.split(b"\0"))
    for entry in entries:
        if not entry:
            continue
        status = entry[:2]
        found.append(entry[3:].decode("utf-8", "surrogateescape"))
        if b"R" in status or b"C" in status:
            next(entries, None)  # a rename's source path follows
    return found
