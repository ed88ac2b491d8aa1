"""One client's inference pipeline: its own bounded queue, its own thread, its own recognizer.

The event loop only enqueues audio (never blocks, never waits for the recognizer, never
builds one: a real model's recognizer takes milliseconds to set up, so even the first is made
on the pipeline thread). The pipeline thread blocks on its queue, takes everything queued up
to a maximum batch (so an idle server answers each chunk at once and a loaded one amortizes
recognizer calls), feeds the recognizer, and hands results to the loop through an
:class:`EventQueue`. One slow client therefore never delays another.

Coalescing (``feed_ms``). A real Vosk model advances its network only every few hundred ms
of audio; fed 20 ms frames one by one, most calls (and the ``partial`` after each) cannot
produce anything new, and each frame costs a thread wake-up. With ``feed_ms`` set the loop
wakes the thread only once that much audio is queued, a control message arrives, or the thread slept
on an empty queue; the thread then waits at most ``feed_ms`` past the oldest queued audio's
arrival. A result's latency is measured from the newest audio it heard, which coalescing
does not delay; the oldest audio in a batch waits up to ``feed_ms`` longer.

Timestamps come from the sample offsets the client sends, not from how much audio was fed.
One recognizer serves the whole stream (a new one only after a failure): a real model's
recognizer composes its lookahead graph lazily, so a fresh one pays about a second of CPU on
its first words, and one per utterance cost twice the CPU of the recognition itself. The
recognizer hears contiguous audio: a short hole in the offsets is fed as silence, a long one
ends the utterance (``finish``), after which the recognizer starts a new round (Vosk keeps
its clock and graph and restarts its features). Every round starts on the track's frame grid
(:data:`FRAME_GRID_MS`), preceded by zeros up to where the audio is, so the recognizer's
clock maps to track time by one offset per round.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from roomscribe.audio import PcmResampler
from stt_service.events import (
    BoundaryEvent,
    ClosedEvent,
    EventQueue,
    FailureEvent,
    FinalEvent,
    FinalWord,
    PartialEvent,
    live_segment_id,
)
from stt_service.recognizer import Recognizer, Utterance

log = logging.getLogger(__name__)

#: Vosk's output frame (10 ms shift, subsampling 3): recognizers start on multiples of it.
FRAME_GRID_MS = 30


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


class ClientInferencePipeline:
    """A streaming client's recognizer running on its own thread.

    Call :meth:`start`, then :meth:`submit` audio, :meth:`flush` and finally :meth:`end`
    from the event loop; read events from ``events`` until :class:`ClosedEvent`.
    """

    def __init__(
        self,
        *,
        recognizer: Callable[[], Recognizer],
        client_rate: int,
        track_sid: str,
        loop: asyncio.AbstractEventLoop,
        start_offset: int = 0,
        queue_chunks: int = 500,
        max_batch_chunks: int = 25,
        breaker_threshold: int = 5,
        gap_finalize_ms: int = 300,
        max_events: int = 256,
        feed_ms: int = 0,
    ) -> None:
        """Prepare the pipeline; no thread runs until :meth:`start`.

        Args:
            recognizer: Makes a recognizer (one per stream, another after a failure).
            client_rate: The client's sample rate.
            track_sid: The track, for segment ids and logs.
            loop: The event loop that reads ``events``.
            start_offset: Client samples before which audio is skipped (the resume point).
            queue_chunks: Audio chunks queued before the oldest is dropped.
            max_batch_chunks: Chunks fed to the recognizer in one call at most.
            breaker_threshold: Consecutive recognizer failures that stop the pipeline.
            gap_finalize_ms: A hole in the offsets longer than this ends the utterance.
            max_events: Events (other than partials) waiting for the loop at most.
            feed_ms: Audio to gather before the thread wakes (see the module docstring);
                0 wakes it for every chunk.
        """
        self.track_sid = track_sid
        self.client_rate = client_rate
        self.events = EventQueue(loop, max_events)
        self.accounting = AudioAccounting()
        self._new_recognizer = recognizer
        self._queue_chunks = queue_chunks
        self._max_batch = max_batch_chunks
        self._breaker_threshold = breaker_threshold
        self._gap_finalize = gap_finalize_ms * client_rate // 1000
        self._items: deque[_Item] = deque()
        self._audio_items = 0
        self._cond = threading.Condition()
        self._ended = False
        self._thread = threading.Thread(target=self._run, name=f"stt-{track_sid}", daemon=True)
        # Coalescing: the audio to gather (client samples; 0: wake for every chunk), then,
        # under the queue lock, audio queued, control items queued, and whether the thread
        # sleeps on an empty queue (then the next chunk wakes it).
        self._feed_samples = max(0, feed_ms) * client_rate // 1000
        self._queued_samples = 0
        self._controls = 0
        self._sleeping = False
        self._start_offset = start_offset
        self._next_offset = start_offset
        # Thread-only state, set by the thread (_prepare) once its first recognizer exists.
        # Positions without "offset" are track samples at the model rate.
        self._rec: Recognizer | None = None
        self._rate = client_rate
        self._grid = self._rate * FRAME_GRID_MS // 1000
        self._resampler: PcmResampler | None = None
        self._pos = 0  # the end of the audio fed so far
        self._rec_start = 0  # the track position of the recognizer's clock 0 in this round
        self._rec_clock = 0  # samples fed to the current recognizer since it was made
        self._round_fed = 0  # samples fed in its current round (0: the next feed starts one)
        self._utterance_start = 0
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
    def next_offset(self) -> int:
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
            self._queued_samples += samples
            # Coalescing: a thread waiting for more audio is woken once enough is queued (or
            # by its own timer), not for every frame; a thread asleep on an empty queue is
            # woken at once so that it can start that timer.
            if (
                self._feed_samples <= 0
                or self._sleeping
                or self._queued_samples >= self._feed_samples
            ):
                self._cond.notify()

    def _drop_oldest_audio(self) -> None:
        for i, item in enumerate(self._items):
            if isinstance(item, _Audio):
                del self._items[i]
                self._audio_items -= 1
                self._queued_samples -= len(item.pcm) // 2
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
            self._controls += 1
            self._cond.notify()

    async def join(self, wait_s: float | None = None) -> bool:
        """Wait up to ``wait_s`` for the thread to exit (off the loop); ``False`` if it runs on.

        A thread cannot be cancelled, so the wait is bounded by ``wait_s`` rather than by
        cancelling this coroutine.
        """
        if self._thread.ident is None:
            return True  # never started
        await asyncio.to_thread(self._thread.join, wait_s)
        return not self._thread.is_alive()

    # Thread side ---------------------------------------------------------------------------
    def _take(self) -> list[_Item]:
        with self._cond:
            self._wait_for_work()
            first = self._items.popleft()
            if not isinstance(first, _Audio):
                self._controls -= 1
                return [first]
            batch: list[_Item] = [first]
            taken = len(first.pcm) // 2
            while self._items and len(batch) < self._max_batch:
                item = self._items[0]
                if not isinstance(item, _Audio):
                    break
                batch.append(self._items.popleft())
                taken += len(item.pcm) // 2
            self._audio_items -= len(batch)
            self._queued_samples -= taken
            return batch

    def _wait_for_work(self) -> None:
        """Wait (queue lock held) until the queue holds something worth a recognizer call."""
        feed_s = self._feed_samples / self.client_rate
        expecting = True  # a batch was just taken: more audio is on its way
        while True:
            if self._items:
                head = self._items[0]
                if (
                    not isinstance(head, _Audio)
                    or self._feed_samples <= 0
                    or self._queued_samples >= self._feed_samples
                    or self._controls
                ):
                    return
                wait = head.received_at + feed_s - time.monotonic()
                if wait <= 0:
                    return
                self._cond.wait(wait)
            elif self._feed_samples > 0 and expecting:
                # Audio is flowing: the threshold wakes this wait, or the timer ends it.
                expecting = False
                self._cond.wait(feed_s)
            else:
                self._sleeping = True
                try:
                    self._cond.wait()
                finally:
                    self._sleeping = False

    def _prepare(self) -> None:
        """Thread-side setup: the first recognizer and the positions that depend on its rate."""
        self._rec = self._new_recognizer()
        self._rate = self._rec.sample_rate
        self._grid = self._rate * FRAME_GRID_MS // 1000
        self._resampler = self._new_resampler()
        self._pos = self._rec_start = self._utterance_start = self._to_model(self._start_offset)

    def _run(self) -> None:
        try:
            try:
                self._prepare()
            except Exception as exc:  # no recognizer: nothing this stream sends can be heard
                log.exception("cannot create a recognizer", extra={"track_sid": self.track_sid})
                self.events.put(FailureEvent(f"recognizer failed: {exc}", 1, tripped=True))
                return
            while True:
                batch = self._take()
                head = batch[0]
                if head == _FLUSH:
                    self._finish_utterance(time.monotonic())
                elif head == _END:
                    self._finish_utterance(time.monotonic())
                    return
                elif not self._process([b for b in batch if isinstance(b, _Audio)]):
                    return
        except Exception:  # a bug here must not leave the client waiting forever
            log.exception("pipeline thread crashed", extra={"track_sid": self.track_sid})
            self.events.put(FailureEvent("internal pipeline error", self._failures, tripped=True))
        finally:
            self.events.put(ClosedEvent())

    def _to_model(self, samples: int) -> int:
        return samples * self._rate // self.client_rate

    def _new_resampler(self) -> PcmResampler | None:
        if self.client_rate == self._rate:
            return None
        return PcmResampler(self.client_rate, self._rate)

    def _process(self, batch: list[_Audio]) -> bool:
        """Feed one batch; ``False`` when the circuit breaker opened."""
        parts: list[bytes] = []
        client = 0  # client samples of real audio in ``parts``
        for item in batch:
            pcm, offset = item.pcm, item.offset
            if offset < self._next_offset:
                # Audio we already have (a resend, or before the resume point): skip it.
                overlap = self._next_offset - offset
                if overlap * 2 >= len(pcm):
                    continue
                pcm, offset = pcm[overlap * 2 :], self._next_offset
            elif offset > self._next_offset:
                hole = offset - self._next_offset
                if hole > self._gap_finalize:
                    # A long hole (muted, dropped audio, a reconnect): words must not span it.
                    if parts and not self._feed(b"".join(parts), item.received_at, client):
                        return False
                    parts, client = [], 0
                    self._finish_utterance(item.received_at)
                    self._pos = self._utterance_start = self._to_model(offset)
                    self._resampler = self._new_resampler()  # its tail is from before the hole
                else:
                    # Time that passed without audio is silence: one recognizer hears one
                    # contiguous stretch of the track, so its times need no mapping.
                    parts.append(self._resample(bytes(2 * hole)))
            parts.append(self._resample(pcm))
            client += len(pcm) // 2
            self._next_offset = offset + len(pcm) // 2
        if parts:
            return self._feed(b"".join(parts), batch[-1].received_at, client)
        return True

    def _resample(self, pcm: bytes) -> bytes:
        if self._resampler is None:
            return pcm
        return self._resampler.push(np.frombuffer(pcm, dtype="<i2")).astype("<i2").tobytes()

    def _feed(self, pcm: bytes, received_at: float, client: int) -> bool:
        if not pcm:
            return True
        samples = len(pcm) // 2
        if self._rec is None:
            self._rec = self._new_recognizer()
            self._rec_clock = self._round_fed = 0
        if self._round_fed == 0:
            # A round starts on the frame grid, with zeros up to the audio.
            grid_start = self._pos - self._pos % self._grid
            self._rec_start = grid_start - self._rec_clock
            pcm = bytes(2 * (self._pos - grid_start)) + pcm
        started = time.perf_counter()
        try:
            utterance = self._rec.accept(pcm)
            partial = "" if utterance is not None else self._rec.partial()
        except Exception as exc:  # any recognizer failure counts toward the breaker
            self._failures += 1
            self.accounting.failed += client
            tripped = self._failures >= self._breaker_threshold
            self.events.put(FailureEvent(f"recognizer failed: {exc}", self._failures, tripped))
            # Its state is unknown now: keep what it heard, and go on after the lost audio
            # with a fresh one.
            self._finish_utterance(received_at)
            self._rec = None
            self._pos += samples
            self._utterance_start = self._pos
            return not tripped
        compute = time.perf_counter() - started
        self._failures = 0
        self._rec_clock += len(pcm) // 2
        self._round_fed += len(pcm) // 2
        self._pos += samples
        # Plain int/float updates: the loop only reads them, so no lock is needed.
        self.accounting.recognized += client
        self.accounting.recognizer_s += compute
        if utterance is not None:
            self._emit_result(utterance, received_at, compute)
        elif partial and partial != self._last_partial:
            self._last_partial = partial
            self.events.put(
                PartialEvent(
                    partial,
                    self._ms(self._utterance_start),
                    self._audio_end_ms(),
                    received_at,
                    compute,
                )
            )
        return True

    def _finish_utterance(self, received_at: float) -> None:
        """End the utterance in progress: a final, or a boundary if it held no words."""
        if self._rec is None or self._round_fed == 0:
            self._emit_result(None, received_at, 0.0)
            return
        self._round_fed = 0  # whatever finish does, the next audio starts a new round
        try:
            utterance = self._rec.finish()
        except Exception as exc:
            self._failures += 1
            self.events.put(FailureEvent(f"recognizer failed: {exc}", self._failures, False))
            self._rec = None
            self._next_utterance()
            return
        self._emit_result(utterance, received_at, 0.0)

    def _next_utterance(self) -> None:
        self._utterance_start = self._pos
        self._last_partial = ""

    def _audio_end_ms(self) -> int:
        return self._next_offset * 1000 // self.client_rate

    def _ms(self, pos: int) -> int:
        return pos * 1000 // self._rate

    def _emit_result(self, utterance: Utterance | None, received_at: float, compute: float) -> None:
        """Emit a final (or a boundary); the next utterance starts where the audio is."""
        covered = self._pos * self.client_rate // self._rate
        if utterance is None or not utterance.text:
            self._next_utterance()
            self.events.put(BoundaryEvent(covered))
            return
        rate, origin = self._rate, self._rec_start
        words = [
            FinalWord(
                word=w.word,
                start_ms=self._ms(origin + round(w.start * rate)),
                end_ms=self._ms(origin + round(w.end * rate)),
                confidence=w.confidence,
            )
            for w in utterance.words
        ]
        start_ms = words[0].start_ms if words else self._ms(self._utterance_start)
        end_ms = words[-1].end_ms if words else self._ms(self._pos)
        confidence = sum(w.confidence for w in words) / len(words) if words else 1.0
        self._next_utterance()
        self.events.put(
            FinalEvent(
                segment_id=live_segment_id(self.track_sid, start_ms),
                text=utterance.text,
                start_ms=start_ms,
                end_ms=end_ms,
                confidence=round(confidence, 4),
                words=words,
                audio_end_ms=self._audio_end_ms(),
                covered_offset=covered,
                received_at=received_at,
                compute_s=compute,
            )
        )
