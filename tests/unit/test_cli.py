"""The subplan command, called in-process through main(argv) and as a real process."""

from __future__ import annotations

import errno
import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from subplan import Plan, cli
from subplan._errors import StoreError, UnknownRunError
from subplan.cli import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_TEMPFAIL, EXIT_USAGE, main


class Tty(io.StringIO):
    def isatty(self) -> bool:
        return True


def call(*argv: str, stdin: str = "", tty: bool = False) -> tuple[int, str, str]:
    out, err = io.StringIO(), (Tty() if tty else io.StringIO())
    status = main(list(argv), stdout=out, stderr=err, stdin=io.StringIO(stdin))
    return status, out.getvalue(), err.getvalue()


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for d in ("alpha", "beta", "gamma"):
        for i in range(3):
            path = tmp_path / "proj" / d / f"m{i}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            # 15k tokens a file, 45k a directory: under the default 50k budget each
            # directory is one leaf and no two fit together.
            path.write_text("import os\n" * (i + 1) + "#" * 60_000 + "\n")
    monkeypatch.chdir(tmp_path / "proj")
    monkeypatch.delenv("SUBPLAN_RUNS_DIR", raising=False)
    return tmp_path / "proj"


# -- plan -------------------------------------------------------------------------------


def test_plan_prints_a_tree(project: Path) -> None:
    status, out, err = call("plan")
    assert (EXIT_OK, "") == (status, err)
    assert out.startswith("plan: 9 files, 3 leaves, depth 1")
    assert "├── alpha  3 files" in out


def test_plan_json_to_a_file_is_written_atomically(project: Path) -> None:
    status, out, _ = call("plan", ".", "--format", "json", "-o", "out/plan.json")
    assert (EXIT_OK, "") == (status, out)
    plan = Plan.from_json((project / "out" / "plan.json").read_text())
    assert 9 == plan.root.file_count
    assert [] == [p.name for p in (project / "out").iterdir() if p.name != "plan.json"]


def test_plan_json_to_stdout_with_dash(project: Path) -> None:
    status, out, _ = call("plan", "--format", "json", "-o", "-", "--max-files", "2")
    assert EXIT_OK == status
    assert all(leaf.file_count <= 2 for leaf in Plan.from_json(out).leaves)


def test_plan_from_stdin_list(project: Path) -> None:
    status, out, _ = call("plan", "--from-list", "-", "--format", "json", stdin="a.py\t40\nb.py\n")
    assert EXIT_OK == status
    assert ("a.py", "b.py") == Plan.from_json(out).files


def test_plan_warns_about_skipped_entries(project: Path) -> None:
    (project / "dangling").symlink_to(project / "nowhere")
    status, _, err = call("plan", "--no-imports")
    assert EXIT_OK == status
    assert err.startswith("subplan: warning: skipped 1 entry (1 broken symlink); first: dangling")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["plan", "missing"], "subplan: error: no such directory: missing"),
        (
            ["plan", "--min-files", "x"],
            "subplan plan: argument --min-files: expected an integer, got 'x'",
        ),
        (["plan", "--from-list", "nope.txt"], "subplan: error: no such file: nope.txt"),
        (["plan", "--from-list", "."], "subplan: error: not a file: ."),
        (["plan", "--bogus"], "subplan: unrecognized arguments: --bogus"),
        ([], "subplan: the following arguments are required: COMMAND"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(project: Path, argv: list[str], message: str) -> None:
    status, out, err = call(*argv)
    assert (EXIT_USAGE, "", message + "\n") == (status, out, err)


def test_a_list_that_is_not_utf8_is_refused(project: Path) -> None:
    (project / "list.txt").write_bytes(b"caf\xe9.py\n")
    status, _, err = call("plan", "--from-list", "list.txt")
    assert EXIT_USAGE == status
    assert "list.txt is not UTF-8 text" in err


def test_version_and_help_exit_zero(project: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert EXIT_OK == main(["--version"])
    assert EXIT_OK == main(["run", "--help"])
    assert "subplan run [PATH | --plan FILE]" in capsys.readouterr().out


def test_run_help_names_every_variable_a_command_gets(
    project: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The variables a real command sees, read from its own environment, are all in --help."""
    dump = "import os; print(*(k for k in os.environ if k.startswith('SUBPLAN_')))"
    status, _, _ = call("run", "alpha", "--no-store", "--runs-dir", "r", "--", PY, "-c", dump)
    assert EXIT_OK == status
    (log,) = (project / "r").glob("*/*/stdout-1.log")
    seen = set(log.read_text().split()) - set(os.environ)  # what subplan set, not inherited
    assert {"SUBPLAN_RESULT_FILE", "SUBPLAN_WORKSPACE", "SUBPLAN_ID"} <= seen
    assert EXIT_OK == main(["run", "--help"])
    shown = capsys.readouterr().out
    assert [] == sorted(name for name in seen if name not in shown)


def test_workspaces_help_lists_the_actions_options(capsys: pytest.CaptureFixture[str]) -> None:
    assert EXIT_OK == main(["workspaces", "--help"])
    shown = capsys.readouterr().out
    assert all(f"  {option}" in shown for option in ("--run-id ID", "--repo PATH", "--force"))


def test_os_errors_are_one_line(project: Path) -> None:
    (project / "ro").mkdir()
    (project / "ro" / "plan.json").mkdir()  # a directory where the output file should go
    status, _, err = call("plan", "-o", "ro/plan.json")
    assert EXIT_USAGE == status
    assert 1 == len(err.splitlines())
    assert "Traceback" not in err


def test_plan_weighs_binaries_at_zero_unless_weigh_all(project: Path) -> None:
    listing = "logo.png\t4000\nb.py\t40\n.git/HEAD\t9\n"
    _, out, err = call("plan", "--from-list", "-", "--format", "json", stdin=listing)
    assert 10 == json.loads(out)["nodes"][0]["tokens"]
    assert "skipped 1 entry (1 in a .git or .subplan directory)" in err
    _, out, _ = call("plan", "--from-list", "-", "--format", "json", "--weigh-all", stdin=listing)
    assert 1010 == json.loads(out)["nodes"][0]["tokens"]


def test_plan_shows_waves_and_stats(project: Path) -> None:
    (project / "alpha" / "m0.py").write_text("import beta.m0\n" + "#" * 60_000 + "\n")
    status, out, _ = call("plan", "--stats")
    assert EXIT_OK == status
    assert "waves: 2 (a leaf starts after the leaves it imports from)" in out
    assert "  wave 1: 2 leaves  beta, gamma" in out
    assert "  wave 2: 1 leaf  alpha" in out
    assert "stats: 3 leaves, fill 90%, largest leaf 45k tokens, 0 over budget" in out
    assert "edges: 1, 0% inside a leaf, 1 across; waves: 2" in out
    _, text, _ = call("plan", "--stats", "--format", "json")
    document = json.loads(text)
    assert 2 == len(document["waves"])
    assert {
        "leaves": 3,
        "over_budget": 0,
        "waves": 2,
        "cross_leaf_edges": 1,
        "small_leaves": 0,
    }.items() <= (document["stats"].items())


def test_a_list_reads_imports_only_from_the_files_under_path(project: Path) -> None:
    (project / "alpha" / "m0.py").write_text("import beta.m0\n")
    listing = "alpha/m0.py\t60000\nbeta/m0.py\t60000\n"
    _, out, _ = call("plan", "--from-list", "-", "--format", "json", stdin=listing)
    assert "dependencies" in json.loads(out)  # alpha/m0.py is there and read
    # None of the listed files is under PATH: planned as with --no-imports.
    away = "lib/a.py\t60000\nlib/b.py\t60000\n"
    _, out, _ = call("plan", "--from-list", "-", "--stats", stdin=away)
    assert "waves:" not in out.split("stats:")[0]
    assert "edges: no dependency graph; waves: 1" in out


def test_plan_without_imports_has_no_waves(project: Path) -> None:
    _, out, _ = call("plan", "--no-imports", "--stats")
    assert "waves:" not in out.split("stats:")[0]
    assert "edges: no dependency graph; waves: 1" in out


# -- run ---------------------------------------------------------------------------------


PY = sys.executable


def test_run_summary_and_artifacts(project: Path) -> None:
    status, out, _ = call("run", "--run-id", "r1", "--", PY, "-c", "print('hi')")
    assert EXIT_OK == status
    assert out.startswith("run r1: succeeded")
    assert "peak 3 of max 10" in out
    assert "output of each subplan: .subplan/r1/<id>/" in out
    logs = sorted((project / ".subplan" / "r1").glob("*/stdout-1.log"))
    assert ["hi\n"] * 3 == [p.read_text() for p in logs]


def test_run_from_a_plan_file_with_runs_dir_env(
    project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    call("plan", "--format", "json", "-o", "plan.json")
    monkeypatch.setenv("SUBPLAN_RUNS_DIR", str(tmp_path / "runs"))
    status, out, _ = call(
        "run", "--plan", "plan.json", "--json", "--run-id", "r2", "--", PY, "-c", "pass"
    )
    assert EXIT_OK == status
    assert "succeeded" == json.loads(out)["status"]
    assert (tmp_path / "runs" / "r2").is_dir()


def test_run_failure_exit_1_and_table_shows_the_reason(project: Path) -> None:
    status, out, _ = call(
        "run", "--retries", "1", "--jitter-seed", "1", "--", PY, "-c", "raise SystemExit(4)"
    )
    assert EXIT_FAILED == status
    assert "3 failed" in out
    assert "exit status 4" in out


def test_run_progress_line_on_a_terminal(project: Path) -> None:
    status, _, err = call("run", "--max-parallel", "2", "--", PY, "-c", "pass", tty=True)
    assert EXIT_OK == status
    assert "\r\x1b[2Ksubplan 0:0" in err
    assert "3/3 done" in err


def test_run_progress_is_plain_lines_off_a_terminal(project: Path) -> None:
    status, _, err = call("run", "--", PY, "-c", "import sys; sys.exit(3)")
    assert EXIT_FAILED == status
    lines = err.splitlines()
    assert 3 == sum(line.startswith("subplan: failed: sp-") for line in lines), err
    assert "\r" not in err
    status, _, err = call("run", "--progress", "off", "--", PY, "-c", "pass")
    assert (EXIT_OK, "") == (status, err)


def test_run_events_file(project: Path) -> None:
    status, _, _ = call("run", "--events", "ev.jsonl", "--", PY, "-c", "pass")
    assert EXIT_OK == status
    kinds = [json.loads(line)["event"] for line in (project / "ev.jsonl").read_text().splitlines()]
    assert "run_started" == kinds[0]
    assert "run_ended" == kinds[-1]


def test_run_with_a_pool(project: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SUBPLAN_POOL_DIR", str(tmp_path / "pools"))
    status, out, _ = call("run", "--pool", "agents", "--max-parallel", "2", "--", PY, "-c", "pass")
    assert EXIT_OK == status
    assert "peak 2 of max 2" in out or "peak 1 of max 2" in out
    assert (tmp_path / "pools" / "agents" / "slot-0").exists()


def test_run_timeout_kills_and_reports(project: Path) -> None:
    status, out, _ = call("run", "--timeout", "0.3", "--", PY, "-c", "import time; time.sleep(30)")
    assert EXIT_FAILED == status
    assert "timed out" in out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "--timeout", "0", "--", "true"], "--timeout: must be > 0 seconds, got 0"),
        (["run", "--timeout", "soon", "--", "true"], "--timeout: expected seconds, got 'soon'"),
        (
            ["run", "--plan", "p.json", "--from-list", "-", "--", "true"],
            "give --from-list or --plan, not both",
        ),
        (["run", "--pool", "../x", "--", "true"], "invalid pool name '../x'"),
        (["run", "--run-id", "a/b", "--", "true"], "not a usable run id"),
    ],
)
def test_run_bad_input(project: Path, argv: list[str], message: str) -> None:
    status, _, err = call(*argv)
    assert EXIT_USAGE == status
    assert message in err
    assert 1 == len(err.splitlines())
    assert not (project / ".subplan").exists()


def test_a_bad_plan_file_is_one_line(project: Path) -> None:
    (project / "p.json").write_text("{}")
    status, _, err = call("run", "--plan", "p.json", "--", "true")
    assert EXIT_USAGE == status
    assert err.startswith("subplan: error: p.json: unsupported plan schema")
    (project / "d.json").mkdir()
    assert "not a file: d.json" in call("run", "--plan", "d.json", "--", "true")[2]


# -- as a real process --------------------------------------------------------------------


def subplan(*argv: str, cwd: Path, **kw: object) -> subprocess.Popen[str]:
    return subprocess.Popen(  # type: ignore[no-any-return]
        [PY, "-m", "subplan", *argv],
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kw,  # type: ignore[call-overload]
    )


def test_ctrl_c_leaves_exit_130_and_a_report(project: Path) -> None:
    proc = subplan(
        "run", "--max-parallel", "1", "--", PY, "-c", "import time; time.sleep(30)", cwd=project
    )
    deadline = time.monotonic() + 20
    while not list((project / ".subplan").glob("*/*/stdout-1.log")):
        assert time.monotonic() < deadline, "the run never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert EXIT_INTERRUPTED == proc.returncode, err
    assert "cancelled" in out
    assert "Traceback" not in err


def test_bad_input_as_a_process_has_no_traceback(project: Path) -> None:
    proc = subplan("plan", "nowhere", cwd=project)
    out, err = proc.communicate(timeout=30)
    assert (EXIT_USAGE, "", "subplan: error: no such directory: nowhere\n") == (
        proc.returncode,
        out,
        err,
    )


def test_a_closed_pipe_is_not_an_error(project: Path) -> None:
    # Far more output than a pipe buffers (64 KiB), so the writer meets a closed pipe.
    (project / "list.txt").write_text(
        "".join(f"d{i:05d}/{j}.txt\n" for i in range(3000) for j in range(3))
    )
    proc = subplan("plan", "--from-list", "list.txt", cwd=project, bufsize=0)
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.close()
    proc.wait(timeout=30)
    assert proc.stderr is not None
    with proc.stderr:
        assert "Traceback" not in proc.stderr.read()
    assert EXIT_OK == proc.returncode


def test_python_dash_m_is_the_same_command(project: Path) -> None:
    env = {**os.environ}
    proc = subplan("--version", cwd=project, env=env)
    out, _ = proc.communicate(timeout=30)
    assert out.startswith("subplan ")


def test_commands_report_pass_and_cost_through_the_result_file(project: Path) -> None:
    script = (
        "import json, os; passed = not os.environ['SUBPLAN_LABEL'].startswith('alpha'); "
        "json.dump({{'passed': passed, 'cost': 1.5}}, open(os.environ['SUBPLAN_RESULT_FILE'], 'w'))"
    )
    status, out, _ = call("run", "--json", "--", PY, "-c", script)
    data = json.loads(out)
    assert EXIT_FAILED == status
    assert pytest.approx(2 / 3) == data["root"]["pass_rate"]
    assert pytest.approx(4.5) == data["total_cost"]
    assert pytest.approx(2.25) == data["root"]["cost_of_pass"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("not json", "not JSON"),
        ("[1]", "must hold a JSON object"),
        ('{{"passed": "yes"}}', "'passed' must be true or false"),
        ('{{"cost": true}}', "'cost' must be a number"),
    ],
)
def test_a_bad_result_file_fails_the_attempt(project: Path, content: str, message: str) -> None:
    script = f"import os; open(os.environ['SUBPLAN_RESULT_FILE'], 'w').write({content!r})"
    status, out, _ = call("run", "--", PY, "-c", script)
    assert EXIT_FAILED == status
    assert message in out


@pytest.mark.parametrize("options", [(), ("--import-order",)])
def test_import_order_runs_imported_subplans_first(project: Path, options: tuple[str, ...]) -> None:
    (project / "alpha" / "m0.py").write_text("import beta.m0\n")
    (project / "beta" / "m0.py").write_text("import gamma.m0\n")
    status, out, _ = call("run", *options, "--max-parallel", "3", "--json", "--", PY, "-c", "pass")
    assert EXIT_OK == status
    starts = {s["label"]: s["attempts"][0]["started"] for s in json.loads(out)["subplans"]}
    ends = {s["label"]: s["attempts"][0]["ended"] for s in json.loads(out)["subplans"]}
    assert ends["gamma"] <= starts["beta"]
    assert ends["beta"] <= starts["alpha"]


def test_no_deps_ignores_the_plans_order(project: Path) -> None:
    (project / "alpha" / "m0.py").write_text("import beta.m0\n")
    (project / "beta" / "m0.py").write_text("import gamma.m0\n")
    call("plan", "--format", "json", "-o", "plan.json")
    assert 3 == len(json.loads((project / "plan.json").read_text())["waves"])
    # With the order, three waves of one leaf: never more than one at a time.
    _, ordered, _ = call("run", "--plan", "plan.json", "--json", "--", PY, "-c", "pass")
    assert 1 == json.loads(ordered)["peak_concurrency"]
    # Without it, every leaf is ready at once; each waits for the others to start.
    wait_all = (
        "import os, pathlib, sys, time; d = pathlib.Path(sys.argv[1]); d.mkdir(exist_ok=True); "
        "(d / os.environ['SUBPLAN_ID']).touch(); "
        "[time.sleep(0.01) for _ in range(3000) if len(list(d.iterdir())) < 3]"
    )
    status, free, _ = call(
        "run", "--plan", "plan.json", "--no-deps", "--json", "--", PY, "-c", wait_all, "gate"
    )
    assert EXIT_OK == status
    assert 3 == json.loads(free)["peak_concurrency"]


# -- exit status 75: the infrastructure failed, a resume can finish ------------------------------


def test_a_store_that_cannot_be_reached_exits_75_not_2(tmp_path: Path) -> None:
    err = io.StringIO()
    status = main(
        ["status", "--store", "postgresql://subplan@127.0.0.1:1/none?connect_timeout=1"],
        stdout=io.StringIO(),
        stderr=err,
    )
    assert (75, True) == (status, err.getvalue().startswith("subplan: error: "))


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (OSError(errno.ENOSPC, "No space left on device"), 75),
        (StoreError("the state store failed: disk I/O error"), 75),
        (UnknownRunError("x"), 2),
        (OSError(errno.ENOENT, "No such file or directory"), 2),
    ],
)
def test_only_infrastructure_failures_exit_75(
    error: BaseException, expected: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    def fail(*args: object) -> int:
        raise error

    monkeypatch.setattr(cli, "_cmd_status", fail)
    assert (expected, EXIT_TEMPFAIL) == (main(["status"], stderr=io.StringIO()), 75)


def test_plan_skips_a_name_with_a_newline_with_one_warning_line(project: Path) -> None:
    (project / "alpha" / "odd\nname.py").write_text("x\n")
    status, out, err = call("plan")
    assert EXIT_OK == status
    assert out.startswith("plan: 9 files, 3 leaves")
    assert 1 == err.count("\n")
    assert r"alpha/odd\nname.py (name holds a line break)" in err


@pytest.mark.parametrize("how", ["option", "environment"])
def test_the_runs_directory_is_never_planned(
    project: Path, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    (project / "runs" / "r1").mkdir(parents=True)
    (project / "runs" / "r1" / "out.log").write_text("x\n")
    (project / "plan.json").write_text(json.dumps({"schema": "subplan.plan/1"}))
    if how == "environment":
        monkeypatch.setenv("SUBPLAN_RUNS_DIR", str(project / "runs"))
        status, out, err = call("plan", "--format", "json")
    else:
        status, out, err = call(
            "run", ".", "--runs-dir", "runs", "--dry-run", "--json", "--", "echo", "{files}"
        )
    assert EXIT_OK == status
    assert "runs/r1/out.log" not in out and "plan.json" not in out
    assert "alpha/m0.py" in out
    assert "skipped 2 entries" in err


def test_plan_cuts_option(project: Path) -> None:
    _, full, _ = call("plan", "--max-tokens", "20000", "--no-imports")
    status, stable, _ = call("plan", "--max-tokens", "20000", "--no-imports", "--cuts", "stable")
    assert EXIT_OK == status
    assert "(min_files 3, max_depth 6, max_tokens 20000, cuts stable)" in stable.splitlines()[0]
    assert "cuts" not in full.splitlines()[0]
    _, text, _ = call("plan", "--cuts", "stable", "--format", "json")
    assert "stable" == json.loads(text)["config"]["cuts"]
    _, text, _ = call("plan", "--format", "json")
    assert "cuts" not in json.loads(text)["config"]
    status, _, err = call("plan", "--cuts", "tight")
    assert 2 == status and "invalid choice: 'tight'" in err
