"""The TTS manager on the ``tts_control`` topic, against a stand-in TTS service over HTTP.

The stand-in speaks the service's protocol and fails as it fails (tests/fakes/tts.py; held to
the real service's answers in test_agent_tts_real.py, which runs these scenarios on the real
one). Playback goes to a real ``rtc.AudioSource`` (the agent's voice track), listened to
through ``rtc.AudioStream`` as a room would (tests/speech_harness.py): that is where a
``stop`` is timed to silence. A real track transcriber runs beside it to show that bad
control messages never disturb transcription. Gaps between sentences are measured on the
voice track's own timeline: how much audio the source still had queued when the next
sentence's first audio reached it.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import pytest
from starlette.requests import Request
from starlette.responses import Response

from agent.captions import Caption
from agent.stt_plugin import RoomscribeSTT
from agent.transcriber import TrackTranscriber
from agent.tts import (
    HttpSynthesizer,
    SpeechPiece,
    Synthesizer,
    TrackAudioOutput,
    TtsManager,
    split_sentences,
)
from agent.voice_output import FRAME_MS
from devkit.local_tracks import track_frames
from devkit.tones import synthesize
from roomscribe.auth import issue_internal_token
from tests.fakes.tts import RATE, FakeTts, expected_samples
from tests.speech_harness import STOP_WITHIN_S, Speaker, Statuses, make_speaker
from tests.stt_harness import SECRET

pytestmark = pytest.mark.service


class SlowTts(FakeTts):
    """The stand-in TTS service, answering each sentence ``latency_s`` late.

    ``on_request`` is called with each text as its request arrives (before the wait).
    """

    def __init__(self, latency_s: float, on_request: Callable[[str], None]) -> None:
        super().__init__()
        self.latency_s = latency_s
        self._on_request = on_request

    async def _synthesize(self, request: Request) -> Response:
        self._on_request(str((await request.json()).get("text", "")))
        await asyncio.sleep(self.latency_s)
        return await super()._synthesize(request)


class TimedOutput(TrackAudioOutput):
    """The voice track, noting before each chunk how much audio the source still held."""

    def __init__(self) -> None:
        super().__init__(RATE)
        #: (samples queued so far, seconds of audio still queued in the source), per chunk.
        self.timeline: list[tuple[int, float]] = []

    async def play(self, pcm: bytes, sample_rate: int) -> None:
        self.timeline.append((self.played_samples, self.source.queued_duration))
        await super().play(pcm, sample_rate)

    def queued_at(self, sample: int) -> float:
        """Audio still queued when the chunk starting at ``sample`` was handed over."""
        return next(queued for at, queued in self.timeline if at == sample)


@dataclass
class Fetches:
    """A synthesizer that notes which sentences were synthesized to the end or cut off."""

    inner: Synthesizer
    completed: list[str]
    cancelled: list[str]

    async def synthesize(
        self, text: str, *, voice: str | None, speed: float | None
    ) -> AsyncIterator[SpeechPiece]:
        done = False
        try:
            async for chunk in self.inner.synthesize(text, voice=voice, speed=speed):
                yield chunk
            done = True
        finally:
            (self.completed if done else self.cancelled).append(text)


@pytest.fixture
async def speaker() -> AsyncIterator[Speaker]:
    async with make_speaker() as running_speaker:
        yield running_speaker


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
    finished_at = time.monotonic()
    assert speaker.statuses.of("s1") == ["started", "finished"]
    assert speaker.output.played_samples == expected_samples(text)
    # "finished" once the room has heard it all, not when the source took the last of it.
    heard_from = speaker.recorder.first_sound()
    assert heard_from is not None
    assert finished_at - heard_from >= expected_samples(text) / RATE - 0.03


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
        ({"type": "speak", "id": "e5", "text": "hi", "voice": "nobody"}, "e5", "unknown_voice"),
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
    # One error per bad message; good ones beyond the queue's bound are refused as full.
    errors = [s.error or "" for s in speaker.statuses.items if s.state == "error"]
    assert sum("queue full" not in e for e in errors) == 30


def words(n: int, end: str = ".") -> str:
    return " ".join(["w"] * n) + end


async def test_next_sentence_is_synthesized_while_one_plays() -> None:
    # 600 ms per sentence is more than the voice track buffers (400 ms): fetched only after
    # the previous sentence, every sentence would start after a silence.
    sentences = [words(15), words(15), words(15)]
    output = TimedOutput()
    asked_at: list[tuple[str, int]] = []
    fake = SlowTts(0.6, lambda text: asked_at.append((text, output.played_samples)))
    async with make_speaker(fake, output=output) as speaker:
        await speaker.send({"type": "speak", "id": "p", "text": " ".join(sentences)})
        await speaker.statuses.wait_for("p", "finished", within_s=30)
    per_sentence = expected_samples(sentences[0])
    assert [text for text, _ in asked_at] == sentences
    assert output.played_samples == 3 * per_sentence
    for n in (1, 2):
        previous_start, previous_end = (n - 1) * per_sentence, n * per_sentence
        # Sentence n was asked for once sentence n-1 had started playing, not after it.
        assert previous_start <= asked_at[n][1] < previous_end
        # Its first audio reached the track while the previous one still played: no gap.
        assert output.queued_at(previous_end) > 0.1


async def test_stop_cancels_the_prefetched_sentence() -> None:
    output = TimedOutput()
    log: Fetches = Fetches(HttpSynthesizer("http://unused", None), [], [])

    def wrap(synth: Synthesizer) -> Synthesizer:
        log.inner = synth
        return log

    fake = SlowTts(1.0, lambda _: None)
    async with make_speaker(fake, output=output, wrap=wrap) as speaker:
        await speaker.send({"type": "speak", "id": "s", "text": words(30) + " " + words(5)})
        async with asyncio.timeout(10):
            while output.played_samples == 0:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # the second sentence is asked for, not yet answered
        await speaker.send({"type": "stop"})
        await speaker.statuses.wait_for("s", "stopped", within_s=3)
        assert words(5) in log.cancelled
        assert words(5) not in log.completed
        assert fake.requests == [words(30)]  # the second one never got past the latency
        await speaker.send({"type": "speak", "id": "again", "text": "hello"})
        await speaker.statuses.wait_for("again", "finished", within_s=10)
    assert output.played_samples < expected_samples(words(30)) + expected_samples("hello")


async def test_a_speak_beyond_the_queue_bound_is_refused() -> None:
    async with make_speaker(max_queued=2) as speaker:
        await speaker.send({"type": "speak", "id": "long", "text": words(60)})
        await speaker.statuses.wait_for("long", "started")
        for i in range(3):
            await speaker.send({"type": "speak", "id": f"q{i}", "text": f"queued {i}"})
        await speaker.statuses.wait_for("q2", "error")
        assert "queue full" in (speaker.statuses.items[-1].error or "")
        await speaker.send({"type": "stop"})
        await speaker.statuses.wait_for("long", "stopped", within_s=3)
        assert speaker.statuses.of("q0") == ["stopped"]
        assert speaker.statuses.of("q1") == ["stopped"]
        assert speaker.statuses.of("q2") == ["error"]
        # Room again once the queue drained.
        await speaker.send({"type": "speak", "id": "after", "text": "hello"})
        await speaker.statuses.wait_for("after", "finished")


async def test_stop_silences_the_track_within_a_frame() -> None:
    async with make_speaker() as speaker:
        await speaker.send({"type": "speak", "id": "long", "text": words(60)})
        await speaker.recorder.wait_for_sound(0.5, within_s=10)
        stop_at = time.monotonic()
        await speaker.send({"type": "stop"})
        await speaker.statuses.wait_for("long", "stopped", within_s=3)
        await asyncio.sleep(0.3)  # long enough to hear the 400 ms the source had queued
        silent_at = speaker.recorder.silent_from(stop_at)
        leaked = speaker.recorder.sound_after(stop_at)
    assert silent_at is not None
    print(f"stop -> silence {1000 * (silent_at - stop_at):.1f} ms, {1000 * leaked:.1f} ms leaked")
    assert silent_at - stop_at <= STOP_WITHIN_S
    assert leaked <= STOP_WITHIN_S
    assert leaked < 2 * FRAME_MS / 1000 + 0.010  # at most the frame being handed over


def _refusing(change: Callable[[FakeTts], None]) -> FakeTts:
    fake = FakeTts()
    change(fake)
    return fake


@pytest.mark.parametrize(
    ("fake", "message", "problem"),
    [
        (_refusing(lambda f: setattr(f, "busy", True)), {}, "HTTP 429: busy"),
        (_refusing(lambda f: setattr(f, "secret", "x" * 40)), {}, "HTTP 401: unauthorized"),
        (_refusing(lambda f: setattr(f, "max_chars", 5)), {}, "HTTP 413: text_too_long"),
        (FakeTts(), {"speed": 0.5, "voice": "bf_emma"}, "HTTP 400: unknown_voice"),
    ],
    ids=["busy", "unauthorized", "too-long", "unknown-voice"],
)
async def test_service_refusals_are_error_statuses(
    fake: FakeTts, message: dict[str, Any], problem: str
) -> None:
    async with make_speaker(fake) as speaker:
        await speaker.send({"type": "speak", "id": "r", "text": "hello there", **message})
        await speaker.statuses.wait_for("r", "error")
        assert speaker.statuses.of("r") == ["started", "error"]
        error = speaker.statuses.items[-1].error or ""
        assert error.startswith(f"TTS service answered {problem}"), error
        if fake.busy:
            assert error.endswith("(retry after 1 s)")
        assert speaker.output.played_samples == 0
