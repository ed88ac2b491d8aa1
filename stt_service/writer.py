"""Writes finals, live stats and commit points to the transcript store off the hot path.

Sessions hand segments over without waiting; one task writes them in batches per track every
flush interval. A store outage delays writes (with backoff) instead of losing them or
slowing any stream down; only if the outage outlasts a large buffer is the oldest data
dropped, and then it is counted and logged.

A session learns when its finals are durable from :meth:`SegmentWriter.stored`: a future
that resolves once everything added for the track so far is written, and fails if any of it
was dropped, so nothing is ever committed past lost data. A track's state is freed once its
last session has released it and everything it handed over is written.

Each word of a track is stored once. A stream that resumes before the previous stream's last
finals were committed recognizes that audio again, and a recognizer does not always find the
same words twice (its state differs), so the id alone cannot catch the repeat: the writer
remembers where each track's taken words end and keeps only the words of a later final that
start there or after.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from dataclasses import dataclass, field

from roomscribe.errors import StoreError
from roomscribe.models import SegmentIn, TrackCreate
from roomscribe.store import TranscriptStore
from roomscribe.store.common import BoundedLru
from stt_service.events import live_segment_id
from stt_service.metrics import SttMetrics

log = logging.getLogger(__name__)

#: How many tracks' taken-word ends are remembered (a reconnect comes within seconds).
_REMEMBERED_TRACKS = 10_000


class SegmentsLostError(Exception):
    """Segments of the track were dropped unwritten (a store outage outlasted the buffer)."""


class TrackMismatchError(Exception):
    """The track is known with another room or participant."""


@dataclass
class _TrackState:
    create: TrackCreate | None
    known: bool = False
    users: int = 0
    segments: deque[SegmentIn] = field(default_factory=deque)
    #: Segments ever added, and of those the ones written or dropped (always the oldest).
    added: int = 0
    done: int = 0
    #: Number of the first segment dropped since the track was last acquired.
    lost_from: int | None = None
    waiters: list[tuple[int, asyncio.Future[None]]] = field(default_factory=list)
    received_s: float = 0.0
    dropped_s: float = 0.0
    committed_s: float | None = None
    refused: str | None = None

    def idle(self) -> bool:
        return (
            self.users == 0
            and not self.segments
            and not self.waiters
            and self.received_s == 0.0
            and self.dropped_s == 0.0
            and self.committed_s is None
        )


def _mismatch(track: TrackCreate, room: str, participant: str) -> str | None:
    if track.room == room and track.participant_identity == participant:
        return None
    return (
        f"track {track.track_sid!r} belongs to {participant!r} in room {room!r}, "
        f"not to {track.participant_identity!r} in {track.room!r}"
    )


class SegmentWriter:
    """Batches realtime segments, live stats and commit points into the store."""

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
        self._state: dict[str, _TrackState] = {}
        # track -> where its taken words end
        self._taken_until: BoundedLru[str, float] = BoundedLru(_REMEMBERED_TRACKS)
        self._buffered = 0
        self._wake = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None
        self.lost_segments = 0

    def start(self) -> None:
        """Start the background flush task."""
        self._task = asyncio.get_running_loop().create_task(self._run(), name="segment-writer")

    # What sessions call --------------------------------------------------------------------
    def ensure_track(self, track: TrackCreate) -> None:
        """Acquire the track for a session (pair with :meth:`release`); register it if new.

        A new session recognizes again from its resume point, so segments lost before it
        no longer stop commits.

        Raises:
            TrackMismatchError: the writer holds the track for another room or participant.
        """
        state = self._state.get(track.track_sid)
        if state is None:
            state = self._state[track.track_sid] = _TrackState(track)
        elif state.create is None:
            state.create = track
        else:
            reason = _mismatch(track, state.create.room, state.create.participant_identity)
            if reason is not None:
                raise TrackMismatchError(reason)
        state.users += 1
        state.lost_from = None
        self._wake.set()

    def release(self, track_sid: str) -> None:
        """A session of the track ended; its state goes once everything is written."""
        state = self._state.get(track_sid)
        if state is not None:
            state.users = max(0, state.users - 1)
            self._wake.set()

    def add_segment(self, track_sid: str, segment: SegmentIn) -> None:
        """Queue a final for storage (never blocks); words already taken are left out."""
        state = self._state.get(track_sid)
        if state is None:
            state = self._state[track_sid] = _TrackState(None)
        if state.refused is not None:
            return
        kept = self._untaken(track_sid, segment)
        if kept is None:
            return
        segment = kept
        if self._buffered >= self._max_buffered:
            self._drop_oldest()
        state.segments.append(segment)
        state.added += 1
        self._buffered += 1
        self._wake.set()

    def _untaken(self, track_sid: str, segment: SegmentIn) -> SegmentIn | None:
        """``segment`` without the words that start before the track's taken words end."""
        taken = self._taken_until.get(track_sid)
        if taken is not None and segment.start < taken:
            words = [w for w in segment.words if w.start >= taken]
            self._metrics.rerecognized_words.inc(len(segment.words) - len(words))
            if not words:
                return None
            segment = SegmentIn(
                id=live_segment_id(track_sid, round(words[0].start * 1000)),
                start=words[0].start,
                end=max(segment.end, words[-1].end),
                text=" ".join(w.word for w in words),
                confidence=round(sum(w.confidence for w in words) / len(words), 4),
                words=words,
            )
        self._taken_until[track_sid] = max(segment.end, taken or 0.0)
        return segment

    def add_stats(self, track_sid: str, *, received_s: float, dropped_s: float) -> None:
        """Add to the track's live audio counters."""
        state = self._state.get(track_sid)
        if state is None:
            state = self._state[track_sid] = _TrackState(None)
        state.received_s += received_s
        state.dropped_s += dropped_s

    def stored(self, track_sid: str) -> asyncio.Future[None]:
        """A future resolved once every segment added for the track so far is written.

        It fails with :class:`SegmentsLostError` if one of them was dropped, or with
        :class:`TrackMismatchError` if the store holds the track for someone else.
        """
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        state = self._state.get(track_sid)
        if state is None:
            waiter.set_result(None)
        else:
            state.waiters.append((state.added, waiter))
            self._settle(state)
        return waiter

    def mark_committed(self, track_sid: str, committed_s: float) -> None:
        """Persist that the track's live transcript is complete up to ``committed_s``.

        Call it once :meth:`stored` said so: it is written after those segments.
        """
        state = self._state.get(track_sid)
        if state is not None and state.refused is None:
            state.committed_s = max(committed_s, state.committed_s or 0.0)
            self._wake.set()

    @property
    def pending(self) -> int:
        """Segments not yet written."""
        return self._buffered

    @property
    def tracked(self) -> int:
        """Tracks the writer holds state for (sessions open, or writes outstanding)."""
        return len(self._state)

    # Bookkeeping ---------------------------------------------------------------------------
    def _settle(self, state: _TrackState) -> None:
        """Resolve or fail the waiters that can be answered now."""
        waiting: list[tuple[int, asyncio.Future[None]]] = []
        for target, waiter in state.waiters:
            if waiter.done():
                continue
            if state.refused is not None:
                waiter.set_exception(TrackMismatchError(state.refused))
            elif state.lost_from is not None and target >= state.lost_from:
                waiter.set_exception(SegmentsLostError("segments were dropped unwritten"))
            elif target <= state.done:
                waiter.set_result(None)
            else:
                waiting.append((target, waiter))
        state.waiters = waiting

    def _drop_oldest(self) -> None:
        sid, state = max(
            ((sid, s) for sid, s in self._state.items() if s.segments),
            key=lambda item: len(item[1].segments),
        )
        state.segments.popleft()
        state.done += 1
        if state.lost_from is None:
            state.lost_from = state.done
        self._buffered -= 1
        self.lost_segments += 1
        log.error("store unavailable too long: dropped a segment", extra={"track_sid": sid})
        self._settle(state)

    def _refuse(self, sid: str, state: _TrackState, reason: str) -> None:
        log.error("track refused: %s", reason, extra={"track_sid": sid})
        state.refused = reason
        self._buffered -= len(state.segments)
        state.segments.clear()
        state.done = state.added
        state.received_s = state.dropped_s = 0.0
        state.committed_s = None
        self._settle(state)

    def _failed(self, what: str, sid: str, exc: StoreError) -> bool:
        self._metrics.store_errors.inc()
        log.warning("cannot store %s: %s", what, exc, extra={"track_sid": sid})
        return False

    # Writing -------------------------------------------------------------------------------
    async def flush(self) -> bool:
        """Write everything buffered; ``True`` when nothing is left."""
        ok = True
        for sid, state in list(self._state.items()):
            ok = await self._flush_track(sid, state) and ok
            if state.idle() and self._state.get(sid) is state:
                del self._state[sid]
        return ok and self._buffered == 0

    async def _flush_track(self, sid: str, state: _TrackState) -> bool:
        if state.refused is not None:
            return True
        if state.create is not None and not state.known:
            try:
                stored = await self._store.upsert_track(state.create)
            except StoreError as exc:
                return self._failed("track", sid, exc)
            reason = _mismatch(state.create, stored.room, stored.participant_identity)
            if reason is not None:
                self._refuse(sid, state, reason)
                return True
            state.known = True
        # Counters and the commit point first: a commit point is only ever set once the
        # segments it covers are stored, so it never waits behind newer segments.
        if state.received_s or state.dropped_s or state.committed_s is not None:
            received, dropped, committed = state.received_s, state.dropped_s, state.committed_s
            state.received_s = state.dropped_s = 0.0
            state.committed_s = None
            try:
                await self._store.add_live_stats(
                    sid, received_s=received, dropped_s=dropped, committed_s=committed
                )
            except StoreError as exc:
                state.received_s += received
                state.dropped_s += dropped
                if committed is not None:
                    state.committed_s = max(committed, state.committed_s or 0.0)
                return self._failed("live stats", sid, exc)
        if state.segments:
            # A copy: sessions keep appending while this write is awaited (and an overflow
            # may drop from the front meanwhile, hence the sequence numbers).
            batch = list(state.segments)
            last = state.done + len(batch)
            try:
                await self._store.append_realtime_segments(sid, batch)
            except StoreError as exc:
                return self._failed("segments", sid, exc)
            written = max(0, last - state.done)
            for _ in range(written):
                state.segments.popleft()
            state.done += written
            self._buffered -= written
            self._metrics.stored_segments.inc(len(batch))
            self._settle(state)
        return True

    async def _run(self) -> None:
        backoff = self._interval
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(backoff):
                    await self._wake.wait()
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
                break
            await asyncio.sleep(min(0.2 * 2**attempt, 2.0))
        else:
            log.error(
                "segments left unwritten at shutdown",
                extra={
                    "count": self._buffered,
                    "tracks": sorted(s for s, t in self._state.items() if t.segments),
                },
            )
        for state in self._state.values():
            for _, waiter in state.waiters:
                if not waiter.done():
                    waiter.set_exception(StoreError("the writer closed before this was stored"))
            state.waiters.clear()
