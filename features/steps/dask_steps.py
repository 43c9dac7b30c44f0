"""Steps that run plans on a real dask cluster, several orchestrators sharing one pool."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
import threading
from typing import Any

from behave import given, then, when

from subplan import decompose
from subplan._limit._tracker import peak_from_intervals
from subplan._run import run
from subplan.testing import ScriptedWork, Step


@given("a dask cluster with {workers:d} workers")
def step_cluster(context: Any, workers: int) -> None:
    from subplan._backends._dask import open_local_cluster

    manager = open_local_cluster(workers)
    context.cluster = manager.__enter__()
    context.add_cleanup(manager.__exit__, None, None, None)


@given('a pool named "{name}" of size {size:d} on the cluster')
def step_pool(context: Any, name: str, size: int) -> None:
    context.pool = (name, size)


@when(
    "two runs of {count:d} subplans each, each at most {limit:d} in parallel, work "
    "{seconds:g} seconds per subplan drawing from the pool"
)
def step_two_runs(context: Any, count: int, limit: int, seconds: float) -> None:
    from subplan._backends._dask import ClusterPool

    plan = decompose([f"d{n:04d}/{i}.py" for n in range(count) for i in range(3)], max_files=3)
    context.reports = []

    def one(n: int) -> None:
        context.reports.append(
            run(
                plan,
                ScriptedWork(default=Step(seconds)),
                max_parallel=limit,
                backend="dask",
                scheduler=context.cluster.scheduler_address,
                limiter=ClusterPool(*context.pool),
                runs_dir=context.workdir / f"orchestrator-{n}",
            )
        )

    threads = [threading.Thread(target=one, args=(n,)) for n in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(120)


@then("both runs succeed")
def step_both_succeed(context: Any) -> None:
    assert [True, True] == [r.ok for r in context.reports], context.reports


@then("together the runs never had more than {limit:d} subplans running at once")
def step_combined_peak(context: Any, limit: int) -> None:
    spans = [(a.started, a.ended) for r in context.reports for a in r.attempts]
    assert peak_from_intervals(spans) <= limit, peak_from_intervals(spans)


@then("neither run had more than {limit:d} subplans running at once")
def step_each_peak(context: Any, limit: int) -> None:
    assert all(r.peak_concurrency <= limit for r in context.reports)


# -- the command line on the cluster ----------------------------------------------------


def _cli_on_cluster(context: Any, arguments: str, *extra: str) -> list[str]:
    """The argv of ``subplan ARGUMENTS``: SCHEDULER is the cluster's address, "python"
    the interpreter running the features, and ``extra`` goes before the command's "--"."""
    scheduler = str(context.cluster.scheduler_address)
    words = [scheduler if w == "SCHEDULER" else w for w in shlex.split(arguments)]
    words = [sys.executable if w == "python" else w for w in words]
    cut = words.index("--") if "--" in words else len(words)
    return [sys.executable, "-m", "subplan", *words[:cut], *extra, *words[cut:]]


@when('I run "subplan {arguments}" on the dask cluster')
def step_cli_on_cluster(context: Any, arguments: str) -> None:
    context.result = subprocess.run(
        _cli_on_cluster(context, arguments),
        cwd=context.workdir,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


@when('two orchestrators run "subplan {arguments}" on the dask cluster at once')
def step_two_cli_on_cluster(context: Any, arguments: str) -> None:
    processes = [
        subprocess.Popen(
            _cli_on_cluster(context, arguments, "--runs-dir", f"orchestrator-{n}", "--json"),
            cwd=context.workdir,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(2)
    ]
    context.outcomes = [(p.communicate(timeout=120), p.returncode) for p in processes]


@then("both orchestrators succeed")
def step_both_orchestrators(context: Any) -> None:
    assert [0, 0] == [status for _, status in context.outcomes], context.outcomes
    context.cli_reports = [json.loads(out) for (out, _), _ in context.outcomes]


@then("together the orchestrators never had more than {limit:d} subplans running at once")
def step_orchestrators_peak(context: Any, limit: int) -> None:
    spans = [
        (a["started"], a["ended"])
        for report in context.cli_reports
        for s in report["subplans"]
        for a in s["attempts"]
    ]
    assert peak_from_intervals(spans) <= limit, peak_from_intervals(spans)


@then("neither orchestrator had more than {limit:d} subplans running at once")
def step_each_orchestrator(context: Any, limit: int) -> None:
    assert all(r["peak_concurrency"] <= limit for r in context.cli_reports)
