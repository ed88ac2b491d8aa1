"""Settings of ``python -m agent`` (LiveKit's own ``LIVEKIT_*`` variables are read too)."""

from __future__ import annotations

from pydantic import Field

from roomscribe.settings import CoreSettings


class AgentSettings(CoreSettings):
    """Where the agent's services are, and how much it takes on."""

    orchestrator_url: str = "http://localhost:8000"
    stt_url: str = "http://localhost:8001"
    tts_url: str = "http://localhost:8002"
    agent_language: str = Field(
        default="en",
        description="Language of tracks whose participant (or room) names none "
        "with the roomscribe.language attribute.",
    )
    agent_max_streams: int = Field(
        default=30, ge=1, description="Tracks one agent worker transcribes at most (its load)."
    )
    agent_tts_max_chars: int = Field(default=2000, ge=1, description="Longest text to speak.")
