"""Live output: the lines that running commands write, read back from their log files.

A command's standard output and error go straight to files (``stdout-N.log`` and
``stderr-N.log`` in its subplan's artifacts directory, see :class:`CommandWork`), so the
command never blocks on a slow reader and no output is held in memory. To show it live,
:class:`OutputFollower` follows those files the way ``tail -f`` does, on one thread for
every running attempt: it learns which files to follow from the run's events
(``attempt_started``, ``attempt_ended``), so it works on every backend whose workers
write where the orchestrator can read (threads, processes, a local dask cluster, or a
remote one writing to a shared file system).

Lines are handed on whole and in order per file. A line longer than ``max_line`` bytes is
handed on in pieces (``complete=False``), so memory stays bounded whatever a command
writes; the bytes after the last newline are handed on when the attempt has ended.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, Literal, NamedTuple

from .._dispatch._results import Event
from .._errors import ConfigError

__all__ = ["MAX_LINE", "OutputFollower", "OutputLine", "attempt_logs"]

MAX_LINE: Final = 8192  # bytes: a longer line is handed on in pieces of at most this size
_READ: Final = 65536  # bytes read from one file in one pass
_FIRST_POLL: Final = 0.005
_POLL: Final = 0.05  # longest wait between two looks at the files
# A file last written this long before its attempt started (as seen here) is an earlier
# run's (same run id, same attempt): wait for the command to truncate it. Generous,
# because a run with a store delivers events after their commit.
_STALE: Final = 5.0

Stream = Literal["stdout", "stderr"]


def attempt_logs(artifacts_dir: Path, attempt: int) -> tuple[Path, Path]:
    """The files an attempt's standard output and error go to, in this order.

    Example:
        >>> attempt_logs(Path("/runs/r1/sp-1"), 2)
        (PosixPath('/runs/r1/sp-1/stdout-2.log'), PosixPath('/runs/r1/sp-1/stderr-2.log'))
    """
    return artifacts_dir / f"stdout-{attempt}.log", artifacts_dir / f"stderr-{attempt}.log"


class OutputLine(NamedTuple):
    """One line (or one piece of a long line) that a running command wrote.

    Attributes:
        subplan_id: the subplan whose command wrote it.
        attempt: the attempt.
        stream: ``"stdout"`` or ``"stderr"``.
        data: the bytes, without the newline.
        complete: True when a newline ended it; False for a piece of a line longer than
            :data:`MAX_LINE` bytes, or for the last bytes a command wrote without one.

    Example:
        >>> OutputLine("sp-1", 1, "stdout", b"caf\\xc3\\xa9 \\xff\\r", True).text
        'café \\ufffd'
    """

    subplan_id: str
    attempt: int
    stream: Stream
    data: bytes
    complete: bool = True

    @property
    def text(self) -> str:
        """The line as text: UTF-8, undecodable bytes replaced, a CRLF's ``\\r`` dropped."""
        text = self.data.decode("utf-8", "replace")
        return text[:-1] if self.complete and text.endswith("\r") else text


def _cut(data: bytes, limit: int) -> int:
    """Where to cut ``data`` (longer than ``limit``): not inside a UTF-8 character."""
    at = limit
    while at > limit - 3 and (data[at] & 0xC0) == 0x80:
        at -= 1  # a continuation byte: the character starts earlier
    return at if (data[at] & 0xC0) != 0x80 else limit  # not UTF-8: cut anywhere


def _pieces(line: bytes, limit: int, *, complete: bool) -> list[tuple[bytes, bool]]:
    """``line`` in pieces of at most ``limit`` bytes; only the last one may be complete."""
    out = []
    while len(line) > limit:
        at = _cut(line, limit)
        out.append((line[:at], False))
        line = line[at:]
    out.append((line, complete))
    return out


class _File:
    """One followed log file: where reading got to, and the start of an unfinished line."""

    __slots__ = ("fd", "not_before", "offset", "path", "pending", "stream")

    def __init__(self, path: Path, stream: Stream, not_before: float) -> None:
        self.path = path
        self.stream: Stream = stream
        self.not_before = not_before
        self.fd: int | None = None
        self.offset = 0
        self.pending = b""

    def _open(self, final: bool) -> bool:
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            return False  # not made yet (or never: work that writes no logs)
        if not final and os.fstat(fd).st_mtime < self.not_before:
            os.close(fd)  # an earlier run's file, until the command truncates it
            return False
        self.fd = fd
        return True

    def read(self, max_line: int, *, final: bool) -> tuple[list[tuple[bytes, bool]], bool]:
        """The lines written since the last call, and whether the end was reached.

        With ``final`` (the attempt has ended), reads on to the end of the file (handing
        back at most about a thousand lines at a time: call again until the end), and
        the bytes after the last newline come last.
        """
        if self.fd is None and not self._open(final):
            return [], True
        assert self.fd is not None
        if os.fstat(self.fd).st_size < self.offset:
            self.offset, self.pending = 0, b""  # truncated: a new command writes it
        out: list[tuple[bytes, bool]] = []
        while True:
            data = os.pread(self.fd, _READ, self.offset)
            self.offset += len(data)
            *lines, rest = (self.pending + data).split(b"\n")
            if lines and max(map(len, lines)) <= max_line:
                out.extend(zip(lines, itertools.repeat(True)))  # the common case, fast
            else:
                for line in lines:
                    out.extend(_pieces(line, max_line, complete=True))
            if len(rest) > max_line:
                *cut, (rest, _) = _pieces(rest, max_line, complete=False)
                out.extend(cut)
            self.pending = rest
            if not data and final and self.pending:
                out.append((self.pending, False))  # the last bytes, with no newline
                self.pending = b""
            if not final or not data:
                return out, not data
            if len(out) >= 1024:
                return out, False  # handed on before reading more: memory stays bounded

    def close(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


class OutputFollower:
    """Follow the log files of a run's running attempts; hand their lines on live.

    Use it as the run's event listener (it passes every event on to ``then``): at
    ``attempt_started`` it starts following that attempt's ``stdout-N.log`` and
    ``stderr-N.log``, at ``attempt_ended`` it reads them to the end. One thread reads
    every followed file every few milliseconds (at most 50 ms apart) and calls
    ``on_lines`` with what it found, always from that one thread, so lines of different
    commands never mix inside a line. :meth:`close` hands on what is left.

    Args:
        runs_dir: the runs directory (the run's files are under ``runs_dir/run_id``).
        on_lines: called with each batch of :class:`OutputLine`, in order per file.
        then: the next event listener, called with every event after this one looked.
        max_line: the longest piece of a line handed on, in bytes.

    Raises:
        ConfigError: ``max_line`` is below 4 (a UTF-8 character must fit).

    Example:
        >>> from subplan import CommandWork, decompose, run
        >>> import tempfile
        >>> seen = []
        >>> runs = tempfile.mkdtemp()
        >>> with OutputFollower(runs, seen.extend) as follow:
        ...     report = run(decompose(["a.py"]), CommandWork(["echo", "hi"]),
        ...                  runs_dir=runs, on_event=follow)
        >>> [(line.stream, line.text) for line in seen]
        [('stdout', 'hi')]
    """

    def __init__(
        self,
        runs_dir: str | os.PathLike[str],
        on_lines: Callable[[Sequence[OutputLine]], object],
        *,
        then: Callable[[Event], None] | None = None,
        max_line: int = MAX_LINE,
    ) -> None:
        if max_line < 4:
            raise ConfigError(f"max_line must be at least 4 bytes, got {max_line}")
        self.runs_dir = Path(runs_dir).absolute()
        self.on_lines = on_lines
        self.then = then
        self.max_line = max_line
        self._lock = threading.Lock()
        self._following: dict[tuple[str, int], tuple[_File, ...]] = {}
        self._ended: set[tuple[str, int]] = set()
        self._wake = threading.Event()
        self._closed = False
        self._thread: threading.Thread | None = None

    def __call__(self, event: Event) -> None:
        if event.subplan_id is not None and event.attempt is not None:
            key = (event.subplan_id, event.attempt)
            if event.kind == "attempt_started":
                self._follow(event.run_id, key)
            elif event.kind == "attempt_ended":
                with self._lock:
                    if key in self._following:
                        self._ended.add(key)
                self._wake.set()
        if self.then is not None:
            self.then(event)

    def _follow(self, run_id: str, key: tuple[str, int]) -> None:
        # Real time, not the run's clock: it is compared with the files' mtimes.
        not_before = time.time() - _STALE
        out, err = attempt_logs(self.runs_dir / run_id / key[0], key[1])
        files = (_File(out, "stdout", not_before), _File(err, "stderr", not_before))
        with self._lock:
            if self._closed:
                return
            self._following[key] = files
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="subplan-output", daemon=True
                )
                self._thread.start()
        self._wake.set()

    def _pass(self, *, final: bool = False) -> bool:
        """Read every followed file once; True when something was read."""
        with self._lock:
            items = list(self._following.items())
            ended = set(self._ended) if not final else {key for key, _ in items}
        found = False
        for key, files in items:
            last = key in ended
            for file in files:
                while True:
                    pieces, at_end = file.read(self.max_line, final=last)
                    if pieces:
                        found = True
                        sid, attempt = key
                        stream = file.stream
                        self.on_lines([OutputLine(sid, attempt, stream, d, c) for d, c in pieces])
                    if not last or at_end:
                        break
            if last:
                for file in files:
                    file.close()
                with self._lock:
                    self._following.pop(key, None)
                    self._ended.discard(key)
        return found

    def _loop(self) -> None:
        delay = _FIRST_POLL
        while True:
            with self._lock:
                if self._closed:
                    return
            self._wake.clear()  # before the pass: a wake-up during it is not lost
            delay = _FIRST_POLL if self._pass() else min(delay * 2, _POLL)
            self._wake.wait(delay)

    def close(self) -> None:
        """Stop following; hand on everything the followed files still hold."""
        with self._lock:
            self._closed = True
            thread = self._thread
        self._wake.set()
        if thread is not None:
            thread.join()
        self._pass(final=True)

    def __enter__(self) -> OutputFollower:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
