"""When and how long to wait before calling a model again after a transient failure.

Providers raise :class:`TransientError` for failures the next attempt may not see (429, 5xx,
timeouts, lost connections); :class:`~orchestrator_service.summary.mapreduce.LLMSummarizer`
retries those with the backoff of a :class:`RetryPolicy`.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

#: HTTP statuses worth another try: timeout, rate limit and server-side failures.
RETRYABLE_STATUSES = frozenset({408, 429, 500, 502, 503, 504})


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for rate limits, outages and timeouts.

    Attributes:
        attempts: Calls made at most for one request (the first included).
        base_delay_s: Wait after the first failure; doubled after each further one.
        max_delay_s: Longest wait, also for a server's ``Retry-After``.
        jitter: Up to this fraction is added at random, so that callers that failed
            together do not retry together.
    """

    attempts: int = 5
    base_delay_s: float = 1.0
    max_delay_s: float = 60.0
    jitter: float = 0.25

    def delay(self, failures: int, retry_after_s: float | None = None) -> float:
        """Seconds to wait after ``failures`` failed calls (at least what the server asked)."""
        backoff = self.base_delay_s * 2.0 ** (failures - 1)
        backoff *= 1 + self.jitter * random.random()
        return min(self.max_delay_s, max(backoff, retry_after_s or 0.0))


class TransientError(Exception):
    """A call failed in a way the next attempt may not (429, 5xx, timeout, connection).

    Attributes:
        retry_after_s: How long the server asked the caller to wait, if it did.
    """

    def __init__(self, message: str, *, retry_after_s: float | None = None) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


def parse_retry_after(value: str | None) -> float | None:
    """``Retry-After`` in seconds (an HTTP date is rare from APIs and treated as absent)."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if math.isfinite(seconds) and seconds >= 0 else None
