"""A room name's meetings: reuse, late tracks, unused rooms, lost ends (emulated LiveKit)."""

from __future__ import annotations

import asyncio

import pytest

from devkit.webhooks import sign_webhook, webhook_body
from roomscribe.models import RoomStatus, SegmentIn, TrackStatus, TranscriptQuery
from tests.world import KEY, SECRET, World, api_token, tone

pytestmark = pytest.mark.service


async def _transcribe(world: World, sid: str, text: str) -> None:
    """What the Whisper worker does for a recorded track, then its completion call."""
    await world.store.append_realtime_segments(
        sid, [SegmentIn(id=f"{sid}-1", start=0.1, end=0.4, text=text)]
    )
    await world.store.set_track_status(sid, TrackStatus.TRANSCRIBED)
    track = await world.store.get_track(sid)
    await world.lifecycle.check_and_complete_room(track.room)
    await world.lifecycle.idle()


async def _meeting(world: World, who: str, text: str) -> str:
    """One short meeting in room ``standup``, ended by LiveKit; returns the track sid."""
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", who)
    sid = await lk.publish_audio("standup", who, tone(0.5))
    await world.settle()
    await lk.end_room("standup")
    await world.settle()
    await _transcribe(world, sid, text)
    return sid


async def test_a_reused_room_name_gives_a_second_summarized_meeting(world: World) -> None:
    first = await _meeting(world, "alice", "alice speaks in the first meeting")
    one = await world.store.get_room("standup")
    assert one.status is RoomStatus.COMPLETED and one.summary is not None

    second = await _meeting(world, "bob", "bob speaks in the second meeting")
    now = await world.store.get_room("standup")
    assert now.status is RoomStatus.COMPLETED and now.sid != one.sid
    assert now.participants == ["bob"]
    assert [t.track_sid for t in await world.store.list_tracks("standup")] == [second]
    assert now.summary is not None and "bob" in now.summary.text
    assert "alice" not in now.summary.text

    # The first meeting stays queryable under its own key, summary and transcript intact.
    kept = await world.store.get_room(f"standup@{one.sid}")
    assert kept.meeting_of == "standup" and kept.status is RoomStatus.COMPLETED
    assert kept.summary == one.summary and kept.participants == ["alice"]
    page = await world.store.query_transcript(TranscriptQuery(room=kept.name))
    assert [s.track_sid for s in page.segments] == [first]
    admin = {"Authorization": "Bearer " + api_token(roles=["admin"])}
    res = await world.http.get(f"/v1/rooms/standup@{one.sid}/transcript", headers=admin)
    assert res.status_code == 200, res.text
    assert [s["text"] for s in res.json()["segments"]] == ["alice speaks in the first meeting"]


async def test_a_late_event_of_the_earlier_meeting_stays_there(world: World) -> None:
    await _meeting(world, "alice", "first")
    one = await world.store.get_room("standup")
    await world.lk.create_room("standup")
    await world.register("standup")
    await world.settle()
    # A participant_joined of the first room instance, delivered late (LiveKit retries).
    stale = next(
        e for e in world.lk.events if e.event == "participant_joined" and e.room.sid == one.sid
    )
    body = webhook_body(stale)
    res = await world.http.post(
        "/v1/webhooks/livekit",
        content=body,
        headers={"Authorization": sign_webhook(body, KEY, SECRET)},
    )
    assert res.status_code == 200
    assert (await world.store.get_room("standup")).participants == []
    assert (await world.store.get_room(f"standup@{one.sid}")).participants == ["alice"]


async def test_a_lost_room_finished_then_a_new_room_of_that_name(world: World) -> None:
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", "alice")
    sid = await lk.publish_audio("standup", "alice", tone(0.5))
    await world.settle()
    lk.drop_next_webhooks(10, "room_finished")
    await lk.end_room("standup")
    await world.settle()
    old = await world.store.get_room("standup")
    assert old.status is RoomStatus.ACTIVE  # nothing said it ended
    # The name is reused at once: LiveKit still lists a room "standup", another one.
    await lk.create_room("standup")
    await world.settle()
    kept = await world.store.get_room(f"standup@{old.sid}")
    assert kept.status is RoomStatus.FINAL_ROOM
    assert kept.status_reason == "LiveKit opened a new room of the same name"
    await _transcribe(world, sid, "words")
    assert (await world.store.get_room(kept.name)).status is RoomStatus.COMPLETED
    assert (await world.store.get_room("standup")).status is RoomStatus.ACTIVE


async def test_the_reconciler_sees_a_new_room_instance_when_room_started_was_lost(
    world: World,
) -> None:
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", "alice")
    await world.settle()
    lk.drop_next_webhooks(10)
    await lk.end_room("standup")
    await lk.create_room("standup")
    await world.settle()
    old = await world.store.get_room("standup")
    assert old.status is RoomStatus.ACTIVE
    await world.lifecycle.reconcile()
    await world.settle()
    assert (await world.store.get_room(f"standup@{old.sid}")).status is RoomStatus.COMPLETED
    fresh = await world.store.get_room("standup")
    assert fresh.sid != old.sid and fresh.status is RoomStatus.REGISTERED


async def test_a_track_published_after_completion_is_recorded_and_summarized(
    world: World,
) -> None:
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", "alice")
    first = await lk.publish_audio("standup", "alice", tone(0.5))
    await world.settle()
    await lk.unpublish("standup", first)
    await world.settle()
    await world.finalize("standup")  # an early finalize: the meeting goes on
    await _transcribe(world, first, "alice before")
    assert (await world.store.get_room("standup")).status is RoomStatus.COMPLETED

    await lk.join("standup", "bob")
    late = await lk.publish_audio("standup", "bob", tone(0.5, 660))
    await world.settle()
    room = await world.store.get_room("standup")
    assert room.status is RoomStatus.FINAL_ROOM and room.status_reason is not None
    assert late in room.status_reason
    assert (await world.store.get_track(late)).egress.id is not None  # recorded too
    await lk.unpublish("standup", late)
    await world.settle()
    await _transcribe(world, late, "bob after")
    done = await world.store.get_room("standup")
    assert done.status is RoomStatus.COMPLETED
    assert done.summary is not None and "bob after" in done.summary.text


async def test_a_registered_room_nobody_joined_expires(world: World) -> None:
    await world.lk.create_room("standup")
    await world.register("standup")
    await world.lk.end_room("standup")  # an empty room times out in LiveKit
    await world.settle()
    # Its room_finished finalized it: with nobody in it there is nothing to summarize.
    assert (await world.store.get_room("standup")).status is RoomStatus.COMPLETED

    await world.lk.create_room("ghost")
    await world.register("ghost")
    world.lk.drop_next_webhooks(1, "room_finished")
    await world.lk.end_room("ghost")
    await world.settle()
    world.lifecycle.room_gone_grace_s = 0.0
    await world.lifecycle.reconcile()
    await world.lifecycle.reconcile()
    await asyncio.sleep(0)
    ghost = await world.store.get_room("ghost")
    assert ghost.status is RoomStatus.EXPIRED
    assert ghost.status_reason == "nobody joined before LiveKit closed the room"
