"""Helpers for testing code that uses subplan (and for subplan's own tests).

- :class:`FakeClock`: time that moves only when told to.
- :class:`ScriptedWork` and :class:`Step`: work whose attempts are scripted.
- :func:`simulate`: a run through the real dispatcher in virtual time.
"""

from ._clock import FakeClock as FakeClock
from ._scripted import ScriptedError as ScriptedError
from ._scripted import ScriptedWork as ScriptedWork
from ._scripted import Step as Step
from ._scripted import simulate as simulate

__all__ = ["FakeClock", "ScriptedError", "ScriptedWork", "Step", "simulate"]
