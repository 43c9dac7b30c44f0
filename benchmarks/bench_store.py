"""ASV benchmarks of durable runs: the store's cost per subplan, and resume time."""

from __future__ import annotations

import contextlib
import itertools
import shutil
import tempfile
from pathlib import Path

from subplan import open_store, resume, run

from .bench_execute import best_ratio, leaves_plan, noop


class StoreOverheadSuite:
    """No-op subplans with the SQLite store on, against the same run without a store.

    The store is opened once, as an agent embedding subplan would keep it; each run gets
    a new run id. ``track_store_overhead_ratio_open_each_run`` opens the store for every
    run, as ``subplan run`` does (that adds the open's integrity check, which grows with
    the database).
    """

    params = ((1_000, 10_000), (10,))
    param_names = ("subplans", "max_parallel")
    timeout = 900

    def setup(self, n: int, limit: int) -> None:
        self.plan = leaves_plan(n)
        self.dir = Path(tempfile.mkdtemp(prefix="subplan-bench-"))
        self.ids = itertools.count()
        self.store = open_store(None, self.dir)

    def teardown(self, n: int, limit: int) -> None:
        self.store.close()
        shutil.rmtree(self.dir, ignore_errors=True)

    def _with_store(self, limit: int, store: object) -> None:
        run_id = f"r{next(self.ids)}"
        run(self.plan, noop, max_parallel=limit, run_id=run_id, runs_dir=self.dir, store=store)  # type: ignore[arg-type]

    def _without(self, limit: int) -> None:
        run(self.plan, noop, max_parallel=limit, runs_dir=self.dir)

    def time_run_with_store(self, n: int, limit: int) -> None:
        self._with_store(limit, self.store)

    def time_run_without_store(self, n: int, limit: int) -> None:
        self._without(limit)

    def track_store_overhead_ratio(self, n: int, limit: int) -> float:
        """Whole-run time with the SQLite store over the same run without one."""
        return best_ratio(
            lambda: self._with_store(limit, self.store), lambda: self._without(limit), runs=7
        )

    track_store_overhead_ratio.unit = "x no store"  # type: ignore[attr-defined]

    def track_store_overhead_ratio_open_each_run(self, n: int, limit: int) -> float:
        """The same, opening the store (and checking its integrity) for every run."""
        return best_ratio(lambda: self._with_store(limit, ""), lambda: self._without(limit), runs=5)

    track_store_overhead_ratio_open_each_run.unit = "x no store"  # type: ignore[attr-defined]


class ResumeSuite:
    """Resuming a 10,000-subplan run: read it back, reclaim, keep successes, run the rest."""

    timeout = 900
    params = ((10_000,),)
    param_names = ("subplans",)

    def setup(self, n: int) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="subplan-bench-"))
        plan = leaves_plan(n)
        failing = {leaf.id for leaf in plan.leaves[::100]}  # 1% to run again
        self.failing = failing

        def work(subplan: object, ctx: object) -> bool:
            return getattr(subplan, "id", None) not in failing

        run(plan, work, max_parallel=10, run_id="big", runs_dir=self.dir, store="")
        # Keep a pristine copy: each resume changes the store.
        self.copy = Path(tempfile.mkdtemp(prefix="subplan-bench-copy-"))
        shutil.copytree(self.dir, self.copy, dirs_exist_ok=True)

    def teardown(self, n: int) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)
        shutil.rmtree(self.copy, ignore_errors=True)

    def time_resume(self, n: int) -> None:
        shutil.rmtree(self.dir)
        shutil.copytree(self.copy, self.dir)
        report = resume("big", noop, runs_dir=self.dir)
        assert report.ok

    def track_resume_seconds(self, n: int) -> float:
        """Seconds for the resume alone (100 of 10,000 subplans run again)."""
        import time

        best = float("inf")
        for _ in range(3):
            shutil.rmtree(self.dir)
            shutil.copytree(self.copy, self.dir)
            start = time.perf_counter()
            resume("big", noop, runs_dir=self.dir)
            best = min(best, time.perf_counter() - start)
        with contextlib.closing(open_store(None, self.dir)) as store:
            assert len(store.attempts("big")) >= n
        return best

    track_resume_seconds.unit = "s"  # type: ignore[attr-defined]
