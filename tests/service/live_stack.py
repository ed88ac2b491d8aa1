"""A running orchestrator on an SQLite store, and an SSE reader, for the live-route tests."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import jwt
from fastapi import FastAPI

from orchestrator_service.app import create_app
from orchestrator_service.live.access import LiveState
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.models import SegmentIn, TrackCreate
from roomscribe.store import SQLiteTranscriptStore
from tests.servers import serve

API_SECRET = "api-test-secret-0123456789abcdefghijkl"
INTERNAL_SECRET = "internal-test-secret-0123456789abcdefg"
T0 = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)


def api_token(*, secret: str = API_SECRET, **claims: Any) -> str:
    payload = {"sub": "tester", "exp": int(time.time() + 300), **claims}
    return jwt.encode(payload, secret, algorithm="HS256")


ADMIN = {"Authorization": f"Bearer {api_token(roles=['admin'])}"}
STANDUP_ONLY = {"Authorization": f"Bearer {api_token(rooms=['standup'])}"}


def seg(sid: str, i: int, text: str | None = None) -> SegmentIn:
    return SegmentIn(id=f"{sid}-{i:09d}", start=i * 1.0, end=i * 1.0 + 0.8, text=text or f"w{i}")


@dataclass
class Sse:
    id: str | None
    kind: str
    data: Any


@dataclass
class Stack:
    store: SQLiteTranscriptStore
    settings: OrchestratorSettings
    tmp: Path
    url: str = ""
    app: FastAPI | None = None
    client: httpx.AsyncClient = field(default_factory=httpx.AsyncClient)

    @property
    def live(self) -> LiveState:
        assert self.app is not None
        state: LiveState = self.app.state.live
        return state

    async def stream_token(self, room: str, headers: dict[str, str] = ADMIN) -> str:
        res = await self.client.post(f"{self.url}/v1/rooms/{room}/stream-token", headers=headers)
        assert res.status_code == 200, res.text
        return str(res.json()["token"])

    async def events(
        self,
        room: str,
        count: int,
        *,
        last_id: str | None = None,
        params: dict[str, str] | None = None,
        headers: dict[str, str] = ADMIN,
        limit_s: float = 10.0,
    ) -> list[Sse]:
        """Read ``count`` events, or up to the first keepalive (nothing more is pending), then
        drop the connection; a keepalive that ended the read is the last item."""
        out: list[Sse] = []
        extra = {"Last-Event-ID": last_id} if last_id else {}
        url = f"{self.url}/v1/rooms/{room}/events"
        async with asyncio.timeout(limit_s):
            async for event in sse(self.client, url, headers={**headers, **extra}, params=params):
                out.append(event)
                if len(out) == count or event.kind == ":":
                    break
        return out


async def sse(client: httpx.AsyncClient, url: str, **kwargs: Any) -> AsyncIterator[Sse]:
    """Parse a text/event-stream; comments come out as events of kind ``:``."""
    async with client.stream("GET", url, **kwargs) as res:
        assert res.status_code == 200, await res.aread()
        assert res.headers["content-type"].startswith("text/event-stream")
        fields: dict[str, str] = {}
        async for line in res.aiter_lines():
            if line.startswith(":"):
                yield Sse(None, ":", line[1:].strip())
            elif line == "":
                if "data" in fields:
                    yield Sse(fields.get("id"), fields.get("event", "message"),
                              json.loads(fields["data"]))  # fmt: skip
                fields = {}
            else:
                name, _, value = line.partition(": ")
                fields[name] = value


@asynccontextmanager
async def running(stack: Stack) -> AsyncIterator[Stack]:
    """Serve an orchestrator on the stack's store (again: a restart keeps the store)."""
    before = stack.app, stack.url, stack.client
    stack.app = create_app(stack.settings, store=stack.store)
    try:
        async with serve(stack.app) as url, httpx.AsyncClient(timeout=10) as client:
            stack.url, stack.client = url, client
            yield stack
    finally:
        stack.app, stack.url, stack.client = before


async def add_track(
    store: SQLiteTranscriptStore, sid: str, who: str, room: str = "standup"
) -> None:
    await store.upsert_track(
        TrackCreate(
            track_sid=sid,
            room=room,
            participant_identity=who,
            participant_name=who.title(),
            published_at=T0,
            live_origin=T0,
        )
    )


def make_settings(tmp: Path, **overrides: Any) -> OrchestratorSettings:
    return OrchestratorSettings(
        api_jwt_secret=API_SECRET,
        secret=INTERNAL_SECRET,
        sqlite_path=tmp / "live.db",
        objects_dir=tmp / "objects",
        events_poll_s=0.05,
        events_keepalive_s=0.3,
        **overrides,
    )


@asynccontextmanager
async def open_stack(tmp_path: Path) -> AsyncIterator[Stack]:
    """Rooms ``standup`` (alice, bob) and ``retro`` (carol), served by an orchestrator."""
    store = SQLiteTranscriptStore(tmp_path / "live.db")
    await store.init()
    for room in ("standup", "retro"):
        await store.register_room(room, sid=f"RM_{room}")
    await add_track(store, "TR_a", "alice")
    await add_track(store, "TR_b", "bob")
    await add_track(store, "TR_r", "carol", room="retro")
    try:
        async with running(Stack(store, make_settings(tmp_path), tmp_path)) as stack:
            yield stack
    finally:
        await store.close()


def last_id_of(events: list[Sse], before: str | None) -> str | None:
    ids = [e.id for e in events if e.id]
    return ids[-1] if ids else before


def segment_ids(events: list[Sse]) -> list[str]:
    return [e.data["id"] for e in events if e.kind == "segment"]
