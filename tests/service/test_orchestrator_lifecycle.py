"""Webhooks, registration, egress and completion through the real livekit-api client.

LiveKit is the devkit emulator (Twirp endpoints, signed webhooks, egress into the object
store); the orchestrator runs on a real server and receives the emulator's webhooks.
"""

from __future__ import annotations

import asyncio
import datetime
import tracemalloc
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from livekit.protocol.models import ParticipantInfo, Room, TrackInfo, TrackType
from livekit.protocol.webhook import WebhookEvent

from devkit.webhooks import WEBHOOK_CONTENT_TYPE, sign_webhook, webhook_body
from orchestrator_service.summary import SummaryError
from roomscribe.models import (
    RoomStatus,
    SegmentIn,
    Summary,
    TrackCreate,
    TrackStatus,
    TranscriptQuery,
    WhisperStats,
)
from tests.world import KEY, SECRET, World, api_token, tone

pytestmark = pytest.mark.service


# Signatures ----------------------------------------------------------------------------------
def event(kind: str = "room_started", room: str = "standup") -> WebhookEvent:
    return WebhookEvent(event=kind, id=f"EV_{kind}", created_at=1_790_000_000, room=Room(name=room))


@pytest.mark.parametrize(
    "case", ["unsigned", "forged", "tampered", "expired", "garbage", "bearer-prefixed-forgery"]
)
async def test_bad_webhook_signatures_are_refused(world: World, case: str) -> None:
    await world.register("standup")
    body = webhook_body(event("room_finished"))
    headers = {"Content-Type": WEBHOOK_CONTENT_TYPE}
    if case == "forged":
        headers["Authorization"] = sign_webhook(body, KEY, "not-the-secret-0123456789abcdefghijk")
    elif case == "tampered":
        headers["Authorization"] = sign_webhook(body, KEY, SECRET)
        body = body.replace("standup", "standuq")
    elif case == "expired":
        headers["Authorization"] = sign_webhook(
            body, KEY, SECRET, ttl=-datetime.timedelta(minutes=10)
        )
    elif case == "garbage":
        headers["Authorization"] = "x.y.z"
    elif case == "bearer-prefixed-forgery":
        headers["Authorization"] = "Bearer " + sign_webhook(
            body, KEY, "wrong-secret-0123456789abcdefghijkl"
        )
    res = await world.http.post("/v1/webhooks/livekit", content=body, headers=headers)
    assert res.status_code == 401
    assert res.json()["error"]["code"] == "unauthorized"
    room = await world.store.get_room("standup")
    assert room.status is not RoomStatus.FINAL_ROOM  # nothing was applied


async def test_signed_webhook_for_unregistered_room_does_nothing(world: World) -> None:
    body = webhook_body(event("room_started", room="someone-elses"))
    res = await world.http.post(
        "/v1/webhooks/livekit",
        content=body,
        headers={"Authorization": sign_webhook(body, KEY, SECRET)},
    )
    assert res.status_code == 200 and res.json() == {"status": "ignored"}
    assert await world.store.find_room("someone-elses") is None


async def test_internal_endpoints_need_an_internal_token(world: World) -> None:
    for headers in (
        {},
        world.internal(audience="stt"),
        world.internal(secret="other-internal-secret-0123456789abcdef"),
    ):
        res = await world.http.post("/v1/internal/rooms/standup/register", headers=headers)
        assert res.status_code == 401
    assert await world.store.find_room("standup") is None


# The recording path --------------------------------------------------------------------------
async def test_sweep_egress_and_recording(world: World) -> None:
    lk = world.lk
    await lk.create_room("standup")
    await lk.join("standup", "alice", "Alice")
    early = await lk.publish_audio("standup", "alice", tone(1.0))  # before registration
    room = await world.register("standup")
    assert room["status"] == "active"
    await world.settle()
    alice = await world.store.get_track(early)
    assert alice.egress.id is not None and alice.participant_name == "Alice"
    assert alice.egress.object_key == f"rooms/standup/alice/{early}.ogg"

    await lk.join("standup", "bob")
    late = await lk.publish_audio("standup", "bob", tone(0.8, 660))
    await world.settle()
    assert (await world.store.get_track(late)).egress.id is not None
    await lk.unpublish("standup", late)
    await world.settle()
    assert await world.track_status(late) is TrackStatus.RECORDED
    info = await world.objects.stat(f"rooms/standup/bob/{late}.ogg")
    assert info.size > 0

    await lk.end_room("standup")
    await world.settle()
    assert await world.track_status(early) is TrackStatus.RECORDED
    done = await world.store.get_room("standup")
    # Recorded tracks wait for Whisper: the room is final, not complete.
    assert done.status is RoomStatus.FINAL_ROOM
    assert sorted(done.participants) == ["alice", "bob"]


async def test_egress_failure_marks_the_track_and_does_not_block(world: World) -> None:
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", "alice")
    lk.fail_next_egress("disk full")
    sid = await lk.publish_audio("standup", "alice", tone())
    await world.settle()
    await lk.unpublish("standup", sid)
    await lk.end_room("standup")
    await world.settle()
    track = await world.store.get_track(sid)
    assert track.status is TrackStatus.FAILED
    assert track.status_reason is not None and "disk full" in track.status_reason
    # No other track is pending, so the room completes.
    assert (await world.store.get_room("standup")).status is RoomStatus.COMPLETED


async def test_duplicated_webhooks_leave_the_same_state(world: World) -> None:
    lk = world.lk
    lk.duplicate_webhooks(True)
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", "alice")
    sid = await lk.publish_audio("standup", "alice", tone())
    await world.settle()
    await lk.unpublish("standup", sid)
    await world.settle()
    track = await world.store.get_track(sid)
    assert track.status is TrackStatus.RECORDED
    egresses = await world.lifecycle._lk.list_egress("standup")
    assert len(egresses) == 1  # one egress per track, however often the event came


async def test_duplicates_delivered_at_once_start_one_egress(world: World) -> None:
    # LiveKit's notifier retries and runs several deliveries at a time: both copies of
    # track_published can be in the orchestrator together.
    lk = world.lk
    lk.duplicate_webhooks(True, concurrent=True)
    await lk.create_room("standup")
    await world.register("standup")
    sids = []
    for who in ("alice", "bob", "carol"):
        await lk.join("standup", who)
        sids.append(await lk.publish_audio("standup", who, tone()))
    await world.settle()
    # The sweep and the reconciler race the webhooks too.
    await asyncio.gather(world.register("standup"), world.lifecycle.reconcile())
    await world.settle()
    egresses = await world.lifecycle._lk.list_egress("standup")
    assert sorted(e.track.track_id for e in egresses) == sorted(sids)


async def test_reordered_and_replayed_events_converge(world: World) -> None:
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", "alice")
    sid = await lk.publish_audio("standup", "alice", tone())
    await world.settle()
    first_egress = (await world.store.get_track(sid)).egress.id
    lk.hold_webhooks()
    await lk.unpublish("standup", sid)
    await lk.wait_idle()
    # egress_ended now arrives before track_unpublished.
    lk.release_webhooks(reverse=True)
    await world.settle()
    assert await world.track_status(sid) is TrackStatus.RECORDED
    # A late replay of the whole history changes nothing and starts no second egress.
    for ev in list(lk.delivered):
        body = webhook_body(ev)
        res = await world.http.post(
            "/v1/webhooks/livekit",
            content=body,
            headers={"Authorization": sign_webhook(body, KEY, SECRET)},
        )
        assert res.status_code == 200
    await world.settle()
    track = await world.store.get_track(sid)
    assert track.status is TrackStatus.RECORDED and track.egress.id == first_egress
    assert len(await world.lifecycle._lk.list_egress("standup")) == 1


async def test_track_gone_before_its_recording_started(world: World) -> None:
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", "alice")
    lk.hold_webhooks()
    sid = await lk.publish_audio("standup", "alice", tone())
    await lk.unpublish("standup", sid)
    lk.release_webhooks(reverse=True)  # track_unpublished, then track_published
    await world.settle()
    track = await world.store.get_track(sid)
    assert track.status is TrackStatus.FAILED
    assert track.status_reason is not None and "egress" in track.status_reason


async def test_reconciler_repairs_a_lost_egress_ended(world: World) -> None:
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", "alice")
    sid = await lk.publish_audio("standup", "alice", tone())
    await world.settle()
    # Registered before anyone joined: the first participant makes the room active.
    assert (await world.store.get_room("standup")).status is RoomStatus.ACTIVE
    lk.drop_next_webhooks(1, event="egress_ended")
    await lk.unpublish("standup", sid)
    await world.settle()
    assert await world.track_status(sid) is TrackStatus.RECORDING
    await world.lifecycle.reconcile()
    await world.settle()
    assert await world.track_status(sid) is TrackStatus.RECORDED
    metrics = (await world.http.get("/metrics")).text
    assert 'orchestrator_reconciler_repairs_total{kind="lost_egress_ended"} 1.0' in metrics


async def test_concurrent_finalize_and_transcribed_complete_once(world: World) -> None:
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    sids = []
    for who in ("alice", "bob", "carol"):
        await lk.join("standup", who)
        sids.append(await lk.publish_audio("standup", who, tone(0.5)))
    await world.settle()
    for sid in sids:
        await lk.unpublish("standup", sid)
    await world.settle()
    assert [await world.track_status(s) for s in sids] == [TrackStatus.RECORDED] * 3

    async def transcribed(sid: str) -> bool:
        # What the Whisper worker does when it finishes a track.
        await world.store.set_track_status(sid, TrackStatus.TRANSCRIBED)
        return await world.lifecycle.check_and_complete_room("standup")

    async def finalized() -> bool:
        return bool((await world.finalize("standup"))["completed"])

    wins = await asyncio.gather(
        finalized(),
        finalized(),
        *(transcribed(s) for s in sids),
        world.lifecycle.check_and_complete_room("standup"),
    )
    assert sum(wins) == 1
    await world.lifecycle.idle()  # the winner summarizes in the background
    room = await world.store.get_room("standup")
    assert room.status is RoomStatus.COMPLETED
    assert room.summary is not None and room.summary.model.startswith("none")  # no speech
    metrics = (await world.http.get("/metrics")).text
    assert "orchestrator_rooms_completed_total 1.0" in metrics


async def test_finalize_unknown_room_is_404(world: World) -> None:
    res = await world.http.post("/v1/internal/rooms/ghost/finalize", headers=world.internal())
    assert res.status_code == 404


class FailingSummarizer:
    """Fails like an LLM outage until told otherwise."""

    def __init__(self) -> None:
        self.fail = True
        self.calls = 0

    async def summarize(self, timeline: list[Any], *, participants: list[str]) -> Summary:
        self.calls += 1
        if self.fail:
            raise SummaryError("model overloaded (503)", transient=True)
        return Summary(text="All good.", model="fake")

    async def aclose(self) -> None:
        return None


async def test_failed_summary_keeps_the_room_retryable(world: World) -> None:
    fake = FailingSummarizer()
    world.lifecycle._summarizer = fake
    await _spoken_room(world)
    await world.store.replace_whisper_segments(
        "TR_a",
        [SegmentIn(id="TR_a-w1", start=0, end=1, text="I will send the notes")],
        stats=WhisperStats(model="tiny", audio_s=1.0, real_time_factor=0.1, segments=1),
    )
    await world.finalize("standup")
    await world.lifecycle.idle()
    room = await world.store.get_room("standup")
    assert room.status is RoomStatus.FINAL_ROOM and room.summary is None
    assert room.status_reason is not None and "summary failed" in room.status_reason
    page = await world.store.query_transcript(TranscriptQuery(room="standup"))
    assert [s.text for s in page.segments] == ["I will send the notes"]  # transcript intact

    admin = {"Authorization": "Bearer " + api_token(roles=["admin"])}
    viewer = {"Authorization": "Bearer " + api_token(rooms=["standup"])}
    path = "/v1/rooms/standup/summary:regenerate"
    assert (await world.http.post(path, headers=viewer)).status_code == 403
    fake.fail = False
    res = await world.http.post(path, headers=admin)
    assert res.status_code == 202 and res.json()["status"] == "summarizing"
    await world.lifecycle.idle()
    room = await world.store.get_room("standup")
    assert room.status is RoomStatus.COMPLETED
    assert room.summary is not None and room.summary.text == "All good."
    assert fake.calls == 2
    # Completed rooms can be summarized again; unknown rooms are 404.
    assert (await world.http.post(path, headers=admin)).status_code == 202
    await world.lifecycle.idle()
    assert (
        await world.http.post("/v1/rooms/ghost/summary:regenerate", headers=admin)
    ).status_code == 404


@pytest.mark.parametrize("declared", [True, False], ids=["content-length", "chunked"])
async def test_a_huge_webhook_body_is_refused_without_being_held(
    world: World, declared: bool
) -> None:
    gib = 1 << 30
    piece = b"\0" * (1 << 16)

    async def body() -> AsyncIterator[bytes]:
        for _ in range(gib // len(piece)):
            yield piece

    headers = {"Authorization": "x.y.z", "Content-Type": "application/webhook+json"}
    if declared:
        headers["Content-Length"] = str(gib)
    tracemalloc.start()
    try:
        try:
            res = await world.http.post("/v1/webhooks/livekit", content=body(), headers=headers)
        except httpx.TransportError:
            status = None  # the server answered and closed while the client still sent
        else:
            status = res.status_code
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert status in (413, None)
    assert peak < 10 * 1024 * 1024, f"{peak / 2**20:.1f} MiB held for a refused body"
    # The service is intact afterwards.
    assert (await world.http.get("/healthz")).status_code == 200


@pytest.mark.parametrize("created_at", [10**15, -5, 2**62], ids=repr)
async def test_absurd_webhook_times_are_taken_as_unset(world: World, created_at: int) -> None:
    await world.register("standup")
    published = WebhookEvent(
        event="track_published",
        id="EV_tp",
        created_at=created_at,
        room=Room(name="standup"),
        participant=ParticipantInfo(identity="alice", joined_at=created_at),
        track=TrackInfo(sid="TR_far", type=TrackType.AUDIO),
    )
    body = webhook_body(published)
    res = await world.http.post(
        "/v1/webhooks/livekit",
        content=body,
        headers={"Authorization": sign_webhook(body, KEY, SECRET)},
    )
    assert res.status_code == 200, res.text
    track = await world.store.get_track("TR_far")
    age = datetime.datetime.now(datetime.UTC) - track.published_at
    assert abs(age.total_seconds()) < 60


class ScriptedSummarizer:
    """Raises what it is given, once per call, then summarizes."""

    def __init__(self, *errors: BaseException, hang: bool = False) -> None:
        self.errors = list(errors)
        self.hang = hang
        self.calls = 0
        self.started = asyncio.Event()

    async def summarize(self, timeline: list[Any], *, participants: list[str]) -> Summary:
        self.calls += 1
        self.started.set()
        if self.hang:
            await asyncio.Event().wait()
        if self.errors:
            raise self.errors.pop(0)
        return Summary(text="LLM summary.", model="fake")

    async def aclose(self) -> None:
        return None


async def _spoken_room(world: World) -> None:
    await world.store.register_room("standup")
    await world.store.upsert_track(
        TrackCreate(
            track_sid="TR_a",
            room="standup",
            participant_identity="alice",
            published_at=datetime.datetime.now(datetime.UTC),
        )
    )
    await world.store.append_realtime_segments(
        "TR_a", [SegmentIn(id="TR_a-1", start=0, end=1, text="I will send the notes")]
    )
    await world.store.set_track_status("TR_a", TrackStatus.TRANSCRIBED)


async def test_a_refused_llm_summary_falls_back_to_the_extract_with_the_reason(
    world: World,
) -> None:
    fake = ScriptedSummarizer(SummaryError("API key not valid", transient=False))
    world.lifecycle._summarizer = fake
    await _spoken_room(world)
    await world.finalize("standup")
    await world.lifecycle.idle()
    room = await world.store.get_room("standup")
    assert room.status is RoomStatus.COMPLETED and fake.calls == 1  # never retried
    assert room.summary is not None and room.summary.model.startswith("extractive")
    assert room.status_reason is not None and "API key not valid" in room.status_reason


async def test_transient_failures_are_bounded_then_the_extract_is_stored(world: World) -> None:
    outage = [SummaryError("503", transient=True) for _ in range(10)]
    fake = ScriptedSummarizer(*outage)
    world.lifecycle._summarizer = fake
    await _spoken_room(world)
    await world.finalize("standup")
    for _ in range(world.lifecycle.max_summary_attempts + 2):
        await world.lifecycle.idle()
        await world.lifecycle.reconcile()  # what the periodic reconciler does
    await world.lifecycle.idle()
    room = await world.store.get_room("standup")
    assert fake.calls == world.lifecycle.max_summary_attempts
    assert room.status is RoomStatus.COMPLETED and room.summary is not None
    assert room.summary.model.startswith("extractive")


async def test_an_unexpected_summarizer_error_hands_the_room_back(world: World) -> None:
    world.lifecycle._summarizer = ScriptedSummarizer(KeyError("candidates"))
    await _spoken_room(world)
    await world.finalize("standup")
    await world.lifecycle.idle()
    room = await world.store.get_room("standup")
    assert room.status is RoomStatus.FINAL_ROOM  # not summarizing for 30 minutes
    assert room.status_reason is not None and "KeyError" in room.status_reason
    await world.lifecycle.reconcile()
    await world.lifecycle.idle()
    assert (await world.store.get_room("standup")).status is RoomStatus.COMPLETED


async def test_a_shutdown_during_a_summary_hands_the_room_back(world: World) -> None:
    fake = ScriptedSummarizer(hang=True)
    world.lifecycle._summarizer = fake
    await _spoken_room(world)
    await world.finalize("standup")
    await fake.started.wait()
    assert (await world.store.get_room("standup")).status is RoomStatus.SUMMARIZING
    await world.lifecycle.close()  # what the orchestrator's shutdown does
    room = await world.store.get_room("standup")
    assert room.status is RoomStatus.FINAL_ROOM
    assert room.status_reason == "summary interrupted by shutdown"


async def test_a_room_livekit_no_longer_lists_is_finalized_after_the_grace(world: World) -> None:
    # room_finished is lost (LiveKit's queue was full) and the agent crashed with it.
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", "alice")
    await lk.publish_audio("standup", "alice", tone())
    await world.settle()
    await lk.create_room("other")
    await world.register("other")
    await lk.join("other", "bob")
    await world.settle()
    lk.drop_next_webhooks(1, "room_finished")
    await lk.end_room("standup")
    await world.settle()
    assert (await world.store.get_room("standup")).status is RoomStatus.ACTIVE
    world.lifecycle.room_gone_grace_s = 0.2
    await world.lifecycle.reconcile()  # first seen missing: not yet
    assert (await world.store.get_room("standup")).status is RoomStatus.ACTIVE
    await asyncio.sleep(0.25)
    await world.lifecycle.reconcile()
    await world.settle()
    room = await world.store.get_room("standup")
    assert room.status is RoomStatus.FINAL_ROOM  # its recorded track now awaits Whisper
    assert room.status_reason == "LiveKit no longer lists the room"
    # A room LiveKit still has is left alone.
    assert (await world.store.get_room("other")).status is RoomStatus.ACTIVE
