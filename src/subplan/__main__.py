"""``python -m subplan``: the same as the ``subplan`` command."""

from .cli import console_main

console_main()
