"""One contract for every transcript store backend (SQLite always, MongoDB when given)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from roomscribe.errors import InvalidCursorError, NotFoundError
from roomscribe.models import (
    ActionItem,
    EgressInfo,
    EgressStatus,
    ParticipantActions,
    RoomStatus,
    SegmentIn,
    SegmentSource,
    Summary,
    TrackCreate,
    TrackStatus,
    TranscriptQuery,
    TranscriptSource,
    WhisperStats,
    Word,
)
from roomscribe.store import TranscriptStore

pytestmark = pytest.mark.service

T0 = datetime(2026, 11, 1, 12, 0, 0, tzinfo=UTC)


def track(
    sid: str, room: str = "standup", who: str = "alice", offset_s: float = 0.0
) -> TrackCreate:
    return TrackCreate(
        track_sid=sid,
        room=room,
        participant_identity=who,
        participant_name=who.title(),
        published_at=T0 + timedelta(seconds=offset_s),
    )


def seg(i: int, start: float, *, dur: float = 1.0, conf: float = 0.9, tag: str = "s") -> SegmentIn:
    return SegmentIn(
        id=f"{tag}{i:06d}",
        start=start,
        end=start + dur,
        text=f"words {i}",
        confidence=conf,
        words=[Word(word="words", start=start, end=start + dur / 2, confidence=conf)],
    )


async def all_pages(store: TranscriptStore, **filters: Any) -> list[tuple[float, str]]:
    out: list[tuple[float, str]] = []
    cursor = None
    while True:
        page = await store.query_transcript(TranscriptQuery(cursor=cursor, **filters))
        out.extend((s.abs_start, s.id) for s in page.segments)
        if page.next_cursor is None:
            return out
        cursor = page.next_cursor


def assert_rows(got: list[tuple[float, str]], want: list[tuple[float, str]]) -> None:
    assert [i for _, i in got] == [i for _, i in want]
    assert [t for t, _ in got] == pytest.approx([t for t, _ in want])


# Rooms ---------------------------------------------------------------------------------------
async def test_register_room_is_idempotent_and_keeps_status(store: TranscriptStore) -> None:
    room = await store.register_room("standup", sid="RM_1")
    assert room.status is RoomStatus.REGISTERED
    assert await store.transition_room(
        "standup", to=RoomStatus.ACTIVE, from_={RoomStatus.REGISTERED}
    )
    again = await store.register_room("standup", sid="RM_2", livekit_created_at=T0)
    assert again.status is RoomStatus.ACTIVE
    # A known sid is never replaced (another sid is another meeting); unknowns fill in.
    assert again.sid == "RM_1" and again.livekit_created_at == T0
    assert (await store.register_room("standup")).sid == "RM_1"


async def test_archiving_a_meeting_moves_it_whole_and_frees_the_name(
    store: TranscriptStore,
) -> None:
    await store.register_room("standup", sid="RM_1")
    await store.transition_room("standup", to=RoomStatus.ACTIVE, from_={RoomStatus.REGISTERED})
    await store.add_participant("standup", "alice")
    await store.upsert_track(track("TR_a"))
    await store.append_realtime_segments("TR_a", [seg(1, 1.0), seg(2, 2.0)])
    # A hostile room already holds the first key variant: the archive takes the next.
    await store.register_room("standup@RM_1", sid="RM_9")
    assert await store.archive_room("standup", sid="RM_other") is None
    racers = await asyncio.gather(*(store.archive_room("standup", sid="RM_1") for _ in range(4)))
    keys = {r.name for r in racers if r is not None}
    assert keys == {"standup@RM_1~2"}
    old = await store.get_room("standup@RM_1~2")
    assert old.meeting_of == "standup" and old.participants == ["alice"]
    # Its room_finished never came, but LiveKit only reuses the name of a room that ended.
    assert old.status is RoomStatus.FINAL_ROOM
    assert (await store.get_track("TR_a")).room == "standup@RM_1~2"
    assert [t.track_sid for t in await store.list_tracks("standup@RM_1~2")] == ["TR_a"]
    rows = await all_pages(store, room="standup@RM_1~2", source=TranscriptSource.REALTIME)
    assert [i for _, i in rows] == ["s000001", "s000002"]
    assert await store.find_room("standup") is None
    assert (await store.get_room("standup@RM_1")).sid == "RM_9"  # the hostile room untouched
    fresh = await store.register_room("standup", sid="RM_2")
    assert fresh.status is RoomStatus.REGISTERED and fresh.participants == []
    assert await store.list_tracks("standup") == []
    assert await all_pages(store, room="standup", source=TranscriptSource.REALTIME) == []


async def test_an_idle_room_completes_once_and_never_with_a_pending_track(
    store: TranscriptStore,
) -> None:
    await store.register_room("standup")
    await store.upsert_track(track("TR_a"))
    assert not await store.complete_idle_room("standup")  # not final yet
    await store.transition_room("standup", to=RoomStatus.FINAL_ROOM, from_={RoomStatus.REGISTERED})
    assert not await store.complete_idle_room("standup")  # TR_a still records
    assert (await store.get_room("standup")).status is RoomStatus.FINAL_ROOM
    await store.set_track_status("TR_a", TrackStatus.FAILED)
    wins = await asyncio.gather(*(store.complete_idle_room("standup") for _ in range(6)))
    assert sum(wins) == 1
    assert (await store.get_room("standup")).status is RoomStatus.SUMMARIZING
    with pytest.raises(NotFoundError):
        await store.complete_idle_room("nope")


async def test_unknown_room_and_track(store: TranscriptStore) -> None:
    assert await store.find_room("nope") is None
    with pytest.raises(NotFoundError):
        await store.get_room("nope")
    with pytest.raises(NotFoundError):
        await store.transition_room("nope", to=RoomStatus.ACTIVE, from_={RoomStatus.REGISTERED})
    assert await store.find_track("TR_nope") is None
    with pytest.raises(NotFoundError):
        await store.get_track("TR_nope")
    with pytest.raises(NotFoundError):
        await store.append_realtime_segments("TR_nope", [seg(1, 0.0)])
    with pytest.raises(NotFoundError):
        await store.set_track_status("TR_nope", TrackStatus.RECORDED)


async def test_transition_is_conditional_and_exactly_one_racer_wins(
    store: TranscriptStore,
) -> None:
    await store.register_room("standup")
    assert not await store.transition_room(
        "standup", to=RoomStatus.SUMMARIZING, from_={RoomStatus.FINAL_ROOM}
    )
    assert await store.transition_room(
        "standup", to=RoomStatus.FINAL_ROOM, from_={RoomStatus.REGISTERED, RoomStatus.ACTIVE}
    )
    results = await asyncio.gather(
        *(
            store.transition_room(
                "standup", to=RoomStatus.SUMMARIZING, from_={RoomStatus.FINAL_ROOM}
            )
            for _ in range(12)
        )
    )
    assert sum(results) == 1
    room = await store.get_room("standup")
    assert room.status is RoomStatus.SUMMARIZING


async def test_participants_and_summary(store: TranscriptStore) -> None:
    await store.register_room("standup")
    for who in ("alice", "bob", "alice"):
        await store.add_participant("standup", who)
    summary = Summary(
        text="Shipped it.",
        model="extractive",
        action_items=[
            ParticipantActions(
                participant_identity="bob",
                actions=[ActionItem(text="Write notes", evidence=["s1"])],
            )
        ],
    )
    await store.set_summary("standup", summary)
    room = await store.get_room("standup")
    assert room.participants == ["alice", "bob"]
    assert room.summary is not None
    assert room.summary.action_items[0].actions[0].evidence == ["s1"]
    assert room.summary.generated_at.tzinfo is not None


async def test_list_rooms_pages_newest_first_with_filters(store: TranscriptStore) -> None:
    names = [f"room-{i:02d}" for i in range(7)]
    for name in names:
        await store.register_room(name)
    await store.transition_room("room-03", to=RoomStatus.ACTIVE, from_={RoomStatus.REGISTERED})
    seen: list[str] = []
    cursor = None
    while True:
        page = await store.list_rooms(limit=3, cursor=cursor)
        seen.extend(r.name for r in page.rooms)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert sorted(seen) == names and len(seen) == len(set(seen))
    created = [(await store.get_room(n)).created_at for n in seen]
    assert created == sorted(created, reverse=True)

    active = await store.list_rooms(status=RoomStatus.ACTIVE)
    assert [r.name for r in active.rooms] == ["room-03"]
    scoped = await store.list_rooms(names={"room-01", "room-05", "ghost"})
    assert sorted(r.name for r in scoped.rooms) == ["room-01", "room-05"]
    assert (await store.list_rooms(names=set())).rooms == []

    first = await store.list_rooms(limit=2)
    assert first.next_cursor is not None
    with pytest.raises(InvalidCursorError):
        await store.list_rooms(limit=2, cursor=first.next_cursor, status=RoomStatus.ACTIVE)
    with pytest.raises(InvalidCursorError):
        await store.list_rooms(cursor="not-a-cursor")


# Tracks --------------------------------------------------------------------------------------
async def test_track_lifecycle_and_stats(store: TranscriptStore) -> None:
    first = await store.upsert_track(track("TR_a"))
    assert first.status is TrackStatus.RECORDING
    await store.set_track_status("TR_a", TrackStatus.RECORDED)
    again = await store.upsert_track(track("TR_a", who="mallory"))
    assert again.status is TrackStatus.RECORDED and again.participant_identity == "alice"
    await store.upsert_track(track("TR_b", who="bob", offset_s=-5))
    assert [t.track_sid for t in await store.list_tracks("standup")] == ["TR_b", "TR_a"]

    assert not await store.set_track_status(
        "TR_a", TrackStatus.FAILED, from_={TrackStatus.RECORDING}
    )
    assert await store.set_track_status(
        "TR_b", TrackStatus.FAILED, from_={TrackStatus.RECORDING}, reason="egress failed: disk"
    )
    assert (await store.get_track("TR_b")).status_reason == "egress failed: disk"
    assert await store.count_pending_tracks("standup") == 1

    egress = EgressInfo(id="EG_1", status=EgressStatus.ACTIVE, object_key="rooms/s/a/TR_a.ogg")
    await store.update_egress("TR_a", egress)
    await store.add_live_stats("TR_a", received_s=1.5, dropped_s=0.25)
    await store.add_live_stats("TR_a", received_s=2.0, dropped_s=0.0)
    got = await store.get_track("TR_a")
    assert got.egress.id == "EG_1" and got.egress.status is EgressStatus.ACTIVE
    assert got.live.audio_received_s == pytest.approx(3.5)
    assert got.live.audio_dropped_s == pytest.approx(0.25)
    assert got.published_at == T0


async def test_committed_point_only_grows(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    assert (await store.get_track("TR_a")).live.committed_s == 0.0
    await store.add_live_stats("TR_a", received_s=1.0, dropped_s=0.0, committed_s=4.5)
    # A late write of an older point (a retried batch, a slower stream) never moves it back.
    await store.add_live_stats("TR_a", received_s=1.0, dropped_s=0.5, committed_s=2.0)
    await store.add_live_stats("TR_a", received_s=0.0, dropped_s=0.0)
    got = await store.get_track("TR_a")
    assert got.live.committed_s == pytest.approx(4.5)
    assert got.live.audio_received_s == pytest.approx(2.0)
    assert got.live.audio_dropped_s == pytest.approx(0.5)
    await store.add_live_stats("TR_a", received_s=0.0, dropped_s=0.0, committed_s=7.25)
    assert (await store.get_track("TR_a")).live.committed_s == pytest.approx(7.25)
    with pytest.raises(NotFoundError):
        await store.add_live_stats("TR_nobody", received_s=0.0, dropped_s=0.0, committed_s=1.0)


async def test_concurrent_committed_writes_keep_the_highest(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    points = [float(i) for i in range(40)]
    await asyncio.gather(
        *(
            store.add_live_stats("TR_a", received_s=0.1, dropped_s=0.0, committed_s=p)
            for p in reversed(points)
        )
    )
    got = await store.get_track("TR_a")
    assert got.live.committed_s == pytest.approx(max(points))
    assert got.live.audio_received_s == pytest.approx(4.0)


async def test_the_track_cache_stays_bounded(store: TranscriptStore) -> None:
    cache = store._track_meta  # type: ignore[attr-defined]
    cache.max_entries = 5
    for i in range(12):
        sid = f"TR_{i}"
        await store.upsert_track(track(sid).model_copy(update={"live_origin": T0}))
        await store.append_realtime_segments(sid, [seg(i, 1.0)])
    assert len(cache) == 5
    # A forgotten track is simply read again.
    await store.append_realtime_segments("TR_0", [seg(100, 2.0)])
    assert (await store.get_track("TR_0")).live.segments == 2


# Segments ------------------------------------------------------------------------------------
async def test_chunk_rolls_over_at_exactly_n_segments(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    n = store.chunk_size
    assert n == 200
    assert await store.append_realtime_segments("TR_a", [seg(i, i) for i in range(n)]) == n
    chunks = await store.list_chunks("TR_a", SegmentSource.REALTIME)
    assert [c.count for c in chunks] == [n]
    assert chunks[0].start == pytest.approx(T0.timestamp())
    assert chunks[0].end == pytest.approx(T0.timestamp() + n)
    assert await store.append_realtime_segments("TR_a", [seg(n, n, conf=0.2)]) == 1
    chunks = await store.list_chunks("TR_a", SegmentSource.REALTIME)
    assert [(c.seq, c.count) for c in chunks] == [(0, n), (1, 1)]
    assert chunks[1].min_confidence == pytest.approx(0.2)
    assert (await store.get_track("TR_a")).live.segments == n + 1


async def test_batch_spanning_several_chunks(make_store: Callable[..., Any]) -> None:
    store: TranscriptStore = await make_store(chunk_size=4)
    await store.upsert_track(track("TR_a"))
    await store.append_realtime_segments("TR_a", [seg(i, i) for i in range(3)])
    await store.append_realtime_segments("TR_a", [seg(i, i) for i in range(3, 13)])
    chunks = await store.list_chunks("TR_a", SegmentSource.REALTIME)
    assert [c.count for c in chunks] == [4, 4, 4, 1]
    assert [c.seq for c in chunks] == [0, 1, 2, 3]


async def test_retried_batch_is_not_stored_twice(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    batch = [seg(i, i) for i in range(5)]
    assert await store.append_realtime_segments("TR_a", batch) == 5
    assert await store.append_realtime_segments("TR_a", batch) == 0
    assert await store.append_realtime_segments("TR_a", [*batch, seg(5, 5), seg(5, 5)]) == 1
    assert len(await all_pages(store, room="standup", source=TranscriptSource.REALTIME)) == 6
    assert (await store.get_track("TR_a")).live.segments == 6


async def test_concurrent_appends_from_many_tasks(make_store: Callable[..., Any]) -> None:
    store: TranscriptStore = await make_store(chunk_size=7)
    for t in range(3):
        await store.upsert_track(track(f"TR_{t}", who=f"p{t}"))

    async def writer(task: int) -> None:
        sid = f"TR_{task % 3}"
        for b in range(5):
            base = task * 100 + b * 4
            await store.append_realtime_segments(
                sid, [seg(base + k, base + k, tag=f"t{task}-") for k in range(4)]
            )

    await asyncio.gather(*(writer(task) for task in range(12)))
    total = 0
    for t in range(3):
        chunks = await store.list_chunks(f"TR_{t}", SegmentSource.REALTIME)
        counts = [c.count for c in chunks]
        assert [c.seq for c in chunks] == list(range(len(chunks)))
        assert all(c == 7 for c in counts[:-1]) and 1 <= counts[-1] <= 7
        assert sum(counts) == 4 * 5 * 4  # four writers per track, 5 batches of 4
        total += sum(counts)
        assert (await store.get_track(f"TR_{t}")).live.segments == sum(counts)
    rows = await all_pages(store, room="standup", source=TranscriptSource.REALTIME, limit=50)
    assert len(rows) == total == 240
    assert len({r[1] for r in rows}) == 240
    assert rows == sorted(rows)


async def test_query_crosses_chunk_and_track_boundaries(make_store: Callable[..., Any]) -> None:
    store: TranscriptStore = await make_store(chunk_size=5)
    await store.upsert_track(track("TR_a", who="alice"))
    await store.upsert_track(track("TR_b", who="bob", offset_s=0.5))
    await store.upsert_track(track("TR_x", room="other", who="eve"))
    await store.append_realtime_segments(
        "TR_a", [seg(i, 2 * i, conf=0.5 + (i % 5) / 10, tag="a") for i in range(23)]
    )
    await store.append_realtime_segments(
        "TR_b", [seg(i, 2 * i + 1, conf=0.95, tag="b") for i in range(17)]
    )
    await store.append_realtime_segments("TR_x", [seg(i, i, tag="x") for i in range(5)])
    t0 = T0.timestamp()
    expected = sorted(
        [(t0 + 2 * i, f"a{i:06d}") for i in range(23)]
        + [(t0 + 0.5 + 2 * i + 1, f"b{i:06d}") for i in range(17)]
    )
    for limit in (1, 4, 7, 40, 1000):
        got = await all_pages(store, room="standup", source=TranscriptSource.REALTIME, limit=limit)
        assert_rows(got, expected)

    bob = await all_pages(store, room="standup", participant_identity="bob", limit=6)
    assert [i for _, i in bob] == [f"b{i:06d}" for i in range(17)]
    only_a = await all_pages(store, room="standup", track_sid="TR_a", limit=6)
    assert len(only_a) == 23

    confident = await all_pages(store, room="standup", min_confidence=0.85, limit=3)
    assert {i[0] for _, i in confident} == {"a", "b"}
    assert len(confident) == 17 + sum(1 for i in range(23) if 0.5 + (i % 5) / 10 >= 0.85)

    # Segments overlapping [t0+10, t0+20): a starts 2i, lasts 1 s; b starts 2i+1.5.
    window = await all_pages(store, room="standup", time_from=t0 + 10, time_to=t0 + 20, limit=4)
    want = [(s, i) for s, i in expected if s < t0 + 20 and s + 1 > t0 + 10]
    assert_rows(window, want)

    page = await store.query_transcript(TranscriptQuery(room="standup", limit=2))
    got_seg = page.segments[0]
    assert got_seg.participant_identity == "alice" and got_seg.track_sid == "TR_a"
    assert got_seg.source is SegmentSource.REALTIME
    assert got_seg.words[0].word == "words"
    assert got_seg.abs_end - got_seg.abs_start == pytest.approx(1.0)
    assert page.next_cursor is not None
    with pytest.raises(InvalidCursorError):
        await store.query_transcript(
            TranscriptQuery(room="standup", limit=2, cursor=page.next_cursor, min_confidence=0.1)
        )
    with pytest.raises(InvalidCursorError):
        await store.query_transcript(TranscriptQuery(room="standup", cursor="garbage!"))
    empty = await store.query_transcript(TranscriptQuery(room="nobody"))
    assert empty.segments == [] and empty.next_cursor is None


async def test_long_segment_found_by_time_range(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    await store.append_realtime_segments(
        "TR_a", [seg(0, 0.0, dur=300.0), *(seg(i, 300.0 + i) for i in range(1, 50))]
    )
    t0 = T0.timestamp()
    got = await all_pages(store, room="standup", time_from=t0 + 250, time_to=t0 + 302.5)
    assert [i for _, i in got] == ["s000000", "s000001", "s000002"]


async def test_pagination_is_stable_while_segments_are_appended(
    make_store: Callable[..., Any],
) -> None:
    store: TranscriptStore = await make_store(chunk_size=4)
    await store.upsert_track(track("TR_a"))
    await store.append_realtime_segments("TR_a", [seg(i, i) for i in range(10)])
    seen: list[str] = []
    page = await store.query_transcript(TranscriptQuery(room="standup", limit=4))
    seen.extend(s.id for s in page.segments)
    next_id = 10
    while page.next_cursor is not None:
        # Live captions keep arriving while a client pages through the transcript.
        await store.append_realtime_segments(
            "TR_a", [seg(next_id + k, next_id + k) for k in range(3)]
        )
        next_id += 3
        page = await store.query_transcript(
            TranscriptQuery(room="standup", limit=4, cursor=page.next_cursor)
        )
        seen.extend(s.id for s in page.segments)
        if next_id > 40:
            break
    assert len(seen) == len(set(seen))
    assert seen == sorted(seen)
    assert seen[:10] == [f"s{i:06d}" for i in range(10)]


async def test_whisper_replaces_and_best_prefers_it(make_store: Callable[..., Any]) -> None:
    store: TranscriptStore = await make_store(chunk_size=3)
    await store.upsert_track(track("TR_a", who="alice"))
    await store.upsert_track(track("TR_b", who="bob", offset_s=0.25))
    await store.append_realtime_segments("TR_a", [seg(i, i, tag="ra") for i in range(5)])
    await store.append_realtime_segments("TR_b", [seg(i, i, tag="rb") for i in range(4)])
    stats = WhisperStats(model="tiny", audio_s=5.0, real_time_factor=0.1, segments=2)
    await store.replace_whisper_segments(
        "TR_a", [seg(i, 2 * i, dur=2, tag="wa-old") for i in range(7)], stats=stats
    )
    await store.replace_whisper_segments(
        "TR_a", [seg(i, 2.5 * i, dur=2.5, tag="wa") for i in range(2)], stats=stats
    )
    whisper = await all_pages(store, room="standup", source=TranscriptSource.WHISPER)
    assert [i for _, i in whisper] == ["wa000000", "wa000001"]
    assert [c.count for c in await store.list_chunks("TR_a", SegmentSource.WHISPER)] == [2]
    # With no egress times known, the recording is taken to start at the publish time.
    covered = {"covered_from": T0.timestamp(), "covered_to": T0.timestamp() + 5.0}
    assert (await store.get_track("TR_a")).whisper == stats.model_copy(update=covered)

    # Until TR_a is transcribed, best is the live transcript everywhere.
    best = await all_pages(store, room="standup", source=TranscriptSource.BEST, limit=2)
    assert {i[:2] for _, i in best} == {"ra", "rb"}
    await store.set_track_status("TR_a", TrackStatus.TRANSCRIBED)
    best = await all_pages(store, room="standup", source=TranscriptSource.BEST, limit=2)
    assert sorted(i for _, i in best) == [
        "rb000000",
        "rb000001",
        "rb000002",
        "rb000003",
        "wa000000",
        "wa000001",
    ]
    assert [a for a, _ in best] == sorted(a for a, _ in best)
    only_a = await all_pages(store, room="standup", track_sid="TR_a")
    assert [i for _, i in only_a] == ["wa000000", "wa000001"]


async def test_best_keeps_live_words_when_whisper_heard_nothing(
    make_store: Callable[..., Any],
) -> None:
    store: TranscriptStore = await make_store(chunk_size=3)
    await store.upsert_track(track("TR_a", who="alice"))
    await store.append_realtime_segments("TR_a", [seg(i, i, tag="ra") for i in range(4)])
    # The stats claim segments the call did not store: the store counts what it stored.
    claimed = WhisperStats(model="tiny", audio_s=4.0, real_time_factor=0.1, segments=5)
    await store.replace_whisper_segments("TR_a", [], stats=claimed)
    await store.set_track_status("TR_a", TrackStatus.TRANSCRIBED)
    stored = (await store.get_track("TR_a")).whisper
    assert stored is not None and stored.segments == 0
    best = await all_pages(store, room="standup", source=TranscriptSource.BEST, limit=3)
    assert [i for _, i in best] == [f"ra{i:06d}" for i in range(4)]
    # A rerun that hears speech switches the track to Whisper; duplicates count once.
    rerun = [seg(0, 0.5, tag="wa"), seg(0, 0.5, tag="wa"), seg(1, 2, tag="wa")]
    await store.replace_whisper_segments("TR_a", rerun, stats=claimed)
    stats = (await store.get_track("TR_a")).whisper
    assert stats is not None and stats.segments == 2
    best = await all_pages(store, room="standup", source=TranscriptSource.BEST, limit=3)
    assert [i for _, i in best] == ["wa000000", "wa000001"]


# Whisper jobs --------------------------------------------------------------------------------
async def test_two_workers_racing_for_one_job(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    assert await store.claim_job("w1", lease_s=60, max_attempts=3) is None
    await store.set_track_status("TR_a", TrackStatus.RECORDED)
    claims = await asyncio.gather(
        *(store.claim_job(f"w{i}", lease_s=60, max_attempts=3) for i in range(8))
    )
    winners = [c for c in claims if c is not None]
    assert len(winners) == 1
    won = winners[0]
    assert won.status is TrackStatus.TRANSCRIBING and won.job.attempts == 1
    assert won.job.worker is not None and won.job.lease_until is not None
    loser = "w-none" if won.job.worker != "w-none" else "w-other"
    assert not await store.renew_lease("TR_a", loser, lease_s=60)
    assert not await store.complete_job("TR_a", loser)
    assert await store.renew_lease("TR_a", won.job.worker, lease_s=60)
    assert await store.complete_job("TR_a", won.job.worker)
    assert (await store.get_track("TR_a")).status is TrackStatus.TRANSCRIBED
    assert await store.count_pending_tracks("standup") == 0


async def test_expired_lease_is_reclaimed(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    await store.set_track_status("TR_a", TrackStatus.RECORDED)
    first = await store.claim_job("w1", lease_s=30, max_attempts=3)
    assert first is not None
    assert await store.claim_job("w2", lease_s=30, max_attempts=3) is None
    later = datetime.now(UTC) + timedelta(seconds=31)
    second = await store.claim_job("w2", lease_s=30, max_attempts=3, now=later)
    assert second is not None and second.job.worker == "w2" and second.job.attempts == 2
    # The worker that lost its lease can no longer finish or fail the job.
    assert not await store.complete_job("TR_a", "w1")
    assert await store.fail_job("TR_a", "w1", "late", max_attempts=3) is None


async def test_attempts_are_bounded_and_last_error_kept(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    await store.set_track_status("TR_a", TrackStatus.RECORDED)
    for attempt in (1, 2):
        claimed = await store.claim_job("w1", lease_s=30, max_attempts=3)
        assert claimed is not None and claimed.job.attempts == attempt
        status = await store.fail_job("TR_a", "w1", f"boom {attempt}", max_attempts=3)
        assert status is TrackStatus.RECORDED
        assert (await store.get_track("TR_a")).job.last_error == f"boom {attempt}"
    claimed = await store.claim_job("w1", lease_s=30, max_attempts=3)
    assert claimed is not None and claimed.job.attempts == 3
    assert await store.fail_job("TR_a", "w1", "boom 3", max_attempts=3) is TrackStatus.FAILED
    failed = await store.get_track("TR_a")
    assert failed.status is TrackStatus.FAILED
    assert failed.status_reason is not None and "boom 3" in failed.status_reason
    assert await store.claim_job("w1", lease_s=30, max_attempts=3) is None


async def test_lease_expiring_on_last_attempt_fails_the_track(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    await store.set_track_status("TR_a", TrackStatus.RECORDED)
    assert await store.claim_job("w1", lease_s=5, max_attempts=1) is not None
    later = datetime.now(UTC) + timedelta(seconds=10)
    assert await store.claim_job("w2", lease_s=5, max_attempts=1, now=later) is None
    failed = await store.get_track("TR_a")
    assert failed.status is TrackStatus.FAILED
    assert failed.status_reason is not None and "lease expired" in failed.status_reason
    assert await store.count_pending_tracks("standup") == 0


async def test_release_does_not_count_the_attempt(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    await store.set_track_status("TR_a", TrackStatus.RECORDED)
    assert await store.claim_job("w1", lease_s=30, max_attempts=1) is not None
    assert await store.release_job("TR_a", "w1")
    again = await store.claim_job("w2", lease_s=30, max_attempts=1)
    assert again is not None and again.job.attempts == 1 and again.job.worker == "w2"


async def test_ping(store: TranscriptStore) -> None:
    await store.ping()


async def test_one_of_many_racers_claims_the_egress_start(store: TranscriptStore) -> None:
    await store.upsert_track(track("TR_a"))
    wins = await asyncio.gather(*(store.claim_egress_start("TR_a") for _ in range(8)))
    assert sum(wins) == 1
    claimed = await store.get_track("TR_a")
    assert claimed.egress.status is EgressStatus.STARTING and claimed.egress.id is None
    # A claim whose holder died (no egress id after the stale time) can be taken over.
    assert not await store.claim_egress_start("TR_a", stale_after_s=60)
    await asyncio.sleep(0.05)
    assert await store.claim_egress_start("TR_a", stale_after_s=0.01)
    await store.update_egress("TR_a", EgressInfo(id="EG_1", status=EgressStatus.STARTING))
    await asyncio.sleep(0.05)
    assert not await store.claim_egress_start("TR_a", stale_after_s=0.01)
    await store.upsert_track(track("TR_b"))
    await store.set_track_status("TR_b", TrackStatus.FAILED)
    assert not await store.claim_egress_start("TR_b")


@pytest.mark.parametrize("start", [10**400, 1e999, "12", True, None], ids=repr)
async def test_hand_made_cursors_with_absurd_keys_are_refused(
    store: TranscriptStore, start: Any
) -> None:
    from roomscribe.store.common import transcript_filters
    from roomscribe.store.cursor import encode_cursor

    await store.upsert_track(track("TR_a"))
    query = TranscriptQuery(room="standup", source=TranscriptSource.REALTIME)
    forged = encode_cursor([start, "s000001"], transcript_filters(query))
    with pytest.raises(InvalidCursorError):
        await store.query_transcript(query.model_copy(update={"cursor": forged}))
    rooms = encode_cursor([start, "standup"], {"status": None, "names": None})
    with pytest.raises(InvalidCursorError):
        await store.list_rooms(cursor=rooms)


async def test_a_lost_lease_cannot_overwrite_the_new_holders_transcript(
    store: TranscriptStore,
) -> None:
    await store.upsert_track(track("TR_a"))
    await store.set_track_status("TR_a", TrackStatus.RECORDED)
    first = await store.claim_job("w1", lease_s=0.05, max_attempts=3)
    assert first is not None
    await asyncio.sleep(0.1)  # w1 is paused past its lease; w2 takes the job over
    second = await store.claim_job("w2", lease_s=60, max_attempts=3)
    assert second is not None and second.job.worker == "w2"
    stats = WhisperStats(model="tiny", audio_s=5.0, real_time_factor=0.1)
    mine = [seg(i, i, tag="w2-") for i in range(2)]
    assert await store.finish_job("TR_a", "w2", mine, stats=stats, lease_s=60)
    late = [seg(i, i, tag="w1-") for i in range(3)]
    assert not await store.finish_job("TR_a", "w1", late, stats=stats, lease_s=60)
    done = await store.get_track("TR_a")
    assert done.status is TrackStatus.TRANSCRIBED and done.whisper is not None
    rows = await all_pages(store, room="standup", source=TranscriptSource.WHISPER)
    assert [i for _, i in rows] == ["w2-000000", "w2-000001"]
    # An expired lease fences its own holder too, before anyone else claims.
    await store.upsert_track(track("TR_b"))
    await store.set_track_status("TR_b", TrackStatus.RECORDED)
    assert await store.claim_job("w3", lease_s=0.05, max_attempts=3) is not None
    await asyncio.sleep(0.1)
    assert not await store.finish_job("TR_b", "w3", late, stats=stats, lease_s=60)
    assert (await store.get_track("TR_b")).whisper is None
