"""Who may read a room's events and recordings: an API token, or a stream token in the URL."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Annotated, Any

import jwt
from fastapi import Depends, FastAPI, Request
from fastapi.security import APIKeyQuery, HTTPAuthorizationCredentials, HTTPBearer

from orchestrator_service.deps import OrchestratorState, StateDep, get_principal
from orchestrator_service.live.tokens import StreamTokens
from roomscribe.objectstore import ObjectStore, open_object_store
from roomscribe.serving import add_shutdown_hook


@dataclass
class LiveState:
    """What the live routes share, built in their lifespan.

    Attributes:
        tokens: Issues and checks stream tokens.
        objects: The recordings' object store (not contacted until a recording is asked for).
        stopping: Set when the server shuts down: open event streams end then, or the
            server would wait on them for ever.
    """

    tokens: StreamTokens
    objects: ObjectStore
    stopping: asyncio.Event = field(default_factory=asyncio.Event)


@contextlib.asynccontextmanager
async def live_lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Build :class:`LiveState` from the orchestrator's settings (its lifespan runs first)."""
    core: OrchestratorState = app.state.orchestrator
    settings = core.settings
    live = LiveState(
        tokens=StreamTokens(settings.secret.get_secret_value(), ttl_s=settings.stream_token_ttl_s),
        # Not initialized: a store that is away must not keep the orchestrator from starting.
        objects=open_object_store(settings),
    )

    async def stop_streams() -> None:
        live.stopping.set()

    add_shutdown_hook(app, stop_streams)
    app.state.live = live
    try:
        yield
    finally:
        live.stopping.set()
        await live.objects.close()


def get_live(request: Request) -> LiveState:
    """The live routes' shared state."""
    live: LiveState = request.app.state.live
    return live


LiveDep = Annotated[LiveState, Depends(get_live)]

_bearer = HTTPBearer(auto_error=False, description="A JWT: roles ['admin'] or rooms [...]")
_stream_token = APIKeyQuery(
    name="token",
    auto_error=False,
    scheme_name="StreamToken",
    description="A stream token from POST /v1/rooms/{room}/stream-token: for EventSource "
    "and <audio>, which cannot send an Authorization header.",
)


@dataclass(frozen=True)
class RoomAccess:
    """A caller allowed to read one room, and until when (epoch seconds; ``None``: no end)."""

    subject: str
    room: str
    expires_at: float | None


def _expiry(token: str) -> float | None:
    # Read after the verifier accepted the token: only the value of its checked exp.
    claims: dict[str, Any] = jwt.decode(token, options={"verify_signature": False})
    exp = claims.get("exp")
    return float(exp) if isinstance(exp, int | float) else None


async def room_access(
    room: str,
    state: StateDep,
    live: LiveDep,
    token: Annotated[str | None, Depends(_stream_token)],
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> RoomAccess:
    """Accept a stream token for ``room`` (``?token=``) or an API token that grants it.

    Raises:
        AuthError: Neither is given, or the one given does not verify (401).
        PermissionDeniedError: The token is for another room (403).
    """
    if token is not None:
        grant = live.tokens.verify(token, room=room)
        return RoomAccess(grant.subject, room, grant.expires_at)
    principal = await get_principal(state, credentials)
    principal.require_room(room)
    assert credentials is not None  # get_principal refuses a request without them
    return RoomAccess(principal.subject, room, _expiry(credentials.credentials))


RoomAccessDep = Annotated[RoomAccess, Depends(room_access)]
