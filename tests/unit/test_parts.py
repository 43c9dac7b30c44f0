"""Small parts: the progress line, atomic writes, layered limiters, clocks, rendering."""

from __future__ import annotations

import io
import os
import stat
import threading
from pathlib import Path

import pytest

from execute_helpers import flat_plan
from subplan import ConfigError, Limiter, RetryPolicy, SharedLimiter, SystemClock
from subplan._dispatch._results import Event
from subplan._fs import write_atomic
from subplan._limit._pool import LayeredLimiter
from subplan._render import human_count
from subplan._report._progress import Progress, render_summary
from subplan.testing import FakeClock, ScriptedWork, Step, simulate


def event(kind: str, **fields: object) -> Event:
    return Event(kind=kind, time=0.0, run_id="r", **fields)  # type: ignore[arg-type]


def test_progress_counts_and_draws_only_when_on() -> None:
    stream = io.StringIO()
    progress = Progress(stream, total=3, mode="bar", labels={"a": "pkg/a", "b": "pkg/b"}, width=200)
    progress(event("attempt_started", subplan_id="a"))
    progress(event("attempt_started", subplan_id="b"))
    progress(event("attempt_ended", subplan_id="a", status="failed"))
    progress(event("retry_scheduled", subplan_id="a"))
    assert progress.line(width=200).endswith(" | pkg/b")  # the running subplan's label, not a's
    progress(event("attempt_ended", subplan_id="b", status="succeeded"))
    progress(event("attempt_started", subplan_id="a"))
    progress(event("attempt_ended", subplan_id="a", status="rate_limited"))  # not a failure
    progress(event("attempt_started", subplan_id="a"))
    progress(event("attempt_ended", subplan_id="a", status="failed"))
    progress(event("failed", subplan_id="a", reason="exit status 3"))
    progress(event("skipped", subplan_id="c"))
    progress(event("run_ended"))
    progress.close()
    assert (0, 2, 1, 1, 0, 1) == (
        progress.running,
        progress.peak,
        progress.done,
        progress.failed,
        progress.retrying,
        progress.skipped,
    )
    assert "1/3 done, 0 running, 1 failed, 1 skipped, ETA 0:00" in stream.getvalue()
    quiet = io.StringIO()
    off = Progress(quiet, total=1, mode="off")
    off(event("run_ended"))
    off.close()
    assert "" == quiet.getvalue()


def test_the_line_fits_its_width_and_counts_a_resume_done() -> None:
    labels = {f"s{i}": f"src/package_{i}/module" for i in range(30)}
    progress = Progress(io.StringIO(), total=43, mode="bar", labels=labels, done=32)
    for sid in labels:
        progress(event("attempt_started", subplan_id=sid))
    for width in (40, 80, 200):
        assert width - 1 >= len(progress.line(width=width)), width
    assert "32/43 done, 30 running" in progress.line(width=200)
    progress.close()


def test_plain_lines_say_what_failed_and_end_with_a_status() -> None:
    stream = io.StringIO()
    progress = Progress(stream, total=2, mode="plain", labels={"a": "pkg/a"})
    progress(event("attempt_started", subplan_id="a"))
    progress(event("attempt_ended", subplan_id="a", status="failed"))
    progress(event("failed", subplan_id="a", reason="exit status 3"))
    progress(event("run_ended"))
    progress.close()
    lines = stream.getvalue().splitlines()
    assert "subplan: failed: a pkg/a - exit status 3" == lines[0]
    assert lines[-1].startswith("subplan: ") and "0/2 done" in lines[-1] and "1 failed" in lines[-1]
    assert "\r" not in stream.getvalue()


def test_summary_lists_failures_of_a_big_run_only() -> None:
    plan = flat_plan(50)
    bad = plan.leaves[3]
    report = simulate(plan, ScriptedWork({bad.id: [Step(fail=True)]}, default=Step(1.0)))
    text = render_summary(report, runs_dir=".subplan", limit=10)
    assert "1 failed" in text
    assert bad.id in text
    assert plan.leaves[0].id not in text
    failing = simulate(flat_plan(3), ScriptedWork(default=Step(fail=True)))
    assert "... and 2 more" in render_summary(failing, runs_dir="x", limit=1)


def test_write_atomic_replaces_whole_files(tmp_path: Path) -> None:
    target = tmp_path / "a" / "b" / "out.txt"
    write_atomic(target, "one")
    write_atomic(target, b"two")
    assert "two" == target.read_text()
    assert ["out.txt"] == [p.name for p in target.parent.iterdir()]


def test_write_atomic_writes_into_a_fifo_instead_of_replacing_it(tmp_path: Path) -> None:
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    write_atomic(fifo, "through the pipe")
    reader.join(10)
    assert [b"through the pipe"] == got
    assert stat.S_ISFIFO(fifo.stat().st_mode)
    assert ["pipe"] == [p.name for p in tmp_path.iterdir()]


def test_write_atomic_to_dev_null_leaves_the_device(tmp_path: Path) -> None:
    # As root a rename over /dev/null put a plain file there for every process.
    devnull = Path(os.devnull)
    try:
        write_atomic(devnull, "nothing")
        assert stat.S_ISCHR(devnull.stat().st_mode)
    finally:
        if not stat.S_ISCHR(devnull.stat().st_mode) and os.geteuid() == 0:
            devnull.unlink()  # put the device back for everyone else
            os.mknod(devnull, 0o666 | stat.S_IFCHR, os.makedev(1, 3))
            devnull.chmod(0o666)


def test_write_atomic_leaves_nothing_behind_on_failure(tmp_path: Path) -> None:
    (tmp_path / "dir").mkdir()
    with pytest.raises(IsADirectoryError):
        write_atomic(tmp_path / "dir", "x")
    assert ["dir"] == [p.name for p in tmp_path.iterdir()]


def test_layered_limiter_takes_both_slots_and_gives_both_back(tmp_path: Path) -> None:
    outer = Limiter(1)
    layered = LayeredLimiter(3, outer=outer)
    slot = layered.acquire(timeout=1)
    assert 1 == outer.statistics().running
    assert layered.acquire_nowait() is None  # the outer one is full
    assert 0 == outer.statistics().running - 1
    assert 1 == layered.statistics().running  # the local slot was given back
    layered.release(slot)
    assert 0 == outer.statistics().running == layered.statistics().running


def test_layered_limiter_releases_the_local_slot_when_the_outer_times_out() -> None:
    outer = Limiter(1)
    held = outer.acquire()
    layered = LayeredLimiter(2, outer=outer)
    with pytest.raises(TimeoutError):
        layered.acquire(timeout=0.01)
    assert 0 == layered.statistics().running
    outer.release(held)


def test_layered_on_a_host_pool(tmp_path: Path) -> None:
    pool = SharedLimiter("pool", 1, directory=tmp_path)
    layered = LayeredLimiter(2, outer=pool)
    slot = layered.acquire_nowait()
    assert slot is not None
    assert layered.acquire_nowait() is None
    layered.release(slot)
    assert 0 == pool.statistics().running
    pool.close()


def test_clocks() -> None:
    clock = SystemClock()
    before = clock.monotonic()
    clock.sleep(0)
    clock.sleep(0.001)
    assert clock.monotonic() > before
    assert clock.time() > 1e9
    assert "SystemClock()" == repr(clock)
    fake = FakeClock(5.0)
    fake.sleep(-1)
    fake.advance(1)
    fake.set(7.0)
    assert 7.0 == fake.monotonic()
    assert [-1] == fake.slept
    assert "FakeClock(now=7.0)" == repr(fake)
    with pytest.raises(ValueError, match="cannot move a clock back"):
        fake.advance(-1)
    with pytest.raises(ValueError, match="cannot move a clock back"):
        fake.set(1.0)


def test_retry_policy_validation() -> None:
    with pytest.raises(ConfigError, match="retries must be an integer"):
        RetryPolicy(retries=1.5)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="backoff times must be >= 0"):
        RetryPolicy(backoff_base=-1)
    assert RetryPolicy().retryable(ValueError())
    assert not RetryPolicy().retryable(None)


def test_scripted_work_called_for_real_sleeps_on_its_clock() -> None:
    clock = FakeClock()
    plan = flat_plan(1)
    work = ScriptedWork(default=Step(3.0), clock=clock)
    from subplan import run

    report = run(plan, work, clock=clock)
    assert report.ok
    assert 3.0 in clock.slept


@pytest.mark.parametrize(
    ("value", "text"),
    [(0, "0"), (999, "999"), (1234, "1.2k"), (53_000, "53k"), (2_500_000, "2.5M"), (10**10, "10G")],
)
def test_human_count(value: int, text: str) -> None:
    assert text == human_count(value)
