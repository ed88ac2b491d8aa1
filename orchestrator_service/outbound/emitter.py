"""The room lifecycle's side of outgoing webhooks: one call where each thing happens.

The lifecycle holds a :class:`WebhookEmitter` (``lifecycle.outbound``) and calls it, without
awaiting, when a summary is stored (and the room completed) and when a track's Whisper pass
is reported finished. The emitter builds the events the settings ask for and hands them to
the :class:`~orchestrator_service.outbound.delivery.WebhookDispatcher`; with no target
configured every call returns at once and nothing else runs.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from datetime import datetime
from typing import Any

from prometheus_client import CollectorRegistry

from orchestrator_service.outbound import events
from orchestrator_service.outbound.config import WebhookConfig
from orchestrator_service.outbound.delivery import (
    DeliveryRecord,
    DeliveryStatus,
    WebhookDispatcher,
)
from orchestrator_service.outbound.events import EventType, OutboundEvent
from orchestrator_service.outbound.targets import Resolver, system_resolver
from roomscribe.errors import StoreError
from roomscribe.models import Room, Summary, Track, TrackStatus, utcnow
from roomscribe.store import TranscriptStore

log = logging.getLogger("orchestrator_service.outbound")


class WebhookEmitter:
    """Turns lifecycle changes into outgoing events, never blocking the lifecycle."""

    def __init__(
        self,
        config: WebhookConfig,
        store: TranscriptStore,
        *,
        resolver: Resolver = system_resolver,
        registry: CollectorRegistry | None = None,
    ) -> None:
        """Emit what ``config`` asks for, reading room snapshots from ``store``.

        Args:
            config: The webhook settings; without targets the emitter does nothing.
            store: The transcript store (for the room's participants and tracks).
            resolver: Resolves target hosts (tests resolve names to chosen addresses).
            registry: Where the delivery counter is registered.

        Raises:
            ConfigurationError: a target URL is unusable.
        """
        self._config = config
        self._store = store
        self._dispatcher = (
            WebhookDispatcher(config, resolver=resolver, registry=registry)
            if config.enabled
            else None
        )
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    def disabled(cls, store: TranscriptStore) -> WebhookEmitter:
        """An emitter with no target: every call is a no-op."""
        return cls(WebhookConfig(), store)

    @property
    def enabled(self) -> bool:
        """Whether any target is configured."""
        return self._dispatcher is not None

    @property
    def targets(self) -> list[str]:
        """The targets, without their queries."""
        return [] if self._dispatcher is None else self._dispatcher.targets

    @property
    def pending(self) -> int:
        """Deliveries still to be made."""
        return 0 if self._dispatcher is None else self._dispatcher.pending

    @property
    def dropped(self) -> int:
        """Deliveries dropped because the queue was full, since the start."""
        return 0 if self._dispatcher is None else self._dispatcher.dropped

    def _wants(self, kind: EventType) -> bool:
        return self._dispatcher is not None and kind in self._config.events

    def summary_stored(self, room_name: str, summary: Summary, *, completed: bool) -> None:
        """A summary was stored; ``completed``: the room moved to ``completed`` with it.

        Sends ``summary.ready`` and, when completed, ``room.completed``. The room's
        participants and tracks are read in the background, so this returns at once.
        """
        completing = completed and self._wants(EventType.ROOM_COMPLETED)
        if not (completing or self._wants(EventType.SUMMARY_READY)):
            return
        self._spawn(
            self._announce(room_name, summary, completing=completing, at=utcnow()),
            name=f"webhook-events-{room_name}",
        )

    def track_finished(self, track: Track) -> None:
        """A Whisper worker reported a track's job ended: ``track.transcribed`` if it did.

        A job that gave up (the track ``failed``) sends nothing: the track's live transcript
        stays its best one, and ``room.completed`` lists the track's status.
        """
        if track.status is TrackStatus.TRANSCRIBED and self._wants(EventType.TRACK_TRANSCRIBED):
            self._submit(events.track_transcribed(track))

    def records(
        self, *, status: DeliveryStatus | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        """The delivery log, newest first (empty without targets)."""
        if self._dispatcher is None:
            return []
        return self._dispatcher.records(status=status, limit=limit)

    async def flush(self) -> None:
        """Wait until the events of every change so far are built and handed to delivery."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def idle(self) -> None:
        """Wait until every event is built and every delivery has ended."""
        await self.flush()
        if self._dispatcher is not None:
            await self._dispatcher.idle()

    async def aclose(self) -> None:
        """Stop; deliveries not yet made are lost (the REST API still has everything)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._dispatcher is not None:
            await self._dispatcher.aclose()

    def _spawn(self, work: Coroutine[Any, Any, None], *, name: str) -> None:
        task = asyncio.get_running_loop().create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _submit(self, event: OutboundEvent) -> None:
        if self._dispatcher is not None:
            self._dispatcher.submit(event)

    async def _announce(
        self, room_name: str, summary: Summary, *, completing: bool, at: datetime
    ) -> None:
        room: Room | None = None
        tracks: list[Track] | None = None
        try:
            room = await self._store.get_room(room_name)
            if completing:
                tracks = await self._store.list_tracks(room_name)
        except StoreError as exc:
            # The event still goes, with what is known; the REST API has the rest.
            log.warning(
                "room not readable for its webhook events: %s", exc, extra={"room": room_name}
            )
        if self._wants(EventType.SUMMARY_READY):
            sid = None if room is None else room.sid
            self._submit(events.summary_ready(room_name, summary, sid=sid, at=at))
        if completing:
            self._submit(events.room_completed(room_name, summary, room=room, tracks=tracks, at=at))
