"""Settings of the orchestrator (environment prefix ``ROOMSCRIBE_``; LiveKit's own names)."""

from __future__ import annotations

from pydantic import AliasChoices, Field, SecretStr

from roomscribe.settings import CoreSettings


class OrchestratorSettings(CoreSettings):
    """Everything ``python -m orchestrator_service`` reads."""

    host: str = "0.0.0.0"
    port: int = 8000
    livekit_url: str = Field(
        default="http://localhost:7880",
        validation_alias=AliasChoices("LIVEKIT_URL", "ROOMSCRIBE_LIVEKIT_URL"),
    )
    livekit_api_key: str = Field(
        default="devkey",
        validation_alias=AliasChoices("LIVEKIT_API_KEY", "ROOMSCRIBE_LIVEKIT_API_KEY"),
    )
    livekit_api_secret: SecretStr = Field(
        default=SecretStr("secret"),
        validation_alias=AliasChoices("LIVEKIT_API_SECRET", "ROOMSCRIBE_LIVEKIT_API_SECRET"),
    )
    reconcile_interval_s: float = Field(default=30.0, gt=0)
    api_page_max: int = Field(default=1000, ge=1)
