"""The MongoDB store under the faults a real deployment has, and what its callers then do.

mongomock never fails; :class:`tests.fakes.mongo.Faults` makes it fail like a server does
(connection lost, timeouts, a write applied but its answer lost).
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import httpx
import jwt
import numpy as np
import pytest
import srt
import webvtt
from pymongo.errors import (
    AutoReconnect,
    DuplicateKeyError,
    NetworkTimeout,
    OperationFailure,
    PyMongoError,
    ServerSelectionTimeoutError,
)

from devkit.livekit_emulator import encode_ogg_opus
from orchestrator_service import api as rest_api
from orchestrator_service.app import create_app
from orchestrator_service.gateway import LiveKitGateway
from orchestrator_service.metrics import OrchestratorMetrics
from orchestrator_service.rooms import RoomLifecycle
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.errors import StoreError
from roomscribe.models import (
    EgressInfo,
    EgressStatus,
    RoomStatus,
    SegmentIn,
    Summary,
    TrackCreate,
    TrackStatus,
    TranscriptQuery,
    TranscriptSource,
    WhisperStats,
)
from roomscribe.objectstore import LocalObjectStore
from roomscribe.store import MongoTranscriptStore
from stt_service.jobs import WhisperWorker
from stt_service.metrics import SttMetrics
from stt_service.whisper import Transcript
from stt_service.writer import SegmentWriter
from tests.fakes.mongo import FakeAsyncDatabase, Faults
from tests.servers import serve

pytestmark = pytest.mark.service

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


async def faulty_store() -> tuple[MongoTranscriptStore, Faults]:
    faults = Faults()
    store = MongoTranscriptStore(cast(Any, FakeAsyncDatabase(faults=faults)), chunk_size=4)
    await store.init()
    await store.register_room("r")
    await store.upsert_track(
        TrackCreate(track_sid="TR_a", room="r", participant_identity="alice", published_at=T0)
    )
    return store, faults


def seg(i: int) -> SegmentIn:
    return SegmentIn(id=f"s{i:04d}", start=float(i), end=i + 0.5, text=f"word {i}")


CALLS: dict[str, Callable[[MongoTranscriptStore], Awaitable[object]]] = {
    "register_room": lambda s: s.register_room("r2"),
    "find_room": lambda s: s.find_room("r"),
    "list_rooms": lambda s: s.list_rooms(),
    "transition_room": lambda s: s.transition_room(
        "r", to=RoomStatus.ACTIVE, from_={RoomStatus.REGISTERED}
    ),
    "add_participant": lambda s: s.add_participant("r", "bob"),
    "upsert_track": lambda s: s.upsert_track(
        TrackCreate(track_sid="TR_b", room="r", participant_identity="bob", published_at=T0)
    ),
    "list_tracks": lambda s: s.list_tracks("r"),
    "set_track_status": lambda s: s.set_track_status("TR_a", TrackStatus.RECORDED),
    "update_egress": lambda s: s.update_egress("TR_a", EgressInfo(id="EG_1")),
    "add_live_stats": lambda s: s.add_live_stats("TR_a", received_s=1.0, dropped_s=0.0),
    "count_pending_tracks": lambda s: s.count_pending_tracks("r"),
    "append_realtime_segments": lambda s: s.append_realtime_segments("TR_a", [seg(1)]),
    "replace_whisper_segments": lambda s: s.replace_whisper_segments(
        "TR_a", [seg(1)], stats=WhisperStats(model="m", audio_s=1.0, real_time_factor=0.1)
    ),
    "query_transcript": lambda s: s.query_transcript(
        TranscriptQuery(room="r", source=TranscriptSource.BEST)
    ),
    "claim_job": lambda s: s.claim_job("w", lease_s=10, max_attempts=3),
    "renew_lease": lambda s: s.renew_lease("TR_a", "w", lease_s=10),
    "complete_job": lambda s: s.complete_job("TR_a", "w"),
    "finish_job": lambda s: s.finish_job(
        "TR_a",
        "w",
        [seg(1)],
        stats=WhisperStats(model="m", audio_s=1.0, real_time_factor=0.1),
        lease_s=10,
    ),
    "ping": lambda s: s.ping(),
}


@pytest.mark.parametrize("call", list(CALLS))
@pytest.mark.parametrize("error", [AutoReconnect("gone"), NetworkTimeout("slow")], ids=repr)
async def test_every_call_raises_store_errors_not_driver_errors(call: str, error: Any) -> None:
    store, faults = await faulty_store()
    faults.fail_next(error=error)
    with pytest.raises(StoreError):
        await CALLS[call](store)
    assert faults.injected == 1
    await CALLS[call](store)  # the next attempt, on a healthy connection, works


async def test_the_segment_writer_survives_outages_and_stores_every_final_once() -> None:
    store, faults = await faulty_store()
    writer = SegmentWriter(store, SttMetrics(), flush_interval_s=0.01)
    writer.start()
    try:
        writer.ensure_track(
            TrackCreate(track_sid="TR_a", room="r", participant_identity="alice", published_at=T0)
        )
        for i in range(10):
            # A lost connection, then a write applied but never acknowledged (the retry
            # must not store it twice).
            faults.fail_next(1, error=AutoReconnect("primary stepped down"))
            faults.fail_next(1, on="update_one", after_write=True)
            writer.add_segment("TR_a", seg(i))
            async with asyncio.timeout(10):
                while writer.pending or faults.pending:  # noqa: ASYNC110 - polling counters
                    await asyncio.sleep(0.01)
    finally:
        await writer.close()
    page = await store.query_transcript(
        TranscriptQuery(room="r", source=TranscriptSource.REALTIME, limit=100)
    )
    assert [s.id for s in page.segments] == [f"s{i:04d}" for i in range(10)]
    assert faults.injected == 20


async def test_the_whisper_worker_rides_out_store_outages(tmp_path: Path) -> None:
    store, faults = await faulty_store()
    objects = LocalObjectStore(tmp_path / "objects")
    await objects.init()
    await objects.put_bytes("rooms/r/alice/TR_a.ogg", encode_ogg_opus(np.zeros(16000, np.int16)))
    await store.update_egress(
        "TR_a",
        EgressInfo(id="EG_1", status=EgressStatus.COMPLETE, object_key="rooms/r/alice/TR_a.ogg"),
    )
    await store.set_track_status("TR_a", TrackStatus.RECORDED)

    def transcribe(audio: Path, *, track_sid: str, language: str | None) -> Transcript:
        return Transcript(segments=[seg(1)], language="en", audio_s=1.0, elapsed_s=0.1)

    worker = WhisperWorker(
        store, objects, transcribe, model_name="m", concurrency=2, poll_s=0.01, lease_s=30
    )
    # Claims fail for a while (a failover), then the job's own writes fail once.
    faults.fail_next(4, on="find_one_and_update", error=AutoReconnect("no primary"))
    running = asyncio.create_task(worker.run())
    try:
        async with asyncio.timeout(20):
            while (await store.get_track("TR_a")).status is not TrackStatus.TRANSCRIBED:
                assert not running.done(), running
                await asyncio.sleep(0.02)
    finally:
        worker.stop()
        await running
    assert faults.injected == 4 and worker.done == 1


# Knowing which store call a driver call belongs to -------------------------------------------
@dataclass(eq=False)
class Invocation:
    """One call of a store method (the outermost one: ``get_room`` inside it is part of it)."""

    method: str
    kwargs: dict[str, Any]
    calls: int = 0


_INVOCATION: ContextVar[Invocation | None] = ContextVar("store_invocation", default=None)


@dataclass(frozen=True)
class Call:
    """One driver call: the store method it was made for, and which of that method's it was."""

    store: str
    driver: str
    nth: int

    def __str__(self) -> str:
        return f"{self.store}[{self.nth}].{self.driver}"


_WRITES = frozenset(
    {
        "insert_one",
        "insert_many",
        "update_one",
        "update_many",
        "replace_one",
        "delete_one",
        "delete_many",
        "find_one_and_update",
    }
)


@dataclass(eq=False)
class _Arm:
    error: PyMongoError
    after_write: bool
    at: int | None = None
    method: str | None = None
    nth: int = 0
    where: Callable[[dict[str, Any]], bool] | None = None
    invocation: Invocation | None = field(default=None, repr=False)


class TracedFaults(Faults):
    """:class:`Faults` that record every driver call and can fail one chosen call.

    ``fail_call(k)`` fails the ``k``-th driver call from now; ``fail_in(method, nth=i)`` the
    ``i``-th driver call of the next call of store method ``method`` (matching ``where``).
    """

    def __init__(self) -> None:
        super().__init__()
        self.calls: list[Call] = []
        self._arms: list[_Arm] = []

    def fail_call(self, k: int, *, error: PyMongoError, after_write: bool = False) -> None:
        self._arms.append(_Arm(error, after_write, at=len(self.calls) + k))

    def fail_in(
        self,
        method: str,
        *,
        nth: int = 0,
        error: PyMongoError,
        after_write: bool = False,
        where: Callable[[dict[str, Any]], bool] | None = None,
    ) -> None:
        self._arms.append(_Arm(error, after_write, method=method, nth=nth, where=where))

    def take(self, method: str) -> tuple[PyMongoError, bool] | None:
        invocation = _INVOCATION.get()
        call = Call(
            invocation.method if invocation else "?", method, invocation.calls if invocation else 0
        )
        if invocation is not None:
            invocation.calls += 1
        index = len(self.calls)
        self.calls.append(call)
        for arm in self._arms:
            if arm.at is not None:
                hit = arm.at == index
            elif invocation is None or invocation.method != arm.method:
                continue
            elif arm.invocation is None and (arm.where is None or arm.where(invocation.kwargs)):
                arm.invocation = invocation
                hit = call.nth == arm.nth
            else:
                hit = arm.invocation is invocation and call.nth == arm.nth
            if hit:
                self._arms.remove(arm)
                self.injected += 1
                return arm.error, arm.after_write
        return super().take(method)

    @property
    def pending(self) -> int:
        return super().pending + len(self._arms)


def _traced_method(name: str, bound: Callable[..., Awaitable[Any]]) -> Callable[..., Any]:
    @functools.wraps(bound)
    async def call(*args: Any, **kwargs: Any) -> Any:
        if _INVOCATION.get() is not None:
            return await bound(*args, **kwargs)
        token = _INVOCATION.set(Invocation(name, kwargs))
        try:
            return await bound(*args, **kwargs)
        finally:
            _INVOCATION.reset(token)

    return call


async def traced_store() -> tuple[MongoTranscriptStore, TracedFaults]:
    """A MongoDB store over the faulty adapter whose driver calls are each attributed."""
    faults = TracedFaults()
    store = MongoTranscriptStore(cast(Any, FakeAsyncDatabase(faults=faults)), chunk_size=4)
    for name, _ in inspect.getmembers(type(store), inspect.iscoroutinefunction):
        if not name.startswith("_"):
            setattr(store, name, _traced_method(name, getattr(store, name)))
    await store.init()
    return store, faults


# The REST API under store faults -------------------------------------------------------------
API_SECRET = "api-test-secret-0123456789abcdefghijkl"
ADMIN = jwt.encode(
    {"sub": "tester", "exp": int(datetime.now(UTC).timestamp()) + 3600, "roles": ["admin"]},
    API_SECRET,
    algorithm="HS256",
)
#: What a driver's error text holds that no client should see: hosts, index names, topology.
LEAKS = ("db-1.internal", "E11000", "Topology", "roomscribe.rooms", "Traceback")


def _errors() -> dict[str, Callable[[], PyMongoError]]:
    return {
        "AutoReconnect": lambda: AutoReconnect("connection reset by db-1.internal:27017"),
        "NetworkTimeout": lambda: NetworkTimeout("db-1.internal:27017: timed out"),
        "OperationFailure": lambda: OperationFailure(
            "not primary and secondaryOk=false (db-1.internal)", code=13435
        ),
        "ServerSelectionTimeoutError": lambda: ServerSelectionTimeoutError(
            "db-1.internal:27017: [Errno 111] Connection refused, Timeout: 30s, "
            "Topology Description: <TopologyDescription topology_type: Unknown>"
        ),
    }


READ_ERRORS = _errors()
#: Faults only a write can have: (error, applied before it failed).
WRITE_ERRORS: dict[str, tuple[Callable[[], PyMongoError], bool]] = {
    "DuplicateKeyError": (
        lambda: DuplicateKeyError(
            "E11000 duplicate key error collection: roomscribe.rooms index: _id_", code=11000
        ),
        False,
    ),
    "ack-lost": (lambda: AutoReconnect("db-1.internal:27017: connection closed"), True),
}


async def seed_meeting(store: MongoTranscriptStore) -> None:
    """standup (completed, summarized, two speakers, Whisper on one), retro and planning."""
    for name in ("standup", "retro", "planning"):
        await store.register_room(name, sid=f"RM_{name}")
    await store.transition_room("retro", to=RoomStatus.ACTIVE, from_={RoomStatus.REGISTERED})
    for sid, who, name, offset in (("TR_a", "alice", "Alice", 0.0), ("TR_b", "bob", "Bob", 1.5)):
        await store.upsert_track(
            TrackCreate(
                track_sid=sid,
                room="standup",
                participant_identity=who,
                participant_name=name,
                published_at=T0 + timedelta(seconds=offset),
            )
        )
        await store.append_realtime_segments(
            sid,
            [
                SegmentIn(id=f"{sid}-{i:03d}", start=2.0 * i, end=2.0 * i + 1.5, text=f"{who} {i}")
                for i in range(9)
            ],
        )
        await store.set_track_status(sid, TrackStatus.TRANSCRIBED)
    await store.replace_whisper_segments(
        "TR_a",
        [
            SegmentIn(id=f"TR_a-w{i}", start=4.0 * i, end=4.0 * i + 3.5, text=f"Alice said {i}")
            for i in range(5)
        ],
        stats=WhisperStats(model="tiny", audio_s=20.0, real_time_factor=0.1, segments=5),
    )
    await store.transition_room("standup", to=RoomStatus.COMPLETED, from_={RoomStatus.REGISTERED})
    await store.set_summary("standup", Summary(text="Earlier summary.", model="fake"))


@dataclass
class Rest:
    client: httpx.AsyncClient
    store: MongoTranscriptStore
    faults: TracedFaults
    lifecycle: RoomLifecycle
    #: Index into ``faults.calls`` at each summary start (a request's own calls end there).
    summary_starts: list[int]


@pytest.fixture
async def rest() -> AsyncIterator[Rest]:
    """The orchestrator on a real server, over the MongoDB store on the faulty adapter."""
    store, faults = await traced_store()
    await seed_meeting(store)
    # No reconciler round during a test: it would make store calls of its own.
    settings = OrchestratorSettings(api_jwt_secret=API_SECRET, reconcile_interval_s=3600)
    app = create_app(settings, store=store)
    async with serve(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as client:
        lifecycle: RoomLifecycle = app.state.orchestrator.lifecycle
        starts: list[int] = []
        background = lifecycle._summarize_in_background

        def mark_then_summarize(room_name: str) -> None:
            starts.append(len(faults.calls))
            background(room_name)

        lifecycle._summarize_in_background = mark_then_summarize  # type: ignore[method-assign]
        yield Rest(client, store, faults, lifecycle, starts)


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    ok: int = 200


ROUTES = {
    "rooms": Route("GET", "/v1/rooms"),
    "room": Route("GET", "/v1/rooms/standup"),
    "transcript": Route("GET", "/v1/rooms/standup/transcript?limit=1000"),
    "track-transcript": Route("GET", "/v1/rooms/standup/tracks/TR_b/transcript"),
    **{
        f"transcript.{fmt}": Route("GET", f"/v1/rooms/standup/transcript.{fmt}")
        for fmt in ("srt", "vtt", "txt", "json")
    },
}
REGENERATE = Route("POST", "/v1/rooms/standup/summary:regenerate", ok=202)


async def ask(client: httpx.AsyncClient, route: Route) -> httpx.Response | str:
    """The whole answer, or what went wrong on the wire (a stream cut half-way)."""
    try:
        return await client.request(
            route.method, route.path, headers={"Authorization": f"Bearer {ADMIN}"}
        )
    except httpx.TransportError as exc:
        return f"broken response: {exc!r}"


def check_content(name: str, res: httpx.Response) -> None:
    """What the seeded meeting's answer on ``name`` must hold."""
    ids = [f"TR_a-w{i}" for i in range(5)] + [f"TR_b-{i:03d}" for i in range(9)]
    if name == "rooms":
        assert sorted(r["name"] for r in res.json()["rooms"]) == ["planning", "retro", "standup"]
    elif name == "room":
        body = res.json()
        assert [t["track_sid"] for t in body["tracks"]] == ["TR_a", "TR_b"]
        assert body["summary"]["text"] == "Earlier summary."
    elif name == "transcript":
        assert sorted(s["id"] for s in res.json()["segments"]) == sorted(ids)
    elif name == "track-transcript":
        assert [s["id"] for s in res.json()["segments"]] == ids[5:]
    elif name == "transcript.srt":
        assert len(list(srt.parse(res.text))) == 14
    elif name == "transcript.vtt":
        captions = webvtt.from_string(res.text).captions
        assert sorted(c.identifier or "" for c in captions) == sorted(ids)
    elif name == "transcript.txt":
        assert len(res.text.splitlines()) == 14 and "Alice: Alice said 4" in res.text
    elif name == "transcript.json":
        assert sorted(s["id"] for s in json.loads(res.text)["segments"]) == sorted(ids)
    else:
        raise AssertionError(name)


def assert_store_unavailable(res: httpx.Response | str, where: str) -> None:
    assert isinstance(res, httpx.Response), f"{where}: {res}"
    assert res.status_code == 503, f"{where}: {res.status_code} {res.text[:300]}"
    assert res.headers["content-type"] == "application/json", where
    body = res.json()
    assert set(body) == {"error"} and set(body["error"]) == {"code", "message"}, body
    assert body["error"]["code"] == "store_unavailable", body
    assert int(res.headers["retry-after"]) > 0, where
    for leak in LEAKS:
        assert leak not in res.text, f"{where}: {res.text}"


def assert_same(res: httpx.Response | str, baseline: httpx.Response, where: str) -> None:
    assert isinstance(res, httpx.Response), f"{where}: {res}"
    assert res.status_code == baseline.status_code, f"{where}: {res.status_code} {res.text[:300]}"
    assert res.text == baseline.text, where


async def request_calls(rest: Rest, route: Route) -> tuple[httpx.Response, list[Call]]:
    """A healthy request, and the driver calls it made (not those of a summary it started)."""
    start = len(rest.faults.calls)
    del rest.summary_starts[:]
    res = await ask(rest.client, route)
    assert isinstance(res, httpx.Response) and res.status_code == route.ok, res
    end = rest.summary_starts[0] if rest.summary_starts else len(rest.faults.calls)
    await rest.lifecycle.idle()
    calls = rest.faults.calls[start:end]
    assert calls, "the request made no store call"
    return res, calls


@pytest.mark.parametrize("kind", list(READ_ERRORS))
@pytest.mark.parametrize("name", list(ROUTES))
async def test_a_read_answers_a_clean_503_on_any_failing_call_then_recovers(
    rest: Rest, name: str, kind: str
) -> None:
    route = ROUTES[name]
    baseline, calls = await request_calls(rest, route)
    check_content(name, baseline)
    for k, call in enumerate(calls):
        rest.faults.fail_call(k, error=READ_ERRORS[kind]())
        res = await ask(rest.client, route)
        assert rest.faults.pending == 0, f"{call} was not made again"
        assert_store_unavailable(res, f"{name}, {kind} at {call}")
        # The fault is gone: the very next request has the whole answer.
        assert_same(await ask(rest.client, route), baseline, f"{name} after a fault at {call}")


def _leaves_the_room_claimed(call: Call, after_write: bool) -> bool:
    # See test_a_regenerate_failing_half_way_through_its_claim_can_be_retried.
    return call.store == "complete_idle_room" and (call.nth > 0 or after_write)


async def assert_summarized_again(rest: Rest, res: httpx.Response | str, where: str) -> None:
    assert isinstance(res, httpx.Response), f"{where}: {res}"
    assert res.status_code == 202, f"{where}: {res.status_code} {res.text[:300]}"
    assert res.json() == {"room": "standup", "status": "summarizing"}
    await rest.lifecycle.idle()
    room = await rest.store.get_room("standup")
    assert room.status is RoomStatus.COMPLETED, f"{where}: {room.status} {room.status_reason}"
    assert room.summary is not None and room.summary.model.startswith("extractive"), where


@pytest.mark.parametrize("kind", [*READ_ERRORS, *WRITE_ERRORS])
async def test_a_summary_regenerate_answers_a_clean_503_then_recovers(
    rest: Rest, kind: str
) -> None:
    baseline, calls = await request_calls(rest, REGENERATE)
    await assert_summarized_again(rest, baseline, "healthy")
    tried = 0
    for k, call in enumerate(calls):
        if kind in WRITE_ERRORS:
            make, after_write = WRITE_ERRORS[kind]
            if call.driver not in _WRITES:
                continue
        else:
            make, after_write = READ_ERRORS[kind], False
        if _leaves_the_room_claimed(call, after_write):
            continue
        tried += 1
        rest.faults.fail_call(k, error=make(), after_write=after_write)
        res = await ask(rest.client, REGENERATE)
        assert rest.faults.pending == 0, f"{call} was not made again"
        assert_store_unavailable(res, f"regenerate, {kind} at {call}")
        await rest.lifecycle.idle()
        again = await ask(rest.client, REGENERATE)
        await assert_summarized_again(rest, again, f"regenerate after {kind} at {call}")
    assert tried


@pytest.mark.parametrize(
    ("nth", "after_write"),
    [(1, False), (0, True)],
    ids=["the-check-after-the-claim-fails", "the-claim-answer-is-lost"],
)
async def test_a_regenerate_failing_half_way_through_its_claim_can_be_retried(
    rest: Rest, nth: int, after_write: bool
) -> None:
    rest.faults.fail_in(
        "complete_idle_room", nth=nth, error=AutoReconnect("gone"), after_write=after_write
    )
    assert_store_unavailable(await ask(rest.client, REGENERATE), "the claim")
    await rest.lifecycle.idle()
    await assert_summarized_again(rest, await ask(rest.client, REGENERATE), "the retry")


async def test_an_export_fault_mid_stream_is_retried_or_cuts_the_stream(
    rest: Rest, monkeypatch: pytest.MonkeyPatch
) -> None:
    routes = {name: route for name, route in ROUTES.items() if name.startswith("transcript.")}
    whole = {name: await request_calls(rest, route) for name, route in routes.items()}
    # Pages of 4: the export reads several pages while the answer is already under way.
    monkeypatch.setattr(rest_api, "_EXPORT_PAGE", 4)
    monkeypatch.setattr(rest_api, "_EXPORT_RETRY_S", 0.001)
    for name, route in routes.items():
        baseline, calls = await request_calls(rest, route)
        assert_same(baseline, whole[name][0], f"{name} in pages")
        streamed = 0
        for k, call in enumerate(calls):
            rest.faults.fail_call(k, error=AutoReconnect("db-1.internal:27017: reset"))
            res = await ask(rest.client, route)
            assert rest.faults.pending == 0, f"{call} was not made again"
            if isinstance(res, httpx.Response) and res.status_code == 200:
                streamed += 1  # after the first page: retried, and nothing is missing
                assert_same(res, baseline, f"{name}, fault at {call}")
            else:
                assert_store_unavailable(res, f"{name}, fault at {call}")
            assert_same(await ask(rest.client, route), baseline, f"{name} after {call}")
        assert streamed, "no fault fell while the export streamed"
        # The store stays down mid-stream: the answer is cut off (no final chunk), never a
        # well-formed file that silently lacks the rest of the meeting.
        pages = [i for i, c in enumerate(calls) if c.store == "query_transcript"]
        for i in range(pages[-1], pages[-1] + 50):
            rest.faults.fail_call(i, error=AutoReconnect("down"))
        res = await ask(rest.client, route)
        assert isinstance(res, str) and "broken response" in res, name
        del rest.faults._arms[:]
        assert_same(await ask(rest.client, route), baseline, f"{name} after the outage")


async def test_readyz_is_503_while_the_store_is_unreachable_then_200(rest: Rest) -> None:
    assert (await rest.client.get("/readyz")).json() == {"status": "ready"}
    rest.faults.fail_next(3, on="command", error=READ_ERRORS["ServerSelectionTimeoutError"]())
    for _ in range(3):
        res = await rest.client.get("/readyz")
        assert res.status_code == 503 and res.json()["error"]["code"] == "store_unavailable"
    assert rest.faults.pending == 0
    res = await rest.client.get("/readyz")
    assert res.status_code == 200 and res.json() == {"status": "ready"}


async def test_readyz_does_not_tell_the_world_the_drivers_internals(rest: Rest) -> None:
    rest.faults.fail_next(1, on="command", error=READ_ERRORS["ServerSelectionTimeoutError"]())
    res = await rest.client.get("/readyz")
    assert res.status_code == 503
    for leak in LEAKS:
        assert leak not in res.text, res.text


# Summaries under store faults ----------------------------------------------------------------
class OneSummarizer:
    """An LLM stand-in that always answers."""

    def __init__(self) -> None:
        self.calls = 0

    async def summarize(self, timeline: list[Any], *, participants: list[str]) -> Summary:
        self.calls += 1
        return Summary(text="LLM summary.", model="fake")

    async def aclose(self) -> None:
        return None


def _to(status: RoomStatus) -> Callable[[dict[str, Any]], bool]:
    return lambda kwargs: kwargs.get("to") is status


#: Where in finalize -> summary a call fails: (store method, its nth driver call, applied
#: first, which call of that method).
SUMMARY_FAULTS = [
    pytest.param("transition_room", 0, False, _to(RoomStatus.FINAL_ROOM), id="finalize"),
    pytest.param("complete_idle_room", 0, False, None, id="claim"),
    pytest.param("complete_idle_room", 0, True, None, id="claim-ack-lost"),
    pytest.param("complete_idle_room", 1, False, None, id="check-after-claim"),
    pytest.param("get_room", 0, False, None, id="read-room"),
    pytest.param("list_tracks", 0, False, None, id="read-tracks"),
    pytest.param("query_transcript", 0, False, None, id="read-transcript"),
    pytest.param("query_transcript", 2, False, None, id="read-transcript-segments"),
    pytest.param("set_summary", 0, False, None, id="set-summary"),
    pytest.param("set_summary", 0, True, None, id="set-summary-ack-lost"),
    pytest.param(
        "transition_room",
        0,
        False,
        _to(RoomStatus.COMPLETED),
        id="mark-completed",
    ),
    pytest.param(
        "transition_room", 0, True, _to(RoomStatus.COMPLETED), id="mark-completed-ack-lost"
    ),
]


@pytest.mark.parametrize("error", [AutoReconnect("gone"), NetworkTimeout("slow")], ids=repr)
@pytest.mark.parametrize(("method", "nth", "after_write", "where"), SUMMARY_FAULTS)
async def test_a_store_fault_while_summarizing_ends_completed_with_the_summary(
    method: str,
    nth: int,
    after_write: bool,
    where: Callable[[dict[str, Any]], bool] | None,
    error: PyMongoError,
) -> None:
    store, faults = await traced_store()
    await store.register_room("standup")
    await store.upsert_track(
        TrackCreate(track_sid="TR_a", room="standup", participant_identity="alice", published_at=T0)
    )
    spoken = [SegmentIn(id=f"TR_a-{i}", start=i, end=i + 0.5, text=f"note {i}") for i in range(6)]
    await store.append_realtime_segments("TR_a", spoken)
    await store.set_track_status("TR_a", TrackStatus.TRANSCRIBED)
    summarizer = OneSummarizer()
    gateway = LiveKitGateway(OrchestratorSettings())  # never called: no room is live
    lifecycle = RoomLifecycle(
        store, gateway, OrchestratorMetrics(), summarizer, attempts=1, backoff_s=0.0
    )
    try:
        faults.fail_in(method, nth=nth, error=error, after_write=after_write, where=where)
        try:
            await lifecycle.finalize("standup")
        except StoreError:
            # The agent's finalize call answered 503: it calls again.
            await lifecycle.finalize("standup")
        await lifecycle.idle()
        assert faults.injected == 1 and faults.pending == 0, faults.calls
        await lifecycle.reconcile()  # one round of the periodic reconciler
        await lifecycle.idle()
        room = await store.get_room("standup")
        assert room.status is RoomStatus.COMPLETED, f"{room.status}: {room.status_reason}"
        assert room.summary is not None and room.summary.text == "LLM summary."
        assert summarizer.calls == 1  # the summary written is the one stored, not asked again
        page = await store.query_transcript(TranscriptQuery(room="standup"))
        assert [s.id for s in page.segments] == [s.id for s in spoken]  # transcript intact
    finally:
        await lifecycle.close()
        await gateway.close()
