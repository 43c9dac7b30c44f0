"""behave hooks: every scenario gets its own temporary directory."""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path
from typing import Any


def before_all(context: Any) -> None:
    # A passing run prints nothing of dask's own life (workers starting, comms closing at
    # shutdown): its INFO lines would bury behave's report. Warnings and errors still show.
    logging.getLogger("distributed").setLevel(logging.WARNING)


def before_scenario(context: Any, scenario: Any) -> None:
    context.workdir = Path(tempfile.mkdtemp(prefix="subplan-feature-"))


def after_scenario(context: Any, scenario: Any) -> None:
    shutil.rmtree(context.workdir, ignore_errors=True)
