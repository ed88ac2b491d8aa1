"""Webhooks and agent calls: which meeting an event is of, and what it changes.

Every handler is idempotent and tolerates events out of order, because LiveKit retries
webhooks, may drop them when its queue is full, and delivers them concurrently. State moves
only through conditional store updates, so a duplicate or late event cannot move a track or
room backwards.
"""

from __future__ import annotations

import logging
from datetime import datetime

from livekit.protocol.models import TrackType
from livekit.protocol.webhook import WebhookEvent

from orchestrator_service.gateway import audio_tracks
from orchestrator_service.rooms.core import (
    DONE_ROOM,
    PermanentLiveKitError,
    joined_at,
    sane_epoch,
    webhook_time,
)
from orchestrator_service.rooms.egress import TrackEgress
from roomscribe.models import (
    Room,
    RoomStatus,
    TrackCreate,
    TrackStatus,
)
from roomscribe.store.common import archive_key

log = logging.getLogger("orchestrator_service.rooms")


class RoomEvents(TrackEgress):
    """Applies LiveKit webhooks and the agent's calls."""

    async def handle(self, event: WebhookEvent) -> str:
        """Apply one verified webhook; returns what happened (for metrics and logs)."""
        kind = event.event
        if event.room.name:
            room = await self._meeting(
                event.room.name, event.room.sid or None, sane_epoch(event.room.creation_time)
            )
        elif event.egress_info.room_name:
            # Egress events are applied by track sid, whichever meeting the track is in.
            room = await self._store.find_room(event.egress_info.room_name)
        else:
            room = None
        if room is None:
            log.debug("webhook for an unregistered room ignored", extra={"event": kind})
            return "ignored"
        if kind == "room_started":
            await self._activate(room.name)
        elif kind == "room_finished":
            await self.finalize(room.name)
        elif kind in ("participant_joined", "participant_left"):
            if event.participant.identity:
                await self._store.add_participant(room.name, event.participant.identity)
            if kind == "participant_joined":
                await self._activate(room.name)
        elif kind == "track_published":
            if event.track.type != TrackType.AUDIO:
                return "ignored"
            await self.track_published(
                room,
                identity=event.participant.identity,
                name=event.participant.name or None,
                track_sid=event.track.sid,
                # Whole seconds: the track's publish time is metadata, never a clock.
                published_at=webhook_time(event.created_at),
            )
        elif kind == "track_unpublished":
            await self.track_unpublished(event.track.sid)
        elif kind in ("egress_started", "egress_updated"):
            await self.egress_progress(event.egress_info)
        elif kind == "egress_ended":
            await self.egress_ended(event.egress_info)
        else:
            return "ignored"
        return "handled"

    async def _meeting(self, name: str, sid: str | None, created: datetime | None) -> Room | None:
        """The registered meeting an event of LiveKit room ``name`` (instance ``sid``) is of.

        A room's sid names one instance of it: when LiveKit opens a new room of a name
        whose meeting has ended (or whose ``room_finished`` was lost), the new sid starts a
        new meeting and the earlier one is kept under its own key. A late event of an
        earlier instance goes to where that meeting is kept. ``None``: not registered.
        """
        room = await self._store.find_room(name)
        if room is None or sid is None:
            return room
        if room.sid is None or room.sid == sid:
            if room.sid is None or (created is not None and room.livekit_created_at is None):
                room = await self._store.register_room(name, sid=sid, livekit_created_at=created)
            return room
        known = room.livekit_created_at
        if created is not None and known is not None and created <= known:
            earlier = await self._store.find_room(archive_key(name, sid))
            return earlier if earlier is not None and earlier.meeting_of == name else None
        archived = await self._store.archive_room(name, sid=room.sid)
        if archived is not None:
            self._metrics.repairs.labels(kind="new_meeting").inc()
            log.info(
                "LiveKit opened a new room %r; its earlier meeting is kept as %r",
                name,
                archived.name,
                extra={"room": name},
            )
            await self.check_and_complete_room(archived.name)
        return await self._store.register_room(name, sid=sid, livekit_created_at=created)

    async def track_published(
        self,
        room: Room,
        *,
        identity: str,
        name: str | None,
        track_sid: str,
        published_at: datetime,
    ) -> None:
        """Record the track and have its egress started (once).

        A track published after the meeting was finalized (an agent's early finalize, a
        ``room_finished`` forged or delivered early) is recorded all the same, and a
        completed room goes back to ``final_room``: it completes again, summary included,
        once the late track is transcribed.
        """
        await self._store.add_participant(room.name, identity)
        await self._activate(room.name)
        track = await self._store.upsert_track(
            TrackCreate(
                track_sid=track_sid,
                room=room.name,
                participant_identity=identity,
                participant_name=name,
                published_at=published_at,
            )
        )
        # After the upsert: a completion that ran before it saw no pending track, and is
        # undone here; one that runs after it sees the track and waits for it.
        if await self._store.transition_room(
            room.name,
            to=RoomStatus.FINAL_ROOM,
            from_=DONE_ROOM,
            reason=f"reopened: track {track_sid} was published after the meeting ended",
        ):
            self._metrics.repairs.labels(kind="late_track").inc()
            log.info("late track: room reopened", extra={"room": room.name})
        if track.status is TrackStatus.RECORDING and track.egress.status is None:
            await self._jobs.put(lambda: self._start_egress(track_sid))

    async def track_unpublished(self, track_sid: str) -> None:
        """Have the track's egress stopped (LiveKit then reports its end)."""
        track = await self._store.find_track(track_sid)
        if track is None or track.status is not TrackStatus.RECORDING:
            return
        await self._jobs.put(lambda: self._stop_egress(track_sid))

    async def register(self, room_name: str) -> Room:
        """Register a room and sweep tracks published before registration."""
        listed = await self._open_rooms([room_name])
        if room_name in listed:
            lk_room = listed[room_name]
            sid, created = lk_room.sid or None, sane_epoch(lk_room.creation_time)
        else:
            sid, created = None, None
        room = await self._meeting(room_name, sid, created)
        if room is None:
            room = await self._store.register_room(room_name, sid=sid, livekit_created_at=created)
        try:
            participants = await self._call(
                "list_participants", lambda: self._lk.list_participants(room_name)
            )
        except PermanentLiveKitError as exc:
            log.warning("sweep skipped: %s", exc, extra={"room": room_name})
            return room
        if participants:
            await self._activate(room_name)
            # People are still in it: a room finalized by a job that stopped early (an
            # agent restart) is reopened, so its later tracks make it into the summary.
            if await self._store.transition_room(
                room_name,
                to=RoomStatus.ACTIVE,
                from_={RoomStatus.FINAL_ROOM, *DONE_ROOM},
                reason="reopened: the meeting goes on",
            ):
                log.info("final room reopened", extra={"room": room_name})
        for participant in participants:
            for track_sid in audio_tracks(participant):
                await self.track_published(
                    room,
                    identity=participant.identity,
                    name=participant.name or None,
                    track_sid=track_sid,
                    published_at=joined_at(participant),
                )
        return await self._store.get_room(room_name)
