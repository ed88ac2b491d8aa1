"""When the agent's job ends, the room is finalized only if LiveKit ended the room.

The session runs against the real orchestrator (and the emulator behind it) over HTTP; the
room object is a small stand-in with what ``RoomSession`` reads of an ``rtc.Room``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import pytest
from livekit import rtc
from pydantic import SecretStr

from agent.settings import AgentSettings
from agent.worker import RoomSession, StreamLoad
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
