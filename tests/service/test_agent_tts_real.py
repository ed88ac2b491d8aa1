"""The agent's speech through the real TTS service: kokoro on a random-weight Kokoro-82M.

The same scenarios as test_agent_tts.py (speak, prefetch, stop mid-sentence, captions),
with ``create_app`` serving the session's engine (conftest.py) over loopback HTTP, auth on,
and the agent's own client. Kokoro's word times are the model's, so they are read from the
engine rather than assumed. Then the stand-in of test_agent_tts.py is held to the real
service's answers, request for request, so what the agent is tested against there is
what it meets here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("kokoro", reason="kokoro is not installed (pip install -e '.[tts]')")

from agent.tts import HttpSynthesizer, TrackAudioOutput, TtsManager, VoiceCaptions
from roomscribe.serving import running
from tests.fakes.tts import FakeTts
from tests.speech_harness import AGENT, STOP_WITHIN_S, CaptionLog, Statuses
from tests.tts_harness import RATE, SECRET, VOICES, gate, settings, token
from tts_service.app import create_app
from tts_service.engine import KokoroEngine

pytestmark = pytest.mark.service

#: About 1.5 s of audio at one frame per phoneme: long enough to stop in the middle of.
LONG = "The quarterly review starts at nine, right after the stand-up meeting."
SHORT = "Please bring the figures."


class EngineOutput(TrackAudioOutput):
    """The voice track, noting how many sentence jobs the engine had started after each piece."""

    def __init__(self, engine: KokoroEngine) -> None:
        super().__init__(RATE)
        self._engine = engine
        self.base = engine.stats.started
        self.started_after_piece: list[int] = []

    async def play(self, pcm: bytes, sample_rate: int) -> None:
        await super().play(pcm, sample_rate)
        self.started_after_piece.append(self._engine.stats.started - self.base)


class Agent:
    def __init__(
        self, manager: TtsManager, output: TrackAudioOutput, statuses: Statuses, url: str
    ) -> None:
        self.manager = manager
        self.output = output
        self.statuses = statuses
        self.url = url

    async def send(self, message: dict[str, Any]) -> None:
        await self.manager.handle(json.dumps(message))


@asynccontextmanager
async def agent_on_service(
    engine: KokoroEngine, kokoro_dir: Path, output: TrackAudioOutput, captions: CaptionLog
) -> AsyncIterator[Agent]:
    app = create_app(settings(kokoro_dir.parent), engine=engine)
    async with running(app) as url:
        synth = HttpSynthesizer(url, SECRET)
        statuses = Statuses()
        manager = TtsManager(
            synth, output, statuses.send, captions=VoiceCaptions(captions, lambda: AGENT)
        )
        manager.start()
        try:
            yield Agent(manager, output, statuses, url)
        finally:
            await manager.aclose()
            await synth.aclose()
            await output.aclose()
            await engine.wait_idle(60)


def kokoro_words(engine: KokoroEngine, sentence: str) -> tuple[list[str], int]:
    """The words Kokoro says in ``sentence`` and its samples (fixed weights: deterministic)."""
    pieces = engine.synthesize_sentence(sentence, "af_heart", 1.0)
    return [w.text for p in pieces for w in p.words], sum(len(p.pcm) // 2 for p in pieces)


async def test_the_agent_speaks_and_captions_through_the_service(
    engine: KokoroEngine, kokoro_dir: Path
) -> None:
    from devkit.voice_recorder import TrackRecorder

    log = CaptionLog()
    output = TrackAudioOutput(RATE)
    recorder = TrackRecorder(output.track, RATE)
    async with agent_on_service(engine, kokoro_dir, output, log) as agent:
        await agent.send({"type": "speak", "id": "h", "text": "Hello there. How are you?"})
        await agent.statuses.wait_for("h", "finished", within_s=120)
        assert agent.statuses.of("h") == ["started", "finished"]
        heard_from = recorder.first_sound()
    await recorder.aclose()
    first_words, first_samples = kokoro_words(engine, "Hello there.")
    second_words, second_samples = kokoro_words(engine, "How are you?")
    assert output.played_samples == first_samples + second_samples
    assert recorder.sound_s == pytest.approx(output.played_samples / RATE, abs=0.03)
    assert [c.text for c in log.finals()] == ["Hello there.", "How are you?"]
    partials = [(c.caption_id, c.text) for c in log.captions if not c.final]
    expected = [
        (f"h-{n}", " ".join(words[: k + 1]))
        for n, words in enumerate((first_words, second_words))
        for k in range(len(words))
    ]
    assert partials == expected
    # The first word is captioned as the track starts to play it.
    assert heard_from is not None
    assert -0.03 <= log.items[0][0] - heard_from <= 0.05


async def test_the_next_sentence_is_synthesized_while_one_plays(
    engine: KokoroEngine, kokoro_dir: Path
) -> None:
    output = EngineOutput(engine)
    async with agent_on_service(engine, kokoro_dir, output, CaptionLog()) as agent:
        await agent.send({"type": "speak", "id": "p", "text": f"{LONG} {SHORT}"})
        await agent.statuses.wait_for("p", "finished", within_s=120)
    # Once the first sentence had been handed to the track, the engine was already on the
    # second one: it was asked for as the first started playing, not after it.
    assert output.started_after_piece[0] == 2
    assert output.played_samples == kokoro_words(engine, LONG)[1] + kokoro_words(engine, SHORT)[1]


async def test_a_stop_mid_sentence_silences_the_track_and_cancels_the_next(
    engine: KokoroEngine, kokoro_dir: Path
) -> None:
    from devkit.voice_recorder import TrackRecorder

    log = CaptionLog()
    output = TrackAudioOutput(RATE)
    recorder = TrackRecorder(output.track, RATE)
    async with agent_on_service(engine, kokoro_dir, output, log) as agent:
        # The second sentence cannot be answered before the stop (the service holds it once
        # synthesized), so the stop must cut its request.
        base = engine.stats.started
        with gate(engine, hold_after=2) as held:
            await agent.send({"type": "speak", "id": "s", "text": f"{LONG} {SHORT}"})
            await recorder.wait_for_sound(0.3, within_s=120)
            async with asyncio.timeout(10):
                while engine.stats.started - base < 2:  # noqa: ASYNC110 - a worker's counter
                    await asyncio.sleep(0.005)
            stop_at = time.monotonic()
            await agent.send({"type": "stop"})
            await agent.statuses.wait_for("s", "stopped", within_s=5)
            await asyncio.sleep(0.3)
            held.opened.set()
        await engine.wait_idle(30)
        async with httpx.AsyncClient(base_url=agent.url, headers=token()) as client:
            metrics = (await client.get("/metrics")).text
    await recorder.aclose()
    assert agent.statuses.of("s") == ["started", "stopped"]
    silent_at = recorder.silent_from(stop_at)
    assert silent_at is not None and silent_at - stop_at <= STOP_WITHIN_S
    assert recorder.sound_after(stop_at) <= STOP_WITHIN_S
    assert output.played_samples < kokoro_words(engine, LONG)[1]
    assert 'tts_requests_total{endpoint="synthesize_ndjson",outcome="cancelled"} 1.0' in metrics
    # The caption ends with what was heard: the first of Kokoro's words, in order.
    words = kokoro_words(engine, LONG)[0]
    finals = log.finals()
    assert [c.caption_id for c in finals] == ["s-0"]
    heard = finals[0].text.split()
    assert 1 <= len(heard) < len(words) and heard == words[: len(heard)]
    assert all(c.caption_id == "s-0" for c in log.captions)


# --- the stand-in answers as the service does ---------------------------------------------

AGENT_ASKS = b'{"text": "Hello world. How are you?", "voice": null, "speed": null}'
CASES: list[tuple[str, dict[str, str], bytes]] = [
    ("no token", {}, b'{"text": "Hi."}'),
    ("not JSON", {}, b"{not json"),
    ("not an object", {}, b"[1, 2]"),
    ("no text", {}, b"{}"),
    ("blank text", {}, b'{"text": "   "}'),
    ("text not a string", {}, b'{"text": 5}'),
    ("unknown voice", {}, b'{"text": "Hi.", "voice": "alloy"}'),
    ("speed out of range", {}, b'{"text": "Hi.", "speed": 9}'),
    ("text too long", {}, b'{"text": "' + b"a" * 201 + b'"}'),
    ("as the agent asks", {"Accept": "application/x-ndjson"}, AGENT_ASKS),
    ("PCM", {}, b'{"text": "Hi there.", "voice": "am_adam"}'),
]  # fmt: skip


def _shape(value: Any) -> Any:
    """The structure of a JSON value: keys and value types, lists by their first item."""
    if isinstance(value, dict):
        return {key: _shape(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_shape(value[0])] if value else []
    return "number" if isinstance(value, int | float) else type(value).__name__


async def _answer(url: str, headers: dict[str, str], body: bytes, auth: bool) -> dict[str, Any]:
    sent = {**(token() if auth else {}), "Content-Type": "application/json", **headers}
    async with httpx.AsyncClient(base_url=url, timeout=120) as client:
        res = await client.post("/v1/synthesize", content=body, headers=sent)
    kind = res.headers.get("content-type", "").split(";")[0]
    answer: dict[str, Any] = {"status": res.status_code, "content_type": kind}
    if res.status_code != 200:
        answer["error"] = res.json()["error"]["code"]
        answer["shape"] = _shape(res.json())
    elif kind == "application/x-ndjson":
        lines = [json.loads(line) for line in res.text.splitlines()]
        answer["shape"] = [_shape(line) for line in lines]
        answer["texts"] = [line.get("text") for line in lines]
        answer["words"] = [w["text"] for line in lines for w in line.get("words", [])]
    else:
        answer["rate"] = res.headers["x-sample-rate"]
        answer["audio"] = len(res.content) > 0 and len(res.content) % 2 == 0
    return answer


async def test_the_stand_in_answers_as_the_service_does(
    engine: KokoroEngine, kokoro_dir: Path
) -> None:
    fake = FakeTts()
    fake.secret, fake.voices, fake.max_chars = SECRET, VOICES, 200
    real_app = create_app(settings(kokoro_dir.parent), engine=engine)
    async with running(real_app) as real, running(fake.app) as stand_in:
        for name, headers, body in CASES:
            auth = name != "no token"
            expected = await _answer(real, headers, body, auth)
            got = await _answer(stand_in, headers, body, auth)
            assert got == expected, name
