"""Admission, bookkeeping and graceful drain of all open streams."""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from typing import Protocol

log = logging.getLogger(__name__)

#: How many tracks' last offsets are remembered for reconnecting clients.
_REMEMBERED_TRACKS = 10_000


class Drainable(Protocol):
    """A stream the manager can ask to finish."""

    track_sid: str

    def drain(self) -> None:
        """Finish: produce the last final, send it, close the connection."""

    async def wait_done(self) -> None:
        """Return once the stream has fully ended."""


class AdmissionError(Exception):
    """The server cannot take another stream now."""


class PipelineManager:
    """Limits concurrent streams and drains them on shutdown."""

    def __init__(self, max_clients: int) -> None:
        """Allow at most ``max_clients`` open streams."""
        self.max_clients = max_clients
        self._sessions: set[Drainable] = set()
        self._draining = False
        self._offsets: OrderedDict[str, int] = OrderedDict()

    @property
    def sessions(self) -> list[Drainable]:
        """The open streams."""
        return list(self._sessions)

    @property
    def active(self) -> int:
        """Open streams."""
        return len(self._sessions)

    @property
    def draining(self) -> bool:
        """Whether shutdown has begun."""
        return self._draining

    def admit(self, session: Drainable) -> None:
        """Register a stream or raise :class:`AdmissionError` (full, or shutting down)."""
        if self._draining:
            raise AdmissionError("the server is shutting down")
        if len(self._sessions) >= self.max_clients:
            raise AdmissionError(f"the server is at its limit of {self.max_clients} streams")
        self._sessions.add(session)

    def release(self, session: Drainable, *, committed_offset: int | None) -> None:
        """Forget a finished stream, remembering how far its track is committed.

        Only the committed offset is remembered (never how far audio was received): a
        reconnecting client may forget what comes before it, so it must be durable.
        """
        self._sessions.discard(session)
        if committed_offset is not None:
            self.note_committed(session.track_sid, committed_offset)

    def note_committed(self, track_sid: str, offset: int) -> None:
        """Remember that ``track_sid`` is durable up to ``offset`` (client samples).

        Streams report each commit as it happens, so a reconnect that comes while the old
        stream still winds down resumes from its last commit.
        """
        # Streams of one track may overlap: the highest commit stands.
        self._offsets[track_sid] = max(offset, self._offsets.get(track_sid, 0))
        self._offsets.move_to_end(track_sid)
        while len(self._offsets) > _REMEMBERED_TRACKS:
            self._offsets.popitem(last=False)

    def resume_offset(self, track_sid: str) -> int:
        """How far a reconnecting client's track is committed (0 for a track not seen)."""
        return self._offsets.get(track_sid, 0)

    async def drain(self, timeout_s: float) -> None:
        """Stop admitting, ask every stream to finish, and wait for them (bounded)."""
        self._draining = True
        sessions = list(self._sessions)
        for session in sessions:
            session.drain()
        if not sessions:
            return
        waits = [asyncio.ensure_future(s.wait_done()) for s in sessions]
        _done, pending = await asyncio.wait(waits, timeout=timeout_s)
        for task in pending:
            task.cancel()
        if pending:
            log.warning("streams still open after drain timeout", extra={"count": len(pending)})
