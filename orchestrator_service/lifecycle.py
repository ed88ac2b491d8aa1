"""Room and track lifecycle: what webhooks, the agent and the reconciler make happen.

Every handler is idempotent and tolerates events out of order, because LiveKit retries
webhooks, may drop them when its queue is full, and delivers them concurrently. State moves
only through conditional store updates, so a duplicate or late event cannot move a track or
room backwards. Calls to LiveKit (egress start and stop) never run while a webhook waits:
they go to a background queue with retries and backoff.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import TypeVar

from livekit.api.twirp_client import ServerError
from livekit.protocol.egress import EgressInfo as LkEgressInfo
from livekit.protocol.egress import EgressStatus as LkEgressStatus
from livekit.protocol.models import ParticipantInfo, TrackType
from livekit.protocol.models import Room as LkRoom
from livekit.protocol.webhook import WebhookEvent

from orchestrator_service.gateway import LiveKitGateway, audio_tracks, recording_key
from orchestrator_service.metrics import OrchestratorMetrics
from orchestrator_service.summary import (
    ExtractiveSummarizer,
    Summarizer,
    SummaryError,
    summarize_room,
)
from roomscribe.errors import StoreError
from roomscribe.models import (
    LIVE_ROOM_STATUSES,
    EgressInfo,
    EgressStatus,
    Room,
    RoomStatus,
    Summary,
    TrackCreate,
    TrackStatus,
    utcnow,
)
from roomscribe.store import TranscriptStore
from roomscribe.store.common import archive_key

log = logging.getLogger(__name__)

T = TypeVar("T")

#: LiveKit errors that retrying cannot fix.
_PERMANENT = frozenset(
    {
        "not_found",
        "invalid_argument",
        "permission_denied",
        "unauthenticated",
        "already_exists",
        "failed_precondition",  # e.g. stopping an egress that already ended by itself
    }
)
_ENDED = {
    LkEgressStatus.EGRESS_COMPLETE,
    LkEgressStatus.EGRESS_FAILED,
    LkEgressStatus.EGRESS_ABORTED,
    LkEgressStatus.EGRESS_LIMIT_REACHED,
}
#: An egress that hit its limit still wrote a (shorter) file: transcribe what there is.
_RECORDED = {LkEgressStatus.EGRESS_COMPLETE, LkEgressStatus.EGRESS_LIMIT_REACHED}
_LIVE_ROOM = LIVE_ROOM_STATUSES
#: Rooms whose meeting was considered over and summarized (or being summarized).
_DONE_ROOM = {RoomStatus.SUMMARIZING, RoomStatus.COMPLETED, RoomStatus.FAILED}


class PermanentLiveKitError(Exception):
    """LiveKit refused a call in a way no retry will change."""


#: Times outside this span (epoch seconds) are taken as unset: a signed webhook may still
#: carry a zero, a typo or a year-3000 stamp, which datetime cannot even represent.
_SANE_EPOCH_S = (946_684_800.0, 4_102_444_800.0)  # 2000-01-01 .. 2100-01-01


def _epoch(seconds: float) -> datetime | None:
    low, high = _SANE_EPOCH_S
    return datetime.fromtimestamp(seconds, UTC) if low <= seconds < high else None


def _when(epoch: int) -> datetime:
    """A webhook's whole-second time, or now where it is unset or absurd."""
    return _epoch(float(epoch)) or utcnow()


def _nanos(epoch_ns: int) -> datetime | None:
    """A LiveKit nanosecond timestamp, or ``None`` where it is unset (0) or absurd."""
    return _epoch(epoch_ns / 1e9)


def _joined_at(participant: ParticipantInfo) -> datetime:
    # joined_at is whole seconds; joined_at_ms (LiveKit 1.7+) is what a time should use.
    return _epoch(participant.joined_at_ms / 1000) or _when(participant.joined_at)


def _requested_key(info: LkEgressInfo) -> str | None:
    """The file path this egress was started with, as LiveKit reports its request."""
    return info.track.file.filepath or None


def recording_span(info: LkEgressInfo) -> tuple[datetime | None, datetime | None]:
    """The recording's own start and end, as LiveKit reports them (nanoseconds).

    The file result's times say when the file's first and last samples were written, which
    is what Whisper's offsets count from; the egress's own times stand in where a server
    reports no file result (an egress still running, or one that failed).
    """
    files = list(info.file_results) or ([info.file] if info.HasField("file") else [])
    started = _nanos(files[0].started_at) if files else None
    ended = _nanos(files[0].ended_at) if files else None
    return started or _nanos(info.started_at), ended or _nanos(info.ended_at)


class RoomLifecycle:
    """Applies LiveKit events and agent calls to the registry, and drives egress."""

    def __init__(
        self,
        store: TranscriptStore,
        gateway: LiveKitGateway,
        metrics: OrchestratorMetrics,
        summarizer: Summarizer,
        *,
        attempts: int = 5,
        backoff_s: float = 0.5,
    ) -> None:
        """Wire the lifecycle to its store, LiveKit gateway, summarizer and metrics."""
        self._store = store
        self._lk = gateway
        self._metrics = metrics
        self._summarizer = summarizer
        self._summaries: set[asyncio.Task[None]] = set()
        #: A room summarizing for longer than this is assumed abandoned by a dead process.
        self.stale_summary_s = 1800.0
        #: Transient summary failures of one room before the extractive summary is stored.
        self.max_summary_attempts = 5
        self._summary_failures: dict[str, int] = {}
        #: How long LiveKit must go on not listing a live room before it is finalized (a
        #: room is listed a moment after its first participant joins).
        self.room_gone_grace_s = 60.0
        self._missing_since: dict[str, float] = {}
        self._attempts = attempts
        self._backoff_s = backoff_s
        self._jobs: asyncio.Queue[Callable[[], Awaitable[None]]] = asyncio.Queue()
        self._workers: list[asyncio.Task[None]] = []

    # Background LiveKit calls --------------------------------------------------------------
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
                permanent = exc.code in _PERMANENT or exc.status in (401, 403)
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

    # Webhooks ------------------------------------------------------------------------------
    async def handle(self, event: WebhookEvent) -> str:
        """Apply one verified webhook; returns what happened (for metrics and logs)."""
        kind = event.event
        if event.room.name:
            room = await self._meeting(
                event.room.name, event.room.sid or None, _epoch(event.room.creation_time)
            )
        elif event.egress_info.room_name:
            # Egress events are applied by track sid, whichever meeting the track is in.
            room = await self._store.find_room(event.egress_info.room_name)
        else:
            room = None
        if room is None:
            log.debug("webhook for an unregistered room ignored", extra={"event": kind})
            return "ignored"
        if kind == "room_started":
            await self._activate(room.name)
        elif kind == "room_finished":
            await self.finalize(room.name)
        elif kind in ("participant_joined", "participant_left"):
            if event.participant.identity:
                await self._store.add_participant(room.name, event.participant.identity)
            if kind == "participant_joined":
                await self._activate(room.name)
        elif kind == "track_published":
            if event.track.type != TrackType.AUDIO:
                return "ignored"
            await self.track_published(
                room,
                identity=event.participant.identity,
                name=event.participant.name or None,
                track_sid=event.track.sid,
                # Whole seconds: the track's publish time is metadata, never a clock.
                published_at=_when(event.created_at),
            )
        elif kind == "track_unpublished":
            await self.track_unpublished(event.track.sid)
        elif kind in ("egress_started", "egress_updated"):
            await self.egress_progress(event.egress_info)
        elif kind == "egress_ended":
            await self.egress_ended(event.egress_info)
        else:
            return "ignored"
        return "handled"

    async def _meeting(self, name: str, sid: str | None, created: datetime | None) -> Room | None:
        """The registered meeting an event of LiveKit room ``name`` (instance ``sid``) is of.

        A room's sid names one instance of it: when LiveKit opens a new room of a name
        whose meeting has ended (or whose ``room_finished`` was lost), the new sid starts a
        new meeting and the earlier one is kept under its own key. A late event of an
        earlier instance goes to where that meeting is kept. ``None``: not registered.
        """
        room = await self._store.find_room(name)
        if room is None or sid is None:
            return room
        if room.sid is None or room.sid == sid:
            if room.sid is None or (created is not None and room.livekit_created_at is None):
                room = await self._store.register_room(name, sid=sid, livekit_created_at=created)
            return room
        known = room.livekit_created_at
        if created is not None and known is not None and created <= known:
            earlier = await self._store.find_room(archive_key(name, sid))
            return earlier if earlier is not None and earlier.meeting_of == name else None
        archived = await self._store.archive_room(name, sid=room.sid)
        if archived is not None:
            self._metrics.repairs.labels(kind="new_meeting").inc()
            log.info(
                "LiveKit opened a new room %r; its earlier meeting is kept as %r",
                name,
                archived.name,
                extra={"room": name},
            )
            await self.check_and_complete_room(archived.name)
        return await self._store.register_room(name, sid=sid, livekit_created_at=created)

    async def track_published(
        self,
        room: Room,
        *,
        identity: str,
        name: str | None,
        track_sid: str,
        published_at: datetime,
    ) -> None:
        """Record the track and have its egress started (once).

        A track published after the meeting was finalized (an agent's early finalize, a
        ``room_finished`` forged or delivered early) is recorded all the same, and a
        completed room goes back to ``final_room``: it completes again, summary included,
        once the late track is transcribed.
        """
        await self._store.add_participant(room.name, identity)
        await self._activate(room.name)
        track = await self._store.upsert_track(
            TrackCreate(
                track_sid=track_sid,
                room=room.name,
                participant_identity=identity,
                participant_name=name,
                published_at=published_at,
            )
        )
        # After the upsert: a completion that ran before it saw no pending track, and is
        # undone here; one that runs after it sees the track and waits for it.
        if await self._store.transition_room(
            room.name,
            to=RoomStatus.FINAL_ROOM,
            from_=_DONE_ROOM,
            reason=f"reopened: track {track_sid} was published after the meeting ended",
        ):
            self._metrics.repairs.labels(kind="late_track").inc()
            log.info("late track: room reopened", extra={"room": room.name})
        if track.status is TrackStatus.RECORDING and track.egress.status is None:
            await self._jobs.put(lambda: self._start_egress(track_sid))

    async def _start_egress(self, track_sid: str) -> None:
        # Claimed atomically, not checked: duplicate webhooks delivered at once, the sweep
        # and the reconciler may all queue this, and a check before the awaited LiveKit
        # call lets each of them start an egress of its own.
        if not await self._store.claim_egress_start(track_sid):
            return
        track = await self._store.get_track(track_sid)
        key = recording_key(track.room, track.participant_identity, track_sid)
        try:
            info = await self._call(
                "start_track_egress",
                lambda: self._lk.start_track_egress(track.room, track_sid, key),
            )
        except PermanentLiveKitError as exc:
            await self._fail_track(track_sid, f"egress could not start: {exc}")
            return
        # Its webhooks may have been handled during the call: keep what they recorded.
        current = (await self._store.get_track(track_sid)).egress
        ours = current.id == info.egress_id
        await self._store.update_egress(
            track_sid,
            EgressInfo(
                id=info.egress_id,
                status=current.status if ours and current.status else EgressStatus.STARTING,
                object_key=key,
                started_at=current.started_at if ours else recording_span(info)[0],
                updated_at=utcnow(),
            ),
        )
        if info.status in _ENDED:  # it ended before its start was even recorded
            await self.egress_ended(info)

    async def _activate(self, room_name: str) -> None:
        # Someone is in the room, whether or not room_started arrived (or arrived first).
        await self._store.transition_room(
            room_name, to=RoomStatus.ACTIVE, from_={RoomStatus.REGISTERED, RoomStatus.EXPIRED}
        )

    async def track_unpublished(self, track_sid: str) -> None:
        """Have the track's egress stopped (LiveKit then reports its end)."""
        track = await self._store.find_track(track_sid)
        if track is None or track.status is not TrackStatus.RECORDING:
            return
        await self._jobs.put(lambda: self._stop_egress(track_sid))

    async def _stop_egress(self, track_sid: str) -> None:
        track = await self._store.get_track(track_sid)
        egress_id = track.egress.id
        if track.status is not TrackStatus.RECORDING or egress_id is None:
            return
        try:
            await self._call("stop_egress", lambda: self._lk.stop_egress(egress_id))
        except PermanentLiveKitError as exc:
            # Usually: it already ended by itself (track gone); egress_ended tells the rest.
            log.info("stop egress: %s", exc, extra={"track_sid": track_sid})

    async def egress_progress(self, info: LkEgressInfo) -> None:
        """Note that an egress started or is running."""
        track = await self._store.find_track(info.track.track_id)
        if track is None or track.status is not TrackStatus.RECORDING:
            return
        status = (
            EgressStatus.ACTIVE
            if info.status == LkEgressStatus.EGRESS_ACTIVE
            else EgressStatus.STARTING
        )
        started, _ = recording_span(info)
        await self._store.update_egress(
            track.track_sid,
            track.egress.model_copy(
                update={
                    "id": info.egress_id,
                    "status": status,
                    # The start call may not have recorded the key yet: LiveKit echoes it.
                    "object_key": track.egress.object_key or _requested_key(info),
                    "started_at": started or track.egress.started_at,
                    "updated_at": utcnow(),
                }
            ),
        )

    async def egress_ended(self, info: LkEgressInfo) -> None:
        """A recording finished: the track becomes claimable by Whisper, or failed."""
        track = await self._store.find_track(info.track.track_id)
        if track is None:
            log.info("egress_ended for an unknown track", extra={"egress_id": info.egress_id})
            return
        ok = info.status in _RECORDED
        key = track.egress.object_key or _requested_key(info)
        if track.status is TrackStatus.RECORDING:
            started, ended = recording_span(info)
            await self._store.update_egress(
                track.track_sid,
                EgressInfo(
                    id=info.egress_id,
                    status=EgressStatus.COMPLETE if ok else EgressStatus.FAILED,
                    object_key=key,
                    error=info.error or None,
                    started_at=started or track.egress.started_at,
                    ended_at=ended,
                    updated_at=utcnow(),
                ),
            )
        if ok:
            await self._store.set_track_status(
                track.track_sid, TrackStatus.RECORDED, from_={TrackStatus.RECORDING}
            )
            await self.check_and_complete_room(track.room)
        else:
            reason = info.error or LkEgressStatus.Name(info.status)
            await self._fail_track(track.track_sid, f"egress failed: {reason}")

    async def _fail_track(self, track_sid: str, reason: str) -> None:
        if await self._store.set_track_status(
            track_sid, TrackStatus.FAILED, from_={TrackStatus.RECORDING}, reason=reason
        ):
            log.warning("track failed: %s", reason, extra={"track_sid": track_sid})
        track = await self._store.get_track(track_sid)
        await self.check_and_complete_room(track.room)

    # Agent calls ---------------------------------------------------------------------------
    async def register(self, room_name: str) -> Room:
        """Register a room and sweep tracks published before registration."""
        listed = await self._open_rooms([room_name])
        if room_name in listed:
            lk_room = listed[room_name]
            sid, created = lk_room.sid or None, _epoch(lk_room.creation_time)
        else:
            sid, created = None, None
        room = await self._meeting(room_name, sid, created)
        if room is None:
            room = await self._store.register_room(room_name, sid=sid, livekit_created_at=created)
        try:
            participants = await self._call(
                "list_participants", lambda: self._lk.list_participants(room_name)
            )
        except PermanentLiveKitError as exc:
            log.warning("sweep skipped: %s", exc, extra={"room": room_name})
            return room
        if participants:
            await self._activate(room_name)
            # People are still in it: a room finalized by a job that stopped early (an
            # agent restart) is reopened, so its later tracks make it into the summary.
            if await self._store.transition_room(
                room_name,
                to=RoomStatus.ACTIVE,
                from_={RoomStatus.FINAL_ROOM, *_DONE_ROOM},
                reason="reopened: the meeting goes on",
            ):
                log.info("final room reopened", extra={"room": room_name})
        for participant in participants:
            for track_sid in audio_tracks(participant):
                await self.track_published(
                    room,
                    identity=participant.identity,
                    name=participant.name or None,
                    track_sid=track_sid,
                    published_at=_joined_at(participant),
                )
        return await self._store.get_room(room_name)

    async def finalize(self, room_name: str) -> bool:
        """The meeting is over: complete the room once no track is pending."""
        await self._store.transition_room(room_name, to=RoomStatus.FINAL_ROOM, from_=_LIVE_ROOM)
        return await self.check_and_complete_room(room_name)

    async def check_and_complete_room(self, room_name: str) -> bool:
        """Complete the room if it is final and nothing is pending; ``True`` for the winner.

        Called on every track status change and on finalize, possibly concurrently: the
        store's atomic ``final_room -> summarizing`` step lets exactly one caller win, and
        never while a track is pending.
        """
        if not await self._store.complete_idle_room(room_name):
            return False
        self._summarize_in_background(room_name)
        return True

    async def regenerate_summary(self, room_name: str) -> bool:
        """Summarize a completed (or failed-summary) room again; ``False`` if it is not ready."""
        if await self._store.count_pending_tracks(room_name) > 0:
            return False
        await self._store.transition_room(
            room_name,
            to=RoomStatus.FINAL_ROOM,
            from_={RoomStatus.COMPLETED},
            reason="summary requested again",
        )
        return await self.check_and_complete_room(room_name)

    def _summarize_in_background(self, room_name: str) -> None:
        # An LLM call over a long meeting takes minutes: never inside a webhook or request.
        task = asyncio.get_running_loop().create_task(
            self._summarize(room_name), name=f"summary-{room_name}"
        )
        self._summaries.add(task)
        task.add_done_callback(self._summaries.discard)

    async def _summarize(self, room_name: str) -> None:
        try:
            summary = await summarize_room(self._store, room_name, self._summarizer)
        except SummaryError as exc:
            failures = self._summary_failures.get(room_name, 0) + 1
            self._summary_failures[room_name] = failures
            self._metrics.summaries.labels(outcome="failed").inc()
            if exc.transient and failures < self.max_summary_attempts:
                # The transcript is untouched; back to final_room, so the reconciler (or an
                # admin's regenerate) tries again.
                log.warning("summary failed, will retry: %s", exc, extra={"room": room_name})
                await self._hand_back(room_name, f"summary failed, will retry: {exc}")
                return
            # A refusal no retry changes (bad key, unknown model), or an outage that outlived
            # every attempt: the meeting still gets the local extract, and says why.
            log.error("LLM summary given up: %s", exc, extra={"room": room_name})
            try:
                summary = await summarize_room(self._store, room_name, ExtractiveSummarizer())
            except Exception as fallback_exc:  # handed back and logged: never stuck
                await self._crashed(room_name, fallback_exc)
                return
            await self._complete(room_name, summary, reason=f"LLM summary failed: {exc}")
            return
        except asyncio.CancelledError:
            # Shutdown (a deploy): hand the room back now rather than leave it summarizing
            # until the stale-summary repair, so another instance summarizes it at once.
            await asyncio.shield(self._hand_back(room_name, "summary interrupted by shutdown"))
            raise
        except Exception as exc:  # a task boundary: the room must not stay stuck
            await self._crashed(room_name, exc)
            return
        await self._complete(room_name, summary)

    async def _complete(
        self, room_name: str, summary: Summary, *, reason: str | None = None
    ) -> None:
        self._summary_failures.pop(room_name, None)
        await self._store.set_summary(room_name, summary)
        await self._store.transition_room(
            room_name, to=RoomStatus.COMPLETED, from_={RoomStatus.SUMMARIZING}, reason=reason
        )
        self._metrics.summaries.labels(outcome="ok").inc()
        self._metrics.rooms_completed.inc()

    async def _crashed(self, room_name: str, exc: BaseException) -> None:
        log.error("summary crashed", exc_info=exc, extra={"room": room_name})
        self._summary_failures[room_name] = self._summary_failures.get(room_name, 0) + 1
        self._metrics.summaries.labels(outcome="failed").inc()
        await self._hand_back(room_name, f"summary failed unexpectedly, will retry: {exc!r}")

    async def _hand_back(self, room_name: str, reason: str) -> None:
        """Put a summarizing room back to final_room (retried by the reconciler)."""
        try:
            await self._store.transition_room(
                room_name, to=RoomStatus.FINAL_ROOM, from_={RoomStatus.SUMMARIZING}, reason=reason
            )
        except StoreError as exc:
            # Left summarizing: the stale-summary repair takes it over later.
            log.warning("could not hand a room back: %s", exc, extra={"room": room_name})

    # Reconciler ----------------------------------------------------------------------------
    async def reconcile(self) -> None:
        """Repair what lost webhooks left behind, for every live or final room."""
        try:
            await self._finalize_forgotten_rooms()
        except PermanentLiveKitError as exc:
            log.warning("reconcile: cannot list LiveKit's rooms: %s", exc)
        # Registered rooms too: their room_started or first track may be the lost webhook.
        async for room in self._rooms(
            RoomStatus.REGISTERED,
            RoomStatus.ACTIVE,
            RoomStatus.FINAL_ROOM,
            RoomStatus.SUMMARIZING,
        ):
            try:
                await self.reconcile_room(room)
            except PermanentLiveKitError as exc:
                log.warning("reconcile: %s", exc, extra={"room": room.name})

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

    async def _finalize_forgotten_rooms(self) -> None:
        """Finalize live rooms LiveKit has not listed for ``room_gone_grace_s``.

        The meeting is over when LiveKit says so: ``room_finished`` can be lost (LiveKit
        drops webhooks when its queue is full) and the agent that would finalize may have
        crashed with it; without this such a room stays ``active`` for ever. A room LiveKit
        lists under another sid is a new meeting of that name (the earlier one is kept and
        finalized). A room nobody ever joined expires instead of being summarized.
        """
        live = [room async for room in self._rooms(*_LIVE_ROOM)]
        now = time.monotonic()
        for start in range(0, len(live), 100):
            batch = live[start : start + 100]
            listed = await self._call(
                "list_rooms",
                lambda b=batch: self._lk.open_rooms([r.name for r in b]),  # type: ignore[misc]
            )
            for room in batch:
                lk_room = listed.get(room.name)
                if lk_room is not None and room.sid is not None and lk_room.sid != room.sid:
                    await self._meeting(room.name, lk_room.sid, _epoch(lk_room.creation_time))
                    continue
                if lk_room is not None:
                    self._missing_since.pop(room.name, None)
                    continue
                since = self._missing_since.setdefault(room.name, now)
                if now - since >= self.room_gone_grace_s:
                    self._missing_since.pop(room.name, None)
                    await self._close_forgotten(room)

    async def _close_forgotten(self, room: Room) -> None:
        if (
            room.status is RoomStatus.REGISTERED
            and not room.participants
            and not await self._store.list_tracks(room.name)
        ):
            if await self._store.transition_room(
                room.name,
                to=RoomStatus.EXPIRED,
                from_={RoomStatus.REGISTERED},
                reason="nobody joined before LiveKit closed the room",
            ):
                self._metrics.repairs.labels(kind="room_expired").inc()
                log.info("registered room expired unused", extra={"room": room.name})
            return
        self._metrics.repairs.labels(kind="room_gone").inc()
        log.info("LiveKit no longer lists the room: finalizing", extra={"room": room.name})
        await self._store.transition_room(
            room.name,
            to=RoomStatus.FINAL_ROOM,
            from_=_LIVE_ROOM,
            reason="LiveKit no longer lists the room",
        )
        await self.check_and_complete_room(room.name)

    async def reconcile_room(self, room: Room) -> None:
        """Compare one room's tracks with LiveKit's egress list and fix differences."""
        if room.status is RoomStatus.SUMMARIZING:
            await self._resume_stale_summary(room)
            return
        tracks = [t for t in await self._store.list_tracks(room.name)]
        recording = [t for t in tracks if t.status is TrackStatus.RECORDING]
        if recording:
            egresses = await self._call("list_egress", lambda: self._lk.list_egress(room.name))
            by_track = {e.track.track_id: e for e in egresses if e.track.track_id}
            published: set[str] | None = None
            for track in recording:
                egress = by_track.get(track.track_sid)
                if egress is not None and egress.status in _ENDED:
                    self._metrics.repairs.labels(kind="lost_egress_ended").inc()
                    await self.egress_ended(egress)
                elif egress is not None and track.egress.id is None:
                    self._metrics.repairs.labels(kind="lost_egress_started").inc()
                    await self.egress_progress(egress)
                elif egress is None and track.egress.id is None:
                    if published is None:
                        published = await self._published_tracks(room.name)
                    if track.track_sid in published:
                        self._metrics.repairs.labels(kind="missing_egress").inc()
                        await self._jobs.put(
                            lambda sid=track.track_sid: self._start_egress(sid)  # type: ignore[misc]
                        )
                    elif room.status is RoomStatus.FINAL_ROOM:
                        self._metrics.repairs.labels(kind="never_recorded").inc()
                        await self._fail_track(
                            track.track_sid, "the track ended before its recording started"
                        )
        if room.status is RoomStatus.FINAL_ROOM:
            await self.check_and_complete_room(room.name)

    async def _resume_stale_summary(self, room: Room) -> None:
        # A summary whose process died leaves the room summarizing; another instance may be
        # working on it, so only one stale for far longer than any summary run is restarted.
        age = (utcnow() - room.updated_at).total_seconds()
        mine = any(t.get_name() == f"summary-{room.name}" for t in self._summaries)
        if mine or age < self.stale_summary_s:
            return
        if await self._store.transition_room(
            room.name,
            to=RoomStatus.FINAL_ROOM,
            from_={RoomStatus.SUMMARIZING},
            reason="summary interrupted; retrying",
        ):
            self._metrics.repairs.labels(kind="stale_summary").inc()
            await self.check_and_complete_room(room.name)

    async def _published_tracks(self, room_name: str) -> set[str]:
        try:
            participants = await self._call(
                "list_participants", lambda: self._lk.list_participants(room_name)
            )
        except PermanentLiveKitError:
            return set()
        return {sid for p in participants for sid in audio_tracks(p)}
