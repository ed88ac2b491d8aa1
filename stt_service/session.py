"""One WebSocket stream: protocol handling around a :class:`ClientInferencePipeline`.

Three tasks per stream: the receive loop (audio and control in), the send loop (results
out, finals to the store), and a stats ticker. Whatever ends the stream (the client's
``end``, a disconnect, bad input, idleness, the breaker, shutdown), the pipeline is ended
so its last final is produced and stored, and the close code says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from roomscribe.auth import verify_internal_token
from roomscribe.errors import AuthError, ProtocolError
from roomscribe.models import SegmentIn, TrackCreate, Word
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
    WireWord,
    decode_audio_frame,
    parse_client_message,
)
from stt_service.manager import AdmissionError, PipelineManager
from stt_service.metrics import SttMetrics
from stt_service.pipeline import (
    ClientInferencePipeline,
    ClosedEvent,
    FailureEvent,
    FinalEvent,
)
from stt_service.recognizer import RecognizerFactory
from stt_service.settings import SttSettings
from stt_service.writer import SegmentWriter

log = logging.getLogger(__name__)


@dataclass
class SttRuntime:
    """What every stream shares: settings, models, store writer, metrics, manager."""

    settings: SttSettings
    factory: RecognizerFactory
    writer: SegmentWriter
    metrics: SttMetrics
    manager: PipelineManager


async def _reject(
    ws: WebSocket, runtime: SttRuntime, code: ErrorCode, message: str, close: CloseCode
) -> None:
    runtime.metrics.rejected.labels(reason=code.value).inc()
    retryable = close is CloseCode.TRY_AGAIN_LATER
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await ws.send_text(
            ErrorMessage(code=code, message=message, retryable=retryable).model_dump_json()
        )
        await ws.close(int(close), message[:120])


async def handle_stream(ws: WebSocket, runtime: SttRuntime) -> None:
    """Serve ``GET /v1/stream`` for one client."""
    settings = runtime.settings
    await ws.accept()
    if settings.stt_auth:
        header = ws.headers.get("authorization", "")
        scheme, _, token = header.partition(" ")
        try:
            if scheme.lower() != "bearer" or not token:
                raise AuthError("missing 'Authorization: Bearer <token>' header")
            verify_internal_token(settings.secret.get_secret_value(), token.strip(), audience="stt")
        except AuthError as exc:
            await _reject(ws, runtime, ErrorCode.UNAUTHORIZED, str(exc), CloseCode.POLICY_VIOLATION)
            return
    try:
        async with asyncio.timeout(settings.stt_start_timeout_s):
            first = await ws.receive()
    except TimeoutError:
        await _reject(
            ws,
            runtime,
            ErrorCode.NOT_STARTED,
            f"no start message within {settings.stt_start_timeout_s:g} s",
            CloseCode.UNSUPPORTED_DATA,
        )
        return
    if first["type"] == "websocket.disconnect":
        return
    if first.get("text") is None:
        await _reject(
            ws,
            runtime,
            ErrorCode.NOT_STARTED,
            "audio before the start message; send {'type': 'start', ...} first",
            CloseCode.UNSUPPORTED_DATA,
        )
        return
    try:
        start = parse_client_message(first["text"])
    except ProtocolError as exc:
        await _reject(ws, runtime, ErrorCode(exc.code), exc.message, CloseCode.UNSUPPORTED_DATA)
        return
    if not isinstance(start, StartMessage):
        await _reject(
            ws,
            runtime,
            ErrorCode.NOT_STARTED,
            f"{start.type!r} before the start message",
            CloseCode.UNSUPPORTED_DATA,
        )
        return
    if start.language not in runtime.factory.languages():
        await _reject(
            ws,
            runtime,
            ErrorCode.UNSUPPORTED_LANGUAGE,
            f"no model for language {start.language!r}; "
            f"available: {', '.join(runtime.factory.languages())}",
            CloseCode.UNSUPPORTED_DATA,
        )
        return
    session = StreamSession(ws, runtime, start)
    try:
        runtime.manager.admit(session)
    except AdmissionError as exc:
        await _reject(ws, runtime, ErrorCode.OVERLOADED, str(exc), CloseCode.TRY_AGAIN_LATER)
        return
    try:
        await session.run()
    finally:
        runtime.manager.release(session, next_offset=session.next_offset)


class StreamSession:
    """A started stream; see the module docstring."""

    def __init__(self, ws: WebSocket, runtime: SttRuntime, start: StartMessage) -> None:
        """Bind the stream to its socket, the shared runtime and its start message."""
        self.track_sid = start.track_sid
        self._ws = ws
        self._rt = runtime
        self._start = start
        self._connected = True
        self._close_code = CloseCode.NORMAL
        self._close_reason = ""
        self._done = asyncio.Event()
        self._receiver: asyncio.Task[None] | None = None
        self._pipeline: ClientInferencePipeline | None = None
        self._reported = (0, 0, 0, 0, 0.0)  # received, dropped, failed, recognized, compute
        self.next_offset: int | None = None

    @property
    def queue_depth(self) -> int:
        """Audio chunks this stream has waiting."""
        return 0 if self._pipeline is None else self._pipeline.queue_depth

    # Manager hooks -------------------------------------------------------------------------
    def drain(self) -> None:
        """Shutdown: stop reading, finish the pipeline, tell the client to reconnect."""
        self._close_code = CloseCode.SERVICE_RESTART
        self._close_reason = "server shutting down"
        if self._receiver is not None:
            self._receiver.cancel()

    async def wait_done(self) -> None:
        """Wait until the stream has ended."""
        await self._done.wait()

    # The stream ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the stream until it ends, then close the socket with the right code."""
        rt, start = self._rt, self._start
        try:
            pipeline = ClientInferencePipeline(
                recognizer=rt.factory(start.language),
                client_rate=start.sample_rate,
                track_sid=start.track_sid,
                loop=asyncio.get_running_loop(),
                queue_chunks=rt.settings.stt_queue_chunks,
                max_batch_chunks=rt.settings.stt_max_batch_chunks,
                breaker_threshold=rt.settings.stt_breaker_failures,
            )
            self._pipeline = pipeline
            rt.writer.ensure_track(
                TrackCreate(
                    track_sid=start.track_sid,
                    room=start.room,
                    participant_identity=start.participant,
                    # The stream's sample 0 on the agent's clock: the live segments'
                    # origin. It stands for the publish time only if nobody knew better.
                    published_at=datetime.fromtimestamp(start.track_started_at, UTC),
                    live_origin=datetime.fromtimestamp(start.track_started_at, UTC),
                    language=start.language,
                )
            )
            pipeline.start()
            rt.metrics.active_clients.inc()
            await self._send(ReadyMessage(resume_offset=rt.manager.resume_offset(self.track_sid)))
            self._receiver = asyncio.create_task(self._receive_loop(pipeline))
            sender = asyncio.create_task(self._send_loop(pipeline))
            ticker = asyncio.create_task(self._stats_loop(pipeline))
            await asyncio.wait({self._receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not sender.done():
                pipeline.end()  # the client is done (or gone): produce the last final
                await sender
            elif not self._receiver.done():
                self._receiver.cancel()  # the pipeline stopped (breaker): stop reading
            with contextlib.suppress(asyncio.CancelledError):
                await self._receiver
            ticker.cancel()
            await self._report_stats(pipeline)
            self.next_offset = pipeline.next_offset
            rt.metrics.active_clients.dec()
            await pipeline.join(5.0)
            await self._close()
        finally:
            self._done.set()

    async def _receive_loop(self, pipeline: ClientInferencePipeline) -> None:
        idle = self._rt.settings.stt_idle_timeout_s
        rate = self._start.sample_rate
        try:
            while True:
                try:
                    async with asyncio.timeout(idle):
                        message = await self._ws.receive()
                except TimeoutError:
                    await self._error(ErrorCode.IDLE_TIMEOUT, f"nothing received for {idle:g} s")
                    self._close_code = CloseCode.GOING_AWAY
                    return
                if message["type"] == "websocket.disconnect":
                    self._connected = False
                    return
                data = message.get("bytes")
                if data is not None:
                    offset, pcm = decode_audio_frame(data, sample_rate=rate)
                    pipeline.submit(offset, pcm)
                    continue
                command = parse_client_message(message.get("text") or "")
                if isinstance(command, FlushMessage):
                    pipeline.flush()
                elif isinstance(command, EndMessage):
                    return
                else:
                    raise ProtocolError(ErrorCode.ALREADY_STARTED, "the stream is already started")
        except ProtocolError as exc:
            self._rt.metrics.rejected.labels(reason=exc.code).inc()
            await self._error(ErrorCode(exc.code), exc.message)
            self._close_code = CloseCode.UNSUPPORTED_DATA
            self._close_reason = exc.message[:120]

    async def _send_loop(self, pipeline: ClientInferencePipeline) -> None:
        metrics = self._rt.metrics
        while True:
            event = await pipeline.events.get()
            if isinstance(event, ClosedEvent):
                return
            if isinstance(event, FailureEvent):
                if event.tripped:
                    metrics.breaker_trips.inc()
                    self._close_code = CloseCode.TRY_AGAIN_LATER
                    self._close_reason = "circuit breaker open"
                    await self._error(
                        ErrorCode.BREAKER_OPEN,
                        f"{event.consecutive} consecutive recognizer failures; "
                        f"last: {event.message}",
                        retryable=True,
                    )
                continue
            if isinstance(event, FinalEvent):
                self._rt.writer.add_segment(self.track_sid, _segment(event))
                await self._send(_final_message(event))
                latency = metrics.final_latency
            else:
                await self._send(
                    PartialMessage(
                        text=event.text, start_ms=event.start_ms, audio_end_ms=event.audio_end_ms
                    )
                )
                latency = metrics.partial_latency
            total = time.monotonic() - event.received_at
            latency.observe(total)
            metrics.added_latency.observe(max(0.0, total - event.compute_s))

    async def _stats_loop(self, pipeline: ClientInferencePipeline) -> None:
        while True:
            await asyncio.sleep(self._rt.settings.stt_stats_interval_s)
            await self._report_stats(pipeline)

    async def _report_stats(self, pipeline: ClientInferencePipeline) -> None:
        acc, rate, metrics = pipeline.accounting, self._start.sample_rate, self._rt.metrics
        now = (acc.received, acc.dropped, acc.failed, acc.recognized, acc.recognizer_s)
        before = self._reported
        self._reported = now
        d_received, d_dropped, d_failed, d_recognized = (
            (now[i] - before[i]) / rate for i in range(4)
        )
        metrics.received_audio.inc(d_received)
        metrics.dropped_audio.labels(reason="overflow").inc(d_dropped)
        metrics.dropped_audio.labels(reason="recognizer_failure").inc(d_failed)
        metrics.recognized_audio.inc(d_recognized)
        metrics.recognizer_seconds.inc(now[4] - before[4])
        self._rt.writer.add_stats(
            self.track_sid, received_s=d_received, dropped_s=d_dropped + d_failed
        )
        await self._send(
            StatsMessage(
                received_ms=acc.received * 1000 // rate,
                dropped_ms=(acc.dropped + acc.failed) * 1000 // rate,
                queue_depth=pipeline.queue_depth,
            )
        )

    # Socket helpers ------------------------------------------------------------------------
    async def _send(self, message: BaseModel) -> None:
        if not self._connected:
            return
        try:
            await self._ws.send_text(message.model_dump_json())
        except (WebSocketDisconnect, RuntimeError, OSError):
            # The client is gone; finals still reach the store through the writer.
            self._connected = False

    async def _error(self, code: ErrorCode, message: str, *, retryable: bool = False) -> None:
        await self._send(ErrorMessage(code=code, message=message, retryable=retryable))

    async def _close(self) -> None:
        if not self._connected or self._ws.application_state is WebSocketState.DISCONNECTED:
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._ws.close(int(self._close_code), self._close_reason)


def _segment(event: FinalEvent) -> SegmentIn:
    return SegmentIn(
        id=event.segment_id,
        start=event.start_ms / 1000,
        end=max(event.end_ms, event.start_ms) / 1000,
        text=event.text,
        confidence=min(1.0, max(0.0, event.confidence)),
        words=[
            Word(
                word=w.word,
                start=w.start_ms / 1000,
                end=max(w.end_ms, w.start_ms) / 1000,
                confidence=min(1.0, max(0.0, w.confidence)),
            )
            for w in event.words
        ],
    )


def _final_message(event: FinalEvent) -> FinalMessage:
    return FinalMessage(
        segment_id=event.segment_id,
        text=event.text,
        start_ms=event.start_ms,
        end_ms=event.end_ms,
        confidence=event.confidence,
        audio_end_ms=event.audio_end_ms,
        words=[
            WireWord(word=w.word, start_ms=w.start_ms, end_ms=w.end_ms, confidence=w.confidence)
            for w in event.words
        ],
    )
