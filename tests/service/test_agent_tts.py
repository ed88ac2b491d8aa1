"""The TTS manager on the ``tts_control`` topic, against a stand-in TTS service over HTTP.

Playback goes to a real ``rtc.AudioSource`` (the agent's voice track); a real track
transcriber runs beside it to show that bad control messages never disturb transcription.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from agent.captions import Caption
from agent.stt_plugin import RoomscribeSTT
from agent.transcriber import TrackTranscriber
from agent.tts import HttpSynthesizer, TrackAudioOutput, TtsManager, TtsStatus, split_sentences
from devkit.local_tracks import track_frames
from devkit.tones import synthesize
from roomscribe.auth import issue_internal_token
from roomscribe.serving import running
from tests.fakes.tts import RATE, FakeTts, expected_samples
from tests.stt_harness import SECRET

pytestmark = pytest.mark.service


class Statuses:
    def __init__(self) -> None:
        self.items: list[TtsStatus] = []
        self.changed = asyncio.Event()

    async def send(self, status: TtsStatus) -> None:
        self.items.append(status)
        self.changed.set()

    async def wait_for(self, request_id: str | None, state: str, within_s: float = 10) -> None:
        async with asyncio.timeout(within_s):
            while not any(s.id == request_id and s.state == state for s in self.items):
                self.changed.clear()
                await self.changed.wait()

    def of(self, request_id: str | None) -> list[str]:
        return [s.state for s in self.items if s.id == request_id]


class Speaker:
    def __init__(self, manager: TtsManager, output: TrackAudioOutput, statuses: Statuses) -> None:
        self.manager = manager
        self.output = output
        self.statuses = statuses

    async def send(self, message: Any) -> None:
        payload = message if isinstance(message, (str, bytes)) else json.dumps(message)
        await self.manager.handle(payload)


@pytest.fixture
async def speaker() -> AsyncIterator[Speaker]:
    fake = FakeTts()
    async with running(fake.app) as url:
        synth = HttpSynthesizer(url, secret=None)
        output = TrackAudioOutput(RATE)
        statuses = Statuses()
        manager = TtsManager(synth, output, statuses.send, max_chars=200)
        manager.start()
        yield Speaker(manager, output, statuses)
        await manager.aclose()
        await synth.aclose()
        await output.aclose()


def test_sentences_are_split_for_streaming() -> None:
    assert split_sentences("Hello there. How are you? Fine!  ") == [
        "Hello there.",
        "How are you?",
        "Fine!",
    ]


async def test_speak_plays_every_sentence_and_reports(speaker: Speaker) -> None:
    text = "One two three. Four five."
    await speaker.send({"type": "speak", "id": "s1", "text": text})
    await speaker.statuses.wait_for("s1", "finished")
    assert speaker.statuses.of("s1") == ["started", "finished"]
    assert speaker.output.played_samples == expected_samples(text)


async def test_stop_cuts_playback_at_once(speaker: Speaker) -> None:
    text = " ".join(["w"] * 60)  # 6 s of speech
    await speaker.send({"type": "speak", "id": "long", "text": text})
    await speaker.send({"type": "speak", "id": "next", "text": "queued behind"})
    await speaker.statuses.wait_for("long", "started")
    await asyncio.sleep(0.5)
    await speaker.send({"type": "stop"})
    await speaker.statuses.wait_for("long", "stopped", within_s=3)
    assert speaker.statuses.of("long") == ["started", "stopped"]
    assert speaker.statuses.of("next") == ["stopped"]  # barge-in drops the queue too
    assert speaker.output.played_samples < expected_samples(text) // 2
    # And the agent can speak again afterwards.
    await speaker.send({"type": "speak", "id": "again", "text": "hello"})
    await speaker.statuses.wait_for("again", "finished")


async def test_stop_by_id_leaves_the_others(speaker: Speaker) -> None:
    await speaker.send({"type": "speak", "id": "a", "text": "one two three four five"})
    await speaker.send({"type": "speak", "id": "b", "text": "six"})
    await speaker.send({"type": "stop", "id": "b"})
    await speaker.statuses.wait_for("a", "finished")
    assert speaker.statuses.of("b") == ["stopped"]


@pytest.mark.parametrize(
    ("message", "request_id", "problem"),
    [
        ("{not json", None, "json"),
        ({"type": "dance", "id": "d1"}, "d1", "type"),
        ({"type": "speak", "text": "no id"}, None, "id"),
        ({"type": "speak", "id": "e1", "text": ""}, "e1", "text"),
        ({"type": "speak", "id": "e2", "text": "x" * 201}, "e2", "200 characters"),
        ({"type": "speak", "id": "e3", "text": "hi", "speed": 9}, "e3", "speed"),
        ({"type": "speak", "id": "e4", "text": "hi", "extra": 1}, "e4", "extra"),
        ("x" * 20_000, None, "bytes"),
        ({"type": "speak", "id": "e5", "text": "refuse"}, "e5", "422"),
    ],
)
async def test_bad_messages_get_an_error_status(
    speaker: Speaker, message: Any, request_id: str | None, problem: str
) -> None:
    await speaker.send(message)
    await speaker.statuses.wait_for(request_id, "error")
    error = next(s.error for s in speaker.statuses.items if s.state == "error")
    assert error and problem in error.lower()
    await speaker.send({"type": "speak", "id": "ok", "text": "still fine"})
    await speaker.statuses.wait_for("ok", "finished")


async def test_tts_service_down_is_an_error_status() -> None:
    output = TrackAudioOutput(RATE)
    statuses = Statuses()
    synth = HttpSynthesizer("http://127.0.0.1:9", secret=None)
    manager = TtsManager(synth, output, statuses.send)
    manager.start()
    await manager.handle(json.dumps({"type": "speak", "id": "x", "text": "hello"}))
    await statuses.wait_for("x", "error")
    assert "unreachable" in (statuses.items[-1].error or "")
    await manager.aclose()
    await synth.aclose()
    await output.aclose()


async def test_bad_control_messages_do_not_disturb_transcription(
    speaker: Speaker, make_service: Callable[..., Any]
) -> None:
    captions: list[Caption] = []

    class Sink:
        async def publish(self, caption: Caption) -> None:
            captions.append(caption)

    async with make_service() as svc:
        stt = RoomscribeSTT(
            url=svc.url,
            token=lambda: issue_internal_token(SECRET, audience="stt", subject="agent"),
            room="standup",
        )
        tt = TrackTranscriber(stt, Sink(), room="standup", participant="alice", track_sid="TR_a")
        words = ["alpha", "bravo", "charlie"]
        transcribing = asyncio.create_task(tt.run(track_frames(synthesize(words))))
        for i in range(30):
            await speaker.send("{broken" if i % 3 == 0 else {"type": "speak", "id": f"b{i}"})
            await speaker.send({"type": "speak", "id": f"s{i}", "text": "hi there"})
            await asyncio.sleep(0.05)
        await transcribing
    assert [w for c in captions if c.final for w in c.text.split()] == words
    assert tt.result.error is None
    assert sum(s.state == "error" for s in speaker.statuses.items) == 30
