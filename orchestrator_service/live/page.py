"""The web app: static files from ``orchestrator_service/web``, served at ``/``.

Plain ES modules and CSS, committed as they are: nothing to build, nothing fetched from
another origin. Only the files present when the app starts are served, by name, so no path
from a request ever reaches the file system.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse

from roomscribe.errors import NotFoundError

#: Where the page's files are (package data).
WEB_DIR = Path(__file__).resolve().parent.parent / "web"

_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".svg": "image/svg+xml",
}

# The page shows names and transcripts from the store; with scripts limited to its own
# files, text that slipped into the DOM as markup still could not run. Tokens travel in
# media and event URLs, so no Referer leaves the page.
_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "media-src 'self' http: https: blob:; connect-src 'self'; object-src 'none'; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    ),
    "Referrer-Policy": "no-referrer",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-cache",
}


def page_router(web_dir: Path = WEB_DIR) -> APIRouter:
    """Routes serving the web app's files from ``web_dir``."""
    files = {
        p.name: p
        for p in (web_dir.iterdir() if web_dir.is_dir() else ())
        if p.is_file() and p.suffix in _TYPES
    }
    router = APIRouter(include_in_schema=False)

    def serve(name: str) -> FileResponse:
        path = files.get(name)
        if path is None:
            raise NotFoundError(f"no file {name[:80]!r} in the web app")
        return FileResponse(path, media_type=_TYPES[path.suffix], headers=_HEADERS)

    @router.get("/")
    async def index() -> FileResponse:
        return serve("index.html")

    @router.get("/web/{name}")
    async def asset(name: str) -> FileResponse:
        return serve(name)

    return router
