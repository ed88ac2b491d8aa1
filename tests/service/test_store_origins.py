"""Per-source time origins, ``best`` by coverage, and upgrading old databases (every backend)."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from roomscribe.models import (
    EgressInfo,
    EgressStatus,
    SegmentIn,
    SegmentSource,
    TrackCreate,
    TrackStatus,
    TranscriptQuery,
    TranscriptSource,
    WhisperStats,
)
from roomscribe.store import MongoTranscriptStore, SQLiteTranscriptStore, TranscriptStore
from tests.fakes.mongo import FakeAsyncDatabase

pytestmark = pytest.mark.service

#: The publish time as a webhook says it: whole seconds.
T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def published(sid: str, who: str = "alice") -> TrackCreate:
    """What the orchestrator knows from ``track_published``."""
    return TrackCreate(track_sid=sid, room="r", participant_identity=who, published_at=T0)


def streamed(sid: str, who: str = "alice", *, origin_s: float, language: str = "en") -> TrackCreate:
    """What the STT service knows from a stream's ``start`` message."""
    return TrackCreate(
        track_sid=sid,
        room="r",
        participant_identity=who,
        published_at=at(origin_s),
        live_origin=at(origin_s),
        language=language,
    )


def seg(tag: str, start: float, end: float) -> SegmentIn:
    return SegmentIn(id=f"{tag}-{start:08.3f}", start=start, end=end, text=tag)


async def best(store: TranscriptStore, **filters: Any) -> list[tuple[str, float, str]]:
    page = await store.query_transcript(
        TranscriptQuery(room="r", source=TranscriptSource.BEST, limit=1000, **filters)
    )
    assert page.next_cursor is None
    return [(s.source.value, round(s.abs_start - T0.timestamp(), 3), s.id) for s in page.segments]


async def test_live_and_whisper_segments_each_use_their_own_origin(
    make_store: Callable[..., Any],
) -> None:
    store: TranscriptStore = await make_store()
    await store.upsert_track(published("TR_a"))
    # The agent joined 120.31 s after the track was published: its sample 0 is there.
    await store.upsert_track(streamed("TR_a", origin_s=120.31))
    await store.append_realtime_segments("TR_a", [seg("live", 1.0, 2.0)])
    # The egress started 3.2 s after the publish; its file's sample 0 is there.
    await store.update_egress(
        "TR_a", EgressInfo(id="EG_1", status=EgressStatus.COMPLETE, started_at=at(3.2))
    )
    stats = WhisperStats(model="tiny", audio_s=200.0, real_time_factor=0.1)
    await store.replace_whisper_segments("TR_a", [seg("wh", 1.0, 2.0)], stats=stats)

    live = await store.query_transcript(TranscriptQuery(room="r", source=TranscriptSource.REALTIME))
    whisper = await store.query_transcript(
        TranscriptQuery(room="r", source=TranscriptSource.WHISPER)
    )
    assert live.segments[0].abs_start == pytest.approx(at(121.31).timestamp())
    assert whisper.segments[0].abs_start == pytest.approx(at(4.2).timestamp())
    track = await store.get_track("TR_a")
    assert track.published_at == T0  # metadata, untouched by the stream's start
    assert track.whisper is not None
    assert track.whisper.covered_from == pytest.approx(at(3.2).timestamp())
    assert track.whisper.covered_to == pytest.approx(at(203.2).timestamp())
    chunks = await store.list_chunks("TR_a", SegmentSource.REALTIME)
    assert chunks[0].start == pytest.approx(at(121.31).timestamp())


async def test_a_stream_fills_what_the_webhook_did_not_know_and_first_origin_wins(
    make_store: Callable[..., Any],
) -> None:
    store: TranscriptStore = await make_store()
    first = await store.upsert_track(published("TR_a"))
    assert first.live_origin is None and first.language is None
    filled = await store.upsert_track(streamed("TR_a", origin_s=5.5, language="de"))
    assert filled.live_origin == at(5.5)
    assert filled.language == "de"
    assert filled.published_at == T0
    # A reconnect (or a second STT instance) cannot move the clock stored segments are on.
    await store.append_realtime_segments("TR_a", [seg("live", 1.0, 2.0)])
    again = await store.upsert_track(streamed("TR_a", origin_s=9.0, language="fr"))
    assert again.live_origin == at(5.5) and again.language == "de"
    await store.append_realtime_segments("TR_a", [seg("live", 3.0, 4.0)])
    rows = await best(store)
    assert [start for _, start, _ in rows] == [6.5, 8.5]


async def test_best_reads_whisper_only_where_the_recording_covers_the_track(
    make_store: Callable[..., Any],
) -> None:
    store: TranscriptStore = await make_store(chunk_size=3)
    await store.upsert_track(streamed("TR_a", origin_s=0.0))
    await store.upsert_track(streamed("TR_b", "bob", origin_s=0.0))
    # Live words every second for 12 s; the recording started 3 s late and hit its limit
    # 4 s later: it covers [3, 7).
    await store.append_realtime_segments("TR_a", [seg("live", i, i + 0.8) for i in range(12)])
    await store.append_realtime_segments("TR_b", [seg("bob", i + 0.5, i + 0.9) for i in range(3)])
    await store.update_egress(
        "TR_a",
        EgressInfo(id="EG_1", status=EgressStatus.COMPLETE, started_at=at(3.0), ended_at=at(7.0)),
    )
    stats = WhisperStats(model="tiny", audio_s=4.0, real_time_factor=0.1)
    whisper = [seg("wh", 0.1, 1.5), seg("wh", 2.0, 3.6)]
    await store.replace_whisper_segments("TR_a", whisper, stats=stats)
    await store.set_track_status("TR_a", TrackStatus.TRANSCRIBED)

    rows = await best(store, track_sid="TR_a")
    assert [(src, start) for src, start, _ in rows] == [
        ("realtime", 0.0),
        ("realtime", 1.0),
        ("realtime", 2.0),
        # The live segments from 3.0 to 6.0 have their midpoints inside [3, 7): replaced.
        ("whisper", 3.1),
        ("whisper", 5.0),
        ("realtime", 7.0),
        ("realtime", 8.0),
        ("realtime", 9.0),
        ("realtime", 10.0),
        ("realtime", 11.0),
    ]
    # Pages walk the same order, and other tracks are untouched.
    everyone = await best(store)
    assert sum(1 for src, _, sid in everyone if sid.startswith("bob")) == 3
    paged: list[str] = []
    cursor = None
    while True:
        page = await store.query_transcript(
            TranscriptQuery(room="r", source=TranscriptSource.BEST, limit=2, cursor=cursor)
        )
        paged.extend(s.id for s in page.segments)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert paged == [sid for _, _, sid in everyone]
    # A time range inside the recording reads Whisper; one after it reads the live words.
    inside = await best(store, time_from=at(4.0).timestamp(), time_to=at(6.0).timestamp())
    assert [src for src, _, _ in inside] == ["whisper", "whisper"]
    after = await best(store, time_from=at(8.5).timestamp(), track_sid="TR_a")
    assert [start for _, start, _ in after] == [8.0, 9.0, 10.0, 11.0]


# Upgrading databases of the previous layout --------------------------------------------------
_V1_TRACK = {
    "track_sid": "TR_old",
    "room": "r",
    "participant_identity": "alice",
    "participant_name": "Alice",
    "started_at": "2026-11-01T12:00:00Z",
    "language": None,
    "status": "transcribed",
    "status_reason": None,
    "egress": {"id": "EG_1", "status": "complete", "object_key": "k.ogg"},
    "job": {"attempts": 1},
    "live": {"audio_received_s": 10.0, "audio_dropped_s": 0.0, "segments": 1},
    "whisper": {"model": "tiny", "audio_s": 10.0, "real_time_factor": 0.1, "segments": 1},
    "updated_at": "2026-11-01T12:00:10Z",
}


def _write_v1_sqlite(path: Path) -> None:
    """A file as the previous version wrote it: ``started_at`` column and documents."""
    conn = sqlite3.connect(path)
    conn.executescript(
        """
        CREATE TABLE rooms (name TEXT PRIMARY KEY, status TEXT NOT NULL,
            created_at REAL NOT NULL, doc TEXT NOT NULL);
        CREATE TABLE tracks (track_sid TEXT PRIMARY KEY, room TEXT NOT NULL,
            status TEXT NOT NULL, started_at REAL NOT NULL, lease_until REAL,
            doc TEXT NOT NULL);
        CREATE INDEX tracks_by_room ON tracks (room, started_at);
        """
    )
    conn.execute(
        "INSERT INTO rooms VALUES ('r', 'completed', ?, ?)",
        (T0.timestamp(), json.dumps({"name": "r", "status": "completed"})),
    )
    conn.execute(
        "INSERT INTO tracks VALUES ('TR_old', 'r', 'transcribed', ?, NULL, ?)",
        (T0.timestamp(), json.dumps(_V1_TRACK)),
    )
    conn.commit()
    conn.close()


async def _assert_upgraded(store: TranscriptStore) -> None:
    track = await store.get_track("TR_old")
    assert track.published_at == T0
    # Its live segment was placed on started_at: new ones must land on the same clock.
    assert track.live_origin == T0
    assert track.whisper is not None
    assert track.whisper.covered_from == pytest.approx(T0.timestamp())
    assert track.whisper.covered_to == pytest.approx(T0.timestamp() + 10.0)
    assert [t.track_sid for t in await store.list_tracks("r")] == ["TR_old"]
    await store.append_realtime_segments("TR_old", [seg("live", 11.0, 12.0)])
    rows = await best(store)
    assert [(src, start) for src, start, _ in rows] == [("realtime", 11.0)]


async def test_an_old_sqlite_file_opens_and_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "v1.db"
    _write_v1_sqlite(path)
    store = SQLiteTranscriptStore(path)
    await store.init()
    try:
        await _assert_upgraded(store)
    finally:
        await store.close()
    conn = sqlite3.connect(path)
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tracks)")}
    (version,) = conn.execute("PRAGMA user_version").fetchone()
    conn.close()
    assert "published_at" in columns and "started_at" not in columns
    assert version == 2
    again = SQLiteTranscriptStore(path)  # a second start changes nothing
    await again.init()
    try:
        assert (await again.get_track("TR_old")).live_origin == T0
    finally:
        await again.close()


async def test_old_mongodb_documents_are_upgraded_at_init() -> None:
    db = FakeAsyncDatabase()
    doc: dict[str, Any] = {**_V1_TRACK, "_id": "TR_old", "started_at": T0}
    await db["tracks"].insert_one(doc)
    await db["rooms"].insert_one({"_id": "r", "name": "r", "status": "completed"})
    store = MongoTranscriptStore(cast(Any, db))
    await store.init()
    await _assert_upgraded(store)
    raw = await db["tracks"].find_one({"_id": "TR_old"})
    assert raw is not None and "started_at" not in raw
    await store.init()  # idempotent
    assert (await store.get_track("TR_old")).published_at == T0
