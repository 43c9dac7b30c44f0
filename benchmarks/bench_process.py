"""ASV benchmarks of the process backend: overhead against a bare pool, crash recovery."""

from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor

from subplan import Plan, decompose, run
from subplan.testing import ScriptedWork, Step

from .bench_execute import _best, best_ratio


def _plan(n: int) -> Plan:
    return decompose([f"d{i:05d}/f.py" for i in range(n)], min_files=1, max_files=1)


def _noop() -> None:
    return None


def _bare(n: int, workers: int) -> None:
    with ProcessPoolExecutor(workers) as pool:
        for future in [pool.submit(_noop) for _ in range(n)]:
            future.result()


class ProcessBackendSuite:
    """No-op subplans on the process backend, against a bare ProcessPoolExecutor."""

    params = ((200, 1_000), (4, 10))
    param_names = ("subplans", "max_parallel")
    timeout = 600

    def setup(self, n: int, limit: int) -> None:
        self.plan = _plan(n)
        self.work = ScriptedWork(default=Step())

    def time_process_backend(self, n: int, limit: int) -> None:
        run(self.plan, self.work, max_parallel=limit, backend="process")

    def time_bare_process_pool(self, n: int, limit: int) -> None:
        _bare(n, limit)

    def track_overhead_ratio(self, n: int, limit: int) -> float:
        """Whole-run time over a bare ProcessPoolExecutor's (worker start-up included)."""
        return best_ratio(
            lambda: run(self.plan, self.work, max_parallel=limit, backend="process"),
            lambda: _bare(n, limit),
            runs=5,
        )

    track_overhead_ratio.unit = "x bare pool"  # type: ignore[attr-defined]


class ProcessMarginalSuite:
    """The cost of one more subplan, process backend against a bare ProcessPoolExecutor.

    Each side runs 1,000 and 3,000 no-op jobs; (T(3,000) - T(1,000)) / 2,000 leaves out
    what both pay once (starting workers, setting up, shutting down).
    """

    timeout = 900

    def setup(self) -> None:
        self.plans = {n: _plan(n) for n in (1_000, 3_000)}
        self.work = ScriptedWork(default=Step())

    def _ours(self, n: int) -> None:
        run(self.plans[n], self.work, max_parallel=10, backend="process")

    def track_marginal_ratio(self) -> float:
        """Per-subplan cost over the bare pool's, from interleaved rounds (best of 5)."""
        best = dict.fromkeys(("ours1", "ours3", "bare1", "bare3"), math.inf)
        for _ in range(5):
            best["ours1"] = min(best["ours1"], _best(1, lambda: self._ours(1_000)))
            best["bare1"] = min(best["bare1"], _best(1, lambda: _bare(1_000, 10)))
            best["ours3"] = min(best["ours3"], _best(1, lambda: self._ours(3_000)))
            best["bare3"] = min(best["bare3"], _best(1, lambda: _bare(3_000, 10)))
        return (best["ours3"] - best["ours1"]) / (best["bare3"] - best["bare1"])

    track_marginal_ratio.unit = "x bare pool"  # type: ignore[attr-defined]


class CrashRecoverySuite:
    """How long one worker crash costs a run, against the same run without it."""

    timeout = 300

    def setup(self) -> None:
        self.plan = _plan(20)
        self.victim = self.plan.leaves[0].id

    def _run(self, crash: bool) -> None:
        steps = {self.victim: [Step(0.05, crash=True), Step(0.05)]} if crash else {}
        work = ScriptedWork(steps, default=Step(0.05))
        report = run(self.plan, work, max_parallel=4, retries=1, backend="process")
        assert report.ok

    def track_crash_recovery_seconds(self) -> float:
        """Extra seconds one crash adds (detect, kill, restart a worker, retry)."""
        clean = _best(3, lambda: self._run(False))
        crashed = _best(3, lambda: self._run(True))
        return max(0.0, crashed - clean)

    track_crash_recovery_seconds.unit = "s"  # type: ignore[attr-defined]
