"""A livekit-agents STT plugin for the Roomscribe STT service.

:class:`RoomscribeSTT` speaks the streaming protocol of DESIGN.md section 5 and can stand in
for any STT in a LiveKit voice agent. Each :class:`RoomscribeStream` carries one track:

- audio is resampled to 16 kHz mono and sent with its sample offset from the track's start;
- every sample not yet covered by a final is kept in a replay buffer, so when the service
  drops or restarts, the stream reconnects (backoff between attempts) and resends that audio
  at its original offsets: no final is lost and every timestamp stays on the track's clock;
- the service's ``partial``/``final`` messages become ``INTERIM_TRANSCRIPT`` /
  ``FINAL_TRANSCRIPT`` events with word timings; an utterance's events share one
  ``request_id`` (its caption id) and a final carries the stored segment id in
  ``SpeechData.metadata["segment_id"]``.

Retryable failures (connection lost, service restarting, overloaded) raise
``APIConnectionError``, which the livekit-agents stream base retries; a refused token or bad
audio raises a non-retryable ``APIStatusError``.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from livekit import rtc
from livekit.agents import (
    DEFAULT_API_CONNECT_OPTIONS,
    NOT_GIVEN,
    APIConnectionError,
    APIConnectOptions,
    APIStatusError,
    NotGivenOr,
    stt,
    utils,
)
from livekit.agents.language import LanguageCode
from livekit.agents.types import TimedString
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, WebSocketException

from roomscribe.errors import ProtocolError
from roomscribe.protocol import (
    CloseCode,
    EndMessage,
    ErrorCode,
    ErrorMessage,
    FinalMessage,
    FlushMessage,
    PartialMessage,
    ReadyMessage,
    StartMessage,
    StatsMessage,
    encode_audio_frame,
    parse_server_message,
)

#: The rate the stream sends; the base class resamples pushed frames to it.
SAMPLE_RATE = 16000
#: Audio per binary frame sent to the service (well under its 1 s limit).
_FRAME_SAMPLES = SAMPLE_RATE // 10
#: Error codes after which reconnecting can help.
_RETRYABLE_CODES = frozenset(
    {ErrorCode.OVERLOADED, ErrorCode.BREAKER_OPEN, ErrorCode.SHUTTING_DOWN, ErrorCode.INTERNAL}
)


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


@dataclass
class StreamStats:
    """What one stream sent and what the service reports it did with it."""

    sent_samples: int = 0
    replayed_samples: int = 0
    reconnects: int = 0
    received_ms: int = 0
    dropped_ms: int = 0
    finals: int = 0
    partials: int = 0
    errors: list[str] = field(default_factory=list)


class RoomscribeSTT(stt.STT[Literal["metrics_collected", "error"]]):
    """Streaming speech-to-text through a Roomscribe STT service.

    Args:
        url: The service's base URL (``http(s)://`` or ``ws(s)://``), without ``/v1/stream``.
        token: The internal token (``aud`` = ``stt``), or a function that returns a fresh one
            for each connection (tokens are short-lived); ``None`` when the service runs
            without authentication.
        language: The default language of new streams.
        room: The room name sent in each stream's ``start`` message.
        max_replay_s: The most audio kept for resending after a reconnect.
    """

    def __init__(
        self,
        *,
        url: str,
        token: str | Callable[[], str] | None = None,
        language: str = "en",
        room: str = "default",
        max_replay_s: float = 30.0,
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
        base = url.rstrip("/")
        if base.startswith("http"):
            base = "ws" + base[len("http") :]
        self._ws_url = f"{base}/v1/stream"
        self._token = token
        self._language = language
        self._room = room
        self._max_replay_s = max_replay_s

    @property
    def model(self) -> str:
        """The recognizer family behind the service."""
        return "vosk"

    @property
    def provider(self) -> str:
        """Who serves the recognition."""
        return "roomscribe"

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
    ) -> RoomscribeStream:
        """Open a stream for one track.

        Args:
            language: The track's language (default: the STT's).
            conn_options: Retry budget and timeouts for (re)connecting.
            participant: The identity of the participant whose track this is.
            track_sid: The track's sid (a fresh one when not given); it keys the stored
                segments, so pass the real one.
            track_started_at: Epoch seconds of the track's first sample (default: now).
            room: The room name (default: the STT's).
        """
        return RoomscribeStream(
            stt=self,
            conn_options=conn_options,
            start=StartMessage(
                room=room or self._room,
                participant=participant,
                track_sid=track_sid or f"TR_{uuid.uuid4().hex[:12]}",
                language=language if isinstance(language, str) else self._language,
                sample_rate=SAMPLE_RATE,
                track_started_at=track_started_at if track_started_at is not None else time.time(),
            ),
            max_replay_samples=int(self._max_replay_s * SAMPLE_RATE),
        )

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        """Recognize a whole buffer by streaming it and joining the finals."""
        stream = self.stream(language=language, conn_options=conn_options)
        frame = rtc.combine_audio_frames(buffer)
        stream.push_frame(frame)
        stream.end_input()
        finals: list[stt.SpeechData] = []
        try:
            async for event in stream:
                if event.type is stt.SpeechEventType.FINAL_TRANSCRIPT:
                    finals.extend(event.alternatives[:1])
        finally:
            await stream.aclose()
        lang = language if isinstance(language, str) else self._language
        text = " ".join(f.text for f in finals if f.text)
        data = stt.SpeechData(
            language=LanguageCode(lang),
            text=text,
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


class RoomscribeStream(stt.RecognizeStream):
    """One track's stream to the STT service; see the module docstring."""

    def __init__(
        self,
        *,
        stt: RoomscribeSTT,
        conn_options: APIConnectOptions,
        start: StartMessage,
        max_replay_samples: int,
    ) -> None:
        super().__init__(stt=stt, conn_options=conn_options, sample_rate=SAMPLE_RATE)
        self._owner = stt
        self.start = start
        self.stats = StreamStats()
        # Audio not yet covered by a final, as (offset, pcm) pairs in offset order.
        self._replay: deque[tuple[int, bytes]] = deque()
        self._replay_samples = 0
        self._max_replay = max_replay_samples
        self._next_offset = 0
        self._utterance = 0
        self._in_speech = False
        self._input_done = False
        self._usage_reported_ms = 0
        self._connected_once = False
        self._pending = bytearray()

    @property
    def track_sid(self) -> str:
        """The sid of the track this stream transcribes."""
        return self.start.track_sid

    def _caption_id(self) -> str:
        return f"{self.start.track_sid}-u{self._utterance}"

    # -- the connection ------------------------------------------------------------------
    async def _run(self) -> None:
        ws = await self._connect()
        if self._connected_once:
            self.stats.reconnects += 1
        self._connected_once = True
        try:
            await self._resend(ws)
            sender = asyncio.create_task(self._send_loop(ws), name="roomscribe-stt-send")
            receiver = asyncio.create_task(self._receive_loop(ws), name="roomscribe-stt-recv")
            try:
                await self._wait_session(sender, receiver)
            finally:
                await utils.aio.cancel_and_wait(sender, receiver)
        finally:
            await ws.close()

    @staticmethod
    async def _wait_session(sender: asyncio.Task[None], receiver: asyncio.Task[None]) -> None:
        """Return when the receiver ends; a sender bug ends the session at once."""
        done, _ = await asyncio.wait({sender, receiver}, return_when=asyncio.FIRST_COMPLETED)
        if receiver not in done:
            exc = sender.exception()
            if exc is not None and not isinstance(exc, ConnectionClosed):
                raise exc
            # The sender finished (input ended) or saw the connection drop: the receiver
            # tells which, by returning after the last final or raising.
            await asyncio.wait({receiver})
        elif sender.done() and not sender.cancelled():
            sender.exception()  # retrieved: the receiver's outcome is the one that counts
        receiver.result()

    async def _connect(self) -> ClientConnection:
        try:
            async with asyncio.timeout(self._conn_options.timeout):
                ws = await connect(
                    self._owner._ws_url,
                    additional_headers=self._owner._auth_headers(),
                    max_size=2**22,
                    compression=None,
                )
                await ws.send(self.start.model_dump_json())
                first = parse_server_message(await ws.recv())
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise APIStatusError(
                f"STT service refused the connection: HTTP {status}", status_code=status
            ) from exc
        except (OSError, TimeoutError, WebSocketException, ProtocolError) as exc:
            raise APIConnectionError(f"cannot reach the STT service: {exc}") from exc
        if isinstance(first, ErrorMessage):
            await ws.close()
            raise self._error(first)
        if not isinstance(first, ReadyMessage):
            await ws.close()
            raise APIConnectionError(f"expected 'ready', got {first.type!r}")
        return ws

    def _error(self, message: ErrorMessage) -> APIStatusError | APIConnectionError:
        self.stats.errors.append(f"{message.code}: {message.message}")
        if message.retryable or message.code in _RETRYABLE_CODES:
            return APIConnectionError(f"STT service: {message.code}: {message.message}")
        return APIStatusError(
            f"STT service: {message.code}: {message.message}",
            status_code=400,
            body=message.model_dump(),
            retryable=False,
        )

    async def _resend(self, ws: ClientConnection) -> None:
        """Send what the service may not have turned into finals yet, at its offsets."""
        for offset, pcm in list(self._replay):
            await ws.send(encode_audio_frame(offset, pcm))
            self.stats.replayed_samples += len(pcm) // 2

    async def _send_loop(self, ws: ClientConnection) -> None:
        if self._input_done:  # input ended before a reconnect: just ask for the last final
            await ws.send(EndMessage().model_dump_json())
            return
        pending = self._pending  # survives a reconnect: nothing taken from input is lost
        async for item in self._input_ch:
            if isinstance(item, rtc.AudioFrame):
                pending += _mono_pcm(item)
                while len(pending) >= _FRAME_SAMPLES * 2:
                    await self._send_audio(ws, bytes(pending[: _FRAME_SAMPLES * 2]))
                    del pending[: _FRAME_SAMPLES * 2]
            else:  # a flush: send what is pending, then ask for a final
                if pending:
                    await self._send_audio(ws, bytes(pending))
                    pending.clear()
                await ws.send(FlushMessage().model_dump_json())
        if pending:
            await self._send_audio(ws, bytes(pending))
        self._input_done = True
        await ws.send(EndMessage().model_dump_json())

    async def _send_audio(self, ws: ClientConnection, pcm: bytes) -> None:
        offset = self._next_offset
        self._next_offset += len(pcm) // 2
        # Kept before sending: if the send fails, the reconnect resends it.
        self._replay.append((offset, pcm))
        self._replay_samples += len(pcm) // 2
        while self._replay_samples > self._max_replay and len(self._replay) > 1:
            _, old = self._replay.popleft()
            self._replay_samples -= len(old) // 2
        self.stats.sent_samples += len(pcm) // 2
        await ws.send(encode_audio_frame(offset, pcm))

    async def _receive_loop(self, ws: ClientConnection) -> None:
        try:
            async for raw in ws:
                message = parse_server_message(raw)
                if isinstance(message, PartialMessage):
                    self._on_partial(message)
                elif isinstance(message, FinalMessage):
                    self._on_final(message)
                elif isinstance(message, StatsMessage):
                    self.stats.received_ms = message.received_ms
                    self.stats.dropped_ms = message.dropped_ms
                elif isinstance(message, ErrorMessage):
                    error = self._error(message)
                    if not error.retryable:
                        raise error
        except ConnectionClosed as exc:
            raise APIConnectionError(f"STT connection lost: {exc}") from exc
        except ProtocolError as exc:
            raise APIStatusError(f"STT service sent {exc}", retryable=False) from exc
        code = ws.close_code
        if self._input_done and code == CloseCode.NORMAL:
            self._end_speech()
            return
        # Closed early (restart, overload, idle): reconnect and resend what is unfinished.
        raise APIConnectionError(f"STT service closed the stream (code {code})")

    # -- results -------------------------------------------------------------------------
    def _on_partial(self, message: PartialMessage) -> None:
        if not message.text:
            return
        self.stats.partials += 1
        if not self._in_speech:
            self._in_speech = True
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.START_OF_SPEECH, request_id=self._caption_id()
                )
            )
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=stt.SpeechEventType.INTERIM_TRANSCRIPT,
                request_id=self._caption_id(),
                alternatives=[
                    stt.SpeechData(
                        language=LanguageCode(self.start.language),
                        text=message.text,
                        start_time=message.start_ms / 1000,
                        end_time=(message.audio_end_ms or message.start_ms) / 1000,
                        metadata={"audio_end_ms": message.audio_end_ms},
                    )
                ],
            )
        )

    def _on_final(self, message: FinalMessage) -> None:
        self._trim_replay(message.audio_end_ms)
        if not message.text:
            return
        self.stats.finals += 1
        words = [
            TimedString(
                w.word,
                start_time=w.start_ms / 1000,
                end_time=w.end_ms / 1000,
                confidence=w.confidence,
            )
            for w in message.words
        ]
        caption_id = self._caption_id()
        self._utterance += 1
        metadata: dict[str, Any] = {
            "segment_id": message.segment_id,
            "audio_end_ms": message.audio_end_ms,
        }
        self._event_ch.send_nowait(
            stt.SpeechEvent(
                type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                request_id=caption_id,
                alternatives=[
                    stt.SpeechData(
                        language=LanguageCode(self.start.language),
                        text=message.text,
                        start_time=message.start_ms / 1000,
                        end_time=message.end_ms / 1000,
                        confidence=message.confidence,
                        words=words,
                        metadata=metadata,
                    )
                ],
            )
        )
        if message.audio_end_ms is not None:
            heard = message.audio_end_ms - self._usage_reported_ms
            if heard > 0:
                self._usage_reported_ms = message.audio_end_ms
                self._event_ch.send_nowait(
                    stt.SpeechEvent(
                        type=stt.SpeechEventType.RECOGNITION_USAGE,
                        request_id=caption_id,
                        recognition_usage=stt.RecognitionUsage(audio_duration=heard / 1000),
                    )
                )
        self._end_speech(caption_id)

    def _end_speech(self, caption_id: str | None = None) -> None:
        if self._in_speech:
            self._in_speech = False
            self._event_ch.send_nowait(
                stt.SpeechEvent(
                    type=stt.SpeechEventType.END_OF_SPEECH,
                    request_id=caption_id or self._caption_id(),
                )
            )

    def _trim_replay(self, audio_end_ms: int | None) -> None:
        """Forget audio the service has covered with finals (it heard up to ``audio_end_ms``)."""
        if audio_end_ms is None:
            return
        done = audio_end_ms * SAMPLE_RATE // 1000
        while self._replay:
            offset, pcm = self._replay[0]
            if offset + len(pcm) // 2 > done:
                break
            self._replay.popleft()
            self._replay_samples -= len(pcm) // 2


def _mono_pcm(frame: rtc.AudioFrame) -> bytes:
    """The frame as s16le mono (channels averaged)."""
    if frame.num_channels == 1:
        return bytes(frame.data.cast("B"))
    samples = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
    return bytes(samples.mean(axis=1).astype("<i2").tobytes())
