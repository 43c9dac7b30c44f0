"""The pause of the cyclic collector while planning, and a plan's lack of garbage cycles."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

import subplan
from subplan._gc import gc_paused


@pytest.fixture
def collector() -> Iterator[None]:
    """Leave the collector as it was found, whatever a test does."""
    was = gc.isenabled()
    try:
        yield
    finally:
        (gc.enable if was else gc.disable)()


@pytest.mark.usefixtures("collector")
def test_the_collector_is_paused_inside_and_enabled_again_after() -> None:
    gc.enable()
    with gc_paused():
        assert not gc.isenabled()
    assert gc.isenabled()


@pytest.mark.usefixtures("collector")
def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    with gc_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()


@pytest.mark.usefixtures("collector")
def test_nested_and_failing_pauses_end_with_the_outermost() -> None:
    gc.enable()
    with gc_paused():
        with pytest.raises(RuntimeError), gc_paused():
            raise RuntimeError("inside")
        assert not gc.isenabled()  # the inner pause ended, the outer one holds
    assert gc.isenabled()


@pytest.mark.usefixtures("collector")
def test_pauses_on_two_threads_share_one() -> None:
    gc.enable()
    inside, release = threading.Event(), threading.Event()

    def hold() -> None:
        with gc_paused():
            inside.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    assert inside.wait(10)
    with gc_paused():
        pass
    assert not gc.isenabled()  # the other thread's pause still holds
    release.set()
    thread.join(10)
    assert gc.isenabled()


@pytest.mark.usefixtures("collector")
@pytest.mark.parametrize("cuts", ["full", "stable"])
def test_a_plan_leaves_no_cycles_behind(cuts: subplan.Cuts) -> None:
    # The tree built on the way links children and parents: it must be freed by
    # reference counting, since the collector is paused while it is built.
    files = [
        subplan.FileEntry(f"d{a}/s{b}/f{c}.py", 400 * (1 + c % 7))
        for a in range(8)
        for b in range(12)
        for c in range(30)
    ]
    gc.disable()
    gc.collect()
    plan = subplan.decompose(files, max_tokens=5_000, cuts=cuts)
    assert len(plan.leaves) > 100
    assert gc.collect() < 50
