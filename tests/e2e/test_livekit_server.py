"""The agent's room session in a real LiveKit room (runs when ``LIVEKIT_URL`` is set).

A participant publishes tones through a real ``rtc.Room``; the agent's :class:`RoomSession`
transcribes them through the real STT service; a listener receives the captions on
``lk.transcription`` and a ``tts_status`` error for a malformed ``tts_control`` message.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import Callable
from typing import Any

import pytest
from livekit import api, rtc

from agent.captions import ATTRIBUTE_STORED_SEGMENT_ID
from agent.settings import AgentSettings
from agent.tts import TTS_CONTROL_TOPIC, TTS_STATUS_TOPIC
from agent.worker import RoomSession, StreamLoad
from devkit.tones import synthesize
from tests.stt_harness import SECRET

LIVEKIT_URL = os.environ.get("LIVEKIT_URL")

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(not LIVEKIT_URL, reason="LIVEKIT_URL is not set: no LiveKit server to join"),
]


def token(room: str, identity: str) -> str:
    return (
        api.AccessToken(os.environ["LIVEKIT_API_KEY"], os.environ["LIVEKIT_API_SECRET"])
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
        .to_jwt()
    )


async def join(room_name: str, identity: str) -> rtc.Room:
    room = rtc.Room()
    await room.connect(str(LIVEKIT_URL), token(room_name, identity))
    return room


async def test_captions_and_tts_status_in_a_real_room(make_service: Callable[..., Any]) -> None:
    room_name = f"roomscribe-test-{uuid.uuid4().hex[:8]}"
    captions: list[tuple[str, dict[str, str], str]] = []
    statuses: list[bytes] = []
    async with make_service() as svc:
        listener = await join(room_name, "listener")

        def on_caption(reader: rtc.TextStreamReader, sender: str) -> None:
            async def read() -> None:
                captions.append(
                    (sender, dict(reader.info.attributes or {}), await reader.read_all())
                )

            asyncio.ensure_future(read())  # noqa: RUF006 - the test waits on the list

        listener.register_text_stream_handler("lk.transcription", on_caption)
        listener.on(
            "data_received",
            lambda p: statuses.append(p.data) if p.topic == TTS_STATUS_TOPIC else None,
        )
        agent_room = await join(room_name, "roomscribe-agent")
        settings = AgentSettings(
            secret=SECRET,
            stt_url=svc.url,
            orchestrator_url="http://127.0.0.1:9",  # registration fails; captions must not
            tts_url="http://127.0.0.1:9",
        )
        session = RoomSession(agent_room, settings, StreamLoad(4))
        await session.start()
        alice = await join(room_name, "alice")
        source = rtc.AudioSource(16000, 1)
        track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
        publication = await alice.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        pcm = synthesize(["alpha", "bravo"])
        for start in range(0, len(pcm), 160):
            chunk = pcm[start : start + 160]
            await source.capture_frame(rtc.AudioFrame(chunk.tobytes(), 16000, 1, len(chunk)))
        await listener.local_participant.publish_data(
            b"{not json", topic=TTS_CONTROL_TOPIC, reliable=True
        )
        async with asyncio.timeout(20):
            while not any(a.get("lk.transcription_final") == "true" for _, a, _ in captions):  # noqa: ASYNC110
                await asyncio.sleep(0.1)
            while not statuses:  # noqa: ASYNC110
                await asyncio.sleep(0.1)
        await alice.disconnect()
        await session.finish()
        await agent_room.disconnect()
        await listener.disconnect()
    sender, attributes, text = next(c for c in captions if c[1]["lk.transcription_final"] == "true")
    assert (sender, text) == ("alice", "alpha bravo")
    assert attributes["lk.transcribed_track_id"] == publication.sid
    assert attributes[ATTRIBUTE_STORED_SEGMENT_ID].startswith(publication.sid)
    assert b'"state":"error"' in statuses[0]
