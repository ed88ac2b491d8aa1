"""One participant's audio track, transcribed live and turned into captions.

:class:`TrackTranscriber` reads the track's frames (an ``rtc.AudioStream`` at 16 kHz mono in
a room, or any async iterable of frames), pushes them into a :class:`RoomscribeStream` and
forwards its results to a :class:`CaptionSink`. When the frames end (the track was
unpublished or the participant left), it ends the stream's input and waits for the last final,
so the participant's last words are not lost.
"""

from __future__ import annotations

import asyncio
import bisect
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

log = logging.getLogger(__name__)


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
    ) -> None:
        self._stt = stt
        self._captions = captions
        self.room = room
        self.participant = participant
        self.track_sid = track_sid
        self._language = language
        self._conn_options = conn_options
        self._clock = clock
        # (track sample count after a push, wall time of the push): the caption latency clock.
        self._pushed_samples: list[int] = []
        self._pushed_at: list[float] = []
        self.result = TranscriberResult()

    async def run(self, frames: AsyncIterable[rtc.AudioFrame | rtc.AudioFrameEvent]) -> None:
        """Transcribe until ``frames`` ends and the last final is in (or the stream fails)."""
        stream = self._stt.stream(
            language=self._language,
            conn_options=self._conn_options,
            participant=self.participant,
            track_sid=self.track_sid,
            track_started_at=self._clock(),
            room=self.room,
        )
        self.result.stream = stream.stats
        pump = asyncio.create_task(self._pump(frames, stream), name=f"pump-{self.track_sid}")
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
            pump.cancel()
            await asyncio.gather(pump, return_exceptions=True)
            await stream.aclose()

    async def _pump(
        self,
        frames: AsyncIterable[rtc.AudioFrame | rtc.AudioFrameEvent],
        stream: RoomscribeStream,
    ) -> None:
        total = 0
        async for item in frames:
            frame = item.frame if isinstance(item, rtc.AudioFrameEvent) else item
            stream.push_frame(frame)
            total += frame.samples_per_channel * SAMPLE_RATE // frame.sample_rate
            self._pushed_samples.append(total)
            self._pushed_at.append(time.monotonic())
        stream.end_input()

    def _push_index(self, track_ms: float) -> int:
        """Index of the first push that carried the sample at ``track_ms`` (track time)."""
        return bisect.bisect_left(self._pushed_samples, int(track_ms * SAMPLE_RATE // 1000))

    def _latency_ms(self, track_ms: float | None) -> float | None:
        """Time since the sample at ``track_ms`` (track time) was pushed in."""
        if track_ms is None or not self._pushed_samples:
            return None
        i = self._push_index(track_ms)
        if i >= len(self._pushed_at):
            return None
        return (time.monotonic() - self._pushed_at[i]) * 1000

    def _forget_pushes_before(self, track_ms: float) -> None:
        """Drop clock entries before a final's end: later results never look that far back.

        Without this the clock keeps one entry per frame for the whole track (about 360,000
        an hour); a reconnect replays only audio after the last final, so nothing is lost.
        """
        i = self._push_index(track_ms)
        del self._pushed_samples[:i]
        del self._pushed_at[:i]

    async def _forward(self, event: stt.SpeechEvent) -> None:
        final = event.type is stt.SpeechEventType.FINAL_TRANSCRIPT
        if not final and event.type is not stt.SpeechEventType.INTERIM_TRANSCRIPT:
            return
        data = event.alternatives[0]
        metadata = data.metadata or {}
        latency = self._latency_ms(metadata.get("audio_end_ms"))
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
            speech_end = self._latency_ms(speech_end_ms)
            if speech_end is not None:
                self.result.final_latencies_ms.append(speech_end)
            self._forget_pushes_before(speech_end_ms)
        else:
            self.result.partials += 1
        await self._captions.publish(caption)
