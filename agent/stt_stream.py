"""One track's stream to the Roomscribe STT service: audio out, replay, results in.

:class:`RoomscribeStream` is what :meth:`agent.stt_plugin.RoomscribeSTT.stream` returns (the
plugin module describes the protocol behaviour); it lives here, with its options and
counters, so the plugin's entry class stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
from livekit import rtc
from livekit.agents import (
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

from agent.replay import ReplayBuffer
from roomscribe.aio import cancel_and_wait
from roomscribe.errors import ProtocolError
from roomscribe.protocol import (
    CloseCode,
    CommittedMessage,
    EndMessage,
    ErrorCode,
    ErrorMessage,
    FinalMessage,
    FlushMessage,
    KeepaliveMessage,
    PartialMessage,
    ReadyMessage,
    StartMessage,
    StatsMessage,
    encode_audio_frame,
    parse_server_message,
)

if TYPE_CHECKING:
    from agent.stt_plugin import RoomscribeSTT

#: The rate the stream sends; the base class resamples pushed frames to it.
SAMPLE_RATE = 16000
#: Audio per binary frame sent to the service (well under its 1 s limit).
_FRAME_BYTES = SAMPLE_RATE // 10 * 2
#: Error codes after which reconnecting can help (``idle_timeout``: older services did not
#: mark it retryable, but a reconnect is exactly what it calls for).
_RETRYABLE_CODES = frozenset(
    {
        ErrorCode.OVERLOADED,
        ErrorCode.BREAKER_OPEN,
        ErrorCode.SHUTTING_DOWN,
        ErrorCode.INTERNAL,
        ErrorCode.IDLE_TIMEOUT,
    }
)
#: Recent finals (segment id, text) remembered to drop a final the service sends again.
_SEEN_FINALS = 64

_Input = rtc.AudioFrame | stt.RecognizeStream._FlushSentinel | None  # None: input ended


@dataclass
class STTOptions:
    """Options of :class:`RoomscribeSTT` and of each of its streams.

    Attributes:
        language: The language recognized. A stream sends it in each ``start``, so a change
            applies at the stream's next (re)connect, never in the middle of a connection.
        room: The room name sent in ``start``.
        max_replay_s: The most uncommitted audio kept for resending after a reconnect; audio
            past it is dropped oldest first and counted (``replay_dropped_samples``).
        keepalive_interval_s: Send ``keepalive`` after this long without sending anything,
            so a muted track is not closed as idle; ``None`` sends none.
    """

    language: str = "en"
    room: str = "default"
    max_replay_s: float = 30.0
    keepalive_interval_s: float | None = 5.0

    def __post_init__(self) -> None:
        if self.max_replay_s < 0:
            raise ValueError(f"max_replay_s must be >= 0, got {self.max_replay_s}")
        if self.keepalive_interval_s is not None and self.keepalive_interval_s <= 0:
            raise ValueError(
                f"keepalive_interval_s must be > 0 or None, got {self.keepalive_interval_s}"
            )


@dataclass
class StreamStats:
    """What one stream sent and what the service reports it did with it."""

    sent_samples: int = 0
    replayed_samples: int = 0
    reconnects: int = 0
    #: Times a failed connection moved the stream to the next STT instance.
    failovers: int = 0
    #: Connections the service closed for idleness (each followed by a lazy reconnect).
    idle_closes: int = 0
    keepalives: int = 0
    #: Everything before this sample offset is durable at the service.
    committed_offset: int = 0
    #: Uncommitted samples the replay buffer had to forget (too much audio uncommitted).
    replay_dropped_samples: int = 0
    received_ms: int = 0
    dropped_ms: int = 0
    finals: int = 0
    partials: int = 0
    errors: list[str] = field(default_factory=list)


class _IdleClosed(Exception):
    """The service closed the connection because the stream sent nothing for too long."""


class RoomscribeStream(stt.RecognizeStream):
    """One track's stream to the STT service; see the module docstring."""

    def __init__(
        self,
        *,
        stt: RoomscribeSTT,
        conn_options: APIConnectOptions,
        start: StartMessage,
        opts: STTOptions,
        start_offset: int = 0,
        instance: int = 0,
    ) -> None:
        super().__init__(stt=stt, conn_options=conn_options, sample_rate=SAMPLE_RATE)
        self._owner = stt
        self._opts = opts
        #: The ``start`` message of the current connection.
        self.start = start
        self.stats = StreamStats()
        self._replay = ReplayBuffer(int(opts.max_replay_s * SAMPLE_RATE))
        self._next_offset = start_offset
        #: Index of the STT instance the stream connects to next (see RoomscribeSTT ``url``).
        self.instance = instance
        self._pending = bytearray()  # input not yet sent; survives a reconnect
        self._held: list[_Input] = []  # an input item taken while idle, sent first
        self._input_done = False  # every input sample sent, then ``end``
        self._idle = False  # the service closed us as idle: reconnect when input comes
        self._last_sent = time.monotonic()
        self._options_changed = asyncio.Event()
        self._utterance = 0
        self._in_speech = False
        self._usage_reported_ms = 0
        self._connected_once = False
        self._seen_finals: deque[tuple[str, str]] = deque(maxlen=_SEEN_FINALS)

    @property
    def track_sid(self) -> str:
        """The sid of the track this stream transcribes (a generated id for no track)."""
        return self.start.track_sid

    @property
    def replay(self) -> ReplayBuffer:
        """The audio not yet committed by the service (read it; the stream writes it)."""
        return self._replay

    def update_options(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        keepalive_interval_s: NotGivenOr[float | None] = NOT_GIVEN,
    ) -> None:
        """Change this stream's options.

        Args:
            language: Sent in the next ``start``, so it applies at the next (re)connect:
                the service's recognizer is chosen per connection, and forcing a reconnect
                would cut the utterance in progress.
            keepalive_interval_s: Applies at once.
        """
        self._opts = updated_options(self._opts, language=language, keepalive=keepalive_interval_s)
        self._options_changed.set()

    def _caption_id(self) -> str:
        return f"{self.start.track_sid}-u{self._utterance}"

    # -- the connection ------------------------------------------------------------------
    async def _run(self) -> None:
        while True:
            if self._idle:
                if not await self._input_waiting():
                    self._end_speech()
                    return
                self._idle = False
            try:
                ws, ready = await self._connect()
            except APIConnectionError:
                self._fail_over()
                raise
            if self._connected_once:
                self.stats.reconnects += 1
            self._connected_once = True
            try:
                await self._session(ws, ready.resume_offset)
                return
            except APIConnectionError:
                # Overloaded, restarting or cut: the retry goes to the next instance.
                self._fail_over()
                raise
            except _IdleClosed:
                self.stats.idle_closes += 1
                self._idle = True
            finally:
                await ws.close()

    @property
    def closed(self) -> bool:
        """Whether the stream has ended (it no longer counts toward its instance's load)."""
        return self._task.done()

    def _fail_over(self) -> None:
        count = len(self._owner.instances)
        if count > 1:
            self.instance = (self.instance + 1) % count
            self.stats.failovers += 1

    async def _input_waiting(self) -> bool:
        """After an idle close, wait for input; False when it ended with nothing to send."""
        if not self._held:
            self._held.append(await self._next_input())
        return self._held[0] is not None or bool(self._pending) or self._replay.samples > 0

    async def _next_input(self) -> _Input:
        if self._held:
            return self._held.pop()
        try:
            return await self._input_ch.recv()
        except utils.aio.ChanClosed:
            return None

    @property
    def next_offset(self) -> int:
        """The track-clock offset of the next sample sent (the end of the audio sent)."""
        return self._next_offset

    async def _session(self, ws: ClientConnection, resume_offset: int) -> None:
        """Run one connection until the receiver says how it ended."""
        self._commit(resume_offset)  # the service holds what comes before: never resent
        self._last_sent = time.monotonic()
        receiver = asyncio.create_task(self._receive_loop(ws), name="roomscribe-stt-recv")
        tasks = [
            receiver,
            asyncio.create_task(self._send_loop(ws, resume_offset), name="roomscribe-stt-send"),
            asyncio.create_task(self._keepalive_loop(ws), name="roomscribe-stt-keepalive"),
        ]
        try:
            pending = set(tasks)
            while receiver in pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done - {receiver}:
                    # Helpers return when the connection closes; an exception is a bug.
                    if (exc := task.exception()) is not None:
                        raise exc
            receiver.result()
        finally:
            await cancel_and_wait(*(t for t in tasks if not t.done()))
            for task in tasks:  # outcomes already acted on, or superseded by the one raised
                if not task.cancelled():
                    task.exception()

    async def _connect(self) -> tuple[ClientConnection, ReadyMessage]:
        if self.start.language != self._opts.language:
            self.start = self.start.model_copy(update={"language": self._opts.language})
        try:
            async with asyncio.timeout(self._conn_options.timeout):
                ws = await connect(
                    self._owner.instances[self.instance],
                    additional_headers=self._owner._auth_headers(),
                    max_size=2**22,
                    compression=None,
                )
                try:
                    await ws.send(self.start.model_dump_json())
                    first = parse_server_message(await ws.recv())
                except BaseException:  # timed out or cut: no half-open socket is left behind
                    await ws.close()
                    raise
        except InvalidStatus as exc:
            status = exc.response.status_code
            raise APIStatusError(
                f"STT service refused the connection: HTTP {status}", status_code=status
            ) from exc
        except (OSError, TimeoutError, WebSocketException, ProtocolError) as exc:
            raise APIConnectionError(f"cannot reach the STT service: {exc}") from exc
        if isinstance(first, ReadyMessage):
            return ws, first
        await ws.close()
        if isinstance(first, ErrorMessage):
            raise self._error(first)
        raise APIConnectionError(f"expected 'ready', got {first.type!r}")

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

    async def _send(self, ws: ClientConnection, data: str | bytes) -> None:
        await ws.send(data)
        self._last_sent = time.monotonic()

    async def _send_loop(self, ws: ClientConnection, resume_offset: int) -> None:
        """Resend what the service lacks, then send input as it comes, then ``end``."""
        try:
            for offset, pcm in self._replay.chunks_from(resume_offset):
                await self._send(ws, encode_audio_frame(offset, pcm))
                self.stats.replayed_samples += len(pcm) // 2
            while not self._input_done:
                item = await self._next_input()
                if isinstance(item, rtc.AudioFrame):
                    self._pending += _mono_pcm(item)
                    while len(self._pending) >= _FRAME_BYTES:
                        await self._send_audio(ws, _take(self._pending, _FRAME_BYTES))
                    continue
                if self._pending:  # a flush or the end: what is pending goes first
                    await self._send_audio(ws, _take(self._pending, len(self._pending)))
                if item is None:
                    self._input_done = True
                else:
                    await self._send(ws, FlushMessage().model_dump_json())
            await self._send(ws, EndMessage().model_dump_json())
        except ConnectionClosed:
            return  # the receiver sees the close too, and tells what it means

    async def _send_audio(self, ws: ClientConnection, pcm: bytes) -> None:
        offset = self._next_offset
        self._next_offset += len(pcm) // 2
        # Kept before sending: if the send fails, the reconnect resends it.
        self._replay.append(offset, pcm)
        self.stats.replay_dropped_samples = self._replay.dropped_samples
        self.stats.sent_samples += len(pcm) // 2
        await self._send(ws, encode_audio_frame(offset, pcm))

    async def _keepalive_loop(self, ws: ClientConnection) -> None:
        """Send ``keepalive`` whenever nothing was sent for the interval (a muted track)."""
        try:
            while not self._input_done:  # after ``end`` the service reads no more
                interval = self._opts.keepalive_interval_s
                due = None if interval is None else self._last_sent + interval - time.monotonic()
                if due is not None and due <= 0:
                    await self._send(ws, KeepaliveMessage().model_dump_json())
                    self.stats.keepalives += 1
                    continue
                self._options_changed.clear()
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(due):  # or until the interval changes
                        await self._options_changed.wait()
        except ConnectionClosed:
            return

    async def _receive_loop(self, ws: ClientConnection) -> None:
        idle = False
        try:
            async for raw in ws:
                message = parse_server_message(raw)
                if isinstance(message, PartialMessage):
                    self._on_partial(message)
                elif isinstance(message, FinalMessage):
                    self._on_final(message)
                elif isinstance(message, CommittedMessage):
                    self._commit(message.offset)
                elif isinstance(message, StatsMessage):
                    self.stats.received_ms = message.received_ms
                    self.stats.dropped_ms = message.dropped_ms
                elif isinstance(message, ErrorMessage):
                    idle = idle or message.code is ErrorCode.IDLE_TIMEOUT
                    error = self._error(message)
                    if not error.retryable:
                        raise error
        except ConnectionClosed as exc:
            raise APIConnectionError(f"STT connection lost: {exc}") from exc
        except ProtocolError as exc:
            raise APIStatusError(f"STT service sent {exc}", retryable=False) from exc
        code = ws.close_code
        if idle or code == CloseCode.GOING_AWAY:
            raise _IdleClosed
        if self._input_done and code == CloseCode.NORMAL:
            self._end_speech()
            return
        # Closed early (restart, overload): reconnect and resend what is uncommitted.
        raise APIConnectionError(f"STT service closed the stream (code {code})")

    def _commit(self, offset: int) -> None:
        self._replay.commit(offset)
        self.stats.committed_offset = self._replay.committed_offset

    # -- results -------------------------------------------------------------------------
    def _on_partial(self, message: PartialMessage) -> None:
        if not message.text:
            return
        self.stats.partials += 1
        if not self._in_speech:
            self._in_speech = True
            self._emit(stt.SpeechEventType.START_OF_SPEECH, self._caption_id())
        data = stt.SpeechData(
            language=LanguageCode(self.start.language),
            text=message.text,
            start_time=message.start_ms / 1000,
            end_time=(message.audio_end_ms or message.start_ms) / 1000,
            metadata={"audio_end_ms": message.audio_end_ms},
        )
        self._emit(stt.SpeechEventType.INTERIM_TRANSCRIPT, self._caption_id(), data)

    def _on_final(self, message: FinalMessage) -> None:
        seen = (message.segment_id, message.text)
        if seen in self._seen_finals:
            # Sent again after a reconnect (it was not committed yet): delivered already. A
            # final with the same id but other text (more audio) is delivered: it is news.
            self._end_speech()
            return
        self._seen_finals.append(seen)
        if not message.text:
            return
        self.stats.finals += 1
        caption_id = self._caption_id()
        self._utterance += 1
        metadata: dict[str, Any] = {
            "segment_id": message.segment_id,
            "audio_end_ms": message.audio_end_ms,
        }
        data = stt.SpeechData(
            language=LanguageCode(self.start.language),
            text=message.text,
            start_time=message.start_ms / 1000,
            end_time=message.end_ms / 1000,
            confidence=message.confidence,
            words=[
                TimedString(
                    w.word,
                    start_time=w.start_ms / 1000,
                    end_time=w.end_ms / 1000,
                    confidence=w.confidence,
                )
                for w in message.words
            ],
            metadata=metadata,
        )
        self._emit(stt.SpeechEventType.FINAL_TRANSCRIPT, caption_id, data)
        heard = (message.audio_end_ms or 0) - self._usage_reported_ms
        if heard > 0:
            self._usage_reported_ms += heard
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
            self._emit(stt.SpeechEventType.END_OF_SPEECH, caption_id or self._caption_id())

    def _emit(
        self, kind: stt.SpeechEventType, request_id: str, data: stt.SpeechData | None = None
    ) -> None:
        self._event_ch.send_nowait(
            stt.SpeechEvent(type=kind, request_id=request_id, alternatives=[data] if data else [])
        )


def updated_options(
    opts: STTOptions,
    *,
    language: NotGivenOr[str] = NOT_GIVEN,
    keepalive: NotGivenOr[float | None] = NOT_GIVEN,
) -> STTOptions:
    """A validated copy of ``opts`` with the given fields changed."""
    changes: dict[str, Any] = {}
    if utils.is_given(language):
        changes["language"] = language
    if utils.is_given(keepalive):
        changes["keepalive_interval_s"] = keepalive
    return dataclasses.replace(opts, **changes)


def _take(buffer: bytearray, n: int) -> bytes:
    """Remove and return the first ``n`` bytes (taken before the send that may fail)."""
    chunk = bytes(buffer[:n])
    del buffer[:n]
    return chunk


def _mono_pcm(frame: rtc.AudioFrame) -> bytes:
    """The frame as s16le mono (channels averaged)."""
    if frame.num_channels == 1:
        return bytes(frame.data.cast("B"))
    samples = np.frombuffer(frame.data, dtype=np.int16).reshape(-1, frame.num_channels)
    return bytes(samples.mean(axis=1).astype("<i2").tobytes())
