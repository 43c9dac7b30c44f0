"""subplan: split a project into a hierarchy of subplans and run the leaves in parallel.

The public API is what this module re-exports; everything in ``subplan._*`` is private.
"""

from ._clock import Clock as Clock
from ._clock import SystemClock as SystemClock
from ._decompose import decompose as decompose
from ._decompose import decompose_levels as decompose_levels
from ._errors import ConfigError as ConfigError
from ._errors import DependencyCycleError as DependencyCycleError
from ._errors import InputError as InputError
from ._errors import PlanError as PlanError
from ._errors import SubplanError as SubplanError
from ._errors import UnknownSubplanError as UnknownSubplanError
from ._model import PLAN_SCHEMA as PLAN_SCHEMA
from ._model import FileEntry as FileEntry
from ._model import LeafReason as LeafReason
from ._model import Plan as Plan
from ._model import PlanConfig as PlanConfig
from ._model import Subplan as Subplan
from ._model import estimate_tokens as estimate_tokens
from ._model import subplan_id as subplan_id

__version__ = "0.1.0.dev0"

__all__ = [
    "PLAN_SCHEMA",
    "Clock",
    "ConfigError",
    "DependencyCycleError",
    "FileEntry",
    "InputError",
    "LeafReason",
    "Plan",
    "PlanConfig",
    "PlanError",
    "Subplan",
    "SubplanError",
    "SystemClock",
    "UnknownSubplanError",
    "decompose",
    "decompose_levels",
    "estimate_tokens",
    "subplan_id",
]
