"""Pieces both store backends share: lookups that raise, batch de-duplication, paging."""

from __future__ import annotations

import heapq
from collections.abc import Iterable, Sequence
from typing import Any

from roomscribe.errors import NotFoundError
from roomscribe.models import Room, Segment, SegmentIn, Track, TranscriptPage, TranscriptQuery
from roomscribe.store.cursor import decode_cursor, encode_cursor


class StoreLookups:
    """``get_room``/``get_track`` on top of a backend's ``find_room``/``find_track``."""

    async def find_room(self, name: str) -> Room | None:
        """Return the room, or ``None``; backends override this."""
        raise NotImplementedError

    async def find_track(self, track_sid: str) -> Track | None:
        """Return the track, or ``None``; backends override this."""
        raise NotImplementedError

    async def get_room(self, name: str) -> Room:
        """Return the room or raise NotFoundError."""
        room = await self.find_room(name)
        if room is None:
            raise NotFoundError(f"room {name!r} is not registered")
        return room

    async def get_track(self, track_sid: str) -> Track:
        """Return the track or raise NotFoundError."""
        track = await self.find_track(track_sid)
        if track is None:
            raise NotFoundError(f"track {track_sid!r} is unknown")
        return track


def first_of_each_id(segments: Iterable[SegmentIn]) -> dict[str, SegmentIn]:
    """Keep the first segment of every id, in order (a batch may repeat itself)."""
    unique: dict[str, SegmentIn] = {}
    for seg in segments:
        unique.setdefault(seg.id, seg)
    return unique


def transcript_filters(query: TranscriptQuery) -> dict[str, Any]:
    """What a transcript cursor is bound to: every filter, not the page size."""
    return query.model_dump(exclude={"cursor", "limit"}, mode="json")


def transcript_cursor(query: TranscriptQuery) -> list[Any] | None:
    """The ``(abs_start, id)`` a page starts after, or ``None`` for the first page."""
    if query.cursor is None:
        return None
    return decode_cursor(query.cursor, transcript_filters(query), arity=2)


def merge_in_order(parts: Sequence[Iterable[Segment]], count: int) -> list[Segment]:
    """The first ``count`` segments of already sorted parts, by ``(abs_start, id)``."""
    merged = heapq.merge(*parts, key=lambda s: (s.abs_start, s.id))
    return [seg for _, seg in zip(range(count), merged, strict=False)]


def transcript_page(rows: list[Segment], query: TranscriptQuery) -> TranscriptPage:
    """Cut ``limit + 1`` rows into a page and the cursor of the next one."""
    page = rows[: query.limit]
    next_cursor = None
    if len(rows) > query.limit:
        last = page[-1]
        next_cursor = encode_cursor([last.abs_start, last.id], transcript_filters(query))
    return TranscriptPage(segments=page, next_cursor=next_cursor)
