"""The STT service end to end over a real WebSocket, with the real libvosk.

The synthetic model hears pure tones as words (devkit.tones), so every assertion about
words, their times and their attribution has exact ground truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Callable
from typing import Any

import httpx
import numpy as np
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from devkit.tones import synthesize, word_times
from roomscribe.models import SegmentSource, TranscriptQuery, TranscriptSource
from roomscribe.protocol import encode_audio_frame
from tests.stt_harness import Service

pytestmark = pytest.mark.service

T0 = 1_790_000_000.0
TOLERANCE_S = 0.12


def start_message(track: str = "TR_alice", who: str = "alice", **over: Any) -> str:
    msg = {
        "type": "start",
        "room": "standup",
        "participant": who,
        "track_sid": track,
        "language": "en",
        "sample_rate": 16000,
        "track_started_at": T0,
    }
    msg.update(over)
    return json.dumps(msg)


async def send_pcm(
    ws: ClientConnection,
    pcm: np.ndarray,
    *,
    rate: int = 16000,
    offset: int = 0,
    frame_ms: int = 20,
    pace: float = 0.0,
) -> int:
    step = rate * frame_ms // 1000
    for i in range(0, len(pcm), step):
        await ws.send(encode_audio_frame(offset + i, pcm[i : i + step].astype("<i2").tobytes()))
        if pace:
            await asyncio.sleep(frame_ms / 1000 / pace)
    return offset + len(pcm)


async def drain(ws: ClientConnection, limit_s: float = 20) -> list[dict[str, Any]]:
    """Read messages until the server closes the stream."""
    out: list[dict[str, Any]] = []
    try:
        async with asyncio.timeout(limit_s):
            async for raw in ws:
                out.append(json.loads(raw))
    except ConnectionClosed:
        pass
    return out


def finals(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "final"]


def words_of(messages: list[dict[str, Any]]) -> list[str]:
    return [w["word"] for m in finals(messages) for w in m["words"]]


async def stream_words(
    svc: Service,
    words: list[str],
    *,
    track: str = "TR_alice",
    who: str = "alice",
    rate: int = 16000,
    pace: float = 0.0,
) -> tuple[list[dict[str, Any]], int | None]:
    async with svc.connect() as ws:
        await ws.send(start_message(track, who, sample_rate=rate))
        ready = json.loads(await ws.recv())
        assert ready["type"] == "ready"
        await send_pcm(ws, synthesize(words, sample_rate=rate), rate=rate, pace=pace)
        await ws.send('{"type":"end"}')
        messages = await drain(ws)
        return messages, ws.close_code


# The live path -------------------------------------------------------------------------------
async def test_tones_come_back_as_words_at_their_times(make_service: Callable[..., Any]) -> None:
    async with make_service() as svc:
        words = ["alpha", "bravo", "charlie"]
        messages, code = await stream_words(svc, words)
        assert code == 1000
        got = [w for m in finals(messages) for w in m["words"]]
        assert [w["word"] for w in got] == words
        for w, (word, start, end) in zip(got, word_times(words), strict=True):
            assert w["word"] == word
            assert abs(w["start_ms"] / 1000 - start) < TOLERANCE_S
            assert abs(w["end_ms"] / 1000 - end) < TOLERANCE_S
        partials = [m for m in messages if m["type"] == "partial"]
        assert partials and all(p["text"] for p in partials)
        # Each result says how much audio it had heard: never more than was sent.
        sent_ms = len(synthesize(words)) * 1000 // 16000
        assert all(0 < m["audio_end_ms"] <= sent_ms for m in [*partials, *finals(messages)])
        stats = [m for m in messages if m["type"] == "stats"][-1]
        expected_ms = len(synthesize(words)) * 1000 // 16000
        assert stats["received_ms"] == expected_ms and stats["dropped_ms"] == 0

        # Finals were stored as realtime segments of this participant's track.
        await asyncio.sleep(0.3)
        page = await svc.store.query_transcript(
            TranscriptQuery(room="standup", source=TranscriptSource.REALTIME)
        )
        stored = [w.word for s in page.segments for w in s.words]
        assert stored == words
        assert {s.participant_identity for s in page.segments} == {"alice"}
        assert page.segments[0].abs_start == pytest.approx(T0 + got[0]["start_ms"] / 1000)
        track = await svc.store.get_track("TR_alice")
        assert track.live.audio_received_s == pytest.approx(expected_ms / 1000, abs=0.05)
        assert track.live.segments == len(finals(messages))


@pytest.mark.parametrize("rate", [48000, 8000])
async def test_other_sample_rates_are_resampled(
    make_service: Callable[..., Any], rate: int
) -> None:
    async with make_service() as svc:
        messages, code = await stream_words(svc, ["delta", "echo"], rate=rate)
        assert code == 1000
        assert words_of(messages) == ["delta", "echo"]
        first = finals(messages)[0]["words"][0]
        assert abs(first["start_ms"] / 1000 - word_times(["delta", "echo"])[0][1]) < TOLERANCE_S


async def test_concurrent_clients_never_cross_attribute(make_service: Callable[..., Any]) -> None:
    scripts = {
        f"p{i}": [
            ["alpha", "bravo"],
            ["charlie"],
            ["delta", "echo"],
            ["foxtrot", "golf"],
            ["hotel"],
            ["india", "kilo"],
            ["lima", "mike"],
            ["november", "oscar"],
        ][i]
        for i in range(8)
    }
    async with make_service() as svc:
        results = await asyncio.gather(
            *(
                stream_words(svc, words, track=f"TR_{who}", who=who, pace=4.0)
                for who, words in scripts.items()
            )
        )
        for (messages, code), words in zip(results, scripts.values(), strict=True):
            assert code == 1000
            assert words_of(messages) == words
        await asyncio.sleep(0.3)
        for who, words in scripts.items():
            page = await svc.store.query_transcript(
                TranscriptQuery(room="standup", participant_identity=who)
            )
            assert [w.word for s in page.segments for w in s.words] == words
            assert {s.track_sid for s in page.segments} == {f"TR_{who}"}


async def test_flush_forces_a_final(make_service: Callable[..., Any]) -> None:
    async with make_service() as svc, svc.connect() as ws:
        await ws.send(start_message())
        await ws.recv()
        pcm = synthesize(["papa"], tail_s=0.0)
        await send_pcm(ws, pcm)
        await ws.send('{"type":"flush"}')
        final = None
        async with asyncio.timeout(10):
            while final is None:
                msg = json.loads(await ws.recv())
                if msg["type"] == "final":
                    final = msg
        assert final["text"] == "papa"
        await ws.send('{"type":"end"}')
        await drain(ws)


async def test_reconnect_resumes_at_the_right_offset(make_service: Callable[..., Any]) -> None:
    async with make_service() as svc:
        first = synthesize(["alpha"])
        async with svc.connect() as ws:
            await ws.send(start_message())
            assert json.loads(await ws.recv())["resume_offset"] == 0
            end = await send_pcm(ws, first)
            # The connection drops without an "end": the last words must still be final.
        await asyncio.sleep(0.5)
        async with svc.connect() as ws:
            await ws.send(start_message())
            ready = json.loads(await ws.recv())
            # Everything sent was committed (alpha stored, the silence after it held no
            # words) before the first stream wound down.
            assert ready["resume_offset"] == end
            # The client resends a little of what it had sent (it cannot know what arrived).
            second = synthesize(["bravo"])
            await send_pcm(ws, np.concatenate([first[-1600:], second]), offset=end - 1600)
            await ws.send('{"type":"end"}')
            messages = await drain(ws)
        assert words_of(messages) == ["bravo"]
        bravo = finals(messages)[0]["words"][0]
        expected = end / 16000 + word_times(["bravo"])[0][1]
        assert abs(bravo["start_ms"] / 1000 - expected) < TOLERANCE_S
        await asyncio.sleep(0.3)
        page = await svc.store.query_transcript(TranscriptQuery(room="standup"))
        assert [w.word for s in page.segments for w in s.words] == ["alpha", "bravo"]


async def test_gap_in_offsets_keeps_times_true(make_service: Callable[..., Any]) -> None:
    async with make_service() as svc, svc.connect() as ws:
        await ws.send(start_message())
        await ws.recv()
        end = await send_pcm(ws, synthesize(["alpha"]))
        later = end + 5 * 16000  # five seconds the client never sent (muted, say)
        await send_pcm(ws, synthesize(["bravo"]), offset=later)
        await ws.send('{"type":"end"}')
        messages = await drain(ws)
    got = [w for m in finals(messages) for w in m["words"]]
    assert [w["word"] for w in got] == ["alpha", "bravo"]
    expected = later / 16000 + word_times(["bravo"])[0][1]
    assert abs(got[1]["start_ms"] / 1000 - expected) < TOLERANCE_S


# Overload, failures, bad input ---------------------------------------------------------------
async def test_breaker_stops_only_the_failing_client(make_service: Callable[..., Any]) -> None:
    async with make_service(stt_breaker_failures=3) as svc:
        async with svc.connect() as bad:
            await bad.send(start_message("TR_bad", "mallory"))
            await bad.recv()
            svc.recognizers.failing.set()
            with contextlib.suppress(ConnectionClosed):  # the server closes while we send
                await send_pcm(bad, synthesize(["alpha"]), pace=2.0)
            messages = await drain(bad)
            svc.recognizers.failing.clear()
        errors = [m for m in messages if m["type"] == "error"]
        assert errors and errors[-1]["code"] == "breaker_open" and errors[-1]["retryable"]
        assert bad.close_code == 1013
        # Everyone else is untouched.
        good, code = await stream_words(svc, ["hotel"], track="TR_good", who="bob")
        assert code == 1000 and words_of(good) == ["hotel"]
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(svc.url + "/metrics")).text
        assert "stt_breaker_trips_total 1.0" in metrics


async def test_overflow_is_counted_never_silent(make_service: Callable[..., Any]) -> None:
    async with make_service(stt_queue_chunks=5, stt_max_batch_chunks=1) as svc:
        svc.recognizers.delay_s = 0.02  # a recognizer slower than the audio arrives
        messages, code = await stream_words(svc, ["alpha", "bravo"])
        svc.recognizers.delay_s = 0.0
    assert code == 1000
    stats = [m for m in messages if m["type"] == "stats"][-1]
    total_ms = len(synthesize(["alpha", "bravo"])) * 1000 // 16000
    assert stats["received_ms"] == total_ms
    assert stats["dropped_ms"] > 0
    track = await svc.store.get_track("TR_alice")
    assert track.live.audio_dropped_s == pytest.approx(stats["dropped_ms"] / 1000, abs=0.02)


async def test_max_clients_is_enforced(make_service: Callable[..., Any]) -> None:
    async with make_service(stt_max_clients=2) as svc, svc.connect() as a, svc.connect() as b:
        for ws, who in ((a, "a"), (b, "b")):
            await ws.send(start_message(f"TR_{who}", who))
            assert json.loads(await ws.recv())["type"] == "ready"
        async with svc.connect() as c:
            await c.send(start_message("TR_c", "c"))
            messages = await drain(c)
        assert messages[0]["code"] == "overloaded" and messages[0]["retryable"]
        assert c.close_code == 1013
        for ws in (a, b):
            await ws.send('{"type":"end"}')
            await drain(ws)


BAD_INPUT = [
    ("binary first", encode_audio_frame(0, b"\x00\x00"), "not_started", 1003),
    ("not json", "{oops", "bad_message", 1003),
    ("flush first", '{"type":"flush"}', "not_started", 1003),
    ("odd rate", start_message(sample_rate=44100), "unsupported_sample_rate", 1003),
    ("no model", start_message(language="xx"), "unsupported_language", 1003),
    ("missing field", '{"type":"start","room":"r"}', "bad_message", 1003),
]


@pytest.mark.parametrize(
    ("first", "code", "close"), [c[1:] for c in BAD_INPUT], ids=[c[0] for c in BAD_INPUT]
)
async def test_bad_openings_get_clear_errors(
    make_service: Callable[..., Any], first: str | bytes, code: str, close: int
) -> None:
    async with make_service() as svc, svc.connect() as ws:
        await ws.send(first)
        messages = await drain(ws)
    assert messages[0]["type"] == "error" and messages[0]["code"] == code
    assert messages[0]["message"]
    assert ws.close_code == close


BAD_FRAMES = [
    ("odd pcm", encode_audio_frame(0, b"\x00" * 641), "bad_audio"),
    ("short header", b"\x00" * 5, "bad_audio"),
    ("over 1 s", encode_audio_frame(0, b"\x00" * (16000 * 2 + 4)), "frame_too_large"),
    ("second start", start_message(), "already_started"),
    ("unknown type", '{"type":"dance"}', "bad_message"),
]


@pytest.mark.parametrize(
    ("frame", "code"), [c[1:] for c in BAD_FRAMES], ids=[c[0] for c in BAD_FRAMES]
)
async def test_bad_frames_close_only_that_stream(
    make_service: Callable[..., Any], frame: str | bytes, code: str
) -> None:
    async with make_service() as svc, svc.connect() as other:
        await other.send(start_message("TR_bob", "bob"))
        await other.recv()
        half = synthesize(["kilo", "lima"])
        await send_pcm(other, half[: len(half) // 2])
        async with svc.connect() as ws:
            await ws.send(start_message())
            await ws.recv()
            await send_pcm(ws, synthesize(["alpha"]))
            await ws.send(frame)
            messages = await drain(ws)
        errors = [m for m in messages if m["type"] == "error"]
        assert errors[-1]["code"] == code
        assert ws.close_code == 1003
        # What was said before the bad frame is still final and stored.
        assert words_of(messages) == ["alpha"]
        await send_pcm(other, half[len(half) // 2 :], offset=len(half) // 2)
        await other.send('{"type":"end"}')
        assert words_of(await drain(other)) == ["kilo", "lima"]


@pytest.mark.parametrize("token", [None, "not-a-jwt", "wrong-audience", "wrong-secret"])
async def test_bad_tokens_are_refused(make_service: Callable[..., Any], token: str | None) -> None:
    async with make_service() as svc:
        value = {
            None: None,
            "not-a-jwt": "not-a-jwt",
            "wrong-audience": svc.token(audience="orchestrator"),
            "wrong-secret": svc.token(secret="another-secret-0123456789abcdefghij"),
        }[token]
        async with svc.connect(token=value) as ws:
            messages = await drain(ws)
        assert messages[0]["code"] == "unauthorized"
        assert ws.close_code == 1008


async def test_idle_client_is_closed(make_service: Callable[..., Any]) -> None:
    async with make_service(stt_idle_timeout_s=0.4) as svc, svc.connect() as ws:
        await ws.send(start_message())
        await ws.recv()
        await send_pcm(ws, synthesize(["mike"], tail_s=0.0))
        messages = await drain(ws)
    assert words_of(messages) == ["mike"]
    errors = [m for m in messages if m["type"] == "error"]
    # Idleness is no fault: the client reconnects when it has audio again.
    assert [(e["code"], e["retryable"]) for e in errors] == [("idle_timeout", True)]
    assert ws.close_code == 1001


async def test_shutdown_drains_every_stream(make_service: Callable[..., Any]) -> None:
    service = make_service()
    svc = await service.__aenter__()
    async with svc.connect() as ws:
        await ws.send(start_message())
        await ws.recv()
        await send_pcm(ws, synthesize(["november"], tail_s=0.0))
        await asyncio.sleep(0.3)
        shutdown = asyncio.create_task(service.__aexit__(None, None, None))
        messages = await drain(ws)
        await shutdown
    assert words_of(messages) == ["november"]
    assert ws.close_code == 1012
    page = await svc.store.query_transcript(TranscriptQuery(room="standup"))
    assert [s.text for s in page.segments] == ["november"]
    chunks = await svc.store.list_chunks("TR_alice", SegmentSource.REALTIME)
    assert chunks[0].count == 1


async def test_health_readiness_and_metrics(make_service: Callable[..., Any]) -> None:
    async with make_service() as svc:
        async with httpx.AsyncClient(base_url=svc.url) as http:
            assert (await http.get("/healthz")).json() == {"status": "ok"}
            ready = (await http.get("/readyz")).json()
            assert ready["status"] == "ready" and ready["languages"] == ["en"]
        await stream_words(svc, ["oscar"])
        async with httpx.AsyncClient(base_url=svc.url) as http:
            text = (await http.get("/metrics")).text
        for name in (
            "stt_active_clients",
            "stt_queue_depth_chunks",
            "stt_dropped_audio_seconds",
            "stt_partial_latency_seconds_bucket",
            "stt_final_latency_seconds_bucket",
            "stt_recognizer_seconds_total",
            "stt_recognized_audio_seconds_total",
            "stt_breaker_trips_total",
        ):
            assert name in text
        assert "stt_final_latency_seconds_count 1.0" in text


async def test_audio_frames_are_not_deflated(make_service: Callable[..., Any]) -> None:
    # Clients offer permessage-deflate by default; PCM barely compresses, so the server
    # declines it and neither side spends CPU on it.
    async with make_service() as svc, svc.connect() as ws:
        assert ws.protocol.extensions == []
        await ws.send(start_message())
        assert json.loads(await ws.recv())["type"] == "ready"
        await ws.send('{"type":"end"}')
        await drain(ws)
