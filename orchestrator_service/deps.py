"""FastAPI dependencies: the app's shared state and the authenticated API caller."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from livekit import api

from orchestrator_service.metrics import OrchestratorMetrics
from orchestrator_service.rooms import RoomLifecycle
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.auth import ApiPrincipal, ApiTokenVerifier
from roomscribe.errors import AuthError
from roomscribe.store import TranscriptStore


@dataclass
class OrchestratorState:
    """What request handlers share; built once in the app's lifespan."""

    settings: OrchestratorSettings
    store: TranscriptStore
    verifier: ApiTokenVerifier | None
    lifecycle: RoomLifecycle
    webhooks: api.WebhookReceiver
    metrics: OrchestratorMetrics


def get_state(request: Request) -> OrchestratorState:
    """The running app's state."""
    state: OrchestratorState = request.app.state.orchestrator
    return state


StateDep = Annotated[OrchestratorState, Depends(get_state)]

_bearer = HTTPBearer(auto_error=False, description="A JWT: roles ['admin'] or rooms [...]")


async def get_principal(
    state: StateDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiPrincipal:
    """Verify the bearer token and return who is calling (401 otherwise)."""
    if state.verifier is None:
        raise AuthError(
            "API authentication is not configured on this server: set "
            "ROOMSCRIBE_API_JWT_SECRET or ROOMSCRIBE_API_JWKS_URL"
        )
    if credentials is None or credentials.scheme.lower() != "bearer":
        raise AuthError("missing 'Authorization: Bearer <token>' header")
    return await state.verifier.averify(credentials.credentials)


PrincipalDep = Annotated[ApiPrincipal, Depends(get_principal)]
