"""The orchestrator app: REST API, health and metrics (webhooks and egress join it)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from orchestrator_service.api import router
from orchestrator_service.deps import OrchestratorState
from orchestrator_service.errors import error_body, install_error_handlers
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.auth import ApiTokenVerifier
from roomscribe.errors import StoreError
from roomscribe.store import TranscriptStore, open_store


def create_app(settings: OrchestratorSettings, *, store: TranscriptStore | None = None) -> FastAPI:
    """Build the orchestrator; the store opens in the lifespan.

    Args:
        settings: The orchestrator's settings.
        store: A transcript store to use instead of the one the settings describe.
    """
    registry = CollectorRegistry()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        transcripts = store or open_store(settings)
        await transcripts.init()
        configured = settings.api_jwt_secret is not None or settings.api_jwks_url is not None
        verifier = ApiTokenVerifier.from_settings(settings) if configured else None
        app.state.orchestrator = OrchestratorState(settings, transcripts, verifier)
        try:
            yield
        finally:
            if store is None:
                await transcripts.close()

    app = FastAPI(
        title="Roomscribe",
        version="0.1.0",
        summary="Transcripts of LiveKit rooms: live, corrected by Whisper, summarized.",
        lifespan=lifespan,
    )
    install_error_handlers(app)
    app.include_router(router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"])
    async def readyz() -> JSONResponse:
        """The transcript store answers."""
        state: OrchestratorState | None = getattr(app.state, "orchestrator", None)
        if state is None:
            return JSONResponse(error_body("starting", "not started"), status_code=503)
        try:
            await state.store.ping()
        except StoreError as exc:
            return JSONResponse(error_body("store_unavailable", str(exc)), status_code=503)
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["ops"])
    async def metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(registry), media_type=CONTENT_TYPE_LATEST)

    return app
