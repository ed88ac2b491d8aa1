"""Outgoing webhooks during real meetings, received and verified by an application's server.

The world is the emulator, the orchestrator on a real server and a Whisper worker over the
same store; the application is :class:`~tests.fakes.webhook_receiver.WebhookReceiver`, a
real HTTP server on 127.0.0.1 (private targets are allowed for it, except where a test
checks that they are refused).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from devkit.livekit_emulator import ManualClock
from orchestrator_service.outbound import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    ExpiredSignatureError,
    ForgedSignatureError,
    OutboundEvent,
    verify_signature,
)
from orchestrator_service.outbound.config import WebhookConfig
from orchestrator_service.outbound.delivery import DeliveryStatus, WebhookDispatcher
from orchestrator_service.outbound.events import EventType
from roomscribe.models import RoomStatus, SegmentIn, utcnow
from stt_service.jobs import WhisperWorker, orchestrator_notifier
from stt_service.whisper import Transcript
from tests.fakes.webhook_receiver import Answer, Received, WebhookReceiver, webhook_receiver
from tests.world import INTERNAL, World, api_token, make_world, tone

pytestmark = pytest.mark.service

WEBHOOK_SECRET = "webhook-test-secret-0123456789abcdefgh"


def admin() -> dict[str, str]:
    return {"Authorization": "Bearer " + api_token(roles=["admin"])}


class SayingTranscriber:
    """A Whisper stand-in: each track says one sentence with an action cue."""

    def __call__(self, audio: Path, *, track_sid: str, language: str | None) -> Transcript:
        segment = SegmentIn(id=f"{track_sid}-w0", start=0, end=1, text="I will send the notes.")
        return Transcript([segment], language or "en", 1.5, elapsed_s=0.01)


@pytest.fixture
async def receiver() -> AsyncIterator[WebhookReceiver]:
    async with webhook_receiver() as running_receiver:
        yield running_receiver


@asynccontextmanager
async def hooked_world(
    tmp_path: Path, receiver: WebhookReceiver, **overrides: Any
) -> AsyncIterator[World]:
    settings: dict[str, Any] = {
        # The query stands for a receiver's own token: the delivery log must not show it.
        "webhook_urls": f"{receiver.url}/hooks?token=receiver-token",
        "webhook_secret": WEBHOOK_SECRET,
        "webhook_allow_private": True,
        "webhook_retry_base_s": 0.01,
        "webhook_retry_max_s": 2.0,
    }
    async with make_world(
        tmp_path, clock=ManualClock(), settle_advance_s=1.0, **(settings | overrides)
    ) as world:
        yield world


async def complete_meeting(world: World) -> dict[str, str]:
    """Alice and Bob talk, leave, the room ends, Whisper runs: the room completes."""
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    sids = {}
    for who in ("alice", "bob"):
        await lk.join("standup", who, who.title())
        sids[who] = await lk.publish_audio("standup", who, tone(1.5))
    await world.settle()
    assert isinstance(world.clock, ManualClock)
    world.clock.advance(1.5)
    for sid in sids.values():
        await lk.unpublish("standup", sid)
    await world.settle()
    await lk.end_room("standup")
    await world.settle()
    worker = WhisperWorker(
        world.store,
        world.objects,
        SayingTranscriber(),
        model_name="scripted",
        notify=orchestrator_notifier(world.url, INTERNAL),
        name="w-hooks",
    )
    assert await worker.run_until_idle() == 2
    await world.lifecycle.idle()
    return sids


def verified(received: Received) -> dict[str, Any]:
    """The event, once its signature is checked as an application checks it."""
    verify_signature(WEBHOOK_SECRET, received.body, received.headers[SIGNATURE_HEADER.lower()])
    event = received.event
    assert received.headers[EVENT_ID_HEADER.lower()] == event["id"]
    assert received.headers[EVENT_TYPE_HEADER.lower()] == event["type"]
    OutboundEvent.model_validate(event)  # the documented shape, no more and no less
    assert set(event) == {"id", "type", "created_at", "room", "data"}
    return event


async def deliveries(world: World, **params: Any) -> dict[str, Any]:
    res = await world.http.get("/v1/webhooks/deliveries", params=params, headers=admin())
    assert res.status_code == 200, res.text
    body: dict[str, Any] = res.json()
    return body


async def test_a_meeting_sends_signed_events_an_application_can_verify(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    async with hooked_world(tmp_path, receiver) as world:
        sids = await complete_meeting(world)
        await world.lifecycle.outbound.idle()
        room = await world.store.get_room("standup")
        assert room.status is RoomStatus.COMPLETED and room.summary is not None

        events = [verified(r) for r in receiver.received]
        kinds = sorted(e["type"] for e in events)
        assert kinds == [
            "room.completed",
            "summary.ready",
            "track.transcribed",
            "track.transcribed",
        ]
        assert {r.path for r in receiver.received} == {"/hooks"}
        assert all(r.headers["content-type"] == "application/json" for r in receiver.received)
        transcribed = {e["data"]["track_sid"]: e for e in receiver.events("track.transcribed")}
        assert set(transcribed) == set(sids.values())
        alice = transcribed[sids["alice"]]
        assert alice["room"] == "standup" and alice["data"]["participant_identity"] == "alice"
        assert alice["data"]["status"] == "transcribed"
        assert alice["data"]["whisper"]["model"] == "scripted"
        assert alice["data"]["whisper"]["segments"] == 1

        actions = sum(len(p.actions) for p in room.summary.action_items)
        assert actions >= 1  # "I will send the notes."
        (ready,) = receiver.events("summary.ready")
        assert ready["data"]["action_items"] == actions
        assert ready["data"]["model"] == room.summary.model
        assert ready["data"]["sid"] == room.sid
        (completed,) = receiver.events("room.completed")
        data = completed["data"]
        assert data["status"] == "completed" and data["sid"] == room.sid
        assert sorted(data["participants"]) == ["alice", "bob"]
        assert sorted(t["status"] for t in data["tracks"]) == ["transcribed", "transcribed"]
        assert data["summary"] == {"model": room.summary.model, "action_items": actions}
        assert data["links"]["transcript"] == "/v1/rooms/standup/transcript"
        # Events are thin: no transcript or summary text travels in them.
        assert all(b"send the notes" not in r.body for r in receiver.received)

        # What a receiver must refuse: another secret, a tampered body, a late replay.
        genuine = receiver.received[0]
        header = genuine.headers[SIGNATURE_HEADER.lower()]
        with pytest.raises(ForgedSignatureError):
            verify_signature("not-the-secret-0123456789abcdefghijk", genuine.body, header)
        with pytest.raises(ForgedSignatureError):
            verify_signature(WEBHOOK_SECRET, genuine.body.replace(b"standup", b"x"), header)
        with pytest.raises(ExpiredSignatureError):
            verify_signature(WEBHOOK_SECRET, genuine.body, header, now=time.time() + 600)

        log = await deliveries(world)
        assert log["enabled"] and log["pending"] == 0 and log["dropped"] == 0
        assert log["targets"] == [f"{receiver.url}/hooks"]  # the query is not shown
        assert len(log["deliveries"]) == 4
        for entry in log["deliveries"]:
            assert entry["status"] == "delivered" and entry["attempts"] == 1
            assert entry["last_status_code"] == 200 and "token" not in entry["target"]
        metrics = (await world.http.get("/metrics")).text
        assert (
            'orchestrator_outbound_webhooks_total{outcome="delivered",type="room.completed"} 1.0'
            in metrics
        )


async def test_retries_back_off_honour_retry_after_and_keep_the_event_id(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.answer(
        Answer(500),
        Answer(503, body=b"maintenance"),
        Answer(429, headers={"Retry-After": "1"}),
    )
    async with hooked_world(tmp_path, receiver, webhook_events="room.completed") as world:
        await complete_meeting(world)
        await world.lifecycle.outbound.idle()
        attempts = receiver.received
        assert len(attempts) == 4  # three refusals, then accepted
        events = [verified(a) for a in attempts]
        assert {e["type"] for e in events} == {"room.completed"}
        assert len({e["id"] for e in events}) == 1  # one event, delivered four times
        assert len({a.body for a in attempts}) == 1
        assert attempts[3].at - attempts[2].at >= 0.95  # Retry-After: 1
        assert attempts[2].at - attempts[1].at < 0.9  # the backoff alone is short here
        (entry,) = (await deliveries(world))["deliveries"]
        assert entry["status"] == "delivered" and entry["attempts"] == 4
        assert entry["event_id"] == events[0]["id"] and entry["event_type"] == "room.completed"


async def test_a_4xx_answer_is_not_retried(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.answer(Answer(400, body=b"unknown event type"))
    async with hooked_world(tmp_path, receiver, webhook_events="summary.ready") as world:
        await complete_meeting(world)
        await world.lifecycle.outbound.idle()
        assert len(receiver.received) == 1
        verified(receiver.received[0])
        (entry,) = (await deliveries(world, status="failed"))["deliveries"]
        assert entry["attempts"] == 1 and entry["last_status_code"] == 400
        assert "unknown event type" in entry["last_error"]
        assert (await deliveries(world, status="delivered"))["deliveries"] == []


async def test_a_redirect_is_not_followed(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.answer(Answer(307, headers={"Location": f"{receiver.url}/elsewhere"}))
    async with hooked_world(tmp_path, receiver, webhook_events="room.completed") as world:
        await complete_meeting(world)
        await world.lifecycle.outbound.idle()
        assert [r.path for r in receiver.received] == ["/hooks"]
        (entry,) = (await deliveries(world))["deliveries"]
        assert entry["status"] == "failed" and "redirects are not followed" in entry["last_error"]


async def test_attempts_are_bounded(tmp_path: Path, receiver: WebhookReceiver) -> None:
    receiver.answer(*[Answer(502)] * 10)
    async with hooked_world(
        tmp_path, receiver, webhook_events="room.completed", webhook_max_attempts=3
    ) as world:
        await complete_meeting(world)
        await world.lifecycle.outbound.idle()
        assert len(receiver.received) == 3
        (entry,) = (await deliveries(world))["deliveries"]
        assert entry["status"] == "failed" and entry["attempts"] == 3
        assert "gave up after 3 attempts" in entry["last_error"]


async def test_a_hanging_receiver_never_holds_the_meeting_and_the_queue_is_bounded(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    receiver.hold()
    async with hooked_world(tmp_path, receiver, webhook_queue_max=2) as world:
        await complete_meeting(world)
        # The meeting completed while both track events hang at the receiver.
        assert (await world.store.get_room("standup")).status is RoomStatus.COMPLETED
        await receiver.wait_for(2)
        await world.lifecycle.outbound.flush()  # the completion's events are built meanwhile
        log = await deliveries(world)
        assert log["pending"] == 2 and log["dropped"] == 2
        dropped = await deliveries(world, status="dropped")
        assert sorted(e["event_type"] for e in dropped["deliveries"]) == [
            "room.completed",
            "summary.ready",
        ]
        assert all("already queued" in e["last_error"] for e in dropped["deliveries"])
        receiver.release()
        await world.lifecycle.outbound.idle()
        assert sorted(e["type"] for e in receiver.events()) == ["track.transcribed"] * 2
        assert len((await deliveries(world, status="delivered"))["deliveries"]) == 2


async def test_private_targets_are_refused_unless_allowed(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    async with hooked_world(tmp_path, receiver, webhook_allow_private=False) as world:
        await complete_meeting(world)
        await world.lifecycle.outbound.idle()
        assert (await world.store.get_room("standup")).status is RoomStatus.COMPLETED
        assert receiver.received == []  # nothing reached 127.0.0.1
        log = await deliveries(world)
        assert len(log["deliveries"]) == 4
        for entry in log["deliveries"]:
            assert entry["status"] == "failed" and entry["attempts"] == 1
            assert "loopback" in entry["last_error"]
            assert "ROOMSCRIBE_WEBHOOK_ALLOW_PRIVATE" in entry["last_error"]


async def test_the_delivery_log_is_for_admins_only(
    tmp_path: Path, receiver: WebhookReceiver
) -> None:
    async with hooked_world(tmp_path, receiver) as world:
        path = "/v1/webhooks/deliveries"
        assert (await world.http.get(path)).status_code == 401
        viewer = {"Authorization": "Bearer " + api_token(rooms=["standup"])}
        res = await world.http.get(path, headers=viewer)
        assert res.status_code == 403 and res.json()["error"]["code"] == "forbidden"
        assert (await world.http.get(path, params={"limit": 0}, headers=admin())).status_code == 422
        doc = (await world.http.get("/openapi.json")).json()
        assert set(doc["paths"][path]["get"]["responses"]) >= {"200", "401", "403", "422"}


async def test_without_targets_nothing_is_sent_and_the_log_says_so(tmp_path: Path) -> None:
    async with make_world(tmp_path, clock=ManualClock(), settle_advance_s=1.0) as world:
        await complete_meeting(world)
        log = await deliveries(world)
        assert log == {
            "enabled": False,
            "targets": [],
            "pending": 0,
            "dropped": 0,
            "deliveries": [],
        }


# The dispatcher on its own: SSRF refusals and address pinning -------------------------------
class Resolver:
    """Resolves names to the addresses it was given; counts the questions."""

    def __init__(self, answers: dict[str, list[str]]) -> None:
        self.answers = answers
        self.asked = 0

    async def __call__(self, host: str, port: int) -> Sequence[str]:
        self.asked += 1
        return self.answers.get(host, [])


def an_event() -> OutboundEvent:
    return OutboundEvent(
        id="evt_0123", type=EventType.SUMMARY_READY, created_at=utcnow(), room="r", data={}
    )


def dispatcher_for(url: str, resolver: Resolver, *, allow_private: bool) -> WebhookDispatcher:
    config = WebhookConfig(
        urls=(url,),
        secret=SecretStr(WEBHOOK_SECRET),
        allow_private=allow_private,
        retry_base_s=0.01,
        max_attempts=3,
    )
    return WebhookDispatcher(config, resolver=resolver)


@pytest.mark.parametrize(
    ("host", "kind"),
    [
        ("127.0.0.1", "loopback"),
        ("10.20.30.40", "private"),
        ("169.254.169.254", "link-local"),
        ("[::1]", "loopback"),
        ("[::ffff:127.0.0.1]", "loopback"),
        ("hooks.internal.example", "private"),  # resolves to 10.0.0.7
    ],
)
async def test_refused_targets_are_never_contacted_nor_retried(
    receiver: WebhookReceiver, host: str, kind: str
) -> None:
    port = receiver.url.rsplit(":", 1)[1]
    resolver = Resolver({"hooks.internal.example": ["10.0.0.7"]})
    dispatcher = dispatcher_for(f"http://{host}:{port}/hooks", resolver, allow_private=False)
    try:
        dispatcher.submit(an_event())
        await dispatcher.idle()
    finally:
        await dispatcher.aclose()
    assert receiver.received == []
    (entry,) = dispatcher.records()
    assert entry.status is DeliveryStatus.FAILED and entry.attempts == 1
    assert entry.last_error is not None and entry.last_error.startswith("refused")
    assert kind in entry.last_error
    assert resolver.asked == (1 if host == "hooks.internal.example" else 0)


async def test_the_connection_goes_to_the_checked_address_under_the_targets_name(
    receiver: WebhookReceiver,
) -> None:
    # The name exists only in this resolver: the request can reach the receiver only by
    # going to the address that was resolved and checked, with the name as Host.
    port = receiver.url.rsplit(":", 1)[1]
    resolver = Resolver({"hooks.app.example": ["127.0.0.1"]})
    dispatcher = dispatcher_for(f"http://hooks.app.example:{port}/in", resolver, allow_private=True)
    receiver.answer(Answer(500))
    try:
        dispatcher.submit(an_event())
        await dispatcher.idle()
    finally:
        await dispatcher.aclose()
    assert [r.headers["host"] for r in receiver.received] == [f"hooks.app.example:{port}"] * 2
    assert resolver.asked == 2  # resolved, and checked, again for the retry
    verified(receiver.received[1])
    (entry,) = dispatcher.records()
    assert entry.status is DeliveryStatus.DELIVERED and entry.attempts == 2


async def test_a_large_answer_is_not_read_and_a_shutdown_does_not_wait_for_a_receiver(
    receiver: WebhookReceiver,
) -> None:
    resolver = Resolver({})
    dispatcher = dispatcher_for(f"{receiver.url}/in", resolver, allow_private=True)
    receiver.answer(Answer(400, body=b"x" * 5_000_000))
    dispatcher.submit(an_event())
    await dispatcher.idle()
    (entry,) = dispatcher.records()
    assert entry.last_error is not None and len(entry.last_error) < 300
    receiver.hold()
    dispatcher.submit(an_event())
    await receiver.wait_for(2)
    async with asyncio.timeout(2):
        await dispatcher.aclose()  # the pending delivery is dropped, not waited for
    assert dispatcher.pending == 1
