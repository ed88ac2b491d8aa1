"""Summaries by Gemini through ``google-genai``: :class:`GeminiSummarizer`.

Gemini answers against :class:`~orchestrator_service.summary.schema.LLMSummary` as its JSON
response schema. The library's own retries are switched off: rate limits, outages and timeouts
are retried by :class:`~orchestrator_service.summary.mapreduce.LLMSummarizer`, which honours
the wait Gemini asks for.
"""

from __future__ import annotations

import json

import aiohttp
import httpx2
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from orchestrator_service.summary.base import SummaryError
from orchestrator_service.summary.mapreduce import DEFAULT_SECTION_CHARS, LLMSummarizer
from orchestrator_service.summary.retry import (
    RETRYABLE_STATUSES,
    RetryPolicy,
    TransientError,
    parse_retry_after,
)
from orchestrator_service.summary.schema import AnswerFormatError, LLMSummary

#: The Gemini model used when the settings name none.
DEFAULT_GEMINI_MODEL = "gemini-2.5-flash"
#: Gemini API version used: ``v1beta`` carries structured output (``responseSchema``) for
#: every model, while ``v1`` (google-genai 3.x's default) has lagged behind on some models.
DEFAULT_GEMINI_API_VERSION = "v1beta"


def _gemini_retry_after(exc: genai_errors.APIError) -> float | None:
    headers = getattr(exc.response, "headers", None)
    header = headers.get("Retry-After") if headers is not None else None
    if (seconds := parse_retry_after(header)) is not None:
        return seconds
    # Google APIs put the wait in a google.rpc.RetryInfo detail: {"retryDelay": "23s"}.
    details = exc.details.get("error", exc.details) if isinstance(exc.details, dict) else {}
    for detail in details.get("details", []) if isinstance(details, dict) else []:
        delay = detail.get("retryDelay") if isinstance(detail, dict) else None
        if isinstance(delay, str) and delay.endswith("s"):
            return parse_retry_after(delay[:-1])
    return None


#: Transport failures of the HTTP stacks google-genai may use (aiohttp when installed).
_GEMINI_TRANSPORT_ERRORS: tuple[type[BaseException], ...] = (
    TimeoutError,
    OSError,
    aiohttp.ClientError,
    httpx2.TransportError,
)


class GeminiSummarizer(LLMSummarizer):
    """Summaries by Gemini through ``google-genai``, answering against a JSON schema.

    Args:
        api_key: The Gemini API key.
        model: The Gemini model name.
        base_url: Another endpoint speaking the Gemini API (a proxy, a test stand-in).
        api_version: The API version in the URL path (``None``: the library's default,
            ``v1`` in google-genai 3.x).
        section_chars: Transcript characters one call sees at most.
        retry: Backoff for rate limits, outages and timeouts.
        timeout_s: Time limit of one call.
        max_concurrency: Section calls in flight at once.
    """

    def __init__(
        self,
        api_key: str,
        model: str = DEFAULT_GEMINI_MODEL,
        base_url: str | None = None,
        *,
        api_version: str | None = DEFAULT_GEMINI_API_VERSION,
        section_chars: int = DEFAULT_SECTION_CHARS,
        retry: RetryPolicy | None = None,
        timeout_s: float = 120.0,
        max_concurrency: int = 2,
    ) -> None:
        super().__init__(section_chars=section_chars, retry=retry, max_concurrency=max_concurrency)
        self._model = model
        self._client = genai.Client(
            api_key=api_key,
            http_options=genai_types.HttpOptions(
                base_url=base_url,
                api_version=api_version,
                timeout=int(timeout_s * 1000),  # milliseconds
                # One attempt: our own loop retries (and honours Retry-After); without
                # retry options the library would also retry connection errors by itself,
                # after a hidden 1-10 s sleep.
                retry_options=genai_types.HttpRetryOptions(attempts=1),
            ),
        )

    @property
    def model_label(self) -> str:
        """``gemini/<model>``."""
        return f"gemini/{self._model}"

    async def aclose(self) -> None:
        """Close the client's connection pools."""
        await self._client.aio.aclose()

    async def _generate(self, system: str, prompt: str) -> str:
        config = genai_types.GenerateContentConfig(
            system_instruction=system,
            response_mime_type="application/json",
            response_schema=LLMSummary,
            temperature=0.2,
        )
        try:
            response = await self._client.aio.models.generate_content(
                model=self._model, contents=prompt, config=config
            )
        except genai_errors.APIError as exc:
            if exc.code in RETRYABLE_STATUSES or exc.code >= 500:
                raise TransientError(
                    f"Gemini answered {exc.code} {exc.status}",
                    retry_after_s=_gemini_retry_after(exc),
                ) from exc
            raise SummaryError(
                f"Gemini refused the request: {exc.code} {exc.status}: {exc.message}",
                transient=False,
            ) from exc
        except _GEMINI_TRANSPORT_ERRORS as exc:
            raise TransientError(f"Gemini unreachable: {type(exc).__name__}: {exc}") from exc
        except (genai_errors.UnknownApiResponseError, json.JSONDecodeError) as exc:
            # A body that is not the API's JSON (a proxy's error page, a cut-off response).
            raise TransientError(f"Gemini sent an unreadable response: {exc}") from exc
        text = response.text
        if not text:
            finish = response.candidates[0].finish_reason if response.candidates else None
            blocked = response.prompt_feedback.block_reason if response.prompt_feedback else None
            raise AnswerFormatError(
                f"the answer has no text (finish reason {finish}, block reason {blocked})"
            )
        return text
