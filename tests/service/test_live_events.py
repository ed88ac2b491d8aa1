"""Room events (SSE) over real HTTP: resumption without loss or repeats, stream tokens."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest

from orchestrator_service.live.events import Position
from roomscribe.models import RoomStatus, SegmentIn, TrackStatus, WhisperStats
from tests.service.live_stack import (
    ADMIN,
    INTERNAL_SECRET,
    STANDUP_ONLY,
    Sse,
    Stack,
    last_id_of,
    open_stack,
    running,
    seg,
    segment_ids,
    sse,
)

pytestmark = pytest.mark.service


@pytest.fixture
async def stack(tmp_path: Path) -> AsyncIterator[Stack]:
    async with open_stack(tmp_path) as running_stack:
        yield running_stack


# Resumption -----------------------------------------------------------------------------------
async def test_history_first_then_live_segments_in_order(stack: Stack) -> None:
    await stack.store.append_realtime_segments("TR_a", [seg("TR_a", i) for i in range(3)])
    first = await stack.events("standup", 6)
    assert [e.kind for e in first] == ["room", "track", "segment", "segment", "segment", "track"]
    assert first[0].data["name"] == "standup" and first[1].data["participant_name"] == "Alice"
    assert segment_ids(first) == [f"TR_a-{i:09d}" for i in range(3)]
    assert all(e.id for e in first) and len({e.id for e in first}) == 6

    async def later() -> None:
        await asyncio.sleep(0.2)
        await stack.store.append_realtime_segments("TR_b", [seg("TR_b", 7, "hello")])

    writer = asyncio.create_task(later())
    more = await stack.events("standup", 2, last_id=first[-1].id)
    await writer
    # The track event first (its live counter moved), then the segment itself.
    assert [e.kind for e in more] == ["track", "segment"]
    assert more[1].data["text"] == "hello" and more[1].data["participant_identity"] == "bob"


async def test_dropped_connections_and_a_restart_lose_and_repeat_nothing(stack: Stack) -> None:
    """Segments keep arriving on two tracks while the client keeps dropping its connection."""
    expected = [f"TR_{t}-{i:09d}" for t in "ab" for i in range(40)]

    async def meeting() -> None:
        for i in range(0, 40, 4):
            for t in "ab":
                sid = f"TR_{t}"
                await stack.store.append_realtime_segments(
                    sid, [seg(sid, j) for j in range(i, i + 4)]
                )
            await asyncio.sleep(0.02)

    writer = asyncio.create_task(meeting())
    rng = random.Random(7)
    received: list[Sse] = []
    last: str | None = None
    restarted = False
    while len(segment_ids(received)) < len(expected):
        batch = await stack.events("standup", rng.randint(1, 9), last_id=last)
        received.extend(batch)
        last = last_id_of(batch, last)
        if not restarted and len(segment_ids(received)) > 30:
            # The orchestrator goes away and a new one serves the same store: ids still hold.
            restarted = True
            async with running(stack):
                batch = await stack.events("standup", 5, last_id=last)
                received.extend(batch)
                last = last_id_of(batch, last)
    await writer
    got = segment_ids(received)
    assert sorted(got) == sorted(expected)  # every segment, none twice
    for t in "ab":
        mine = [s for s in got if s.startswith(f"TR_{t}")]
        assert mine == sorted(mine)
    assert [e.kind for e in received].count("room") == 1
    # Nothing is pending after the last id: a reconnect brings only keepalives.
    quiet = await stack.events("standup", 1, last_id=last, limit_s=3)
    assert quiet[0].kind == ":"


async def test_a_whisper_pass_is_one_correction_and_status_changes_are_events(
    stack: Stack,
) -> None:
    await stack.store.append_realtime_segments("TR_a", [seg("TR_a", i) for i in range(2)])
    start = await stack.events("standup", 5)
    assert [e.kind for e in start] == ["room", "track", "segment", "segment", "track"]
    await stack.store.set_track_status("TR_a", TrackStatus.RECORDED)
    await stack.store.replace_whisper_segments(
        "TR_a",
        [SegmentIn(id="TR_a-w1", start=0.0, end=1.8, text="corrected")],
        stats=WhisperStats(model="tiny", audio_s=2.0, real_time_factor=0.1),
    )
    await stack.store.set_track_status("TR_a", TrackStatus.TRANSCRIBED)
    await stack.store.transition_room(
        "standup", to=RoomStatus.ACTIVE, from_={RoomStatus.REGISTERED}
    )
    after = await stack.events("standup", 3, last_id=start[-1].id)
    assert [e.kind for e in after] == ["room", "track", "correction"]
    assert after[0].data["status"] == "active"
    assert after[1].data["status"] == "transcribed"
    fix = after[2].data
    assert fix["track_sid"] == "TR_a" and fix["whisper"]["segments"] == 1
    assert fix["covered_to"] - fix["covered_from"] == pytest.approx(2.0)
    again = await stack.events("standup", 1, last_id=after[-1].id, limit_s=3)
    assert again[0].kind == ":"  # the correction is not sent twice


async def test_a_segment_stored_out_of_order_asks_for_a_resync_once(stack: Stack) -> None:
    await stack.store.append_realtime_segments("TR_a", [seg("TR_a", 5)])
    start = await stack.events("standup", 4)
    await stack.store.append_realtime_segments("TR_a", [seg("TR_a", 2)])  # before the last one
    after = await stack.events("standup", 2, last_id=start[-1].id)
    assert [e.kind for e in after] == ["track", "resync"]
    assert after[1].data == {
        "track_sid": "TR_a",
        "participant_identity": "alice",
        "source": "realtime",
    }
    await stack.store.append_realtime_segments("TR_a", [seg("TR_a", 9)])
    tail = await stack.events("standup", 2, last_id=after[-1].id)
    assert segment_ids(tail) == ["TR_a-000000009"]


async def test_bad_event_ids_are_refused_before_the_stream_starts(stack: Stack) -> None:
    retro_id = (await stack.events("retro", 1))[0].id
    url = f"{stack.url}/v1/rooms/standup/events"
    for bad in ("garbage!", retro_id, "A" * 20_000, Position.start("standup").encode()[:-3]):
        res = await stack.client.get(url, headers={**ADMIN, "Last-Event-ID": str(bad)})
        assert res.status_code == 400, bad
        assert res.json()["error"]["code"] == "invalid_cursor"
    missing = await stack.client.get(f"{stack.url}/v1/rooms/nope/events", headers=ADMIN)
    assert missing.status_code == 404


async def test_the_header_wins_over_the_query_and_idle_streams_get_keepalives(
    stack: Stack,
) -> None:
    first = await stack.events("standup", 3)  # room and two tracks
    after_room, after_all = first[0].id, first[-1].id
    assert after_room and after_all
    # A new EventSource carries the id in its URL; its reconnects send a newer one in the header.
    resumed = await stack.events("standup", 1, params={"last_event_id": after_room})
    assert resumed[0].kind == "track"
    both = await stack.events("standup", 1, params={"last_event_id": after_room}, last_id=after_all)
    assert both[0].kind == ":" and both[0].data == "keepalive"


async def test_shutdown_ends_open_streams(tmp_path: Path, stack: Stack) -> None:
    token = await stack.stream_token("standup")
    again = Stack(stack.store, stack.settings, tmp_path)
    seen: list[Sse] = []

    async def read(url: str) -> None:
        async for event in sse(stack.client, url, params={"token": token}):
            seen.append(event)

    started = time.monotonic()
    async with running(again):
        reader = asyncio.create_task(read(f"{again.url}/v1/rooms/standup/events"))
        await asyncio.sleep(0.3)
    async with asyncio.timeout(3):
        await reader  # the stream ended with the server: not waited for
    assert seen[0].kind == "room" and time.monotonic() - started < 5


# Stream tokens ------------------------------------------------------------------------------
async def test_stream_tokens_open_one_room_and_nothing_else(stack: Stack) -> None:
    url = stack.url
    no_auth = await stack.client.post(f"{url}/v1/rooms/standup/stream-token")
    assert no_auth.status_code == 401
    other = await stack.client.post(f"{url}/v1/rooms/retro/stream-token", headers=STANDUP_ONLY)
    assert other.status_code == 403
    body = (
        await stack.client.post(f"{url}/v1/rooms/standup/stream-token", headers=STANDUP_ONLY)
    ).json()
    assert 295 <= body["expires_in"] <= 300 and body["room"] == "standup"
    token = body["token"]
    ok = await stack.events("standup", 1, params={"token": token}, headers={})
    assert ok[0].kind == "room"
    for path in ("/v1/rooms/retro/events", "/v1/rooms/retro/tracks/TR_r/audio"):
        res = await stack.client.get(f"{url}{path}", params={"token": token})
        assert res.status_code == 403, path
    # Not an API token: the REST API refuses it, and API tokens are no stream tokens.
    rest = await stack.client.get(
        f"{url}/v1/rooms/standup", headers={"Authorization": f"Bearer {token}"}
    )
    assert rest.status_code == 401
    api = ADMIN["Authorization"].removeprefix("Bearer ")
    res = await stack.client.get(f"{url}/v1/rooms/standup/events", params={"token": api})
    assert res.status_code == 401


async def test_expired_forged_and_long_lived_stream_tokens_are_refused(stack: Stack) -> None:
    tokens = stack.live.tokens
    expired, _ = tokens.issue("standup", subject="t", now=time.time() - 400)
    payload = jwt.decode(
        tokens.issue("standup", subject="t")[0], options={"verify_signature": False}
    )
    forged = jwt.encode({**payload, "room": "retro"}, INTERNAL_SECRET, algorithm="HS256")
    key = tokens._key  # the real key: a token living longer than the server issues them
    long_lived = jwt.encode({**payload, "exp": payload["iat"] + 86400}, key, algorithm="HS256")
    url = f"{stack.url}/v1/rooms/standup/events"
    for bad, code in (
        (expired, "token_expired"),
        (forged, "unauthorized"),
        (long_lived, "unauthorized"),
        ("not-a-token", "unauthorized"),
    ):
        res = await stack.client.get(url, params={"token": bad})
        assert res.status_code == 401, bad
        assert res.json()["error"]["code"] == code


async def test_a_stream_ends_when_its_token_expires(stack: Stack) -> None:
    ttl = stack.live.tokens.ttl_s
    # Verification allows 5 s of clock skew; the stream itself ends at exp.
    token, _ = stack.live.tokens.issue("standup", subject="t", now=time.time() - ttl + 2.5)
    seen: list[Sse] = []
    started = time.monotonic()
    async with asyncio.timeout(5):
        async for event in sse(stack.client, f"{stack.url}/v1/rooms/standup/events",
                               params={"token": token}):  # fmt: skip
            seen.append(event)
    assert seen[0].kind == "room" and time.monotonic() - started < 4
