"""--tag and on_output: the lines of real commands, live, whole, tagged, still in the logs."""

from __future__ import annotations

import asyncio
import json
import re
import sys
import threading
from pathlib import Path
from typing import Literal

import pytest

from execute_helpers import CHATTY, cli_call, flat_plan
from subplan import CommandWork, OutputLine, arun, decompose, run, scan

# Says "ready", then waits (at most 30 s) for the file go-ID, which only a reader of its
# live output creates: output that came only at the end would make it fail.
WAIT_FOR_READER = (
    "import os, pathlib, sys, time\n"
    "sid = os.environ['SUBPLAN_ID']; go = pathlib.Path(sys.argv[1], 'go-' + sid)\n"
    "print('ready', sid, flush=True)\n"
    "for _ in range(3000):\n"
    "    if go.exists(): print('done', sid); sys.exit(0)\n"
    "    time.sleep(0.01)\n"
    "sys.exit(3)\n"
)


@pytest.mark.parametrize("backend", ["thread", "process"])
def test_lines_reach_the_caller_while_the_command_still_runs(
    tmp_path: Path, backend: Literal["thread", "process"]
) -> None:
    plan = flat_plan(3)
    seen: list[OutputLine] = []
    lock = threading.Lock()

    def on_output(line: OutputLine) -> None:
        with lock:
            seen.append(line)
        if line.text.startswith("ready "):
            (tmp_path / f"go-{line.subplan_id}").touch()

    work = CommandWork([sys.executable, "-c", WAIT_FOR_READER, str(tmp_path)])
    runs = tmp_path / "runs"
    report = run(plan, work, max_parallel=3, backend=backend, runs_dir=runs, on_output=on_output)
    assert "succeeded" == report.status, [o.reason for o in report.outcomes.values()]
    expected = {
        (leaf.id, "stdout", f"{word} {leaf.id}")
        for leaf in plan.leaves
        for word in ("ready", "done")
    }
    assert expected == {(line.subplan_id, line.stream, line.text) for line in seen}
    for leaf in plan.leaves:  # the log files keep everything, as before
        log = runs / report.run_id / leaf.id / "stdout-1.log"
        assert f"ready {leaf.id}\ndone {leaf.id}\n" == log.read_text()


def chatty_project(root: Path) -> tuple[Path, list[str]]:
    """Four directories of three files: four subplans; and their labels."""
    for d in range(4):
        for i in range(3):
            path = root / "proj" / f"d{d}" / f"m{i}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x = 1\n")
    proj = root / "proj"
    labels = [leaf.label for leaf in decompose(scan(proj).files, max_files=3).leaves]
    return proj, labels


def check_tagged(text: str, tags: list[str], word: str, count: int, partial: bool) -> None:
    """Every line is ``TAG<tab>TAG WORD I``, whole, each tag's in order, none lost."""
    found: dict[str, list[int]] = {tag: [] for tag in tags}
    partials: list[str] = []
    for line in text.splitlines():
        match = re.fullmatch(r"(\S+)\t(\S+) (line|warning|partial) ?(\d*)", line)
        assert match is not None, f"a mixed or cut line: {line!r}"
        assert match.group(1) == match.group(2) or match.group(1) in tags, line
        if match.group(3) == word:
            found[match.group(1)].append(int(match.group(4)))
        elif match.group(3) == "partial":
            partials.append(match.group(1))
    assert (sorted(tags) if partial else []) == sorted(partials)  # flushed at the end
    assert {tag: list(range(0, 300, 300 // count)) for tag in tags} == found


def test_cli_tag_streams_every_line_whole_and_tagged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj, labels = chatty_project(tmp_path)
    monkeypatch.chdir(proj)
    status, out, err = cli_call(
        "run", ".", "--max-files", "3", "--max-parallel", "4", "--tag", "--progress", "off",
        "--runs-dir", str(tmp_path / "runs"), "--", sys.executable, "-c", CHATTY,
    )  # fmt: skip
    assert 0 == status, err
    tagged, summary = out.split("run ", 1)
    assert summary.startswith(tuple(f"{c}" for c in "0123456789")), summary[:40]
    check_tagged(tagged, labels, "line", 300, partial=True)
    check_tagged(err, labels, "warning", 6, partial=False)


def test_with_json_the_lines_go_to_stderr_tagged_by_id(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj, _ = chatty_project(tmp_path)
    monkeypatch.chdir(proj)
    status, out, err = cli_call(
        "run", ".", "--max-files", "3", "--json", "--tag-by", "id", "--progress", "off",
        "--runs-dir", str(tmp_path / "runs"), "--", sys.executable, "-c", CHATTY,
    )  # fmt: skip
    assert 0 == status, err
    report = json.loads(out)  # stdout holds the report alone
    ids = {row["subplan_id"] for row in report["subplans"]}
    assert ids == {line.split("\t", 1)[0] for line in err.splitlines() if "\t" in line}
    assert 4 * (300 + 6 + 1) == sum(1 for line in err.splitlines() if "\t" in line)


def test_resume_tag_shows_the_new_attempts_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proj, labels = chatty_project(tmp_path)
    monkeypatch.chdir(proj)
    # fails until the file "go" exists next to the project; says which attempt it is
    code = (
        "import os, sys; print('attempt', os.environ['SUBPLAN_ATTEMPT'])\n"
        "sys.exit(0 if os.path.exists('../go') else 3)\n"
    )
    runs = str(tmp_path / "runs")
    status, out, err = cli_call(
        "run", ".", "--max-files", "3", "--run-id", "r", "--runs-dir", runs, "--progress", "off",
        "--", sys.executable, "-c", code,
    )  # fmt: skip
    assert 1 == status, err
    assert "\t" not in out  # no --tag, no live output
    (tmp_path / "go").touch()
    status, out, err = cli_call("resume", "r", "--runs-dir", runs, "--tag", "--progress", "off")
    assert 0 == status, err
    assert sorted(f"{label}\tattempt 2" for label in labels) == sorted(
        line for line in out.splitlines() if "\t" in line
    )


def test_arun_hands_on_the_lines_too(tmp_path: Path) -> None:
    plan = flat_plan(2)
    seen: list[OutputLine] = []
    work = CommandWork([sys.executable, "-c", "import os; print(os.environ['SUBPLAN_ID'])"])
    report = asyncio.run(arun(plan, work, runs_dir=tmp_path, on_output=seen.append))
    assert "succeeded" == report.status
    assert sorted(leaf.id for leaf in plan.leaves) == sorted(line.text for line in seen)
