"""A stand-in for the TTS service: streams a tone per word, as PCM, while "synthesizing"."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

RATE = 24000
WORD_S = 0.1


def expected_samples(text: str) -> int:
    """How many samples the stand-in produces for ``text``."""
    return len(text.split()) * int(RATE * WORD_S)


class FakeTts:
    """Answers ``POST /v1/synthesize`` with 0.1 s of tone per word, streamed in 20 ms chunks.

    Attributes:
        pace_s: Pause between chunks (synthesis speed); 0.002 is ten times real time.
        requests: The texts asked for, in order.
    """

    def __init__(self, pace_s: float = 0.002) -> None:
        self.pace_s = pace_s
        self.requests: list[str] = []
        self.app = Starlette(routes=[Route("/v1/synthesize", self._synthesize, methods=["POST"])])

    async def _synthesize(self, request: Request) -> Response:
        body = await request.json()
        text = str(body.get("text", ""))
        if text.strip() == "refuse":
            return JSONResponse({"detail": "cannot say that"}, status_code=422)
        self.requests.append(text)
        return StreamingResponse(
            self._pcm(text), media_type="audio/pcm", headers={"X-Sample-Rate": str(RATE)}
        )

    async def _pcm(self, text: str) -> AsyncIterator[bytes]:
        t = np.arange(expected_samples(text)) / RATE
        pcm = (np.sin(2 * np.pi * 300 * t) * 6000).astype("<i2").tobytes()
        step = RATE // 50 * 2
        for start in range(0, len(pcm), step):
            yield pcm[start : start + step]
            await asyncio.sleep(self.pace_s)
