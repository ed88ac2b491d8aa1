"""An application's webhook endpoint on a real loopback server, configured with behaviours.

Every request is recorded (headers, raw body, arrival time) and takes the next queued
:class:`Answer` (200 once the queue is empty). :meth:`WebhookReceiver.hold` makes requests
wait until :meth:`WebhookReceiver.release`, for a receiver that is slow or hangs.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from roomscribe.serving import running


@dataclass(frozen=True)
class Received:
    """One request as the receiver got it."""

    path: str
    headers: dict[str, str]
    body: bytes
    at: float

    @property
    def event(self) -> dict[str, Any]:
        """The parsed body."""
        parsed: dict[str, Any] = json.loads(self.body)
        return parsed


@dataclass(frozen=True)
class Answer:
    """What to answer one request with."""

    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class WebhookReceiver:
    """Records deliveries and answers them as scripted."""

    def __init__(self) -> None:
        self.url = ""
        self.received: list[Received] = []
        self._script: deque[Answer] = deque()
        self._gate: asyncio.Event | None = None
        self._arrived = asyncio.Event()

    def answer(self, *answers: Answer) -> None:
        """Answer the next requests with these, in order."""
        self._script.extend(answers)

    def hold(self) -> None:
        """Make requests wait (after being recorded) until :meth:`release`."""
        self._gate = asyncio.Event()

    def release(self) -> None:
        """Let held requests answer."""
        if self._gate is not None:
            self._gate.set()
            self._gate = None

    def events(self, kind: str | None = None) -> list[dict[str, Any]]:
        """The bodies received, parsed (only ``kind`` events when given)."""
        return [r.event for r in self.received if kind is None or r.event["type"] == kind]

    async def wait_for(self, count: int, timeout_s: float = 10.0) -> None:
        """Wait until ``count`` requests have arrived."""
        async with asyncio.timeout(timeout_s):
            while len(self.received) < count:
                self._arrived.clear()
                await self._arrived.wait()

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        self.received.append(
            Received(
                path=request.url.path,
                headers={k.lower(): v for k, v in request.headers.items()},
                body=body,
                at=time.monotonic(),
            )
        )
        self._arrived.set()
        gate = self._gate
        if gate is not None:
            await gate.wait()
        answer = self._script.popleft() if self._script else Answer()
        return Response(answer.body, status_code=answer.status, headers=answer.headers)


@asynccontextmanager
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    """Serve a :class:`WebhookReceiver` on 127.0.0.1 (any path) until the block ends."""
    receiver = WebhookReceiver()
    app = Starlette(
        routes=[Route("/{path:path}", receiver._handle, methods=["POST", "GET", "PUT"])]
    )
    async with running(app) as url:
        receiver.url = url
        try:
            yield receiver
        finally:
            # Held requests must answer, or the server's shutdown would wait on them.
            receiver.release()
