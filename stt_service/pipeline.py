"""One client's inference pipeline: its own bounded queue, its own thread, its own recognizer.

The event loop only enqueues audio (never blocks, never waits for the recognizer). The
pipeline thread blocks on its queue, takes everything queued up to a maximum batch (so an
idle server answers each chunk at once and a loaded one amortizes recognizer calls), feeds
the recognizer, and hands results back with ``loop.call_soon_threadsafe`` into the client's
own event queue. One slow client therefore never delays another.

Timestamps come from the sample offsets the client sends, not from how much audio was fed:
a piecewise map from "samples fed to the recognizer" to "samples since track start" keeps
word times true across dropped audio, gaps and reconnects.
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import threading
import time
from collections import deque
from dataclasses import dataclass, field

import numpy as np

from roomscribe.audio import PcmResampler
from stt_service.recognizer import Recognizer, Utterance

log = logging.getLogger(__name__)


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
    received_at: float
    compute_s: float


@dataclass(frozen=True)
class FailureEvent:
    """The recognizer failed on a batch; ``tripped`` when the circuit breaker opened."""

    message: str
    consecutive: int
    tripped: bool


@dataclass(frozen=True)
class ClosedEvent:
    """The pipeline thread has ended; no further events follow."""


PipelineEvent = PartialEvent | FinalEvent | FailureEvent | ClosedEvent


# The queue between the event loop and the thread ----------------------------------------------
@dataclass
class _Audio:
    offset: int  # in client samples from the track's start
    pcm: bytes
    received_at: float


_FLUSH = "flush"
_END = "end"
_Item = _Audio | str


@dataclass
class AudioAccounting:
    """Audio counters in client samples; read by the loop, written under the queue lock."""

    received: int = 0
    dropped: int = 0
    failed: int = 0
    #: Audio fed to the recognizer (client samples) and the seconds the recognizer took.
    recognized: int = 0
    recognizer_s: float = 0.0


@dataclass
class _Timeline:
    """Maps recognizer-fed samples to track samples (both at the recognizer's rate)."""

    fed: list[int] = field(default_factory=lambda: [0])
    track: list[int] = field(default_factory=lambda: [0])

    def mark(self, fed: int, track: int) -> None:
        if self.fed[-1] == fed:
            self.track[-1] = track
        else:
            self.fed.append(fed)
            self.track.append(track)

    def to_track(self, fed: int) -> int:
        i = bisect.bisect_right(self.fed, fed) - 1
        return self.track[i] + (fed - self.fed[i])

    def forget_before(self, fed: int) -> None:
        """Drop breakpoints no future word can fall before (keeps the list short)."""
        i = bisect.bisect_right(self.fed, fed) - 1
        if i > 0:
            del self.fed[:i]
            del self.track[:i]


class ClientInferencePipeline:
    """A streaming client's recognizer running on its own thread.

    Call :meth:`start`, then :meth:`submit` audio, :meth:`flush` and finally :meth:`end`
    from the event loop; read events from ``events`` until :class:`ClosedEvent`.
    """

    def __init__(
        self,
        *,
        recognizer: Recognizer,
        client_rate: int,
        track_sid: str,
        loop: asyncio.AbstractEventLoop,
        queue_chunks: int = 500,
        max_batch_chunks: int = 25,
        breaker_threshold: int = 5,
        gap_finalize_ms: int = 300,
    ) -> None:
        """Prepare the pipeline; no thread runs until :meth:`start`."""
        self.track_sid = track_sid
        self.client_rate = client_rate
        self.events: asyncio.Queue[PipelineEvent] = asyncio.Queue()
        self.accounting = AudioAccounting()
        self._rec = recognizer
        self._loop = loop
        self._queue_chunks = queue_chunks
        self._max_batch = max_batch_chunks
        self._breaker_threshold = breaker_threshold
        self._gap_finalize = gap_finalize_ms * client_rate // 1000
        self._items: deque[_Item] = deque()
        self._audio_items = 0
        self._cond = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name=f"stt-{track_sid}", daemon=True)
        self._resampler = (
            None
            if client_rate == recognizer.sample_rate
            else PcmResampler(client_rate, recognizer.sample_rate)
        )
        # Thread-only state.
        self._next_offset: int | None = None
        self._fed = 0
        self._timeline = _Timeline()
        self._utterance_fed = 0
        self._last_partial = ""
        self._failures = 0

    # Event-loop side -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the pipeline thread."""
        self._thread.start()

    @property
    def queue_depth(self) -> int:
        """Audio chunks waiting for the recognizer."""
        return self._audio_items

    @property
    def next_offset(self) -> int | None:
        """The client sample offset right after the last audio processed."""
        return self._next_offset

    @property
    def alive(self) -> bool:
        """Whether the thread is still running."""
        return self._thread.is_alive()

    def submit(self, offset: int, pcm: bytes) -> None:
        """Queue audio that starts ``offset`` client samples after the track's start.

        Never blocks: when the queue is full the oldest audio is dropped and counted (the
        offsets of what follows keep the timeline true across the hole).
        """
        samples = len(pcm) // 2
        with self._cond:
            if self._ended:
                return
            self.accounting.received += samples
            if self._audio_items >= self._queue_chunks:
                self._drop_oldest_audio()
            self._items.append(_Audio(offset, pcm, time.monotonic()))
            self._audio_items += 1
            self._cond.notify()

    def _drop_oldest_audio(self) -> None:
        for i, item in enumerate(self._items):
            if isinstance(item, _Audio):
                del self._items[i]
                self._audio_items -= 1
                self.accounting.dropped += len(item.pcm) // 2
                return

    def flush(self) -> None:
        """Ask for a final of the utterance in progress."""
        self._control(_FLUSH)

    def end(self) -> None:
        """Finish: the last final is produced, then :class:`ClosedEvent`; idempotent."""
        self._control(_END)

    def _control(self, item: str) -> None:
        with self._cond:
            if self._ended:
                return
            self._ended = item == _END
            self._items.append(item)
            self._cond.notify()

    async def join(self, wait_s: float | None = None) -> bool:
        """Wait up to ``wait_s`` for the thread to exit (off the loop); ``False`` if it runs on.

        A thread cannot be cancelled, so the wait is bounded by ``wait_s`` rather than by
        cancelling this coroutine.
        """
        await asyncio.to_thread(self._thread.join, wait_s)
        return not self._thread.is_alive()

    # Thread side ---------------------------------------------------------------------------
    def _emit(self, event: PipelineEvent) -> None:
        # The loop may have closed under us at process exit: nobody is left to tell.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(self.events.put_nowait, event)

    def _take(self) -> list[_Item]:
        with self._cond:
            while not self._items:
                self._cond.wait()
            first = self._items.popleft()
            if not isinstance(first, _Audio):
                return [first]
            batch: list[_Item] = [first]
            while (
                self._items and len(batch) < self._max_batch and isinstance(self._items[0], _Audio)
            ):
                batch.append(self._items.popleft())
            self._audio_items -= len(batch)
            return batch

    def _run(self) -> None:
        try:
            while True:
                batch = self._take()
                head = batch[0]
                if head == _FLUSH:
                    self._finish_utterance(time.monotonic(), 0.0)
                elif head == _END:
                    self._finish_utterance(time.monotonic(), 0.0)
                    return
                elif not self._process([b for b in batch if isinstance(b, _Audio)]):
                    return
        except Exception:  # a bug here must not leave the client waiting forever
            log.exception("pipeline thread crashed", extra={"track_sid": self.track_sid})
            self._emit(FailureEvent("internal pipeline error", self._failures, tripped=True))
        finally:
            self._emit(ClosedEvent())

    def _to_model(self, samples: int) -> int:
        return samples * self._rec.sample_rate // self.client_rate

    def _process(self, batch: list[_Audio]) -> bool:
        """Feed one batch; ``False`` when the circuit breaker opened."""
        parts: list[bytes] = []
        for item in batch:
            pcm, offset = item.pcm, item.offset
            if self._next_offset is None:
                self._next_offset = offset
                self._timeline.mark(self._fed, self._to_model(offset))
            if offset < self._next_offset:
                # Audio we already have (a reconnecting client resends its tail): skip it.
                overlap = self._next_offset - offset
                if overlap * 2 >= len(pcm):
                    continue
                pcm, offset = pcm[overlap * 2 :], self._next_offset
            elif offset > self._next_offset:
                if parts:
                    if not self._feed(b"".join(parts), item.received_at):
                        return False
                    parts = []
                if offset - self._next_offset > self._gap_finalize:
                    # A long hole (dropped audio, a reconnect): words must not span it.
                    self._finish_utterance(item.received_at, 0.0)
                self._timeline.mark(self._fed, self._to_model(offset))
            parts.append(self._resample(pcm))
            self._next_offset = offset + len(pcm) // 2
        if parts:
            return self._feed(b"".join(parts), batch[-1].received_at)
        return True

    def _resample(self, pcm: bytes) -> bytes:
        if self._resampler is None:
            return pcm
        return self._resampler.push(np.frombuffer(pcm, dtype="<i2")).astype("<i2").tobytes()

    def _feed(self, pcm: bytes, received_at: float) -> bool:
        if not pcm:
            return True
        started = time.perf_counter()
        try:
            utterance = self._rec.accept(pcm)
            partial = "" if utterance is not None else self._rec.partial()
        except Exception as exc:  # any recognizer failure counts toward the breaker
            self._failures += 1
            self.accounting.failed += len(pcm) // 2 * self.client_rate // self._rec.sample_rate
            self._fed += len(pcm) // 2
            tripped = self._failures >= self._breaker_threshold
            self._emit(FailureEvent(f"recognizer failed: {exc}", self._failures, tripped))
            return not tripped
        compute = time.perf_counter() - started
        self._failures = 0
        self._fed += len(pcm) // 2
        # Plain int/float updates: the loop only reads them, so no lock is needed.
        self.accounting.recognized += len(pcm) // 2 * self.client_rate // self._rec.sample_rate
        self.accounting.recognizer_s += compute
        if utterance is not None:
            self._emit_final(utterance, received_at, compute)
        elif partial and partial != self._last_partial:
            self._last_partial = partial
            start_ms = self._ms(self._utterance_fed)
            self._emit(PartialEvent(partial, start_ms, self._audio_end_ms(), received_at, compute))
        return True

    def _finish_utterance(self, received_at: float, compute: float) -> None:
        try:
            utterance = self._rec.finish()
        except Exception as exc:
            self._failures += 1
            self._emit(FailureEvent(f"recognizer failed: {exc}", self._failures, False))
            return
        if utterance is not None:
            self._emit_final(utterance, received_at, compute)
        else:
            self._utterance_fed = self._fed
            self._last_partial = ""

    def _audio_end_ms(self) -> int:
        return (self._next_offset or 0) * 1000 // self.client_rate

    def _ms(self, fed: int) -> int:
        return self._timeline.to_track(fed) * 1000 // self._rec.sample_rate

    def _emit_final(self, utterance: Utterance, received_at: float, compute: float) -> None:
        rate = self._rec.sample_rate
        words = [
            FinalWord(
                word=w.word,
                start_ms=self._ms(round(w.start * rate)),
                end_ms=self._ms(round(w.end * rate)),
                confidence=w.confidence,
            )
            for w in utterance.words
        ]
        start_ms = words[0].start_ms if words else self._ms(self._utterance_fed)
        end_ms = words[-1].end_ms if words else self._ms(self._fed)
        confidence = sum(w.confidence for w in words) / len(words) if words else 1.0
        self._emit(
            FinalEvent(
                # Derived from the track time, so a re-recognized utterance after a reconnect
                # gets the same id and the store does not keep it twice.
                segment_id=f"{self.track_sid}-{start_ms:09d}",
                text=utterance.text,
                start_ms=start_ms,
                end_ms=end_ms,
                confidence=round(confidence, 4),
                words=words,
                audio_end_ms=self._audio_end_ms(),
                received_at=received_at,
                compute_s=compute,
            )
        )
        self._utterance_fed = self._fed
        self._last_partial = ""
        self._timeline.forget_before(self._fed)
