"""ASV benchmarks of rate-limit detection on a 64 KiB command log, beside ``str.lower``.

Detection runs on every failed command's output, so its cost is tracked as a ratio to the
one pass over the text it cannot avoid (a lowercase copy), on logs without triggers, dense
with real rate-limit errors, and dense with documentation about rate limits.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from subplan import RateLimitDetector

SIZE = 65536
LOGS = {
    "quiet": "INFO compiled src/app.py line 1429 in 0.2s: ok\n",
    "errors": 'Error: 429 {"type":"error","error":{"type":"rate_limit_error",'
    '"message":"Rate limited"}} Please try again in 2s\n',
    "docs": "If you hit the rate limit, you will receive an HTTP 429 error.\n"
    "| 429 | rate_limit_error | Your account has hit a rate limit. |\n",
}


def make_log(kind: str) -> str:
    """``SIZE`` characters of the ``kind`` of line repeated."""
    line = LOGS[kind]
    return (line * (SIZE // len(line) + 1))[:SIZE]


class RateLimitSuite:
    """``RateLimitDetector.detect`` over 64 KiB of one kind of log."""

    params = tuple(LOGS)
    param_names = ("log",)

    def setup(self, kind: str) -> None:
        self.text = make_log(kind)
        self.detector = RateLimitDetector(default_tz="UTC")

    def time_detect(self, kind: str) -> None:
        self.detector.detect(self.text, now=0.0)

    def track_ratio_to_lower(self, kind: str) -> float:
        """Seconds per detect over seconds per ``text.lower()``, best of five runs each."""

        def best(call: Callable[[], object], repeat: int) -> float:
            times = []
            for _ in range(5):
                start = time.perf_counter()
                for _ in range(repeat):
                    call()
                times.append((time.perf_counter() - start) / repeat)
            return min(times)

        detect = best(lambda: self.detector.detect(self.text, now=0.0), 3)
        baseline = best(self.text.lower, 50)
        return detect / baseline

    track_ratio_to_lower.unit = "ratio"  # type: ignore[attr-defined]
