"""Webhook handling benchmark: how long LiveKit waits, and a burst of 1,000 webhooks.

The orchestrator runs in this process on a real server with an SQLite store, LiveKit is the
devkit emulator (egress calls go to it over Twirp), and webhooks are signed exactly as
LiveKit signs them. Figures:

- sequential: one webhook at a time (a mix of ``participant_joined`` and audio
  ``track_published``, each of which queues an egress start), round trip as LiveKit sees it.
  Reference, same run, same requests: a bare endpoint that only verifies the signature with
  ``livekit.api.WebhookReceiver`` (the floor any receiver pays).
- burst: 1,000 more webhooks fired with 100 in flight at once (LiveKit delivers
  concurrently when busy): wall time, latency percentiles, non-2xx answers, how long the
  background egress calls take to drain, and whether every track got its egress.

    python -m bench.webhooks [--sequential 500] [--burst 1000] [--concurrency 100] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import numpy as np
from livekit import api
from livekit.protocol.webhook import WebhookEvent
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from bench.report import emit, percentile
from devkit.livekit_emulator import LiveKitEmulator
from devkit.stack import StackSecrets, local_stack
from devkit.webhooks import WEBHOOK_CONTENT_TYPE, sign_webhook, webhook_body
from roomscribe.auth import issue_internal_token
from roomscribe.serving import running

KEY = "benchkey"
SECRET = "bench-livekit-secret-0123456789abcdefgh"
INTERNAL = "bench-internal-secret-0123456789abcdef"
SECRETS = StackSecrets(livekit_key=KEY, livekit_secret=SECRET, internal=INTERNAL)
ROOMS = 20


def bare_verifier_app() -> Starlette:
    """The reference: verify the signature and answer, nothing else."""
    receiver = api.WebhookReceiver(api.TokenVerifier(KEY, SECRET))

    async def hook(request: Request) -> JSONResponse:
        body = (await request.body()).decode()
        receiver.receive(body, request.headers["authorization"])
        return JSONResponse({"status": "ok"})

    return Starlette(routes=[Route("/hook", hook, methods=["POST"])])


async def script_tracks(lk: LiveKitEmulator, count: int, first: int) -> list[WebhookEvent]:
    """Participants join and publish in the emulator; return the events LiveKit would send."""
    tone = (np.sin(np.arange(1600) / 5) * 3000).astype(np.int16)
    before = len(lk.events)
    for i in range(first, first + count):
        room = f"room-{i % ROOMS:02d}"
        who = f"p{i:05d}"
        await lk.join(room, who)
        await lk.publish_audio(room, who, tone, track_sid=f"TR_{i:05d}")
    return [e for e in lk.events[before:] if e.event in ("participant_joined", "track_published")]


def signed(event: WebhookEvent) -> tuple[bytes, dict[str, str]]:
    body = webhook_body(event)
    headers = {
        "Authorization": sign_webhook(body, KEY, SECRET),
        "Content-Type": WEBHOOK_CONTENT_TYPE,
    }
    return body.encode(), headers


async def sequential(
    client: httpx.AsyncClient, url: str, events: list[WebhookEvent]
) -> list[float]:
    out = []
    for event in events:
        body, headers = signed(event)
        began = time.perf_counter()
        res = await client.post(url, content=body, headers=headers)
        out.append((time.perf_counter() - began) * 1000)
        res.raise_for_status()
    return out


async def burst(
    url: str, events: list[WebhookEvent], concurrency: int
) -> tuple[list[float], dict[int, int], float]:
    # aiohttp, not httpx: httpx's connection pool costs O(connections) per request, which
    # at 100 in flight made the client, not the orchestrator, the bottleneck.
    async with aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(limit=concurrency),
        timeout=aiohttp.ClientTimeout(total=60),
    ) as session:
        return await _burst(session, url, events, concurrency)


async def _burst(
    session: aiohttp.ClientSession, url: str, events: list[WebhookEvent], concurrency: int
) -> tuple[list[float], dict[int, int], float]:
    prepared = [signed(e) for e in events]
    sem = asyncio.Semaphore(concurrency)
    latencies: list[float] = []
    statuses: dict[int, int] = {}

    async def one(body: bytes, headers: dict[str, str]) -> None:
        async with sem:
            began = time.perf_counter()
            try:
                async with session.post(url, data=body, headers=headers) as res:
                    await res.read()
                    code = res.status
            except (aiohttp.ClientError, TimeoutError):
                code = 0  # no answer: LiveKit would retry it
            latencies.append((time.perf_counter() - began) * 1000)
            statuses[code] = statuses.get(code, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(one(b, h) for b, h in prepared))
    return latencies, statuses, time.perf_counter() - began


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="roomscribe-webhooks-"))
    try:
        # Webhooks are recorded, not delivered: the benchmark sends them itself.
        async with local_stack(workdir, secrets=SECRETS, deliver_webhooks=False) as stack:
            lk, store, url = stack.lk, stack.store, stack.orchestrator_url
            for r in range(ROOMS):
                await lk.create_room(f"room-{r:02d}")
            limits = httpx.Limits(max_connections=args.concurrency)
            async with (
                running(bare_verifier_app()) as ref_url,
                httpx.AsyncClient(timeout=60, limits=limits) as client,
            ):
                token = issue_internal_token(INTERNAL, audience="orchestrator", subject="bench")
                for r in range(ROOMS):
                    res = await client.post(
                        f"{url}/v1/internal/rooms/room-{r:02d}/register",
                        headers={"Authorization": f"Bearer {token}"},
                    )
                    res.raise_for_status()
                lifecycle = stack.lifecycle
                seq_events = await script_tracks(lk, args.sequential // 2, 0)
                print(f"sequential: {len(seq_events)} webhooks...", file=sys.stderr)
                await sequential(client, f"{url}/v1/webhooks/livekit", seq_events[:20])  # warm
                await sequential(client, f"{ref_url}/hook", seq_events[:20])
                ours = await sequential(client, f"{url}/v1/webhooks/livekit", seq_events)
                ref = await sequential(client, f"{ref_url}/hook", seq_events)
                await lifecycle.idle()

                burst_events = await script_tracks(lk, args.burst // 2, 100_000)
                print(
                    f"burst: {len(burst_events)} webhooks, {args.concurrency} in flight...",
                    file=sys.stderr,
                )
                lat, statuses, wall = await burst(
                    f"{url}/v1/webhooks/livekit", burst_events, args.concurrency
                )
                queued = lifecycle.queued
                began = time.perf_counter()
                await lifecycle.idle()
                drain_s = time.perf_counter() - began
                tracks = [t for r in range(ROOMS) for t in await store.list_tracks(f"room-{r:02d}")]
                burst_sids = {e.track.sid for e in burst_events if e.event == "track_published"}
                with_egress = sum(1 for t in tracks if t.track_sid in burst_sids and t.egress.id)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return {
        "sequential_n": len(ours),
        "webhook_p50_ms": round(statistics.median(ours), 3),
        "webhook_p95_ms": round(percentile(ours, 0.95), 3),
        "reference_p50_ms": round(statistics.median(ref), 3),
        "reference_p95_ms": round(percentile(ref, 0.95), 3),
        "webhook_p50_ms / reference_p50_ms": round(
            statistics.median(ours) / statistics.median(ref), 2
        ),
        "burst_n": len(lat),
        "burst_concurrency": args.concurrency,
        "burst_wall_s": round(wall, 3),
        "burst_per_s": round(len(lat) / wall),
        "burst_p50_ms": round(statistics.median(lat), 2),
        "burst_p95_ms": round(percentile(lat, 0.95), 2),
        "burst_max_ms": round(max(lat), 2),
        "burst_non_2xx": sum(n for code, n in statuses.items() if not 200 <= code < 300),
        "burst_no_answer": statuses.get(0, 0),
        "burst_livekit_calls_queued_after": queued,
        "burst_egress_drain_s": round(drain_s, 3),
        "burst_tracks": len(burst_sids),
        "burst_tracks_with_egress": with_egress,
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--sequential", type=int, default=500)
    parser.add_argument("--burst", type=int, default=1000)
    parser.add_argument("--concurrency", type=int, default=100)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    emit(result, as_json=args.json)


if __name__ == "__main__":
    main()
