"""The transcript store: what every backend (SQLite, MongoDB) must do.

Every mutating operation is atomic on its own and idempotent where a retry is likely
(registering a room, upserting a track, re-appending a batch of segments). Conditional
updates return ``False`` instead of raising when their precondition no longer holds, so
callers racing each other (webhooks, workers, the reconciler) can tell who won.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from roomscribe.models import (
    Chunk,
    EgressInfo,
    Room,
    RoomStatus,
    SegmentIn,
    SegmentSource,
    Summary,
    Track,
    TrackCreate,
    TrackStatus,
    TranscriptPage,
    TranscriptQuery,
    WhisperStats,
)

#: How many segments a chunk holds when the settings do not say.
DEFAULT_CHUNK_SIZE = 200


@dataclass(frozen=True)
class RoomPage:
    """One page of rooms, newest first, and the cursor of the next page."""

    rooms: list[Room]
    next_cursor: str | None


class TranscriptStore(Protocol):
    """Rooms -> Tracks -> Chunks of segments, Whisper job claims, and transcript queries."""

    chunk_size: int

    async def init(self) -> None:
        """Create tables or collections and indexes; safe to call on every start."""

    async def close(self) -> None:
        """Release connections and threads."""

    async def ping(self) -> None:
        """Raise :class:`~roomscribe.errors.StoreError` when the store is unreachable."""

    # Rooms ---------------------------------------------------------------------------------
    async def register_room(
        self, name: str, *, sid: str | None = None, livekit_created_at: datetime | None = None
    ) -> Room:
        """Register a room (idempotent: an existing room keeps its status).

        ``sid`` and ``livekit_created_at`` fill in what the stored room does not know; a
        known sid is never replaced: a different one is a new meeting
        (:meth:`archive_room` first).
        """

    async def archive_room(self, name: str, *, sid: str) -> Room | None:
        """Keep the room's current meeting (if its sid is ``sid``) under its own key.

        The meeting, its tracks and its transcript move to :func:`archive_key` (or the next
        free variant of it), with ``meeting_of`` set to ``name``; a meeting still live
        becomes ``final_room``, since LiveKit has opened a new room of that name. Afterwards
        ``name`` is free for :meth:`register_room`. Returns the archived meeting, the one a
        concurrent caller archived, or ``None`` when the stored sid is not ``sid``.
        """

    async def complete_idle_room(self, name: str) -> bool:
        """Move a ``final_room`` room to ``summarizing`` if none of its tracks is pending.

        One atomic step for racing callers (every track status change tries): ``True`` for
        exactly one of them, and never while a track still records or awaits Whisper.
        """

    async def find_room(self, name: str) -> Room | None:
        """Return the room, or ``None`` when it is not registered."""

    async def get_room(self, name: str) -> Room:
        """Return the room or raise :class:`~roomscribe.errors.NotFoundError`."""

    async def list_rooms(
        self,
        *,
        status: RoomStatus | None = None,
        names: Collection[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RoomPage:
        """List rooms newest first, optionally only those with a status or among ``names``."""

    async def transition_room(
        self,
        name: str,
        *,
        to: RoomStatus,
        from_: Collection[RoomStatus],
        reason: str | None = None,
    ) -> bool:
        """Move a room to ``to`` only if its status is in ``from_``; ``True`` if this call did."""

    async def add_participant(self, room: str, identity: str) -> None:
        """Record that a participant was in the room (idempotent)."""

    async def set_summary(self, room: str, summary: Summary | None) -> None:
        """Store (or clear) the room's summary."""

    # Tracks --------------------------------------------------------------------------------
    async def upsert_track(self, track: TrackCreate) -> Track:
        """Create the track if it is new; return the stored track either way."""

    async def find_track(self, track_sid: str) -> Track | None:
        """Return the track, or ``None`` when unknown."""

    async def get_track(self, track_sid: str) -> Track:
        """Return the track or raise :class:`~roomscribe.errors.NotFoundError`."""

    async def list_tracks(self, room: str) -> list[Track]:
        """Return a room's tracks ordered by start time."""

    async def set_track_status(
        self,
        track_sid: str,
        to: TrackStatus,
        *,
        from_: Collection[TrackStatus] | None = None,
        reason: str | None = None,
    ) -> bool:
        """Set a track's status, only from ``from_`` when given; ``True`` if this call did."""

    async def update_egress(self, track_sid: str, egress: EgressInfo) -> None:
        """Replace what is known of the track's egress."""

    async def claim_egress_start(self, track_sid: str, *, stale_after_s: float = 60.0) -> bool:
        """Claim starting the track's egress; ``True`` for exactly one of racing callers.

        Claimable while the track is recording with no egress id and no start claimed, or
        with a claim older than ``stale_after_s`` (its claimant died before recording the
        egress). Duplicate ``track_published`` deliveries, the registration sweep and the
        reconciler all try; only the winner calls LiveKit.
        """

    async def add_live_stats(
        self,
        track_sid: str,
        *,
        received_s: float,
        dropped_s: float,
        committed_s: float | None = None,
    ) -> None:
        """Add audio received and dropped by the live path to the track's counters.

        ``committed_s``, when given, raises ``live.committed_s`` to it in the same atomic
        update (``max(old, new)``: a late or repeated write never moves it back).
        """

    async def count_pending_tracks(self, room: str) -> int:
        """Count the room's tracks that still hold back completion."""

    # Segments ------------------------------------------------------------------------------
    async def append_realtime_segments(self, track_sid: str, segments: Sequence[SegmentIn]) -> int:
        """Append live segments to the track's chunks; return how many were new.

        Segments whose id the track already holds are skipped, so a retried batch is never
        stored twice. Raises :class:`~roomscribe.errors.NotFoundError` for an unknown track.
        """

    async def replace_whisper_segments(
        self, track_sid: str, segments: Sequence[SegmentIn], *, stats: WhisperStats
    ) -> None:
        """Replace the track's Whisper transcript (a retry never duplicates) and its stats."""

    async def list_chunks(self, track_sid: str, source: SegmentSource) -> list[Chunk]:
        """Return the track's chunks of one source in sequence order."""

    async def query_transcript(self, query: TranscriptQuery) -> TranscriptPage:
        """Return one page of segments sorted by ``(abs_start, id)``.

        Raises:
            InvalidCursorError: the cursor is malformed or belongs to another query.
        """

    # Whisper jobs --------------------------------------------------------------------------
    async def claim_job(
        self, worker: str, *, lease_s: float, max_attempts: int, now: datetime | None = None
    ) -> Track | None:
        """Atomically claim one recorded track (or one whose lease expired) for ``worker``.

        Tracks whose lease expired after their last allowed attempt are marked failed.
        """

    async def renew_lease(self, track_sid: str, worker: str, *, lease_s: float) -> bool:
        """Extend the lease; ``False`` when ``worker`` no longer holds it."""

    async def complete_job(self, track_sid: str, worker: str) -> bool:
        """Mark the claimed track transcribed; ``False`` when ``worker`` lost the claim."""

    async def finish_job(
        self,
        track_sid: str,
        worker: str,
        segments: Sequence[SegmentIn],
        *,
        stats: WhisperStats,
        lease_s: float,
    ) -> bool:
        """Store a job's Whisper transcript and mark the track transcribed, fenced by the lease.

        Nothing is written unless ``worker`` still holds an unexpired lease: a worker that
        lost its lease (paused, partitioned) cannot overwrite the transcript of the worker
        that took the job over. ``False`` when the lease was lost. SQLite does it in one
        transaction. MongoDB writes the segments as a new run beside the committed one
        (first extending the lease by ``lease_s``, so a takeover is unlikely meanwhile),
        then switches the track to that run and completes it in one document update under
        the lease; readers only ever see a track's committed run.
        """

    async def fail_job(
        self, track_sid: str, worker: str, error: str, *, max_attempts: int
    ) -> TrackStatus | None:
        """Record a failed attempt: back to ``recorded`` for a retry, or ``failed`` when spent.

        Returns the new status, or ``None`` when ``worker`` no longer held the claim.
        """

    async def release_job(self, track_sid: str, worker: str) -> bool:
        """Give a claim back unfinished (shutdown): the attempt does not count."""
