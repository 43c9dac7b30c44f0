"""ASV benchmarks of `subplan plan` end to end on a Linux-sized path list (target: <= 1 s),
and of how many leaves one edit changes on real trees."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable

from subplan import Cuts, FileEntry, Plan, decompose

from ._linux_like import linux_like
from .bench_quality import load


def _best_of(runs: int, func: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


class LinuxListSuite:
    """`subplan plan --from-list` of a synthetic 75k-path list shaped like Linux 6.1 (deep
    driver and arch trees, a flat dts directory of 2,541 files), beside a bare Python
    start-up measured in the same run."""

    timeout = 300
    params = (("default", "no-imports"),)
    param_names = ("graph",)

    def setup_cache(self) -> str:
        handle, name = tempfile.mkstemp(suffix=".txt", prefix="linux-like-")
        with os.fdopen(handle, "w") as out:
            out.writelines(f"{path}\t{size}\n" for path, size in linux_like())
        return name

    def setup(self, name: str, graph: str) -> None:
        self.argv = [sys.executable, "-m", "subplan", "plan", "--from-list", name]
        self.argv += ["-o", os.devnull] + (["--no-imports"] if graph == "no-imports" else [])
        # An empty directory as the project: the list's files are not on disk.
        self.cwd = tempfile.mkdtemp(prefix="linux-like-root-")

    def _plan(self) -> None:
        subprocess.run(self.argv, cwd=self.cwd, check=True)

    def time_plan_from_list(self, name: str, graph: str) -> None:
        self._plan()

    def track_plan_seconds(self, name: str, graph: str) -> float:
        """Best of 3, end to end (interpreter start, imports, reading, planning, output)."""
        return _best_of(3, self._plan)

    track_plan_seconds.unit = "s"  # type: ignore[attr-defined]

    def track_plan_over_python_startup(self, name: str, graph: str) -> float:
        startup = _best_of(3, lambda: subprocess.run([sys.executable, "-c", "pass"], check=True))
        return _best_of(3, self._plan) / startup

    track_plan_over_python_startup.unit = "x python -c pass"  # type: ignore[attr-defined]


def _leaf_sets(plan: Plan) -> set[frozenset[str]]:
    return {frozenset(leaf.files) for leaf in plan.leaves}


class StabilitySuite:
    """Leaves of the first plan that one edit re-cuts: a file grown or a file added, 40
    random edits per tree (seeded), at 20k tokens, without and with the import graph, and
    without it under ``cuts="stable"`` (content-anchored cuts, no merge)."""

    params = (("flask", "redis"), ("no-graph", "no-graph-stable", "graph"), ("grow", "add"))
    param_names = ("tree", "graph", "edit")
    timeout = 600

    def setup(self, tree: str, graph: str, edit: str) -> None:
        files, found = load(tree)
        use = found if graph == "graph" else None
        cuts: Cuts = "stable" if graph.endswith("-stable") else "full"
        base = _leaf_sets(decompose(files, max_tokens=20_000, import_graph=use, cuts=cuts))
        rnd = random.Random(0)
        self.changed: list[int] = []
        for n in range(40):
            if edit == "grow":
                k = rnd.randrange(len(files))
                edited = list(files)
                edited[k] = FileEntry(files[k].path, files[k].size + rnd.randint(1, 40_000))
            else:
                home = rnd.choice(files).path.rpartition("/")[0]
                added = FileEntry(f"{home}/zz_added_{n}.py".lstrip("/"), rnd.randint(0, 40_000))
                edited = [*files, added]
            after = _leaf_sets(decompose(edited, max_tokens=20_000, import_graph=use, cuts=cuts))
            self.changed.append(len(base - after))

    def track_most_leaves_changed(self, tree: str, graph: str, edit: str) -> int:
        return max(self.changed)

    track_most_leaves_changed.unit = "leaves"  # type: ignore[attr-defined]

    def track_mean_leaves_changed(self, tree: str, graph: str, edit: str) -> float:
        return sum(self.changed) / len(self.changed)

    track_mean_leaves_changed.unit = "leaves"  # type: ignore[attr-defined]
