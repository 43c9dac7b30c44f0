"""A subplan's changes as a commit on a branch of its own, made without any checkout.

``git read-tree`` of the base into a **temporary index** (``GIT_INDEX_FILE``), ``git apply
--cached`` of the patch, ``git write-tree``, ``git commit-tree`` on the base and
``git update-ref``: no work tree is read or written, and the repository's own index and
HEAD stay as they were. A user or CI can then open one pull request per subplan.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Final

from ._git import run_git

__all__ = ["commit_identity", "commit_message", "subplan_branch", "write_branch"]

#: The commit trailers naming a subplan and its run; ``integrate`` reads them back.
TRAILER_ID: Final = "Subplan-Id"
TRAILER_RUN: Final = "Subplan-Run"
_SHOWN_FILES: Final = 50  # files listed in a commit message before "... and N more"
_FALLBACK_IDENTITY: Final = {
    "GIT_AUTHOR_NAME": "subplan",
    "GIT_AUTHOR_EMAIL": "subplan@localhost",
    "GIT_COMMITTER_NAME": "subplan",
    "GIT_COMMITTER_EMAIL": "subplan@localhost",
}


def subplan_branch(run_id: str, subplan_id: str) -> str:
    """The branch of one subplan's result (``subplan run --workspaces --branches``).

    Example:
        >>> subplan_branch("nightly", "sp-0123456789abcdef")
        'subplan/nightly/sp-0123456789abcdef'
    """
    return f"subplan/{run_id}/{subplan_id}"


def commit_identity(top: str | os.PathLike[str]) -> dict[str, str]:
    """Commit as the repository's user; as ``subplan`` when none is configured.

    Returns:
        Environment variables to add to the git call (none when git has an identity).
    """
    if all(os.environ.get(k) for k in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL")):
        return {}
    proc = run_git(top, "config", "--get", "user.email", check=False)
    return {} if proc.returncode == 0 and proc.stdout.strip() else dict(_FALLBACK_IDENTITY)


def commit_message(
    run_id: str, subplan_id: str, label: str, files: Sequence[str], *, verb: str = "Integrate"
) -> list[str]:
    """The paragraphs of a subplan's commit: subject, its files, the trailers.

    Example:
        >>> commit_message("r1", "sp-1", "src/db", ["src/db/a.py"])[0]
        'Integrate subplan src/db (sp-1)'
    """
    shown = [f"  {f}" for f in files[:_SHOWN_FILES]]
    if len(files) > _SHOWN_FILES:
        shown.append(f"  ... and {len(files) - _SHOWN_FILES} more")
    noun = "file" if len(files) == 1 else "files"
    return [
        f"{verb} subplan {label} ({subplan_id})",
        f"{len(files)} {noun}:\n" + "\n".join(shown),
        f"{TRAILER_ID}: {subplan_id}\n{TRAILER_RUN}: {run_id}",
    ]


def write_branch(
    top: str | os.PathLike[str],
    branch: str,
    base: str,
    patch: str | os.PathLike[str],
    message: Sequence[str],
    *,
    identity: Mapping[str, str] | None = None,
) -> str:
    """Commit ``patch`` on ``base`` and point ``refs/heads/<branch>`` at it.

    Args:
        top: the repository's top.
        branch: the branch (created, or moved to the new commit).
        base: the commit the patch was made against (a full hash).
        patch: a binary patch (``changes.patch``).
        message: the commit message's paragraphs.
        identity: author and committer variables (default :func:`commit_identity`).

    Returns:
        The commit.

    Raises:
        WorkspaceError: the patch does not apply to ``base``, or git fails.
    """
    env = dict(commit_identity(top) if identity is None else identity)
    with tempfile.TemporaryDirectory(prefix="subplan-branch-") as tmp:
        env["GIT_INDEX_FILE"] = str(Path(tmp, "index"))
        run_git(top, "read-tree", base, env=env, path=top)
        run_git(
            top, "apply", "--cached", "--whitespace=nowarn", os.fspath(patch), env=env, path=top
        )
        tree = run_git(top, "write-tree", env=env, path=top).stdout.decode("ascii").strip()
    args = ["commit-tree", "--no-gpg-sign", tree, "-p", base]
    for paragraph in message:
        args += ["-m", paragraph]
    commit = run_git(top, *args, env=env, path=top).stdout.decode("ascii").strip()
    run_git(top, "update-ref", "-m", "subplan run --branches", f"refs/heads/{branch}", commit)
    return commit
