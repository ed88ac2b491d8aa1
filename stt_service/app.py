"""The streaming STT service: ``GET /v1/stream`` plus health, readiness and metrics."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Response, WebSocket
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from roomscribe.serving import add_shutdown_hook
from roomscribe.store import TranscriptStore, open_store
from stt_service.handshake import handle_stream
from stt_service.manager import PipelineManager
from stt_service.metrics import SttMetrics
from stt_service.recognizer import RecognizerFactory, VoskModels
from stt_service.session import StreamSession, SttRuntime
from stt_service.settings import SttSettings
from stt_service.writer import SegmentWriter

log = logging.getLogger(__name__)


def create_app(
    settings: SttSettings,
    *,
    recognizer_factory: RecognizerFactory | None = None,
    store: TranscriptStore | None = None,
) -> FastAPI:
    """Build the app; models load and the store opens in its lifespan.

    Args:
        settings: The service settings.
        recognizer_factory: Recognizers to use instead of loading Vosk models (tests wrap
            the real ones, e.g. to make them fail on demand).
        store: A transcript store to use instead of the one the settings describe.
    """
    metrics = SttMetrics()
    manager = PipelineManager(settings.stt_max_clients)
    state: dict[str, SttRuntime] = {}

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        transcripts = store or open_store(settings)
        await transcripts.init()
        # Loading a real model takes seconds: off the loop, and before readiness says yes.
        factory: RecognizerFactory
        if recognizer_factory is not None:
            factory = recognizer_factory
        else:
            factory = await asyncio.to_thread(VoskModels.load, settings.model_folders())
        writer = SegmentWriter(transcripts, metrics, flush_interval_s=settings.stt_store_flush_s)
        writer.start()
        state["runtime"] = runtime = SttRuntime(
            settings, factory, writer, metrics, manager, transcripts
        )
        # For operators' introspection and tests (per-track state, the writer's backlog).
        app.state.stt_runtime = runtime
        metrics.queue_depth.set_function(
            lambda: float(
                sum(s.queue_depth for s in manager.sessions if isinstance(s, StreamSession))
            )
        )
        log.info("stt service ready", extra={"languages": factory.languages()})
        # Streams end while their connections are still open (see roomscribe.serving), so
        # every client receives its last final before the server closes the socket.
        add_shutdown_hook(app, lambda: manager.drain(settings.stt_drain_timeout_s))
        try:
            yield
        finally:
            state.pop("runtime", None)
            app.state.stt_runtime = None
            await manager.drain(settings.stt_drain_timeout_s)
            await writer.close()
            if store is None:
                await transcripts.close()

    app = FastAPI(title="Roomscribe STT", version="0.1.0", lifespan=lifespan)

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """Models are loaded and the service accepts streams."""
        runtime = state.get("runtime")
        if runtime is None or manager.draining:
            return JSONResponse({"status": "not ready"}, status_code=503)
        return JSONResponse(
            {
                "status": "ready",
                "languages": runtime.factory.languages(),
                "active_streams": manager.active,
                "max_streams": manager.max_clients,
            }
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.websocket("/v1/stream")
    async def stream(ws: WebSocket) -> None:
        """One participant's audio in, partial and final results out (DESIGN.md section 5)."""
        runtime = state.get("runtime")
        if runtime is None:
            await ws.close(1013, "not ready")
            return
        await handle_stream(ws, runtime)

    return app
