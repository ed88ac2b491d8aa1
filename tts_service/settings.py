"""Settings of the TTS service (environment prefix ``ROOMSCRIBE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from roomscribe.settings import CoreSettings
from tts_service.text import DEFAULT_MAX_SENTENCE_CHARS


class TtsSettings(CoreSettings):
    """Everything ``python -m tts_service`` reads."""

    tts_host: str = Field(
        default="127.0.0.1",
        description="Address the TTS service listens on (0.0.0.0 in a container).",
    )
    tts_port: int = Field(default=8002, gt=0, lt=65536)
    models_dir: Path = Path("var/models")
    tts_model_dir: Path | None = Field(
        default=None,
        description="Kokoro model folder (config.json, kokoro-v1_0.pth, voices/*.pt); "
        "unset: MODELS_DIR/kokoro.",
    )
    tts_auth: bool = Field(
        default=True,
        description="Require an internal token (aud 'tts') on /v1/*; health, readiness and "
        "metrics stay open.",
    )
    tts_max_chars: int = Field(
        default=2000, ge=1, le=100_000, description="Longest text one request may ask for."
    )
    tts_max_concurrent: int = Field(
        default=4,
        ge=1,
        description="Requests synthesizing at once; more are answered 429 with Retry-After. "
        "An agent speaking holds two (the sentence playing and the next one).",
    )
    tts_retry_after_s: int = Field(
        default=1, ge=1, le=3600, description="Retry-After of a 429, in seconds."
    )
    tts_workers: int = Field(
        default=1,
        ge=1,
        le=32,
        description="Sentences synthesized at the same time (model calls in parallel); "
        "requests beyond it wait their turn sentence by sentence.",
    )
    tts_torch_threads: int = Field(
        default=2, ge=1, le=256, description="CPU threads torch uses inside one model call."
    )
    tts_max_sentence_chars: int = Field(
        default=DEFAULT_MAX_SENTENCE_CHARS,
        ge=20,
        le=500,
        description="Longer sentences are cut at clause marks (a long one delays its audio).",
    )
    tts_default_voice: str | None = Field(
        default=None,
        description="Voice when a request names none; unset: af_heart, else the first.",
    )
    tts_warmup: bool = Field(
        default=True,
        description="Synthesize one short sentence at start-up, so the first request does "
        "not pay torch's first-call cost (readiness waits for it).",
    )

    def model_folder(self) -> Path:
        """The Kokoro model folder: ``ROOMSCRIBE_TTS_MODEL_DIR`` or ``MODELS_DIR/kokoro``."""
        return self.tts_model_dir if self.tts_model_dir is not None else self.models_dir / "kokoro"
