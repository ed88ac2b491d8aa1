"""A whole recording world for tests: the devkit LiveKit emulator, the orchestrator on a real
server, an SQLite store and a local object store, wired together (:mod:`devkit.stack`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import jwt
import numpy as np

from devkit.livekit_emulator import Clock, LiveKitEmulator, ManualClock
from devkit.stack import LocalStack, StackSecrets, local_stack
from orchestrator_service.rooms import RoomLifecycle
from roomscribe.auth import issue_internal_token
from roomscribe.models import TrackStatus
from roomscribe.objectstore import LocalObjectStore
from roomscribe.store import SQLiteTranscriptStore

KEY = "devkey"
SECRET = "livekit-test-secret-0123456789abcdefgh"
INTERNAL = "internal-test-secret-0123456789abcdefg"
API = "api-test-secret-0123456789abcdefghijklmn"
SECRETS = StackSecrets(livekit_key=KEY, livekit_secret=SECRET, internal=INTERNAL, api=API)


def api_token(**claims: Any) -> str:
    return jwt.encode({"sub": "t", "exp": int(time.time()) + 300, **claims}, API, algorithm="HS256")


def tone(seconds: float = 1.0, hz: float = 440.0) -> np.ndarray:
    t = np.arange(int(16000 * seconds)) / 16000
    return (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16)


@dataclass
class World:
    http: httpx.AsyncClient
    lk: LiveKitEmulator
    store: SQLiteTranscriptStore
    objects: LocalObjectStore
    lifecycle: RoomLifecycle
    url: str
    stack: LocalStack
    #: Meeting time that passes at the end of each :meth:`settle` (on a manual clock).
    settle_advance_s: float = 0.0

    @property
    def clock(self) -> Clock:
        """The emulator's clock (a ``ManualClock`` when the test passed one)."""
        return self.stack.clock

    def internal(self, audience: str = "orchestrator", secret: str = INTERNAL) -> dict[str, str]:
        token = issue_internal_token(secret, audience=audience, subject="agent")
        return {"Authorization": f"Bearer {token}"}

    async def register(self, room: str) -> dict[str, Any]:
        res = await self.http.post(f"/v1/internal/rooms/{room}/register", headers=self.internal())
        assert res.status_code == 200, res.text
        return dict(res.json())

    async def finalize(self, room: str) -> dict[str, Any]:
        res = await self.http.post(f"/v1/internal/rooms/{room}/finalize", headers=self.internal())
        assert res.status_code == 200, res.text
        return dict(res.json())

    async def settle(self) -> None:
        """Let webhooks and background LiveKit calls run until nothing moves.

        Then ``settle_advance_s`` of meeting time passes on a manual clock, so tracks play
        (and egresses record) between one scripted step and the next, however busy the
        machine is.
        """
        for _ in range(3):
            await self.lk.wait_idle()
            await self.lifecycle.idle()
            await asyncio.sleep(0.05)
        if self.settle_advance_s and isinstance(self.clock, ManualClock):
            self.clock.advance(self.settle_advance_s)

    async def track_status(self, sid: str) -> TrackStatus:
        return (await self.store.get_track(sid)).status


@asynccontextmanager
async def make_world(
    tmp_path: Path,
    *,
    clock: Clock | None = None,
    egress_start_delay_s: float = 0.0,
    egress_limit_s: float | None = None,
    settle_advance_s: float = 0.0,
    **settings_overrides: Any,
) -> AsyncIterator[World]:
    """Start the emulator and the orchestrator; yield the world; stop everything.

    ``clock``, ``egress_start_delay_s`` and ``egress_limit_s`` go to the emulator (the wall
    clock by default: an egress records what plays between its start and its stop);
    ``settle_advance_s`` is what :meth:`World.settle` advances a manual clock by;
    ``settings_overrides`` go to the orchestrator's settings (e.g. a Gemini stand-in).
    """
    async with (
        local_stack(
            tmp_path,
            secrets=SECRETS,
            clock=clock,
            egress_start_delay_s=egress_start_delay_s,
            egress_limit_s=egress_limit_s,
            orchestrator_settings=settings_overrides,
        ) as stack,
        httpx.AsyncClient(base_url=stack.orchestrator_url, timeout=10) as http,
    ):
        yield World(
            http,
            stack.lk,
            stack.store,
            stack.objects,
            stack.lifecycle,
            stack.orchestrator_url,
            stack,
            settle_advance_s,
        )
