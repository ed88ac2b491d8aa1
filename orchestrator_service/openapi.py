"""What the OpenAPI document says about errors, and the docs page served without a CDN.

Every error leaves the API as ``{"error": {"code", "message"}}`` (:mod:`errors`); the schema
says so for every status a route can answer, with an example each, instead of FastAPI's
default ``{"detail": ...}`` for 422. The Swagger UI's script and styles come from the
``swagger-ui-bundle`` package and are served by the orchestrator itself, so ``/docs`` works
on a machine with no internet access.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

#: Where the Swagger UI's own files are served.
DOCS_ASSETS = "/docs/assets"


class ErrorDetail(BaseModel):
    """What went wrong: a stable machine-readable code and a sentence for people."""

    code: str = Field(examples=["not_found"])
    message: str = Field(examples=["room 'weekly-standup' is not registered"])


class ErrorResponse(BaseModel):
    """The body of every error response."""

    error: ErrorDetail


#: status -> (description, example code, example message)
_ERRORS: dict[int, tuple[str, str, str]] = {
    400: ("The request is malformed (e.g. a cursor not from this API).", "invalid_cursor",
          "cursor is not one this API issued"),
    401: ("No token, or a forged or expired one.", "unauthorized",
          "missing 'Authorization: Bearer <token>' header"),
    403: ("The token does not grant this room.", "forbidden",
          "this token does not grant room 'weekly-standup'"),
    404: ("No such room or track.", "not_found", "room 'weekly-standup' is not registered"),
    409: ("The room is not in a state that allows this now.", "conflict",
          "room 'weekly-standup' still has tracks being transcribed"),
    413: ("The body is larger than the endpoint accepts.", "too_large",
          "webhook body too large"),
    416: ("The Range header asks for no byte the recording has, or for several ranges.",
          "range_not_satisfiable", "bytes=5000000- is past the end of the recording"),
    422: ("A parameter or the body does not validate.", "invalid_request",
          "limit: Input should be less than or equal to 1000"),
    503: ("The transcript store cannot be reached; retry after Retry-After seconds.",
          "store_unavailable", "the transcript store is unavailable; retry later"),
}  # fmt: skip


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """``responses=`` entries documenting ``statuses`` with the error schema and an example."""
    out: dict[int | str, dict[str, Any]] = {}
    for status in statuses:
        description, code, message = _ERRORS[status]
        out[status] = {
            "model": ErrorResponse,
            "description": description,
            "content": {
                "application/json": {"example": {"error": {"code": code, "message": message}}}
            },
        }
    return out


def serve_local_docs(app: FastAPI) -> None:
    """Serve ``/docs`` with the Swagger UI files from the installed package (no CDN)."""
    import swagger_ui_bundle

    app.mount(
        DOCS_ASSETS,
        StaticFiles(directory=swagger_ui_bundle.swagger_ui_path),
        name="docs-assets",
    )

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url=app.openapi_url or "/openapi.json",
            title=f"{app.title} API",
            swagger_js_url=f"{DOCS_ASSETS}/swagger-ui-bundle.js",
            swagger_css_url=f"{DOCS_ASSETS}/swagger-ui.css",
            swagger_favicon_url=f"{DOCS_ASSETS}/favicon-32x32.png",
        )
