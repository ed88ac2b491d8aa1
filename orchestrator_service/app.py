"""The orchestrator app: REST API, health and metrics (webhooks and egress join it)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from orchestrator_service import hooks, live
from orchestrator_service.api import router
from orchestrator_service.deps import OrchestratorState
from orchestrator_service.errors import error_body, install_error_handlers
from orchestrator_service.gateway import LiveKitGateway
from orchestrator_service.metrics import OrchestratorMetrics
from orchestrator_service.openapi import error_responses, serve_local_docs
from orchestrator_service.outbound import routes as outbound_routes
from orchestrator_service.outbound.emitter import WebhookEmitter
from orchestrator_service.paths import EncodedSegmentsMiddleware
from orchestrator_service.rooms import RoomLifecycle
from orchestrator_service.settings import OrchestratorSettings
from orchestrator_service.summary import summarizer_from_settings
from roomscribe.auth import ApiTokenVerifier
from roomscribe.errors import StoreError
from roomscribe.store import TranscriptStore, open_store

log = logging.getLogger(__name__)


def create_app(settings: OrchestratorSettings, *, store: TranscriptStore | None = None) -> FastAPI:
    """Build the orchestrator; the store opens in the lifespan.

    Args:
        settings: The orchestrator's settings.
        store: A transcript store to use instead of the one the settings describe.
    """
    metrics = OrchestratorMetrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        transcripts = store or open_store(settings)
        await transcripts.init()
        configured = settings.api_jwt_secret is not None or settings.api_jwks_url is not None
        verifier = ApiTokenVerifier.from_settings(settings) if configured else None
        gateway = LiveKitGateway(settings)
        summarizer = summarizer_from_settings(settings.summary)
        outbound = WebhookEmitter(settings.webhooks, transcripts, registry=metrics.registry)
        lifecycle = RoomLifecycle(transcripts, gateway, metrics, summarizer, outbound=outbound)
        lifecycle.start()
        app.state.orchestrator = OrchestratorState(
            settings=settings,
            store=transcripts,
            verifier=verifier,
            lifecycle=lifecycle,
            webhooks=hooks.webhook_receiver(
                settings.livekit_api_key, settings.livekit_api_secret.get_secret_value()
            ),
            metrics=metrics,
        )
        reconciler = asyncio.create_task(_reconcile_forever(lifecycle, settings))
        try:
            yield
        finally:
            reconciler.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reconciler
            await lifecycle.close()
            await outbound.aclose()
            await summarizer.aclose()
            await gateway.close()
            if store is None:
                await transcripts.close()

    app = FastAPI(
        title="Roomscribe",
        version="0.1.0",
        summary="Transcripts of LiveKit rooms: live, corrected by Whisper, summarized.",
        lifespan=lifespan,
        # Served below from the installed Swagger UI package: the default pages load their
        # script from a CDN and stay blank offline. ReDoc has no such package; it is off.
        docs_url=None,
        redoc_url=None,
    )
    serve_local_docs(app)
    install_error_handlers(app)
    app.add_middleware(EncodedSegmentsMiddleware)  # a room name may hold "/" (paths.py)
    app.include_router(router)
    app.include_router(hooks.router)
    app.include_router(outbound_routes.router)
    app.include_router(live.router)

    @app.get("/healthz", tags=["ops"])
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz", tags=["ops"], responses=error_responses(503))
    async def readyz() -> JSONResponse:
        """The transcript store answers."""
        state: OrchestratorState | None = getattr(app.state, "orchestrator", None)
        if state is None:
            return JSONResponse(error_body("starting", "not started"), status_code=503)
        try:
            await state.store.ping()
        except StoreError as exc:
            # The driver's text names hosts and the topology: the log has it, an
            # unauthenticated probe does not.
            log.warning("readiness: the store does not answer: %s", exc)
            return JSONResponse(
                error_body("store_unavailable", "the transcript store does not answer"),
                status_code=503,
            )
        return JSONResponse({"status": "ready"})

    @app.get("/metrics", tags=["ops"])
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    return app


async def _reconcile_forever(lifecycle: RoomLifecycle, settings: OrchestratorSettings) -> None:
    """Every interval, repair what lost webhooks left behind."""
    while True:
        await asyncio.sleep(settings.reconcile_interval_s)
        try:
            await lifecycle.reconcile()
        except Exception:  # the next round tries again; a bad round must not end the loop
            log.exception("reconcile round failed")
