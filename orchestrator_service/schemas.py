"""Public API schemas (what the REST API returns)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from roomscribe.models import Room, Track

_ROOM_EXAMPLE: dict[str, Any] = {
    "name": "weekly-standup",
    "sid": "RM_xk3P9",
    "status": "completed",
    "status_reason": None,
    "created_at": "2026-11-21T09:00:00Z",
    "updated_at": "2026-11-21T09:41:12Z",
    "participants": ["alice", "bob"],
    "summary": None,
}


class RoomPublic(Room):
    """A room as the API shows it."""

    model_config = ConfigDict(json_schema_extra={"examples": [_ROOM_EXAMPLE]})


class TrackPublic(Track):
    """A participant's track: recording, Whisper job and live statistics."""


class RoomDetail(RoomPublic):
    """A room with its tracks."""

    tracks: list[TrackPublic] = Field(default_factory=list)


class RoomsPage(BaseModel):
    """A page of rooms, newest first; pass ``next_cursor`` as ``cursor`` for the next."""

    rooms: list[RoomPublic]
    next_cursor: str | None = None
