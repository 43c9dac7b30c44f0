"""Steps for `subplan integrate`: what the branch holds, and what the checkout kept."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from behave import then, when


def _git(context: Any, repo: str, *args: str) -> str:
    path = str(context.workdir / repo)
    return subprocess.run(
        ["git", "-C", path, *args], check=True, capture_output=True, text=True
    ).stdout


def _standing(context: Any, repo: str) -> tuple[str, ...]:
    """HEAD, the current branch, the status and the index: what integrate never changes."""
    queries = (["rev-parse", "HEAD"], ["symbolic-ref", "HEAD"], ["status", "--porcelain"])
    return tuple(_git(context, repo, *q) for q in (*queries, ["ls-files", "--stage"]))


@when('I note where the repository "{repo}" stands')
def step_note(context: Any, repo: str) -> None:
    context.standing = _standing(context, repo)


@then('the repository "{repo}" stands where it stood')
def step_stands(context: Any, repo: str) -> None:
    assert context.standing == _standing(context, repo)


@then('the branch "{branch}" of "{repo}" has {count:d} commits, each naming its subplan')
def step_commits(context: Any, branch: str, repo: str, count: int) -> None:
    bodies = _git(context, repo, "log", "--format=%B%x00", f"HEAD..{branch}").split("\0")[:-1]
    assert count == len(bodies) == sum("Subplan-Id: sp-" in b for b in bodies), bodies


@then('the JSON output integrates {count:d} subplans and skips {skipped:d} "{reason}"')
def step_json_skips(context: Any, count: int, skipped: int, reason: str) -> None:
    data = json.loads(context.result.stdout)
    assert (count, skipped) == (
        len(data["integrated"]),
        sum(s["reason"].startswith(reason) for s in data["skipped"]),
    ), data


@then('the JSON output integrates {count:d} subplans and sets {aside:d} aside naming "{name}"')
def step_json_conflicts(context: Any, count: int, aside: int, name: str) -> None:
    data = json.loads(context.result.stdout)
    assert (count, aside) == (len(data["integrated"]), len(data["conflicts"])), data
    assert all([name] == c["files"] for c in data["conflicts"]), data["conflicts"]


@then('the repository "{repo}" has {count:d} branches under "{prefix}" of one commit each')
def step_branches(context: Any, repo: str, count: int, prefix: str) -> None:
    names = _git(context, repo, "for-each-ref", "--format=%(refname)", f"refs/heads/{prefix}")
    counts = [_git(context, repo, "rev-list", "--count", f"HEAD..{n}") for n in names.split()]
    assert ["1\n"] * count == counts, names
