"""The dask backend on a real ``LocalCluster`` of worker processes.

One cluster (10 single-threaded worker processes, set up as the backend sets up its own:
``allowed-failures: 0``) serves the whole module, by address. Bounds are checked with
gates across processes (files in a directory), not sleeps.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import itertools
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import distributed as _distributed
import pytest

from execute_helpers import (
    GateWork,
    WaitForCancel,
    WaitForGo,
    cli_call,
    fail_first_attempt,
    flat_plan,
    hang,
    intervals,
    rate_limited_first_attempt,
    wait_until,
)
from subplan import ConfigError, RetryPolicy, resume, run
from subplan._backends import _dask_pool
from subplan._backends._dask_pool import ClusterPool, _Lease, open_local_cluster
from subplan._command._work import CommandWork
from subplan._dispatch._results import RunReport, WorkResult
from subplan._limit._tracker import peak_from_intervals
from subplan._store._base import AttemptStarted

distributed: Any = _distributed  # untyped: Any at this boundary
WORKERS = 10
WAIT = 30.0  # the longest a test waits for something before failing with a message


@pytest.fixture(scope="module")
def address() -> Iterator[str]:
    with open_local_cluster(WORKERS) as cluster:
        yield str(cluster.scheduler_address)


@pytest.fixture
def client(address: str) -> Iterator[Any]:
    c = distributed.Client(address, set_as_default=False)
    # A test that killed a worker leaves the nanny starting a new one: wait for it.
    c.wait_for_workers(WORKERS, timeout=WAIT)
    try:
        yield c
    finally:
        c.close()


# Every wait here fails after WAIT seconds, naming what it waited for.
wait_for = functools.partial(wait_until, limit=WAIT)


def test_the_bound_holds_on_dask_workers(client: Any, address: str, tmp_path: Path) -> None:
    # 15 subplans, limit 10: the first 10 wait until 10 run together, so the peak is
    # exactly 10; an 11th at once would need the limiter to over-admit.
    report = run(
        flat_plan(15),
        GateWork(str(tmp_path), until=10),
        max_parallel=10,
        backend="dask",
        scheduler=address,
    )
    assert report.ok, report.outcomes
    assert (10, 10) == (report.peak_concurrency, report.tracker_peak)
    assert 15 == len(report.attempts)


def _run_behind(reports: list[RunReport], *args: Any, **options: Any) -> threading.Thread:
    """Start ``run(*args, **options)`` in a daemon thread that appends its report."""
    driver = threading.Thread(target=lambda: reports.append(run(*args, **options)), daemon=True)
    driver.start()
    return driver


def _two_runs(address: str, directory: Path, make_pool: Any, gate: int) -> list[RunReport]:
    """Two orchestrators, 8 subplans each at most 4 at once; attempts wait for ``gate``."""
    reports: list[RunReport] = []
    errors: list[BaseException] = []

    def one(n: int) -> None:
        try:
            report = run(
                flat_plan(8),
                GateWork(str(directory), until=gate, wait=5.0, hold=0.05),
                max_parallel=4,
                backend="dask",
                scheduler=address,
                limiter=make_pool(),
                run_id=f"orchestrator-{n}",
                runs_dir=directory / f"runs-{n}",
            )
            reports.append(report)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=one, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT * 2)
    assert not errors, errors
    assert 2 == len(reports)
    return reports


def test_two_orchestrators_sharing_a_pool_never_exceed_it_together(
    client: Any, address: str, tmp_path: Path
) -> None:
    reports = _two_runs(address, tmp_path, lambda: ClusterPool("test-shared", 5), gate=5)
    assert all(r.ok for r in reports), [r.outcomes for r in reports]
    combined = peak_from_intervals(intervals(reports[0]) + intervals(reports[1]))
    # The gate waits for 5 together, so the pool is used in full, never beyond.
    assert 5 == combined
    assert all(r.peak_concurrency <= 4 for r in reports)


class _PoolWithoutSemaphore(ClusterPool):
    """Deliberately broken: hands out leases without asking the cluster."""

    def acquire_nowait(self) -> _Lease | None:
        return _Lease(0)

    def release(self, slot: _Lease) -> None:
        pass


def test_the_combined_peak_check_fails_without_the_semaphore(
    client: Any, address: str, tmp_path: Path
) -> None:
    # The same two runs with a pool that skips the semaphore: the check above must see it.
    reports = _two_runs(address, tmp_path, lambda: _PoolWithoutSemaphore("test-broken", 5), gate=8)
    combined = peak_from_intervals(intervals(reports[0]) + intervals(reports[1]))
    assert 8 == combined  # both runs' whole budgets at once: the check sees the overbooking


def test_a_killed_worker_loses_nothing(client: Any, address: str, tmp_path: Path) -> None:
    plan = flat_plan(12)
    worker_pids = set(client.run(os.getpid).values())
    killed: list[str] = []

    def kill_two() -> None:
        # Once 4 attempts run, SIGKILL the workers of two of them, then let all go.
        wait_for(lambda: len(list(tmp_path.glob("started-*"))) >= 4, "4 attempts to start")
        for path in sorted(tmp_path.glob("started-*"))[:2]:
            pid = int(path.read_text())
            assert pid in worker_pids  # it runs on a worker of the cluster
            os.kill(pid, signal.SIGKILL)
            killed.append(path.name.split("-")[1])
        (tmp_path / "go").touch()

    killer = threading.Thread(target=kill_two)
    killer.start()
    report = run(
        plan,
        WaitForGo(str(tmp_path)),
        max_parallel=4,
        retries=RetryPolicy(retries=1, backoff_base=0.0),
        backend="dask",
        scheduler=address,
    )
    killer.join(WAIT)
    crashed = [a for a in report.attempts if a.status == "crashed"]
    innocent = [o for o in report.outcomes.values() if o.label not in killed]
    figures = {
        "subplans": len(plan.leaves),
        "kills": len(crashed),
        "lost": len(plan.leaves) - len(report.succeeded),
        "innocent charged": sum(len(o.attempts) - 1 for o in innocent),
    }
    assert {"subplans": 12, "kills": 2, "lost": 0, "innocent charged": 0} == figures
    for outcome in report.outcomes.values():
        statuses = [a.status for a in outcome.attempts]
        expected = ["crashed", "succeeded"] if outcome.label in killed else ["succeeded"]
        assert expected == statuses
    assert all("worker died" in (a.error or "") for a in crashed)
    assert report.peak_concurrency <= 4
    assert report.tracker_peak <= 4
    for outcome in report.outcomes.values():  # never twice at once
        spans = sorted((a.started, a.ended) for a in outcome.attempts)
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))


def test_command_work_runs_on_the_workers(client: Any, address: str, tmp_path: Path) -> None:
    script = (
        "import os, sys, uuid\n"
        "open(os.path.join(sys.argv[1], uuid.uuid4().hex), 'w').write(str(os.getppid()))\n"
    )
    out = tmp_path / "out"
    out.mkdir()
    work = CommandWork([sys.executable, "-c", script, str(out)])
    report = run(
        flat_plan(3), work, max_parallel=3, backend="dask", scheduler=address, runs_dir=tmp_path
    )
    assert report.ok, report.outcomes
    parents = {int(p.read_text()) for p in out.iterdir()}
    assert parents and parents <= set(client.run(os.getpid).values())


def test_a_raising_callable_fails_and_is_retried(client: Any, address: str) -> None:
    policy = RetryPolicy(retries=1, backoff_base=0.0)
    report = run(
        flat_plan(2), fail_first_attempt, retries=policy, backend="dask", scheduler=address
    )
    assert report.ok
    for outcome in report.outcomes.values():
        assert ["failed", "succeeded"] == [a.status for a in outcome.attempts]
        assert "ValueError: first attempt fails" == outcome.attempts[0].error

    once = run(flat_plan(1), fail_first_attempt, backend="dask", scheduler=address)
    assert "failed" == once.status


def test_a_rate_limited_attempt_pauses_the_run(client: Any, address: str) -> None:
    report = run(flat_plan(1), rate_limited_first_attempt, backend="dask", scheduler=address)
    assert report.ok
    assert ["rate_limited", "succeeded"] == [a.status for a in report.attempts]
    assert 1 == len(report.pauses)


def test_a_timeout_on_the_runs_own_cluster_kills_the_worker() -> None:
    # No address: the run starts (and closes) a LocalCluster of its own, so it may kill.
    began = time.monotonic()
    report = run(flat_plan(1), hang, max_parallel=1, timeout=0.5, backend="dask")
    assert ["timed_out"] == [a.status for a in report.attempts]
    assert time.monotonic() - began < WAIT


def test_a_scheduler_address_needs_the_dask_backend() -> None:
    with pytest.raises(ConfigError, match="needs backend='dask'"):
        run(flat_plan(1), fail_first_attempt, scheduler="tcp://127.0.0.1:1")
    with pytest.raises(ConfigError, match="cluster pool needs backend='dask'"):
        run(flat_plan(1), fail_first_attempt, limiter=ClusterPool("p", 1))


def test_without_distributed_the_dask_backend_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "distributed" else real(name, *a),
    )
    with pytest.raises(ConfigError, match=r"pip install 'subplan\[dask\]'"):
        run(flat_plan(1), fail_first_attempt, backend="dask")


def test_importing_subplan_does_not_import_dask() -> None:
    code = "import subplan, sys; print('distributed' in sys.modules, 'dask' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert "False False" == out.strip()


class _Unreachable:
    def acquire(self, timeout: float | None = None) -> bool:
        raise OSError("scheduler unreachable")

    def release(self) -> bool:
        raise OSError("scheduler unreachable")


def test_a_pool_that_cannot_reach_the_scheduler_blocks_new_work_only() -> None:
    pool = ClusterPool("p", 2)
    pool._semaphore = _Unreachable()
    assert pool.acquire_nowait() is None  # no slot now: nothing new starts
    assert (1, "OSError: scheduler unreachable") == (pool.errors, pool.last_error)
    pool._held = 1
    pool.release(_Lease(1))  # never raises into the dispatcher
    assert 0 == pool.held


def test_a_pool_size_must_be_positive() -> None:
    with pytest.raises(ConfigError, match="size must be an integer >= 1"):
        ClusterPool("p", 0)


def test_a_resumed_run_keeps_the_dask_backend_and_scheduler(
    client: Any, address: str, tmp_path: Path
) -> None:
    from subplan._run import resume

    first = run(
        flat_plan(2),
        fail_first_attempt,
        backend="dask",
        scheduler=address,
        store="",
        runs_dir=tmp_path,
    )
    assert "failed" == first.status
    again = resume(first.run_id, fail_first_attempt, runs_dir=tmp_path)
    assert again.ok
    # The second attempts ran on the cluster: their worker-side starts lie after the first.
    assert 2 == sum(1 for a in again.attempts if a.number == 2 and a.status == "succeeded")
    from subplan._store._open import open_store

    store = open_store(str(tmp_path / "state.db"), tmp_path, create=False)
    try:
        config = store.get_run(first.run_id).config
    finally:
        store.close()
    assert ("dask", address) == (config["backend"], config["scheduler"])


def _our_tasks(dask_scheduler: Any = None) -> list[str]:
    """On the scheduler: the keys of subplan's runner tasks it still knows."""
    return [str(k) for k in dask_scheduler.tasks if str(k).startswith("subplan-")]


def _mailboxes() -> int:
    """On a worker: how many runners it hosts now."""
    from subplan._backends import _dask_runner

    return len(_dask_runner._MAILBOXES)


def test_runners_give_their_worker_threads_back(client: Any, address: str) -> None:
    # Each attempt runs in a runner (a long-running dask task); when the run ends, every
    # runner it started ends too, so the cluster's threads are free for others at once.
    report = run(
        flat_plan(12),
        fail_first_attempt,
        max_parallel=6,
        backend="dask",
        scheduler=address,
        retries=RetryPolicy(retries=1, backoff_base=0.0),
    )
    assert report.ok
    wait_for(lambda: not client.run_on_scheduler(_our_tasks), "the runner tasks to end")
    wait_for(lambda: not any(client.run(_mailboxes).values()), "the runners to leave")


def test_cancelling_reaches_the_attempt_on_its_worker(
    client: Any, address: str, tmp_path: Path
) -> None:
    # A cluster given by address: nothing is killed, so only the cancel message sent to
    # the runner's worker can end these attempts before their own 20 s wait runs out.
    stop = threading.Event()

    def cancel_when_both_run() -> None:
        wait_for(lambda: len(list(tmp_path.glob("started-*"))) >= 2, "2 attempts to start")
        stop.set()

    canceller = threading.Thread(target=cancel_when_both_run)
    canceller.start()
    began = time.monotonic()
    report = run(
        flat_plan(4),
        WaitForCancel(str(tmp_path)),
        max_parallel=2,
        backend="dask",
        scheduler=address,
        cancel=stop,
    )
    canceller.join(WAIT)
    assert "cancelled" == report.status
    assert time.monotonic() - began < WAIT / 2  # not the attempts' own 20 s
    saw = sorted(p.name.removeprefix("saw-cancel-") for p in tmp_path.glob("saw-cancel-*"))
    started = sorted(p.name.removeprefix("started-") for p in tmp_path.glob("started-*"))
    assert 2 == len(started)
    assert started == saw  # each running attempt saw ctx.cancelled on its worker
    assert {"cancelled"} == {a.status for a in report.attempts}
    assert not any(a.charged for a in report.attempts)


def test_a_timeout_reaches_the_attempt_without_killing_its_worker(
    client: Any, address: str, tmp_path: Path
) -> None:
    pids = set(client.run(os.getpid).values())
    report = run(
        flat_plan(2),
        WaitForCancel(str(tmp_path)),
        max_parallel=2,
        timeout=0.5,
        backend="dask",
        scheduler=address,
    )
    assert ["timed_out", "timed_out"] == [a.status for a in report.attempts]
    assert 2 == len(list(tmp_path.glob("saw-cancel-*")))  # the work ended at its deadline
    assert pids == set(client.run(os.getpid).values())  # and no worker was killed


def _returns_a_lock(subplan: object, ctx: object) -> Any:
    return threading.Lock()  # cannot be pickled


def test_a_result_that_cannot_travel_back_fails_the_attempt(address: str) -> None:
    report = run(flat_plan(1), _returns_a_lock, backend="dask", scheduler=address)
    assert "failed" == report.status
    assert "result cannot be sent back" in (report.attempts[0].error or "")


def test_work_the_workers_cannot_load_fails_with_the_import_error(
    address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A module only this process can import (the workers started before it existed).
    (tmp_path / "only_here.py").write_text("def work(subplan, ctx):\n    return None\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    module = importlib.import_module("only_here")
    report = run(flat_plan(2), module.work, backend="dask", scheduler=address)
    assert "failed" == report.status
    errors = {a.error for a in report.attempts}
    assert {"ModuleNotFoundError: No module named 'only_here'"} == errors


def _start_cluster(directory: Path) -> tuple[subprocess.Popen[bytes], subprocess.Popen[bytes], str]:
    """A scheduler and 2 single-threaded workers as processes of their own."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    scheduler_file = directory / "scheduler.json"
    scheduler = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_scheduler",
            "--host",
            "127.0.0.1",
            "--port",
            "0",
            "--no-dashboard",
            "--scheduler-file",
            str(scheduler_file),
        ],
        stderr=subprocess.DEVNULL,
        env=env,
    )
    wait_for(
        lambda: scheduler_file.exists() and scheduler_file.stat().st_size > 0,
        "the scheduler to start",
    )
    address = json.loads(scheduler_file.read_text())["address"]
    workers = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "distributed.cli.dask_worker",
            address,
            "--nthreads",
            "1",
            "--nworkers",
            "2",
            "--no-dashboard",
        ],
        stderr=subprocess.DEVNULL,
        env=env,
    )
    with distributed.Client(address, set_as_default=False, timeout=WAIT) as c:
        c.wait_for_workers(2, timeout=WAIT)
    return scheduler, workers, address


def test_a_lost_scheduler_cancels_the_run_and_a_resume_elsewhere_finishes(
    address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SUBPLAN_SCHEDULER_GRACE", "1")
    gates = tmp_path / "gates"
    gates.mkdir()
    scheduler, workers, lost_address = _start_cluster(tmp_path)
    watcher = distributed.Client(lost_address, set_as_default=False)
    reports: list[RunReport] = []
    try:

        def kill_scheduler_while_two_run() -> None:
            wait_for(lambda: len(list(gates.glob("started-*"))) >= 2, "2 attempts to start")
            scheduler.kill()
            scheduler.wait()
            wait_for(lambda: watcher.status != "running", "a client to see the loss")
            (gates / "go").touch()  # the running two finish on their workers

        killer = threading.Thread(target=kill_scheduler_while_two_run)
        killer.start()
        driver = _run_behind(
            reports,
            flat_plan(4),
            WaitForGo(str(gates)),
            max_parallel=2,
            backend="dask",
            scheduler=lost_address,
            store="",
            runs_dir=tmp_path,
            run_id="lost",
        )
        driver.join(WAIT * 2)
        killer.join(WAIT)
        assert not driver.is_alive(), "the run did not end after losing its scheduler"
    finally:
        for process in (scheduler, workers):
            process.kill()
            process.wait()
        _dask_pool._close(watcher)
    [report] = reports
    assert "cancelled" == report.status
    assert any("lost the dask scheduler" in w for w in report.warnings), report.warnings
    # The two that ran finished (their replies come straight from the workers); nothing
    # new was handed out once the run's client saw the loss (a race may let one through).
    assert 2 <= len(report.succeeded) < 4
    assert not any(a.charged for a in report.attempts if a.status != "succeeded")

    # Resumed on another cluster, only the other two run.
    again = resume("lost", WaitForGo(str(gates)), runs_dir=tmp_path, scheduler=address)
    assert again.ok
    runs = [p.name for p in gates.glob("started-*")]
    assert 4 == len(runs)  # each subplan ran once in all


_ORCHESTRATOR = """
import sys
from execute_helpers import WaitForCancel, flat_plan
from subplan import run
run(flat_plan(6), WaitForCancel(sys.argv[2]), max_parallel=3, backend="dask", scheduler=sys.argv[1])
"""


def test_a_killed_orchestrators_attempts_are_cancelled_and_its_runners_end(
    client: Any, address: str, tmp_path: Path
) -> None:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    orchestrator = subprocess.Popen(
        [sys.executable, "-c", _ORCHESTRATOR, address, str(tmp_path)], env=env
    )
    try:
        wait_for(lambda: len(list(tmp_path.glob("started-*"))) >= 3, "3 attempts to start")
        assert 3 == len(client.run_on_scheduler(_our_tasks))
    finally:
        orchestrator.kill()
        orchestrator.wait()
    # Its client is gone, so the scheduler releases its runner tasks: each runner sets
    # ctx.cancelled for the attempt it runs (command work would kill its commands), ends,
    # and no new attempt starts.
    wait_for(lambda: len(list(tmp_path.glob("saw-cancel-*"))) == 3, "the attempts to stop")
    wait_for(lambda: not client.run_on_scheduler(_our_tasks), "the runner tasks to end")
    wait_for(lambda: not any(client.run(_mailboxes).values()), "the runners to leave")
    assert 3 == len(list(tmp_path.glob("started-*")))


def test_a_pool_of_another_size_is_refused_before_anything_is_recorded(
    client: Any, address: str, tmp_path: Path
) -> None:
    first = run(
        flat_plan(1),
        fail_first_attempt,
        retries=RetryPolicy(retries=1, backoff_base=0.0),
        backend="dask",
        scheduler=address,
        limiter=ClusterPool("sized", 3),
    )
    assert first.ok
    with pytest.raises(ConfigError, match="exists on the scheduler with another size than 5"):
        run(
            flat_plan(1),
            fail_first_attempt,
            backend="dask",
            scheduler=address,
            limiter=ClusterPool("sized", 5),
            store="",
            runs_dir=tmp_path,
            run_id="refused",
        )
    from subplan._store._open import open_store

    with open_store(str(tmp_path / "state.db"), tmp_path, create=True) as store:
        assert [] == store.list_runs()  # no half-made run to resume or to trip over
    again = run(
        flat_plan(1),
        fail_first_attempt,
        retries=RetryPolicy(retries=1, backoff_base=0.0),
        backend="dask",
        scheduler=address,
        limiter=ClusterPool("sized", 3),
        store="",
        runs_dir=tmp_path,
        run_id="refused",
    )
    assert again.ok  # the id was never taken


_WAIT_FOR_GO = (
    "import pathlib, sys, time\n"
    "d = pathlib.Path(sys.argv[1])\n"
    "(d / ('started-' + sys.argv[2] + '-' + str(time.monotonic_ns()))).touch()\n"
    "while not (d / 'go').exists():\n"
    "    time.sleep(0.01)\n"
)


def test_the_cli_says_in_one_line_that_it_lost_the_scheduler_and_resumes_elsewhere(
    address: str, tmp_path: Path
) -> None:
    gates = tmp_path / "gates"
    gates.mkdir()
    scheduler, workers, lost_address = _start_cluster(tmp_path)
    watcher = distributed.Client(lost_address, set_as_default=False)
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(sys.path),
        "SUBPLAN_SCHEDULER_GRACE": "1",
    }
    runs = tmp_path / "runs"
    listing = tmp_path / "files.txt"
    listing.write_text("".join(f"d{i}/f.py\n" for i in range(4)))
    command = ["--", sys.executable, "-c", _WAIT_FOR_GO, str(gates), "{label}"]
    subplan = [sys.executable, "-m", "subplan"]
    try:
        cli = subprocess.Popen(
            [
                *subplan,
                "run",
                "--from-list",
                str(listing),
                "--min-files",
                "1",
                "--max-files",
                "1",
                "--backend",
                "dask",
                "--scheduler",
                lost_address,
                "--max-parallel",
                "2",
                "--runs-dir",
                str(runs),
                "--run-id",
                "cli-lost",
                *command,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
            cwd=tmp_path,
        )
        wait_for(lambda: len(list(gates.glob("started-*"))) >= 2, "2 commands to start")
        scheduler.kill()
        scheduler.wait()
        wait_for(lambda: watcher.status != "running", "a client to see the loss")
        (gates / "go").touch()
        out, err = cli.communicate(timeout=WAIT)
    finally:
        for process in (scheduler, workers):
            process.kill()
            process.wait()
        _dask_pool._close(watcher)
    assert 130 == cli.returncode, err
    assert "Traceback" not in err
    [warning] = [line for line in err.splitlines() if "lost the dask scheduler" in line]
    assert warning.startswith("subplan: warning: lost the dask scheduler")
    assert "resume with: subplan resume cli-lost" in out

    resumed = subprocess.run(
        [*subplan, "resume", "cli-lost", "--runs-dir", str(runs), "--scheduler", address],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=WAIT * 2,
    )
    assert 0 == resumed.returncode, resumed.stderr
    labels = sorted(p.name.split("-")[1] for p in gates.glob("started-*"))
    assert ["d0", "d1", "d2", "d3"] == labels  # each subplan's command ran once in all


def _refuse_handoffs(times: int, dask_worker: Any = None) -> None:
    """On a worker: answer the next ``times`` hand-offs (all when -1) "gone", as a runner
    that had just ended would; each refusal is counted on the worker."""
    from subplan._backends import _dask_runner

    dask_worker.subplan_refusals = 0
    left = [times]

    async def refusing(runner: str, token: int, payload: bytes) -> dict[str, Any]:
        if left[0] != 0:
            left[0] -= 1
            dask_worker.subplan_refusals += 1
            return _dask_runner._GONE
        return await _dask_runner._handle_attempt(runner, token, payload)

    dask_worker.handlers["subplan_attempt"] = refusing


def _accept_handoffs(dask_worker: Any = None) -> int:
    """On a worker: hand-offs reach the runners again; how many were refused."""
    from subplan._backends import _dask_runner

    dask_worker.handlers["subplan_attempt"] = _dask_runner._handle_attempt
    return int(getattr(dask_worker, "subplan_refusals", 0))


def test_an_attempt_a_runner_could_not_take_goes_to_another_uncharged() -> None:
    # A cluster of 2 single-threaded workers: the run's 2 runners are on both, so each
    # worker's first hand-off is refused (2 in all, under the 3 an attempt may have).
    with open_local_cluster(2) as cluster:
        own = distributed.Client(cluster, set_as_default=False)
        try:
            own.wait_for_workers(2, timeout=WAIT)
            own.run(_refuse_handoffs, 1)
            report = run(
                flat_plan(6),
                fail_first_attempt,
                max_parallel=2,
                backend="dask",
                scheduler=cluster.scheduler_address,
                retries=RetryPolicy(retries=1, backoff_base=0.0),
            )
            refused = sum(own.run(_accept_handoffs).values())
        finally:
            own.close()
    assert 2 == refused
    assert report.ok
    for outcome in report.outcomes.values():  # a refused hand-off is no attempt at all
        assert ["failed", "succeeded"] == [a.status for a in outcome.attempts]


def test_an_attempt_no_runner_takes_ends_as_a_crash(client: Any, address: str) -> None:
    client.run(_refuse_handoffs, -1)
    try:
        report = run(flat_plan(1), fail_first_attempt, backend="dask", scheduler=address)
    finally:
        client.run(_accept_handoffs)
    [attempt] = report.attempts
    assert ("crashed", True) == (attempt.status, attempt.charged)
    assert "no runner took it (4 tries)" in (attempt.error or "")


def test_a_cancelled_run_on_its_own_cluster_kills_attempts_that_ignore_it(
    tmp_path: Path,
) -> None:
    stop = threading.Event()

    def cancel_once_it_runs() -> None:
        wait_for(lambda: any(tmp_path.glob("started-*")), "the attempt to start")
        stop.set()

    canceller = threading.Thread(target=cancel_once_it_runs)
    canceller.start()
    began = time.monotonic()
    # No address: the run's own cluster, whose workers it may kill. The work ignores
    # ctx.cancelled and would wait a minute.
    report = run(flat_plan(1), WaitForGo(str(tmp_path), wait=60.0), backend="dask", cancel=stop)
    canceller.join(WAIT)
    assert time.monotonic() - began < WAIT
    assert "cancelled" == report.status
    assert [("cancelled", False)] == [(a.status, a.charged) for a in report.attempts]


@dataclass(frozen=True)
class _FirstQuickOthersWait:
    """d0000 ends at once (writing ``done-d0000``); the others wait for ``go``."""

    directory: str

    def __call__(self, subplan: Any, ctx: Any) -> None:
        if subplan.label == "d0000":
            (Path(self.directory) / "done-d0000").touch()
            return
        WaitForGo(self.directory)(subplan, ctx)


def test_an_idle_runner_gives_its_thread_back_while_the_run_goes_on(
    client: Any, address: str, tmp_path: Path
) -> None:
    runs: list[RunReport] = []
    driver = _run_behind(
        runs,
        flat_plan(2),
        _FirstQuickOthersWait(str(tmp_path)),
        max_parallel=2,
        backend="dask",
        scheduler=address,
    )
    try:
        # Two runners while both attempts run; once d0000 is done its runner lingers a
        # second, then is stopped though the run goes on.
        wait_for(lambda: (tmp_path / "done-d0000").exists(), "d0000 to end")
        wait_for(lambda: sum(client.run(_mailboxes).values()) == 1, "one runner to be left")
    finally:
        (tmp_path / "go").touch()
        driver.join(WAIT)
    assert runs and runs[0].ok


def test_the_scheduler_grace_comes_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    assert _dask_pool.SCHEDULER_GRACE == _dask_pool.scheduler_grace()
    monkeypatch.setenv("SUBPLAN_SCHEDULER_GRACE", "2.5")
    assert 2.5 == _dask_pool.scheduler_grace()
    for bad in ("soon", "-1", "inf", "nan"):
        monkeypatch.setenv("SUBPLAN_SCHEDULER_GRACE", bad)
        with pytest.raises(ConfigError, match="SUBPLAN_SCHEDULER_GRACE must be seconds >= 0"):
            _dask_pool.scheduler_grace()


def _two_dirs(root: Path) -> None:
    for d in ("a", "b"):
        (root / d).mkdir()
        (root / d / "m.py").write_text("x = 1\n")


@pytest.mark.parametrize("progress", ["plain", "off"])
def test_the_cli_says_when_it_connected_unless_progress_is_off(
    address: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, progress: str
) -> None:
    _two_dirs(tmp_path)
    monkeypatch.chdir(tmp_path)
    status, _, err = cli_call(
        "run", ".", "--max-files", "1", "--backend", "dask", "--scheduler", address,
        "--progress", progress, "--no-store", "--", sys.executable, "-c", "pass",
    )  # fmt: skip
    assert 0 == status, err
    said = [line for line in err.splitlines() if "Dask" in line or "connected" in line]
    if progress == "off":
        assert [] == said
        return
    assert 1 == len(said), said
    assert re.fullmatch(
        rf"subplan: connected to {re.escape(address)} \({WORKERS} workers\) in \d+\.\ds", said[0]
    ), said


def test_the_cli_says_it_starts_a_local_cluster_and_tags_output_from_its_workers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _two_dirs(tmp_path)
    monkeypatch.chdir(tmp_path)
    say = "import os; print('hello from', os.environ['SUBPLAN_LABEL'])"
    status, out, err = cli_call(
        "run", ".", "--max-files", "1", "--backend", "dask", "--max-parallel", "1", "--tag",
        "--no-store", "--", sys.executable, "-c", say,
    )  # fmt: skip
    assert 0 == status, err
    said = [line for line in err.splitlines() if "Dask" in line]
    assert "subplan: starting a local Dask cluster (1 worker, 1 thread each)..." == said[0]
    assert re.fullmatch(
        r"subplan: local Dask cluster ready at tcp://\S+ \(1 worker\) in \d+\.\ds", said[1]
    ), said
    # The workers write the logs where this process reads them: --tag works on dask too.
    assert ["a\thello from a", "b\thello from b"] == sorted(
        line for line in out.splitlines() if "\t" in line
    )


# A command that notes its start and a SIGTERM, and carries on: only SIGKILL ends it.
STUBBORN = (
    "import os, signal, sys, time\n"
    "fd = os.open(sys.argv[1], os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)\n"
    "signal.signal(signal.SIGTERM, lambda *_: os.write(fd, b'term\\n'))\n"
    "os.write(fd, b'start\\n')\n"
    "while True: time.sleep(600)\n"
)


def commands_of(run_id: str) -> list[int]:
    needle = f"SUBPLAN_RUN_ID={run_id}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if needle in (entry / "environ").read_bytes().split(b"\0"):
                    stat = (entry / "stat").read_text()
                    if stat[stat.rfind(")") + 2] not in "ZX":
                        found.append(int(entry.name))
            except OSError:
                continue
    return found


def test_a_second_signal_has_the_workers_kill_the_runs_commands(
    client: Any, address: str, tmp_path: Path
) -> None:
    # A cluster given by address: its workers kill the commands of their hosts.
    log = tmp_path / "log"
    work = CommandWork([sys.executable, "-c", STUBBORN, str(log)], kill_grace=600.0)

    def lines() -> list[str]:
        return log.read_text().split() if log.exists() else []

    def interrupt_twice() -> None:
        wait_for(lambda: lines().count("start") >= 2, "both commands to start")
        os.kill(os.getpid(), signal.SIGINT)  # they shrug off the SIGTERM...
        wait_for(lambda: lines().count("term") >= 2, "the SIGTERM of the first signal")
        os.kill(os.getpid(), signal.SIGINT)  # ...so the second signal must kill them

    interrupter = threading.Thread(target=interrupt_twice)
    interrupter.start()
    try:
        report = run(
            flat_plan(2),
            work,
            max_parallel=2,
            backend="dask",
            scheduler=address,
            run_id="second-signal",
            runs_dir=tmp_path / "runs",
            handle_signals=True,
        )
        interrupter.join(WAIT)
        assert ("cancelled", []) == (report.status, commands_of("second-signal"))
    finally:
        for pid in commands_of("second-signal"):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)


@dataclass(frozen=True)
class SeesItsOwnStart:
    """Work that passes only when the store holds its attempt's start row already."""

    runs: str

    def __call__(self, subplan: Any, ctx: Any) -> WorkResult:
        from subplan import open_store

        with contextlib.closing(open_store(None, Path(self.runs), readonly=True)) as store:
            numbers = [r.number for r in store.attempts(ctx.run_id) if r.subplan_id == subplan.id]
        return WorkResult(passed=ctx.attempt in numbers, detail=f"stored: {numbers}")


class SlowStarts:
    """A real store whose batches that start attempts commit a second late."""

    def __init__(self, store: Any) -> None:
        self.inner = store

    def apply(self, writes: Any) -> Any:
        if any(isinstance(w, AttemptStarted) for w in writes):
            time.sleep(1.0)
        return self.inner.apply(writes)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)


def test_an_attempts_start_is_committed_before_it_reaches_a_worker(
    client: Any, address: str, tmp_path: Path
) -> None:
    from subplan import open_store

    runs = tmp_path / "runs"
    with contextlib.closing(open_store(None, runs)) as store:
        report = run(
            flat_plan(2),
            SeesItsOwnStart(str(runs)),
            max_parallel=2,
            backend="dask",
            scheduler=address,
            runs_dir=runs,
            store=SlowStarts(store),
        )
    assert [True, True] == [a.passed for a in report.attempts], [
        (a.status, a.error, a.detail) for a in report.attempts
    ]
