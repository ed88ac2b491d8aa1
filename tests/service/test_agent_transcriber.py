"""The agent's track transcriber and STT plugin.

Against the real STT service (real libvosk, synthetic model): audio goes through real ``rtc``
local tracks (``rtc.AudioStream`` at 16 kHz mono), the STT plugin speaks the real WebSocket
protocol, and the tone-word model gives exact ground truth for words, times and attribution.

Against a scripted stand-in service (:class:`Scripted`): what the plugin does with exactly the
``ready``/``final``/``committed``/close sequence a test scripts (trimming, resending,
keepalives, idle closes), which a real recognizer cannot be made to produce on cue.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from livekit import rtc
from livekit.agents import stt
from pydantic import BaseModel
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from agent.captions import Caption
from agent.stt_plugin import BackoffConnectOptions, RoomscribeStream, RoomscribeSTT
from agent.transcriber import LatencyClock, TrackTranscriber
from devkit.local_tracks import track_frames
from devkit.tones import synthesize, word_times
from roomscribe.auth import issue_internal_token
from roomscribe.models import TranscriptQuery, TranscriptSource
from roomscribe.protocol import (
    CommittedMessage,
    ErrorCode,
    ErrorMessage,
    FinalMessage,
    ReadyMessage,
    StartMessage,
    WireWord,
    decode_audio_frame,
    parse_client_message,
)
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


def plugin(url: str, **kw: Any) -> RoomscribeSTT:
    return RoomscribeSTT(
        url=url,
        token=lambda: issue_internal_token(SECRET, audience="stt", subject="agent"),
        room="standup",
        **kw,
    )


def transcriber(
    url: str, sink: CaptionLog, who: str, stt: RoomscribeSTT | None = None, **kw: Any
) -> TrackTranscriber:
    return TrackTranscriber(
        stt or plugin(url), sink, room="standup", participant=who, track_sid=f"TR_{who}", **kw
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


async def test_streams_spread_over_stt_instances_and_fail_over_when_one_stops(
    make_service: Callable[..., Any],
) -> None:
    first, second = make_service(), make_service()  # two instances on one store
    svc_a, svc_b = await first.start(), await second.start()
    stt = plugin(f"{svc_a.url},{svc_b.url}")
    assert len(stt.instances) == 2
    # Each new stream goes to the instance with the fewest open streams.
    probes = [stt.stream(track_sid=f"TR_probe{i}", participant=f"p{i}") for i in range(2)]
    assert sorted(p.instance for p in probes) == [0, 1]
    for probe in probes:
        probe.end_input()
        await probe.aclose()
    words = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot"]
    pcm = np.concatenate(
        [
            synthesize(words[0:2], tail_s=0.9),
            synthesize(words[2:4], lead_s=0.3, tail_s=0.9),
            synthesize(words[4:6], lead_s=0.3),
        ]
    )
    sink = CaptionLog()
    tt = transcriber(
        "",
        sink,
        "alice",
        stt=stt,
        conn_options=BackoffConnectOptions(max_retry=20, retry_interval=0.1, timeout=5),
    )
    run = asyncio.create_task(tt.run(track_frames(pcm, speed=3)))
    while tt.result.stream.sent_samples < 16000 * 2:  # noqa: ASYNC110 - polling a counter
        await asyncio.sleep(0.02)
    stream_instance = next(s for s in stt._streams if s.start.track_sid == "TR_alice").instance
    # The instance it is on stops for good (1012, no restart): the stream moves on.
    await (first if stream_instance == 0 else second).stop()
    await run
    got = [w for c in sink.finals() for w in c.text.split()]
    assert got == words, "every word once across the move"
    assert tt.result.stream.failovers >= 1
    stored = await svc_a.store.query_transcript(
        TranscriptQuery(room="standup", track_sid="TR_alice", source=TranscriptSource.REALTIME)
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


async def eventually(check: Callable[[], object], timeout_s: float = 10.0) -> None:
    async with asyncio.timeout(timeout_s):
        while not check():  # noqa: ASYNC110 - polling what the stream's tasks update
            await asyncio.sleep(0.01)


async def speech_pause_speech(
    first: list[str], second: list[str], pause_s: float
) -> AsyncIterator[rtc.AudioFrame]:
    """Two utterances with ``pause_s`` of no frames at all between them (a muted track)."""
    async for frame in track_frames(synthesize(first), speed=3):
        yield frame
    await asyncio.sleep(pause_s)
    async for frame in track_frames(synthesize(second), speed=3):
        yield frame


@pytest.mark.parametrize("keepalive_s", [None, 0.3], ids=["no-keepalive", "keepalive"])
async def test_a_pause_past_the_idle_limit_then_speech_gets_captions_again(
    make_service: Callable[..., Any], keepalive_s: float | None
) -> None:
    # The service's idle limit (60 s in production) shortened to 1 s, the pause to 3 s.
    async with make_service(stt_idle_timeout_s=1.0) as svc:
        sink = CaptionLog()
        stt = plugin(svc.url, keepalive_interval_s=keepalive_s)
        tt = transcriber(svc.url, sink, "alice", stt=stt)
        await tt.run(speech_pause_speech(["alpha", "bravo"], ["charlie", "delta"], 3.0))
        stored = await svc.store.query_transcript(
            TranscriptQuery(room="standup", source=TranscriptSource.REALTIME)
        )
    assert tt.result.error is None
    assert [w for c in sink.finals() for w in c.text.split()] == [
        "alpha",
        "bravo",
        "charlie",
        "delta",
    ]
    assert [w for s in stored.segments for w in s.text.split()] == [
        "alpha",
        "bravo",
        "charlie",
        "delta",
    ]
    # The pause is not in the track's time (no frames came), and no reconnect shifts it.
    second = next(c for c in sink.finals() if c.text.startswith("charlie"))
    assert second.start_s == pytest.approx(
        len(synthesize(["alpha", "bravo"])) / 16000 + 0.3, abs=TOLERANCE_S
    )
    stats = tt.result.stream
    if keepalive_s is None:
        # Closed as idle; reconnected when the speech came back.
        assert stats.idle_closes >= 1 and stats.reconnects >= 1 and stats.keepalives == 0
    else:
        assert stats.keepalives >= 1
        assert stats.idle_closes == 0 and stats.reconnects == 0, stats.errors


async def test_the_replay_buffer_keeps_a_finals_audio_until_it_is_committed(
    make_service: Callable[..., Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    async with make_service() as svc:
        stored = asyncio.Event()
        store_open = asyncio.Event()
        append = svc.store.append_realtime_segments

        async def slow_store(*args: Any, **kwargs: Any) -> Any:
            await store_open.wait()  # the store is slow: finals are sent, not yet stored
            result = await append(*args, **kwargs)
            stored.set()
            return result

        monkeypatch.setattr(svc.store, "append_realtime_segments", slow_store)
        stream = plugin(svc.url).stream(track_sid="TR_alice", participant="alice", room="standup")
        try:
            async for frame in track_frames(synthesize(["alpha", "bravo"]), speed=4):
                stream.push_frame(frame)
            final = await next_final(stream)
            assert final.text == "alpha bravo"
            start, end = (int(t * 16000) for t in (final.start_time, final.end_time))
            replay = stream.replay
            # Not committed (not stored), so not forgotten: a crash now loses no word.
            assert stream.stats.committed_offset <= start
            assert replay.start_offset <= start and replay.end_offset == stream.stats.sent_samples
            assert replay.dropped_samples == 0
            store_open.set()
            await stored.wait()
            # Stored: the service commits it, and only now is it forgotten.
            await eventually(lambda: stream.stats.committed_offset >= end)
            assert replay.start_offset >= end
            assert replay.start_offset + replay.samples == replay.end_offset
            stream.end_input()
            async for _ in stream:
                pass
        finally:
            store_open.set()
            await stream.aclose()


def test_the_latency_clock_stays_bounded_over_a_silent_hour() -> None:
    now = 0.0

    def clock_now() -> float:
        return now

    clock = LatencyClock(window_s=120.0, now=clock_now)
    total = most = 0
    for _ in range(360_000):  # an hour of 10 ms frames, and no result ever arrives
        now += 0.01
        total += 160
        clock.pushed(total)
        most = max(most, len(clock))
    # About the window's worth (120 s of 10 ms pushes), plus the second it trims in steps of.
    assert most <= 121 * 100 + 1
    total_ms = total * 1000 / 16000
    assert clock.latency_ms(total_ms - 1000) == pytest.approx(1000, abs=20)
    # Audio older than the window has no latency rather than a wrong one.
    assert clock.latency_ms(1000.0) is None
    assert clock.latency_ms(None) is None
    clock.forget_before(total_ms - 500)
    assert clock.latency_ms(total_ms - 1000) is None and len(clock) <= 51


# -- the plugin against a scripted stand-in service -----------------------------------------
FAST = BackoffConnectOptions(max_retry=5, retry_interval=0.05, timeout=5.0)


class ScriptedConn:
    """One client connection to :class:`Scripted`: what it sent, and a way to answer."""

    def __init__(self, ws: ServerConnection, start: StartMessage) -> None:
        self.ws = ws
        self.start = start
        self.audio: list[tuple[int, int]] = []  # (offset, samples) of each audio frame
        self.messages: list[str] = []  # "audio" or the control message's type, in order

    @property
    def audio_end(self) -> int:
        return self.audio[-1][0] + self.audio[-1][1] if self.audio else 0

    async def send(self, *messages: BaseModel) -> None:
        for message in messages:
            await self.ws.send(message.model_dump_json())

    async def read_until(self, done: Callable[[ScriptedConn], bool]) -> None:
        while not done(self):
            raw = await self.ws.recv()
            if isinstance(raw, bytes):
                offset, pcm = decode_audio_frame(raw, sample_rate=16000)
                self.audio.append((offset, len(pcm) // 2))
                self.messages.append("audio")
            else:
                self.messages.append(parse_client_message(raw).type)

    async def read_on(self) -> None:
        """Record what comes until the client goes."""
        try:
            await self.read_until(lambda _: False)
        except ConnectionClosed:
            return


Handler = Callable[[ScriptedConn], Awaitable[None]]


class Scripted:
    """A stand-in STT service: connection ``n`` runs handler ``n`` (the last one after)."""

    def __init__(self, *handlers: Handler) -> None:
        self._handlers = handlers
        self.conns: list[ScriptedConn] = []
        self._server: Server | None = None
        self.url = ""

    async def __aenter__(self) -> Scripted:
        self._server = await serve(self._serve, "127.0.0.1", 0)
        port = next(iter(self._server.sockets)).getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, ws: ServerConnection) -> None:
        start = parse_client_message(await ws.recv())
        assert isinstance(start, StartMessage)
        conn = ScriptedConn(ws, start)
        self.conns.append(conn)
        await self._handlers[min(len(self.conns), len(self._handlers)) - 1](conn)


def final(segment_id: str, text: str, start_ms: int, end_ms: int) -> FinalMessage:
    return FinalMessage(
        segment_id=segment_id,
        text=text,
        start_ms=start_ms,
        end_ms=end_ms,
        confidence=0.9,
        words=[WireWord(word=text, start_ms=start_ms, end_ms=end_ms, confidence=0.9)],
        audio_end_ms=end_ms + 300,
    )


def push(stream: RoomscribeStream, seconds: float) -> None:
    for _ in range(round(seconds * 100)):
        stream.push_frame(rtc.AudioFrame(bytes(320), 16000, 1, 160))


async def next_final(stream: RoomscribeStream) -> stt.SpeechData:
    async for event in stream:
        if event.type is stt.SpeechEventType.FINAL_TRANSCRIPT:
            return event.alternatives[0]
    raise AssertionError("the stream ended without a final")


async def finals_until_end(stream: RoomscribeStream) -> list[str]:
    try:
        return [
            e.alternatives[0].text
            async for e in stream
            if e.type is stt.SpeechEventType.FINAL_TRANSCRIPT
        ]
    finally:
        await stream.aclose()


def contiguous(audio: list[tuple[int, int]]) -> tuple[int, int]:
    """The span the frames cover, checking they leave no hole and do not overlap."""
    for (offset, samples), (following, _) in itertools.pairwise(audio):
        assert following == offset + samples, f"hole or overlap at {offset + samples}"
    return audio[0][0], audio[-1][0] + audio[-1][1]


async def answer_until_end(conn: ScriptedConn) -> None:
    """Ready, read everything, commit it all at ``end``, close normally."""
    await conn.send(ReadyMessage())
    await conn.read_until(lambda c: "end" in c.messages)
    await conn.send(CommittedMessage(offset=conn.audio_end))


async def test_replay_is_trimmed_only_by_commits_and_resent_from_resume_offset() -> None:
    commit_now, close_now = asyncio.Event(), asyncio.Event()

    async def first(conn: ScriptedConn) -> None:
        await conn.send(ReadyMessage())
        await conn.read_until(lambda c: c.audio_end >= 16000)
        await conn.send(final("TR_a-000000000", "alpha", 100, 500))
        await commit_now.wait()
        await conn.send(CommittedMessage(offset=8000))
        await close_now.wait()
        await conn.ws.close(1012, "server shutting down")

    async def second(conn: ScriptedConn) -> None:
        # It holds everything before 12000 (0.75 s: in the middle of a 0.1 s frame).
        await conn.send(ReadyMessage(resume_offset=12000))
        await conn.read_until(lambda c: "end" in c.messages)
        await conn.send(final("TR_a-000001000", "bravo", 1000, 1400))
        await conn.send(CommittedMessage(offset=conn.audio_end))

    async with Scripted(first, second) as server:
        stream = RoomscribeSTT(url=server.url).stream(track_sid="TR_a", conn_options=FAST)
        push(stream, 1.0)
        assert (await next_final(stream)).text == "alpha"
        # A final says nothing about durability: every sample is still held.
        assert (stream.replay.start_offset, stream.replay.samples) == (0, 16000)
        commit_now.set()
        await eventually(lambda: stream.stats.committed_offset == 8000)
        assert (stream.replay.start_offset, stream.replay.samples) == (8000, 8000)
        close_now.set()
        await eventually(lambda: stream.stats.reconnects == 1)
        push(stream, 0.5)
        stream.end_input()
        rest = await finals_until_end(stream)
    assert rest == ["bravo"]
    again = server.conns[1].audio
    assert again[0] == (12000, 800), "resent from resume_offset, the straddling frame cut"
    assert contiguous(again) == (12000, 24000)
    assert stream.stats.replayed_samples == 4000
    assert stream.stats.committed_offset == 24000 and stream.replay.samples == 0


async def test_a_final_sent_again_after_a_reconnect_is_delivered_once() -> None:
    async def first(conn: ScriptedConn) -> None:
        await conn.send(ReadyMessage())
        await conn.read_until(lambda c: c.audio_end >= 8000)
        await conn.send(final("TR_a-000000100", "alpha", 100, 500))
        await conn.ws.close(1012, "server shutting down")  # before committing it

    async def second(conn: ScriptedConn) -> None:
        await conn.send(ReadyMessage())  # it lost everything: the client resends all
        await conn.read_until(lambda c: "end" in c.messages)
        await conn.send(
            final("TR_a-000000100", "alpha", 100, 500),
            final("TR_a-000000900", "bravo", 900, 1200),
            CommittedMessage(offset=conn.audio_end),
        )

    async with Scripted(first, second) as server:
        stream = RoomscribeSTT(url=server.url).stream(track_sid="TR_a", conn_options=FAST)
        push(stream, 0.5)
        assert (await next_final(stream)).text == "alpha"
        await eventually(lambda: stream.stats.reconnects == 1)
        push(stream, 0.5)
        stream.end_input()
        assert await finals_until_end(stream) == ["bravo"]
    assert contiguous(server.conns[1].audio) == (0, 16000)
    assert stream.stats.finals == 2


@pytest.mark.parametrize("retryable", [True, False], ids=["retryable", "older-service"])
async def test_an_idle_close_reconnects_when_audio_comes_back(retryable: bool) -> None:
    async def first(conn: ScriptedConn) -> None:
        await conn.send(ReadyMessage())
        await conn.read_until(lambda c: c.audio_end >= 3200)
        await conn.send(
            CommittedMessage(offset=3200),
            ErrorMessage(
                code=ErrorCode.IDLE_TIMEOUT, message="nothing received for 1 s", retryable=retryable
            ),
        )
        await conn.ws.close(1001, "idle")

    async def second(conn: ScriptedConn) -> None:
        await conn.send(ReadyMessage(resume_offset=3200))
        await conn.read_until(lambda c: "end" in c.messages)
        await conn.send(final("TR_a-000000250", "alpha", 250, 400))
        await conn.send(CommittedMessage(offset=conn.audio_end))

    async with Scripted(first, second) as server:
        stt_ = RoomscribeSTT(url=server.url, keepalive_interval_s=None)
        stream = stt_.stream(track_sid="TR_a", conn_options=FAST)
        push(stream, 0.2)
        await eventually(lambda: stream.stats.idle_closes == 1)
        await asyncio.sleep(0.3)
        assert len(server.conns) == 1, "no audio, no connection: it reconnects when audio comes"
        push(stream, 0.2)
        stream.end_input()
        assert await finals_until_end(stream) == ["alpha"]
    assert contiguous(server.conns[1].audio) == (3200, 6400)
    assert stream.stats.reconnects == 1 and stream.stats.replayed_samples == 0
    assert any(e.startswith("idle_timeout") for e in stream.stats.errors)


async def test_keepalives_are_sent_only_while_no_audio_is() -> None:
    async def hold(conn: ScriptedConn) -> None:
        await conn.send(ReadyMessage())
        await conn.read_on()

    async with Scripted(hold) as server:
        stream = RoomscribeSTT(url=server.url, keepalive_interval_s=0.5).stream(track_sid="TR_a")
        for _ in range(10):  # a second of audio, at its pace
            push(stream, 0.1)
            await asyncio.sleep(0.1)
        await eventually(lambda: server.conns and server.conns[0].messages.count("keepalive") >= 2)
        await stream.aclose()
    messages = server.conns[0].messages
    assert "keepalive" not in messages[: messages.index("keepalive")]
    last_audio = len(messages) - 1 - messages[::-1].index("audio")
    assert "keepalive" not in messages[:last_audio], "no keepalive while audio flows"
    assert stream.stats.keepalives >= 2


async def test_keepalive_and_language_changes_apply_as_documented() -> None:
    close_now = asyncio.Event()

    async def first(conn: ScriptedConn) -> None:
        await conn.send(ReadyMessage())
        await conn.read_until(lambda c: "keepalive" in c.messages)
        await close_now.wait()
        await conn.ws.close(1012, "server shutting down")

    async with Scripted(first, answer_until_end) as server:
        stt_ = RoomscribeSTT(url=server.url, keepalive_interval_s=None, language="en")
        stream = stt_.stream(track_sid="TR_a", conn_options=FAST)
        await eventually(lambda: server.conns)
        await asyncio.sleep(0.3)
        assert server.conns[0].messages == [], "keepalives off: none sent"
        with pytest.raises(ValueError):
            stt_.update_options(keepalive_interval_s=0)
        # Both go to the open stream: the keepalive at once, the language at its next connect.
        stt_.update_options(keepalive_interval_s=0.05, language="de")
        await eventually(lambda: stream.stats.keepalives >= 1)
        assert len(server.conns) == 1, "a language change alone does not reconnect"
        close_now.set()
        await eventually(lambda: stream.stats.reconnects == 1)
        stream.end_input()
        await finals_until_end(stream)
    assert [c.start.language for c in server.conns] == ["en", "de"]
    assert stream.start.language == "de" and stt_.options.language == "de"
    assert stt_.options.keepalive_interval_s == 0.05


async def test_only_a_stream_with_a_track_is_stored() -> None:
    async with Scripted(answer_until_end) as server:
        stt_ = RoomscribeSTT(url=server.url, room="standup")
        plain = stt_.stream()  # what an AgentSession opens: no track behind it
        track = stt_.stream(track_sid="TR_bob", participant="bob", room="daily")
        for stream in (plain, track):
            push(stream, 0.1)
            stream.end_input()
            await finals_until_end(stream)
    starts = {c.start.track_sid: c.start for c in server.conns}
    assert plain.track_sid.startswith("ST_") and starts[plain.track_sid].store is False
    bob = starts["TR_bob"]
    assert bob.store is True and (bob.room, bob.participant) == ("daily", "bob")


async def test_audio_past_the_replay_limit_is_dropped_and_counted() -> None:
    async def never_commit(conn: ScriptedConn) -> None:
        await conn.send(ReadyMessage())
        await conn.read_until(lambda c: "end" in c.messages)

    async with Scripted(never_commit) as server:
        stream = RoomscribeSTT(url=server.url, max_replay_s=0.5).stream(track_sid="TR_a")
        push(stream, 1.0)
        stream.end_input()
        await finals_until_end(stream)
    assert stream.stats.sent_samples == 16000
    assert stream.stats.replay_dropped_samples == 8000 and stream.replay.samples == 8000


@pytest.mark.parametrize("state", ["connected", "idle"])
async def test_closing_a_stream_ends_every_task_it_started(state: str) -> None:
    async def hold(conn: ScriptedConn) -> None:
        await conn.send(ReadyMessage())
        if state == "idle":
            await conn.read_until(lambda c: c.audio_end >= 1600)
            await conn.ws.close(1001, "idle")
        await conn.read_on()

    def running() -> list[asyncio.Task[Any]]:
        return [t for t in asyncio.all_tasks() if t.get_name().startswith("roomscribe-stt")]

    async with Scripted(hold) as server:
        stream = RoomscribeSTT(url=server.url).stream(track_sid="TR_a")
        push(stream, 0.1)
        if state == "idle":
            await eventually(lambda: stream.stats.idle_closes == 1)
        else:
            await eventually(lambda: server.conns and server.conns[0].audio_end >= 1600)
            assert len(running()) == 3
        await stream.aclose()
        assert running() == []
