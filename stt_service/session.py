"""One started stream: protocol handling around a :class:`ClientInferencePipeline`.

Four tasks per stream: the receive loop (audio and control in), the send loop (results out
at once, finals to the writer), the commit loop (``committed`` once the writer has stored
what an offset covers, in order) and a stats ticker. Whatever ends the stream (the client's
``end``, a disconnect, bad input, idleness, the breaker, shutdown, a failure of this code),
the pipeline is ended and its thread joined, every task is cancelled and waited for, and
the writer and the metrics are told once; the close code says why.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime

from pydantic import BaseModel
from starlette.websockets import WebSocket, WebSocketDisconnect, WebSocketState

from roomscribe.aio import cancel_and_wait
from roomscribe.errors import ProtocolError
from roomscribe.models import SegmentIn, TrackCreate, Word
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
    WireWord,
    decode_audio_frame,
    parse_client_message,
)
from roomscribe.store import TranscriptStore
from stt_service.events import BoundaryEvent, ClosedEvent, FailureEvent, FinalEvent
from stt_service.manager import PipelineManager
from stt_service.metrics import SttMetrics
from stt_service.pipeline import ClientInferencePipeline
from stt_service.recognizer import RecognizerFactory
from stt_service.settings import SttSettings
from stt_service.writer import SegmentWriter, TrackMismatchError

log = logging.getLogger(__name__)

#: Commits waiting for the store at most; beyond it the newest stands for those before it.
_MAX_PENDING_COMMITS = 64
#: How long teardown waits for the pipeline thread (a recognizer call cannot be interrupted).
_JOIN_S = 5.0


@dataclass
class SttRuntime:
    """What every stream shares: settings, models, store, writer, metrics, manager."""

    settings: SttSettings
    factory: RecognizerFactory
    writer: SegmentWriter
    metrics: SttMetrics
    manager: PipelineManager
    store: TranscriptStore


@dataclass
class _Commit:
    offset: int
    stored: asyncio.Future[None] | None  # None: nothing to wait for (a store: false stream)
    since: float


def _retrieve(waiter: asyncio.Future[None]) -> None:
    # A commit superseded or abandoned may fail later with nobody awaiting it.
    if not waiter.cancelled():
        waiter.exception()


class StreamSession:
    """A started stream; see the module docstring."""

    def __init__(
        self, ws: WebSocket, runtime: SttRuntime, start: StartMessage, *, resume_offset: int = 0
    ) -> None:
        """Bind the stream to its socket, the shared runtime, its start and resume point."""
        self.track_sid = start.track_sid
        self.resume_offset = resume_offset
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
        self._committed = resume_offset  # the highest offset sent as committed
        self._requested = resume_offset  # the highest offset queued for a commit
        self._commits: deque[_Commit] = deque()
        self._commit_wake = asyncio.Event()
        self._commits_closing = False
        self._draining = False

    @property
    def queue_depth(self) -> int:
        """Audio chunks this stream has waiting."""
        return 0 if self._pipeline is None else self._pipeline.queue_depth

    @property
    def committed_offset(self) -> int:
        """The highest offset this stream has committed (its resume point at first)."""
        return self._committed

    # Manager hooks -------------------------------------------------------------------------
    def drain(self) -> None:
        """Shutdown: stop reading, finish the pipeline, tell the client to reconnect."""
        self._close_code = CloseCode.SERVICE_RESTART
        self._close_reason = "server shutting down"
        self._draining = True
        if self._receiver is not None:
            self._receiver.cancel()

    async def wait_done(self) -> None:
        """Wait until the stream has ended."""
        await self._done.wait()

    # The stream ----------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve the stream until it ends, then close the socket with the right code."""
        rt, start = self._rt, self._start
        pipeline: ClientInferencePipeline | None = None
        tasks: list[asyncio.Task[None]] = []
        acquired = counted = False
        try:
            if start.store:
                try:
                    rt.writer.ensure_track(self._track())
                except TrackMismatchError as exc:
                    await self._fail(ErrorCode.TRACK_MISMATCH, str(exc))
                    await self._close()
                    return
                acquired = True
            pipeline = ClientInferencePipeline(
                recognizer=functools.partial(rt.factory, start.language),
                client_rate=start.sample_rate,
                track_sid=start.track_sid,
                loop=asyncio.get_running_loop(),
                start_offset=self.resume_offset,
                queue_chunks=rt.settings.stt_queue_chunks,
                max_batch_chunks=rt.settings.stt_max_batch_chunks,
                breaker_threshold=rt.settings.stt_breaker_failures,
                feed_ms=rt.settings.stt_feed_ms,
            )
            self._pipeline = pipeline
            pipeline.start()
            rt.metrics.active_clients.inc()
            counted = True
            await self._send(ReadyMessage(resume_offset=self.resume_offset))
            await self._send(CommittedMessage(offset=self.resume_offset))
            self._receiver = asyncio.create_task(self._receive_loop(pipeline), name="stt-receive")
            if self._draining:  # shutdown began while the stream was starting
                self._receiver.cancel()
            sender = asyncio.create_task(self._send_loop(pipeline), name="stt-send")
            committer = asyncio.create_task(self._commit_loop(), name="stt-commit")
            ticker = asyncio.create_task(self._stats_loop(pipeline), name="stt-stats")
            tasks = [self._receiver, sender, committer, ticker]
            await asyncio.wait({self._receiver, sender}, return_when=asyncio.FIRST_COMPLETED)
            if not sender.done():
                pipeline.end()  # the client is done (or gone): produce the last final
                await sender
            await cancel_and_wait(self._receiver)  # still reading if the pipeline stopped
            _raise_failure(self._receiver, sender)
            await self._settle_commits(committer)
            await cancel_and_wait(ticker)
            await self._report_stats(pipeline)
            await self._close()
        except Exception:
            log.exception("stream failed", extra={"track_sid": self.track_sid})
            # The socket may be what failed: close it without trusting it any further.
            self._connected = False
            with contextlib.suppress(Exception):
                await self._ws.close(int(CloseCode.TRY_AGAIN_LATER), "internal error")
        finally:
            await self._teardown(pipeline, tasks, acquired=acquired, counted=counted)

    async def _teardown(
        self,
        pipeline: ClientInferencePipeline | None,
        tasks: list[asyncio.Task[None]],
        *,
        acquired: bool,
        counted: bool,
    ) -> None:
        try:
            # What needs no await first: a second cancellation cannot skip it.
            if pipeline is not None:
                pipeline.events.close()  # nobody reads any more: unblock the thread
                pipeline.end()
            if counted:
                self._rt.metrics.active_clients.dec()
            if acquired:
                self._rt.writer.release(self.track_sid)
            await cancel_and_wait(*tasks)
            if pipeline is not None and not await pipeline.join(_JOIN_S):
                log.warning("pipeline thread still running", extra={"track_sid": self.track_sid})
        finally:
            self._done.set()

    def _track(self) -> TrackCreate:
        start = self._start
        origin = datetime.fromtimestamp(start.track_started_at, UTC)
        return TrackCreate(
            track_sid=start.track_sid,
            room=start.room,
            participant_identity=start.participant,
            # The stream's sample 0 on the agent's clock: the live segments' origin. It
            # stands for the publish time only if nobody knew better.
            published_at=origin,
            live_origin=origin,
            language=start.language,
        )

    async def _receive_loop(self, pipeline: ClientInferencePipeline) -> None:
        idle = self._rt.settings.stt_idle_timeout_s
        rate = self._start.sample_rate
        try:
            while True:
                try:
                    async with asyncio.timeout(idle):
                        message = await self._ws.receive()
                except TimeoutError:
                    # Nothing lost: the client reconnects when it has audio again.
                    await self._error(
                        ErrorCode.IDLE_TIMEOUT,
                        f"no audio and no keepalive for {idle:g} s",
                        retryable=True,
                    )
                    self._close_code = CloseCode.GOING_AWAY
                    self._close_reason = "idle"
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
                elif isinstance(command, KeepaliveMessage):
                    continue  # receiving it restarted the idle timer
                elif isinstance(command, EndMessage):
                    return
                else:
                    raise ProtocolError(ErrorCode.ALREADY_STARTED, "the stream is already started")
        except ProtocolError as exc:
            self._rt.metrics.rejected.labels(reason=exc.code).inc()
            await self._fail(ErrorCode(exc.code), exc.message)

    async def _send_loop(self, pipeline: ClientInferencePipeline) -> None:
        metrics, store = self._rt.metrics, self._start.store
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
            if isinstance(event, BoundaryEvent):
                self._commit(event.covered_offset)
                continue
            if isinstance(event, FinalEvent):
                # Captions must stay fast: the final goes out now, its commit once stored.
                if store:
                    self._rt.writer.add_segment(self.track_sid, _segment(event))
                await self._send(_final_message(event))
                self._commit(event.covered_offset)
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

    # Commits -------------------------------------------------------------------------------
    def _commit(self, offset: int) -> None:
        """Queue a commit of ``offset``, sent once what was handed to the writer is stored."""
        if offset <= self._requested:
            return
        self._requested = offset
        stored = self._rt.writer.stored(self.track_sid) if self._start.store else None
        if stored is not None:
            stored.add_done_callback(_retrieve)
        if len(self._commits) >= _MAX_PENDING_COMMITS:
            # A long store outage: the newest waits for all before it, so it stands for them.
            self._commits.pop()
        self._commits.append(_Commit(offset, stored, time.monotonic()))
        self._commit_wake.set()

    async def _commit_loop(self) -> None:
        rt = self._rt
        while True:
            if not self._commits:
                if self._commits_closing:
                    return
                self._commit_wake.clear()
                await self._commit_wake.wait()
                continue
            head = self._commits[0]
            if head.stored is not None:
                try:
                    await head.stored
                except TrackMismatchError as exc:
                    await self._fail(ErrorCode.TRACK_MISMATCH, str(exc))
                    if self._receiver is not None:
                        self._receiver.cancel()
                    return
                except Exception as exc:  # lost segments, or the writer closed
                    # Never commit past audio whose words are not stored: the client keeps
                    # it and resends it on its next connection.
                    rt.metrics.commits_stopped.inc()
                    log.error("commits stopped: %s", exc, extra={"track_sid": self.track_sid})
                    self._commits.clear()
                    return
            self._commits.popleft()
            offset = head.offset
            while self._commits and _stored(self._commits[0]):
                offset = self._commits.popleft().offset  # durable too: one message for all
            rt.metrics.commit_latency.observe(time.monotonic() - head.since)
            self._committed = offset
            rt.manager.note_committed(self.track_sid, offset)
            if self._start.store:
                rt.writer.mark_committed(self.track_sid, offset / self._start.sample_rate)
            await self._send(CommittedMessage(offset=offset))

    async def _settle_commits(self, committer: asyncio.Task[None]) -> None:
        """Let the last commits out (bounded: the store may be down), then stop the loop.

        Also when the client is gone: what is committed is what a reconnect resumes from
        (this process remembers it, and the store's ``live.committed_s``).
        """
        self._commits_closing = True
        self._commit_wake.set()
        await asyncio.wait({committer}, timeout=self._rt.settings.stt_commit_wait_s)
        await cancel_and_wait(committer)

    # Stats ---------------------------------------------------------------------------------
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
        if self._start.store:
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

    async def _fail(self, code: ErrorCode, message: str) -> None:
        """A non-retryable error that ends the stream with 1003 (bad data)."""
        await self._error(code, message)
        self._close_code = CloseCode.UNSUPPORTED_DATA
        self._close_reason = message[:120]

    async def _close(self) -> None:
        if not self._connected or self._ws.application_state is WebSocketState.DISCONNECTED:
            return
        with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
            await self._ws.close(int(self._close_code), self._close_reason)


def _raise_failure(*tasks: asyncio.Task[None]) -> None:
    """Re-raise the first exception a task ended with (a bug, or a socket that failed)."""
    for task in tasks:
        if task.done() and not task.cancelled() and (exc := task.exception()) is not None:
            raise exc


def _stored(commit: _Commit) -> bool:
    waiter = commit.stored
    return waiter is None or (
        waiter.done() and not waiter.cancelled() and waiter.exception() is None
    )


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
