"""Where :mod:`bench.stt_load` runs things: the servers under test and the steps against them.

The service runs in this process, the peer (vosk-server) and the clients each in a child
process; a step starts the clients, meters the server while they stream, and reads the
service's ``/metrics`` before and after.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from bench.live_audio import FRAME_SAMPLES, build_streams
from bench.live_clients import STARTED_LINE
from bench.live_meters import (
    MeteredModels,
    RssSampler,
    bare_parallel,
    counter_delta,
    histogram_quantile,
    pid_cpu_s,
    pid_rss_mb,
    proc_stat_busy,
    process_cpu_s,
    scrape,
    trim_heap,
)
from bench.live_results import fmt, holds_realtime, keeps_up, log
from roomscribe.serving import running as serve

REPO_ROOT = Path(__file__).resolve().parents[1]
ADDED_LATENCY_METRIC = "stt_pipeline_added_latency_seconds"


# --- The service ------------------------------------------------------------------------------
def make_app(factory: Any, workdir: Path, name: str, **overrides: Any) -> Any:
    """The STT service on ``factory``: auth off, its SQLite store in ``workdir``."""
    from stt_service.app import create_app
    from stt_service.settings import SttSettings

    settings = SttSettings(
        environment="development",
        stt_auth=False,
        mongodb_uri=None,
        sqlite_path=workdir / f"{name}.db",
        **overrides,
    )
    return create_app(settings, recognizer_factory=factory)


def free_port() -> int:
    """A TCP port free on loopback now (for the peer)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@dataclass
class Server:
    """What a step talks to and meters: Roomscribe in this process, or the peer's process."""

    protocol: str  # "roomscribe" or "vosk-server"
    url: str
    pid: int
    metered: MeteredModels | None = None

    @property
    def in_process(self) -> bool:
        return self.pid == os.getpid()


@contextlib.asynccontextmanager
async def running_peer(model: Path, log_path: Path) -> Any:
    """Start the fetched vosk-server on a free port; yield its :class:`Server`."""
    port = free_port()
    with log_path.open("wb") as log_file:
        proc = await asyncio.create_subprocess_exec(
            *(sys.executable, "-m", "bench.vosk_peer", "--serve"),
            *("--model", str(model), "--port", str(port)),
            cwd=REPO_ROOT,
            stdout=log_file,
            stderr=subprocess.STDOUT,
        )
        try:
            deadline = time.monotonic() + 120
            while True:
                if proc.returncode is not None:
                    raise RuntimeError(f"vosk-server exited ({proc.returncode}); see {log_path}")
                with contextlib.suppress(OSError):
                    _, writer = await asyncio.open_connection("127.0.0.1", port)
                    writer.close()
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError("vosk-server did not listen within 120 s")
                await asyncio.sleep(0.2)
            yield Server("vosk-server", f"ws://127.0.0.1:{port}", proc.pid)
        finally:
            if proc.returncode is None:
                proc.terminate()
                try:
                    await asyncio.wait_for(proc.wait(), 10)
                except TimeoutError:
                    proc.kill()
                    await proc.wait()


# --- Steps (run in the service process) ------------------------------------------------------
async def run_clients(
    http: httpx.AsyncClient,
    server: Server,
    audio_path: Path,
    clients: int,
    *,
    paced: bool,
    tag: str,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Run one step's clients in a child process; meter the server meanwhile."""
    cfg = {
        "url": server.url,
        "protocol": server.protocol,
        "audio": str(audio_path),
        "clients": clients,
        "paced": paced,
        "tag": tag,
        "compression": args.compression,
        "frame_ms": args.frame_ms,
    }
    roomscribe = server.protocol == "roomscribe"
    before = await scrape(http, server.url) if roomscribe else {}
    metered = server.metered
    rec_cpu0 = metered.cpu_s() if metered else 0.0
    # The child is the benchmark's own entry point, whose --worker mode runs
    # bench.live_clients.worker_main: the same command line as before the split.
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bench.stt_load",
        "--worker",
        json.dumps(cfg),
        cwd=REPO_ROOT,
        stdout=asyncio.subprocess.PIPE,
        limit=2**24,
    )
    assert proc.stdout is not None
    try:
        line = (await proc.stdout.readline()).decode().strip()
        if line != STARTED_LINE:
            raise RuntimeError(f"client worker failed to start (said {line!r}); see stderr")
        # The window starts once every client is connected: only streaming is measured.
        # time.thread_time() here is the event loop thread's own CPU (this runs on it): the
        # protocol work. The rest of the process is the pipeline threads and the store's.
        with RssSampler(server.pid) as rss:
            cpu0, self0 = pid_cpu_s(server.pid), process_cpu_s()
            wall0, stat0, loop0 = time.monotonic(), proc_stat_busy(), time.thread_time()
            line = (await proc.stdout.readline()).decode().strip()
            cpu1, self1 = pid_cpu_s(server.pid), process_cpu_s()
            wall1, stat1, loop1 = time.monotonic(), proc_stat_busy(), time.thread_time()
        if not line:
            raise RuntimeError("client worker died; see stderr")
        summary: dict[str, Any] = json.loads(line)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(proc.wait(), 30)
    wall = wall1 - wall0
    if server.in_process:
        cpu0, cpu1 = self0, self1  # os.times() is finer than /proc's ticks
    cores = os.cpu_count() or 1
    summary["server_cpu_s"] = cpu1 - cpu0
    summary["server_cpu_pct"] = (cpu1 - cpu0) / wall * 100
    summary["server_machine_pct"] = summary["server_cpu_pct"] / cores
    summary["cpu_per_audio_s"] = (
        (cpu1 - cpu0) / summary["audio_s"] if summary["audio_s"] > 0 else None
    )
    summary["rss_peak_mb"] = rss.peak_mb
    # Read once the clients have closed, so every pipeline thread has made its last call; all
    # recognizer calls fall inside the streaming window the process CPU is measured over.
    summary["recognizer_cpu_pct"] = (
        (metered.cpu_s() - rec_cpu0) / wall * 100 if metered is not None else None
    )
    summary["loop_cpu_pct"] = (loop1 - loop0) / wall * 100 if server.in_process else None
    summary["client_cpu_pct"] = summary["client_cpu_s"] / summary["client_wall_s"] * 100
    bench_pct = 0.0 if server.in_process else (self1 - self0) / wall * 100
    if stat0 is not None and stat1 is not None and stat1[1] > stat0[1]:
        summary["machine_busy_pct"] = (stat1[0] - stat0[0]) / (stat1[1] - stat0[1]) * 100
        # What none of the benchmark's processes used: other work on the box (noise).
        summary["other_cpu_pct"] = max(
            0.0,
            summary["machine_busy_pct"] * cores
            - summary["server_cpu_pct"]
            - summary["client_cpu_pct"]
            - bench_pct,
        )
    else:
        summary["machine_busy_pct"] = summary["other_cpu_pct"] = None
    if not roomscribe:
        summary["added_p95_ms"] = summary["server_partial_p95_ms"] = None
        summary["added_count"] = 0
        summary["recognizer_rtf"] = None
        return summary
    after = await scrape(http, server.url)
    added, count = histogram_quantile(before, after, ADDED_LATENCY_METRIC, 0.95)
    summary["added_p95_ms"] = None if added is None else added * 1000
    server_partial, _ = histogram_quantile(before, after, "stt_partial_latency_seconds", 0.95)
    summary["server_partial_p95_ms"] = None if server_partial is None else server_partial * 1000
    summary["added_count"] = count
    recognized = counter_delta(before, after, "stt_recognized_audio_seconds_total")
    recognizer_s = counter_delta(before, after, "stt_recognizer_seconds_total")
    summary["recognizer_rtf"] = recognizer_s / recognized if recognized > 0 else None
    return summary


async def run_steps(
    http: httpx.AsyncClient,
    servers: list[Server],
    audio: Path,
    clients: list[int],
    args: argparse.Namespace,
) -> list[tuple[dict[int, dict[str, Any]], float]]:
    """The paced steps against each server, interleaved: N=1 on each, then N=2 on each, ...

    On a shared box other work comes and goes; interleaving (and alternating which server
    goes first at each N) gives both servers the same weather. A server's series stops after
    its first step that does not keep up (``--keep-going``: never). Returns, per server, its
    steps and its resident set before its first step.
    """
    if any(server.in_process for server in servers):
        trim_heap()
    baselines = [pid_rss_mb(server.pid) for server in servers]
    series: list[dict[int, dict[str, Any]]] = [{} for _ in servers]
    going = [True for _ in servers]
    for turn, n in enumerate(clients):
        order = list(range(len(servers)))
        if turn % 2:
            order.reverse()
        for i in order:
            if not going[i]:
                continue
            server = servers[i]
            log(f"{server.protocol}: {n} clients x {args.seconds:g} s at real time ...")
            tag = f"{'n' if server.in_process else 'p'}{n}"
            step = await run_clients(http, server, audio, n, paced=True, tag=tag, args=args)
            series[i][n] = step
            log(
                f"  partial p95 {fmt(step['partial_p95_ms'])} ms, dropped {step['dropped_ms']} "
                f"ms, refused {step['refused']}, other CPU {fmt(step['other_cpu_pct'])}%"
                + ("" if holds_realtime(step) else "  (does not hold real time)")
            )
            if step["errors"]:
                log(f"  errors: {step['errors'][:3]}")
            if not keeps_up(step) and not args.keep_going:
                going[i] = False
        if not any(going):
            break
    return list(zip(series, baselines, strict=True))


async def unpaced_pair(
    http: httpx.AsyncClient,
    metered: MeteredModels,
    corpus: npt.NDArray[np.int16],
    tones: bool,
    batch_chunks: int,
    workdir: Path,
    args: argparse.Namespace,
) -> dict[str, Any]:
    """Bare and service flat out on the same streams in the same chunking, alternating."""
    log(
        f"unpaced pair: {args.streams} streams x {args.unpaced_seconds:g} s, bare vs service, "
        f"{batch_chunks} x {args.frame_ms} ms per recognizer call on both sides"
    )
    streams = build_streams(corpus, args.streams, args.unpaced_seconds, tones=tones)
    audio = workdir / "unpaced.npy"
    np.save(audio, streams)
    frames = streams.shape[1] // FRAME_SAMPLES
    app = make_app(metered, workdir, "unpaced", stt_queue_chunks=frames + 100)
    bare_cpu: list[float] = []
    service_cpu: list[float] = []
    bare_x: list[float] = []
    service_x: list[float] = []
    drops = 0
    async with serve(app) as url:
        server = Server("roomscribe", url, os.getpid(), metered)
        for r in range(args.repeats):
            bare = await asyncio.to_thread(
                bare_parallel, metered, streams, batch_chunks * args.frame_ms
            )
            bare_cpu.append(bare.cpu_s / bare.audio_s)
            bare_x.append(bare.audio_s / bare.wall_s)
            step = await run_clients(
                http, server, audio, args.streams, paced=False, tag=f"u{r}", args=args
            )
            if step["errors"]:
                raise RuntimeError(f"unpaced run failed: {step['errors'][:3]}")
            drops += step["dropped_ms"]
            service_cpu.append(step["server_cpu_s"] / step["audio_s"])
            service_x.append(step["audio_s"] / step["stream_wall_s"])
            log(
                f"  run {r + 1}: CPU per audio s: bare {bare_cpu[-1]:.4f}, "
                f"service {service_cpu[-1]:.4f}"
            )
    bare_med, service_med = statistics.median(bare_cpu), statistics.median(service_cpu)
    return {
        "unpaced_streams": args.streams,
        "unpaced_chunk_ms": batch_chunks * args.frame_ms,
        "unpaced_bare_cpu_per_audio_s": round(bare_med, 4),
        "unpaced_service_cpu_per_audio_s": round(service_med, 4),
        "unpaced_cpu_cost_ratio": round(service_med / bare_med, 3),
        "unpaced_bare_x_rt": round(statistics.median(bare_x), 2),
        "unpaced_service_x_rt": round(statistics.median(service_x), 2),
        "unpaced_dropped_ms": drops,
    }
