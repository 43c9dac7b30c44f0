"""ASV benchmarks of the dask backend: per-subplan cost against Dask's own ``client.map``.

Both sides run on the same ``LocalCluster`` (10 single-threaded worker processes), started
once per benchmark in ``setup`` and closed in ``teardown``, so neither pays for workers.
"""

from __future__ import annotations

import contextlib
import importlib
import math
import operator
import time
from typing import Any

from subplan import Plan, decompose, run
from subplan.testing import ScriptedWork, Step

from .bench_execute import _best

WORKERS = 10


def _plan(n: int) -> Plan:
    return decompose([f"d{i:05d}/f.py" for i in range(n)], min_files=1, max_files=1)


class _OnCluster:
    """A LocalCluster and a client of it for one benchmark (skipped without distributed)."""

    timeout = 900

    def _start(self) -> None:
        try:
            distributed: Any = importlib.import_module("distributed")
            from subplan._backends._dask import open_local_cluster
        except ImportError:
            raise NotImplementedError("distributed is not installed") from None
        self.stack = contextlib.ExitStack()
        cluster = self.stack.enter_context(open_local_cluster(WORKERS))
        self.address = str(cluster.scheduler_address)
        self.client: Any = distributed.Client(cluster, set_as_default=False)
        self.stack.callback(self.client.close)
        self.client.wait_for_workers(WORKERS)

    def teardown(self, *args: object) -> None:
        stack = getattr(self, "stack", None)  # none when setup skipped the benchmark
        if stack is not None:
            stack.close()

    def _ours(self, plan: Plan, work: object, limit: int = WORKERS) -> float:
        began = time.perf_counter()
        report = run(plan, work, max_parallel=limit, backend="dask", scheduler=self.address)  # type: ignore[arg-type]
        assert report.ok
        return time.perf_counter() - began

    def _map(self, n: int) -> None:
        # Dask's own way: every no-op task submitted at once, gathered at once.
        self.client.gather(self.client.map(operator.truth, range(n), pure=False))


class DaskMarginalSuite(_OnCluster):
    """The cost of one more no-op subplan, dask backend against ``client.map``.

    Each side runs 200 and 600 no-op tasks; (T(600) - T(200)) / 400 leaves out what each
    run pays once (connecting a client, setting up, the report).
    """

    def setup(self) -> None:
        self._start()
        self.plans = {n: _plan(n) for n in (200, 600)}
        self.work = ScriptedWork(default=Step())

    def per_subplan(self) -> dict[str, float]:
        """Seconds per subplan on each side, from interleaved rounds (best of 3)."""
        best = dict.fromkeys(("ours1", "ours3", "map1", "map3"), math.inf)
        for _ in range(3):
            best["ours1"] = min(best["ours1"], self._ours(self.plans[200], self.work))
            best["map1"] = min(best["map1"], _best(1, lambda: self._map(200)))
            best["ours3"] = min(best["ours3"], self._ours(self.plans[600], self.work))
            best["map3"] = min(best["map3"], _best(1, lambda: self._map(600)))
        return {
            "ours": (best["ours3"] - best["ours1"]) / 400,
            "map": (best["map3"] - best["map1"]) / 400,
        }

    def track_marginal_ratio(self) -> float:
        """Per-subplan cost over ``client.map``'s per-task cost (target <= 2)."""
        costs = self.per_subplan()
        return costs["ours"] / costs["map"]

    track_marginal_ratio.unit = "x client.map"  # type: ignore[attr-defined]

    def track_per_subplan_ms(self) -> float:
        """Milliseconds per no-op subplan on the dask backend (10 workers)."""
        return self.per_subplan()["ours"] * 1000

    track_per_subplan_ms.unit = "ms"  # type: ignore[attr-defined]


class DaskMakespanSuite(_OnCluster):
    """100 subplans of 0.05 s at limit 10: ideal makespan (0.5 s) over the measured one."""

    def setup(self) -> None:
        self._start()
        self.plan = _plan(100)
        self.work = ScriptedWork(default=Step(0.05))

    def track_makespan_efficiency(self) -> float:
        """Ideal / actual whole-run time (client connect and report included), best of 3."""
        ideal = 100 * 0.05 / 10
        return ideal / min(self._ours(self.plan, self.work) for _ in range(3))

    track_makespan_efficiency.unit = "ideal / actual"  # type: ignore[attr-defined]

    def time_makespan(self) -> None:
        self._ours(self.plan, self.work)
