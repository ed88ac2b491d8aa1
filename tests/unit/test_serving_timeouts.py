"""The header timeout of ``roomscribe.serving``, over real sockets to a real uvicorn.

Timeouts are short (a fraction of a second) and the bounds on what must happen generous
(seconds), so a loaded machine makes the tests slower, not flaky.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route, WebSocketRoute
from starlette.websockets import WebSocket
from websockets.asyncio.client import connect

from roomscribe.serving import header_timeout_protocol, running
from roomscribe.settings import DEFAULT_HEADER_TIMEOUT_S, CoreSettings

pytestmark = pytest.mark.unit

SHORT_S = 0.3
#: The most any closing or answer may take: generous, never a performance claim.
BOUND_S = 5.0
HEAD = b"GET /ping HTTP/1.1\r\nHost: test\r\n\r\n"

Stream = tuple[asyncio.StreamReader, asyncio.StreamWriter]


async def ping(request: Request) -> Response:
    return JSONResponse({"ok": True})


async def upload(request: Request) -> Response:
    return JSONResponse({"received": len(await request.body())})


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for i in range(8):  # ~0.8 s, well past SHORT_S
            await asyncio.sleep(0.1)
            yield f"chunk {i}\n".encode()

    return StreamingResponse(chunks(), media_type="text/plain")


async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    async for text in websocket.iter_text():
        await websocket.send_text(text)


def make_app() -> Starlette:
    return Starlette(
        routes=[
            Route("/ping", ping),
            Route("/upload", upload, methods=["POST"]),
            Route("/stream", stream),
            WebSocketRoute("/ws", echo),
        ]
    )


@asynccontextmanager
async def server(header_timeout_s: float = SHORT_S) -> AsyncIterator[str]:
    async with running(make_app(), header_timeout_s=header_timeout_s) as url:
        yield url


@asynccontextmanager
async def raw(url: str) -> AsyncIterator[Stream]:
    parts = urlsplit(url)
    assert parts.hostname and parts.port
    reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
    try:
        yield reader, writer
    finally:
        writer.close()
        await writer.wait_closed()


async def send(writer: asyncio.StreamWriter, data: bytes) -> None:
    writer.write(data)
    await writer.drain()


async def read_response(reader: asyncio.StreamReader) -> tuple[int, dict[str, str], bytes]:
    """One response with a Content-Length body: status, headers (lower-cased), body."""
    async with asyncio.timeout(BOUND_S):
        head = await reader.readuntil(b"\r\n\r\n")
        status_line, *lines = head.decode("latin-1").split("\r\n")[:-2]
        headers = dict(line.split(": ", 1) for line in lines)
        headers = {name.lower(): value for name, value in headers.items()}
        body = await reader.readexactly(int(headers["content-length"]))
    return int(status_line.split()[1]), headers, body


async def read_to_close(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection (at most BOUND_S)."""
    async with asyncio.timeout(BOUND_S):
        return await reader.read()


def assert_408(data: bytes) -> None:
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 Request Timeout\r\n")
    assert b"connection: close" in head.lower()
    assert json.loads(body)["error"]["code"] == "request_timeout"


async def test_partial_request_line_is_answered_408_and_closed() -> None:
    async with server() as url, raw(url) as (reader, writer):
        await send(writer, b"GET /pi")
        assert_408(await read_to_close(reader))


async def test_connection_sending_nothing_is_closed_without_an_answer() -> None:
    async with server() as url, raw(url) as (reader, _):
        assert await read_to_close(reader) == b""


async def test_trickled_head_is_cut_although_every_byte_comes_in_time() -> None:
    # Each gap is a third of the timeout: a deadline restarted by each byte would never fire.
    async with server() as url, raw(url) as (reader, writer):

        async def trickle() -> None:
            for byte in b"GET /ping HTTP/1.1\r\nHost: test\r\n" + b"X" * 200:
                await send(writer, bytes([byte]))
                await asyncio.sleep(SHORT_S / 3)

        dribbler = asyncio.create_task(trickle())
        try:
            assert_408(await read_to_close(reader))
        finally:
            dribbler.cancel()
            with pytest.raises((asyncio.CancelledError, ConnectionError)):
                await dribbler


async def test_slow_complete_head_within_the_timeout_is_served() -> None:
    async with server(header_timeout_s=BOUND_S) as url, raw(url) as (reader, writer):
        for i in range(0, len(HEAD), 4):  # ~0.5 s in all, past SHORT_S but within the timeout
            await send(writer, HEAD[i : i + 4])
            await asyncio.sleep(0.05)
        status, _, body = await read_response(reader)
    assert status == 200
    assert json.loads(body) == {"ok": True}


async def test_each_request_on_a_kept_alive_connection_gets_the_timeout() -> None:
    async with server() as url, raw(url) as (reader, writer):
        await send(writer, HEAD)
        status, headers, _ = await read_response(reader)
        assert status == 200
        assert headers.get("connection") != "close"

        # Idle past the header timeout: keep-alive (uvicorn's 5 s) governs an idle connection.
        await asyncio.sleep(SHORT_S * 2)
        await send(writer, HEAD)
        status, _, _ = await read_response(reader)
        assert status == 200

        await send(writer, b"GET /ping HTTP/1.1\r\nHo")
        assert_408(await read_to_close(reader))


async def test_partial_pipelined_head_is_timed_once_the_response_completes() -> None:
    async with server() as url, raw(url) as (reader, writer):
        await send(writer, HEAD + b"GET /ping HTTP/1.1\r\nHo")
        status, _, _ = await read_response(reader)
        assert status == 200
        assert_408(await read_to_close(reader))


async def test_websocket_outlives_the_header_timeout() -> None:
    async with server() as url, connect(url.replace("http", "ws", 1) + "/ws") as ws:
        await asyncio.sleep(SHORT_S * 3)
        await ws.send("still here")
        async with asyncio.timeout(BOUND_S):
            assert await ws.recv() == "still here"


async def test_streaming_response_outlives_the_header_timeout() -> None:
    async with server() as url, httpx.AsyncClient(base_url=url, timeout=BOUND_S) as client:
        response = await client.get("/stream")
    assert response.status_code == 200
    assert response.text.splitlines() == [f"chunk {i}" for i in range(8)]


async def test_slow_upload_after_its_head_is_not_cut() -> None:
    body = b"x" * 10
    head = b"POST /upload HTTP/1.1\r\nHost: test\r\nContent-Length: %d\r\n\r\n" % len(body)
    async with server() as url, raw(url) as (reader, writer):
        await send(writer, head)
        for byte in body:  # ~1 s of body, past SHORT_S
            await asyncio.sleep(0.1)
            await send(writer, bytes([byte]))
        status, _, answer = await read_response(reader)
    assert status == 200
    assert json.loads(answer) == {"received": len(body)}


async def test_many_slowloris_connections_do_not_block_a_normal_request() -> None:
    # A timeout long enough that the slow clients are still connected while the request runs.
    async with server(header_timeout_s=1.0) as url:
        parts = urlsplit(url)
        assert parts.hostname and parts.port
        slow = [await asyncio.open_connection(parts.hostname, parts.port) for _ in range(50)]
        try:
            for _, writer in slow:
                await send(writer, b"GET /ping HTTP/1.1\r\nX-Slow: ")
            async with httpx.AsyncClient(base_url=url, timeout=BOUND_S) as client:
                response = await client.get("/ping")
            assert response.status_code == 200
            for data in await asyncio.gather(*(read_to_close(reader) for reader, _ in slow)):
                assert_408(data)
        finally:
            for _, writer in slow:
                writer.close()


def test_header_timeout_must_be_positive() -> None:
    for seconds in (0.0, -1.0):
        with pytest.raises(ValueError, match="positive"):
            header_timeout_protocol(seconds)


def test_header_timeout_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert CoreSettings(_env_file=None).header_timeout_s == DEFAULT_HEADER_TIMEOUT_S == 10.0
    monkeypatch.setenv("ROOMSCRIBE_HEADER_TIMEOUT_S", "2.5")
    assert CoreSettings(_env_file=None).header_timeout_s == 2.5
