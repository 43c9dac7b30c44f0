"""Rate-limit evidence in free text: the patterns, and a scan that turns matches into hits.

A *hit* is one piece of evidence found at a position in the text: its source (which
pattern), the reset it names (already made plausible), and the matched text. Some hits are
*hints*: a time that is only meaningful once something else says "rate limited" (an
``x-ratelimit-reset-tokens`` header is printed on every response, a "retrying in 2s" on
every network error). :mod:`._ratelimit` ranks the hits and picks one.

Every pattern is anchored on a trigger word and tried only in a narrow window around it, so
a 64 KiB log without any trigger costs a lowercase copy and a few substring searches, and
one with triggers costs in proportion to their number.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass

from ._time import (
    DURATION,
    WHEN,
    Zone,
    parse_duration,
    parse_http_date,
    parse_iso,
    plausible,
    resolve_when,
)

__all__ = [
    "KEYWORDS",
    "PHRASE",
    "TRY_AGAIN_IN",
    "Hit",
    "TalkFilter",
    "evidence_around",
    "keyword_positions",
    "lower",
    "occurrences",
    "scan",
    "talks_about",
    "trim",
    "veto_spans",
    "windows",
]

#: Lowercase words without which no built-in pattern can match (the cheap pre-filter).
KEYWORDS = ("limit", "retry", "try again", "reset", "too many", "exhausted", "overloaded", "(429)")
#: Words that say "this 429 is not a rate limit": a billing quota (waiting does not help),
#: a gRPC message over the size limit (RESOURCE_EXHAUSTED too), a request larger than the
#: per-minute token limit (OpenAI sends ``rate_limit_exceeded``; it never succeeds).
#: Evidence near them is void.
VETOES = ("insufficient_quota", "larger than max", "request too large")
_VETO_RADIUS = 600
_PHRASE_WORDS = ("limit", "too many", "exhausted", "overloaded", "(429)")
_MAX_KEYWORD_HITS = 4096
_EVIDENCE_CHARS = 200


@dataclass(frozen=True, slots=True)
class Hit:
    """One piece of evidence: where, which detector, the plausible reset, the text.

    ``priority`` orders hits of different origins in an exception (a header beats a message).
    """

    pos: int
    source: str
    reset_at: float | None
    evidence: str
    hint: bool = False
    priority: int = 0


_I = re.IGNORECASE
_IX = re.IGNORECASE | re.VERBOSE

#: "Rate limited" in words. Bare mentions ("the rate limit is 10/s", ``RateLimiter``,
#: ``ratelimit.py``) are not evidence: an event word or a provider's error token is needed.
PHRASE = re.compile(
    r"""
      \brate[\s-]limited\b | (?-i:\bratelimited\b)
    | \brate[\s-]limits?\s+(?:has\s+been\s+|have\s+been\s+|was\s+|is\s+)?(?:reached|exceeded|hit)\b
    | \brate[\s-]limit\s+error\b
    | \b(?:exceed(?:ed|ing|s)?|reached|hit|hitting|over)\s+
        (?:(?:the|your|a|its|our|my|their|this)\s+)?(?:[\w'\u2019-]+\s+){0,3}?rate[\s-]limits?\b
    | \btoo\s+many\s+requests\b
    | \brate_limit_(?:exceeded|error)\b | \brate_limited\b | \boverloaded_error\b
    | \b529\s+overloaded\b
    | (?-i:\b(?:user)?[rR]ateLimitExceeded\b) | (?-i:\bRESOURCE_EXHAUSTED\b)
    | \b429\s+(?:resource\s+(?:has\s+been\s+)?exhausted|quota\s+exceeded)\b
    | (?-i:\bRateLimitError):[ \t]+\S
    | \b(?:usage|session|weekly|daily|hourly|monthly|\d+-hour|\d+-day)\s+limit\s+
        (?:reached|exceeded|hit)\b
    | \bhit\s+your\s+(?:[\w-]+\s+){0,2}?limits?\b
    | \bexhausted\s+your\s+(?:[\w-]+\s+){0,2}?(?:quota|capacity)\b
    | (?-i:\bResourceExhausted):\s+429\b
    | \brejected\s+\(429\)
    """,
    _IX,
)
#: "try again in 20s", "Please retry after 20 seconds", "retry in 1m30s".
TRY_AGAIN_IN = re.compile(
    rf"\b(?:try\s+again|retry)\s+(?:in|after)\s+(?:about\s+|approx(?:imately|\.)?\s+|~\s*)?"
    rf"(?P<dur>{DURATION})",
    _I,
)
# "Retrying request to /v1/messages in 0.4 seconds": SDKs say it for any retryable error.
_RETRYING_IN = re.compile(rf"\bretrying\b[^\n]{{0,80}}?\bin\s+(?P<dur>{DURATION})", _I)
# "Your limit resets in 2h", "Your quota will reset after 53s" (Gemini CLI): needs "limit",
# "quota" or "usage" just before ("the cache resets in 5m" is not). "Your limit will reset at
# 4pm" likewise (below); "resets 4pm" stands alone.
_RESETS_IN = re.compile(rf"\bresets?\s+(?:in|after)\s+(?P<dur>{DURATION})", _I)
_RESETS_AT = re.compile(
    r"\b(?:(?:resets|(?:will|limits?|quota|usage)\s+(?:be\s+)?reset)\s+(?:(?:at|on)\s+)?"
    rf"|try\s+again\s+(?:at|on|after)\s+){WHEN}",
    _I,
)
# HTTP header (printed) or a quoted key in JSON / a Python dict; never "Retry-After-Count".
_RETRY_AFTER = re.compile(
    r"""
    (?: (?<![\w-])retry-after(?P<ms>-ms)?\s*:
      | ["']retry[-_]?after(?P<qms>[-_]?ms)?["']\s*[:,]\s* )
    \s*["']?
    (?: (?P<num>\d+(?:\.\d+)?)(?![\w.:-])
      | (?P<date>(?:mon|tue|wed|thu|fri|sat|sun)[a-z]*,?\s+[^\r\n"',;]{8,40}?
                 (?:gmt|utc|[+-]\d{4}|\d{4})(?!\d)) )
    """,
    _IX,
)
_RESET_HEADER_NAME = (
    r"anthropic-ratelimit-[a-z0-9-]*?reset|x-ratelimit-reset(?:-[a-z0-9_-]+)?|ratelimit-reset"
)
_ISO_VALUE = r"\d{4}-\d{2}-\d{2}t\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?"
_RESET_HEADER = re.compile(
    rf"""
    (?: (?<![\w-])(?:{_RESET_HEADER_NAME})\s*:
      | ["'](?:{_RESET_HEADER_NAME})["']\s*[:,]\s* )
    \s*["']?
    (?: (?P<iso>{_ISO_VALUE})
      | (?P<dur>{DURATION})(?![\w.])
      | (?P<num>\d+(?:\.\d+)?)(?![\w.:-]) )
    """,
    _IX,
)
# Protobuf RetryInfo outside decodable JSON (escaped, or framed by a TUI): a hint.
_RETRY_DELAY = re.compile(r"""retryDelay\\?["']\s*:\s*\\?["'](?P<dur>\d+(?:\.\d+)?s)""")
# Claude Code's machine-readable banner: "Claude AI usage limit reached|1749924000".
_CLAUDE_EPOCH = re.compile(r"\blimit\s+reached\|(?P<epoch>\d{9,11})(?!\d)", _I)
_EXCEPT_LINE = re.compile(r"\bexcept\b")
_LIMIT_BEFORE = re.compile(r"limit|quota|usage", _I)
_EPOCH_FLOOR = 1e9  # a bare reset number above this is epoch seconds, below it a delay
_EPOCH_MS_FLOOR = 1e12  # ... and above this epoch milliseconds (OpenRouter's X-RateLimit-Reset)

# Text that talks *about* rate limits instead of reporting one. A line that is a Markdown or
# Slate table row, a Markdown heading or bold label, or a constant assigned a string holds
# no evidence; neither does a line warning that a limit is near ("Approaching usage limit").
_DOC_LINE = re.compile(
    r"""\s*(?: \|.*\|                          # | 429 | rate_limit_error | ... |
             | \d{3}\s*\|                       # 429 | Too Many Requests -- ...
             | \#{1,6}\s                         # ## Rate Limit Exceeded (429)
             | \*\*[^*\n]{1,60}\*\*              # **Trigger:** Too many requests ...
             | (?:(?:export\s+)?(?:const|let|var)\s+)?[A-Z][A-Z0-9_]*\s*=(?!=)\s*["'] )""",
    re.VERBOSE,
)
_APPROACHING = re.compile(r"\bapproaching\b", _I)
# A phrase without a time in a conditional or defining sentence is documentation: "If you hit
# the rate limit, you will receive ...", "A 429 error means you've exceeded ...".
_CONDITION = re.compile(r"\b(?:if|when|whenever|once|unless)\b", _I)
_DEFINITION = re.compile(
    r"\b(?:means|in\s+order\s+to|(?:is|are)\s+(?:caused|returned)"
    r"|will\s+(?:be\s+returned|receive|return|respond|cause))\b",
    _I,
)
_TALK_WORDS = ("if", "when", "once", "unless", "means", "order to", "caused", "returned", "will")
_SENTENCE_END = re.compile(r"[.!?:;](?=\s)|\n[ \t]*\n")
_TALK_REACH = 240  # characters examined on either side of a hit


def trim(text: str, limit: int = _EVIDENCE_CHARS) -> str:
    """``text`` with runs of whitespace made one space, cut to at most ``limit`` characters.

    Example:
        >>> trim("  Retry-After:\\n 120  ")
        'Retry-After: 120'
    """
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def evidence_around(text: str, start: int, end: int) -> str:
    """The line holding ``text[start:end]``, or 200 characters from the match if longer."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    if line_end - line_start <= _EVIDENCE_CHARS:
        return trim(text[line_start:line_end])
    begin = max(line_start, min(start - 40, end - _EVIDENCE_CHARS))
    return trim(text[begin : begin + _EVIDENCE_CHARS])


def lower(text: str) -> str:
    """``text`` lowercased with every position kept (``"İ".lower()`` has two characters).

    Example:
        >>> lower("İ Retry-After"), len(lower("İ"))
        ('İ retry-after', 1)
    """
    low = text.lower()
    if len(low) == len(text):
        return low
    return "".join(c if len(c.lower()) != 1 else c.lower() for c in text)


def occurrences(low: str, words: tuple[str, ...] = KEYWORDS) -> dict[str, list[int]]:
    """Positions of each of ``words`` in ``low`` (already lowercased), a few thousand at most."""
    found: dict[str, list[int]] = {}
    for word in words:
        positions: list[int] = []
        at = low.find(word)
        while at >= 0 and len(positions) < _MAX_KEYWORD_HITS:
            positions.append(at)
            at = low.find(word, at + 1)
        found[word] = positions
    return found


def keyword_positions(low: str, words: tuple[str, ...] = KEYWORDS) -> list[int]:
    """Sorted positions of any of ``words`` in ``low`` (already lowercased)."""
    return sorted(p for positions in occurrences(low, words).values() for p in positions)


def windows(
    positions: list[int], size: int, before: int, after: int | None = None
) -> list[tuple[int, int]]:
    """Merged ``[start, end)`` windows from ``before`` characters ahead of each position to
    ``after`` (default: ``before``) characters past it."""
    after = before if after is None else after
    merged: list[tuple[int, int]] = []
    for at in sorted(positions):
        start, end = max(0, at - before), min(size, at + after)
        if merged and start <= merged[-1][1]:
            merged[-1] = (merged[-1][0], max(merged[-1][1], end))
        else:
            merged.append((start, end))
    return merged


def veto_spans(low: str) -> list[tuple[int, int]]:
    """Spans of text near a veto word, where no evidence counts."""
    return windows(keyword_positions(low, VETOES), len(low), _VETO_RADIUS)


class TalkFilter:
    """Decides whether hits sit in text about rate limits, not in a report of one.

    Table rows, headings, bold labels, constants and "approaching the limit" warnings void
    every hit on their line; a conditional ("if", "when", "once") before a phrase in its
    sentence, or a defining word ("means", "will be returned") in it, voids a ``phrase`` hit.
    Only :data:`_TALK_REACH` characters either side of a hit are read, a line is judged once,
    and the sentence rules run only when ``low`` holds one of their words at all.

    Args:
        text: the text the hits were found in.
        low: ``lower(text)``.
    """

    def __init__(self, text: str, low: str) -> None:
        self._text = text
        self._approaching = "approaching" in low
        self._worded = any(word in low for word in _TALK_WORDS)
        self._lines: dict[int, bool] = {}

    def __call__(self, pos: int, source: str) -> bool:
        """Whether the hit of ``source`` at ``text[pos]`` is talk, not evidence."""
        text = self._text
        low = max(0, pos - _TALK_REACH)
        newline = text.rfind("\n", low, pos)
        start = newline + 1 if newline >= 0 else low
        if newline >= 0 or low == 0:  # else the line's start is out of reach: unknown
            doc = self._lines.get(start)
            if doc is None:
                doc = self._lines[start] = _DOC_LINE.match(text, start) is not None
            if doc:
                return True
        if self._approaching and _APPROACHING.search(text, start, pos):
            return True
        if source != "phrase" or not self._worded:
            return False
        for end in _SENTENCE_END.finditer(text, low, pos):
            start = max(start, end.end())
        if _CONDITION.search(text, start, pos):
            return True
        stop = _SENTENCE_END.search(text, pos, min(len(text), pos + _TALK_REACH))
        return (
            _DEFINITION.search(text, start, stop.start() if stop else pos + _TALK_REACH) is not None
        )


def talks_about(text: str, pos: int, source: str) -> bool:
    """Whether the hit of ``source`` at ``text[pos]`` sits in text about rate limits.

    See :class:`TalkFilter`, which the detector uses to judge many hits in one text.

    Example:
        >>> talks_about("| 429 | rate_limit_error | Your account hit a rate limit |", 8, "phrase")
        True
        >>> talks_about("If you hit the rate limit, you will receive a 429.", 7, "phrase")
        True
        >>> talks_about("Error: rate limit exceeded", 7, "phrase")
        False
    """
    return TalkFilter(text, lower(text))(pos, source)


def _seconds(text: str | None, now: float) -> float | None:
    seconds = parse_duration(text or "")
    return None if seconds is None else plausible(now + seconds, now)


def scan(
    text: str, low: str, now: float, zone: Zone, found: dict[str, list[int]] | None = None
) -> list[Hit]:
    """Every hit of the built-in text patterns in ``text``.

    Each pattern is tried only in narrow windows around its own trigger words, so the cost
    follows the number of triggers, not the length of the text.

    Args:
        text: the text, original case.
        low: ``lower(text)``.
        now: the reference time for relative and wall-clock times.
        zone: the zone of a wall time that names none (``None``: local).
        found: ``occurrences(low)``, when the caller has it already.

    Returns:
        Hits in no particular order.
    """
    found = dict(occurrences(low) if found is None else found)
    found["retrying"] = [p for p in found["retry"] if low.startswith("retrying", p)]
    found["retrydelay"] = [p for p in found["retry"] if low.startswith("retrydelay", p)]
    found["ratelimit"] = [p - 4 for p in found["limit"] if low.startswith("rate", p - 4)]

    def matches(
        pattern: re.Pattern[str], words: tuple[str, ...], before: int, after: int
    ) -> Iterator[re.Match[str]]:
        positions = [p for word in words for p in found[word]]
        for start, end in windows(positions, len(text), before, after):
            yield from pattern.finditer(text, start, end)

    hits: list[Hit] = []

    def add(m: re.Match[str], source: str, reset_at: float | None, *, hint: bool = False) -> None:
        evidence = evidence_around(text, m.start(), m.end())
        hits.append(Hit(m.start(), source, reset_at, evidence, hint=hint))

    for m in matches(PHRASE, _PHRASE_WORDS, 120, 40):
        line_start = text.rfind("\n", 0, m.start()) + 1
        in_code = _EXCEPT_LINE.search(text, line_start, m.start())
        if in_code and m.group().startswith("RateLimitError"):
            continue  # "except openai.RateLimitError: ..." is code, not an error
        add(m, "phrase", None)
    for m in matches(_CLAUDE_EPOCH, ("limit",), 0, 40):
        add(m, "claude-epoch", plausible(float(m["epoch"]), now))
    for m in matches(TRY_AGAIN_IN, ("try again", "retry"), 0, 200):
        add(m, "try-again-in", _seconds(m["dur"], now))
    for m in matches(_RETRYING_IN, ("retrying",), 0, 250):
        add(m, "try-again-in", _seconds(m["dur"], now), hint=True)
    for m in matches(_RESETS_IN, ("reset",), 0, 200):
        if _LIMIT_BEFORE.search(text, max(0, m.start() - 160), m.start()):
            add(m, "resets-in", _seconds(m["dur"], now))
    for m in matches(_RESETS_AT, ("reset", "try again"), 40, 200):
        if m.group()[:4].lower() == "will" and not _LIMIT_BEFORE.search(
            text, max(0, m.start() - 80), m.start()
        ):
            continue  # "the counter will reset at noon" is not about a limit
        groups = m.groupdict()
        dated = any(groups.get(g) for g in ("iso", "mon", "mon2", "wd", "rel", "rel2"))
        reset_at = plausible(resolve_when(groups, now, zone), now)
        add(m, "resets-date" if dated else "resets-time", reset_at)
    for m in matches(_RETRY_AFTER, ("retry",), 2, 120):
        if m["num"] is not None:
            scale = 0.001 if (m["ms"] or m["qms"]) else 1.0
            add(m, "retry-after", plausible(now + float(m["num"]) * scale, now))
        else:
            stamp = parse_http_date(m["date"])
            if stamp is not None:
                add(m, "retry-after", plausible(stamp, now))
    for m in matches(_RESET_HEADER, ("ratelimit",), 20, 120):
        if m["iso"] is not None:
            stamp = parse_iso(m["iso"], zone)
        elif m["dur"] is not None:
            stamp = now + (parse_duration(m["dur"]) or 0.0)
        else:
            number = float(m["num"])
            if number > _EPOCH_MS_FLOOR:
                number /= 1000.0
            stamp = number if number > _EPOCH_FLOOR else now + number
        add(m, "ratelimit-header", plausible(stamp, now), hint=True)
    for m in matches(_RETRY_DELAY, ("retrydelay",), 0, 60):
        add(m, "retry-delay", _seconds(m["dur"], now), hint=True)
    return hits
