"""Every code block of README.md runs, as written, the way a reader would run it.

Shell blocks run line by line in ``bash`` (a reader's shell: the lines are the README's,
not the product's) inside a scratch git project, with a fake ``agent`` on ``PATH`` that
succeeds and, inside a workspace, edits one of its files. Python blocks run in order as
one script in a fresh interpreter there. Only what cannot exist on a test machine is
substituted, in the table :data:`STAND_INS`: a host named ``db`` becomes the test
PostgreSQL server, ``tcp://sched:8786`` a local dask scheduler, ``sp-3f2a...`` a real
subplan id. The first block (install, then test) runs in a copy of this checkout; its
second line is the test suite itself, so it is checked to be what ``.ci/run`` runs.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from postgres_server import postgres_url

REPO = Path(__file__).resolve().parents[2]
README = REPO / "README.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```\s*$", re.MULTILINE | re.DOTALL)
BIN = Path(sys.executable).parent
LINE_TIMEOUT = 240.0

AGENT = """\
#!{python}
# A fake agent: fails unless its subplan's files are where it runs; inside a worktree
# of its own (a .git file, not the project's .git directory) it appends to its first file.
import os, sys
workspace = os.environ.get("SUBPLAN_WORKSPACE")
listing = os.environ.get("SUBPLAN_FILES_LIST")
if listing:
    with open(listing, encoding="utf-8") as names:
        missing = [n for n in names.read().splitlines() if not os.path.isfile(n)]
    if missing:
        sys.exit(f"agent: no such file here ({{os.getcwd()}}): {{missing[0]}}")
if workspace and listing and os.path.isfile(os.path.join(workspace, ".git")):
    with open(listing, encoding="utf-8") as names:
        first = names.readline().rstrip("\\n")
    if first:
        with open(os.path.join(workspace, first), "a", encoding="utf-8") as f:
            f.write("# reviewed by the fake agent\\n")
print("agent", *sys.argv[1:])
"""

PROJECT = {
    "src/app/__init__.py": "",
    "src/app/models.py": "from lib import db\n\n\nclass Model:\n    table = 'models'\n",
    "src/app/views.py": "from app.models import Model\n\n\ndef show():\n    return Model\n",
    "src/app/urls.py": "from app import views\n\nroutes = [views.show]\n",
    "src/lib/__init__.py": "",
    "src/lib/db.py": "def connect():\n    return None\n",
    "src/lib/cache.py": "from lib import db\n\nCACHE = {}\n",
    "tests/test_app.py": "from app import views\n\n\ndef test_show():\n    assert views.show()\n",
    "pytest.ini": "[pytest]\npythonpath = src\n",  # so `--verify -- pytest -q` passes
    # what the README's commands write into the project is the reader's to ignore
    ".gitignore": "plan.json\nevents.jsonl\nnightly.png\n",
}


def code_blocks(language: str) -> list[str]:
    """The README's fenced blocks of one language, in order."""
    return [body for lang, body in FENCE.findall(README.read_text("utf-8")) if lang == language]


def shell_lines(block: str) -> list[str]:
    return [line for line in block.splitlines() if line.strip()]


def install_block() -> list[str]:
    (block,) = [b for b in code_blocks("sh") if "python3 -m venv" in b]
    return shell_lines(block)


def git(cwd: Path, *args: str) -> str:
    return subprocess.run(
        ["git", *args], cwd=cwd, check=True, capture_output=True, text=True
    ).stdout


def reader_env(tmp_path: Path, agent_dir: Path) -> dict[str, str]:
    """A reader's environment: no SUBPLAN_* settings, the fake agent and subplan on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBPLAN_")}
    env["PATH"] = os.pathsep.join([str(agent_dir), str(BIN), env.get("PATH", "")])
    env["SUBPLAN_POOL_DIR"] = str(tmp_path / "pools")  # host-wide pools, kept to this test
    for name in ("GIT_AUTHOR_NAME", "GIT_COMMITTER_NAME"):
        env[name] = "reader"
    for name in ("GIT_AUTHOR_EMAIL", "GIT_COMMITTER_EMAIL"):
        env[name] = "reader@example.invalid"
    return env


@pytest.fixture
def project(tmp_path: Path) -> Path:
    """A committed git project on branch main, as a reader's would be."""
    root = tmp_path / "project"
    for name, text in PROJECT.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text, encoding="utf-8")
    git(root, "init", "-q", "-b", "main")
    git(root, "add", "-A")
    git(root, "-c", "user.name=r", "-c", "user.email=r@example.invalid", "commit", "-qm", "start")
    return root


@pytest.fixture
def agent_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "bin"
    directory.mkdir()
    agent = directory / "agent"
    agent.write_text(AGENT.format(python=sys.executable), encoding="utf-8")
    agent.chmod(0o755)
    return directory


@pytest.fixture
def scheduler(agent_dir: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """A local dask scheduler with workers of its own, for ``tcp://sched:8786``.

    Its workers find the agent on their PATH, as a real cluster's must.
    """
    from subplan._backends._dask import open_local_cluster

    monkeypatch.setenv("PATH", os.pathsep.join([str(agent_dir), os.environ.get("PATH", "")]))
    with open_local_cluster(2) as cluster:
        yield str(cluster.scheduler_address)


@pytest.fixture
def store_url() -> Iterator[str]:
    """A fresh PostgreSQL database, for ``postgresql://user@db/subplan``."""
    import psycopg
    from psycopg import sql

    url = postgres_url()
    name = f"subplan_readme_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(url, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield url.rsplit("/", 1)[0] + "/" + name
    finally:
        with psycopg.connect(url, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )


def stand_ins(project: Path, env: dict[str, str], scheduler: str, store: str) -> dict[str, str]:
    """What stands for the README's hosts and ids on this machine."""
    plan = subprocess.run(
        ["subplan", "plan", ".", "--format", "json"],
        cwd=project, env=env, check=True, capture_output=True, text=True,
    )  # fmt: skip
    leaf = next(n["id"] for n in json.loads(plan.stdout)["nodes"] if not n["children"])
    return {
        "postgresql://user@db/subplan": store,
        "tcp://sched:8786": scheduler,
        "sp-3f2a...": leaf,
    }


def run_line(line: str, cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", line],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=LINE_TIMEOUT,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    assert 0 == done.returncode, (
        f"README line failed (exit {done.returncode}): {line}\n"
        f"--- stdout\n{done.stdout[-3000:]}\n--- stderr\n{done.stderr[-3000:]}"
    )
    return done


def substitute(text: str, table: dict[str, str]) -> str:
    for written, real in table.items():
        text = text.replace(written, real)
    return text


@pytest.mark.slow
def test_every_shell_block_runs_as_written(
    tmp_path: Path, project: Path, agent_dir: Path, scheduler: str, store_url: str
) -> None:
    env = reader_env(tmp_path, agent_dir)
    table = stand_ins(project, env, scheduler, store_url)
    install = install_block()
    ran = 0
    for block in code_blocks("sh"):
        for line in shell_lines(block):
            if line in install:
                continue
            run_line(substitute(line, table), project, env)
            ran += 1
    assert ran >= 20  # the README's usage lines, not a parse that found nothing
    # what the lines left behind: the runs they say they make, and a clean checkout
    status = json.loads(run_line("subplan status nightly --json", project, env).stdout)
    assert "succeeded" == status["status"]
    assert (project / "nightly.png").read_bytes().startswith(b"\x89PNG")
    assert "" == git(project, "status", "--porcelain")
    # integrate made its branch, one commit per subplan on top of main, beside the checkout
    assert "main" == git(project, "branch", "--show-current").strip()
    count = git(project, "rev-list", "--count", "main..subplan/integrate/feature-x").strip()
    run = json.loads(run_line("subplan status feature-x --json", project, env).stdout)
    assert len(run["subplans"]["succeeded"]) == int(count) >= 1


@pytest.mark.slow
def test_every_python_block_runs_in_order(
    tmp_path: Path, project: Path, agent_dir: Path, scheduler: str, store_url: str
) -> None:
    env = reader_env(tmp_path, agent_dir)
    table = stand_ins(project, env, scheduler, store_url)
    blocks = code_blocks("python")
    assert len(blocks) >= 3
    script = tmp_path / "readme_blocks.py"
    script.write_text(
        "\n\n".join(substitute(b, table) for b in blocks) + "\nprint('README blocks ran')\n",
        encoding="utf-8",
    )
    done = subprocess.run(
        [sys.executable, str(script)],
        cwd=project, env=env, capture_output=True, text=True, timeout=LINE_TIMEOUT,
    )  # fmt: skip
    assert 0 == done.returncode, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert done.stdout.rstrip().endswith("README blocks ran")
    notes = list((project / ".subplan").glob("*/*/notes.md"))
    assert notes, "the run example's work wrote no notes.md"


def test_the_test_command_is_what_ci_runs() -> None:
    """The install block's second line is the suite itself: CI runs exactly it."""
    install = install_block()
    assert 2 == len(install)
    ci_lines = (REPO / ".ci" / "run").read_text("utf-8").splitlines()
    assert install[1] in ci_lines


@pytest.mark.slow
def test_the_install_line_works_in_a_fresh_copy(tmp_path: Path) -> None:
    """``python3 -m venv .venv && .venv/bin/pip install . && .venv/bin/subplan plan .``"""
    install = install_block()[0]
    copy = tmp_path / "checkout"
    tracked = git(REPO, "ls-files", "-z").split("\0")
    for name in filter(None, tracked):
        source = REPO / name
        if source.is_file():
            (copy / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, copy / name)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SUBPLAN_", "VIRTUAL_ENV"))}
    done = subprocess.run(
        ["bash", "-e", "-c", install],
        cwd=copy, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert 0 == done.returncode, f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    assert "\nplan: " in done.stdout, done.stdout[-2000:]
    assert (copy / ".venv" / "bin" / "subplan").exists()


def test_every_json_block_is_json() -> None:
    blocks = code_blocks("json")
    assert blocks
    for block in blocks:
        json.loads(block)


def test_blocks_are_found() -> None:
    """The fence pattern finds the README's blocks (a broken pattern would run nothing)."""
    text = README.read_text("utf-8")
    assert text.count("```sh") == len(code_blocks("sh"))
    assert text.count("```python") == len(code_blocks("python"))
    assert text.count("```json") == len(code_blocks("json"))
    assert text.count("```") == 2 * sum(len(code_blocks(k)) for k in ("sh", "python", "json"))
    assert textwrap.dedent(code_blocks("python")[0]).startswith("import subplan")
