"""behave hooks: every scenario gets its own temporary directory."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any


def before_scenario(context: Any, scenario: Any) -> None:
    context.workdir = Path(tempfile.mkdtemp(prefix="subplan-feature-"))


def after_scenario(context: Any, scenario: Any) -> None:
    shutil.rmtree(context.workdir, ignore_errors=True)
