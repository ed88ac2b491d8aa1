"""Everything before a stream runs: auth, the start message, language, track, resume, admission.

``GET /v1/stream`` is served by :func:`handle_stream`: it checks the token, reads and
validates the ``start`` message, checks that a known track belongs to the room and
participant the start names, works out where the stream resumes (:func:`resume_point`),
admits the stream (or refuses it, retryably, when full) and hands it to
:class:`~stt_service.session.StreamSession`. Every refusal is an ``error`` message and a
close code that says whether reconnecting can help.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

from starlette.websockets import WebSocket, WebSocketDisconnect

from roomscribe.auth import verify_internal_token
from roomscribe.errors import AuthError, ProtocolError, StoreError
from roomscribe.models import SegmentSource
from roomscribe.protocol import (
    CloseCode,
    ErrorCode,
    ErrorMessage,
    StartMessage,
    parse_client_message,
)
from stt_service.manager import AdmissionError
from stt_service.session import StreamSession, SttRuntime
from stt_service.writer import TrackMismatchError

log = logging.getLogger(__name__)


class _Refused(Exception):
    """The stream is refused before it starts; carries what the client is told."""

    def __init__(self, code: ErrorCode, message: str, close: CloseCode) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.close = close


async def _reject(ws: WebSocket, runtime: SttRuntime, refused: _Refused) -> None:
    runtime.metrics.rejected.labels(reason=refused.code.value).inc()
    retryable = refused.close is CloseCode.TRY_AGAIN_LATER
    with contextlib.suppress(WebSocketDisconnect, RuntimeError, OSError):
        await ws.send_text(
            ErrorMessage(
                code=refused.code, message=refused.message, retryable=retryable
            ).model_dump_json()
        )
        await ws.close(int(refused.close), refused.message[:120])


def _check_token(ws: WebSocket, runtime: SttRuntime) -> None:
    settings = runtime.settings
    if not settings.stt_auth:
        return
    scheme, _, token = ws.headers.get("authorization", "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not token:
            raise AuthError("missing 'Authorization: Bearer <token>' header")
        verify_internal_token(settings.secret.get_secret_value(), token.strip(), audience="stt")
    except AuthError as exc:
        raise _Refused(ErrorCode.UNAUTHORIZED, str(exc), CloseCode.POLICY_VIOLATION) from exc


async def _read_start(ws: WebSocket, runtime: SttRuntime) -> StartMessage | None:
    """The validated start message; ``None`` if the client left first."""
    timeout = runtime.settings.stt_start_timeout_s
    try:
        async with asyncio.timeout(timeout):
            first = await ws.receive()
    except TimeoutError as exc:
        raise _Refused(
            ErrorCode.NOT_STARTED,
            f"no start message within {timeout:g} s",
            CloseCode.UNSUPPORTED_DATA,
        ) from exc
    if first["type"] == "websocket.disconnect":
        return None
    if first.get("text") is None:
        raise _Refused(
            ErrorCode.NOT_STARTED,
            "audio before the start message; send {'type': 'start', ...} first",
            CloseCode.UNSUPPORTED_DATA,
        )
    try:
        # Validation covers every field, e.g. a track_started_at of NaN, Infinity or 1e300.
        start = parse_client_message(first["text"])
    except ProtocolError as exc:
        raise _Refused(ErrorCode(exc.code), exc.message, CloseCode.UNSUPPORTED_DATA) from exc
    if not isinstance(start, StartMessage):
        raise _Refused(
            ErrorCode.NOT_STARTED,
            f"{start.type!r} before the start message",
            CloseCode.UNSUPPORTED_DATA,
        )
    languages = runtime.factory.languages()
    if start.language not in languages:
        raise _Refused(
            ErrorCode.UNSUPPORTED_LANGUAGE,
            f"no model for language {start.language!r}; available: {', '.join(languages)}",
            CloseCode.UNSUPPORTED_DATA,
        )
    return start


async def resume_point(runtime: SttRuntime, start: StartMessage) -> int:
    """Where the stream starts, in client samples: how far the track is known to be durable.

    The highest of what this process remembers (the last committed offset of the track's
    previous stream), the stored ``live.committed_s``, and the end of the last stored live
    segment (which covers a commit point lost in a crash). A store that cannot answer does
    not stop the stream: the remembered offset is used, and the track is checked when the
    writer registers it.

    Raises:
        TrackMismatchError: the store knows the track with another room or participant.
    """
    remembered = runtime.manager.resume_offset(start.track_sid)
    if not start.store:
        return remembered
    try:
        track = await runtime.store.find_track(start.track_sid)
        if track is None:
            return remembered
        if track.room != start.room or track.participant_identity != start.participant:
            raise TrackMismatchError(
                f"track {start.track_sid!r} belongs to {track.participant_identity!r} in room "
                f"{track.room!r}, not to {start.participant!r} in {start.room!r}"
            )
        durable_s = track.live.committed_s
        # Chunk metadata only (no segments): the newest live word's end, in track time.
        chunks = await runtime.store.list_chunks(start.track_sid, SegmentSource.REALTIME)
        if chunks:
            durable_s = max(durable_s, max(c.end for c in chunks) - track.live_origin_s())
    except StoreError as exc:
        log.warning(
            "store unavailable at stream start: resuming from memory (%s)",
            exc,
            extra={"track_sid": start.track_sid},
        )
        return remembered
    return max(remembered, round(durable_s * start.sample_rate))


async def handle_stream(ws: WebSocket, runtime: SttRuntime) -> None:
    """Serve ``GET /v1/stream`` for one client."""
    await ws.accept()
    try:
        _check_token(ws, runtime)
        start = await _read_start(ws, runtime)
        if start is None:
            return
        try:
            resume = await resume_point(runtime, start)
        except TrackMismatchError as exc:
            raise _Refused(ErrorCode.TRACK_MISMATCH, str(exc), CloseCode.UNSUPPORTED_DATA) from exc
        session = StreamSession(ws, runtime, start, resume_offset=resume)
        try:
            runtime.manager.admit(session)
        except AdmissionError as exc:
            raise _Refused(ErrorCode.OVERLOADED, str(exc), CloseCode.TRY_AGAIN_LATER) from exc
    except _Refused as refused:
        await _reject(ws, runtime, refused)
        return
    try:
        await session.run()
    finally:
        runtime.manager.release(session, committed_offset=session.committed_offset)
