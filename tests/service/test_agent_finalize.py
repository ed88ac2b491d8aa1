"""When the agent's job ends, the room is finalized only if LiveKit ended the room; and the
agent's orchestrator calls reach the room they name, whatever its name.

The session runs against the real orchestrator (and the emulator behind it) over HTTP; the
room object is a small stand-in with what ``RoomSession`` reads of an ``rtc.Room``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, cast
from urllib.parse import unquote

import pytest
from livekit import rtc
from pydantic import SecretStr

from agent.orchestrator import OrchestratorClient, OrchestratorError, room_segment
from agent.session import RoomSession
from agent.settings import AgentSettings
from agent.worker import StreamLoad
from roomscribe.models import RoomStatus
from tests.world import INTERNAL, World, tone

pytestmark = pytest.mark.service


class StandInRoom:
    """What a session reads of a connected room before any track arrives."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.metadata = ""
        self.handlers: dict[str, Callable[..., Any]] = {}

    def on(self, event: str, handler: Callable[..., Any]) -> None:
        self.handlers[event] = handler


def session_for(world: World, room: str) -> tuple[RoomSession, StandInRoom]:
    settings = AgentSettings(
        secret=SecretStr(INTERNAL),
        orchestrator_url=world.url,
        stt_url="http://127.0.0.1:9",
        tts_url="http://127.0.0.1:9",
    )
    stand_in = StandInRoom(room)
    return RoomSession(cast(rtc.Room, stand_in), settings, StreamLoad(4)), stand_in


async def _meeting(world: World) -> None:
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    await lk.join("standup", "alice")
    await lk.publish_audio("standup", "alice", tone(3.0))
    await world.settle()


@pytest.mark.parametrize(
    "reason",
    [
        rtc.DisconnectReason.CLIENT_INITIATED,  # the worker restarts (a deploy)
        rtc.DisconnectReason.SIGNAL_CLOSE,  # the network dropped
        rtc.DisconnectReason.SERVER_SHUTDOWN,
        None,  # the job was shut down before any disconnect
    ],
)
async def test_a_job_that_stops_while_the_meeting_goes_on_does_not_finalize(
    world: World, reason: Any
) -> None:
    await _meeting(world)
    session, room = session_for(world, "standup")
    room.handlers["disconnected"] = session.on_disconnected
    if reason is not None:
        room.handlers["disconnected"](reason)
    await session.finish()
    assert (await world.store.get_room("standup")).status is RoomStatus.ACTIVE


@pytest.mark.parametrize(
    "reason", [rtc.DisconnectReason.ROOM_DELETED, rtc.DisconnectReason.ROOM_CLOSED]
)
async def test_a_job_whose_room_ended_finalizes(world: World, reason: Any) -> None:
    await _meeting(world)
    session, _ = session_for(world, "standup")
    session.on_disconnected(reason)
    await session.finish()
    assert (await world.store.get_room("standup")).status is RoomStatus.FINAL_ROOM


async def test_a_room_finalized_too_early_reopens_when_registered_again(world: World) -> None:
    await _meeting(world)
    await world.finalize("standup")  # e.g. an agent of an older version, stopping
    assert (await world.store.get_room("standup")).status is RoomStatus.FINAL_ROOM
    await world.register("standup")  # the new job; alice is still there
    room = await world.store.get_room("standup")
    assert room.status is RoomStatus.ACTIVE
    assert room.status_reason == "reopened: the meeting goes on"


#: Room names chosen to escape their URL path segment, each a different way.
HOSTILE_NAMES = [
    "mallory/../victim",  # normalized to .../rooms/victim/... when sent raw
    "../victim",
    "..",
    ".",
    "a?b#c",  # raw, the query or fragment would cut the path short
    "x/y",
    "x/register",
    "ünïcødé 会议",
    "%2e%2e",  # already percent-encoded: must stay these six characters
    "a%2Fb",
    "victim%00",
]


def test_room_names_become_one_path_segment() -> None:
    for name in HOSTILE_NAMES:
        segment = room_segment(name)
        assert "/" not in segment and "?" not in segment and "#" not in segment
        assert "." not in segment  # no dot segment for URL normalization to remove
        assert unquote(segment) == name


async def _attack(world: World, name: str) -> None:
    """Register and finalize ``name`` as an agent in that room would."""
    client = OrchestratorClient(world.url, INTERNAL, attempts=1)
    try:
        for call in (client.register, client.finalize):
            with contextlib.suppress(OrchestratorError):  # refused is fine, not elsewhere
                await call(name)
    finally:
        await client.aclose()


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_a_hostile_room_name_reaches_no_other_room(world: World, name: str) -> None:
    await world.register("victim")
    await _attack(world, name)
    assert (await world.store.get_room("victim")).status is RoomStatus.REGISTERED
    names = {room.name for room in (await world.store.list_rooms(limit=100)).rooms}
    assert names <= {"victim", name}


@pytest.mark.parametrize("name", HOSTILE_NAMES)
async def test_a_room_is_registered_and_finalized_under_its_own_name(
    world: World, name: str
) -> None:
    client = OrchestratorClient(world.url, INTERNAL, attempts=1)
    try:
        registered = await client.register(name)
        assert registered["name"] == name
        finalized = await client.finalize(name)
        assert finalized["room"]["name"] == name
    finally:
        await client.aclose()
    assert (await world.store.get_room(name)).status is not RoomStatus.REGISTERED
