"""Summarizing a stored room: :func:`summarize_room` reads its transcript and hands it on."""

from __future__ import annotations

import logging

from orchestrator_service.summary.base import Summarizer
from orchestrator_service.summary.timeline import build_timeline
from roomscribe.models import Segment, Summary, TranscriptQuery, TranscriptSource
from roomscribe.store import TranscriptStore

# The package's logger, as before the module was split out of it.
log = logging.getLogger("orchestrator_service.summary")


async def summarize_room(
    store: TranscriptStore, room_name: str, summarizer: Summarizer, *, page_size: int = 1000
) -> Summary:
    """Summarize a room's whole ``best`` transcript; the caller stores it.

    Args:
        store: The transcript store.
        room_name: The room (it should be ``summarizing``; the status is not checked here).
        summarizer: What writes the summary.
        page_size: Segments read per transcript page.

    Returns:
        The summary of the meeting.

    Raises:
        NotFoundError: the room is not registered.
        SummaryError: the summarizer failed; the transcript is untouched.
    """
    room = await store.get_room(room_name)
    tracks = await store.list_tracks(room_name)
    segments: list[Segment] = []
    cursor: str | None = None
    while True:
        page = await store.query_transcript(
            TranscriptQuery(
                room=room_name, source=TranscriptSource.BEST, limit=page_size, cursor=cursor
            )
        )
        segments.extend(page.segments)
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    timeline = build_timeline(segments, tracks)
    participants = list(
        dict.fromkeys([*room.participants, *(t.participant_identity for t in tracks)])
    )
    summary = await summarizer.summarize(timeline, participants=participants)
    log.info(
        "room summarized",
        extra={"room": room_name, "segments": len(timeline), "model": summary.model},
    )
    return summary
