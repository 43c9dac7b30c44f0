"""Pausing Python's cyclic garbage collector while a plan is built.

Planning a large tree allocates hundreds of thousands of small objects (paths, runs,
nodes) and frees almost none of them until it is done, so each collection the
allocations trigger traverses an ever larger heap and finds nothing: measured on a
75,000-path list, 563 collections took 0.32-0.37 s of a 1.75 s plan and freed 495
objects. Reference counting still frees everything as usual while paused; only cycles
wait for the next collection after the pause.
"""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["gc_paused"]

_lock = threading.Lock()
_depth = 0
_resume = False


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic collector for the block (nested and concurrent uses share one
    pause; the collector is enabled again, if it was, when the last one ends)."""
    global _depth, _resume
    with _lock:
        if _depth == 0:
            _resume = gc.isenabled()
            gc.disable()
        _depth += 1
    try:
        yield
    finally:
        with _lock:
            _depth -= 1
            if _depth == 0 and _resume:
                gc.enable()
