"""The rate-limit corpus: real and documented messages that must be detected, exactly, and
look-alikes that must not (tests/data/ratelimit_corpus.json).

Every positive names its expected reset under a fixed ``now`` and default zone, so a parse
that is off by an hour (a wrong zone, a missed DST rule, tomorrow instead of today) fails.
Each case's ``origin`` says where the message shape comes from.
"""

from __future__ import annotations

import json
import pathlib
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subplan._execute._ratelimit import RateLimitDetector

CORPUS = json.loads(
    (pathlib.Path(__file__).parent.parent / "data" / "ratelimit_corpus.json").read_text("utf-8")
)
POSITIVES: list[dict[str, Any]] = CORPUS["positives"]
NEGATIVES: list[dict[str, Any]] = CORPUS["negatives"]
DETECTOR = RateLimitDetector(default_tz=CORPUS["default_tz"])


def epoch(iso: str) -> float:
    return datetime.fromisoformat(iso).timestamp()


def now_of(case: dict[str, Any]) -> float:
    return epoch(case.get("now", CORPUS["now"]))


def test_corpus_is_large_and_ids_are_unique() -> None:
    ids = [case["id"] for case in POSITIVES + NEGATIVES]
    assert len(POSITIVES) >= 40
    assert len(NEGATIVES) >= 30
    assert len(ids) == len(set(ids))


@pytest.mark.parametrize("case", POSITIVES, ids=[c["id"] for c in POSITIVES])
def test_positive_is_detected_with_its_exact_reset(case: dict[str, Any]) -> None:
    now = now_of(case)
    info = DETECTOR.detect(case["text"], now=now)
    assert info is not None, case["origin"]
    assert case["source"] == info.source
    if "wait" in case:
        assert case["wait"] == pytest.approx(info.wait(now), abs=1e-3)
    elif case["reset_at"] is None:
        assert info.reset_at is None
    else:
        assert info.reset_at is not None
        assert epoch(case["reset_at"]) == pytest.approx(info.reset_at, abs=1e-3)
    assert 0 < len(info.evidence) <= 200


@pytest.mark.parametrize("case", NEGATIVES, ids=[c["id"] for c in NEGATIVES])
def test_negative_is_not_detected(case: dict[str, Any]) -> None:
    assert DETECTOR.detect(case["text"], now=now_of(case)) is None, case["why"]


# Log noise with no trigger word: timestamps, levels, paths, numbers (429 included).
_NOISE_WORDS = ["INFO", "DEBUG", "compiled", "src/app.py", "line", "429", "1429", "0x429", "ok"]
noise_lines = st.lists(
    st.lists(st.sampled_from(_NOISE_WORDS), min_size=1, max_size=8).map(" ".join),
    max_size=20,
)


@given(
    case=st.sampled_from(POSITIVES),
    before=noise_lines,
    after=noise_lines,
)
def test_positive_in_log_noise_keeps_its_reset(
    case: dict[str, Any], before: list[str], after: list[str]
) -> None:
    now = now_of(case)
    alone = DETECTOR.detect(case["text"], now=now)
    text = "\n".join([*before, case["text"], *after])
    embedded = DETECTOR.detect(text, now=now)
    assert alone is not None and embedded is not None
    assert alone.source == embedded.source
    assert alone.reset_at == embedded.reset_at


@given(
    case=st.sampled_from(NEGATIVES),
    before=noise_lines,
    after=noise_lines,
)
def test_negative_in_log_noise_stays_negative(
    case: dict[str, Any], before: list[str], after: list[str]
) -> None:
    text = "\n".join([*before, case["text"], *after])
    assert DETECTOR.detect(text, now=now_of(case)) is None
