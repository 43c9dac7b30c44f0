"""What follows an attempt's end: the decision table, and the budgets it never overspends."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subplan._dispatch._decision import Decision, decide, stopped_reason
from subplan._dispatch._results import AttemptStatus
from subplan._dispatch._retry import RetryPolicy

POLICY = RetryPolicy(retries=2, backoff_base=0.0, max_crashes=2, max_rate_limits=3)
BOOM = RuntimeError("boom")


class Fatal(Exception):
    retryable = False


def decided(
    status: AttemptStatus,
    *,
    charged: int = 0,
    crashes: int = 0,
    rate_limits: int = 0,
    charge: bool = True,
    error: BaseException | None = BOOM,
    cancel_reason: str | None = None,
    policy: RetryPolicy = POLICY,
) -> Decision:
    return decide(
        status,
        policy=policy,
        rng=random.Random(0),
        charged=charged,
        crashes=crashes,
        rate_limits=rate_limits,
        charge=charge,
        exception=error,
        error=None if error is None else str(error),
        cancel_reason=cancel_reason,
    )


@pytest.mark.parametrize(
    ("status", "given", "expected"),
    [
        pytest.param("succeeded", {"rate_limits": 2}, ("succeed", 0, 0, 2, None), id="success"),
        pytest.param("failed", {}, ("retry", 1, 0, 0, None), id="first-failure-retries"),
        pytest.param("failed", {"charged": 1}, ("retry", 2, 0, 0, None), id="second-retries"),
        pytest.param("failed", {"charged": 2}, ("fail", 3, 0, 0, "boom"), id="out-of-attempts"),
        pytest.param("failed", {"rate_limits": 2}, ("retry", 1, 0, 0, None), id="resets-limits"),
        pytest.param("failed", {"error": Fatal("no")}, ("fail", 1, 0, 0, "no"), id="not-retryable"),
        pytest.param("failed", {"error": None}, ("fail", 1, 0, 0, "failed"), id="unpassed"),
        pytest.param("timed_out", {"error": Fatal("t")}, ("retry", 1, 0, 0, None), id="timeout"),
        pytest.param("timed_out", {"charged": 2}, ("fail", 3, 0, 0, "boom"), id="last-timeout"),
        pytest.param("cancelled", {"error": None}, ("retry", 1, 0, 0, None), id="cancelled-try"),
        pytest.param("crashed", {}, ("retry", 1, 1, 0, None), id="first-crash"),
        pytest.param("crashed", {"crashes": 1}, ("fail", 1, 2, 0, "boom"), id="poison"),
        pytest.param(
            "crashed", {"charge": False}, ("requeue", 0, 1, 0, None), id="uncharged-crash"
        ),
        pytest.param(
            "crashed",
            {"charge": False, "crashes": 1},
            ("fail", 0, 2, 0, "boom"),
            id="uncharged-but-poison",
        ),
        pytest.param(
            "failed", {"charge": False, "charged": 2}, ("requeue", 2, 0, 0, None), id="innocent"
        ),
        pytest.param(
            "failed",
            {"charge": False, "error": Fatal("x")},
            ("requeue", 0, 0, 0, None),
            id="innocent-even-if-fatal",
        ),
        pytest.param(
            "failed",
            {"cancel_reason": "cancelled by signal"},
            ("stop", 1, 0, 0, "cancelled by signal; its last attempt failed: boom"),
            id="cancelled-run-stops-a-retry",
        ),
        pytest.param(
            "cancelled",
            {"cancel_reason": "halted"},
            ("stop", 1, 0, 0, "halted"),
            id="stopped-by-the-cancel",
        ),
        pytest.param(
            "failed",
            {"cancel_reason": "x", "charged": 2},
            ("fail", 3, 0, 0, "boom"),
            id="cancelled-run-still-fails-the-spent",
        ),
        pytest.param(
            "failed",
            {"cancel_reason": "", "charge": False},
            ("stop", 0, 0, 0, "cancelled; its last attempt failed: boom"),
            id="empty-reason-is-still-a-cancel",
        ),
        pytest.param("rate_limited", {}, ("pause", 0, 0, 1, None), id="limited-pauses"),
        pytest.param(
            "rate_limited", {"charged": 2, "crashes": 1}, ("pause", 2, 1, 1, None), id="no-spend"
        ),
        pytest.param("rate_limited", {"rate_limits": 2}, ("pause", 0, 0, 3, None), id="third"),
        pytest.param(
            "rate_limited",
            {"rate_limits": 3},
            ("fail", 0, 0, 4, "rate limited 4 times in a row (boom)"),
            id="too-many-limits",
        ),
        pytest.param(
            "rate_limited",
            {"cancel_reason": "cancelled"},
            ("stop", 0, 0, 1, "cancelled; its last attempt rate limited: boom"),
            id="limited-in-a-cancelled-run",
        ),
        pytest.param(
            "rate_limited",
            {"cancel_reason": "cancelled", "rate_limits": 3},
            ("fail", 0, 0, 4, "rate limited 4 times in a row (boom)"),
            id="too-many-limits-even-when-cancelled",
        ),
        pytest.param(
            "interrupted", {"error": None}, ("fail", 1, 0, 0, "interrupted"), id="interrupted"
        ),
    ],
)
def test_the_decision_table(
    status: AttemptStatus,
    given: dict[str, object],
    expected: tuple[str, int, int, int, str | None],
) -> None:
    decision = decided(status, **given)  # type: ignore[arg-type]
    actual = (
        decision.action,
        decision.charged,
        decision.crashes,
        decision.rate_limits,
        decision.reason,
    )
    assert expected == actual


def test_a_retry_waits_the_policys_backoff_drawn_once_from_the_rng() -> None:
    policy = RetryPolicy(retries=5, backoff_base=4.0, backoff_cap=60.0)
    rng, twin = random.Random(3), random.Random(3)
    decision = decide(
        "failed", policy=policy, rng=rng, charged=2, crashes=0, rate_limits=0, exception=BOOM
    )
    assert "retry" == decision.action
    assert policy.delay(3, twin) == decision.delay  # the third retry's ceiling: 16 s
    assert twin.random() == rng.random()  # one draw, no more


@pytest.mark.parametrize("status", ["succeeded", "rate_limited", "crashed", "failed"])
def test_only_a_retry_draws_from_the_rng(status: AttemptStatus) -> None:
    rng, twin = random.Random(5), random.Random(5)
    decision = decide(
        status, policy=POLICY, rng=rng, charged=2, crashes=1, rate_limits=0, exception=BOOM
    )
    assert "retry" != decision.action
    assert 0.0 == decision.delay
    assert twin.random() == rng.random()


def test_the_stopped_reason_never_wraps_a_reason_in_another() -> None:
    assert "halted" == stopped_reason("halted", "cancelled", "cancelled by the run")
    assert "c; its last attempt timed out" == stopped_reason("c", "timed_out", None)
    assert "c; its last attempt timed out after 5 s" == stopped_reason(
        "c", "timed_out", "timed out after 5 s"
    )


statuses = st.sampled_from(
    ["succeeded", "failed", "timed_out", "cancelled", "rate_limited", "crashed", "interrupted"]
)
policies = st.builds(
    RetryPolicy,
    retries=st.integers(0, 4),
    backoff_base=st.floats(0.0, 10.0),
    max_crashes=st.integers(1, 4),
    max_rate_limits=st.integers(1, 4),
    retry_unpassed=st.booleans(),
)


@given(
    policy=policies,
    ends=st.lists(
        st.tuples(statuses, st.booleans(), st.sampled_from([None, BOOM, Fatal("x")])),
        max_size=40,
    ),
    cancel_after=st.none() | st.integers(0, 40),
    seed=st.integers(0, 2**32),
)
def test_a_unit_never_spends_more_than_its_budgets(
    policy: RetryPolicy,
    ends: list[tuple[AttemptStatus, bool, BaseException | None]],
    cancel_after: int | None,
    seed: int,
) -> None:
    rng = random.Random(seed)
    charged = crashes = rate_limits = 0
    for index, (status, charge, error) in enumerate(ends):
        cancel_reason = "cancelled" if cancel_after is not None and index >= cancel_after else None
        decision = decide(
            status,
            policy=policy,
            rng=rng,
            charged=charged,
            crashes=crashes,
            rate_limits=rate_limits,
            charge=charge,
            exception=error,
            cancel_reason=cancel_reason,
        )
        spent = decision.charged - charged
        # Only a charged end of an attempt that was not rate limited spends one.
        assert (1 if charge and status not in ("succeeded", "rate_limited") else 0) == spent
        if decision.action in ("retry", "requeue", "pause"):
            assert cancel_reason is None, "a cancelled run runs nothing again"
            assert decision.charged <= policy.max_attempts, "retried beyond the attempts"
            assert decision.crashes < policy.max_crashes, "a poison subplan run again"
            assert decision.rate_limits <= policy.max_rate_limits
        if decision.action == "retry":
            assert decision.charged < policy.max_attempts, "retried beyond the attempts"
            assert 0.0 <= decision.delay <= policy.backoff_cap
        else:
            assert 0.0 == decision.delay
        assert (decision.action in ("stop", "fail")) == (decision.reason is not None)
        if decision.action in ("succeed", "fail", "stop"):
            return  # the unit is done with (or left for a resume)
        charged, crashes, rate_limits = decision.charged, decision.crashes, decision.rate_limits
