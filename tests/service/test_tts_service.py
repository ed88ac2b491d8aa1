"""The TTS service over HTTP, running the real kokoro library on a random-weight Kokoro-82M.

The model is built once per test run from the real config (devkit.synthetic_kokoro) with
one frame per phoneme, so test audio is short (``kokoro_dir`` and ``engine`` in conftest.py,
shared with the agent's tests against this service). Its audio is noise: the tests assert
structure, ordering, formats and errors, never content. Ordering is made deterministic
with a gate on the engine's sentence observer (it runs in the worker thread as each
sentence finishes, so holding it holds that sentence's audio), not with timings.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import json
import socket
import threading
import wave
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import av
import httpx
import pytest

# Skipped as a whole where the tts extra (torch, kokoro) is not installed.
pytest.importorskip("kokoro", reason="kokoro is not installed (pip install -e '.[tts]')")

from devkit.synthetic_kokoro import (
    STAMP_NAME,
    build_synthetic_kokoro,
    synthetic_kokoro_ready,
)
from roomscribe.errors import ConfigurationError
from roomscribe.serving import running
from tests.tts_harness import RATE, SECRET, VOICES, gate, settings, token
from tts_service.app import create_app
from tts_service.engine import KokoroEngine

pytestmark = pytest.mark.service

Service = Callable[..., Any]


@pytest.fixture
def service(engine: KokoroEngine, kokoro_dir: Path) -> Service:
    """``async with service(**settings) as client``: the app on a real server, authorized."""

    @asynccontextmanager
    async def start(**overrides: Any) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(settings(kokoro_dir.parent, **overrides), engine=engine)
        async with (
            running(app) as url,
            httpx.AsyncClient(base_url=url, headers=token(), timeout=60) as client,
        ):
            yield client

    return start


def sentence_samples(engine: KokoroEngine, sentence: str) -> int:
    """Samples the engine produces for one sentence (deterministic: fixed weights)."""
    return sum(len(p.pcm) // 2 for p in engine.synthesize_sentence(sentence, "af_heart", 1.0))


async def wait_until(condition: Callable[[], Any], within_s: float = 30) -> None:
    async with asyncio.timeout(within_s):
        while not await condition():  # noqa: ASYNC110 - the condition is an HTTP probe
            await asyncio.sleep(0.01)


# --- streaming ---------------------------------------------------------------------------


async def test_first_sentence_arrives_while_the_next_is_still_held(
    service: Service, engine: KokoroEngine
) -> None:
    first = sentence_samples(engine, "One.")
    async with service() as client:
        with gate(engine, hold_after=2) as held:
            body = {"text": "One. Two. Three.", "voice": None, "speed": None}  # as the agent
            async with client.stream("POST", "/v1/synthesize", json=body) as res:
                assert res.status_code == 200
                assert res.headers["x-sample-rate"] == str(RATE)
                assert res.headers["content-type"] == "audio/pcm"
                chunks = res.aiter_raw()
                received = b""
                while len(received) < first * 2:
                    received += await anext(chunks)
                # Sentence 1 is here in full while sentence 2 cannot have been sent.
                await held.wait_reached()
                assert len(received) == first * 2
                held.opened.set()
                async for chunk in chunks:
                    received += chunk
    assert len(received) % 2 == 0
    assert len(received) > first * 2


async def test_ndjson_gives_pieces_with_word_times(service: Service) -> None:
    async with service() as client:
        res = await client.post(
            "/v1/synthesize",
            json={"text": "Hello world. How are you?"},
            headers={"Accept": "application/x-ndjson"},
        )
    assert res.status_code == 200
    assert res.headers["content-type"].startswith("application/x-ndjson")
    lines = [json.loads(line) for line in res.text.splitlines()]
    audio, done = lines[:-1], lines[-1]
    assert [line["type"] for line in audio] == ["audio", "audio"]
    assert [line["text"] for line in audio] == ["Hello world.", "How are you?"]
    assert done == {"type": "done", "pieces": 2, "duration_s": pytest.approx(done["duration_s"])}
    clock = 0.0
    for line in audio:
        pcm = base64.b64decode(line["audio"])
        assert len(pcm) % 2 == 0 and len(pcm) / 2 / RATE == pytest.approx(line["duration_s"])
        assert line["start_s"] == pytest.approx(clock, abs=1e-3)
        words = line["words"]
        assert words, line
        for word in words:
            assert clock - 1e-3 <= word["start_s"] <= word["end_s"]
        clock += line["duration_s"]
    assert [w["text"] for line in audio for w in line["words"]] == [
        "Hello",
        "world",
        "How",
        "are",
        "you",
    ]
    assert done["duration_s"] == pytest.approx(clock, abs=1e-3)


async def test_the_agents_client_reads_the_stream(service: Service, kokoro_dir: Path) -> None:
    tts = pytest.importorskip("agent.tts", reason="the agent extra is not installed")
    async with service() as client:
        synth = tts.HttpSynthesizer(str(client.base_url), SECRET)
        try:
            pieces = [p async for p in synth.synthesize("Hi there.", voice="am_adam", speed=1.2)]
        finally:
            await synth.aclose()
    assert [p.text for p in pieces] == ["Hi there."]
    assert pieces[0].sample_rate == RATE and pieces[0].pcm and len(pieces[0].pcm) % 2 == 0
    assert [w.text for w in pieces[0].words] == ["Hi", "there"]
    assert pieces[0].words[0].start_s == 0.0


# --- the OpenAI-compatible endpoint -------------------------------------------------------


def decoded_samples(data: bytes) -> int:
    with av.open(io.BytesIO(data), "r") as container:
        return sum(frame.samples for frame in container.decode(audio=0))


@pytest.mark.parametrize("fmt", ["wav", "pcm", "mp3", "opus", "flac", "aac", None])
async def test_speech_formats(service: Service, fmt: str | None) -> None:
    body: dict[str, Any] = {"model": "tts-1", "input": "Hi there.", "voice": "af_heart"}
    if fmt is not None:
        body["response_format"] = fmt
    async with service() as client:
        res = await client.post("/v1/audio/speech", json=body)
    assert res.status_code == 200, res.text
    data = res.content
    if fmt == "wav":
        with wave.open(io.BytesIO(data)) as wav:
            assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
            frames = wav.readframes(10**7)
        assert frames and len(frames) == len(data) - 44
    elif fmt == "pcm":
        assert res.headers["content-type"] == "audio/pcm"
        assert data and len(data) % 2 == 0
    else:
        # mp3 is OpenAI's default format; every encoded format decodes back to audio.
        expected = {None: "audio/mpeg", "mp3": "audio/mpeg", "opus": "audio/ogg"}
        assert res.headers["content-type"].startswith(expected.get(fmt, f"audio/{fmt}"))
        assert decoded_samples(data) > 0


async def test_voices_are_listed(service: Service) -> None:
    async with service() as client:
        res = await client.get("/v1/voices")
    assert res.status_code == 200
    body = res.json()
    assert [v["id"] for v in body["voices"]] == list(VOICES)
    assert body["voices"][0] == {"id": "af_heart", "language": "en-us", "gender": "female"}
    assert body["default"] == "af_heart" and body["synthetic"] is True


# --- auth, limits, errors -----------------------------------------------------------------


@pytest.mark.parametrize(
    "make_headers",
    [
        dict,
        lambda: {"Authorization": "Basic abc"},
        lambda: token(secret="another-secret-0123456789abcdefghijklmn"),
        lambda: token(audience="stt"),
    ],
    ids=["missing", "not-bearer", "forged", "other-audience"],
)
async def test_bad_tokens_are_401(
    service: Service, make_headers: Callable[[], dict[str, str]]
) -> None:
    # Minted when the test runs: a token made at collection expires before a long run gets here.
    headers = make_headers()
    async with service() as client:
        client.headers.pop("Authorization")
        for method, path in (("GET", "/v1/voices"), ("POST", "/v1/synthesize")):
            res = await client.request(method, path, json={"text": "Hi."}, headers=headers)
            assert res.status_code == 401, res.text
            assert res.json()["error"]["code"] == "unauthorized"
            assert res.headers["www-authenticate"] == "Bearer"
        # Probes stay open to the orchestrator of containers.
        for path in ("/healthz", "/readyz", "/metrics"):
            assert (await client.get(path)).status_code == 200


async def test_auth_can_be_turned_off(service: Service) -> None:
    async with service(tts_auth=False) as client:
        client.headers.pop("Authorization")
        assert (await client.get("/v1/voices")).status_code == 200


SPEECH = b'{"model": "x", "input": "Hi."'  # a speech request, its last field(s) to add


@pytest.mark.parametrize(
    ("path", "content", "status", "code"),
    [
        ("/v1/synthesize", b"{not json", 400, "invalid_json"),
        ("/v1/synthesize", b"[1, 2]", 422, "invalid_request"),
        ("/v1/synthesize", b"{}", 422, "invalid_request"),
        ("/v1/synthesize", b'{"text": ""}', 422, "invalid_request"),
        ("/v1/synthesize", b'{"text": "   \\n "}', 422, "invalid_request"),
        ("/v1/synthesize", b'{"text": 5}', 422, "invalid_request"),
        ("/v1/synthesize", b'{"text": "Hi.", "voice": "alloy"}', 400, "unknown_voice"),
        ("/v1/synthesize", b'{"text": "Hi.", "speed": 9}', 422, "invalid_request"),
        ("/v1/synthesize", b'{"text": "Hi.", "speed": 0}', 422, "invalid_request"),
        ("/v1/synthesize", b'{"text": "' + b"a" * 201 + b'"}', 413, "text_too_long"),
        ("/v1/synthesize", b'{"text": "' + b"a" * 20_000 + b'"}', 413, "body_too_large"),
        ("/v1/audio/speech", b'{"input": "Hi."}', 422, "invalid_request"),
        ("/v1/audio/speech", SPEECH + b', "voice": "nova"}', 400, "unknown_voice"),
        ("/v1/audio/speech", SPEECH + b', "response_format": "ogg"}', 422, "invalid_request"),
        ("/v1/audio/speech", SPEECH + b', "stream_format": "sse"}', 422, "invalid_request"),
        ("/v1/nothing", b"{}", 404, "not_found"),
    ],
)  # fmt: skip
async def test_bad_requests_get_json_errors(
    service: Service, path: str, content: bytes, status: int, code: str
) -> None:
    async with service() as client:
        res = await client.post(path, content=content)
    assert res.status_code == status, res.text
    error = res.json()["error"]
    assert error["code"] == code and error["message"]


async def test_a_request_over_the_limit_gets_429_with_retry_after(
    service: Service, engine: KokoroEngine
) -> None:
    async with service(tts_max_concurrent=1, tts_retry_after_s=3) as client:
        with gate(engine, hold_after=1) as held:
            first = asyncio.create_task(client.post("/v1/synthesize", json={"text": "One."}))
            await held.wait_reached()  # the first request holds the only slot
            busy = await client.post("/v1/synthesize", json={"text": "Two."})
            assert busy.status_code == 429
            assert busy.headers["retry-after"] == "3"
            assert busy.json()["error"]["code"] == "busy"
            held.opened.set()
            assert (await first).status_code == 200
        # The slot came back with the first answer.
        again = await client.post("/v1/synthesize", json={"text": "Three."})
        assert again.status_code == 200 and again.content
        metrics = (await client.get("/metrics")).text
    assert 'tts_rejected_total{reason="busy"} 1.0' in metrics


# --- cancellation -------------------------------------------------------------------------


async def test_a_client_that_goes_away_starts_no_more_sentences(
    service: Service, engine: KokoroEngine
) -> None:
    first = sentence_samples(engine, "One.")
    text = "One. Two. Three. Four. Five. Six."
    async with service() as client:

        async def released() -> bool:
            return bool((await client.get("/readyz")).json()["active_streams"] == 0)

        with gate(engine, hold_after=2) as held:
            before = engine.stats.finished
            async with client.stream("POST", "/v1/synthesize", json={"text": text}) as res:
                chunks = res.aiter_raw()
                received = b""
                while len(received) < first * 2:
                    received += await anext(chunks)
                # Sentence 2 is done but held: the service is about to send it.
                await held.wait_reached()
            # Leaving the block closed the connection mid-stream: barge-in.
            await wait_until(released)
            started = engine.stats.started
            held.opened.set()
            await engine.wait_idle()
        assert engine.stats.started == started  # nothing started after the disconnect
        assert engine.stats.finished - before == 2  # the one held was already done
        metrics = (await client.get("/metrics")).text
    assert 'tts_requests_total{endpoint="synthesize",outcome="cancelled"} 1.0' in metrics


async def test_cancelling_stops_the_running_sentence_inside_the_model(
    engine: KokoroEngine,
) -> None:
    entered, release = threading.Event(), threading.Event()

    def hold(_module: Any, _args: Any) -> None:
        entered.set()
        release.wait(60)

    # Registered after the engine's own hooks: they run first, then this one holds the
    # worker at the decoder's entrance until the stream has been cancelled.
    handle = engine.loaded.model.decoder.register_forward_pre_hook(hold)
    before = (engine.stats.finished, engine.stats.aborted)

    async def consume() -> None:
        async for _ in engine.stream("Hello there.", voice=None):
            pass

    task = asyncio.create_task(consume())
    try:
        assert await asyncio.to_thread(entered.wait, 60)
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    finally:
        release.set()
        handle.remove()
    await engine.wait_idle()
    assert (engine.stats.finished, engine.stats.aborted) == (before[0], before[1] + 1)


# --- start-up -----------------------------------------------------------------------------


async def test_readiness_says_which_model_runs(service: Service) -> None:
    async with service() as client:
        ready = (await client.get("/readyz")).json()
        assert (await client.get("/healthz")).json() == {"status": "ok"}
    assert ready["status"] == "ready" and ready["synthetic"] is True
    assert ready["model"].startswith("kokoro (synthetic")
    assert "espeak-ng" in ready["g2p"] and ready["sample_rate"] == RATE


def test_no_model_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="python -m devkit models --synthetic"):
        create_app(settings(tmp_path))


def test_the_entry_point_exits_2_in_one_line_without_a_model(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tts_service.__main__ import main

    def refuse(*_: object, **__: object) -> None:
        raise AssertionError("the service started serving; it should have refused to start")

    monkeypatch.setattr("roomscribe.cli.serve", refuse)
    monkeypatch.setenv("ROOMSCRIBE_MODELS_DIR", str(tmp_path))
    monkeypatch.delenv("ROOMSCRIBE_TTS_MODEL_DIR", raising=False)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(SystemExit) as exc:
        main(["--port", str(port)])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert "\n" not in err and "python -m devkit models --synthetic" in err


def test_an_unknown_default_voice_is_refused_at_start(kokoro_dir: Path) -> None:
    with pytest.raises(ConfigurationError, match="nobody"):
        create_app(settings(kokoro_dir.parent, tts_default_voice="nobody"))


def test_the_synthetic_model_is_cached_and_never_replaces_a_real_one(
    kokoro_dir: Path, tmp_path: Path
) -> None:
    assert synthetic_kokoro_ready(kokoro_dir, frames_per_phoneme=1.0, voices=VOICES)
    assert (kokoro_dir / STAMP_NAME).is_file()
    assert build_synthetic_kokoro(kokoro_dir, frames_per_phoneme=1.0, voices=VOICES) == kokoro_dir
    real = tmp_path / "kokoro"
    real.mkdir()
    (real / "kokoro-v1_0.pth").write_bytes(b"real weights")
    with pytest.raises(FileExistsError):
        build_synthetic_kokoro(real)
    assert (real / "kokoro-v1_0.pth").read_bytes() == b"real weights"
