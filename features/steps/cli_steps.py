"""Steps that drive the ``subplan`` command as a real subprocess."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from typing import Any

from behave import given, then, when

from subplan import Plan, decompose, scan


@given("a project directory with these files:")
def step_project_dir(context: Any) -> None:
    for row in context.table:
        path = context.workdir / row["path"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"x" * int(row["bytes"]))


@given('a file "{name}" holding a plan, a report or events: {head}')
def step_output_file(context: Any, name: str, head: str) -> None:
    path = context.workdir / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(head + "\n", encoding="utf-8")


@given('a file whose name holds a newline, "{first}" then "{second}"')
def step_newline_name(context: Any, first: str, second: str) -> None:
    (context.workdir / f"{first}\n{second}").write_bytes(b"x" * 400)


@then("the JSON output plans {count:d} files")
def step_json_count(context: Any, count: int) -> None:
    assert count == json.loads(context.result.stdout)["nodes"][0]["file_count"]


@given('a script "{name}" with these lines:')
@given('a list file "{name}" with these lines:')
def step_list_file(context: Any, name: str) -> None:
    (context.workdir / name).write_text(context.text + "\n", encoding="utf-8")


@when('I run "subplan {arguments}"')
def step_run(context: Any, arguments: str) -> None:
    # The step text is split like a shell would, but no shell ever runs.
    words = shlex.split(arguments)
    # "python" in a scenario means the interpreter running the features.
    words = [sys.executable if w == "python" else w for w in words]
    argv = [sys.executable, "-m", "subplan", *words]
    env = {**os.environ, "PYTHONIOENCODING": "utf-8"}
    context.result = subprocess.run(
        argv, cwd=context.workdir, capture_output=True, text=True, env=env, timeout=120, check=False
    )


@then("the exit status is {status:d}")
def step_status(context: Any, status: int) -> None:
    assert status == context.result.returncode, context.result.stderr


@then('the output starts with "{text}"')
def step_starts(context: Any, text: str) -> None:
    assert context.result.stdout.startswith(text), context.result.stdout


@then('the output has a line for "{label}" with "{counts}" and "{reason}"')
def step_tree_line(context: Any, label: str, counts: str, reason: str) -> None:
    lines = context.result.stdout.splitlines()
    matching = [ln for ln in lines if f" {label}  " in ln or ln.startswith(f"{label}  ")]
    assert matching, context.result.stdout
    assert any(counts in ln and reason in ln for ln in matching), matching


@then('"{name}" is a valid plan of {count:d} files with schema "{schema}"')
def step_plan_file(context: Any, name: str, count: int, schema: str) -> None:
    text = (context.workdir / name).read_text(encoding="utf-8")
    assert schema == json.loads(text)["schema"]
    assert count == Plan.from_json(text).root.file_count


@then('in "{name}" every leaf lists its files and every node its file_count and tokens')
def step_plan_shape(context: Any, name: str) -> None:
    data = json.loads((context.workdir / name).read_text(encoding="utf-8"))
    for node in data["nodes"]:
        assert {"file_count", "tokens", "id", "parent", "children", "depth", "label"} <= set(node)
        assert ("files" in node) == (node["children"] == [])


@then("the JSON output is a plan of {count:d} files with {tokens:d} tokens")
def step_json_plan(context: Any, count: int, tokens: int) -> None:
    plan = Plan.from_json(context.result.stdout)
    assert (count, tokens) == (plan.root.file_count, plan.root.tokens)


@then("no leaf in the JSON output has more than {count:d} files")
def step_json_budget(context: Any, count: int) -> None:
    plan = Plan.from_json(context.result.stdout)
    assert all(leaf.file_count <= count for leaf in plan.leaves)


@then('stderr is one line mentioning "{message}"')
def step_stderr(context: Any, message: str) -> None:
    lines = context.result.stderr.splitlines()
    assert len(lines) == 1, context.result.stderr
    assert message in lines[0], lines[0]
    assert "Traceback" not in context.result.stderr


@then('nothing was written to "{name}"')
def step_nothing(context: Any, name: str) -> None:
    assert not (context.workdir / name).exists()


@given("a project directory of {dirs:d} directories with {files:d} files each")
def step_dirs(context: Any, dirs: int, files: int) -> None:
    # 30k tokens a directory: under the default 50k budget each directory is one subplan.
    size = 120_000 // files
    for d in range(dirs):
        for f in range(files):
            path = context.workdir / f"dir{d}" / f"file{f}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x" * (size - 1) + "\n")


@then('each of the {count:d} subplans of run "{run_id}" printed its id and its files')
def step_printed(context: Any, count: int, run_id: str) -> None:
    runs = context.workdir / ".subplan" / run_id
    outputs = sorted(runs.glob("sp-*/stdout-1.log"))
    assert count == len(outputs), outputs
    for output in outputs:
        words = output.read_text().split()
        assert output.parent.name == words[0]
        listed = (output.parent / "files.txt").read_text().split()
        assert listed == words[1:]


@then('the JSON report says "{status}" with {count:d} succeeded and a peak of {peak:d}')
def step_json_report(context: Any, status: str, count: int, peak: int) -> None:
    data = json.loads(context.result.stdout)
    assert status == data["status"]
    assert count == data["counts"]["succeeded"]
    assert peak == data["peak_concurrency"]


@then('the output mentions "{text}"')
def step_mentions(context: Any, text: str) -> None:
    assert text in context.result.stdout, context.result.stdout


@then('"{name}" has {count:d} "{kind}" events and ends with "{last}"')
def step_events(context: Any, name: str, count: int, kind: str, last: str) -> None:
    lines = (context.workdir / name).read_text().splitlines()
    events = [json.loads(line) for line in lines]
    assert count == sum(1 for e in events if e["event"] == kind)
    assert last == events[-1]["event"]


@then("the dry run shows every leaf's command once, with its id and its files")
def step_dry_run(context: Any) -> None:
    rows = json.loads(context.result.stdout)["subplans"]
    plan = decompose(scan(context.workdir).files)
    assert [leaf.id for leaf in plan.leaves] == [row["subplan_id"] for row in rows]
    for leaf, row in zip(plan.leaves, rows, strict=True):
        assert ["-c", "pass", leaf.id, *leaf.files] == row["argv"][1:]


@then("the JSON report counts {failed:d} failed and {not_run:d} not run")
def step_json_counts(context: Any, failed: int, not_run: int) -> None:
    counts = json.loads(context.result.stdout)["counts"]
    assert (failed, not_run) == (counts["failed"], counts["not_run"]), counts


@then(
    '{stream} has the line "{text}" once for each of the {count:d} subplans, tagged with its {tag}'
)
def step_tagged(context: Any, stream: str, text: str, count: int, tag: str) -> None:
    output = context.result.stdout if stream == "stdout" else context.result.stderr
    leaves = decompose(scan(context.workdir).files).leaves
    assert count == len(leaves)
    expected = sorted(
        f"{getattr(leaf, tag)}\t" + text.replace("<label>", leaf.label).replace("<id>", leaf.id)
        for leaf in leaves
    )
    assert expected == sorted(line for line in output.splitlines() if "\t" in line), output


@then("each of the {count:d} subplans' log files still holds its output")
def step_logs_kept(context: Any, count: int) -> None:
    logs = sorted((context.workdir / ".subplan").glob("*/sp-*/stdout-1.log"))
    assert count == len(logs), logs
    assert all(log.read_text().startswith("hello ") for log in logs)


@then('the JSON report says "{status}" with {count:d} succeeded')
def step_json_succeeded(context: Any, status: str, count: int) -> None:
    data = json.loads(context.result.stdout)
    assert (status, count) == (data["status"], data["counts"]["succeeded"])


@then('stderr has a line starting with "{start}" and ending with "{end}"')
def step_stderr_line(context: Any, start: str, end: str) -> None:
    lines = context.result.stderr.splitlines()
    assert any(ln.startswith(start) and ln.endswith(end) for ln in lines), lines


@then("stderr is empty")
def step_stderr_empty(context: Any) -> None:
    assert "" == context.result.stderr, context.result.stderr


@then('every subplan in the JSON report failed with "{reason}"')
def step_all_failed_with(context: Any, reason: str) -> None:
    subplans = json.loads(context.result.stdout)["subplans"]
    leaves = [s for s in subplans if s["kind"] == "leaf"]
    assert leaves, subplans
    assert {("failed", reason)} == {(s["status"], s["reason"]) for s in leaves}, leaves


@then('"{name}" is an SVG picture')
def step_svg(context: Any, name: str) -> None:
    text = (context.workdir / name).read_text(encoding="utf-8")
    assert "<svg" in text[:2000] and text.rstrip().endswith("</svg>"), text[:200]


@then('"{name}" is a PDF document')
def step_pdf(context: Any, name: str) -> None:
    data = (context.workdir / name).read_bytes()
    assert data.startswith(b"%PDF-") and b"%%EOF" in data[-64:], data[:8]


@then('"{name}" was not written')
def step_not_written(context: Any, name: str) -> None:
    assert not (context.workdir / name).exists()
