"""ASV benchmarks of ``integrate``: N subplans' patches onto a branch, against bare git.

The baseline is what a person would script by hand: ``git worktree add``, then
``git apply --3way`` and ``git commit`` per patch, then ``git worktree remove``.
"""

from __future__ import annotations

import itertools
import shutil
import subprocess
import tempfile
from pathlib import Path

from subplan import WorkspacePolicy, decompose, integrate, run
from subplan._dispatch._results import AttemptContext
from subplan._model import Subplan

from .bench_execute import best_ratio

SIZES = (10, 50)
_IDENTITY = ("-c", "user.name=bench", "-c", "user.email=bench@example.invalid")
_HOOKS_OFF = ("-c", "core.hooksPath=/dev/null")


def _git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *_IDENTITY, *args], cwd=repo, check=True, capture_output=True)


def edit(subplan: Subplan, ctx: AttemptContext) -> None:
    """Append a line to each of the subplan's files."""
    assert ctx.workspace is not None
    for name in subplan.files:
        path = ctx.workspace / name
        path.write_text(path.read_text() + f"# edited by {subplan.id}\n")


def make_run(directory: Path, n: int) -> tuple[Path, Path, list[Path]]:
    """A repository of ``n`` directories of 10 files, a run editing each: (repo, runs, patches)."""
    repo = directory / f"repo-{n}"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    files = [f"d{d:03d}/f{f}.py" for d in range(n) for f in range(10)]
    for name in files:
        (repo / name).parent.mkdir(exist_ok=True)
        (repo / name).write_text(f"x = {name!r}\n" * 20)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bench")
    runs = directory / f"runs-{n}"
    plan = decompose(files, max_files=10)
    report = run(
        plan, edit, max_parallel=4, runs_dir=runs, run_id="bench", store="",
        workspaces=WorkspacePolicy(repo),
    )  # fmt: skip
    assert report.ok and len(plan.leaves) == n
    return repo, runs, [runs / "bench" / leaf.id / "changes.patch" for leaf in plan.leaves]


def bare_integrate(repo: Path, worktree: Path, patches: list[Path]) -> None:
    """The baseline: a worktree, ``apply --3way`` + ``commit`` per patch, remove it."""
    subprocess.run(
        ["git", *_HOOKS_OFF, "worktree", "add", "-q", "--detach", str(worktree), "main"],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    for patch in patches:
        _git(worktree, *_HOOKS_OFF, "apply", "--3way", str(patch))
        _git(worktree, *_HOOKS_OFF, "commit", "-q", "--no-verify", "-m", patch.parent.name)
    subprocess.run(
        ["git", *_HOOKS_OFF, "worktree", "remove", "--force", str(worktree)],
        cwd=repo,
        check=True,
        capture_output=True,
    )


class IntegrateSuite:
    """N subplans integrated onto a fresh branch (one commit each), and bare git."""

    params = (SIZES,)
    param_names = ("subplans",)
    timeout = 900

    def setup_cache(self) -> str:
        directory = Path(tempfile.mkdtemp(prefix="subplan-bench-int-"))
        for n in SIZES:
            make_run(directory, n)
        return str(directory)

    def setup(self, cache: str, n: int) -> None:
        self.repo = Path(cache) / f"repo-{n}"
        self.runs = Path(cache) / f"runs-{n}"
        self.patches = sorted(self.runs.glob("bench/sp-*/changes.patch"))
        self.ids = itertools.count()
        self.scratch = Path(tempfile.mkdtemp(prefix="subplan-bench-bare-"))

    def teardown(self, cache: str, n: int) -> None:
        shutil.rmtree(self.scratch, ignore_errors=True)

    def _ours(self) -> None:
        result = integrate("bench", runs_dir=self.runs, branch=f"bench-{next(self.ids)}")
        assert result.ok and len(result.integrated) == len(self.patches)

    def _bare(self) -> None:
        bare_integrate(self.repo, self.scratch / f"bare-{next(self.ids)}", self.patches)

    def time_integrate(self, cache: str, n: int) -> None:
        self._ours()

    def time_bare_apply_and_commit(self, cache: str, n: int) -> None:
        self._bare()

    def track_integrate_ratio(self, cache: str, n: int) -> float:
        """integrate over bare ``worktree add`` + ``apply --3way``/``commit`` each, same run."""
        return best_ratio(self._ours, self._bare, runs=3)

    track_integrate_ratio.unit = "x bare git"  # type: ignore[attr-defined]


if __name__ == "__main__":
    # A quick measurement outside ASV: python -m benchmarks.bench_integrate
    import time

    with tempfile.TemporaryDirectory() as tmp:
        for n in SIZES:
            suite = IntegrateSuite()
            make_run(Path(tmp), n)
            suite.setup(tmp, n)
            start = time.perf_counter()
            suite._ours()
            first = time.perf_counter() - start
            ratio = best_ratio(suite._ours, suite._bare, runs=3)
            print(f"{n} subplans: integrate {first:.2f} s, {ratio:.2f}x bare git")
            suite.teardown(tmp, n)
