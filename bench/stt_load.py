"""Streaming STT service load benchmark: N real-time clients, paired with the bare recognizer.

    python -m bench.stt_load --json                  # default run, about 4-5 minutes here
    python -m bench.stt_load --quick                 # smoke run, about 1 minute
    python -m bench.stt_load --model var/models/vosk/en --clients 1,10,30
    python -m bench.stt_load --speech /path/to/speech --seconds 60 --compression none

Where things run. The service runs in this process as ``python -m stt_service`` builds it
(``create_app`` on a uvicorn ``DrainingServer``, 127.0.0.1, a free port), with auth off, a
temporary SQLite store and 64 client slots. The clients run in a child process (this module
with ``--worker``) with their own event loop, so client work neither shares the service's event
loop and GIL nor counts as service CPU; both share this machine's cores, as an agent on the
same box would. Clients use ``websockets``' defaults, which offer permessage-deflate; the
service declines it (PCM barely compresses), so frames travel uncompressed either way
(``--compression none`` stops the offer). All traffic stays on loopback.

Audio. Real speech from ``--speech DIR`` (a folder with ``manifest.jsonl``; default
``../shared/data/speech`` beside the repository), decoded to 16 kHz mono and laid end to end;
each client streams its own ``--seconds`` slice. The model is ``--model DIR``, else a
non-synthetic model in ``ROOMSCRIBE_MODELS_DIR/vosk/en``, else the synthetic "small" model
(``devkit.synthetic_vosk``, cached under ``var/bench``: random layers that cost CPU like
vosk-model-small-en-us; it hears pure tones as words, and speech as random low-tone words).
With the synthetic model a tone word (``devkit.tones``) is mixed into the speech every 1.5 s
at a peak of 5% of full scale (about the speech's RMS), the phase differing per client, and one
tone ends exactly at each stream's end, so there are partials and endpointed finals at a known
rhythm and ``end`` always has an utterance to finalize. A real model gets the plain speech.

Paced steps, one per ``--clients`` value. N clients connect and get ``ready``; then each sends
20 ms frames at absolute deadlines (frame k at ``t0 + (k + 1) * 20 ms``, when its last sample
would have been captured: sleeping to a deadline, never for an interval, so lateness does not
accumulate), start phases spread over one frame period as independent tracks would be.

- partial latency: arrival of a ``partial`` minus the time the client sent the frame holding
  its ``audio_end_ms`` (the newest audio the recognizer had heard when it produced it):
  loopback, queueing, recognizer compute and hand-offs. The service-side view (its own
  ``stt_partial_latency_seconds``, audio received -> partial sent) is shown beside it.
- final latency (endpointed): the same measure for finals the endpointer produced while
  streaming; the trailing silence the endpointer waits for is not in it (``audio_end_ms``
  already covers that audio).
- final after end: ``end`` sent -> the final it forced (the utterance open when the audio
  stopped); ``end`` -> close is in the JSON too.
- dropped audio: ``dropped_ms`` of each client's last ``stats`` (sent just before the close),
  summed over the clients.
- CPU over the streaming window, in % of one core: the service process (``os.times()``, all
  threads), its event-loop thread alone (``time.thread_time()``), and the time spent inside
  recognizer calls (the factory is wrapped to add up each pipeline thread's
  ``thread_time()`` per call; the rest is the service around the recognizers); the client
  process; the machine's busy share from ``/proc/stat``, and what of it neither process used
  (``other_cpu_pct``: other work on a shared box, i.e. how noisy the step was).
  Reference: N x the bare recognizer's CPU per audio second (flat out, see below).
  ``bare_paced_rtf`` is one bare recognizer fed at real-time pace: a recognizer called every
  20 ms finds its caches cold and costs more per audio second than flat out, so the service's
  recognizer CPU lies between N x ``bare_rtf`` and N x ``bare_paced_rtf`` (near the former with
  many streams, which keep the shared model warm).
- a step holds real time when no audio was dropped, no client saw an error, partial p95 <=
  500 ms, and the clients kept pace (send lag p95 <= 100 ms: on an overloaded box the client
  falls behind, streams slower than real time and would flatter the service).
  ``max_realtime_clients`` is the largest N such that every step up to it holds.

Added latency (result latency that is not recognizer compute). The service observes it per
result in the histogram ``stt_pipeline_added_latency_seconds`` (newest audio received ->
result sent, minus the recognizer's wall time on that batch). /metrics is read before and after
each step; p95 comes from the bucket-count deltas by linear interpolation inside the bucket
holding the rank, as Prometheus' ``histogram_quantile`` does (buckets 5, 10, 25, 50, 100, 200,
350, 500, 750, 1000, 2000, 5000 ms: the figure is only as fine as its bucket; a rank past
5 s reports 5000). ``added_latency_p95_ms`` is the N=30 step. Cross-check from the client
side (``added_latency_client_p95_ms``): N=30 partial p95 minus the bare recognizer's p95 time
per 20 ms chunk.

Throughput and overhead. Bare: ``--streams`` (default: the core count) ``VoskRecognizer``
loops in as many threads, each fed its stream's audio in the same 20 ms chunks as fast as
possible (``accept``, then ``partial`` when no endpoint, as the pipeline does). Service: the
same number of clients send the same audio unpaced to a second service instance whose
per-client queue holds the whole stream (the normal queue drops audio, by design, when a client
sends faster than real time); throughput = audio seconds / (first frame sent -> last close,
which follows the last final). The two sides alternate ``--repeats`` times and the medians give
``overhead_ratio = service throughput / bare throughput`` (target >= 0.95). The client process
shares the cores during the service runs and not during the bare ones, so
``cpu_overhead_ratio`` (bare CPU per audio second / service process CPU per audio second)
is reported too: the service's own overhead, without the client's share of the box. When
backlogged the pipeline feeds up to ``stt_max_batch_chunks`` queued chunks per recognizer
call, which the bare loop does not.

Output: a table per step and the summary; with ``--json`` the last line is one JSON object
(flat keys, units in the names). Timings here are noisy (a shared 2-core VM whose speed varies
run to run): read medians and ratios; the machine's busy % per step shows other load.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from bench.report import emit
from roomscribe.protocol import encode_audio_frame
from roomscribe.serving import running as serve

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SPEECH = REPO_ROOT.parent / "shared" / "data" / "speech"
DEFAULT_CLIENTS = "1,5,10,20,30,50"

RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000

# Real-time criteria (see the module docstring).
PARTIAL_P95_BOUND_MS = 500.0
SEND_LAG_P95_BOUND_MS = 100.0
ADDED_LATENCY_AT = 30

# Tone words mixed into speech for the synthetic model: one every TONE_EVERY_S at a peak of
# TONE_AMPLITUDE of full scale (about the speech's own RMS, so "modest" and still detected).
TONE_EVERY_S = 1.5
TONE_WORD_S = 0.4
TONE_AMPLITUDE = 0.05

ADDED_LATENCY_METRIC = "stt_pipeline_added_latency_seconds"
STARTED_LINE = "STARTED"


# --- Small statistics helpers ----------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..1), ``None`` for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q * 100))


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


# --- Models -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    path: Path
    name: str
    synthetic: bool


def _synthetic_stamp(folder: Path) -> dict[str, Any] | None:
    from devkit.synthetic_vosk import STAMP_NAME

    stamp = folder / STAMP_NAME
    if not stamp.is_file():
        return None
    data: dict[str, Any] = json.loads(stamp.read_text(encoding="utf-8"))
    return data


def choose_model(arg: Path | None, cache_dir: Path) -> ModelChoice:
    """``--model``, else a real model in ROOMSCRIBE_MODELS_DIR/vosk/en, else synthetic small."""
    candidates: list[Path] = []
    if arg is not None:
        if not arg.is_dir():
            sys.exit(f"--model {arg}: no such folder (expected a Vosk model directory)")
        candidates.append(arg)
    elif models_dir := os.environ.get("ROOMSCRIBE_MODELS_DIR"):
        candidates.append(Path(models_dir) / "vosk" / "en")
    for folder in candidates:
        if not folder.is_dir():
            continue
        stamp = _synthetic_stamp(folder)
        if stamp is None:
            return ModelChoice(folder, folder.resolve().name, synthetic=False)
        if arg is not None:  # an explicitly chosen synthetic model: use it, say which
            return ModelChoice(folder, f"synthetic-{stamp.get('variant')}", synthetic=True)
    from devkit.synthetic_vosk import build_synthetic_vosk_model

    # Cached under var/ (ignored by git): the build is deterministic and checks its stamp.
    path = build_synthetic_vosk_model(cache_dir / "vosk-small", variant="small")
    return ModelChoice(path, "synthetic-small", synthetic=True)


# --- Audio ------------------------------------------------------------------------------------
def require_manifest(folder: Path) -> Path:
    """The speech folder's manifest, or exit with a message saying what to pass."""
    manifest = folder / "manifest.jsonl"
    if not manifest.is_file():
        sys.exit(
            f"no speech data at {folder} (missing manifest.jsonl): pass --speech DIR, a folder "
            "with manifest.jsonl and the audio files it lists (a fresh clone does not have "
            "../shared/data/speech)"
        )
    return manifest


def load_speech(folder: Path, seconds: float) -> npt.NDArray[np.int16]:
    """Decode manifest files in order until ``seconds`` of speech (or all of it) are in hand."""
    from roomscribe.audio import decode_file

    manifest = require_manifest(folder)
    pieces: list[npt.NDArray[np.int16]] = []
    total = 0
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        # Multi-speaker mixes are built from files already listed: skip the duplicates.
        if entry.get("multi_speaker"):
            continue
        pcm = decode_file(folder / entry["file"], sample_rate=RATE)
        pieces.append(pcm)
        total += len(pcm)
        if total >= seconds * RATE:
            break
    if not pieces:
        sys.exit(f"{manifest} lists no usable audio")
    return np.concatenate(pieces)


def slice_cyclic(corpus: npt.NDArray[np.int16], start: int, length: int) -> npt.NDArray[np.int16]:
    """``length`` samples from ``start``, wrapping around when the corpus is shorter."""
    reps = math.ceil((start % len(corpus) + length) / len(corpus))
    return np.tile(corpus, reps)[start % len(corpus) :][:length]


def tone_starts(seconds: float, stream: int) -> list[float]:
    """Where the tone words go: every TONE_EVERY_S from a per-stream phase, one ending last.

    The phase differs per stream so that N clients do not all produce results in the same
    instant; the last tone ends with the audio, so ``end`` has an open utterance to finalize.
    """
    last = seconds - TONE_WORD_S
    starts: list[float] = []
    t = 0.3 + (stream * 0.37) % TONE_EVERY_S
    # Keep at least one endpointer timeout (1 s of non-tone) before the last tone.
    while t + TONE_WORD_S + 1.0 <= last:
        starts.append(t)
        t += TONE_EVERY_S
    starts.append(last)
    return starts


def mix_tones(pcm: npt.NDArray[np.int16], stream: int) -> npt.NDArray[np.int16]:
    from devkit.tones import TONE_WORDS, synthesize

    out = pcm.astype(np.int32)
    for k, start_s in enumerate(tone_starts(len(pcm) / RATE, stream)):
        word = TONE_WORDS[(stream + k) % len(TONE_WORDS)]
        tone = synthesize(
            [word],
            sample_rate=RATE,
            word_s=TONE_WORD_S,
            gap_s=0.0,
            lead_s=0.0,
            tail_s=0.0,
            amplitude=TONE_AMPLITUDE,
        )
        at = round(start_s * RATE)
        end = min(len(out), at + len(tone))
        out[at:end] += tone[: end - at]
    return np.clip(out, -32768, 32767).astype(np.int16)


def build_streams(
    corpus: npt.NDArray[np.int16], count: int, seconds: float, *, tones: bool
) -> npt.NDArray[np.int16]:
    """``count`` streams of ``seconds`` (whole frames), stream ``i`` from its own corpus slice."""
    frames = int(seconds * 1000) // FRAME_MS
    length = frames * FRAME_SAMPLES
    rows = []
    for i in range(count):
        pcm = slice_cyclic(corpus, i * length, length)
        rows.append(mix_tones(pcm, i) if tones else pcm)
    return np.stack(rows)


# --- Recognizer CPU metering -----------------------------------------------------------------
class _MeteredRecognizer:
    """A recognizer that adds up its own thread's CPU time inside each call."""

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self.sample_rate: int = inner.sample_rate
        self.cpu_s = 0.0

    def accept(self, pcm: bytes) -> Any:
        began = time.thread_time()
        try:
            return self._inner.accept(pcm)
        finally:
            self.cpu_s += time.thread_time() - began

    def partial(self) -> str:
        began = time.thread_time()
        try:
            return str(self._inner.partial())
        finally:
            self.cpu_s += time.thread_time() - began

    def finish(self) -> Any:
        began = time.thread_time()
        try:
            return self._inner.finish()
        finally:
            self.cpu_s += time.thread_time() - began


class MeteredModels:
    """The service's recognizer factory, wrapped so the bench can split the service's CPU.

    ``time.thread_time()`` around each call counts only the calling pipeline thread's CPU, so
    ``cpu_s()`` is what the recognizers themselves cost inside the service (libvosk plus the
    JSON decoding of its results); the rest of the process's CPU is the service around them.
    Two clock reads per call cost microseconds against milliseconds of recognition.
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._made: list[_MeteredRecognizer] = []

    def languages(self) -> list[str]:
        return list(self._inner.languages())

    def __call__(self, language: str) -> _MeteredRecognizer:
        rec = _MeteredRecognizer(self._inner(language))
        self._made.append(rec)
        return rec

    def cpu_s(self) -> float:
        return sum(rec.cpu_s for rec in self._made)


# --- Bare recognizer reference ----------------------------------------------------------------
@dataclass
class BareRun:
    audio_s: float
    wall_s: float
    cpu_s: float
    chunk_ms: list[float] = field(default_factory=list)


def bare_loop(
    factory: Any, pcm: npt.NDArray[np.int16], frame_ms: int, keep_chunks: bool = False
) -> BareRun:
    """One recognizer fed frame-sized chunks as fast as possible, doing what a pipeline does."""
    rec = factory("en")
    data = pcm.tobytes()
    step = RATE * frame_ms // 1000 * 2
    chunk_ms: list[float] = []
    cpu0 = time.thread_time()
    began = time.perf_counter()
    for at in range(0, len(data), step):
        t = time.perf_counter()
        if rec.accept(data[at : at + step]) is None:
            rec.partial()
        if keep_chunks:
            chunk_ms.append((time.perf_counter() - t) * 1000)
    rec.finish()
    wall = time.perf_counter() - began
    return BareRun(len(pcm) / RATE, wall, time.thread_time() - cpu0, chunk_ms)


def bare_paced(factory: Any, pcm: npt.NDArray[np.int16], frame_ms: int) -> BareRun:
    """One recognizer fed one frame per frame period (absolute deadlines), like a live track.

    Fed at real-time pace a lone recognizer costs more CPU per audio second than fed flat out
    (measured here: about 1.6x; most likely cold caches after each idle gap), so a paced
    step's recognizer CPU lies between N x the flat-out figure and N x this one; with many
    streams the shared model stays warm and it comes close to the former.
    """
    rec = factory("en")
    data = pcm.tobytes()
    step = RATE * frame_ms // 1000 * 2
    cpu = 0.0
    began = time.monotonic()
    for k, at in enumerate(range(0, len(data), step)):
        delay = began + (k + 1) * frame_ms / 1000 - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = time.thread_time()
        if rec.accept(data[at : at + step]) is None:
            rec.partial()
        cpu += time.thread_time() - t
    rec.finish()
    return BareRun(len(pcm) / RATE, time.monotonic() - began, cpu)


def bare_parallel(factory: Any, streams: npt.NDArray[np.int16], frame_ms: int) -> BareRun:
    """One bare loop per stream, each in its own thread (libvosk releases the GIL)."""
    runs: list[BareRun] = []
    barrier = threading.Barrier(len(streams) + 1)

    def work(pcm: npt.NDArray[np.int16]) -> None:
        barrier.wait()
        runs.append(bare_loop(factory, pcm, frame_ms))

    threads = [threading.Thread(target=work, args=(row,)) for row in streams]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return BareRun(sum(r.audio_s for r in runs), wall, sum(r.cpu_s for r in runs))


# --- The service ------------------------------------------------------------------------------
def make_app(factory: Any, workdir: Path, name: str, **overrides: Any) -> Any:
    from stt_service.app import create_app
    from stt_service.settings import SttSettings

    settings = SttSettings(
        environment="development",
        stt_auth=False,
        stt_max_clients=64,
        mongodb_uri=None,
        sqlite_path=workdir / f"{name}.db",
        **overrides,
    )
    return create_app(settings, recognizer_factory=factory)


_SAMPLE = re.compile(r"^(?P<name>[a-zA-Z_:][\w:]*)(?:\{(?P<labels>[^}]*)\})? (?P<value>\S+)$")


async def scrape(client: httpx.AsyncClient, url: str) -> dict[str, float]:
    """``/metrics`` as ``{'name{labels}': value}`` (labels as written by the server)."""
    response = await client.get(f"{url}/metrics")
    response.raise_for_status()
    out: dict[str, float] = {}
    for line in response.text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = _SAMPLE.match(line)
        if m:
            key = m["name"] + (f"{{{m['labels']}}}" if m["labels"] else "")
            out[key] = float(m["value"])
    return out


def histogram_quantile(
    before: dict[str, float], after: dict[str, float], metric: str, q: float
) -> tuple[float | None, int]:
    """Quantile (seconds) of what a histogram observed between two scrapes, and the count.

    Linear interpolation inside the bucket holding the rank, as Prometheus does; a rank in
    the +Inf bucket returns the largest finite bound (a floor, not an estimate).
    """
    bounds: list[tuple[float, float]] = []
    prefix = f'{metric}_bucket{{le="'
    for key, value in after.items():
        if key.startswith(prefix):
            le = key[len(prefix) : key.index('"', len(prefix))]
            bounds.append((float(le), value - before.get(key, 0.0)))
    bounds.sort()
    total = bounds[-1][1] if bounds else 0.0
    if total <= 0:
        return None, 0
    rank = q * total
    lower, below = 0.0, 0.0
    for upper, cumulative in bounds:
        if cumulative >= rank:
            if math.isinf(upper):
                return lower, int(total)
            inside = cumulative - below
            fraction = (rank - below) / inside if inside > 0 else 1.0
            return lower + (upper - lower) * fraction, int(total)
        lower, below = upper, cumulative
    return lower, int(total)


def counter_delta(before: dict[str, float], after: dict[str, float], key: str) -> float:
    return after.get(key, 0.0) - before.get(key, 0.0)


def proc_stat_busy() -> tuple[float, float] | None:
    """(busy, total) jiffies of the whole machine, or ``None`` off Linux."""
    try:
        fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    except OSError:
        return None
    values = [float(v) for v in fields]
    idle = values[3] + (values[4] if len(values) > 4 else 0.0)  # idle + iowait
    return sum(values) - idle, sum(values)


def process_cpu_s() -> float:
    t = os.times()
    return t.user + t.system


# --- Clients (run in the worker process) -----------------------------------------------------
@dataclass
class ClientResult:
    partial_ms: list[float] = field(default_factory=list)
    final_ms: list[float] = field(default_factory=list)
    end_final_ms: float | None = None
    end_close_ms: float | None = None
    send_lag_ms: list[float] = field(default_factory=list)
    partials: int = 0
    finals: int = 0
    dropped_ms: int = 0
    received_ms: int = 0
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None
    first_send: float = 0.0
    closed_at: float = 0.0


async def open_client(url: str, index: int, tag: str, compression: str) -> ClientConnection:
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
        raise RuntimeError(f"client {index}: expected ready, got {ready}")
    return ws


async def stream_client(
    ws: ClientConnection, pcm: npt.NDArray[np.int16], start_at: float, paced: bool, frame_ms: int
) -> ClientResult:
    """Send ``pcm`` in frames (paced or flat out), then ``end``; collect every result."""
    result = ClientResult()
    data = pcm.tobytes()
    frame_samples = RATE * frame_ms // 1000
    frame_s = frame_ms / 1000
    frames = math.ceil(len(pcm) / frame_samples)
    sent_at = np.zeros(frames, dtype=np.float64)
    end_sent: list[float] = []

    async def send() -> None:
        delay = start_at - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        result.first_send = time.monotonic()
        for k in range(frames):
            if paced:
                # Absolute deadline: frame k's audio is complete at start + (k + 1) frames.
                # Sleeping to it (not for a fixed interval) keeps lateness from accumulating.
                deadline = start_at + (k + 1) * frame_s
                delay = deadline - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                result.send_lag_ms.append((time.monotonic() - deadline) * 1000)
            sent_at[k] = time.monotonic()
            chunk = data[k * frame_samples * 2 : (k + 1) * frame_samples * 2]
            await ws.send(encode_audio_frame(k * frame_samples, chunk))
        end_sent.append(time.monotonic())
        await ws.send('{"type": "end"}')

    def heard_until(audio_end_ms: int) -> float:
        # The frame holding the last sample the result had heard.
        k = min(frames - 1, max(0, math.ceil(audio_end_ms * RATE / 1000 / frame_samples) - 1))
        return float(sent_at[k])

    sender = asyncio.create_task(send())
    try:
        async for raw in ws:
            now = time.monotonic()
            msg = json.loads(raw)
            kind = msg.get("type")
            if kind == "partial":
                result.partials += 1
                if paced and msg.get("audio_end_ms") is not None:
                    result.partial_ms.append((now - heard_until(msg["audio_end_ms"])) * 1000)
            elif kind == "final":
                result.finals += 1
                if end_sent:
                    # After `end`: the final it forced (the last utterance).
                    result.end_final_ms = (now - end_sent[0]) * 1000
                elif paced and msg.get("audio_end_ms") is not None:
                    result.final_ms.append((now - heard_until(msg["audio_end_ms"])) * 1000)
            elif kind == "stats":
                result.dropped_ms = int(msg["dropped_ms"])
                result.received_ms = int(msg["received_ms"])
            elif kind == "error":
                result.errors.append(f"{msg.get('code')}: {msg.get('message')}")
    except ConnectionClosed:
        pass
    result.closed_at = time.monotonic()
    result.close_code = ws.close_code
    if end_sent:
        result.end_close_ms = (result.closed_at - end_sent[0]) * 1000
    if not sender.done():
        sender.cancel()
        result.errors.append("connection closed before all audio was sent")
    with contextlib.suppress(asyncio.CancelledError, ConnectionClosed):
        await sender
    return result


def summarize_clients(results: list[ClientResult], audio_s: float) -> dict[str, Any]:
    def pooled(name: str) -> list[float]:
        return [v for r in results for v in getattr(r, name)]

    partial = pooled("partial_ms")
    final = pooled("final_ms")
    lag = pooled("send_lag_ms")
    end_final = [r.end_final_ms for r in results if r.end_final_ms is not None]
    end_close = [r.end_close_ms for r in results if r.end_close_ms is not None]
    first = min(r.first_send for r in results)
    last = max(r.closed_at for r in results)
    return {
        "clients": len(results),
        "audio_s": audio_s * len(results),
        "stream_wall_s": last - first,
        "partials": sum(r.partials for r in results),
        "finals": sum(r.finals for r in results),
        "partial_p50_ms": percentile(partial, 0.5),
        "partial_p95_ms": percentile(partial, 0.95),
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
    sockets = await asyncio.gather(
        *(open_client(cfg["url"], i, cfg["tag"], cfg["compression"]) for i in range(n))
    )
    print(STARTED_LINE, flush=True)
    cpu0, wall0 = process_cpu_s(), time.monotonic()
    # A short lead so every client is scheduled before its first deadline; start phases spread
    # over one frame period, as independent tracks are.
    start_at = time.monotonic() + 0.2
    results = await asyncio.gather(
        *(
            stream_client(
                ws,
                np.asarray(audio[i]),
                start_at + i * cfg["frame_ms"] / 1000 / n,
                cfg["paced"],
                cfg["frame_ms"],
            )
            for i, ws in enumerate(sockets)
        )
    )
    summary = summarize_clients(list(results), audio.shape[1] / RATE)
    summary["client_cpu_s"] = process_cpu_s() - cpu0
    summary["client_wall_s"] = time.monotonic() - wall0
    print(json.dumps(summary), flush=True)


# --- Steps (run in the service process) ------------------------------------------------------
async def run_clients(
    http: httpx.AsyncClient,
    url: str,
    audio_path: Path,
    clients: int,
    *,
    paced: bool,
    tag: str,
    args: argparse.Namespace,
    metered: MeteredModels | None = None,
) -> dict[str, Any]:
    """Run one step's clients in a child process; measure this process's CPU meanwhile."""
    cfg = {
        "url": url,
        "audio": str(audio_path),
        "clients": clients,
        "paced": paced,
        "tag": tag,
        "compression": args.compression,
        "frame_ms": args.frame_ms,
    }
    before = await scrape(http, url)
    rec_cpu0 = metered.cpu_s() if metered else 0.0
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
        cpu0, wall0, stat0 = process_cpu_s(), time.monotonic(), proc_stat_busy()
        loop0 = time.thread_time()
        line = (await proc.stdout.readline()).decode().strip()
        cpu1, wall1, stat1 = process_cpu_s(), time.monotonic(), proc_stat_busy()
        loop1 = time.thread_time()
        if not line:
            raise RuntimeError("client worker died; see stderr")
        summary: dict[str, Any] = json.loads(line)
    finally:
        if proc.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                await asyncio.wait_for(proc.wait(), 30)
    after = await scrape(http, url)
    wall = wall1 - wall0
    # Read once the clients have closed, so every pipeline thread has made its last call; all
    # recognizer calls fall inside the streaming window the process CPU is measured over.
    if metered is not None:
        summary["recognizer_cpu_pct"] = (metered.cpu_s() - rec_cpu0) / wall * 100
    else:
        summary["recognizer_cpu_pct"] = None
    cores = os.cpu_count() or 1
    summary["server_cpu_s"] = cpu1 - cpu0
    summary["server_cpu_pct"] = (cpu1 - cpu0) / wall * 100
    summary["server_machine_pct"] = summary["server_cpu_pct"] / cores
    summary["loop_cpu_pct"] = (loop1 - loop0) / wall * 100
    summary["client_cpu_pct"] = summary["client_cpu_s"] / summary["client_wall_s"] * 100
    if stat0 is not None and stat1 is not None and stat1[1] > stat0[1]:
        summary["machine_busy_pct"] = (stat1[0] - stat0[0]) / (stat1[1] - stat0[1]) * 100
        # What neither the service nor the clients used: other work on the box (noise).
        summary["other_cpu_pct"] = max(
            0.0,
            summary["machine_busy_pct"] * cores
            - summary["server_cpu_pct"]
            - summary["client_cpu_pct"],
        )
    else:
        summary["machine_busy_pct"] = summary["other_cpu_pct"] = None
    added, count = histogram_quantile(before, after, ADDED_LATENCY_METRIC, 0.95)
    summary["added_p95_ms"] = None if added is None else added * 1000
    server_partial, _ = histogram_quantile(before, after, "stt_partial_latency_seconds", 0.95)
    summary["server_partial_p95_ms"] = None if server_partial is None else server_partial * 1000
    summary["added_count"] = count
    recognized = counter_delta(before, after, "stt_recognized_audio_seconds_total")
    recognizer_s = counter_delta(before, after, "stt_recognizer_seconds_total")
    summary["recognized_s"] = recognized
    summary["recognizer_rtf"] = recognizer_s / recognized if recognized > 0 else None
    return summary


def holds_realtime(step: dict[str, Any]) -> bool:
    return (
        step["dropped_ms"] == 0
        and not step["errors"]
        and step["abnormal_closes"] == 0
        and step["partial_p95_ms"] is not None
        and step["partial_p95_ms"] <= PARTIAL_P95_BOUND_MS
        and (step["send_lag_p95_ms"] or 0.0) <= SEND_LAG_P95_BOUND_MS
    )


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


TABLE_LEGEND = (
    "part/srv: partial latency, client side / service side (audio received -> sent); fin: "
    "endpointed finals; end>fin: `end` sent -> last final; drop: dropped audio (ms, all "
    "clients); lag: client send lag; add: pipeline added latency (/metrics); cpu: service "
    "process (loop: its event loop thread; rec: inside recognizer calls); bare: N x the bare "
    "recognizer's CPU per audio second (flat out); cli: client process; box: machine busy; "
    "oth: CPU used by neither process (other work on the box); recRTF: recognizer wall "
    "seconds per audio second inside the service. Latencies in ms, CPU in % of one core "
    "(box: % of the machine)."
)


def print_table(steps: dict[int, dict[str, Any]], bare_rtf: float) -> None:
    """One row per step; see TABLE_LEGEND."""
    columns = (
        ("N", 3),
        ("part50", 6),
        ("part95", 6),
        ("srv95", 6),
        ("fin95", 6),
        ("end>fin", 7),
        ("drop", 5),
        ("lag95", 6),
        ("add95", 6),
        ("cpu%", 5),
        ("loop%", 5),
        ("rec%", 5),
        ("bare%", 5),
        ("cli%", 5),
        ("box%", 5),
        ("oth%", 5),
        ("recRTF", 6),
        ("real time", 9),
    )
    head = " ".join(f"{name:>{width}}" for name, width in columns)
    print(head)
    print("-" * len(head))
    for n, s in steps.items():
        cells = (
            n,
            fmt(s["partial_p50_ms"]),
            fmt(s["partial_p95_ms"]),
            fmt(s["server_partial_p95_ms"]),
            fmt(s["final_p95_ms"]),
            fmt(s["end_final_p95_ms"]),
            s["dropped_ms"],
            fmt(s["send_lag_p95_ms"], 1),
            fmt(s["added_p95_ms"], 1),
            fmt(s["server_cpu_pct"]),
            fmt(s["loop_cpu_pct"]),
            fmt(s["recognizer_cpu_pct"]),
            fmt(n * bare_rtf * 100),
            fmt(s["client_cpu_pct"]),
            fmt(s["machine_busy_pct"]),
            fmt(s["other_cpu_pct"]),
            fmt(s["recognizer_rtf"], 3),
            "yes" if holds_realtime(s) else "NO",
        )
        print(" ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns, strict=True)))
    print(TABLE_LEGEND)


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    from stt_service.recognizer import VoskModels

    clients = sorted({int(c) for c in args.clients.split(",") if c.strip()})
    if not clients or clients[0] < 1:
        sys.exit("--clients needs positive counts, e.g. 1,5,10")
    require_manifest(args.speech)  # fail before any work on a fresh clone
    model = choose_model(args.model, REPO_ROOT / "var" / "bench")
    factory = VoskModels.load({"en": model.path})
    tones = model.synthetic
    need_s = max(clients[-1] * args.seconds, args.streams * args.throughput_seconds)
    log(f"decoding speech from {args.speech} ...")
    corpus = load_speech(args.speech, need_s)
    log(
        f"model {model.name} ({model.path}); {len(corpus) / RATE:.0f} s of speech"
        + (
            f"; tone words mixed in every {TONE_EVERY_S} s at {TONE_AMPLITUDE:.0%} FS"
            if tones
            else ""
        )
    )
    paced_audio = workdir / "paced.npy"
    np.save(paced_audio, build_streams(corpus, clients[-1], args.seconds, tones=tones))
    tp_streams = build_streams(corpus, args.streams, args.throughput_seconds, tones=tones)
    tp_audio = workdir / "throughput.npy"
    np.save(tp_audio, tp_streams)

    # Bare single stream: the recognizer's own cost per audio second and per 20 ms chunk.
    log("bare recognizer, one stream ...")
    single = bare_loop(factory, tp_streams[0], args.frame_ms, keep_chunks=True)
    bare_rtf = single.cpu_s / single.audio_s
    chunk_p95 = percentile(single.chunk_ms, 0.95) or 0.0
    log(f"bare recognizer, one stream paced at real time ({args.seconds:g} s) ...")
    paced_bare = bare_paced(factory, np.load(paced_audio, mmap_mode="r")[0], args.frame_ms)
    bare_paced_rtf = paced_bare.cpu_s / paced_bare.audio_s

    result: dict[str, Any] = {
        "model": model.name,
        "tones_mixed": tones,
        "seconds_per_client": args.seconds,
        "frame_ms": args.frame_ms,
        "compression_offered": args.compression,
        "cores": os.cpu_count(),
        "bare_rtf": round(bare_rtf, 4),
        "bare_paced_rtf": round(bare_paced_rtf, 4),
        "bare_chunk_p50_ms": rounded(percentile(single.chunk_ms, 0.5), 3),
        "bare_chunk_p95_ms": round(chunk_p95, 3),
    }

    async with httpx.AsyncClient(timeout=30) as http:
        # Throughput: the service unpaced vs the bare loops, same streams, alternating.
        log(f"throughput: {args.streams} streams x {args.throughput_seconds:g} s, bare vs service")
        frames = tp_streams.shape[1] // FRAME_SAMPLES
        tp_app = make_app(factory, workdir, "throughput", stt_queue_chunks=frames + 100)
        bare_tp: list[float] = []
        service_tp: list[float] = []
        bare_cpu: list[float] = []
        service_cpu: list[float] = []
        client_cpu: list[float] = []
        service_drops = 0
        async with serve(tp_app) as url:
            for r in range(args.repeats):
                bare = await asyncio.to_thread(bare_parallel, factory, tp_streams, args.frame_ms)
                bare_tp.append(bare.audio_s / bare.wall_s)
                bare_cpu.append(bare.cpu_s / bare.audio_s)
                step = await run_clients(
                    http, url, tp_audio, args.streams, paced=False, tag=f"tp{r}", args=args
                )
                service_drops += step["dropped_ms"]
                if step["errors"]:
                    raise RuntimeError(f"throughput run failed: {step['errors'][:3]}")
                service_tp.append(step["audio_s"] / step["stream_wall_s"])
                # CPU per audio second: less sensitive than wall time to other load on the box.
                service_cpu.append(step["server_cpu_s"] / step["audio_s"])
                client_cpu.append(step["client_cpu_s"] / step["audio_s"])
                log(
                    f"  run {r + 1}: bare {bare_tp[-1]:.1f} x RT, service {service_tp[-1]:.1f} x RT"
                )
        bare_med, service_med = statistics.median(bare_tp), statistics.median(service_tp)
        result |= {
            "throughput_streams": args.streams,
            "bare_throughput_x_rt": round(bare_med, 2),
            "service_throughput_x_rt": round(service_med, 2),
            "overhead_ratio": round(service_med / bare_med, 3),
            "bare_cpu_per_audio_s": round(statistics.median(bare_cpu), 4),
            "service_cpu_per_audio_s": round(statistics.median(service_cpu), 4),
            "client_cpu_per_audio_s": round(statistics.median(client_cpu), 4),
            "cpu_overhead_ratio": round(
                statistics.median(bare_cpu) / statistics.median(service_cpu), 3
            ),
            "throughput_dropped_ms": service_drops,
        }

        # Paced steps.
        metered = MeteredModels(factory)
        app = make_app(metered, workdir, "paced")
        steps: dict[int, dict[str, Any]] = {}
        async with serve(app) as url:
            for n in clients:
                log(f"{n} clients x {args.seconds:g} s at real time ...")
                steps[n] = await run_clients(
                    http, url, paced_audio, n, paced=True, tag=f"n{n}", args=args, metered=metered
                )
                if steps[n]["errors"]:
                    log(f"  errors: {steps[n]['errors'][:3]}")

    max_rt = 0
    for n in clients:
        if not holds_realtime(steps[n]):
            break
        max_rt = n
    result["max_realtime_clients"] = max_rt
    result["realtime_rule"] = (
        f"no dropped audio, partial p95 <= {PARTIAL_P95_BOUND_MS:g} ms, "
        f"client send lag p95 <= {SEND_LAG_P95_BOUND_MS:g} ms"
    )
    at = steps.get(ADDED_LATENCY_AT)
    result["added_latency_p95_ms"] = rounded(at["added_p95_ms"]) if at else None
    if at and at["partial_p95_ms"] is not None:
        result["added_latency_client_p95_ms"] = round(at["partial_p95_ms"] - chunk_p95, 1)
    for n, s in steps.items():
        result |= {
            f"n{n}_partial_p50_ms": rounded(s["partial_p50_ms"]),
            f"n{n}_partial_p95_ms": rounded(s["partial_p95_ms"]),
            f"n{n}_server_partial_p95_ms": rounded(s["server_partial_p95_ms"]),
            f"n{n}_final_p50_ms": rounded(s["final_p50_ms"]),
            f"n{n}_final_p95_ms": rounded(s["final_p95_ms"]),
            f"n{n}_end_final_p95_ms": rounded(s["end_final_p95_ms"]),
            f"n{n}_end_close_p95_ms": rounded(s["end_close_p95_ms"]),
            f"n{n}_dropped_ms": s["dropped_ms"],
            f"n{n}_send_lag_p95_ms": rounded(s["send_lag_p95_ms"], 2),
            f"n{n}_added_p95_ms": rounded(s["added_p95_ms"]),
            f"n{n}_cpu_pct": rounded(s["server_cpu_pct"]),
            f"n{n}_machine_cpu_pct": rounded(s["server_machine_pct"]),
            f"n{n}_loop_cpu_pct": rounded(s["loop_cpu_pct"]),
            f"n{n}_recognizer_cpu_pct": rounded(s["recognizer_cpu_pct"]),
            f"n{n}_bare_cpu_pct": round(n * bare_rtf * 100, 1),
            f"n{n}_client_cpu_pct": rounded(s["client_cpu_pct"]),
            f"n{n}_box_busy_pct": rounded(s["machine_busy_pct"]),
            f"n{n}_other_cpu_pct": rounded(s["other_cpu_pct"]),
            f"n{n}_recognizer_rtf": rounded(s["recognizer_rtf"], 4),
            f"n{n}_partials": s["partials"],
            f"n{n}_finals": s["finals"],
            f"n{n}_realtime": holds_realtime(s),
        }
    print_table(steps, bare_rtf)
    return result


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


async def run(args: argparse.Namespace) -> dict[str, Any]:
    workdir = Path(tempfile.mkdtemp(prefix="roomscribe-stt-bench-"))
    try:
        return await measure(args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", default=DEFAULT_CLIENTS, help="concurrent clients per step")
    parser.add_argument("--seconds", type=float, default=30.0, help="audio per client per step")
    parser.add_argument("--speech", type=Path, default=DEFAULT_SPEECH, help="speech folder")
    parser.add_argument("--model", type=Path, help="a Vosk model folder (default: see above)")
    parser.add_argument(
        "--streams", type=int, default=os.cpu_count() or 2, help="streams for the throughput pair"
    )
    parser.add_argument("--throughput-seconds", type=float, default=120.0)
    parser.add_argument("--repeats", type=int, default=3, help="throughput runs per side")
    parser.add_argument(
        "--compression",
        choices=["deflate", "none"],
        default="deflate",
        help="permessage-deflate offer of the clients (deflate: the websockets default)",
    )
    parser.add_argument(
        "--frame-ms", type=int, default=FRAME_MS, help="audio per frame (and per bare chunk)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run of about a minute")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        asyncio.run(worker_main(json.loads(args.worker)))
        return
    if args.quick:
        args.clients, args.seconds = "1,10,30", 10.0
        args.throughput_seconds, args.repeats = 30.0, 1
    began = time.perf_counter()
    result = asyncio.run(run(args))
    result["bench_wall_s"] = round(time.perf_counter() - began, 1)
    print()
    # Per-N keys (n30_...) are in the table above; the JSON line carries them all.
    emit(result, as_json=args.json, show=lambda key: not key.startswith("n") or key[1:2].isalpha())


if __name__ == "__main__":
    main()
