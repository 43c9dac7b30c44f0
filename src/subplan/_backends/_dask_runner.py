"""The workers' side of the dask backend: runners, their mailboxes, and one attempt.

A *runner* is one long-running dask task holding one worker thread; the dispatcher
hands it attempts by RPC (``subplan_attempt``, ``subplan_cancel``, ``subplan_stop``,
served by the handlers registered on the worker) and the reply carries each attempt's
end. See :mod:`._dask` for why.
"""

from __future__ import annotations

import asyncio
import contextlib
import pickle
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from .._command._process import kill_process_groups, process_groups_of_run
from .._dispatch._results import AttemptContext, CancelFlag
from .._errors import one_line
from .._model import Subplan
from ._dask_pool import _dist


@dataclass(frozen=True, slots=True)
class _WorkerEnd:
    """What the worker reports of one attempt: its own clock's times and the outcome."""

    started: float
    ended: float
    value: object
    error: BaseException | None


def _portable(error: BaseException) -> BaseException:
    """``error`` if it pickles, else a RuntimeError carrying its one-line description."""
    try:
        pickle.loads(pickle.dumps(error))  # noqa: S301 - our own bytes, just made
    except Exception:  # anything that does not survive the trip
        return RuntimeError(one_line(error))
    return error


def _on_worker(
    target: Callable[..., Any],
    subplan: Subplan,
    run_id: str,
    attempt: int,
    run_dir: Path,
    timeout: float | None,
    cancel: CancelFlag | None = None,
) -> _WorkerEnd:
    """Run one attempt on a dask worker and time it there (module level, so it pickles).

    Monotonic time is per process, so the deadline is made here from the timeout; when
    it passes, ``ctx.cancelled`` becomes true (command work kills its group then).
    """
    cancel = CancelFlag() if cancel is None else cancel
    timer: threading.Timer | None = None
    deadline = None
    if timeout is not None:
        deadline = time.monotonic() + timeout
        timer = threading.Timer(timeout, cancel.set)
        timer.daemon = True
        timer.start()
    started = time.time()
    value: object = None
    error: BaseException | None = None
    try:
        ctx = AttemptContext(
            run_id=run_id,
            subplan_id=subplan.id,
            attempt=attempt,
            run_dir=run_dir,
            cancel=cancel,
            deadline=deadline,
        )
        value = target(subplan, ctx)
    except BaseException as exc:  # every ending is reported, none escapes
        error = _portable(exc)
    finally:
        ended = time.time()
        if timer is not None:
            timer.cancel()
    return _WorkerEnd(started, ended, value, error)


# -- on the workers: runners -------------------------------------------------------------
#
# A runner is one long-running dask task: it holds one worker thread (so dask's placement
# and each worker's thread count still decide where and how much runs) and runs the
# attempts the dispatcher hands it, one at a time, until it is told to stop, its task is
# released, or nobody used it for RUNNER_IDLE seconds. Attempts reach it as RPCs straight
# to its worker (``subplan_attempt``), and the reply carries the attempt's end: one round
# trip per attempt and no graph update, where a task per attempt costs a graph update, a
# completion report and a fetch of the result.

# A runner nobody hands an attempt for this long ends itself (an orchestrator that died).
RUNNER_IDLE: Final = 30.0
# How often an idle runner checks whether its task was released (its run ended or died).
_RUNNER_POLL: Final = 0.5


@dataclass(slots=True)
class _Handed:
    """An attempt handed to a runner: its bytes, and where to put the reply."""

    payload: bytes
    loop: asyncio.AbstractEventLoop
    reply: asyncio.Future[dict[str, Any]]
    token: int


class _Mailbox:
    """A runner's inbox on its worker, and the cancel flag of what it runs now."""

    __slots__ = ("cancelled", "current", "flag", "items")

    def __init__(self) -> None:
        self.items: queue.SimpleQueue[_Handed | None] = queue.SimpleQueue()
        self.current: int | None = None  # the token of the attempt it runs
        self.flag: CancelFlag | None = None
        self.cancelled: set[int] = set()  # tokens cancelled before they started


# Per worker process: the mailboxes of the runners it hosts, by runner id.
_MAILBOXES: dict[str, _Mailbox] = {}
_MAILBOX_LOCK = threading.Lock()
_GONE: Final = {"status": "gone"}


def _resolve(reply: asyncio.Future[dict[str, Any]], value: dict[str, Any]) -> None:
    if not reply.done():  # its caller may have gone away meanwhile
        reply.set_result(value)


async def _handle_attempt(runner: str, token: int, payload: bytes) -> dict[str, Any]:
    """Worker RPC ``subplan_attempt``: run ``payload`` on ``runner``; reply with its end.

    The reply is ``{"status": "gone"}`` when the runner has ended (the attempt never
    started: the dispatcher hands it to another runner).
    """
    loop = asyncio.get_running_loop()
    reply: asyncio.Future[dict[str, Any]] = loop.create_future()
    with _MAILBOX_LOCK:  # the runner empties and removes its box under this lock
        box = _MAILBOXES.get(runner)
        if box is None:
            return _GONE
        box.items.put(_Handed(payload, loop, reply, token))
    return await reply


async def _handle_cancel(runner: str, token: int) -> None:
    """Worker RPC ``subplan_cancel``: raise ``ctx.cancelled`` for attempt ``token``."""
    with _MAILBOX_LOCK:
        box = _MAILBOXES.get(runner)
        if box is None:
            return
        if box.current == token and box.flag is not None:
            box.flag.set()
        else:
            box.cancelled.add(token)


async def _handle_stop(runner: str) -> None:
    """Worker RPC ``subplan_stop``: the runner ends once it is idle."""
    with _MAILBOX_LOCK:
        box = _MAILBOXES.get(runner)
        if box is not None:
            box.items.put(None)


_HANDLERS: Final = {
    "subplan_attempt": _handle_attempt,
    "subplan_cancel": _handle_cancel,
    "subplan_stop": _handle_stop,
}


def _released(worker: Any, key: str) -> bool:
    """Whether the scheduler let go of task ``key`` (its run ended, or its client left)."""
    task = worker.state.tasks.get(key)
    return task is None or task.state in ("cancelled", "released", "forgotten")


def _watch_release(worker: Any, key: str, box: _Mailbox, ended: threading.Event) -> None:
    """While a runner lives: once its task is released (its orchestrator died or gave
    up), cancel the attempt it runs, so command work kills its process group."""
    while not ended.wait(_RUNNER_POLL):
        if _released(worker, key):
            with _MAILBOX_LOCK:
                if box.flag is not None:
                    box.flag.set()
            return


def _serve(box: _Mailbox, handed: _Handed, cache: dict[bytes, Any]) -> bytes:
    """Run one handed attempt; the pickled :class:`_WorkerEnd` to reply with."""
    flag = CancelFlag()
    with _MAILBOX_LOCK:
        box.current, box.flag = handed.token, flag
        if handed.token in box.cancelled:
            box.cancelled.discard(handed.token)
            flag.set()
    try:
        try:
            blob, subplan, run_id, attempt, run_dir, timeout = pickle.loads(handed.payload)  # noqa: S301 - from our own dispatcher
            target = cache.get(blob)
            if target is None:
                target = pickle.loads(blob)  # noqa: S301 - from our own dispatcher
                cache.clear()  # the work of one run: keep only the latest
                cache[blob] = target
        except Exception as exc:  # the work does not load here (missing module, say)
            now = time.time()
            end = _WorkerEnd(now, now, None, _portable(exc))
        else:
            end = _on_worker(target, subplan, run_id, attempt, run_dir, timeout, flag)
        try:
            return pickle.dumps(end)
        except Exception as exc:  # the value does not pickle
            text = f"the attempt's result cannot be sent back: {one_line(exc)}"
            return pickle.dumps(_WorkerEnd(end.started, end.ended, None, RuntimeError(text)))
    finally:
        with _MAILBOX_LOCK:
            box.current, box.flag = None, None


def _runner(runner: str, key: str, topic: str) -> str:
    """The runner task (module level, so it pickles): serve attempts until told to stop.

    It registers the RPC handlers on its worker, opens its mailbox, announces itself on
    ``topic`` (the dispatcher then knows its worker's address), and serves.

    Returns:
        Why it ended: ``stopped``, ``released`` or ``idle``.
    """
    worker = _dist.get_worker()
    for op, handler in _HANDLERS.items():
        worker.handlers.setdefault(op, handler)
    box = _Mailbox()
    with _MAILBOX_LOCK:
        _MAILBOXES[runner] = box
    cache: dict[bytes, Any] = {}
    why = "stopped"
    ended = threading.Event()
    threading.Thread(
        target=_watch_release,
        args=(worker, key, box, ended),
        name="subplan-runner-watch",
        daemon=True,
    ).start()
    try:
        worker.log_event(topic, {"runner": runner, "worker": worker.address})
        idle_since = time.monotonic()
        while True:
            try:
                handed = box.items.get(timeout=_RUNNER_POLL)
            except queue.Empty:
                if _released(worker, key):
                    why = "released"
                elif time.monotonic() - idle_since > RUNNER_IDLE:
                    why = "idle"
                else:
                    continue
                return why
            if handed is None:
                return why
            end = _serve(box, handed, cache)
            handed.loop.call_soon_threadsafe(_resolve, handed.reply, {"status": "OK", "end": end})
            idle_since = time.monotonic()
    finally:
        ended.set()
        with _MAILBOX_LOCK:
            _MAILBOXES.pop(runner, None)
        # Anything handed after the last look is answered "gone": it never started.
        with contextlib.suppress(queue.Empty):
            while True:
                late = box.items.get_nowait()
                if late is not None:
                    late.loop.call_soon_threadsafe(_resolve, late.reply, _GONE)


def _kill_run_commands(
    run_id: str, run_dir: str, attempt: tuple[str, int] | None = None, grace: float = 1.0
) -> list[int]:
    """Kill the commands of a run (or of one attempt of it) on this host; the survivors.

    Module level: ``Client.run`` sends it to every worker of a cluster given by address.
    Commands are found by their environment (see :func:`process_groups_of_run`).
    """
    groups = process_groups_of_run(run_id, run_dir=run_dir, attempt=attempt)
    return sorted(kill_process_groups(groups, grace=grace))
