"""``RunOptions``: what a run is asked to do, validated once, stored as it was given.

:func:`subplan.run`, :func:`subplan.arun`, :func:`subplan.testing.simulate`, the CLI and
:func:`subplan.resume` (from the store, through :meth:`RunOptions.from_dict`) build one
and hand it to the run's setup; nothing else lists the options again. What a run is
wired to (the work, the listeners, the clock, the store, a shared limiter) is not an
option: those are live objects, given beside it.
"""

from __future__ import annotations

import dataclasses
import importlib.util
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, TypeAlias, cast

from ._command._in_workspace import WorkspacePolicy
from ._dispatch._halt import Halt
from ._dispatch._retry import RetryPolicy
from ._dispatch._scheduler import check_max_parallel
from ._errors import ConfigError
from ._ratelimit._detector import RateLimitDetector

__all__ = ["Backend", "RunOptions"]

Backend: TypeAlias = Literal["thread", "process", "dask"]
BACKENDS: tuple[Backend, ...] = ("thread", "process", "dask")


def _names(value: Mapping[str, Sequence[str]], what: str) -> Mapping[str, tuple[str, ...]]:
    out: dict[str, tuple[str, ...]] = {}
    for key, names in value.items():
        if isinstance(names, str):
            raise ConfigError(f"{what}[{key!r}] must be a list of names, not the string {names!r}")
        out[str(key)] = tuple(str(name) for name in names)
    return MappingProxyType(out)


def _numbers(value: Mapping[str, int]) -> Mapping[str, int]:
    return MappingProxyType({str(key): number for key, number in value.items()})


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """The options of one run, as :func:`subplan.run` documents them.

    Built once, checked once (:class:`~subplan.ConfigError` for a bad one); the mappings
    are copied and read-only, so a caller's later change cannot reach a running run.

    Attributes:
        max_parallel: the global bound (at least 1).
        retries: a :class:`RetryPolicy`; an int is the retries of a default policy
            (read :attr:`retry` for the policy either way).
        timeout: seconds per attempt, or None.
        dependencies: ``{subplan id: ids it waits for}``.
        group_caps: ``{subplan id or group name: cap}``.
        groups: ``{subplan id: group names}``.
        priorities: ``{subplan id: priority}``.
        seed: seed of the backoff jitter and the ramp.
        rate_limits: a :class:`RateLimitDetector`, True for the default one, False for
            none (raised :class:`RateLimited` is always seen).
        backend: ``"thread"``, ``"process"`` or ``"dask"``.
        scheduler: with the dask backend, the scheduler's address.
        halt: stop after that many failed subplans.
        workspaces: a git worktree per attempt.

    Example:
        >>> RunOptions(max_parallel=4, retries=2).retry.max_attempts
        3
        >>> RunOptions(max_parallel=0)
        Traceback (most recent call last):
        ...
        subplan._errors.ConfigError: max_parallel must be >= 1, got 0
    """

    max_parallel: int = 10
    retries: RetryPolicy | int = field(default_factory=RetryPolicy)
    timeout: float | None = None
    dependencies: Mapping[str, Sequence[str]] = field(default_factory=dict)
    group_caps: Mapping[str, int] = field(default_factory=dict)
    groups: Mapping[str, Sequence[str]] = field(default_factory=dict)
    priorities: Mapping[str, int] = field(default_factory=dict)
    seed: int | None = None
    rate_limits: RateLimitDetector | bool = True
    backend: Backend = "thread"
    scheduler: str | None = None
    halt: Halt | None = None
    workspaces: WorkspacePolicy | None = None

    def __post_init__(self) -> None:
        check_max_parallel(self.max_parallel)
        retries = cast(Any, self.retries)
        if not isinstance(retries, RetryPolicy):
            retries = RetryPolicy(retries=retries)
        timeout = self.timeout
        if timeout is not None and (
            isinstance(timeout, bool) or not isinstance(timeout, int | float) or not timeout > 0
        ):
            raise ConfigError(f"timeout must be > 0 seconds, got {timeout}")
        if self.backend not in BACKENDS:
            raise ConfigError(
                f"unknown backend {self.backend!r}; use 'thread', 'process' or 'dask'"
            )
        if self.backend == "dask" and importlib.util.find_spec("distributed") is None:
            raise ConfigError("the dask backend needs distributed: pip install 'subplan[dask]'")
        if self.scheduler is not None and self.backend != "dask":
            raise ConfigError(f"a scheduler address needs backend='dask', not {self.backend!r}")
        if not isinstance(self.rate_limits, RateLimitDetector | bool):
            raise ConfigError(
                f"rate_limits must be True, False or a RateLimitDetector, "
                f"not {type(self.rate_limits).__name__}"
            )
        if self.halt is not None and not isinstance(self.halt, Halt):
            raise ConfigError(f"halt must be a Halt, not {type(self.halt).__name__}")
        set_ = object.__setattr__
        set_(self, "retries", retries)
        set_(self, "dependencies", _names(self.dependencies, "dependencies"))
        set_(self, "group_caps", _numbers(self.group_caps))
        set_(self, "groups", _names(self.groups, "groups"))
        set_(self, "priorities", _numbers(self.priorities))

    @property
    def retry(self) -> RetryPolicy:
        """The retry policy (``retries`` as given, an int made a policy)."""
        return cast(RetryPolicy, self.retries)

    def replace(self, **changes: Any) -> RunOptions:
        """A copy with ``changes``, checked again."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """The options as the store keeps them (a run's ``config``; JSON-ready).

        The detector is kept as a yes/no, the scheduler only for the dask backend; the
        halt is not kept (a resume halts only when asked to again) and the workspaces
        are kept by the run's setup, with the base it resolved.
        """
        config: dict[str, Any] = {
            "max_parallel": self.max_parallel,
            "retry": self.retry.to_dict(),
            "timeout": self.timeout,
            "backend": self.backend,
            "dependencies": {k: list(v) for k, v in self.dependencies.items()},
            "group_caps": dict(self.group_caps),
            "groups": {k: list(v) for k, v in self.groups.items()},
            "priorities": dict(self.priorities),
            "seed": self.seed,
            "rate_limits": self.rate_limits is not False,
        }
        if self.backend == "dask":
            config["scheduler"] = self.scheduler
        return config

    @classmethod
    def from_dict(cls, config: Mapping[str, Any]) -> RunOptions:
        """The options of a stored run's ``config`` (what :meth:`to_dict` wrote).

        Raises:
            ConfigError: the stored options are not usable.
        """
        return cls(
            max_parallel=int(config["max_parallel"]),
            retries=RetryPolicy.from_dict(config.get("retry") or {}),
            timeout=config.get("timeout"),
            dependencies=config.get("dependencies") or {},
            group_caps=config.get("group_caps") or {},
            groups=config.get("groups") or {},
            priorities=config.get("priorities") or {},
            seed=config.get("seed"),
            rate_limits=bool(config.get("rate_limits", True)),
            backend=str(config.get("backend", "thread")),  # type: ignore[arg-type]
            scheduler=config.get("scheduler"),
        )
