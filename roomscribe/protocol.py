"""The streaming STT wire protocol (DESIGN.md section 5).

Text frames carry JSON messages discriminated by ``type``; binary frames carry audio as an
8-byte little-endian unsigned sample offset from the track's start followed by PCM s16le
mono. The offset keeps timestamps true across reconnects and makes gaps measurable.

Nothing is lost across a crash of either side: the server sends ``committed`` once the audio
before an offset is durable (its finals are stored, or it held no words), and only then may
the client forget that audio. A reconnecting client resends what it still holds; ``ready``
says where the server already holds everything (``resume_offset``), so nothing is
recognized, or stored, twice.
"""

from __future__ import annotations

import struct
from enum import IntEnum, StrEnum
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from roomscribe.errors import ProtocolError

#: Sample rates a client may declare; 48 kHz (WebRTC's native rate) is resampled to 16 kHz.
SUPPORTED_SAMPLE_RATES: frozenset[int] = frozenset({8000, 16000, 48000})
#: Bytes of the sample-offset header in front of each binary audio frame.
FRAME_HEADER_BYTES = 8
#: The longest audio one binary frame may carry, in seconds.
MAX_FRAME_SECONDS = 1.0
_HEADER = struct.Struct("<Q")


class CloseCode(IntEnum):
    """WebSocket close codes the STT service uses."""

    NORMAL = 1000
    UNSUPPORTED_DATA = 1003  # bad data: malformed JSON, bad audio, oversized frames
    GOING_AWAY = 1001  # the client went idle past the server's limit; reconnect when audio comes
    POLICY_VIOLATION = 1008  # authentication failed
    SERVICE_RESTART = 1012  # the server is shutting down; reconnect and resume
    TRY_AGAIN_LATER = 1013  # overloaded, or this client's circuit breaker is open


class ErrorCode(StrEnum):
    """Machine-readable codes of ``error`` messages."""

    BAD_MESSAGE = "bad_message"
    NOT_STARTED = "not_started"
    ALREADY_STARTED = "already_started"
    BAD_AUDIO = "bad_audio"
    FRAME_TOO_LARGE = "frame_too_large"
    UNSUPPORTED_SAMPLE_RATE = "unsupported_sample_rate"
    UNSUPPORTED_LANGUAGE = "unsupported_language"
    UNAUTHORIZED = "unauthorized"
    OVERLOADED = "overloaded"
    BREAKER_OPEN = "breaker_open"
    IDLE_TIMEOUT = "idle_timeout"
    TRACK_MISMATCH = "track_mismatch"
    SHUTTING_DOWN = "shutting_down"
    INTERNAL = "internal"


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# Client -> server ---------------------------------------------------------------------------
class StartMessage(_Message):
    """Opens a stream for one participant's track; must be the first message."""

    type: Literal["start"] = "start"
    room: str = Field(min_length=1, max_length=256)
    participant: str = Field(min_length=1, max_length=256)
    track_sid: str = Field(min_length=1, max_length=256)
    language: str = Field(default="en", min_length=2, max_length=16)
    sample_rate: int = 16000
    track_started_at: float = Field(
        # Finite and within this century: it becomes every live segment's time origin.
        ge=946_684_800.0,  # 2000-01-01
        lt=4_102_444_800.0,  # 2100-01-01
        allow_inf_nan=False,
        description="Epoch seconds, on the agent's clock, of the stream's sample 0.",
    )
    store: bool = Field(
        default=True,
        description="Store the finals as the track's live transcript. False for a stream "
        "with no track behind it (a plain STT call): results are sent, nothing is stored.",
    )


class FlushMessage(_Message):
    """Asks for a final result now (e.g. the participant muted)."""

    type: Literal["flush"] = "flush"


class KeepaliveMessage(_Message):
    """The stream goes on without audio (a muted or paused track); resets the idle timer.

    A client sends one every few seconds while it has no audio to send; a stream that sends
    neither audio nor keepalives for the server's idle limit is closed (retryably).
    """

    type: Literal["keepalive"] = "keepalive"


class EndMessage(_Message):
    """Ends the stream; the server sends the last final, then closes."""

    type: Literal["end"] = "end"


ClientMessage = Annotated[
    StartMessage | FlushMessage | KeepaliveMessage | EndMessage, Field(discriminator="type")
]


# Server -> client ---------------------------------------------------------------------------
class ReadyMessage(_Message):
    """The stream is accepted and audio may flow."""

    type: Literal["ready"] = "ready"
    resume_offset: int = Field(
        default=0,
        ge=0,
        description="The server already holds everything before this sample offset (stored "
        "finals, or audio without words): the client sends audio from here on and may forget "
        "what comes before. Non-zero when a track's stream reconnects.",
    )


class WireWord(_Message):
    """A word of a final result, times in ms from the track's start."""

    word: str
    start_ms: int
    end_ms: int
    confidence: float


class PartialMessage(_Message):
    """Text recognized so far in the current utterance; may still change."""

    type: Literal["partial"] = "partial"
    text: str
    start_ms: int
    audio_end_ms: int | None = Field(
        default=None, description="Track time of the newest audio this result has heard."
    )


class FinalMessage(_Message):
    """A finished utterance; it will not change and has been (or will be) stored."""

    type: Literal["final"] = "final"
    segment_id: str
    text: str
    start_ms: int
    end_ms: int
    confidence: float
    words: list[WireWord] = Field(default_factory=list)
    audio_end_ms: int | None = Field(
        default=None, description="Track time of the newest audio this result has heard."
    )


class CommittedMessage(_Message):
    """Everything before ``offset`` is durable: the client may forget that audio.

    Audio before ``offset`` (client samples from the track's start) is either in finals the
    server has stored (or, for a stream with ``store: false``, has sent) or held no words.
    Offsets only grow. Until an offset is committed the client keeps its audio, and resends
    it after a reconnect; a final sent but not yet committed may be sent again then, with the
    same ``segment_id`` where the audio is the same.
    """

    type: Literal["committed"] = "committed"
    offset: int = Field(ge=0)


class StatsMessage(_Message):
    """Audio accounting for the stream: nothing is dropped without being counted here."""

    type: Literal["stats"] = "stats"
    received_ms: int
    dropped_ms: int
    queue_depth: int


class ErrorMessage(_Message):
    """Something went wrong; ``retryable`` says whether reconnecting may help."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    retryable: bool = False


ServerMessage = Annotated[
    ReadyMessage | PartialMessage | FinalMessage | CommittedMessage | StatsMessage | ErrorMessage,
    Field(discriminator="type"),
]

_client_adapter: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
_server_adapter: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def _first_error(exc: ValidationError) -> str:
    err = exc.errors()[0]
    where = ".".join(str(p) for p in err["loc"]) or "message"
    return f"{where}: {err['msg']}"


def parse_client_message(raw: str | bytes) -> ClientMessage:
    """Parse one JSON text frame from a client.

    Raises:
        ProtocolError: not JSON, an unknown ``type``, or fields that do not validate; the
            message says which field.
    """
    try:
        message = _client_adapter.validate_json(raw)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, _first_error(exc)) from exc
    if isinstance(message, StartMessage) and message.sample_rate not in SUPPORTED_SAMPLE_RATES:
        raise ProtocolError(
            ErrorCode.UNSUPPORTED_SAMPLE_RATE,
            f"sample_rate {message.sample_rate} is not one of {sorted(SUPPORTED_SAMPLE_RATES)}",
        )
    return message


def parse_server_message(raw: str | bytes) -> ServerMessage:
    """Parse one JSON text frame from the server (used by clients).

    Raises:
        ProtocolError: the server sent something this client version does not understand.
    """
    try:
        return _server_adapter.validate_json(raw)
    except ValidationError as exc:
        raise ProtocolError(ErrorCode.BAD_MESSAGE, _first_error(exc)) from exc


def encode_audio_frame(offset_samples: int, pcm: bytes) -> bytes:
    """Build a binary frame: the sample offset of ``pcm``'s first sample, then the PCM."""
    if offset_samples < 0:
        raise ValueError("offset_samples must be >= 0")
    return _HEADER.pack(offset_samples) + pcm


def decode_audio_frame(frame: bytes, *, sample_rate: int) -> tuple[int, bytes]:
    """Split a binary frame into its sample offset and PCM bytes, checking both.

    Raises:
        ProtocolError: shorter than the header, an odd number of PCM bytes, or more than
            :data:`MAX_FRAME_SECONDS` of audio.
    """
    if len(frame) < FRAME_HEADER_BYTES:
        raise ProtocolError(
            ErrorCode.BAD_AUDIO,
            f"binary frame of {len(frame)} bytes is shorter than its {FRAME_HEADER_BYTES}-byte "
            "sample-offset header",
        )
    (offset,) = _HEADER.unpack_from(frame)
    pcm = frame[FRAME_HEADER_BYTES:]
    if len(pcm) % 2:
        raise ProtocolError(
            ErrorCode.BAD_AUDIO, f"PCM payload of {len(pcm)} bytes is not whole s16le samples"
        )
    max_bytes = int(sample_rate * MAX_FRAME_SECONDS) * 2
    if len(pcm) > max_bytes:
        raise ProtocolError(
            ErrorCode.FRAME_TOO_LARGE,
            f"frame carries {len(pcm) // 2 / sample_rate:.2f} s of audio; "
            f"at most {MAX_FRAME_SECONDS:g} s per frame",
        )
    return int(offset), pcm
