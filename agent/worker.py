"""The livekit-agents worker: one job per room (``python -m agent start|dev``).

A job connects subscribed to audio only and runs a :class:`~agent.session.RoomSession`:
it registers the room with the orchestrator, transcribes every remote audio track into
captions on ``lk.transcription``, speaks allowed ``tts_control`` requests, and finalizes the
room when LiveKit ends it. Jobs run as threads of one process, so the worker's load function
sees every job's open streams through one shared :class:`StreamLoad`.
"""

from __future__ import annotations

import threading

from livekit.agents import AgentServer, AutoSubscribe, JobContext, JobExecutorType

from agent.session import LANGUAGE_ATTRIBUTE, ROOM_ENDED, RoomSession, track_language
from agent.settings import AgentSettings

__all__ = [
    "LANGUAGE_ATTRIBUTE",
    "ROOM_ENDED",
    "RoomSession",
    "StreamLoad",
    "build_server",
    "track_language",
]


class StreamLoad:
    """Open transcription streams across the worker's jobs (thread-safe)."""

    def __init__(self, capacity: int) -> None:
        """``capacity`` streams make a load of 1.0."""
        self._capacity = capacity
        self._open = 0
        self._lock = threading.Lock()

    def add(self, n: int) -> None:
        """Count ``n`` streams opened (negative: closed)."""
        with self._lock:
            self._open += n

    def load(self) -> float:
        """The worker's load for LiveKit's dispatcher, in [0, 1]."""
        with self._lock:
            return min(1.0, self._open / self._capacity)


def build_server(settings: AgentSettings) -> AgentServer:
    """The agent server: thread jobs sharing one stream count as the load.

    Args:
        settings: The agent's settings.

    Returns:
        The server to hand to the livekit-agents CLI.
    """
    load = StreamLoad(settings.agent_max_streams)
    server = AgentServer(
        job_executor_type=JobExecutorType.THREAD,
        load_fnc=load.load,
        load_threshold=0.9,
    )

    @server.rtc_session()
    async def entrypoint(ctx: JobContext) -> None:
        await ctx.connect(auto_subscribe=AutoSubscribe.AUDIO_ONLY)
        session = RoomSession(ctx.room, settings, load)
        ctx.add_shutdown_callback(session.finish)
        await session.start()

    return server
