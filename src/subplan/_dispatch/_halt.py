"""When a run stops early because subplans failed: ``--halt now|soon,fail=N``."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from .._errors import ConfigError

__all__ = ["Halt"]

_SPEC = re.compile(r"(now|soon),fail=([1-9][0-9]*)")


@dataclass(frozen=True, slots=True)
class Halt:
    """Stop a run once ``fail`` subplans have failed (after their retries).

    ``soon``: nothing new starts; what runs finishes and is recorded. ``now``: what runs is
    cancelled too (commands' process groups are killed), as on Ctrl-C. Either way the
    subplans that did not run stay ``not_run`` with the reason, and a resume runs them.

    Attributes:
        when: ``"now"`` or ``"soon"``.
        fail: how many failed subplans halt the run (at least 1).

    Example:
        >>> Halt.parse("soon,fail=2")
        Halt(when='soon', fail=2)
        >>> Halt.parse("now,fail=1").reason()
        'halted: 1 subplan failed (--halt now,fail=1)'
    """

    when: Literal["now", "soon"]
    fail: int = 1

    def __post_init__(self) -> None:
        if self.when not in ("now", "soon"):
            raise ConfigError(f"halt must be 'now' or 'soon', got {self.when!r}")
        if not isinstance(self.fail, int) or self.fail < 1:
            raise ConfigError(f"halt needs fail >= 1, got {self.fail!r}")

    @classmethod
    def parse(cls, text: str) -> Halt:
        """Read ``now,fail=N`` or ``soon,fail=N`` (GNU parallel's ``--halt`` spelling).

        Raises:
            ConfigError: any other text.
        """
        match = _SPEC.fullmatch(text.strip())
        if match is None:
            raise ConfigError(f"expected now,fail=N or soon,fail=N (N >= 1), got {text!r}")
        when: Literal["now", "soon"] = "now" if match.group(1) == "now" else "soon"
        return cls(when, int(match.group(2)))

    def reason(self) -> str:
        """What the run's not-run subplans are told."""
        failed = f"{self.fail} subplan{'s' if self.fail != 1 else ''} failed"
        return f"halted: {failed} (--halt {self.when},fail={self.fail})"
