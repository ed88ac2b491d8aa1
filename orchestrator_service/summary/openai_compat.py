"""Summaries by an OpenAI-compatible chat endpoint: :class:`OpenAICompatibleSummarizer`.

For local or self-hosted models (Ollama, vLLM, llama.cpp server), spoken to over ``httpx``.
"""

from __future__ import annotations

from typing import Any

import httpx

from orchestrator_service.summary.base import SummaryError
from orchestrator_service.summary.mapreduce import DEFAULT_SECTION_CHARS, LLMSummarizer
from orchestrator_service.summary.retry import (
    RETRYABLE_STATUSES,
    RetryPolicy,
    TransientError,
    parse_retry_after,
)
from orchestrator_service.summary.schema import AnswerFormatError


class OpenAICompatibleSummarizer(LLMSummarizer):
    """Summaries by an OpenAI-compatible chat endpoint (Ollama, vLLM, llama.cpp server).

    The request asks for ``response_format={"type": "json_object"}``; the expected shape is
    spelled out in the prompt, since JSON mode alone does not enforce a schema.

    Args:
        base_url: The API root including its version, e.g. ``http://localhost:11434/v1``.
        model: The model name; ``None`` uses the first model the server lists.
        api_key: Sent as a bearer token when set.
        section_chars: Transcript characters one call sees at most.
        retry: Backoff for rate limits, outages and timeouts.
        timeout_s: Time limit of one call (local models on a CPU are slow).
        max_concurrency: Section calls in flight at once.
    """

    def __init__(
        self,
        base_url: str,
        model: str | None = None,
        api_key: str | None = None,
        *,
        section_chars: int = DEFAULT_SECTION_CHARS,
        retry: RetryPolicy | None = None,
        timeout_s: float = 300.0,
        max_concurrency: int = 1,
    ) -> None:
        super().__init__(section_chars=section_chars, retry=retry, max_concurrency=max_concurrency)
        self._model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.AsyncClient(
            base_url=base_url.rstrip("/") + "/", headers=headers, timeout=timeout_s
        )

    @property
    def model_label(self) -> str:
        """``openai-compatible/<model>``."""
        return f"openai-compatible/{self._model or 'default'}"

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def _post(self, path: str, body: dict[str, Any] | None = None) -> Any:
        try:
            if body is None:
                response = await self._http.get(path)
            else:
                response = await self._http.post(path, json=body)
        except httpx.TransportError as exc:
            raise TransientError(f"LLM endpoint unreachable: {type(exc).__name__}: {exc}") from exc
        if response.status_code in RETRYABLE_STATUSES or response.status_code >= 500:
            raise TransientError(
                f"LLM endpoint answered {response.status_code}",
                retry_after_s=parse_retry_after(response.headers.get("Retry-After")),
            )
        if response.is_error:
            raise SummaryError(
                f"LLM endpoint refused {path}: {response.status_code} {response.text[:300]}",
                transient=False,
            )
        try:
            return response.json()
        except ValueError as exc:
            raise TransientError(f"LLM endpoint sent a non-JSON {path} response") from exc

    async def _resolve_model(self) -> str:
        if self._model is None:
            listing = await self._post("models")
            try:
                self._model = str(listing["data"][0]["id"])
            except (KeyError, IndexError, TypeError) as exc:
                raise SummaryError(
                    "no model configured and the LLM endpoint lists none", transient=False
                ) from exc
        return self._model

    async def _generate(self, system: str, prompt: str) -> str:
        body = {
            "model": await self._resolve_model(),
            "messages": [
                {"role": "system", "content": system},
                {"role": "user", "content": prompt},
            ],
            "response_format": {"type": "json_object"},
            "temperature": 0.2,
            "stream": False,
        }
        data = await self._post("chat/completions", body)
        try:
            content = data["choices"][0]["message"]["content"]
        except (KeyError, IndexError, TypeError) as exc:
            raise AnswerFormatError("the response has no choices[0].message.content") from exc
        if not isinstance(content, str) or not content.strip():
            raise AnswerFormatError("the answer has no text")
        return content
