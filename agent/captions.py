"""Live captions: where a track transcriber's partial and final results go.

In a room, captions travel as ``lk.transcription`` text streams (the standard LiveKit
transcription channel every front end reads), sent on behalf of the transcribed participant
and attributed to their track, so captions show under the right speaker.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Protocol

from livekit import rtc
from livekit.agents.types import (
    ATTRIBUTE_TRANSCRIPTION_FINAL,
    ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID,
    ATTRIBUTE_TRANSCRIPTION_TRACK_ID,
    TOPIC_TRANSCRIPTION,
)

log = logging.getLogger(__name__)

#: Attribute carrying the stored segment id of a final (for the REST API).
ATTRIBUTE_STORED_SEGMENT_ID = "roomscribe.segment_id"
#: Attributes carrying the caption's track time, in ms from the track's start.
ATTRIBUTE_START_MS = "roomscribe.start_ms"
ATTRIBUTE_END_MS = "roomscribe.end_ms"


@dataclass(frozen=True)
class Caption:
    """One live caption: the text of an utterance so far (partial) or for good (final).

    Attributes:
        participant: Identity of the participant who spoke.
        track_sid: The audio track that was transcribed.
        caption_id: Shared by every partial of an utterance and its final, so a front end
            replaces the partial text with the final one (``lk.segment_id``).
        text: The caption text.
        final: Whether the text will not change any more.
        start_s: Track time of the utterance's start, in seconds.
        end_s: Track time of its end (of the newest audio heard, for a partial).
        segment_id: The stored segment's id (finals only).
        latency_ms: Time from the newest audio this caption heard being pushed into the
            transcriber to the caption being ready.
    """

    participant: str
    track_sid: str
    caption_id: str
    text: str
    final: bool
    start_s: float
    end_s: float
    segment_id: str | None = None
    latency_ms: float | None = None


class CaptionSink(Protocol):
    """Somewhere captions go: a LiveKit room, a terminal, a test."""

    async def publish(self, caption: Caption) -> None:
        """Deliver one caption; must not raise for delivery problems (log them)."""
        ...


def caption_attributes(caption: Caption) -> dict[str, str]:
    """The text stream attributes of a caption, as LiveKit front ends expect them."""
    attributes = {
        ATTRIBUTE_TRANSCRIPTION_FINAL: "true" if caption.final else "false",
        ATTRIBUTE_TRANSCRIPTION_TRACK_ID: caption.track_sid,
        ATTRIBUTE_TRANSCRIPTION_SEGMENT_ID: caption.caption_id,
        ATTRIBUTE_START_MS: str(round(caption.start_s * 1000)),
        ATTRIBUTE_END_MS: str(round(caption.end_s * 1000)),
    }
    if caption.segment_id:
        attributes[ATTRIBUTE_STORED_SEGMENT_ID] = caption.segment_id
    return attributes


class RoomCaptions:
    """Publishes captions into a connected room on the ``lk.transcription`` topic."""

    def __init__(self, room: rtc.Room) -> None:
        """Publish through ``room``'s local participant (the agent)."""
        self._room = room

    async def publish(self, caption: Caption) -> None:
        """Send the caption as one text stream, sent on behalf of the speaker."""
        if not self._room.isconnected():
            return
        try:
            writer = await self._room.local_participant.stream_text(
                topic=TOPIC_TRANSCRIPTION,
                attributes=caption_attributes(caption),
                sender_identity=caption.participant,
            )
            await writer.write(caption.text)
            await writer.aclose()
        except Exception as exc:  # a caption lost must never stop the transcription
            log.warning(
                "could not publish a caption: %s", exc, extra={"track_sid": caption.track_sid}
            )
