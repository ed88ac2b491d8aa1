"""The LiveKit emulator through the real ``livekit-api`` client and a real webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import datetime
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
from livekit import api
from livekit.api import ServerError
from livekit.protocol.egress import (
    DirectFileOutput,
    EgressInfo,
    EgressStatus,
    ListEgressRequest,
    S3Upload,
    StopEgressRequest,
    TrackEgressRequest,
)
from livekit.protocol.models import DisconnectReason, TrackSource, TrackType
from livekit.protocol.room import ListParticipantsRequest, ListRoomsRequest
from livekit.protocol.webhook import WebhookEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devkit.livekit_emulator import LiveKitEmulator, ManualClock
from devkit.webhooks import WEBHOOK_CONTENT_TYPE, sign_webhook, webhook_body
from roomscribe.audio import Pcm, decode_file
from roomscribe.objectstore import LocalObjectStore
from tests.servers import serve

pytestmark = pytest.mark.service

KEY = "devkey"
SECRET = "a-test-secret-long-enough-for-hs256-0123456789"
ROOM = "standup"
#: The manual clock's start in tests: 2025-06-15 15:06:40.123456789 UTC, deliberately not a
#: whole second, so seconds and milliseconds fields can be told apart.
T0 = 1_750_000_000_123_456_789
S = 1_000_000_000  # one second in nanoseconds


def tone(seconds: float, hz: float = 440.0) -> Pcm:
    t = np.arange(int(16000 * seconds)) / 16000
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


@dataclass
class HookReceiver:
    """A webhook endpoint that checks every request as an application would."""

    fail_next: int = 0  # answer this many requests with 503 first
    events: list[WebhookEvent] = field(default_factory=list)
    raw: list[tuple[str, str, str]] = field(default_factory=list)  # body, auth, content type
    rejected: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.receiver = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))
        self.app = Starlette(routes=[Route("/hooks", self.hook, methods=["POST"])])

    async def hook(self, request: Request) -> Response:
        body = (await request.body()).decode()
        auth = request.headers.get("authorization", "")
        self.raw.append((body, auth, request.headers.get("content-type", "")))
        if self.fail_next:
            self.fail_next -= 1
            return Response(status_code=503)
        try:
            event = self.receiver.receive(body, auth)
        except Exception as exc:  # livekit-api raises bare Exceptions for bad signatures
            self.rejected.append(str(exc))
            return Response(status_code=401)
        self.events.append(event)
        return Response(status_code=200)

    def names(self) -> list[str]:
        return [event.event for event in self.events]


@dataclass
class Env:
    emulator: LiveKitEmulator
    lk: api.LiveKitAPI
    url: str
    hooks: HookReceiver
    store: LocalObjectStore
    clock: ManualClock


@contextlib.asynccontextmanager
async def open_env(tmp_path: Path, **emulator_options: Any) -> AsyncIterator[Env]:
    """The emulator on a manual clock (at ``T0``), its API client and a webhook receiver."""
    hooks = HookReceiver()
    store = LocalObjectStore(tmp_path / "objects")
    clock = ManualClock(T0)
    async with serve(hooks.app) as hooks_url:
        emulator = LiveKitEmulator(
            KEY,
            SECRET,
            store,
            f"{hooks_url}/hooks",
            webhook_retry_wait=0.01,
            clock=clock,
            **emulator_options,
        )
        async with emulator, emulator.running() as url:
            lk = api.LiveKitAPI(url, KEY, SECRET)
            try:
                yield Env(emulator, lk, url, hooks, store, clock)
            finally:
                await lk.aclose()


@pytest.fixture
async def env(tmp_path: Path) -> AsyncIterator[Env]:
    async with open_env(tmp_path) as opened:
        yield opened


async def start_egress(env: Env, track_sid: str, key: str) -> str:
    request = TrackEgressRequest(
        room_name=ROOM, track_id=track_sid, file=DirectFileOutput(filepath=key)
    )
    info = await env.lk.egress.start_track_egress(request)
    assert info.status == EgressStatus.EGRESS_STARTING
    return info.egress_id


def egress_events(env: Env, egress_id: str) -> list[tuple[str, int]]:
    return [
        (e.event, e.egress_info.status)
        for e in env.hooks.events
        if e.egress_info.egress_id == egress_id
    ]


def ended_info(env: Env, egress_id: str) -> EgressInfo:
    [event] = [
        e
        for e in env.hooks.events
        if e.event == "egress_ended" and e.egress_info.egress_id == egress_id
    ]
    return event.egress_info


async def test_participants_and_room_events(env: Env) -> None:
    room_sid = await env.emulator.create_room(ROOM)
    alice = await env.emulator.join(ROOM, "alice", "Alice")
    await env.emulator.join(ROOM, "bob")
    track = await env.emulator.publish_audio(ROOM, "alice", tone(0.5))

    listed = await env.lk.room.list_participants(ListParticipantsRequest(room=ROOM))
    by_identity = {p.identity: p for p in listed.participants}
    assert set(by_identity) == {"alice", "bob"}
    assert (by_identity["alice"].sid, by_identity["alice"].name) == (alice, "Alice")
    assert [(t.sid, t.type, t.source) for t in by_identity["alice"].tracks] == [
        (track, TrackType.AUDIO, TrackSource.MICROPHONE)
    ]
    assert list(by_identity["bob"].tracks) == []
    rooms = await env.lk.room.list_rooms(ListRoomsRequest())
    assert [(r.name, r.sid, r.num_participants) for r in rooms.rooms] == [(ROOM, room_sid, 2)]

    await env.emulator.wait_idle()
    assert env.hooks.names() == [
        "room_started",
        "participant_joined",
        "participant_joined",
        "track_published",
    ]
    assert env.hooks.rejected == []
    published = env.hooks.events[-1]
    assert (published.room.name, published.room.sid) == (ROOM, room_sid)
    assert (published.participant.identity, published.participant.sid) == ("alice", alice)
    assert (published.track.sid, published.track.type) == (track, TrackType.AUDIO)
    assert published.id.startswith("EV_") and published.created_at > 0
    assert {content_type for _, _, content_type in env.hooks.raw} == {WEBHOOK_CONTENT_TYPE}


async def test_track_egress_records_until_unpublished(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    track = await env.emulator.publish_audio(ROOM, "alice", tone(1.5))
    key = f"rooms/{ROOM}/alice/{track}.ogg"
    egress_id = await start_egress(env, track, key)
    assert egress_id.startswith("EG_")

    env.clock.advance(1.5)  # the whole track plays out while the egress runs
    await env.emulator.unpublish(ROOM, track)
    await env.emulator.wait_idle()

    assert egress_events(env, egress_id) == [
        ("egress_started", EgressStatus.EGRESS_STARTING),
        ("egress_updated", EgressStatus.EGRESS_ACTIVE),
        ("egress_ended", EgressStatus.EGRESS_COMPLETE),
    ]
    names = env.hooks.names()
    assert names.index("track_unpublished") < names.index("egress_ended")
    ended = ended_info(env, egress_id)
    assert (ended.room_name, ended.track.track_id) == (ROOM, track)
    [result] = ended.file_results
    stored = await env.store.stat(key)
    assert (result.filename, result.size, result.location) == (key, stored.size, key)
    assert result.duration == 1_500_000_000
    assert (ended.started_at, ended.ended_at) == (T0, T0 + 3 * S // 2)
    recorded = decode_file(env.store.path_for(key))
    assert abs(recorded.size / 16000 - 1.5) < 0.05


async def test_stop_egress_then_stop_again(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    track = await env.emulator.publish_audio(ROOM, "alice", tone(1.0))
    egress_id = await start_egress(env, track, "rec/alice")  # no extension: .ogg is added
    env.clock.advance(1.0)

    stopped = await env.lk.egress.stop_egress(StopEgressRequest(egress_id=egress_id))
    assert stopped.status == EgressStatus.EGRESS_ENDING
    await env.emulator.wait_idle()
    assert egress_events(env, egress_id)[-1] == ("egress_ended", EgressStatus.EGRESS_COMPLETE)
    assert await env.store.exists("rec/alice.ogg")

    with pytest.raises(ServerError) as again:
        await env.lk.egress.stop_egress(StopEgressRequest(egress_id=egress_id))
    assert (again.value.code, again.value.status) == ("failed_precondition", 412)
    with pytest.raises(ServerError) as unknown:
        await env.lk.egress.stop_egress(StopEgressRequest(egress_id="EG_nosuchegress"))
    assert (unknown.value.code, unknown.value.status) == ("not_found", 404)
    # Unpublishing later does not end the finished egress twice.
    await env.emulator.unpublish(ROOM, track)
    await env.emulator.wait_idle()
    assert [e for e, _ in egress_events(env, egress_id)].count("egress_ended") == 1


async def test_list_egress_filters(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    first = await env.emulator.publish_audio(ROOM, "alice", tone(0.3))
    second = await env.emulator.publish_audio(ROOM, "alice", tone(0.3))
    done = await start_egress(env, first, "a.ogg")
    running = await start_egress(env, second, "b.ogg")
    env.clock.advance(0.3)
    await env.lk.egress.stop_egress(StopEgressRequest(egress_id=done))
    await env.emulator.wait_idle()

    async def ids(request: ListEgressRequest) -> set[str]:
        listed = await env.lk.egress.list_egress(request)
        return {info.egress_id for info in listed.items}

    assert await ids(ListEgressRequest(room_name=ROOM)) == {done, running}
    assert await ids(ListEgressRequest(room_name=ROOM, active=True)) == {running}
    assert await ids(ListEgressRequest(egress_id=done)) == {done}
    assert await ids(ListEgressRequest(room_name="elsewhere")) == set()


@pytest.mark.parametrize("at", ["start", "end"])
async def test_injected_egress_failure(env: Env, at: str) -> None:
    await env.emulator.join(ROOM, "alice")
    track = await env.emulator.publish_audio(ROOM, "alice", tone(0.3))
    env.emulator.fail_next_egress("disk full", at="start" if at == "start" else "end")
    egress_id = await start_egress(env, track, "fail.ogg")
    await env.emulator.unpublish(ROOM, track)
    await env.emulator.wait_idle()

    statuses = [status for _, status in egress_events(env, egress_id)]
    assert statuses[-1] == EgressStatus.EGRESS_FAILED
    assert (EgressStatus.EGRESS_ACTIVE in statuses) == (at == "end")
    assert ended_info(env, egress_id).error == "disk full"
    assert not await env.store.exists("fail.ogg")
    listed = await env.lk.egress.list_egress(ListEgressRequest(egress_id=egress_id))
    assert [(i.status, i.error) for i in listed.items] == [
        (EgressStatus.EGRESS_FAILED, "disk full")
    ]


async def test_egress_for_missing_room_or_track(env: Env) -> None:
    with pytest.raises(ServerError) as missing_room:
        await start_egress(env, "TR_x", "x.ogg")
    assert missing_room.value.code == "not_found"

    await env.emulator.create_room(ROOM)
    egress_id = await start_egress(env, "TR_notpublished", "x.ogg")
    await env.emulator.wait_idle()
    assert egress_events(env, egress_id) == [
        ("egress_started", EgressStatus.EGRESS_STARTING),
        ("egress_ended", EgressStatus.EGRESS_FAILED),
    ]
    assert ended_info(env, egress_id).error == "track not found"


async def test_credentials_and_grants_are_checked(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    wrong = api.LiveKitAPI(env.url, KEY, "not-the-secret-but-as-long-as-it-0123456789")
    try:
        with pytest.raises(ServerError) as bad_secret:
            await wrong.room.list_participants(ListParticipantsRequest(room=ROOM))
    finally:
        await wrong.aclose()
    assert (bad_secret.value.code, bad_secret.value.status) == ("unauthenticated", 401)

    # Admin of another room, or no recording grant: LiveKit answers unauthenticated too.
    other_room = (
        api.AccessToken(KEY, SECRET)
        .with_grants(api.VideoGrants(room_admin=True, room="other"))
        .to_jwt()
    )
    limited = api.LiveKitAPI.with_token(other_room, env.url)
    try:
        with pytest.raises(ServerError) as not_admin:
            await limited.room.list_participants(ListParticipantsRequest(room=ROOM))
        with pytest.raises(ServerError) as not_recorder:
            await limited.egress.list_egress(ListEgressRequest(room_name=ROOM))
    finally:
        await limited.aclose()
    for error in (not_admin.value, not_recorder.value):
        assert (error.code, error.message) == ("unauthenticated", "permissions denied")


async def test_twirp_json_bodies(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    token = (
        api.AccessToken(KEY, SECRET)
        .with_grants(api.VideoGrants(room_admin=True, room=ROOM))
        .to_jwt()
    )
    async with httpx.AsyncClient() as client:
        response = await client.post(
            f"{env.url}/twirp/livekit.RoomService/ListParticipants",
            json={"room": ROOM},
            headers={"Authorization": f"Bearer {token}"},
        )
        missing = await client.post(
            f"{env.url}/twirp/livekit.RoomService/NoSuchMethod",
            json={},
            headers={"Authorization": f"Bearer {token}"},
        )
    assert response.status_code == 200
    assert [p["identity"] for p in response.json()["participants"]] == ["alice"]
    assert (missing.status_code, missing.json()["code"]) == (404, "bad_route")


async def test_dropped_webhooks_are_counted_in_the_next(env: Env) -> None:
    env.emulator.drop_next_webhooks(1, "participant_joined")
    await env.emulator.join(ROOM, "alice")
    await env.emulator.join(ROOM, "bob")
    await env.emulator.wait_idle()

    assert env.hooks.names() == ["room_started", "participant_joined"]
    assert env.hooks.events[1].participant.identity == "bob"
    # As in LiveKit, the loss is reported by whichever event is sent next.
    assert sum(e.num_dropped for e in env.hooks.events) == 1
    assert [e.participant.identity for e in env.emulator.dropped] == ["alice"]
    assert [e.event for e in env.emulator.events].count("participant_joined") == 2


async def test_duplicated_webhooks_keep_their_id(env: Env) -> None:
    env.emulator.duplicate_webhooks(True)
    await env.emulator.join(ROOM, "alice")
    await env.emulator.wait_idle()

    assert env.hooks.names() == ["room_started"] * 2 + ["participant_joined"] * 2
    assert env.hooks.events[0].id == env.hooks.events[1].id
    assert env.hooks.raw[0][0] == env.hooks.raw[1][0]
    assert len(env.emulator.delivered) == 4


async def test_held_webhooks_can_arrive_reversed(env: Env) -> None:
    await env.emulator.create_room(ROOM)
    env.emulator.hold_webhooks()
    await env.emulator.join(ROOM, "alice")
    await env.emulator.join(ROOM, "bob")
    await env.emulator.wait_idle()
    assert env.hooks.names() == ["room_started"]

    env.emulator.release_webhooks(reverse=True)
    await env.emulator.wait_idle()
    assert [e.participant.identity for e in env.hooks.events[1:]] == ["bob", "alice"]


async def test_webhook_retries_then_gives_up(env: Env) -> None:
    env.hooks.fail_next = 2
    await env.emulator.create_room(ROOM)
    await env.emulator.wait_idle()
    assert env.hooks.names() == ["room_started"]
    assert env.emulator.webhooks.deliveries[0].attempts == 3

    env.hooks.fail_next = 5  # the first attempt and all four retries
    await env.emulator.join(ROOM, "alice")
    await env.emulator.join(ROOM, "bob")
    await env.emulator.wait_idle()
    assert [e.event for e in env.emulator.webhooks.failed] == ["participant_joined"]
    assert env.hooks.events[-1].participant.identity == "bob"
    assert env.hooks.events[-1].num_dropped == 1


async def test_forged_tampered_and_expired_signatures_fail(env: Env) -> None:
    await env.emulator.create_room(ROOM)
    await env.emulator.wait_idle()
    body, auth, _ = env.hooks.raw[0]
    receiver = env.hooks.receiver
    assert receiver.receive(body, auth).event == "room_started"

    tampered = body.replace("room_started", "room_finished")
    with pytest.raises(Exception, match="hash mismatch"):
        receiver.receive(tampered, auth)
    forged = sign_webhook(tampered, KEY, "someone-elses-secret-0123456789abcdef")
    with pytest.raises(Exception, match="Signature"):
        receiver.receive(tampered, forged)
    expired = sign_webhook(body, KEY, SECRET, ttl=-datetime.timedelta(minutes=5))
    with pytest.raises(Exception, match="expired"):
        receiver.receive(body, expired)
    # Re-signed properly, the same event is accepted: the body format is the emulator's own.
    event = receiver.receive(body, sign_webhook(body, KEY, SECRET))
    assert webhook_body(event) == body


async def test_end_room_disconnects_everyone_and_ends_egress(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    track = await env.emulator.publish_audio(ROOM, "alice", tone(0.3))
    egress_id = await start_egress(env, track, "end.ogg")
    env.clock.advance(0.3)
    await env.emulator.end_room(ROOM)
    await env.emulator.wait_idle()

    assert env.hooks.names()[-4:] == [
        "track_unpublished",
        "egress_ended",
        "participant_left",
        "room_finished",
    ]
    left = env.hooks.events[-2].participant
    assert left.disconnect_reason == DisconnectReason.ROOM_DELETED
    assert env.emulator.egress(egress_id).status == EgressStatus.EGRESS_COMPLETE
    rooms = await env.lk.room.list_rooms(ListRoomsRequest())
    assert list(rooms.rooms) == []


async def test_s3_credentials_are_redacted_and_location_reported(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    track = await env.emulator.publish_audio(ROOM, "alice", tone(0.2))
    upload = S3Upload(access_key="AK", secret="SK", endpoint="http://s3:9000", bucket="rec")
    request = TrackEgressRequest(
        room_name=ROOM, track_id=track, file=DirectFileOutput(filepath="k.ogg", s3=upload)
    )
    info = await env.lk.egress.start_track_egress(request)
    assert (info.track.file.s3.access_key, info.track.file.s3.secret) == (
        "{access_key}",
        "{secret}",
    )
    env.clock.advance(0.2)
    await env.emulator.unpublish(ROOM, track)
    assert (
        env.emulator.egress(info.egress_id).file_results[0].location == "http://s3:9000/rec/k.ogg"
    )
    assert await env.store.exists("k.ogg")


# The emulator's clock: what an egress records, and when things are stamped --------------------
RATE = 16000


def position_track(seconds: int = 10) -> Pcm:
    """Audio that says where it is: second k is a 0.5 s burst at 300 + 100 k Hz, then silence."""
    t = np.arange(RATE // 2) / RATE
    pcm = np.zeros(RATE * seconds, dtype=np.int16)
    for k in range(seconds):
        burst = np.sin(2 * np.pi * (300 + 100 * k) * t) * 8000
        pcm[k * RATE : k * RATE + RATE // 2] = burst.astype(np.int16)
    return pcm


def bursts(pcm: Pcm) -> list[tuple[float, int]]:
    """Each tone burst in ``pcm``: (onset in seconds, its frequency rounded to 100 Hz)."""
    frame = RATE // 100
    frames = pcm.size // frame
    rms = np.sqrt(np.mean(pcm[: frames * frame].reshape(frames, frame).astype(float) ** 2, axis=1))
    on = rms > 1000
    onsets = np.flatnonzero(on & ~np.concatenate([[False], on[:-1]]))
    found = []
    for onset in onsets:
        # 50 to 350 ms into the burst: clear of the edges, where the codec smears.
        window = pcm[onset * frame + 800 : onset * frame + 5600].astype(float)
        hz = 0  # too short to tell: a burst cut by the end of the recording
        if window.size >= RATE // 10:
            spectrum = np.abs(np.fft.rfft(window * np.hanning(window.size)))
            hz = int(round(np.argmax(spectrum) * RATE / window.size, -2))
        found.append((float(onset * frame / RATE), hz))
    return found


def assert_plays_seconds(recorded: Pcm, first: int, count: int) -> None:
    """The recording is seconds ``[first, first + count)`` of :func:`position_track`."""
    assert abs(recorded.size / RATE - count) < 0.05
    found = bursts(recorded)
    assert [hz for _, hz in found] == [300 + 100 * k for k in range(first, first + count)]
    for i, (onset, _) in enumerate(found):
        assert abs(onset - i) <= 0.02, found


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    """Wait (real time) until ``condition()`` holds, without touching the emulator."""
    for _ in range(int(timeout_s / 0.01)):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("timed out waiting")


async def test_egress_records_exactly_while_it_runs(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    track = await env.emulator.publish_audio(ROOM, "alice", position_track(10))
    env.clock.advance(3)
    egress_id = await start_egress(env, track, "span.ogg")
    env.clock.advance(5)
    await env.lk.egress.stop_egress(StopEgressRequest(egress_id=egress_id))
    await env.emulator.wait_idle()

    ended = ended_info(env, egress_id)
    assert ended.status == EgressStatus.EGRESS_COMPLETE
    assert (ended.started_at, ended.ended_at) == (T0 + 3 * S, T0 + 8 * S)
    [result] = ended.file_results
    assert (result.started_at, result.ended_at, result.duration) == (T0 + 3 * S, T0 + 8 * S, 5 * S)
    assert_plays_seconds(decode_file(env.store.path_for("span.ogg")), first=3, count=5)


async def test_delay_next_egress_shifts_the_start_and_the_file(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    delayed = await env.emulator.publish_audio(ROOM, "alice", position_track(10))
    prompt = await env.emulator.publish_audio(ROOM, "alice", position_track(10))
    env.clock.advance(1)
    env.emulator.delay_next_egress(2)
    delayed_id = await start_egress(env, delayed, "delayed.ogg")
    prompt_id = await start_egress(env, prompt, "prompt.ogg")  # the delay was for one egress
    env.clock.advance(1)
    listed = await env.lk.egress.list_egress(ListEgressRequest(egress_id=delayed_id))
    assert [info.status for info in listed.items] == [EgressStatus.EGRESS_STARTING]

    env.clock.advance(3)  # 5 s after publishing
    for egress_id in (delayed_id, prompt_id):
        await env.lk.egress.stop_egress(StopEgressRequest(egress_id=egress_id))
    await env.emulator.wait_idle()

    [active] = [
        e.egress_info
        for e in env.hooks.events
        if e.event == "egress_updated" and e.egress_info.egress_id == delayed_id
    ]
    assert active.status == EgressStatus.EGRESS_ACTIVE and active.started_at == T0 + 3 * S
    assert ended_info(env, delayed_id).file_results[0].started_at == T0 + 3 * S
    assert ended_info(env, prompt_id).file_results[0].started_at == T0 + 1 * S
    assert_plays_seconds(decode_file(env.store.path_for("delayed.ogg")), first=3, count=2)
    assert_plays_seconds(decode_file(env.store.path_for("prompt.ogg")), first=1, count=4)


async def test_egress_limit_ends_it_while_the_track_stays_published(tmp_path: Path) -> None:
    async with open_env(tmp_path, egress_limit_s=4) as env:
        await env.emulator.join(ROOM, "alice")
        track = await env.emulator.publish_audio(ROOM, "alice", position_track(10))
        egress_id = await start_egress(env, track, "limited.ogg")
        env.clock.advance(10)
        # Nothing calls the emulator: its own clock watcher ends the egress.
        await until(lambda: "egress_ended" in env.hooks.names())

        assert "track_unpublished" not in env.hooks.names()
        listed = await env.lk.room.list_participants(ListParticipantsRequest(room=ROOM))
        assert [t.sid for p in listed.participants for t in p.tracks] == [track]
        ended = ended_info(env, egress_id)
        assert ended.status == EgressStatus.EGRESS_LIMIT_REACHED
        assert ended.ended_at == T0 + 4 * S
        [result] = ended.file_results
        assert (result.started_at, result.ended_at, result.duration) == (T0, T0 + 4 * S, 4 * S)
        assert_plays_seconds(decode_file(env.store.path_for("limited.ogg")), first=0, count=4)

        with pytest.raises(ServerError) as stopped:
            await env.lk.egress.stop_egress(StopEgressRequest(egress_id=egress_id))
        assert stopped.value.code == "failed_precondition"
        await env.emulator.unpublish(ROOM, track)
        await env.emulator.wait_idle()
        assert env.hooks.names().count("egress_ended") == 1


async def test_a_limit_passed_before_the_unpublish_still_applies(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    track = await env.emulator.publish_audio(ROOM, "alice", position_track(10))
    env.emulator.limit_next_egress(2)
    egress_id = await start_egress(env, track, "late.ogg")
    env.clock.advance(3)
    await env.emulator.unpublish(ROOM, track)  # at once: before the watcher's next look
    await env.emulator.wait_idle()

    ended = ended_info(env, egress_id)
    assert (ended.status, ended.file_results[0].duration) == (
        EgressStatus.EGRESS_LIMIT_REACHED,
        2 * S,
    )
    assert_plays_seconds(decode_file(env.store.path_for("late.ogg")), first=0, count=2)


async def test_egresses_that_record_nothing(env: Env) -> None:
    await env.emulator.join(ROOM, "alice")
    track = await env.emulator.publish_audio(ROOM, "alice", position_track(2))
    env.emulator.delay_next_egress(2)
    not_started = await start_egress(env, track, "early.ogg")
    prompt = await start_egress(env, track, "prompt.ogg")
    env.clock.advance(1)
    aborted = await env.lk.egress.stop_egress(StopEgressRequest(egress_id=not_started))
    assert aborted.status == EgressStatus.EGRESS_ABORTED
    env.clock.advance(2)  # the track's 2 s of audio are over
    after_audio = await start_egress(env, track, "after.ogg")
    env.clock.advance(1)
    await env.emulator.unpublish(ROOM, track)
    await env.emulator.wait_idle()

    assert ended_info(env, not_started).error == "Stop called before pipeline could start"
    # The prompt egress ran from 0 to 4 s and holds the whole track; the late one nothing.
    assert ended_info(env, prompt).status == EgressStatus.EGRESS_COMPLETE
    late = ended_info(env, after_audio)
    assert (late.status, late.error) == (EgressStatus.EGRESS_FAILED, "no media received")
    assert not await env.store.exists("early.ogg")
    assert not await env.store.exists("after.ogg")


async def test_times_come_from_the_clock_in_livekit_units(env: Env) -> None:
    await env.emulator.create_room(ROOM)
    env.clock.advance(0.9)
    await env.emulator.join(ROOM, "alice")
    await env.emulator.wait_idle()

    started, joined = env.hooks.events
    assert started.created_at == T0 // S  # whole seconds, as LiveKit sends it
    assert started.room.creation_time_ms == T0 // 1_000_000
    joined_ns = T0 + 9 * S // 10
    assert joined.created_at == joined_ns // S == T0 // S + 1
    assert joined.participant.joined_at_ms == joined_ns // 1_000_000
    assert joined.participant.joined_at == joined_ns // S


async def test_concurrent_duplicates_overlap_at_the_receiver(tmp_path: Path) -> None:
    receiver = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))
    ids: list[str] = []
    second = asyncio.Event()
    overlapped: list[bool] = []

    async def hook(request: Request) -> Response:
        event = receiver.receive((await request.body()).decode(), request.headers["authorization"])
        ids.append(event.id)
        if len(ids) == 1:
            # Still handling the first copy: the second must arrive meanwhile.
            try:
                await asyncio.wait_for(second.wait(), 2.0)
            except TimeoutError:
                overlapped.append(False)
            else:
                overlapped.append(True)
        else:
            second.set()
        return Response(status_code=200)

    app = Starlette(routes=[Route("/hooks", hook, methods=["POST"])])
    store = LocalObjectStore(tmp_path / "objects")
    async with serve(app) as url:
        emulator = LiveKitEmulator(KEY, SECRET, store, f"{url}/hooks", clock=ManualClock(T0))
        async with emulator:
            emulator.duplicate_webhooks(True, concurrent=True)
            await emulator.create_room(ROOM)
            await emulator.wait_idle()
            assert len(emulator.delivered) == 2
    assert len(ids) == 2 and ids[0] == ids[1]
    assert overlapped == [True]
