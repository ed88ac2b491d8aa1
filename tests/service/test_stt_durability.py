"""The STT service's durability: commits only once stored, resume, idleness, memory, teardown.

Real WebSockets, real libvosk on the synthetic tone-word model, a real SQLite store (wrapped
where a test needs its writes to stall or fail).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import json
import sqlite3
import threading
import tracemalloc
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from starlette.websockets import WebSocketState
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from devkit.tones import synthesize
from roomscribe.auth import issue_internal_token
from roomscribe.errors import StoreError
from roomscribe.models import (
    Segment,
    SegmentIn,
    TrackCreate,
    TranscriptQuery,
    TranscriptSource,
)
from roomscribe.protocol import encode_audio_frame
from roomscribe.serving import running
from roomscribe.store import SQLiteTranscriptStore
from stt_service.app import create_app
from stt_service.handshake import handle_stream
from stt_service.manager import Drainable, PipelineManager
from stt_service.metrics import SttMetrics
from stt_service.recognizer import VoskModels
from stt_service.session import StreamSession, SttRuntime
from stt_service.settings import SttSettings
from stt_service.writer import SegmentWriter
from tests.service.test_stt_service import T0, drain, finals, send_pcm, start_message
from tests.stt_harness import SECRET, Service, ServiceProcess, ServiceRunner

pytestmark = pytest.mark.service

RATE = 16000


class GatedStore(SQLiteTranscriptStore):
    """A real SQLite store whose live-segment writes can be held back or made to fail."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.open = asyncio.Event()
        self.open.set()
        self.failing = False
        self.lookups_failing = False
        self.attempts = 0

    async def append_realtime_segments(self, track_sid: str, segments: Any) -> int:
        self.attempts += 1
        if self.failing:
            raise StoreError("injected outage")
        await self.open.wait()
        return await super().append_realtime_segments(track_sid, segments)

    async def find_track(self, track_sid: str) -> Any:
        if self.lookups_failing:
            raise StoreError("injected outage")
        return await super().find_track(track_sid)


@contextlib.asynccontextmanager
async def gated_service(
    make_service: Callable[..., ServiceRunner], tmp_path: Path, **overrides: Any
) -> AsyncIterator[tuple[Service, GatedStore]]:
    runner = make_service(**overrides)
    store = GatedStore(tmp_path / "stt.db")
    runner.store = store
    async with runner as svc:
        try:
            yield svc, store
        finally:
            store.open.set()  # a failed test must not leave the writer stuck at shutdown


async def read_until(
    ws: ClientConnection, done: Callable[[dict[str, Any]], bool], limit_s: float = 15
) -> list[dict[str, Any]]:
    """Messages up to and including the first one ``done`` accepts."""
    out: list[dict[str, Any]] = []
    async with asyncio.timeout(limit_s):
        while True:
            out.append(json.loads(await ws.recv()))
            if done(out[-1]):
                return out


async def read_for(ws: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """Whatever arrives within ``seconds``."""
    out: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                out.append(json.loads(await ws.recv()))
    return out


def is_final(m: dict[str, Any]) -> bool:
    return bool(m["type"] == "final")


def committed_at_least(offset: int) -> Callable[[dict[str, Any]], bool]:
    return lambda m: m["type"] == "committed" and m["offset"] >= offset


def commits(messages: list[dict[str, Any]]) -> list[int]:
    return [m["offset"] for m in messages if m["type"] == "committed"]


async def stored(store: SQLiteTranscriptStore, track: str = "TR_alice") -> list[Segment]:
    page = await store.query_transcript(
        TranscriptQuery(
            room="standup", track_sid=track, source=TranscriptSource.REALTIME, limit=1000
        )
    )
    return page.segments


async def open_stream(svc: Service, **start: Any) -> tuple[ClientConnection, dict[str, Any]]:
    ws = await svc.connect()
    await ws.send(start_message(**start))
    ready = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready
    return ws, ready


# (a) A final is committed only once it is stored -----------------------------------------------
async def test_a_final_is_committed_only_once_it_is_stored(
    make_service: Callable[..., ServiceRunner], tmp_path: Path
) -> None:
    async with gated_service(make_service, tmp_path) as (svc, store):
        store.open.clear()  # every segment write waits
        ws, _ = await open_stream(svc)
        pcm = synthesize(["alpha"])
        end = await send_pcm(ws, pcm)
        before = await read_until(ws, is_final)
        final = before[-1]
        # More audio, silent long enough for the recognizer's silence endpoint: its commit
        # must wait behind the unstored final too.
        end = await send_pcm(ws, np.zeros(6 * RATE, np.int16), offset=end)
        before += await read_for(ws, 1.0)
        assert final["text"] == "alpha"  # the caption did not wait for the store
        assert all(c * 1000 // RATE <= final["start_ms"] for c in commits(before)), before
        assert await stored(store) == []
        store.open.set()
        after = await read_until(ws, committed_at_least(final["end_ms"] * RATE // 1000))
        assert [s.id for s in await stored(store)] == [final["segment_id"]]
        await ws.send('{"type":"end"}')
        after += await drain(ws)
        assert commits(after)[-1] == end  # the end commits everything, silence included
        assert commits(before + after) == sorted(commits(before + after))
        await ws.close()


# (b) A store outage delays commits, loses nothing -------------------------------------------
async def test_a_store_outage_delays_commits_and_loses_nothing(
    make_service: Callable[..., ServiceRunner], tmp_path: Path
) -> None:
    async with gated_service(make_service, tmp_path) as (svc, store):
        store.failing = True
        ws, _ = await open_stream(svc)
        words = [["alpha", "bravo"], ["charlie"], ["delta", "echo"]]
        end = 0
        for utterance in words:
            end = await send_pcm(ws, synthesize(utterance), offset=end)
        during = await read_until(ws, lambda m: is_final(m) and m["text"] == "delta echo")
        during += await read_for(ws, 0.5)
        assert store.attempts >= 2  # the writer kept trying
        first = finals(during)[0]
        assert all(c * 1000 // RATE <= first["start_ms"] for c in commits(during)), during
        store.failing = False
        await ws.send('{"type":"end"}')
        after = await drain(ws)
        assert commits(after)[-1] == end
        segments = await stored(store)
        assert [s.text for s in segments] == ["alpha bravo", "charlie", "delta echo"]
        assert [s.id for s in segments] == [f["segment_id"] for f in finals(during)]


# (c) Reconnect with replay: resume at the committed point, no duplicates ----------------------
async def test_reconnect_resumes_at_the_commit_and_stores_each_segment_once(
    make_service: Callable[..., ServiceRunner], tmp_path: Path
) -> None:
    async with gated_service(make_service, tmp_path) as (svc, store):
        first, second = synthesize(["alpha"]), synthesize(["bravo", "charlie"])
        audio = np.concatenate([first, second])
        ws, ready = await open_stream(svc)
        assert ready["resume_offset"] == 0
        await send_pcm(ws, first)
        alpha = (await read_until(ws, is_final))[-1]
        got = await read_until(ws, committed_at_least(alpha["end_ms"] * RATE // 1000))
        committed = got[-1]["offset"]
        store.open.clear()  # the next final is sent, but not stored: never committed
        await send_pcm(ws, second, offset=len(first))
        bravo = (await read_until(ws, is_final))[-1]
        await ws.close()  # the connection drops

        ws, ready = await open_stream(svc)
        assert ready["resume_offset"] == committed
        # The client resends all it has, from before the resume point: that part is skipped.
        await send_pcm(ws, audio)
        again = (await read_until(ws, is_final))[-1]
        # The same audio, recognized again: its words start where bravo's did (the recognizer
        # is not bound to find exactly the same times twice, so the store keeps each word once
        # whatever the id).
        assert again["words"][0]["word"] == bravo["words"][0]["word"]
        store.open.set()
        await ws.send('{"type":"end"}')
        messages = await drain(ws)
        assert commits(messages)[-1] == len(audio)
        assert [f["text"] for f in finals(messages)] == []  # alpha was not recognized again
    # Both streams' bravo finals reached the store: it keeps one of them.
    segments = await stored(store)
    assert [s.id for s in segments] == [alpha["segment_id"], bravo["segment_id"]]
    assert [s.text for s in segments] == ["alpha", "bravo charlie"]


# (d) A restarted service resumes from the store -----------------------------------------------
def process_stream(service: ServiceProcess) -> Any:
    token = issue_internal_token(SECRET, audience="stt", subject="agent")
    url = service.url.replace("http", "ws") + "/v1/stream"
    return connect(url, additional_headers={"Authorization": f"Bearer {token}"})


async def persisted(service: ServiceProcess, offset: int) -> bool:
    track = await service.store.find_track("TR_alice")
    return track is not None and round(track.live.committed_s * RATE) >= offset


async def test_a_service_killed_and_restarted_resumes_from_the_store(
    tmp_path: Path, vosk_model_dir: Path
) -> None:
    service = ServiceProcess(tmp_path / "stt.db", vosk_model_dir)
    await service.start()
    try:
        pcm = np.concatenate([synthesize(["alpha"]), synthesize(["bravo"], tail_s=0.2)])
        async with process_stream(service) as ws:
            await ws.send(start_message())
            await ws.recv()
            await send_pcm(ws, pcm)
            alpha = (await read_until(ws, is_final))[-1]
            committed = (await read_until(ws, committed_at_least(alpha["end_ms"] * RATE // 1000)))[
                -1
            ]["offset"]
            # Wait until the writer has persisted that point, then crash (no drain, no
            # flush): "bravo" is heard but never final, so nothing commits past alpha.
            async with asyncio.timeout(10):
                while not await persisted(service, committed):  # noqa: ASYNC110 - a process
                    await asyncio.sleep(0.02)
            service.kill()
        await service.start()
        async with process_stream(service) as ws:
            await ws.send(start_message())
            ready = json.loads(await ws.recv())
            assert ready["resume_offset"] == committed
            await send_pcm(ws, pcm)  # replayed from the start: only bravo is new
            await ws.send('{"type":"end"}')
            messages = await drain(ws)
        assert [f["text"] for f in finals(messages)] == ["bravo"]
        service.terminate()
        assert [s.text for s in await stored(service.store)] == ["alpha", "bravo"]
    finally:
        service.kill()
        await service.store.close()


async def test_without_a_stored_commit_point_the_last_segment_says_where_to_resume(
    make_service: Callable[..., ServiceRunner], tmp_path: Path
) -> None:
    async with make_service() as svc:
        ws, _ = await open_stream(svc)
        await send_pcm(ws, synthesize(["alpha"]))
        alpha = (await read_until(ws, is_final))[-1]
        await read_until(ws, committed_at_least(alpha["end_ms"] * RATE // 1000))
        await ws.close()
    # A crash between storing a final and storing the commit point that follows it.
    with sqlite3.connect(tmp_path / "stt.db") as db:
        db.execute("UPDATE tracks SET doc = json_set(doc, '$.live.committed_s', 0.0)")
    async with make_service() as fresh:  # a new process: it remembers nothing
        assert (await fresh.store.get_track("TR_alice")).live.committed_s == 0.0
        ws, ready = await open_stream(fresh)
        assert ready["resume_offset"] == alpha["end_ms"] * RATE // 1000
        await ws.send('{"type":"end"}')
        await drain(ws)


# (e) Keepalive and the idle timeout ----------------------------------------------------------
async def test_keepalive_holds_a_silent_stream_open(
    make_service: Callable[..., ServiceRunner],
) -> None:
    async with make_service(stt_idle_timeout_s=0.4) as svc:
        ws, _ = await open_stream(svc)
        await send_pcm(ws, synthesize(["mike"]))
        for _ in range(8):  # 1.2 s, three times the idle limit, without audio
            await asyncio.sleep(0.15)
            await ws.send('{"type":"keepalive"}')
        await send_pcm(ws, synthesize(["lima"]), offset=10 * RATE)
        await ws.send('{"type":"end"}')
        messages = await drain(ws)
        assert [m for m in messages if m["type"] == "error"] == []
        assert [f["text"] for f in finals(messages)] == ["mike", "lima"]
        assert ws.close_code == 1000


async def test_an_idle_stream_is_closed_retryably(
    make_service: Callable[..., ServiceRunner],
) -> None:
    async with make_service(stt_idle_timeout_s=0.3) as svc:
        ws, _ = await open_stream(svc)
        await send_pcm(ws, synthesize(["mike"], tail_s=0.0))
        messages = await drain(ws)
        errors = [m for m in messages if m["type"] == "error"]
        assert [(e["code"], e["retryable"]) for e in errors] == [("idle_timeout", True)]
        assert ws.close_code == 1001
        assert [f["text"] for f in finals(messages)] == ["mike"]  # the pipeline was ended


# (f) A start must match the stored track ------------------------------------------------------
@pytest.mark.parametrize(
    "other", [{"who": "mallory"}, {"room": "elsewhere"}], ids=["participant", "room"]
)
async def test_a_known_track_must_keep_its_room_and_participant(
    make_service: Callable[..., ServiceRunner], other: dict[str, str]
) -> None:
    async with make_service() as svc:
        ws, _ = await open_stream(svc)
        await send_pcm(ws, synthesize(["alpha"]))
        await ws.send('{"type":"end"}')
        await drain(ws)
        async with svc.connect() as ws:
            await ws.send(start_message("TR_alice", **other))
            messages = await drain(ws)
        assert [(m["code"], m["retryable"]) for m in messages] == [("track_mismatch", False)]
        assert ws.close_code == 1003
        track = await svc.store.get_track("TR_alice")
        assert (track.room, track.participant_identity) == ("standup", "alice")


async def test_without_the_store_the_writer_still_refuses_a_mismatched_track(
    make_service: Callable[..., ServiceRunner], tmp_path: Path
) -> None:
    async with make_service() as svc:
        ws, _ = await open_stream(svc)
        await send_pcm(ws, synthesize(["alpha"]))
        await ws.send('{"type":"end"}')
        await drain(ws)
    # A restarted service whose store cannot answer the start's lookup: the stream starts,
    # and the writer finds the mismatch when it registers the track.
    async with gated_service(make_service, tmp_path) as (svc, store):
        store.lookups_failing = True
        ws, ready = await open_stream(svc, who="mallory")
        assert ready["resume_offset"] == 0
        await send_pcm(ws, synthesize(["bravo"]))
        messages = await drain(ws)
        errors = [m for m in messages if m["type"] == "error"]
        assert [(e["code"], e["retryable"]) for e in errors] == [("track_mismatch", False)]
        assert ws.close_code == 1003
        assert all(c == 0 for c in commits(messages))
        # While the writer holds the track, a start that names someone else is refused
        # before it begins (still without the store).
        first, _ = await open_stream(svc, who="alice", track="TR_bob")
        async with svc.connect() as other:
            await other.send(start_message("TR_bob", "mallory"))
            refused = await drain(other)
        assert [(m["code"], m["retryable"]) for m in refused] == [("track_mismatch", False)]
        assert other.close_code == 1003
        await first.send('{"type":"end"}')
        await drain(first)
        assert [s.text for s in await stored(store)] == ["alpha"]


# (g) A start with an absurd clock ------------------------------------------------------------
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e300", "1e400", "0"])
async def test_an_absurd_track_start_is_refused_cleanly(
    make_service: Callable[..., ServiceRunner], value: str
) -> None:
    raw = start_message().replace(
        '"track_started_at": 1790000000.0', f'"track_started_at": {value}'
    )
    assert value in raw
    async with make_service() as svc, svc.connect() as ws:
        await ws.send(raw)
        messages = await drain(ws)
    assert len(messages) == 1 and messages[0]["code"] == "bad_message"
    assert "track_started_at" in messages[0]["message"] and not messages[0]["retryable"]
    assert ws.close_code == 1003


async def test_a_stream_that_stores_nothing_commits_as_it_sends(
    make_service: Callable[..., ServiceRunner],
) -> None:
    async with make_service() as svc:
        ws, _ = await open_stream(svc, store=False)
        end = await send_pcm(ws, synthesize(["kilo"]))
        await ws.send('{"type":"end"}')
        messages = await drain(ws)
        final = finals(messages)[0]
        after = messages[messages.index(final) + 1 :]
        assert commits(after)[0] >= final["end_ms"] * RATE // 1000
        assert commits(messages)[-1] == end
        assert await svc.store.find_track("TR_alice") is None


# (h) Memory stays flat over many sessions -------------------------------------------------------
SESSIONS = 1000
TRACED = 300  # the last ones run under tracemalloc (it slows everything down)


async def test_memory_stays_flat_over_a_thousand_sessions(
    tmp_path: Path, vosk_models: VoskModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Small bounds on what is kept per track on purpose, so that "flat" is visible within
    # a thousand sessions: the manager's remembered offsets and the store's track cache.
    monkeypatch.setattr("stt_service.manager._REMEMBERED_TRACKS", 50)
    store = SQLiteTranscriptStore(tmp_path / "stt.db")
    store._track_meta.max_entries = 50
    settings = SttSettings(secret=SECRET, sqlite_path=tmp_path / "stt.db", stt_store_flush_s=0.002)
    app = create_app(settings, recognizer_factory=vosk_models, store=store)
    pcm = synthesize(["alpha"], lead_s=0.05, tail_s=0.05).astype("<i2").tobytes()
    token = issue_internal_token(SECRET, audience="stt", subject="agent")

    async def session(url: str, i: int) -> None:
        async with connect(url, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send(start_message(f"TR_{i:04d}", f"p{i:04d}"))
            await ws.recv()
            await ws.send(encode_audio_frame(0, pcm[: RATE * 2]))
            await ws.send(encode_audio_frame(RATE, pcm[RATE * 2 :]))
            await ws.send('{"type":"end"}')
            with contextlib.suppress(ConnectionClosed):
                async for _ in ws:
                    pass

    async with running(app) as base:
        url = base.replace("http", "ws") + "/v1/stream"
        runtime: SttRuntime = app.state.stt_runtime
        for i in range(100):  # warm up: caches, pools, lazily built state
            await session(url, i)
        await settle(runtime)
        gc.collect()
        objects = len(gc.get_objects())
        for i in range(100, SESSIONS - TRACED):
            await session(url, i)
        await settle(runtime)
        gc.collect()
        tracemalloc.start()
        baseline = tracemalloc.get_traced_memory()[0]
        for i in range(SESSIONS - TRACED, SESSIONS):
            await session(url, i)
        await settle(runtime)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - baseline
        tracemalloc.stop()
        # Per-track state is back to nothing (the writer) or at its bound (the caches).
        assert runtime.writer.tracked == 0 and runtime.writer.pending == 0
        assert runtime.manager.active == 0 and len(runtime.manager._offsets) == 50
        assert len(store._track_meta) == 50
        # What does grow is bounded caches of libraries filling up (pydantic-core's JSON
        # string cache keeps each new track id, about 0.5 KB a session in all). A session
        # left behind (its pipeline, queues, thread, recognizer) would be 5 KB and 30+
        # objects, so 1 KB and 3 objects a session are the bounds.
        assert grown < TRACED * 1024, f"traced memory grew by {grown} bytes in {TRACED}"
        assert len(gc.get_objects()) - objects < 3 * (SESSIONS - 100)
    page = await store.query_transcript(
        TranscriptQuery(room="standup", source=TranscriptSource.REALTIME, limit=1000)
    )
    assert len(page.segments) == SESSIONS
    await store.close()


async def settle(runtime: SttRuntime) -> None:
    async with asyncio.timeout(10):
        while runtime.writer.tracked or runtime.writer.pending:  # noqa: ASYNC110 - counters
            await asyncio.sleep(0.01)


# (i) Teardown is exception-safe ------------------------------------------------------------------
class Boom(Exception):
    """A failure nobody planned for."""


class FakeSocket:
    """The parts of a Starlette WebSocket a stream uses, with failures on demand."""

    def __init__(self, *, fail_send_after: int | None = None) -> None:
        self.headers: dict[str, str] = {}
        self.application_state = WebSocketState.CONNECTED
        self.inbox: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.sent: list[dict[str, Any]] = []
        self.closed: int | None = None
        self.fail_send_after = fail_send_after
        self.fail_receive = False

    async def accept(self) -> None:
        return None

    async def receive(self) -> dict[str, Any]:
        message = await self.inbox.get()
        if self.fail_receive:
            raise Boom("receive exploded")
        return message

    async def send_text(self, text: str) -> None:
        if self.fail_send_after is not None and len(self.sent) >= self.fail_send_after:
            raise Boom("send exploded")
        self.sent.append(json.loads(text))

    async def close(self, code: int = 1000, reason: str = "") -> None:
        self.closed = code
        self.application_state = WebSocketState.DISCONNECTED

    def text(self, raw: str) -> None:
        self.inbox.put_nowait({"type": "websocket.receive", "text": raw})

    def audio(self, offset: int, pcm: bytes) -> None:
        self.inbox.put_nowait(
            {"type": "websocket.receive", "bytes": encode_audio_frame(offset, pcm)}
        )


class RecordingManager(PipelineManager):
    """Remembers every stream it admitted (one may end before a test looks)."""

    def __init__(self, max_clients: int) -> None:
        super().__init__(max_clients)
        self.admitted: list[Drainable] = []

    def admit(self, session: Drainable) -> None:
        super().admit(session)
        self.admitted.append(session)


class Stage:
    """A runtime as the app builds it, driven without a server."""

    def __init__(self, tmp_path: Path, models: VoskModels) -> None:
        self.store = SQLiteTranscriptStore(tmp_path / "stt.db")
        self.settings = SttSettings(secret=SECRET, stt_auth=False, stt_store_flush_s=0.01)
        self.metrics = SttMetrics()
        self.manager = RecordingManager(4)
        self.writer = SegmentWriter(self.store, self.metrics, flush_interval_s=0.01)
        self.runtime = SttRuntime(
            self.settings, models, self.writer, self.metrics, self.manager, self.store
        )

    async def __aenter__(self) -> Stage:
        await self.store.init()
        self.writer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.writer.close()
        await self.store.close()

    def session(self) -> StreamSession:
        (session,) = self.manager.admitted
        return cast(StreamSession, session)

    async def started(self, ws: FakeSocket) -> tuple[asyncio.Task[None], StreamSession]:
        ws.text(start_message())
        ws.audio(0, synthesize(["alpha"], tail_s=0.0).astype("<i2").tobytes()[:RATE])
        task = asyncio.create_task(handle_stream(cast(Any, ws), self.runtime))
        async with asyncio.timeout(10):
            while not ws.sent:  # noqa: ASYNC110 - polling what the stream sent
                await asyncio.sleep(0.005)
        return task, self.session()

    async def assert_torn_down(self, session: StreamSession) -> None:
        pipeline = session._pipeline
        assert pipeline is not None and not pipeline.alive
        assert self.metrics.registry.get_sample_value("stt_active_clients") == 0
        assert self.manager.active == 0
        async with asyncio.timeout(5):
            while self.writer.tracked:  # noqa: ASYNC110 - the writer frees it after a flush
                await asyncio.sleep(0.01)
        current = asyncio.current_task()
        left = [t for t in asyncio.all_tasks() if t is not current and not t.done()]
        assert [t.get_name() for t in left] == ["segment-writer"], [t.get_coro() for t in left]
        assert not [t for t in threading.enumerate() if t.name.startswith("stt-TR_")]


async def test_a_socket_that_fails_to_send_tears_the_stream_down(
    tmp_path: Path, vosk_models: VoskModels
) -> None:
    async with Stage(tmp_path, vosk_models) as stage:
        ws = FakeSocket(fail_send_after=2)  # ready and the first commit, then it explodes
        task, session = await stage.started(ws)
        ws.audio(RATE // 2, bytes(RATE))  # enough for a partial: the send that fails
        await asyncio.wait_for(task, 10)  # returns: the failure did not escape, nor hang
        assert [m["type"] for m in ws.sent] == ["ready", "committed"]
        await stage.assert_torn_down(session)


async def test_a_socket_that_fails_to_receive_tears_the_stream_down(
    tmp_path: Path, vosk_models: VoskModels
) -> None:
    async with Stage(tmp_path, vosk_models) as stage:
        ws = FakeSocket()
        task, session = await stage.started(ws)
        ws.fail_receive = True
        ws.text('{"type":"keepalive"}')
        await asyncio.wait_for(task, 10)
        await stage.assert_torn_down(session)
        assert ws.closed == 1013


async def test_a_cancelled_stream_leaves_no_task_and_no_thread(
    tmp_path: Path, vosk_models: VoskModels
) -> None:
    async with Stage(tmp_path, vosk_models) as stage:
        ws = FakeSocket()
        task, session = await stage.started(ws)
        await asyncio.sleep(0.05)  # receiving, sending, committing, ticking
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await stage.assert_torn_down(session)
        # The writer still stores what the stream had handed over.
        assert stage.writer.pending == 0


def a_track(sid: str) -> TrackCreate:
    origin = datetime.fromtimestamp(T0, UTC)
    return TrackCreate(
        track_sid=sid,
        room="standup",
        participant_identity="alice",
        published_at=origin,
        live_origin=origin,
    )


async def test_the_writer_frees_a_track_only_once_its_buffer_is_written(
    tmp_path: Path,
) -> None:
    store = GatedStore(tmp_path / "stt.db")
    await store.init()
    writer = SegmentWriter(store, SttMetrics(), flush_interval_s=0.01)
    writer.start()
    try:
        writer.ensure_track(a_track("TR_alice"))
        store.open.clear()
        writer.add_segment("TR_alice", SegmentIn(id="TR_alice-1", start=0, end=1, text="a"))
        waiter = writer.stored("TR_alice")
        writer.release("TR_alice")
        await asyncio.sleep(0.1)
        assert writer.tracked == 1 and not waiter.done()
        store.open.set()
        await asyncio.wait_for(waiter, 5)
        await settle_writer(writer)
    finally:
        await writer.close()
        await store.close()


async def settle_writer(writer: SegmentWriter) -> None:
    async with asyncio.timeout(5):
        while writer.tracked:  # noqa: ASYNC110 - polling a counter
            await asyncio.sleep(0.01)


async def test_segments_dropped_on_overflow_are_never_committed_past(tmp_path: Path) -> None:
    store = GatedStore(tmp_path / "stt.db")
    await store.init()
    writer = SegmentWriter(store, SttMetrics(), flush_interval_s=0.01, max_buffered=2)
    writer.start()
    try:
        writer.ensure_track(a_track("TR_x"))
        store.failing = True
        for i in range(2):
            writer.add_segment("TR_x", SegmentIn(id=f"s{i}", start=i, end=i + 1, text="a"))
        early = writer.stored("TR_x")
        writer.add_segment("TR_x", SegmentIn(id="s2", start=2, end=3, text="a"))  # drops s0
        late = writer.stored("TR_x")
        with pytest.raises(Exception, match="dropped"):
            await asyncio.wait_for(early, 5)
        with pytest.raises(Exception, match="dropped"):
            await asyncio.wait_for(late, 5)
        assert writer.lost_segments == 1
    finally:
        store.failing = False
        with contextlib.suppress(Exception):
            await writer.close(attempts=1)
        await store.close()
