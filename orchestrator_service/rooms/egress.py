"""Recording tracks: egress start (claimed once), progress, stop and end."""

from __future__ import annotations

import logging

from livekit.protocol.egress import EgressInfo as LkEgressInfo
from livekit.protocol.egress import EgressStatus as LkEgressStatus

from orchestrator_service.gateway import recording_key
from orchestrator_service.rooms.completion import RoomCompletion
from orchestrator_service.rooms.core import (
    ENDED,
    RECORDED,
    PermanentLiveKitError,
    recording_span,
    requested_key,
)
from roomscribe.models import (
    EgressInfo,
    EgressStatus,
    TrackStatus,
    utcnow,
)

log = logging.getLogger("orchestrator_service.rooms")


class TrackEgress(RoomCompletion):
    """Each audio track's LiveKit Track Egress, from start to its recording."""

    async def _start_egress(self, track_sid: str) -> None:
        # Claimed atomically, not checked: duplicate webhooks delivered at once, the sweep
        # and the reconciler may all queue this, and a check before the awaited LiveKit
        # call lets each of them start an egress of its own.
        if not await self._store.claim_egress_start(track_sid):
            return
        track = await self._store.get_track(track_sid)
        key = recording_key(track.room, track.participant_identity, track_sid)
        try:
            info = await self._call(
                "start_track_egress",
                lambda: self._lk.start_track_egress(track.room, track_sid, key),
            )
        except PermanentLiveKitError as exc:
            await self._fail_track(track_sid, f"egress could not start: {exc}")
            return
        # Its webhooks may have been handled during the call: keep what they recorded.
        current = (await self._store.get_track(track_sid)).egress
        ours = current.id == info.egress_id
        await self._store.update_egress(
            track_sid,
            EgressInfo(
                id=info.egress_id,
                status=current.status if ours and current.status else EgressStatus.STARTING,
                object_key=key,
                started_at=current.started_at if ours else recording_span(info)[0],
                updated_at=utcnow(),
            ),
        )
        if info.status in ENDED:  # it ended before its start was even recorded
            await self.egress_ended(info)

    async def _stop_egress(self, track_sid: str) -> None:
        track = await self._store.get_track(track_sid)
        egress_id = track.egress.id
        if track.status is not TrackStatus.RECORDING or egress_id is None:
            return
        try:
            await self._call("stop_egress", lambda: self._lk.stop_egress(egress_id))
        except PermanentLiveKitError as exc:
            # Usually: it already ended by itself (track gone); egress_ended tells the rest.
            log.info("stop egress: %s", exc, extra={"track_sid": track_sid})

    async def egress_progress(self, info: LkEgressInfo) -> None:
        """Note that an egress started or is running."""
        track = await self._store.find_track(info.track.track_id)
        if track is None or track.status is not TrackStatus.RECORDING:
            return
        status = (
            EgressStatus.ACTIVE
            if info.status == LkEgressStatus.EGRESS_ACTIVE
            else EgressStatus.STARTING
        )
        started, _ = recording_span(info)
        await self._store.update_egress(
            track.track_sid,
            track.egress.model_copy(
                update={
                    "id": info.egress_id,
                    "status": status,
                    # The start call may not have recorded the key yet: LiveKit echoes it.
                    "object_key": track.egress.object_key or requested_key(info),
                    "started_at": started or track.egress.started_at,
                    "updated_at": utcnow(),
                }
            ),
        )

    async def egress_ended(self, info: LkEgressInfo) -> None:
        """A recording finished: the track becomes claimable by Whisper, or failed."""
        track = await self._store.find_track(info.track.track_id)
        if track is None:
            log.info("egress_ended for an unknown track", extra={"egress_id": info.egress_id})
            return
        ok = info.status in RECORDED
        key = track.egress.object_key or requested_key(info)
        if track.status is TrackStatus.RECORDING:
            started, ended = recording_span(info)
            await self._store.update_egress(
                track.track_sid,
                EgressInfo(
                    id=info.egress_id,
                    status=EgressStatus.COMPLETE if ok else EgressStatus.FAILED,
                    object_key=key,
                    error=info.error or None,
                    started_at=started or track.egress.started_at,
                    ended_at=ended,
                    updated_at=utcnow(),
                ),
            )
        if ok:
            await self._store.set_track_status(
                track.track_sid, TrackStatus.RECORDED, from_={TrackStatus.RECORDING}
            )
            await self.check_and_complete_room(track.room)
        else:
            reason = info.error or LkEgressStatus.Name(info.status)
            await self._fail_track(track.track_sid, f"egress failed: {reason}")

    async def _fail_track(self, track_sid: str, reason: str) -> None:
        if await self._store.set_track_status(
            track_sid, TrackStatus.FAILED, from_={TrackStatus.RECORDING}, reason=reason
        ):
            log.warning("track failed: %s", reason, extra={"track_sid": track_sid})
        track = await self._store.get_track(track_sid)
        await self.check_and_complete_room(track.room)
