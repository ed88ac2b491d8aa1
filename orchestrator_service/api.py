"""The public REST API: rooms, tracks, transcripts and exports (Bearer JWT, scoped)."""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel

from orchestrator_service.deps import PrincipalDep, StateDep
from orchestrator_service.errors import error_body
from orchestrator_service.exports import ExportFormat, content_disposition, render
from orchestrator_service.openapi import error_responses
from orchestrator_service.paths import EncodedSegmentsRoute
from orchestrator_service.schemas import RoomDetail, RoomPublic, RoomsPage, TrackPublic
from roomscribe.errors import InvalidCursorError, NotFoundError, StoreError
from roomscribe.models import (
    RoomStatus,
    Segment,
    TranscriptPage,
    TranscriptQuery,
    TranscriptSource,
)
from roomscribe.store import TranscriptStore

log = logging.getLogger(__name__)

# Every public route can answer these; each route adds the ones particular to it.
router = APIRouter(
    route_class=EncodedSegmentsRoute,
    prefix="/v1",
    tags=["transcripts"],
    responses=error_responses(401, 422, 503),
)

_EXPORT_PAGE = 1000
#: Tries of one export page once the answer is streaming (its status already sent), and the
#: first wait between them (doubling).
_EXPORT_ATTEMPTS = 4
_EXPORT_RETRY_S = 0.25


class TranscriptFilters:
    """The transcript query parameters shared by the JSON and export endpoints."""

    def __init__(
        self,
        participant: Annotated[
            str | None, Query(description="Only this participant identity.")
        ] = None,
        source: Annotated[
            TranscriptSource,
            Query(
                description="realtime, whisper, or best (Whisper where it is done and "
                "heard speech, live elsewhere)."
            ),
        ] = TranscriptSource.BEST,
        time_from: Annotated[
            str | None,
            Query(
                alias="from",
                description="Segments ending after this time: epoch seconds or ISO 8601 "
                "(2026-11-21T09:05:00Z; a time without a zone is UTC).",
                examples=["2026-11-21T09:05:00Z", "1795251900"],
            ),
        ] = None,
        time_to: Annotated[
            str | None,
            Query(
                alias="to",
                description="Segments starting before this time: epoch seconds or ISO 8601.",
                examples=["2026-11-21T09:30:00+01:00"],
            ),
        ] = None,
        min_confidence: Annotated[float | None, Query(ge=0.0, le=1.0)] = None,
    ) -> None:
        """Collect the filters from the query string."""
        self.participant = participant
        self.source = source
        self.time_from = _instant("from", time_from)
        self.time_to = _instant("to", time_to)
        self.min_confidence = min_confidence

    def query(
        self, room: str, *, track_sid: str | None = None, limit: int, cursor: str | None
    ) -> TranscriptQuery:
        """Build the store query (422 when ``from`` is after ``to``)."""
        if (
            self.time_from is not None
            and self.time_to is not None
            and self.time_from > self.time_to
        ):
            raise _invalid("from", "'from' is after 'to'")
        return TranscriptQuery(
            room=room,
            track_sid=track_sid,
            participant_identity=self.participant,
            source=self.source,
            time_from=self.time_from,
            time_to=self.time_to,
            min_confidence=self.min_confidence,
            limit=limit,
            cursor=cursor,
        )


def _invalid(field: str, message: str) -> RequestValidationError:
    return RequestValidationError(
        [{"loc": ("query", field), "msg": message, "type": "value_error"}]
    )


def _instant(field: str, value: str | None) -> float | None:
    """Epoch seconds from a query value: a number of seconds or an ISO 8601 time."""
    if value is None or not value.strip():
        return None
    text = value.strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            when = datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise _invalid(
                field, f"{value[:40]!r} is neither epoch seconds nor an ISO 8601 time"
            ) from None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = when.timestamp()
    if not math.isfinite(seconds) or not -1e11 < seconds < 1e11:
        raise _invalid(field, f"{value[:40]!r} is not a time this API can hold")
    return seconds


Filters = Annotated[TranscriptFilters, Depends()]
Limit = Annotated[int, Query(ge=1, le=1000, description="Page size.")]
Cursor = Annotated[str | None, Query(description="``next_cursor`` of the previous page.")]


@router.get(
    "/rooms",
    response_model=RoomsPage,
    summary="List rooms, newest first",
    responses=error_responses(400),
)
async def list_rooms(
    state: StateDep,
    principal: PrincipalDep,
    status: RoomStatus | None = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
    cursor: Cursor = None,
) -> RoomsPage:
    """Rooms the caller may read (all for admins), filtered by status, paged by cursor."""
    names = None if principal.is_admin else principal.rooms
    page = await state.store.list_rooms(status=status, names=names, limit=limit, cursor=cursor)
    return RoomsPage(
        rooms=[RoomPublic.model_validate(r.model_dump()) for r in page.rooms],
        next_cursor=page.next_cursor,
    )


class SummaryRequested(BaseModel):
    """A summary run was started."""

    room: str
    status: RoomStatus


@router.post(
    "/rooms/{room}/summary:regenerate",
    response_model=SummaryRequested,
    status_code=202,
    summary="Summarize a room again (admin)",
    responses=error_responses(403, 404, 409),
)
async def regenerate_summary(room: str, state: StateDep, principal: PrincipalDep) -> Any:
    """Run the summary again, e.g. after a failed LLM call or with a better model."""
    principal.require_admin()
    await state.store.get_room(room)
    if not await state.lifecycle.regenerate_summary(room):
        current = await state.store.get_room(room)
        return JSONResponse(
            error_body(
                "not_ready",
                f"room is {current.status.value}; it needs every track done and no summary "
                "in progress",
            ),
            status_code=409,
        )
    return SummaryRequested(room=room, status=RoomStatus.SUMMARIZING)


@router.get(
    "/rooms/{room}",
    response_model=RoomDetail,
    summary="A room with its tracks",
    responses=error_responses(403, 404),
)
async def get_room(room: str, state: StateDep, principal: PrincipalDep) -> RoomDetail:
    """The room's status, participants, summary, and every track with its live stats."""
    principal.require_room(room)
    found = await state.store.get_room(room)
    tracks = await state.store.list_tracks(room)
    return RoomDetail.model_validate(
        found.model_dump()
        | {"tracks": [TrackPublic.model_validate(t.model_dump()) for t in tracks]}
    )


@router.get(
    "/rooms/{room}/transcript",
    response_model=TranscriptPage,
    summary="A room's transcript, one page at a time",
    responses=error_responses(400, 403, 404),
)
async def room_transcript(
    room: str,
    state: StateDep,
    principal: PrincipalDep,
    filters: Filters,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> TranscriptPage:
    """Segments of every track, sorted by absolute start time, speaker-attributed."""
    principal.require_room(room)
    await state.store.get_room(room)
    return await state.store.query_transcript(filters.query(room, limit=limit, cursor=cursor))


@router.get(
    "/rooms/{room}/tracks/{track_sid}/transcript",
    response_model=TranscriptPage,
    summary="One track's transcript",
    responses=error_responses(400, 403, 404),
)
async def track_transcript(
    room: str,
    track_sid: str,
    state: StateDep,
    principal: PrincipalDep,
    filters: Filters,
    limit: Limit = 100,
    cursor: Cursor = None,
) -> TranscriptPage:
    """Segments of one track, sorted by time."""
    principal.require_room(room)
    track = await state.store.get_track(track_sid)
    if track.room != room:
        raise NotFoundError(f"track {track_sid!r} is not in room {room!r}")
    query = filters.query(room, track_sid=track_sid, limit=limit, cursor=cursor)
    return await state.store.query_transcript(query)


async def _all_segments(
    store: TranscriptStore, query: TranscriptQuery, first: TranscriptPage
) -> AsyncIterator[Segment]:
    """``first``'s segments, then every later page's, read while the answer streams.

    Once the answer has started its status is sent: a store failure on a later page is
    retried (a failover is over in moments); one that outlasts the retries ends the stream
    without its last chunk, so the client sees a broken download, never a file that looks
    whole and lacks the rest of the meeting.
    """
    page = first
    while True:
        for seg in page.segments:
            yield seg
        if page.next_cursor is None:
            return
        next_query = query.model_copy(update={"cursor": page.next_cursor})
        for attempt in range(_EXPORT_ATTEMPTS):
            try:
                page = await store.query_transcript(next_query)
                break
            except (NotFoundError, InvalidCursorError):
                raise  # the store answered: no retry changes that
            except StoreError as exc:
                if attempt == _EXPORT_ATTEMPTS - 1:
                    log.error("export cut off: the store failed mid-stream: %s", exc)
                    raise
                log.warning("export page failed, retrying: %s", exc)
                await asyncio.sleep(_EXPORT_RETRY_S * 2**attempt)


@router.get(
    "/rooms/{room}/transcript.{fmt}",
    summary="Export a room's transcript (srt, vtt, txt, json)",
    response_class=StreamingResponse,
    responses={
        200: {"content": {f.media_type.split(";")[0]: {} for f in ExportFormat}},
        **error_responses(403, 404),
    },
)
async def export_transcript(
    room: str,
    fmt: ExportFormat,
    request: Request,
    state: StateDep,
    principal: PrincipalDep,
    filters: Filters,
) -> StreamingResponse:
    """The whole transcript, streamed; times start at the meeting's earliest track time.

    An export is the whole transcript (as filtered): ``limit`` and ``cursor`` belong to the
    paged JSON endpoint and are refused here rather than silently ignored.
    """
    paging = sorted({"limit", "cursor"} & set(request.query_params))
    if paging:
        raise _invalid(
            paging[0],
            "exports are never paged; page with /v1/rooms/{room}/transcript instead",
        )
    principal.require_room(room)
    found = await state.store.get_room(room)
    tracks = await state.store.list_tracks(room)
    # The earliest any source can place a segment: no time in the export is negative.
    origin = min((t.earliest_s() for t in tracks), default=found.created_at.timestamp())
    speakers = {
        t.participant_identity: t.participant_name or t.participant_identity for t in tracks
    }
    query = filters.query(room, limit=_EXPORT_PAGE, cursor=None)
    # The first page before the answer starts: a store that fails now gets a clean 503.
    first = await state.store.query_transcript(query)
    body = render(
        fmt, _all_segments(state.store, query, first), origin=origin, speakers=speakers, room=room
    )
    return StreamingResponse(
        body,
        media_type=fmt.media_type,
        headers={"Content-Disposition": content_disposition(room, fmt)},
    )
