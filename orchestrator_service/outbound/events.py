"""The events applications receive, and the JSON body each is sent as.

Every body is one JSON object::

    {"id": "evt_...", "type": "room.completed", "created_at": "2026-11-21T09:31:02.5Z",
     "room": "weekly-standup", "data": {...}}

- ``room.completed``: the room reached ``completed`` (every track done, summary stored);
  ``data`` has the meeting's ``sid``, ``participants``, each track's status, the summary's
  model and action item count, and the REST paths to read the rest (``participants``,
  ``tracks`` and ``sid`` are ``null`` when the store could not be read at that moment).
- ``summary.ready``: a summary was stored (also after an admin's regenerate); ``data`` has
  its ``model``, ``generated_at`` and ``action_items`` (their count).
- ``track.transcribed``: a track's Whisper pass finished and its transcript is stored;
  ``data`` has the track, its participant and the pass's figures.

Events are thin: no transcript or summary text travels in them. An application reads
those from the REST API (``data.links``) with its own token, so a webhook receiver never
holds more of a meeting than the rooms its token grants.

An event's ``id`` is derived from what happened (the room and summary, the track and its
status change), so a duplicate notification of the same change yields the same id, and
retries of a delivery always do: receivers deduplicate on it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from roomscribe.models import Room, Summary, Track, UtcDatetime


class EventType(StrEnum):
    """The types of outgoing events."""

    ROOM_COMPLETED = "room.completed"
    SUMMARY_READY = "summary.ready"
    TRACK_TRANSCRIBED = "track.transcribed"


class OutboundEvent(BaseModel):
    """One event, as its JSON body says it.

    Attributes:
        id: Unique per occurrence, the same on every delivery attempt (``evt_`` + 32 hex).
        type: What happened.
        created_at: When it happened (UTC).
        room: The room's key (an earlier meeting of a reused name: ``name@sid``).
        data: The type's details.
    """

    model_config = ConfigDict(frozen=True)

    id: str
    type: EventType
    created_at: UtcDatetime
    room: str
    data: dict[str, Any]

    def body(self) -> bytes:
        """The request body: compact JSON, UTF-8 (the bytes that are signed)."""
        return self.model_dump_json().encode()


def event_id(kind: EventType, *parts: str) -> str:
    """A stable id for the occurrence that ``parts`` name."""
    digest = hashlib.sha256("\n".join([kind.value, *parts]).encode()).hexdigest()
    return f"evt_{digest[:32]}"


def _room_path(room: str) -> str:
    return f"/v1/rooms/{quote(room, safe='')}"


def _action_items(summary: Summary) -> int:
    return sum(len(p.actions) for p in summary.action_items)


def room_completed(
    room_name: str,
    summary: Summary,
    *,
    room: Room | None,
    tracks: list[Track] | None,
    at: datetime,
) -> OutboundEvent:
    """``room.completed`` for ``room_name``, completed with ``summary`` at ``at``.

    ``room`` and ``tracks`` are what the store held just after; ``None`` where it could
    not be read then (their fields are ``null`` in the event, the REST API has them).
    """
    path = _room_path(room_name)
    return OutboundEvent(
        id=event_id(EventType.ROOM_COMPLETED, room_name, summary.generated_at.isoformat()),
        type=EventType.ROOM_COMPLETED,
        created_at=at,
        room=room_name,
        data={
            "sid": None if room is None else room.sid,
            "meeting_of": None if room is None else room.meeting_of,
            "status": "completed",
            "status_reason": None if room is None else room.status_reason,
            "participants": None if room is None else list(room.participants),
            "tracks": None
            if tracks is None
            else [
                {
                    "track_sid": t.track_sid,
                    "participant_identity": t.participant_identity,
                    "status": t.status.value,
                }
                for t in tracks
            ],
            "summary": {"model": summary.model, "action_items": _action_items(summary)},
            "links": {"room": path, "transcript": f"{path}/transcript"},
        },
    )


def summary_ready(
    room_name: str, summary: Summary, *, sid: str | None, at: datetime
) -> OutboundEvent:
    """``summary.ready`` for ``summary``, stored for ``room_name`` at ``at``."""
    return OutboundEvent(
        id=event_id(EventType.SUMMARY_READY, room_name, summary.generated_at.isoformat()),
        type=EventType.SUMMARY_READY,
        created_at=at,
        room=room_name,
        data={
            "sid": sid,
            "model": summary.model,
            "generated_at": summary.generated_at.isoformat(),
            "action_items": _action_items(summary),
            "links": {"room": _room_path(room_name)},
        },
    )


def track_transcribed(track: Track) -> OutboundEvent:
    """``track.transcribed`` for a track whose Whisper transcript was stored."""
    whisper = track.whisper
    path = f"{_room_path(track.room)}/tracks/{quote(track.track_sid, safe='')}/transcript"
    return OutboundEvent(
        id=event_id(
            EventType.TRACK_TRANSCRIBED, track.room, track.track_sid, track.updated_at.isoformat()
        ),
        type=EventType.TRACK_TRANSCRIBED,
        # When the store took the status change: a duplicate notice sends the same body.
        created_at=track.updated_at,
        room=track.room,
        data={
            "track_sid": track.track_sid,
            "participant_identity": track.participant_identity,
            "participant_name": track.participant_name,
            "status": track.status.value,
            "whisper": None
            if whisper is None
            else {
                "model": whisper.model,
                "audio_s": whisper.audio_s,
                "segments": whisper.segments,
                "language": whisper.language,
                "real_time_factor": whisper.real_time_factor,
            },
            "links": {"transcript": f"{path}?source=whisper"},
        },
    )
