"""Runs whose attempts each get their own git worktree (real repositories, real git)."""

from __future__ import annotations

import contextlib
import importlib.resources
import json
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest

from subplan import decompose
from subplan._command._in_workspace import WorkspacePolicy
from subplan._command._work import CommandWork
from subplan._dispatch._results import AttemptContext
from subplan._errors import DirtyBaseError, NotAGitRepositoryError
from subplan._model import Plan, Subplan
from subplan._run import resume, run
from subplan._store._open import open_store

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout


def make_repo(root: Path, *, project: str = "") -> tuple[Path, Plan]:
    """A repository with a project of three directories; returns (project dir, plan)."""
    root.mkdir(parents=True)
    git(root, "init", "-q")
    top = root / project if project else root
    files = [f"{d}/{f}.py" for d in ("alpha", "beta", "gamma") for f in ("a", "b")]
    for name in files:
        (top / name).parent.mkdir(parents=True, exist_ok=True)
        (top / name).write_text(f"# {name}\n")
    (root / "README.md").write_text("top\n")
    git(root, "add", "-A")
    git(root, "commit", "-qm", "base")
    return top, decompose(files, min_files=2, max_files=2)


def edit_own_files(subplan: Subplan, ctx: AttemptContext) -> None:
    assert ctx.workspace is not None
    for name in subplan.files:
        path = ctx.workspace / name
        path.write_text(path.read_text() + f"# edited by {subplan.label}\n")


def test_each_subplan_edits_its_own_worktree_and_its_patch_is_collected(tmp_path: Path) -> None:
    project, plan = make_repo(tmp_path / "repo")
    runs = tmp_path / "runs"
    policy = WorkspacePolicy(project)
    report = run(plan, edit_own_files, max_parallel=3, runs_dir=runs, run_id="w", workspaces=policy)
    assert report.ok, report.outcomes
    # The repository itself is untouched; every change is in a patch.
    assert "" == git(project, "status", "--porcelain")
    changes = report.changes()
    assert {leaf.id: tuple(sorted(leaf.files)) for leaf in plan.leaves} == {
        k: tuple(sorted(v)) for k, v in changes.items()
    }
    assert report.overlaps().ok
    # The JSON report says it per subplan too, valid against its schema.
    data = report.to_dict()
    text = importlib.resources.files("subplan").joinpath("schemas/report.schema.json")
    jsonschema.Draft202012Validator(json.loads(text.read_text("utf-8"))).validate(data)
    assert {leaf.id: sorted(leaf.files) for leaf in plan.leaves} == {
        s["subplan_id"]: sorted(s["changed"]) for s in data["subplans"]
    }
    for leaf in plan.leaves:
        patch = runs / "w" / leaf.id / "changes.patch"
        assert patch.exists(), patch
        git(project, "apply", "--check", str(patch))  # applies to the base cleanly
    assert [] == list((runs / "workspaces").glob("w/*"))  # removed after the run
    assert 1 == len(git(project, "worktree", "list").splitlines())  # only the repository


def test_changes_outside_a_subplans_files_and_shared_files_are_flagged(tmp_path: Path) -> None:
    project, plan = make_repo(tmp_path / "repo")

    def trespass(subplan: Subplan, ctx: AttemptContext) -> None:
        assert ctx.workspace is not None
        (ctx.workspace / "README.md").write_text(f"{subplan.label} was here\n")
        if subplan.label == "alpha":
            (ctx.workspace / "alpha" / "new.py").write_text("x = 1\n")

    report = run(plan, trespass, runs_dir=tmp_path / "runs", workspaces=WorkspacePolicy(project))
    overlap = report.overlaps()
    assert not overlap.ok
    ids = sorted(leaf.id for leaf in plan.leaves)
    assert dict.fromkeys(ids, ("README.md",)) | {
        plan.leaves[0].id: ("README.md", "alpha/new.py")
    } == {k: tuple(v) for k, v in overlap.outside.items()}
    assert {"README.md": tuple(ids)} == {k: tuple(v) for k, v in overlap.shared.items()}
    assert report.to_dict()["workspaces"]["shared"] == {"README.md": ids}


def test_a_project_in_a_subdirectory_names_files_as_the_plan_does(tmp_path: Path) -> None:
    project, plan = make_repo(tmp_path / "repo", project="sub/proj")

    def edit_and_trespass(subplan: Subplan, ctx: AttemptContext) -> None:
        edit_own_files(subplan, ctx)
        assert ctx.workspace is not None
        if subplan.label == "beta":
            (ctx.workspace.parent.parent / "README.md").write_text("changed\n")

    report = run(
        plan, edit_and_trespass, runs_dir=tmp_path / "runs", workspaces=WorkspacePolicy(project)
    )
    beta = next(leaf.id for leaf in plan.leaves if leaf.label == "beta")
    assert {beta: ("../../README.md",)} == {
        k: tuple(v) for k, v in report.overlaps().outside.items()
    }


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_commands_run_in_their_worktree(tmp_path: Path, backend: str) -> None:
    project, plan = make_repo(tmp_path / "repo")
    script = (
        "import os, pathlib\n"
        "here = pathlib.Path.cwd()\n"
        "assert str(here) == os.environ['SUBPLAN_WORKSPACE'], (here, os.environ)\n"
        "assert (here / '.git').is_file()  # a worktree, not the repository itself\n"
        "pathlib.Path('out-' + os.environ['SUBPLAN_LABEL'] + '.txt').write_text('done')\n"
    )
    work = CommandWork([sys.executable, "-c", script], cwd=project)
    report = run(
        plan,
        work,
        runs_dir=tmp_path / "runs",
        workspaces=WorkspacePolicy(project),
        backend=backend,  # type: ignore[arg-type]
    )
    assert report.ok, [o.reason for o in report.outcomes.values()]
    assert {leaf.id: (f"out-{leaf.label}.txt",) for leaf in plan.leaves} == report.changes()
    assert not any(project.glob("out-*.txt"))


def test_a_failed_attempt_still_saves_its_work(tmp_path: Path) -> None:
    project, plan = make_repo(tmp_path / "repo")

    def edit_then_fail(subplan: Subplan, ctx: AttemptContext) -> None:
        edit_own_files(subplan, ctx)
        raise RuntimeError("the agent gave up")

    runs = tmp_path / "runs"
    report = run(
        plan, edit_then_fail, runs_dir=runs, run_id="f", workspaces=WorkspacePolicy(project)
    )
    assert "failed" == report.status
    for leaf in plan.leaves:
        (attempt,) = report.outcomes[leaf.id].attempts
        assert attempt.changed is not None and sorted(attempt.changed) == sorted(leaf.files)
        assert (runs / "f" / leaf.id / "changes.patch").exists()


def test_not_a_repository_or_a_dirty_base_stops_before_anything_runs(tmp_path: Path) -> None:
    plain = tmp_path / "plain"
    plain.mkdir()
    calls: list[str] = []
    plan = decompose(["a/x.py", "b/y.py"])
    with pytest.raises(NotAGitRepositoryError):
        run(plan, lambda s, c: calls.append(s.id), runs_dir=tmp_path / "runs", store="",
            workspaces=WorkspacePolicy(plain))  # fmt: skip
    project, plan = make_repo(tmp_path / "repo")
    (project / "alpha" / "a.py").write_text("uncommitted\n")
    with pytest.raises(DirtyBaseError):
        run(plan, lambda s, c: calls.append(s.id), runs_dir=tmp_path / "runs", store="",
            workspaces=WorkspacePolicy(project, require_clean=True))  # fmt: skip
    assert [] == calls
    with contextlib.closing(open_store(None, tmp_path / "runs")) as store:
        assert [] == store.list_runs()  # nothing recorded either


def test_resume_uses_the_runs_base_and_the_changes_reach_the_store(tmp_path: Path) -> None:
    project, plan = make_repo(tmp_path / "repo")
    runs = tmp_path / "runs"
    first_base = git(project, "rev-parse", "HEAD").strip()
    broken = plan.leaves[1].id

    def edit(subplan: Subplan, ctx: AttemptContext) -> bool:
        assert ctx.workspace is not None
        head = subprocess.run(
            ["git", "-C", str(ctx.workspace), "rev-parse", "HEAD"],
            capture_output=True, text=True, check=True,
        ).stdout.strip()  # fmt: skip
        assert head == first_base  # the run's base, even after the branch moved
        edit_own_files(subplan, ctx)
        return subplan.id != broken or ctx.attempt > 1

    report = run(
        plan, edit, runs_dir=runs, run_id="r", store="", workspaces=WorkspacePolicy(project)
    )
    assert "failed" == report.status
    (project / "later.txt").write_text("a new commit moves HEAD\n")
    git(project, "add", "later.txt")
    git(project, "commit", "-qm", "later")
    again = resume("r", edit, runs_dir=runs)
    assert again.ok
    with contextlib.closing(open_store(None, runs)) as store:
        rows = store.attempts("r")
    assert all(row.changed is not None for row in rows)
    assert sorted(again.changes()[broken]) == sorted(plan[broken].files)


@pytest.mark.parametrize("in_workspaces", [False, True])
def test_a_relative_runs_dir_works_when_commands_run_elsewhere(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, in_workspaces: bool
) -> None:
    project, plan = make_repo(tmp_path / "repo")
    monkeypatch.chdir(tmp_path)  # the runs dir "runs" is relative to here, not to the project
    script = (
        "import os, pathlib\n"
        "names = pathlib.Path(os.environ['SUBPLAN_FILES_LIST']).read_text().split()\n"
        "assert all(pathlib.Path(n).exists() for n in names), names\n"
    )
    work = CommandWork([sys.executable, "-c", script], cwd=project)
    policy = WorkspacePolicy(project) if in_workspaces else None
    report = run(plan, work, runs_dir="runs", workspaces=policy)
    assert report.ok, [o.reason for o in report.outcomes.values()]
