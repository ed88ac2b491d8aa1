"""A LiveKit server emulator: the server API, webhooks and track egress, without LiveKit.

It speaks the part of LiveKit the orchestrator uses, over the wire as LiveKit does, so the real
``livekit-api`` client talks to it unchanged:

- Twirp endpoints ``POST /twirp/livekit.RoomService/{ListParticipants,ListRooms}`` and
  ``POST /twirp/livekit.Egress/{StartTrackEgress,StopEgress,ListEgress}``. Bodies are
  protobuf (``application/protobuf``, what the client sends) or Twirp JSON
  (``application/json``). The ``Authorization: Bearer`` token is checked with the API key
  and secret, then the grants: ``roomList`` for ListRooms, ``roomAdmin`` on the requested
  room for ListParticipants, ``roomRecord`` for egress. Errors are Twirp JSON errors.
  Like LiveKit, a missing grant is ``unauthenticated`` ("permissions denied"), not
  ``permission_denied``.
- Webhooks signed as LiveKit signs them (:mod:`devkit.webhooks`) for a scripted room:
  ``room_started``, ``participant_joined``, ``track_published``, ``track_unpublished``,
  ``participant_left``, ``room_finished``, and for each egress ``egress_started``
  (STARTING), ``egress_updated`` (ACTIVE) and ``egress_ended`` (COMPLETE or FAILED).
- Track egress that "records" a track: when the egress completes (its track is unpublished,
  or StopEgress), the track's whole audio is encoded to OGG/Opus (48 kHz mono, what LiveKit
  track egress writes for an Opus track) and stored through the emulator's object store under
  the requested ``filepath``. The S3 settings in the request (bucket, endpoint, keys) are not
  used for writing: the object store passed to the emulator stands in for that bucket; they
  only shape the reported ``location``.

Simplifications, on purpose: the recording is the track's whole audio whenever the egress
starts or stops (no clock runs); ``egress_updated`` is sent only for ACTIVE, as LiveKit's
server does; an egress for a track that is not (or no longer) published starts and then
fails with "track not found", as a real egress that cannot subscribe does; ListParticipants
for an unknown room returns no participants, as LiveKit does.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import io
import secrets
import string
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, Generic, Literal, TypeVar

import av
import jwt
import numpy as np
import uvicorn
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler
from google.protobuf.json_format import MessageToJson, Parse, ParseError
from google.protobuf.message import DecodeError, Message
from livekit.api import TokenVerifier, VideoGrants
from livekit.protocol.egress import (
    DirectFileOutput,
    EgressInfo,
    EgressSourceType,
    EgressStatus,
    FileInfo,
    ListEgressRequest,
    ListEgressResponse,
    StopEgressRequest,
    TrackEgressRequest,
)
from livekit.protocol.models import (
    DisconnectReason,
    ParticipantInfo,
    ParticipantPermission,
    Room,
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
from livekit.protocol.webhook import WebhookEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from devkit.webhooks import WebhookSender
from roomscribe.audio import TARGET_SAMPLE_RATE, Pcm, decode_file
from roomscribe.errors import InvalidObjectKeyError, ObjectStoreError
from roomscribe.objectstore import ObjectStore, validate_key

#: Statuses of an egress that is still running (ListEgress ``active=True``; StopEgress-able
#: are only the first two).
_ACTIVE_STATUSES: Final = frozenset(
    {EgressStatus.EGRESS_STARTING, EgressStatus.EGRESS_ACTIVE, EgressStatus.EGRESS_ENDING}
)

#: The sample rate of the recordings: Opus runs at 48 kHz, and LiveKit's tracks do.
_RECORDING_RATE: Final = 48000

#: Twirp's HTTP status for each error code (twirp's ServerHTTPStatusFromErrorCode).
_TWIRP_STATUS: Final = {
    "canceled": 408,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
    "unknown": 500,
}

_ID_ALPHABET: Final = string.ascii_letters + string.digits

_ReqT = TypeVar("_ReqT", bound=Message)
_MsgT = TypeVar("_MsgT", bound=Message)


def _new_id(prefix: str) -> str:
    """A LiveKit-style id: a type prefix and 12 random letters and digits (``TR_x7Kq...``)."""
    return prefix + "".join(secrets.choice(_ID_ALPHABET) for _ in range(12))


def _copy(message: _MsgT) -> _MsgT:
    clone = type(message)()
    clone.CopyFrom(message)
    return clone


def encode_ogg_opus(pcm: Pcm, sample_rate: int = TARGET_SAMPLE_RATE) -> bytes:
    """Encode mono int16 PCM as an OGG/Opus file at 48 kHz, as track egress writes it.

    Blocking, CPU-bound work: run it in a worker thread.

    Args:
        pcm: The samples (one-dimensional ``int16``).
        sample_rate: Their rate in Hz.

    Returns:
        The bytes of the ``.ogg`` file.
    """
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=_RECORDING_RATE, layout="mono")
        frames: list[AudioFrame] = []
        if pcm.size:
            source = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            source.sample_rate = sample_rate
            resampler = AudioResampler(format="s16", layout="mono", rate=_RECORDING_RATE)
            frames = [*resampler.resample(source), *resampler.resample(None)]
        for frame in [*frames, None]:
            for packet in stream.encode(frame):
                container.mux(packet)
    return buffer.getvalue()


class TwirpError(Exception):
    """An error the Twirp server answers with (``{"code", "msg"}`` and the code's status).

    Args:
        code: A Twirp error code, e.g. ``not_found``.
        msg: The message, as LiveKit words it where it matters.
    """

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg

    @property
    def status(self) -> int:
        """The HTTP status Twirp uses for this code."""
        return _TWIRP_STATUS.get(self.code, 500)


@dataclass(frozen=True)
class _InjectedFailure:
    reason: str
    at: Literal["start", "end"]


@dataclass
class _Track:
    info: TrackInfo
    pcm: Pcm
    identity: str
    egress_ids: list[str] = field(default_factory=list)


@dataclass
class _Participant:
    sid: str
    identity: str
    name: str
    joined_at_ms: int
    tracks: dict[str, _Track] = field(default_factory=dict)
    version: int = 0


@dataclass
class _Room:
    sid: str
    name: str
    created_at_ms: int
    participants: dict[str, _Participant] = field(default_factory=dict)


@dataclass
class _Egress:
    info: EgressInfo
    pcm: Pcm | None
    key: str
    location: str
    failure: _InjectedFailure | None
    finishing: asyncio.Task[None] | None = None


@dataclass(frozen=True)
class _Method(Generic[_ReqT]):
    """One Twirp method: how to read its request, who may call it, and what it does."""

    request_type: type[_ReqT]
    allowed: Callable[[VideoGrants, _ReqT], bool]
    call: Callable[[_ReqT], Message]

    def parse(self, body: bytes, *, as_json: bool) -> _ReqT:
        request = self.request_type()
        try:
            if as_json:
                # Twirp's JSON decoding discards unknown fields; so does this.
                Parse(body.decode(), request, ignore_unknown_fields=True)
            else:
                request.ParseFromString(body)
        except (DecodeError, ParseError, UnicodeDecodeError) as exc:
            raise TwirpError("malformed", f"the request body could not be decoded: {exc}") from exc
        return request

    def run(self, grants: VideoGrants, request: _ReqT) -> Message:
        if not self.allowed(grants, request):
            # LiveKit wraps every missing-grant error as unauthenticated (twirpAuthError).
            raise TwirpError("unauthenticated", "permissions denied")
        return self.call(request)


class LiveKitEmulator:
    """A scriptable stand-in for a LiveKit server with egress (see the module docstring).

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
    ) -> None:
        self.object_store = object_store
        self.webhooks = WebhookSender(
            webhook_url,
            api_key,
            api_secret,
            max_retries=webhook_max_retries,
            retry_wait=webhook_retry_wait,
            timeout=webhook_timeout,
        )
        self._verifier = TokenVerifier(api_key, api_secret)
        self._rooms: dict[str, _Room] = {}
        self._egresses: dict[str, _Egress] = {}
        self._failures: collections.deque[_InjectedFailure] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._methods: dict[str, _Method[Any]] = {
            "livekit.RoomService/ListParticipants": _Method(
                ListParticipantsRequest,
                lambda g, r: bool(g.room_admin) and g.room == r.room,
                self._list_participants,
            ),
            "livekit.RoomService/ListRooms": _Method(
                ListRoomsRequest, lambda g, r: bool(g.room_list), self._list_rooms
            ),
            "livekit.Egress/StartTrackEgress": _Method(
                TrackEgressRequest, lambda g, r: bool(g.room_record), self._start_track_egress
            ),
            "livekit.Egress/StopEgress": _Method(
                StopEgressRequest, lambda g, r: bool(g.room_record), self._stop_egress
            ),
            "livekit.Egress/ListEgress": _Method(
                ListEgressRequest, lambda g, r: bool(g.room_record), self._list_egress
            ),
        }
        self.app = Starlette(
            routes=[Route("/twirp/{service}/{method}", self._handle_twirp, methods=["POST"])]
        )

    async def __aenter__(self) -> LiveKitEmulator:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    # Webhook record and fault injection -----------------------------------------------------
    @property
    def events(self) -> list[WebhookEvent]:
        """Every webhook event emitted, in order, whether delivered, dropped or held."""
        return self.webhooks.events

    @property
    def delivered(self) -> list[WebhookEvent]:
        """Webhook events the receiver accepted (2xx), in delivery order."""
        return self.webhooks.delivered

    @property
    def dropped(self) -> list[WebhookEvent]:
        """Webhook events lost on purpose (:meth:`drop_next_webhooks`)."""
        return self.webhooks.dropped

    def drop_next_webhooks(self, n: int, event: str | None = None) -> None:
        """Lose the next ``n`` webhooks (only those of type ``event``, when given).

        A lost webhook is counted in the next delivered event's ``num_dropped``, as LiveKit
        does for events it drops when its queue is full.
        """
        self.webhooks.drop_next(n, event)

    def duplicate_webhooks(self, on: bool) -> None:
        """Deliver every webhook twice from now on (same id, same body), or stop doing so."""
        self.webhooks.duplicate(on)

    def hold_webhooks(self) -> None:
        """Keep webhooks back until :meth:`release_webhooks` (to reorder them)."""
        self.webhooks.hold()

    def release_webhooks(self, *, reverse: bool = False) -> None:
        """Deliver the held webhooks, in emitted order or reversed."""
        self.webhooks.release(reverse=reverse)

    def fail_next_egress(self, reason: str, *, at: Literal["start", "end"] = "start") -> None:
        """Make the next started egress fail with ``error=reason`` (EGRESS_FAILED).

        Args:
            reason: The ``error`` the failed EgressInfo carries.
            at: ``"start"``: it fails right after ``egress_started``, never active;
                ``"end"``: it runs, then fails when it should complete, writing nothing.
        """
        self._failures.append(_InjectedFailure(reason, at))

    async def wait_idle(self) -> None:
        """Wait until every egress completion has run and every queued webhook is sent."""
        while self._tasks:
            await asyncio.gather(*self._tasks)
        await self.webhooks.wait_idle()

    async def aclose(self) -> None:
        """Cancel running egress completions, stop webhook delivery, close the HTTP client."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.webhooks.aclose()

    def egress(self, egress_id: str) -> EgressInfo:
        """A copy of the egress's current EgressInfo.

        Raises:
            KeyError: No such egress.
        """
        return _copy(self._egresses[egress_id].info)

    # Scripting the rooms ---------------------------------------------------------------------
    async def create_room(self, name: str) -> str:
        """Create a room (sends ``room_started``); an existing room is returned as is.

        Returns:
            The room's sid (``RM_...``).
        """
        room = self._rooms.get(name)
        if room is None:
            room = _Room(_new_id("RM_"), name, _now_ms())
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
        participant = _Participant(_new_id("PA_"), identity, name or identity, _now_ms())
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
        sid = track_sid or _new_id("TR_")
        if self._find_track(self._rooms[room], sid) is not None:
            raise ValueError(f"track {sid!r} is already published in room {room!r}")
        info = TrackInfo(
            sid=sid,
            type=TrackType.AUDIO,
            source=TrackSource.MICROPHONE,
            name=name,
            mime_type="audio/opus",
        )
        participant.tracks[sid] = _Track(info, pcm, identity)
        participant.version += 1
        self._emit("track_published", self._rooms[room], participant, track=info)
        return sid

    async def unpublish(self, room: str, track_sid: str) -> None:
        """Unpublish a track (sends ``track_unpublished``) and complete its egresses.

        Returns once the egresses have completed (recording stored, ``egress_ended`` queued).

        Raises:
            LookupError: No such room or track.
        """
        state = self._room(room)
        track = self._find_track(state, track_sid)
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

    def _room(self, name: str) -> _Room:
        try:
            return self._rooms[name]
        except KeyError:
            raise LookupError(f"no room {name!r}") from None

    def _participant(self, room: str, identity: str) -> _Participant:
        try:
            return self._room(room).participants[identity]
        except KeyError:
            raise LookupError(f"no participant {identity!r} in room {room!r}") from None

    @staticmethod
    def _find_track(room: _Room, track_sid: str) -> _Track | None:
        for participant in room.participants.values():
            if track_sid in participant.tracks:
                return participant.tracks[track_sid]
        return None

    async def _unpublish(self, room: _Room, participant: _Participant, track: _Track) -> None:
        del participant.tracks[track.info.sid]
        participant.version += 1
        self._emit("track_unpublished", room, participant, track=track.info)
        finishing = [
            self._finish(self._egresses[egress_id])
            for egress_id in track.egress_ids
            if self._egresses[egress_id].info.status in _ACTIVE_STATUSES
        ]
        await asyncio.gather(*finishing)

    async def _leave(self, room: _Room, identity: str, reason: DisconnectReason) -> None:
        participant = room.participants[identity]
        for track in list(participant.tracks.values()):
            await self._unpublish(room, participant, track)
        del room.participants[identity]
        self._emit("participant_left", room, participant, disconnect_reason=reason)

    # Webhook events ----------------------------------------------------------------------------
    def _room_info(self, room: _Room) -> Room:
        return Room(
            sid=room.sid,
            name=room.name,
            empty_timeout=300,
            departure_timeout=20,
            creation_time=room.created_at_ms // 1000,
            creation_time_ms=room.created_at_ms,
            num_participants=len(room.participants),
            num_publishers=sum(1 for p in room.participants.values() if p.tracks),
        )

    def _participant_info(
        self, participant: _Participant, *, disconnect_reason: DisconnectReason | None = None
    ) -> ParticipantInfo:
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
            joined_at=participant.joined_at_ms // 1000,
            joined_at_ms=participant.joined_at_ms,
            version=participant.version,
            permission=ParticipantPermission(
                can_subscribe=True, can_publish=True, can_publish_data=True
            ),
            is_publisher=bool(participant.tracks),
            kind=ParticipantInfo.Kind.STANDARD,
            disconnect_reason=disconnect_reason or DisconnectReason.UNKNOWN_REASON,
        )

    def _emit(
        self,
        kind: str,
        room: _Room,
        participant: _Participant | None = None,
        *,
        track: TrackInfo | None = None,
        disconnect_reason: DisconnectReason | None = None,
        room_end_reason: RoomEndReason | None = None,
    ) -> None:
        event = self._new_event(kind)
        event.room.CopyFrom(self._room_info(room))
        if participant is not None:
            info = self._participant_info(participant, disconnect_reason=disconnect_reason)
            event.participant.CopyFrom(info)
        if track is not None:
            event.track.CopyFrom(track)
        if room_end_reason is not None:
            event.room_end_reason = room_end_reason
        self.webhooks.send(event)

    def _emit_egress(self, kind: str, egress: _Egress) -> None:
        event = self._new_event(kind)
        event.egress_info.CopyFrom(egress.info)
        self.webhooks.send(event)

    @staticmethod
    def _new_event(kind: str) -> WebhookEvent:
        return WebhookEvent(event=kind, id=_new_id("EV_"), created_at=int(time.time()))

    # Egress ------------------------------------------------------------------------------------
    def _start_track_egress(self, request: TrackEgressRequest) -> EgressInfo:
        room = self._rooms.get(request.room_name)
        if room is None:
            raise TwirpError("not_found", "requested room does not exist")
        output = request.WhichOneof("output")
        if output != "file":
            raise TwirpError(
                "invalid_argument",
                "the emulator's track egress writes files only: set file, not websocket_url"
                if output
                else "missing output: set file.filepath",
            )
        track = self._find_track(room, request.track_id)
        info = EgressInfo(
            egress_id=_new_id("EG_"),
            room_id=room.sid,
            room_name=room.name,
            source_type=EgressSourceType.EGRESS_SOURCE_TYPE_SDK,
            status=EgressStatus.EGRESS_STARTING,
            updated_at=time.time_ns(),
            track=_redacted(request),
        )
        key = _expand_filepath(request.file.filepath, room, request.track_id, track)
        egress = _Egress(
            info,
            None if track is None else track.pcm,
            key,
            _location(request.file, key),
            self._failures.popleft() if self._failures else None,
        )
        self._egresses[info.egress_id] = egress
        response = _copy(info)
        self._emit_egress("egress_started", egress)

        error = None
        if egress.failure is not None and egress.failure.at == "start":
            error = egress.failure.reason
        elif track is None:
            error = "track not found"
        else:
            try:
                validate_key(key)
            except InvalidObjectKeyError as exc:
                error = f"invalid filepath: {exc}"
        if error is not None:
            self._end_egress(egress, EgressStatus.EGRESS_FAILED, error=error)
        else:
            assert track is not None
            track.egress_ids.append(info.egress_id)
            info.status = EgressStatus.EGRESS_ACTIVE
            info.started_at = info.updated_at = time.time_ns()
            self._emit_egress("egress_updated", egress)
        return response

    def _stop_egress(self, request: StopEgressRequest) -> EgressInfo:
        egress = self._egresses.get(request.egress_id)
        if egress is None:
            raise TwirpError("not_found", "egress does not exist")
        status = egress.info.status
        if status not in (EgressStatus.EGRESS_STARTING, EgressStatus.EGRESS_ACTIVE):
            name = EgressStatus.Name(status)
            raise TwirpError("failed_precondition", f"egress with status {name} cannot be stopped")
        self._finish(egress)
        return _copy(egress.info)

    def _list_egress(self, request: ListEgressRequest) -> ListEgressResponse:
        items = [
            _copy(egress.info)
            for egress in self._egresses.values()
            if (not request.room_name or egress.info.room_name == request.room_name)
            and (not request.egress_id or egress.info.egress_id == request.egress_id)
            and (not request.active or egress.info.status in _ACTIVE_STATUSES)
        ]
        return ListEgressResponse(items=items)

    def _finish(self, egress: _Egress) -> asyncio.Task[None]:
        """Move the egress to ENDING now and complete it in the background (once)."""
        if egress.finishing is None:
            egress.info.status = EgressStatus.EGRESS_ENDING
            egress.info.updated_at = time.time_ns()
            task = asyncio.get_running_loop().create_task(self._complete(egress))
            egress.finishing = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return egress.finishing

    async def _complete(self, egress: _Egress) -> None:
        if egress.failure is not None:
            self._end_egress(egress, EgressStatus.EGRESS_FAILED, error=egress.failure.reason)
            return
        assert egress.pcm is not None
        data = await asyncio.to_thread(encode_ogg_opus, egress.pcm)
        try:
            stored = await self.object_store.put_bytes(egress.key, data, content_type="audio/ogg")
        except (ObjectStoreError, OSError) as exc:
            self._end_egress(egress, EgressStatus.EGRESS_FAILED, error=f"upload failed: {exc}")
            return
        ended_at = time.time_ns()
        result = FileInfo(
            filename=egress.key,
            started_at=egress.info.started_at,
            ended_at=ended_at,
            duration=egress.pcm.size * 1_000_000_000 // TARGET_SAMPLE_RATE,
            size=stored.size,
            location=egress.location,
        )
        egress.info.file_results.append(result)
        # The deprecated single-file field, which LiveKit still fills for one file output.
        egress.info.file.CopyFrom(result)
        self._end_egress(egress, EgressStatus.EGRESS_COMPLETE, ended_at=ended_at)

    def _end_egress(
        self,
        egress: _Egress,
        status: EgressStatus,
        *,
        error: str = "",
        ended_at: int | None = None,
    ) -> None:
        info = egress.info
        info.status = status
        info.error = error
        info.ended_at = info.updated_at = ended_at or time.time_ns()
        self._emit_egress("egress_ended", egress)

    # Room service --------------------------------------------------------------------------
    def _list_participants(self, request: ListParticipantsRequest) -> ListParticipantsResponse:
        room = self._rooms.get(request.room)
        participants = [] if room is None else list(room.participants.values())
        return ListParticipantsResponse(
            participants=[self._participant_info(p) for p in participants]
        )

    def _list_rooms(self, request: ListRoomsRequest) -> ListRoomsResponse:
        names = set(request.names)
        return ListRoomsResponse(
            rooms=[
                self._room_info(room)
                for room in self._rooms.values()
                if not names or room.name in names
            ]
        )

    # Twirp -------------------------------------------------------------------------------------
    async def _handle_twirp(self, request: Request) -> Response:
        path = f"{request.path_params['service']}/{request.path_params['method']}"
        try:
            method = self._methods.get(path)
            if method is None:
                raise TwirpError("bad_route", f"no handler for path {request.url.path!r}")
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type not in ("application/protobuf", "application/json"):
                raise TwirpError("bad_route", f"unexpected Content-Type: {content_type!r}")
            as_json = content_type == "application/json"
            grants = self._authenticate(request.headers.get("authorization", ""))
            body = await request.body()
            response = method.run(grants, method.parse(body, as_json=as_json))
        except TwirpError as exc:
            return JSONResponse({"code": exc.code, "msg": exc.msg}, status_code=exc.status)
        if as_json:
            return Response(
                MessageToJson(response, preserving_proto_field_name=True, indent=None),
                media_type="application/json",
            )
        return Response(response.SerializeToString(), media_type="application/protobuf")

    def _authenticate(self, authorization: str) -> VideoGrants:
        if not authorization:
            # LiveKit lets a request without a token through to the permission check.
            raise TwirpError("unauthenticated", "permissions denied")
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            raise TwirpError(
                "unauthenticated", "invalid authorization header. Must start with Bearer"
            )
        try:
            claims = self._verifier.verify(token)
        except (jwt.PyJWTError, TypeError, ValueError, AttributeError) as exc:
            # PyJWT's errors, and those of a well-signed token with malformed grant claims.
            raise TwirpError("unauthenticated", f"invalid token: {exc}") from exc
        return claims.video or VideoGrants()

    # Serving -------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def running(self, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
        """Serve the API with uvicorn in the current loop while the block runs.

        Args:
            host: The address to listen on.
            port: The port; 0 picks a free one.

        Yields:
            The base URL (``http://127.0.0.1:PORT``): the ``url`` for ``LiveKitAPI``.
        """
        server = uvicorn.Server(self._uvicorn_config(host, port))
        task = asyncio.create_task(server.serve())
        try:
            while not server.started:
                if task.done():
                    task.result()  # startup failed: raise its error here
                    raise RuntimeError("the emulator's server stopped during startup")
                await asyncio.sleep(0.01)
            bound = server.servers[0].sockets[0].getsockname()[1]
            yield f"http://{_url_host(host)}:{bound}"
        finally:
            server.should_exit = True
            await task

    async def serve(self, host: str, port: int) -> None:
        """Serve the API with uvicorn in the current loop until SIGINT/SIGTERM."""
        await uvicorn.Server(self._uvicorn_config(host, port)).serve()

    def _uvicorn_config(self, host: str, port: int) -> uvicorn.Config:
        # No WebSockets here; "none" keeps uvicorn from importing a WebSocket library.
        return uvicorn.Config(
            self.app, host=host, port=port, ws="none", lifespan="off", log_level="warning"
        )


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"  # listening everywhere: the loopback address reaches it
    return f"[{host}]" if ":" in host else host


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _redacted(request: TrackEgressRequest) -> TrackEgressRequest:
    """The request as EgressInfo reports it: LiveKit redacts upload credentials."""
    copy = _copy(request)
    s3 = copy.file.s3
    for name in ("access_key", "secret", "session_token"):
        if getattr(s3, name):
            setattr(s3, name, "{" + name + "}")
    return copy


def _expand_filepath(template: str, room: _Room, track_sid: str, track: _Track | None) -> str:
    """Fill egress's filename templates and add ``.ogg`` when there is no extension."""
    now = time.gmtime()
    values = {
        "{room_name}": room.name,
        "{room_id}": room.sid,
        "{track_id}": track_sid,
        "{track_type}": "AUDIO",
        "{track_source}": "MICROPHONE",
        "{publisher_identity}": "" if track is None else track.identity,
        "{time}": time.strftime("%Y-%m-%dT%H%M%S", now),
        "{utc}": time.strftime("%Y%m%d%H%M%S", now),
    }
    path = template or "{track_id}-{time}"
    for placeholder, value in values.items():
        path = path.replace(placeholder, value)
    if "." not in path.rsplit("/", 1)[-1]:
        path += ".ogg"
    return path


def _location(output: DirectFileOutput, key: str) -> str:
    """Where LiveKit would say the file was uploaded."""
    if not output.HasField("s3"):
        return key
    s3 = output.s3
    if s3.endpoint:
        return f"{s3.endpoint.rstrip('/')}/{s3.bucket}/{key}"
    return f"https://{s3.bucket}.s3.amazonaws.com/{key}"
