"""A drop-in :class:`concurrent.futures.Executor` whose calls take a slot of a shared limiter.

Existing code often nests one pool per tier (a pool of coordinators, each feeding a pool
of workers); with ``ThreadPoolExecutor(6)`` per tier, five tiers run 30 things at once.
Wrapping every tier's pool in a :class:`LimitedExecutor` over one :class:`Limiter` (or one
:class:`SharedLimiter`, across processes) makes all of them together stay within the
limiter's capacity, without restructuring the code.

The deadlock caveat: a task that holds a slot while it blocks on futures it submitted to
pools of the same limiter can starve. With capacity 2 and two coordinator tasks that each
wait for a child task, both slots are held by waiters and the children never start. The
remedy is the rule of DESIGN §4, "groups never hold a slot while waiting": only the tiers
that do the work take slots. Either do not wrap the coordinators' pool, or wrap it with
``limited=False`` (a pass-through that keeps the code uniform), or give coordinators a
separate limiter. A coordinator that does real work itself should do it in a task of a
limited tier.
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from .._errors import ConfigError
from ._limiter import Limiter, check_count, normalize_groups
from ._shared import SharedLimiter

__all__ = ["LimitedExecutor"]

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _call_limited(
    limiter: Limiter | SharedLimiter,
    groups: tuple[str, ...],
    fn: Callable[..., _T],
    args: tuple[Any, ...],
    kwargs: dict[str, Any],
) -> _T:
    """Run ``fn`` holding one slot of ``limiter`` (module level, so it pickles)."""
    if isinstance(limiter, SharedLimiter):
        with limiter.acquire():
            return fn(*args, **kwargs)
    with limiter.acquire(groups=groups):
        return fn(*args, **kwargs)


class LimitedExecutor(concurrent.futures.Executor):
    """An executor whose every call holds a slot of a (shared) limiter while it runs.

    Args:
        limiter: the bound to share; pass the same one to every tier's executor.
        max_workers: threads of the pool this executor creates when ``inner`` is not
            given (``ThreadPoolExecutor``'s default when ``None``).
        inner: an existing executor to run the calls on; it is not shut down by
            :meth:`shutdown`. Calls wait for their slot inside ``inner``'s workers.
            A process pool needs a :class:`SharedLimiter` (it is pickled to the child,
            which opens the same pool by name).
        groups: the limiter groups every call counts against (a :class:`Limiter` only).
        thread_name_prefix: names the threads of the pool this executor creates.
        limited: ``False`` makes a pass-through that takes no slots: for the pools of
            tiers that only wait for other tiers (see the deadlock caveat below).

    Raises:
        ConfigError: both ``max_workers`` and ``inner`` given, ``max_workers`` < 1,
            groups with a :class:`SharedLimiter`, an in-process :class:`Limiter` with a
            process pool, or ``limiter`` is not a limiter.

    Notes:
        A task that blocks, while holding a slot, on tasks it submitted to pools of the
        same limiter can starve: when every slot is held by such a waiter, nothing it
        waits for can start. Do not let waiting tiers hold slots: leave their pool
        unwrapped or pass ``limited=False``.

    Example:
        >>> from concurrent.futures import ThreadPoolExecutor
        >>> limiter = Limiter(6)
        >>> tiers = [LimitedExecutor(limiter, 6) for _ in range(5)]  # 30 threads, 6 at once
        >>> [f.result() for f in [tier.submit(pow, 2, i) for i, tier in enumerate(tiers)]]
        [1, 2, 4, 8, 16]
        >>> for tier in tiers:
        ...     tier.shutdown()
    """

    def __init__(
        self,
        limiter: Limiter | SharedLimiter,
        max_workers: int | None = None,
        *,
        inner: concurrent.futures.Executor | None = None,
        groups: Sequence[str] = (),
        thread_name_prefix: str = "subplan",
        limited: bool = True,
    ) -> None:
        if not isinstance(limiter, Limiter | SharedLimiter):
            raise ConfigError(f"limiter must be a Limiter or SharedLimiter, got {limiter!r}")
        self._groups = normalize_groups(groups)
        if self._groups and isinstance(limiter, SharedLimiter):
            raise ConfigError(f"a SharedLimiter has no groups, got groups={list(self._groups)}")
        if inner is not None and max_workers is not None:
            raise ConfigError("pass max_workers or inner, not both")
        if (
            limited
            and isinstance(limiter, Limiter)
            and isinstance(inner, concurrent.futures.ProcessPoolExecutor)
        ):
            raise ConfigError(
                "an in-process Limiter cannot bound calls that run in other processes; "
                "use a SharedLimiter with a process pool"
            )
        self._limiter = limiter
        self._limited = bool(limited)
        self._owns_inner = inner is None
        if inner is None:
            if max_workers is not None:
                check_count("max_workers", max_workers)
            inner = concurrent.futures.ThreadPoolExecutor(
                max_workers, thread_name_prefix=thread_name_prefix
            )
        self._inner: concurrent.futures.Executor = inner
        self._shutdown = False
        self._shutdown_lock = threading.Lock()
        # futures submitted to an inner pool we do not own, so that shutdown can wait
        self._pending: set[concurrent.futures.Future[Any]] = set()
        self._pending_lock = threading.Lock()

    @property
    def limiter(self) -> Limiter | SharedLimiter:
        """The limiter every call takes a slot from."""
        return self._limiter

    @property
    def limited(self) -> bool:
        """False for a pass-through that takes no slots."""
        return self._limited

    @property
    def groups(self) -> tuple[str, ...]:
        """The groups every call counts against."""
        return self._groups

    def submit(
        self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs
    ) -> concurrent.futures.Future[_T]:
        """Schedule ``fn(*args, **kwargs)`` to run holding a slot; return its future.

        The slot is taken by the worker thread just before the call and released right
        after it, whatever the call does; a future cancelled before it starts never takes
        one.

        Args:
            fn: the callable.
            *args: its positional arguments.
            **kwargs: its keyword arguments.

        Returns:
            The inner executor's future.

        Raises:
            RuntimeError: the executor was shut down.

        Example:
            >>> with LimitedExecutor(Limiter(2), 4) as pool:
            ...     pool.submit(sum, [1, 2, 3]).result()
            6
        """
        with self._shutdown_lock:
            if self._shutdown:
                raise RuntimeError("cannot schedule new futures after shutdown")
            if self._limited:
                future = self._inner.submit(
                    _call_limited, self._limiter, self._groups, fn, args, kwargs
                )
            else:
                future = self._inner.submit(fn, *args, **kwargs)
            if self._owns_inner:
                return future
            with self._pending_lock:
                self._pending.add(future)
        # outside the locks: the callback runs at once if the future is already done
        future.add_done_callback(self._forget)
        return future

    def _forget(self, future: concurrent.futures.Future[Any]) -> None:
        with self._pending_lock:
            self._pending.discard(future)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Stop accepting calls; shut down the pool this executor created.

        An ``inner`` executor passed in is left running: ``wait`` and ``cancel_futures``
        then apply to the futures submitted through this executor only.

        Args:
            wait: block until the calls submitted through this executor are done.
            cancel_futures: cancel those that have not started.

        Example:
            >>> pool = LimitedExecutor(Limiter(1), 1)
            >>> pool.shutdown()
            >>> pool.submit(print, "too late")
            Traceback (most recent call last):
            ...
            RuntimeError: cannot schedule new futures after shutdown
        """
        with self._shutdown_lock:
            self._shutdown = True
        if self._owns_inner:
            self._inner.shutdown(wait=wait, cancel_futures=cancel_futures)
            return
        with self._pending_lock:
            pending = list(self._pending)
        if cancel_futures:
            for future in pending:
                future.cancel()
        if wait:
            concurrent.futures.wait(pending)

    def __repr__(self) -> str:
        mode = "" if self._limited else ", limited=False"
        return f"LimitedExecutor({self._limiter!r}, inner={self._inner!r}{mode})"
