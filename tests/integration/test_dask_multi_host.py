"""Two orchestrator "hosts" that share only a PostgreSQL store and a dask scheduler.

Each host is ``subplan`` run as a subprocess from a directory of its own with its own
relative ``--runs-dir``; the dask cluster is started here, from a third directory, so a
path that only made sense on one host's side would show. Host A starts a run of command
subplans that block on gate files this test opens; it is SIGKILLed with some subplans
succeeded and some running; host B sees the run abandoned and finishes it with
``subplan resume``; a third directory reads the report. Every command appends the
attempt number to a file named after its subplan, so re-runs are counted outside the
store.

Skipped, saying so, without ``$SUBPLAN_TEST_POSTGRES_URL`` (``.ci/postgres.sh`` starts a
server; CI sets it). Each test gets a database of its own, dropped afterwards (or, on a
server where the user may not create databases, unique run ids in the given one).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import pytest

from execute_helpers import wait_until
from postgres_server import postgres_url
from subplan import open_store
from subplan._backends._dask import open_local_cluster

LEAVES = 8
MAX_PARALLEL = 3
WORKERS = 4
LIMIT = 60.0  # the longest any wait here may take before the test fails

# A subplan's command: log its start, wait for its gate, log its end.
SCRIPT = (
    "import os, sys, time\n"
    "box, label, attempt = sys.argv[1:4]\n"
    "def log(kind):\n"
    "    with open(os.path.join(box, kind, label), 'a') as f: f.write(attempt + '\\n')\n"
    "log('started')\n"
    "deadline = time.time() + 600\n"
    "while not os.path.exists(os.path.join(box, 'go', label)):\n"
    "    if time.time() > deadline: sys.exit('the gate never opened')\n"
    "    time.sleep(0.02)\n"
    "log('ended')\n"
)


@pytest.fixture
def store_url() -> Iterator[str]:
    """A store URL on a PostgreSQL database of this test's own."""
    url = postgres_url()
    import psycopg
    from psycopg import sql

    name = f"subplan_multi_host_{uuid.uuid4().hex[:12]}"
    try:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    except psycopg.errors.InsufficientPrivilege:
        yield url  # the run ids are unique: nothing collides
        return
    try:
        yield urlunsplit(urlsplit(url)._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


@pytest.fixture
def scheduler(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A cluster whose workers work from a directory that is neither host's."""
    (tmp_path / "cluster").mkdir()
    monkeypatch.chdir(tmp_path / "cluster")  # the worker processes inherit it
    with open_local_cluster(WORKERS) as cluster:
        monkeypatch.chdir(tmp_path)
        yield str(cluster.scheduler_address)


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "subplan", *args]


def env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in ("SUBPLAN_STORE", "SUBPLAN_RUNS_DIR")}


def call(host: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """``subplan ARGS`` on ``host``: from its directory, with its runs directory."""
    return subprocess.run(
        cli(*args, "--runs-dir", "runs"),
        cwd=host,
        env=env(),
        capture_output=True,
        text=True,
        timeout=LIMIT,
        check=False,
    )


class Box:
    """The gates and the logs the commands share with the test."""

    def __init__(self, root: Path) -> None:
        self.root = root
        for kind in ("started", "ended", "go"):
            (root / kind).mkdir(parents=True)

    def runs(self, kind: str, label: str) -> list[str]:
        path = self.root / kind / label
        return path.read_text().split() if path.exists() else []

    def labels(self, kind: str) -> set[str]:
        return {p.name for p in (self.root / kind).iterdir()}

    def open(self, *labels: str) -> None:
        for label in labels:
            (self.root / "go" / label).touch()


def status_json(host: Path, run_id: str, store: str) -> dict[str, Any]:
    done = call(host, "status", run_id, "--json", "--store", store)
    assert 0 == done.returncode, done.stderr
    data: dict[str, Any] = json.loads(done.stdout)
    return data


def test_a_run_killed_on_one_host_is_finished_by_another_without_redoing_work(
    tmp_path: Path, store_url: str, scheduler: str
) -> None:
    run_id = f"multi-host-{uuid.uuid4().hex[:12]}"
    labels = [f"m{n:02d}" for n in range(LEAVES)]
    for label in labels:
        (tmp_path / "proj" / label).mkdir(parents=True)
        (tmp_path / "proj" / label / "a.py").write_text("x = 1\n")
    box = Box(tmp_path / "box")
    host_a, host_b, host_c = (tmp_path / name for name in ("host-a", "host-b", "host-c"))
    for host in (host_a, host_b, host_c):
        host.mkdir()
    argv = cli(
        "run", str(tmp_path / "proj"), "--min-files", "1", "--max-files", "1",
        "--max-parallel", str(MAX_PARALLEL),
        "--run-id", run_id, "--runs-dir", "runs", "--store", store_url,
        "--backend", "dask", "--scheduler", scheduler,
        "--", sys.executable, "-c", SCRIPT, str(box.root), "{label}", "{attempt}",
    )  # fmt: skip
    with open(host_a / "stderr.log", "w") as stderr:
        a = subprocess.Popen(argv, cwd=host_a, env=env(), stdout=subprocess.DEVNULL, stderr=stderr)
    try:
        wait_until(lambda: len(box.labels("started")) == MAX_PARALLEL, "3 commands ran", alive=a)

        # While A holds the run, B may look but not take it: the advisory lock spans hosts.
        refused = call(host_b, "resume", run_id, "--store", store_url)
        assert 2 == refused.returncode, refused.stderr
        assert 1 == len(refused.stderr.splitlines()), refused.stderr
        assert f"is being run by pid {a.pid} on {socket.gethostname()}" in refused.stderr
        seen = status_json(host_b, run_id, store_url)
        assert "running" == seen["status"] and seen["holder"].startswith(f"pid {a.pid} ")

        first = sorted(box.labels("started"))
        early = first[:2]
        box.open(*early)
        wait_until(
            lambda: status_json(host_b, run_id, store_url)["counts"]["succeeded"] == 2,
            "the store showed 2 successes",
            alive=a,
        )
        wait_until(lambda: len(box.labels("started")) == 5, "5 commands ran", alive=a)
        running = sorted(box.labels("started") - set(early))
        a.kill()
        a.wait(timeout=LIMIT)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
        box.open(*labels)  # whatever happens, no command waits ten minutes

    # From B's side the run is abandoned: recorded running, and nobody holds its lock.
    wait_until(
        lambda: status_json(host_b, run_id, store_url)["holder"] is None,
        "the store saw host A's lock go with it",
    )
    seen = status_json(host_b, run_id, store_url)
    assert ("running", 2, a.pid) == (seen["status"], seen["counts"]["succeeded"], seen["pid"])
    assert "abandoned" in call(host_b, "status", "--store", store_url).stdout
    # A's commands outlive it on the workers (their gates are open now): let them end,
    # so that every count below is final.
    wait_until(
        lambda: all(box.runs("ended", label) == ["1"] for label in running),
        "host A's left-over commands ended",
    )

    resumed = call(host_b, "resume", run_id, "--store", store_url, "--json")
    assert 0 == resumed.returncode, resumed.stderr
    report_b = json.loads(resumed.stdout)
    assert ("succeeded", LEAVES) == (report_b["status"], report_b["counts"]["succeeded"])

    # The store's final view: every subplan succeeded exactly once.
    with open_store(store_url, host_c, readonly=True) as store:
        rows = store.attempts(run_id)
        assert "succeeded" == store.get_run(run_id).status
    wins = Counter(r.subplan_id for r in rows if r.status == "succeeded")
    assert LEAVES == len(wins) and {1} == set(wins.values()), wins
    by_label = {s["label"]: s for s in report_b["subplans"]}
    # ...and the report, read from a third directory, says the same.
    done = call(host_c, "report", run_id, "--json", "--store", store_url)
    assert 0 == done.returncode, done.stderr
    report_c = json.loads(done.stdout)
    assert {s["label"]: [a["status"] for a in s["attempts"]] for s in report_c["subplans"]} == {
        label: ["succeeded"] if label not in running else ["interrupted", "succeeded"]
        for label in labels
    }
    assert {s["subplan_id"]: "succeeded" for s in report_c["subplans"]} == {
        s["subplan_id"]: s["status"] for s in report_c["subplans"]
    }

    # Counted by the commands themselves: nothing that succeeded ran again; the three
    # cut short ran once more (attempt 2), the rest once.
    assert {label: ["1"] for label in labels if label not in running} | {
        label: ["1", "2"] for label in running
    } == {label: box.runs("started", label) for label in labels}

    # Each host's output is in its own runs directory, not where the workers started.
    for label in labels:
        sid = by_label[label]["subplan_id"]
        where = host_a if label in early else host_b
        last = by_label[label]["attempts"][-1]["number"]
        assert (where / "runs" / run_id / sid / f"stdout-{last}.log").exists(), label
    assert not (tmp_path / "cluster" / "runs").exists()
