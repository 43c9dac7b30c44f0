"""Work that runs one command per subplan, from an argv template."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .._clock import Clock, SystemClock
from .._dispatch._results import AttemptContext, WorkResult
from .._errors import CommandFailedError, CommandTimeoutError, ConfigError
from .._model import Subplan
from .._ratelimit._detector import RateLimitDetector, RateLimited
from ._exec import CommandTemplate, run_command, write_files_list
from ._live_output import attempt_logs
from ._workers import report_pgid

__all__ = ["CommandFailedError", "CommandTimeoutError", "CommandWork"]


def _report_group(ctx: AttemptContext, pid: int, pgid: int) -> None:
    # In a process-backend worker, tell the parent at once: if this worker dies, the
    # parent kills the command's group before any retry. A no-op anywhere else.
    report_pgid(pgid)
    # With a state store, record the group before the command runs on: a resume after
    # the orchestrator died kills it before running the subplan again.
    ctx.report_process(pid, pgid)


def _read_result(path: Path) -> WorkResult:
    """What a command reported in its result file; plain success when it wrote none."""

    def bad(why: str) -> CommandFailedError:
        return CommandFailedError(
            f"result file {path}: {why}", exit_code=0, signal=None, stderr_path=path
        )

    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return WorkResult(passed=True)
    except (OSError, ValueError) as exc:
        raise bad(f"not JSON ({exc})") from None
    if not isinstance(data, dict):
        raise bad("must hold a JSON object")
    passed, cost, detail = data.get("passed", True), data.get("cost"), data.get("detail")
    if not isinstance(passed, bool):
        raise bad("'passed' must be true or false")
    if cost is not None and (isinstance(cost, bool) or not isinstance(cost, int | float)):
        raise bad("'cost' must be a number")
    return WorkResult(
        passed=passed,
        cost=None if cost is None else float(cost),
        detail=None if detail is None else str(detail),
    )


class CommandWork:
    """Run a command per subplan: the work callable behind ``subplan run -- CMD ARG...``.

    Each attempt renders the template (see :class:`CommandTemplate` for ``{id}``,
    ``{files}``, ``{files_list}``, ``{attempt}``, ``{run_id}``, ``{label}``,
    ``{workspace}``), writes the subplan's files to ``files.txt`` in its artifacts
    directory, and runs the command in its own process session with the environment
    variables ``SUBPLAN_RUN_ID``, ``SUBPLAN_ID``, ``SUBPLAN_ATTEMPT``,
    ``SUBPLAN_FILES_LIST``, ``SUBPLAN_LABEL`` and ``SUBPLAN_RESULT_FILE``. Standard output
    and error stream to ``stdout-N.log`` and ``stderr-N.log`` (N the attempt). Exit status
    0 is success; anything else raises :class:`CommandFailedError`. A command may write
    ``$SUBPLAN_RESULT_FILE`` (JSON: ``{"passed": bool, "cost": number, "detail": str}``,
    every key optional) to report whether its work passed and what it cost; the report's
    pass rates and cost_of_pass come from it. On timeout or cancellation the
    whole process group is killed and confirmed gone before the attempt ends, so a retry
    never overlaps it.

    Args:
        argv: the command template, as a list of arguments (never a shell string).
        cwd: the working directory of the commands (default: the current directory).
        env: extra environment variables.
        kill_grace: seconds between SIGTERM and SIGKILL when a command must stop.
        rate_limits: the detector that reads a failed command's output (the last 64 KiB of
            this attempt's stdout and stderr) for a rate limit; a match raises
            :class:`RateLimited` so the run pauses instead of spending an attempt. None
            turns it off.
        clock: the time source.

    Raises:
        TemplateError: an unknown placeholder, or ``{files}`` inside a larger argument.

    Example:
        >>> work = CommandWork(["echo", "{id}", "{files}"])
        >>> sorted(work.template.placeholders)
        ['files', 'id']
    """

    def __init__(
        self,
        argv: Sequence[str],
        *,
        cwd: str | os.PathLike[str] | None = None,
        env: Mapping[str, str] | None = None,
        kill_grace: float = 5.0,
        rate_limits: RateLimitDetector | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.template = CommandTemplate.parse(argv)
        self.detector = rate_limits
        self.cwd = Path(cwd) if cwd is not None else None
        self.env = dict(env or {})
        self.kill_grace = kill_grace
        self.clock = clock or SystemClock()

    def describe(self) -> dict[str, Any]:
        """What it takes to make this work again (JSON-ready), for a run's record.

        ``subplan resume`` rebuilds the work with :meth:`from_description`.
        """
        detector = self.detector
        return {
            "kind": "command",
            "argv": list(self.template.argv),
            "cwd": None if self.cwd is None else str(self.cwd.resolve()),
            "env": dict(self.env),
            "kill_grace": self.kill_grace,
            "rate_limits": None
            if detector is None
            else {
                "extra_patterns": list(detector.extra_patterns),
                "default_tz": detector.default_tz,
            },
        }

    @classmethod
    def from_description(cls, data: Mapping[str, Any]) -> CommandWork:
        """The work :meth:`describe` described.

        Raises:
            ConfigError: ``data`` does not describe command work.
        """
        if not isinstance(data, Mapping) or data.get("kind") != "command":
            raise ConfigError("the run's record does not describe a command")
        limits = data.get("rate_limits")
        detector = None if limits is None else RateLimitDetector(**limits)
        return cls(
            data["argv"],
            cwd=data.get("cwd"),
            env=data.get("env") or {},
            kill_grace=float(data.get("kill_grace", 5.0)),
            rate_limits=detector,
        )

    def _render(
        self, subplan: Subplan, files_list: Path, attempt: int, run_id: str, workspace: str
    ) -> list[str]:
        values = {
            "id": subplan.id,
            "files_list": str(files_list),
            "attempt": str(attempt),
            "run_id": run_id,
            "label": subplan.label,
            "workspace": workspace,
        }
        return self.template.render(values, subplan.files)

    def preview(
        self, subplan: Subplan, *, run_id: str, runs_dir: str | os.PathLike[str]
    ) -> list[str]:
        """The arguments the first attempt of ``subplan`` would run with; nothing is written.

        ``{files_list}`` names the file the attempt would write, under
        ``runs_dir/run_id/subplan_id/``, and ``{workspace}`` the command's directory (a
        run with workspaces gives each attempt a worktree instead).

        Example:
            >>> from subplan import decompose
            >>> leaf = decompose(["a.py", "b.py"]).leaves[0]
            >>> work = CommandWork(["agent", "{id}", "{files}"])
            >>> work.preview(leaf, run_id="r", runs_dir="/runs")
            ['agent', 'sp-...', 'a.py', 'b.py']
        """
        artifacts = Path(runs_dir).absolute() / run_id / subplan.id
        workspace = str((self.cwd or Path.cwd()).resolve())
        return self._render(subplan, artifacts / "files.txt", 1, run_id, workspace)

    def __call__(self, subplan: Subplan, ctx: AttemptContext) -> WorkResult:
        # Absolute: the command runs in another directory (PATH, or its worktree), and a
        # relative runs directory would point nowhere from there.
        artifacts = ctx.artifacts_dir.absolute()
        files_list = write_files_list(artifacts / "files.txt", subplan.files)
        # In a run with workspaces, the command runs in the attempt's own worktree.
        cwd = ctx.workspace or self.cwd
        workspace = str((cwd or Path.cwd()).resolve())
        argv = self._render(subplan, files_list, ctx.attempt, ctx.run_id, workspace)
        result_file = artifacts / f"result-{ctx.attempt}.json"
        result_file.unlink(missing_ok=True)
        env = {
            **self.env,
            "SUBPLAN_RESULT_FILE": str(result_file),
            "SUBPLAN_RUN_ID": ctx.run_id,
            "SUBPLAN_ID": subplan.id,
            "SUBPLAN_ATTEMPT": str(ctx.attempt),
            "SUBPLAN_FILES_LIST": str(files_list),
            "SUBPLAN_LABEL": subplan.label,
            "SUBPLAN_WORKSPACE": workspace,
        }
        remaining = None
        if ctx.deadline is not None:
            remaining = max(0.001, ctx.deadline - self.clock.monotonic())
        stdout_path, stderr_path = attempt_logs(artifacts, ctx.attempt)
        result = run_command(
            argv,
            cwd=cwd,
            env=env,
            stdout_path=stdout_path,
            stderr_path=stderr_path,
            timeout=remaining,
            cancel=ctx.cancel_event,
            kill_grace=self.kill_grace,
            on_start=functools.partial(_report_group, ctx),
            clock=self.clock,
            pass_fds=ctx.inherit_fds,
        )
        if result.ok:
            return dataclasses.replace(_read_result(result_file), exit_code=result.exit_code)
        if self.detector is not None and not (result.timed_out or result.cancelled):
            # Only this attempt's own logs: an old "resets 4pm" would roll to tomorrow.
            now = self.clock.time()
            for log in (result.stderr_path, result.stdout_path):
                info = self.detector.scan_file(log, now=now)
                if info is not None:
                    limited = RateLimited(
                        f"{info.evidence} [{info.source}]", retry_after=info.wait(now)
                    )
                    limited.exit_code = result.exit_code  # the report shows it
                    raise limited
        if result.timed_out:
            raise CommandTimeoutError("command timed out; its process group was killed")
        if result.cancelled:
            raise CommandFailedError(
                "command cancelled; its process group was killed",
                exit_code=result.exit_code,
                signal=result.signal,
                stderr_path=result.stderr_path,
            )
        how = (
            f"exit status {result.exit_code}"
            if result.exit_code is not None
            else f"killed by signal {result.signal}"
        )
        raise CommandFailedError(
            f"command failed with {how} (stderr: {result.stderr_path})",
            exit_code=result.exit_code,
            signal=result.signal,
            stderr_path=result.stderr_path,
        )


def kill_grace_of(work: object) -> float:
    """The SIGTERM-to-SIGKILL grace of a dead worker's commands: the work's own, else 2 s."""
    grace = getattr(getattr(work, "work", work), "kill_grace", None)
    if isinstance(grace, int | float) and not isinstance(grace, bool) and grace >= 0:
        return float(grace)
    return 2.0
