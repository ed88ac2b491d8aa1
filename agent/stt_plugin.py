"""A livekit-agents STT plugin for the Roomscribe STT service.

:class:`RoomscribeSTT` speaks the streaming protocol (README, "STT protocol") and can stand
in for any STT in a LiveKit voice agent. Each :class:`RoomscribeStream` carries one track:

- audio goes out as 16 kHz mono at its sample offset from the track's start, and stays in a
  :class:`~agent.replay.ReplayBuffer` until the service commits it (``committed``: its words
  are stored). After a drop, restart or crash the stream reconnects (with backoff) and
  resends what it holds from ``ready.resume_offset`` on, at the original offsets: no word is
  lost or stored twice, and timestamps stay on the track's clock;
- without audio (a muted track) it sends ``keepalive`` every ``keepalive_interval_s``. If
  the service closes it as idle anyway (1001, ``idle_timeout``), it reconnects when input
  comes again, not before: an idle track holds no connection, and the service committed
  what it had;
- ``partial``/``final`` become ``INTERIM_TRANSCRIPT``/``FINAL_TRANSCRIPT`` events with word
  timings; an utterance's events share one ``request_id`` (its caption id), a final carries
  its stored segment id in ``metadata["segment_id"]``, and a final the service sends again
  after a reconnect is delivered once.

Only a stream with a track (``stream(track_sid=...)``) is stored as a live transcript; a
plain ``stream()`` (what an ``AgentSession`` opens) sends ``store: false``. Retryable
failures raise ``APIConnectionError``, which the livekit-agents stream base retries; a
refused token or bad audio raises a non-retryable ``APIStatusError``.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
import weakref
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectOptions,
    NotGivenOr,
    stt,
    utils,
)
from livekit.agents.language import LanguageCode

from agent.stt_stream import (
    SAMPLE_RATE,
    RoomscribeStream,
    StreamStats,
    STTOptions,
    updated_options,
)
from roomscribe.protocol import StartMessage

__all__ = [
    "SAMPLE_RATE",
    "TRACK_CONNECT_OPTIONS",
    "BackoffConnectOptions",
    "RoomscribeSTT",
    "RoomscribeStream",
    "STTOptions",
    "StreamStats",
]


@dataclass(frozen=True)
class BackoffConnectOptions(APIConnectOptions):
    """Connect options whose retry interval doubles up to ``max_interval``.

    The first retry is immediate (a restarted service is usually back at once); later ones
    wait ``retry_interval``, then twice that, and so on.
    """

    max_interval: float = 5.0

    def _interval_for_retry(self, num_retries: int) -> float:
        if num_retries == 0:
            return 0.1
        return float(min(self.max_interval, self.retry_interval * 2 ** (num_retries - 1)))


#: Reconnect for about a minute before giving up on a track.
TRACK_CONNECT_OPTIONS = BackoffConnectOptions(
    max_retry=15, retry_interval=0.25, timeout=10.0, max_interval=5.0
)


class RoomscribeSTT(stt.STT[Literal["metrics_collected", "error"]]):
    """Streaming speech-to-text through a Roomscribe STT service.

    Args:
        url: The service's base URL (``http(s)://`` or ``ws(s)://``), without ``/v1/stream``;
            several instances as a comma-separated list (or a sequence). Each stream is
            assigned the instance with the fewest open streams of this STT; when a connection
            fails or the instance refuses or drops the stream retryably (overloaded 1013,
            restarting 1012, a lost connection), its next attempt goes to the next instance,
            and the resume point comes from the shared store, so nothing is lost on the move.
        token: The internal token (``aud`` = ``stt``), or a function that returns a fresh one
            for each connection (tokens are short-lived); ``None`` when the service runs
            without authentication.
        language: The default language of new streams.
        room: The room name sent in each stream's ``start`` message.
        max_replay_s: The most uncommitted audio kept for resending after a reconnect.
        keepalive_interval_s: Seconds without audio after which a stream sends
            ``keepalive``; ``None`` disables keepalives.
    """

    def __init__(
        self,
        *,
        url: str | Sequence[str],
        token: str | Callable[[], str] | None = None,
        language: str = "en",
        room: str = "default",
        max_replay_s: float = 30.0,
        keepalive_interval_s: float | None = 5.0,
    ) -> None:
        super().__init__(
            capabilities=stt.STTCapabilities(
                streaming=True,
                interim_results=True,
                aligned_transcript="word",
                offline_recognize=True,
                manual_flush=True,
            )
        )
        urls = url.split(",") if isinstance(url, str) else list(url)
        self._ws_urls = [_stream_url(u) for u in urls if u.strip()]
        if not self._ws_urls:
            raise ValueError("RoomscribeSTT needs at least one STT service URL")
        self._token = token
        self._opts = STTOptions(
            language=language,
            room=room,
            max_replay_s=max_replay_s,
            keepalive_interval_s=keepalive_interval_s,
        )
        self._streams: weakref.WeakSet[RoomscribeStream] = weakref.WeakSet()

    @property
    def model(self) -> str:
        """The recognizer family behind the service."""
        return "vosk"

    @property
    def provider(self) -> str:
        """Who serves the recognition."""
        return "roomscribe"

    @property
    def options(self) -> STTOptions:
        """A copy of the options new streams get."""
        return dataclasses.replace(self._opts)

    def update_options(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        keepalive_interval_s: NotGivenOr[float | None] = NOT_GIVEN,
    ) -> None:
        """Change the options of new streams and of every open one.

        Args:
            language: Applies to an open stream at its next (re)connect (see
                :meth:`RoomscribeStream.update_options`); it replaces a language a stream
                was opened with.
            keepalive_interval_s: Applies at once.
        """
        self._opts = updated_options(self._opts, language=language, keepalive=keepalive_interval_s)
        for stream in self._streams:
            stream.update_options(language=language, keepalive_interval_s=keepalive_interval_s)

    @property
    def instances(self) -> list[str]:
        """The STT service instances' stream URLs, in the order failover tries them."""
        return list(self._ws_urls)

    def _assign(self) -> int:
        """The instance a new stream starts on: the one with the fewest open streams."""
        load = [0] * len(self._ws_urls)
        for stream in self._streams:
            if not stream.closed:
                load[stream.instance] += 1
        return min(range(len(load)), key=load.__getitem__)

    def _auth_headers(self) -> dict[str, str]:
        token = self._token() if callable(self._token) else self._token
        return {"Authorization": f"Bearer {token}"} if token else {}

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        participant: str = "participant",
        track_sid: str | None = None,
        track_started_at: float | None = None,
        room: str | None = None,
        start_offset: int = 0,
    ) -> RoomscribeStream:
        """Open a stream, for one track or for plain recognition.

        Args:
            language: The stream's language (default: the STT's).
            conn_options: Retry budget and timeouts for (re)connecting.
            participant: The identity of the participant whose track this is.
            track_sid: The track's sid; it keys the stored segments. Without it the stream
                has no track behind it (an ``AgentSession``'s call): it gets a generated id
                and its results are not stored (``store: false``).
            track_started_at: Epoch seconds of the track's first sample (default: now).
            room: The room name (default: the STT's).
            start_offset: The track-clock sample offset of the stream's first sample: a
                track subscribed again continues its clock instead of restarting at 0 (the
                service takes audio before its resume point as already durable).
        """
        if start_offset < 0:
            raise ValueError(f"start_offset must be >= 0, got {start_offset}")
        opts = updated_options(self._opts, language=language)
        if room:
            opts.room = room
        stream = RoomscribeStream(
            stt=self,
            conn_options=conn_options,
            start=StartMessage(
                room=opts.room,
                participant=participant,
                track_sid=track_sid or f"ST_{uuid.uuid4().hex[:12]}",
                language=opts.language,
                sample_rate=SAMPLE_RATE,
                track_started_at=track_started_at if track_started_at is not None else time.time(),
                store=track_sid is not None,
            ),
            opts=opts,
            start_offset=start_offset,
            instance=self._assign(),
        )
        self._streams.add(stream)
        return stream

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        """Recognize a whole buffer by streaming it and joining the finals."""
        stream = self.stream(language=language, conn_options=conn_options)
        stream.push_frame(rtc.combine_audio_frames(buffer))
        stream.end_input()
        finals: list[stt.SpeechData] = []
        try:
            async for event in stream:
                if event.type is stt.SpeechEventType.FINAL_TRANSCRIPT:
                    finals.extend(event.alternatives[:1])
        finally:
            await stream.aclose()
        data = stt.SpeechData(
            language=LanguageCode(stream.start.language),
            text=" ".join(f.text for f in finals if f.text),
            start_time=finals[0].start_time if finals else 0.0,
            end_time=finals[-1].end_time if finals else 0.0,
            confidence=float(np.mean([f.confidence for f in finals])) if finals else 0.0,
            words=[w for f in finals for w in (f.words or [])],
        )
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=stream.start.track_sid,
            alternatives=[data],
        )


def _stream_url(url: str) -> str:
    """``/v1/stream`` on ``url``, as ``ws(s)://`` (``http(s)://`` is accepted)."""
    base = url.strip().rstrip("/")
    if base.startswith("http"):
        base = "ws" + base[len("http") :]
    return f"{base}/v1/stream"
