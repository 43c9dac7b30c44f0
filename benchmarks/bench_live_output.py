"""ASV benchmarks of --tag's live output: what following the log files costs a run."""

from __future__ import annotations

import shutil
import tempfile
import time
from pathlib import Path

from subplan import CommandWork, Event, OutputFollower, OutputLine, decompose, run

from .bench_execute import best_ratio


def _drop(line: OutputLine) -> None:
    return None


class LiveOutputSuite:
    """Commands that print many lines, with and without ``on_output`` (``--tag``)."""

    params = ((20,), (4,), (2_000, 50_000))
    param_names = ("subplans", "max_parallel", "lines")
    timeout = 600

    def setup(self, n: int, limit: int, lines: int) -> None:
        self.plan = decompose([f"d{i:03d}/f.py" for i in range(n)], min_files=1, max_files=1)
        self.work = CommandWork(["seq", str(lines)])
        self.runs = Path(tempfile.mkdtemp())
        self.limit = limit

    def teardown(self, n: int, limit: int, lines: int) -> None:
        shutil.rmtree(self.runs, ignore_errors=True)

    def _run(self, on_output: object) -> None:
        run(self.plan, self.work, max_parallel=self.limit, runs_dir=self.runs, on_output=on_output)  # type: ignore[arg-type]

    def time_with_on_output(self, n: int, limit: int, lines: int) -> None:
        self._run(_drop)

    def time_without(self, n: int, limit: int, lines: int) -> None:
        self._run(None)

    def track_on_output_ratio(self, n: int, limit: int, lines: int) -> float:
        """Whole-run time with every line handed on, over the same run without."""
        return best_ratio(lambda: self._run(_drop), lambda: self._run(None), runs=5)

    track_on_output_ratio.unit = "x without"  # type: ignore[attr-defined]


class FollowSuite:
    """Reading one finished 20 MB log through the follower, against read() and split()."""

    timeout = 300

    def setup(self) -> None:
        self.runs = Path(tempfile.mkdtemp())
        log = self.runs / "r" / "sp-1" / "stdout-1.log"
        log.parent.mkdir(parents=True)
        log.write_bytes(b"".join(b"line %08d of the log\n" % i for i in range(1_000_000)))
        self.log = log

    def teardown(self) -> None:
        shutil.rmtree(self.runs, ignore_errors=True)

    def _follow(self) -> None:
        count = 0

        def on_lines(lines: object) -> None:
            nonlocal count
            count += len(lines)  # type: ignore[arg-type]

        follower = OutputFollower(self.runs, on_lines)
        now = time.time()
        follower(Event("attempt_started", now, "r", subplan_id="sp-1", attempt=1))
        follower(Event("attempt_ended", now, "r", subplan_id="sp-1", attempt=1))
        follower.close()
        assert count == 1_000_000

    def _split(self) -> None:
        lines = self.log.read_bytes().split(b"\n")
        assert len(lines) == 1_000_001

    def time_follow(self) -> None:
        self._follow()

    def track_follow_ratio(self) -> float:
        """Following (pieces, OutputLine objects, batches) over a bare read and split."""
        return best_ratio(self._follow, self._split, runs=3)

    track_follow_ratio.unit = "x read+split"  # type: ignore[attr-defined]
