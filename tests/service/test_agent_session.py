"""The agent's room session, without a LiveKit server.

A small room stand-in plays LiveKit's part: it holds the remote participants and emits
``track_subscribed``, ``track_unsubscribed``, ``data_received`` and ``disconnected``; its
local participant keeps what the agent publishes (captions as text streams, data packets,
its voice track). A track's audio goes through a real ``rtc.AudioSource`` and
``rtc.LocalAudioTrack`` into an ``rtc.AudioStream`` (:func:`devkit.local_tracks.track_frames`
at real-time pace; faster where the test is about something else). The STT service runs for
real (libvosk, synthetic tone-word model), and so do the orchestrator and a TTS stand-in.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, cast

import numpy as np
import numpy.typing as npt
import pytest
from livekit import rtc
from pydantic import SecretStr

from agent.captions import ATTRIBUTE_STORED_SEGMENT_ID
from agent.session import TTS_ATTRIBUTE, RoomSession
from agent.settings import AgentSettings
from agent.tts import TTS_CONTROL_TOPIC, TTS_STATUS_TOPIC
from agent.worker import StreamLoad
from devkit.local_tracks import track_frames
from devkit.tones import synthesize
from roomscribe.models import RoomStatus, TranscriptQuery, TranscriptSource
from roomscribe.serving import running
from tests.fakes.tts import FakeTts
from tests.world import INTERNAL, World, tone

pytestmark = pytest.mark.service

ROOM = "standup"


@dataclass
class StandInTrack:
    """A subscribed audio track: its sid, and the audio its participant will say."""

    sid: str
    pcm: npt.NDArray[np.int16]
    speed: float = 1.0
    kind: int = rtc.TrackKind.KIND_AUDIO
    #: Set once its audio has all been played out (the stream ended).
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    async def frames(self) -> AsyncIterator[rtc.AudioFrame]:
        async for frame in track_frames(self.pcm, speed=self.speed):
            yield frame
        self.ended.set()


@dataclass
class StandInPublication:
    sid: str
    track: StandInTrack | None


@dataclass
class StandInParticipant:
    identity: str
    attributes: dict[str, str] = field(default_factory=dict)
    track_publications: dict[str, StandInPublication] = field(default_factory=dict)


@dataclass
class Caption:
    sender: str
    attributes: dict[str, str]
    text: str = ""


class CaptionWriter:
    def __init__(self, caption: Caption, into: list[Caption]) -> None:
        self._caption = caption
        self._into = into

    async def write(self, text: str) -> None:
        self._caption.text += text

    async def aclose(self) -> None:
        self._into.append(self._caption)


class StandInLocalParticipant:
    """The agent's side: what it publishes is kept."""

    def __init__(self) -> None:
        self.identity = "roomscribe-agent"
        self.tracks: list[Any] = []
        self.captions: list[Caption] = []
        #: (the JSON published on tts_status, its destination identities).
        self.statuses: list[tuple[dict[str, Any], list[str]]] = []

    async def publish_track(self, track: Any, options: Any) -> None:
        self.tracks.append(track)

    async def publish_data(
        self,
        payload: bytes | str,
        *,
        reliable: bool = True,
        destination_identities: list[str] | None = None,
        topic: str = "",
    ) -> None:
        assert topic == TTS_STATUS_TOPIC and reliable
        self.statuses.append((json.loads(payload), list(destination_identities or [])))

    async def stream_text(
        self, *, topic: str, attributes: dict[str, str], sender_identity: str
    ) -> CaptionWriter:
        assert topic == "lk.transcription"
        return CaptionWriter(Caption(sender_identity, dict(attributes)), self.captions)

    def status_of(self, request_id: str) -> list[str]:
        return [s["state"] for s, _ in self.statuses if s.get("id") == request_id]


class StandInRoom:
    """What a session uses of an ``rtc.Room``, and LiveKit's events to drive it."""

    def __init__(self, name: str = ROOM) -> None:
        self.name = name
        self.metadata = ""
        self.remote_participants: dict[str, StandInParticipant] = {}
        self.local_participant = StandInLocalParticipant()
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        self._handlers.setdefault(event, []).append(handler)

    def isconnected(self) -> bool:
        return True

    def emit(self, event: str, *args: Any) -> None:
        for handler in self._handlers.get(event, []):
            handler(*args)

    def join(self, identity: str, **attributes: str) -> StandInParticipant:
        participant = StandInParticipant(identity, dict(attributes))
        self.remote_participants[identity] = participant
        return participant

    def subscribe(self, participant: StandInParticipant, track: StandInTrack) -> None:
        publication = StandInPublication(track.sid, track)
        participant.track_publications[track.sid] = publication
        self.emit("track_subscribed", track, publication, participant)

    def unsubscribe(self, participant: StandInParticipant, track: StandInTrack) -> None:
        publication = participant.track_publications[track.sid]
        publication.track = None
        self.emit("track_unsubscribed", track, publication, participant)

    def send(self, sender: StandInParticipant | None, message: dict[str, Any]) -> None:
        packet = rtc.DataPacket(
            data=json.dumps(message).encode(),
            kind=rtc.DataPacketKind.KIND_RELIABLE,
            participant=cast(rtc.RemoteParticipant | None, sender),
            topic=TTS_CONTROL_TOPIC,
        )
        self.emit("data_received", packet)


@dataclass
class Setup:
    room: StandInRoom
    session: RoomSession
    load: StreamLoad
    tts: FakeTts
    stt: Any
    #: Whether leaving the block finishes the session (a test that finished it says no).
    finish_on_exit: bool = True


@pytest.fixture
def make_session(world: World, make_service: Callable[..., Any]) -> Callable[..., Any]:
    """``async with make_session(**settings) as setup``: a started session, finished after."""

    @asynccontextmanager
    async def started(**overrides: Any) -> AsyncIterator[Setup]:
        tts = FakeTts()
        # Without auth: the harness's STT service has another secret than the orchestrator.
        async with make_service(stt_auth=False) as svc, running(tts.app) as tts_url:
            settings = AgentSettings(
                secret=SecretStr(INTERNAL),
                orchestrator_url=world.url,
                stt_url=svc.url,
                tts_url=tts_url,
                **overrides,
            )
            room, load = StandInRoom(), StreamLoad(8)
            session = RoomSession(
                cast(rtc.Room, room),
                settings,
                load,
                frames_for=lambda track: cast(StandInTrack, track).frames(),
            )
            setup = Setup(room, session, load, tts, svc)
            yield setup
            if setup.finish_on_exit:
                await session.finish()

    return started


def finals(room: StandInRoom, sender: str | None = None) -> list[Caption]:
    return [
        c
        for c in room.local_participant.captions
        if c.attributes["lk.transcription_final"] == "true" and sender in (None, c.sender)
    ]


def words_of(captions: list[Caption]) -> list[str]:
    return [w for c in captions for w in c.text.split()]


async def until(check: Callable[[], bool], within_s: float = 20) -> None:
    async with asyncio.timeout(within_s):
        while not check():  # noqa: ASYNC110 - polling what the stand-in recorded
            await asyncio.sleep(0.02)


async def stored_words(setup: Setup) -> list[str]:
    await asyncio.sleep(0.3)  # the service's store writes are batched (flushed every 50 ms)
    page = await setup.stt.store.query_transcript(
        TranscriptQuery(room=ROOM, source=TranscriptSource.REALTIME)
    )
    return [w for s in page.segments for w in s.text.split()]


async def test_tracks_already_there_and_subscribed_later_become_captions(
    make_session: Callable[..., Any], world: World
) -> None:
    async with make_session() as setup:
        room, session = setup.room, setup.session
        alice = room.join("alice")
        alice.track_publications["TR_alice"] = StandInPublication(
            "TR_alice", StandInTrack("TR_alice", synthesize(["alpha", "bravo"]))
        )
        await session.start()
        assert (await world.store.get_room(ROOM)).status is RoomStatus.REGISTERED
        assert room.local_participant.tracks  # the agent's voice
        bob = room.join("bob")
        room.subscribe(bob, StandInTrack("TR_bob", synthesize(["kilo", "mike"])))
        assert sorted(session.transcribing) == ["TR_alice", "TR_bob"]
        await until(lambda: not session.transcribing)
        assert setup.load.load() == 0.0
        for who, words in (("alice", ["alpha", "bravo"]), ("bob", ["kilo", "mike"])):
            mine = finals(room, who)
            assert words_of(mine) == words
            for caption in mine:
                assert caption.attributes["lk.transcribed_track_id"] == f"TR_{who}"
                assert caption.attributes[ATTRIBUTE_STORED_SEGMENT_ID].startswith(f"TR_{who}")
        captions = room.local_participant.captions
        partials = [c for c in captions if c.attributes["lk.transcription_final"] == "false"]
        assert partials, "live partials are published too"
        assert sorted(await stored_words(setup)) == ["alpha", "bravo", "kilo", "mike"]


@pytest.mark.parametrize(
    "second_sid",
    [
        pytest.param("TR_a", id="same sid"),
        pytest.param("TR_a2", id="new sid"),
    ],
)
async def test_a_track_subscribed_again_is_transcribed_again(
    make_session: Callable[..., Any], second_sid: str
) -> None:
    async with make_session() as setup:
        room, session = setup.room, setup.session
        await session.start()
        alice = room.join("alice")
        first = StandInTrack("TR_a", synthesize(["alpha", "bravo"]), speed=3)
        room.subscribe(alice, first)
        await until(lambda: not session.transcribing)
        room.unsubscribe(alice, first)
        # Later in the track: its segments get other ids than the first subscription's.
        again = StandInTrack(second_sid, synthesize(["echo", "golf"], lead_s=1.5), speed=3)
        room.subscribe(alice, again)
        assert session.transcribing == [second_sid]
        await until(lambda: not session.transcribing)
        assert words_of(finals(room)) == ["alpha", "bravo", "echo", "golf"]
        assert sorted(await stored_words(setup)) == ["alpha", "bravo", "echo", "golf"]


async def test_a_track_subscribed_again_while_its_last_final_is_due_waits_for_it(
    make_session: Callable[..., Any],
) -> None:
    async with make_session() as setup:
        room, session = setup.room, setup.session
        await session.start()
        alice = room.join("alice")
        # No trailing silence: the last final comes only after the stream's input ends.
        first = StandInTrack("TR_a", synthesize(["alpha", "bravo"], tail_s=0.05), speed=3)
        room.subscribe(alice, first)
        await first.ended.wait()
        room.unsubscribe(alice, first)
        assert session.transcribing == ["TR_a"]  # its stream still waits for the last final
        # Its words start before where the first stream's audio ended (1.45 s) on a clock
        # restarted at 0: the track's clock goes on instead, so the service keeps them.
        again = StandInTrack("TR_a", synthesize(["echo", "golf"], lead_s=0.3), speed=3)
        room.subscribe(alice, again)  # the first stream is still waiting for its final
        assert session.transcribing == ["TR_a"]  # one stream per sid, the second queued
        await until(lambda: not session.transcribing)
        captions = room.local_participant.captions
        last_of_first = max(i for i, c in enumerate(captions) if "bravo" in c.text)
        first_of_second = min(i for i, c in enumerate(captions) if "echo" in c.text)
        assert last_of_first < first_of_second, "the second stream began after the first"
        assert words_of(finals(room)) == ["alpha", "bravo", "echo", "golf"]
        assert sorted(await stored_words(setup)) == ["alpha", "bravo", "echo", "golf"]


async def test_one_subscription_reported_twice_is_transcribed_once(
    make_session: Callable[..., Any],
) -> None:
    async with make_session() as setup:
        room, session = setup.room, setup.session
        alice = room.join("alice")
        track = StandInTrack("TR_a", synthesize(["alpha", "bravo"]), speed=3)
        alice.track_publications["TR_a"] = StandInPublication("TR_a", track)
        await session.start()
        room.emit("track_subscribed", track, alice.track_publications["TR_a"], alice)
        assert setup.load.load() == pytest.approx(1 / 8)
        await until(lambda: not session.transcribing)
        assert words_of(finals(room)) == ["alpha", "bravo"]
        assert await stored_words(setup) == ["alpha", "bravo"]


async def test_only_allowed_participants_make_the_agent_speak(
    make_session: Callable[..., Any],
) -> None:
    async with make_session(agent_tts_allow=" bob , ,erin") as setup:
        room, statuses = setup.room, setup.room.local_participant
        await setup.session.start()
        mallory = room.join("mallory")
        dave = room.join("dave", **{TTS_ATTRIBUTE: "yes"})
        bob = room.join("bob")
        carol = room.join("carol", **{TTS_ATTRIBUTE: "allow"})
        room.send(bob, {"type": "speak", "id": "b1", "text": "one two three four five six"})
        room.send(mallory, {"type": "speak", "id": "m1", "text": "mallory speaks"})
        room.send(dave, {"type": "speak", "id": "d1", "text": "dave speaks"})
        room.send(mallory, {"type": "stop"})  # barge-in is driving TTS too
        room.send(carol, {"type": "speak", "id": "c1", "text": "carol speaks"})
        room.send(None, {"type": "speak", "id": "s1", "text": "the server speaks"})
        await until(lambda: statuses.status_of("s1") == ["started", "finished"])
        assert statuses.status_of("b1") == ["started", "finished"]  # mallory's stop ignored
        assert statuses.status_of("c1") == ["started", "finished"]
        refused = [(s, to) for s, to in statuses.statuses if s["state"] == "error"]
        assert refused == [
            ({"id": "m1", "state": "error", "error": "not allowed"}, ["mallory"]),
            ({"id": "d1", "state": "error", "error": "not allowed"}, ["dave"]),
            ({"state": "error", "error": "not allowed"}, ["mallory"]),  # a stop has no id
        ]
        assert setup.tts.requests == [
            "one two three four five six",
            "carol speaks",
            "the server speaks",
        ]


async def _meeting(world: World) -> None:
    await world.lk.create_room(ROOM)
    await world.lk.join(ROOM, "alice")
    await world.lk.publish_audio(ROOM, "alice", tone(3.0))
    await world.settle()


@pytest.mark.parametrize(
    ("reason", "status"),
    [
        (rtc.DisconnectReason.ROOM_DELETED, RoomStatus.FINAL_ROOM),
        (rtc.DisconnectReason.CLIENT_INITIATED, RoomStatus.ACTIVE),  # a worker restart
    ],
)
async def test_the_room_is_finalized_after_the_last_final_only_when_it_ended(
    make_session: Callable[..., Any], world: World, reason: Any, status: RoomStatus
) -> None:
    await _meeting(world)
    async with make_session() as setup:
        room, session = setup.room, setup.session
        await session.start()
        track = StandInTrack("TR_a", synthesize(["alpha", "bravo"], tail_s=0.05), speed=3)
        room.subscribe(room.join("alice"), track)
        await track.ended.wait()
        room.emit("disconnected", reason)
        await session.finish()  # waits for the stream's last final
        assert words_of(finals(room)) == ["alpha", "bravo"]
        assert (await world.store.get_room(ROOM)).status is status


async def test_every_step_of_finish_runs_when_one_fails(
    make_session: Callable[..., Any], world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    await _meeting(world)
    closed: list[str] = []
    async with make_session() as setup:
        session = setup.session
        await session.start()

        async def broken() -> None:
            closed.append("tts")
            raise RuntimeError("injected: the TTS manager would not stop")

        voice_close = session._voice.aclose

        async def voice() -> None:
            closed.append("voice")
            await voice_close()

        monkeypatch.setattr(session._tts, "aclose", broken)
        monkeypatch.setattr(session._voice, "aclose", voice)
        session.on_disconnected(rtc.DisconnectReason.ROOM_CLOSED)
        await session.finish()
        assert closed == ["tts", "voice"]
        assert (await world.store.get_room(ROOM)).status is RoomStatus.FINAL_ROOM
        setup.finish_on_exit = False
