"""``GET /v1/rooms/{room}/events`` (server-sent events) and the stream tokens it accepts."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from orchestrator_service.deps import PrincipalDep, StateDep
from orchestrator_service.live.access import LiveDep, LiveState, RoomAccess, RoomAccessDep
from orchestrator_service.live.events import Position, RoomEvents
from orchestrator_service.openapi import error_responses
from orchestrator_service.paths import EncodedSegmentsRoute
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.errors import StoreError

log = logging.getLogger(__name__)

router = APIRouter(
    route_class=EncodedSegmentsRoute,
    prefix="/v1",
    tags=["live"],
    responses=error_responses(401, 422, 503),
)

#: What EventSource waits before reconnecting after a dropped connection.
RETRY_MS = 1000
#: Longest wait between reads while the store keeps failing.
_MAX_BACKOFF_S = 30.0


class StreamToken(BaseModel):
    """A short-lived token that opens one room's events and recordings from a URL."""

    token: str
    room: str
    expires_at: datetime
    expires_in: float


@router.post(
    "/rooms/{room}/stream-token",
    response_model=StreamToken,
    summary="A URL token for the room's events and audio",
    responses=error_responses(403, 404),
)
async def stream_token(
    room: str, state: StateDep, live: LiveDep, principal: PrincipalDep
) -> StreamToken:
    """Trade the API token for one that ``EventSource`` and ``<audio>`` can carry as ``?token=``.

    It opens only this room's events and track recordings, and expires after
    ``ROOMSCRIBE_STREAM_TOKEN_TTL_S`` (5 minutes by default): ask again before then.
    """
    principal.require_room(room)
    await state.store.get_room(room)
    token, expires = live.tokens.issue(room, subject=principal.subject)
    return StreamToken(
        token=token,
        room=room,
        expires_at=datetime.fromtimestamp(expires, UTC),
        expires_in=max(0.0, expires - time.time()),
    )


_EVENTS_DOC = (
    "Events of types `room`, `track`, `segment`, `correction` and `resync`, each with an "
    "`id:`; JSON `data:` (a room, a track, a segment, or `{track_sid, ...}`)."
)


@router.get(
    "/rooms/{room}/events",
    summary="The room's changes as server-sent events",
    response_class=StreamingResponse,
    responses={
        200: {"content": {"text/event-stream": {}}, "description": _EVENTS_DOC},
        **error_responses(400, 403, 404),
    },
)
async def room_events(
    room: str,
    state: StateDep,
    live: LiveDep,
    access: RoomAccessDep,
    last_event_id: Annotated[
        str | None, Header(alias="Last-Event-ID", include_in_schema=False)
    ] = None,
    resume: Annotated[
        str | None,
        Query(
            alias="last_event_id",
            description="Resume after this event id (when the client cannot send the "
            "Last-Event-ID header, e.g. a new EventSource); the header wins.",
        ),
    ] = None,
) -> StreamingResponse:
    """Stored live segments, Whisper corrections, room and track changes, as they happen.

    Without an event id the stream starts with the room's whole history (the room, each
    track, every live segment so far), so a client needs no other request to catch up.
    With one (``Last-Event-ID``, sent by EventSource when it reconnects, or
    ``?last_event_id=``) it resumes right after that event: none lost, none repeated, across
    orchestrator restarts too. A ``correction`` or ``resync`` event says a track's transcript
    is to be read again (``GET .../tracks/{track}/transcript``). Comments keep an idle
    connection open; the stream ends when its token expires (reconnect with a new one).
    """
    # An id the client sent must be one of this room's; check it before the answer starts.
    after = last_event_id or resume
    position = Position.start(room) if not after else Position.decode(after, room=room)
    await state.store.get_room(room)
    events = RoomEvents(state.store, room, position)
    return StreamingResponse(
        _stream(events, live, state.settings, access),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _stream(
    events: RoomEvents, live: LiveState, settings: OrchestratorSettings, access: RoomAccess
) -> AsyncIterator[bytes]:
    """Read the store every poll interval and send what changed, until told to stop."""
    loop = asyncio.get_running_loop()
    yield f"retry: {RETRY_MS}\n\n".encode()
    quiet_since = loop.time()
    failures = 0
    while not live.stopping.is_set():
        if access.expires_at is not None and time.time() >= access.expires_at:
            return  # the client reconnects with a fresh token, from its last event id
        wait = settings.events_poll_s
        try:
            async for event in events.changes():
                yield event.encode()
                quiet_since = loop.time()
            failures = 0
        except StoreError as exc:
            # The answer has started: no 503 now. Keep the connection and read again later
            # (a failover is over in moments); the position is still where the client is.
            failures += 1
            wait = min(settings.events_poll_s * 2**failures, _MAX_BACKOFF_S)
            log.warning(
                "event stream: the store failed, retrying",
                extra={"room": access.room, "error": type(exc).__name__, "failures": failures},
            )
        if loop.time() - quiet_since >= settings.events_keepalive_s:
            yield b": keepalive\n\n"
            quiet_since = loop.time()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(live.stopping.wait(), wait)
