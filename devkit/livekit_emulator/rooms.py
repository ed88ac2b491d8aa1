"""The emulator's room model (rooms, participants, published tracks) and its webhook events.

Times are epoch nanoseconds read from the emulator's clock. A published track plays its PCM
from the moment it was published: sample ``i`` plays at ``published_ns + i / 16000`` s, so
what an egress records depends on when it ran (:meth:`TrackState.played_between`).
"""

from __future__ import annotations

import secrets
import string
from dataclasses import dataclass, field
from typing import Final, TypeVar

from google.protobuf.message import Message
from livekit.protocol.models import (
    DisconnectReason,
    ParticipantInfo,
    ParticipantPermission,
    Room,
    RoomEndReason,
    TrackInfo,
)
from livekit.protocol.webhook import WebhookEvent

from roomscribe.audio import TARGET_SAMPLE_RATE, Pcm

NS_PER_S: Final = 1_000_000_000
_NS_PER_MS: Final = 1_000_000

_ID_ALPHABET: Final = string.ascii_letters + string.digits

_MsgT = TypeVar("_MsgT", bound=Message)


def new_id(prefix: str) -> str:
    """A LiveKit-style id: a type prefix and 12 random letters and digits (``TR_x7Kq...``)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def copy_message(message: _MsgT) -> _MsgT:
    """A deep copy of a protobuf message (callers get copies, never the live state)."""
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def sample_index(offset_ns: int) -> int:
    """The first 16 kHz sample that plays at or after ``offset_ns`` into a track."""
    return -(-offset_ns * TARGET_SAMPLE_RATE // NS_PER_S)  # ceiling division


@dataclass
class TrackState:
    """A published audio track: what it says and when it started saying it."""

    info: TrackInfo
    pcm: Pcm
    identity: str
    published_ns: int
    egress_ids: list[str] = field(default_factory=list)

    def played_between(self, start_ns: int, stop_ns: int) -> Pcm:
        """The samples that played in ``[start_ns, stop_ns)``, clipped to the track's audio."""
        first = min(max(sample_index(start_ns - self.published_ns), 0), self.pcm.size)
        last = min(max(sample_index(stop_ns - self.published_ns), first), self.pcm.size)
        return self.pcm[first:last]


@dataclass
class ParticipantState:
    """A participant in a room and the tracks it publishes."""

    sid: str
    identity: str
    name: str
    joined_ns: int
    tracks: dict[str, TrackState] = field(default_factory=dict)
    version: int = 0


@dataclass
class RoomState:
    """A room and who is in it."""

    sid: str
    name: str
    created_ns: int
    participants: dict[str, ParticipantState] = field(default_factory=dict)

    def find_track(self, track_sid: str) -> TrackState | None:
        """The published track with this sid, if any participant publishes it."""
        for participant in self.participants.values():
            if track_sid in participant.tracks:
                return participant.tracks[track_sid]
        return None


def room_info(room: RoomState) -> Room:
    """The room as LiveKit reports it (ListRooms, webhooks)."""
    return Room(
        sid=room.sid,
        name=room.name,
        empty_timeout=300,
        departure_timeout=20,
        creation_time=room.created_ns // NS_PER_S,
        creation_time_ms=room.created_ns // _NS_PER_MS,
        num_participants=len(room.participants),
        num_publishers=sum(1 for p in room.participants.values() if p.tracks),
    )


def participant_info(
    participant: ParticipantState, *, disconnect_reason: DisconnectReason | None = None
) -> ParticipantInfo:
    """The participant as LiveKit reports it (ListParticipants, webhooks).

    ``joined_at`` is whole seconds and ``joined_at_ms`` milliseconds, as LiveKit sends them.
    """
    return ParticipantInfo(
        sid=participant.sid,
        identity=participant.identity,
        name=participant.name,
        state=(
            ParticipantInfo.State.ACTIVE
            if disconnect_reason is None
            else ParticipantInfo.State.DISCONNECTED
        ),
        tracks=[track.info for track in participant.tracks.values()],
        joined_at=participant.joined_ns // NS_PER_S,
        joined_at_ms=participant.joined_ns // _NS_PER_MS,
        version=participant.version,
        permission=ParticipantPermission(
            can_subscribe=True, can_publish=True, can_publish_data=True
        ),
        is_publisher=bool(participant.tracks),
        kind=ParticipantInfo.Kind.STANDARD,
        disconnect_reason=disconnect_reason or DisconnectReason.UNKNOWN_REASON,
    )


def new_event(kind: str, now_ns: int) -> WebhookEvent:
    """An empty webhook event; ``created_at`` is whole seconds, as LiveKit sends it."""
    return WebhookEvent(event=kind, id=new_id("EV_"), created_at=now_ns // NS_PER_S)


def room_event(
    kind: str,
    now_ns: int,
    room: RoomState,
    participant: ParticipantState | None = None,
    *,
    track: TrackInfo | None = None,
    disconnect_reason: DisconnectReason | None = None,
    room_end_reason: RoomEndReason | None = None,
) -> WebhookEvent:
    """A room, participant or track webhook event, filled as LiveKit fills it."""
    event = new_event(kind, now_ns)
    event.room.CopyFrom(room_info(room))
    if participant is not None:
        event.participant.CopyFrom(
            participant_info(participant, disconnect_reason=disconnect_reason)
        )
    if track is not None:
        event.track.CopyFrom(track)
    if room_end_reason is not None:
        event.room_end_reason = room_end_reason
    return event
