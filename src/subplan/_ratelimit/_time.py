"""Times in rate-limit messages: durations, wall-clock resets, HTTP and ISO dates, zones.

Every function here is pure: it takes ``now`` (epoch seconds) and returns epoch seconds, so
the detector in :mod:`._ratelimit` stays deterministic under an injected clock. Wall times
("resets 4pm") are resolved with :mod:`zoneinfo`, so a reset on a daylight-saving switch day
lands on the right instant.
"""

from __future__ import annotations

import math
import re
from datetime import UTC, date, datetime, time, timedelta, timezone, tzinfo
from email.utils import parsedate_to_datetime
from functools import lru_cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = [
    "DURATION",
    "MAX_WAIT",
    "SKEW",
    "WHEN",
    "Zone",
    "load_zone",
    "parse_duration",
    "parse_http_date",
    "parse_iso",
    "plausible",
    "resolve_when",
]

#: A reset this far in the past is clock skew or a message printed a moment ago: "now".
SKEW = 300.0
#: Longer waits are implausible for a run (a monthly quota, a misparse): "unknown".
MAX_WAIT = 7 * 86400.0

#: A zone: a ``tzinfo``, or ``None`` for the process's local zone (resolved by the C
#: library, which knows its daylight-saving rules even when it has no IANA name).
Zone = tzinfo | None

_UNIT_SECONDS: dict[str, float] = {
    "ms": 0.001,
    "msec": 0.001,
    "msecs": 0.001,
    "millisecond": 0.001,
    "milliseconds": 0.001,
    "s": 1.0,
    "sec": 1.0,
    "secs": 1.0,
    "second": 1.0,
    "seconds": 1.0,
    "m": 60.0,
    "min": 60.0,
    "mins": 60.0,
    "minute": 60.0,
    "minutes": 60.0,
    "h": 3600.0,
    "hr": 3600.0,
    "hrs": 3600.0,
    "hour": 3600.0,
    "hours": 3600.0,
    "d": 86400.0,
    "day": 86400.0,
    "days": 86400.0,
}
# Longest spellings first, so "ms" is not read as "m" and "minutes" not as "m".
_UNIT = (
    r"(?:milliseconds?|msecs?|ms|seconds?|secs?|s|minutes?|mins?|m|hours?|hrs?|h|days?|d)"
    r"(?![a-z])"
)
_PART = rf"\d+(?:\.\d+)?\s*{_UNIT}"
#: One or more number-unit parts: "20s", "1m30s", "1m2.5s", "250ms", "2 hours 13 minutes",
#: "4 days, 3 hours and 2 minutes". Compile with ``re.IGNORECASE``.
DURATION = rf"{_PART}(?:\s*,?\s*(?:and\s+)?{_PART})*"
_PART_RE = re.compile(rf"(\d+(?:\.\d+)?)\s*({_UNIT})", re.IGNORECASE)

_MONTH = (
    r"(?:jan(?:uary)?|feb(?:ruary)?|mar(?:ch)?|apr(?:il)?|may|june?|july?|aug(?:ust)?"
    r"|sep(?:t(?:ember)?)?|oct(?:ober)?|nov(?:ember)?|dec(?:ember)?)\.?(?![a-z])"
)
_WEEKDAY = (
    r"(?:mon(?:day)?|tue(?:s(?:day)?)?|wed(?:nesday)?|thu(?:r(?:s(?:day)?)?)?|fri(?:day)?"
    r"|sat(?:urday)?|sun(?:day)?)\.?(?![a-z])"
)
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MONTHS = {name: number for number, name in enumerate(_MONTH_NAMES, 1)}
_WEEKDAYS = {name: i for i, name in enumerate(("mon", "tue", "wed", "thu", "fri", "sat", "sun"))}

# Abbreviations with one meaning in the messages we read (US and a few common others),
# and US "Eastern Time" and friends, which follow daylight saving unlike EST/EDT.
# Ambiguous ones (IST, "CST" in China) are left out: an unknown zone means "unknown time".
_ABBREVIATIONS: dict[str, float] = {
    "UTC": 0,
    "GMT": 0,
    "Z": 0,
    "UT": 0,
    "WET": 0,
    "BST": 1,
    "CET": 1,
    "WEST": 1,
    "CEST": 2,
    "EET": 2,
    "EEST": 3,
    "JST": 9,
    "KST": 9,
    "AWST": 8,
    "ACST": 9.5,
    "ACDT": 10.5,
    "AEST": 10,
    "AEDT": 11,
    "NZST": 12,
    "NZDT": 13,
    "HST": -10,
    "AKST": -9,
    "AKDT": -8,
    "PST": -8,
    "PDT": -7,
    "MST": -7,
    "MDT": -6,
    "CST": -6,
    "CDT": -5,
    "EST": -5,
    "EDT": -4,
}
_ALIASES = {
    "ET": "America/New_York",
    "CT": "America/Chicago",
    "MT": "America/Denver",
    "PT": "America/Los_Angeles",
}
_ABBR = "|".join(sorted([*_ABBREVIATIONS, *_ALIASES], key=len, reverse=True))
_OFFSET = r"(?:utc|gmt)\s*[+-]\s*\d{1,2}(?::?\d{2})?"
# IANA names must start upper case when bare ("and/or" after a time is not a zone).
_ZONE = (
    r"(?:\s*\(\s*(?P<pzone>[a-z_]+(?:/[a-z0-9_+\-]+)+|" + _OFFSET + r"|[a-z]{1,5})\s*\)"
    r"|\s*(?P<zone>(?-i:[A-Z][A-Za-z_]+(?:/[A-Za-z0-9_+\-]+)+)|" + _OFFSET + r"(?![\d:])"
    r"|(?-i:(?:" + _ABBR + r")(?![A-Za-z]))))"
)
# Hours and minutes are range-checked here, so "resets 40 items" or "14pm" never match.
_TIME = (
    r"(?:(?P<h12>1[0-2]|0?[1-9])(?::(?P<m12>[0-5]\d))?(?::[0-5]\d)?\s*(?P<ap>[ap])\.?m\.?(?![a-z])"
    r"|(?P<h24>[01]?\d|2[0-3]):(?P<m24>[0-5]\d)(?::[0-5]\d(?:\.\d+)?)?(?![\d:])"
    r"(?!\s*[ap]\.?m(?![a-z]))"
    r"|(?P<named>noon|midnight)(?![a-z]))"
)
_DATE = (
    rf"(?:(?P<mon>{_MONTH})\s*(?P<day>\d{{1,2}})(?:st|nd|rd|th)?(?![\d:])"
    rf"(?:,?\s*(?P<year>\d{{4}})(?![\d:]))?"
    rf"|(?P<day2>\d{{1,2}})(?:st|nd|rd|th)?\s+(?P<mon2>{_MONTH})(?:,?\s*(?P<year2>\d{{4}})(?![\d:]))?"
    rf"|(?P<wd>{_WEEKDAY})|(?P<rel>today|tomorrow)(?![a-z]))"
)
_ISO = (
    r"(?P<iso>\d{4}-\d{2}-\d{2}[t ]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?(?:z|[+-]\d{2}:?\d{2})?)"
    r"(?![\d:])"
)
#: When a limit resets: an ISO timestamp, or an optional date (month and day, a weekday,
#: today/tomorrow) and a time ("4pm", "4:30 PM", "16:00", "noon") and an optional zone
#: ("(America/Los_Angeles)", "UTC", "PST", "UTC+2"). Compile with ``re.IGNORECASE``; read
#: the groups with :func:`resolve_when`.
WHEN = (
    rf"(?:{_ISO}|(?:{_DATE}\s*,?\s*(?:at\s+)?)?{_TIME}{_ZONE}?"
    r"(?:\s+(?P<rel2>today|tomorrow)(?![a-z]))?)"
)


def parse_duration(text: str) -> float | None:
    """Seconds in a duration such as ``"1m30s"``, ``"250ms"`` or ``"2 hours 13 minutes"``.

    Args:
        text: one or more number-unit parts (see :data:`DURATION`).

    Returns:
        The total in seconds, or ``None`` when ``text`` has no number-unit part.

    Example:
        >>> parse_duration("1m2.5s"), parse_duration("250ms"), parse_duration("soon")
        (62.5, 0.25, None)
    """
    parts = _PART_RE.findall(text)
    if not parts:
        return None
    return sum(float(number) * _UNIT_SECONDS[unit.lower()] for number, unit in parts)


def plausible(reset_at: float | None, now: float) -> float | None:
    """Clamp a parsed reset to what a run should wait for.

    A reset up to :data:`SKEW` seconds in the past means "now" (clock skew, or a message
    printed a moment ago); one further in the past is stale and one more than
    :data:`MAX_WAIT` ahead is implausible (a monthly quota, a misparse): both are unknown,
    and the dispatcher backs off exponentially instead of pausing a run for a month.

    Example:
        >>> plausible(1000.0, 1060.0), plausible(2000.0, 1000.0), plausible(None, 1.0)
        (1060.0, 2000.0, None)
        >>> plausible(1000.0 + 8 * 86400, 1000.0) is None
        True
    """
    if reset_at is None or not math.isfinite(reset_at):
        return None
    if reset_at < now - SKEW or reset_at - now > MAX_WAIT:
        return None
    return max(reset_at, now)


@lru_cache(maxsize=256)
def load_zone(name: str) -> tzinfo | None:
    """The zone called ``name`` (IANA, an abbreviation such as PST, or UTC+2); ``None`` if unknown.

    Example:
        >>> load_zone("America/Los_Angeles"), load_zone("utc+5:30"), load_zone("Mars/Base")
        (zoneinfo.ZoneInfo(key='America/Los_Angeles'), \
datetime.timezone(datetime.timedelta(seconds=19800)), None)
    """
    name = name.strip()
    upper = name.upper()
    if upper in _ABBREVIATIONS:
        hours = _ABBREVIATIONS[upper]
        return UTC if hours == 0 else timezone(timedelta(hours=hours))
    offset = re.fullmatch(r"(?:UTC|GMT)\s*([+-])\s*(\d{1,2})(?::?(\d{2}))?", upper)
    if offset:
        sign = -1 if offset[1] == "-" else 1
        delta = timedelta(hours=int(offset[2]), minutes=int(offset[3] or 0))
        return timezone(sign * delta) if delta < timedelta(hours=24) else None
    name = _ALIASES.get(upper, name)
    if "/" not in name:
        return None
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


def parse_http_date(text: str) -> float | None:
    """Epoch seconds of an HTTP-date (RFC 9110: IMF-fixdate, RFC 850 or asctime), else ``None``.

    Example:
        >>> parse_http_date("Wed, 21 Oct 2026 07:28:00 GMT")
        1792567680.0
    """
    try:
        parsed = parsedate_to_datetime(text.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if parsed.tzinfo is None:  # asctime carries no zone; HTTP dates are always GMT
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


def parse_iso(text: str, zone: Zone) -> float | None:
    """Epoch seconds of an ISO 8601 / RFC 3339 timestamp; one without an offset is in ``zone``.

    Example:
        >>> parse_iso("2026-11-22T06:30:00Z", None)
        1795329000.0
    """
    normalized = text.strip().upper().replace(" ", "T")
    if normalized.endswith("Z"):
        normalized = normalized[:-1] + "+00:00"
    try:
        parsed = datetime.fromisoformat(normalized)
    except ValueError:
        return None
    if parsed.tzinfo is None:
        return _timestamp(parsed.date(), parsed.time(), zone)
    return parsed.timestamp()


def _timestamp(day: date, clock: time, zone: Zone) -> float:
    if zone is None:  # a naive datetime is local time; mktime applies the local DST rules
        return datetime.combine(day, clock).timestamp()
    return datetime.combine(day, clock, tzinfo=zone).timestamp()


def _today(now: float, zone: Zone) -> date:
    return datetime.fromtimestamp(now, zone).date()


def _clock(groups: dict[str, str | None]) -> time:
    named, h12, h24 = groups.get("named"), groups.get("h12"), groups.get("h24")
    if named is not None:
        return time(12) if named.lower() == "noon" else time(0)
    if h12 is not None:  # ranges were checked by the pattern
        afternoon = (groups.get("ap") or "a").lower() == "p"
        return time(int(h12) % 12 + (12 if afternoon else 0), int(groups.get("m12") or 0))
    return time(int(h24 or 0), int(groups.get("m24") or 0))


def _zone_of(groups: dict[str, str | None], default: Zone) -> tuple[bool, Zone]:
    """(known, zone): the zone named next to the time, or ``default`` when none is named."""
    name = groups.get("pzone") or groups.get("zone")
    if name is None or name.strip().lower() == "local":
        return True, default
    zone = load_zone(name)
    return zone is not None, zone


def _on_or_after(candidates: list[date], clock: time, zone: Zone, now: float) -> float | None:
    for day in candidates:
        stamp = _timestamp(day, clock, zone)
        if stamp >= now - SKEW:
            return stamp
    return None


def resolve_when(groups: dict[str, str | None], now: float, default: Zone) -> float | None:
    """The instant a :data:`WHEN` match names: the next such time after ``now``.

    A time alone is today's if it is at most :data:`SKEW` seconds past, else tomorrow's; a
    weekday is the next such day; a month and day without a year is this year's or, when
    that has passed, next year's (so "Jan 2" read on December 30 is in the new year).

    Args:
        groups: ``match.groupdict()`` of a pattern that contains :data:`WHEN`.
        now: the reference time, epoch seconds.
        default: the zone of a time that names none (``None``: the local zone).

    Returns:
        Epoch seconds, or ``None`` for an impossible date (April 31) or an unknown zone.

    Example:
        >>> m = re.search(WHEN, "4pm (America/Los_Angeles)", re.IGNORECASE)
        >>> resolve_when(m.groupdict(), 1775055600.0, None)  # 2026-04-01 15:00 UTC
        1775084400.0
    """
    known, zone = _zone_of(groups, default)
    if not known:
        return None
    if groups.get("iso"):
        return parse_iso(str(groups["iso"]), zone)
    clock = _clock(groups)
    today = _today(now, zone)
    month = groups.get("mon") or groups.get("mon2")
    if month:
        number = _MONTHS[month[:3].lower()]
        day = int(str(groups.get("day") or groups.get("day2")))
        year = groups.get("year") or groups.get("year2")
        years = [int(year)] if year else [today.year, today.year + 1]
        candidates = []
        for y in years:
            try:
                candidates.append(date(y, number, day))
            except ValueError:
                continue
        found = _on_or_after(candidates, clock, zone, now)
        if found is None and year and candidates:  # an explicit date in the past: stale
            return _timestamp(candidates[0], clock, zone)
        return found
    relative = (groups.get("rel") or groups.get("rel2") or "").lower()
    if relative == "tomorrow":
        return _timestamp(today + timedelta(days=1), clock, zone)
    if relative == "today":
        return _timestamp(today, clock, zone)
    days = [today + timedelta(days=k) for k in range(8)]
    if groups.get("wd"):
        weekday = _WEEKDAYS[str(groups["wd"])[:3].lower()]
        days = [d for d in days if d.weekday() == weekday]
    return _on_or_after(days, clock, zone, now)
