"""Serving an app with uvicorn: a drain step before connections are cut, and a header timeout.

On shutdown uvicorn closes every open WebSocket with 1012 at once and only then runs the
app's lifespan shutdown, too late for a stream to deliver its last results. Apps put
coroutine functions in ``app.state.before_shutdown``; :class:`DrainingServer` awaits them
first, while the connections are still open.

uvicorn has no timeout on the request head: ``timeout_keep_alive`` runs only between requests,
and is cancelled by the first byte of the next one. A client that connects and sends nothing,
or sends its headers a byte at a time (slowloris), holds a connection, and its file
descriptor, for ever. :class:`HeaderTimeoutProtocol` gives every request head (request line
and headers) ``header_timeout_s`` from the connection being made, or from the first byte of a
later request on a kept-alive connection. A connection with part of a head by then is
answered ``408`` and closed, one that sent nothing just closed. Once a head has arrived
nothing is timed here: request bodies, long streaming responses and WebSockets run as long
as they need. ``serve`` passes the protocol class to uvicorn, so its "auto" choice cannot
pick httptools, which has no such timeout either.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, ClassVar

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from roomscribe.settings import DEFAULT_HEADER_TIMEOUT_S

ShutdownHook = Callable[[], Awaitable[None]]

log = logging.getLogger("roomscribe.serving")


def _app_name(app: Any) -> str:
    return str(getattr(app, "title", type(app).__name__))


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

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        """Start as uvicorn does, then say where the service listens (once it does)."""
        await super().startup(sockets)
        if self.started:
            config = self.config
            log.info(
                "ready",
                extra={
                    "address": f"http://{config.host}:{config.port}",
                    "app": _app_name(self._app),
                },
            )

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """Drain the app, then shut down as uvicorn does."""
        for hook in getattr(self._app.state, "before_shutdown", []):
            await hook()
        await super().shutdown(sockets)
        log.info("stopped", extra={"app": _app_name(self._app)})


class HeaderTimeoutProtocol(H11Protocol):
    """uvicorn's h11 protocol, closing connections whose request head is late.

    The timer is armed while the client owes a request head (h11's client state is ``IDLE``):
    on connection, and on the first byte of each later request (or when a response completes
    with part of the next head already buffered). It is cancelled once h11 parses the head.
    It runs from the head's first byte, not the last one, so trickling bytes cannot extend it.
    An idle kept-alive connection is left to uvicorn's ``timeout_keep_alive``.

    ``header_timeout_s`` is set per server by :func:`header_timeout_protocol`, since uvicorn
    builds each connection's protocol itself, from the config alone.
    """

    header_timeout_s: ClassVar[float] = DEFAULT_HEADER_TIMEOUT_S

    _header_timer: asyncio.TimerHandle | None = None

    def connection_made(  # type: ignore[override]  # uvicorn narrows it to asyncio.Transport
        self, transport: asyncio.Transport
    ) -> None:
        """Start the clock on the first request head."""
        super().connection_made(transport)
        self._arm_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        """Drop the timer with the connection."""
        self._cancel_header_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        """Feed h11, then time the head if it is still incomplete."""
        super().data_received(data)
        if self._awaiting_head():
            # A no-op when armed already: the deadline counts from the head's first byte.
            self._arm_header_timer()
        else:
            self._cancel_header_timer()

    def on_response_complete(self) -> None:
        """Time the next head if part of it arrived while the response was being sent."""
        super().on_response_complete()
        if not self._awaiting_head():
            self._cancel_header_timer()
        elif self.conn.trailing_data[0]:
            # Pipelined bytes were held back by h11 until now; nothing else arms the timer for
            # them, and the keep-alive timer uvicorn has just armed may be longer.
            self._arm_header_timer()

    def _awaiting_head(self) -> bool:
        # h11 leaves the client's IDLE state when it parses a Request (or on a protocol error);
        # after a WebSocket upgrade the transport belongs to another protocol.
        return (
            self.conn.their_state is h11.IDLE
            and not self.transport.is_closing()
            and self.transport.get_protocol() is self
        )

    def _arm_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(
                self.header_timeout_s, self._header_timeout_handler
            )

    def _cancel_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _header_timeout_handler(self) -> None:
        self._header_timer = None
        if not self._awaiting_head():
            return
        if not self.conn.trailing_data[0]:
            # Nothing of a request came (a browser's preconnect, say): close without an answer
            # no one asked for, as uvicorn closes an idle kept-alive connection.
            self.timeout_keep_alive_handler()
            return
        # Not logged above debug: a slowloris client would choose how much the log grows.
        self.logger.debug("Request head not received within %s s; closing", self.header_timeout_s)
        self._send_408()

    def _send_408(self) -> None:
        message = f"The request head did not arrive within {self.header_timeout_s:g} s."
        body = json.dumps({"error": {"code": "request_timeout", "message": message}}).encode()
        headers = [
            *self.server_state.default_headers,
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
            (b"connection", b"close"),
        ]
        try:
            # h11 lets a server answer from IDLE, before any Request, for this very case.
            output = self.conn.send(
                h11.Response(status_code=408, headers=headers, reason=b"Request Timeout")
            )
            output += self.conn.send(h11.Data(data=body))
            output += self.conn.send(h11.EndOfMessage())
        except h11.LocalProtocolError:
            output = b""  # h11 refused the answer; closing is what matters
        self.transport.write(output)
        self.transport.close()


def header_timeout_protocol(seconds: float) -> type[HeaderTimeoutProtocol]:
    """A :class:`HeaderTimeoutProtocol` giving each request head ``seconds`` to arrive.

    Raises:
        ValueError: If ``seconds`` is not positive.
    """
    if not seconds > 0:
        raise ValueError(f"the header timeout must be positive, not {seconds!r}")

    class ConfiguredHeaderTimeoutProtocol(HeaderTimeoutProtocol):
        header_timeout_s = seconds

    return ConfiguredHeaderTimeoutProtocol


def _config(app: Any, *, header_timeout_s: float, **options: Any) -> uvicorn.Config:
    # permessage-deflate is off: PCM barely compresses (a 20 ms speech frame shrinks to ~90%)
    # while deflating and inflating every frame cost the STT service and its clients a
    # measured 0.2 of a core at 30 streams (docs/benchmarks.md).
    # The HTTP protocol is given as a class, so uvicorn's "auto" cannot pick httptools, which
    # has no header timeout either; h11's pure-Python parsing costs little here, where the
    # heavy traffic is WebSocket frames (handled by websockets after the upgrade) and not
    # HTTP requests.
    return uvicorn.Config(
        app,
        http=header_timeout_protocol(header_timeout_s),
        ws="websockets-sansio",
        ws_per_message_deflate=False,
        **options,
    )


def serve(
    app: Any, *, host: str, port: int, header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S
) -> None:
    """Run ``app`` until SIGINT/SIGTERM, draining it before connections close.

    Args:
        app: The ASGI app.
        host: The address to listen on.
        port: The port to listen on.
        header_timeout_s: Seconds a client has to deliver each request head (the settings'
            ``header_timeout_s``, ``ROOMSCRIBE_HEADER_TIMEOUT_S``).
    """
    # log_config=None: uvicorn's records go through the service's own handlers (one format,
    # text or JSON) instead of a second, differently formatted stream.
    config = _config(
        app,
        header_timeout_s=header_timeout_s,
        host=host,
        port=port,
        proxy_headers=True,
        log_config=None,
    )
    # uvicorn re-raises the signal that stopped it once it has shut down cleanly: a SIGINT
    # would end in a KeyboardInterrupt traceback after an orderly stop.
    with contextlib.suppress(KeyboardInterrupt):
        DrainingServer(config, app).run()


@asynccontextmanager
async def running(
    app: Any,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    header_timeout_s: float = DEFAULT_HEADER_TIMEOUT_S,
) -> AsyncIterator[str]:
    """Serve ``app`` in the current event loop and yield its base URL (``http://host:port``).

    Port 0 picks a free port. Used by tests, benchmarks and the demo, which run several
    services in one process; lifespan, drain hooks and the header timeout run as in
    production.
    """
    config = _config(
        app,
        header_timeout_s=header_timeout_s,
        host=host,
        port=port,
        log_level="warning",
        lifespan="on",
    )
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
