"""The clients of :mod:`bench.stt_load`, run in a child process with their own event loop.

``python -m bench.stt_load --worker CONFIG`` runs :func:`worker_main`: it connects the
step's clients (Roomscribe's protocol or vosk-server's), says ``STARTED``, streams, and prints
one JSON summary line for the service process to read.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.live_audio import RATE, WARM_S
from bench.live_meters import percentile, process_cpu_s
from roomscribe.protocol import encode_audio_frame

STARTED_LINE = "STARTED"
PEER_EOF = '{"eof" : 1}'  # asr_server.py compares the text exactly


@dataclass
class ClientResult:
    partial_ms: list[float] = field(default_factory=list)
    partial_steady_ms: list[float] = field(default_factory=list)  # past the first WARM_S
    final_ms: list[float] = field(default_factory=list)
    end_final_ms: float | None = None
    end_close_ms: float | None = None
    send_lag_ms: list[float] = field(default_factory=list)
    partials: int = 0
    finals: int = 0
    replies: int = 0
    dropped_ms: int = 0
    received_ms: int = 0
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None
    first_send: float = 0.0
    closed_at: float = 0.0


class Refused(Exception):
    """The server answered ``start`` with an error (all slots taken, typically)."""


async def open_client(
    url: str, index: int, tag: str, compression: str, protocol: str
) -> ClientConnection:
    """Connect one client; Roomscribe's get ``start`` and must see ``ready``."""
    if protocol == "vosk-server":
        return await connect(url + "/", max_size=2**22, compression=None)
    ws = await connect(
        url.replace("http://", "ws://") + "/v1/stream",
        max_size=2**22,
        compression="deflate" if compression == "deflate" else None,
    )
    await ws.send(
        json.dumps(
            {
                "type": "start",
                "room": f"bench-{tag}",
                "participant": f"p{index:03d}",
                "track_sid": f"TR_{tag}_{index:03d}",
                "language": "en",
                "sample_rate": RATE,
                "track_started_at": time.time(),
            }
        )
    )
    ready = json.loads(await ws.recv())
    if ready.get("type") != "ready":
        await ws.close()
        raise Refused(f"{ready.get('code')}: {ready.get('message')}")
    return ws


class Sender:
    """Sends one stream's frames at their deadlines (or flat out), then the end message."""

    def __init__(
        self, pcm: npt.NDArray[np.int16], start_at: float, paced: bool, frame_ms: int
    ) -> None:
        self.data = pcm.tobytes()
        self.frame_samples = RATE * frame_ms // 1000
        self.frame_s = frame_ms / 1000
        self.frames = math.ceil(len(pcm) / self.frame_samples)
        self.sent_at = np.zeros(self.frames, dtype=np.float64)
        self.end_sent: list[float] = []
        self.start_at = start_at
        self.paced = paced

    async def run(
        self,
        ws: ClientConnection,
        result: ClientResult,
        frame: Callable[[int, bytes], bytes],
        end: str,
    ) -> None:
        delay = self.start_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        result.first_send = time.monotonic()
        size = self.frame_samples * 2
        for k in range(self.frames):
            if self.paced:
                # Absolute deadline: frame k's audio is complete at start + (k + 1) frames.
                # Sleeping to it (not for a fixed interval) keeps lateness from accumulating.
                deadline = self.start_at + (k + 1) * self.frame_s
                delay = deadline - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                result.send_lag_ms.append((time.monotonic() - deadline) * 1000)
            self.sent_at[k] = time.monotonic()
            await ws.send(frame(k * self.frame_samples, self.data[k * size : (k + 1) * size]))
        self.end_sent.append(time.monotonic())
        await ws.send(end)

    def heard_until(self, audio_end_ms: int) -> float:
        """When the frame holding the last sample a result had heard was sent."""
        k = math.ceil(audio_end_ms * RATE / 1000 / self.frame_samples) - 1
        return float(self.sent_at[min(self.frames - 1, max(0, k))])


async def _finish(ws: ClientConnection, sender: asyncio.Task[None], result: ClientResult) -> None:
    result.closed_at = time.monotonic()
    result.close_code = ws.close_code
    if not sender.done():
        sender.cancel()
        result.errors.append("connection closed before all audio was sent")
    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
        await sender


async def stream_client(
    ws: ClientConnection, pcm: npt.NDArray[np.int16], start_at: float, paced: bool, frame_ms: int
) -> ClientResult:
    """Roomscribe: send ``pcm`` in frames (paced or flat out), then ``end``; collect results."""
    result = ClientResult()
    out = Sender(pcm, start_at, paced, frame_ms)
    sender = asyncio.create_task(out.run(ws, result, encode_audio_frame, '{"type": "end"}'))
    try:
        async for raw in ws:
            now = time.monotonic()
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind == "partial":
                result.partials += 1
                if paced and msg.get("audio_end_ms") is not None:
                    result.partial_ms.append((now - out.heard_until(msg["audio_end_ms"])) * 1000)
                    if msg["audio_end_ms"] >= WARM_S * 1000:
                        result.partial_steady_ms.append(result.partial_ms[-1])
            elif kind == "final":
                result.finals += 1
                if out.end_sent:
                    # After `end`: the final it forced (the last utterance).
                    result.end_final_ms = (now - out.end_sent[0]) * 1000
                elif paced and msg.get("audio_end_ms") is not None:
                    result.final_ms.append((now - out.heard_until(msg["audio_end_ms"])) * 1000)
            elif kind == "stats":
                result.dropped_ms = int(msg["dropped_ms"])
                result.received_ms = int(msg["received_ms"])
            elif kind == "error":
                result.errors.append(f"{msg.get('code')}: {msg.get('message')}")
    except ConnectionClosed:
        pass
    await _finish(ws, sender, result)
    if out.end_sent:
        result.end_close_ms = (result.closed_at - out.end_sent[0]) * 1000
    return result


def _raw_frame(offset: int, pcm: bytes) -> bytes:
    return pcm  # the peer takes bare PCM; it counts samples itself


async def stream_peer_client(
    ws: ClientConnection, pcm: npt.NDArray[np.int16], start_at: float, paced: bool, frame_ms: int
) -> ClientResult:
    """vosk-server: the same frames as raw PCM, then ``{"eof" : 1}``; one reply per message.

    Reply k answers frame k (the server reads a message, recognizes it, replies, and only
    then reads the next), so its latency is its arrival minus frame k's send time. A partial
    counts when its text changed, as Roomscribe only sends changed partials.
    """
    result = ClientResult()
    out = Sender(pcm, start_at, paced, frame_ms)
    sender = asyncio.create_task(out.run(ws, result, _raw_frame, PEER_EOF))
    last = ""
    try:
        async for raw in ws:
            now = time.monotonic()
            k = result.replies
            result.replies += 1
            msg = json.loads(raw)
            if k >= out.frames:  # the reply to eof: the final it forced
                result.finals += 1
                if out.end_sent:
                    result.end_final_ms = (now - out.end_sent[0]) * 1000
                continue
            if "partial" in msg:
                text = str(msg["partial"])
                if text and text != last:
                    result.partials += 1
                    if paced:
                        result.partial_ms.append((now - float(out.sent_at[k])) * 1000)
                        if k * frame_ms >= WARM_S * 1000:
                            result.partial_steady_ms.append(result.partial_ms[-1])
                last = text
            elif "text" in msg:
                last = ""
                if msg["text"]:
                    result.finals += 1
                    if paced:
                        result.final_ms.append((now - float(out.sent_at[k])) * 1000)
    except ConnectionClosed:
        pass
    await _finish(ws, sender, result)
    if out.end_sent:
        result.end_close_ms = (result.closed_at - out.end_sent[0]) * 1000
    # Frames never answered were never recognized: the peer's equivalent of dropped audio.
    result.dropped_ms = max(0, out.frames - result.replies) * frame_ms
    result.received_ms = min(result.replies, out.frames) * frame_ms
    return result


def summarize_clients(
    results: list[ClientResult], audio_s: float, refused: list[str]
) -> dict[str, Any]:
    """One step's client-side figures, pooled over its clients."""

    def pooled(name: str) -> list[float]:
        return [v for r in results for v in getattr(r, name)]

    partial = pooled("partial_ms")
    final = pooled("final_ms")
    lag = pooled("send_lag_ms")
    end_final = [r.end_final_ms for r in results if r.end_final_ms is not None]
    end_close = [r.end_close_ms for r in results if r.end_close_ms is not None]
    first = min((r.first_send for r in results), default=0.0)
    last = max((r.closed_at for r in results), default=0.0)
    return {
        "clients": len(results),
        "refused": len(refused),
        "refused_reasons": sorted(set(refused))[:3],
        "audio_s": audio_s * len(results),
        "stream_wall_s": last - first,
        "partials": sum(r.partials for r in results),
        "finals": sum(r.finals for r in results),
        "partial_p50_ms": percentile(partial, 0.5),
        "partial_p95_ms": percentile(partial, 0.95),
        "partial_steady_p95_ms": percentile(pooled("partial_steady_ms"), 0.95),
        "partial_max_ms": max(partial) if partial else None,
        "final_p50_ms": percentile(final, 0.5),
        "final_p95_ms": percentile(final, 0.95),
        "end_final_p50_ms": percentile(end_final, 0.5),
        "end_final_p95_ms": percentile(end_final, 0.95),
        "end_finals": len(end_final),
        "end_close_p95_ms": percentile(end_close, 0.95),
        "send_lag_p95_ms": percentile(lag, 0.95),
        "send_lag_max_ms": max(lag) if lag else None,
        "dropped_ms": sum(r.dropped_ms for r in results),
        "received_ms": sum(r.received_ms for r in results),
        "errors": [e for r in results for e in r.errors],
        "abnormal_closes": sum(1 for r in results if r.close_code != 1000),
    }


async def worker_main(cfg: dict[str, Any]) -> None:
    """Child process: connect N clients, say STARTED, stream, print one JSON summary line."""
    audio = np.load(cfg["audio"], mmap_mode="r")[: cfg["clients"]]
    n = len(audio)
    protocol = cfg["protocol"]
    opened = await asyncio.gather(
        *(open_client(cfg["url"], i, cfg["tag"], cfg["compression"], protocol) for i in range(n)),
        return_exceptions=True,
    )
    refused = [str(o) for o in opened if isinstance(o, Refused)]
    if failed := [o for o in opened if isinstance(o, BaseException) and not isinstance(o, Refused)]:
        raise failed[0]
    sockets = [o for o in opened if isinstance(o, ClientConnection)]
    print(STARTED_LINE, flush=True)
    cpu0, wall0 = process_cpu_s(), time.monotonic()
    # A short lead so every client is scheduled before its first deadline; start phases spread
    # over one frame period, as independent tracks are.
    start_at = time.monotonic() + 0.2
    stream = stream_peer_client if protocol == "vosk-server" else stream_client
    results = await asyncio.gather(
        *(
            stream(
                ws,
                np.asarray(audio[i]),
                start_at + i * cfg["frame_ms"] / 1000 / n,
                cfg["paced"],
                cfg["frame_ms"],
            )
            for i, ws in enumerate(sockets)
        )
    )
    summary = summarize_clients(list(results), audio.shape[1] / RATE, refused)
    summary["client_cpu_s"] = process_cpu_s() - cpu0
    summary["client_wall_s"] = time.monotonic() - wall0
    print(json.dumps(summary), flush=True)
