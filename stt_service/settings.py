"""Settings of the streaming STT service (environment prefix ``ROOMSCRIBE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from roomscribe.settings import CoreSettings
from stt_service.recognizer import discover_models, parse_model_spec


class SttSettings(CoreSettings):
    """Everything ``python -m stt_service`` reads."""

    stt_host: str = Field(
        default="127.0.0.1",
        description="Address the streaming WebSocket listens on (0.0.0.0 in a container).",
    )
    stt_port: int = Field(default=8001, gt=0, lt=65536)
    stt_models: str | None = Field(
        default=None, description="Vosk models as 'en:/path,de:/path'; unset: MODELS_DIR/vosk/*."
    )
    models_dir: Path = Path("var/models")
    stt_auth: bool = Field(
        default=True, description="Require an internal token (aud 'stt') on /v1/stream."
    )
    stt_max_clients: int = Field(default=30, ge=1)
    stt_queue_chunks: int = Field(default=500, ge=1, description="Audio chunks queued per client.")
    stt_max_batch_chunks: int = Field(default=25, ge=1, description="Chunks per recognizer call.")
    stt_feed_ms: int = Field(
        default=100,
        ge=0,
        le=1000,
        description="Audio a stream's pipeline gathers before it wakes (0: every chunk). A "
        "real model computes in bursts every few hundred ms of audio, so waking per 20 ms "
        "frame costs CPU and adds nothing; audio waits at most this long.",
    )
    stt_breaker_failures: int = Field(default=5, ge=1)
    stt_start_timeout_s: float = Field(default=10.0, gt=0)
    stt_idle_timeout_s: float = Field(default=60.0, gt=0)
    stt_stats_interval_s: float = Field(default=1.0, gt=0)
    stt_store_flush_s: float = Field(default=0.5, gt=0)
    stt_commit_wait_s: float = Field(
        default=5.0,
        ge=0,
        description="How long an ending stream waits for its last finals to be stored, so "
        "its last 'committed' reaches the client (the writer keeps trying afterwards).",
    )
    stt_drain_timeout_s: float = Field(default=10.0, gt=0)

    def model_folders(self) -> dict[str, Path]:
        """Language -> Vosk model folder, from ``ROOMSCRIBE_STT_MODELS`` or the models dir."""
        if self.stt_models:
            return parse_model_spec(self.stt_models)
        return discover_models(self.models_dir)
