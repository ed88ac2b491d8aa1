"""The MongoDB store under the faults a real deployment has, and what its callers then do.

mongomock never fails; :class:`tests.fakes.mongo.Faults` makes it fail like a server does
(connection lost, timeouts, a write applied but its answer lost).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest
from pymongo.errors import AutoReconnect, NetworkTimeout

from devkit.livekit_emulator import encode_ogg_opus
from roomscribe.errors import StoreError
from roomscribe.models import (
    EgressInfo,
    EgressStatus,
    RoomStatus,
    SegmentIn,
    TrackCreate,
    TrackStatus,
    TranscriptQuery,
    TranscriptSource,
    WhisperStats,
)
from roomscribe.objectstore import LocalObjectStore
from roomscribe.store import MongoTranscriptStore
from stt_service.metrics import SttMetrics
from stt_service.whisper import Transcript
from stt_service.worker import WhisperWorker
from stt_service.writer import SegmentWriter
from tests.fakes.mongo import FakeAsyncDatabase, Faults

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
