"""Settings of ``python -m agent`` (LiveKit's own ``LIVEKIT_*`` variables are read too)."""

from __future__ import annotations

from pydantic import Field

from roomscribe.settings import CoreSettings


class AgentSettings(CoreSettings):
    """Where the agent's services are, how much it takes on, and who may make it speak."""

    orchestrator_url: str = "http://localhost:8000"
    stt_url: str = Field(
        default="http://localhost:8001",
        description="The STT service, or several instances comma-separated: each track's "
        "stream goes to the instance with the fewest of this agent's streams and moves to the "
        "next one when its instance fails, refuses (1013) or restarts (1012).",
    )
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
    agent_tts_max_queued: int = Field(
        default=8,
        ge=1,
        description="Speak requests waiting behind the one being spoken; a speak beyond them "
        "gets an error status 'queue full'.",
    )
    agent_tts_allow: str = Field(
        default="",
        description="Comma-separated participant identities whose tts_control messages are "
        "obeyed. By default nobody's are: besides this list, only participants whose "
        "roomscribe.tts attribute is 'allow' (set in their access token, or by the server API; "
        "give such tokens no canUpdateOwnMetadata grant, or they could set it themselves) and "
        "messages sent by a server SDK (no participant) may drive speech. Others get an "
        "error status 'not allowed'.",
    )

    def tts_allowed_identities(self) -> frozenset[str]:
        """The identities of ``ROOMSCRIBE_AGENT_TTS_ALLOW``, blanks dropped."""
        return frozenset(filter(None, (part.strip() for part in self.agent_tts_allow.split(","))))
