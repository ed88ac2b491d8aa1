"""``GET /v1/rooms/{room}/tracks/{track}/audio``: a track's recording, seekable in a browser.

From a local folder the bytes are served here, with single HTTP ranges (``206``), which is
what a media element asks for when it seeks. From S3 the answer is a ``307`` to a presigned
URL: the store itself then serves the bytes and their ranges, and the API never relays audio.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import AsyncIterator
from typing import Annotated, BinaryIO

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, RedirectResponse, Response, StreamingResponse

from orchestrator_service.deps import StateDep
from orchestrator_service.errors import error_body
from orchestrator_service.live.access import LiveDep, RoomAccessDep
from orchestrator_service.openapi import error_responses
from orchestrator_service.paths import EncodedSegmentsRoute
from roomscribe.errors import NotFoundError, ObjectNotFoundError, ObjectStoreError
from roomscribe.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore

log = logging.getLogger(__name__)

router = APIRouter(
    route_class=EncodedSegmentsRoute,
    prefix="/v1",
    tags=["live"],
    responses=error_responses(401, 422, 503),
)

#: Bytes read from the file per chunk of the answer.
_CHUNK = 256 * 1024
#: How long a presigned URL works: long enough to play and seek a long meeting's track.
PRESIGN_TTL_S = 3600.0
_RANGE = re.compile(r"^\s*(\d*)\s*-\s*(\d*)\s*$")


class RangeNotSatisfiableError(Exception):
    """The Range header asks for nothing the object has, several ranges, or is malformed."""


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """The inclusive byte range ``header`` asks of an object of ``size`` bytes.

    Returns:
        ``(first, last)``, or ``None`` for the whole object (no header, or a unit other than
        bytes, which RFC 9110 says to ignore).

    Raises:
        RangeNotSatisfiableError: Malformed, several ranges (a media element never asks for
            more than one; a multipart answer would only serve a crafted request), or
            nothing inside the object.
    """
    if header is None or not header.strip():
        return None
    unit, _, spec = header.partition("=")
    if unit.strip().lower() != "bytes":
        return None
    if "," in spec:
        raise RangeNotSatisfiableError("several ranges in one request are not served")
    match = _RANGE.match(spec)
    if match is None or match.group(1) == match.group(2) == "":
        raise RangeNotSatisfiableError(f"malformed range {spec.strip()[:40]!r}")
    first_text, last_text = match.groups()
    if first_text == "":  # a suffix: the last N bytes
        length = int(last_text)
        if length == 0 or size == 0:
            raise RangeNotSatisfiableError("an empty suffix range")
        return max(0, size - length), size - 1
    first = int(first_text)
    last = size - 1 if last_text == "" else int(last_text)
    if last < first:
        raise RangeNotSatisfiableError(f"range {spec.strip()[:40]!r} ends before it starts")
    if first >= size:
        raise RangeNotSatisfiableError(f"bytes={first}- starts past the end ({size} bytes)")
    return first, min(last, size - 1)


async def _chunks(handle: BinaryIO, first: int, last: int) -> AsyncIterator[bytes]:
    """Read ``[first, last]`` of an open file, off the event loop; closes it at the end."""
    try:
        await asyncio.to_thread(handle.seek, first)
        left = last - first + 1
        while left > 0:
            chunk = await asyncio.to_thread(handle.read, min(_CHUNK, left))
            if not chunk:
                return  # the file shrank under us; the client sees a short body
            left -= len(chunk)
            yield chunk
    finally:
        await asyncio.to_thread(handle.close)


async def _local(store: LocalObjectStore, key: str, range_header: str | None) -> Response:
    info = await store.stat(key)
    size = info.size
    try:
        span = parse_range(range_header, size)
    except RangeNotSatisfiableError as exc:
        return JSONResponse(
            error_body("range_not_satisfiable", str(exc)),
            status_code=416,
            headers={"Content-Range": f"bytes */{size}"},
        )
    headers = {
        "Accept-Ranges": "bytes",
        # The URL carries a token: nothing on the way may keep a copy for someone else.
        "Cache-Control": "private, no-store",
    }
    if info.etag:
        headers["ETag"] = f'"{info.etag}"'
    first, last = (0, size - 1) if span is None else span
    if span is not None:
        headers["Content-Range"] = f"bytes {first}-{last}/{size}"
    headers["Content-Length"] = str(max(0, last - first + 1))
    try:
        handle = await asyncio.to_thread(store.path_for(key).open, "rb")
    except FileNotFoundError:
        raise ObjectNotFoundError(key) from None
    return StreamingResponse(
        _chunks(handle, first, last),
        status_code=200 if span is None else 206,
        media_type=info.content_type or "application/octet-stream",
        headers=headers,
    )


@router.get(
    "/rooms/{room}/tracks/{track_sid}/audio",
    summary="A track's recording (HTTP Range, or a redirect to the object store)",
    response_class=Response,
    responses={
        200: {"content": {"audio/ogg": {}}, "description": "The whole recording."},
        206: {"content": {"audio/ogg": {}}, "description": "The range asked for."},
        307: {"description": "The recording is in S3: a presigned URL serves it."},
        **error_responses(403, 404, 416),
    },
)
async def track_audio(
    room: str,
    track_sid: str,
    state: StateDep,
    live: LiveDep,
    access: RoomAccessDep,
    range_header: Annotated[str | None, Header(alias="Range", include_in_schema=False)] = None,
) -> Response:
    """The recording egress made of the track, for ``<audio src>`` (pass ``?token=``)."""
    track = await state.store.get_track(track_sid)
    if track.room != room:
        raise NotFoundError(f"track {track_sid!r} is not in room {room!r}")
    key = track.egress.object_key
    if key is None:
        raise NotFoundError(f"track {track_sid!r} has no recording yet")
    return await _serve(live.objects, key, range_header)


async def _serve(objects: ObjectStore, key: str, range_header: str | None) -> Response:
    try:
        if isinstance(objects, S3ObjectStore):
            url = await objects.presigned_get_url(key, expires_s=PRESIGN_TTL_S)
            return RedirectResponse(url, status_code=307, headers={"Cache-Control": "no-store"})
        if isinstance(objects, LocalObjectStore):
            return await _local(objects, key, range_header)
        info = await objects.stat(key)
    except ObjectNotFoundError:
        raise NotFoundError("the track's recording is not in the object store") from None
    except (ObjectStoreError, OSError) as exc:
        log.warning("recording unavailable: %s", exc, extra={"key": key})
        return JSONResponse(
            error_body("object_store_unavailable", "the recording cannot be read; retry later"),
            status_code=503,
            headers={"Retry-After": "2"},
        )
    # Another backend: the whole object, as it streams (no ranges).
    return StreamingResponse(
        objects.iter_chunks(key),
        media_type=info.content_type or "application/octet-stream",
        headers={"Cache-Control": "private, no-store", "Content-Length": str(info.size)},
    )
