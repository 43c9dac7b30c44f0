"""The rate-limit corpus: real and documented messages that must be detected, exactly, and
look-alikes that must not (tests/data/ratelimit_corpus.json).

Every positive names its expected reset under a fixed ``now`` and default zone, so a parse
that is off by an hour (a wrong zone, a missed DST rule, tomorrow instead of today) fails.
Each case's ``origin`` says where the message shape comes from, and ``cite`` names the public
source it was copied from (an issue URL, or ``owner/repo:path``).

``test_corpus_scorecard`` prints precision, recall and wrong waits over the whole corpus
(``pytest -q tests/unit/test_ratelimit_corpus.py -k scorecard``) and requires them perfect.
"""

from __future__ import annotations

import json
import pathlib
import sys
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subplan._ratelimit._detector import RateLimitDetector

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


def test_cited_cases_name_their_source() -> None:
    cited = [case for case in POSITIVES + NEGATIVES if "cite" in case]
    assert len(cited) >= 60
    assert all(isinstance(case["cite"], str) and len(case["cite"]) > 10 for case in cited)


def expected_reset(case: dict[str, Any], now: float) -> float | None:
    """The reset a positive expects, epoch seconds (``None``: detected, reset unknown)."""
    if "wait" in case:
        return now + float(case["wait"])
    return None if case["reset_at"] is None else epoch(case["reset_at"])


@dataclass
class Scorecard:
    """How the detector does on the corpus; the ids of the cases it gets wrong."""

    missed: list[str] = field(default_factory=list)
    false_alarms: list[str] = field(default_factory=list)
    wrong_waits: list[str] = field(default_factory=list)
    wrong_sources: list[str] = field(default_factory=list)

    @property
    def found(self) -> int:
        return len(POSITIVES) - len(self.missed)

    @property
    def precision(self) -> float:
        alarms = self.found + len(self.false_alarms)
        return 1.0 if alarms == 0 else self.found / alarms

    @property
    def recall(self) -> float:
        return self.found / len(POSITIVES)

    def summary(self) -> str:
        lines = [
            f"rate-limit corpus: {len(POSITIVES) + len(NEGATIVES)} cases "
            f"({len(POSITIVES)} positives, {len(NEGATIVES)} negatives)",
            f"  precision {self.precision:.1%}  recall {self.recall:.1%}  "
            f"false alarms {len(self.false_alarms)}  missed {len(self.missed)}  "
            f"wrong waits {len(self.wrong_waits)}  wrong sources {len(self.wrong_sources)}",
        ]
        for name in ("missed", "false_alarms", "wrong_waits", "wrong_sources"):
            ids = getattr(self, name)
            if ids:
                lines.append(f"  {name}: {', '.join(ids)}")
        return "\n".join(lines)


def score() -> Scorecard:
    card = Scorecard()
    for case in POSITIVES:
        now = now_of(case)
        info = DETECTOR.detect(case["text"], now=now)
        if info is None:
            card.missed.append(case["id"])
            continue
        if case["source"] != info.source:
            card.wrong_sources.append(case["id"])
        expected, got = expected_reset(case, now), info.reset_at
        if (expected is None) != (got is None) or (
            expected is not None and got is not None and abs(expected - got) > 1e-3
        ):
            card.wrong_waits.append(case["id"])
    for case in NEGATIVES:
        if DETECTOR.detect(case["text"], now=now_of(case)) is not None:
            card.false_alarms.append(case["id"])
    return card


def test_corpus_scorecard(capsys: pytest.CaptureFixture[str]) -> None:
    card = score()
    with capsys.disabled():  # shown without -s: the numbers are the point of the corpus
        sys.stdout.write(f"\n{card.summary()}\n")
    assert (1.0, 1.0) == (card.precision, card.recall), card.summary()
    assert ([], []) == (card.wrong_waits, card.wrong_sources), card.summary()


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
