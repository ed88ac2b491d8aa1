"""Serving an app with uvicorn, with a drain step before connections are cut.

On shutdown uvicorn closes every open WebSocket with 1012 at once and only then runs the
app's lifespan shutdown, too late for a stream to deliver its last results. Apps put
coroutine functions in ``app.state.before_shutdown``; :class:`DrainingServer` awaits them
first, while the connections are still open.
"""

from __future__ import annotations

import socket
from collections.abc import Awaitable, Callable
from typing import Any

import uvicorn

ShutdownHook = Callable[[], Awaitable[None]]


def add_shutdown_hook(app: Any, hook: ShutdownHook) -> None:
    """Register ``hook`` to run before the server cuts connections."""
    hooks: list[ShutdownHook] = getattr(app.state, "before_shutdown", [])
    hooks.append(hook)
    app.state.before_shutdown = hooks


class DrainingServer(uvicorn.Server):
    """A uvicorn server that runs the app's ``before_shutdown`` hooks first."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        """Serve ``app`` (the same object the config holds) with ``config``."""
        super().__init__(config)
        self._app = app

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain the app, then shut down as uvicorn does."""
        for hook in getattr(self._app.state, "before_shutdown", []):
            await hook()
        await super().shutdown(sockets)


def serve(app: Any, *, host: str, port: int) -> None:
    """Run ``app`` until SIGINT/SIGTERM, draining it before connections close."""
    config = uvicorn.Config(app, host=host, port=port, ws="websockets-sansio", proxy_headers=True)
    DrainingServer(config, app).run()
