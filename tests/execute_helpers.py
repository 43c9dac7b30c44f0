"""Plans and checks shared by the executor tests."""

from __future__ import annotations

from collections.abc import Iterable

from subplan import Plan, decompose
from subplan._execute._results import RunReport
from subplan._execute._tracker import concurrency_curve


def flat_plan(leaves: int, files_per_leaf: int = 3) -> Plan:
    """A plan whose root has ``leaves`` leaf children (one directory each)."""
    if leaves == 1:
        return decompose([f"only/{i}.py" for i in range(files_per_leaf)])
    return decompose([f"d{n:04d}/{i}.py" for n in range(leaves) for i in range(files_per_leaf)])


def nested_plan() -> Plan:
    """Three subtrees of 8 leaves each, each two levels deep: 24 leaves in all."""
    files = [
        f"tier{t}/group{g}/leaf{n}/{i}.py"
        for t in range(3)
        for g in range(2)
        for n in range(4)
        for i in range(3)
    ]
    return decompose(files)


def intervals(report: RunReport, ids: Iterable[str] | None = None) -> list[tuple[float, float]]:
    """The (start, end) of every attempt, optionally only of ``ids``."""
    wanted = None if ids is None else set(ids)
    return [
        (a.started, a.ended) for a in report.attempts if wanted is None or a.subplan_id in wanted
    ]


def level_before(report: RunReport, moment: float) -> int:
    """The lowest concurrency at any time in [run start, moment)."""
    curve = concurrency_curve(intervals(report))
    lowest = None
    for time, level in curve:
        if time >= moment:
            break
        lowest = level if lowest is None else min(lowest, level)
    return 0 if lowest is None else lowest
