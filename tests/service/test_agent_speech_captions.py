"""What the agent says, captioned as its own: timed to its voice, cut where a stop cuts it.

The agent speaks through a stand-in TTS service (tests/fakes/tts.py: 0.1 s a word, word times
exact) onto a real voice track; captions are compared with when the track actually plays.
test_agent_tts_real.py does the same on the real service.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any, cast

import pytest
from livekit import rtc
from pydantic import SecretStr

from agent.session import RoomSession
from agent.settings import AgentSettings
from agent.tts import TTS_CONTROL_TOPIC
from agent.worker import StreamLoad
from roomscribe.serving import running
from tests.fakes.tts import FakeTts, expected_samples
from tests.speech_harness import AGENT, CaptionLog, make_speaker

pytestmark = pytest.mark.service


async def test_captions_follow_the_words_as_they_are_heard() -> None:
    log = CaptionLog()
    async with make_speaker(captions=log) as speaker:
        await speaker.send({"type": "speak", "id": "c", "text": "one two three. four five."})
        await speaker.statuses.wait_for("c", "finished")
        heard_from = speaker.recorder.first_sound()
        finished_at = time.monotonic()
    assert [(c.caption_id, c.text, c.final) for c in log.captions] == [
        ("c-0", "one", False),
        ("c-0", "one two", False),
        ("c-0", "one two three", False),
        ("c-0", "one two three.", True),
        ("c-1", "four", False),
        ("c-1", "four five", False),
        ("c-1", "four five.", True),
    ]
    assert {(c.participant, c.track_sid) for c in log.captions} == {AGENT}
    # Each word is captioned as the track plays it: 0.1 s a word, the sentences back to back.
    assert heard_from is not None
    due = [0.0, 0.1, 0.2, 0.3, 0.3, 0.4, 0.5]
    late = [at - heard_from - offset for (at, _), offset in zip(log.items, due, strict=True)]
    # Held to each other, not to the wall clock: the reader that says when the track was first
    # heard runs late under load by the same amount for every word. Captions sent at hand-off
    # instead of playout would spread by the 0.5 s the words take; a loaded 2-core machine
    # spreads playout-timed ones by up to ~60 ms (each caption waits for the event loop).
    assert max(late) - min(late) <= 0.15, late
    assert all(abs(lag) <= 0.25 for lag in late), late
    # "finished" once the audio was heard, not when it was handed to the source.
    assert finished_at - heard_from >= 0.5 - 0.03
    first, last = log.captions[0], log.captions[-1]
    assert last.end_s - first.start_s == pytest.approx(0.5, abs=0.03)  # track time


async def test_a_stop_ends_the_caption_with_the_words_heard() -> None:
    log = CaptionLog()
    text = " ".join(f"w{i}" for i in range(30)) + ". Never heard."
    async with make_speaker(captions=log) as speaker:
        await speaker.send({"type": "speak", "id": "s", "text": text})
        await speaker.recorder.wait_for_sound(0.45, within_s=10)
        await speaker.send({"type": "stop"})
        await speaker.statuses.wait_for("s", "stopped", within_s=3)
    finals = log.finals()
    assert [c.caption_id for c in finals] == ["s-0"]
    heard = finals[0].text.split()
    assert heard == [f"w{i}" for i in range(len(heard))]  # what the room heard, in order
    assert 3 <= len(heard) <= 7, heard  # 0.45 s heard at 0.1 s a word
    assert finals[0] is log.captions[-1]  # nothing after the stop
    assert all(c.caption_id == "s-0" for c in log.captions)  # the prefetched one: no caption


async def test_a_synthesis_failure_mid_speech_is_an_error_status() -> None:
    fake = FakeTts()
    fake.fail_on = "boom"
    log = CaptionLog()
    async with make_speaker(fake, captions=log) as speaker:
        await speaker.send({"type": "speak", "id": "f", "text": "one two. boom three."})
        await speaker.statuses.wait_for("f", "error")
        assert speaker.statuses.of("f") == ["started", "error"]
        error = speaker.statuses.items[-1].error or ""
        assert error.startswith("synthesis failed: synthesis_failed"), error
        # The sentence before it was spoken and captioned to its end.
        assert speaker.output.played_samples == expected_samples("one two.")
        assert [c.text for c in log.finals()] == ["one two."]
        await speaker.send({"type": "speak", "id": "ok", "text": "fine"})
        await speaker.statuses.wait_for("ok", "finished")


class _TextWriter:
    def __init__(self, parts: list[str]) -> None:
        self._parts = parts

    async def write(self, text: str) -> None:
        self._parts.append(text)

    async def aclose(self) -> None:
        pass


class _LocalParticipant:
    """The agent's side of a room: its voice track, its data and its text streams."""

    def __init__(self) -> None:
        self.identity = "roomscribe-agent"
        #: (sender identity, topic and attributes, the text written).
        self.streams: list[tuple[str, dict[str, str], list[str]]] = []
        self.statuses: list[dict[str, Any]] = []

    async def publish_track(self, track: Any, options: Any) -> None:
        track._info.sid = "TR_voice"  # as LiveKit names a track once it is published

    async def publish_data(self, payload: str, **_: Any) -> None:
        self.statuses.append(json.loads(payload))

    async def stream_text(
        self, *, topic: str, attributes: dict[str, str], sender_identity: str
    ) -> _TextWriter:
        parts: list[str] = []
        self.streams.append((sender_identity, {"topic": topic, **attributes}, parts))
        return _TextWriter(parts)


class _Room:
    """What a room session uses of an ``rtc.Room`` when nobody else is in it."""

    def __init__(self) -> None:
        self.name = "standup"
        self.metadata = ""
        self.remote_participants: dict[str, Any] = {}
        self.local_participant = _LocalParticipant()
        self.handlers: dict[str, Callable[..., Any]] = {}

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        self.handlers[event] = handler

    def isconnected(self) -> bool:
        return True


async def test_the_room_session_captions_what_the_agent_says() -> None:
    fake = FakeTts()
    room = _Room()
    async with running(fake.app) as url:
        settings = AgentSettings(
            secret=SecretStr("x" * 40),
            orchestrator_url="http://127.0.0.1:9",  # unreachable: the session goes on without
            stt_url="http://127.0.0.1:9",
            tts_url=url,
        )
        session = RoomSession(cast(rtc.Room, room), settings, StreamLoad(1))
        await session.start()
        packet = rtc.DataPacket(
            data=json.dumps({"type": "speak", "id": "hi", "text": "hello there."}).encode(),
            kind=rtc.DataPacketKind.KIND_RELIABLE,
            participant=None,  # a server SDK: allowed
            topic=TTS_CONTROL_TOPIC,
        )
        room.handlers["data_received"](packet)
        finished = {"id": "hi", "state": "finished"}
        async with asyncio.timeout(10):
            while finished not in room.local_participant.statuses:  # noqa: ASYNC110
                await asyncio.sleep(0.02)
        await session.finish()
    captions = [
        (who, attrs["topic"], attrs["lk.transcribed_track_id"], attrs["lk.segment_id"],
         attrs["lk.transcription_final"], "".join(parts))
        for who, attrs, parts in room.local_participant.streams
    ]  # fmt: skip
    # On the agent's own identity and voice track, word by word, then the sentence.
    assert captions == [
        ("roomscribe-agent", "lk.transcription", "TR_voice", "hi-0", "false", "hello"),
        ("roomscribe-agent", "lk.transcription", "TR_voice", "hi-0", "false", "hello there"),
        ("roomscribe-agent", "lk.transcription", "TR_voice", "hi-0", "true", "hello there."),
    ]
