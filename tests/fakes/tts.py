"""A stand-in for the TTS service: ``POST /v1/synthesize`` as the real one answers it.

It speaks the real protocol (:mod:`tts_service`): PCM s16le with ``X-Sample-Rate``, or with
``Accept: application/x-ndjson`` one JSON line per sentence (text, start, duration, base64
audio, word times) and a ``done`` line. It fails as the real one fails: ``{"error": {"code",
"message"}}`` with the same statuses and codes (400 ``invalid_json`` / ``unknown_voice``,
401 ``unauthorized``, 413 ``text_too_long``, 422 ``invalid_request``, 429 ``busy`` with
``Retry-After``), and an ``error`` line when synthesis fails after the first line.
``tests/service/test_agent_tts_real.py`` holds the two to the same answers.

Its "speech" is 0.1 s of a 300 Hz tone per word, each word's time known exactly.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from roomscribe.auth import verify_internal_token
from roomscribe.errors import AuthError

RATE = 24000
WORD_S = 0.1
NDJSON = "application/x-ndjson"
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def expected_samples(text: str) -> int:
    """How many samples the stand-in produces for ``text``."""
    return len(text.split()) * int(RATE * WORD_S)


def _error(status: int, code: str, message: str, **headers: str) -> JSONResponse:
    return JSONResponse(
        {"error": {"code": code, "message": message}}, status_code=status, headers=headers
    )


class FakeTts:
    """Answers ``POST /v1/synthesize`` like the TTS service, with a tone per word.

    Attributes:
        pace_s: Synthesis time per 20 ms of audio; 0.002 is ten times real time.
        requests: The texts asked for (accepted ones), in order.
        voices: The voices it has (another is ``unknown_voice``).
        max_chars: The longest text (``text_too_long`` beyond).
        busy: Answer every request 429 ``busy``.
        fail_on: A word whose sentence fails to synthesize (an ``error`` line in NDJSON, a
            broken connection in PCM, as the service reports a model failure); ``None``.
        secret: Require an internal token (``aud=tts``) signed with it; ``None``: no auth.
    """

    def __init__(self, pace_s: float = 0.002) -> None:
        self.pace_s = pace_s
        self.requests: list[str] = []
        self.voices = ("af_heart", "am_adam")
        self.max_chars = 2000
        self.busy = False
        self.fail_on: str | None = None
        self.secret: str | None = None
        self.app = Starlette(routes=[Route("/v1/synthesize", self._synthesize, methods=["POST"])])

    async def _synthesize(self, request: Request) -> Response:
        if self.secret is not None:
            scheme, _, token = request.headers.get("authorization", "").partition(" ")
            try:
                if scheme.lower() != "bearer":
                    raise AuthError("missing 'Authorization: Bearer <token>' header")
                verify_internal_token(self.secret, token.strip(), audience="tts")
            except AuthError as exc:
                return _error(401, "unauthorized", str(exc), **{"WWW-Authenticate": "Bearer"})
        try:
            body = json.loads(await request.body())
        except ValueError as exc:
            return _error(400, "invalid_json", f"the body is not JSON: {exc}")
        if refused := self._refusal(body):
            return refused
        text = body["text"]
        self.requests.append(text)
        sentences = [s for s in (p.strip() for p in _SENTENCE_END.split(text)) if s]
        if NDJSON in request.headers.get("accept", ""):
            lines = self._lines(sentences)
            return StreamingResponse(lines, media_type=NDJSON, headers={"X-Sample-Rate": str(RATE)})
        return StreamingResponse(
            self._pcm(sentences), media_type="audio/pcm", headers={"X-Sample-Rate": str(RATE)}
        )

    def _refusal(self, body: Any) -> JSONResponse | None:
        if not isinstance(body, dict):
            return _error(422, "invalid_request", "the body must be a JSON object")
        text, voice, speed = body.get("text"), body.get("voice"), body.get("speed")
        if not isinstance(text, str) or not text.strip():
            return _error(422, "invalid_request", "text: a text to say is required")
        if speed is not None and (not isinstance(speed, int | float) or not 0.25 <= speed <= 4):
            return _error(422, "invalid_request", "speed: must be in [0.25, 4.0]")
        if len(text) > self.max_chars:
            return _error(413, "text_too_long", f"the limit is {self.max_chars} characters")
        if voice is not None and voice not in self.voices:
            return _error(400, "unknown_voice", f"unknown voice {voice!r}")
        if self.busy:
            return _error(
                429, "busy", "syntheses are running; retry shortly", **{"Retry-After": "1"}
            )
        return None

    async def _sentences(self, sentences: list[str]) -> AsyncIterator[tuple[str, bytes]]:
        for sentence in sentences:
            if self.fail_on is not None and self.fail_on in sentence.split():
                raise RuntimeError("synthesis failed (as configured)")
            pcm = _tone(expected_samples(sentence))
            await asyncio.sleep(self.pace_s * len(pcm) / (RATE // 50 * 2))
            yield sentence, pcm

    async def _lines(self, sentences: list[str]) -> AsyncIterator[bytes]:
        start = 0.0
        count = 0
        try:
            async for sentence, pcm in self._sentences(sentences):
                words = [w for w in (re.sub(r"[^\w'-]", "", w) for w in sentence.split()) if w]
                line = {
                    "type": "audio",
                    "index": count,
                    "text": sentence,
                    "start_s": round(start, 4),
                    "duration_s": round(len(pcm) / 2 / RATE, 4),
                    "sample_rate": RATE,
                    "audio": base64.b64encode(pcm).decode("ascii"),
                    "words": [
                        {
                            "text": word,
                            "start_s": round(start + i * WORD_S, 4),
                            "end_s": round(start + (i + 1) * WORD_S, 4),
                        }
                        for i, word in enumerate(words)
                    ],
                }
                yield (json.dumps(line) + "\n").encode()
                start += len(pcm) / 2 / RATE
                count += 1
        except RuntimeError:
            error = {"code": "synthesis_failed", "message": "synthesis failed; it has been logged"}
            yield (json.dumps({"type": "error", "error": error}) + "\n").encode()
            return
        yield (
            json.dumps({"type": "done", "pieces": count, "duration_s": round(start, 4)}) + "\n"
        ).encode()

    async def _pcm(self, sentences: list[str]) -> AsyncIterator[bytes]:
        async for _, pcm in self._sentences(sentences):
            yield pcm


def _tone(samples: int) -> bytes:
    t = np.arange(samples) / RATE
    return (np.sin(2 * np.pi * 300 * t) * 6000).astype("<i2").tobytes()
