"""`import subplan` and `subplan plan` do not pay for the runner: names load on first use."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import subplan

RUN_SIDE = ("subplan._run", "subplan._backends._setup", "subplan._integrate", "asyncio")


def _loaded_after(code: str, cwd: Path) -> set[str]:
    probe = code + "\nimport sys\nprint('\\n'.join(sorted(sys.modules)))\n"
    done = subprocess.run(
        [sys.executable, "-c", probe], cwd=cwd, capture_output=True, text=True, check=True
    )
    return set(done.stdout.split())


def test_importing_subplan_loads_no_run_side_module(tmp_path: Path) -> None:
    loaded = _loaded_after("import subplan", tmp_path)
    assert set() == loaded & set(RUN_SIDE)


def test_planning_from_the_cli_loads_no_run_side_module(tmp_path: Path) -> None:
    listing = tmp_path / "list.txt"
    listing.write_text("src/a.py\nsrc/b.py\ndocs/x.md\n", encoding="utf-8")
    code = (
        "import contextlib, io\n"
        "from subplan.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        f"    assert 0 == main(['plan', '--from-list', {str(listing)!r}])"
    )
    loaded = _loaded_after(code, tmp_path)
    assert "subplan._decompose" in loaded  # it did plan
    assert set() == loaded & set(RUN_SIDE)
    # None of the listed files is under the project: no graph to read, no networkx;
    # and no .gitignore to read in a list, no pathspec.
    assert "networkx" not in loaded
    assert "pathspec" not in loaded
    assert "logging" not in loaded  # only a run shows the library's log lines


def test_every_public_name_resolves_and_is_listed() -> None:
    for name in subplan.__all__:
        if name != "ClusterPool":  # needs the dask extra (tested with it)
            assert getattr(subplan, name) is not None, name
    assert set(subplan.__all__) <= set(dir(subplan))
    assert subplan.run is subplan._run.run
