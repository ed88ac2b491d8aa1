"""Serving an app with uvicorn, with a drain step before connections are cut.

On shutdown uvicorn closes every open WebSocket with 1012 at once and only then runs the
app's lifespan shutdown, too late for a stream to deliver its last results. Apps put
coroutine functions in ``app.state.before_shutdown``; :class:`DrainingServer` awaits them
first, while the connections are still open.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
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


def _config(app: Any, **options: Any) -> uvicorn.Config:
    # permessage-deflate is off: PCM barely compresses (a 20 ms speech frame shrinks to ~90%)
    # while deflating and inflating every frame cost the STT service and its clients a
    # measured 0.2 of a core at 30 streams (docs/benchmarks.md).
    return uvicorn.Config(app, ws="websockets-sansio", ws_per_message_deflate=False, **options)


def serve(app: Any, *, host: str, port: int) -> None:
    """Run ``app`` until SIGINT/SIGTERM, draining it before connections close."""
    DrainingServer(_config(app, host=host, port=port, proxy_headers=True), app).run()


@asynccontextmanager
async def running(app: Any, *, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` in the current event loop and yield its base URL (``http://host:port``).

    Port 0 picks a free port. Used by tests, benchmarks and the demo, which run several
    services in one process; lifespan and drain hooks run as in production.
    """
    config = _config(app, host=host, port=port, log_level="warning", lifespan="on")
    server = DrainingServer(config, app)
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error here
                raise RuntimeError("server stopped during startup")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()
        yield f"http://{bound[0]}:{bound[1]}"
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 30)
