"""ASV benchmarks of workspaces: create + release of a worktree, against bare git."""

from __future__ import annotations

import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from subplan._workspace import Workspaces

from .bench_execute import best_ratio

SIZES = (1_000, 10_000)


def _git(repo: Path, *args: str) -> None:
    subprocess.run(
        ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid", *args],
        cwd=repo,
        check=True,
        capture_output=True,
    )


def make_repo(directory: Path, n: int) -> Path:
    """A repository with one commit of ``n`` small files, 100 per directory."""
    repo = directory / f"repo-{n}"
    repo.mkdir(parents=True)
    _git(repo, "init", "-q", "-b", "main")
    for i in range(n):
        sub = repo / f"d{i // 100:04d}"
        sub.mkdir(exist_ok=True)
        (sub / f"f{i:06d}.py").write_text(f"x = {i}\n" * 20)
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "bench")
    return repo


def bare_add_remove(repo: Path, path: Path) -> None:
    """The baseline: ``git worktree add --detach`` then ``git worktree remove --force``."""
    hooks_off = ("-c", "core.hooksPath=/dev/null")
    subprocess.run(
        ["git", *hooks_off, "worktree", "add", "-q", "--detach", str(path), "HEAD"],
        cwd=repo,
        check=True,
        capture_output=True,
    )
    subprocess.run(
        ["git", *hooks_off, "worktree", "remove", "--force", str(path)],
        cwd=repo,
        check=True,
        capture_output=True,
    )


class WorkspaceSuite:
    """One workspace made and released (changes saved, worktree removed), and bare git."""

    params = (SIZES,)
    param_names = ("files",)
    timeout = 900

    def setup_cache(self) -> str:
        directory = Path(tempfile.mkdtemp(prefix="subplan-bench-ws-"))
        for n in SIZES:
            make_repo(directory, n)
        return str(directory)

    def setup(self, cache: str, n: int) -> None:
        self.repo = Path(cache) / f"repo-{n}"
        self.runs = Path(tempfile.mkdtemp(prefix="subplan-bench-runs-"))
        self.workspaces = Workspaces(self.repo, self.runs / "workspaces")
        self.base = self.workspaces.resolve("HEAD")
        self.ids = itertools.count()

    def teardown(self, cache: str, n: int) -> None:
        self.workspaces.clean(force=True)
        shutil.rmtree(self.runs, ignore_errors=True)

    def _ours(self) -> None:
        ws = self.workspaces.create("bench", f"sp-{next(self.ids)}", base=self.base)
        self.workspaces.release(ws)

    def _bare(self) -> None:
        bare_add_remove(self.repo, self.runs / f"bare-{next(self.ids)}")

    def time_create_release(self, cache: str, n: int) -> None:
        self._ours()

    def time_bare_worktree_add_remove(self, cache: str, n: int) -> None:
        self._bare()

    def track_create_release_ratio(self, cache: str, n: int) -> float:
        """create + release over bare ``worktree add`` + ``remove --force``, same run."""
        return best_ratio(self._ours, self._bare, runs=5)

    track_create_release_ratio.unit = "x bare git"  # type: ignore[attr-defined]


class ConcurrentCreateSuite:
    """Eight workspaces made at once from threads, then released at once."""

    params = ((1_000,),)
    param_names = ("files",)
    timeout = 900

    def setup(self, n: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="subplan-bench-ws-"))
        self.repo = make_repo(self.dir, n)
        self.workspaces = Workspaces(self.repo, self.dir / "runs" / "workspaces")
        self.ids = itertools.count()

    def teardown(self, n: int) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)

    def time_eight_at_once(self, n: int) -> None:
        from concurrent.futures import ThreadPoolExecutor

        run_id = f"r{next(self.ids)}"
        with ThreadPoolExecutor(8) as pool:
            made = list(pool.map(lambda i: self.workspaces.create(run_id, f"sp-{i}"), range(8)))
            list(pool.map(self.workspaces.release, made))


if __name__ == "__main__":
    # A quick measurement outside ASV: python -m benchmarks.bench_workspace [DIRECTORY]
    import sys
    import time

    with tempfile.TemporaryDirectory(dir=sys.argv[1] if len(sys.argv) > 1 else None) as tmp:
        for n in SIZES:
            repo = make_repo(Path(tmp), n)
            wss = Workspaces(repo, Path(tmp) / f"runs-{n}" / "workspaces")
            counter = itertools.count()

            def ours(wss: Workspaces = wss, counter: itertools.count[int] = counter) -> None:
                wss.release(wss.create("bench", f"sp-{next(counter)}"))

            def bare(
                repo: Path = repo, counter: itertools.count[int] = counter, n: int = n
            ) -> None:
                bare_add_remove(repo, Path(tmp) / f"bare-{n}-{next(counter)}")

            times: dict[str, float] = {}
            for name, func in (("ours", ours), ("bare", bare)):
                best = float("inf")
                for _ in range(5):
                    start = time.perf_counter()
                    func()
                    best = min(best, time.perf_counter() - start)
                times[name] = best
            ratio = best_ratio(ours, bare, runs=7)
            print(
                f"{n} files: create+release {times['ours'] * 1e3:.0f} ms, "
                f"bare add+remove {times['bare'] * 1e3:.0f} ms, ratio {ratio:.2f}"
                f" (pid {os.getpid()})"
            )
