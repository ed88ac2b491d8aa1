"""What :mod:`bench.stt_load` meters with: recognizer CPU, the bare reference, the processes.

- statistics helpers shared by the steps and the summaries (percentile, rounding, ratios);
- the service's recognizer factory wrapped to add up the CPU spent inside recognizer calls;
- the bare recognizer reference (one recognizer with nothing around it, paced or flat out);
- process and machine meters (``/proc``, ``os.times()``) and the service's ``/metrics``.
"""

from __future__ import annotations

import contextlib
import math
import os
import re
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt

from bench.live_audio import RATE, WARM_S

RSS_SAMPLE_S = 0.2


# --- Small statistics helpers ----------------------------------------------------------------
def percentile(values: Sequence[float], q: float) -> float | None:
    """Linear-interpolated percentile (q in 0..1), ``None`` for no values."""
    if not values:
        return None
    return float(np.percentile(np.asarray(values, dtype=np.float64), q * 100))


def rounded(value: float | None, digits: int = 1) -> float | None:
    """``value`` rounded to ``digits`` places; ``None`` stays ``None``."""
    return None if value is None else round(value, digits)


def ratio(numerator: float | None, denominator: float | None, digits: int = 3) -> float | None:
    """``numerator / denominator`` rounded; ``None`` when either is missing or it is 0."""
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, digits)


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
    """How much counter ``key`` grew between two scrapes (0 where absent)."""
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
    """User + system CPU seconds of this process, all threads (finer than /proc's ticks)."""
    t = os.times()
    return t.user + t.system
