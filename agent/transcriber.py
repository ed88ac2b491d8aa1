"""One participant's audio track, transcribed live and turned into captions.

:class:`TrackTranscriber` reads the track's frames (an ``rtc.AudioStream`` at 16 kHz mono in
a room, or any async iterable of frames), pushes them into a :class:`RoomscribeStream` and
forwards its results to a :class:`CaptionSink`. When the frames end (the track was
unpublished or the participant left), it ends the stream's input and waits for the last final,
so the participant's last words are not lost.

Each caption's latency is measured with a :class:`LatencyClock`: the wall time each pushed
frame went in, kept for a bounded window (a silent track pushes frames but gets no finals).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import time
from collections.abc import AsyncIterable, Callable
from dataclasses import dataclass, field

from livekit import rtc
from livekit.agents import APIConnectOptions, APIError, stt

from agent.captions import Caption, CaptionSink
from agent.stt_plugin import (
    SAMPLE_RATE,
    TRACK_CONNECT_OPTIONS,
    RoomscribeStream,
    RoomscribeSTT,
    StreamStats,
)
from roomscribe.aio import cancel_and_wait

log = logging.getLogger(__name__)

#: How far back the latency clock remembers pushes; a caption about older audio (which only
#: a long outage produces) has no latency.
LATENCY_WINDOW_S = 120.0


class LatencyClock:
    """When each stretch of a track's audio was pushed in, for the last ``window_s``.

    Every push records ``(samples pushed so far, now)``; entries older than the window are
    forgotten as pushes go on, so the clock stays bounded on a track of any length whether or
    not results ever arrive (about 12,000 entries for 120 s of 10 ms frames).

    Args:
        window_s: How long a push is remembered, in seconds.
        now: Monotonic seconds now.
    """

    def __init__(
        self, window_s: float = LATENCY_WINDOW_S, now: Callable[[], float] = time.monotonic
    ) -> None:
        self.window_s = window_s
        self._now = now
        self._samples: list[int] = []
        self._at: list[float] = []
        self._floor = 0  # sample total of the newest push forgotten

    def __len__(self) -> int:
        """Pushes remembered."""
        return len(self._samples)

    def pushed(self, total_samples: int) -> None:
        """Record a push after which the track has ``total_samples`` samples."""
        now = self._now()
        self._samples.append(total_samples)
        self._at.append(now)
        # Forget in steps of a second, not one entry per push: trimming a list's head copies
        # the rest, so doing it every push would cost a copy of the window each frame.
        if self._at[0] < now - self.window_s - 1.0:
            self._forget(bisect.bisect_left(self._at, now - self.window_s))

    def latency_ms(self, track_ms: float | None) -> float | None:
        """Time since the sample at ``track_ms`` (track time) was pushed in, if remembered."""
        if track_ms is None:
            return None
        sample = int(track_ms * SAMPLE_RATE // 1000)
        i = bisect.bisect_left(self._samples, sample)
        if i >= len(self._at) or (self._floor and sample <= self._floor):
            return None
        return (self._now() - self._at[i]) * 1000

    def forget_before(self, track_ms: float) -> None:
        """Forget pushes before ``track_ms``: no later result looks back that far."""
        self._forget(bisect.bisect_left(self._samples, int(track_ms * SAMPLE_RATE // 1000)))

    def _forget(self, count: int) -> None:
        if count > 0:
            self._floor = self._samples[count - 1]
            del self._samples[:count]
            del self._at[:count]


@dataclass
class TrackClock:
    """A track's sample clock, shared by every subscription of the track.

    The first stream of a track fixes its time origin; a later subscription of the same
    track (same sid) continues that clock, so its segments land at the time they were
    spoken and the STT service, which resumes a known track where its last stream ended,
    keeps the new audio instead of taking it as already heard.
    """

    #: Epoch seconds of sample 0 (when the first subscription's stream started).
    started_at: float | None = None
    #: The end of the audio the track's earlier streams sent, in samples.
    sent_offset: int = 0

    def start(self, now: float, subscribed_at: float) -> tuple[float, int]:
        """The origin and the first offset of a stream subscribed at ``subscribed_at``."""
        if self.started_at is None:
            self.started_at = now
            return now, 0
        # The audio between two subscriptions was never received: the new stream starts
        # where the wall clock says, and never before what was already sent.
        elapsed = round((subscribed_at - self.started_at) * SAMPLE_RATE)
        return self.started_at, max(self.sent_offset, elapsed)


@dataclass
class TranscriberResult:
    """What a finished track transcriber did."""

    finals: list[Caption] = field(default_factory=list)
    partials: int = 0
    #: Per caption: time from the newest audio it heard being pushed in to its arrival (the
    #: pipeline's own delay: network, queue, recognizer).
    latencies_ms: list[float] = field(default_factory=list)
    #: Per final: time from its last word's end being pushed in to its arrival (what a reader
    #: waits after a speaker stops: the recognizer's end-of-utterance wait plus the pipeline).
    final_latencies_ms: list[float] = field(default_factory=list)
    stream: StreamStats = field(default_factory=StreamStats)
    error: str | None = None


class TrackTranscriber:
    """Streams one track to the STT service and publishes its captions.

    Args:
        stt: The STT plugin (one per agent; streams are per track).
        captions: Where captions go.
        room: The room's name.
        participant: Identity of the track's participant.
        track_sid: The track's sid.
        language: The language to recognize.
        conn_options: Reconnect budget (default: about a minute of backoff).
        clock: Epoch seconds now; read once, when the stream starts, as the wall time of
            its sample 0 (the live transcript's time origin). A simulated meeting passes
            the clock its LiveKit stand-in runs on.
        track_clock: The track's clock, shared with the track's earlier subscriptions
            (default: a new one: this is the track's first stream).
    """

    def __init__(
        self,
        stt: RoomscribeSTT,
        captions: CaptionSink,
        *,
        room: str,
        participant: str,
        track_sid: str,
        language: str = "en",
        conn_options: APIConnectOptions = TRACK_CONNECT_OPTIONS,
        clock: Callable[[], float] = time.time,
        track_clock: TrackClock | None = None,
    ) -> None:
        self._stt = stt
        self._captions = captions
        self.room = room
        self.participant = participant
        self.track_sid = track_sid
        self._language = language
        self._conn_options = conn_options
        self._clock = clock
        self.track_clock = track_clock if track_clock is not None else TrackClock()
        # Read now: audio is buffered from the subscription while a predecessor finishes.
        self._subscribed_at = clock()
        self.latency_clock = LatencyClock()
        self.result = TranscriberResult()

    async def run(self, frames: AsyncIterable[rtc.AudioFrame | rtc.AudioFrameEvent]) -> None:
        """Transcribe until ``frames`` ends and the last final is in (or the stream fails)."""
        started_at, offset = self.track_clock.start(self._clock(), self._subscribed_at)
        stream = self._stt.stream(
            language=self._language,
            conn_options=self._conn_options,
            participant=self.participant,
            track_sid=self.track_sid,
            track_started_at=started_at,
            room=self.room,
            start_offset=offset,
        )
        self.result.stream = stream.stats
        pump = asyncio.create_task(
            self._pump(frames, stream, offset), name=f"pump-{self.track_sid}"
        )
        try:
            async for event in stream:
                await self._forward(event)
        except APIError as exc:
            # The service stayed unreachable past the reconnect budget, or refused the
            # stream: this track's live captions stop; the recording path still has it.
            self.result.error = str(exc)
            log.error(
                "live transcription of a track stopped: %s",
                exc,
                extra={"room": self.room, "track_sid": self.track_sid},
            )
        finally:
            try:
                await cancel_and_wait(pump)
            finally:
                await stream.aclose()
                self.track_clock.sent_offset = stream.next_offset

    async def _pump(
        self,
        frames: AsyncIterable[rtc.AudioFrame | rtc.AudioFrameEvent],
        stream: RoomscribeStream,
        offset: int,
    ) -> None:
        total = offset  # on the track's clock, as the results' times are
        try:
            async for item in frames:
                frame = item.frame if isinstance(item, rtc.AudioFrameEvent) else item
                try:
                    stream.push_frame(frame)
                except RuntimeError:
                    return  # the stream already ended (it failed; run() reports why)
                total += frame.samples_per_channel * SAMPLE_RATE // frame.sample_rate
                self.latency_clock.pushed(total)
        finally:
            # Also when the frames fail: the stream then still gives the last final.
            with contextlib.suppress(RuntimeError):
                stream.end_input()

    async def _forward(self, event: stt.SpeechEvent) -> None:
        final = event.type is stt.SpeechEventType.FINAL_TRANSCRIPT
        if not final and event.type is not stt.SpeechEventType.INTERIM_TRANSCRIPT:
            return
        data = event.alternatives[0]
        metadata = data.metadata or {}
        clock = self.latency_clock
        latency = clock.latency_ms(metadata.get("audio_end_ms"))
        caption = Caption(
            participant=self.participant,
            track_sid=self.track_sid,
            caption_id=event.request_id,
            text=data.text,
            final=final,
            start_s=data.start_time,
            end_s=data.end_time,
            segment_id=metadata.get("segment_id"),
            latency_ms=latency,
        )
        if latency is not None:
            self.result.latencies_ms.append(latency)
        if final:
            self.result.finals.append(caption)
            speech_end_ms = data.end_time * 1000
            speech_end = clock.latency_ms(speech_end_ms)
            if speech_end is not None:
                self.result.final_latencies_ms.append(speech_end)
            clock.forget_before(speech_end_ms)
        else:
            self.result.partials += 1
        await self._captions.publish(caption)
