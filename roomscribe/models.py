"""Domain models: rooms, tracks, segments, chunks and their statuses (DESIGN.md section 4).

All times named ``*_at`` are timezone-aware UTC datetimes. Segment ``start``/``end`` are
seconds from the track's start; ``abs_start``/``abs_end`` are epoch seconds, so segments of
different tracks sort onto one timeline.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator


def utcnow() -> datetime:
    """Return the current time as an aware UTC datetime."""
    return datetime.now(UTC)


def _as_utc(value: datetime) -> datetime:
    # Stores hand back naive datetimes (BSON dates carry no zone); they are always UTC.
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


#: A datetime that is always aware and in UTC, whatever the store returned.
UtcDatetime = Annotated[datetime, AfterValidator(_as_utc)]


class RoomStatus(StrEnum):
    """Where a room is in its life: registered -> active -> final_room -> summarizing -> done."""

    REGISTERED = "registered"
    ACTIVE = "active"
    FINAL_ROOM = "final_room"
    SUMMARIZING = "summarizing"
    COMPLETED = "completed"
    FAILED = "failed"


class TrackStatus(StrEnum):
    """Where a track's recording is: recording -> recorded -> transcribing -> transcribed."""

    RECORDING = "recording"
    RECORDED = "recorded"
    TRANSCRIBING = "transcribing"
    TRANSCRIBED = "transcribed"
    FAILED = "failed"


#: Track statuses that still hold a room back from completion.
PENDING_TRACK_STATUSES: frozenset[TrackStatus] = frozenset(
    {TrackStatus.RECORDING, TrackStatus.RECORDED, TrackStatus.TRANSCRIBING}
)


class SegmentSource(StrEnum):
    """Which recognizer produced a segment."""

    REALTIME = "realtime"
    WHISPER = "whisper"


class TranscriptSource(StrEnum):
    """What a transcript query reads: one source, or ``best``.

    ``best`` is the Whisper transcript of each track whose Whisper pass finished with at least
    one segment, and the live transcript of every other track: a pass that heard nothing (its
    voice detector kept no speech) never hides what the live captions caught.
    """

    REALTIME = "realtime"
    WHISPER = "whisper"
    BEST = "best"


class EgressStatus(StrEnum):
    """State of a track's LiveKit egress as last reported."""

    STARTING = "starting"
    ACTIVE = "active"
    ENDING = "ending"
    COMPLETE = "complete"
    FAILED = "failed"


class Word(BaseModel):
    """One recognized word with times in seconds from the track's start."""

    model_config = ConfigDict(frozen=True)

    word: str
    start: float
    end: float
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)


class SegmentIn(BaseModel):
    """A segment as a recognizer hands it to the store (times relative to the track)."""

    id: str = Field(min_length=1, max_length=128)
    start: float = Field(ge=0.0)
    end: float = Field(ge=0.0)
    text: str
    confidence: float = Field(default=1.0, ge=0.0, le=1.0)
    words: list[Word] = Field(default_factory=list)

    @model_validator(mode="after")
    def _end_not_before_start(self) -> SegmentIn:
        if self.end < self.start:
            raise ValueError(f"segment {self.id!r} ends ({self.end}) before it starts")
        return self


class Segment(SegmentIn):
    """A stored segment, placed on the room's absolute timeline and attributed."""

    abs_start: float
    abs_end: float
    track_sid: str
    participant_identity: str
    source: SegmentSource


class Chunk(BaseModel):
    """A bucket of consecutive segments of one track and source (MongoDB's bucket pattern)."""

    room: str
    track_sid: str
    participant_identity: str
    source: SegmentSource
    seq: int
    start: float
    end: float
    count: int
    min_confidence: float
    max_confidence: float


class EgressInfo(BaseModel):
    """The LiveKit egress recording a track."""

    id: str | None = None
    status: EgressStatus | None = None
    object_key: str | None = None
    error: str | None = None
    updated_at: UtcDatetime | None = None


class JobInfo(BaseModel):
    """The Whisper job claim stored on a track."""

    attempts: int = 0
    lease_until: UtcDatetime | None = None
    worker: str | None = None
    last_error: str | None = None


class LiveStats(BaseModel):
    """What the live path saw of a track."""

    audio_received_s: float = 0.0
    audio_dropped_s: float = 0.0
    segments: int = 0


class WhisperStats(BaseModel):
    """What the Whisper pass measured on a track."""

    model: str
    audio_s: float
    real_time_factor: float
    segments: int = 0


class TrackCreate(BaseModel):
    """What is known about a track when it is first seen."""

    track_sid: str = Field(min_length=1)
    room: str = Field(min_length=1)
    participant_identity: str = Field(min_length=1)
    participant_name: str | None = None
    started_at: UtcDatetime
    language: str | None = None


class Track(TrackCreate):
    """A participant's audio track and everything tracked about it."""

    status: TrackStatus = TrackStatus.RECORDING
    status_reason: str | None = None
    egress: EgressInfo = Field(default_factory=EgressInfo)
    job: JobInfo = Field(default_factory=JobInfo)
    live: LiveStats = Field(default_factory=LiveStats)
    whisper: WhisperStats | None = None
    updated_at: UtcDatetime = Field(default_factory=utcnow)


class ActionItem(BaseModel):
    """One action item and the segment ids it was drawn from."""

    text: str
    evidence: list[str] = Field(default_factory=list)


class ParticipantActions(BaseModel):
    """The action items of one participant."""

    participant_identity: str
    actions: list[ActionItem] = Field(default_factory=list)


class Summary(BaseModel):
    """A meeting summary with per-participant action items."""

    text: str
    action_items: list[ParticipantActions] = Field(default_factory=list)
    model: str
    generated_at: UtcDatetime = Field(default_factory=utcnow)


class Room(BaseModel):
    """A LiveKit room registered for transcription."""

    name: str = Field(min_length=1)
    sid: str | None = None
    status: RoomStatus = RoomStatus.REGISTERED
    status_reason: str | None = None
    created_at: UtcDatetime = Field(default_factory=utcnow)
    updated_at: UtcDatetime = Field(default_factory=utcnow)
    participants: list[str] = Field(default_factory=list)
    summary: Summary | None = None


class TranscriptQuery(BaseModel):
    """Filters of a transcript query; results are sorted by ``(abs_start, id)``."""

    room: str
    track_sid: str | None = None
    participant_identity: str | None = None
    source: TranscriptSource = TranscriptSource.BEST
    #: Keep segments that end after this absolute time (epoch seconds).
    time_from: float | None = None
    #: Keep segments that start before this absolute time (epoch seconds).
    time_to: float | None = None
    min_confidence: float | None = Field(default=None, ge=0.0, le=1.0)
    limit: int = Field(default=100, ge=1, le=1000)
    cursor: str | None = None


class TranscriptPage(BaseModel):
    """One page of a transcript and the cursor of the next (``None`` at the end)."""

    segments: list[Segment]
    next_cursor: str | None = None
