"""Pieces both store backends share: lookups that raise, batch de-duplication, paging."""

from __future__ import annotations

import heapq
import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Generic, TypeVar

from roomscribe.errors import InvalidCursorError, NotFoundError
from roomscribe.models import (
    FILLABLE_TRACK_FIELDS,
    LIVE_ROOM_STATUSES,
    Room,
    RoomStatus,
    Segment,
    SegmentIn,
    Track,
    TrackCreate,
    TranscriptPage,
    TranscriptQuery,
    WhisperStats,
)
from roomscribe.store.cursor import decode_cursor, encode_cursor

K = TypeVar("K")
V = TypeVar("V")


class BoundedLru(Generic[K, V]):
    """A dict of at most ``max_entries`` items that forgets the least recently used first.

    For per-track facts that are cheap to lose (a track's attribution, which can be read
    again; how far a track's stored words reach, needed only while it streams): a process
    that sees tracks come and go for weeks must not keep every one it ever saw.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        """Keep at most ``max_entries`` items (at least one)."""
        self.max_entries = max(1, max_entries)
        self._items: OrderedDict[K, V] = OrderedDict()

    def get(self, key: K) -> V | None:
        """Return the item (now the most recently used), or ``None``."""
        value = self._items.get(key)
        if value is not None:
            self._items.move_to_end(key)
        return value

    def __setitem__(self, key: K, value: V) -> None:
        self._items[key] = value
        self._items.move_to_end(key)
        while len(self._items) > self.max_entries:
            self._items.popitem(last=False)

    def pop(self, key: K, default: V | None = None) -> V | None:
        """Remove and return the item, or ``default``."""
        return self._items.pop(key, default)

    def clear(self) -> None:
        """Forget everything."""
        self._items.clear()

    def __len__(self) -> int:
        return len(self._items)


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


def archive_key(name: str, sid: str, n: int = 1) -> str:
    """The key an earlier meeting of room ``name`` (LiveKit sid ``sid``) is kept under.

    ``n`` > 1 gives the next variants, for the (hostile) case of a room that is already
    named like the first one.
    """
    key = f"{name}@{sid}"
    return key if n == 1 else f"{key}~{n}"


def room_facts(room: Room, sid: str | None, livekit_created_at: datetime | None) -> dict[str, Any]:
    """What a registration tells about ``room`` that it did not know (never a replacement)."""
    learned: dict[str, Any] = {}
    if sid is not None and room.sid is None:
        learned["sid"] = sid
    if livekit_created_at is not None and room.livekit_created_at is None:
        learned["livekit_created_at"] = livekit_created_at
    return learned


def archived_meeting(room: Room, key: str) -> Room:
    """The room's meeting as kept under ``key`` once LiveKit opened a new room of its name."""
    update: dict[str, Any] = {"name": key, "meeting_of": room.name}
    if room.status in LIVE_ROOM_STATUSES:
        # Its room_finished was lost: LiveKit would not reuse the name of a live room.
        update["status"] = RoomStatus.FINAL_ROOM
        update["status_reason"] = "LiveKit opened a new room of the same name"
    return room.model_copy(update=update)


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
    start, segment_id = decode_cursor(query.cursor, transcript_filters(query), arity=2)
    return [cursor_number(start), cursor_text(segment_id)]


def cursor_number(value: Any) -> float:
    """A cursor's number, or InvalidCursorError.

    A hand-made ``1e999`` or ``10**400`` would otherwise reach the database (SQLite cannot
    bind such an integer: a 500).
    """
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidCursorError("malformed cursor")
    try:
        number = float(value)
    except OverflowError as exc:
        raise InvalidCursorError("malformed cursor") from exc
    if not math.isfinite(number):
        raise InvalidCursorError("malformed cursor")
    return number


def cursor_text(value: Any) -> str:
    """A cursor's string, or InvalidCursorError."""
    if not isinstance(value, str):
        raise InvalidCursorError("malformed cursor")
    return value


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


@dataclass(frozen=True)
class TrackMeta:
    """What placing a batch of one track's segments needs: attribution and the time origin."""

    room: str
    identity: str
    #: Epoch seconds the batch's ``start``/``end`` offsets count from.
    origin: float

    @classmethod
    def live(cls, track: Track) -> TrackMeta:
        """Live segments count from the agent's stream start (see :mod:`roomscribe.models`)."""
        return cls(track.room, track.participant_identity, track.live_origin_s())

    @classmethod
    def whisper(cls, track: Track, stats: WhisperStats) -> TrackMeta:
        """Whisper segments count from the recording's first sample (``stats.covered_from``)."""
        origin = stats.covered_from
        return cls(
            track.room,
            track.participant_identity,
            track.recording_origin_s() if origin is None else origin,
        )


def unknown_track_fields(stored: Track, given: TrackCreate) -> dict[str, Any]:
    """The fillable fields ``given`` knows and ``stored`` does not (an upsert sets those).

    First known wins: a second STT stream of the same track (a reconnect) cannot move the
    live origin that segments already stored were placed on.
    """
    return {
        name: getattr(given, name)
        for name in FILLABLE_TRACK_FIELDS
        if getattr(stored, name) is None and getattr(given, name) is not None
    }


def with_coverage(stats: WhisperStats, track: Track) -> WhisperStats:
    """The stats with the recording's span filled in where the worker did not give it."""
    start = stats.covered_from if stats.covered_from is not None else track.recording_origin_s()
    end = stats.covered_to if stats.covered_to is not None else start + stats.audio_s
    return stats.model_copy(update={"covered_from": start, "covered_to": end})


def hidden_by_whisper(seg: Mapping[str, Any], coverage: Mapping[str, tuple[float, float]]) -> bool:
    """Whether ``best`` shows Whisper instead of this live segment (a stored document).

    A live segment is replaced when its midpoint lies in the span its track's recording
    covers: one that straddles the recording's start or end is kept or replaced whole,
    never shown twice with the Whisper words of the same speech.
    """
    span = coverage.get(seg["track_sid"])
    if span is None:
        return False
    mid = (float(seg["abs_start"]) + float(seg["abs_end"])) / 2
    return span[0] <= mid < span[1]
