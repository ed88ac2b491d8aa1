"""Completing rooms: finalize, the atomic completion step, and summaries.

A room completes once it is final and none of its tracks is pending; the store's
``complete_idle_room`` lets exactly one of the racing callers (every track status change
tries) win, and that one summarizes in the background. Summary failures are bounded: a
transient one hands the room back for a retry, a permanent one (or the last attempt) stores
the local extract with the reason; a shutdown hands the room back at once.
"""

from __future__ import annotations

import asyncio
import logging

from orchestrator_service.rooms.core import LifecycleCore, UnsavedSummary
from orchestrator_service.summary import (
    ExtractiveSummarizer,
    SummaryError,
    summarize_room,
)
from roomscribe.errors import StoreError
from roomscribe.models import (
    LIVE_ROOM_STATUSES,
    Room,
    RoomStatus,
    Summary,
    utcnow,
)

log = logging.getLogger("orchestrator_service.rooms")


class RoomCompletion(LifecycleCore):
    """Finalizing, completing and summarizing rooms."""

    async def finalize(self, room_name: str) -> bool:
        """The meeting is over: complete the room once no track is pending."""
        await self._store.transition_room(
            room_name, to=RoomStatus.FINAL_ROOM, from_=LIVE_ROOM_STATUSES
        )
        return await self.check_and_complete_room(room_name)

    async def check_and_complete_room(self, room_name: str) -> bool:
        """Complete the room if it is final and nothing is pending; ``True`` for the winner.

        Called on every track status change and on finalize, possibly concurrently: the
        store's atomic ``final_room -> summarizing`` step lets exactly one caller win, and
        never while a track is pending.

        Raises:
            StoreError: the store failed; the claim may have been applied, so the next try
                (the caller's, or the reconciler's) takes the room back first.
        """
        if room_name in self._unsure_claims and not self._summarizing(room_name):
            await self._take_back(room_name, "completion interrupted by a store failure")
        try:
            won = await self._store.complete_idle_room(room_name)
        except StoreError:
            # The claim is more than one write on some stores, and an answer can be lost
            # after the write: the room may now be summarizing with nobody summarizing it.
            self._unsure_claims.add(room_name)
            raise
        self._unsure_claims.discard(room_name)
        if not won:
            return False
        self._summarize_in_background(room_name)
        return True

    def _summarizing(self, room_name: str) -> bool:
        """Whether this process runs a summary of the room now."""
        return any(t.get_name() == f"summary-{room_name}" for t in self._summaries)

    async def _take_back(self, room_name: str, reason: str) -> None:
        """A summarizing room nobody here summarizes goes back to final_room to be retried."""
        await self._store.transition_room(
            room_name, to=RoomStatus.FINAL_ROOM, from_={RoomStatus.SUMMARIZING}, reason=reason
        )
        self._unsure_claims.discard(room_name)

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
        unsaved = self._unsaved_summaries.pop(room_name, None)
        if unsaved is not None:
            try:
                meeting = _meeting_key(await self._store.get_room(room_name))
            except Exception as exc:  # a task boundary: the room must not stay stuck
                self._unsaved_summaries[room_name] = unsaved
                await self._crashed(room_name, exc)
                return
            if meeting == unsaved.meeting:
                # Made before the store failed to save it: store it, rather than pay (and
                # wait) for the same summary again.
                await self._complete(room_name, unsaved.summary, reason=unsaved.reason)
                return
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
        try:
            await self._store.set_summary(room_name, summary)
            completed = await self._store.transition_room(
                room_name, to=RoomStatus.COMPLETED, from_={RoomStatus.SUMMARIZING}, reason=reason
            )
        except StoreError as exc:
            await self._keep_unsaved(room_name, summary, reason, exc)
            return
        self.outbound.summary_stored(room_name, summary, completed=completed)
        self._summary_failures.pop(room_name, None)
        self._unsaved_summaries.pop(room_name, None)
        self._metrics.summaries.labels(outcome="ok").inc()
        self._metrics.rooms_completed.inc()

    async def _keep_unsaved(
        self, room_name: str, summary: Summary, reason: str | None, exc: StoreError
    ) -> None:
        """The store failed while saving a summary: keep it here for the next try."""
        log.warning("summary made but not stored, will retry: %s", exc, extra={"room": room_name})
        try:
            meeting = _meeting_key(await self._store.get_room(room_name))
        except StoreError:
            meeting = None
        if meeting is None:
            # Which meeting it summarizes is unknown: asking the LLM again is the safe way.
            await self._hand_back(room_name, f"summary not stored, will retry: {exc}")
            return
        self._unsaved_summaries[room_name] = UnsavedSummary(meeting, summary, reason)
        try:
            handed = await self._store.transition_room(
                room_name,
                to=RoomStatus.FINAL_ROOM,
                from_={RoomStatus.SUMMARIZING},
                reason=f"summary not stored, will retry: {exc}",
            )
        except StoreError as again:
            # Left summarizing; the reconciler sees the unsaved summary and takes it back.
            log.warning("could not hand a room back: %s", again, extra={"room": room_name})
            return
        if not handed:
            # No longer summarizing: the completion was applied and only its answer lost,
            # or the room moved on (a new meeting, a regenerate) without this summary.
            self._unsaved_summaries.pop(room_name, None)

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

    async def _resume_stale_summary(self, room: Room) -> None:
        # A summary whose process died leaves the room summarizing; another instance may be
        # working on it, so only one stale for far longer than any summary run is restarted.
        # One this process knows nobody runs (its claim or its save failed) is taken at once.
        if self._summarizing(room.name):
            return
        mine = room.name in self._unsure_claims or room.name in self._unsaved_summaries
        age = (utcnow() - room.updated_at).total_seconds()
        if not mine and age < self.stale_summary_s:
            return
        if await self._store.transition_room(
            room.name,
            to=RoomStatus.FINAL_ROOM,
            from_={RoomStatus.SUMMARIZING},
            reason="summary interrupted; retrying",
        ):
            self._unsure_claims.discard(room.name)
            self._metrics.repairs.labels(kind="stale_summary").inc()
            await self.check_and_complete_room(room.name)


def _meeting_key(room: Room) -> str:
    """Which meeting of a room name this is: a reused name is a new meeting (a new sid)."""
    return f"{room.sid}@{room.created_at.isoformat()}"
