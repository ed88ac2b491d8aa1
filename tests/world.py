"""A whole recording world for tests: the devkit LiveKit emulator, the orchestrator on a real
server, an SQLite store and a local object store, wired together.
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

from devkit.livekit_emulator import LiveKitEmulator
from orchestrator_service.app import create_app
from orchestrator_service.lifecycle import RoomLifecycle
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.auth import issue_internal_token
from roomscribe.models import TrackStatus
from roomscribe.objectstore import LocalObjectStore
from roomscribe.serving import running
from roomscribe.store import SQLiteTranscriptStore

KEY = "devkey"
SECRET = "livekit-test-secret-0123456789abcdefgh"
INTERNAL = "internal-test-secret-0123456789abcdefg"
API = "api-test-secret-0123456789abcdefghijklmn"


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
        """Let webhooks and background LiveKit calls run until nothing moves."""
        for _ in range(3):
            await self.lk.wait_idle()
            await self.lifecycle.idle()
            await asyncio.sleep(0.05)

    async def track_status(self, sid: str) -> TrackStatus:
        return (await self.store.get_track(sid)).status


@asynccontextmanager
async def make_world(tmp_path: Path, **settings_overrides: Any) -> AsyncIterator[World]:
    """Start the emulator and the orchestrator; yield the world; stop everything.

    ``settings_overrides`` go to the orchestrator's settings (e.g. a Gemini stand-in).
    """
    store = SQLiteTranscriptStore(tmp_path / "orch.db")
    await store.init()
    objects = LocalObjectStore(tmp_path / "objects")
    await objects.init()
    lk = LiveKitEmulator(api_key=KEY, api_secret=SECRET, object_store=objects, webhook_url=None)
    async with running(lk.app) as lk_url:
        settings = OrchestratorSettings(
            secret=INTERNAL,
            api_jwt_secret=API,
            livekit_url=lk_url,
            livekit_api_key=KEY,
            livekit_api_secret=SECRET,
            sqlite_path=tmp_path / "orch.db",
            reconcile_interval_s=3600,
            **settings_overrides,
        )
        app = create_app(settings, store=store)
        async with running(app) as url, httpx.AsyncClient(base_url=url, timeout=10) as http:
            lk.webhooks.url = f"{url}/v1/webhooks/livekit"
            yield World(http, lk, store, objects, app.state.orchestrator.lifecycle, url)
            await lk.aclose()
    await store.close()
