"""Bringing the work back: the succeeded subplans' patches, one commit each, on a branch.

:func:`integrate` reads a run from the store (its plan, its dependencies, its base commit
and which subplans succeeded), then, in a private worktree under the runs directory
(``<runs_dir>/integration/<run_id>/worktree``, leased, hooks off, removed afterwards):

1. starts from the branch's tip when the branch exists (so a second call continues, and
   changes nothing when there is nothing new), else from ``onto`` or the run's base;
2. applies each subplan's ``changes.patch`` with ``git apply --3way`` and commits it (one
   commit per subplan, trailers ``Subplan-Id`` and ``Subplan-Run``), wave by wave in
   dependency order (the run's dependencies; else plan leaf order). A patch that does not
   apply is set aside with its conflicting files named, and the worktree is reset;
3. with a verify command, runs it after each wave; a failing wave is bisected to the
   subplans that broke it (the shortest failing prefix of the wave's commits ends with a
   culprit; take it out, rebuild, repeat). Without ``drop_failing`` the wave is held back
   and integration stops there; with it the culprits are dropped and the rest goes on;
4. moves the branch with ``git update-ref <ref> <new> <old>`` (refused if it moved
   meanwhile) and records every outcome in the store.

The user's checkout, index and current branch are never touched: git runs only in the
private worktree and on the branch's ref, and a branch checked out anywhere is refused.
Subplans already on the branch are found from the ``Subplan-Id`` trailers of its commits
(the store may be another host's, or lost); subplans dropped earlier from the branch are
found in the store.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from ._clock import Clock, SystemClock
from ._dispatch._deps import expand_dependencies
from ._durable._resume import is_store
from ._errors import InputError, NotAGitRepositoryError, WorkspaceError
from ._model import Plan, Subplan
from ._run import default_runs_dir, resume
from ._store._base import IntegrationRow, IntegrationStatus, Store, changed_files
from ._store._open import open_store
from ._workspace._branches import TRAILER_ID, TRAILER_RUN, commit_identity, commit_message
from ._workspace._changes import worktree_admin
from ._workspace._git import check_repository, run_git
from ._workspace._workspaces import Workspaces

__all__ = [
    "IntegratedSubplan",
    "IntegrationConflict",
    "IntegrationResult",
    "SkippedSubplan",
    "VerifyFailure",
    "default_branch",
    "integrate",
]

_PATCH: Final = "changes.patch"
_PATCH_ERROR: Final = re.compile(
    r"^error: (?:patch failed: (?P<failed>.+):\d+|(?P<path>.+?): "
    r"(?:does not exist in index|already exists in (?:working directory|index)|"
    r"patch does not apply|does not match index))$"
)


@dataclass(frozen=True, slots=True)
class IntegratedSubplan:
    """A subplan whose changes are now one commit on the branch.

    Attributes:
        subplan_id: the subplan.
        commit: its commit (full hash).
        files: the files the commit changes, sorted.
    """

    subplan_id: str
    commit: str
    files: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class IntegrationConflict:
    """A subplan whose patch did not apply onto the branch; set aside, nothing committed.

    Attributes:
        subplan_id: the subplan.
        files: the files that conflicted (or that git named), sorted.
        reason: git's first error line.
    """

    subplan_id: str
    files: tuple[str, ...]
    reason: str


@dataclass(frozen=True, slots=True)
class VerifyFailure:
    """A subplan that the verify command found broke its wave.

    Attributes:
        subplan_id: the subplan.
        wave: the wave (0-based) it was in.
        detail: the verify command's exit status and last line of output.
    """

    subplan_id: str
    wave: int
    detail: str


@dataclass(frozen=True, slots=True)
class SkippedSubplan:
    """A subplan left alone, and why (already on the branch, no changes, not succeeded...).

    Attributes:
        subplan_id: the subplan.
        reason: one line.
    """

    subplan_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class IntegrationResult:
    """What :func:`integrate` did.

    Attributes:
        run_id: the run.
        branch: the integration branch.
        base: the commit the branch was started from (``onto``, else the run's base).
        head: the branch's commit now.
        integrated: subplans committed by this call, in order.
        conflicts: subplans whose patch did not apply.
        failed_verify: subplans the verify command blamed, held back with their wave.
        dropped: subplans the verify command blamed, dropped (``drop_failing``), now or
            by an earlier call.
        skipped: subplans left alone, with the reason.
        verify_runs: how many times the verify command ran.
    """

    run_id: str
    branch: str
    base: str
    head: str
    integrated: tuple[IntegratedSubplan, ...] = ()
    conflicts: tuple[IntegrationConflict, ...] = ()
    failed_verify: tuple[VerifyFailure, ...] = ()
    dropped: tuple[VerifyFailure, ...] = ()
    skipped: tuple[SkippedSubplan, ...] = ()
    verify_runs: int = 0

    @property
    def ok(self) -> bool:
        """Nothing conflicted, failed verification or was dropped."""
        return not (self.conflicts or self.failed_verify or self.dropped)

    def to_dict(self) -> dict[str, Any]:
        """The JSON form (``subplan integrate --json``; shape in the README)."""
        return {
            "schema": "subplan.integrate/1",
            "run_id": self.run_id,
            "branch": self.branch,
            "base": self.base,
            "head": self.head,
            "ok": self.ok,
            "integrated": [
                {"subplan_id": i.subplan_id, "commit": i.commit, "files": list(i.files)}
                for i in self.integrated
            ],
            "conflicts": [
                {"subplan_id": c.subplan_id, "files": list(c.files), "reason": c.reason}
                for c in self.conflicts
            ],
            "failed_verify": [_failure_dict(f) for f in self.failed_verify],
            "dropped": [_failure_dict(f) for f in self.dropped],
            "skipped": [{"subplan_id": s.subplan_id, "reason": s.reason} for s in self.skipped],
            "verify_runs": self.verify_runs,
        }

    def lines(self) -> list[str]:
        """A summary for people, one line each."""
        out = [f"integrated run {self.run_id} onto branch {self.branch} ({self.head[:12]})"]
        for i in self.integrated:
            out.append(f"  integrated {i.subplan_id} as {i.commit[:12]} ({len(i.files)} files)")
        for c in self.conflicts:
            out.append(f"  conflict   {c.subplan_id}: {', '.join(c.files)}")
        for f in self.failed_verify:
            out.append(f"  failed     {f.subplan_id} (wave {f.wave}): {f.detail}")
        for f in self.dropped:
            out.append(f"  dropped    {f.subplan_id} (wave {f.wave}): {f.detail}")
        for s in self.skipped:
            out.append(f"  skipped    {s.subplan_id}: {s.reason}")
        return out


def _failure_dict(f: VerifyFailure) -> dict[str, Any]:
    return {"subplan_id": f.subplan_id, "wave": f.wave, "detail": f.detail}


def default_branch(run_id: str) -> str:
    """The integration branch of ``run_id`` when none is named.

    Example:
        >>> default_branch("nightly")
        'subplan/integrate/nightly'
    """
    return f"subplan/integrate/{run_id}"


# -- the run's side: what to integrate, in which order ------------------------------------


@dataclass(frozen=True, slots=True)
class _Candidate:
    subplan: Subplan
    patch: Path
    wave: int


def _waves(plan: Plan, dependencies: Mapping[str, Sequence[str]]) -> dict[str, int]:
    """Each leaf's wave: 0 for leaves waiting for nothing, else 1 + its prerequisites'."""
    units = {n.id: [x.id for x in plan.leaves_under(n.id)] for n in plan}
    deps = expand_dependencies(plan, dependencies, units=units) if dependencies else {}
    wave: dict[str, int] = {}

    def of(leaf_id: str) -> int:
        if leaf_id not in wave:
            wave[leaf_id] = 1 + max((of(p) for p in deps.get(leaf_id, ())), default=-1)
        return wave[leaf_id]

    for leaf in plan.leaves:  # acyclic: expand_dependencies refused cycles
        of(leaf.id)
    return wave


def _succeeded(store: Store, run_id: str) -> dict[str, list[str] | None]:
    """The subplans whose latest attempt succeeded, with the files it changed (or None)."""
    latest: dict[str, Any] = {}
    for attempt in store.attempts(run_id):  # by subplan, then number
        latest[attempt.subplan_id] = attempt
    out: dict[str, list[str] | None] = {}
    for sid, attempt in latest.items():
        if attempt.status == "succeeded":
            files = changed_files(attempt.changed)
            out[sid] = None if files is None else list(files)
    return out


# -- git in the private worktree -----------------------------------------------------------


class _Tree:
    """Git in the integration worktree (``GIT_DIR``/``GIT_WORK_TREE`` set, hooks off)."""

    def __init__(self, path: Path, identity: Mapping[str, str]) -> None:
        admin = worktree_admin(path)
        if admin is None:  # pragma: no cover - Workspaces.create just made it
            raise WorkspaceError(f"no valid git worktree at {path}", path=os.fspath(path))
        self.path = path
        self.env = {"GIT_DIR": os.fspath(admin), "GIT_WORK_TREE": os.fspath(path), **identity}

    def git(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[bytes]:
        return run_git(self.path, *args, env=self.env, check=check, path=self.path)

    def head(self) -> str:
        return self.git("rev-parse", "--verify", "HEAD").stdout.decode("ascii").strip()

    def reset(self, commit: str) -> None:
        self.git("reset", "--hard", "--quiet", "--no-recurse-submodules", commit)
        self.git("clean", "-f", "-d", "--quiet")

    def names(self, *args: str) -> tuple[str, ...]:
        out = self.git(*args, "-z").stdout
        return tuple(sorted({n.decode("utf-8", "surrogateescape") for n in out.split(b"\0") if n}))

    def apply(
        self, patch: Path, run_id: str, subplan: Subplan
    ) -> IntegratedSubplan | IntegrationConflict | None:
        """Apply ``patch`` and commit it: the commit, the conflict, or None (no change)."""
        proc = self.git("apply", "--3way", "--whitespace=nowarn", os.fspath(patch), check=False)
        if proc.returncode != 0:
            files = self.names("diff", "--name-only", "--diff-filter=U")
            stderr = proc.stderr.decode("utf-8", "replace").splitlines()
            if not files:
                matches = [m for m in map(_PATCH_ERROR.match, stderr) if m]
                named = {m.group("failed") or m.group("path") for m in matches}
                files = tuple(sorted(n for n in named if n))
            if not files:
                files = _patch_files(patch)
            errors = [ln[len("error: ") :] for ln in stderr if ln.startswith("error: ")]
            reason = errors[0] if errors else "the patch does not apply cleanly"
            if any(ln.startswith("U ") for ln in stderr) or not errors:
                reason = "conflicting changes (three-way merge left conflicts)"
            self.reset("HEAD")
            return IntegrationConflict("", files, reason)
        files = self.names("diff", "--cached", "--name-only", "--no-renames")
        if not files:
            return None
        args = ["commit", "--quiet", "--no-verify", "--no-gpg-sign", "--no-edit"]
        for paragraph in commit_message(run_id, subplan.id, subplan.label, files):
            args += ["-m", paragraph]
        self.git(*args)
        return IntegratedSubplan("", self.head(), files)


def _patch_files(patch: Path) -> tuple[str, ...]:
    """The ``b/`` paths of a patch's ``diff --git`` lines (for a conflict git did not name)."""
    found = set()
    with contextlib.suppress(OSError):
        for line in patch.read_bytes().splitlines():
            if line.startswith(b"diff --git a/") and b" b/" in line:
                found.add(line.rsplit(b" b/", 1)[1].decode("utf-8", "surrogateescape"))
    return tuple(sorted(found))


def _resolve(top: Path, rev: str, what: str) -> str | None:
    if not rev or rev.startswith("-"):
        raise InputError(f"invalid {what} {rev!r}", path=rev)
    proc = run_git(top, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}", check=False)
    sha = proc.stdout.decode("ascii", "replace").strip()
    return sha if proc.returncode == 0 and sha else None


def _check_branch(top: Path, branch: str) -> str:
    """The branch's full ref name; refuses a malformed name."""
    proc = run_git(top, "check-ref-format", "--branch", branch, check=False)
    if branch.startswith("-") or proc.returncode != 0:
        raise InputError(f"not a valid branch name: {branch!r}", path=branch)
    return f"refs/heads/{branch}"


def _contains(top: Path, tip: str, commit: str) -> bool:
    """Whether ``commit`` is ``tip`` or one of its ancestors."""
    proc = run_git(top, "merge-base", "--is-ancestor", commit, tip, check=False)
    return proc.returncode == 0


def _checked_out(top: Path, ref: str) -> str | None:
    """The worktree that has ``ref`` checked out, or None."""
    out = run_git(top, "worktree", "list", "--porcelain", "-z").stdout.split(b"\0")
    where = None
    for line in out:
        text = line.decode("utf-8", "surrogateescape")
        if text.startswith("worktree "):
            where = text[len("worktree ") :]
        elif text == f"branch {ref}":
            return where
    return None


def _on_branch(top: Path, start: str, tip: str, run_id: str) -> dict[str, str]:
    """Subplans of ``run_id`` already on the branch: ``{subplan id: commit}``."""
    log = run_git(
        top, "log", "--format=%H%x00%B%x1e", "--no-merges", f"{start}..{tip}", "--"
    ).stdout.decode("utf-8", "surrogateescape")
    found: dict[str, str] = {}
    for entry in log.split("\x1e"):
        sha, _, body = entry.strip().partition("\0")
        trailers = {
            m.group(1): m.group(2)
            for m in re.finditer(r"^(Subplan-Id|Subplan-Run): (\S+)$", body, re.MULTILINE)
        }
        if trailers.get(TRAILER_RUN) == run_id and TRAILER_ID in trailers:
            found.setdefault(trailers[TRAILER_ID], sha)
    return found


# -- verification --------------------------------------------------------------------------


@dataclass
class _Verifier:
    argv: tuple[str, ...]
    cwd: Path
    runs: int = 0
    last: str = ""

    def passes(self) -> bool:
        self.runs += 1
        # Output goes to a file, not a pipe: a child left running in the background
        # would hold a pipe open; the check is over when the command itself exits.
        with tempfile.TemporaryFile() as log:
            try:
                proc = subprocess.Popen(
                    list(self.argv),
                    cwd=self.cwd,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # its own process group, like the run's commands
                )
            except OSError as exc:
                raise InputError(
                    f"cannot run the verify command {self.argv[0]!r}: {exc.strerror or exc}",
                    path=self.argv[0],
                ) from None
            try:
                proc.wait()
            finally:
                # Ctrl-C, or children left behind: nothing of the check outlives it.
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
            log.seek(0)
            output = log.read()
        tail = output.decode("utf-8", "replace").strip().splitlines()
        self.last = f"verify exited {proc.returncode}" + (f": {tail[-1][:200]}" if tail else "")
        return proc.returncode == 0


# -- the whole thing -----------------------------------------------------------------------


@dataclass
class _Outcome:
    integrated: list[IntegratedSubplan] = field(default_factory=list)
    conflicts: list[IntegrationConflict] = field(default_factory=list)
    failed: list[VerifyFailure] = field(default_factory=list)
    dropped: list[VerifyFailure] = field(default_factory=list)
    skipped: list[SkippedSubplan] = field(default_factory=list)
    verify_runs: int = 0


@contextlib.contextmanager
def _opened(store: Store | str | os.PathLike[str] | None, runs_dir: Path) -> Iterator[Store]:
    if store is not None and is_store(store):
        yield store  # type: ignore[misc]
        return
    spec = None if store is None else os.fspath(store)  # type: ignore[arg-type]
    opened = open_store(spec, runs_dir, create=False)
    try:
        yield opened
    finally:
        opened.close()


def integrate(
    run_id: str,
    *,
    store: Store | str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    repo: str | os.PathLike[str] | None = None,
    onto: str | None = None,
    branch: str | None = None,
    verify: Sequence[str] | None = None,
    drop_failing: bool = False,
    rerun_conflicts: bool = False,
    work: Callable[..., Any] | None = None,
    clock: Clock | None = None,
) -> IntegrationResult:
    """Apply a run's succeeded subplans' changes onto a branch, one commit each.

    See the module docstring for the steps. Running it again with nothing new changes
    nothing: subplans on the branch are skipped, a conflict conflicts again without a
    commit, a dropped subplan stays dropped.

    Args:
        run_id: a run made with workspaces (``subplan run --workspaces``).
        store: the run's store (an object, a URL or a path); default the runs
            directory's (or ``$SUBPLAN_STORE``).
        runs_dir: the runs directory (default ``$SUBPLAN_RUNS_DIR`` or ``.subplan``); the
            patches are under ``<runs_dir>/<run_id>/<subplan_id>/changes.patch``.
        repo: the repository (default: the project directory the run recorded).
        onto: start a new branch from this commit instead of the run's base.
        branch: the branch (default ``subplan/integrate/<run_id>``); an existing one is
            continued from its tip (it must contain ``onto`` when that is given).
        verify: a command (argv, never a shell) run in the integration worktree's project
            directory after each wave; exit 0 is a pass.
        drop_failing: drop the subplans a failing verification is bisected to and go on
            (else the failing wave is held back and integration stops there).
        rerun_conflicts: run the conflicting subplans again (a resume of the run, with
            their worktrees made from the branch's new tip, so their work starts from
            what the others did), then integrate them. The resume also runs the run's
            other unfinished subplans, like any resume.
        work: the run's work, for ``rerun_conflicts`` of a run of a Python callable
            (command work is rebuilt from its record).
        clock: the time source of the store's records.

    Returns:
        The result; :attr:`IntegrationResult.ok` says whether everything went in.

    Raises:
        UnknownRunError: no such run.
        InputError: the run had no workspaces, the branch name is malformed, the branch
            is checked out or does not contain ``onto``, ``onto`` names no commit, the
            verify command fails before anything is applied or cannot start.
        NotAGitRepositoryError: the repository is not a git work tree.
        WorkspaceLeasedError: another integration of the run is under way.
        WorkspaceError: git fails.
        RunLockedError: ``rerun_conflicts`` while another orchestrator runs the run.

    Example (with a run at hand)::

        result = subplan.integrate("nightly", verify=["pytest", "-q"], drop_failing=True)
        [i.subplan_id for i in result.integrated], result.conflicts
        (['sp-3f2a...', 'sp-9c01...'], ())
    """
    clock = clock or SystemClock()
    runs = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    runs = Path(os.path.realpath(runs))
    if verify is not None and (not verify or not all(isinstance(a, str) for a in verify)):
        raise InputError("verify must be a non-empty list of arguments (argv, not a string)")
    with _opened(store, runs) as db:

        def once() -> IntegrationResult:
            return _integrate_once(
                run_id,
                db,
                runs,
                repo=repo,
                onto=onto,
                branch=branch,
                verify=verify,
                drop_failing=drop_failing,
                clock=clock,
            )

        first = once()
        if not (rerun_conflicts and first.conflicts):
            return first
        again = [c.subplan_id for c in first.conflicts]
        resume(run_id, work, store=db, runs_dir=runs, rerun=again, base=first.head, clock=clock)
        second = once()
    done = {i.subplan_id for i in first.integrated}
    return dataclasses.replace(
        second,
        base=first.base,
        integrated=first.integrated + second.integrated,
        skipped=tuple(s for s in second.skipped if s.subplan_id not in done),
        verify_runs=first.verify_runs + second.verify_runs,
    )


def _integrate_once(
    run_id: str,
    db: Store,
    runs: Path,
    *,
    repo: str | os.PathLike[str] | None,
    onto: str | None,
    branch: str | None,
    verify: Sequence[str] | None,
    drop_failing: bool,
    clock: Clock,
) -> IntegrationResult:
    """One pass of :func:`integrate` (see there), with the store open."""
    record = db.get_run(run_id)
    config = record.config
    ws = config.get("workspaces")
    if not ws:
        raise InputError(
            f"run {run_id!r} ran without workspaces: it has no patches to integrate "
            "(run it with --workspaces)"
        )
    plan = Plan.from_json(record.plan_json)
    project = Path(repo if repo is not None else ws.get("project") or ws["repo"])
    try:
        repository = check_repository(project, require_clean=False)
    except NotAGitRepositoryError as exc:
        raise NotAGitRepositoryError(
            f"{exc} (the run's repository; pass --repo)", path=os.fspath(project)
        ) from None
    top = repository.top
    real_project = Path(os.path.realpath(project))
    prefix = "" if real_project == top else real_project.relative_to(top).as_posix()
    name = branch or default_branch(run_id)
    ref = _check_branch(top, name)
    run_base = str(ws["base"])
    start = _resolve(top, onto, "--onto commit") if onto is not None else run_base
    if start is None:
        raise InputError(f"--onto {onto!r} is not a commit in {top}", path=onto)
    old_tip = _resolve(top, ref, "branch")
    if old_tip is not None and onto is not None and not _contains(top, old_tip, start):
        raise InputError(
            f"branch {name!r} exists and does not contain --onto {onto!r}; pass another --branch",
            path=name,
        )
    if old_tip is not None:
        holder = _checked_out(top, ref)
        if holder is not None:
            raise InputError(
                f"branch {name!r} is checked out in {holder}; integrate never moves a "
                "checked-out branch (switch away from it, or pass --branch)",
                path=holder,
            )
    succeeded = _succeeded(db, run_id)
    known = {r.subplan_id: r for r in db.integrations(run_id) if r.branch == name}
    waves = _waves(plan, config.get("dependencies") or {})
    out = _Outcome()
    on_branch = _on_branch(top, start, old_tip, run_id) if old_tip else {}
    candidates: list[_Candidate] = []
    for leaf in plan.leaves:
        sid = leaf.id
        if sid not in succeeded:
            out.skipped.append(SkippedSubplan(sid, "did not succeed in the run"))
        elif sid in on_branch:
            out.skipped.append(
                SkippedSubplan(sid, f"already on the branch as {on_branch[sid][:12]}")
            )
        elif known.get(sid) is not None and known[sid].status == "dropped":
            earlier = known[sid]
            out.dropped.append(
                VerifyFailure(sid, -1, f"dropped earlier: {earlier.detail or 'verify failed'}")
            )
        elif succeeded[sid] == []:
            out.skipped.append(SkippedSubplan(sid, "changed no files"))
        else:
            patch = runs / run_id / sid / _PATCH
            if not patch.is_file():
                out.skipped.append(SkippedSubplan(sid, f"no {_PATCH} in {patch.parent}"))
            else:
                candidates.append(_Candidate(leaf, patch, waves[sid]))
    tip = old_tip or start
    if candidates:
        tip = _apply_all(run_id, top, runs, prefix, tip, candidates, out, verify, drop_failing)
    if tip != old_tip:
        # Compare-and-swap: a branch moved meanwhile by someone else is never overwritten.
        run_git(top, "update-ref", "-m", f"subplan integrate {run_id}", ref, tip, old_tip or "")
    at = clock.time()
    rows = [
        IntegrationRow(run_id, name, i.subplan_id, "integrated", at, i.commit, i.files)
        for i in out.integrated
    ]
    rows += [
        IntegrationRow(run_id, name, sid, "integrated", at, sha, known[sid].files)
        if sid in known
        else IntegrationRow(run_id, name, sid, "integrated", at, sha)
        for sid, sha in on_branch.items()
        if sid not in known or known[sid].commit != sha
    ]
    rows += [
        IntegrationRow(run_id, name, c.subplan_id, "conflicted", at, None, c.files, c.reason)
        for c in out.conflicts
    ]
    blamed: tuple[tuple[IntegrationStatus, list[VerifyFailure]], ...] = (
        ("failed_verify", out.failed),
        ("dropped", out.dropped),
    )
    for status, failures in blamed:
        rows += [
            IntegrationRow(run_id, name, f.subplan_id, status, at, None, (), f.detail)
            for f in failures
            if f.wave >= 0  # dropped by an earlier call: recorded then
        ]
    db.record_integrations(rows)
    return IntegrationResult(
        run_id=run_id,
        branch=name,
        base=start,
        head=tip,
        integrated=tuple(out.integrated),
        conflicts=tuple(out.conflicts),
        failed_verify=tuple(out.failed),
        dropped=tuple(out.dropped),
        skipped=tuple(out.skipped),
        verify_runs=out.verify_runs,
    )


def _apply_all(
    run_id: str,
    top: Path,
    runs: Path,
    prefix: str,
    start: str,
    candidates: Sequence[_Candidate],
    out: _Outcome,
    verify: Sequence[str] | None,
    drop_failing: bool,
) -> str:
    """Apply the candidates wave by wave in a private worktree; the new tip."""
    root = runs / "integration"
    workspaces = Workspaces(top, root, artifacts_root=root)
    ws = workspaces.create(run_id, "worktree", base=start)
    try:
        tree = _Tree(ws.path, commit_identity(top))
        verifier = None
        if verify is not None:
            verifier = _Verifier(tuple(verify), ws.path / prefix if prefix else ws.path)
            if not verifier.passes():
                raise InputError(
                    f"the verify command fails before anything is integrated (on "
                    f"{start[:12]}), so no failure can be blamed on a subplan: {verifier.last}"
                )
        stopped = False
        for wave in sorted({c.wave for c in candidates}):
            group = [c for c in candidates if c.wave == wave]
            if stopped:
                why = "held back: an earlier wave failed verification"
                out.skipped += [SkippedSubplan(c.subplan.id, why) for c in group]
                continue
            wave_start = tree.head()
            applied = _apply_wave(tree, run_id, group, out)
            if verifier is None or not applied or verifier.passes():
                out.integrated += [i for _, i in applied]
                continue
            culprits, kept = _bisect(tree, verifier, run_id, wave_start, applied, out)
            failures = [VerifyFailure(c.subplan.id, wave, detail) for c, detail in culprits]
            if drop_failing:
                out.dropped += failures
                out.integrated += [i for _, i in kept]
            else:
                tree.reset(wave_start)
                out.failed += failures
                why = "held back: its wave failed verification"
                out.skipped += [SkippedSubplan(c.subplan.id, why) for c, _ in kept]
                stopped = True
        out.verify_runs = verifier.runs if verifier is not None else 0
        return tree.head()
    finally:
        workspaces.release(ws, force=True)


def _apply_wave(
    tree: _Tree, run_id: str, group: Sequence[_Candidate], out: _Outcome
) -> list[tuple[_Candidate, IntegratedSubplan]]:
    """Apply and commit each candidate in order; conflicts go to ``out``."""
    applied = []
    for cand in group:
        sid = cand.subplan.id
        got = tree.apply(cand.patch, run_id, cand.subplan)
        if isinstance(got, IntegrationConflict):
            out.conflicts.append(dataclasses.replace(got, subplan_id=sid))
        elif got is None:
            out.skipped.append(SkippedSubplan(sid, "its changes are on the branch already"))
        else:
            applied.append((cand, dataclasses.replace(got, subplan_id=sid)))
    return applied


def _bisect(
    tree: _Tree,
    verifier: _Verifier,
    run_id: str,
    wave_start: str,
    applied: list[tuple[_Candidate, IntegratedSubplan]],
    out: _Outcome,
) -> tuple[list[tuple[_Candidate, str]], list[tuple[_Candidate, IntegratedSubplan]]]:
    """The subplans that break verification, and the rest rebuilt without them.

    ``wave_start`` passes and the wave's chain (checked out) fails. The shortest failing
    prefix of the chain ends with a culprit (binary search: log2(n) verify runs); it is
    taken out, the commits after it are applied again, and the search repeats until the
    chain passes.
    """
    remaining = list(applied)
    culprits: list[tuple[_Candidate, str]] = []
    while True:
        detail = verifier.last
        lo, hi = 0, len(remaining)  # prefix ``lo`` passes, prefix ``hi`` fails
        while hi - lo > 1:
            mid = (lo + hi) // 2
            tree.reset(remaining[mid - 1][1].commit)
            if verifier.passes():
                lo = mid
            else:
                hi, detail = mid, verifier.last
        culprit, _ = remaining.pop(hi - 1)
        culprits.append((culprit, detail))
        rebuilt = remaining[: hi - 1]
        tree.reset(rebuilt[-1][1].commit if rebuilt else wave_start)
        rebuilt += _apply_wave(tree, run_id, [c for c, _ in remaining[hi - 1 :]], out)
        remaining = rebuilt
        if not remaining or verifier.passes():
            return culprits, remaining


# -- what status and report show -----------------------------------------------------------

_ORDER: Final = ("integrated", "conflicted", "failed_verify", "dropped")


def integration_lines(rows: Sequence[IntegrationRow]) -> list[str]:
    """A run's recorded integrations for ``status`` and ``report``: one line per branch,
    then one per subplan that did not go in."""
    out: list[str] = []
    branches = dict.fromkeys(r.branch for r in rows)
    for name in branches:
        mine = [r for r in rows if r.branch == name]
        counts = [
            f"{n} {status.replace('_', ' ')}"
            for status in _ORDER
            if (n := sum(r.status == status for r in mine))
        ]
        out.append(f"integration onto {name}: {', '.join(counts)}")
        for r in mine:
            if r.status != "integrated":
                why = ", ".join(r.files) if r.files else (r.detail or "")
                out.append(f"  {r.status.replace('_', ' ')} {r.subplan_id}: {why}")
    return out


def integration_data(rows: Sequence[IntegrationRow]) -> list[dict[str, Any]]:
    """A run's recorded integrations as JSON-ready data (``status --json``, ``report --json``)."""
    return [
        {
            "branch": r.branch,
            "subplan_id": r.subplan_id,
            "status": r.status,
            "commit": r.commit,
            "files": list(r.files),
            "detail": r.detail,
            "at": r.at,
        }
        for r in rows
    ]
