"""The TTS service's HTTP API: synthesis, the OpenAI-compatible endpoint, voices, health.

See the package docstring (:mod:`tts_service`) for the protocol.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, TypeVar

from fastapi import Depends, FastAPI, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, ValidationError
from starlette.exceptions import HTTPException

from roomscribe.auth import verify_internal_token
from roomscribe.errors import AuthError, ConfigurationError, TokenExpiredError
from tts_service.audio_formats import encoder_for
from tts_service.engine import KokoroEngine, UnknownVoiceError
from tts_service.kokoro_model import find_model
from tts_service.metrics import TtsMetrics
from tts_service.schemas import (
    NDJSON,
    SpeechRequest,
    SynthesizeRequest,
    Voice,
    VoicesPublic,
    error_body,
)
from tts_service.settings import TtsSettings
from tts_service.streaming import (
    StreamTracker,
    SynthesisResponse,
    audio_body,
    ndjson_body,
)

log = logging.getLogger(__name__)

M = TypeVar("M", bound=BaseModel)


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message"}}`` with ``status``."""

    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


class StreamLimiter:
    """Counts the requests synthesizing; refuses more than ``limit`` (event loop only)."""

    def __init__(self, limit: int) -> None:
        """Allow ``limit`` streams at once."""
        self.limit = limit
        self.active = 0

    def try_acquire(self) -> bool:
        """Take a slot if one is free."""
        if self.active >= self.limit:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        """Give a slot back."""
        self.active -= 1


def create_app(settings: TtsSettings, *, engine: KokoroEngine | None = None) -> FastAPI:
    """Build the app; the model loads in its lifespan, off the event loop.

    Args:
        settings: The service settings.
        engine: An engine already loaded (tests and the benchmark share one); it is not
            closed with the app.

    Raises:
        ConfigurationError: No model in the model folder, or the default voice is not there
            (checked here, before anything slow, so the service fails in one line).
    """
    if engine is None:
        files = find_model(settings.model_folder())
        voice = settings.tts_default_voice
        if voice is not None and voice not in files.voices:
            raise ConfigurationError(
                f"ROOMSCRIBE_TTS_DEFAULT_VOICE={voice!r} is not in {files.folder / 'voices'}"
            )
    metrics = TtsMetrics()
    limiter = StreamLimiter(settings.tts_max_concurrent)
    metrics.active_streams.set_function(lambda: float(limiter.active))
    state: dict[str, KokoroEngine] = {}
    secret = settings.secret.get_secret_value()
    body_cap = settings.tts_max_chars * 6 + 16_384  # JSON may escape a character as \uXXXX

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        loaded = (
            engine
            if engine is not None
            else await asyncio.to_thread(
                KokoroEngine.load,
                settings.model_folder(),
                threads=settings.tts_torch_threads,
                workers=settings.tts_workers,
                max_sentence_chars=settings.tts_max_sentence_chars,
                default_voice=settings.tts_default_voice,
                warmup=settings.tts_warmup,
            )
        )
        loaded.observer = metrics.observe_sentence
        state["engine"] = loaded
        log.info(
            "tts service ready",
            extra={"model": loaded.loaded.files.label(), "g2p": loaded.loaded.g2p},
        )
        try:
            yield
        finally:
            state.pop("engine", None)
            if engine is None:
                loaded.close()

    app = FastAPI(
        title="Roomscribe TTS", version="0.1.0", lifespan=lifespan, docs_url=None, redoc_url=None
    )
    _install_error_handlers(app, metrics)

    def ready_engine() -> KokoroEngine:
        loaded = state.get("engine")
        if loaded is None:
            raise ApiError(503, "not_ready", "the model is still loading", {"Retry-After": "1"})
        return loaded

    async def authorize(request: Request) -> None:
        if not settings.tts_auth:
            return
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise AuthError("missing 'Authorization: Bearer <token>' header")
        verify_internal_token(secret, token.strip(), audience="tts")

    # As a route dependency (not a parameter): the alias would be local to this function,
    # where FastAPI cannot resolve postponed annotations.
    authorized = [Depends(authorize)]

    async def read_body(request: Request, model: type[M]) -> M:
        declared = request.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > body_cap:
            raise ApiError(413, "body_too_large", f"the request body is over {body_cap} bytes")
        raw = bytearray()
        async for chunk in request.stream():
            raw += chunk
            if len(raw) > body_cap:
                raise ApiError(413, "body_too_large", f"the request body is over {body_cap} bytes")
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise ApiError(400, "invalid_json", f"the body is not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ApiError(422, "invalid_request", "the body must be a JSON object")
        try:
            return model.model_validate(data)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise ApiError(422, "invalid_request", f"{where}: {first['msg']}") from exc

    def admit(loaded: KokoroEngine, text: str, voice: str | None) -> str:
        if not text.strip():
            raise ApiError(422, "invalid_request", "the text is blank: nothing to say")
        if len(text) > settings.tts_max_chars:
            raise ApiError(
                413,
                "text_too_long",
                f"the text has {len(text)} characters; the limit is {settings.tts_max_chars}",
            )
        try:
            resolved = loaded.check_voice(voice)
        except UnknownVoiceError as exc:
            raise ApiError(400, "unknown_voice", str(exc)) from exc
        if not limiter.try_acquire():
            raise ApiError(
                429,
                "busy",
                f"{limiter.limit} syntheses are running; retry shortly",
                {"Retry-After": str(settings.tts_retry_after_s)},
            )
        return resolved

    def closer(endpoint: str, tracker: StreamTracker) -> Any:
        def on_close() -> None:
            limiter.release()
            metrics.requests.labels(endpoint, tracker.outcome).inc()
            if tracker.first_audio_s is not None:
                metrics.first_audio.observe(tracker.first_audio_s)

        return on_close

    @app.get("/healthz")
    async def healthz() -> dict[str, str]:
        """The process is up."""
        return {"status": "ok"}

    @app.get("/readyz")
    async def readyz() -> JSONResponse:
        """The model is loaded and requests are served."""
        loaded = state.get("engine")
        if loaded is None:
            return JSONResponse(error_body("not_ready", "the model is loading"), status_code=503)
        files = loaded.loaded.files
        return JSONResponse(
            {
                "status": "ready",
                "model": files.label(),
                "synthetic": files.synthetic,
                "g2p": loaded.loaded.g2p,
                "voices": len(loaded.voices),
                "sample_rate": loaded.sample_rate,
                "active_streams": limiter.active,
                "max_streams": limiter.limit,
            }
        )

    @app.get("/metrics")
    async def prometheus_metrics() -> Response:
        """Prometheus text exposition."""
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/voices", dependencies=authorized)
    async def voices() -> VoicesPublic:
        """The voices a request may name."""
        loaded = ready_engine()
        return VoicesPublic(
            voices=[Voice(id=v.name, language=v.language, gender=v.gender) for v in loaded.voices],
            default=loaded.default_voice,
            synthetic=loaded.loaded.files.synthetic,
        )

    @app.post(
        "/v1/synthesize", dependencies=authorized, openapi_extra=_body_schema(SynthesizeRequest)
    )
    async def synthesize(request: Request) -> Response:
        """Stream PCM s16le mono sentence by sentence (or JSON lines; see the package doc)."""
        loaded = ready_engine()
        body = await read_body(request, SynthesizeRequest)
        voice = admit(loaded, body.text, body.voice)
        tracker = StreamTracker(time.perf_counter())
        pieces = loaded.stream(body.text, voice=voice, speed=body.speed or 1.0)
        headers = {"X-Sample-Rate": str(loaded.sample_rate)}
        if NDJSON in request.headers.get("accept", ""):
            return SynthesisResponse(
                ndjson_body(pieces, loaded.sample_rate, tracker),
                on_close=closer("synthesize_ndjson", tracker),
                headers=headers,
                media_type=NDJSON,
            )
        encoder = encoder_for("pcm", loaded.sample_rate)
        return SynthesisResponse(
            audio_body(pieces, encoder, tracker),
            on_close=closer("synthesize", tracker),
            headers=headers,
            media_type=encoder.media_type,
        )

    @app.post(
        "/v1/audio/speech", dependencies=authorized, openapi_extra=_body_schema(SpeechRequest)
    )
    async def speech(request: Request) -> Response:
        """OpenAI-compatible speech: the audio in ``response_format``, streamed."""
        loaded = ready_engine()
        body = await read_body(request, SpeechRequest)
        encoder = encoder_for(body.response_format, loaded.sample_rate)
        try:
            voice = admit(loaded, body.input, body.voice)
        except ApiError:
            encoder.close()
            raise
        tracker = StreamTracker(time.perf_counter())
        pieces = loaded.stream(body.input, voice=voice, speed=body.speed)
        return SynthesisResponse(
            audio_body(pieces, encoder, tracker),
            on_close=closer("speech", tracker),
            headers={"X-Sample-Rate": str(loaded.sample_rate)},
            media_type=encoder.media_type,
        )

    return app


def _body_schema(model: type[BaseModel]) -> dict[str, Any]:
    # Bodies are read by hand (size cap, one error shape), so FastAPI cannot describe them.
    schema = {"application/json": {"schema": model.model_json_schema()}}
    return {"requestBody": {"required": True, "content": schema}}


def _install_error_handlers(app: FastAPI, metrics: TtsMetrics) -> None:
    """Every error leaves as ``{"error": {"code", "message"}}``."""

    @app.exception_handler(ApiError)
    async def api_error(_: Request, exc: ApiError) -> JSONResponse:
        metrics.rejected.labels(exc.code).inc()
        return JSONResponse(
            error_body(exc.code, exc.message), status_code=exc.status, headers=exc.headers
        )

    @app.exception_handler(AuthError)
    async def unauthorized(_: Request, exc: AuthError) -> JSONResponse:
        code = "token_expired" if isinstance(exc, TokenExpiredError) else "unauthorized"
        metrics.rejected.labels(code).inc()
        return JSONResponse(
            error_body(code, str(exc)), status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p not in ("query", "path", "body"))
        message = str(first["msg"])
        return JSONResponse(
            error_body("invalid_request", f"{where}: {message}" if where else message),
            status_code=422,
        )

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback; the client gets the documented shape, and nothing
        # of the error's text, which may hold internals.
        return JSONResponse(
            error_body("internal", "an unexpected error occurred; it has been logged"),
            status_code=500,
        )
