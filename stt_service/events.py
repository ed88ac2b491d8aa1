"""What a pipeline thread hands the event loop: its events, and the queue they travel in.

Partials are coalesced to the newest (an older one is stale before it could be sent), while
finals, utterance boundaries and failures are never dropped: a slow reader makes the
pipeline thread wait, not lose results.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections import deque
from dataclasses import dataclass


def live_segment_id(track_sid: str, start_ms: int) -> str:
    """A live final's id: derived from the track time, so the store keeps one per start."""
    return f"{track_sid}-{start_ms:09d}"


# Events handed to the event loop -------------------------------------------------------------
@dataclass(frozen=True)
class PartialEvent:
    """The utterance in progress changed."""

    text: str
    start_ms: int
    #: Track time (ms) of the newest audio the recognizer had when it produced this.
    audio_end_ms: int
    #: Monotonic time the newest audio in the batch was received, and recognizer seconds.
    received_at: float
    compute_s: float


@dataclass(frozen=True)
class FinalWord:
    """A word with times in ms from the track's start."""

    word: str
    start_ms: int
    end_ms: int
    confidence: float


@dataclass(frozen=True)
class FinalEvent:
    """A finished utterance placed on the track's timeline."""

    segment_id: str
    text: str
    start_ms: int
    end_ms: int
    confidence: float
    words: list[FinalWord]
    audio_end_ms: int
    #: Client samples from the track's start: every word before it is in this or an earlier
    #: final (the end of the audio fed when it was produced, not of the audio received).
    covered_offset: int
    received_at: float
    compute_s: float


@dataclass(frozen=True)
class BoundaryEvent:
    """An utterance ended without words (silence, or a flush with nothing pending)."""

    #: Client samples: every word before it is in a final already emitted.
    covered_offset: int


@dataclass(frozen=True)
class FailureEvent:
    """The recognizer failed on a batch; ``tripped`` when the circuit breaker opened."""

    message: str
    consecutive: int
    tripped: bool


@dataclass(frozen=True)
class ClosedEvent:
    """The pipeline thread has ended; no further events follow."""


PipelineEvent = PartialEvent | FinalEvent | BoundaryEvent | FailureEvent | ClosedEvent


class EventQueue:
    """Pipeline thread -> event loop: bounded, with partials coalesced.

    Only the newest partial waits (an older one is stale before it could be sent). Finals,
    boundaries and failures are never dropped: while ``max_events`` wait, the pipeline thread
    blocks (its audio queue then fills and drops the oldest audio, counted) until the loop
    reads or :meth:`close` is called.
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_events: int = 256) -> None:
        """Hand events to ``loop``; at most ``max_events`` (plus one partial) wait."""
        self._loop = loop
        self._max = max(1, max_events)
        self._items: deque[PipelineEvent] = deque()
        self._partial: PartialEvent | None = None
        self._cond = threading.Condition()
        self._closed = False
        self._waiter: asyncio.Future[None] | None = None

    def __len__(self) -> int:
        return len(self._items)

    def put(self, event: PipelineEvent) -> None:
        """Add an event (pipeline thread); blocks while full, discards once closed."""
        with self._cond:
            if isinstance(event, PartialEvent):
                if self._partial is not None:
                    self._items.remove(self._partial)
                self._partial = event
            else:
                while len(self._items) >= self._max and not self._closed:
                    self._cond.wait()
            if self._closed:
                return
            self._items.append(event)
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            # The loop may have closed under us at process exit: nobody is left to tell.
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(_wake, waiter)

    async def get(self) -> PipelineEvent:
        """The next event (event loop); :class:`ClosedEvent` once closed and empty."""
        while True:
            with self._cond:
                if self._items:
                    event = self._items.popleft()
                    if event is self._partial:
                        self._partial = None
                    self._cond.notify_all()
                    return event
                if self._closed:
                    return ClosedEvent()
                waiter = self._waiter = self._loop.create_future()
            try:
                await waiter
            finally:
                with self._cond:
                    if self._waiter is waiter:
                        self._waiter = None

    def close(self) -> None:
        """Nobody reads any more: unblock the pipeline thread and discard what follows."""
        with self._cond:
            self._closed = True
            self._items.clear()
            self._partial = None
            self._cond.notify_all()
            waiter, self._waiter = self._waiter, None
        if waiter is not None:
            _wake(waiter)


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)
