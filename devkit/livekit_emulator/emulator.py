"""The emulator itself: scripted rooms, the Twirp API over them, webhooks and egress."""

from __future__ import annotations

import asyncio
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path

import numpy as np
from livekit.api import TokenVerifier
from livekit.protocol.egress import (
    EgressInfo,
    ListEgressRequest,
    StopEgressRequest,
    TrackEgressRequest,
)
from livekit.protocol.models import (
    DisconnectReason,
    RoomEndReason,
    TrackInfo,
    TrackSource,
    TrackType,
)
from livekit.protocol.room import (
    ListParticipantsRequest,
    ListParticipantsResponse,
    ListRoomsRequest,
    ListRoomsResponse,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devkit.livekit_emulator.clock import Clock
from devkit.livekit_emulator.egress import TrackEgress
from devkit.livekit_emulator.knobs import EmulatorKnobs
from devkit.livekit_emulator.rooms import (
    ParticipantState,
    RoomState,
    TrackState,
    new_event,
    new_id,
    participant_info,
    room_event,
    room_info,
)
from devkit.livekit_emulator.serving import running_api, serve_api
from devkit.livekit_emulator.twirp import TwirpError, TwirpMethod, TwirpRouter
from devkit.webhooks import WebhookSender
from roomscribe.audio import Pcm, decode_file
from roomscribe.objectstore import ObjectStore


class LiveKitEmulator(EmulatorKnobs):
    """A scriptable stand-in for a LiveKit server with egress (see the package docstring).

    Script a meeting with the async methods (:meth:`join`, :meth:`publish_audio`, ...); each
    one changes the room model and emits the webhook LiveKit would. Serve :attr:`app` (or
    use :meth:`running`) for the Twirp API. Webhooks go out in order from a background task
    (see :class:`~devkit.webhooks.WebhookSender` for retries and fault injection); call
    :meth:`wait_idle` before asserting on them and :meth:`aclose` at the end.

    Args:
        api_key: The API key clients and webhooks use.
        api_secret: Its secret.
        object_store: Where egress writes recordings (stands in for the egress's bucket).
        webhook_url: Where to POST webhooks; ``None`` only records them (:attr:`events`).
        webhook_max_retries: Retries of a webhook that got no answer or a 5xx/429.
        webhook_retry_wait: Seconds before the first webhook retry (doubling after).
        webhook_timeout: Seconds one webhook request may take.
        clock: Epoch nanoseconds for every time the emulator reports or records by;
            ``None``: the wall clock (:func:`time.time_ns`).
        egress_start_delay_s: Seconds from a StartTrackEgress request to the start of its
            recording (what a real egress spends starting its pipeline).
        egress_limit_s: The longest an egress records before it ends by itself with
            EGRESS_LIMIT_REACHED (LiveKit's ``max_duration`` session limits); ``None``: none.
    """

    def __init__(
        self,
        api_key: str,
        api_secret: str,
        object_store: ObjectStore,
        webhook_url: str | None = None,
        *,
        webhook_max_retries: int = 4,
        webhook_retry_wait: float = 1.0,
        webhook_timeout: float = 10.0,
        clock: Clock | None = None,
        egress_start_delay_s: float = 0.0,
        egress_limit_s: float | None = None,
    ) -> None:
        self.object_store = object_store
        #: The clock every timestamp is read from.
        self.clock: Clock = clock or time.time_ns
        self.webhooks = WebhookSender(
            webhook_url,
            api_key,
            api_secret,
            max_retries=webhook_max_retries,
            retry_wait=webhook_retry_wait,
            timeout=webhook_timeout,
        )
        self._egress = TrackEgress(
            object_store,
            self.clock,
            self._emit_egress,
            start_delay_s=egress_start_delay_s,
            limit_s=egress_limit_s,
        )
        self._rooms: dict[str, RoomState] = {}
        self._twirp = TwirpRouter(
            TokenVerifier(api_key, api_secret),
            {
                "livekit.RoomService/ListParticipants": TwirpMethod(
                    ListParticipantsRequest,
                    lambda g, r: bool(g.room_admin) and g.room == r.room,
                    self._list_participants,
                ),
                "livekit.RoomService/ListRooms": TwirpMethod(
                    ListRoomsRequest, lambda g, r: bool(g.room_list), self._list_rooms
                ),
                "livekit.Egress/StartTrackEgress": TwirpMethod(
                    TrackEgressRequest, lambda g, r: bool(g.room_record), self._start_track_egress
                ),
                "livekit.Egress/StopEgress": TwirpMethod(
                    StopEgressRequest, lambda g, r: bool(g.room_record), self._egress.stop
                ),
                "livekit.Egress/ListEgress": TwirpMethod(
                    ListEgressRequest, lambda g, r: bool(g.room_record), self._egress.list_egress
                ),
            },
        )
        self.app = Starlette(
            routes=[Route("/twirp/{service}/{method}", self._handle_twirp, methods=["POST"])]
        )

    async def __aenter__(self) -> LiveKitEmulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def egress(self, egress_id: str) -> EgressInfo:
        """A copy of the egress's current EgressInfo.

        Raises:
            KeyError: No such egress.
        """
        return self._egress.info(egress_id)

    async def wait_idle(self) -> None:
        """Wait until every egress completion has run and every queued webhook is sent.

        Egress deadlines the clock has already passed (a delayed start, a limit) are applied
        first, so a test that moved a :class:`ManualClock` sees their webhooks.
        """
        await self._egress.wait_idle()
        await self.webhooks.wait_idle()

    async def aclose(self) -> None:
        """Cancel running egress work, stop webhook delivery, close the HTTP client."""
        await self._egress.aclose()
        await self.webhooks.aclose()

    # Scripting the rooms ---------------------------------------------------------------------
    async def create_room(self, name: str) -> str:
        """Create a room (sends ``room_started``); an existing room is returned as is.

        Returns:
            The room's sid (``RM_...``).
        """
        self._egress.tick()
        room = self._rooms.get(name)
        if room is None:
            room = RoomState(new_id("RM_"), name, self.clock())
            self._rooms[name] = room
            self._emit("room_started", room)
        return room.sid

    async def join(self, room: str, identity: str, name: str | None = None) -> str:
        """Have a participant join (sends ``participant_joined``), creating the room if needed.

        As in LiveKit, joining with an identity already in the room disconnects the older
        participant first (``participant_left``, reason DUPLICATE_IDENTITY).

        Returns:
            The participant's sid (``PA_...``).
        """
        await self.create_room(room)
        state = self._rooms[room]
        if identity in state.participants:
            await self._leave(state, identity, DisconnectReason.DUPLICATE_IDENTITY)
        participant = ParticipantState(new_id("PA_"), identity, name or identity, self.clock())
        state.participants[identity] = participant
        self._emit("participant_joined", state, participant)
        return participant.sid

    async def publish_audio(
        self,
        room: str,
        identity: str,
        audio: Path | Pcm,
        *,
        track_sid: str | None = None,
        name: str = "microphone",
    ) -> str:
        """Publish a microphone track (sends ``track_published``).

        The track starts playing its audio now, on the emulator's clock: an egress records
        the part that plays while it runs.

        Args:
            room: The room's name.
            identity: The publishing participant, who must have joined.
            audio: What the track "says": a file FFmpeg reads, or mono int16 PCM at 16 kHz.
            track_sid: Its sid; a new ``TR_...`` one when not given.
            name: The track's name.

        Returns:
            The track's sid.

        Raises:
            LookupError: No such room or participant.
            ValueError: The PCM is not mono int16, or the track sid is already published in
                this room.
            AudioError: The file cannot be decoded.
        """
        participant = self._participant(room, identity)
        if isinstance(audio, np.ndarray):
            if audio.dtype != np.int16 or audio.ndim != 1:
                raise ValueError("PCM must be a one-dimensional int16 array at 16 kHz")
            pcm: Pcm = np.array(audio, dtype=np.int16, copy=True)
        else:
            pcm = await asyncio.to_thread(decode_file, audio)
        sid = track_sid or new_id("TR_")
        if self._rooms[room].find_track(sid) is not None:
            raise ValueError(f"track {sid!r} is already published in room {room!r}")
        self._egress.tick()
        info = TrackInfo(
            sid=sid,
            type=TrackType.AUDIO,
            source=TrackSource.MICROPHONE,
            name=name,
            mime_type="audio/opus",
        )
        participant.tracks[sid] = TrackState(info, pcm, identity, self.clock())
        participant.version += 1
        self._emit("track_published", self._rooms[room], participant, track=info)
        return sid

    def published_at_ns(self, room: str, track_sid: str) -> int:
        """When a published track started playing (epoch ns on the emulator's clock).

        Raises:
            LookupError: No such room or track.
        """
        track = self._room(room).find_track(track_sid)
        if track is None:
            raise LookupError(f"no track {track_sid!r} in room {room!r}")
        return track.published_ns

    async def unpublish(self, room: str, track_sid: str) -> None:
        """Unpublish a track (sends ``track_unpublished``) and stop its egresses now.

        Returns once the egresses have completed (recording stored, ``egress_ended`` queued).

        Raises:
            LookupError: No such room or track.
        """
        state = self._room(room)
        track = state.find_track(track_sid)
        if track is None:
            raise LookupError(f"no track {track_sid!r} in room {room!r}")
        await self._unpublish(state, state.participants[track.identity], track)

    async def leave(self, room: str, identity: str) -> None:
        """A participant leaves: its tracks are unpublished, then ``participant_left``.

        Raises:
            LookupError: No such room or participant.
        """
        self._participant(room, identity)
        await self._leave(self._rooms[room], identity, DisconnectReason.CLIENT_INITIATED)

    async def end_room(self, room: str) -> None:
        """End the room (sends ``room_finished``) after everyone in it has left.

        Participants still there are disconnected as by DeleteRoom (reason ROOM_DELETED, end
        reason API_DELETE); an empty room ends as by its idle timeout (IDLE_TIMEOUT).

        Raises:
            LookupError: No such room.
        """
        state = self._room(room)
        reason = RoomEndReason.ROOM_END_IDLE_TIMEOUT
        for identity in list(state.participants):
            reason = RoomEndReason.ROOM_END_API_DELETE
            await self._leave(state, identity, DisconnectReason.ROOM_DELETED)
        del self._rooms[room]
        self._emit("room_finished", state, room_end_reason=reason)

    def _room(self, name: str) -> RoomState:
        try:
            return self._rooms[name]
        except KeyError:
            raise LookupError(f"no room {name!r}") from None

    def _participant(self, room: str, identity: str) -> ParticipantState:
        try:
            return self._room(room).participants[identity]
        except KeyError:
            raise LookupError(f"no participant {identity!r} in room {room!r}") from None

    async def _unpublish(
        self, room: RoomState, participant: ParticipantState, track: TrackState
    ) -> None:
        # An egress whose limit passed before the unpublish ended then, not now.
        self._egress.tick()
        del participant.tracks[track.info.sid]
        participant.version += 1
        self._emit("track_unpublished", room, participant, track=track.info)
        await asyncio.gather(*self._egress.track_closed(track))

    async def _leave(self, room: RoomState, identity: str, reason: DisconnectReason) -> None:
        participant = room.participants[identity]
        for track in list(participant.tracks.values()):
            await self._unpublish(room, participant, track)
        del room.participants[identity]
        self._emit("participant_left", room, participant, disconnect_reason=reason)

    # Webhook events ----------------------------------------------------------------------------
    def _emit(
        self,
        kind: str,
        room: RoomState,
        participant: ParticipantState | None = None,
        *,
        track: TrackInfo | None = None,
        disconnect_reason: DisconnectReason | None = None,
        room_end_reason: RoomEndReason | None = None,
    ) -> None:
        event = room_event(
            kind,
            self.clock(),
            room,
            participant,
            track=track,
            disconnect_reason=disconnect_reason,
            room_end_reason=room_end_reason,
        )
        self.webhooks.send(event)

    def _emit_egress(self, kind: str, info: EgressInfo) -> None:
        event = new_event(kind, self.clock())
        event.egress_info.CopyFrom(info)
        self.webhooks.send(event)

    # Twirp ---------------------------------------------------------------------------------
    async def _handle_twirp(self, request: Request) -> Response:
        # Deadlines the clock has passed take effect before the call sees the state.
        self._egress.tick()
        return await self._twirp.handle(request)

    def _start_track_egress(self, request: TrackEgressRequest) -> EgressInfo:
        room = self._rooms.get(request.room_name)
        if room is None:
            raise TwirpError("not_found", "requested room does not exist")
        return self._egress.start(room, request)

    def _list_participants(self, request: ListParticipantsRequest) -> ListParticipantsResponse:
        room = self._rooms.get(request.room)
        participants = [] if room is None else list(room.participants.values())
        return ListParticipantsResponse(participants=[participant_info(p) for p in participants])

    def _list_rooms(self, request: ListRoomsRequest) -> ListRoomsResponse:
        names = set(request.names)
        rooms = [room for room in self._rooms.values() if not names or room.name in names]
        return ListRoomsResponse(rooms=[room_info(room) for room in rooms])

    # Serving -------------------------------------------------------------------------------
    def running(self, host: str = "127.0.0.1", port: int = 0) -> AbstractAsyncContextManager[str]:
        """Serve the API with uvicorn in the current loop while the block runs.

        Args:
            host: The address to listen on.
            port: The port; 0 picks a free one.

        Returns:
            A context manager that yields the base URL (``http://127.0.0.1:PORT``): the
            ``url`` for ``LiveKitAPI``.
        """
        return running_api(self.app, host, port)

    async def serve(self, host: str, port: int) -> None:
        """Serve the API with uvicorn in the current loop until SIGINT/SIGTERM."""
        await serve_api(self.app, host, port)
