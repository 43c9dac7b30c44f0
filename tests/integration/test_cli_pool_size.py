"""``subplan run --pool NAME --pool-size N``: the pool's size is the pool's, the bound the run's.

Usage errors go through ``main(argv)`` in-process. The runs are real ``subplan``
subprocesses on the thread backend, sharing a pool (flock'd slot files under
``$SUBPLAN_POOL_DIR``) with a :class:`SharedLimiter` held here: while this test holds
``slot-0`` and ``slot-1``, a command can start only if the run's pool has a third slot,
that is only if ``--pool-size 3`` (and not ``--max-parallel 2``) sized it. Commands wait
on gate files; nothing is timed.
"""

from __future__ import annotations

import fcntl
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from execute_helpers import cli_call as call
from execute_helpers import wait_until
from subplan.cli import EXIT_USAGE

LIMIT = 60.0  # the longest any wait here may take before the test fails
POOL = "agents"

# A subplan's command: log its start, wait for the "go" gate, fail if told to.
SCRIPT = (
    "import os, sys, time\n"
    "box, label, attempt = sys.argv[1:4]\n"
    "with open(os.path.join(box, 'started', label), 'a') as f: f.write(attempt + '\\n')\n"
    "deadline = time.time() + 600\n"
    "while not os.path.exists(os.path.join(box, 'go')) and time.time() < deadline:\n"
    "    time.sleep(0.02)\n"
    "sys.exit(1 if os.path.exists(os.path.join(box, 'fail-' + label)) else 0)\n"
)


@pytest.fixture
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for n in range(3):
        (tmp_path / "proj" / f"m{n}").mkdir(parents=True)
        (tmp_path / "proj" / f"m{n}" / "a.py").write_text("x = 1\n")
    for kind in ("started", "pools"):
        (tmp_path / kind).mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("SUBPLAN_POOL_DIR", str(tmp_path / "pools"))
    monkeypatch.delenv("SUBPLAN_STORE", raising=False)
    monkeypatch.delenv("SUBPLAN_RUNS_DIR", raising=False)
    return tmp_path


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (["--pool-size", "3"], "subplan run: --pool-size needs --pool NAME"),
        (["--pool", POOL, "--pool-size", "0"], "argument --pool-size: must be >= 1, got 0"),
        (["--pool", POOL, "--pool-size", "x"], "--pool-size: expected an integer, got 'x'"),
    ],
)
def test_a_bad_pool_size_is_one_line_and_nothing_runs(
    here: Path, options: list[str], message: str
) -> None:
    status, out, err = call(
        "run", "proj", "--min-files", "1", "--max-files", "1", *options, "--", "touch", "ran"
    )
    assert (EXIT_USAGE, "") == (status, out)
    assert 1 == len(err.splitlines()) and message in err, err
    assert not (here / "ran").exists() and not (here / ".subplan").exists()


def started(here: Path) -> dict[str, list[str]]:
    return {p.name: p.read_text().split() for p in (here / "started").iterdir()}


def start(here: Path, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "subplan", *args],
        cwd=here,
        env=dict(os.environ),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_argv(here: Path) -> list[str]:
    return [
        "run", "proj", "--min-files", "1", "--max-files", "1", "--run-id", "r", "--json",
        "--pool", POOL, "--pool-size", "3", "--max-parallel", "2",
        "--", sys.executable, "-c", SCRIPT, str(here), "{label}", "{attempt}",
    ]  # fmt: skip


class _TwoSlots:
    """slot-0 and slot-1 of the pool, locked as a holder does but with no record (so no
    size of its own to disagree with); close() frees them."""

    def __init__(self, pool: Path) -> None:
        pool.mkdir(parents=True, exist_ok=True)
        self.fds = []
        for index in (0, 1):
            fd = os.open(pool / f"slot-{index}", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            self.fds.append(fd)

    def close(self) -> None:
        while self.fds:
            os.close(self.fds.pop())  # closing unlocks


def hold_two_slots(here: Path) -> _TwoSlots:
    """Take slot-0 and slot-1 of the pool."""
    return _TwoSlots(here / "pools" / POOL)


def finish(process: subprocess.Popen[str]) -> tuple[int, dict[str, Any], str]:
    out, err = process.communicate(timeout=LIMIT)
    return process.returncode, json.loads(out) if out else {}, err


def test_the_pool_size_sizes_the_pool_and_max_parallel_still_bounds_the_run(here: Path) -> None:
    other = hold_two_slots(here)
    orchestrator = start(here, *run_argv(here))
    try:
        # Only a pool of 3 has a slot left while slot-0 and slot-1 are held here.
        wait_until(
            lambda: len(started(here)) == 1,
            "a command started beside the 2 slots held here (the pool must have 3)",
            alive=orchestrator,
        )
        other.close()  # now the whole pool is free: the run's own bound is what stops it
        wait_until(lambda: len(started(here)) == 2, "2 commands ran at once", alive=orchestrator)
        (here / "go").touch()
        status, report, err = finish(orchestrator)
    finally:
        other.close()
        (here / "go").touch()
        if orchestrator.poll() is None:
            orchestrator.kill()
            orchestrator.communicate()
    assert 0 == status, err
    # 2 of 3 pool slots were free after the first start, and 2 ran at once, never more.
    assert ("succeeded", 2) == (report["status"], report["peak_concurrency"])


def test_a_resume_keeps_the_pool_size(here: Path) -> None:
    (here / "fail-m1").touch()
    (here / "go").touch()
    status, report, err = finish(start(here, *run_argv(here)))
    assert (1, 1) == (status, report["counts"]["failed"]), err
    (here / "fail-m1").unlink()
    other = hold_two_slots(here)
    resumed = start(here, "resume", "r", "--json")
    try:
        wait_until(
            lambda: started(here).get("m1") == ["1", "2"],
            "the resumed m1 started beside the 2 slots held here (the pool must have 3 again)",
            alive=resumed,
        )
        status, report, err = finish(resumed)
    finally:
        other.close()
        if resumed.poll() is None:
            resumed.kill()
            resumed.communicate()
    assert (0, "succeeded") == (status, report["status"]), err
    assert {"m0": ["1"], "m1": ["1", "2"], "m2": ["1"]} == started(here)


def test_a_cluster_pool_of_another_size_is_refused(here: Path) -> None:
    from subplan._backends._dask import open_local_cluster

    def on_cluster(size: str) -> tuple[int, str, str]:
        return call(
            "run", "proj", "--min-files", "1", "--max-files", "1",
            "--no-store", "--backend", "dask",
            "--scheduler", address, "--pool", POOL, "--pool-size", size, "--", "touch", size,
        )  # fmt: skip

    with open_local_cluster(1) as cluster:
        address = str(cluster.scheduler_address)
        assert 0 == on_cluster("3")[0]  # the first run registers the pool with 3 leases
        status, _, err = on_cluster("5")
    assert (EXIT_USAGE, 1) == (status, len(err.splitlines())), err
    assert f"cluster pool '{POOL}'" in err and "Inconsistent max leases: 5, expected: 3" in err
    assert (here / "proj" / "3").exists() and not (here / "proj" / "5").exists()


def test_a_pool_in_use_with_another_size_is_refused_before_anything_is_recorded(
    here: Path,
) -> None:
    from subplan import SharedLimiter

    other = SharedLimiter(POOL, 3, directory=here / "pools")  # another run's view
    held = other.acquire_nowait()
    assert held is not None
    try:
        status, out, err = call(
            "run", "proj", "--min-files", "1", "--max-files", "1",
            "--pool", POOL, "--pool-size", "4",
            "--", "touch", "ran",
        )  # fmt: skip
        assert (EXIT_USAGE, "") == (status, out)
        assert 1 == len(err.splitlines()), err
        assert f"pool '{POOL}' is in use with size 3 (pid {os.getpid()} on " in err
        assert not (here / "ran").exists()
        status, out, err = call("status", "--json")
        assert EXIT_USAGE == status and "no state database at" in err, err  # nothing made
        # The same size joins the pool; once nobody holds it, any size may.
        assert 0 == call("run", "proj", "--min-files", "1", "--max-files", "1", "--pool", POOL,
                         "--pool-size", "3", "--", "true")[0]  # fmt: skip
    finally:
        other.close()
    assert 0 == call("run", "proj", "--min-files", "1", "--max-files", "1", "--pool", POOL,
                     "--pool-size", "5", "--", "true")[0]  # fmt: skip
