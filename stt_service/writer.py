"""Writes finals and live stats to the transcript store off the hot path.

Sessions hand segments over without waiting; one task writes them in batches per track every
flush interval. A store outage delays writes (with backoff) instead of losing them or
slowing any stream down; only if the outage outlasts a large buffer is the oldest data
dropped, and then it is counted and logged.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import defaultdict
from dataclasses import dataclass

from roomscribe.errors import StoreError
from roomscribe.models import SegmentIn, TrackCreate
from roomscribe.store import TranscriptStore
from stt_service.metrics import SttMetrics

log = logging.getLogger(__name__)


@dataclass
class _LiveStats:
    received_s: float = 0.0
    dropped_s: float = 0.0


class SegmentWriter:
    """Batches realtime segments and live stats into the store."""

    def __init__(
        self,
        store: TranscriptStore,
        metrics: SttMetrics,
        *,
        flush_interval_s: float = 0.5,
        max_buffered: int = 50_000,
    ) -> None:
        """Create the writer; :meth:`start` runs it."""
        self._store = store
        self._metrics = metrics
        self._interval = flush_interval_s
        self._max_buffered = max_buffered
        self._tracks: dict[str, TrackCreate] = {}
        self._known: set[str] = set()
        self._segments: dict[str, list[SegmentIn]] = defaultdict(list)
        self._stats: dict[str, _LiveStats] = defaultdict(_LiveStats)
        self._buffered = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.lost_segments = 0

    def start(self) -> None:
        """Start the background flush task."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="segment-writer")

    def ensure_track(self, track: TrackCreate) -> None:
        """Make sure the track exists before its first segment is written."""
        self._tracks.setdefault(track.track_sid, track)
        self._wake.set()

    def add_segment(self, track_sid: str, segment: SegmentIn) -> None:
        """Queue a final for storage (never blocks)."""
        if self._buffered >= self._max_buffered:
            oldest = max(self._segments, key=lambda sid: len(self._segments[sid]))
            self._segments[oldest].pop(0)
            self._buffered -= 1
            self.lost_segments += 1
            log.error(
                "store unavailable too long: dropped a buffered segment",
                extra={"track_sid": oldest},
            )
        self._segments[track_sid].append(segment)
        self._buffered += 1
        self._wake.set()

    def add_stats(self, track_sid: str, *, received_s: float, dropped_s: float) -> None:
        """Add to the track's live audio counters."""
        stats = self._stats[track_sid]
        stats.received_s += received_s
        stats.dropped_s += dropped_s

    @property
    def pending(self) -> int:
        """Segments not yet written."""
        return self._buffered

    async def flush(self) -> bool:
        """Write everything buffered; ``True`` when nothing is left."""
        ok = True
        for sid, track in list(self._tracks.items()):
            if sid in self._known:
                continue
            try:
                await self._store.upsert_track(track)
                self._known.add(sid)
            except StoreError as exc:
                ok = False
                self._metrics.store_errors.inc()
                log.warning("cannot register track: %s", exc, extra={"track_sid": sid})
        for sid in list(self._segments):
            # A copy: sessions keep appending to the live list while this write is awaited.
            batch = list(self._segments[sid])
            if not batch or (sid in self._tracks and sid not in self._known):
                continue
            try:
                await self._store.append_realtime_segments(sid, batch)
            except StoreError as exc:
                ok = False
                self._metrics.store_errors.inc()
                log.warning("cannot store segments: %s", exc, extra={"track_sid": sid})
                continue
            del self._segments[sid][: len(batch)]
            self._buffered -= len(batch)
            self._metrics.stored_segments.inc(len(batch))
        for sid in list(self._stats):
            stats = self._stats.pop(sid)
            try:
                await self._store.add_live_stats(
                    sid, received_s=stats.received_s, dropped_s=stats.dropped_s
                )
            except StoreError as exc:
                ok = False
                self._metrics.store_errors.inc()
                other = self._stats[sid]
                other.received_s += stats.received_s
                other.dropped_s += stats.dropped_s
                log.warning("cannot store live stats: %s", exc, extra={"track_sid": sid})
        return ok and self._buffered == 0

    async def _run(self) -> None:
        backoff = self._interval
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            self._wake.clear()
            # Give a burst of finals a moment to gather into one batch.
            await asyncio.sleep(self._interval)
            backoff = self._interval if await self.flush() else min(backoff * 2, 10.0)

    async def close(self, *, attempts: int = 5) -> None:
        """Stop the task and write what is left (a few tries if the store is down)."""
        self._closing = True
        self._wake.set()
        if self._task is not None:
            await self._task
        for attempt in range(attempts):
            if await self.flush():
                return
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        log.error(
            "segments left unwritten at shutdown",
            extra={"count": self._buffered, "tracks": sorted(self._segments)},
        )
