"""How errors leave the API: one JSON shape, the right status, nothing leaked.

Every error response is ``{"error": {"code": "...", "message": "..."}}``.

A store that cannot be reached (a failover, a network blip, a timeout) answers ``503`` with
``Retry-After``: the same request a moment later is expected to work (every write the API
makes is idempotent, so repeating one whose answer was lost is safe). The driver's own text
(hosts, index names, the topology) goes to the log, never into the answer.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from roomscribe.errors import (
    AuthError,
    ConflictError,
    InvalidCursorError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
    TokenExpiredError,
)

log = logging.getLogger(__name__)

#: Seconds a client should wait before repeating a request the store could not serve.
STORE_RETRY_AFTER_S = 2


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of an error response."""
    return {"error": {"code": code, "message": message}}


def install_error_handlers(app: FastAPI) -> None:
    """Translate core errors into HTTP responses at the edge."""

    @app.exception_handler(AuthError)
    async def unauthorized(_: Request, exc: AuthError) -> JSONResponse:
        code = "token_expired" if isinstance(exc, TokenExpiredError) else "unauthorized"
        return JSONResponse(
            error_body(code, str(exc)), status_code=401, headers={"WWW-Authenticate": "Bearer"}
        )

    @app.exception_handler(PermissionDeniedError)
    async def forbidden(_: Request, exc: PermissionDeniedError) -> JSONResponse:
        return JSONResponse(error_body("forbidden", str(exc)), status_code=403)

    @app.exception_handler(NotFoundError)
    async def not_found(_: Request, exc: NotFoundError) -> JSONResponse:
        return JSONResponse(error_body("not_found", str(exc)), status_code=404)

    @app.exception_handler(InvalidCursorError)
    async def bad_cursor(_: Request, exc: InvalidCursorError) -> JSONResponse:
        return JSONResponse(error_body("invalid_cursor", str(exc)), status_code=400)

    @app.exception_handler(ConflictError)
    async def conflict(_: Request, exc: ConflictError) -> JSONResponse:
        # A StoreError, but the store answered: it is the state that changed, not the store
        # that is away, so a 503 (retry the same thing) would be wrong.
        return JSONResponse(error_body("conflict", str(exc)), status_code=409)

    @app.exception_handler(StoreError)
    async def store_down(request: Request, exc: StoreError) -> JSONResponse:
        log.warning(
            "store unavailable: %s",
            exc,
            extra={"path": request.url.path, "error": type(exc.__cause__ or exc).__name__},
        )
        return JSONResponse(
            error_body("store_unavailable", "the transcript store is unavailable; retry later"),
            status_code=503,
            headers={"Retry-After": str(STORE_RETRY_AFTER_S)},
        )

    @app.exception_handler(RequestValidationError)
    async def invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        first = errors[0] if errors else {"loc": (), "msg": "invalid request"}
        where = ".".join(str(p) for p in first["loc"] if p not in ("query", "path", "body"))
        message = str(first["msg"])
        return JSONResponse(
            error_body("invalid_request", f"{where}: {message}" if where else message),
            status_code=422,
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # Starlette logs the traceback; the client gets the documented shape, and nothing
        # of the error's text, which may hold internals.
        return JSONResponse(
            error_body("internal", "an unexpected error occurred; it has been logged"),
            status_code=500,
        )

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )
