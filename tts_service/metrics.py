"""Prometheus metrics of the TTS service, on a registry per app (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from tts_service.engine import Outcome

_LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0, 5.0, 10.0)


class TtsMetrics:
    """The service's metrics; ``registry`` is what ``/metrics`` exposes."""

    def __init__(self) -> None:
        """Create every metric on a fresh registry."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_streams = Gauge("tts_active_streams", "Requests synthesizing now.", registry=r)
        self.requests = Counter(
            "tts_requests_total",
            "Synthesis requests by endpoint and how they ended.",
            ["endpoint", "outcome"],
            registry=r,
        )
        self.rejected = Counter(
            "tts_rejected_total",
            "Requests refused before synthesis, by reason.",
            ["reason"],
            registry=r,
        )
        self.first_audio = Histogram(
            "tts_first_audio_seconds",
            "Request accepted to its first audio ready to send.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.sentences = Counter(
            "tts_sentences_total",
            "Sentence jobs: finished, aborted mid-synthesis, or skipped (cancelled while queued).",
            ["outcome"],
            registry=r,
        )
        self.compute_seconds = Counter(
            "tts_compute_seconds", "Time spent inside the model.", registry=r
        )
        self.audio_seconds = Counter(
            "tts_audio_seconds",
            "Audio synthesized (compute / audio = real-time factor).",
            registry=r,
        )

    def observe_sentence(self, outcome: Outcome, compute_s: float, audio_s: float) -> None:
        """Count one sentence job (called from worker threads; prometheus_client is safe)."""
        self.sentences.labels(outcome).inc()
        self.compute_seconds.inc(compute_s)
        self.audio_seconds.inc(audio_s)
