"""The reconciler: repairs what lost webhooks and crashed processes left behind.

It compares the store with what LiveKit reports (ListRooms, ListEgress, ListParticipants):
rooms LiveKit closed or reopened under a new sid, egresses whose events were lost, tracks
never recorded, and summaries whose process died.
"""

from __future__ import annotations

import logging
import time

from orchestrator_service.gateway import audio_tracks
from orchestrator_service.rooms.core import (
    ENDED,
    PermanentLiveKitError,
    sane_epoch,
)
from orchestrator_service.rooms.events import RoomEvents
from roomscribe.models import (
    LIVE_ROOM_STATUSES,
    Room,
    RoomStatus,
    TrackStatus,
)

log = logging.getLogger("orchestrator_service.rooms")


class RoomLifecycle(RoomEvents):
    """The whole room lifecycle: events, egress, completion, and the reconciler.

    Applies LiveKit events and agent calls to the registry, drives egress, and repairs
    what lost webhooks left.
    """

    async def reconcile(self) -> None:
        """Repair what lost webhooks left behind, for every live or final room."""
        try:
            await self._finalize_forgotten_rooms()
        except PermanentLiveKitError as exc:
            log.warning("reconcile: cannot list LiveKit's rooms: %s", exc)
        # Registered rooms too: their room_started or first track may be the lost webhook.
        async for room in self._rooms(
            RoomStatus.REGISTERED,
            RoomStatus.ACTIVE,
            RoomStatus.FINAL_ROOM,
            RoomStatus.SUMMARIZING,
        ):
            try:
                await self.reconcile_room(room)
            except PermanentLiveKitError as exc:
                log.warning("reconcile: %s", exc, extra={"room": room.name})

    async def _finalize_forgotten_rooms(self) -> None:
        """Finalize live rooms LiveKit has not listed for ``room_gone_grace_s``.

        The meeting is over when LiveKit says so: ``room_finished`` can be lost (LiveKit
        drops webhooks when its queue is full) and the agent that would finalize may have
        crashed with it; without this such a room stays ``active`` for ever. A room LiveKit
        lists under another sid is a new meeting of that name (the earlier one is kept and
        finalized). A room nobody ever joined expires instead of being summarized.
        """
        live = [room async for room in self._rooms(*LIVE_ROOM_STATUSES)]
        now = time.monotonic()
        for start in range(0, len(live), 100):
            batch = live[start : start + 100]
            listed = await self._call(
                "list_rooms",
                lambda b=batch: self._lk.open_rooms([r.name for r in b]),  # type: ignore[misc]
            )
            for room in batch:
                lk_room = listed.get(room.name)
                if lk_room is not None and room.sid is not None and lk_room.sid != room.sid:
                    await self._meeting(room.name, lk_room.sid, sane_epoch(lk_room.creation_time))
                    continue
                if lk_room is not None:
                    self._missing_since.pop(room.name, None)
                    continue
                since = self._missing_since.setdefault(room.name, now)
                if now - since >= self.room_gone_grace_s:
                    self._missing_since.pop(room.name, None)
                    await self._close_forgotten(room)

    async def _close_forgotten(self, room: Room) -> None:
        if (
            room.status is RoomStatus.REGISTERED
            and not room.participants
            and not await self._store.list_tracks(room.name)
        ):
            if await self._store.transition_room(
                room.name,
                to=RoomStatus.EXPIRED,
                from_={RoomStatus.REGISTERED},
                reason="nobody joined before LiveKit closed the room",
            ):
                self._metrics.repairs.labels(kind="room_expired").inc()
                log.info("registered room expired unused", extra={"room": room.name})
            return
        self._metrics.repairs.labels(kind="room_gone").inc()
        log.info("LiveKit no longer lists the room: finalizing", extra={"room": room.name})
        await self._store.transition_room(
            room.name,
            to=RoomStatus.FINAL_ROOM,
            from_=LIVE_ROOM_STATUSES,
            reason="LiveKit no longer lists the room",
        )
        await self.check_and_complete_room(room.name)

    async def reconcile_room(self, room: Room) -> None:
        """Compare one room's tracks with LiveKit's egress list and fix differences."""
        if room.status is RoomStatus.SUMMARIZING:
            await self._resume_stale_summary(room)
            return
        tracks = [t for t in await self._store.list_tracks(room.name)]
        recording = [t for t in tracks if t.status is TrackStatus.RECORDING]
        if recording:
            egresses = await self._call("list_egress", lambda: self._lk.list_egress(room.name))
            by_track = {e.track.track_id: e for e in egresses if e.track.track_id}
            published: set[str] | None = None
            for track in recording:
                egress = by_track.get(track.track_sid)
                if egress is not None and egress.status in ENDED:
                    self._metrics.repairs.labels(kind="lost_egress_ended").inc()
                    await self.egress_ended(egress)
                elif egress is not None and track.egress.id is None:
                    self._metrics.repairs.labels(kind="lost_egress_started").inc()
                    await self.egress_progress(egress)
                elif egress is None and track.egress.id is None:
                    if published is None:
                        published = await self._published_tracks(room.name)
                    if track.track_sid in published:
                        self._metrics.repairs.labels(kind="missing_egress").inc()
                        await self._jobs.put(
                            lambda sid=track.track_sid: self._start_egress(sid)  # type: ignore[misc]
                        )
                    elif room.status is RoomStatus.FINAL_ROOM:
                        self._metrics.repairs.labels(kind="never_recorded").inc()
                        await self._fail_track(
                            track.track_sid, "the track ended before its recording started"
                        )
        if room.status is RoomStatus.FINAL_ROOM:
            await self.check_and_complete_room(room.name)

    async def _published_tracks(self, room_name: str) -> set[str]:
        try:
            participants = await self._call(
                "list_participants", lambda: self._lk.list_participants(room_name)
            )
        except PermanentLiveKitError:
            return set()
        return {sid for p in participants for sid in audio_tracks(p)}
