"""Room names with ``/`` or ``%`` in them, routed as one path segment.

LiveKit room names may hold any character, and a client sends such a name percent-encoded
(``/v1/rooms/team%2Fdaily/transcript``). The ASGI server decodes the path before routing, so
``%2F`` would become a ``/`` and the name would split into two segments: the room could
never be read. :class:`EncodedSegmentsMiddleware` rebuilds the path of the room routes from
the raw path, segment by segment, keeping only ``%`` and ``/`` inside a segment encoded;
:class:`EncodedSegmentsRoute` decodes its path parameters once more after matching. A name
without those two characters routes exactly as before.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, unquote

from fastapi.routing import APIRoute
from starlette.routing import Match
from starlette.types import ASGIApp, Receive, Scope, Send

#: Path prefixes whose segments carry room names.
ROOM_PREFIXES = ("/v1/rooms/", "/v1/internal/rooms/")
#: Everything but ``%`` and ``/`` stays as decoded (``quote``'s safe set, printable ASCII).
_SAFE = "".join(chr(c) for c in range(0x21, 0x7F) if chr(c) not in "%/")
#: Set on a scope whose path the middleware rebuilt: only then are parameters decoded again.
_MARK = "roomscribe.encoded_segments"


class EncodedSegmentsMiddleware:
    """Keep ``%2F`` and ``%25`` encoded in room paths, so that a segment stays one segment."""

    def __init__(self, app: ASGIApp) -> None:
        """Wrap ``app``."""
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """Rewrite ``scope["path"]`` of a room route from its raw path, then pass it on."""
        if scope["type"] in ("http", "websocket"):
            path: str = scope["path"]
            raw: bytes | None = scope.get("raw_path")
            if raw is not None and path.startswith(ROOM_PREFIXES):
                raw_path = raw.split(b"?", 1)[0].decode("latin-1")
                segments = [quote(unquote(s), safe=_SAFE) for s in raw_path.split("/")]
                scope = {**scope, "path": "/".join(segments), _MARK: True}
        await self.app(scope, receive, send)


class EncodedSegmentsRoute(APIRoute):
    """A route whose path parameters are decoded after matching (see the module docstring)."""

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        """Match as usual, then decode what the middleware kept encoded."""
        match, child = super().matches(scope)
        params: dict[str, Any] | None = child.get("path_params")
        if params and scope.get(_MARK):
            child["path_params"] = {
                k: unquote(v) if isinstance(v, str) else v for k, v in params.items()
            }
        return match, child
