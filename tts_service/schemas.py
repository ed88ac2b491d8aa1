"""Request and response bodies of the TTS service, and its one error shape."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from tts_service.audio_formats import AudioFormat
from tts_service.engine import MAX_SPEED, MIN_SPEED

#: ``Accept`` value that makes ``/v1/synthesize`` answer JSON lines with word timings.
NDJSON: Literal["application/x-ndjson"] = "application/x-ndjson"


def error_body(code: str, message: str) -> dict[str, dict[str, str]]:
    """The JSON body of every error response: ``{"error": {"code", "message"}}``."""
    return {"error": {"code": code, "message": message}}


class SynthesizeRequest(BaseModel):
    """``POST /v1/synthesize``: what the agent sends (DESIGN.md section 5).

    ``voice`` and ``speed`` may be ``null``: the default voice, normal speed.
    """

    model_config = ConfigDict(extra="ignore")

    text: str = Field(min_length=1, description="What to say.")
    voice: str | None = Field(default=None, min_length=1, max_length=256)
    speed: float | None = Field(default=None, ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)


class SpeechRequest(BaseModel):
    """``POST /v1/audio/speech``: OpenAI's request; ``model`` is accepted and not used."""

    model_config = ConfigDict(extra="ignore")

    model: str = Field(min_length=1, max_length=128, description="Any name: one model serves.")
    input: str = Field(min_length=1, description="What to say.")
    voice: str | None = Field(default=None, min_length=1, max_length=256)
    speed: float = Field(default=1.0, ge=MIN_SPEED, le=MAX_SPEED, allow_inf_nan=False)
    response_format: AudioFormat = Field(
        default="mp3", description="pcm is 24 kHz s16le mono, as OpenAI's pcm."
    )
    instructions: str | None = Field(
        default=None, max_length=4096, description="Accepted for compatibility; Kokoro has none."
    )
    stream_format: Literal["audio"] = Field(
        default="audio", description="Only 'audio': the body is the audio, streamed."
    )


class Voice(BaseModel):
    """One voice of ``GET /v1/voices``."""

    id: str
    language: str
    gender: str | None


class VoicesPublic(BaseModel):
    """``GET /v1/voices``."""

    voices: list[Voice]
    default: str
    synthetic: bool = Field(description="True when the model has random weights (devkit).")


class WordPublic(BaseModel):
    """A word and its times, seconds from the start of the response's audio."""

    text: str
    start_s: float | None
    end_s: float | None


class AudioLine(BaseModel):
    """One JSON line of ``/v1/synthesize`` with ``Accept: application/x-ndjson``."""

    type: Literal["audio"] = "audio"
    index: int
    text: str
    start_s: float
    duration_s: float
    sample_rate: int
    audio: str = Field(description="Base64 of the piece's PCM s16le mono.")
    words: list[WordPublic]


class DoneLine(BaseModel):
    """The last JSON line of a complete NDJSON answer."""

    type: Literal["done"] = "done"
    pieces: int
    duration_s: float
