"""Small file-system helpers shared by the CLI, the store and the artifacts."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

__all__ = ["default_runs_dir", "mark_runs_dir", "read_tail", "write_atomic"]

RUNS_DIR_GITIGNORE = "# Written by subplan: nothing in a runs directory belongs in git.\n*\n"


def write_atomic(path: str | os.PathLike[str], data: bytes | str) -> Path:
    """Write ``data`` to ``path`` so that readers see the old file or the new one, never half.

    A target that exists and is no regular file (``/dev/null``, a FIFO) is written to,
    not replaced. Otherwise parents are created first; the data goes to a temporary file
    in the same directory, which is flushed, fsync'd and renamed over ``path``; the
    directory is fsync'd too so the rename survives a crash.

    Args:
        path: where to write.
        data: bytes, or text (written as UTF-8).

    Returns:
        The path written.

    Raises:
        OSError: the directory cannot be created or written.
    """
    target = Path(path)
    payload = data.encode("utf-8") if isinstance(data, str) else data
    try:
        mode = target.stat().st_mode
    except (FileNotFoundError, NotADirectoryError):
        mode = None
    if mode is not None and not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):
        # /dev/null, a FIFO, a terminal: written to, never replaced by a file (as root a
        # rename would put a plain file where /dev/null was).
        with target.open("wb") as handle:
            handle.write(payload)
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(payload)
            handle.flush()
            os.fsync(handle.fileno())
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    dir_fd = os.open(target.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
    return target


def mark_runs_dir(path: str | os.PathLike[str]) -> Path:
    """Create a runs directory (parents first) holding a ``.gitignore`` that ignores it all.

    So ``git status`` stays clean, ``--require-clean`` accepts the next run, and neither
    ``git ls-files`` nor the ``.gitignore``-honouring walk ever plans a run's own output.
    An existing ``.gitignore`` is left as the user made it.

    Raises:
        OSError: the directory cannot be created or written.
    """
    runs = Path(path)
    runs.mkdir(parents=True, exist_ok=True)
    ignore = runs / ".gitignore"
    if not ignore.exists():
        write_atomic(ignore, RUNS_DIR_GITIGNORE)
    return runs


def read_tail(path: str | os.PathLike[str], max_bytes: int) -> tuple[int, bytes]:
    """The last ``max_bytes`` bytes of a file, and the offset they start at.

    Reads only the file's end, however large it is.

    Raises:
        OSError: the file cannot be read (FileNotFoundError when it does not exist).
    """
    with open(path, "rb") as stream:
        size = stream.seek(0, os.SEEK_END)
        start = max(0, size - max_bytes)
        stream.seek(start)
        return start, stream.read(max_bytes)


def default_runs_dir() -> Path:
    """``$SUBPLAN_RUNS_DIR`` if set, else ``.subplan`` in the current directory."""
    return Path(os.environ.get("SUBPLAN_RUNS_DIR") or ".subplan")
