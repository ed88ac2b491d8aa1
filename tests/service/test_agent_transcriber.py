"""The agent's track transcriber against the real STT service (real libvosk, synthetic model).

Audio goes through real ``rtc`` local tracks (``rtc.AudioStream`` at 16 kHz mono), the STT
plugin speaks the real WebSocket protocol, and the tone-word model gives exact ground truth
for words, times and attribution.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from livekit import rtc

from agent.captions import Caption
from agent.stt_plugin import BackoffConnectOptions, RoomscribeSTT
from agent.transcriber import TrackTranscriber
from devkit.local_tracks import track_frames
from devkit.tones import synthesize, word_times
from roomscribe.auth import issue_internal_token
from roomscribe.models import TranscriptQuery, TranscriptSource
from tests.stt_harness import SECRET, ServiceProcess

pytestmark = pytest.mark.service

TOLERANCE_S = 0.15


class CaptionLog:
    """A caption sink that keeps everything it is given."""

    def __init__(self) -> None:
        self.captions: list[Caption] = []

    async def publish(self, caption: Caption) -> None:
        self.captions.append(caption)

    def finals(self, participant: str | None = None) -> list[Caption]:
        return [
            c
            for c in self.captions
            if c.final and (participant is None or c.participant == participant)
        ]


def plugin(url: str) -> RoomscribeSTT:
    return RoomscribeSTT(
        url=url,
        token=lambda: issue_internal_token(SECRET, audience="stt", subject="agent"),
        room="standup",
    )


def transcriber(url: str, sink: CaptionLog, who: str, **kw: Any) -> TrackTranscriber:
    return TrackTranscriber(
        plugin(url), sink, room="standup", participant=who, track_sid=f"TR_{who}", **kw
    )


def assert_words_at(captions: list[Caption], words: list[str], offset_s: float = 0.0) -> None:
    got = [w for c in captions for w in c.text.split()]
    assert got == words
    expected = word_times(words)
    for caption in captions:
        assert caption.segment_id and caption.segment_id.startswith(caption.track_sid)
    starts = [c.start_s for c in captions]
    first_of_each = [expected[0][1]]
    i = 0
    for c in captions[:-1]:
        i += len(c.text.split())
        first_of_each.append(expected[i][1])
    for start, want in zip(starts, first_of_each, strict=True):
        assert start == pytest.approx(want + offset_s, abs=TOLERANCE_S)


async def test_partials_and_finals_arrive_with_track_times(
    make_service: Callable[..., Any],
) -> None:
    async with make_service() as svc:
        sink = CaptionLog()
        tt = transcriber(svc.url, sink, "alice")
        await tt.run(track_frames(synthesize(["alpha", "bravo"])))  # real rtc.AudioStream
    finals = sink.finals()
    assert_words_at(finals, ["alpha", "bravo"])
    partials = [c for c in sink.captions if not c.final]
    assert partials, "live partials must arrive before the final"
    # A front end replaces an utterance's partial with its final: they share the caption id.
    assert {p.caption_id for p in partials} <= {f.caption_id for f in finals}
    assert all(c.participant == "alice" and c.track_sid == "TR_alice" for c in sink.captions)
    assert tt.result.error is None and tt.result.latencies_ms
    # A final comes after its last word ends (the recognizer waits for the pause), so the
    # wait from speech end is longer than the pipeline delay measured from newest audio.
    assert len(tt.result.final_latencies_ms) == len(finals)
    final_pipeline = [f.latency_ms for f in finals]
    assert all(
        p is not None and w >= p
        for w, p in zip(tt.result.final_latencies_ms, final_pipeline, strict=True)
    )
    stored = await svc.store.query_transcript(
        TranscriptQuery(room="standup", source=TranscriptSource.REALTIME)
    )
    assert [s.id for s in stored.segments] == [f.segment_id for f in finals]


async def test_leaving_mid_sentence_still_gives_the_last_final(
    make_service: Callable[..., Any],
) -> None:
    # The track ends right after the last tone: no trailing silence for the endpointer.
    async with make_service() as svc:
        sink = CaptionLog()
        pcm = synthesize(["charlie", "delta"], tail_s=0.05)
        await transcriber(svc.url, sink, "bob").run(track_frames(pcm, speed=4))
    assert [w for c in sink.finals() for w in c.text.split()] == ["charlie", "delta"]


async def test_two_participants_at_once_never_cross_attribute(
    make_service: Callable[..., Any],
) -> None:
    async with make_service() as svc:
        sink = CaptionLog()
        alice = transcriber(svc.url, sink, "alice")
        bob = transcriber(svc.url, sink, "bob")
        await asyncio.gather(
            alice.run(track_frames(synthesize(["alpha", "echo", "golf"]))),
            bob.run(track_frames(synthesize(["kilo", "mike", "oscar"]))),
        )
    for who, words in (("alice", ["alpha", "echo", "golf"]), ("bob", ["kilo", "mike", "oscar"])):
        mine = sink.finals(who)
        assert_words_at(mine, words)
        assert all(c.track_sid == f"TR_{who}" for c in mine)


async def paused_after(
    frames: AsyncIterator[rtc.AudioFrame], seconds: float, event: asyncio.Event
) -> AsyncIterator[rtc.AudioFrame]:
    """Pass frames through; after ``seconds`` of audio, wait for ``event`` once."""
    heard = 0.0
    paused = False
    async for frame in frames:
        yield frame
        heard += frame.duration
        if not paused and heard >= seconds:
            paused = True
            await event.wait()


async def test_stt_restart_mid_stream_loses_no_final_and_keeps_offsets(
    make_service: Callable[..., Any],
) -> None:
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    # Three utterances; the service restarts in the middle of the second one.
    pcm = np.concatenate(
        [
            synthesize(words[0:2], tail_s=0.9),
            synthesize(words[2:4], lead_s=0.3, tail_s=0.9),
            synthesize(words[4:6], lead_s=0.3),
        ]
    )
    runner = make_service()
    svc = await runner.start()
    sink = CaptionLog()
    restarted = asyncio.Event()
    tt = transcriber(
        svc.url,
        sink,
        "alice",
        conn_options=BackoffConnectOptions(max_retry=20, retry_interval=0.1, timeout=5),
    )
    run = asyncio.create_task(tt.run(paused_after(track_frames(pcm, speed=3), 3.0, restarted)))
    await asyncio.sleep(0.3)
    while tt.result.stream.sent_samples < 16000 * 3:  # noqa: ASYNC110 - polling a counter
        await asyncio.sleep(0.02)
    await runner.stop()  # what it heard comes back as finals, then 1012
    restart = asyncio.create_task(runner.start())
    await asyncio.sleep(0.2)
    restarted.set()  # audio keeps flowing while the service comes back
    await restart
    await run
    await runner.stop()
    got = [w for c in sink.finals() for w in c.text.split()]
    assert got == words, "every word once: nothing lost, nothing doubled"
    assert tt.result.stream.reconnects >= 1
    # Times stay on the track's clock across the reconnect.
    utterance_len = len(synthesize(words[0:2], tail_s=0.9)) / 16000
    third = next(c for c in sink.finals() if c.text.startswith("echo"))
    assert third.start_s == pytest.approx(2 * utterance_len + 0.3, abs=TOLERANCE_S)
    stored = await svc.store.query_transcript(
        TranscriptQuery(room="standup", source=TranscriptSource.REALTIME)
    )
    assert [w for s in stored.segments for w in s.text.split()] == words


async def test_stt_crash_mid_utterance_is_resent_to_the_new_process(
    tmp_path: Path, vosk_model_dir: Path
) -> None:
    words = ["alpha", "bravo", "charlie", "delta"]
    first = synthesize(words[0:2], tail_s=0.9)
    pcm = np.concatenate([first, synthesize(words[2:4], lead_s=0.3)])
    service = ServiceProcess(tmp_path / "stt.db", vosk_model_dir)
    await service.start()
    sink = CaptionLog()
    resume = asyncio.Event()
    tt = transcriber(
        service.url,
        sink,
        "alice",
        conn_options=BackoffConnectOptions(max_retry=40, retry_interval=0.1, timeout=5),
    )
    cut_at = len(first) / 16000 + 0.75  # after "charlie", before "delta"
    run = asyncio.create_task(tt.run(paused_after(track_frames(pcm, speed=3), cut_at, resume)))
    try:
        while tt.result.stream.sent_samples < int(16000 * (cut_at - 0.1)):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.3)  # let the service hear it all (it has no final for it yet)
        service.kill()
        resume.set()
        await service.start()
        await run
        service.terminate()  # its last store writes are flushed on the way out
    finally:
        service.kill()
    assert tt.result.stream.reconnects >= 1 and tt.result.stream.replayed_samples > 0
    assert [w for c in sink.finals() for w in c.text.split()] == words
    second = sink.finals()[-1]
    assert second.start_s == pytest.approx(len(first) / 16000 + 0.3, abs=TOLERANCE_S)
    stored = await service.store.query_transcript(
        TranscriptQuery(room="standup", source=TranscriptSource.REALTIME)
    )
    await service.store.close()
    assert [w for s in stored.segments for w in s.text.split()] == words
