"""subplan: split a project into a hierarchy of subplans and run the leaves in parallel.

The public API is what this module re-exports; everything in ``subplan._*`` is private.

Decompose::

    plan = subplan.decompose(paths, max_files=40)      # or plan_project("repo/")
    inventory = subplan.scan("repo/")                   # list files like the CLI does

Run, at most ``max_parallel`` at once across the whole tree::

    report = subplan.run(plan, work, max_parallel=10, retries=2)
    report = await subplan.arun(plan, async_work, max_parallel=50)

Bring the work of a run with workspaces back, one commit per subplan on a branch::

    result = subplan.integrate(report.run_id, verify=["pytest", "-q"])
"""

import importlib as _importlib
from typing import TYPE_CHECKING as _TYPE_CHECKING

if _TYPE_CHECKING:
    from ._clock import Clock as Clock
    from ._clock import SystemClock as SystemClock
    from ._command._in_workspace import WorkspacePolicy as WorkspacePolicy
    from ._command._live_output import OutputFollower as OutputFollower
    from ._command._live_output import OutputLine as OutputLine
    from ._command._work import CommandWork as CommandWork
    from ._decompose import decompose as decompose
    from ._decompose import decompose_levels as decompose_levels
    from ._dispatch._deps import dependencies_from_imports as dependencies_from_imports
    from ._dispatch._halt import Halt as Halt
    from ._dispatch._results import EVENT_SCHEMA as EVENT_SCHEMA
    from ._dispatch._results import REPORT_SCHEMA as REPORT_SCHEMA
    from ._dispatch._results import AttemptContext as AttemptContext
    from ._dispatch._results import AttemptRecord as AttemptRecord
    from ._dispatch._results import Event as Event
    from ._dispatch._results import GroupSummary as GroupSummary
    from ._dispatch._results import Pause as Pause
    from ._dispatch._results import RunReport as RunReport
    from ._dispatch._results import Session as Session
    from ._dispatch._results import SubplanOutcome as SubplanOutcome
    from ._dispatch._results import WorkResult as WorkResult
    from ._dispatch._retry import RetryPolicy as RetryPolicy
    from ._errors import ArgumentListTooLongError as ArgumentListTooLongError
    from ._errors import CommandError as CommandError
    from ._errors import CommandFailedError as CommandFailedError
    from ._errors import CommandNotFoundError as CommandNotFoundError
    from ._errors import CommandTimeoutError as CommandTimeoutError
    from ._errors import ConfigError as ConfigError
    from ._errors import DependencyCycleError as DependencyCycleError
    from ._errors import DirtyBaseError as DirtyBaseError
    from ._errors import InputError as InputError
    from ._errors import LimiterTimeoutError as LimiterTimeoutError
    from ._errors import NetworkFilesystemError as NetworkFilesystemError
    from ._errors import NotAGitRepositoryError as NotAGitRepositoryError
    from ._errors import PlanError as PlanError
    from ._errors import ProcessGroupAliveError as ProcessGroupAliveError
    from ._errors import RunExistsError as RunExistsError
    from ._errors import RunLockedError as RunLockedError
    from ._errors import RunLockLostError as RunLockLostError
    from ._errors import SlotNotHeldError as SlotNotHeldError
    from ._errors import StoreConnectError as StoreConnectError
    from ._errors import StoreCorruptError as StoreCorruptError
    from ._errors import StoreError as StoreError
    from ._errors import StoreVersionError as StoreVersionError
    from ._errors import SubplanError as SubplanError
    from ._errors import TemplateError as TemplateError
    from ._errors import UnknownRunError as UnknownRunError
    from ._errors import UnknownSubplanError as UnknownSubplanError
    from ._errors import UsageError as UsageError
    from ._errors import WorkerCrashedError as WorkerCrashedError
    from ._errors import WorkspaceError as WorkspaceError
    from ._errors import WorkspaceLeasedError as WorkspaceLeasedError
    from ._integrate import IntegratedSubplan as IntegratedSubplan
    from ._integrate import IntegrationConflict as IntegrationConflict
    from ._integrate import IntegrationResult as IntegrationResult
    from ._integrate import SkippedSubplan as SkippedSubplan
    from ._integrate import VerifyFailure as VerifyFailure
    from ._integrate import integrate as integrate
    from ._inventory import Inventory as Inventory
    from ._inventory import Skipped as Skipped
    from ._inventory import from_paths as from_paths
    from ._inventory import import_graph as import_graph
    from ._inventory import read_path_list as read_path_list
    from ._inventory import scan as scan
    from ._limit._futures import LimitedExecutor as LimitedExecutor
    from ._limit._limiter import GroupStatistics as GroupStatistics
    from ._limit._limiter import Limiter as Limiter
    from ._limit._limiter import LimiterStatistics as LimiterStatistics
    from ._limit._limiter import Slot as Slot
    from ._limit._shared import SharedLimiter as SharedLimiter
    from ._limit._tracker import ConcurrencyTracker as ConcurrencyTracker
    from ._limit._tracker import peak_from_intervals as peak_from_intervals
    from ._model import PLAN_SCHEMA as PLAN_SCHEMA
    from ._model import Cuts as Cuts
    from ._model import FileEntry as FileEntry
    from ._model import LeafReason as LeafReason
    from ._model import Plan as Plan
    from ._model import PlanConfig as PlanConfig
    from ._model import PlanStatistics as PlanStatistics
    from ._model import Subplan as Subplan
    from ._model import estimate_tokens as estimate_tokens
    from ._model import subplan_id as subplan_id
    from ._options import RunOptions as RunOptions
    from ._project import plan_project as plan_project
    from ._ratelimit._detector import RateLimitDetector as RateLimitDetector
    from ._ratelimit._detector import RateLimited as RateLimited
    from ._ratelimit._detector import RateLimitInfo as RateLimitInfo
    from ._run import arun as arun
    from ._run import resume as resume
    from ._run import run as run
    from ._store._base import AttemptRow as AttemptRow
    from ._store._base import RunInfo as RunInfo
    from ._store._base import RunRecord as RunRecord
    from ._store._base import SessionRow as SessionRow
    from ._store._base import Store as Store
    from ._store._open import open_store as open_store

# What each public name is, imported on first use (PEP 562): `subplan plan` does not pay
# for the runner, and `import subplan` stays cheap. `from subplan import *` and `dir()`
# see every name.
_EXPORTS: dict[str, tuple[str, str]] = {
    "Clock": ("._clock", "Clock"),
    "SystemClock": ("._clock", "SystemClock"),
    "WorkspacePolicy": ("._command._in_workspace", "WorkspacePolicy"),
    "OutputFollower": ("._command._live_output", "OutputFollower"),
    "OutputLine": ("._command._live_output", "OutputLine"),
    "CommandWork": ("._command._work", "CommandWork"),
    "decompose": ("._decompose", "decompose"),
    "decompose_levels": ("._decompose", "decompose_levels"),
    "dependencies_from_imports": ("._dispatch._deps", "dependencies_from_imports"),
    "Halt": ("._dispatch._halt", "Halt"),
    "EVENT_SCHEMA": ("._dispatch._results", "EVENT_SCHEMA"),
    "REPORT_SCHEMA": ("._dispatch._results", "REPORT_SCHEMA"),
    "AttemptContext": ("._dispatch._results", "AttemptContext"),
    "AttemptRecord": ("._dispatch._results", "AttemptRecord"),
    "Event": ("._dispatch._results", "Event"),
    "GroupSummary": ("._dispatch._results", "GroupSummary"),
    "Pause": ("._dispatch._results", "Pause"),
    "RunReport": ("._dispatch._results", "RunReport"),
    "Session": ("._dispatch._results", "Session"),
    "SubplanOutcome": ("._dispatch._results", "SubplanOutcome"),
    "WorkResult": ("._dispatch._results", "WorkResult"),
    "RetryPolicy": ("._dispatch._retry", "RetryPolicy"),
    "ArgumentListTooLongError": ("._errors", "ArgumentListTooLongError"),
    "CommandError": ("._errors", "CommandError"),
    "CommandFailedError": ("._errors", "CommandFailedError"),
    "CommandNotFoundError": ("._errors", "CommandNotFoundError"),
    "CommandTimeoutError": ("._errors", "CommandTimeoutError"),
    "ConfigError": ("._errors", "ConfigError"),
    "DependencyCycleError": ("._errors", "DependencyCycleError"),
    "DirtyBaseError": ("._errors", "DirtyBaseError"),
    "InputError": ("._errors", "InputError"),
    "LimiterTimeoutError": ("._errors", "LimiterTimeoutError"),
    "NetworkFilesystemError": ("._errors", "NetworkFilesystemError"),
    "NotAGitRepositoryError": ("._errors", "NotAGitRepositoryError"),
    "PlanError": ("._errors", "PlanError"),
    "ProcessGroupAliveError": ("._errors", "ProcessGroupAliveError"),
    "RunExistsError": ("._errors", "RunExistsError"),
    "RunLockedError": ("._errors", "RunLockedError"),
    "RunLockLostError": ("._errors", "RunLockLostError"),
    "SlotNotHeldError": ("._errors", "SlotNotHeldError"),
    "StoreConnectError": ("._errors", "StoreConnectError"),
    "StoreCorruptError": ("._errors", "StoreCorruptError"),
    "StoreError": ("._errors", "StoreError"),
    "StoreVersionError": ("._errors", "StoreVersionError"),
    "SubplanError": ("._errors", "SubplanError"),
    "TemplateError": ("._errors", "TemplateError"),
    "UnknownRunError": ("._errors", "UnknownRunError"),
    "UnknownSubplanError": ("._errors", "UnknownSubplanError"),
    "UsageError": ("._errors", "UsageError"),
    "WorkerCrashedError": ("._errors", "WorkerCrashedError"),
    "WorkspaceError": ("._errors", "WorkspaceError"),
    "WorkspaceLeasedError": ("._errors", "WorkspaceLeasedError"),
    "IntegratedSubplan": ("._integrate", "IntegratedSubplan"),
    "IntegrationConflict": ("._integrate", "IntegrationConflict"),
    "IntegrationResult": ("._integrate", "IntegrationResult"),
    "SkippedSubplan": ("._integrate", "SkippedSubplan"),
    "VerifyFailure": ("._integrate", "VerifyFailure"),
    "integrate": ("._integrate", "integrate"),
    "Inventory": ("._inventory", "Inventory"),
    "Skipped": ("._inventory", "Skipped"),
    "from_paths": ("._inventory", "from_paths"),
    "import_graph": ("._inventory", "import_graph"),
    "read_path_list": ("._inventory", "read_path_list"),
    "scan": ("._inventory", "scan"),
    "LimitedExecutor": ("._limit._futures", "LimitedExecutor"),
    "GroupStatistics": ("._limit._limiter", "GroupStatistics"),
    "Limiter": ("._limit._limiter", "Limiter"),
    "LimiterStatistics": ("._limit._limiter", "LimiterStatistics"),
    "Slot": ("._limit._limiter", "Slot"),
    "SharedLimiter": ("._limit._shared", "SharedLimiter"),
    "ConcurrencyTracker": ("._limit._tracker", "ConcurrencyTracker"),
    "peak_from_intervals": ("._limit._tracker", "peak_from_intervals"),
    "PLAN_SCHEMA": ("._model", "PLAN_SCHEMA"),
    "Cuts": ("._model", "Cuts"),
    "FileEntry": ("._model", "FileEntry"),
    "LeafReason": ("._model", "LeafReason"),
    "Plan": ("._model", "Plan"),
    "PlanConfig": ("._model", "PlanConfig"),
    "PlanStatistics": ("._model", "PlanStatistics"),
    "Subplan": ("._model", "Subplan"),
    "estimate_tokens": ("._model", "estimate_tokens"),
    "subplan_id": ("._model", "subplan_id"),
    "RunOptions": ("._options", "RunOptions"),
    "plan_project": ("._project", "plan_project"),
    "RateLimitDetector": ("._ratelimit._detector", "RateLimitDetector"),
    "RateLimited": ("._ratelimit._detector", "RateLimited"),
    "RateLimitInfo": ("._ratelimit._detector", "RateLimitInfo"),
    "arun": ("._run", "arun"),
    "resume": ("._run", "resume"),
    "run": ("._run", "run"),
    "AttemptRow": ("._store._base", "AttemptRow"),
    "RunInfo": ("._store._base", "RunInfo"),
    "RunRecord": ("._store._base", "RunRecord"),
    "SessionRow": ("._store._base", "SessionRow"),
    "Store": ("._store._base", "Store"),
    "open_store": ("._store._open", "open_store"),
}

if _TYPE_CHECKING:
    from ._backends._dask_pool import ClusterPool as ClusterPool

__version__ = "0.1.0.dev0"


def __getattr__(name: str) -> object:
    # ClusterPool needs the optional 'dask' extra: import it (and dask) only when asked.
    if name == "ClusterPool":
        from ._backends._dask_pool import ClusterPool

        return ClusterPool
    try:
        module, attr = _EXPORTS[name]
    except KeyError:
        raise AttributeError(f"module 'subplan' has no attribute {name!r}") from None
    value = getattr(_importlib.import_module(module, __name__), attr)
    globals()[name] = value  # the next lookup is a plain global
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, "ClusterPool"})


__all__ = [
    "EVENT_SCHEMA",
    "PLAN_SCHEMA",
    "REPORT_SCHEMA",
    "ArgumentListTooLongError",
    "AttemptContext",
    "AttemptRecord",
    "AttemptRow",
    "Clock",
    "ClusterPool",
    "CommandError",
    "CommandFailedError",
    "CommandNotFoundError",
    "CommandTimeoutError",
    "CommandWork",
    "ConcurrencyTracker",
    "ConfigError",
    "Cuts",
    "DependencyCycleError",
    "DirtyBaseError",
    "Event",
    "FileEntry",
    "GroupStatistics",
    "GroupSummary",
    "Halt",
    "InputError",
    "IntegratedSubplan",
    "IntegrationConflict",
    "IntegrationResult",
    "Inventory",
    "LeafReason",
    "LimitedExecutor",
    "Limiter",
    "LimiterStatistics",
    "LimiterTimeoutError",
    "NetworkFilesystemError",
    "NotAGitRepositoryError",
    "OutputFollower",
    "OutputLine",
    "Pause",
    "Plan",
    "PlanConfig",
    "PlanError",
    "PlanStatistics",
    "ProcessGroupAliveError",
    "RateLimitDetector",
    "RateLimitInfo",
    "RateLimited",
    "RetryPolicy",
    "RunExistsError",
    "RunInfo",
    "RunLockLostError",
    "RunLockedError",
    "RunOptions",
    "RunRecord",
    "RunReport",
    "Session",
    "SessionRow",
    "SharedLimiter",
    "Skipped",
    "SkippedSubplan",
    "Slot",
    "SlotNotHeldError",
    "Store",
    "StoreConnectError",
    "StoreCorruptError",
    "StoreError",
    "StoreVersionError",
    "Subplan",
    "SubplanError",
    "SubplanOutcome",
    "SystemClock",
    "TemplateError",
    "UnknownRunError",
    "UnknownSubplanError",
    "UsageError",
    "VerifyFailure",
    "WorkResult",
    "WorkerCrashedError",
    "WorkspaceError",
    "WorkspaceLeasedError",
    "WorkspacePolicy",
    "arun",
    "decompose",
    "decompose_levels",
    "dependencies_from_imports",
    "estimate_tokens",
    "from_paths",
    "import_graph",
    "integrate",
    "open_store",
    "peak_from_intervals",
    "plan_project",
    "read_path_list",
    "resume",
    "run",
    "scan",
    "subplan_id",
]
