"""Rate-limit detection: the signal, the detector's options, times, exceptions, log files.

The message corpus lives in test_ratelimit_corpus.py; these tests pin the rules around it
(which evidence wins, DST, skew, the seven-day cap, vetoes, work bounds) and the duck-typed
reading of SDK exceptions, using real objects where the standard library has them
(``urllib.error.HTTPError``, ``email.message.Message`` headers).
"""

from __future__ import annotations

import concurrent.futures
import copy
import email.message
import json
import math
import multiprocessing
import os
import pathlib
import pickle
import time
import urllib.error
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from subplan._errors import ConfigError
from subplan._ratelimit import _json as _ratelimit_json
from subplan._ratelimit._detector import RateLimitDetector, RateLimited, RateLimitInfo
from subplan._ratelimit._json import classify, find_objects
from subplan._ratelimit._text import KEYWORDS, evidence_around, lower, trim
from subplan._ratelimit._time import (
    MAX_WAIT,
    SKEW,
    load_zone,
    parse_iso,
    plausible,
)
from subplan.testing import FakeClock

NOW = datetime(2026, 4, 1, 15, 0, tzinfo=UTC).timestamp()  # a Wednesday
LA = ZoneInfo("America/Los_Angeles")


def at(
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, *, tz: ZoneInfo | None = None
) -> float:
    return datetime(year, month, day, hour, minute, tzinfo=tz or UTC).timestamp()


def round_trip(error: RateLimited) -> RateLimited:
    """Through pickle, as across a process boundary (our own bytes: S301 does not apply)."""
    clone: RateLimited = pickle.loads(pickle.dumps(error))  # noqa: S301
    return clone


@pytest.fixture
def detector() -> RateLimitDetector:
    return RateLimitDetector(default_tz="UTC")


# --- RateLimited ---------------------------------------------------------------------


def test_rate_limited_defaults() -> None:
    error = RateLimited()
    assert "rate limited" == str(error)
    assert (None, None) == (error.retry_after, error.reset_at)
    assert "RateLimited('rate limited')" == repr(error)


@pytest.mark.parametrize(
    "error",
    [
        RateLimited(),
        RateLimited("slow", retry_after=30),
        RateLimited("slow", reset_at=1_800_000_000.5),
        RateLimited("both", retry_after=1, reset_at=2),
    ],
    ids=["bare", "retry-after", "reset-at", "both"],
)
def test_rate_limited_pickles_and_copies(error: RateLimited) -> None:
    for clone in (round_trip(error), copy.copy(error), copy.deepcopy(error)):
        assert type(error) is type(clone)
        assert str(error) == str(clone)
        assert (error.retry_after, error.reset_at) == (clone.retry_after, clone.reset_at)
        assert repr(error) == repr(clone)


class ProviderLimited(RateLimited):
    """A user's subclass, with an extra attribute."""

    provider: str


def test_rate_limited_subclass_keeps_type_and_attributes_across_pickle() -> None:
    error = ProviderLimited("openai", retry_after=5)
    error.provider = "openai"
    error.add_note("attempt 3")
    clone = round_trip(error)
    assert isinstance(clone, ProviderLimited)
    assert ProviderLimited is type(clone)
    assert "openai" == clone.provider
    assert ["attempt 3"] == clone.__notes__
    assert 5.0 == clone.retry_after


def test_rate_limited_raised_in_another_process_arrives_whole() -> None:
    context = multiprocessing.get_context("spawn")
    with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
        # exec is a builtin, so the spawned worker needs nothing from this test module
        code = "raise RateLimited('from a worker', reset_at=1.8e9)"
        future = pool.submit(exec, code, {"RateLimited": RateLimited})
        error = future.exception(timeout=60)
    assert isinstance(error, RateLimited)
    assert ("from a worker", None, 1.8e9) == (str(error), error.retry_after, error.reset_at)


def test_rate_limited_coerces_numbers() -> None:
    assert 3.0 == RateLimited(retry_after=3).retry_after
    with pytest.raises((TypeError, ValueError)):
        RateLimited(retry_after="soon")  # type: ignore[arg-type]


@given(
    retry_after=st.none() | st.floats(allow_nan=False),
    reset_at=st.none() | st.floats(allow_nan=False),
    message=st.text(max_size=50),
)
def test_rate_limited_pickle_round_trip_property(
    retry_after: float | None, reset_at: float | None, message: str
) -> None:
    clone = round_trip(RateLimited(message, retry_after=retry_after, reset_at=reset_at))
    assert (message, retry_after, reset_at) == (str(clone), clone.retry_after, clone.reset_at)


# --- RateLimitInfo -------------------------------------------------------------------


def test_info_wait_is_never_negative_and_none_when_unknown() -> None:
    info = RateLimitInfo(reset_at=100.0, source="retry-after", evidence="Retry-After: 10")
    assert 10.0 == info.wait(90.0)
    assert 0.0 == info.wait(500.0)
    assert RateLimitInfo(None, "phrase", "rate limited").wait(0.0) is None


# --- options -------------------------------------------------------------------------


def test_invalid_pattern_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match=r"invalid rate-limit pattern 'quota \(\[': "):
        RateLimitDetector(extra_patterns=["quota (["])


@pytest.mark.parametrize("pattern", ["", "x*", r"\b", "^", "(?m)$"])
def test_pattern_matching_empty_text_is_refused(pattern: str) -> None:
    with pytest.raises(ConfigError, match="matches empty text"):
        RateLimitDetector(extra_patterns=[pattern])


def test_one_string_instead_of_a_list_is_refused() -> None:
    with pytest.raises(ConfigError, match="not one string"):
        RateLimitDetector(extra_patterns="quota")


def test_non_string_pattern_is_refused() -> None:
    with pytest.raises(ConfigError, match="must be a string"):
        RateLimitDetector(extra_patterns=[42])  # type: ignore[list-item]


def test_unknown_default_zone_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown time zone 'Mars/Olympus'"):
        RateLimitDetector(default_tz="Mars/Olympus")


@pytest.mark.parametrize(
    ("zone", "expected"),
    [
        ("America/Los_Angeles", at(2026, 4, 1, 23)),
        ("PST", at(2026, 4, 2, 0)),
        ("UTC+2", at(2026, 4, 2, 14)),
    ],
)
def test_default_zone_forms(zone: str, expected: float) -> None:
    info = RateLimitDetector(default_tz=zone).detect("resets 4pm", now=NOW)
    assert info is not None
    assert expected == info.reset_at


def test_custom_pattern_means_rate_limited_with_unknown_reset() -> None:
    detector = RateLimitDetector(extra_patterns=[r"QUOTA_HIT"])
    info = detector.detect("agent: QUOTA_HIT for model x", now=NOW)
    assert RateLimitInfo(None, "custom", "agent: QUOTA_HIT for model x") == info
    assert detector.detect("agent: quota_hit", now=NOW) is None  # patterns keep their case


@pytest.mark.parametrize(
    ("text", "wait"),
    [("busy, wait 42 s", 42.0), ("busy, wait 1m30s s", 90.0), ("busy, wait soon s", None)],
)
def test_custom_pattern_seconds_group_gives_the_wait(text: str, wait: float | None) -> None:
    detector = RateLimitDetector(extra_patterns=[r"busy, wait (?P<seconds>\S+) s"])
    info = detector.detect(text, now=NOW)
    assert info is not None and "custom" == info.source
    assert wait == info.wait(NOW)


def test_custom_pattern_optional_seconds_group_unmatched() -> None:
    detector = RateLimitDetector(extra_patterns=[r"busy(?:, wait (?P<seconds>\d+))?"])
    info = detector.detect("busy!", now=NOW)
    assert info is not None and info.reset_at is None


def test_custom_pattern_is_not_vetoed(detector: RateLimitDetector) -> None:
    custom = RateLimitDetector(extra_patterns=["insufficient_quota"])
    assert custom.detect('{"code": "insufficient_quota"}', now=NOW) is not None


def test_clock_gives_now_when_not_passed() -> None:
    clock = FakeClock(wall_offset=NOW)
    detector = RateLimitDetector(clock=clock)
    clock.advance(100)
    info = detector.detect("try again in 20s")
    assert info is not None
    assert NOW + 120 == info.reset_at
    assert NOW + 100 + 30 == detector.from_exception(RateLimited(retry_after=30)).reset_at  # type: ignore[union-attr]


def test_repr_names_options() -> None:
    shown = repr(RateLimitDetector(extra_patterns=["x+"], default_tz="UTC"))
    assert "extra_patterns=['x+']" in shown and "UTC" in shown


# --- times ---------------------------------------------------------------------------


def test_dst_spring_forward_day() -> None:
    """2026-03-08: Los Angeles moves from PST to PDT at 2am; 4pm is 23:00 UTC, 14 h on."""
    now = at(2026, 3, 8, 9)  # 01:00 PST
    info = RateLimitDetector().detect("resets 4pm (America/Los_Angeles)", now=now)
    assert info is not None
    assert at(2026, 3, 8, 23) == info.reset_at
    assert 14 * 3600 == info.wait(now)


def test_dst_fall_back_day() -> None:
    """2026-11-01: PDT to PST at 2am; 4pm PST is midnight UTC, 16 h after 01:00 PDT."""
    now = at(2026, 11, 1, 8)  # 01:00 PDT
    info = RateLimitDetector().detect("resets 4pm (America/Los_Angeles)", now=now)
    assert info is not None
    assert 16 * 3600 == info.wait(now)


@pytest.fixture
def local_zone_berlin() -> Iterator[None]:
    old = os.environ.get("TZ")
    os.environ["TZ"] = "Europe/Berlin"
    time.tzset()
    try:
        yield
    finally:
        if old is None:
            del os.environ["TZ"]
        else:
            os.environ["TZ"] = old
        time.tzset()


@pytest.mark.usefixtures("local_zone_berlin")
def test_local_zone_is_the_default_and_follows_dst() -> None:
    # 2026-03-29: Berlin moves to CEST at 2am; at 00:30 CET, 4pm CEST is 14:00 UTC.
    now = at(2026, 3, 28, 23, 30)
    info = RateLimitDetector().detect("resets 4pm", now=now)
    assert info is not None
    assert at(2026, 3, 29, 14) == info.reset_at


def test_wall_time_within_skew_is_now(detector: RateLimitDetector) -> None:
    now = NOW + 4 * 60
    info = detector.detect("resets 3pm (UTC)", now=now)
    assert info is not None
    assert now == info.reset_at
    assert 0.0 == info.wait(now)


def test_wall_time_beyond_skew_is_tomorrow(detector: RateLimitDetector) -> None:
    now = NOW + 6 * 60
    info = detector.detect("resets 3pm (UTC)", now=now)
    assert info is not None
    assert NOW + 86400 == info.reset_at


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("Retry-After: Wed, 01 Apr 2026 14:50:00 GMT", "an absolute time 10 minutes past"),
        ("usage limit reached, resets on April 3, 2025 06:00 UTC", "an explicit past year"),
        ("Retry-After: 700000", "eight days"),
        ("rate limit exceeded, resets Feb 30, 6am (UTC)", "no such date"),
        ("You've hit your limit · resets 4pm (Mars/Olympus)", "unknown zone"),
        ("usage limit reached, resets 4pm (XYZ)", "unknown abbreviation"),
    ],
)
def test_detected_but_reset_unknown(detector: RateLimitDetector, text: str, reason: str) -> None:
    info = detector.detect(text, now=NOW)
    assert info is not None, reason
    assert info.reset_at is None, reason


def test_retry_after_asctime_and_bad_dates(detector: RateLimitDetector) -> None:
    info = detector.detect("Retry-After: Wed Apr  1 15:10:00 2026", now=NOW)
    assert info is not None
    assert 600.0 == info.wait(NOW)
    assert detector.detect("Retry-After: Wed, 99 Foo 2026 99:99:99 GMT", now=NOW) is None


def test_seven_days_is_the_cap() -> None:
    assert NOW + MAX_WAIT == plausible(NOW + MAX_WAIT, NOW)
    assert plausible(NOW + MAX_WAIT + 1, NOW) is None
    assert NOW == plausible(NOW - SKEW, NOW)
    assert plausible(NOW - SKEW - 1, NOW) is None
    assert plausible(math.inf, NOW) is None


def test_zone_parsing_helpers() -> None:
    assert load_zone("(nonsense)") is None
    assert load_zone("UTC+25") is None
    assert load_zone("utc") is UTC
    assert parse_iso("not a date", None) is None
    assert at(2026, 4, 1, 16, tz=LA) == parse_iso("2026-04-01 16:00", LA)


def test_parenthesised_non_zone_is_ignored(detector: RateLimitDetector) -> None:
    info = detector.detect("usage limit reached, resets 4pm (in about 1 hour)", now=NOW)
    assert info is not None
    assert at(2026, 4, 1, 16) == info.reset_at


def test_local_keyword_means_default_zone() -> None:
    info = RateLimitDetector(default_tz="UTC").detect("resets 4pm (local)", now=NOW)
    assert info is not None
    assert at(2026, 4, 1, 16) == info.reset_at


def test_today_keyword(detector: RateLimitDetector) -> None:
    info = detector.detect("usage limit reached, resets today at 5pm", now=NOW)
    assert info is not None
    assert at(2026, 4, 1, 17) == info.reset_at


@given(
    offset=st.integers(min_value=0, max_value=400 * 86400),
    hour=st.integers(min_value=0, max_value=23),
    minute=st.integers(min_value=0, max_value=59),
    zone=st.sampled_from(["America/Los_Angeles", "Europe/Berlin", "Australia/Lord_Howe", "UTC"]),
)
def test_wall_time_is_the_next_occurrence_in_its_zone(
    offset: int, hour: int, minute: int, zone: str
) -> None:
    now = at(2026, 1, 1) + offset
    info = RateLimitDetector().detect(f"resets {hour:02d}:{minute:02d} ({zone})", now=now)
    assert info is not None and info.reset_at is not None
    assert now - SKEW <= info.reset_at <= now + 86400 + 3600
    if info.reset_at > now:  # not clamped to now: check the wall time
        wall = datetime.fromtimestamp(info.reset_at, ZoneInfo(zone))
        gap = wall.replace(hour=hour, minute=minute) != wall  # a time skipped by DST
        assert gap or (hour, minute) == (wall.hour, wall.minute)


@given(seconds=st.integers(min_value=0, max_value=int(MAX_WAIT)))
def test_retry_after_seconds_round_trip(seconds: int) -> None:
    info = RateLimitDetector().detect(f"HTTP/1.1 429\nRetry-After: {seconds}\n", now=NOW)
    assert info is not None
    assert seconds == info.wait(NOW)


@given(
    hours=st.integers(min_value=0, max_value=48),
    minutes=st.integers(min_value=0, max_value=59),
    seconds=st.integers(min_value=0, max_value=59),
    style=st.sampled_from(
        ["{h}h{m}m{s}s", "{h} hours {m} minutes {s} seconds", "{h}h, {m}m and {s}s"]
    ),
)
def test_try_again_in_durations_sum_exactly(
    hours: int, minutes: int, seconds: int, style: str
) -> None:
    text = "Rate limit reached. Please try again in " + style.format(h=hours, m=minutes, s=seconds)
    info = RateLimitDetector().detect(text, now=0.0)
    assert info is not None
    assert hours * 3600 + minutes * 60 + seconds == info.wait(0.0)


# --- which evidence wins -------------------------------------------------------------


def test_timed_evidence_beats_untimed_even_when_earlier(detector: RateLimitDetector) -> None:
    info = detector.detect("try again in 20s\n...\nError: rate limit exceeded", now=NOW)
    assert info is not None
    assert ("try-again-in", 20.0) == (info.source, info.wait(NOW))


def test_latest_timed_evidence_wins(detector: RateLimitDetector) -> None:
    text = "rate limited; try again in 20s\nlater...\nYou've hit your limit · resets 4pm (UTC)"
    info = detector.detect(text, now=NOW)
    assert info is not None
    assert ("resets-time", at(2026, 4, 1, 16)) == (info.source, info.reset_at)


def test_json_body_beats_the_phrase_inside_it(detector: RateLimitDetector) -> None:
    body = {
        "error": {
            "code": "rate_limit_exceeded",
            "message": "Rate limit reached. Please try again in 3s.",
        }
    }
    info = detector.detect("Error: " + json.dumps(body), now=NOW)
    assert info is not None
    assert "openai-json" == info.source
    assert 3.0 == pytest.approx(info.wait(NOW))


def test_hints_alone_are_not_evidence(detector: RateLimitDetector) -> None:
    assert detector.detect('x-ratelimit-reset-tokens: 6m0s\nretryDelay": "3s"', now=NOW) is None


def test_latest_hint_block_gives_the_time(detector: RateLimitDetector) -> None:
    old = "x-ratelimit-reset-tokens: 50s\n" + "compiling...\n" * 200
    text = (
        old
        + "HTTP/1.1 429 Too Many Requests\nx-ratelimit-reset-requests: 2s\nx-ratelimit-reset: 5\n"
    )
    info = detector.detect(text, now=NOW)
    assert info is not None
    assert ("ratelimit-header", 5.0) == (info.source, info.wait(NOW))
    assert info.evidence.startswith("HTTP/1.1 429 Too Many Requests | ")


def test_reset_header_epoch_and_delay_forms(detector: RateLimitDetector) -> None:
    epoch = detector.detect(f"too many requests\nX-RateLimit-Reset: {int(NOW) + 40}", now=NOW)
    delay = detector.detect("too many requests\nRateLimit-Reset: 40", now=NOW)
    quoted = detector.detect("""too many requests {'x-ratelimit-reset-requests': '40s'}""", now=NOW)
    assert epoch is not None and delay is not None and quoted is not None
    assert 40.0 == epoch.wait(NOW) == delay.wait(NOW) == quoted.wait(NOW)


def test_retry_delay_hint_outside_decodable_json(detector: RateLimitDetector) -> None:
    text = '│ "status": "RESOURCE_EXHAUSTED",\n│ "retryDelay": "21s"\n│ }'
    info = detector.detect(text, now=NOW)
    assert info is not None
    assert ("retry-delay", 21.0) == (info.source, info.wait(NOW))


def test_veto_is_local(detector: RateLimitDetector) -> None:
    billing = "openai.RateLimitError: Error code: 429 - {'error': {'code': 'insufficient_quota'}}"
    assert detector.detect(billing, now=NOW) is None
    later = billing + "\n" + "working...\n" * 100 + "Error: rate limit exceeded"
    info = detector.detect(later, now=NOW)
    assert info is not None and "phrase" == info.source


def test_except_line_is_code_but_traceback_line_is_evidence(detector: RateLimitDetector) -> None:
    assert detector.detect("    except RateLimitError: pass", now=NOW) is None
    assert detector.detect("RateLimitError: rate limit", now=NOW) is not None


def test_evidence_is_trimmed_to_200_characters(detector: RateLimitDetector) -> None:
    text = "x" * 500 + " rate limit exceeded " + "y" * 500
    info = detector.detect(text, now=NOW)
    assert info is not None
    assert len(info.evidence) <= 200
    assert "rate limit exceeded" in info.evidence


def test_text_helpers() -> None:
    assert "a b" == trim(" a \n\t b ")
    assert 10 == len(trim("z" * 50, 10))
    assert "one" == evidence_around("zero\none\ntwo", 5, 8)
    # a character whose lowercase is longer must not shift positions
    assert len("İİ rate limit exceeded") == len(lower("İİ rate limit exceeded"))


def test_unicode_before_evidence_keeps_positions(detector: RateLimitDetector) -> None:
    info = detector.detect("İ" * 50 + " Retry-After: 9", now=NOW)
    assert info is not None
    assert 9.0 == info.wait(NOW)


# --- JSON ----------------------------------------------------------------------------


def test_find_objects_takes_the_outermost_object() -> None:
    text = 'log {"outer": {"inner": {"type": "rate_limit_error"}}, "n": 1} tail'
    (found,) = find_objects(text)
    assert {"outer": {"inner": {"type": "rate_limit_error"}}, "n": 1} == found.value
    assert text.index("{") == found.start


def test_find_objects_without_braces_or_anchors() -> None:
    assert [] == find_objects("rate limit exceeded")
    assert [] == find_objects("{not json} rate limit exceeded")


def test_python_repr_that_is_not_a_literal() -> None:
    assert [] == find_objects("Error: {'error': foo()} rate limit")
    assert [] == find_objects("Error: {'error': 'unterminated rate limit")


def test_decode_attempts_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    real = _ratelimit_json._decode_at

    def counting(text: str, start: int, decoder: json.JSONDecoder) -> object:
        calls.append(start)
        return real(text, start, decoder)

    monkeypatch.setattr(_ratelimit_json, "_decode_at", counting)
    # many braces, none opening JSON, triggers far enough apart to each need fresh attempts
    text = ("{ " * 10 + "rate limit ") * 500
    assert [] == find_objects(text)
    assert 64 == len(calls)


def test_python_repr_with_escaped_quote(detector: RateLimitDetector) -> None:
    text = "Error: {'message': 'it\\'s \"busy\"', 'type': 'rate_limited'} rate limit"
    info = detector.detect(text, now=NOW)
    assert info is not None and "json-error" == info.source


def test_string_with_braces_but_no_trigger_is_not_searched() -> None:
    assert [] == classify({"message": "{not json}", "n": [1, 2]})


def test_deeply_nested_json_does_not_crash(detector: RateLimitDetector) -> None:
    text = "rate limit exceeded " + "{" * 100_000
    info = detector.detect(text, now=NOW)
    assert info is not None and "phrase" == info.source


@pytest.mark.parametrize(
    ("body", "source", "seconds"),
    [
        (
            {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}},
            "anthropic-json",
            None,
        ),
        (
            {"error": {"type": "rate_limit_exceeded", "message": "Try again in 2s"}},
            "openai-json",
            2.0,
        ),
        (
            {"error": {"status": "RESOURCE_EXHAUSTED", "message": "Please retry in 5s."}},
            "google-json",
            5.0,
        ),
        ({"error": {"status": "RESOURCE_EXHAUSTED", "details": "n/a"}}, "google-json", None),
        ({"retry_after_ms": 1500}, "retry-after", 1.5),
        ({"retryAfter": "12"}, "retry-after", 12.0),
        ({"message": "You are being rate limited."}, "json-error", None),
        (["x", {"type": "rate_limited"}], "json-error", None),
    ],
)
def test_classify_shapes(body: object, source: str, seconds: float | None) -> None:
    (hit,) = classify(body)
    assert (source, seconds) == (hit.source, hit.seconds)


@pytest.mark.parametrize(
    "body",
    [
        {"retry_after": True},
        {"retry_after": None},
        {"retry_after": "soon"},
        {"error": {"status": "RESOURCE_EXHAUSTED", "details": [{"@type": "x.Help"}, 3]}},
        {"message": 42},
        {
            "error": {
                "status": "RESOURCE_EXHAUSTED",
                "details": [{"@type": "google.rpc.RetryInfo", "retryDelay": 5}],
            }
        },
    ],
)
def test_classify_ignores_what_is_not_a_wait(body: object) -> None:
    assert all(hit.seconds is None for hit in classify(body))


# --- exceptions ----------------------------------------------------------------------


def test_signal_retry_after(detector: RateLimitDetector) -> None:
    assert RateLimitInfo(NOW + 30, "signal", "slow down") == detector.from_exception(
        RateLimited("slow down", retry_after=30), now=NOW
    )


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (RateLimited(reset_at=NOW + 100), NOW + 100),
        (RateLimited(retry_after=10, reset_at=NOW + 100), NOW + 100),
        (RateLimited(retry_after=200, reset_at=NOW + 100), NOW + 200),
        (RateLimited(retry_after=-5), NOW),
        (RateLimited(reset_at=NOW - 3600), NOW),
        (RateLimited(retry_after=30 * 86400), None),
        (RateLimited(retry_after=math.nan), None),
        (RateLimited(), None),
    ],
    ids=[
        "reset-at",
        "later-of-both",
        "later-of-both-2",
        "negative",
        "past",
        "a-month",
        "nan",
        "none",
    ],
)
def test_signal_times(
    detector: RateLimitDetector, error: RateLimited, expected: float | None
) -> None:
    info = detector.from_exception(error, now=NOW)
    assert info is not None and "signal" == info.source
    assert expected == info.reset_at


def test_signal_as_cause_or_in_a_group(detector: RateLimitDetector) -> None:
    try:
        try:
            raise RateLimited(retry_after=7)
        except RateLimited as inner:
            raise RuntimeError("agent failed") from inner
    except RuntimeError as outer:
        wrapped = outer
    group = ExceptionGroup("tasks", [ValueError("x"), RateLimited(retry_after=8)])
    assert NOW + 7 == detector.from_exception(wrapped, now=NOW).reset_at  # type: ignore[union-attr]
    assert NOW + 8 == detector.from_exception(group, now=NOW).reset_at  # type: ignore[union-attr]


def test_implicit_context_is_not_followed(detector: RateLimitDetector) -> None:
    # a handler that failed while handling a RateLimited: not itself a rate limit
    error = ValueError("handler failed")
    error.__context__ = RateLimited(retry_after=7)
    assert detector.from_exception(error, now=NOW) is None


def test_cause_cycle_terminates(detector: RateLimitDetector) -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__cause__, b.__cause__ = b, a
    assert detector.from_exception(a, now=NOW) is None


class FakeResponse:
    def __init__(self, status_code: int, headers: object = None, text: object = None) -> None:
        self.status_code = status_code
        self.headers = headers if headers is not None else {}
        self._text = text

    @property
    def text(self) -> object:
        if isinstance(self._text, Exception):
            raise self._text
        return self._text


class FakeAPIStatusError(Exception):
    """The shape of openai/anthropic SDK errors: status_code, response, body."""

    def __init__(self, message: str, *, response: FakeResponse, body: object = None) -> None:
        super().__init__(message)
        self.response = response
        self.status_code = response.status_code
        self.body = body


def test_sdk_error_retry_after_header_wins(detector: RateLimitDetector) -> None:
    body = {"error": {"code": "rate_limit_exceeded", "message": "Please try again in 2s."}}
    error = FakeAPIStatusError(
        "Error code: 429",
        response=FakeResponse(429, {"Retry-After": "30", "x-request-id": "r1"}),
        body=body,
    )
    info = detector.from_exception(error, now=NOW)
    assert info is not None
    assert ("retry-after", 30.0) == (info.source, info.wait(NOW))


def test_sdk_error_body_gives_the_time(detector: RateLimitDetector) -> None:
    body = {"error": {"code": "rate_limit_exceeded", "message": "Please try again in 2s."}}
    error = FakeAPIStatusError("Error code: 429", response=FakeResponse(429), body=body)
    info = detector.from_exception(error, now=NOW)
    assert info is not None
    assert ("openai-json", 2.0) == (info.source, info.wait(NOW))


def test_anthropic_error_with_reset_headers(detector: RateLimitDetector) -> None:
    headers = {
        "anthropic-ratelimit-requests-reset": "2026-04-01T15:00:20Z",
        "anthropic-ratelimit-tokens-reset": "2026-04-01T15:00:50Z",
    }
    body = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow"}}
    error = FakeAPIStatusError("Error code: 429", response=FakeResponse(429, headers), body=body)
    info = detector.from_exception(error, now=NOW)
    assert info is not None
    assert ("ratelimit-header", 50.0) == (info.source, info.wait(NOW))


def test_bare_status_429_from_an_attribute(detector: RateLimitDetector) -> None:
    error = FakeAPIStatusError("Error code: 429", response=FakeResponse(429))
    info = detector.from_exception(error, now=NOW)
    assert info is not None
    assert ("http-429", None) == (info.source, info.reset_at)


def test_status_429_with_billing_body_is_not_a_rate_limit(detector: RateLimitDetector) -> None:
    body = {"error": {"code": "insufficient_quota", "message": "You exceeded your current quota"}}
    error = FakeAPIStatusError("Error code: 429", response=FakeResponse(429), body=body)
    assert detector.from_exception(error, now=NOW) is None
    text_body = FakeAPIStatusError("429", response=FakeResponse(429), body=json.dumps(body))
    assert detector.from_exception(text_body, now=NOW) is None


def test_other_status_without_evidence(detector: RateLimitDetector) -> None:
    error = FakeAPIStatusError("Error code: 500", response=FakeResponse(500))
    assert detector.from_exception(error, now=NOW) is None


def test_response_text_is_read_when_there_is_no_body(detector: RateLimitDetector) -> None:
    retry_info = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "9s"}
    text = json.dumps({"error": {"status": "RESOURCE_EXHAUSTED", "details": [retry_info]}})
    error = FakeAPIStatusError("failed", response=FakeResponse(400, text=text))
    info = detector.from_exception(error, now=NOW)
    assert info is not None
    assert ("google-json", 9.0) == (info.source, info.wait(NOW))


def test_bytes_body(detector: RateLimitDetector) -> None:
    error = FakeAPIStatusError("failed", response=FakeResponse(400), body=b"Too Many Requests")
    info = detector.from_exception(error, now=NOW)
    assert info is not None and "phrase" == info.source


def test_raising_properties_and_broken_headers_are_ignored(detector: RateLimitDetector) -> None:
    class BrokenHeaders:
        def items(self) -> object:
            raise RuntimeError("stream not read")

    class BadStr(Exception):
        def __str__(self) -> str:
            raise RuntimeError("no")

    error = FakeAPIStatusError(
        "failed", response=FakeResponse(503, BrokenHeaders(), text=RuntimeError("not read"))
    )
    assert detector.from_exception(error, now=NOW) is None
    assert detector.from_exception(BadStr(), now=NOW) is None


def test_header_items_that_are_not_pairs_are_skipped(detector: RateLimitDetector) -> None:
    class OddHeaders:
        def items(self) -> list[object]:
            return ["retry-after", ("retry-after", "4", "x"), (b"Retry-After", b"6")]

    error = FakeAPIStatusError("failed", response=FakeResponse(503, OddHeaders()))
    info = detector.from_exception(error, now=NOW)
    assert info is not None
    assert 6.0 == info.wait(NOW)


def test_urllib_http_error_is_read_for_real(detector: RateLimitDetector) -> None:
    headers = email.message.Message()
    headers["Retry-After"] = "7"
    error = urllib.error.HTTPError(
        "https://api.example/v1", 429, "Too Many Requests", headers, None
    )
    info = detector.from_exception(error, now=NOW)
    assert info is not None
    assert ("retry-after", 7.0) == (info.source, info.wait(NOW))


@pytest.mark.parametrize(
    "status",
    [HTTPStatus.TOO_MANY_REQUESTS, "429"],
    ids=["IntEnum-code", "string-status"],
)
def test_status_attribute_forms(detector: RateLimitDetector, status: object) -> None:
    error = ValueError("quota")
    error.code = status  # type: ignore[attr-defined]
    info = detector.from_exception(error, now=NOW)
    assert info is not None and "http-429" == info.source


@pytest.mark.parametrize("status", [True, "four", None, 429.0])
def test_non_integer_status_is_not_a_status(detector: RateLimitDetector, status: object) -> None:
    error = ValueError("quota")
    error.status_code = status  # type: ignore[attr-defined]
    assert detector.from_exception(error, now=NOW) is None


def test_system_exit_429_is_an_exit_code(detector: RateLimitDetector) -> None:
    assert detector.from_exception(SystemExit(429), now=NOW) is None


def test_message_text_of_a_plain_exception(detector: RateLimitDetector) -> None:
    info = detector.from_exception(RuntimeError("API said: try again in 20s"), now=NOW)
    assert info is not None
    assert ("try-again-in", 20.0) == (info.source, info.wait(NOW))
    assert detector.from_exception(ValueError("line 1429"), now=NOW) is None


# --- log files -----------------------------------------------------------------------


def test_scan_file_reads_only_the_tail(detector: RateLimitDetector, tmp_path: pathlib.Path) -> None:
    log = tmp_path / "stderr"
    log.write_text("Error: rate limit exceeded\n" + "ok\n" * 40_000)
    assert detector.scan_file(log, now=NOW) is None
    assert detector.scan_file(log, tail_bytes=10**7, now=NOW) is not None


def test_scan_file_skips_the_word_cut_by_the_tail(
    detector: RateLimitDetector, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "stdout"
    line = "X-Retry-After: 5\n"
    log.write_text("a" * 100 + line)
    assert detector.scan_file(log, tail_bytes=len(line) - 2, now=NOW) is None  # "Retry-After: 5"
    assert detector.scan_file(log, tail_bytes=len(line), now=NOW) is None


def test_scan_file_small_file_and_bad_utf8(
    detector: RateLimitDetector, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "out"
    log.write_bytes(b"\xff\xfe garbage \x80\nRetry-After: 3\n")
    info = detector.scan_file(str(log), now=NOW)
    assert info is not None
    assert 3.0 == info.wait(NOW)


def test_scan_file_tail_without_whitespace(
    detector: RateLimitDetector, tmp_path: pathlib.Path
) -> None:
    log = tmp_path / "out"
    log.write_text("x" * 5000 + '{"retry_after":4}')
    info = detector.scan_file(log, tail_bytes=100, now=NOW)
    assert info is not None
    assert 4.0 == info.wait(NOW)


def test_scan_file_missing_is_none(detector: RateLimitDetector, tmp_path: pathlib.Path) -> None:
    assert detector.scan_file(tmp_path / "never-written", now=NOW) is None


def test_scan_file_unreadable_raises(detector: RateLimitDetector, tmp_path: pathlib.Path) -> None:
    with pytest.raises(IsADirectoryError):
        detector.scan_file(tmp_path, now=NOW)


@pytest.mark.parametrize("tail", [0, -1, 1.5, True])
def test_scan_file_tail_must_be_positive(
    detector: RateLimitDetector, tmp_path: pathlib.Path, tail: object
) -> None:
    with pytest.raises(ConfigError, match="tail_bytes"):
        detector.scan_file(tmp_path / "x", tail_bytes=tail, now=NOW)  # type: ignore[arg-type]


# --- precision properties ------------------------------------------------------------


def _has_trigger(text: str) -> bool:
    low = text.lower()
    return any(word in low for word in KEYWORDS)


@given(st.text(max_size=500).filter(lambda t: not _has_trigger(t)))
def test_text_without_trigger_words_never_matches(text: str) -> None:
    assert RateLimitDetector().detect(text, now=NOW) is None


_TEMPLATES = [
    "line {n}",
    "error at 0x{n}",
    "port {n}",
    "processed {n} files",
    "HTTP {n}",
    "HTTP/1.1 {n}",
    "issue #{n}",
    "status {n}",
    "Error code: {n}",
    "rate of {n} per second",
    "took {n}ms",
    "{n} tests passed",
    "exit code {n}",
    "retried {n} times",
    "limit {n}",
    "reset {n} counters",
    "resets {n} items",
    "memory limit {n} MB",
    "Retry-After-Count: {n}",
    "X-Retry-After: {n}",
    "x-ratelimit-remaining: {n}",
    "x-ratelimit-reset: {n}",
    "retry_after={n}",
    '{{"status": {n}, "limit": {n}}}',
]
_NOISE = st.lists(
    st.sampled_from(["INFO", "WARN", "src/app.py:12", "ok", "done", "--", "[worker-3]", "{", "}"]),
    max_size=6,
).map(" ".join)


@given(
    lines=st.lists(
        st.tuples(
            st.sampled_from(_TEMPLATES),
            st.integers(min_value=0, max_value=10**6) | st.sampled_from([429, 4290, 1429, 42900]),
            _NOISE,
        ),
        min_size=1,
        max_size=30,
    )
)
def test_numbers_in_log_noise_never_match(lines: list[tuple[str, int, str]]) -> None:
    text = "\n".join(f"{noise} {template.format(n=n)} {noise}" for template, n, noise in lines)
    assert RateLimitDetector().detect(text, now=NOW) is None


def test_far_future_now_is_fine() -> None:
    now = (datetime(2026, 4, 1, tzinfo=UTC) + timedelta(days=3650)).timestamp()
    info = RateLimitDetector(default_tz="UTC").detect("resets 4pm", now=now)
    assert info is not None and info.reset_at is not None


# --- Codex usage limits, and text that talks about rate limits ------------------------


def test_codex_resets_at_beats_resets_in_seconds(detector: RateLimitDetector) -> None:
    body = '{"error": {"type": "usage_limit_reached", "resets_at": %d, "resets_in_seconds": 60}}'
    info = detector.detect(body % (NOW + 3600), now=NOW)
    assert info is not None
    assert ("codex-json", 3600.0) == (info.source, info.wait(NOW))


def test_codex_stale_resets_at_falls_back_to_resets_in_seconds(detector: RateLimitDetector) -> None:
    body = '{"error": {"type": "usage_limit_reached", "resets_at": %d, "resets_in_seconds": 60}}'
    info = detector.detect(body % (NOW - 86400), now=NOW)
    assert info is not None
    assert ("codex-json", 60.0) == (info.source, info.wait(NOW))


def test_codex_small_resets_at_is_a_delay() -> None:
    (shape,) = classify({"error": {"type": "usage_limit_reached", "resets_at": 90}})
    assert (90.0, None) == (shape.seconds, shape.reset_at)


def test_codex_body_on_an_sdk_error(detector: RateLimitDetector) -> None:
    body = {"error": {"type": "usage_limit_reached", "resets_at": NOW + 600}}
    error = FakeAPIStatusError("Error code: 429", response=FakeResponse(429), body=body)
    info = detector.from_exception(error, now=NOW)
    assert info is not None
    assert ("codex-json", 600.0) == (info.source, info.wait(NOW))


@pytest.mark.parametrize(
    "text",
    [
        "| 429 | rate_limit_error | Your account has hit a rate limit. |",
        "429 | Too Many Requests -- You're being rate limited.",
        "## Rate limit exceeded",
        "**Status:** Too many requests",
        'RATE_LIMIT_EXCEEDED = "rate_limit_exceeded"',
        "If you hit the rate limit, you will receive a 429 error.",
        "A 429 error means you have exceeded the rate limit.",
        "Approaching usage limit · resets 4pm",
    ],
)
def test_text_about_rate_limits_is_not_evidence(detector: RateLimitDetector, text: str) -> None:
    assert detector.detect(text, now=NOW) is None


def test_talk_rules_stay_on_their_line_and_sentence(detector: RateLimitDetector) -> None:
    # A table above a real error does not hide it; a condition in the previous sentence neither.
    text = "| code | meaning |\n| 429 | rate limited |\nIf it fails we retry. Rate limit exceeded."
    info = detector.detect(text, now=NOW)
    assert info is not None
    assert "phrase" == info.source
    # The start of a line longer than the reach is unknown: not taken for a table row.
    long_line = "x" * 60 + "| 429 | " + "y" * 231 + " rate limit exceeded"  # reach starts at "|"
    assert detector.detect(long_line, now=NOW) is not None


def test_conditional_does_not_void_a_timed_hit(detector: RateLimitDetector) -> None:
    info = detector.detect("When the API said so: try again in 20s", now=NOW)
    assert info is not None
    assert 20.0 == info.wait(NOW)


def test_veto_reaches_a_json_hit_at_the_very_end(detector: RateLimitDetector) -> None:
    body = '{"error": {"code": "rate_limit_exceeded", "message": "Request too large for gpt-4o"}}'
    assert detector.detect(body, now=NOW) is None


def test_reset_header_in_epoch_milliseconds(detector: RateLimitDetector) -> None:
    text = f'Rate limit exceeded {{"X-RateLimit-Reset": "{(NOW + 90) * 1000:.0f}"}}'
    info = detector.detect(text, now=NOW)
    assert info is not None
    assert ("ratelimit-header", 90.0) == (info.source, info.wait(NOW))


@pytest.mark.parametrize(
    ("text", "wait"),
    [
        ("Your quota will reset after 1h2m3s.", 3723.0),
        ("usage limit reached; resets after 90s", 90.0),
        ("the cache will reset after 5s", None),  # no limit, quota or usage before it
    ],
)
def test_reset_after_needs_a_limit_word(
    detector: RateLimitDetector, text: str, wait: float | None
) -> None:
    info = detector.detect(text, now=NOW)
    assert wait == (None if info is None else info.wait(NOW))
