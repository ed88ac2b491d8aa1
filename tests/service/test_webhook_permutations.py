"""Any delivery order of a meeting's webhooks, duplicated or with one lost, converges.

One small meeting is run in the devkit LiveKit emulator with its webhooks held: alice
publishes and the agent registers the room, whose sweep starts her egress; bob joins and
publishes, the agent registers again and the sweep starts his egress, which fails when it
ends ("disk full", no file); alice leaves, then the room ends with bob still in it. That is
16 webhooks (the room's, each participant's and track's, and each egress's
started/updated/ended), held back while LiveKit's own state moves on: when they are
delivered, LiveKit has finished the room and both egresses, as after a notifier that fell
far behind. (The egresses must be started by the orchestrator while the tracks are
published, and with every webhook held only the registration sweep can do that.)

Each trial runs that meeting in a fresh world (emulator, orchestrator, store), delivers
the held webhooks signed, one at a time as LiveKit's notifier does, in a chosen order, then
runs one reconcile (``room_gone_grace_s = 0``) and takes a normalized snapshot of the store
and of LiveKit's egress list. Every trial must give the snapshot of the in-order delivery:
a seeded sample of orders of all 16 events, each of those orders again with one event
delivered a second time later, and the in-order sequence and two sampled orders with each
single event lost. Trials run a few at a time in one event loop.
"""

from __future__ import annotations

import asyncio
import random
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import httpx
import pytest
from livekit.protocol.webhook import WebhookEvent

from devkit.livekit_emulator import ManualClock
from devkit.stack import local_stack
from devkit.webhooks import WEBHOOK_CONTENT_TYPE, sign_webhook, webhook_body
from roomscribe.models import TranscriptQuery
from tests.world import KEY, SECRET, SECRETS, World, tone

pytestmark = pytest.mark.service

ROOM: Final = "standup"

#: The meeting's webhooks in the order LiveKit emits them (see :func:`_event_key`).
IN_ORDER: Final = (
    "room_started",
    "participant_joined:alice",
    "track_published:alice",
    "egress_started:alice",
    "egress_updated:alice",
    "participant_joined:bob",
    "track_published:bob",
    "egress_started:bob",
    "egress_updated:bob",
    "track_unpublished:alice",
    "egress_ended:alice",
    "participant_left:alice",
    "track_unpublished:bob",
    "egress_ended:bob",
    "participant_left:bob",
    "room_finished",
)

#: What the in-order delivery leaves (after its reconcile, which has nothing to repair).
EXPECTED: Final[dict[str, Any]] = {
    "rooms": [ROOM],  # no second meeting was split off
    "status": "final_room",  # alice's recording awaits Whisper
    "summary": False,
    "sid": "LiveKit's",
    "participants": ["alice", "bob"],
    "tracks": {
        "TR_alice": {
            "identity": "alice",
            "name": "Alice",
            "status": "recorded",
            "reason": None,
            "egress": "complete",
            "egress_id": "LiveKit's",
            "object_key": "rooms/standup/alice/TR_alice.ogg",
            "error": None,
            "recorded_s": 0.5,
        },
        "TR_bob": {
            "identity": "bob",
            "name": "Bob",
            "status": "failed",
            "reason": "egress failed: disk full",
            "egress": "failed",
            "egress_id": "LiveKit's",
            "object_key": "rooms/standup/bob/TR_bob.ogg",
            "error": "disk full",
            "recorded_s": 1.0,
        },
    },
    "livekit_egresses": {"TR_alice": 1, "TR_bob": 1},  # exactly one per track, ever
    "segments": [],
    "livekit_events_after_the_meeting": 0,  # nothing was started or stopped for real
}

#: Orders of the whole sequence sampled per test, the in-order one included.
SAMPLED_ORDERS: Final = 50
SEED: Final = 20_240_917
#: Worlds running at once: trials are mostly event-loop work, with waits in between.
CONCURRENT_TRIALS: Final = 8
TRIAL_TIMEOUT_S: Final = 60.0

#: httpx builds (and loads the CA bundle into) a TLS context for every client, tens of
#: milliseconds of CPU each, for loopback http:// URLs: the trials' clients share one.
_TLS: Final = ssl.create_default_context()


@dataclass(frozen=True)
class Trial:
    """One delivery: ``order`` names events of :data:`IN_ORDER` (repeats are duplicates)."""

    label: str
    order: tuple[str, ...]


def _event_key(event: WebhookEvent) -> str:
    """The event's name in :data:`IN_ORDER`: its kind and whose participant or track."""
    who = event.participant.identity or event.egress_info.track.track_id.removeprefix("TR_")
    return f"{event.event}:{who}" if who else event.event


def _sampled_orders() -> list[Trial]:
    rng = random.Random(SEED)
    trials = [Trial("in order", IN_ORDER)]
    while len(trials) < SAMPLED_ORDERS:
        order = list(IN_ORDER)
        rng.shuffle(order)
        trials.append(Trial(f"order #{len(trials)}", tuple(order)))
    return trials


def _with_a_duplicate(trials: Sequence[Trial]) -> list[Trial]:
    """Each order with one event delivered again, at a random place after its first copy."""
    rng = random.Random(SEED + 1)
    duplicated = []
    for trial in trials:
        first = rng.randrange(len(trial.order))
        again = rng.randrange(first + 1, len(trial.order) + 1)
        order = [*trial.order[:again], trial.order[first], *trial.order[again:]]
        label = f"{trial.label}, {trial.order[first]} again at {again}"
        duplicated.append(Trial(label, tuple(order)))
    return duplicated


def _with_one_lost(trial: Trial) -> list[Trial]:
    return [
        Trial(f"{trial.label}, {lost} lost", tuple(e for e in trial.order if e != lost))
        for lost in IN_ORDER
    ]


@asynccontextmanager
async def _fresh_world(work: Path, clock: ManualClock) -> AsyncIterator[World]:
    """A world built as the ``world`` fixture builds one (``make_world``), on ``clock``."""
    async with (
        local_stack(work, secrets=SECRETS, clock=clock) as stack,
        httpx.AsyncClient(base_url=stack.orchestrator_url, timeout=10, verify=_TLS) as http,
    ):
        yield World(
            http,
            stack.lk,
            stack.store,
            stack.objects,
            stack.lifecycle,
            stack.orchestrator_url,
            stack,
        )


async def _idle(world: World) -> None:
    """Until LiveKit's egress work and the orchestrator's LiveKit calls have all run."""
    for _ in range(2):  # a LiveKit call can end an egress, whose completion can call again
        await world.lk.wait_idle()
        await world.lifecycle.idle()


async def _meeting(world: World, clock: ManualClock) -> dict[str, WebhookEvent]:
    """Run the meeting with every webhook held; the held events by :func:`_event_key`."""
    lk = world.lk
    lk.hold_webhooks()
    await lk.create_room(ROOM)
    await lk.join(ROOM, "alice", "Alice")
    await lk.publish_audio(ROOM, "alice", tone(2.0), track_sid="TR_alice")
    await world.register(ROOM)  # the agent joins: its sweep starts alice's egress
    await _idle(world)
    await lk.join(ROOM, "bob", "Bob")
    await lk.publish_audio(ROOM, "bob", tone(2.0, 660), track_sid="TR_bob")
    lk.fail_next_egress("disk full", at="end")
    await world.register(ROOM)  # the agent's job restarts: the sweep starts bob's egress
    await _idle(world)
    clock.advance(0.5)
    await lk.leave(ROOM, "alice")
    clock.advance(0.5)
    await lk.end_room(ROOM)  # bob is disconnected as the room ends
    await _idle(world)
    held = lk.webhooks.held
    keys = [_event_key(event) for event in held]
    assert keys == list(IN_ORDER), f"the emulator's meeting changed: {keys}"
    return dict(zip(keys, held, strict=True))


async def _deliver(world: World, event: WebhookEvent) -> None:
    body = webhook_body(event)
    headers = {
        "Authorization": sign_webhook(body, KEY, SECRET),
        "Content-Type": WEBHOOK_CONTENT_TYPE,
    }
    res = await world.http.post("/v1/webhooks/livekit", content=body, headers=headers)
    assert res.status_code == 200, f"{_event_key(event)}: {res.status_code} {res.text}"


async def _snapshot(world: World, events: dict[str, WebhookEvent]) -> dict[str, Any]:
    """The state that must not depend on the delivery order, without run-specific values.

    Egress ids and the room's sid are LiveKit's (random per run): each is compared with what
    LiveKit lists. Times are reduced to the recording's length; status reasons of the room
    are left out (a repaired room says why it was finalized), those of tracks kept.
    """
    room = await world.store.get_room(ROOM)
    egresses = await world.lifecycle._lk.list_egress(ROOM)
    tracks: dict[str, dict[str, Any]] = {}
    for track in await world.store.list_tracks(ROOM):
        theirs = [e.egress_id for e in egresses if e.track.track_id == track.track_sid]
        egress = track.egress
        span = None
        if egress.started_at is not None and egress.ended_at is not None:
            span = round((egress.ended_at - egress.started_at).total_seconds(), 3)
        tracks[track.track_sid] = {
            "identity": track.participant_identity,
            "name": track.participant_name,
            "status": track.status.value,
            "reason": track.status_reason,
            "egress": None if egress.status is None else egress.status.value,
            "egress_id": "LiveKit's" if theirs == [egress.id] else egress.id,
            "object_key": egress.object_key,
            "error": egress.error,
            "recorded_s": span,
        }
    per_track: dict[str, int] = {}
    for e in egresses:
        per_track[e.track.track_id] = per_track.get(e.track.track_id, 0) + 1
    page = await world.store.query_transcript(TranscriptQuery(room=ROOM))
    return {
        "rooms": sorted(r.name for r in (await world.store.list_rooms(limit=100)).rooms),
        "status": room.status.value,
        "summary": room.summary is not None,
        "sid": "LiveKit's" if room.sid == events["room_started"].room.sid else room.sid,
        "participants": sorted(room.participants),
        "tracks": tracks,
        "livekit_egresses": per_track,
        "segments": [s.id for s in page.segments],
        "livekit_events_after_the_meeting": len(world.lk.events) - len(events),
    }


async def _run(
    work: Path, trial: Trial, *, before_reconcile: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """The snapshot after delivering ``trial.order`` and one reconcile.

    ``before_reconcile``, when given, also gets the snapshot taken before the reconcile.
    """
    clock = ManualClock()
    async with asyncio.timeout(TRIAL_TIMEOUT_S), _fresh_world(work, clock) as world:
        events = await _meeting(world, clock)
        for key in trial.order:
            await _deliver(world, events[key])
        await _idle(world)
        if before_reconcile is not None:
            before_reconcile.append(await _snapshot(world, events))
        world.lifecycle.room_gone_grace_s = 0
        await world.lifecycle.reconcile()
        await _idle(world)
        return await _snapshot(world, events)


def _diff(got: Any, want: Any, path: str = "") -> str:
    """Where two snapshots differ: ``tracks.TR_alice.egress: got 'active', want 'complete'``."""
    if isinstance(got, dict) and isinstance(want, dict):
        parts = [
            _diff(got.get(name), want.get(name), f"{path}{name}.")
            for name in sorted(want.keys() | got.keys())
        ]
        return "; ".join(part for part in parts if part)
    if got == want:
        return ""
    return f"{path.rstrip('.')}: got {got!r}, want {want!r}"


async def _assert_all_converge(tmp_path: Path, trials: Sequence[Trial]) -> None:
    """Run the in-order reference, then every trial; each must end in the reference state."""
    reference = await _run(tmp_path / "reference", Trial("in order", IN_ORDER))
    assert reference == EXPECTED, _diff(reference, EXPECTED)
    gate = asyncio.Semaphore(CONCURRENT_TRIALS)

    async def attempt(i: int, trial: Trial) -> str | None:
        async with gate:
            try:
                after = await _run(tmp_path / f"trial-{i}", trial)
            except Exception as exc:  # reported with its order, as a diverging trial is
                return f"{trial.label} [{', '.join(trial.order)}]: raised {exc!r}"
        if after == reference:
            return None
        return f"{trial.label} [{', '.join(trial.order)}]: {_diff(after, reference)}"

    outcomes = await asyncio.gather(*(attempt(i, t) for i, t in enumerate(trials)))
    failed = [outcome for outcome in outcomes if outcome is not None]
    assert not failed, f"{len(failed)} of {len(trials)} orders did not converge:\n" + "\n".join(
        failed
    )


async def test_the_in_order_delivery_needs_no_repair(tmp_path: Path) -> None:
    before: list[dict[str, Any]] = []
    reconciled = await _run(
        tmp_path / "in-order", Trial("in order", IN_ORDER), before_reconcile=before
    )
    assert before == [EXPECTED], _diff(before[0], EXPECTED)
    assert reconciled == EXPECTED, _diff(reconciled, EXPECTED)


async def test_every_sampled_order_converges(tmp_path: Path) -> None:
    await _assert_all_converge(tmp_path, _sampled_orders())


async def test_every_sampled_order_with_a_duplicate_converges(tmp_path: Path) -> None:
    await _assert_all_converge(tmp_path, _with_a_duplicate(_sampled_orders()))


async def test_one_lost_event_is_repaired_by_one_reconcile(tmp_path: Path) -> None:
    orders = _sampled_orders()
    trials = [trial for base in (orders[0], orders[1], orders[2]) for trial in _with_one_lost(base)]
    await _assert_all_converge(tmp_path, trials)
