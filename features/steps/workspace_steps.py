"""Steps for runs in git worktrees: real repositories made with real git."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

from behave import given, then, when

GIT_ENV = {
    "GIT_AUTHOR_NAME": "t",
    "GIT_AUTHOR_EMAIL": "t@example.com",
    "GIT_COMMITTER_NAME": "t",
    "GIT_COMMITTER_EMAIL": "t@example.com",
}


def _git(context: Any, repo: str, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(context.workdir / repo), *args],
        check=True,
        capture_output=True,
        text=True,
        env={**os.environ, **GIT_ENV},
    ).stdout


@given('a git repository "{repo}" with {dirs:d} directories of {files:d} files each')
def step_repo(context: Any, repo: str, dirs: int, files: int) -> None:
    root = context.workdir / repo
    for d in range(dirs):
        for f in range(files):
            path = root / f"dir{d}" / f"file{f}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"dir{d}/file{f}\n")
    (root / "README.md").write_text("the project\n")
    _git(context, repo, "init", "-q")
    _git(context, repo, "add", "-A")
    _git(context, repo, "commit", "-qm", "base")
    context.repo = repo


@given('the repository has a committed script "{name}" with these lines:')
def step_committed_script(context: Any, name: str) -> None:
    (context.workdir / context.repo / name).write_text(context.text + "\n")
    _git(context, context.repo, "add", name)
    _git(context, context.repo, "commit", "-qm", f"add {name}")


@when('I run "subplan {arguments}" with {name}={value}')
def step_run_env(context: Any, arguments: str, name: str, value: str) -> None:
    import shlex

    words = [sys.executable if w == "python" else w for w in shlex.split(arguments)]
    context.result = subprocess.run(
        [sys.executable, "-m", "subplan", *words],
        cwd=context.workdir,
        capture_output=True,
        text=True,
        env={**os.environ, name: value},
        timeout=120,
        check=False,
    )


@then('the repository "{repo}" has no uncommitted changes')
def step_clean(context: Any, repo: str) -> None:
    assert "" == _git(context, repo, "status", "--porcelain")


@then('every subplan of run "{run_id}" has a "{name}" that applies to "{repo}"')
def step_patches(context: Any, run_id: str, name: str, repo: str) -> None:
    patches = sorted((context.workdir / ".subplan" / run_id).glob(f"sp-*/{name}"))
    assert 3 == len(patches), patches
    for patch in patches:
        assert patch.read_text().strip(), f"{patch} is empty"
        _git(context, repo, "apply", "--check", str(patch))


@then('the output has {count:d} lines mentioning "{text}"')
def step_lines(context: Any, count: int, text: str) -> None:
    lines = [line for line in context.result.stdout.splitlines() if text in line]
    assert count == len(lines), context.result.stdout
