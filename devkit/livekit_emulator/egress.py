"""Track egress: records what a published track played while the egress ran.

An egress is requested at the clock's ``now``. It starts recording at ``now + delay``
(``egress_start_delay_s``, or a one-shot :meth:`TrackEgress.delay_next`): until then it is
STARTING, then it turns ACTIVE with ``started_at`` = that moment (``egress_updated``). It
stops when StopEgress is called, when its track is unpublished, or by itself once it has run
for its limit (``egress_limit_s``): then it ends EGRESS_LIMIT_REACHED while the track stays
published. The file holds exactly the samples the track played between start and stop
(:meth:`~devkit.livekit_emulator.rooms.TrackState.played_between`), encoded to OGG/Opus in a
background task, stored through the object store, and reported in ``file_results`` with
``started_at``/``ended_at`` (the start and the stop) and ``duration`` (the audio's length).

Endings that record nothing write no file. Stopped while still STARTING: EGRESS_ABORTED,
as LiveKit reports it ("Stop called before pipeline could start"; unpublished: "Start signal
not received"). Stopped while ACTIVE with no audio between start and stop (no time passed,
or the track's audio had ended): EGRESS_FAILED with the emulator's own error "no media
received", where LiveKit fails such an egress too. The errors, codes and ``details`` of
LIMIT_REACHED, ABORTED, COMPLETE and FAILED follow livekit/protocol's ``egress.go``
(LIMIT_REACHED carries ``error`` "Session limit reached" and code 413, and still has its
file).

Deadlines (a delayed start, a limit) are kept by a small watcher task that polls the clock
every 20 ms of real time, so they fire with a :class:`~devkit.livekit_emulator.ManualClock`
as with a scaled one; every API call and scripted change also applies the deadlines already
due first, so a test that moves a manual clock sees them without waiting.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final, Literal

from livekit.protocol.egress import (
    EgressInfo,
    EgressSourceType,
    EgressStatus,
    ListEgressRequest,
    ListEgressResponse,
    StopEgressRequest,
    TrackEgressRequest,
)

from devkit.livekit_emulator.clock import Clock
from devkit.livekit_emulator.recording import expand_filepath, store_recording, upload_location
from devkit.livekit_emulator.rooms import (
    NS_PER_S,
    RoomState,
    TrackState,
    copy_message,
    new_id,
)
from devkit.livekit_emulator.twirp import TwirpError
from roomscribe.errors import InvalidObjectKeyError, ObjectStoreError
from roomscribe.objectstore import ObjectStore, validate_key

#: Statuses of an egress that is still running (ListEgress ``active=True``).
ACTIVE_STATUSES: Final = frozenset(
    {EgressStatus.EGRESS_STARTING, EgressStatus.EGRESS_ACTIVE, EgressStatus.EGRESS_ENDING}
)

# LiveKit's own wording and codes (livekit/protocol, egress.go).
MSG_LIMIT_REACHED: Final = "Session limit reached"
MSG_STOPPED_BEFORE_STARTED: Final = "Stop called before pipeline could start"
MSG_START_NOT_RECEIVED: Final = "Start signal not received"
_LIMIT_REACHED_CODE: Final = 413
_ABORTED_CODE: Final = 412
_END_REASON_API: Final = "StopEgress API"
_END_REASON_SOURCE_CLOSED: Final = "Source closed"
_END_REASON_FAILURE: Final = "Failure"

#: The emulator's error for an egress that ran but recorded no audio.
NO_MEDIA: Final = "no media received"

#: Real seconds between two looks at the clock for due deadlines.
WATCH_INTERVAL_S: Final = 0.02

Emit = Callable[[str, EgressInfo], None]


@dataclass(frozen=True)
class _InjectedFailure:
    reason: str
    at: Literal["start", "end"]


@dataclass
class _Egress:
    info: EgressInfo
    track: TrackState | None
    key: str
    location: str
    failure: _InjectedFailure | None
    start_ns: int
    limit_ns: int | None
    stop_ns: int | None = None
    limit_reached: bool = False
    end_reason: str = ""
    finishing: asyncio.Task[None] | None = None


def _seconds_to_ns(seconds: float) -> int:
    return round(seconds * NS_PER_S)


def _check_delay(seconds: float) -> float:
    if seconds < 0:
        raise ValueError(f"an egress start delay must not be negative, got {seconds}")
    return seconds


def _check_limit(seconds: float | None) -> float | None:
    if seconds is not None and seconds <= 0:
        raise ValueError(f"an egress limit must be positive, got {seconds}")
    return seconds


class TrackEgress:
    """The track egresses of one emulator (see the module docstring).

    Args:
        object_store: Where recordings are written.
        clock: The emulator's clock (epoch ns).
        emit: Sends an egress webhook (``egress_started``, ...) for an EgressInfo.
        start_delay_s: Seconds from a StartTrackEgress request to the start of recording.
        limit_s: The longest an egress records before it stops by itself; ``None``: no limit.
    """

    def __init__(
        self,
        object_store: ObjectStore,
        clock: Clock,
        emit: Emit,
        *,
        start_delay_s: float = 0.0,
        limit_s: float | None = None,
    ) -> None:
        self._objects = object_store
        self._clock = clock
        self._emit = emit
        self.start_delay_s = _check_delay(start_delay_s)
        self.limit_s = _check_limit(limit_s)
        self._egresses: dict[str, _Egress] = {}
        # Egresses with a deadline still ahead: a start to become ACTIVE at, or a limit.
        self._pending: dict[str, _Egress] = {}
        self._failures: collections.deque[_InjectedFailure] = collections.deque()
        self._next_delays: collections.deque[float] = collections.deque()
        self._next_limits: collections.deque[float] = collections.deque()
        self._tasks: set[asyncio.Task[None]] = set()
        self._watcher: asyncio.Task[None] | None = None

    # One-shot knobs ------------------------------------------------------------------------
    def fail_next(self, reason: str, *, at: Literal["start", "end"] = "start") -> None:
        """Make the next started egress fail with ``error=reason`` (EGRESS_FAILED)."""
        self._failures.append(_InjectedFailure(reason, at))

    def delay_next(self, seconds: float) -> None:
        """Start recording the next egress ``seconds`` after its request (once)."""
        self._next_delays.append(_check_delay(seconds))

    def limit_next(self, seconds: float) -> None:
        """Stop the next egress by itself after ``seconds`` of recording (once)."""
        limit = _check_limit(seconds)
        assert limit is not None
        self._next_limits.append(limit)

    # Twirp methods -------------------------------------------------------------------------
    def info(self, egress_id: str) -> EgressInfo:
        """A copy of the egress's EgressInfo.

        Raises:
            KeyError: No such egress.
        """
        return copy_message(self._egresses[egress_id].info)

    def start(self, room: RoomState, request: TrackEgressRequest) -> EgressInfo:
        """StartTrackEgress in ``room``: the EgressInfo as the call returns it (STARTING).

        Raises:
            TwirpError: ``invalid_argument``, the request has no file output.
        """
        output = request.WhichOneof("output")
        if output != "file":
            raise TwirpError(
                "invalid_argument",
                "the emulator's track egress writes files only: set file, not websocket_url"
                if output
                else "missing output: set file.filepath",
            )
        track = room.find_track(request.track_id)
        now = self._clock()
        delay = self._next_delays.popleft() if self._next_delays else self.start_delay_s
        limit = self._next_limits.popleft() if self._next_limits else self.limit_s
        info = EgressInfo(
            egress_id=new_id("EG_"),
            room_id=room.sid,
            room_name=room.name,
            source_type=EgressSourceType.EGRESS_SOURCE_TYPE_SDK,
            status=EgressStatus.EGRESS_STARTING,
            updated_at=now,
            track=_redacted(request),
        )
        key = expand_filepath(request.file.filepath, room, request.track_id, track, now)
        egress = _Egress(
            info,
            track,
            key,
            upload_location(request.file, key),
            self._failures.popleft() if self._failures else None,
            start_ns=now + _seconds_to_ns(delay),
            limit_ns=None if limit is None else _seconds_to_ns(limit),
        )
        self._egresses[info.egress_id] = egress
        response = copy_message(info)
        self._emit("egress_started", info)

        error = None
        if egress.failure is not None and egress.failure.at == "start":
            error = egress.failure.reason
        elif track is None:
            error = "track not found"
        else:
            try:
                validate_key(key)
            except InvalidObjectKeyError as exc:
                error = f"invalid filepath: {exc}"
        if error is not None:
            self._end(egress, EgressStatus.EGRESS_FAILED, error=error)
            return response
        assert track is not None
        track.egress_ids.append(info.egress_id)
        if egress.start_ns <= now:
            self._activate(egress)
        if egress.info.status == EgressStatus.EGRESS_STARTING or egress.limit_ns is not None:
            self._pending[info.egress_id] = egress
            self._watch()
        return response

    def stop(self, request: StopEgressRequest) -> EgressInfo:
        """StopEgress: ENDING (completing in the background), or ABORTED before it started.

        Raises:
            TwirpError: ``not_found``, no such egress; ``failed_precondition``, it has ended.
        """
        egress = self._egresses.get(request.egress_id)
        if egress is None:
            raise TwirpError("not_found", "egress does not exist")
        status = egress.info.status
        if status == EgressStatus.EGRESS_STARTING:
            self._end(
                egress,
                EgressStatus.EGRESS_ABORTED,
                error=MSG_STOPPED_BEFORE_STARTED,
                error_code=_ABORTED_CODE,
            )
        elif status == EgressStatus.EGRESS_ACTIVE:
            self._finish(egress, stop_ns=self._clock(), reason=_END_REASON_API)
        else:
            name = EgressStatus.Name(status)
            raise TwirpError("failed_precondition", f"egress with status {name} cannot be stopped")
        return copy_message(egress.info)

    def list_egress(self, request: ListEgressRequest) -> ListEgressResponse:
        """ListEgress, filtered by room, egress id and ``active`` as LiveKit filters."""
        items = [
            copy_message(egress.info)
            for egress in self._egresses.values()
            if (not request.room_name or egress.info.room_name == request.room_name)
            and (not request.egress_id or egress.info.egress_id == request.egress_id)
            and (not request.active or egress.info.status in ACTIVE_STATUSES)
        ]
        return ListEgressResponse(items=items)

    # Track and clock events ----------------------------------------------------------------
    def track_closed(self, track: TrackState) -> list[asyncio.Task[None]]:
        """Stop the track's running egresses now (it was unpublished).

        Returns:
            The completions to await (recording stored, ``egress_ended`` queued).
        """
        now = self._clock()
        completing = []
        for egress_id in track.egress_ids:
            egress = self._egresses[egress_id]
            status = egress.info.status
            if status == EgressStatus.EGRESS_STARTING:
                self._end(
                    egress,
                    EgressStatus.EGRESS_ABORTED,
                    error=MSG_START_NOT_RECEIVED,
                    error_code=_ABORTED_CODE,
                )
            elif status == EgressStatus.EGRESS_ACTIVE:
                completing.append(
                    self._finish(egress, stop_ns=now, reason=_END_REASON_SOURCE_CLOSED)
                )
            elif egress.finishing is not None and not egress.finishing.done():
                completing.append(egress.finishing)
        return completing

    def tick(self) -> None:
        """Apply the deadlines the clock has reached: delayed starts, then limits."""
        if not self._pending:
            return
        now = self._clock()
        for egress in list(self._pending.values()):
            if egress.info.status == EgressStatus.EGRESS_STARTING and now >= egress.start_ns:
                self._activate(egress)
            if egress.info.status != EgressStatus.EGRESS_ACTIVE:
                continue
            if egress.limit_ns is None:
                self._pending.pop(egress.info.egress_id, None)
            elif now >= egress.start_ns + egress.limit_ns:
                egress.limit_reached = True
                self._finish(
                    egress, stop_ns=egress.start_ns + egress.limit_ns, reason=MSG_LIMIT_REACHED
                )

    async def wait_idle(self) -> None:
        """Apply due deadlines, then wait until every egress completion has run."""
        self.tick()
        while self._tasks:
            await asyncio.gather(*self._tasks)

    async def aclose(self) -> None:
        """Stop watching the clock and cancel running completions."""
        tasks = list(self._tasks)
        if self._watcher is not None:
            tasks.append(self._watcher)
            self._watcher = None
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    # Internals -----------------------------------------------------------------------------
    def _watch(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.get_running_loop().create_task(
                self._watch_clock(), name="livekit-egress-clock"
            )

    async def _watch_clock(self) -> None:
        while self._pending:
            await asyncio.sleep(WATCH_INTERVAL_S)
            self.tick()

    def _activate(self, egress: _Egress) -> None:
        info = egress.info
        info.status = EgressStatus.EGRESS_ACTIVE
        info.started_at = egress.start_ns
        info.updated_at = max(self._clock(), egress.start_ns)
        self._emit("egress_updated", info)

    def _finish(self, egress: _Egress, *, stop_ns: int, reason: str) -> asyncio.Task[None]:
        """Move the egress to ENDING now and complete it in the background (once)."""
        if egress.finishing is None:
            self._pending.pop(egress.info.egress_id, None)
            egress.stop_ns = stop_ns
            egress.end_reason = reason
            egress.info.status = EgressStatus.EGRESS_ENDING
            egress.info.updated_at = self._clock()
            task = asyncio.get_running_loop().create_task(self._complete(egress))
            egress.finishing = task
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
        return egress.finishing

    async def _complete(self, egress: _Egress) -> None:
        if egress.failure is not None:
            self._end(egress, EgressStatus.EGRESS_FAILED, error=egress.failure.reason)
            return
        assert egress.track is not None and egress.stop_ns is not None
        pcm = egress.track.played_between(egress.start_ns, egress.stop_ns)
        if not pcm.size:
            self._end(egress, EgressStatus.EGRESS_FAILED, error=NO_MEDIA)
            return
        try:
            result = await store_recording(
                self._objects,
                pcm,
                key=egress.key,
                location=egress.location,
                start_ns=egress.start_ns,
                stop_ns=egress.stop_ns,
            )
        except (ObjectStoreError, OSError) as exc:
            self._end(egress, EgressStatus.EGRESS_FAILED, error=f"upload failed: {exc}")
            return
        egress.info.file_results.append(result)
        # The deprecated single-file field, which LiveKit still fills for one file output.
        egress.info.file.CopyFrom(result)
        if egress.limit_reached:
            self._end(
                egress,
                EgressStatus.EGRESS_LIMIT_REACHED,
                error=MSG_LIMIT_REACHED,
                error_code=_LIMIT_REACHED_CODE,
            )
        else:
            self._end(egress, EgressStatus.EGRESS_COMPLETE)

    def _end(
        self, egress: _Egress, status: EgressStatus, *, error: str = "", error_code: int = 0
    ) -> None:
        self._pending.pop(egress.info.egress_id, None)
        now = self._clock()
        info = egress.info
        info.status = status
        info.error = error
        info.error_code = error_code
        if status == EgressStatus.EGRESS_FAILED:
            info.details = f"End reason: {_END_REASON_FAILURE}"
        elif egress.end_reason:
            info.details = f"End reason: {egress.end_reason}"
        info.ended_at = now if egress.stop_ns is None else egress.stop_ns
        info.updated_at = max(now, info.ended_at)
        self._emit("egress_ended", info)


def _redacted(request: TrackEgressRequest) -> TrackEgressRequest:
    """The request as EgressInfo reports it: LiveKit redacts upload credentials."""
    copy = copy_message(request)
    s3 = copy.file.s3
    for name in ("access_key", "secret", "session_token"):
        if getattr(s3, name):
            setattr(s3, name, "{" + name + "}")
    return copy
