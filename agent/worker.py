"""The livekit-agents worker: one job per room (``python -m agent start|dev``).

A job connects subscribed to audio only, registers the room with the orchestrator, runs a
:class:`TrackTranscriber` for every remote audio track (already there or published later),
publishes captions on ``lk.transcription``, speaks ``tts_control`` requests on an agent
track, and finalizes the room with the orchestrator when LiveKit ends the room (a job that
shuts down for a restart or a lost connection leaves the meeting open). Jobs run as threads
of one process, so the worker's load function sees every job's open streams through one
shared :class:`StreamLoad`.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import threading
from collections.abc import Mapping

from livekit import rtc
from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType

from agent.captions import RoomCaptions
from agent.orchestrator import OrchestratorClient, OrchestratorError
from agent.settings import AgentSettings
from agent.stt_plugin import RoomscribeSTT
from agent.transcriber import TrackTranscriber
from agent.tts import (
    TTS_CONTROL_TOPIC,
    TTS_STATUS_TOPIC,
    HttpSynthesizer,
    TrackAudioOutput,
    TtsManager,
    TtsStatus,
)
from roomscribe.auth import issue_internal_token

log = logging.getLogger(__name__)

#: The participant attribute (or room metadata key) naming the language a track is spoken in.
LANGUAGE_ATTRIBUTE = "roomscribe.language"
_LANGUAGE_TAG = re.compile(r"^[A-Za-z]{2,3}([-_][A-Za-z0-9]{1,8})*$")


#: Why a room connection ends that mean the meeting is over (not a restart or a network drop).
ROOM_ENDED = frozenset({rtc.DisconnectReason.ROOM_DELETED, rtc.DisconnectReason.ROOM_CLOSED})


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


class StreamLoad:
    """Open transcription streams across the worker's jobs (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        """``capacity`` streams make a load of 1.0."""
        self._capacity = capacity
        self._open = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        """Count ``n`` streams opened (negative: closed)."""
        with self._lock:
            self._open += n

    def load(self) -> float:
        """The worker's load for LiveKit's dispatcher, in [0, 1]."""
        with self._lock:
            return min(1.0, self._open / self._capacity)


class RoomSession:
    """Everything one job does in one room."""

    def __init__(self, room: rtc.Room, settings: AgentSettings, load: StreamLoad) -> None:
        """Prepare the session for ``room`` (connected by the caller)."""
        secret = settings.secret.get_secret_value()
        self.room = room
        self._settings = settings
        self._load = load
        self._stt = RoomscribeSTT(
            url=settings.stt_url,
            token=lambda: issue_internal_token(secret, audience="stt", subject="agent"),
            language=settings.agent_language,
            room=room.name,
        )
        self._captions = RoomCaptions(room)
        self._orchestrator = OrchestratorClient(settings.orchestrator_url, secret)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        #: Whether LiveKit said the room itself ended (only then does this job finalize).
        self.room_ended = False
        self._control_tasks: set[asyncio.Task[None]] = set()
        self._synth = HttpSynthesizer(settings.tts_url, secret)
        self._voice = TrackAudioOutput()
        self._tts = TtsManager(
            self._synth, self._voice, self._send_status, max_chars=settings.agent_tts_max_chars
        )

    async def start(self) -> None:
        """Register the room, then transcribe every audio track and listen for TTS."""
        try:
            await self._orchestrator.register(self.room.name)
        except OrchestratorError as exc:
            # Live captions still work; the recording path needs the registration, and the
            # orchestrator's reconciler cannot know the room without it: say so loudly.
            log.error("room registration failed: %s", exc, extra={"room": self.room.name})
        self.room.on("track_subscribed", self._on_track_subscribed)
        self.room.on("disconnected", self.on_disconnected)
        self.room.on("data_received", self._on_data)
        for participant in self.room.remote_participants.values():
            for publication in participant.track_publications.values():
                track = publication.track
                if isinstance(track, rtc.RemoteAudioTrack):
                    self._transcribe(track, participant)
        await self.room.local_participant.publish_track(
            self._voice.track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        self._tts.start()

    def on_disconnected(self, reason: rtc.DisconnectReason.ValueType) -> None:
        """Note why the room connection ended (``disconnected`` event)."""
        self.room_ended = reason in ROOM_ENDED
        log.info(
            "room connection ended: %s",
            rtc.DisconnectReason.Name(reason),
            extra={"room": self.room.name},
        )

    async def finish(self) -> None:
        """Let every track's stream deliver its last final; finalize if the room ended.

        A job also shuts down when the worker restarts or loses its connection while the
        meeting goes on: finalizing then would complete the meeting early and leave later
        tracks out of its summary. When LiveKit did end the room, its ``room_finished``
        webhook finalizes too; finalizing here only makes it sooner.
        """
        await self._tts.aclose()
        if self._tasks:
            await asyncio.gather(*self._tasks.values(), return_exceptions=True)
        if self.room_ended:
            try:
                await self._orchestrator.finalize(self.room.name)
            except OrchestratorError as exc:
                log.error("room finalize failed: %s", exc, extra={"room": self.room.name})
        else:
            log.info(
                "job ended while the room goes on: not finalizing",
                extra={"room": self.room.name},
            )
        await self._orchestrator.aclose()
        await self._synth.aclose()
        await self._voice.aclose()

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if isinstance(track, rtc.RemoteAudioTrack):
            self._transcribe(track, participant)

    def _transcribe(self, track: rtc.RemoteAudioTrack, participant: rtc.RemoteParticipant) -> None:
        if track.sid in self._tasks:
            return
        transcriber = TrackTranscriber(
            self._stt,
            self._captions,
            room=self.room.name,
            participant=participant.identity,
            track_sid=track.sid,
            language=track_language(
                participant.attributes, self.room.metadata, self._settings.agent_language
            ),
        )
        # The stream ends when the track is unsubscribed or the participant leaves; the
        # transcriber then ends its input and waits for the last final.
        frames = rtc.AudioStream(track, sample_rate=16000, num_channels=1)
        self._load.add(1)
        task = asyncio.create_task(transcriber.run(frames), name=f"transcribe-{track.sid}")
        self._tasks[track.sid] = task
        task.add_done_callback(lambda _: self._load.add(-1))

    def _on_data(self, packet: rtc.DataPacket) -> None:
        if packet.topic == TTS_CONTROL_TOPIC:
            task = asyncio.create_task(self._tts.handle(packet.data))
            self._control_tasks.add(task)
            task.add_done_callback(self._control_tasks.discard)

    async def _send_status(self, status: TtsStatus) -> None:
        await self.room.local_participant.publish_data(
            status.model_dump_json(exclude_none=True), topic=TTS_STATUS_TOPIC, reliable=True
        )


def build_server(settings: AgentSettings) -> AgentServer:
    """The agent server: thread jobs sharing one stream count as the load."""
    load = StreamLoad(settings.agent_max_streams)
    server = AgentServer(
        job_executor_type=JobExecutorType.THREAD,
        load_fnc=load.load,
        load_threshold=0.9,
    )

    @server.rtc_session()
    async def entrypoint(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
        session = RoomSession(ctx.room, settings, load)
        ctx.add_shutdown_callback(session.finish)
        await session.start()

    return server
