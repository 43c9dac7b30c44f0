"""Command work: expand an argv template for a subplan and run it as a process, safely.

The pieces live in :mod:`._template` (pure string work) and :mod:`._process` (processes,
process groups, output files); this module is the one place the rest of subplan imports
them from. Their errors (``TemplateError``, ``CommandError``, ``CommandNotFoundError``,
``ProcessGroupAliveError``) are drawn in the one error tree, in :mod:`subplan._errors`.
"""

from __future__ import annotations

from ._process import CommandError as CommandError
from ._process import CommandNotFoundError as CommandNotFoundError
from ._process import CommandResult as CommandResult
from ._process import ProcessGroupAliveError as ProcessGroupAliveError
from ._process import kill_process_group as kill_process_group
from ._process import resolve_program as resolve_program
from ._process import run_command as run_command
from ._process import write_files_list as write_files_list
from ._template import PLACEHOLDERS as PLACEHOLDERS
from ._template import CommandTemplate as CommandTemplate
from ._template import TemplateError as TemplateError
from ._template import render_file_arg as render_file_arg

__all__ = [
    "PLACEHOLDERS",
    "CommandError",
    "CommandNotFoundError",
    "CommandResult",
    "CommandTemplate",
    "ProcessGroupAliveError",
    "TemplateError",
    "kill_process_group",
    "render_file_arg",
    "resolve_program",
    "run_command",
    "write_files_list",
]
