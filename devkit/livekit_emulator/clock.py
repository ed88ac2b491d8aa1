"""Clocks for the emulator: callables that return epoch nanoseconds, as LiveKit stamps time.

Everything the emulator reports (room and participant times, webhook ``created_at``, egress
and file times) and everything it records (which part of a track an egress captures) reads
one such clock, so a test can drive a meeting with :class:`ManualClock` without sleeping,
and the demo can run a meeting faster than real time with :class:`ScaledClock`.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeAlias

#: A clock: returns the current time in nanoseconds since the Unix epoch.
Clock: TypeAlias = Callable[[], int]

_NS_PER_S = 1_000_000_000


class ManualClock:
    """A clock that moves only when told to, for tests that step through a meeting.

    Args:
        start_ns: The initial reading (epoch ns); ``None`` starts at the current wall time.
    """

    def __init__(self, start_ns: int | None = None) -> None:
        self._now_ns = time.time_ns() if start_ns is None else start_ns

    def __call__(self) -> int:
        """The current reading in epoch nanoseconds."""
        return self._now_ns

    def advance(self, seconds: float) -> None:
        """Move the clock ``seconds`` forward.

        Raises:
            ValueError: ``seconds`` is negative (LiveKit's clock does not run backwards; use
                :meth:`set` to jump on purpose).
        """
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds}")
        self._now_ns += round(seconds * _NS_PER_S)

    def set(self, ns: int) -> None:
        """Set the reading to ``ns`` epoch nanoseconds (forwards or backwards)."""
        self._now_ns = ns


class ScaledClock:
    """A clock that starts at the wall time of its creation and runs ``speed`` times faster.

    Elapsed time is measured with the monotonic clock, so the scaled time never jumps when the
    system's wall clock is adjusted.

    Args:
        speed: How many clock seconds pass per real second (the demo's ``--speed``).

    Raises:
        ValueError: ``speed`` is not positive.
    """

    def __init__(self, speed: float) -> None:
        if speed <= 0:
            raise ValueError(f"speed must be > 0, got {speed}")
        self.speed = speed
        self._origin_ns = time.time_ns()
        self._origin_monotonic_ns = time.monotonic_ns()

    def __call__(self) -> int:
        """The current reading in epoch nanoseconds."""
        elapsed = time.monotonic_ns() - self._origin_monotonic_ns
        return self._origin_ns + round(elapsed * self.speed)
