"""A local stand-in for the Gemini REST API's ``generateContent``, configured with behaviours.

It answers ``POST /{version}/models/{model}:generateContent`` (google-genai 3.x sends ``v1``
by default, older releases ``v1beta``; both are served) in the API's own shapes: a
``GenerateContentResponse`` (``candidates[0].content.parts[0].text``, ``usageMetadata``,
``modelVersion``, ``responseId``) or a Google error body
(``{"error": {"code", "message", "status", "details"}}``). Each request takes the next
queued behaviour (or the default one) and is recorded, so tests can see every prompt.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from roomscribe.serving import running


@dataclass(frozen=True)
class RecordedRequest:
    """One ``generateContent`` call as the stand-in received it."""

    api_version: str
    model: str
    api_key: str | None
    body: dict[str, Any]

    @property
    def prompt(self) -> str:
        """The text of every part of every ``contents`` entry, joined by newlines."""
        return "\n".join(
            part.get("text", "")
            for content in self.body.get("contents", [])
            for part in content.get("parts", [])
        )

    @property
    def system(self) -> str:
        """The system instruction's text ("" when none was sent)."""
        instruction = self.body.get("systemInstruction") or {}
        return "\n".join(part.get("text", "") for part in instruction.get("parts", []))

    @property
    def generation_config(self) -> dict[str, Any]:
        """The request's ``generationConfig`` ({} when none was sent)."""
        config: dict[str, Any] = self.body.get("generationConfig") or {}
        return config


@dataclass(frozen=True)
class Reply:
    """Answer with the JSON of what ``build(request)`` returns, as the model's text."""

    build: Callable[[RecordedRequest], Any]


@dataclass(frozen=True)
class Malformed:
    """Answer 200 with this text as the model's output (not JSON, or the wrong shape)."""

    text: str = "Sure! Here is the summary you asked for: the team met."


@dataclass(frozen=True)
class RateLimited:
    """Answer 429 RESOURCE_EXHAUSTED with ``Retry-After`` and a ``RetryInfo`` detail."""

    retry_after_s: float = 1.0


@dataclass(frozen=True)
class ServerFailure:
    """Answer a 5xx Google error body."""

    status: int = 500


@dataclass(frozen=True)
class Refusal:
    """Answer a 4xx Google error body (e.g. 400 INVALID_ARGUMENT, 403 PERMISSION_DENIED)."""

    status: int = 400


@dataclass(frozen=True)
class Stall:
    """Answer nothing for ``delay_s`` (then a 503), so the client's time limit runs out."""

    delay_s: float = 1.0


Behaviour = Reply | Malformed | RateLimited | ServerFailure | Refusal | Stall

_STATUS_NAMES = {
    400: "INVALID_ARGUMENT",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    429: "RESOURCE_EXHAUSTED",
    500: "INTERNAL",
    503: "UNAVAILABLE",
}


def _error(status: int, message: str, **extra: Any) -> JSONResponse:
    body = {
        "error": {
            "code": status,
            "message": message,
            "status": _STATUS_NAMES.get(status, "UNKNOWN"),
            **extra,
        }
    }
    return JSONResponse(body, status_code=status)


@dataclass
class FakeGemini:
    """A configurable Gemini API: queue behaviours, serve it, read what it received.

    Args:
        api_key: The only key accepted (like the real API, another key is a 400).
        default: What to do when the queue is empty; ``None`` answers a 400, so a test that
            makes more calls than it planned fails fast instead of retrying.
    """

    api_key: str = "test-gemini-key"
    default: Behaviour | None = None
    requests: list[RecordedRequest] = field(default_factory=list)
    _queue: deque[Behaviour] = field(default_factory=deque)

    def enqueue(self, *behaviours: Behaviour) -> None:
        """Queue behaviours for the next requests, in order."""
        self._queue.extend(behaviours)

    @property
    def pending(self) -> int:
        """Queued behaviours not used yet."""
        return len(self._queue)

    def app(self) -> Starlette:
        """The ASGI app answering like the Gemini API."""
        return Starlette(
            routes=[Route("/{version}/models/{target}", self._handle, methods=["POST"])]
        )

    @asynccontextmanager
    async def serve(self) -> AsyncIterator[str]:
        """Serve on a free loopback port; yields the base URL for ``HttpOptions.base_url``."""
        async with running(self.app()) as url:
            yield url

    async def _handle(self, request: Request) -> JSONResponse:
        model, _, method = request.path_params["target"].partition(":")
        if method != "generateContent":
            return _error(404, f"method {method!r} is not served by the stand-in")
        key = request.headers.get("x-goog-api-key")
        if key != self.api_key:
            return _error(
                400,
                "API key not valid. Please pass a valid API key.",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                        "reason": "API_KEY_INVALID",
                    }
                ],
            )
        try:
            body = json.loads(await request.body())
        except json.JSONDecodeError:
            return _error(400, "Invalid JSON payload received.")
        if not isinstance(body, dict) or not body.get("contents"):
            return _error(400, "* GenerateContentRequest.contents: contents is not specified")
        recorded = RecordedRequest(
            api_version=request.path_params["version"], model=model, api_key=key, body=body
        )
        self.requests.append(recorded)
        behaviour = self._queue.popleft() if self._queue else self.default
        if behaviour is None:
            return _error(400, "the stand-in has no behaviour queued for this request")
        if isinstance(behaviour, RateLimited):
            response = _error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                details=[
                    {
                        "@type": "type.googleapis.com/google.rpc.RetryInfo",
                        "retryDelay": f"{behaviour.retry_after_s:g}s",
                    }
                ],
            )
            response.headers["Retry-After"] = f"{behaviour.retry_after_s:g}"
            return response
        if isinstance(behaviour, Stall):
            await asyncio.sleep(behaviour.delay_s)
            return _error(503, "The stand-in stalled.")
        if isinstance(behaviour, ServerFailure | Refusal):
            return _error(behaviour.status, "The stand-in was told to fail this request.")
        text = (
            behaviour.text
            if isinstance(behaviour, Malformed)
            else json.dumps(behaviour.build(recorded))
        )
        return JSONResponse(_answer(model, recorded.prompt, text))


def _answer(model: str, prompt: str, text: str) -> dict[str, Any]:
    prompt_tokens = len(prompt.split())
    answer_tokens = len(text.split())
    return {
        "candidates": [
            {
                "content": {"parts": [{"text": text}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": {
            "promptTokenCount": prompt_tokens,
            "candidatesTokenCount": answer_tokens,
            "totalTokenCount": prompt_tokens + answer_tokens,
            "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
        },
        "modelVersion": model,
        "responseId": uuid.uuid4().hex[:22],
    }
