"""The pure parts of integration: the result's forms, commit messages, patch file names."""

from __future__ import annotations

from pathlib import Path

import pytest

from subplan import (
    InputError,
    IntegratedSubplan,
    IntegrationConflict,
    IntegrationResult,
    SkippedSubplan,
    VerifyFailure,
)
from subplan._integrate import _patch_files, _resolve, integration_lines
from subplan._store._base import IntegrationRow
from subplan._workspace._branches import commit_identity, commit_message

RESULT = IntegrationResult(
    run_id="r1",
    branch="subplan/integrate/r1",
    base="b" * 40,
    head="h" * 40,
    integrated=(IntegratedSubplan("sp-a", "c" * 40, ("a.py",)),),
    conflicts=(IntegrationConflict("sp-b", ("x.py", "y.py"), "conflicting changes"),),
    failed_verify=(VerifyFailure("sp-c", 0, "verify exited 1"),),
    dropped=(VerifyFailure("sp-d", -1, "dropped earlier: verify exited 2"),),
    skipped=(SkippedSubplan("sp-e", "changed no files"),),
    verify_runs=3,
)


def test_the_result_reads_as_lines_and_json() -> None:
    assert [
        f"integrated run r1 onto branch subplan/integrate/r1 ({'h' * 12})",
        f"  integrated sp-a as {'c' * 12} (1 files)",
        "  conflict   sp-b: x.py, y.py",
        "  failed     sp-c (wave 0): verify exited 1",
        "  dropped    sp-d (wave -1): dropped earlier: verify exited 2",
        "  skipped    sp-e: changed no files",
    ] == RESULT.lines()
    data = RESULT.to_dict()
    assert (False, 3) == (data["ok"], data["verify_runs"])
    assert [{"subplan_id": "sp-a", "commit": "c" * 40, "files": ["a.py"]}] == data["integrated"]
    assert [{"subplan_id": "sp-c", "wave": 0, "detail": "verify exited 1"}] == data["failed_verify"]
    assert [{"subplan_id": "sp-e", "reason": "changed no files"}] == data["skipped"]


def test_recorded_integrations_read_per_branch() -> None:
    rows = [
        IntegrationRow("r1", "b1", "sp-a", "integrated", 1.0, "c" * 40, ("a.py",)),
        IntegrationRow("r1", "b1", "sp-b", "conflicted", 1.0, None, ("x.py",)),
        IntegrationRow("r1", "b2", "sp-c", "failed_verify", 1.0, None, (), "verify exited 1"),
    ]
    assert [
        "integration onto b1: 1 integrated, 1 conflicted",
        "  conflicted sp-b: x.py",
        "integration onto b2: 1 failed verify",
        "  failed verify sp-c: verify exited 1",
    ] == integration_lines(rows)


def test_a_commit_message_names_the_subplan_and_at_most_50_files() -> None:
    files = [f"f{i:02d}.py" for i in range(51)]
    subject, listing, trailers = commit_message("r1", "sp-a", "src/db", files)
    assert "Integrate subplan src/db (sp-a)" == subject
    assert listing.startswith("51 files:\n  f00.py\n")
    assert listing.endswith("  f49.py\n  ... and 1 more")
    assert "Subplan-Id: sp-a\nSubplan-Run: r1" == trailers


def test_the_files_of_a_patch_git_did_not_name(tmp_path: Path) -> None:
    patch = tmp_path / "changes.patch"
    patch.write_bytes(b"diff --git a/x y.py b/x y.py\n--- a/x y.py\ndiff --git a/n b/n\n")
    assert ("n", "x y.py") == _patch_files(patch)
    assert () == _patch_files(tmp_path / "missing.patch")


def test_the_callers_identity_wins(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("GIT_AUTHOR_EMAIL", "a@example.com")
    monkeypatch.setenv("GIT_COMMITTER_EMAIL", "c@example.com")
    assert {} == commit_identity(tmp_path)


def test_a_revision_that_looks_like_an_option_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="invalid --onto commit '-x'"):
        _resolve(tmp_path, "-x", "--onto commit")
