"""How errors leave the API: one JSON shape, the right status, nothing leaked.

Every error response is ``{"error": {"code": "...", "message": "..."}}``.
"""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from roomscribe.errors import (
    AuthError,
    InvalidCursorError,
    NotFoundError,
    PermissionDeniedError,
    StoreError,
    TokenExpiredError,
)


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

    @app.exception_handler(StoreError)
    async def store_down(_: Request, exc: StoreError) -> JSONResponse:
        return JSONResponse(
            error_body("store_unavailable", "the transcript store is unavailable"),
            status_code=503,
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
