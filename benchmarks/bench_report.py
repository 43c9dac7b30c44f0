"""ASV benchmarks of the JSON report: what naming logs and reading stderr tails costs."""

from __future__ import annotations

import tempfile
from pathlib import Path

from subplan import RunReport, decompose
from subplan.testing import ScriptedWork, Step, simulate

from .bench_execute import best_ratio


class ReportSuite:
    """``RunReport.to_dict()`` of a run of n subplans whose logs exist on disk, against
    the same report without a run directory (no file is looked at)."""

    params = ((100, 10_000),)
    param_names = ("subplans",)
    timeout = 300

    def setup(self, n: int) -> None:
        plan = decompose([f"d{i:05d}/f.py" for i in range(n)], min_files=1, max_files=1)
        report = simulate(plan, ScriptedWork(default=Step(1.0)), max_parallel=10)
        self._tmp = tempfile.TemporaryDirectory()
        run_dir = Path(self._tmp.name)
        for leaf in plan.leaves:
            (run_dir / leaf.id).mkdir()
            (run_dir / leaf.id / "stdout-1.log").write_text("done\n")
            (run_dir / leaf.id / "stderr-1.log").write_text("warning: x\n" * 50)
        self.bare = report
        self.with_logs = RunReport(**{**vars(report), "run_dir": run_dir})

    def teardown(self, n: int) -> None:
        self._tmp.cleanup()

    def time_to_dict_with_logs(self, n: int) -> None:
        self.with_logs.to_dict()

    def time_to_dict_without_logs(self, n: int) -> None:
        self.bare.to_dict()

    def track_logs_ratio(self, n: int) -> float:
        """to_dict() naming logs and reading stderr tails, over one that does not."""
        return best_ratio(self.with_logs.to_dict, self.bare.to_dict, runs=5)

    track_logs_ratio.unit = "x without logs"  # type: ignore[attr-defined]
