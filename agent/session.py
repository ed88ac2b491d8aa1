"""What one agent job does in one room: :class:`RoomSession`.

The session registers the room with the orchestrator, runs a :class:`TrackTranscriber` for
every subscribed audio track (already there, published later, or subscribed again after an
unsubscribe), publishes captions on ``lk.transcription``, speaks ``tts_control`` requests of
allowed participants on an agent track (captioning what it says on ``lk.transcription`` too,
as the agent's own words on its voice track), and finalizes the room with the orchestrator only
when LiveKit ended the room.

A track's transcriber is forgotten when it ends, so a track subscribed again (same sid or a
new one) is transcribed again. One track sid has at most one stream at a time: a track
subscribed again while its previous stream still waits for its last final starts once that
one is done (its audio is buffered meanwhile), and the same subscription reported twice
(already there at start, then the ``track_subscribed`` event) is transcribed once.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import AsyncIterable, Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Protocol

from livekit import rtc

from agent.captions import RoomCaptions
from agent.orchestrator import OrchestratorClient, OrchestratorError
from agent.settings import AgentSettings
from agent.stt_plugin import RoomscribeSTT
from agent.transcriber import TrackClock, TrackTranscriber
from agent.tts import (
    TTS_CONTROL_TOPIC,
    TTS_STATUS_TOPIC,
    HttpSynthesizer,
    TrackAudioOutput,
    TtsManager,
    TtsStatus,
    VoiceCaptions,
    request_id_of,
)
from roomscribe.auth import issue_internal_token

log = logging.getLogger(__name__)

#: The participant attribute (or room metadata key) naming the language a track is spoken in.
LANGUAGE_ATTRIBUTE = "roomscribe.language"
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")
#: The participant attribute that lets a participant drive TTS, when set to ``allow``.
TTS_ATTRIBUTE = "roomscribe.tts"
TTS_ATTRIBUTE_ALLOW = "allow"

#: Why a room connection ends that mean the meeting is over (not a restart or a network drop).
ROOM_ENDED = frozenset({rtc.DisconnectReason.ROOM_DELETED, rtc.DisconnectReason.ROOM_CLOSED})

Frames = AsyncIterable[rtc.AudioFrame | rtc.AudioFrameEvent]


class StreamCounter(Protocol):
    """Counts open transcription streams (the worker's :class:`~agent.worker.StreamLoad`)."""

    def add(self, n: int) -> None:
        """Count ``n`` streams opened (negative: closed)."""
        ...


def track_language(attributes: Mapping[str, str], room_metadata: str, default: str) -> str:
    """The language to transcribe a participant's tracks in.

    The participant's ``roomscribe.language`` attribute, else the same key in the room's
    metadata (a JSON object), else the agent's default. A value that is not a language tag
    (``en``, ``de``, ``pt-BR``) is ignored, so a typo falls back instead of refusing the
    stream.

    Args:
        attributes: The participant's attributes.
        room_metadata: The room's metadata string (often empty).
        default: The agent's language.

    Returns:
        A language tag, at most 16 characters (what the STT protocol accepts).
    """
    candidates = [attributes.get(LANGUAGE_ATTRIBUTE)]
    try:
        meta = json.loads(room_metadata) if room_metadata else {}
    except ValueError:
        meta = {}
    if isinstance(meta, dict):
        candidates.append(meta.get(LANGUAGE_ATTRIBUTE))
    for value in candidates:
        if isinstance(value, str) and len(value) <= 16 and _LANGUAGE_TAG.match(value.strip()):
            return value.strip()
    return default


def may_drive_tts(identity: str, attributes: Mapping[str, str], allowed: frozenset[str]) -> bool:
    """Whether a participant's ``tts_control`` messages are obeyed.

    Args:
        identity: The sender's identity.
        attributes: The sender's participant attributes.
        allowed: ``ROOMSCRIBE_AGENT_TTS_ALLOW``'s identities.

    Returns:
        True for a listed identity or a ``roomscribe.tts`` attribute of ``allow``.
    """
    return identity in allowed or attributes.get(TTS_ATTRIBUTE) == TTS_ATTRIBUTE_ALLOW


def room_audio(track: rtc.Track) -> Frames:
    """A subscribed track's audio at 16 kHz mono; it ends when the track is unsubscribed."""
    return rtc.AudioStream(track, sample_rate=16000, num_channels=1)


@dataclass
class _TrackRun:
    """One subscription of a track and the task transcribing it."""

    task: asyncio.Task[None]
    #: Cleared by ``track_unsubscribed``: a later subscription is a new one, not a repeat.
    subscribed: bool = True


class RoomSession:
    """Everything one job does in one room; see the module docstring.

    Args:
        room: The connected room (subscribed to audio).
        settings: The agent's settings.
        load: Counts the streams this session opens (the worker's load).
        frames_for: A track's audio frames (default: :func:`room_audio`); tests pass frames
            of local tracks.
    """

    def __init__(
        self,
        room: rtc.Room,
        settings: AgentSettings,
        load: StreamCounter,
        *,
        frames_for: Callable[[rtc.Track], Frames] = room_audio,
    ) -> None:
        secret = settings.secret.get_secret_value()
        self.room = room
        self._settings = settings
        self._load = load
        self._frames_for = frames_for
        self._stt = RoomscribeSTT(
            url=settings.stt_url,
            token=lambda: issue_internal_token(secret, audience="stt", subject="agent"),
            language=settings.agent_language,
            room=room.name,
        )
        self._captions = RoomCaptions(room)
        self._orchestrator = OrchestratorClient(settings.orchestrator_url, secret)
        self._runs: dict[str, _TrackRun] = {}
        #: Per track sid, its clock across subscriptions (a room holds a bounded few).
        self._track_clocks: dict[str, TrackClock] = {}
        #: Whether LiveKit said the room itself ended (only then does this job finalize).
        self.room_ended = False
        self._tts_allowed = settings.tts_allowed_identities()
        self._control_tasks: set[asyncio.Task[None]] = set()
        self._synth = HttpSynthesizer(settings.tts_url, secret)
        self._voice = TrackAudioOutput()
        # The agent's words are captioned as its own, on its voice track (sid known once
        # published), the way LiveKit agents caption their speech.
        speaker = VoiceCaptions(
            self._captions, lambda: (room.local_participant.identity, self._voice.track.sid)
        )
        self._tts = TtsManager(
            self._synth,
            self._voice,
            self._publish_status,
            captions=speaker,
            max_chars=settings.agent_tts_max_chars,
            max_queued=settings.agent_tts_max_queued,
        )

    @property
    def transcribing(self) -> list[str]:
        """Sids of the tracks with a transcriber running (or waiting for its predecessor)."""
        return list(self._runs)

    async def start(self) -> None:
        """Register the room, then transcribe every audio track and listen for TTS."""
        try:
            await self._orchestrator.register(self.room.name)
        except OrchestratorError as exc:
            # Live captions still work; the recording path needs the registration, and the
            # orchestrator's reconciler cannot know the room without it: say so loudly.
            log.error("room registration failed: %s", exc, extra={"room": self.room.name})
        self.room.on("track_subscribed", self._on_track_subscribed)
        self.room.on("track_unsubscribed", self._on_track_unsubscribed)
        self.room.on("disconnected", self.on_disconnected)
        self.room.on("data_received", self._on_data)
        for participant in self.room.remote_participants.values():
            for publication in participant.track_publications.values():
                if publication.track is not None:
                    self._transcribe(publication.track, participant)
        await self.room.local_participant.publish_track(
            self._voice.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        self._tts.start()

    def on_disconnected(self, reason: rtc.DisconnectReason.ValueType) -> None:
        """Note why the room connection ended (``disconnected`` event)."""
        self.room_ended = reason in ROOM_ENDED
        try:
            name = rtc.DisconnectReason.Name(reason)
        except ValueError:  # a reason newer than this SDK
            name = str(reason)
        log.info("room connection ended: %s", name, extra={"room": self.room.name})

    async def finish(self) -> None:
        """Let every track's stream deliver its last final; finalize if the room ended.

        A job also shuts down when the worker restarts or loses its connection while the
        meeting goes on: finalizing then would complete the meeting early and leave later
        tracks out of its summary. When LiveKit did end the room, its ``room_finished``
        webhook finalizes too; finalizing here only makes it sooner.

        Every step runs even when an earlier one fails (it is logged): a failed TTS shutdown
        must not cost the room its finalize, nor leak the HTTP clients and the audio source.
        """
        steps: list[tuple[str, Callable[[], Awaitable[None]]]] = [
            ("stop speaking", self._stop_speaking),
            ("wait for the last finals", self._wait_for_tracks),
            ("finalize the room", self._finalize),
            ("close the orchestrator client", self._orchestrator.aclose),
            ("close the TTS client", self._synth.aclose),
            ("close the agent's voice", self._voice.aclose),
            ("close the STT plugin", self._stt.aclose),
        ]
        for what, step in steps:
            try:
                await step()
            except Exception:
                log.exception("ending the job: %s failed", what, extra={"room": self.room.name})

    async def _stop_speaking(self) -> None:
        for task in list(self._control_tasks):  # control messages still being handled
            task.cancel()
        await self._tts.aclose()

    async def _wait_for_tracks(self) -> None:
        tasks = [run.task for run in self._runs.values()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _finalize(self) -> None:
        if not self.room_ended:
            log.info(
                "job ended while the room goes on: not finalizing", extra={"room": self.room.name}
            )
            return
        try:
            await self._orchestrator.finalize(self.room.name)
        except OrchestratorError as exc:
            log.error("room finalize failed: %s", exc, extra={"room": self.room.name})

    # Tracks ---------------------------------------------------------------------------------
    def _on_track_subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        self._transcribe(track, participant)

    def _on_track_unsubscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        run = self._runs.get(track.sid)
        if run is not None:
            run.subscribed = False

    def _transcribe(self, track: rtc.Track, participant: rtc.RemoteParticipant) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO:
            return
        previous = self._runs.get(track.sid)
        if previous is not None and previous.subscribed:
            return  # the same subscription, reported twice
        transcriber = TrackTranscriber(
            self._stt,
            self._captions,
            room=self.room.name,
            participant=participant.identity,
            track_sid=track.sid,
            language=track_language(
                participant.attributes, self.room.metadata, self._settings.agent_language
            ),
            track_clock=self._track_clocks.setdefault(track.sid, TrackClock()),
        )
        # Opened now, so the audio of a subscription that waits for its predecessor is kept.
        # The stream ends when the track is unsubscribed or the participant leaves; the
        # transcriber then ends its input and waits for the last final.
        frames = self._frames_for(track)
        after = previous.task if previous is not None else None
        self._load.add(1)
        task = asyncio.create_task(
            self._run_track(transcriber, frames, after), name=f"transcribe-{track.sid}"
        )
        run = _TrackRun(task)
        self._runs[track.sid] = run
        task.add_done_callback(lambda done: self._track_done(track.sid, run, done))

    @staticmethod
    async def _run_track(
        transcriber: TrackTranscriber, frames: Frames, after: asyncio.Task[None] | None
    ) -> None:
        if after is not None:
            # One stream per track sid: two at once would store the track's segments twice.
            await asyncio.gather(after, return_exceptions=True)
        await transcriber.run(frames)

    def _track_done(self, sid: str, run: _TrackRun, task: asyncio.Task[None]) -> None:
        self._load.add(-1)
        if self._runs.get(sid) is run:
            del self._runs[sid]  # a later subscription of this track starts a new stream
        if not task.cancelled() and (exc := task.exception()) is not None:
            log.error(
                "transcribing a track failed: %r",
                exc,
                exc_info=exc,
                extra={"room": self.room.name, "track_sid": sid},
            )

    # TTS ------------------------------------------------------------------------------------
    def may_speak(self, sender: rtc.RemoteParticipant | None) -> bool:
        """Whether ``tts_control`` messages from ``sender`` are obeyed.

        Allowed: messages sent by a server SDK (no participant: they need the API secret),
        identities listed in ``ROOMSCRIBE_AGENT_TTS_ALLOW``, and participants whose
        ``roomscribe.tts`` attribute is ``allow``. Everyone else is refused.
        """
        if sender is None:
            return True
        return may_drive_tts(sender.identity, sender.attributes, self._tts_allowed)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic != TTS_CONTROL_TOPIC:
            return
        sender = packet.participant
        if sender is None or self.may_speak(sender):
            work = self._tts.handle(packet.data)
        else:
            work = self._refuse(packet.data, sender.identity)
        task = asyncio.create_task(work)
        self._control_tasks.add(task)
        task.add_done_callback(self._control_tasks.discard)

    async def _refuse(self, payload: bytes, identity: str) -> None:
        log.info("tts_control refused", extra={"room": self.room.name, "identity": identity})
        status = TtsStatus(id=request_id_of(payload), state="error", error="not allowed")
        try:
            # Only the sender hears of it: a refused participant cannot spam the others.
            await self._publish_status(status, to=[identity])
        except Exception as exc:
            log.warning("could not send a tts_status: %s", exc)

    async def _publish_status(self, status: TtsStatus, to: list[str] | None = None) -> None:
        await self.room.local_participant.publish_data(
            status.model_dump_json(exclude_none=True),
            topic=TTS_STATUS_TOPIC,
            reliable=True,
            destination_identities=to or [],
        )
