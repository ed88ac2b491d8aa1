"""A room's changes as a resumable sequence of events, read from the transcript store alone.

The STT service writes live segments straight into the store and the Whisper worker writes its
transcripts there too, so the orchestrator learns of them only by reading the store. A
:class:`RoomEvents` compares what the store holds now with a :class:`Position`, the stream's
state after its last event, and yields what differs, one event at a time:

- ``room``: the room as the REST API shows it, whenever it changed (status, participants,
  summary);
- ``track``: a track, whenever its stored document changed (status, egress, live and Whisper
  statistics): this is what drives the completeness panel and the Whisper progress;
- ``segment``: one live segment, once, in ``(abs_start, id)`` order per track;
- ``correction``: a track's Whisper pass landed (or changed), so its ``best`` transcript is no
  longer its live one: read the track's transcript again;
- ``resync``: a live segment was stored out of order (before one already sent), so the track's
  live transcript is to be read again; the STT service writes a track's finals in order, so
  this is a safety net, not a path the app lives on.

Event ids are the encoded position after the event: per track, how many live segments are
accounted for and the sort key of the last one sent (a keyset cursor into the store's own
transcript query), and digests of the track and of its Whisper pass as last sent; and a digest
of the room. Everything an id says is derived from store state, so an id stays valid across
orchestrator restarts and on any orchestrator replica, and resuming from it yields exactly the
events after it: a segment is sent once (the keyset only moves forward), a status change is
sent when the digest differs. Status changes between two reads merge into one event with the
latest state, which is what a reader of the room wants.
"""

from __future__ import annotations

import base64
import hashlib
import json
import math
import zlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from orchestrator_service.schemas import RoomPublic, TrackPublic
from roomscribe.errors import InvalidCursorError
from roomscribe.models import Room, Segment, Track, TranscriptQuery, TranscriptSource
from roomscribe.store import TranscriptStore
from roomscribe.store.common import transcript_filters
from roomscribe.store.cursor import encode_cursor

#: Longest event id accepted, and most bytes it may inflate to: ids are small, a hostile one
#: must not make the server allocate much.
MAX_ID_CHARS = 16_384
_MAX_ID_BYTES = 262_144
_VERSION = 1
#: Live segments read per store query while catching up.
PAGE_SIZE = 500


def _digest(text: str | bytes, size: int = 6) -> str:
    raw = text.encode() if isinstance(text, str) else text
    return hashlib.blake2b(raw, digest_size=size).hexdigest()


def room_digest(room: Room) -> str:
    """What a ``room`` event is sent on: any change of the room as the API shows it."""
    return _digest(RoomPublic.model_validate(room.model_dump()).model_dump_json())


def track_digest(track: Track) -> str:
    """What a ``track`` event is sent on: any change of the stored track."""
    return _digest(track.model_dump_json())


def whisper_digest(track: Track) -> str:
    """What a ``correction`` is sent on: the Whisper pass ``best`` reads; ``""`` when none."""
    span = track.whisper_coverage()
    if span is None or track.whisper is None:
        return ""
    return _digest(json.dumps([list(span), track.whisper.model_dump(mode="json")]))


@dataclass
class TrackPosition:
    """How far a stream has got with one track.

    Attributes:
        count: Live segments accounted for: sent one by one, or covered by a ``resync``.
        key: ``(abs_start, id)`` of the last live segment sent; the next are after it.
        track: :func:`track_digest` of the track as last sent.
        whisper: :func:`whisper_digest` as last sent.
    """

    count: int = 0
    key: tuple[float, str] | None = None
    track: str = ""
    whisper: str = ""


@dataclass
class Position:
    """A stream's state after an event; its encoding is the event's id."""

    room: str
    room_state: str = ""
    tracks: dict[str, TrackPosition] = field(default_factory=dict)

    @classmethod
    def start(cls, room: str) -> Position:
        """The position before anything: resuming from it replays the whole room."""
        return cls(room=_digest(room, 4))

    def encode(self) -> str:
        """The compact, URL-safe text of this position."""
        tracks = {
            sid: [p.count, *(p.key or (None, None)), p.track, p.whisper]
            for sid, p in self.tracks.items()
        }
        raw = json.dumps(
            {"v": _VERSION, "r": self.room, "s": self.room_state, "t": tracks},
            separators=(",", ":"),
        ).encode()
        return base64.urlsafe_b64encode(zlib.compress(raw, 9)).decode().rstrip("=")

    @classmethod
    def decode(cls, text: str, *, room: str) -> Position:
        """Read an id made by :meth:`encode` for ``room``.

        Raises:
            InvalidCursorError: It is malformed, or belongs to another room's stream.
        """
        if len(text) > MAX_ID_CHARS:
            raise InvalidCursorError("event id is too long to be one this server sent")
        try:
            packed = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            inflater = zlib.decompressobj()
            raw = inflater.decompress(packed, _MAX_ID_BYTES)
            if inflater.unconsumed_tail or not inflater.eof:
                raise ValueError("truncated or oversized")
            data = json.loads(raw)
            position = cls._from_json(data)
        except (ValueError, TypeError, KeyError, zlib.error) as exc:
            raise InvalidCursorError("malformed event id") from exc
        if position.room != _digest(room, 4):
            raise InvalidCursorError("this event id belongs to another room's stream")
        return position

    @classmethod
    def _from_json(cls, data: Any) -> Position:
        if not isinstance(data, dict) or data.get("v") != _VERSION:
            raise ValueError("unknown event id version")
        room, state, tracks = data["r"], data["s"], data["t"]
        if not isinstance(room, str) or not isinstance(state, str) or not isinstance(tracks, dict):
            raise ValueError("bad event id fields")
        position = cls(room=room, room_state=state)
        for sid, entry in tracks.items():
            count, start, seg_id, track, whisper = entry
            if (
                isinstance(count, bool)
                or not isinstance(count, int)
                or count < 0
                or not isinstance(track, str)
                or not isinstance(whisper, str)
            ):
                raise ValueError("bad track position")
            key = None
            if start is not None or seg_id is not None:
                if not isinstance(start, int | float) or isinstance(start, bool):
                    raise ValueError("bad segment key")
                if not math.isfinite(start) or not isinstance(seg_id, str):
                    raise ValueError("bad segment key")
                key = (float(start), seg_id)
            position.tracks[sid] = TrackPosition(count, key, track, whisper)
        return position


@dataclass(frozen=True)
class Event:
    """One server-sent event: its type, JSON data and id (the position after it)."""

    kind: str
    data: str
    id: str

    def encode(self) -> bytes:
        """The event in ``text/event-stream`` framing (the JSON holds no newline)."""
        return f"id: {self.id}\nevent: {self.kind}\ndata: {self.data}\n\n".encode()


def _json(model: BaseModel | dict[str, Any]) -> str:
    if isinstance(model, BaseModel):
        return model.model_dump_json()
    return json.dumps(model, separators=(",", ":"), allow_nan=False)


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class RoomEvents:
    """Yields a room's changes since a position, advancing the position as it goes."""

    def __init__(self, store: TranscriptStore, room: str, position: Position) -> None:
        """Follow ``room`` in ``store`` from ``position`` (which this object advances)."""
        self._store = store
        self._room = room
        self.position = position

    def _event(self, kind: str, data: BaseModel | dict[str, Any]) -> Event:
        return Event(kind, _json(data), self.position.encode())

    async def changes(self) -> AsyncIterator[Event]:
        """One pass over the store: every event between the position and now, in order.

        The position moves before each event is yielded, so the id of an event is the state
        after it; a pass that fails halfway (a store error) leaves the position at the last
        event yielded, and the next pass goes on from there.

        Raises:
            StoreError: The store failed; the position is still consistent.
        """
        pos = self.position
        room = await self._store.find_room(self._room)
        tracks = await self._store.list_tracks(self._room)
        if room is not None and room_digest(room) != pos.room_state:
            pos.room_state = room_digest(room)
            yield self._event("room", RoomPublic.model_validate(room.model_dump()))
        listed = {t.track_sid for t in tracks}
        for sid in [s for s in pos.tracks if s not in listed]:
            del pos.tracks[sid]  # kept as an earlier meeting: no longer this room's
        for track in tracks:
            async for event in self._track_changes(track):
                yield event

    async def _track_changes(self, track: Track) -> AsyncIterator[Event]:
        tp = self.position.tracks.setdefault(track.track_sid, TrackPosition())
        if track_digest(track) != tp.track:
            tp.track = track_digest(track)
            yield self._event("track", TrackPublic.model_validate(track.model_dump()))
        # The counter was read before the segments: every segment it counts is visible.
        stored = track.live.segments
        if stored > tp.count:
            async for seg in self._live_after(track, tp.key):
                tp.count += 1
                tp.key = (seg.abs_start, seg.id)
                yield self._event("segment", seg)
            if stored > tp.count:
                # Some counted segment sorts before the key: it was stored out of order.
                tp.count = stored
                yield self._event(
                    "resync",
                    {
                        "track_sid": track.track_sid,
                        "participant_identity": track.participant_identity,
                        "source": "realtime",
                    },
                )
        mark = whisper_digest(track)
        if mark != tp.whisper:
            tp.whisper = mark
            span = track.whisper_coverage()
            stats = track.whisper if span is not None else None
            yield self._event(
                "correction",
                {
                    "track_sid": track.track_sid,
                    "participant_identity": track.participant_identity,
                    "covered_from": None if span is None else _finite(span[0]),
                    "covered_to": None if span is None else _finite(span[1]),
                    "whisper": None if stats is None else stats.model_dump(mode="json"),
                },
            )

    async def _live_after(
        self, track: Track, key: tuple[float, str] | None
    ) -> AsyncIterator[Segment]:
        """The track's live segments sorted after ``key``, paged by the store's keyset."""
        query = TranscriptQuery(
            room=track.room,
            track_sid=track.track_sid,
            source=TranscriptSource.REALTIME,
            limit=PAGE_SIZE,
        )
        # The store's own cursor format, made for this query: both backends page with it.
        cursor = None if key is None else encode_cursor(list(key), transcript_filters(query))
        while True:
            page = await self._store.query_transcript(query.model_copy(update={"cursor": cursor}))
            for seg in page.segments:
                yield seg
            if page.next_cursor is None:
                return
            cursor = page.next_cursor
