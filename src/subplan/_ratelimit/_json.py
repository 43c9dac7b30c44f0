"""Provider error bodies: find JSON objects around a trigger word and read their shape.

Logs embed error bodies in longer lines (``Error: 429 {"type":"error",...}``), escape them
inside other JSON (``{"error":{"message":"{\\n \\"error\\": ...}"}}``), or print a Python
``repr`` of the decoded body (``Error code: 429 - {'error': {...}}``). :func:`find_objects`
walks back from each trigger to the ``{`` that opens an object covering it and decodes it
with :meth:`json.JSONDecoder.raw_decode` (or :func:`ast.literal_eval` for a ``repr``), with
a fixed budget of attempts; control characters inside strings are accepted, because a
terminal that wraps a long line puts a line break inside a JSON string. :func:`classify` then
recognises the documented shapes:

- Anthropic: ``{"type": "error", "error": {"type": "rate_limit_error" | "overloaded_error"}}``
- OpenAI, Groq, Azure: ``{"error": {"code": "rate_limit_exceeded", "message": "... Please try
  again in 2.4s ..."}}`` (``insufficient_quota`` is billing, not a rate limit)
- Google Gemini / Vertex: ``{"error": {"status": "RESOURCE_EXHAUSTED", "details":
  [{"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "34s"}]}}``
- Codex (ChatGPT plans): ``{"error": {"type": "usage_limit_reached", "resets_at": 1777936568,
  "resets_in_seconds": 13872}}``; the absolute ``resets_at`` wins when both are given
- others (Mistral ``"type": "rate_limited"``, Discord, Cohere): a ``retry_after`` number, or
  a ``message`` that says rate-limited in words.
"""

from __future__ import annotations

import ast
import json
from collections.abc import Iterable
from dataclasses import dataclass

from ._text import KEYWORDS, PHRASE, TRY_AGAIN_IN, keyword_positions, lower, trim
from ._time import parse_duration

__all__ = ["BodyHit", "Found", "classify", "find_objects"]

_MAX_ANCHORS = 16  # the last triggers in the text: the most recent messages
_MAX_ATTEMPTS = 64  # decode attempts per text
_MAX_BACK = 8  # "{" tried per trigger, walking outwards
_WINDOW = 16384  # how far back from a trigger an object may start
_MAX_LITERAL = 16384  # longest Python repr handed to ast.literal_eval
_MAX_NODES = 2000  # values visited per classified object
_MAX_NESTING = 2  # JSON inside a string inside JSON, this deep
_RETRY_KEYS = {"retryafter": 1.0, "retryafterms": 0.001}


@dataclass(frozen=True, slots=True)
class Found:
    """A decoded object and the span ``text[start:end]`` it was decoded from."""

    start: int
    end: int
    value: object


@dataclass(frozen=True, slots=True)
class BodyHit:
    """A recognised error shape: which, the wait it states, and its text.

    ``seconds`` is a wait from now; ``reset_at`` an instant (epoch seconds) the body names
    itself, which the reader prefers when it is plausible.
    """

    source: str
    seconds: float | None
    evidence: str
    reset_at: float | None = None

    @property
    def timed(self) -> bool:
        """Whether the body says when the limit resets."""
        return self.seconds is not None or self.reset_at is not None


def _python_literal(text: str, start: int) -> tuple[int, object] | None:
    """A Python ``repr`` of a dict starting at ``text[start]``, and where it ends; or ``None``."""
    depth, quote, escaped = 0, "", False
    for at in range(start, min(len(text), start + _MAX_LITERAL)):
        char = text[at]
        if quote:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
        elif char in "{[(":
            depth += 1
        elif char in "}])":
            depth -= 1
            if depth == 0:
                try:
                    return at + 1, ast.literal_eval(text[start : at + 1])
                except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
                    return None
    return None


def _decode_at(text: str, start: int, decoder: json.JSONDecoder) -> tuple[int, object] | None:
    try:
        value, end = decoder.raw_decode(text, start)
    except (ValueError, RecursionError):
        if text[start + 1 : start + 64].lstrip().startswith("'"):
            return _python_literal(text, start)
        return None
    return end, value


def find_objects(text: str, anchors: Iterable[int] | None = None) -> list[Found]:
    """The outermost JSON (or Python ``repr``) objects that cover trigger positions.

    Args:
        text: the text to search.
        anchors: positions of trigger words; by default, every keyword of
            :data:`._ratelimit_text.KEYWORDS` in ``text``.

    Returns:
        Objects found, latest trigger first; work is bounded (at most 64 decode attempts,
        8 candidate ``{`` per trigger, 16 triggers, 16 KiB back from each).

    Example:
        >>> [f.value for f in find_objects('Error: 429 {"error": {"code": "rate_limit_exceeded"}}')]
        [{'error': {'code': 'rate_limit_exceeded'}}]
    """
    if "{" not in text:
        return []
    if anchors is None:
        anchors = keyword_positions(lower(text))
    decoder = json.JSONDecoder(strict=False)
    cache: dict[int, tuple[int, object] | None] = {}
    found: list[Found] = []
    attempts = 0
    for anchor in sorted(set(anchors), reverse=True)[:_MAX_ANCHORS]:
        if any(f.start <= anchor < f.end for f in found):
            continue
        best: Found | None = None
        at = anchor
        for _ in range(_MAX_BACK):
            at = text.rfind("{", max(0, anchor - _WINDOW), at)
            if at < 0:
                break
            if at not in cache:
                if attempts >= _MAX_ATTEMPTS:
                    break
                attempts += 1
                cache[at] = _decode_at(text, at, decoder)
            decoded = cache[at]
            if decoded is not None and decoded[0] > anchor:
                best = Found(at, decoded[0], decoded[1])
        if best is not None:
            found = [f for f in found if not best.start <= f.start < best.end]
            found.append(best)
    return found


def _number(value: object) -> float | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None


def _retry_info(details: object) -> float | None:
    """Seconds in a ``google.rpc.RetryInfo`` among ``details``."""
    if not isinstance(details, list):
        return None
    for item in details:
        if isinstance(item, dict) and str(item.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = item.get("retryDelay")
            if isinstance(delay, str):
                return parse_duration(delay)
            if isinstance(delay, dict):  # the proto3 JSON of a Duration, unrolled
                seconds, nanos = _number(delay.get("seconds")), _number(delay.get("nanos"))
                return (seconds or 0.0) + (nanos or 0.0) / 1e9
    return None


def _message_wait(node: dict[object, object]) -> float | None:
    message = node.get("message")
    if isinstance(message, str):
        m = TRY_AGAIN_IN.search(message)
        if m:
            return parse_duration(m["dur"])
    return None


def _codex(node: dict[object, object], text: str) -> BodyHit:
    seconds = _number(node.get("resets_in_seconds"))
    reset_at = _number(node.get("resets_at"))
    if reset_at is not None and reset_at < 1e9:  # not an epoch: read it as a delay
        seconds, reset_at = (reset_at if seconds is None else seconds), None
    return BodyHit("codex-json", seconds, text, reset_at)


def _shape(node: dict[object, object]) -> BodyHit | None:
    kind, code, status = node.get("type"), node.get("code"), node.get("status")
    text = trim(json.dumps(node, default=str, ensure_ascii=False))
    if "usage_limit_reached" in (kind, code):
        return _codex(node, text)
    if kind in ("rate_limit_error", "overloaded_error"):
        return BodyHit("anthropic-json", _message_wait(node), text)
    if "rate_limit_exceeded" in (code, kind):
        return BodyHit("openai-json", _message_wait(node), text)
    if status == "RESOURCE_EXHAUSTED":
        wait = _retry_info(node.get("details"))
        return BodyHit("google-json", _message_wait(node) if wait is None else wait, text)
    for key, value in node.items():
        scale = _RETRY_KEYS.get(str(key).lower().replace("-", "").replace("_", ""))
        number = _number(value)
        if scale is not None and number is not None:
            return BodyHit("retry-after", number * scale, text)
    message = node.get("message")
    if kind == "rate_limited" or (isinstance(message, str) and PHRASE.search(message)):
        return BodyHit("json-error", _message_wait(node), text)
    return None


def classify(value: object, *, nesting: int = 0) -> list[BodyHit]:
    """Rate-limit error shapes anywhere in a decoded body, outermost first.

    Strings that hold JSON themselves (an error message that is a serialised error) are
    searched too, up to two levels deep.

    Args:
        value: a decoded JSON value (dicts, lists, strings, numbers).
        nesting: how deep in serialised JSON this value already is.

    Returns:
        Every shape found; empty when none is a rate limit.

    Example:
        >>> classify({"type": "error", "error": {"type": "overloaded_error"}})[0].source
        'anthropic-json'
        >>> classify({"error": {"code": "insufficient_quota", "message": "You exceeded..."}})
        []
    """
    hits: list[BodyHit] = []
    stack: list[object] = [value]
    visited = 0
    while stack and visited < _MAX_NODES:
        node = stack.pop(0)
        visited += 1
        if isinstance(node, dict):
            hit = _shape(node)
            if hit is not None:
                hits.append(hit)
            stack.extend(node.values())
        elif isinstance(node, list | tuple):
            stack.extend(node)
        elif isinstance(node, str) and nesting < _MAX_NESTING and "{" in node:
            low = lower(node)
            if any(word in low for word in KEYWORDS):
                for inner in find_objects(node):
                    hits.extend(classify(inner.value, nesting=nesting + 1))
    return hits
