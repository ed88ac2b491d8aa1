"""Serving the emulator's API with uvicorn inside the caller's event loop."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import uvicorn
from starlette.applications import Starlette


@contextlib.asynccontextmanager
async def running_api(app: Starlette, host: str = "127.0.0.1", port: int = 0) -> AsyncIterator[str]:
    """Serve ``app`` in the current loop while the block runs; yield its base URL.

    Args:
        app: The emulator's Starlette app.
        host: The address to listen on.
        port: The port; 0 picks a free one.

    Yields:
        The base URL (``http://127.0.0.1:PORT``).
    """
    server = uvicorn.Server(_config(app, host, port))
    task = asyncio.create_task(server.serve())
    try:
        while not server.started:
            if task.done():
                task.result()  # startup failed: raise its error here
                raise RuntimeError("the emulator's server stopped during startup")
            await asyncio.sleep(0.01)
        bound = server.servers[0].sockets[0].getsockname()[1]
        yield f"http://{_url_host(host)}:{bound}"
    finally:
        server.should_exit = True
        await task


async def serve_api(app: Starlette, host: str, port: int) -> None:
    """Serve ``app`` in the current loop until SIGINT/SIGTERM."""
    await uvicorn.Server(_config(app, host, port)).serve()


def _config(app: Starlette, host: str, port: int) -> uvicorn.Config:
    # No WebSockets here; "none" keeps uvicorn from importing a WebSocket library.
    return uvicorn.Config(app, host=host, port=port, ws="none", lifespan="off", log_level="warning")


def _url_host(host: str) -> str:
    if host in ("0.0.0.0", "::", ""):
        return "127.0.0.1"  # listening everywhere: the loopback address reaches it
    return f"[{host}]" if ":" in host else host
