"""Running commands as real processes: output, environment, exit codes, signals, and the
guarantee that the whole process group is gone when run_command returns."""

from __future__ import annotations

import contextlib
import errno
import gc
import json
import math
import os
import pathlib
import pickle
import resource
import signal
import subprocess
import sys
import threading
import time
import warnings
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import pytest

from subplan import ArgumentListTooLongError, ConfigError, InputError, SubplanError, SystemClock
from subplan._command import _process as _command_process
from subplan._command._exec import (
    CommandError,
    CommandNotFoundError,
    CommandResult,
    CommandTemplate,
    ProcessGroupAliveError,
    kill_process_group,
    resolve_program,
    run_command,
    write_files_list,
)
from subplan.testing._clock import FakeClock

pytestmark = pytest.mark.timeout(60)

T = TypeVar("T")


def roundtrip(obj: T) -> T:
    """``obj`` through pickle, as a process pool would pass it."""
    copy: T = pickle.loads(pickle.dumps(obj))  # noqa: S301 - our own bytes
    return copy


PY = sys.executable

# A command whose child (the grandchild of run_command) writes its pid to a file and
# sleeps. argv: <dir> <mode: sleep|exit> <grandchild ignores SIGTERM: 0|1>
FAMILY = r"""
import os, pathlib, subprocess, sys, time
GRAND = '''
import os, pathlib, signal, sys, time
if sys.argv[2] == "1":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
p = pathlib.Path(sys.argv[1]); tmp = p.with_suffix(".tmp")
tmp.write_text(str(os.getpid())); os.replace(tmp, p)
time.sleep(100)
'''
d = pathlib.Path(sys.argv[1])
subprocess.Popen([sys.executable, "-c", GRAND, str(d / "grandchild.pid"), sys.argv[3]])
while not (d / "grandchild.pid").exists():
    time.sleep(0.002)
(d / "ready").touch()
if sys.argv[2] == "exit":
    sys.exit(0)
time.sleep(100)
"""


def py(code: str, *args: str) -> list[str]:
    return [PY, "-c", code, *args]


def proc_state(pid: int) -> str | None:
    """The state letter of ``pid`` in /proc (``Z`` for a zombie), None when it is gone."""
    try:
        data = pathlib.Path(f"/proc/{pid}/stat").read_bytes()
    except FileNotFoundError:
        return None
    return data[data.rfind(b")") + 2 :].split()[0].decode()


def assert_dead(pid: int) -> None:
    """``pid`` no longer runs. An orphan is reparented to PID 1; where PID 1 never reaps
    (as in some containers) a killed orphan stays a zombie: dead, but its pid remains."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return
    assert proc_state(pid) in (None, "Z"), f"process {pid} is still running"


def wait_until(predicate: Callable[[], bool], what: str, limit: float = 30.0) -> None:
    deadline = time.monotonic() + limit
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.002)


def set_when(event: threading.Event, predicate: Callable[[], bool]) -> list[float]:
    """Set ``event`` from a thread as soon as ``predicate`` holds; the returned list gets
    the wall-clock time at which it was set."""
    set_at: list[float] = []

    def watch() -> None:
        wait_until(predicate, "the command to get ready")
        set_at.append(time.time())
        event.set()

    threading.Thread(target=watch, daemon=True).start()
    return set_at


class ReadyClock(SystemClock):
    """Real time that stands still until ``ready`` exists: a timeout counts from readiness,
    so a slow machine cannot make the command time out before it started its children."""

    def __init__(self, ready: pathlib.Path) -> None:
        self._ready = ready
        self._start = time.monotonic()
        self._offset: float | None = None

    def monotonic(self) -> float:
        now = time.monotonic()
        if self._offset is None:
            if not self._ready.exists():
                return self._start
            self._offset = now - self._start
        return now - self._offset


@pytest.fixture(autouse=True)
def _kill_leftovers(tmp_path: pathlib.Path) -> Iterator[None]:
    """Whatever a failing test leaves behind (pids in *.pid files) is killed."""
    yield
    for pid_file in tmp_path.rglob("*.pid"):
        pid = int(pid_file.read_text())
        with contextlib.suppress(ProcessLookupError):
            if proc_state(pid) not in (None, "Z") and os.getpgid(pid) != os.getpgrp():
                os.kill(pid, signal.SIGKILL)


@pytest.fixture
def spawn() -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Popen in a new session; every process is killed and reaped at teardown."""
    started: list[subprocess.Popen[bytes]] = []

    def start(argv: list[str]) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(argv, start_new_session=True)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait()


@pytest.fixture(params=["pidfd", "polling"])
def waiting(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Wait for the command through a pidfd, or by polling where the kernel has none."""
    if request.param == "polling":
        monkeypatch.setattr(_command_process, "_open_pidfd", lambda pid: None)
    return str(request.param)


def run(tmp_path: pathlib.Path, argv: list[str], **options: Any) -> CommandResult:
    options.setdefault("cwd", None)
    options.setdefault("env", {})
    return run_command(
        argv,
        stdout_path=tmp_path / "out" / "stdout.txt",
        stderr_path=tmp_path / "out" / "stderr.txt",
        **options,
    )


# -- exit status and output ---------------------------------------------------------------------


@pytest.mark.parametrize("code", [0, 1, 3, 255])
def test_exit_code_is_reported(tmp_path: pathlib.Path, code: int) -> None:
    result = run(tmp_path, py(f"import sys; sys.exit({code})"))

    assert (code, None, False, False) == (
        result.exit_code,
        result.signal,
        result.timed_out,
        result.cancelled,
    )
    assert (code == 0) == result.ok
    assert result.pid == result.pgid
    assert result.started <= result.ended
    assert (PY, "-c", f"import sys; sys.exit({code})") == result.argv


def test_death_by_signal_has_no_exit_code(tmp_path: pathlib.Path) -> None:
    result = run(tmp_path, py("import os, signal; os.kill(os.getpid(), signal.SIGKILL)"))

    assert (None, signal.SIGKILL) == (result.exit_code, result.signal)
    assert not result.ok
    assert not result.timed_out


def test_stdout_and_stderr_go_to_files_with_parents_created(tmp_path: pathlib.Path) -> None:
    out = tmp_path / "deep" / "er" / "out.txt"
    err = tmp_path / "other" / "err.txt"
    out.parent.mkdir(parents=True)
    out.write_text("old content that must go away\n" * 10)

    result = run_command(
        py("import sys; print('to out'); print('to err', file=sys.stderr)"),
        cwd=None,
        env={},
        stdout_path=out,
        stderr_path=str(err),
    )

    assert "to out\n" == out.read_text()
    assert "to err\n" == err.read_text()
    assert (out, err) == (result.stdout_path, result.stderr_path)


def test_same_path_for_stdout_and_stderr_keeps_both(tmp_path: pathlib.Path) -> None:
    log = tmp_path / "log.txt"
    code = (
        "import sys\n"
        "for i in range(3):\n"
        "    print('out', i, flush=True); print('err', i, file=sys.stderr, flush=True)"
    )

    run_command(py(code), cwd=None, env={}, stdout_path=log, stderr_path=tmp_path / "log.txt")

    assert "out 0\nerr 0\nout 1\nerr 1\nout 2\nerr 2\n" == log.read_text()


def test_large_output_streams_to_the_file_not_memory(tmp_path: pathlib.Path) -> None:
    size = 20 * 2**20
    code = "import sys\nchunk = b'x' * 2**20\nfor _ in range(20): sys.stdout.buffer.write(chunk)"
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux

    result = run(tmp_path, py(code))

    peak_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    assert result.ok
    assert size == result.stdout_path.stat().st_size
    assert peak_after - peak_before < 10 * 1024  # holding the output would add 20 MiB


def test_stdin_is_empty(tmp_path: pathlib.Path) -> None:
    result = run(tmp_path, py("import sys; print(repr(sys.stdin.read()))"))

    assert "''\n" == result.stdout_path.read_text()


def test_env_is_merged_over_the_callers_environment(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in [k for k in os.environ if k.startswith("SUBPLAN_TEST_")]:
        monkeypatch.delenv(name)  # e.g. the PostgreSQL URL CI sets
    monkeypatch.setenv("SUBPLAN_TEST_INHERITED", "inherited")
    monkeypatch.setenv("SUBPLAN_TEST_OVERRIDDEN", "old")
    code = (
        "import json, os; print(json.dumps({k: v for k, v in os.environ.items() "
        "if k.startswith('SUBPLAN_TEST_') or k == 'PATH'}))"
    )

    result = run(
        tmp_path,
        py(code),
        env={"SUBPLAN_TEST_NEW": "a b $HOME;`x`", "SUBPLAN_TEST_OVERRIDDEN": "new"},
    )

    seen = json.loads(result.stdout_path.read_text())
    assert {
        "PATH": os.environ["PATH"],
        "SUBPLAN_TEST_INHERITED": "inherited",
        "SUBPLAN_TEST_OVERRIDDEN": "new",
        "SUBPLAN_TEST_NEW": "a b $HOME;`x`",
    } == seen


def test_cwd_is_honoured(tmp_path: pathlib.Path) -> None:
    work = tmp_path / "work dir"
    work.mkdir()

    result = run(tmp_path, py("import os; print(os.getcwd())"), cwd=work)

    assert f"{work}\n" == result.stdout_path.read_text()


def test_a_relative_program_is_found_relative_to_cwd(tmp_path: pathlib.Path) -> None:
    tool = tmp_path / "bin" / "tool"
    tool.parent.mkdir()
    tool.write_text('#!/bin/sh\necho tool ran in "$PWD"\n')
    tool.chmod(0o755)

    result = run(tmp_path, ["./tool"], cwd=tool.parent)

    assert f"tool ran in {tool.parent}\n" == result.stdout_path.read_text()


def test_file_names_arrive_intact_as_single_arguments(tmp_path: pathlib.Path) -> None:
    names = [
        "a b.py",
        "it's.py",
        'q"uote.py',
        "$(touch pwned).py",
        "x; touch pwned.py",
        "`touch pwned`",
        "*.py",
        "~root",
        "tab\there",
        "back\\slash",
        "ünïcødé/日本語.py",
        "-rf",
        "--help",
        "|| touch pwned &&",
    ]
    template = CommandTemplate.parse(
        [PY, "-c", "import json, sys; print(json.dumps(sys.argv[1:]))", "--id={id}", "{files}"]
    )
    argv = template.render({"id": "sp-$(x)"}, names)

    result = run(tmp_path, argv, cwd=tmp_path)

    passed = json.loads(result.stdout_path.read_text())
    expected = ["--id=sp-$(x)", *names]
    expected[expected.index("-rf")] = "./-rf"
    expected[expected.index("--help")] = "./--help"
    assert expected == passed
    assert not list(tmp_path.rglob("pwned*"))


# -- on_start -----------------------------------------------------------------------------------


def test_on_start_gets_pid_and_pgid_of_the_new_session(tmp_path: pathlib.Path) -> None:
    seen: list[tuple[int, int, int, int]] = []

    def on_start(pid: int, pgid: int) -> None:
        # The leader is not reaped yet, so the kernel still knows its group and session.
        seen.append((pid, pgid, os.getpgid(pid), os.getsid(pid)))

    result = run(tmp_path, ["true"], on_start=on_start)

    pid = result.pid
    assert [(pid, pid, pid, pid)] == seen
    assert pid == result.pgid
    assert os.getpgrp() != pid


@pytest.mark.parametrize("error", [RuntimeError("store is down"), KeyboardInterrupt()])
def test_on_start_failure_kills_the_command_and_propagates(
    tmp_path: pathlib.Path, error: BaseException
) -> None:
    pids: list[int] = []

    def on_start(pid: int, pgid: int) -> None:
        pids.append(pid)
        raise error

    with pytest.raises(type(error)) as info:
        run(tmp_path, py("import time; time.sleep(100)"), on_start=on_start, kill_grace=2)

    assert error is info.value
    assert_dead(pids[0])
    with pytest.raises(ProcessLookupError):
        os.killpg(pids[0], 0)


# -- timeout, cancel, leftovers: the whole group is gone ----------------------------------------


@pytest.mark.usefixtures("waiting")
def test_timeout_kills_the_command(tmp_path: pathlib.Path) -> None:
    begin = time.monotonic()

    result = run(tmp_path, py("import time; time.sleep(100)"), timeout=0.3)

    elapsed = time.monotonic() - begin
    assert (True, False, None, signal.SIGTERM) == (
        result.timed_out,
        result.cancelled,
        result.exit_code,
        result.signal,
    )
    assert not result.ok
    assert 0.3 <= elapsed < 5
    with pytest.raises(ProcessLookupError):
        os.killpg(result.pgid, 0)


@pytest.mark.usefixtures("waiting")
def test_a_command_that_finishes_in_time_is_not_timed_out(tmp_path: pathlib.Path) -> None:
    # The fake clock never reaches the deadline: the command ends the wait by exiting.
    result = run(tmp_path, py("import time; time.sleep(0.2)"), timeout=1.0, clock=FakeClock())

    assert result.ok
    assert not result.timed_out


@pytest.mark.parametrize("grandchild_ignores_term", [False, True], ids=["term", "ignores-term"])
@pytest.mark.parametrize("how", ["timeout", "cancel", "exit"])
def test_the_whole_group_is_gone_on_return(
    tmp_path: pathlib.Path, how: str, grandchild_ignores_term: bool
) -> None:
    ready = tmp_path / "ready"
    cancel = threading.Event()
    options: dict[str, Any] = {"kill_grace": 0.2}
    if how == "timeout":
        options.update(timeout=0.3, clock=ReadyClock(ready))
    elif how == "cancel":
        options.update(cancel=cancel)
        set_when(cancel, ready.exists)
    argv = py(FAMILY, str(tmp_path), "exit" if how == "exit" else "sleep")

    result = run(tmp_path, [*argv, "1" if grandchild_ignores_term else "0"], **options)

    grandchild = int((tmp_path / "grandchild.pid").read_text())
    assert_dead(grandchild)
    assert (how == "timeout", how == "cancel") == (result.timed_out, result.cancelled)
    if how == "exit":
        assert (0, None, True) == (result.exit_code, result.signal, result.ok)
    else:
        assert (None, signal.SIGTERM) == (result.exit_code, result.signal)


def test_no_pidfd_for_a_process_that_is_gone(
    spawn: Callable[[list[str]], subprocess.Popen[bytes]],
) -> None:
    proc = spawn(["true"])
    proc.wait()

    assert _command_process._open_pidfd(proc.pid) is None


@pytest.mark.usefixtures("waiting")
def test_cancel_set_before_start_kills_at_once(tmp_path: pathlib.Path) -> None:
    cancel = threading.Event()
    cancel.set()

    result = run(tmp_path, py("import time; time.sleep(100)"), cancel=cancel)

    assert result.cancelled
    assert not result.ok


def test_a_command_ignoring_sigterm_is_sigkilled_after_the_grace(tmp_path: pathlib.Path) -> None:
    ready = tmp_path / "ready"
    code = (
        "import pathlib, signal, sys, time\n"
        "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
        "pathlib.Path(sys.argv[1]).touch()\n"
        "time.sleep(100)"
    )
    cancel = threading.Event()
    set_at = set_when(cancel, ready.exists)

    result = run(tmp_path, py(code, str(ready)), cancel=cancel, kill_grace=0.2)

    elapsed = result.ended - set_at[0]
    assert (None, signal.SIGKILL, True) == (result.exit_code, result.signal, result.cancelled)
    assert 0.2 <= elapsed < 5


def test_a_stopped_command_is_continued_so_it_can_handle_sigterm(tmp_path: pathlib.Path) -> None:
    code = "import os, signal; os.kill(os.getpid(), signal.SIGSTOP)"
    pids: list[int] = []
    cancel = threading.Event()
    set_when(cancel, lambda: bool(pids) and proc_state(pids[0]) == "T")
    begin = time.monotonic()

    result = run(
        tmp_path, py(code), cancel=cancel, kill_grace=20, on_start=lambda pid, _: pids.append(pid)
    )

    assert (None, signal.SIGTERM) == (result.exit_code, result.signal)
    assert time.monotonic() - begin < 10  # SIGKILL would only come after 20 s


@pytest.mark.parametrize("how", ["cancel", "timeout"])
def test_a_command_that_already_finished_keeps_its_result(
    tmp_path: pathlib.Path, how: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    cancel = threading.Event()
    clock = FakeClock()
    pids: list[int] = []

    def on_start(pid: int, pgid: int) -> None:
        pids.append(pid)

    released = _command_process._Gate.open

    def open_then_late(gate: _command_process._Gate) -> int | None:
        # By the time run_command looks, the command has exited and so has the time.
        failed = released(gate)
        wait_until(lambda: proc_state(pids[0]) == "Z", "the command to exit")
        cancel.set()
        clock.advance(60)
        return failed

    monkeypatch.setattr(_command_process._Gate, "open", open_then_late)
    options: dict[str, Any] = {"cancel": cancel} if how == "cancel" else {"timeout": 10}
    result = run(tmp_path, ["true"], on_start=on_start, clock=clock, **options)

    assert (True, False, False) == (result.ok, result.cancelled, result.timed_out)


def test_started_and_ended_come_from_the_clock(tmp_path: pathlib.Path) -> None:
    clock = FakeClock(wall_offset=1_000.0)

    result = run(tmp_path, ["true"], clock=clock)

    assert (1_000.0, 1_000.0) == (result.started, result.ended)


def test_a_survivor_of_sigkill_is_an_error_that_carries_the_result(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Stands in for a process stuck in the kernel, which no test can make on purpose.
    monkeypatch.setattr(_command_process, "_group_alive", lambda pgid: True)

    with pytest.raises(ProcessGroupAliveError) as info:
        run(tmp_path, ["true"], clock=FakeClock())

    assert f"process group {info.value.pgid} is still alive after SIGKILL" == str(info.value)
    assert info.value.result is not None
    assert (0, info.value.pgid) == (info.value.result.exit_code, info.value.result.pgid)
    assert isinstance(info.value, SubplanError)
    assert isinstance(info.value, RuntimeError)


def test_a_survivor_is_noted_on_the_callers_own_error(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_command_process, "_group_alive", lambda pgid: True)
    pgids: list[int] = []

    def on_start(pid: int, pgid: int) -> None:
        pgids.append(pgid)
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom") as info:
        run(tmp_path, ["true"], on_start=on_start, clock=FakeClock())

    assert [f"process group {pgids[0]} is still alive after SIGKILL"] == info.value.__notes__


def test_run_command_gives_up_on_a_leader_that_survives_sigkill(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A process immune to signals (stuck in the kernel): the call must not hang on it.
    monkeypatch.setattr(_command_process, "_group_alive", lambda pgid: True)
    monkeypatch.setattr(_command_process, "_signal_group", lambda pgid, sig: None)
    cancel = threading.Event()
    cancel.set()
    pids: list[int] = []

    try:
        with pytest.raises(ProcessGroupAliveError) as info:
            run(
                tmp_path,
                ["sleep", "30"],
                cancel=cancel,
                clock=FakeClock(),
                on_start=lambda pid, _: pids.append(pid),
            )
    finally:
        os.killpg(pids[0], signal.SIGKILL)
        os.waitpid(pids[0], 0)

    result = info.value.result
    assert result is not None
    assert (None, None, True) == (result.exit_code, result.signal, result.cancelled)
    with warnings.catch_warnings():
        # The error's traceback holds the Popen that run_command gave up on; dropping it
        # warns that its process "is still running" (we reaped it ourselves above).
        warnings.simplefilter("ignore", ResourceWarning)
        del info
        gc.collect()


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to run a check as another user")
def test_a_group_of_another_user_is_not_confirmed_gone(
    spawn: Callable[[list[str]], subprocess.Popen[bytes]],
) -> None:
    proc = spawn(["sleep", "30"])  # owned by root
    child = os.fork()
    if child == 0:  # pragma: no cover - coverage does not follow the forked child
        try:
            os.setgid(65534)
            os.setuid(65534)
            clock = FakeClock()
            gone = kill_process_group(proc.pid, grace=1, clock=clock)
            os._exit(0 if not gone and clock.monotonic() >= 6 else 1)
        finally:
            os._exit(2)

    _, status = os.waitpid(child, 0)

    assert 0 == os.waitstatus_to_exitcode(status)
    assert proc.poll() is None  # the other user's group was not touched


# -- errors -------------------------------------------------------------------------------------


def test_missing_program(tmp_path: pathlib.Path) -> None:
    with pytest.raises(CommandNotFoundError) as info:
        run(tmp_path, ["no-such-agent-xyz", "--id", "x"])

    assert "program not found: 'no-such-agent-xyz'" == str(info.value)
    assert ("no-such-agent-xyz", errno.ENOENT) == (info.value.program, info.value.errno)
    assert isinstance(info.value, FileNotFoundError)
    assert isinstance(info.value, CommandError)
    assert isinstance(info.value, SubplanError)
    assert isinstance(info.value.__cause__, FileNotFoundError)


def test_program_that_is_not_executable(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "script.sh"
    script.write_text("#!/bin/sh\n")
    script.chmod(0o644)

    with pytest.raises(CommandError) as info:
        run(tmp_path, [str(script)])

    assert not isinstance(info.value, CommandNotFoundError)
    assert errno.EACCES == info.value.errno
    assert f"cannot run {str(script)!r}: Permission denied" == str(info.value)


def test_missing_working_directory(tmp_path: pathlib.Path) -> None:
    missing = tmp_path / "nope"

    with pytest.raises(CommandError) as info:
        run(tmp_path, ["true"], cwd=missing)

    assert not isinstance(info.value, CommandNotFoundError)
    assert f"cannot run 'true': working directory not found: {str(missing)!r}" == str(info.value)
    assert (str(missing), "true") == (info.value.cwd, info.value.program)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"argv": []}, "no command given"),
        ({"argv": "true"}, "a command must be a list of arguments, not a string: 'true'"),
        ({"timeout": 0}, "timeout must be > 0 seconds, got 0"),
        ({"timeout": -1.0}, "timeout must be > 0 seconds, got -1.0"),
        ({"timeout": math.nan}, "timeout must be > 0 seconds, got nan"),
        ({"kill_grace": -0.5}, "kill_grace must be >= 0 seconds, got -0.5"),
    ],
)
def test_bad_options_are_config_errors(
    tmp_path: pathlib.Path, options: dict[str, Any], message: str
) -> None:
    argv = options.pop("argv", ["true"])

    with pytest.raises(ConfigError) as info:
        run(tmp_path, argv, **options)

    assert message == str(info.value)


@pytest.mark.parametrize("env", [{}, {"A\x00": "x"}, {"A": "x\x00"}])
def test_nul_in_an_argument_or_variable_is_an_input_error(
    tmp_path: pathlib.Path, env: dict[str, str]
) -> None:
    argv = ["true", "a\x00b"] if not env else ["true"]

    with pytest.raises(InputError, match="contains NUL"):
        run(tmp_path, argv, env=env)


def test_errors_and_results_survive_pickling(tmp_path: pathlib.Path) -> None:
    result = run(tmp_path, ["true"])
    errors: list[Exception] = [
        CommandError("cannot run 'x': Permission denied", program="x", cwd="/w"),
        CommandNotFoundError("program not found: 'x'", program="x"),
        ProcessGroupAliveError(1234, result),
    ]

    for error in errors:
        copy = roundtrip(error)
        assert (type(error), str(error), vars(error)) == (type(copy), str(copy), vars(copy))
    assert result == roundtrip(result)


# -- resolve_program ----------------------------------------------------------------------------


def test_resolve_program(tmp_path: pathlib.Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tool = bin_dir / "my-tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    plain = bin_dir / "plain"
    plain.write_text("")

    assert PY == resolve_program(PY)
    assert resolve_program("sh").endswith("/sh")
    assert str(tool) == resolve_program("my-tool", env={"PATH": str(bin_dir)})
    assert str(tool) == resolve_program("./my-tool", cwd=bin_dir)
    with pytest.raises(CommandNotFoundError, match="program not found: 'my-tool'"):
        resolve_program("my-tool")
    with pytest.raises(CommandNotFoundError, match=r"program not found: '\./nope'"):
        resolve_program("./nope", cwd=bin_dir)
    for bad in ("./plain", str(bin_dir) + "/"):
        with pytest.raises(CommandError, match="program is not executable") as info:
            resolve_program(bad, cwd=bin_dir)
        assert not isinstance(info.value, CommandNotFoundError)


def test_resolve_program_without_cwd_keeps_the_relative_path(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tool = tmp_path / "tool"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.chdir(tmp_path)

    assert "./tool" == resolve_program("./tool")


# -- kill_process_group -------------------------------------------------------------------------


@pytest.mark.parametrize("pgid", [0, 1, -5])
def test_kill_process_group_refuses_special_groups(pgid: int) -> None:
    with pytest.raises(ConfigError, match=f"refusing to signal process group {pgid}: must be > 1"):
        kill_process_group(pgid)


def test_kill_process_group_refuses_the_callers_own_group() -> None:
    own = os.getpgrp()

    with pytest.raises(ConfigError, match="it is the caller's own"):
        kill_process_group(own)


def test_kill_process_group_refuses_negative_grace(
    spawn: Callable[[list[str]], subprocess.Popen[bytes]],
) -> None:
    proc = spawn(["sleep", "30"])

    with pytest.raises(ConfigError, match="grace must be >= 0 seconds"):
        kill_process_group(proc.pid, grace=-1)


def test_kill_process_group_kills_a_live_group(
    spawn: Callable[[list[str]], subprocess.Popen[bytes]],
) -> None:
    proc = spawn(["sleep", "30"])

    assert kill_process_group(proc.pid, grace=5)
    assert -signal.SIGTERM == proc.wait(timeout=5)


def test_kill_process_group_of_a_gone_group_is_true(
    spawn: Callable[[list[str]], subprocess.Popen[bytes]],
) -> None:
    proc = spawn(["true"])
    proc.wait()

    assert kill_process_group(proc.pid)


def test_a_zombie_leader_counts_as_gone(
    spawn: Callable[[list[str]], subprocess.Popen[bytes]],
) -> None:
    proc = spawn(py("pass"))
    wait_until(lambda: proc_state(proc.pid) == "Z", "the child to become a zombie")

    assert kill_process_group(proc.pid, grace=0)
    assert 0 == proc.wait()  # it exited by itself: it was never signalled


def test_grace_is_measured_on_the_injected_clock(
    tmp_path: pathlib.Path, spawn: Callable[[list[str]], subprocess.Popen[bytes]]
) -> None:
    ready = tmp_path / "ready"
    proc = spawn(
        py(
            "import pathlib, signal, sys, time\n"
            "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
            "pathlib.Path(sys.argv[1]).touch()\n"
            "time.sleep(100)",
            str(ready),
        )
    )
    wait_until(ready.exists, "the child to ignore SIGTERM")
    clock = FakeClock()

    gone = kill_process_group(proc.pid, grace=3, clock=clock)

    assert -signal.SIGKILL == proc.wait(timeout=5)
    # The zombie leader counts as gone; the fake clock "waited" the whole grace at once.
    assert gone
    assert clock.monotonic() >= 3


def test_kill_process_group_is_false_when_a_member_survives(
    spawn: Callable[[list[str]], subprocess.Popen[bytes]], monkeypatch: pytest.MonkeyPatch
) -> None:
    proc = spawn(["sleep", "30"])
    # After SIGKILL the unreaped leader is a zombie, so killpg still finds the group; the
    # fake scan claims a live member: a process stuck in the kernel would look like this.
    monkeypatch.setattr(_command_process, "_has_live_member", lambda pgid: True)
    clock = FakeClock()

    assert not kill_process_group(proc.pid, grace=1, clock=clock)
    assert -signal.SIGTERM == proc.wait(timeout=5)
    assert clock.monotonic() >= 1 + 5


def test_membership_is_read_from_proc(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    proc_dir = tmp_path / "proc"
    entries = {
        "10": b"10 (we ird) comm)) S 1 777 777 0 -1",
        "11": b"11 (zombie) Z 1 888 888 0 -1",
        "12": b"12 (dead) X 1 888 888 0 -1",
        "13": b"13 (short) R 1 999",
        "14": b"garbage",
    }
    for pid, stat in entries.items():
        (proc_dir / pid).mkdir(parents=True)
        (proc_dir / pid / "stat").write_bytes(stat)
    (proc_dir / "15").mkdir()  # vanished before we opened its stat
    (proc_dir / "16" / "stat").mkdir(parents=True)  # a stat that cannot be read
    (proc_dir / "self").mkdir()
    monkeypatch.setattr(_command_process, "_PROC", str(proc_dir))

    assert _command_process._has_live_member(777)
    assert _command_process._has_live_member(999)
    assert not _command_process._has_live_member(888)  # zombies only
    assert not _command_process._has_live_member(555)
    monkeypatch.setattr(_command_process, "_PROC", str(tmp_path / "no-proc"))
    assert _command_process._has_live_member(555)  # cannot tell: assume alive


# -- write_files_list ---------------------------------------------------------------------------


def test_write_files_list_writes_one_argument_per_line(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "runs" / "r1" / "files.txt"
    raw_name = os.fsdecode(b"caf\xe9.py")  # a non-UTF-8 name as os.listdir returns it

    written = write_files_list(str(target), ["a b.py", "-rf", "dir/x;y", raw_name])

    assert target == written
    assert b"a b.py\n./-rf\ndir/x;y\ncaf\xe9.py\n" == target.read_bytes()
    assert ["files.txt"] == sorted(p.name for p in target.parent.iterdir())


def test_write_files_list_replaces_and_may_be_empty(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "files.txt"
    target.write_text("old\n")

    write_files_list(target, [])

    assert b"" == target.read_bytes()


@pytest.mark.parametrize("bad", ["a\nb", "a\rb", "a\x00b", "", "\ud800"])
def test_write_files_list_refuses_unlistable_names_and_keeps_the_old_list(
    tmp_path: pathlib.Path, bad: str
) -> None:
    target = tmp_path / "files.txt"
    target.write_text("old\n")

    with pytest.raises(InputError) as info:
        write_files_list(target, ["ok.py", bad])

    assert bad == info.value.path
    assert "old\n" == target.read_text()
    assert ["files.txt"] == sorted(p.name for p in tmp_path.iterdir())


def test_write_files_list_leaves_no_temporary_file_on_failure(tmp_path: pathlib.Path) -> None:
    target = tmp_path / "files.txt"
    target.mkdir()  # cannot be replaced by a file

    with pytest.raises(IsADirectoryError):
        write_files_list(target, ["a.py"])

    assert ["files.txt"] == sorted(p.name for p in tmp_path.iterdir())


def test_an_argument_list_too_long_says_to_use_files_list(tmp_path: pathlib.Path) -> None:
    # one argument over the kernel's per-argument limit (128 KiB): execve gives E2BIG
    with pytest.raises(ArgumentListTooLongError) as caught:
        run_command(
            ["true", "x" * 200_000],
            cwd=None,
            env={},
            stdout_path=tmp_path / "o.log",
            stderr_path=tmp_path / "e.log",
        )
    error = caught.value
    assert errno.E2BIG == error.errno
    assert (2, "true") == (error.arguments, error.program)
    assert error.size > 200_000
    assert "argument list too long" in str(error) and "{files_list}" in str(error)
    assert error.retryable is False


def test_a_run_does_not_retry_an_argument_list_too_long(tmp_path: pathlib.Path) -> None:
    from subplan import CommandWork, decompose, run

    work = CommandWork(["true", "{files}", "y" * 200_000], cwd=tmp_path)
    report = run(decompose(["a.py", "b.py"]), work, retries=3, runs_dir=tmp_path / "runs")
    (attempt,) = report.attempts  # failed once, not retried: it fails the same way each time
    assert "failed" == attempt.status
    assert "ArgumentListTooLongError" in str(attempt.error)


def test_the_command_runs_only_after_on_start_returned(tmp_path: pathlib.Path) -> None:
    marker = tmp_path / "ran"
    seen: list[tuple[bool, bytes]] = []

    def on_start(pid: int, pgid: int) -> None:
        # Still the blocked shim: not the command, which would have made the marker.
        # (Popen may return before the kernel has set up the new image's arguments.)
        cmdline = pathlib.Path(f"/proc/{pid}/cmdline")
        wait_until(lambda: b"\0" in cmdline.read_bytes(), "the shim's arguments")
        seen.append((marker.exists(), cmdline.read_bytes().split(b"\0")[1]))

    result = run(tmp_path, py(f"open({str(marker)!r}, 'w').close()"), on_start=on_start)

    assert ([(False, b"-I")], True, True) == (seen, result.ok, marker.exists())


def test_a_missing_program_behind_the_gate_is_still_not_found(tmp_path: pathlib.Path) -> None:
    with pytest.raises(CommandNotFoundError) as info:
        run(tmp_path, ["no-such-agent-xyz"], on_start=lambda pid, pgid: None)

    assert ("no-such-agent-xyz", errno.ENOENT) == (info.value.program, info.value.errno)
