"""``run``, ``arun`` and ``resume``: execute a plan's leaves under one global bound.

Each builds the run's :class:`~._setup.Setup` and hands it to a backend under the one
dispatch loop (:mod:`._loop`): threads (:mod:`._threads`), worker processes
(:mod:`._process_backend`), a dask cluster (:mod:`._dask`) or the running event loop
(:mod:`._asyncio`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import threading
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal, TypeAlias

from ._backends._asyncio import run_asyncio
from ._backends._processes import run_processes
from ._backends._setup import Setup, check_run_id, new_run_id
from ._backends._threads import run_threads
from ._clock import Clock, SystemClock
from ._command._in_workspace import WorkspacePolicy
from ._command._live_output import OutputFollower, OutputLine
from ._command._work import CommandWork
from ._dispatch._halt import Halt
from ._dispatch._results import AttemptContext, Event, RunReport, WorkResult
from ._dispatch._retry import RetryPolicy
from ._durable._resume import (
    check_store_spec,
    is_store,
    prepare_resume,
)
from ._errors import ConfigError
from ._fs import default_runs_dir
from ._limit._pool import OuterLimiter
from ._limit._shared import SharedLimiter
from ._model import Plan, Subplan
from ._options import RunOptions
from ._ratelimit._detector import RateLimitDetector
from ._store._open import open_store

if TYPE_CHECKING:
    from ._store._base import PauseRow, Store

__all__ = ["RunOptions", "Work", "arun", "default_runs_dir", "new_run_id", "resume", "run"]

WorkReturn: TypeAlias = WorkResult | bool | None
Work: TypeAlias = Callable[[Subplan, AttemptContext], WorkReturn]
AsyncWork: TypeAlias = Callable[[Subplan, AttemptContext], Awaitable[WorkReturn]]


def run(
    plan: Plan,
    work: Work,
    *,
    max_parallel: int = 10,
    retries: int | RetryPolicy = 0,
    timeout: float | None = None,
    dependencies: Mapping[str, Sequence[str]] | None = None,
    integrate: Work | None = None,
    group_caps: Mapping[str, int] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    priorities: Mapping[str, int] | None = None,
    on_event: Callable[[Event], None] | None = None,
    run_id: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    limiter: OuterLimiter[Any] | None = None,
    cancel: threading.Event | None = None,
    handle_signals: bool = False,
    clock: Clock | None = None,
    seed: int | None = None,
    rate_limits: RateLimitDetector | bool = True,
    preflight: Callable[[], object] | None = None,
    backend: Literal["thread", "process", "dask"] = "thread",
    store: Store | str | os.PathLike[str] | None = None,
    workspaces: WorkspacePolicy | None = None,
    scheduler: str | None = None,
    halt: Halt | None = None,
    on_output: Callable[[OutputLine], None] | None = None,
    options: RunOptions | None = None,
) -> RunReport:
    """Run ``work`` on every leaf of ``plan``, at most ``max_parallel`` at a time in all.

    One dispatcher owns the slots for the whole tree: however the plan nests, no more than
    ``max_parallel`` attempts run at once. Exceptions from ``work`` become failed
    attempts, never escape into the pool, and are retried under ``retries``.

    Args:
        plan: the plan whose leaves to run.
        work: called as ``work(subplan, ctx)`` on a worker thread; returns None (success),
            a bool, or a :class:`WorkResult`; raising fails the attempt.
        max_parallel: the global bound (at least 1).
        retries: retries after the first attempt, or a :class:`RetryPolicy`.
        timeout: seconds per attempt. Threads cannot be killed: at the deadline
            ``ctx.cancelled`` becomes true and the attempt counts as timed out when the
            work returns (command work kills its process group at once).
        dependencies: ``{subplan id: ids it waits for}``; any node of the plan (an
            internal node stands for all its leaves). A cycle is a
            :class:`~subplan.DependencyCycleError`.
        integrate: when given, called as ``integrate(node, ctx)`` for every internal node
            after all its children succeeded; it takes a slot like a leaf.
        group_caps: ``{subplan id or group name: cap}``; a subplan id caps the leaves of
            its subtree, a name caps the leaves given that name in ``groups``.
        groups: ``{subplan id: group names}`` for the leaves of that subtree.
        priorities: ``{subplan id: priority}`` for that subtree; higher first, FIFO among
            equals (the default is plan order).
        on_event: called with every :class:`Event`, one at a time and in order, from
            whichever thread is driving the dispatcher (keep it quick: dispatch waits).
        run_id: the run's id (default: generated).
        runs_dir: where artifacts go (default ``$SUBPLAN_RUNS_DIR`` or ``.subplan``).
        limiter: a limiter shared with others (a :class:`Limiter` for runs in this
            process, a :class:`SharedLimiter` for every run on the host naming a pool):
            each attempt holds a slot of it as well as one of the run's own.
        cancel: set it to stop dispatch; in-flight work sees ``ctx.cancelled``.
        handle_signals: on the main thread, SIGINT/SIGTERM cancel the run instead of
            killing the process (a second signal stops waiting for in-flight work).
        clock: the time source (for tests).
        seed: seed of the backoff jitter.
        rate_limits: how rate limits are recognised. Work may always raise
            :class:`RateLimited`; with True (the default) other exceptions are checked by a
            :class:`RateLimitDetector` too (an SDK error with ``status_code`` 429 and a
            ``Retry-After`` header, a provider's JSON error body, "try again in 20s").
            A rate-limited attempt is requeued without spending an attempt and closes the
            run's one pause gate: nothing new starts until the reset plus 10% (unknown:
            exponential backoff), in-flight work finishes, and starts resume on a
            jittered ramp. False turns detection of plain exceptions off.
        preflight: called once before dispatch; it may return seconds to wait, a
            :class:`RateLimitInfo`, or raise :class:`RateLimited` to pause the run before
            anything starts.
        backend: ``"thread"`` (the default; agents are I/O-bound) or ``"process"``: each
            attempt runs in one of ``max_parallel`` worker processes, so a timeout kills
            it for real, and a worker that dies (os._exit, SIGKILL, a segfault) breaks
            only its own attempt, which is charged a crash and retried under the policy
            (at most ``RetryPolicy.max_crashes`` times); a command it started is killed
            before any retry. ``work`` must be picklable, and ``ctx.cancelled`` never
            becomes true inside a worker (cancellation kills the worker instead).
            ``"dask"``: each attempt runs on a worker of a ``distributed`` cluster (the
            one at ``scheduler``, else a ``LocalCluster`` of worker processes started
            for the run); needs ``pip install 'subplan[dask]'``. ``work`` must pickle
            (cloudpickle). A dead worker breaks only its own attempts (crashed, charged,
            capped by ``max_crashes``); at a timeout the worker sets ``ctx.cancelled``,
            and a worker of the run's own cluster still running the attempt 2 s later is
            killed. Pass a :class:`~subplan._backends._dask.ClusterPool` as ``limiter`` to
            share a budget with other orchestrators on the cluster.
        store: record the run in a state store so it can be resumed (:func:`resume`),
            listed and reported: a :class:`Store`, a ``postgresql://`` URL, a SQLite file,
            or ``""`` for the default (``$SUBPLAN_STORE``, else ``state.db`` in
            ``runs_dir``). None (the default) keeps no record. With a store, the run
            holds the run lock while it runs, every attempt is committed by a writer
            thread in batches, and events are delivered only after what came before them
            is committed (on that thread).
        workspaces: give every attempt its own detached git worktree of
            ``workspaces.repo`` at ``workspaces.base`` (a :class:`WorkspacePolicy`); the
            work sees it as ``ctx.workspace`` (command work runs there). The changes are
            saved as ``changes.patch`` in the attempt's artifacts before the worktree is
            removed, and the report lists the files each subplan changed, flagging files
            outside a subplan's own and files two subplans changed.
        scheduler: with ``backend="dask"``, the address of the dask scheduler to use
            (``tcp://host:8786``); the cluster is left as it was. None starts a
            ``LocalCluster`` for the run and closes it at the end.
        halt: stop once that many subplans have failed (after their retries):
            ``Halt("soon", 1)`` starts nothing new, ``Halt("now", 1)`` also cancels what
            runs. The rest are ``not_run`` (a resume runs them).
        on_output: called with every line that commands write (:class:`OutputLine`:
            subplan, attempt, stream, bytes), live, while they run: command work's log
            files are followed (see :class:`OutputFollower`; a dask cluster's workers
            must write where this process can read). Calls come from one thread, whole
            lines in order per stream; a line over 8 KiB comes in pieces. Every line has
            been handed on when ``run`` returns.
        options: every option above at once, as a :class:`RunOptions` (``max_parallel``,
            ``retries``, ``timeout``, ``dependencies``, ``group_caps``, ``groups``,
            ``priorities``, ``seed``, ``rate_limits``, ``backend``, ``scheduler``,
            ``halt``, ``workspaces``); then those keywords must be left at their
            defaults.

    Returns:
        The :class:`RunReport`.

    Raises:
        ConfigError: ``max_parallel`` < 1, a bad timeout or retry count, a bad run id,
            an unknown backend, the dask backend without ``distributed`` installed, or a
            dask scheduler that cannot be reached.
        DependencyCycleError: the dependencies form a cycle.
        UnknownSubplanError: an id in the options that is not in the plan.
        RunExistsError, RunLockedError, StoreError: with a store, the run id is taken,
            another orchestrator holds it, or the store cannot be used (or failed
            during the run: what was committed stays, and the run can be resumed).

    Example:
        >>> from subplan import decompose, run
        >>> plan = decompose([f"{d}/{i}.py" for d in "abc" for i in range(3)])
        >>> report = run(plan, lambda subplan, ctx: None, max_parallel=2)
        >>> report.status, report.peak_concurrency <= 2
        ('succeeded', True)
    """
    chosen = _either(
        options,
        RunOptions(
            max_parallel=max_parallel,
            retries=retries,
            timeout=timeout,
            dependencies=dependencies or {},
            group_caps=group_caps or {},
            groups=groups or {},
            priorities=priorities or {},
            seed=seed,
            rate_limits=rate_limits,
            backend=backend,
            scheduler=scheduler,
            halt=halt,
            workspaces=workspaces,
        ),
    )
    output = _follower(runs_dir, on_output, on_event)
    setup = Setup(
        plan,
        work,
        chosen,
        integrate=integrate,
        on_event=output or on_event,
        run_id=run_id,
        runs_dir=runs_dir,
        limiter=limiter,
        clock=clock,
        preflight=preflight,
        store=store,
    )
    return _drive(setup, cancel, handle_signals, output)


def _either(given: RunOptions | None, keywords: RunOptions) -> RunOptions:
    """The options object, or the one the keywords make; not both."""
    if given is None:
        return keywords
    if not isinstance(given, RunOptions):
        raise ConfigError(f"options must be a RunOptions, not {type(given).__name__}")
    if keywords != RunOptions():
        raise ConfigError("give options= or the option keywords, not both")
    return given


def _follower(
    runs_dir: str | os.PathLike[str] | None,
    on_output: Callable[[OutputLine], None] | None,
    on_event: Callable[[Event], None] | None,
) -> OutputFollower | None:
    """The listener that follows commands' output for ``on_output`` (None without one).

    It starts its thread only once an attempt starts, so a run refused before that
    leaves none behind; :func:`_drive` closes it.
    """
    if on_output is None:
        return None

    def each(lines: Sequence[OutputLine]) -> None:
        for line in lines:
            on_output(line)

    directory = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    return OutputFollower(directory, each, then=on_event)


def _drive(
    setup: Setup,
    cancel: threading.Event | None,
    handle_signals: bool,
    output: OutputFollower | None = None,
) -> RunReport:
    """Run a set-up run on its backend; leave the store consistent whatever happens."""
    try:
        if setup.backend == "process":
            return run_processes(setup, cancel, handle_signals)
        if setup.backend == "dask":
            from ._backends._dask import run_dask  # distributed is imported only when used

            return run_dask(setup, cancel, handle_signals)
        return run_threads(setup, cancel, handle_signals)
    finally:
        setup.abandon()  # a no-op once the run finished normally
        setup.close_backend()
        if output is not None:
            output.close()  # every line handed on before the caller sees the report


async def arun(
    plan: Plan,
    work: AsyncWork | Work,
    *,
    max_parallel: int = 10,
    retries: int | RetryPolicy = 0,
    timeout: float | None = None,
    dependencies: Mapping[str, Sequence[str]] | None = None,
    integrate: AsyncWork | Work | None = None,
    group_caps: Mapping[str, int] | None = None,
    groups: Mapping[str, Sequence[str]] | None = None,
    priorities: Mapping[str, int] | None = None,
    on_event: Callable[[Event], None] | None = None,
    run_id: str | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    limiter: OuterLimiter[Any] | None = None,
    cancel: asyncio.Event | threading.Event | None = None,
    clock: Clock | None = None,
    seed: int | None = None,
    rate_limits: RateLimitDetector | bool = True,
    preflight: Callable[[], object] | None = None,
    store: Store | str | os.PathLike[str] | None = None,
    halt: Halt | None = None,
    on_output: Callable[[OutputLine], None] | None = None,
    options: RunOptions | None = None,
) -> RunReport:
    """The asyncio twin of :func:`run`: the same dispatcher, on the running event loop.

    ``work`` may be a coroutine function (run as a task) or a plain function (run on a
    pool of ``max_parallel`` threads). A timeout cancels a coroutine attempt (it sees
    :class:`asyncio.CancelledError`); cancelling the ``arun`` task itself cancels the
    attempts in flight, waits for them, and re-raises.

    Args:
        plan: see :func:`run`; every other argument is the same.
        work: a coroutine function or a plain function of ``(subplan, ctx)``.

    Returns:
        The :class:`RunReport`.

    Example:
        >>> import asyncio
        >>> from subplan import arun, decompose
        >>> async def work(subplan, ctx):
        ...     await asyncio.sleep(0)
        >>> plan = decompose([f"{d}/{i}.py" for d in "abc" for i in range(3)])
        >>> asyncio.run(arun(plan, work, max_parallel=2)).status
        'succeeded'
    """
    chosen = _either(
        options,
        RunOptions(
            max_parallel=max_parallel,
            retries=retries,
            timeout=timeout,
            dependencies=dependencies or {},
            group_caps=group_caps or {},
            groups=groups or {},
            priorities=priorities or {},
            seed=seed,
            rate_limits=rate_limits,
            halt=halt,
        ),
    )
    if chosen.backend != "thread" or chosen.workspaces is not None:
        raise ConfigError("arun runs on the event loop: backends and workspaces are run's")
    output = _follower(runs_dir, on_output, on_event)  # calls on_output from its thread
    setup = Setup(
        plan,
        work,
        chosen,
        integrate=integrate,
        on_event=output or on_event,
        run_id=run_id,
        runs_dir=runs_dir,
        limiter=limiter,
        clock=clock,
        preflight=preflight,
        store=store,
    )
    try:
        return await run_asyncio(setup, cancel)
    finally:
        setup.abandon()  # a no-op once the run finished normally
        if output is not None:
            output.close()


def _policy_of(config: Mapping[str, Any], run_id: str, base: str | None) -> WorkspacePolicy | None:
    """The run's workspace policy, starting from ``base`` when one is given."""
    if not config.get("workspaces"):
        if base is not None:
            raise ConfigError(f"run {run_id!r} ran without workspaces: it has no base to change")
        return None
    policy = WorkspacePolicy.from_dict(config["workspaces"])
    return policy if base is None else dataclasses.replace(policy, base=base)


def _stored_work(config: Mapping[str, Any], run_id: str) -> CommandWork:
    """The command work a run recorded (a Python callable is not recorded)."""
    description = config.get("work")
    if not description:
        raise ConfigError(f"run {run_id!r} ran a Python callable: pass work= to resume it")
    return CommandWork.from_description(description)


def _stored_pool(config: Mapping[str, Any], backend: str) -> OuterLimiter[Any] | None:
    """The shared pool a run named, at the size it had (None: it named none)."""
    pool = config.get("pool")
    if not pool:
        return None
    size = int(config.get("pool_size") or config["max_parallel"])
    if backend == "dask":
        from ._backends._dask_pool import ClusterPool

        return ClusterPool(str(pool), size)
    return SharedLimiter(str(pool), size)


def _honour_stored_pause(setup: Setup, pauses: Sequence[PauseRow]) -> None:
    """Keep the gate closed until a stored pause ends: the limit outlived the orchestrator."""
    if not pauses:
        return
    latest = max(pauses, key=lambda p: p.ends)
    wait = latest.ends - setup.clock.time()
    if wait > 0:
        setup.scheduler.pause(
            wait=wait,
            reason=f"still rate limited: {latest.reason}",
            source=latest.source,
            subplan_id=latest.subplan_id,
            margin=False,  # the stored end has its margin already
        )


def resume(
    run_id: str,
    work: Work | None = None,
    *,
    store: Store | str | os.PathLike[str] | None = None,
    runs_dir: str | os.PathLike[str] | None = None,
    plan: Plan | None = None,
    rerun: Sequence[str] = (),
    integrate: Callable[..., Any] | None = None,
    on_event: Callable[[Event], None] | None = None,
    limiter: OuterLimiter[Any] | None = None,
    cancel: threading.Event | None = None,
    handle_signals: bool = False,
    clock: Clock | None = None,
    rate_limits: RateLimitDetector | bool | None = None,
    preflight: Callable[[], object] | None = None,
    scheduler: str | None = None,
    halt: Halt | None = None,
    base: str | None = None,
    on_output: Callable[[OutputLine], None] | None = None,
) -> RunReport:
    """Resume a stored run: run again only what did not succeed.

    The run keeps its limits, retry policy, timeout, backend, dependencies and (for
    command work) its command. A rate-limit pause that had not ended when the run stopped
    still holds: nothing starts before its stored end. Attempts a dead orchestrator left
    running are reclaimed: their process groups are killed first, then they are marked
    ``interrupted`` without being charged. Attempt numbers continue; the retry budget
    starts afresh. At-least-once: an attempt that was running when the orchestrator died
    runs again, so work should be idempotent.

    Args:
        run_id: the run.
        work: the work callable; None for a run of command work (rebuilt from its record).
        store: the store the run is in (a :class:`Store`, a URL or a path); default the
            SQLite store of ``runs_dir`` (or ``$SUBPLAN_STORE``).
        runs_dir: the runs directory (default ``$SUBPLAN_RUNS_DIR`` or ``.subplan``).
        plan: a re-decomposed plan: subplans whose ids are unchanged keep their results,
            the others run. Default: the stored plan.
        rerun: subplan ids (any node: its whole subtree) to run again even if they
            succeeded; every other result is kept.
        integrate: the integration callable, when the run had one.
        on_event, limiter, cancel, handle_signals, clock, preflight, on_output: as for
            :func:`run`.
        rate_limits: as for :func:`run`; None keeps the run's choice.
        halt: as for :func:`run`; a resume halts only when asked to again.
        scheduler: for a run of the dask backend, the scheduler to use; None keeps the
            address the run was given (none: a new ``LocalCluster``).
        base: for a run with workspaces, the commit the new attempts' worktrees start
            from (``subplan integrate --rerun-conflicts`` passes its branch's tip); None
            keeps the run's base. The run's record keeps its own base.

    Returns:
        The :class:`RunReport` of the whole run (earlier attempts included).

    Raises:
        UnknownRunError: no such run.
        RunLockedError: another orchestrator is running it.
        UnknownSubplanError: a ``rerun`` id that is not in the plan.
        ConfigError: the run needs ``work`` (or ``integrate``) and none was given.
        StoreError: the store cannot be used.
    """
    clock_ = clock or SystemClock()
    run_id = check_run_id(run_id)
    directory = Path(runs_dir) if runs_dir is not None else default_runs_dir()
    check_store_spec(store)
    opened = not is_store(store)
    spec = os.fspath(store) if isinstance(store, os.PathLike) else store
    the_store: Store = open_store(spec, directory, create=False) if opened else store  # type: ignore[arg-type,assignment]
    lock = None
    try:
        the_store.get_run(run_id)  # unknown: say so before taking (and making) a lock
        lock = the_store.lock_run(run_id)
        record, the_plan, state = prepare_resume(
            the_store,
            run_id,
            lock=lock,
            plan=plan,
            rerun=rerun,
            clock=clock_,
            run_dir=(directory / run_id).absolute(),
        )
        config = record.config
        if config.get("integrate") and integrate is None:
            raise ConfigError(f"run {run_id!r} had integration steps: pass integrate=")
        stored = RunOptions.from_dict(config)
        chosen = stored.replace(
            rate_limits=stored.rate_limits if rate_limits is None else rate_limits,
            scheduler=stored.scheduler if scheduler is None else scheduler,
            halt=halt,
            workspaces=_policy_of(config, run_id, base),
        )
        output = _follower(directory, on_output, on_event)
        setup = Setup(
            the_plan,
            _stored_work(config, run_id) if work is None else work,
            chosen,
            integrate=integrate,
            on_event=output or on_event,
            run_id=run_id,
            runs_dir=directory,
            limiter=_stored_pool(config, chosen.backend) if limiter is None else limiter,
            clock=clock_,
            preflight=preflight,
            store=the_store,
            resume=state,
        )
        _honour_stored_pause(setup, the_store.pauses(run_id))
    except BaseException:
        if lock is not None:
            lock.release()
        if opened:
            the_store.close()
        raise
    try:
        return _drive(setup, cancel, handle_signals, output)
    finally:
        if opened:
            the_store.close()
