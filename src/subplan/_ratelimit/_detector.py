"""Rate limits: the :class:`RateLimited` signal, and a detector that reads when a limit resets.

Work says "the API rate-limited me" by raising :class:`RateLimited`; a command says it in
its output. :class:`RateLimitDetector` turns either into a :class:`RateLimitInfo` whose
``reset_at`` tells the dispatcher how long to pause all dispatch, or ``None`` when there is
no evidence of a rate limit at all. A false alarm pauses a whole run and requeues failed
work for free, so the detector asks for real evidence and never reads a bare ``429``
("line 1429", "port 4290") from text.

What counts as evidence, with the ``source`` it is reported under:

============== ==================================================================
source         examples
============== ==================================================================
signal         ``raise RateLimited(retry_after=30)``
retry-after    ``Retry-After: 120``, ``Retry-After: Wed, 21 Oct 2026 07:28:00 GMT``,
               ``retry-after-ms: 1500``, ``"retry_after": 12`` (JSON key, a number)
resets-time    ``resets 4pm (America/Los_Angeles)``, ``will reset at 16:00 UTC``,
               ``try again at 3:45 PM`` (Codex)
resets-date    ``resets Apr 3, 6am (Europe/Berlin)``, ``resets Mon 9am``,
               ``try again at Jul 9th, 2026 1:47 AM``, ``resets 2026-11-22T06:30Z``
resets-in      ``session limit · resets in 1d 5h``, ``Your quota will reset after 53s``
               (Gemini CLI; "limit", "quota" or "usage" must come just before)
try-again-in   ``try again in 1m30s``, ``Please retry after 20 seconds``, ``retry in 250ms``
claude-epoch   ``Claude AI usage limit reached|1749924000``
openai-json    ``{"error": {"code": "rate_limit_exceeded", "message": "... try again in 2.4s"}}``
anthropic-json ``{"type": "error", "error": {"type": "rate_limit_error" | "overloaded_error"}}``
codex-json     ``{"error": {"type": "usage_limit_reached", "resets_at": 1777936568}}``
google-json    ``{"error": {"status": "RESOURCE_EXHAUSTED", "details": [RetryInfo 34s]}}``
json-error     other JSON errors saying it in words (Mistral ``"type": "rate_limited"``)
phrase         ``rate limit exceeded``, ``rate-limited``, ``429 Too Many Requests``,
               ``You've hit your limit``, ``openai.RateLimitError: ...``, ``You have
               exhausted your daily quota``, ``ResourceExhausted: 429 ...`` (reset unknown)
http-429       an exception whose ``status_code`` (or ``status``, ``code``) is 429
custom         a user pattern (``extra_patterns``; a ``seconds`` group gives the wait)
============== ==================================================================

Hints give a reset time only when other evidence says "rate limited", because they also
appear on healthy responses or unrelated retries: ``anthropic-ratelimit-*-reset`` and
``x-ratelimit-reset-*`` headers (``ratelimit-header``; a number is a delay, epoch seconds
or, above 10^12, epoch milliseconds as OpenRouter sends), a RetryInfo ``retryDelay`` outside
decodable JSON (``retry-delay``), and "Retrying request ... in 2s".

Precision rules: a bare "rate limit" (docs, config) is not evidence, nor ``RateLimiter`` or
``ratelimit.py``; "try again later" adds nothing; ``insufficient_quota`` (a billing limit
that waiting does not lift) and "Request too large" (a request over the per-minute limit)
void evidence near them. Text that talks *about* rate limits is not evidence either (see
:class:`._ratelimit_text.TalkFilter`): a Markdown or Slate table row, a heading or bold
label, a constant assigned a string, an "Approaching usage limit" warning; and a phrase
without a time in a sentence that states a condition ("If you hit the rate limit, ...") or a
definition ("a 429 means ...").

Times are relative to ``now``: a wall time is its next occurrence in its zone (the
detector's ``default_tz`` when the message names none); a reset up to five minutes past is
"now"; one further past, or more than seven days ahead, is unknown (``reset_at=None``): the
dispatcher then backs off exponentially instead of pausing a run for a month.

When a text holds several pieces of evidence, one with a time beats one without, and among
those the latest in the text (the most recent message) wins.
"""

from __future__ import annotations

import math
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import islice

from .._clock import Clock, SystemClock
from .._errors import ConfigError
from .._fs import read_tail
from ._json import BodyHit, classify, find_objects
from ._text import (
    KEYWORDS,
    VETOES,
    Hit,
    TalkFilter,
    evidence_around,
    lower,
    occurrences,
    scan,
    trim,
    veto_spans,
)
from ._time import MAX_WAIT, Zone, load_zone, parse_duration, plausible

__all__ = ["RateLimitDetector", "RateLimitInfo", "RateLimited"]

_MAX_CHAIN = 8  # exceptions examined along __cause__ and inside exception groups
_MAX_HEADERS = 256
_MAX_CUSTOM_MATCHES = 64  # per user pattern; the last ones are kept
_HINT_BLOCK = 1024  # hints this close to the latest hint belong to the same response
_PRIORITY_TEXT, _PRIORITY_BODY, _PRIORITY_HEADERS = 0, 1, 2


def _restore(
    cls: type[RateLimited], message: str, retry_after: float | None, reset_at: float | None
) -> RateLimited:
    return cls(message, retry_after=retry_after, reset_at=reset_at)


class RateLimited(Exception):  # a signal, not an error: no -Error suffix (STYLE.md)
    """Raised by work to say "the API rate-limited me".

    The attempt is requeued without spending an attempt, and the whole run pauses until
    the limit resets: for ``retry_after`` seconds from when it is caught, or until
    ``reset_at`` (epoch seconds). Give at most one; with neither the reset is unknown and
    the dispatcher backs off exponentially. The exception pickles, so it crosses process
    boundaries.

    Args:
        message: what the API said.
        retry_after: seconds to wait, from now.
        reset_at: when the limit resets, epoch seconds.

    Attributes:
        exit_code: the exit status of the command whose output said so, when a detector
            found the limit in a command's logs (else None).

    Example:
        >>> import pickle
        >>> error = pickle.loads(pickle.dumps(RateLimited("slow down", retry_after=30)))
        >>> error
        RateLimited('slow down', retry_after=30.0)
        >>> error.retry_after, error.reset_at
        (30.0, None)
    """

    def __init__(
        self,
        message: str = "rate limited",
        *,
        retry_after: float | None = None,
        reset_at: float | None = None,
    ) -> None:
        super().__init__(message)
        self.retry_after: float | None = None if retry_after is None else float(retry_after)
        self.reset_at: float | None = None if reset_at is None else float(reset_at)
        self.exit_code: int | None = None

    def __reduce__(
        self,
    ) -> tuple[
        object,
        tuple[type[RateLimited], str, float | None, float | None],
        dict[str, object],
    ]:
        message = str(self.args[0]) if self.args else ""
        return (_restore, (type(self), message, self.retry_after, self.reset_at), self.__dict__)

    def __repr__(self) -> str:
        shown = [repr(str(self.args[0]) if self.args else "")]
        if self.retry_after is not None:
            shown.append(f"retry_after={self.retry_after!r}")
        if self.reset_at is not None:
            shown.append(f"reset_at={self.reset_at!r}")
        return f"{type(self).__name__}({', '.join(shown)})"


@dataclass(frozen=True, slots=True)
class RateLimitInfo:
    """A detected rate limit: when it resets, which detector saw it, and what it saw.

    Attributes:
        reset_at: epoch seconds when the limit resets; ``None`` when unknown.
        source: the detector that matched (``"retry-after"``, ``"resets-time"``, ...; see
            the module documentation).
        evidence: the matched text, at most 200 characters, for the report.

    Example:
        >>> info = RateLimitInfo(reset_at=1_000_120.0, source="retry-after",
        ...                      evidence="Retry-After: 120")
        >>> info.wait(1_000_000.0), info.wait(1_000_500.0)
        (120.0, 0.0)
    """

    reset_at: float | None
    source: str
    evidence: str

    def wait(self, now: float) -> float | None:
        """Seconds from ``now`` until the reset (never negative), or ``None`` when unknown."""
        return None if self.reset_at is None else max(0.0, self.reset_at - now)


@dataclass(frozen=True, slots=True)
class _Custom:
    pattern: re.Pattern[str]
    timed: bool


def _compile(pattern: str) -> _Custom:
    if not isinstance(pattern, str):
        raise ConfigError(f"rate-limit pattern must be a string, got {pattern!r}")
    try:
        compiled = re.compile(pattern)
    except re.error as error:
        raise ConfigError(f"invalid rate-limit pattern {pattern!r}: {error}") from error
    # A pattern that can match nothing at all would call every output a rate limit.
    empty = compiled.search("") or compiled.search(" a\n")
    if empty is not None and empty.end() == empty.start():
        raise ConfigError(f"rate-limit pattern {pattern!r} matches empty text")
    return _Custom(compiled, "seconds" in compiled.groupindex)


def _zone(name: str | None) -> Zone:
    if name is None or name.strip().lower() == "local":
        return None
    zone = load_zone(name)
    if zone is None:
        raise ConfigError(f"unknown time zone {name!r} (want an IANA name such as 'Europe/Berlin')")
    return zone


def _getattr(obj: object, name: str) -> object:
    """``obj.name`` or ``None``; properties of SDK objects may raise (an unread stream)."""
    if obj is None:
        return None
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _str(value: object) -> str:
    try:
        return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    except Exception:
        return type(value).__name__


def _int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return int(value)
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return None


def _status(error: BaseException) -> int | None:
    """The HTTP status an SDK or HTTP library put on ``error`` or its ``response``."""
    for holder in (error, _getattr(error, "response")):
        for name in ("status_code", "status", "code"):
            if name == "code" and isinstance(holder, SystemExit):
                continue  # an exit status, not an HTTP one
            status = _int(_getattr(holder, name))
            if status is not None:
                return status
    return None


def _headers(error: BaseException) -> str:
    """Response headers found on ``error``, as ``name: value`` lines."""
    lines: list[str] = []
    for holder in (error, _getattr(error, "response")):
        headers = _getattr(holder, "headers")
        items = _getattr(headers, "items")
        if not callable(items):
            continue
        try:
            pairs = list(islice(items(), _MAX_HEADERS))
        except Exception:  # a broken headers object is no evidence
            pairs = []
        for pair in pairs:
            if isinstance(pair, tuple) and len(pair) == 2:
                lines.append(f"{_str(pair[0])}: {_str(pair[1])}")
    return "\n".join(lines)


def _chain(error: BaseException) -> Iterator[BaseException]:
    """``error``, its causes (``raise ... from``) and members of exception groups."""
    queue: list[BaseException] = [error]
    seen: set[int] = set()
    while queue and len(seen) < _MAX_CHAIN:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        if isinstance(current, BaseExceptionGroup):
            queue.extend(current.exceptions)
        if current.__cause__ is not None:
            queue.append(current.__cause__)


def _best(hits: list[Hit]) -> RateLimitInfo | None:
    evidence = [h for h in hits if not h.hint]
    if not evidence:
        return None
    best = max(evidence, key=lambda h: (h.reset_at is not None, h.priority, h.pos))
    if best.reset_at is not None:
        return RateLimitInfo(best.reset_at, best.source, best.evidence)
    hints = [h for h in hits if h.hint and h.reset_at is not None]
    if not hints:
        return RateLimitInfo(None, best.source, best.evidence)
    # Several reset headers of one response (requests, tokens, input, output): the latest
    # reset is the one that lifts every limit.
    latest = max((h.priority, h.pos) for h in hints)
    block = [h for h in hints if h.priority == latest[0] and h.pos >= latest[1] - _HINT_BLOCK]
    hint = max(block, key=lambda h: (h.reset_at or 0.0, h.pos))
    return RateLimitInfo(hint.reset_at, hint.source, trim(f"{best.evidence} | {hint.evidence}"))


class RateLimitDetector:
    """Decide whether a failure was a rate limit, and when the limit resets.

    The detector holds no state between calls and may be shared by threads.

    Args:
        extra_patterns: regular expressions (Python syntax) whose match also means "rate
            limited", reset unknown; a named group ``seconds`` (``try later: (?P<seconds>\\d+)``)
            gives the wait. Matched case-sensitively unless the pattern says ``(?i)``.
        default_tz: the zone of a wall time that names none ("resets 4pm"): an IANA name,
            an abbreviation such as ``"PST"``, or ``"UTC+2"``; by default the local zone.
        clock: where ``now`` comes from when a call does not pass it.

    Raises:
        ConfigError: an invalid pattern, a pattern that matches empty text, or an unknown zone.

    Example:
        >>> detector = RateLimitDetector(default_tz="UTC")
        >>> now = 1_775_055_600.0  # 2026-04-01 15:00 UTC
        >>> info = detector.detect("429 Too Many Requests\\nRetry-After: 120", now=now)
        >>> info.source, info.wait(now)
        ('retry-after', 120.0)
        >>> detector.detect("processed 429 files at line 1429", now=now) is None
        True
        >>> RateLimitDetector(extra_patterns=["quota (?P<seconds>"])
        Traceback (most recent call last):
        ...
        subplan._errors.ConfigError: invalid rate-limit pattern 'quota (?P<seconds>': \
missing ), unterminated subpattern at position 6
    """

    def __init__(
        self,
        *,
        extra_patterns: Sequence[str] = (),
        default_tz: str | None = None,
        clock: Clock | None = None,
    ) -> None:
        if isinstance(extra_patterns, str):
            raise ConfigError("extra_patterns must be a sequence of patterns, not one string")
        self._custom = tuple(_compile(pattern) for pattern in extra_patterns)
        self._zone = _zone(default_tz)
        self._zone_name = default_tz
        self._clock: Clock = SystemClock() if clock is None else clock

    def __repr__(self) -> str:
        patterns = list(self.extra_patterns)
        return f"RateLimitDetector(extra_patterns={patterns!r}, default_tz={self._zone_name!r})"

    @property
    def extra_patterns(self) -> tuple[str, ...]:
        """The patterns given as ``extra_patterns``, as written."""
        return tuple(c.pattern.pattern for c in self._custom)

    @property
    def default_tz(self) -> str | None:
        """The zone name given as ``default_tz``."""
        return self._zone_name

    def _now(self, now: float | None) -> float:
        return self._clock.time() if now is None else float(now)

    def _custom_hits(self, text: str, now: float, priority: int) -> list[Hit]:
        hits: list[Hit] = []
        for custom in self._custom:
            matches = [m for m in custom.pattern.finditer(text) if m.end() > m.start()]
            for m in matches[-_MAX_CUSTOM_MATCHES:]:
                reset_at = None
                if custom.timed and m["seconds"] is not None:
                    reset_at = _after(now, _seconds(m["seconds"]))
                evidence = evidence_around(text, m.start(), m.end())
                hits.append(Hit(m.start(), "custom", reset_at, evidence, priority=priority))
        return hits

    def _text_hits(self, text: str, now: float, priority: int) -> list[Hit]:
        """Hits in ``text``, less those near a veto word (see the module docs)."""
        hits = self._custom_hits(text, now, priority)
        low = lower(text)
        if not any(word in low for word in KEYWORDS):
            return hits
        triggers = occurrences(low)
        found = scan(text, low, now, self._zone, triggers)
        for obj in find_objects(text, [p for positions in triggers.values() for p in positions]):
            shapes = classify(obj.value)
            if shapes:
                shape = max(enumerate(shapes), key=lambda p: (p[1].timed, p[0]))[1]
                found.append(Hit(obj.end, shape.source, _shape_reset(shape, now), shape.evidence))
        vetoes = veto_spans(low) if any(word in low for word in VETOES) else []
        talk = TalkFilter(text, low)
        for hit in found:
            if talk(hit.pos, hit.source):
                continue
            # <= end: a JSON hit sits where its object ends, which may be the end of the text
            if not any(start <= hit.pos <= end for start, end in vetoes):
                hits.append(
                    Hit(hit.pos, hit.source, hit.reset_at, hit.evidence, hit.hint, priority)
                )
        return hits

    def detect(self, text: str, *, now: float | None = None) -> RateLimitInfo | None:
        """The rate limit that ``text`` (a command's output, an error message) reports.

        Args:
            text: the text to read; only windows around trigger words are examined, so a
                large log without them is cheap.
            now: the reference time, epoch seconds; by default the clock's.

        Returns:
            The rate limit, or ``None`` when ``text`` holds no evidence of one.

        Example:
            >>> detector = RateLimitDetector(default_tz="America/Los_Angeles")
            >>> now = 1_775_055_600.0  # 2026-04-01 08:00 in Los Angeles
            >>> info = detector.detect("5-hour limit reached ∙ resets 4pm", now=now)
            >>> info.source, info.wait(now) / 3600
            ('resets-time', 8.0)
        """
        return _best(self._text_hits(text, self._now(now), _PRIORITY_TEXT))

    def from_exception(
        self, exc: BaseException, *, now: float | None = None
    ) -> RateLimitInfo | None:
        """The rate limit that an exception raised by work reports.

        A :class:`RateLimited` (also as the ``__cause__`` of another exception, or inside
        an exception group) gives its own ``retry_after``/``reset_at`` (source
        ``"signal"``). Other exceptions are duck-typed like SDK and HTTP-library errors:
        response headers on ``exc.headers`` or ``exc.response.headers`` (``Retry-After``,
        reset headers), a body on ``exc.body`` or ``exc.response.text``, the message
        ``str(exc)``, and a status of 429 on ``status_code``, ``status`` or ``code`` (of the
        exception or its ``response``), which alone gives source ``"http-429"``.

        Args:
            exc: the exception.
            now: the reference time, epoch seconds; by default the clock's.

        Returns:
            The rate limit, or ``None`` when the exception is not one.

        Example:
            >>> detector = RateLimitDetector()
            >>> detector.from_exception(RateLimited(retry_after=30), now=100.0)
            RateLimitInfo(reset_at=130.0, source='signal', evidence='rate limited')
            >>> class APIError(Exception):
            ...     status_code = 429
            >>> detector.from_exception(APIError("Error code: 429"), now=100.0).source
            'http-429'
            >>> detector.from_exception(ValueError("line 1429"), now=100.0) is None
            True
        """
        moment = self._now(now)
        errors = list(_chain(exc))
        for error in errors:
            if isinstance(error, RateLimited):
                return _signal(error, moment)
        hits: list[Hit] = []
        for error in errors:
            hits.extend(self._exception_hits(error, moment))
        return _best(hits)

    def _exception_hits(self, error: BaseException, now: float) -> list[Hit]:
        message = _str(error)
        hits = self._text_hits(message, now, _PRIORITY_TEXT)
        body = _getattr(error, "body")
        if body is None:
            body = _getattr(_getattr(error, "response"), "text")
        body_text = ""
        if isinstance(body, dict | list):
            body_text = _str(body)
            for shape in classify(body):
                reset_at = _shape_reset(shape, now)
                hits.append(Hit(0, shape.source, reset_at, shape.evidence, priority=_PRIORITY_BODY))
        elif isinstance(body, str | bytes):
            body_text = _str(body)
            hits.extend(self._text_hits(body_text, now, _PRIORITY_BODY))
        headers = _headers(error)
        if headers:
            hits.extend(self._text_hits(headers, now, _PRIORITY_HEADERS))
        # A billing error (insufficient_quota) also arrives as a 429: waiting does not help.
        vetoed = any(word in lower(text) for text in (message, body_text) for word in VETOES)
        if vetoed:
            return [h for h in hits if h.source == "custom"]
        if _status(error) == 429:
            evidence = trim(f"HTTP 429 ({type(error).__name__}: {message})")
            hits.append(Hit(-1, "http-429", None, evidence))
        return hits

    def scan_file(
        self,
        path: str | os.PathLike[str],
        *,
        tail_bytes: int = 65536,
        now: float | None = None,
    ) -> RateLimitInfo | None:
        """The rate limit reported at the end of a log file (a command's stdout or stderr).

        Only the last ``tail_bytes`` are read, so a huge log costs no more than a small
        one; the latest messages are the ones that explain how a command ended. Bytes that
        are not UTF-8 are replaced, and a word cut by the start of the tail is skipped.

        Args:
            path: the file.
            tail_bytes: how many bytes to read from the end.
            now: the reference time, epoch seconds; by default the clock's.

        Returns:
            The rate limit, or ``None`` when the tail holds no evidence or the file does
            not exist (a command that never started printed nothing).

        Raises:
            ConfigError: ``tail_bytes`` is not positive.
            OSError: the file exists but cannot be read.

        Example:
            >>> import pathlib, tempfile
            >>> log = pathlib.Path(tempfile.mkdtemp()) / "stderr"
            >>> _ = log.write_text("x" * 99_999 + "\\nError: rate limit exceeded, try again in 20s")
            >>> RateLimitDetector().scan_file(log, now=0.0)
            RateLimitInfo(reset_at=20.0, source='try-again-in', \
evidence='Error: rate limit exceeded, try again in 20s')
        """
        if isinstance(tail_bytes, bool) or not isinstance(tail_bytes, int) or tail_bytes <= 0:
            raise ConfigError(f"tail_bytes must be a positive integer, got {tail_bytes!r}")
        try:
            start, data = read_tail(path, tail_bytes)
        except FileNotFoundError:
            return None
        text = data.decode("utf-8", "replace")
        if start > 0:  # "X-Retry-After: 5" cut to "Retry-After: 5" must not count
            cut = re.search(r"\s", text[:1024])
            if cut is not None:
                text = text[cut.end() :]
        return self.detect(text, now=now)


def _after(now: float, seconds: float | None) -> float | None:
    return None if seconds is None else plausible(now + seconds, now)


def _shape_reset(shape: BodyHit, now: float) -> float | None:
    """The reset an error body names: its own instant when plausible, else its wait."""
    absolute = None if shape.reset_at is None else plausible(shape.reset_at, now)
    return _after(now, shape.seconds) if absolute is None else absolute


def _seconds(text: str) -> float | None:
    try:
        seconds = float(text)
    except ValueError:
        return parse_duration(text)
    return seconds if math.isfinite(seconds) else None


def _signal(error: RateLimited, now: float) -> RateLimitInfo:
    """What a :class:`RateLimited` says: the later of its two times, never in the past."""
    candidates = []
    if error.retry_after is not None and math.isfinite(error.retry_after):
        candidates.append(now + max(0.0, error.retry_after))
    if error.reset_at is not None and math.isfinite(error.reset_at):
        candidates.append(max(now, error.reset_at))
    reset_at = max(candidates) if candidates else None
    if reset_at is not None and reset_at - now > MAX_WAIT:
        reset_at = None
    return RateLimitInfo(reset_at, "signal", trim(_str(error)) or "rate limited")
