"""OutputFollower: whole lines in order, long lines in bounded pieces, binary is harmless."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from subplan import ConfigError, Event, OutputFollower, OutputLine
from subplan._command._live_output import _File, attempt_logs

RUN = "r1"
SID = "sp-1"


def started(attempt: int = 1) -> Event:
    return Event("attempt_started", time.time(), RUN, subplan_id=SID, attempt=attempt)


def ended(attempt: int = 1) -> Event:
    return Event("attempt_ended", time.time(), RUN, subplan_id=SID, attempt=attempt)


def follow(
    runs: Path, stdout: bytes, stderr: bytes = b"", max_line: int = 8192
) -> list[OutputLine]:
    """What a follower hands on for one attempt that wrote ``stdout`` and ``stderr``."""
    seen: list[OutputLine] = []
    out, err = attempt_logs(runs / RUN / SID, 1)
    out.parent.mkdir(parents=True)
    with OutputFollower(runs, seen.extend, max_line=max_line) as follower:
        follower(started())
        out.write_bytes(stdout)
        err.write_bytes(stderr)
        follower(ended())
    return seen


def test_lines_come_whole_and_in_order_per_stream(tmp_path: Path) -> None:
    seen = follow(tmp_path, b"one\ntwo\r\nthree", b"oops\n")
    assert [("stdout", "one", True), ("stdout", "two", True), ("stdout", "three", False)] == [
        (line.stream, line.text, line.complete) for line in seen if line.stream == "stdout"
    ]
    assert ["oops"] == [line.text for line in seen if line.stream == "stderr"]


def test_a_huge_line_without_newline_comes_in_bounded_pieces(tmp_path: Path) -> None:
    data = b"x" * 100_000
    seen = follow(tmp_path, data, max_line=1000)
    assert data == b"".join(line.data for line in seen)
    assert 1000 >= max(len(line.data) for line in seen)
    assert not any(line.complete for line in seen)


def test_a_long_line_with_a_newline_ends_complete(tmp_path: Path) -> None:
    seen = follow(tmp_path, b"y" * 2500 + b"\nz\n", max_line=1000)
    assert [1000, 1000, 500, 1] == [len(line.data) for line in seen]
    assert [False, False, True, True] == [line.complete for line in seen]


def test_pieces_are_not_cut_inside_a_utf8_character(tmp_path: Path) -> None:
    text = "é" * 30 + "€" * 30  # 2 and 3 bytes a character
    seen = follow(tmp_path, text.encode(), max_line=16)
    assert all("\ufffd" not in line.text for line in seen)
    assert text == "".join(line.text for line in seen)


def test_binary_output_is_handed_on_exactly_and_shown_replaced(tmp_path: Path) -> None:
    data = bytes(range(256)) * 40
    seen = follow(tmp_path, data, max_line=64)
    assert data == b"\n".join(b"".join(line.data for line in group) for group in _lines(seen)), (
        "every byte arrives, newlines are where they were"
    )
    assert any("\ufffd" in line.text for line in seen)


def _lines(seen: list[OutputLine]) -> list[list[OutputLine]]:
    groups: list[list[OutputLine]] = [[]]
    for line in seen:
        groups[-1].append(line)
        if line.complete:
            groups.append([])
    return groups


def test_work_that_writes_no_logs_hands_on_nothing(tmp_path: Path) -> None:
    seen: list[OutputLine] = []
    events: list[str] = []
    with OutputFollower(tmp_path, seen.extend, then=lambda e: events.append(e.kind)) as f:
        f(started())
        f(ended())
        f(Event("run_ended", time.time(), RUN, status="succeeded"))
    assert [] == seen
    assert ["attempt_started", "attempt_ended", "run_ended"] == events


def test_an_earlier_runs_file_is_not_read_until_rewritten(tmp_path: Path) -> None:
    path = tmp_path / "stdout-1.log"
    path.write_bytes(b"stale\n")
    hour_ago = time.time() - 3600
    os.utime(path, (hour_ago, hour_ago))
    file = _File(path, "stdout", time.time() - 5)
    assert ([], True) == file.read(100, final=False)
    path.write_bytes(b"fresh\n")  # the command truncates it when it starts
    assert ([(b"fresh", True)], False) == file.read(100, final=False)


def test_a_truncated_file_is_read_again_from_its_start(tmp_path: Path) -> None:
    path = tmp_path / "stdout-1.log"
    path.write_bytes(b"first run, a long line\n")
    file = _File(path, "stdout", 0.0)
    assert [(b"first run, a long line", True)] == file.read(100, final=False)[0]
    path.write_bytes(b"again\n")
    assert [(b"again", True)] == file.read(100, final=False)[0]


def test_max_line_must_hold_a_character(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="max_line must be at least 4"):
        OutputFollower(tmp_path, print, max_line=3)


def test_a_long_file_is_handed_on_in_batches_not_all_at_once(tmp_path: Path) -> None:
    batches: list[int] = []
    out, _ = attempt_logs(tmp_path / RUN / SID, 1)
    out.parent.mkdir(parents=True)
    out.write_bytes(b"".join(b"line %d\n" % i for i in range(20_000)))
    follower = OutputFollower(tmp_path, lambda lines: batches.append(len(lines)))
    follower.close()  # nothing followed yet: nothing to hand on
    assert [] == batches
    follower = OutputFollower(tmp_path, lambda lines: batches.append(len(lines)))
    follower(started())
    follower(ended())
    follower.close()
    assert 20_000 == sum(batches)
    assert len(batches) >= 3 and max(batches) < 10_000, batches  # a read of 64 KiB at most


def test_an_attempt_that_starts_after_close_is_not_followed(tmp_path: Path) -> None:
    seen: list[OutputLine] = []
    out, _ = attempt_logs(tmp_path / RUN / SID, 1)
    out.parent.mkdir(parents=True)
    out.write_bytes(b"late\n")
    follower = OutputFollower(tmp_path, seen.extend)
    follower.close()
    follower(started())
    follower(ended())
    follower.close()
    assert [] == seen
