"""Domain models: rooms, tracks, segments, chunks and their statuses (DESIGN.md section 4).

All times named ``*_at`` are timezone-aware UTC datetimes. Segment ``start``/``end`` are
seconds from the start of the audio their source heard; ``abs_start``/``abs_end`` are epoch
seconds, so segments of different tracks sort onto one timeline.

Each source has its own time origin, because each hears a different stretch of the track:
live segments count from the agent's clock at sample 0 of its stream
(:attr:`Track.live_origin`, the STT ``start`` message's ``track_started_at``), Whisper
segments from the first sample of the egress recording (:attr:`EgressInfo.started_at`, kept
as :attr:`WhisperStats.covered_from`). When the track was published is metadata only: the
webhook that says so is stamped in whole seconds, and the agent may join minutes later.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

from pydantic import AfterValidator, AliasChoices, BaseModel, ConfigDict, Field, model_validator


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
    #: Registered, but nobody ever joined before LiveKit closed the room.
    EXPIRED = "expired"


#: Rooms whose meeting may still be going on.
LIVE_ROOM_STATUSES: frozenset[RoomStatus] = frozenset({RoomStatus.REGISTERED, RoomStatus.ACTIVE})


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

    ``best`` is, per track, the Whisper transcript inside the interval its recording covers
    and the live transcript outside it (an egress that started late or hit its limit never
    hides the live words it did not record). A track whose Whisper pass stored no segment
    keeps its whole live transcript: a pass that heard nothing (its voice detector kept no
    speech) never hides what the live captions caught. Each segment says its ``source``.
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
    source: SegmentSource = Field(
        description="Which recognizer this segment is from: 'realtime' (the live captions) "
        "or 'whisper' (the recording's pass); a 'best' transcript mixes both per track."
    )


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
    """The LiveKit egress recording a track.

    ``started_at``/``ended_at`` are the recording's own clock (LiveKit's file result, in
    nanoseconds): the first sample of the file is at ``started_at``. They are the Whisper
    transcript's time origin.
    """

    id: str | None = None
    status: EgressStatus | None = None
    object_key: str | None = None
    error: str | None = None
    started_at: UtcDatetime | None = None
    ended_at: UtcDatetime | None = None
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
    #: Track time (seconds from the live stream's sample 0) up to which the live transcript
    #: is complete: every word before it is in a stored segment. Only grows.
    committed_s: float = 0.0


class WhisperStats(BaseModel):
    """What the Whisper pass measured on a track, and which stretch of it the pass covers.

    ``covered_from``/``covered_to`` are epoch seconds: the recording's first sample (the
    origin of the Whisper segments' ``start``/``end``) and ``covered_from + audio_s``.
    """

    model: str
    audio_s: float
    real_time_factor: float
    segments: int = 0
    language: str | None = None
    covered_from: float | None = None
    covered_to: float | None = None


#: Fields of a stored track that a later upsert fills in when they are still unknown: the
#: orchestrator (webhooks) and the STT service (stream start) each know some of them.
FILLABLE_TRACK_FIELDS: tuple[str, ...] = ("participant_name", "live_origin", "language")


class TrackCreate(BaseModel):
    """What is known about a track when it is first seen.

    Attributes:
        published_at: When the track was published, as far as the writer knows (metadata,
            never a time origin). Stored documents of older versions call it ``started_at``.
        live_origin: The agent's clock at sample 0 of its live stream: live segments'
            offsets count from it. ``None`` until an STT stream has started.
        language: The language the track is transcribed in live (and by Whisper).
    """

    track_sid: str = Field(min_length=1)
    room: str = Field(min_length=1)
    participant_identity: str = Field(min_length=1)
    participant_name: str | None = None
    published_at: UtcDatetime = Field(validation_alias=AliasChoices("published_at", "started_at"))
    live_origin: UtcDatetime | None = None
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

    def live_origin_s(self) -> float:
        """Epoch seconds that live offsets count from (publish time until a stream starts)."""
        return (self.live_origin or self.published_at).timestamp()

    def recording_origin_s(self) -> float:
        """Epoch seconds of the recording's first sample, as well as it is known.

        The egress's own start when LiveKit reported it; else the live origin, else the
        publish time (an egress of an older version, or one repaired without its info).
        """
        if self.egress.started_at is not None:
            return self.egress.started_at.timestamp()
        return self.live_origin_s()

    def earliest_s(self) -> float:
        """The earliest time any of the track's sources can place a segment at."""
        times = [self.published_at, self.live_origin, self.egress.started_at]
        return min(t.timestamp() for t in times if t is not None)

    def whisper_coverage(self) -> tuple[float, float] | None:
        """The absolute span where ``best`` reads Whisper, or ``None`` (live everywhere).

        ``None`` unless the track is transcribed with at least one Whisper segment; a pass of
        an older version that stored no coverage covers the whole track.
        """
        w = self.whisper
        if self.status is not TrackStatus.TRANSCRIBED or w is None or w.segments <= 0:
            return None
        start = w.covered_from if w.covered_from is not None else float("-inf")
        end = w.covered_to if w.covered_to is not None else float("inf")
        return start, end


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
    """One meeting in a LiveKit room registered for transcription.

    The room's name addresses its current meeting. When LiveKit opens a new room of the
    same name (a new ``sid``), the earlier meeting is kept under its own key,
    ``{name}@{sid}`` (``meeting_of`` then holds the LiveKit name), with its tracks and
    transcript, and stays queryable there.
    """

    name: str = Field(min_length=1)
    sid: str | None = None
    #: LiveKit's creation time of the room instance ``sid`` names; orders meetings.
    livekit_created_at: UtcDatetime | None = None
    #: For an earlier meeting kept under its own key: the LiveKit room name.
    meeting_of: str | None = None
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
