"""The ``subplan`` command.

``main(argv)`` returns the exit status instead of exiting, so agents and tests can call it
in-process. Exit statuses: 0 success, 1 when subplans failed, 2 for usage or input errors
(one line on stderr, never a traceback), 130 after Ctrl-C.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import functools
import json
import os
import shlex
import sys
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn, TextIO

from . import __version__
from ._decompose import decompose
from ._errors import (
    CommandError,
    ConfigError,
    InputError,
    NetworkFilesystemError,
    PlanError,
    RunExistsError,
    RunLockedError,
    StoreConnectError,
    StoreCorruptError,
    StoreError,
    StoreVersionError,
    SubplanError,
    UnknownRunError,
    UsageError,
)
from ._fs import default_runs_dir, write_atomic
from ._gc import gc_paused
from ._inventory import Inventory, Skipped, import_graph, read_path_list, scan
from ._inventory._imports import has_sources
from ._model import Plan, PlanConfig
from ._render import render_stats, render_tree

if TYPE_CHECKING:
    import networkx as nx

    from ._backends._dask_pool import ClusterPool
    from ._command._live_output import OutputLine
    from ._command._work import CommandWork
    from ._dispatch._halt import Halt
    from ._dispatch._results import Event, RunReport
    from ._limit._shared import SharedLimiter
    from ._report._progress import (
        Progress,
        ProgressMode,
    )
    from ._store._base import RunInfo, RunRecord, Store

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_TEMPFAIL",
    "EXIT_USAGE",
    "console_main",
    "main",
]

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_TEMPFAIL = 75  # sysexits' EX_TEMPFAIL: the infrastructure failed; a resume can finish
EXIT_INTERRUPTED = 130

# The key of a `subplan plan --format json` document that says where its paths lie: the
# project directory relative to the plan file's own (Plan.from_dict ignores it).
PROJECT_ROOT_KEY = "project_root"


RUN_PROTOCOL = """\
the command:
  CMD comes after '--' as separate arguments; no shell ever sees it. In its arguments
  {id}, {files} (one argument per file; a name starting with '-' is passed as ./-name),
  {files_list} (a file listing them, one per line: use it when the list is long),
  {attempt}, {run_id}, {label} and {workspace} are replaced; {{ and }} are braces.

  It runs in PATH (or its worktree, with --workspaces), in a process session of its
  own, with these variables set:
    SUBPLAN_RUN_ID, SUBPLAN_ID, SUBPLAN_ATTEMPT, SUBPLAN_LABEL
    SUBPLAN_FILES_LIST   the file {files_list} names
    SUBPLAN_WORKSPACE    where it runs (its worktree, with --workspaces)
    SUBPLAN_RESULT_FILE  where it may write JSON {"passed": bool, "cost": number,
                         "detail": "..."} (every key optional): pass rates and
                         cost_of_pass in the report come from it
  Exit status 0 is success; anything else is a failure, retried up to --retries.
  Its output goes to RUNS_DIR/RUN_ID/SUBPLAN_ID/stdout-N.log and stderr-N.log;
  with --tag it is also shown live, each line as LABEL<tab>LINE.
  A rate-limit message in a failed command's output pauses the whole run instead.

exit status:
  0 every subplan succeeded, 1 some failed or were skipped, 2 bad usage or input,
  75 the infrastructure failed (the state store was lost, the disk is full, the run
  lock was lost): what was committed stays, and subplan resume RUN_ID can finish,
  130 interrupted (resume with: subplan resume RUN_ID)

stopping:
  --timeout S kills a command's whole process group after S seconds: SIGTERM, then
  SIGKILL --kill-after seconds later (default 5). Ctrl-C stops starting new commands
  and waits for those running; a second Ctrl-C kills every command's process group
  (SIGTERM, SIGKILL a second later) and exits at once.
"""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line and an exception, not an exit."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message}")


def _integer(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer of at least ``minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {value}")
        return value

    return parse


def _add_plan_options(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("plan options")
    group.add_argument(
        "--from-list",
        metavar="FILE",
        help="read the files from FILE (one relative path per line, optionally "
        "'path<TAB>bytes'; '-' for stdin) instead of listing PATH",
    )
    group.add_argument(
        "--min-files",
        type=_integer(1),
        default=3,
        metavar="N",
        help="a subplan with fewer files is not split (default: 3)",
    )
    group.add_argument(
        "--max-depth",
        type=_integer(0),
        default=6,
        metavar="N",
        help="the deepest level of the tree (default: 6)",
    )
    group.add_argument(
        "--max-files",
        type=_integer(1),
        metavar="N",
        help="split until every subplan has at most N files",
    )
    group.add_argument(
        "--max-tokens",
        type=_integer(1),
        metavar="N",
        help="split until every subplan has at most N tokens (estimated as bytes/4; "
        "default: 50000 when --max-files is not given either)",
    )
    group.add_argument(
        "--cuts",
        choices=("full", "stable"),
        default="full",
        help="full (default): leaves under half the budget are merged into others they "
        "fit with (fuller leaves; cuts may move when a file changes); stable: "
        "content-anchored cuts only (an edited file re-cuts only the leaf that holds it)",
    )
    group.add_argument(
        "--weigh-all",
        action="store_true",
        help="count every file as bytes/4 tokens; by default binaries, images, fonts, "
        "lockfiles, vendored and generated files weigh 0 tokens",
    )
    group.add_argument(
        "--seed",
        type=_integer(0),
        default=0,
        metavar="N",
        help="recorded in the plan (decomposition uses no randomness)",
    )
    group.add_argument(
        "--no-imports",
        dest="imports",
        action="store_false",
        help="do not read source files (Python, JS/TS, C/C++, Go, Rust, Java/Kotlin) for "
        "a dependency graph",
    )
    group.add_argument(
        "--exclude",
        action="append",
        default=[],
        metavar="PATTERN",
        help="leave out files matching this .gitignore-style pattern (repeatable)",
    )


def _build_parser() -> _Parser:
    parser = _Parser(
        prog="subplan",
        description="Split a project into a hierarchy of subplans and run the leaves in "
        "parallel under one global bound.",
    )
    parser.add_argument("--version", action="version", version=f"subplan {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True
    _add_plan_command(commands)
    _add_run_command(commands)
    _add_resume_command(commands)
    _add_status_command(commands)
    _add_report_command(commands)
    _add_integrate_command(commands)
    _add_workspaces_command(commands)
    return parser


def _add_plan_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``subplan plan``."""
    plan = commands.add_parser(
        "plan",
        help="decompose a project into subplans and print the tree or the JSON plan",
        description="Decompose the files of PATH (a directory; default '.') into a tree of "
        "subplans. Inside a git work tree the files are those git lists (tracked and "
        "untracked, not ignored); elsewhere .gitignore files are honoured.",
    )
    plan.add_argument("path", nargs="?", default=".", metavar="PATH")
    _add_plan_options(plan)
    plan.add_argument(
        "--format",
        choices=("tree", "json"),
        default="tree",
        help="tree: an indented tree for people (default); json: the subplan.plan/1 document",
    )
    plan.add_argument("-o", "--output", metavar="FILE", help="write to FILE instead of stdout")
    plan.add_argument(
        "--stats",
        action="store_true",
        help="also report leaves, fill, largest leaf, over-budget leaves, the share of "
        "import edges inside a leaf, cross-leaf edges and waves (a 'stats' object in JSON)",
    )
    plan.set_defaults(handler=_cmd_plan)


def _add_run_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``subplan run``."""
    run = commands.add_parser(
        "run",
        help="run a command for every leaf subplan, at most --max-parallel at once",
        usage="subplan run [PATH | --plan FILE] [options] -- CMD [ARG...]",
        description="Decompose PATH (or load --plan FILE) and run CMD once per leaf "
        "subplan, at most --max-parallel at a time across the whole tree.",
        epilog=RUN_PROTOCOL,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument(
        "path",
        nargs="?",
        metavar="PATH",
        help="the project: its files are planned, the command runs there (with --plan: "
        "where the plan's paths lie; default: the directory the plan records, else .)",
    )
    run.add_argument(
        "--plan",
        dest="plan_file",
        metavar="FILE",
        help="a JSON plan to run (from subplan plan --format json, which records its PATH)",
    )
    _add_plan_options(run)
    group = run.add_argument_group("run options")
    group.add_argument(
        "--max-parallel",
        type=_integer(1),
        default=10,
        metavar="N",
        help="at most N commands at once, across the whole tree (default: 10)",
    )
    group.add_argument(
        "--retries",
        type=_integer(0),
        default=0,
        metavar="N",
        help="retry a failed subplan up to N times (backoff with jitter)",
    )
    group.add_argument(
        "--timeout", type=_seconds, metavar="S", help="kill a command after S seconds"
    )
    group.add_argument(
        "--kill-after",
        type=_grace,
        default=5.0,
        metavar="S",
        help="seconds between SIGTERM and SIGKILL when a command must stop (default: 5)",
    )
    group.add_argument(
        "--pool",
        metavar="NAME",
        help="share a budget of --pool-size slots with every run on this host naming NAME "
        "(with --backend dask: with every run on the dask cluster naming NAME); "
        "--max-parallel stays this run's own bound",
    )
    group.add_argument(
        "--pool-size",
        type=_integer(1),
        metavar="N",
        help="with --pool: the pool's total size, the same for every run naming it "
        "(default: --max-parallel)",
    )
    group.add_argument("--run-id", metavar="ID", help="the run's id (default: generated)")
    _add_halt_option(group)
    group.add_argument(
        "--runs-dir",
        metavar="DIR",
        help="where each run's output goes (default: $SUBPLAN_RUNS_DIR or .subplan)",
    )
    group.add_argument(
        "--events", metavar="FILE", help="append every run event to FILE as JSON lines"
    )
    _add_progress_option(group)
    _add_tag_options(group)
    group.add_argument(
        "--backend",
        choices=("thread", "process", "dask"),
        default="thread",
        help="thread (default): commands are watched from threads; process: each attempt "
        "runs in one of --max-parallel worker processes, so a worker that dies breaks only "
        "its own attempt; dask: attempts run on the workers of a dask cluster "
        "(--scheduler, else a local one; needs pip install 'subplan[dask]')",
    )
    group.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="with --backend dask: the dask scheduler to run on (e.g. tcp://host:8786); "
        "default: a local cluster started for the run",
    )
    group.add_argument(
        "--no-deps",
        dest="deps",
        action="store_false",
        help="ignore the plan's dependencies: start leaves in plan order, not wave by wave "
        "(by default a leaf starts after the leaves it imports from have succeeded)",
    )
    group.add_argument(
        "--import-order",
        action="store_true",
        help="read the import graph for the order even when the plan has none (a --plan "
        "file made without it); import cycles are run without an order among them",
    )
    group.add_argument(
        "--rate-limit-pattern",
        action="append",
        default=[],
        metavar="REGEX",
        help="also treat output matching REGEX as a rate limit (repeatable; a named group "
        "'seconds' gives the wait); the common providers' messages are known already",
    )
    group.add_argument(
        "--no-rate-limit-detection",
        dest="detect_rate_limits",
        action="store_false",
        help="never read commands' output for rate limits",
    )
    group.add_argument("--json", action="store_true", help="print the report as JSON")
    group.add_argument(
        "--dry-run",
        action="store_true",
        help="print the command each subplan would run, and run nothing (no record, no "
        "output files); with --json, as a JSON list",
    )
    group.add_argument("--jitter-seed", dest="run_seed", type=_integer(0), help=argparse.SUPPRESS)
    ws = run.add_argument_group("workspace options")
    ws.add_argument(
        "--workspaces",
        action="store_true",
        help="give every attempt its own detached git worktree of PATH's repository "
        "(under DIR/workspaces/RUN_ID/ID); the command runs there, and its changes are "
        "saved as changes.patch in the subplan's output before the worktree is removed",
    )
    ws.add_argument(
        "--base", metavar="REV", default="HEAD", help="the commit the worktrees start from"
    )
    ws.add_argument(
        "--keep-workspaces",
        action="store_true",
        help="keep the worktrees after the run (subplan workspaces clean removes them)",
    )
    ws.add_argument(
        "--branches",
        action="store_true",
        help="with --workspaces: also keep each succeeded subplan's changes as a commit on "
        "the base, on its own branch subplan/RUN_ID/ID (one pull request per subplan)",
    )
    ws.add_argument(
        "--require-clean",
        action="store_true",
        help="refuse to start while the repository has uncommitted changes",
    )
    _add_store_options(group)
    group.add_argument(
        "--no-store",
        dest="use_store",
        action="store_false",
        help="keep no record of the run (it cannot be resumed, listed or reported)",
    )
    run.set_defaults(handler=_cmd_run)


def _add_resume_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``subplan resume``."""
    resume = commands.add_parser(
        "resume",
        help="run again what a stopped or failed run did not finish",
        usage="subplan resume RUN_ID [--rerun ID...] [options]",
        description="Resume a run: subplans that succeeded keep their results, the others "
        "run again with the run's own command, limits and plan. Attempts a killed "
        "orchestrator left running are reclaimed (their process groups killed first). "
        "Exit status: 0 all succeeded, 1 some failed, 2 bad input (unknown run, run "
        "held by another orchestrator), 130 interrupted.",
    )
    resume.add_argument("run_id", metavar="RUN_ID")
    resume.add_argument(
        "--rerun",
        nargs="+",
        default=[],
        metavar="ID",
        help="also run these subplans (whole subtrees) again, even if they succeeded",
    )
    resume.add_argument(
        "--plan",
        dest="plan_file",
        metavar="FILE",
        help="a re-decomposed plan: subplans whose ids are unchanged keep their results",
    )
    _add_store_options(resume, runs_dir=True)
    resume.add_argument(
        "--scheduler",
        metavar="ADDRESS",
        help="for a run of the dask backend: the dask scheduler to run on now (default: "
        "the run's own)",
    )
    resume.add_argument(
        "--events", metavar="FILE", help="append every run event to FILE as JSON lines"
    )
    _add_progress_option(resume)
    _add_tag_options(resume)
    resume.add_argument("--json", action="store_true", help="print the report as JSON")
    _add_halt_option(resume)
    resume.set_defaults(handler=_cmd_resume)


def _add_status_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``subplan status``."""
    status = commands.add_parser(
        "status",
        help="list runs, or one run's subplans by state",
        usage="subplan status [RUN_ID] [--json] [options]",
    )
    status.add_argument("run_id", nargs="?", metavar="RUN_ID")
    _add_store_options(status, runs_dir=True)
    status.add_argument("--json", action="store_true", help="print JSON")
    status.set_defaults(handler=_cmd_status)


def _add_report_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``subplan report``."""
    report = commands.add_parser(
        "report",
        help="a run's outcomes, cost and pass rates per group, peak concurrency and pauses",
        usage="subplan report RUN_ID [--json] [--timeline FILE.png|.svg|.pdf] [options]",
    )
    report.add_argument("run_id", metavar="RUN_ID")
    _add_store_options(report, runs_dir=True)
    report.add_argument(
        "--json",
        action="store_true",
        help="print the report as JSON (schema subplan.report/1, shipped as "
        "subplan/schemas/report.schema.json): per subplan its status, exit code, "
        "attempts, log paths, stderr tail, changed files and cost",
    )
    report.add_argument(
        "--timeline",
        metavar="FILE",
        help="also draw every attempt over time and the concurrency curve, as PNG, SVG or "
        "PDF by FILE's extension (needs the 'plot' extra: pip install 'subplan[plot]')",
    )
    report.set_defaults(handler=_cmd_report)


def _add_integrate_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``subplan integrate``."""
    integrate = commands.add_parser(
        "integrate",
        help="apply a run's succeeded subplans' changes onto a branch, one commit each",
        usage="subplan integrate RUN_ID [--onto REV] [--branch NAME] [--rerun-conflicts] "
        "[--drop-failing] [--verify -- CMD ...] [options]",
        description="Apply the changes.patch of every succeeded subplan of a run made with "
        "--workspaces onto a branch (default subplan/integrate/RUN_ID, from the run's base "
        "commit or --onto), in dependency order, one commit per subplan, with git's "
        "three-way merge. A patch that does not apply is set aside and its files named. "
        "All the work happens in a private worktree: your checkout, index and branch are "
        "never touched. Running it again changes nothing. Exit status: 0 all integrated, "
        "1 some conflicted or failed verification, 2 bad input.",
    )
    integrate.add_argument("run_id", metavar="RUN_ID")
    integrate.add_argument(
        "--onto", metavar="REV", help="start a new branch here instead of the run's base"
    )
    integrate.add_argument(
        "--branch", metavar="NAME", help="the branch (default: subplan/integrate/RUN_ID)"
    )
    integrate.add_argument(
        "--repo",
        metavar="PATH",
        help="the project directory in the repository (default: the one the run recorded)",
    )
    integrate.add_argument(
        "--verify",
        action="store_true",
        help="run the command after '--' (argv, no shell) in the integration worktree after "
        "each wave; a failing wave is bisected to the subplans that broke it",
    )
    integrate.add_argument(
        "--drop-failing",
        action="store_true",
        help="drop the subplans a failing --verify is bisected to and go on (default: hold "
        "the failing wave back and stop there)",
    )
    integrate.add_argument(
        "--rerun-conflicts",
        action="store_true",
        help="run the conflicting subplans' command again (a resume of the run) in "
        "worktrees of the branch's new tip, then integrate them",
    )
    _add_store_options(integrate, runs_dir=True)
    integrate.add_argument("--json", action="store_true", help="print the result as JSON")
    integrate.set_defaults(handler=_cmd_integrate)


def _add_workspaces_command(commands: argparse._SubParsersAction[_Parser]) -> None:
    """``subplan workspaces``."""
    workspaces = commands.add_parser(
        "workspaces",
        help="list or clean the git worktrees of runs",
        usage="subplan workspaces {list,clean} [--run-id ID] [--force] [options]",
        description="List or clean the git worktrees that runs with --workspaces made.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    actions = workspaces.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, text in (
        ("list", "list the worktrees: run, subplan, state, dirty, who leases it"),
        ("clean", "remove worktrees no one is using; changes are saved first unless --force"),
    ):
        action = actions.add_parser(name, help=text, description=text)
        action.add_argument("--run-id", metavar="ID", help="only this run's worktrees")
        action.add_argument(
            "--repo", metavar="PATH", default=".", help="the repository (default: .)"
        )
        action.add_argument(
            "--runs-dir",
            metavar="DIR",
            help="the runs directory (default: $SUBPLAN_RUNS_DIR or .subplan)",
        )
        action.add_argument("--json", action="store_true", help="print JSON")
        if name == "clean":
            action.add_argument(
                "--force",
                action="store_true",
                help="remove dirty worktrees without saving their changes",
            )
        action.set_defaults(handler=_cmd_workspaces)
    # `subplan workspaces --help` shows the actions' options too, drawn from the parsers.
    rows = [
        (
            " ".join(
                [", ".join(a.option_strings), *([a.metavar] if isinstance(a.metavar, str) else [])]
            ),
            a.help or "",
        )
        for a in action._actions  # the last action, clean, has every option
        if a.option_strings and a.dest != "help"
    ]
    width = max(len(name) for name, _ in rows)
    workspaces.epilog = "options of the actions:\n" + "".join(
        f"  {name:<{width}}  {text}\n" for name, text in rows
    )


def _add_progress_option(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--progress",
        choices=("auto", "bar", "plain", "off"),
        default="auto",
        help="on stderr: bar, a live line (elapsed, done, running and their labels, "
        "ETA, pauses); plain, lines for failures, pauses and every 30 s; auto (default): "
        "bar on a terminal, else plain",
    )


def _add_tag_options(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--tag",
        action="store_true",
        help="show the commands' output live, each line prefixed with its subplan's label "
        "and a tab (GNU parallel's --tag --line-buffer): their stdout on stdout (on stderr "
        "with --json), their stderr on stderr; lines never mix, a line over 8 KiB comes in "
        "pieces, and the log files keep everything as before",
    )
    group.add_argument(
        "--tag-by",
        choices=("label", "id"),
        help="what --tag puts before each line: the subplan's label (default) or its id; "
        "implies --tag",
    )


def _add_halt_option(group: argparse._ActionsContainer) -> None:
    group.add_argument(
        "--halt",
        type=_halt,
        metavar="WHEN,fail=N",
        help="stop once N subplans have failed: soon,fail=N starts nothing new and lets "
        "what runs finish; now,fail=N also kills what runs (resume runs the rest)",
    )


def _halt(text: str) -> Halt:
    from ._dispatch._halt import Halt

    try:
        return Halt.parse(text)
    except ConfigError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _add_store_options(group: argparse._ActionsContainer, *, runs_dir: bool = False) -> None:
    if runs_dir:
        group.add_argument(
            "--runs-dir",
            metavar="DIR",
            help="the runs directory (default: $SUBPLAN_RUNS_DIR or .subplan)",
        )
    group.add_argument(
        "--store",
        metavar="URL",
        help="the state store: a SQLite file or postgresql://... (default: $SUBPLAN_STORE, "
        "else DIR/state.db in the runs directory)",
    )


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be > 0 seconds, got {text}")
    return value


def _grace(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected seconds, got {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be >= 0 seconds, got {text}")
    return value


def _plan_config(args: argparse.Namespace) -> PlanConfig:
    return PlanConfig(
        min_files=args.min_files,
        max_depth=args.max_depth,
        max_files=args.max_files,
        max_tokens=args.max_tokens,
        seed=args.seed,
        cuts=args.cuts,
    )


def _read_inventory(args: argparse.Namespace, stdin: TextIO) -> Inventory:
    if args.from_list is None:
        return scan(args.path, exclude=args.exclude, weigh_all=args.weigh_all)
    root = Path(args.path)
    if args.from_list == "-":
        return read_path_list(stdin, root=root, source="<stdin>", weigh_all=args.weigh_all)
    try:
        with open(args.from_list, encoding="utf-8") as handle:
            return read_path_list(
                handle, root=root, source=args.from_list, weigh_all=args.weigh_all
            )
    except FileNotFoundError:
        raise InputError(f"no such file: {args.from_list}", path=args.from_list) from None
    except IsADirectoryError:
        raise InputError(f"not a file: {args.from_list}", path=args.from_list) from None
    except UnicodeDecodeError as exc:
        raise InputError(f"{args.from_list} is not UTF-8 text ({exc.reason})") from None


def _warn_skipped(inventory: Inventory, stderr: TextIO) -> None:
    if not inventory.skipped:
        return
    reasons = Counter(s.reason for s in inventory.skipped)
    summary = ", ".join(f"{n} {reason}" for reason, n in sorted(reasons.items()))
    first = inventory.skipped[0]
    count = len(inventory.skipped)
    stderr.write(
        f"subplan: warning: skipped {count} {'entry' if count == 1 else 'entries'} "
        f"({summary}); first: {first.path} ({first.reason})\n"
    )


def _without_runs_dir(inventory: Inventory, args: argparse.Namespace) -> Inventory:
    """The inventory without the files of the runs directory, when it lies inside the
    project (``.subplan/`` is left out by the listing itself; ``--runs-dir`` or
    ``$SUBPLAN_RUNS_DIR`` may name another)."""

    chosen = getattr(args, "runs_dir", None)
    runs = Path(chosen) if chosen else default_runs_dir()
    if runs.name == ".subplan":
        return inventory  # never planned, wherever it lies (see never_planned)
    project = inventory.root if inventory.root is not None else Path(args.path)
    inside = os.path.relpath(runs.absolute(), Path(project).absolute())
    if inside == "." or inside.startswith(".."):
        return inventory
    prefix = Path(inside).as_posix() + "/"
    gone = [f for f in inventory.files if f.path.startswith(prefix)]
    if not gone:
        return inventory
    files = tuple(f for f in inventory.files if not f.path.startswith(prefix))
    skipped = (*inventory.skipped, *(Skipped(f.path, "in the runs directory") for f in gone))
    return replace(inventory, files=files, skipped=skipped)


@gc_paused()  # many objects, no garbage: see subplan._gc
def _make_plan(
    args: argparse.Namespace, stderr: TextIO, stdin: TextIO
) -> tuple[Plan, nx.DiGraph | None]:
    config = _plan_config(args)
    inventory = _without_runs_dir(_read_inventory(args, stdin), args)
    _warn_skipped(inventory, stderr)
    graph = None
    # A path list planned away from its tree (none of its source files under PATH) has
    # no edges to find: it is planned as with --no-imports, without loading networkx.
    if args.imports and inventory.root is not None and has_sources(inventory.root, inventory.paths):
        graph = import_graph(inventory.root, inventory.paths)
    return decompose(inventory.files, config=config, import_graph=graph), graph


@gc_paused()  # the plan, its statistics and its text too
def _cmd_plan(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    plan, graph = _make_plan(args, stderr, stdin)
    stats = plan.statistics(graph) if args.stats else None
    if args.format == "json":
        # The plan's paths are relative to PATH: record where PATH is, relative to the
        # plan file's directory (or to here, for stdout), so `run --plan FILE` runs there
        # from anywhere, and the bytes don't depend on where the project lies.
        where = Path(args.output).absolute().parent if args.output not in (None, "-") else None
        document = plan.to_dict()
        document[PROJECT_ROOT_KEY] = Path(
            os.path.relpath(Path(args.path).absolute(), where or Path.cwd())
        ).as_posix()
        if stats is not None:
            document["stats"] = stats.to_dict()
        text = json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    else:
        text = render_tree(plan) + ("" if stats is None else render_stats(stats))
    _emit(text, args.output, stdout)
    return EXIT_OK


def _load_plan(path: str) -> tuple[Plan, Path | None]:
    """The plan in FILE, and the project directory it records (None when it has none)."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise InputError(f"no such plan file: {path}", path=path) from None
    except IsADirectoryError:
        raise InputError(f"not a file: {path}", path=path) from None
    try:
        plan = Plan.from_json(data)
    except PlanError as exc:
        raise PlanError(f"{path}: {exc}") from None
    recorded = json.loads(data).get(PROJECT_ROOT_KEY)
    if recorded is None:
        return plan, None
    if not isinstance(recorded, str):
        raise PlanError(f"{path}: {PROJECT_ROOT_KEY} must be a string, got {recorded!r}")
    return plan, Path(path).absolute().parent / recorded


def _cmd_run(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    from ._command._exec import resolve_program
    from ._command._in_workspace import WorkspacePolicy
    from ._command._work import CommandWork
    from ._dispatch._deps import dependencies_from_imports
    from ._limit._shared import SharedLimiter
    from ._options import RunOptions
    from ._ratelimit._detector import RateLimitDetector
    from ._run import run

    argv: list[str] = args.argv
    if not argv:
        raise UsageError("subplan run: no command given; put it after '--', e.g. -- agent {id}")
    if args.plan_file is not None and args.from_list is not None:
        raise UsageError("subplan run: give --from-list or --plan, not both")
    plan_root = None
    if args.plan_file is not None:
        plan, plan_root = _load_plan(args.plan_file)
        if args.path is None and plan_root is not None:
            args.path = str(plan_root)
    if args.pool_size is not None and args.pool is None:
        raise UsageError("subplan run: --pool-size needs --pool NAME")
    # Everything is checked before anything runs: the template, the program, the pool.
    cwd = Path(args.path) if args.path is not None else None
    if cwd is not None and not cwd.is_dir():
        raise InputError(f"no such directory: {args.path}", path=args.path)
    # Absolute: a dask worker runs the command (and writes its output) from its own
    # working directory, and a resume may start from another directory or host.
    cwd = (cwd or Path()).absolute()
    detector = (
        RateLimitDetector(extra_patterns=args.rate_limit_pattern)
        if args.detect_rate_limits
        else None
    )
    work = CommandWork(argv, cwd=cwd, rate_limits=detector, kill_grace=args.kill_after)
    resolve_program(argv[0], cwd=cwd)
    if args.scheduler is not None and args.backend != "dask":
        raise UsageError("subplan run: --scheduler needs --backend dask")
    pool: SharedLimiter | ClusterPool | None = None
    pool_size = args.max_parallel if args.pool_size is None else args.pool_size
    if args.pool is not None and args.backend == "dask":
        pool = _cluster_pool(args.pool, pool_size)
    elif args.pool is not None:
        pool = SharedLimiter(args.pool, pool_size)
    graph = None
    if args.plan_file is not None:
        if args.import_order:
            graph = import_graph(cwd, plan.files)
    else:
        if args.path is None:
            args.path = "."
        plan, graph = _make_plan(args, stderr, stdin)
        if args.import_order and graph is None:
            graph = import_graph(args.path, plan.files)
    dependencies = None
    if args.import_order and graph is not None:
        dependencies = {k: sorted(v) for k, v in dependencies_from_imports(plan, graph).items()}
    elif args.deps and plan.dependencies is not None:
        dependencies = {k: list(v) for k, v in plan.dependencies.items()}
    if args.branches and not args.workspaces:
        raise UsageError("subplan run: --branches needs --workspaces")
    runs_dir = _runs_dir(args)
    if args.dry_run:
        _dry_run(plan, work, dependencies, args, runs_dir, stdout)
        return EXIT_OK
    store = _store_spec(args, runs_dir) if args.use_store else None
    policy = None
    if args.workspaces:
        policy = WorkspacePolicy(
            cwd,
            base=args.base,
            keep=args.keep_workspaces,
            require_clean=args.require_clean,
            branches=args.branches,
        )
    options = RunOptions(
        max_parallel=args.max_parallel,
        retries=args.retries,
        timeout=args.timeout,
        dependencies=dependencies or {},
        seed=args.run_seed,
        backend=args.backend,
        scheduler=args.scheduler,
        halt=args.halt,
        workspaces=policy,
    )
    with _listeners(args, stdout, stderr, plan, runs_dir) as on_event:
        report = run(
            plan,
            work,
            options=options,
            run_id=args.run_id,
            runs_dir=runs_dir.absolute(),
            limiter=pool,
            on_event=on_event,
            handle_signals=True,
            store=store,
        )
    return _finish_run(report, args, stdout, stderr, runs_dir, resumable=store is not None)


def _dry_run(
    plan: Plan,
    work: CommandWork,
    dependencies: Mapping[str, Sequence[str]] | None,
    args: argparse.Namespace,
    runs_dir: Path,
    stdout: TextIO,
) -> None:
    """Print what each leaf would run; nothing is written, recorded or started."""
    run_id = args.run_id or "RUN_ID"
    deps = dependencies or {}
    previews = [
        (leaf, work.preview(leaf, run_id=run_id, runs_dir=runs_dir)) for leaf in plan.leaves
    ]
    if args.json:
        rows = [
            {
                "subplan_id": leaf.id,
                "label": leaf.label,
                "files": len(leaf.files),
                "after": list(deps.get(leaf.id, ())),
                "argv": argv,
            }
            for leaf, argv in previews
        ]
        document = {"dry_run": True, "run_id": args.run_id, "cwd": str(work.cwd), "subplans": rows}
        stdout.write(json.dumps(document, indent=2) + "\n")
        return
    stdout.write(
        f"dry run: {len(previews)} subplans in {work.cwd}, at most {args.max_parallel} at "
        "once; nothing runs and nothing is recorded\n"
    )
    for leaf, argv in previews:
        after = f"  (after {', '.join(deps[leaf.id])})" if deps.get(leaf.id) else ""
        stdout.write(f"{leaf.id}  {leaf.label}{after}\n  {shlex.join(argv)}\n")


def _cluster_pool(name: str, size: int) -> ClusterPool:
    """The dask cluster's pool NAME; distributed is imported only here."""
    try:
        from ._backends._dask_pool import ClusterPool
    except ImportError:
        raise ConfigError(
            "the dask backend needs distributed: pip install 'subplan[dask]'"
        ) from None
    return ClusterPool(name, size)


def _runs_dir(args: argparse.Namespace) -> Path:

    return Path(args.runs_dir) if args.runs_dir else default_runs_dir()


def _store_spec(args: argparse.Namespace, runs_dir: Path) -> str:
    """The store the options name: --store, $SUBPLAN_STORE, or the runs directory's."""
    return args.store or os.environ.get("SUBPLAN_STORE") or str(runs_dir / "state.db")


@contextlib.contextmanager
def _listeners(
    args: argparse.Namespace,
    stdout: TextIO,
    stderr: TextIO,
    plan: Plan,
    runs_dir: Path,
    *,
    done: int = 0,
) -> Iterator[Callable[[Event], None]]:
    """The progress display, the --events file and --tag's live output, as one listener."""
    from ._command._live_output import OutputFollower
    from ._report._progress import Progress

    chosen: str = args.progress
    mode: ProgressMode
    if chosen == "auto":
        mode = "bar" if stderr.isatty() else "plain"
    else:
        mode = "bar" if chosen == "bar" else "plain" if chosen == "plain" else "off"
    labels = {leaf.id: leaf.label for leaf in plan.leaves}
    progress = Progress(stderr, len(plan.leaves), mode=mode, labels=labels, done=done)
    with contextlib.ExitStack() as stack:
        if mode != "off":
            stack.enter_context(_saying(progress))
        listeners: list[Callable[[Event], None]] = [progress]
        if args.events is not None:
            events = stack.enter_context(open(args.events, "a", encoding="utf-8"))

            def write_event(event: Event) -> None:
                events.write(json.dumps(event.to_dict()) + "\n")
                events.flush()

            listeners.append(write_event)

        def on_event(event: Event) -> None:
            for listener in listeners:
                listener(event)

        try:
            if args.tag or args.tag_by is not None:
                # With --json, stdout holds the report alone: the output goes to stderr.
                out = stderr if args.json else stdout
                tags = labels if args.tag_by != "id" else {sid: sid for sid in labels}
                show = functools.partial(_show_lines, progress, tags, out, stderr)
                with OutputFollower(runs_dir, show, then=on_event) as follower:
                    yield follower
            else:
                yield on_event
        finally:
            progress.close()


@contextlib.contextmanager
def _saying(progress: Progress) -> Iterator[None]:
    """While active, what subplan logs at INFO and above shows on the display's stream."""
    import logging  # here: planning never logs, and loading logging costs 7 ms

    class Say(logging.Handler):
        """The library's own INFO messages (the dask start-up) as ``subplan: ...`` lines."""

        def emit(self, record: logging.LogRecord) -> None:
            progress.write_lines([(progress.stream, f"subplan: {record.getMessage()}\n")])

    logger = logging.getLogger("subplan")
    handler = Say(logging.INFO)
    level = logger.level
    logger.addHandler(handler)
    if level == logging.NOTSET or level > logging.INFO:
        logger.setLevel(logging.INFO)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _show_lines(
    progress: Progress,
    tags: Mapping[str, str],
    out: TextIO,
    err: TextIO,
    lines: Sequence[OutputLine],
) -> None:
    """--tag: each line as ``TAG<tab>TEXT``, through the display so none mixes with it."""
    items = []
    for line in lines:
        stream = out if line.stream == "stdout" else err
        text = f"{tags.get(line.subplan_id, line.subplan_id)}\t{line.text}\n"
        encoding = getattr(stream, "encoding", None)
        if encoding:  # what the stream cannot encode becomes '?', not an error
            text = text.encode(encoding, "replace").decode(encoding)
        items.append((stream, text))
    progress.write_lines(items)


def _finish_run(
    report: RunReport,
    args: argparse.Namespace,
    stdout: TextIO,
    stderr: TextIO,
    runs_dir: Path,
    *,
    resumable: bool,
) -> int:
    from ._report._progress import render_summary

    for warning in report.warnings:  # the JSON report has them too; people read stderr
        stderr.write(f"subplan: warning: {warning}\n")
    if args.json:
        stdout.write(json.dumps(report.to_dict(), indent=2) + "\n")
    else:
        stdout.write(render_summary(report, runs_dir=str(runs_dir)))
        if resumable and not report.ok:
            stdout.write(f"resume with: subplan resume {report.run_id}{_store_args(args)}\n")
    stdout.flush()
    halted = args.halt is not None and len(report.failed) >= args.halt.fail
    if report.status == "cancelled" and not halted:
        return EXIT_INTERRUPTED
    return EXIT_OK if report.ok else EXIT_FAILED


def _store_args(args: argparse.Namespace) -> str:
    """The options a follow-up command needs to find the same store (for hints)."""
    from ._store._open import redact

    parts = []
    if args.runs_dir:
        parts += ["--runs-dir", args.runs_dir]
    if args.store:
        parts += ["--store", redact(args.store)]
    return "".join(" " + shlex.quote(p) for p in parts)


def _cmd_resume(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    from ._run import resume
    from ._store._open import open_store

    runs_dir = _runs_dir(args)
    store = open_store(_store_spec(args, runs_dir), runs_dir, create=False)
    with contextlib.closing(store):
        record = store.get_run(args.run_id)
        plan = _load_plan(args.plan_file)[0] if args.plan_file is not None else None
        shown = plan or Plan.from_json(record.plan_json)
        again = {leaf.id for rid in args.rerun or () for leaf in shown.leaves_under(rid)}
        latest: dict[str, tuple[int, str]] = {}
        for row in store.attempts(args.run_id):
            if row.number >= latest.get(row.subplan_id, (0, ""))[0]:
                latest[row.subplan_id] = (row.number, row.status)
        done = sum(
            1
            for leaf in shown.leaves
            if leaf.id not in again and latest.get(leaf.id, (0, ""))[1] == "succeeded"
        )
        with _listeners(args, stdout, stderr, shown, runs_dir, done=done) as on_event:
            report = resume(
                args.run_id,
                store=store,
                runs_dir=runs_dir.absolute(),
                plan=plan,
                rerun=args.rerun,
                on_event=on_event,
                handle_signals=True,
                scheduler=args.scheduler,
                halt=args.halt,
            )
    return _finish_run(report, args, stdout, stderr, runs_dir, resumable=True)


def _open_for_reading(args: argparse.Namespace) -> Store:
    from ._store._open import open_store

    runs_dir = _runs_dir(args)
    return open_store(_store_spec(args, runs_dir), runs_dir, create=False, readonly=True)


def _stored_report(store: Store, record: RunRecord, args: argparse.Namespace) -> RunReport:
    """The report of a stored run, with its sessions and where its logs are."""
    from ._durable._resume import report_from_store

    run_id = record.run_id
    return report_from_store(
        record,
        store.attempts(run_id),
        store.pauses(run_id),
        store.sessions(run_id),
        run_dir=_runs_dir(args) / run_id,
    )


def _cmd_status(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    from ._integrate import integration_data, integration_lines
    from ._report._progress import render_run_status, render_runs, run_status_data

    with contextlib.closing(_open_for_reading(args)) as store:
        if args.run_id is None:
            runs = store.list_runs()
            holders = {r.run_id: store.run_holder(r.run_id) for r in runs if r.status == "running"}
            # Counted as `status RUN_ID` counts them (from the run's report), so the two agree.
            counts = {r.run_id: _list_counts(store, r.run_id, args) for r in runs}
            if args.json:
                data = {
                    "schema": "subplan.status/1",
                    "runs": [
                        {**_run_info(r, holders.get(r.run_id)), "counts": counts.get(r.run_id)}
                        for r in runs
                    ],
                }
                stdout.write(json.dumps(data, indent=2) + "\n")
            else:
                shown = {run_id: c for run_id, c in counts.items() if c is not None}
                stdout.write(render_runs(runs, holders, counts=shown))
            return EXIT_OK
        record = store.get_run(args.run_id)
        holder = store.run_holder(args.run_id)
        report = _stored_report(store, record, args)
        integrations = store.integrations(args.run_id)
    if args.json:
        one = {
            **run_status_data(record, report),
            "holder": holder,
            "integration": integration_data(integrations),
        }
        stdout.write(json.dumps(one, indent=2) + "\n")
    else:
        stdout.write(render_run_status(record, report, holder=holder))
        stdout.write("".join(line + "\n" for line in integration_lines(integrations)))
    return EXIT_OK


def _list_counts(store: Store, run_id: str, args: argparse.Namespace) -> dict[str, int] | None:
    """A listed run's subplans by state, or None when its plan cannot be read (the
    listing still shows the run, by its latest attempts)."""
    try:
        return _counts(_stored_report(store, store.get_run(run_id), args))
    except PlanError:
        return None


def _counts(report: RunReport) -> dict[str, int]:
    return {
        state: sum(1 for o in report.outcomes.values() if o.status == state)
        for state in ("succeeded", "failed", "skipped", "not_run")
    }


def _run_info(info: RunInfo, holder: str | None) -> dict[str, object]:
    return {
        "holder": holder,
        "run_id": info.run_id,
        "status": info.status,
        "created": info.created,
        "updated": info.updated,
        "ended": info.ended,
        "host": info.host,
        "pid": info.pid,
        "attempts": info.attempts,
        "latest": dict(info.latest),
    }


def _cmd_report(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    from ._integrate import integration_data, integration_lines
    from ._report._progress import render_report

    with contextlib.closing(_open_for_reading(args)) as store:
        record = store.get_run(args.run_id)
        report = _stored_report(store, record, args)
        integrations = store.integrations(args.run_id)
    if args.timeline is not None:
        from ._report._timeline import write_timeline

        write_timeline(report, args.timeline)
    if args.json:
        data = {**report.to_dict(), "integration": integration_data(integrations)}
        stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        stdout.write(render_report(report))
        stdout.write("".join(line + "\n" for line in integration_lines(integrations)))
    return EXIT_OK


def _cmd_integrate(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    from ._integrate import integrate

    command: list[str] = args.argv
    if args.verify and not command:
        raise UsageError("subplan integrate: --verify needs a command after '--'")
    if command and not args.verify:
        raise UsageError("subplan integrate: a command after '--' needs --verify")
    if args.drop_failing and not args.verify:
        raise UsageError("subplan integrate: --drop-failing needs --verify")
    runs_dir = _runs_dir(args)
    result = integrate(
        args.run_id,
        store=_store_spec(args, runs_dir),
        runs_dir=runs_dir,
        repo=args.repo,
        onto=args.onto,
        branch=args.branch,
        verify=command or None,
        drop_failing=args.drop_failing,
        rerun_conflicts=args.rerun_conflicts,
    )
    if args.json:
        stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    else:
        stdout.write("".join(line + "\n" for line in result.lines()))
    return EXIT_OK if result.ok else EXIT_FAILED


def _emit(text: str, output: str | None, stdout: TextIO) -> None:
    if output is None or output == "-":
        stdout.write(text)
        stdout.flush()
    else:
        write_atomic(output, text)


def _describe(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        where = f": {exc.filename}" if exc.filename else ""
        return f"{exc.strerror}{where}"
    return str(exc) or type(exc).__name__


def main(
    argv: Sequence[str] | None = None,
    *,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
    stdin: TextIO | None = None,
) -> int:
    """Run the ``subplan`` command with ``argv`` and return its exit status.

    Args:
        argv: the arguments after the program name; ``sys.argv[1:]`` when omitted.
        stdout: where results go (default ``sys.stdout``).
        stderr: where errors and warnings go (default ``sys.stderr``).
        stdin: where ``-`` reads from (default ``sys.stdin``).

    Returns:
        0 on success, 1 when subplans failed, 2 for usage or input errors, 75 when the
        infrastructure failed (store lost, disk full, run lock lost: resume later),
        130 after Ctrl-C.

    Example:
        >>> main(["plan", "--min-files", "0", "."])
        2
    """
    out = stdout if stdout is not None else sys.stdout
    err = stderr if stderr is not None else sys.stderr
    inp = stdin if stdin is not None else sys.stdin
    args_list = list(sys.argv[1:] if argv is None else argv)
    # Everything after the first "--" is the command of `subplan run`, untouched.
    command: list[str] = []
    if "--" in args_list:
        cut = args_list.index("--")
        args_list, command = args_list[:cut], args_list[cut + 1 :]
    parser = _build_parser()
    try:
        args = parser.parse_args(args_list)
        args.argv = command
        handler: Callable[[argparse.Namespace, TextIO, TextIO, TextIO], int] = args.handler
        return handler(args, out, err, inp)
    except SystemExit as exc:  # --help and --version exit through argparse
        return exc.code if isinstance(exc.code, int) else EXIT_OK
    except KeyboardInterrupt:
        err.write("subplan: interrupted\n")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        raise  # the reader went away: console_main ends quietly
    except (SubplanError, OSError) as exc:
        prefix = "" if isinstance(exc, UsageError) else "subplan: error: "
        err.write(f"{prefix}{_describe(exc)}\n")
        return EXIT_TEMPFAIL if _is_temporary(exc) else EXIT_USAGE


# Store errors that say something about the input, not about the infrastructure.
_INPUT_STORE_ERRORS = (
    UnknownRunError,
    RunExistsError,
    RunLockedError,
    StoreCorruptError,
    StoreVersionError,
    NetworkFilesystemError,
)
_TEMPORARY_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.ENOMEM})


def _is_temporary(exc: BaseException) -> bool:
    """True for a failure of the infrastructure that a later resume can get past."""
    if isinstance(exc, _INPUT_STORE_ERRORS):
        return False
    if isinstance(exc, StoreConnectError) and not str(exc.location or "").startswith("postgres"):
        return False  # a SQLite file that is missing or unusable: the path is wrong
    if isinstance(exc, StoreError):
        return True  # the store was lost (or became unusable) while it was needed
    if isinstance(exc, OSError) and not isinstance(exc, CommandError):
        return exc.errno in _TEMPORARY_ERRNOS
    return False


def console_main() -> None:
    """Entry point of the ``subplan`` console script."""
    try:
        status = main()
    except BrokenPipeError:
        # The reader went away (``subplan plan | head``): not an error worth a traceback.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        status = EXIT_OK
    sys.exit(status)


def _cmd_workspaces(args: argparse.Namespace, stdout: TextIO, stderr: TextIO, stdin: TextIO) -> int:
    from ._workspace import Workspaces

    runs_dir = _runs_dir(args)
    workspaces = Workspaces(args.repo, runs_dir / "workspaces", artifacts_root=runs_dir)
    if args.action == "list":
        infos = workspaces.list(args.run_id)
        if args.json:
            data = {
                "schema": "subplan.workspaces/1",
                "workspaces": [
                    {
                        "run_id": i.run_id,
                        "subplan_id": i.subplan_id,
                        "path": str(i.path),
                        "base": i.base,
                        "state": i.state,
                        "dirty": i.dirty,
                        "holder": i.holder,
                    }
                    for i in infos
                ],
            }
            stdout.write(json.dumps(data, indent=2) + "\n")
        elif not infos:
            stdout.write("no workspaces\n")
        else:
            stdout.write(
                f"{'run':<24} {'subplan':<19} {'state':<9} {'dirty':<5} leased by / path\n"
            )
            for i in infos:
                who = i.holder or str(i.path)
                dirty = "-" if i.dirty is None else ("yes" if i.dirty else "no")
                stdout.write(f"{i.run_id:<24} {i.subplan_id:<19} {i.state:<9} {dirty:<5} {who}\n")
        return EXIT_OK
    removals = workspaces.clean(args.run_id, force=args.force)
    kept = [r for r in removals if not r.removed]
    if args.json:
        data = {
            "schema": "subplan.workspaces-clean/1",
            "removed": [str(r.path) for r in removals if r.removed],
            "kept": [{"path": str(r.path), "reason": r.reason} for r in kept],
            "patches": [str(r.patch) for r in removals if r.patch is not None],
        }
        stdout.write(json.dumps(data, indent=2) + "\n")
    else:
        done = len(removals) - len(kept)
        stdout.write(f"removed {done} workspace{'s' if done != 1 else ''}\n")
        for r in removals:
            if r.patch is not None:
                stdout.write(f"  saved {r.patch}\n")
        for r in kept:
            stdout.write(f"  kept {r.path}: {r.reason}\n")
    return EXIT_OK if not kept else EXIT_FAILED
