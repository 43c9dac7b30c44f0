"""Weights: binaries, lockfiles, vendored and generated files weigh nothing; VCS and runs
directories are never planned, whether the files come from a scan or a list."""

from __future__ import annotations

import pathlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subplan import FileEntry, from_paths, read_path_list, scan
from subplan._inventory._weights import (
    ZERO_WEIGHT_SUFFIXES,
    is_weightless,
    never_planned,
    weightless_indices,
)


@pytest.mark.parametrize(
    "path",
    [
        "logo.png",
        "docs/img/Shot.JPG",
        "fonts/a.woff2",
        "web/package-lock.json",
        "yarn.lock",
        "Cargo.lock",
        "poetry.lock",
        "go.sum",
        "app/vendor/lib/x.go",
        "node_modules/left-pad/index.js",
        "src/third_party/zlib/inflate.c",
        "static/app.min.js",
        "api/user_pb2.py",
        "lib.so",
        "a/b.pyc",
    ],
)
def test_binaries_lockfiles_vendored_and_generated_files_weigh_nothing(path: str) -> None:
    assert is_weightless(path)


@pytest.mark.parametrize(
    "path",
    ["a.py", "src/main.c", "package.json", "Cargo.toml", "vendors.py", "my_vendor/x.py", "png"],
)
def test_source_files_keep_their_weight(path: str) -> None:
    assert not is_weightless(path)


def test_never_planned_is_by_component() -> None:
    assert never_planned(".git")
    assert never_planned("sub/.git/HEAD")
    assert never_planned(".subplan/r1/sp-1/stdout-1.log")
    assert not never_planned(".gitignore")
    assert not never_planned("a/.github/workflows/ci.yml")
    assert not never_planned("x.subplan")


def test_a_scan_weighs_an_image_at_zero_unless_told_otherwise(tmp_path: pathlib.Path) -> None:
    (tmp_path / "logo.png").write_bytes(b"\x89PNG" + b"\0" * 4000)
    (tmp_path / "a.py").write_text("x = 1\n" * 100)
    tokens = {f.path: f.tokens for f in scan(tmp_path, use_git=False).files}
    assert {"a.py": 150, "logo.png": 0} == tokens
    every = {f.path: f.tokens for f in scan(tmp_path, use_git=False, weigh_all=True).files}
    assert {"a.py": 150, "logo.png": 1001} == every


def test_a_list_never_plans_git_or_runs_directories() -> None:
    inv = read_path_list([".git/config\t10", "a.py\t40", ".subplan/r1/log\t9", "yarn.lock\t800"])
    assert ("a.py", "yarn.lock") == inv.paths
    assert [("a.py", 10), ("yarn.lock", 0)] == [(f.path, f.tokens) for f in inv.files]
    assert [".git/config", ".subplan/r1/log"] == [s.path for s in inv.skipped]
    assert {"in a .git or .subplan directory"} == {s.reason for s in inv.skipped}
    weighed = read_path_list(["yarn.lock\t800"], weigh_all=True)
    assert 200 == weighed.files[0].tokens


def test_from_paths_skips_vcs_paths_and_keeps_given_tokens(tmp_path: pathlib.Path) -> None:
    (tmp_path / "big.png").write_bytes(b"\0" * 400)
    inv = from_paths(["big.png", ".git/HEAD", FileEntry("c.lock.png", 40)], root=tmp_path)
    assert [("big.png", 0), ("c.lock.png", 10)] == [(f.path, f.tokens) for f in inv.files]
    assert [".git/HEAD"] == [s.path for s in inv.skipped]


_NAME_PARTS = st.sampled_from(
    sorted(ZERO_WEIGHT_SUFFIXES)
    + [s.upper() for s in sorted(ZERO_WEIGHT_SUFFIXES)][:8]
    + ["yarn.lock", "go.sum", "_pb2.py", ".pb.go", ".min.js", ".generated.", "vendor"]
    + ["node_modules", "third_party", "_vendor", "vendors", ".", "..", "a", "B", "é", "\u212a"]
    + [".py", ".c", "png", "lock", "-", "_"]
)
_NAMES = st.lists(_NAME_PARTS, min_size=1, max_size=4).map("".join)


@given(st.lists(st.lists(_NAMES, min_size=1, max_size=4).map("/".join), max_size=30))
def test_the_bulk_test_is_the_per_path_test(paths: list[str]) -> None:
    # One regex over the joined list must say what is_weightless says of each path,
    # also for a non-ASCII name (then every path is tested one by one).
    expected = {i for i, path in enumerate(paths) if is_weightless(path)}
    assert weightless_indices(paths) == expected
