"""The live display, read from a real pseudo-terminal of a given width."""

from __future__ import annotations

import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest

from execute_helpers import CHATTY
from subplan import decompose, scan

REDRAW = "\r\x1b[2K"
LIMIT = 120.0
SLEEP = "import time; time.sleep(0.4)"
# fails until the file "go" exists next to the project: a resume after creating it passes
FAIL_UNTIL_GO = (
    "import os, sys, time; time.sleep(0.2); "
    "sys.exit(0 if os.path.exists('../go') or sys.argv[1] >= 'd3' else 3)"
)


def project(root: Path, dirs: int = 6) -> Path:
    for d in range(dirs):
        for i in range(3):
            path = root / "proj" / f"d{d}" / f"m{i}.py"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("x = 1\n")
    return root / "proj"


def in_a_terminal(argv: list[str], cwd: Path, columns: int) -> str:
    """Run ``argv`` with a pseudo-terminal of ``columns`` as its stdin, stdout and stderr."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {k: v for k, v in os.environ.items() if not k.startswith("SUBPLAN_")}
    env.pop("COLUMNS", None)
    proc = subprocess.Popen(argv, cwd=cwd, env=env, stdin=slave, stdout=slave, stderr=slave)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + LIMIT
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 1.0)
            if not ready:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child side is closed
                break
            if not data:
                break
            chunks.append(data)
        else:
            proc.kill()
            pytest.fail(f"{argv} did not end within {LIMIT}s")
        proc.wait(timeout=LIMIT)
    finally:
        os.close(master)
    return b"".join(chunks).decode("utf-8", "replace")


TAGGED = r"(\S+)\t\1 (line|warning|partial) ?\d*"


def redraws(output: str) -> list[str]:
    """Every state the live line showed (the summary that follows on stdout is left out)."""
    return [part.split("\r\n")[0] for part in output.split(REDRAW) if part.startswith("subplan ")]


def cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "subplan", *args]


@pytest.mark.parametrize("columns", [80, 200])
def test_the_line_fits_the_terminal_and_shows_eta_and_labels(tmp_path: Path, columns: int) -> None:
    root = project(tmp_path)
    labels = {leaf.label for leaf in decompose(scan(root).files, max_files=3).leaves}
    output = in_a_terminal(
        cli(
            "run", ".", "--max-files", "3", "--max-parallel", "2", "--", sys.executable, "-c", SLEEP
        ),
        root,
        columns,
    )
    shown = redraws(output)
    assert shown, output
    assert all(len(line) <= columns - 1 for line in shown), max(shown, key=len)
    assert any(re.search(r"ETA \d+:\d\d", line) for line in shown), shown
    named = [line.split(" | ", 1)[1] for line in shown if " | " in line]
    assert named, shown  # the running subplans are named
    if columns == 200:  # room for every name: each is a real label
        assert all(set(names.split(", ")) <= labels for names in named), named
    assert any("6/6 done" in line for line in shown), shown[-3:]


def test_a_resume_counts_what_succeeded_before(tmp_path: Path) -> None:
    root = project(tmp_path)
    argv = cli(
        "run", ".", "--max-files", "3", "--run-id", "r",
        "--", sys.executable, "-c", FAIL_UNTIL_GO, "{label}",
    )  # fmt: skip
    first = in_a_terminal(argv, root, 200)
    assert any("3/6 done" in line and "3 failed" in line for line in redraws(first)), first
    (tmp_path / "go").write_text("")
    again = redraws(in_a_terminal(cli("resume", "r"), root, 200))
    assert again and "3/6 done" in again[0], again[:2]
    assert "6/6 done" in again[-1]


def test_in_a_terminal_the_bar_is_redrawn_below_the_lines(tmp_path: Path) -> None:
    proj = project(tmp_path, dirs=4)
    labels = {leaf.label for leaf in decompose(scan(proj).files, max_files=3).leaves}
    output = in_a_terminal(
        cli(
            "run", ".", "--max-files", "3", "--max-parallel", "2", "--tag", "--progress", "bar",
            "--", sys.executable, "-c", CHATTY,
        ),
        proj,
        200,
    )  # fmt: skip
    parts = output.split(REDRAW)
    bars = [i for i, part in enumerate(parts) if part.startswith("subplan ")]
    lines = [i for i, part in enumerate(parts) if "\t" in part]
    assert bars and lines, output[:2000]
    # A bar is never followed by a line on the same row: each redraw holds a bar or lines.
    assert not any("\t" in parts[i] for i in bars), [
        parts[i][:200] for i in bars if "\t" in parts[i]
    ]
    assert bars[-1] > lines[-1]  # the bar is drawn again below the last lines
    shown = [row for i in lines for row in parts[i].split("\r\n") if row]
    assert [] == [row for row in shown if not re.fullmatch(TAGGED, row)][:5]
    assert labels == {row.split("\t")[0] for row in shown}
