"""Integrating a run's patches onto a branch (real repositories, real runs, real git)."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import pytest

import subplan
from postgres_server import postgres_url
from subplan import (
    InputError,
    IntegrationResult,
    UnknownRunError,
    WorkspaceError,
    decompose,
    integrate,
)
from subplan._command._in_workspace import WorkspacePolicy
from subplan._dispatch._results import AttemptContext
from subplan._integrate import _Tree
from subplan._model import Plan, Subplan
from subplan._run import run
from subplan._store._open import open_store
from subplan.cli import main

pytestmark = pytest.mark.timeout(120)

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}
# A verify command: fails while any file of the project says BUG.
NO_BUGS = [
    sys.executable,
    "-c",
    "import pathlib, sys; sys.exit(any('BUG' in p.read_text() "
    "for p in pathlib.Path('.').rglob('*.py')))",
]


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout


def make_repo(root: Path, dirs: Sequence[str] = ("alpha", "beta", "gamma")) -> tuple[Path, Plan]:
    """A repository with two files in each directory; the plan has a leaf per directory."""
    root.mkdir(parents=True)
    git(root, "init", "-q", "-b", "main")
    files = [f"{d}/{f}.py" for d in dirs for f in ("a", "b")]
    for name in files:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(f"# {name}\n")
    (root / "README.md").write_text("top\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    plan = decompose(files, min_files=2, max_files=2)
    assert list(dirs) == [leaf.label for leaf in plan.leaves]
    return root, plan


Edits = Mapping[str, Callable[[Path], object]]


def editing(extra: Edits | None = None) -> Callable[[Subplan, AttemptContext], None]:
    """Work that appends a line to each of the subplan's files, plus ``extra[label]``."""

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        assert ctx.workspace is not None
        for name in subplan.files:
            path = ctx.workspace / name
            path.write_text(path.read_text() + f"# edited by {subplan.label}\n")
        if extra and subplan.label in extra:
            extra[subplan.label](ctx.workspace)

    return work


def readme(text: str) -> Callable[[Path], object]:
    return lambda top: (top / "README.md").write_text(text)


def bug_in(name: str) -> Callable[[Path], object]:
    return lambda top: (top / name).write_text("BUG\n")


def run_with_workspaces(
    repo: Path,
    plan: Plan,
    runs: Path,
    work: Callable[[Subplan, AttemptContext], None],
    *,
    run_id: str = "r1",
    dependencies: Mapping[str, Sequence[str]] | None = None,
    branches: bool = False,
) -> None:
    report = run(
        plan,
        work,
        max_parallel=3,
        runs_dir=runs,
        run_id=run_id,
        store="",
        workspaces=WorkspacePolicy(repo, branches=branches),
        dependencies=dependencies,
    )
    assert report.ok, report.outcomes


def user_state(repo: Path) -> tuple[str, str, str, str]:
    """What integrate must never change: HEAD, the branch, the status, the index."""
    return (
        git(repo, "rev-parse", "HEAD"),
        git(repo, "symbolic-ref", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
        git(repo, "ls-files", "--stage"),
    )


def subjects(repo: Path, branch: str) -> list[str]:
    return git(repo, "log", "--reverse", "--format=%s", f"main..{branch}").splitlines()


def ids_of(plan: Plan, *labels: str) -> list[str]:
    by_label = {leaf.label: leaf.id for leaf in plan.leaves}
    return [by_label[label] for label in labels]


@pytest.fixture
def runs(tmp_path: Path) -> Path:
    return tmp_path / "runs"


def test_independent_changes_integrate_in_plan_order_one_commit_each(
    tmp_path: Path, runs: Path
) -> None:
    repo, plan = make_repo(tmp_path / "repo")
    run_with_workspaces(repo, plan, runs, editing())
    (repo / "scratch.txt").write_text("the user's own uncommitted work\n")
    before = user_state(repo)

    result = integrate("r1", runs_dir=runs)

    assert before == user_state(repo)
    assert result.ok
    assert "subplan/integrate/r1" == result.branch
    assert git(repo, "rev-parse", "main").strip() == result.base
    assert ids_of(plan, "alpha", "beta", "gamma") == [i.subplan_id for i in result.integrated]
    assert [f"Integrate subplan {leaf.label} ({leaf.id})" for leaf in plan.leaves] == subjects(
        repo, result.branch
    )
    first = result.integrated[0]
    message = git(repo, "log", "-1", "--format=%B", first.commit)
    assert f"Subplan-Id: {first.subplan_id}" in message
    assert "Subplan-Run: r1" in message
    assert "  alpha/a.py\n  alpha/b.py" in message  # the files are named
    assert ("alpha/a.py", "alpha/b.py") == first.files
    assert result.head == git(repo, "rev-parse", result.branch).strip()
    for leaf in plan.leaves:
        for name in leaf.files:
            shown = git(repo, "show", f"{result.branch}:{name}")
            assert f"# {name}\n# edited by {leaf.label}\n" == shown
    # The private worktree is gone, and git knows only the user's.
    assert 1 == len(git(repo, "worktree", "list").splitlines())
    assert [] == list((runs / "integration").glob("r1/*"))
    with contextlib.closing(open_store(None, runs)) as store:
        rows = store.integrations("r1")
    assert {(i.subplan_id, "integrated", i.commit) for i in result.integrated} == {
        (r.subplan_id, r.status, r.commit) for r in rows
    }


def test_two_subplans_editing_the_same_lines_give_one_commit_and_one_conflict(
    tmp_path: Path, runs: Path
) -> None:
    repo, plan = make_repo(tmp_path / "repo")
    edits = {"alpha": readme("alpha's\n"), "beta": readme("beta's\n")}
    run_with_workspaces(repo, plan, runs, editing(edits))
    before = user_state(repo)

    result = integrate("r1", runs_dir=runs)

    assert before == user_state(repo)
    assert not result.ok
    assert ids_of(plan, "alpha", "gamma") == [i.subplan_id for i in result.integrated]
    [conflict] = result.conflicts
    assert (ids_of(plan, "beta")[0], ("README.md",)) == (conflict.subplan_id, conflict.files)
    assert "alpha's\n" == git(repo, "show", f"{result.branch}:README.md")
    assert "# beta/a.py\n" == git(repo, "show", f"{result.branch}:beta/a.py")  # none of beta's
    with contextlib.closing(open_store(None, runs)) as store:
        statuses = {r.subplan_id: (r.status, r.files) for r in store.integrations("r1")}
    assert ("conflicted", ("README.md",)) == statuses[conflict.subplan_id]


def test_running_it_twice_changes_nothing(tmp_path: Path, runs: Path) -> None:
    repo, plan = make_repo(tmp_path / "repo")
    run_with_workspaces(repo, plan, runs, editing({"alpha": readme("a\n"), "beta": readme("b\n")}))
    first = integrate("r1", runs_dir=runs)
    refs = git(repo, "for-each-ref")

    second = integrate("r1", runs_dir=runs)

    assert refs == git(repo, "for-each-ref")
    assert first.head == second.head
    assert () == second.integrated
    assert first.conflicts == second.conflicts  # tried again, conflicts again, no commit
    assert ids_of(plan, "alpha", "gamma") == [
        s.subplan_id for s in second.skipped if s.reason.startswith("already on the branch")
    ]


def test_a_broken_skip_of_integrated_subplans_is_caught(
    tmp_path: Path, runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The idempotence checks fail against an integrate that cannot see its own commits.

    Without the trailers, the patches are applied again: git finds them applied already
    (nothing to commit), which keeps the branch as it was, but they are no longer skipped
    as integrated, so the test above goes red.
    """
    repo, plan = make_repo(tmp_path / "repo")
    run_with_workspaces(repo, plan, runs, editing())
    first = integrate("r1", runs_dir=runs)
    monkeypatch.setattr("subplan._integrate._on_branch", lambda *args: {})
    second = integrate("r1", runs_dir=runs)
    assert first.head == second.head
    assert [] == [s for s in second.skipped if s.reason.startswith("already on the branch")]


def test_a_broken_reset_after_a_conflict_is_caught(
    tmp_path: Path, runs: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The conflict check fails against an integrate that leaves a conflict's mess behind:
    the next subplan cannot be committed over the unmerged files."""
    repo, plan = make_repo(tmp_path / "repo")
    run_with_workspaces(repo, plan, runs, editing({"alpha": readme("a\n"), "beta": readme("b\n")}))
    monkeypatch.setattr(_Tree, "reset", lambda self, commit: None)
    with pytest.raises(WorkspaceError, match="unmerged files"):
        integrate("r1", runs_dir=runs)
    assert [] == list((runs / "integration").glob("r1/*"))  # its worktree is removed anyway


def test_a_change_that_breaks_verify_is_found_by_bisection_and_dropped(
    tmp_path: Path, runs: Path
) -> None:
    dirs = ("d0", "d1", "d2", "d3", "d4", "d5")
    repo, plan = make_repo(tmp_path / "repo", dirs)
    run_with_workspaces(repo, plan, runs, editing({"d3": bug_in("d3/a.py")}))

    result = integrate("r1", runs_dir=runs, verify=NO_BUGS, drop_failing=True)

    assert ids_of(plan, "d3") == [f.subplan_id for f in result.dropped]
    assert ids_of(plan, "d0", "d1", "d2", "d4", "d5") == [i.subplan_id for i in result.integrated]
    assert "verify exited 1" == result.dropped[0].detail
    # the start, the wave, 2 bisection steps (prefixes 3 and 4 of 6), the rebuilt wave
    assert 1 + 1 + 2 + 1 == result.verify_runs
    assert "# d3/a.py\n" == git(repo, "show", f"{result.branch}:d3/a.py")
    subprocess.run(NO_BUGS, cwd=repo, check=True)  # the user's tree was never touched

    again = integrate("r1", runs_dir=runs, verify=NO_BUGS, drop_failing=True)
    assert (result.head, ()) == (again.head, again.integrated)
    assert ids_of(plan, "d3") == [f.subplan_id for f in again.dropped]  # stays dropped


def test_without_drop_failing_the_failing_wave_is_held_back(tmp_path: Path, runs: Path) -> None:
    repo, plan = make_repo(tmp_path / "repo")
    alpha, beta, gamma = ids_of(plan, "alpha", "beta", "gamma")
    run_with_workspaces(
        repo, plan, runs, editing({"beta": bug_in("beta/b.py")}), dependencies={gamma: [alpha]}
    )

    result = integrate("r1", runs_dir=runs, verify=NO_BUGS)

    assert [beta] == [f.subplan_id for f in result.failed_verify]
    assert 0 == result.failed_verify[0].wave
    assert result.base == result.head  # nothing of the failing wave went in
    assert {alpha: "held back: its wave failed verification"} | {
        gamma: "held back: an earlier wave failed verification"
    } == {s.subplan_id: s.reason for s in result.skipped}


def test_dependencies_order_the_commits_by_waves(tmp_path: Path, runs: Path) -> None:
    repo, plan = make_repo(tmp_path / "repo")
    alpha, beta, gamma = ids_of(plan, "alpha", "beta", "gamma")
    run_with_workspaces(repo, plan, runs, editing(), dependencies={alpha: [gamma]})
    result = integrate("r1", runs_dir=runs, branch="together", onto="main")
    assert [beta, gamma, alpha] == [i.subplan_id for i in result.integrated]
    assert "together" == result.branch


def test_bad_input_is_one_clear_error(tmp_path: Path, runs: Path) -> None:
    repo, plan = make_repo(tmp_path / "repo")
    report = run(plan, lambda s, c: None, runs_dir=runs, run_id="plain", store="")
    assert report.ok
    with pytest.raises(UnknownRunError):
        integrate("nope", runs_dir=runs)
    with pytest.raises(InputError, match="ran without workspaces"):
        integrate("plain", runs_dir=runs)
    with pytest.raises(subplan.ConfigError, match="no base to change"):
        subplan.resume("plain", lambda s, c: None, runs_dir=runs, base="HEAD")
    run_with_workspaces(repo, plan, runs, editing())
    with pytest.raises(subplan.NotAGitRepositoryError, match="pass --repo"):
        integrate("r1", runs_dir=runs, repo=tmp_path)
    assert 2 == main(["integrate", "r1", "--runs-dir", str(runs), "--repo", str(tmp_path)])
    with pytest.raises(InputError, match="argv, not a string"):
        integrate("r1", runs_dir=runs, verify=[])
    with pytest.raises(InputError, match="cannot run the verify command"):
        integrate("r1", runs_dir=runs, verify=[str(tmp_path / "no-such-program")])
    with pytest.raises(InputError, match="not a valid branch name"):
        integrate("r1", runs_dir=runs, branch="bad..name")
    with pytest.raises(InputError, match="is not a commit"):
        integrate("r1", runs_dir=runs, onto="no-such-ref")
    with pytest.raises(InputError, match="fails before anything is integrated"):
        integrate("r1", runs_dir=runs, verify=[sys.executable, "-c", "raise SystemExit(3)"])
    integrate("r1", runs_dir=runs)
    (repo / "later.txt").write_text("later\n")
    git(repo, "add", "later.txt")
    git(repo, "commit", "-qm", "later")
    with pytest.raises(InputError, match="does not contain --onto 'main'"):
        integrate("r1", runs_dir=runs, onto="main")
    git(repo, "switch", "-q", "subplan/integrate/r1")
    with pytest.raises(InputError, match="is checked out in"):
        integrate("r1", runs_dir=runs)


def test_the_cli_prints_json_and_exits_by_outcome(
    tmp_path: Path, runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import json

    repo, plan = make_repo(tmp_path / "repo")
    run_with_workspaces(repo, plan, runs, editing({"alpha": readme("a\n"), "beta": readme("b\n")}))
    status = main(["integrate", "r1", "--runs-dir", str(runs), "--json"])
    data = json.loads(capsys.readouterr().out)
    assert 1 == status
    assert {"run_id", "branch", "base", "integrated", "conflicts", "dropped", "skipped"} <= set(
        data
    )
    assert [{"subplan_id": ids_of(plan, "beta")[0], "files": ["README.md"]}] == [
        {k: c[k] for k in ("subplan_id", "files")} for c in data["conflicts"]
    ]
    beta = ids_of(plan, "beta")[0]
    assert 0 == main(["status", "r1", "--runs-dir", str(runs)])
    out = capsys.readouterr().out
    assert "integration onto subplan/integrate/r1: 2 integrated, 1 conflicted" in out
    assert f"conflicted {beta}: README.md" in out
    assert 0 == main(["report", "r1", "--runs-dir", str(runs), "--json"])
    rows = json.loads(capsys.readouterr().out)["integration"]
    assert {"integrated": 2, "conflicted": 1} == {
        k: sum(r["status"] == k for r in rows) for k in ("integrated", "conflicted")
    }
    assert 2 == main(["integrate", "r1", "--runs-dir", str(runs), "--verify"])
    assert "--verify needs a command" in capsys.readouterr().err
    assert 2 == main(["integrate", "nope", "--runs-dir", str(runs)])
    err = capsys.readouterr().err
    assert 1 == len(err.splitlines()) and "nope" in err


def test_each_subplan_can_keep_its_result_as_a_branch_of_its_own(
    tmp_path: Path, runs: Path
) -> None:
    repo, plan = make_repo(tmp_path / "repo")
    before = user_state(repo)
    run_with_workspaces(repo, plan, runs, editing({"alpha": readme("a\n")}), branches=True)
    assert before == user_state(repo)
    base = git(repo, "rev-parse", "main").strip()
    for leaf in plan.leaves:
        branch = f"subplan/r1/{leaf.id}"
        assert base == git(repo, "rev-parse", f"{branch}~1").strip()  # one commit on the base
        assert f"Subplan-Id: {leaf.id}" in git(repo, "log", "-1", "--format=%B", branch)
        changed = git(repo, "diff", "--name-only", f"{branch}~1", branch).split()
        extra = ["README.md"] if leaf.label == "alpha" else []
        assert sorted([*leaf.files, *extra]) == sorted(changed)
    assert integrate("r1", runs_dir=runs).ok  # and they integrate as before
    assert 2 == main(["run", ".", "--branches", "--", "true"])  # --branches needs --workspaces


def test_the_result_is_frozen_and_public() -> None:
    result = IntegrationResult("r", "b", "0" * 40, "0" * 40)
    with pytest.raises(AttributeError):
        result.head = "x"  # type: ignore[misc]
    assert result.ok
    assert "integrate" in subplan.__all__ and "IntegrationResult" in subplan.__all__


def test_new_deleted_binary_and_odd_names_in_a_project_below_the_top(
    tmp_path: Path, runs: Path
) -> None:
    top = tmp_path / "repo"
    top.mkdir()
    git(top, "init", "-q", "-b", "main")
    project = top / "proj"
    files = ["alpha/a.py", "alpha/-b c.py", "beta/a.py", "beta/old.py"]
    for name in files:
        (project / name).parent.mkdir(parents=True, exist_ok=True)
        (project / name).write_text(f"# {name}\n")
    git(top, "add", "-A")
    git(top, "commit", "-qm", "base")
    plan = decompose(files, min_files=2, max_files=2)

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        assert ctx.workspace is not None
        here = ctx.workspace
        if subplan.label == "alpha":
            (here / "alpha/-b c.py").write_text("# rewritten\n")
            (here / "alpha/logo.bin").write_bytes(bytes(range(256)))
            (here / "both.txt").write_text("alpha\n")
        else:
            (here / "beta/old.py").unlink()
            (here / "beta/new.py").write_text("# new\n")
            (here / "both.txt").write_text("beta\n")

    report = run(
        plan, work, runs_dir=runs, run_id="r1", store="", workspaces=WorkspacePolicy(project)
    )
    assert report.ok
    alpha, beta = ids_of(plan, "alpha", "beta")
    pwd = [sys.executable, "-c", "import os, sys; sys.exit(not os.path.isdir('alpha'))"]

    result = integrate("r1", runs_dir=runs, verify=pwd)  # runs in the project directory

    assert [alpha] == [i.subplan_id for i in result.integrated]
    assert ("proj/alpha/-b c.py", "proj/alpha/logo.bin", "proj/both.txt") == (
        result.integrated[0].files
    )
    assert [(beta, ("proj/both.txt",))] == [(c.subplan_id, c.files) for c in result.conflicts]
    blob = subprocess.run(
        ["git", "-C", str(top), "show", f"{result.branch}:proj/alpha/logo.bin"],
        capture_output=True,
        check=True,
    ).stdout
    assert bytes(range(256)) == blob
    # Without the clash, beta's deletion and new file go in too.
    (runs / "r1" / beta / "changes.patch").write_bytes(_beta_patch(top))
    again = integrate("r1", runs_dir=runs, verify=pwd)
    assert [beta] == [i.subplan_id for i in again.integrated]
    tree = git(top, "ls-tree", "-r", "--name-only", again.branch).split("\n")
    assert "proj/beta/new.py" in tree and "proj/beta/old.py" not in tree


def _beta_patch(top: Path) -> bytes:
    """beta's change without the clash on both.txt, made in a scratch worktree."""
    scratch = top.parent / "scratch"
    git(top, "worktree", "add", "-q", "--detach", str(scratch), "main")
    (scratch / "proj/beta/old.py").unlink()
    (scratch / "proj/beta/new.py").write_text("# new\n")
    git(scratch, "add", "-A")
    patch = subprocess.run(
        ["git", "-C", str(scratch), "diff", "--cached", "--binary"], capture_output=True, check=True
    ).stdout
    git(top, "worktree", "remove", "--force", str(scratch))
    return patch


def test_a_second_integration_of_a_run_at_the_same_time_is_refused(
    tmp_path: Path, runs: Path
) -> None:
    from subplan._workspace import acquire_lease

    repo, plan = make_repo(tmp_path / "repo")
    run_with_workspaces(repo, plan, runs, editing())
    worktree = runs / "integration" / "r1" / "worktree"
    with acquire_lease(worktree, leases_dir=runs / "integration" / ".leases"):
        with pytest.raises(subplan.WorkspaceLeasedError) as caught:
            integrate("r1", runs_dir=runs)
        assert f"pid {os.getpid()}" in (caught.value.holder or "")
    assert "" == git(repo, "branch", "--list", "subplan/*")  # nothing was moved
    assert integrate("r1", runs_dir=runs).ok  # and once it is free, it goes


def test_what_cannot_go_in_is_said_and_shown(
    tmp_path: Path, runs: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    repo, plan = make_repo(tmp_path / "repo", ("alpha", "beta", "delta", "gamma"))
    alpha, beta, gamma, delta = ids_of(plan, "alpha", "beta", "gamma", "delta")

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        if subplan.label == "alpha":
            raise RuntimeError("this one fails")
        if subplan.label != "beta":  # beta changes nothing
            editing()(subplan, ctx)

    report = run(plan, work, runs_dir=runs, run_id="r1", store="", workspaces=WorkspacePolicy(repo))
    assert not report.ok
    (runs / "r1" / gamma / "changes.patch").unlink()
    git(repo, "rm", "-q", "delta/a.py")  # delta edits a file main deletes later
    git(repo, "commit", "-qm", "delta/a.py goes")

    with contextlib.closing(open_store(None, runs)) as store:
        result = integrate("r1", store=store, runs_dir=runs, onto="main")

    assert {
        alpha: "did not succeed in the run",
        beta: "changed no files",
        gamma: f"no changes.patch in {os.path.realpath(runs / 'r1' / gamma)}",
    } == {s.subplan_id: s.reason for s in result.skipped}
    [conflict] = result.conflicts
    assert (delta, ("delta/a.py",)) == (conflict.subplan_id, conflict.files)
    assert "delta/a.py: does not exist in index" == conflict.reason
    assert 1 == main(["integrate", "r1", "--runs-dir", str(runs), "--onto", "main"])
    out = capsys.readouterr().out
    assert f"  conflict   {delta}: delta/a.py" in out
    assert f"  skipped    {beta}: changed no files" in out


def test_a_run_in_a_postgresql_store_integrates_and_is_recorded_there(
    tmp_path: Path, runs: Path
) -> None:
    url = postgres_url()  # skips, or fails where a server is required (nox, CI)
    import uuid

    import psycopg
    from psycopg import sql

    from subplan._store._postgres import PostgresStore

    schema = f"integrate_{uuid.uuid4().hex[:16]}"
    store = PostgresStore(url, schema=schema)
    try:
        repo, plan = make_repo(tmp_path / "repo")
        edits = editing({"alpha": readme("a\n"), "beta": readme("b\n")})
        policy = WorkspacePolicy(repo)
        assert run(plan, edits, runs_dir=runs, run_id="r1", store=store, workspaces=policy).ok
        result = integrate("r1", store=store, runs_dir=runs)
        assert 2 == len(result.integrated) and 1 == len(result.conflicts)
        assert {"integrated": 2, "conflicted": 1} == {
            s: sum(r.status == s for r in store.integrations("r1"))
            for s in ("integrated", "conflicted")
        }
    finally:
        store.close()
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema))
            )


def test_what_the_verify_command_leaves_running_is_killed(tmp_path: Path, runs: Path) -> None:
    repo, plan = make_repo(tmp_path / "repo")
    run_with_workspaces(repo, plan, runs, editing())
    pid_file = tmp_path / "child.pid"
    leaves_a_child = [
        sys.executable,
        "-c",
        "import subprocess, sys; "
        "child = subprocess.Popen(['sleep', '600'], stdout=sys.stdout); "
        f"open({str(pid_file)!r}, 'w').write(str(child.pid))",
    ]
    assert integrate("r1", runs_dir=runs, verify=leaves_a_child).ok
    pid = int(pid_file.read_text())
    deadline = time.monotonic() + 10
    while _alive(pid):
        assert time.monotonic() < deadline, f"the verify command's child {pid} is still alive"
        time.sleep(0.01)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie not reaped yet is dead
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except (OSError, IndexError):
        return False


def test_conflicting_subplans_run_again_on_the_branch_and_go_in(tmp_path: Path, runs: Path) -> None:
    repo, plan = make_repo(tmp_path / "repo")
    alpha, beta, gamma = ids_of(plan, "alpha", "beta", "gamma")
    seen: list[tuple[str, str]] = []

    def work(subplan: Subplan, ctx: AttemptContext) -> None:
        assert ctx.workspace is not None
        seen.append((subplan.label, (ctx.workspace / "README.md").read_text()))
        editing()(subplan, ctx)
        if subplan.label in ("alpha", "beta"):  # both add a line after the first
            text = (ctx.workspace / "README.md").read_text()
            (ctx.workspace / "README.md").write_text(text + f"{subplan.label} was here\n")

    run_with_workspaces(repo, plan, runs, work)
    before = user_state(repo)

    result = integrate("r1", runs_dir=runs, rerun_conflicts=True, work=work)

    assert before == user_state(repo)
    assert result.ok, result
    assert [alpha, gamma, beta] == [i.subplan_id for i in result.integrated]
    assert ("beta", "top\nalpha was here\n") == seen[-1]  # beta ran again on alpha's work
    assert 4 == len(seen)  # and only beta
    readme_now = git(repo, "show", f"{result.branch}:README.md")
    assert "top\nalpha was here\nbeta was here\n" == readme_now
    assert [] == [s for s in result.skipped if s.subplan_id in (alpha, gamma)]
    with contextlib.closing(open_store(None, runs)) as store:
        assert {"integrated"} == {r.status for r in store.integrations("r1")}
        assert (
            str(git(repo, "rev-parse", "main").strip())
            == (store.get_run("r1").config["workspaces"]["base"])
        )  # the run keeps its own base
