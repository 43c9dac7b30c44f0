"""Retry policy: how many attempts, which failures retry, and the backoff between them."""

from __future__ import annotations

import importlib
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .._errors import ConfigError

__all__ = ["RetryPolicy"]


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """How a failed attempt is retried.

    The wait before retry ``n`` (1-based) is drawn uniformly from
    ``[0, min(cap, base * 2 ** (n - 1))]`` ("full jitter"), so retries of many subplans
    that failed together spread out instead of arriving together. The wait happens in the
    dispatcher, never inside a slot.

    Args:
        retries: retries after the first attempt (``retries=2`` allows three attempts).
        backoff_base: seconds; the ceiling of the first wait.
        backoff_cap: seconds; the ceiling of every wait.
        retry_on: exception types that are retried; others fail the subplan at once.
            Timeouts are always retried (within ``retries``).
        retry_unpassed: also retry attempts whose work returned a failed result
            (``False`` or ``WorkResult(passed=False)``).
        max_crashes: a subplan whose worker died this many times fails, whatever retries
            remain (a poison subplan must not crash workers forever).
        max_rate_limits: a subplan rate-limited this many times in a row fails. Rate-limited
            attempts never count against ``retries``.

    Raises:
        ConfigError: a negative count or wait.

    Example:
        >>> RetryPolicy(retries=3, backoff_base=0.5).max_attempts
        4
    """

    retries: int = 0
    backoff_base: float = 1.0
    backoff_cap: float = 60.0
    retry_on: Sequence[type[BaseException]] = field(default=(Exception,))
    retry_unpassed: bool = False
    max_crashes: int = 3
    max_rate_limits: int = 20

    def __post_init__(self) -> None:
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise ConfigError(f"retries must be an integer, got {self.retries!r}")
        if self.retries < 0:
            raise ConfigError(f"retries must be >= 0, got {self.retries}")
        if self.backoff_base < 0 or self.backoff_cap < 0:
            raise ConfigError("backoff times must be >= 0")
        if self.max_crashes < 1 or self.max_rate_limits < 1:
            raise ConfigError("max_crashes and max_rate_limits must be >= 1")
        object.__setattr__(self, "retry_on", tuple(self.retry_on))

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form; exception types by their qualified names."""
        return {
            "retries": self.retries,
            "backoff_base": self.backoff_base,
            "backoff_cap": self.backoff_cap,
            "retry_on": [f"{t.__module__}.{t.__qualname__}" for t in self.retry_on],
            "retry_unpassed": self.retry_unpassed,
            "max_crashes": self.max_crashes,
            "max_rate_limits": self.max_rate_limits,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RetryPolicy:
        """The policy :meth:`to_dict` wrote.

        Raises:
            ConfigError: an exception type that cannot be imported any more.
        """
        kinds: list[type[BaseException]] = []
        for name in data.get("retry_on", ["builtins.Exception"]):
            module, _, qualname = str(name).rpartition(".")
            try:
                found: Any = importlib.import_module(module)
                for part in qualname.split("."):
                    found = getattr(found, part)
            except (ImportError, AttributeError, ValueError):
                found = None
            if found is None and module.startswith("subplan."):
                # A class of subplan's whose private module moved (``_execute`` was split
                # into parts): the package still exports it by its name.
                found = getattr(importlib.import_module("subplan"), qualname, None)
            if not (isinstance(found, type) and issubclass(found, BaseException)):
                raise ConfigError(f"the retry policy names {name!r}, which cannot be imported")
            kinds.append(found)
        return cls(
            retries=int(data.get("retries", 0)),
            backoff_base=float(data.get("backoff_base", 1.0)),
            backoff_cap=float(data.get("backoff_cap", 60.0)),
            retry_on=tuple(kinds),
            retry_unpassed=bool(data.get("retry_unpassed", False)),
            max_crashes=int(data.get("max_crashes", 3)),
            max_rate_limits=int(data.get("max_rate_limits", 20)),
        )

    @property
    def max_attempts(self) -> int:
        """Charged attempts allowed in all."""
        return self.retries + 1

    def retryable(self, error: BaseException | None) -> bool:
        """Whether a failure with ``error`` (None: an unpassed result) may be retried."""
        if error is None:
            return self.retry_unpassed
        if getattr(error, "retryable", True) is False:  # fails the same way every time
            return False
        return isinstance(error, tuple(self.retry_on))

    def delay(self, retry: int, rng: random.Random) -> float:
        """Seconds to wait before retry number ``retry`` (1 for the first retry)."""
        ceiling = min(self.backoff_cap, self.backoff_base * 2 ** min(retry - 1, 62))
        return rng.uniform(0.0, ceiling)
