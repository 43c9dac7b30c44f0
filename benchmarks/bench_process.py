"""ASV benchmarks of the process backend: overhead against a bare pool, crash recovery."""

from __future__ import annotations

from concurrent.futures import ProcessPoolExecutor

from subplan import Plan, decompose, run
from subplan.testing import ScriptedWork, Step

from .bench_execute import _best, best_ratio


def _plan(n: int) -> Plan:
    return decompose([f"d{i:05d}/f.py" for i in range(n)], min_files=1)


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
