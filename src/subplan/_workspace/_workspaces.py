"""Isolated workspaces: a detached git worktree per subplan attempt.

Layout under the workspaces root (``<runs_dir>/workspaces``)::

    <root>/<run_id>/<subplan_id>/     the worktree (the command's working directory)
    <root>/.leases/<key>.lock         the workspace's lease (never unlinked)
    <root>/.state/<key>.json          what subplan is doing to it: creating, ready, removing

``<key>`` is the hash of the workspace's real path (see :func:`lease_key`).

Every change to a workspace follows the same order:

1. **Lease first.** Nothing touches a workspace (create, release, clean, recover)
   without its lease, so two runs never share one and a live one is never recovered.
2. **Intent on disk.** The state file says ``creating`` before ``git worktree add``
   starts and ``ready`` once the checkout is complete; it says ``removing`` only after
   the changes were saved as a patch (or the caller forced the removal). A workspace
   whose state says ``creating`` or ``removing`` therefore holds nothing anyone needs,
   and only such a one is ever deleted by other means than ``git worktree remove``
   (when a killed ``git`` left it without a valid ``.git`` file).
3. **Metadata under the worktree lock.** ``git worktree add --no-checkout``, ``remove``
   and ``prune`` hold the repository's worktree lock (see :func:`worktree_lock`); the
   checkout itself (``git reset --hard`` in the new worktree, what ``worktree add`` runs
   too) touches only the new worktree and runs outside it, so creations check out in
   parallel.

A process killed at any point leaves a workspace that :meth:`Workspaces.recover` (or the
next :meth:`Workspaces.create` of the same path) disposes of: a half-made worktree, a
``.git/worktrees/<name>`` entry whose directory is gone, git's ``locked`` and
``index.lock`` files of a killed ``git worktree add``. A complete (``ready``) worktree is
never disposed of without saving its changes first.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import os
import re
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, Literal

from .._clock import Clock, SystemClock
from .._errors import InputError, WorkspaceError, WorkspaceLeasedError
from .._fs import write_atomic
from ._changes import Changes, save_changes, worktree_admin
from ._git import Repository, check_repository, run_git
from ._lease import WorkspaceLease, acquire_lease, lease_holder, lease_key, worktree_lock

__all__ = ["Removal", "Workspace", "WorkspaceInfo", "WorkspaceState", "Workspaces"]

Phase = Literal["creating", "ready", "removing"]
#: What :meth:`Workspaces.list` says of a workspace.
WorkspaceState = Literal["ready", "creating", "removing", "missing", "broken"]

_LEASES: Final = ".leases"
_STATE: Final = ".state"
_PATCH: Final = "changes.patch"
_SHA_RE: Final = re.compile(r"[0-9a-f]{40}(?:[0-9a-f]{24})?")
_MAX_ID: Final = 128


@dataclass(frozen=True, slots=True)
class Workspace:
    """A created workspace, leased to its creator until :meth:`Workspaces.release`.

    Attributes:
        path: the worktree's top (real path); run the subplan's command here.
        run_id: the run.
        subplan_id: the subplan.
        base: the commit it was made from (full hash); its HEAD is detached there.
        lease: the held lease.
    """

    path: Path
    run_id: str
    subplan_id: str
    base: str
    lease: WorkspaceLease = field(compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class Removal:
    """What releasing or cleaning a workspace did.

    Attributes:
        path: the workspace.
        run_id: its run.
        subplan_id: its subplan.
        changed: the files it changed against its base (empty when forced or skipped).
        patch: where its changes were saved (``changes.patch``), or None when nothing
            changed, nothing was saved (forced) or it was skipped.
        removed: whether the worktree is gone.
        reason: why it was not removed (``"kept"``, ``"leased by ..."``, the error that
            stopped saving its changes...), or None when removed.
    """

    path: Path
    run_id: str
    subplan_id: str
    changed: tuple[str, ...] = ()
    patch: Path | None = None
    removed: bool = False
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class WorkspaceInfo:
    """One workspace as :meth:`Workspaces.list` found it.

    Attributes:
        path: the workspace.
        run_id: its run.
        subplan_id: its subplan.
        base: the commit it was made from, or None when unknown.
        state: ``ready`` (a complete worktree), ``creating`` or ``removing`` (being made
            or removed, or left half-made by a killed process when not leased),
            ``missing`` (known to git or subplan, but its directory is gone) or
            ``broken`` (a directory that is not a valid worktree, and that subplan
            never deletes).
        dirty: whether it has changes against its base (uncommitted, untracked or
            committed); None when it cannot be told (not ``ready``).
        holder: who holds its lease (``pid N on HOST since ...``), or None when free.
    """

    path: Path
    run_id: str
    subplan_id: str
    base: str | None
    state: WorkspaceState
    dirty: bool | None
    holder: str | None

    @property
    def leased(self) -> bool:
        """Whether someone holds its lease."""
        return self.holder is not None


@dataclass(frozen=True, slots=True)
class _State:
    path: Path
    run_id: str
    subplan_id: str
    base: str
    phase: Phase


def _check_id(kind: str, value: str) -> str:
    if (
        not isinstance(value, str)
        or not value
        or value.startswith(".")
        or "/" in value
        or "\0" in value
        or len(value) > _MAX_ID
    ):
        raise InputError(
            f"invalid {kind} {value!r} for a workspace: it must be a file name "
            f"(no '/', not starting with '.', at most {_MAX_ID} characters)",
            path=str(value),
        )
    return value


def _entries(directory: str | os.PathLike[str]) -> list[os.DirEntry[str]]:
    """The entries of ``directory`` by name; none when it is missing (or not a directory)."""
    try:
        with os.scandir(directory) as it:
            return sorted(it, key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def _remove_tree(path: Path) -> None:
    """Delete ``path``; only for contents that the state file says are disposable."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


class Workspaces:
    """Detached git worktrees of one repository, one per subplan, under ``root``.

    Args:
        repo: a directory in the repository's work tree.
        root: where workspaces live (``<runs_dir>/workspaces``); created when needed.
        artifacts_root: where ``<run_id>/<subplan_id>/changes.patch`` goes when
            :meth:`release` is given no directory, and when :meth:`clean` or
            :meth:`create` saves a leftover's changes; default ``root``'s parent (the
            runs directory).
        require_clean: fail now if the repository has uncommitted changes (outside
            ``root`` and ``artifacts_root``).
        lock_timeout: seconds to wait for the repository's worktree lock.
        lease_timeout: seconds :meth:`create` waits for a busy lease (0: fail at once).
        clock: the time source of those waits.

    Raises:
        NotAGitRepositoryError: ``repo`` is not in a git work tree.
        DirtyBaseError: ``require_clean`` and the work tree has uncommitted changes.

    Example:
        >>> import subprocess, tempfile
        >>> repo = Path(tempfile.mkdtemp())
        >>> git = ["git", "-C", str(repo), "-c", "user.name=doc", "-c", "user.email=doc@x"]
        >>> _ = (repo / "a.py").write_text("a = 1")
        >>> for args in (["init", "-q"], ["add", "a.py"], ["commit", "-qm", "base"]):
        ...     _ = subprocess.run([*git, *args], check=True)
        >>> wss = Workspaces(repo, repo / ".subplan" / "workspaces")
        >>> ws = wss.create("run-1", "sp-1")
        >>> _ = (ws.path / "a.py").write_text("a = 2")
        >>> _ = (ws.path / "new.py").write_text("b = 1")
        >>> removal = wss.release(ws)
        >>> removal.changed, removal.removed, ws.path.exists()
        (('a.py', 'new.py'), True, False)
        >>> removal.patch.relative_to(repo).as_posix()
        '.subplan/run-1/sp-1/changes.patch'
    """

    def __init__(
        self,
        repo: str | os.PathLike[str],
        root: str | os.PathLike[str],
        *,
        artifacts_root: str | os.PathLike[str] | None = None,
        require_clean: bool = False,
        lock_timeout: float = 300.0,
        lease_timeout: float = 0.0,
        clock: Clock | None = None,
    ) -> None:
        self.root = Path(os.path.realpath(root))
        self.artifacts_root = (
            self.root.parent if artifacts_root is None else Path(os.path.realpath(artifacts_root))
        )
        self.repository: Repository = check_repository(
            repo, require_clean=require_clean, ignore=(self.root, self.artifacts_root)
        )
        self.lock_timeout = lock_timeout
        self.lease_timeout = lease_timeout
        self._clock = clock or SystemClock()
        self._leases = self.root / _LEASES
        self._states_dir = self.root / _STATE

    def __repr__(self) -> str:
        return f"Workspaces({os.fspath(self.repository.top)!r}, {os.fspath(self.root)!r})"

    # -- paths -------------------------------------------------------------------------

    def path_of(self, run_id: str, subplan_id: str) -> Path:
        """The workspace path of ``subplan_id`` in ``run_id``.

        Raises:
            InputError: an id that cannot be a file name.

        Example (with a repository at hand)::

            wss.path_of("r1", "sp-1")
            PosixPath('/repo/.subplan/workspaces/r1/sp-1')
        """
        return self.root / _check_id("run id", run_id) / _check_id("subplan id", subplan_id)

    def artifacts_dir(self, run_id: str, subplan_id: str) -> Path:
        """The default artifacts directory of a workspace's patch."""
        return (
            self.artifacts_root / _check_id("run id", run_id) / _check_id("subplan id", subplan_id)
        )

    def resolve(self, base: str) -> str:
        """The full hash of commit ``base`` (a ref, a hash, ``HEAD~2``...).

        Resolve the base once per run and pass the hash to :meth:`create`, so that every
        workspace starts from the same commit even if the branch moves meanwhile.

        Raises:
            WorkspaceError: ``base`` names no commit.
        """
        if not base or base.startswith("-"):
            raise WorkspaceError(f"invalid base {base!r}", path=os.fspath(self.repository.top))
        proc = run_git(
            self.repository.top,
            "rev-parse",
            "--verify",
            "--quiet",
            f"{base}^{{commit}}",
            check=False,
        )
        sha = proc.stdout.decode("ascii", "replace").strip()
        if proc.returncode != 0 or not _SHA_RE.fullmatch(sha):
            raise WorkspaceError(
                f"base {base!r} is not a commit in {self.repository.top}",
                path=os.fspath(self.repository.top),
            )
        return sha

    # -- create and release ------------------------------------------------------------

    def create(self, run_id: str, subplan_id: str, *, base: str = "HEAD") -> Workspace:
        """Make a fresh workspace for ``subplan_id``: a worktree detached at ``base``.

        The lease is taken first. A leftover at the same path is dealt with under it: a
        half-made one (from a killed process) is disposed of; a complete one from an
        earlier attempt has its changes saved to ``changes.patch`` in
        :meth:`artifacts_dir` (an older, different patch there is kept beside it), then
        is removed; a directory that is not a worktree is an error, never deleted.

        Args:
            run_id: the run.
            subplan_id: the subplan.
            base: the commit to check out (resolved with :meth:`resolve`).

        Returns:
            The workspace, leased to the caller until :meth:`release`.

        Raises:
            WorkspaceLeasedError: another holder has the workspace.
            WorkspaceError: ``base`` is not a commit, a leftover cannot be saved or
                removed, or git fails.
            InputError: an id that cannot be a file name.
        """
        path = self.path_of(run_id, subplan_id)
        lease = acquire_lease(
            path, leases_dir=self._leases, timeout=self.lease_timeout, clock=self._clock
        )
        try:
            sha = self.resolve(base)
            self._clear(path, run_id, subplan_id, lease)
            try:
                self._add(_State(path, run_id, subplan_id, sha, "creating"), lease)
            except Exception:
                if self._read_state(path) is not None:  # git was reached: clear up after it
                    with contextlib.suppress(WorkspaceError, OSError):
                        self._dispose(path, lease)  # half-made and ours; else recover() will
                        self._drop_state(path)
                raise
            self._write_state(_State(path, run_id, subplan_id, sha, "ready"))
        except BaseException:
            lease.release()
            raise
        return Workspace(path, run_id, subplan_id, sha, lease)

    def release(
        self,
        ws: Workspace,
        *,
        artifacts_dir: str | os.PathLike[str] | None = None,
        keep: bool = False,
        force: bool = False,
    ) -> Removal:
        """Save the workspace's changes, remove it (unless ``keep``), give up its lease.

        Args:
            ws: a workspace from :meth:`create`, still leased.
            artifacts_dir: where ``changes.patch`` goes (default :meth:`artifacts_dir`).
                An older, different ``changes.patch`` there is kept as
                ``changes.<n>.patch``.
            keep: keep the worktree (its changes are still saved); it stays ``ready``.
            force: remove it without saving (or listing) its changes.

        Returns:
            What was done: the changed files, the patch, whether it was removed.

        Raises:
            WorkspaceError: the changes could not be saved (the workspace is left as it
                is, with its work), or git could not remove it, or ``ws`` was released
                already. The lease is given up in every case.

        Example (with a repository at hand)::

            removal = wss.release(ws)
            removal.removed, removal.changed
            (True, ('new.py', 'src/a.py'))
        """
        if not ws.lease.held:
            raise WorkspaceError(
                f"workspace {ws.path} was released already", path=os.fspath(ws.path)
            )
        dest = (
            Path(artifacts_dir)
            if artifacts_dir is not None
            else self.artifacts_dir(ws.run_id, ws.subplan_id)
        )
        try:
            state = _State(ws.path, ws.run_id, ws.subplan_id, ws.base, "ready")
            return self._finish(state, ws.lease, dest, keep=keep, force=force)
        finally:
            ws.lease.release()

    # -- inspection and clean-up -------------------------------------------------------

    def list(self, run_id: str | None = None) -> builtins.list[WorkspaceInfo]:
        """Every workspace under the root (of ``run_id`` only, when given).

        It reads and never changes anything; a lease is probed, not taken.

        Returns:
            One :class:`WorkspaceInfo` per workspace, by run id then subplan id.

        Example (with a repository at hand)::

            infos = wss.list("r1")
            [(i.subplan_id, i.state, i.dirty, i.leased) for i in infos]
            [('sp-1', 'ready', True, False)]
        """
        if run_id is not None:
            _check_id("run id", run_id)
        found: dict[Path, tuple[str, str]] = {}
        for run_dir in _entries(self.root):
            if run_dir.name.startswith(".") or not run_dir.is_dir(follow_symlinks=False):
                continue
            if run_id is not None and run_dir.name != run_id:
                continue
            for entry in _entries(run_dir.path):
                if not entry.name.startswith(".") and (
                    entry.is_dir(follow_symlinks=False) or entry.is_symlink()
                ):
                    found[Path(entry.path)] = (run_dir.name, entry.name)
        for state in self._states():
            if run_id is None or state.run_id == run_id:
                found.setdefault(state.path, (state.run_id, state.subplan_id))
        return [self._info(path, *ids) for path, ids in sorted(found.items(), key=lambda i: i[1])]

    def clean(self, run_id: str | None = None, *, force: bool = False) -> builtins.list[Removal]:
        """Remove the workspaces under the root (of ``run_id`` only), saving their work.

        A leased workspace is skipped. A complete one has its changes saved to
        ``changes.patch`` in :meth:`artifacts_dir` first, and is skipped when they cannot
        be saved; ``force`` removes it without saving. A half-made one is disposed of.
        A directory that is not a worktree is skipped, even with ``force``. Git's
        worktree metadata is pruned last.

        Returns:
            One :class:`Removal` per workspace, in :meth:`list` order.

        Example (with a repository at hand)::

            [(r.subplan_id, r.removed, r.reason) for r in wss.clean()]
            [('sp-1', True, None), ('sp-2', False, 'leased by pid 4242 on host since ...')]
        """
        results = []
        for info in self.list(run_id):
            results.append(self._clean_one(info, force=force))
        self._prune()
        return results

    def recover(self) -> builtins.list[Path]:
        """Dispose of what killed processes left behind; keep every complete workspace.

        Under each one's lease (a leased workspace is someone's live work and is
        skipped): a workspace whose state says ``creating`` or ``removing`` is removed
        (its work, if any, was saved before ``removing`` was written); a git worktree
        entry under the root whose directory is gone is removed; then
        ``git worktree prune`` clears git's remaining stale entries and empty run
        directories are removed.

        Returns:
            The workspaces disposed of.

        Raises:
            WorkspaceError: git fails, or the worktree lock stays busy.
        """
        disposed: builtins.list[Path] = []
        candidates = {s.path for s in self._states() if s.phase != "ready"}
        candidates |= {
            s.path for s in self._states() if s.phase == "ready" and not os.path.lexists(s.path)
        }
        candidates |= {p for p in self._registered_under_root() if not os.path.lexists(p)}
        for path in sorted(candidates):
            try:
                lease = acquire_lease(path, leases_dir=self._leases, clock=self._clock)
            except WorkspaceLeasedError:
                continue
            with lease:
                state = self._read_state(path)
                half_made = state is not None and state.phase != "ready"
                if not half_made and os.path.lexists(path):
                    continue  # made meanwhile, or not ours to judge: it may hold work
                self._dispose(path, lease)
                self._drop_state(path)
                disposed.append(path)
        self._prune()
        return disposed

    # -- internals ---------------------------------------------------------------------

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        with worktree_lock(
            self.repository.common_dir, timeout=self.lock_timeout, clock=self._clock
        ) as fd:
            yield fd

    def _add(self, state: _State, lease: WorkspaceLease) -> None:
        top, path, sha = self.repository.top, state.path, state.base
        with self._locked() as lock_fd:
            if os.path.lexists(path):  # made meanwhile by someone without the lease: not ours
                raise WorkspaceError(
                    f"cannot create workspace {path}: something else created it meanwhile",
                    path=os.fspath(path),
                )
            self._write_state(state)  # "creating": from here on, recover() may dispose of it
            run_git(
                top,
                "worktree",
                "add",
                "--detach",
                "--no-checkout",
                "--",
                os.fspath(path),
                sha,
                pass_fds=(lease.fileno(), lock_fd),
                path=path,
            )
        # The checkout touches only the new worktree: no worktree lock needed.
        admin = worktree_admin(path)
        if admin is None:
            raise WorkspaceError(
                f"git worktree add made no valid worktree at {path}", path=str(path)
            )
        env = {"GIT_DIR": os.fspath(admin), "GIT_WORK_TREE": os.fspath(path)}
        run_git(
            path,
            "reset",
            "--hard",
            "--quiet",
            "--no-recurse-submodules",
            env=env,
            pass_fds=(lease.fileno(),),
            path=path,
        )

    def _clear(self, path: Path, run_id: str, subplan_id: str, lease: WorkspaceLease) -> None:
        """Make way for a new worktree at ``path`` (we hold its lease)."""
        state = self._read_state(path)
        exists = os.path.lexists(path)
        if state is not None and state.phase != "ready":
            self._dispose(path, lease)
            self._drop_state(path)
            return
        if not exists and not self._registered(path):
            if state is not None:
                self._drop_state(path)
            return
        if exists and worktree_admin(path) is None:
            raise WorkspaceError(
                f"cannot create workspace {path}: it exists and is not a git worktree; "
                "move it away",
                path=os.fspath(path),
            )
        old = state or _State(path, run_id, subplan_id, self._head(path) or "", "ready")
        self._finish(old, lease, self.artifacts_dir(run_id, subplan_id), keep=False, force=False)

    def _finish(
        self, state: _State, lease: WorkspaceLease, dest: Path, *, keep: bool, force: bool
    ) -> Removal:
        """Save a ready workspace's changes, then remove it unless ``keep``."""
        path = state.path
        changes, patch = Changes(()), None
        if not force and os.path.lexists(path):
            if not state.base:
                raise WorkspaceError(
                    f"cannot save the changes of {path}: its base commit is unknown",
                    path=os.fspath(path),
                )
            changes, patch = save_changes(
                path, state.base, dest / _PATCH, pass_fds=(lease.fileno(),)
            )
        ids = (path, state.run_id, state.subplan_id)
        if keep:
            return Removal(*ids, changes.files, patch, removed=False, reason="kept")
        self._write_state(_State(path, state.run_id, state.subplan_id, state.base, "removing"))
        self._dispose(path, lease)
        self._drop_state(path)
        return Removal(*ids, changes.files, patch, removed=True)

    def _clean_one(self, info: WorkspaceInfo, *, force: bool) -> Removal:
        ids = (info.path, info.run_id, info.subplan_id)
        try:
            lease = acquire_lease(info.path, leases_dir=self._leases, clock=self._clock)
        except WorkspaceLeasedError as exc:
            return Removal(*ids, reason=f"leased by {exc.holder or 'another process'}")
        with lease:
            state = self._read_state(info.path)
            exists = os.path.lexists(info.path)
            try:
                if (state is not None and state.phase != "ready") or not exists:
                    self._dispose(info.path, lease)
                    self._drop_state(info.path)
                    return Removal(*ids, removed=True)
                if worktree_admin(info.path) is None:
                    return Removal(
                        *ids, reason="not a git worktree (no valid .git file): move it by hand"
                    )
                old = state or _State(
                    info.path, info.run_id, info.subplan_id, self._head(info.path) or "", "ready"
                )
                dest = self.artifacts_dir(info.run_id, info.subplan_id)
                return self._finish(old, lease, dest, keep=False, force=force)
            except WorkspaceError as exc:
                return Removal(*ids, reason=str(exc))

    def _dispose(self, path: Path, lease: WorkspaceLease) -> None:
        """Remove the worktree at ``path`` and git's entry for it: no changes are saved.

        Only for a workspace whose state says its contents are disposable (creating,
        removing), or that is gone already; we hold its lease.
        """
        with self._locked() as lock_fd:
            fds = (lease.fileno(), lock_fd)
            if os.path.lexists(path) and worktree_admin(path) is None:
                # A killed git left it without a valid .git file: git cannot remove it.
                _remove_tree(path)
            for _ in range(3):
                if not os.path.lexists(path) and not self._registered(path):
                    break
                run_git(
                    self.repository.top,
                    "worktree",
                    "remove",
                    "--force",
                    "--force",  # twice: also when git's own "initializing" lock is left
                    "--",
                    os.fspath(path),
                    pass_fds=fds,
                    path=path,
                )
            else:
                raise WorkspaceError(
                    f"cannot remove workspace {path}: git leaves it in place", path=str(path)
                )
            for orphan in self._orphans(path.name):
                _remove_tree(orphan)

    def _prune(self) -> None:
        """``git worktree prune`` and remove empty run directories, under the lock."""
        with self._locked() as lock_fd:
            run_git(self.repository.top, "worktree", "prune", pass_fds=(lock_fd,))
            # Under the lock: a concurrent ``worktree add`` may be about to use the directory.
            for run_dir in _entries(self.root):
                if not run_dir.name.startswith(".") and run_dir.is_dir(follow_symlinks=False):
                    with contextlib.suppress(OSError):
                        Path(run_dir.path).rmdir()

    def _admin_entries(self) -> Iterator[tuple[Path, str | None]]:
        """Each ``<common>/worktrees/<name>`` and the ``.git`` path its gitdir names."""
        base = self.repository.common_dir / "worktrees"
        for entry in _entries(base):
            if not entry.is_dir(follow_symlinks=False):
                continue
            admin = Path(entry.path)
            try:
                text = (admin / "gitdir").read_text("utf-8", "surrogateescape").strip()
            except OSError:
                yield admin, None
                continue
            yield admin, os.path.realpath(admin / text) if text else None

    def _registered(self, path: Path) -> bool:
        target = os.fspath(Path(os.path.realpath(path), ".git"))
        return any(dot_git == target for _, dot_git in self._admin_entries())

    def _registered_under_root(self) -> builtins.list[Path]:
        prefix = os.fspath(self.root) + os.sep
        out = []
        for _, dot_git in self._admin_entries():
            if dot_git and dot_git.startswith(prefix) and dot_git.endswith(os.sep + ".git"):
                wt = Path(dot_git).parent
                if wt.parent.parent == self.root:
                    out.append(wt)
        return out

    def _orphans(self, name: str) -> builtins.list[Path]:
        """Entries a ``worktree add`` killed before it wrote ``gitdir`` left for ``name``.

        Git lists them nowhere and never prunes them (they hold its ``locked`` file).
        Called under the worktree lock, so no ``worktree add`` of ours is under way, and
        git names the entry after the worktree's directory (``<name>``, ``<name>1``...).
        """
        pattern = re.compile(re.escape(name) + r"[0-9]*")
        return [
            admin
            for admin, dot_git in self._admin_entries()
            if dot_git is None and pattern.fullmatch(admin.name) and not (admin / "gitdir").exists()
        ]

    def _head(self, path: Path) -> str | None:
        admin = worktree_admin(path)
        if admin is None:
            return None
        try:
            head = (admin / "HEAD").read_text("ascii", "replace").strip()
        except OSError:
            return None
        if _SHA_RE.fullmatch(head):
            return head
        proc = run_git(
            path,
            "rev-parse",
            "--verify",
            "--quiet",
            "HEAD",
            env={"GIT_DIR": os.fspath(admin), "GIT_WORK_TREE": os.fspath(path)},
            check=False,
        )
        sha = proc.stdout.decode("ascii", "replace").strip()
        return sha if proc.returncode == 0 and _SHA_RE.fullmatch(sha) else None

    def _dirty(self, path: Path, base: str) -> bool | None:
        admin = worktree_admin(path)
        if admin is None:
            return None
        env = {"GIT_DIR": os.fspath(admin), "GIT_WORK_TREE": os.fspath(path)}
        proc = run_git(
            path,
            "status",
            "--porcelain=v1",
            "-z",
            "--untracked-files=normal",
            env=env,
            check=False,
        )
        if proc.returncode != 0:
            return None
        return bool(proc.stdout) or self._head(path) != base

    def _info(self, path: Path, run_id: str, subplan_id: str) -> WorkspaceInfo:
        state = self._read_state(path)
        holder = lease_holder(path, leases_dir=self._leases)
        exists = os.path.lexists(path)
        valid = exists and worktree_admin(path) is not None
        kind: WorkspaceState
        if state is not None and state.phase != "ready":
            kind = state.phase
        elif valid:
            kind = "ready"
        elif exists:
            kind = "broken"
        else:
            kind = "missing"
        base = state.base if state is not None and state.base else None
        if base is None and valid:
            base = self._head(path)
        dirty = self._dirty(path, base) if kind == "ready" and base else None
        return WorkspaceInfo(path, run_id, subplan_id, base, kind, dirty, holder)

    # -- state files -------------------------------------------------------------------

    def _state_file(self, path: Path) -> Path:
        return self._states_dir / f"{lease_key(path)}.json"

    def _write_state(self, state: _State) -> None:
        data = {
            "path": os.fspath(state.path),
            "run_id": state.run_id,
            "subplan_id": state.subplan_id,
            "base": state.base,
            "phase": state.phase,
        }
        try:
            write_atomic(self._state_file(state.path), json.dumps(data, sort_keys=True) + "\n")
        except OSError as exc:
            raise WorkspaceError(
                f"cannot write the state of workspace {state.path}: {exc.strerror}",
                path=os.fspath(state.path),
            ) from None

    def _drop_state(self, path: Path) -> None:
        self._state_file(path).unlink(missing_ok=True)

    def _read_state(self, path: Path) -> _State | None:
        return _parse_state(self._state_file(path))

    def _states(self) -> Iterator[_State]:
        for entry in _entries(self._states_dir):
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                state = _parse_state(Path(entry.path))
                if state is not None:
                    yield state


def _parse_state(file: Path) -> _State | None:
    try:
        data = json.loads(file.read_text("utf-8"))
        phase = data["phase"]
        if phase not in ("creating", "ready", "removing"):
            return None
        return _State(
            Path(data["path"]),
            str(data["run_id"]),
            str(data["subplan_id"]),
            str(data["base"]),
            phase,
        )
    except (OSError, ValueError, KeyError, TypeError):
        return None
