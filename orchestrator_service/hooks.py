"""LiveKit webhooks and the agent's internal calls."""

from __future__ import annotations

import logging
import time
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Request
from fastapi.responses import JSONResponse
from livekit import api
from pydantic import BaseModel

from orchestrator_service.deps import StateDep
from orchestrator_service.errors import error_body
from orchestrator_service.openapi import error_responses
from orchestrator_service.paths import EncodedSegmentsRoute
from orchestrator_service.schemas import RoomPublic
from roomscribe.auth import InternalClaims, verify_internal_token
from roomscribe.errors import AuthError

log = logging.getLogger(__name__)

router = APIRouter(route_class=EncodedSegmentsRoute, tags=["integration"])

#: Larger bodies are not LiveKit webhooks (those are a few kilobytes).
_MAX_WEBHOOK_BYTES = 1 << 20


@router.post(
    "/v1/webhooks/livekit",
    summary="LiveKit webhook receiver",
    responses=error_responses(401, 413, 422),
)
async def livekit_webhook(
    request: Request,
    state: StateDep,
    authorization: Annotated[str | None, Header()] = None,
) -> JSONResponse:
    """Verify the signature (API key/secret, body hash) and apply the event.

    Answers as soon as the registry is updated; calls back to LiveKit run in the background.
    """
    started = time.perf_counter()
    metrics = state.metrics
    body = await read_bounded(request, _MAX_WEBHOOK_BYTES)
    if body is None:
        metrics.webhooks.labels(event="unknown", outcome="too_large").inc()
        return JSONResponse(error_body("too_large", "webhook body too large"), status_code=413)
    if not authorization:
        metrics.webhooks.labels(event="unknown", outcome="unsigned").inc()
        return JSONResponse(
            error_body("unauthorized", "missing Authorization header"), status_code=401
        )
    try:
        event = state.webhooks.receive(body.decode("utf-8"), authorization)
    except Exception as exc:  # livekit-api raises bare Exceptions for bad signatures
        metrics.webhooks.labels(event="unknown", outcome="rejected").inc()
        log.info("webhook rejected: %s", exc)
        return JSONResponse(
            error_body("unauthorized", "invalid webhook signature"), status_code=401
        )
    outcome = await state.lifecycle.handle(event)
    metrics.webhooks.labels(event=event.event or "unknown", outcome=outcome).inc()
    metrics.webhook_seconds.observe(time.perf_counter() - started)
    metrics.livekit_queue.set(state.lifecycle.queued)
    return JSONResponse({"status": outcome})


async def read_bounded(request: Request, limit: int) -> bytes | None:
    """The request body, or ``None`` as soon as it is known to exceed ``limit`` bytes.

    Read as a stream and refused past the limit: ``request.body()`` would first hold the
    whole body, so one unauthenticated 1 GiB POST would cost gigabytes before any check.
    """
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def internal_caller(
    state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> InternalClaims:
    """Verify an internal service token meant for the orchestrator."""
    scheme, _, token = (authorization or "").partition(" ")
    if scheme.lower() != "bearer" or not token:
        raise AuthError("missing 'Authorization: Bearer <internal token>' header")
    return verify_internal_token(
        state.settings.secret.get_secret_value(), token.strip(), audience="orchestrator"
    )


Internal = Annotated[InternalClaims, Depends(internal_caller)]


class FinalizeResult(BaseModel):
    """What finalize did."""

    room: RoomPublic
    completed: bool


@router.post(
    "/v1/internal/rooms/{room}/register", response_model=RoomPublic, include_in_schema=False
)
async def register_room(room: str, state: StateDep, caller: Internal) -> RoomPublic:
    """Register a room for transcription and start recording tracks already published."""
    registered = await state.lifecycle.register(room)
    log.info("room registered", extra={"room": room, "by": caller.subject})
    return RoomPublic.model_validate(registered.model_dump())


@router.post(
    "/v1/internal/rooms/{room}/finalize",
    response_model=FinalizeResult,
    include_in_schema=False,
)
async def finalize_room(room: str, state: StateDep, caller: Internal) -> FinalizeResult:
    """The meeting ended: mark the room final (it completes when no track is pending)."""
    await state.store.get_room(room)
    completed = await state.lifecycle.finalize(room)
    log.info("room finalized", extra={"room": room, "by": caller.subject})
    found = await state.store.get_room(room)
    return FinalizeResult(room=RoomPublic.model_validate(found.model_dump()), completed=completed)


@router.post(
    "/v1/internal/tracks/{track_sid}/job-finished",
    response_model=FinalizeResult,
    include_in_schema=False,
)
async def track_job_finished(track_sid: str, state: StateDep, caller: Internal) -> FinalizeResult:
    """A Whisper worker finished (or gave up on) a track: complete the room if it can."""
    track = await state.store.get_track(track_sid)
    state.lifecycle.outbound.track_finished(track)
    completed = await state.lifecycle.check_and_complete_room(track.room)
    log.info("track job finished", extra={"track_sid": track_sid, "by": caller.subject})
    room = await state.store.get_room(track.room)
    return FinalizeResult(room=RoomPublic.model_validate(room.model_dump()), completed=completed)


def webhook_receiver(api_key: str, api_secret: str) -> api.WebhookReceiver:
    """LiveKit's own verifier: the JWT's signature, and its sha256 claim against the body."""
    return api.WebhookReceiver(api.TokenVerifier(api_key, api_secret))
