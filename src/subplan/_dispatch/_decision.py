"""What follows an attempt's end: succeed, retry, requeue, pause, stop or fail.

:func:`decide` is the whole rule, as one pure function of the end, the unit's counts, the
retry policy and whether the run is cancelled; the
:class:`~subplan._dispatch._scheduler.Scheduler` applies the :class:`Decision` it returns.

Notes:
    The only randomness is the retry's backoff: ``policy.delay`` draws once from ``rng``,
    and only when the decision is ``retry``, so seeded runs draw in the same order.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Literal

from ._results import AttemptStatus
from ._retry import RetryPolicy

__all__ = ["Action", "Decision", "decide", "stopped_reason"]

Action = Literal["succeed", "retry", "requeue", "pause", "stop", "fail"]
"""``succeed``: done; ``retry``: ready again after ``delay``; ``requeue``: ready again at
once, no attempt spent; ``pause``: requeued, and the run's gate closes (a rate limit);
``stop``: the cancelled run leaves it for a resume; ``fail``: failed for good."""


@dataclass(frozen=True, slots=True)
class Decision:
    """What :func:`decide` decided, and the unit's counts after this end.

    Attributes:
        action: what happens to the unit (see :data:`Action`).
        charged: attempts spent against the policy's ``max_attempts``.
        crashes: its own worker's deaths, against ``max_crashes``.
        rate_limits: rate limits in a row, against ``max_rate_limits``.
        delay: for ``retry``: seconds until it is ready again; else 0.
        reason: for ``stop`` and ``fail``: why, for the outcome; else None.
    """

    action: Action
    charged: int
    crashes: int
    rate_limits: int
    delay: float = 0.0
    reason: str | None = None


def decide(
    status: AttemptStatus,
    *,
    policy: RetryPolicy,
    rng: random.Random,
    charged: int,
    crashes: int,
    rate_limits: int,
    charge: bool = True,
    exception: BaseException | None = None,
    error: str | None = None,
    cancel_reason: str | None = None,
) -> Decision:
    """Decide what follows an attempt that ended with ``status``.

    Args:
        status: how the attempt ended.
        policy: the retry policy.
        rng: the run's randomness, drawn once for a retry's backoff and never otherwise.
        charged: the unit's charged attempts before this one ended.
        crashes: its crashes before this one.
        rate_limits: its rate limits in a row before this one.
        charge: False when this attempt does not count (someone else's crash took it
            down): it is requeued at once, unless its own crashes reached the cap.
        exception: the exception the work raised, if any (the policy's ``retry_on``).
        error: one line describing the failure.
        cancel_reason: the run's cancel reason, None while it is not cancelled.

    Returns:
        The decision. A rate limit spends no attempt and counts no crash; a success
        changes no count; any other end resets the rate limits in a row.

    Example:
        >>> policy = RetryPolicy(retries=1, backoff_base=0.0)
        >>> rng = random.Random(0)
        >>> decide("failed", policy=policy, rng=rng, charged=0, crashes=0, rate_limits=0,
        ...        exception=RuntimeError("boom"), error="boom")
        Decision(action='retry', charged=1, crashes=0, rate_limits=0, delay=0.0, reason=None)
        >>> decide("failed", policy=policy, rng=rng, charged=1, crashes=0, rate_limits=0,
        ...        exception=RuntimeError("boom"), error="boom").action
        'fail'
    """
    if status == "succeeded":
        return Decision("succeed", charged, crashes, rate_limits)
    if status == "rate_limited":
        # The limit is the API's, not the subplan's: no attempt is spent, the unit goes
        # back in the queue, and the whole run pauses.
        rate_limits += 1
        if rate_limits > policy.max_rate_limits:
            reason = f"rate limited {rate_limits} times in a row ({error})"
            return Decision("fail", charged, crashes, rate_limits, reason=reason)
        if cancel_reason is not None:
            reason = stopped_reason(cancel_reason, status, error)
            return Decision("stop", charged, crashes, rate_limits, reason=reason)
        return Decision("pause", charged, crashes, rate_limits)
    if charge:
        charged += 1
    if status == "crashed":
        crashes += 1
    retryable = status in ("timed_out", "cancelled") or policy.retryable(exception)
    # An uncharged end (someone else's crash took it down) is always run again.
    again = not charge or (retryable and charged < policy.max_attempts)
    if crashes >= policy.max_crashes:
        again = False  # a poison subplan: its worker died every time
    if again and cancel_reason is not None:
        # Not finished and not out of attempts: left for a resume, not failed.
        reason = stopped_reason(cancel_reason, status, error)
        return Decision("stop", charged, crashes, 0, reason=reason)
    if again and not charge:
        return Decision("requeue", charged, crashes, 0)
    if again:
        return Decision("retry", charged, crashes, 0, delay=policy.delay(charged, rng))
    return Decision("fail", charged, crashes, 0, reason=error or status)


def stopped_reason(cancel_reason: str, status: AttemptStatus, error: str | None) -> str:
    """Why a unit the cancelled run leaves for a resume did not finish: one reason.

    The run's own reason ("cancelled by signal", a halt), and what its last attempt
    did when that was not merely being stopped, never a reason wrapped in another.

    Example:
        >>> stopped_reason("cancelled by signal", "timed_out", None)
        'cancelled by signal; its last attempt timed out'
    """
    reason = cancel_reason or "cancelled"
    if status == "cancelled":
        return reason
    what = status.replace("_", " ")
    detail = error or what
    if not detail.startswith(what):
        detail = f"{what}: {detail}"
    return f"{reason}; its last attempt {detail}"
