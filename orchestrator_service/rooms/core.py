"""What every part of the room lifecycle shares: state, LiveKit calls, time conversions.

LiveKit calls never run while a webhook waits: they go to a background queue, and each is
retried with exponential backoff on transient failures (:meth:`LifecycleCore._call`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TypeVar

from livekit.api.twirp_client import ServerError
from livekit.protocol.egress import EgressInfo as LkEgressInfo
from livekit.protocol.egress import EgressStatus as LkEgressStatus
from livekit.protocol.models import ParticipantInfo
from livekit.protocol.models import Room as LkRoom

from orchestrator_service.gateway import LiveKitGateway
from orchestrator_service.metrics import OrchestratorMetrics
from orchestrator_service.outbound.emitter import WebhookEmitter
from orchestrator_service.summary import (
    Summarizer,
)
from roomscribe.models import (
    Room,
    RoomStatus,
    Summary,
    utcnow,
)
from roomscribe.store import TranscriptStore

log = logging.getLogger("orchestrator_service.rooms")

T = TypeVar("T")

#: LiveKit errors that retrying cannot fix.
PERMANENT_ERRORS = frozenset(
    {
        "not_found",
        "invalid_argument",
        "permission_denied",
        "unauthenticated",
        "already_exists",
        "failed_precondition",  # e.g. stopping an egress that already ended by itself
    }
)
ENDED = {
    LkEgressStatus.EGRESS_COMPLETE,
    LkEgressStatus.EGRESS_FAILED,
    LkEgressStatus.EGRESS_ABORTED,
    LkEgressStatus.EGRESS_LIMIT_REACHED,
}
#: An egress that hit its limit still wrote a (shorter) file: transcribe what there is.
RECORDED = {LkEgressStatus.EGRESS_COMPLETE, LkEgressStatus.EGRESS_LIMIT_REACHED}
#: Rooms whose meeting was considered over and summarized (or being summarized).
DONE_ROOM = {RoomStatus.SUMMARIZING, RoomStatus.COMPLETED, RoomStatus.FAILED}


@dataclass(frozen=True)
class UnsavedSummary:
    """A summary the store failed to save, and the meeting (room sid) it summarizes."""

    meeting: str | None
    summary: Summary
    reason: str | None


class PermanentLiveKitError(Exception):
    """LiveKit refused a call in a way no retry will change."""


#: Times outside this span (epoch seconds) are taken as unset: a signed webhook may still
#: carry a zero, a typo or a year-3000 stamp, which datetime cannot even represent.
_SANE_EPOCH_S = (946_684_800.0, 4_102_444_800.0)  # 2000-01-01 .. 2100-01-01


def sane_epoch(seconds: float) -> datetime | None:
    """An epoch time in seconds, or ``None`` outside 2000-2100 (unset, a typo, forged)."""
    low, high = _SANE_EPOCH_S
    return datetime.fromtimestamp(seconds, UTC) if low <= seconds < high else None


def webhook_time(epoch: int) -> datetime:
    """A webhook's whole-second time, or now where it is unset or absurd."""
    return sane_epoch(float(epoch)) or utcnow()


def livekit_nanos(epoch_ns: int) -> datetime | None:
    """A LiveKit nanosecond timestamp, or ``None`` where it is unset (0) or absurd."""
    return sane_epoch(epoch_ns / 1e9)


def joined_at(participant: ParticipantInfo) -> datetime:
    """When a participant joined, as precisely as the server reports it."""
    # joined_at is whole seconds; joined_at_ms (LiveKit 1.7+) is what a time should use.
    return sane_epoch(participant.joined_at_ms / 1000) or webhook_time(participant.joined_at)


def requested_key(info: LkEgressInfo) -> str | None:
    """The file path this egress was started with, as LiveKit reports its request."""
    return info.track.file.filepath or None


def recording_span(info: LkEgressInfo) -> tuple[datetime | None, datetime | None]:
    """The recording's own start and end, as LiveKit reports them (nanoseconds).

    The file result's times say when the file's first and last samples were written, which
    is what Whisper's offsets count from; the egress's own times stand in where a server
    reports no file result (an egress still running, or one that failed).
    """
    files = list(info.file_results) or ([info.file] if info.HasField("file") else [])
    started = livekit_nanos(files[0].started_at) if files else None
    ended = livekit_nanos(files[0].ended_at) if files else None
    return started or livekit_nanos(info.started_at), ended or livekit_nanos(info.ended_at)


class LifecycleCore:
    """The lifecycle's state and its background LiveKit calls."""

    def __init__(
        self,
        store: TranscriptStore,
        gateway: LiveKitGateway,
        metrics: OrchestratorMetrics,
        summarizer: Summarizer,
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
        outbound: WebhookEmitter | None = None,
    ) -> None:
        """Wire the lifecycle to its store, LiveKit gateway, summarizer and metrics."""
        self._store = store
        #: Outgoing webhooks for applications (none configured: every call is a no-op).
        self.outbound = outbound or WebhookEmitter.disabled(store)
        self._lk = gateway
        self._metrics = metrics
        self._summarizer = summarizer
        self._summaries: set[asyncio.Task[None]] = set()
        #: A room summarizing for longer than this is assumed abandoned by a dead process.
        self.stale_summary_s = 1800.0
        #: Transient summary failures of one room before the extractive summary is stored.
        self.max_summary_attempts = 5
        self._summary_failures: dict[str, int] = {}
        #: Summaries made but not stored (the store failed while saving them), by room, with
        #: the meeting they belong to: the next attempt stores them instead of asking again.
        self._unsaved_summaries: dict[str, UnsavedSummary] = {}
        #: Rooms whose completion claim may have been applied although its answer was lost:
        #: a room left ``summarizing`` with no summary here is taken back at the next try.
        self._unsure_claims: set[str] = set()
        #: How long LiveKit must go on not listing a live room before it is finalized (a
        #: room is listed a moment after its first participant joins).
        self.room_gone_grace_s = 60.0
        self._missing_since: dict[str, float] = {}
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []

    def start(self, workers: int = 4) -> None:
        """Start the tasks that make LiveKit calls."""
        for i in range(workers):
            self._workers.append(asyncio.create_task(self._work(), name=f"livekit-calls-{i}"))

    async def close(self) -> None:
        """Stop the background tasks.

        Queued LiveKit calls are abandoned and summaries in progress cancelled; their rooms
        stay ``summarizing``/``recording`` and the reconciler picks them up again.
        """
        for task in [*self._workers, *self._summaries]:
            task.cancel()
        await asyncio.gather(*self._workers, *self._summaries, return_exceptions=True)
        self._workers.clear()

    async def idle(self) -> None:
        """Wait until queued LiveKit calls and running summaries have finished."""
        while True:
            await self._jobs.join()
            if not self._summaries:
                return
            await asyncio.gather(*self._summaries, return_exceptions=True)

    @property
    def queued(self) -> int:
        """LiveKit calls waiting to run."""
        return self._jobs.qsize()

    async def _work(self) -> None:
        while True:
            job = await self._jobs.get()
            try:
                await job()
            except Exception:  # one failed job must not stop the others; it is logged
                log.exception("background LiveKit job failed")
            finally:
                self._jobs.task_done()

    async def _call(self, op: str, call: Callable[[], Awaitable[T]]) -> T:
        """Call LiveKit with retries and exponential backoff on transient failures."""
        for attempt in range(1, self._attempts + 1):
            try:
                result = await call()
            except ServerError as exc:
                # A real server answers bad credentials with a plain-text 401 (code "unknown").
                permanent = exc.code in PERMANENT_ERRORS or exc.status in (401, 403)
                if permanent or attempt == self._attempts:
                    self._metrics.livekit_calls.labels(op=op, outcome="failed").inc()
                    raise PermanentLiveKitError(f"{op}: {exc.code}: {exc.message}") from exc
            except (OSError, TimeoutError) as exc:  # aiohttp's connection errors are OSErrors
                if attempt == self._attempts:
                    self._metrics.livekit_calls.labels(op=op, outcome="failed").inc()
                    raise PermanentLiveKitError(f"{op}: LiveKit unreachable: {exc}") from exc
            else:
                self._metrics.livekit_calls.labels(op=op, outcome="ok").inc()
                return result
            self._metrics.livekit_calls.labels(op=op, outcome="retry").inc()
            await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1))
        raise AssertionError("unreachable")

    async def _activate(self, room_name: str) -> None:
        # Someone is in the room, whether or not room_started arrived (or arrived first).
        await self._store.transition_room(
            room_name, to=RoomStatus.ACTIVE, from_={RoomStatus.REGISTERED, RoomStatus.EXPIRED}
        )

    async def _rooms(self, *statuses: RoomStatus) -> AsyncIterator[Room]:
        """Every room in any of ``statuses``, a store page at a time."""
        for status in statuses:
            cursor = None
            while True:
                page = await self._store.list_rooms(status=status, limit=100, cursor=cursor)
                for room in page.rooms:
                    yield room
                if page.next_cursor is None:
                    break
                cursor = page.next_cursor

    async def _open_rooms(self, names: list[str]) -> dict[str, LkRoom]:
        try:
            return await self._call("list_rooms", lambda: self._lk.open_rooms(names))
        except PermanentLiveKitError as exc:
            log.warning("cannot list LiveKit's rooms: %s", exc)
            return {}
