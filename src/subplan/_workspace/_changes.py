"""What a workspace changed against its base: the changed files and a binary-safe patch.

The worktree is snapshotted into a **temporary index** (``GIT_INDEX_FILE``): a copy of
the worktree's own index (so unchanged files are not hashed again), then
``git add --all``, which takes modified, deleted and new untracked files (ignored files
stay out). ``git diff --cached <base>`` of that index then covers everything the work
did, committed or not, and ``--binary`` makes the patch carry binary files too. The
worktree's real index, its HEAD and its files are left as they were; new files' contents
are written to the object database, like any ``git add``.

Git runs with ``GIT_DIR`` and ``GIT_WORK_TREE`` set to the worktree's own git directory
and top, found through its ``.git`` file and checked both ways: a worktree whose ``.git``
file is missing or broken would otherwise make git find the repository *around* it and
diff that instead.
"""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

from .._errors import WorkspaceError
from .._fs import write_atomic
from ._git import run_git

if TYPE_CHECKING:
    from ._workspaces import Workspace

__all__ = ["Changes", "changed_files", "save_patch", "snapshot", "worktree_admin", "write_patch"]

_DOT_GIT_MAX: Final = 4096
_DIFF_OPTIONS: Final = (
    "--no-renames",  # a rename is its two paths: both count as changed
    "--no-ext-diff",
    "--no-textconv",
    "--no-color",
    "--no-relative",
    "--src-prefix=a/",
    "--dst-prefix=b/",
    "--submodule=short",
)


@dataclass(frozen=True, slots=True)
class Changes:
    """A workspace's changes against its base.

    Attributes:
        files: the changed paths (modified, new, deleted; both paths of a rename),
            relative to the worktree's top, ``/``-separated, sorted.
        patch: the binary patch (``git apply`` on the base reproduces the work); empty
            when nothing changed or when it was not asked for.
    """

    files: tuple[str, ...]
    patch: bytes = b""


def _read_small(path: Path) -> str | None:
    try:
        with path.open("rb") as handle:
            return handle.read(_DOT_GIT_MAX).decode("utf-8", "surrogateescape").strip()
    except OSError:
        return None


def worktree_admin(path: str | os.PathLike[str]) -> Path | None:
    """The git directory of the linked worktree at ``path``, or None when it is not one.

    ``path/.git`` must be a regular file ``gitdir: <dir>``, and ``<dir>/gitdir`` must
    point back at ``path/.git``; git writes both when it adds a worktree.
    """
    top = Path(os.path.realpath(path))
    dot_git = top / ".git"
    if not dot_git.is_file() or dot_git.is_symlink():
        return None
    text = _read_small(dot_git)
    if text is None or not text.startswith("gitdir:"):
        return None
    admin = Path(os.path.realpath(top / text[len("gitdir:") :].strip()))
    back = _read_small(admin / "gitdir")
    if not back or os.path.realpath(admin / back) != os.fspath(dot_git):
        return None
    return admin


def snapshot(
    path: str | os.PathLike[str],
    base: str,
    *,
    patch: bool = True,
    pass_fds: Sequence[int] = (),
) -> Changes:
    """The changes of the worktree at ``path`` against commit ``base``.

    Args:
        path: the worktree's top.
        base: the commit to compare with (a full hash).
        patch: also make the patch (else only the file list).
        pass_fds: descriptors of held locks, passed to git.

    Raises:
        WorkspaceError: ``path`` is not a valid worktree, or git fails (an unreadable
            file, a full disk...).
    """
    shown = os.fspath(path)
    admin = worktree_admin(path)
    if admin is None:
        raise WorkspaceError(
            f"cannot read the changes of {shown}: not a git worktree (missing or broken .git)",
            path=shown,
        )
    top = os.path.realpath(path)
    with tempfile.TemporaryDirectory(prefix="subplan-index-") as tmp:
        index = Path(tmp, "index")
        try:
            shutil.copyfile(admin / "index", index)
        except FileNotFoundError:
            pass  # no index yet: ``add --all`` hashes every file, which is slower but right
        except OSError as exc:
            raise WorkspaceError(
                f"cannot read the changes of {shown}: cannot copy its index: {exc.strerror}",
                path=shown,
            ) from None
        env = {"GIT_DIR": os.fspath(admin), "GIT_WORK_TREE": top, "GIT_INDEX_FILE": str(index)}
        run_git(top, "add", "--all", env=env, pass_fds=pass_fds, path=shown)
        names = run_git(
            top,
            "diff",
            "--cached",
            "--name-only",
            "-z",
            *_DIFF_OPTIONS,
            base,
            "--",
            env=env,
            pass_fds=pass_fds,
            path=shown,
        ).stdout
        files = tuple(sorted(n.decode("utf-8", "surrogateescape") for n in names.split(b"\0") if n))
        data = b""
        if patch and files:
            data = run_git(
                top,
                "diff",
                "--cached",
                "--binary",
                *_DIFF_OPTIONS,
                base,
                "--",
                env=env,
                pass_fds=pass_fds,
                path=shown,
            ).stdout
    return Changes(files, data)


def write_patch(dest: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``dest`` atomically, keeping a different older file beside it.

    An existing ``dest`` with other content is first linked to ``<stem>.<n><suffix>``
    (``changes.1.patch``, the first free ``n``): a patch is saved work, never overwritten.

    Raises:
        OSError: the directory or file cannot be written.
    """
    target = Path(dest)
    try:
        old = target.read_bytes()
    except FileNotFoundError:
        old = None
    if old == data:
        return target
    if old is not None:
        for n in itertools.count(1):
            aside = target.with_name(f"{target.stem}.{n}{target.suffix}")
            try:
                os.link(target, aside)
            except FileExistsError:
                continue
            break
    return write_atomic(target, data)


def save_changes(
    path: str | os.PathLike[str], base: str, dest: Path, *, pass_fds: Sequence[int] = ()
) -> tuple[Changes, Path | None]:
    """Snapshot the worktree at ``path`` and write its patch to ``dest`` when it changed.

    Returns:
        The changes (without the patch bytes) and the patch's path, or None when nothing
        changed.

    Raises:
        WorkspaceError: the changes cannot be read, or the patch cannot be written.
    """
    changes = snapshot(path, base, patch=True, pass_fds=pass_fds)
    if not changes.files:
        return changes, None
    try:
        written = write_patch(dest, changes.patch)
    except OSError as exc:
        raise WorkspaceError(
            f"cannot save the changes of {os.fspath(path)} to {dest}: "
            f"{exc.strerror or type(exc).__name__}",
            path=os.fspath(path),
        ) from None
    return Changes(changes.files), written


def changed_files(ws: Workspace) -> list[str]:
    """The files the workspace changed against its base, new untracked files included.

    Args:
        ws: the workspace.

    Returns:
        Paths relative to the workspace's top, ``/``-separated, sorted.

    Raises:
        WorkspaceError: the workspace is not a valid worktree, or git fails.

    Example (with a repository at hand)::

        changed_files(ws)
        ['src/new.py', 'src/old.py']
    """
    return list(snapshot(ws.path, ws.base, patch=False).files)


def save_patch(ws: Workspace, dest: str | os.PathLike[str]) -> Path | None:
    """Save the workspace's changes against its base as a binary patch at ``dest``.

    New untracked files are included; the worktree is not changed. An older, different
    file at ``dest`` is kept beside it (see :func:`write_patch`).

    Args:
        ws: the workspace.
        dest: the patch file to write (parents are created).

    Returns:
        ``dest``, or None when nothing changed (no file is written).

    Raises:
        WorkspaceError: the changes cannot be read or the patch cannot be written.

    Example (with a repository at hand)::

        save_patch(ws, artifacts / "changes.patch")
        PosixPath('.../changes.patch')
    """
    return save_changes(ws.path, ws.base, Path(dest))[1]
