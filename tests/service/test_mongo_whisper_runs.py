"""MongoDB has no multi-document atomicity without a replica set: Whisper runs make it safe.

A worker paused past its lease (GC, a VM migration, a partition) between writing its
segments and completing the job must not corrupt the transcript of the worker that took the
job over; readers must never see a half-written run.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any, cast

import pytest

from roomscribe.models import (
    SegmentIn,
    SegmentSource,
    TrackCreate,
    TrackStatus,
    TranscriptQuery,
    TranscriptSource,
    WhisperStats,
)
from roomscribe.store import MongoTranscriptStore
from tests.fakes.mongo import FakeAsyncDatabase

pytestmark = pytest.mark.service

STATS = WhisperStats(model="tiny", audio_s=5.0, real_time_factor=0.1)


def segs(tag: str, n: int) -> list[SegmentIn]:
    return [SegmentIn(id=f"{tag}{i}", start=i, end=i + 0.5, text=f"{tag} {i}") for i in range(n)]


async def recorded_track() -> MongoTranscriptStore:
    store = MongoTranscriptStore(cast(Any, FakeAsyncDatabase()), chunk_size=2)
    await store.init()
    await store.register_room("standup")
    await store.upsert_track(
        TrackCreate(
            track_sid="TR_a",
            room="standup",
            participant_identity="alice",
            published_at=datetime(2026, 11, 1, tzinfo=UTC),
        )
    )
    await store.set_track_status("TR_a", TrackStatus.RECORDED)
    return store


async def whisper_ids(store: MongoTranscriptStore, source: TranscriptSource) -> list[str]:
    page = await store.query_transcript(TranscriptQuery(room="standup", source=source))
    return [s.id for s in page.segments]


async def test_a_worker_paused_after_its_fence_cannot_overwrite_the_takeover() -> None:
    store = await recorded_track()
    assert await store.claim_job("w1", lease_s=0.2, max_attempts=3) is not None
    write = store._write_whisper_run
    took_over = asyncio.Event()

    async def paused_after_writing(*args: Any) -> Any:
        result = await write(*args)
        if not took_over.is_set():  # w1 only: it stalls past its lease right here
            await asyncio.sleep(0.3)
            assert await store.claim_job("w2", lease_s=60, max_attempts=3) is not None
            took_over.set()
            assert await store.finish_job("TR_a", "w2", segs("w2-", 3), stats=STATS, lease_s=60)
        return result

    store._write_whisper_run = paused_after_writing  # type: ignore[method-assign,assignment]
    assert not await store.finish_job("TR_a", "w1", segs("w1-", 5), stats=STATS, lease_s=0.2)
    track = await store.get_track("TR_a")
    assert track.status is TrackStatus.TRANSCRIBED and track.job.worker == "w2"
    assert track.whisper is not None and track.whisper.segments == 3
    assert await whisper_ids(store, TranscriptSource.WHISPER) == ["w2-0", "w2-1", "w2-2"]
    assert await whisper_ids(store, TranscriptSource.BEST) == ["w2-0", "w2-1", "w2-2"]
    assert [c.count for c in await store.list_chunks("TR_a", SegmentSource.WHISPER)] == [2, 1]
    # The loser's run is gone, not just hidden.
    left = await store._chunks.count_documents({"track_sid": "TR_a", "source": "whisper"})
    assert left == 2


async def test_readers_see_the_committed_run_while_a_rerun_is_written() -> None:
    store = await recorded_track()
    await store.replace_whisper_segments("TR_a", segs("one-", 3), stats=STATS)
    write = store._write_whisper_run
    seen: list[str] = []

    async def check_midway(*args: Any) -> Any:
        result = await write(*args)
        seen.extend(await whisper_ids(store, TranscriptSource.WHISPER))
        return result

    store._write_whisper_run = check_midway  # type: ignore[method-assign,assignment]
    await store.replace_whisper_segments("TR_a", segs("two-", 4), stats=STATS)
    assert seen == ["one-0", "one-1", "one-2"]  # the new run was written, not yet visible
    assert await whisper_ids(store, TranscriptSource.WHISPER) == [f"two-{i}" for i in range(4)]
