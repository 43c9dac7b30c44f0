"""ASV benchmarks of decomposition: synthetic layouts and a real tree beside os.walk."""

from __future__ import annotations

import os
import random
import sysconfig
import time
from collections.abc import Callable

from subplan import Plan, decompose, scan

LAYOUTS = ("deep", "wide", "flat")
SIZES = (1_000, 10_000, 100_000)


def deep(n: int) -> list[str]:
    """Directories 4 wide, 8 files each, filled breadth-first until ``n`` files."""
    out: list[str] = []
    queue = [""]
    while len(out) < n:
        directory = queue.pop(0)
        out.extend(f"{directory}f{i}.c" for i in range(min(8, n - len(out))))
        queue.extend(f"{directory}d{b}/" for b in range(4))
    return out


def wide(n: int) -> list[str]:
    """One level of packages with 50 modules each."""
    return [f"pkg{i // 50:05d}/mod{i % 50}.py" for i in range(n)]


def flat(n: int) -> list[str]:
    """Everything in one directory."""
    return [f"file{i:06d}.txt" for i in range(n)]


MAKERS: dict[str, Callable[[int], list[str]]] = {"deep": deep, "wide": wide, "flat": flat}


class DecomposeSuite:
    """Decomposition of synthetic path sets (no import graph, default options)."""

    params = (SIZES, LAYOUTS)
    param_names = ("files", "layout")
    timeout = 300

    def setup_cache(self) -> dict[tuple[int, str], list[str]]:
        cache = {}
        for n in SIZES:
            for layout in LAYOUTS:
                paths = MAKERS[layout](n)
                random.Random(0).shuffle(paths)
                cache[(n, layout)] = paths
        return cache

    def setup(self, cache: dict[tuple[int, str], list[str]], n: int, layout: str) -> None:
        self.paths = cache[(n, layout)]
        self.plan: Plan = decompose(self.paths)

    def time_decompose(self, cache: object, n: int, layout: str) -> None:
        decompose(self.paths)

    def peakmem_decompose(self, cache: object, n: int, layout: str) -> None:
        decompose(self.paths)

    def track_depth(self, cache: object, n: int, layout: str) -> int:
        return self.plan.depth

    track_depth.unit = "levels"  # type: ignore[attr-defined]

    def track_leaves(self, cache: object, n: int, layout: str) -> int:
        return len(self.plan.leaves)

    track_leaves.unit = "leaves"  # type: ignore[attr-defined]


def _best_of(runs: int, func: Callable[[], object]) -> float:
    best = float("inf")
    for _ in range(runs):
        start = time.perf_counter()
        func()
        best = min(best, time.perf_counter() - start)
    return best


def _walk(root: str) -> int:
    count = 0
    for _, _, files in os.walk(root):
        count += len(files)
    return count


class RealTreeSuite:
    """A real tree (this Python's standard library) end to end, beside a bare os.walk."""

    timeout = 300

    def setup(self) -> None:
        self.root = sysconfig.get_paths()["stdlib"]

    def time_os_walk(self) -> None:
        _walk(self.root)

    def time_scan(self) -> None:
        scan(self.root)

    def time_plan_from_paths(self) -> None:
        decompose(scan(self.root).files)

    def track_plan_over_os_walk(self) -> float:
        """End-to-end plan (listing + stat + decomposition) as a multiple of os.walk."""
        walk = _best_of(3, lambda: _walk(self.root))
        plan = _best_of(3, lambda: decompose(scan(self.root).files))
        return plan / walk

    track_plan_over_os_walk.unit = "x os.walk"  # type: ignore[attr-defined]
