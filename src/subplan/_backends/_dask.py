"""The dask backend: the same dispatcher, attempts on the workers of a ``distributed`` cluster.

The dispatcher is the one of the thread and process backends: one lock guards the
:class:`~subplan._dispatch._scheduler.Scheduler`, a watcher thread records each end and hands
out what it frees, and the main thread serves timers, deadlines, cancellation and
signals. Dask only runs what the dispatcher hands it; the run's own limiter is the hard
bound, so nothing here relies on dask's scheduling for ``max_parallel``.

Decisions (each one is a trade-off; the README says the same in users' words):

* **Runners, not a task per attempt.** An attempt runs in a *runner*: one long-running
  dask task that holds one worker thread and serves attempts one at a time. The
  dispatcher starts a runner when an attempt has none free, hands the attempt to it by
  an RPC straight to its worker (``subplan_attempt``), and the reply carries the
  attempt's end: one round trip per attempt. A task per attempt costs a graph update on
  the scheduler, a completion report and a fetch of the result: about 10 times as much
  (the README has the figures). Dask still places the runners and each worker's thread
  count still bounds what runs there, so a shared cluster is shared fairly. A runner
  idle for ``_LINGER`` seconds is stopped (its thread goes back to the cluster), and
  every runner ends with its run: stopped when idle, or as soon as its task is released
  (the run's client closed, or died), or after ``RUNNER_IDLE`` seconds without work.
* **Exactly once per attempt.** An attempt travels in an RPC, not in a task, so dask
  never runs it again by itself: a runner task that dask re-runs after its worker died
  (``allowed-failures``) is told to stop, and an attempt handed to a runner that had
  already ended (the reply says "gone") or whose worker could not be reached never
  started and goes to another runner, uncharged. A worker that dies while it runs an
  attempt fails that attempt's RPC: the attempt is ``crashed`` (charged, counted toward
  ``RetryPolicy.max_crashes``) and retried under the policy as a *new* attempt.
* **Timeouts and cancellation.** Python code in a worker thread cannot be stopped, so
  the deadline travels with the attempt (what is left of it when a runner takes it) and
  the worker sets ``ctx.cancelled`` when it passes; a cancelled run sends its runners
  ``subplan_cancel``, which does the same. Command work kills its process group then and
  returns. The attempt keeps its slot until the worker really returns, so the peak stays
  honest. On a cluster the run started itself (same host, our processes) an attempt
  still running ``KILL_GRACE`` seconds after its deadline, or after the run was
  cancelled, has its worker process killed, and its commands with it; the nanny starts a
  fresh worker. For command work that moment comes no earlier than the command's own
  grace (``kill_grace``, ``--kill-after``) plus a second, so a worker is never killed
  between its command's SIGTERM and SIGKILL (that left the command orphaned). On a
  cluster given by address nothing is killed: the run waits for such attempts as the
  thread backend does. A second signal stops waiting, after killing every command of
  the run: found by their environment on this host (a cluster of our own), else by each
  worker on its host (``Client.run``, best effort).
* **What the thread and process backends do and this one cannot.** An attempt's start
  row is committed before the attempt is sent to its runner, so its number is never
  reused; but its command's process group is not held back until it is committed (the
  orchestrator is a client of the cluster, not a server its workers can answer to), and
  a ``--pool`` slot's descriptor cannot reach a worker on another host: a
  :class:`ClusterPool` lease is the cluster's way. A resume on the host of a cluster of
  its own still finds the run's stray commands by their environment and kills them
  before anything starts.
* **A scheduler that goes away.** Attempts already running reply straight from their
  workers, so they finish and are recorded. Nothing new can start: after
  ``SCHEDULER_GRACE`` seconds without the scheduler the run is cancelled with a warning
  that says so, and stays resumable (``resume(..., scheduler=...)`` may name another).
* **Worker death.** A worker's death breaks only the attempts its runners were running
  (with one thread per worker, the cluster a run starts itself, that is one).
* **Clock skew.** Each attempt's start and end are read with ``time.time()`` on the
  worker that ran it, so a report's intervals and its peak mix the clocks of every host
  of the cluster. On one host (a ``LocalCluster``) they are one clock; across hosts the
  peak computed from the intervals is only as good as the hosts' clock sync (NTP: a few
  ms). The bound itself never depends on those clocks.
* **A cluster-wide pool** (:class:`ClusterPool`) takes one lease of a
  ``distributed.Semaphore`` per attempt, layered on the run's own limiter. Leases are a
  soft bound (the scheduler drops a lease that is not renewed in
  ``distributed.scheduler.locks.lease-timeout``); the run's ``max_parallel`` stays the
  hard one. A lease that cannot be acquired, or a scheduler that cannot be reached,
  blocks new starts ("no slot now", retried on the next tick); it never stops an
  attempt that already runs.
* **Reaching the workers.** The RPCs go straight to the workers, as dask's own
  ``gather`` does, so the orchestrator must be able to reach them.
"""

from __future__ import annotations

import asyncio
import collections
import concurrent.futures
import contextlib
import functools
import itertools
import os
import pickle
import queue
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

from .._command._work import kill_grace_of
from .._dispatch._results import RunReport
from .._dispatch._scheduler import AttemptEnd
from .._errors import StoreError, WorkerCrashedError, one_line
from ._dask_pool import (
    SCHEDULER_GRACE,
    Client,
    ClusterPool,
    DaskSession,
    Future,
    _core_rpc,
    _dumps_by_value,
    connect,
    open_local_cluster,
)
from ._dask_runner import _GONE, _kill_run_commands, _runner, _WorkerEnd
from ._loop import Dispatch, Live

if TYPE_CHECKING:
    from ._setup import Setup

__all__ = [
    "KILL_GRACE",
    "SCHEDULER_GRACE",
    "ClusterPool",
    "DaskSession",
    "connect",
    "open_local_cluster",
    "run_dask",
]


# A worker of a cluster we started is killed this long after its attempt's deadline, if
# the attempt has not returned by then (command work returns at the deadline by itself).
KILL_GRACE: Final = 2.0
# How long a second Ctrl-C waits for the workers of a cluster given by address to kill
# the run's commands on their hosts.
_REMOTE_KILL: Final = 10.0


def run_dask(setup: Setup, stop: threading.Event | None, handle_signals: bool) -> RunReport:
    """The dask backend (see :func:`subplan.run` and the module docstring)."""
    session = setup.cluster
    assert session is not None  # connected by Setup, before the run was recorded
    dispatch = Dispatch(setup, stop)
    backend = _DaskBackend(
        setup, dispatch, session.client, owned=session.owned, grace=session.grace
    )
    backend.open()
    try:
        dispatch.run(backend, handle_signals=handle_signals)
    finally:
        backend.close()
    return setup.report()


# -- the dispatcher's side ---------------------------------------------------------------

# An idle runner is stopped after this long without work (its worker thread is freed
# for other runs on the cluster); the next attempt starts a new one.
_LINGER: Final = 1.0
# An attempt no runner took (each had ended, or its worker could not be reached) this
# many times ends as a crash.
_MAX_UNSENT: Final = 3


@dataclass(slots=True, eq=False)
class _Runner:
    """The dispatcher's view of one runner."""

    id: str
    future: Future
    address: str | None = None  # its worker, once it announced itself
    key: int | None = None  # the attempt it runs
    call: concurrent.futures.Future[Any] | None = None  # the RPC of that attempt
    idle_since: float = 0.0
    dead: bool = False


class _NotSent(Exception):
    """The runner's worker could not be reached: the attempt never left this host."""


class _DaskBackend:
    """One run's attempts on one client: the runners, their RPCs, the watcher thread.

    The dispatcher's lock guards everything here too: the watcher takes it for each
    batch of replies, and the loop calls the backend's methods under it.
    """

    def __init__(
        self, setup: Setup, dispatch: Dispatch, client: Client, *, owned: bool, grace: float
    ) -> None:
        self.setup = setup
        self.dispatch = dispatch
        self.client = client
        self.owned = owned
        self.loop: asyncio.AbstractEventLoop = client.loop.asyncio_loop
        self.waiting: collections.deque[int] = collections.deque()  # keys with no runner
        self.runners: dict[str, _Runner] = {}
        self.idle: list[_Runner] = []
        self.starting = 0  # runners submitted that have not announced themselves yet
        self.events: queue.SimpleQueue[tuple[Any, ...] | None] = queue.SimpleQueue()
        self.killing: set[str] = set()  # worker addresses being killed
        self.cancelled_at: float | None = None
        # A worker of our own cluster is killed only after its command's own grace:
        # killing it earlier would orphan a command between its SIGTERM and SIGKILL.
        commands = hasattr(getattr(setup.work, "work", setup.work), "kill_grace")
        self.kill_grace: float = (
            max(KILL_GRACE, kill_grace_of(setup.work) + 1.0) if commands else KILL_GRACE
        )
        self.lost_since: float | None = None
        self.numbers = itertools.count(1)
        self.unsent: dict[int, int] = {}  # attempt key -> times no runner took it
        self.blobs: dict[int, tuple[object, bytes]] = {}  # id(target) -> (target, pickle)
        # Names are unique per run: a runner or topic of an earlier orchestrator of this
        # run (still known to the scheduler) must never be mistaken for ours.
        self.grace = grace
        self.prefix = f"subplan-{secrets.token_hex(4)}"
        self.topic = f"{self.prefix}-runners"
        self.watcher: threading.Thread | None = None

    # -- talking to workers (coroutines on the client's event loop) ----------------------

    async def _rpc(self, address: str, op: str, **message: Any) -> Any:
        journal = None if self.setup.durable is None else self.setup.durable.journal
        if op == "subplan_attempt" and journal is not None:
            # The attempt's start row is committed before the attempt leaves this host,
            # so whatever its worker runs, a resume never reuses its number.
            try:
                await asyncio.get_running_loop().run_in_executor(None, journal.flush)
            except StoreError as exc:
                raise _NotSent(f"not started: {one_line(exc)}") from None
        try:
            comm = await self.client.rpc.connect(address)
        except OSError as exc:
            raise _NotSent(one_line(exc)) from None
        try:
            return await _core_rpc.send_recv(comm=comm, op=op, **message)
        finally:
            self.client.rpc.reuse(address, comm)

    def call(self, address: str, op: str, **message: Any) -> concurrent.futures.Future[Any]:
        """Send ``op`` to the worker at ``address`` from any thread; its future reply."""
        return asyncio.run_coroutine_threadsafe(self._rpc(address, op, **message), self.loop)

    def replied(self, runner: _Runner, key: int, call: concurrent.futures.Future[Any]) -> None:
        """A reply (or the failure of its RPC) is in: the watcher takes it from here."""
        self.events.put(("end", runner, key, call))

    def on_ready(self, event: tuple[float, dict[str, str]]) -> None:
        """The topic's handler (on the client's loop): a runner announced itself."""
        message = event[1]
        self.events.put(("ready", message["runner"], message["worker"]))

    # -- dispatch (under the lock) -------------------------------------------------------

    def start(self, key: int, item: Live) -> None:
        self.setup.tracker.enter()  # in flight on the cluster, from hand-off to end
        self.waiting.append(key)
        self.assign_locked()

    def assign_locked(self) -> None:
        """Hand waiting attempts to idle runners; start runners for the rest.

        Nothing new starts while the client has lost the scheduler: the runners could go
        on (they are reached directly), but their workers may shut down meanwhile, and no
        runner can be started. The main loop tries again on every tick.
        """
        if self.client.status != "running":
            return
        while self.waiting and self.idle:
            runner = self.idle.pop()  # the most recently used: its worker is warm
            self.send_locked(runner, self.waiting.popleft())
        for _ in range(len(self.waiting) - self.starting):
            self.start_runner_locked()

    def start_runner_locked(self) -> None:
        number = next(self.numbers)
        runner_id = f"{self.prefix}-runner-{number}"
        future = self.client.submit(
            _runner, runner_id, runner_id, self.topic, key=runner_id, pure=False
        )
        self.runners[runner_id] = _Runner(runner_id, future)
        self.starting += 1
        future.add_done_callback(lambda f, r=runner_id: self.events.put(("runner_done", r)))

    def payload(self, item: Live) -> bytes:
        setup = self.setup
        launch = item.launch
        target = setup.target(launch)
        cached = self.blobs.get(id(target))
        if cached is None or cached[0] is not target:
            cached = (target, _dumps_by_value(target))
            self.blobs[id(target)] = cached
        timeout = None
        if launch.deadline is not None:  # what is left of it: the worker starts its clock
            timeout = max(0.0, launch.deadline - setup.clock.monotonic())
        return pickle.dumps(
            (cached[1], launch.subplan, setup.run_id, launch.attempt, setup.run_dir, timeout)
        )

    def send_locked(self, runner: _Runner, key: int) -> None:
        item = self.dispatch.live[key]
        assert runner.address is not None
        runner.key = key
        call = self.call(
            runner.address,
            "subplan_attempt",
            runner=runner.id,
            token=key,
            payload=self.payload(item),
        )
        runner.call = call
        call.add_done_callback(functools.partial(self.replied, runner, key))
        if item.cancel.is_set():  # cancelled while it waited for a runner
            self.cancel_remote_locked(runner, key)

    def cancel_remote_locked(self, runner: _Runner, key: int) -> None:
        if runner.address is not None and not runner.dead:
            self.call(runner.address, "subplan_cancel", runner=runner.id, token=key)

    def retire_locked(self, runner: _Runner) -> None:
        """Stop using ``runner``: it ends when idle (told so, and its task released)."""
        if runner.dead:
            return
        runner.dead = True
        self.runners.pop(runner.id, None)
        if runner.address is None:
            self.starting -= 1
        elif runner.key is None:
            self.call(runner.address, "subplan_stop", runner=runner.id)
        with contextlib.suppress(ValueError):
            self.idle.remove(runner)
        runner.future.release()

    def to_end(self, item: Live, got: object) -> AttemptEnd:
        """The attempt's end from its runner's reply, or from what broke it."""
        setup = self.setup
        if isinstance(got, _WorkerEnd):
            return setup.end(item, got.started, got.ended, got.value, got.error)
        now = setup.clock.time()
        started = item.launch.dispatched
        if item.timed_out:
            return AttemptEnd(
                status="timed_out",
                started=started,
                ended=now,
                error=f"timed out after {setup.timeout}s",
            )
        if item.cancel.is_set() or setup.scheduler.cancelled:
            return setup.cancelled_end(started, now)
        detail = one_line(got) if isinstance(got, BaseException) else str(got)
        text = f"the dask worker died: {detail}"
        return AttemptEnd(
            status="crashed",
            started=started,
            ended=now,
            error=text,
            exception=WorkerCrashedError(text),
        )

    def finish_locked(self, key: int, got: object) -> None:
        """Attempt ``key`` ended (``got``: its runner's end, or what broke it)."""
        if key in self.dispatch.live:
            self.dispatch.finish_locked(key, functools.partial(self._ended, key, got))

    def _ended(self, key: int, got: object, item: Live) -> AttemptEnd:
        self.unsent.pop(key, None)
        with contextlib.suppress(ValueError):
            self.waiting.remove(key)
        self.setup.tracker.exit()
        return self.to_end(item, got)

    # -- the watcher thread --------------------------------------------------------------

    def on_reply(self, runner: _Runner, key: int, call: concurrent.futures.Future[Any]) -> None:
        try:
            reply = call.result()
        except BaseException as exc:  # the worker died, or could not be reached
            reply = exc
        if runner.key == key:
            runner.key, runner.call = None, None
        if isinstance(reply, dict) and reply.get("status") == "OK":
            try:
                got: object = pickle.loads(reply["end"])  # noqa: S301 - our runner's bytes
            except Exception as exc:  # its value's class does not load here
                got = _WorkerEnd(0.0, 0.0, None, RuntimeError(one_line(exc)))
            if isinstance(got, _WorkerEnd) and not got.started:
                now = self.setup.clock.time()
                got = _WorkerEnd(now, now, None, got.error)
            self.finish_locked(key, got)
            if not runner.dead:
                runner.idle_since = self.setup.clock.monotonic()
                self.idle.append(runner)
            return
        self.retire_locked(runner)
        if key in self.dispatch.live and (reply == _GONE or isinstance(reply, _NotSent)):
            # It never started: another runner takes it, up to a few times.
            self.unsent[key] = self.unsent.get(key, 0) + 1
            if self.unsent[key] <= _MAX_UNSENT:
                self.waiting.appendleft(key)
                return
            reply = RuntimeError(f"no runner took it ({self.unsent[key]} tries): {reply}")
        self.finish_locked(key, reply)

    def on_runner_done(self, runner_id: str) -> None:
        runner = self.runners.get(runner_id)
        if runner is None:
            return  # retired already
        key, call = runner.key, runner.call
        self.retire_locked(runner)
        reply_out = key is not None and call is not None and not call.done()
        # Dask says the worker died (KilledWorker) while the reply is still out: from a
        # host that vanished it may never come, so the attempt ends here. Otherwise dask
        # only forgot the task (a scheduler that restarted, say): the worker may still
        # finish the attempt and reply; its reply, or the comm's failure, ends it.
        if key is not None and reply_out and runner.future.status == "error":
            self.finish_locked(key, RuntimeError("dask lost the worker running it"))

    def on_announced(self, runner_id: str, address: str) -> None:
        runner = self.runners.get(runner_id)
        if runner is None or runner.address is not None:
            # Retired meanwhile, or dask ran its task again elsewhere: not ours to use.
            self.call(address, "subplan_stop", runner=runner_id)
            return
        runner.address = address
        runner.idle_since = self.setup.clock.monotonic()
        self.starting -= 1
        self.idle.append(runner)

    def watch(self) -> None:
        while True:
            first = self.events.get()
            if first is None:
                return
            batch = [first]
            with contextlib.suppress(queue.Empty):
                while True:
                    more = self.events.get_nowait()
                    if more is None:
                        self.events.put(None)  # seen after this batch
                        break
                    batch.append(more)
            try:
                with self.dispatch.lock:
                    for event in batch:
                        if event[0] == "end":
                            self.on_reply(event[1], event[2], event[3])
                        elif event[0] == "ready":
                            self.on_announced(event[1], event[2])
                        else:
                            self.on_runner_done(event[1])
                    self.dispatch.refill_locked()
            except BaseException as exc:  # a bug in the dispatcher itself: stop loudly
                self.dispatch.fail(exc)
                return

    # -- killing (only the workers of a cluster this run started) ------------------------

    def kill_locked(self, key: int) -> None:
        runner = next((r for r in self.runners.values() if r.key == key), None)
        if not self.owned or runner is None or runner.address is None:
            return
        if runner.address in self.killing:
            return
        self.killing.add(runner.address)
        launch = self.dispatch.live[key].launch
        threading.Thread(
            target=self._kill,
            args=(runner.address, (launch.unit_id, launch.attempt)),
            name="subplan-dask-kill",
            daemon=True,
        ).start()

    def _kill(self, address: str, attempt: tuple[str, int]) -> None:
        # Our own LocalCluster: its workers are processes of this host. SIGKILL the one
        # running the attempt; its reply fails, the attempt ends, the nanny starts a
        # fresh worker. The attempt's commands (in sessions of their own) go with it.
        try:
            pid = self.client.run(os.getpid, workers=[address]).get(address)
            if pid is not None:
                os.kill(int(pid), signal.SIGKILL)
        except Exception:  # noqa: S110 - it ended meanwhile, or its worker did
            pass
        _kill_run_commands(self.setup.run_id, self._run_dir(), attempt)

    def _run_dir(self) -> str:
        return str(Path(self.setup.run_dir).absolute())

    def kill_commands(self) -> None:
        """A second Ctrl-C: kill every command of the run before the run lets go.

        On a cluster of our own its workers, and so their commands, are on this host.
        On a cluster given by address the workers kill those of their hosts
        (``Client.run``; best effort, for at most ``_REMOTE_KILL`` seconds).
        """
        if self.owned:
            _kill_run_commands(self.setup.run_id, self._run_dir())
            return
        remote = threading.Thread(
            target=self._kill_remote, name="subplan-dask-kill-commands", daemon=True
        )
        remote.start()
        remote.join(_REMOTE_KILL)

    def _kill_remote(self) -> None:
        with contextlib.suppress(Exception):  # a scheduler that is gone: nothing to reach
            self.client.run(_kill_run_commands, self.setup.run_id, self._run_dir())

    # -- the main thread -----------------------------------------------------------------

    def cancel(self, key: int, item: Live) -> None:
        """The run was cancelled: a waiting attempt ends now, a running one is told (and
        killed after the grace, see :meth:`tick`)."""
        if key in self.waiting:
            self.finish_locked(key, None)
            return
        runner = next((r for r in self.runners.values() if r.key == key), None)
        if runner is not None:
            self.cancel_remote_locked(runner, key)

    def timed_out(self, key: int, item: Live) -> None:
        """Past its deadline before any runner took it: it ends now (a running one is
        killed after the grace, see :meth:`tick`)."""
        if key in self.waiting:
            self.finish_locked(key, None)

    def stop_reason(self) -> str | None:
        return self.lost_scheduler(time.monotonic())

    def lost_scheduler(self, now: float) -> str | None:
        """Why the run must stop: the scheduler unreachable for SCHEDULER_GRACE seconds."""
        if self.client.status == "running":
            self.lost_since = None
            return None
        if self.lost_since is None:
            self.lost_since = now
        if now - self.lost_since < self.grace:
            return None
        reason = f"lost the dask scheduler ({self.client.status} for {self.grace:g}s)"
        if not self.setup.scheduler.cancelled:
            self.setup.scheduler.warnings.append(
                f"{reason}: no attempt started after that; attempts already running "
                "finished on their workers; resume the run to do the rest"
            )
        return reason

    def tick(self, now: float) -> float | None:
        """Start what waits for a runner, kill what overstayed, stop idle runners; the
        next time one of these is due."""
        self.assign_locked()  # again: the scheduler may be back
        live = self.dispatch.live
        due: list[float] = []
        if self.setup.scheduler.cancelled and self.cancelled_at is None:
            self.cancelled_at = now
        for key, item in live.items():
            late = item.launch.deadline
            if item.timed_out and late is not None:
                if now >= late + self.kill_grace:
                    self.kill_locked(key)
                else:
                    due.append(late + self.kill_grace)
        if self.cancelled_at is not None and live:
            if now >= self.cancelled_at + self.kill_grace:
                for key in live:
                    self.kill_locked(key)
            else:
                due.append(self.cancelled_at + self.kill_grace)
        if not self.waiting:
            for runner in [r for r in self.idle if now - r.idle_since >= _LINGER]:
                self.retire_locked(runner)
            if self.idle:
                due.append(min(r.idle_since for r in self.idle) + _LINGER)
        return min(due) if due else None

    def open(self) -> None:
        """Listen for runners and start the watcher thread."""
        self.client.subscribe_topic(self.topic, self.on_ready)
        self.watcher = threading.Thread(target=self.watch, name="subplan-dask-watcher", daemon=True)
        self.watcher.start()

    def close(self) -> None:
        """Stop the watcher and every runner, forget the topic; wait briefly for the
        stops to land."""
        self.events.put(None)
        if self.watcher is not None:
            self.watcher.join(timeout=30)
        with self.dispatch.lock:
            stops = []
            for runner in list(self.runners.values()):
                if runner.address is not None and runner.key is None:
                    stops.append(self.call(runner.address, "subplan_stop", runner=runner.id))
                runner.dead = True
                runner.future.release()
                if runner.call is not None:
                    runner.call.cancel()  # abandoned (a second signal, or an error)
            self.runners.clear()
            self.idle.clear()
        concurrent.futures.wait(stops, timeout=2.0)
        with contextlib.suppress(Exception):
            self.client.unsubscribe_topic(self.topic)
