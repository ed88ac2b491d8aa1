"""Which summarizer the settings ask for: :func:`summarizer_from_settings`."""

from __future__ import annotations

from pydantic import SecretStr

from orchestrator_service.settings import SummarySettings
from orchestrator_service.summary.extractive import ExtractiveSummarizer
from orchestrator_service.summary.gemini import GeminiSummarizer
from orchestrator_service.summary.openai_compat import OpenAICompatibleSummarizer
from orchestrator_service.summary.retry import RetryPolicy


def _secret(value: str | SecretStr | None) -> str | None:
    raw = value.get_secret_value() if isinstance(value, SecretStr) else value
    return raw.strip() or None if raw else None


def summarizer_from_settings(
    settings: SummarySettings, *, retry: RetryPolicy | None = None
) -> GeminiSummarizer | OpenAICompatibleSummarizer | ExtractiveSummarizer:
    """Choose the summarizer: Gemini with a key, else an OpenAI-compatible URL, else extract.

    Empty strings count as unset (``GEMINI_API_KEY=`` in a ``.env`` file). A call's time
    limit, unless the settings set one, is 120 s for Gemini and 300 s for an
    OpenAI-compatible endpoint (a local model may run on a CPU).

    Args:
        settings: The summary settings (``OrchestratorSettings.summary``).
        retry: Backoff for rate limits, outages and timeouts (``None``: the default
            :class:`~orchestrator_service.summary.retry.RetryPolicy`).

    Returns:
        The summarizer; the caller closes it with ``aclose()`` at shutdown.
    """
    if key := _secret(settings.gemini_api_key):
        return GeminiSummarizer(
            key,
            settings.gemini_model,
            settings.gemini_base_url or None,
            api_version=settings.gemini_api_version or None,
            section_chars=settings.section_chars,
            retry=retry,
            timeout_s=settings.timeout_s or 120.0,
        )
    if settings.llm_base_url and settings.llm_base_url.strip():
        return OpenAICompatibleSummarizer(
            settings.llm_base_url.strip(),
            settings.llm_model or None,
            _secret(settings.llm_api_key),
            section_chars=settings.section_chars,
            retry=retry,
            timeout_s=settings.timeout_s or 300.0,
        )
    return ExtractiveSummarizer()
