"""The orchestrator's calls to LiveKit, through the real ``livekit-api`` client."""

from __future__ import annotations

from livekit import api
from livekit.protocol.egress import (
    DirectFileOutput,
    EgressInfo,
    ListEgressRequest,
    S3Upload,
    StopEgressRequest,
    TrackEgressRequest,
)
from livekit.protocol.models import ParticipantInfo, TrackType
from livekit.protocol.models import Room as LkRoom
from livekit.protocol.room import ListParticipantsRequest, ListRoomsRequest

from orchestrator_service.settings import OrchestratorSettings
from roomscribe.objectstore import key_component


def recording_key(room: str, participant: str, track_sid: str) -> str:
    """Where a track's recording lives in the object store.

    Every component comes from outside (room names and identities are whatever clients
    chose), so each is encoded as one key segment: ``../`` or ``/`` cannot climb out of
    ``rooms/`` or make two tracks share a file.
    """
    parts = (key_component(room), key_component(participant), key_component(track_sid))
    return "rooms/{}/{}/{}.ogg".format(*parts)


def audio_tracks(participant: ParticipantInfo) -> list[str]:
    """The sids of a participant's published audio tracks."""
    return [t.sid for t in participant.tracks if t.type == TrackType.AUDIO]


class LiveKitGateway:
    """Rooms and egress through LiveKit's server API."""

    def __init__(self, settings: OrchestratorSettings) -> None:
        """Prepare (lazily) a client for ``LIVEKIT_URL`` with the API key and secret."""
        self._settings = settings
        self._api: api.LiveKitAPI | None = None

    def _client(self) -> api.LiveKitAPI:
        # Created on first use, inside the running loop (the client owns an aiohttp session).
        if self._api is None:
            s = self._settings
            self._api = api.LiveKitAPI(
                s.livekit_url, s.livekit_api_key, s.livekit_api_secret.get_secret_value()
            )
        return self._api

    async def close(self) -> None:
        """Close the HTTP session."""
        if self._api is not None:
            await self._api.aclose()
            self._api = None

    async def list_participants(self, room: str) -> list[ParticipantInfo]:
        """Participants currently in ``room`` (with their tracks)."""
        res = await self._client().room.list_participants(ListParticipantsRequest(room=room))
        return list(res.participants)

    async def open_rooms(self, names: list[str]) -> dict[str, LkRoom]:
        """The rooms among ``names`` that LiveKit lists as open now, by name."""
        res = await self._client().room.list_rooms(ListRoomsRequest(names=names))
        return {room.name: room for room in res.rooms}

    def _upload(self) -> S3Upload | None:
        s = self._settings
        if not s.s3_endpoint or s.s3_access_key is None or s.s3_secret_key is None:
            return None  # the local object store: egress writes where LiveKit is told to
        return S3Upload(
            access_key=s.s3_access_key.get_secret_value(),
            secret=s.s3_secret_key.get_secret_value(),
            region=s.s3_region or "",
            endpoint=s.s3_endpoint,
            bucket=s.s3_bucket,
            force_path_style=True,
        )

    async def start_track_egress(self, room: str, track_sid: str, key: str) -> EgressInfo:
        """Record one audio track straight to the object store at ``key``."""
        output = DirectFileOutput(filepath=key)
        upload = self._upload()
        if upload is not None:
            output.s3.CopyFrom(upload)
        request = TrackEgressRequest(room_name=room, track_id=track_sid, file=output)
        return await self._client().egress.start_track_egress(request)

    async def stop_egress(self, egress_id: str) -> EgressInfo:
        """Stop an egress (it then ends and LiveKit sends ``egress_ended``)."""
        return await self._client().egress.stop_egress(StopEgressRequest(egress_id=egress_id))

    async def list_egress(self, room: str) -> list[EgressInfo]:
        """Every egress LiveKit knows for ``room``."""
        res = await self._client().egress.list_egress(ListEgressRequest(room_name=room))
        return list(res.items)
