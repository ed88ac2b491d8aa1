"""Settings of the orchestrator (environment prefix ``ROOMSCRIBE_``; LiveKit's own names)."""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import AliasChoices, Field, SecretStr, model_validator

from roomscribe.errors import ConfigurationError
from roomscribe.settings import DEVELOPMENT_SECRETS, CoreSettings


class OrchestratorSettings(CoreSettings):
    """Everything ``python -m orchestrator_service`` reads."""

    # The LiveKit secret verifies webhooks: with the dev default anyone can forge
    # room_finished and complete a meeting early.
    checked_secrets: ClassVar[dict[str, str]] = {
        **CoreSettings.checked_secrets,
        "livekit_api_secret": "LIVEKIT_API_SECRET",
    }

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
    gemini_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("GEMINI_API_KEY", "ROOMSCRIBE_GEMINI_API_KEY"),
        description="Summaries with Gemini when set.",
    )
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None
    gemini_api_version: str = "v1beta"
    llm_base_url: str | None = Field(
        default=None, description="OpenAI-compatible API root (Ollama, vLLM) when no Gemini key."
    )
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    summary_section_chars: int = Field(default=24_000, ge=1000)
    summary_timeout_s: float | None = Field(default=None, gt=0)
    api_page_max: int = Field(default=1000, ge=1)

    @model_validator(mode="after")
    def _require_livekit_credentials(self) -> Self:
        """Outside development, LiveKit's key must be set, not the dev mode's ``devkey``."""
        if self.environment != "development" and self.livekit_api_key in DEVELOPMENT_SECRETS:
            raise ConfigurationError(
                f"LIVEKIT_API_KEY is LiveKit's development key; set the key of your LiveKit "
                f"deployment for the {self.environment!r} environment"
            )
        return self
