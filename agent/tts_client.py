"""The TTS service as the agent sees it: text in, timed pieces of speech out.

:class:`HttpSynthesizer` asks ``POST /v1/synthesize`` for JSON lines (``Accept:
application/x-ndjson``, see :mod:`tts_service`): one line per piece with its text, its
audio (base64 PCM s16le mono) and Kokoro's word times, then a ``done`` line. The words are
what the agent's own captions are timed by (:mod:`agent.speech_captions`).

Every way the service can fail becomes a :class:`TtsError` with a one-line reason: an error
answer (``{"error": {"code", "message"}}`` with its HTTP status, ``Retry-After`` on 429),
an ``error`` line after the first piece, a stream cut short before its ``done`` line, or an
answer that is not the protocol at all.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Literal, Protocol

import httpx
from pydantic import BaseModel, Field, TypeAdapter, ValidationError

from roomscribe.auth import issue_internal_token

#: The ``Accept`` value that makes the service answer JSON lines with word times.
NDJSON = "application/x-ndjson"


class TtsError(Exception):
    """Synthesis failed (the TTS service is down or refused the text)."""


@dataclass(frozen=True)
class SpokenWord:
    """A word and where it starts, in seconds from the start of its piece's audio.

    ``start_s`` is ``None`` where Kokoro gives no time for the word.
    """

    text: str
    start_s: float | None


@dataclass(frozen=True)
class SpeechPiece:
    """A piece of speech: PCM s16le mono at ``sample_rate``, its text and its words."""

    pcm: bytes
    sample_rate: int
    text: str
    words: tuple[SpokenWord, ...] = ()

    @property
    def duration_s(self) -> float:
        """How long the piece plays."""
        return len(self.pcm) / 2 / self.sample_rate


class Synthesizer(Protocol):
    """Turns text into pieces of speech, streamed."""

    def synthesize(
        self, text: str, *, voice: str | None, speed: float | None
    ) -> AsyncIterator[SpeechPiece]:
        """Yield the pieces of ``text`` as they are synthesized."""
        ...


class _Word(BaseModel):
    text: str
    start_s: float | None
    end_s: float | None


class _AudioLine(BaseModel):
    type: Literal["audio"]
    text: str
    start_s: float
    sample_rate: int = Field(gt=0)
    audio: str
    words: list[_Word]


class _DoneLine(BaseModel):
    type: Literal["done"]


class _Problem(BaseModel):
    code: str
    message: str


class _ErrorLine(BaseModel):
    type: Literal["error"]
    error: _Problem


class _ErrorBody(BaseModel):
    error: _Problem


_Line = Annotated[_AudioLine | _DoneLine | _ErrorLine, Field(discriminator="type")]
_line_adapter: TypeAdapter[_Line] = TypeAdapter(_Line)


class HttpSynthesizer:
    """The TTS service over HTTP, streamed: each piece arrives as soon as it is synthesized.

    Args:
        base_url: The TTS service's base URL.
        secret: The internal secret; each request carries a fresh token (``aud`` = ``tts``).
            ``None``: no token (a service running with ``ROOMSCRIBE_TTS_AUTH=false``).
    """

    def __init__(self, base_url: str, secret: str | None) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=httpx.Timeout(30, read=60))
        self._secret = secret

    async def synthesize(
        self, text: str, *, voice: str | None, speed: float | None
    ) -> AsyncIterator[SpeechPiece]:
        """Stream the service's pieces for ``text``.

        Raises:
            TtsError: The service refused, failed or broke the protocol (see the module doc).
            httpx.HTTPError: It could not be reached, or the connection broke.
        """
        headers = {"Accept": NDJSON}
        if self._secret:
            token = issue_internal_token(self._secret, audience="tts", subject="agent")
            headers["Authorization"] = f"Bearer {token}"
        body = {"text": text, "voice": voice, "speed": speed}
        async with self._http.stream("POST", "/v1/synthesize", json=body, headers=headers) as res:
            if res.status_code != 200:
                raise TtsError(_refusal(res.status_code, await res.aread(), res.headers))
            if not res.headers.get("content-type", "").startswith(NDJSON):
                kind = res.headers.get("content-type", "no content type")
                raise TtsError(f"the TTS service answered {kind}, not {NDJSON}")
            async for raw in res.aiter_lines():
                if not raw.strip():
                    continue
                line = _parse(raw)
                if isinstance(line, _DoneLine):
                    return
                if isinstance(line, _ErrorLine):
                    raise TtsError(f"synthesis failed: {line.error.code}: {line.error.message}")
                yield _piece(line)
        raise TtsError("the TTS service's answer was cut short (no 'done' line)")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()


def _refusal(status: int, body: bytes, headers: httpx.Headers) -> str:
    try:
        problem = _ErrorBody.model_validate_json(body).error
        detail = f"{problem.code}: {problem.message}"
    except ValidationError:
        detail = body.decode(errors="replace")[:200]
    retry = headers.get("retry-after")
    after = f" (retry after {retry} s)" if status == 429 and retry else ""
    return f"TTS service answered HTTP {status}: {detail}{after}"


def _parse(raw: str) -> _AudioLine | _DoneLine | _ErrorLine:
    try:
        return _line_adapter.validate_json(raw)
    except ValidationError as exc:
        try:
            kind = json.loads(raw).get("type")
        except (ValueError, AttributeError):
            kind = None
        raise TtsError(f"unexpected line from the TTS service (type {kind!r})") from exc


def _piece(line: _AudioLine) -> SpeechPiece:
    try:
        pcm = base64.b64decode(line.audio, validate=True)
    except binascii.Error as exc:
        raise TtsError("the TTS service sent audio that is not base64") from exc
    if len(pcm) % 2:
        raise TtsError("the TTS service sent a piece of odd length (not 16-bit PCM)")
    # Word times count from the start of the whole answer; the agent plays piece by piece.
    words = tuple(
        SpokenWord(w.text, None if w.start_s is None else max(0.0, w.start_s - line.start_s))
        for w in line.words
    )
    return SpeechPiece(pcm, line.sample_rate, line.text, words)
