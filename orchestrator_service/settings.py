"""Settings of the orchestrator (environment prefix ``ROOMSCRIBE_``; LiveKit's own names).

The summary settings are flat fields of :class:`OrchestratorSettings`, so that their
environment variables keep their names (``GEMINI_API_KEY``, ``ROOMSCRIBE_LLM_BASE_URL``,
``ROOMSCRIBE_SUMMARY_SECTION_CHARS``, ...); :attr:`OrchestratorSettings.summary` gathers them
into one :class:`SummarySettings`, which is what the summarizer is built from.
"""

from __future__ import annotations

from typing import ClassVar, Self

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, SecretStr, model_validator

from orchestrator_service.outbound.config import WebhookConfig
from roomscribe.errors import ConfigurationError
from roomscribe.settings import DEVELOPMENT_SECRETS, PLACEHOLDER_SECRET, CoreSettings


class SummarySettings(BaseModel):
    """What the meeting summarizer is built from (``summarizer_from_settings`` takes it).

    Gemini is used when ``gemini_api_key`` is set, else an OpenAI-compatible endpoint when
    ``llm_base_url`` is, else the extract made without an LLM. Empty strings count as unset.

    Attributes:
        gemini_api_key: Selects Gemini when set.
        gemini_model: The Gemini model.
        gemini_base_url: Another endpoint speaking the Gemini API (proxy, test stand-in).
        gemini_api_version: The Gemini API version in the URL path.
        llm_base_url: An OpenAI-compatible API root (``http://localhost:11434/v1``).
        llm_model: Its model (``None``: the first model the server lists).
        llm_api_key: Its bearer token, if it wants one.
        section_chars: Transcript characters one LLM call sees at most.
        timeout_s: Time limit of one LLM call (``None``: 120 s for Gemini, 300 s for an
            OpenAI-compatible endpoint).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    gemini_api_key: SecretStr | None = None
    gemini_model: str = "gemini-2.5-flash"
    gemini_base_url: str | None = None
    gemini_api_version: str = "v1beta"
    llm_base_url: str | None = None
    llm_model: str | None = None
    llm_api_key: SecretStr | None = None
    section_chars: int = Field(default=24_000, ge=1000)
    timeout_s: float | None = Field(default=None, gt=0)


class OrchestratorSettings(CoreSettings):
    """Everything ``python -m orchestrator_service`` reads."""

    # The LiveKit secret verifies webhooks: with the dev default anyone can forge
    # room_finished and complete a meeting early.
    checked_secrets: ClassVar[dict[str, str]] = {
        **CoreSettings.checked_secrets,
        "livekit_api_secret": "LIVEKIT_API_SECRET",
    }

    orchestrator_host: str = Field(
        default="127.0.0.1",
        description="Address the REST API listens on (0.0.0.0 in a container).",
    )
    orchestrator_port: int = Field(default=8000, gt=0, lt=65536)
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
    events_poll_s: float = Field(
        default=1.0, gt=0, le=60, description="How often a room's event stream reads the store."
    )
    events_keepalive_s: float = Field(
        default=15.0, gt=0, description="Seconds between keepalive comments of a quiet stream."
    )
    stream_token_ttl_s: float = Field(
        default=300.0, gt=0, le=3600, description="Lifetime of the event and audio URL tokens."
    )
    webhook_urls: str = Field(
        default="",
        description="Comma-separated URLs that receive signed room.completed, summary.ready "
        "and track.transcribed events (empty: none).",
    )
    webhook_secret: SecretStr = Field(
        default=SecretStr(PLACEHOLDER_SECRET),
        description="HMAC-SHA256 key of the outgoing webhooks' Roomscribe-Signature.",
    )
    webhook_events: str = Field(
        default="", description="Comma-separated event types to send (empty: all of them)."
    )
    webhook_allow_private: bool = Field(
        default=False, description="Deliver webhooks to loopback and private addresses too."
    )
    webhook_max_attempts: int = Field(
        default=8, ge=1, le=20, description="Attempts of one webhook delivery before giving up."
    )
    webhook_retry_base_s: float = Field(
        default=5.0, gt=0, description="Wait before a webhook's first retry (then doubling)."
    )
    webhook_retry_max_s: float = Field(
        default=600.0, gt=0, description="Longest wait between webhook attempts."
    )
    webhook_timeout_s: float = Field(
        default=10.0, gt=0, le=120, description="Time limit of one webhook attempt."
    )
    webhook_queue_max: int = Field(
        default=1000, ge=1, le=100_000, description="Webhook deliveries held at once."
    )

    @property
    def webhooks(self) -> WebhookConfig:
        """The outgoing webhook settings (the ``webhook_*`` fields)."""
        return WebhookConfig.from_lists(
            urls=self.webhook_urls,
            events=self.webhook_events,
            secret=self.webhook_secret,
            allow_private=self.webhook_allow_private,
            max_attempts=self.webhook_max_attempts,
            retry_base_s=self.webhook_retry_base_s,
            retry_max_s=self.webhook_retry_max_s,
            timeout_s=self.webhook_timeout_s,
            queue_max=self.webhook_queue_max,
        )

    @property
    def summary(self) -> SummarySettings:
        """The summary settings (the ``gemini_*``, ``llm_*`` and ``summary_*`` fields)."""
        return SummarySettings(
            gemini_api_key=self.gemini_api_key,
            gemini_model=self.gemini_model,
            gemini_base_url=self.gemini_base_url,
            gemini_api_version=self.gemini_api_version,
            llm_base_url=self.llm_base_url,
            llm_model=self.llm_model,
            llm_api_key=self.llm_api_key,
            section_chars=self.summary_section_chars,
            timeout_s=self.summary_timeout_s,
        )

    @model_validator(mode="after")
    def _require_livekit_credentials(self) -> Self:
        """Outside development, LiveKit's key must be set, not the dev mode's ``devkey``."""
        if self.environment != "development" and self.livekit_api_key in DEVELOPMENT_SECRETS:
            raise ConfigurationError(
                f"LIVEKIT_API_KEY is LiveKit's development key; set the key of your LiveKit "
                f"deployment for the {self.environment!r} environment"
            )
        return self

    @model_validator(mode="after")
    def _check_webhooks(self) -> Self:
        """Unusable webhook targets, and outside development a guessable secret, are refused."""
        self.webhooks.check(self.environment)
        return self
