"""Plans and checks shared by the executor tests."""

from __future__ import annotations

import faulthandler
import io
import os
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

from subplan import Plan, decompose
from subplan._dispatch._results import RunReport
from subplan._limit._tracker import concurrency_curve
from subplan.cli import main


def flat_plan(leaves: int, files_per_leaf: int = 3) -> Plan:
    """A plan whose root has ``leaves`` leaf children (one directory each)."""
    if leaves == 1:
        return decompose([f"only/{i}.py" for i in range(files_per_leaf)], max_files=files_per_leaf)
    files = [f"d{n:04d}/{i}.py" for n in range(leaves) for i in range(files_per_leaf)]
    return decompose(files, max_files=files_per_leaf)


def nested_plan() -> Plan:
    """Three subtrees of 8 leaves each, each two levels deep: 24 leaves in all."""
    files = [
        f"tier{t}/group{g}/leaf{n}/{i}.py"
        for t in range(3)
        for g in range(2)
        for n in range(4)
        for i in range(3)
    ]
    return decompose(files, max_files=3)


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
    for at, level in curve:
        if at >= moment:
            break
        lowest = level if lowest is None else min(lowest, level)
    return 0 if lowest is None else lowest


# -- work for the process backend: module level, so it pickles by reference ----------------


def sleep_work(subplan: object, ctx: object) -> None:
    """Sleep 0.3 s."""
    import time

    time.sleep(0.3)


def crash_on_first_attempt(subplan: object, ctx: object) -> None:
    """Kill the worker (os._exit) on the first attempt of subplans labelled d0000..d0001."""
    import os

    label = getattr(subplan, "label", "")
    if getattr(ctx, "attempt", 0) == 1 and label in ("d0000", "d0001"):
        os._exit(3)


def always_sigkill(subplan: object, ctx: object) -> None:
    """SIGKILL the worker every time."""
    import os
    import signal

    os.kill(os.getpid(), signal.SIGKILL)


def hang(subplan: object, ctx: object) -> None:
    """Sleep for a minute (a timeout must kill it)."""
    import time

    time.sleep(60)


def crash_some(subplan: object, ctx: object) -> None:
    """Crash the worker on attempt 1 of every subplan whose label ends in 3 or 7."""
    import os
    import time

    label = getattr(subplan, "label", "")
    if getattr(ctx, "attempt", 0) == 1 and label[-1:] in ("3", "7"):
        time.sleep(0.05)
        os._exit(9)
    time.sleep(0.05)


def _die_once_then(flag: str) -> object:
    """Unpickling helper: exit the worker while it loads the job, once per flag file."""
    path = Path(flag)
    if path.exists():
        path.unlink()
        os._exit(9)
    return sleep_work


@dataclass(frozen=True)
class DiesWhileLoading:
    """Work whose first unpickling in a worker kills that worker before any call starts."""

    flag: str

    def __reduce__(self) -> tuple[object, ...]:
        return (_die_once_then, (self.flag,))

    def __call__(self, subplan: object, ctx: object) -> None:  # pragma: no cover - never here
        raise AssertionError("a worker runs what unpickling returns, not this object")


# -- work for the dask backend: module level or dataclasses, so it pickles by reference ---


def _started_files(directory: Path) -> int:
    return sum(1 for p in directory.iterdir() if p.name.startswith("started-"))


@dataclass(frozen=True)
class GateWork:
    """Mark the attempt started (a file), then wait until ``until`` attempts have started.

    A gate across processes and runs: whoever runs it, an attempt returns only once
    ``until`` attempts (of every run sharing ``directory``) were running together, or
    ``wait`` seconds passed (a liveness bound, never reached when the bound allows it).
    After the gate it holds its slot ``hold`` seconds more, so later attempts overlap.
    """

    directory: str
    until: int
    wait: float = 10.0
    hold: float = 0.0

    def __call__(self, subplan: object, ctx: object) -> None:
        import time
        import uuid

        directory = Path(self.directory)
        (directory / f"started-{uuid.uuid4().hex}").write_text(str(os.getpid()))
        deadline = time.monotonic() + self.wait
        while _started_files(directory) < self.until and time.monotonic() < deadline:
            time.sleep(0.005)
        if self.hold:
            time.sleep(self.hold)


@dataclass(frozen=True)
class WaitForGo:
    """Write ``started-<label>-<attempt>`` holding the worker's pid, then wait for ``go``."""

    directory: str
    wait: float = 20.0

    def __call__(self, subplan: object, ctx: object) -> None:
        import time

        directory = Path(self.directory)
        label = getattr(subplan, "label", "")
        attempt = getattr(ctx, "attempt", 0)
        (directory / f"started-{label}-{attempt}").write_text(str(os.getpid()))
        deadline = time.monotonic() + self.wait
        while not (directory / "go").exists() and time.monotonic() < deadline:
            time.sleep(0.005)


@dataclass(frozen=True)
class WaitForCancel:
    """Write ``started-<label>`` (the pid), wait up to ``wait`` s for ``ctx.cancelled``,
    then write ``saw-cancel-<label>`` and raise if it came (as command work does)."""

    directory: str
    wait: float = 20.0

    def __call__(self, subplan: object, ctx: object) -> None:
        import time

        directory = Path(self.directory)
        label = getattr(subplan, "label", "")
        (directory / f"started-{label}").write_text(str(os.getpid()))
        deadline = time.monotonic() + self.wait
        while time.monotonic() < deadline:
            if getattr(ctx, "cancelled", False):
                (directory / f"saw-cancel-{label}").write_text(str(os.getpid()))
                raise RuntimeError("stopped: ctx.cancelled")
            time.sleep(0.005)


def fail_first_attempt(subplan: object, ctx: object) -> None:
    """Raise ValueError on attempt 1; succeed after."""
    if getattr(ctx, "attempt", 0) == 1:
        raise ValueError("first attempt fails")


def rate_limited_first_attempt(subplan: object, ctx: object) -> None:
    """Raise RateLimited(retry_after=0.2) on attempt 1; succeed after."""
    from subplan import RateLimited

    if getattr(ctx, "attempt", 0) == 1:
        raise RateLimited("slow down", retry_after=0.2)


def no_op(subplan: object, ctx: object) -> None:
    """Do nothing."""


def wait_until(
    condition: Callable[[], bool],
    what: str,
    *,
    limit: float = 60.0,
    alive: subprocess.Popen[str] | subprocess.Popen[bytes] | None = None,
) -> None:
    """Poll ``condition`` until it holds; fail naming ``what`` after ``limit`` seconds, or
    at once if the process ``alive`` ended first (with every thread's stack, to debug)."""
    deadline = time.monotonic() + limit
    while not condition():
        if alive is not None and alive.poll() is not None:
            raise AssertionError(f"the process ended ({alive.returncode}) before {what}")
        if time.monotonic() > deadline:
            faulthandler.dump_traceback()
            raise AssertionError(f"timed out after {limit}s waiting until {what}")
        time.sleep(0.01)


def cli_call(*argv: str) -> tuple[int, str, str]:
    """``subplan ARGV`` in this process: (exit status, stdout, stderr)."""
    out, err = io.StringIO(), io.StringIO()
    status = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(""))
    return status, out.getvalue(), err.getvalue()


# Many lines on stdout and stderr, each flushed on its own, named after the subplan.
CHATTY = (
    "import os, sys\n"
    "me = os.environ['SUBPLAN_LABEL']\n"
    "for i in range(300):\n"
    "    print(me, 'line', i, flush=True)\n"
    "    if i % 50 == 0: print(me, 'warning', i, file=sys.stderr, flush=True)\n"
    "sys.stdout.write(me + ' partial')\n"
)
