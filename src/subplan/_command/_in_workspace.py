"""Running each attempt in its own git worktree: the policy and the work wrapper.

:class:`WorkspacePolicy` says which repository, which base, whether to keep the
worktrees. :class:`InWorkspaces` wraps the run's work: for every attempt it makes a
workspace (lease first, then a detached worktree at the run's base commit), points
``ctx.workspace`` at the project's directory inside it, calls the work, then saves the
changes as ``changes.patch`` in the attempt's artifacts and removes the worktree. The
files the attempt changed travel back with its result (or its exception), so the report
can list them and flag a subplan that changed files outside its own, or two subplans
that changed the same file. It is a plain picklable object, so it works on the thread
and the process backends alike.
"""

from __future__ import annotations

import contextlib
import os
import posixpath
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._dispatch._results import AttemptContext
from .._errors import ConfigError
from .._model import Subplan
from .._workspace import Workspaces, check_repository
from .._workspace._branches import commit_message, subplan_branch, write_branch

__all__ = ["InWorkspaces", "WorkspacePolicy", "changed_of"]

CHANGED_ATTRIBUTE = "subplan_changed_files"


@dataclass(frozen=True, slots=True)
class WorkspacePolicy:
    """Give every attempt its own git worktree.

    Args:
        repo: the project directory; it must be inside a git work tree. Commands run in
            the same directory inside each worktree.
        base: the commit each worktree starts from (resolved once per run).
        keep: keep the worktrees after the run, for inspection (``subplan workspaces
            clean`` removes them later).
        require_clean: refuse to start when the repository has uncommitted changes
            (they would not be in the worktrees).
        branches: also keep each succeeded attempt's changes as a commit on the run's base,
            on a branch of its own: ``subplan/<run_id>/<subplan_id>`` (made without a
            checkout; the repository's index and HEAD are not touched).
    """

    repo: str | os.PathLike[str]
    base: str = "HEAD"
    keep: bool = False
    require_clean: bool = False
    branches: bool = False

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form for the run's record."""
        return {
            "repo": os.fspath(self.repo),
            "base": self.base,
            "keep": self.keep,
            "require_clean": self.require_clean,
            "branches": self.branches,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> WorkspacePolicy:
        """The policy :meth:`to_dict` wrote."""
        return cls(
            repo=str(data["repo"]),
            base=str(data.get("base", "HEAD")),
            keep=bool(data.get("keep", False)),
            require_clean=bool(data.get("require_clean", False)),
            branches=bool(data.get("branches", False)),
        )


@dataclass(frozen=True, slots=True)
class _InWorkspace:
    """What an attempt in a workspace returned, and the files it changed."""

    value: object
    changed: tuple[str, ...]


class InWorkspaces:
    """Work that runs each attempt of ``work`` in a fresh worktree (see the module).

    Args:
        work: the run's work (or integration) callable.
        policy: the workspace policy.
        runs_dir: the runs directory (worktrees go under ``runs_dir/workspaces``).
        base: the base commit, already resolved to a hash.
        prefix: the project directory's path inside the repository ("" at its top).

    Raises:
        NotAGitRepositoryError: the project is not in a git work tree.
        DirtyBaseError: ``require_clean`` and the repository has uncommitted changes.
    """

    def __init__(
        self,
        work: Callable[..., Any],
        policy: WorkspacePolicy,
        *,
        runs_dir: Path,
        base: str,
        prefix: str,
    ) -> None:
        self.work = work
        self.policy = policy
        self.runs_dir = runs_dir
        self.base = base
        self.prefix = prefix
        # Built once per process (checking the repository runs git), not per attempt;
        # left out when pickled for a worker process, which builds its own.
        self._workspaces: Workspaces | None = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_workspaces": None}

    def _here(self) -> Workspaces:
        if self._workspaces is None:
            self._workspaces = self.workspaces_of(self.policy.repo, self.runs_dir)
        return self._workspaces

    @classmethod
    def prepare(
        cls, work: Callable[..., Any], policy: WorkspacePolicy, runs_dir: Path
    ) -> InWorkspaces:
        """Check the repository, recover what killed runs left, resolve the base."""
        if not isinstance(policy, WorkspacePolicy):
            raise ConfigError(f"workspaces must be a WorkspacePolicy, got {policy!r}")
        project = Path(os.path.realpath(policy.repo))
        repository = check_repository(project, require_clean=policy.require_clean)
        workspaces = cls.workspaces_of(repository.top, runs_dir)
        workspaces.recover()
        base = workspaces.resolve(policy.base)
        prefix = project.relative_to(Path(os.path.realpath(repository.top))).as_posix()
        made = cls(
            work, policy, runs_dir=runs_dir, base=base, prefix="" if prefix == "." else prefix
        )
        made._workspaces = workspaces
        return made

    @staticmethod
    def workspaces_of(repo: str | os.PathLike[str], runs_dir: Path) -> Workspaces:
        """The run directory's workspaces of ``repo``."""
        return Workspaces(repo, runs_dir / "workspaces", artifacts_root=runs_dir, lease_timeout=5.0)

    def _relative(self, path: str) -> str:
        """A repository path as the plan names files: relative to the project directory
        (``../x`` for a file outside it)."""
        return posixpath.relpath(path, self.prefix) if self.prefix else path

    def __call__(self, subplan: Subplan, ctx: AttemptContext) -> object:
        workspaces = self._here()
        ws = workspaces.create(ctx.run_id, ctx.subplan_id, base=self.base)
        changed: tuple[str, ...] = ()
        try:
            ctx.workspace = ws.path / self.prefix if self.prefix else ws.path
            try:
                value = self.work(subplan, ctx)
            finally:
                removal = workspaces.release(
                    ws, artifacts_dir=ctx.artifacts_dir, keep=self.policy.keep
                )
                changed = tuple(self._relative(path) for path in removal.changed)
            if self.policy.branches and removal.patch is not None:
                top = workspaces.repository.top
                message = commit_message(
                    ctx.run_id, ctx.subplan_id, subplan.label, removal.changed, verb="Work of"
                )
                branch = subplan_branch(ctx.run_id, ctx.subplan_id)
                write_branch(top, branch, self.base, removal.patch, message)
        except BaseException as exc:
            with contextlib.suppress(AttributeError):  # an exception that takes no attributes
                setattr(exc, CHANGED_ATTRIBUTE, changed)
            raise
        return _InWorkspace(value, changed)


def changed_of(value: object, error: BaseException | None) -> tuple[object, tuple[str, ...] | None]:
    """(the work's own value, the files changed or None) from what an attempt returned."""
    if isinstance(value, _InWorkspace):
        return value.value, value.changed
    if error is not None:
        changed = getattr(error, CHANGED_ATTRIBUTE, None)
        if isinstance(changed, tuple):
            return value, changed
    return value, None
