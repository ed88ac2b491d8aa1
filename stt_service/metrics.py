"""Prometheus metrics of the STT service, on a registry per app (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.2, 0.35, 0.5, 0.75, 1.0, 2.0, 5.0)


class SttMetrics:
    """The service's metrics; ``registry`` is what ``/metrics`` exposes."""

    def __init__(self) -> None:
        """Create every metric on a fresh registry."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.active_clients = Gauge("stt_active_clients", "Open streams.", registry=r)
        self.queue_depth = Gauge(
            "stt_queue_depth_chunks", "Audio chunks waiting, all clients.", registry=r
        )
        self.received_audio = Counter(
            "stt_received_audio_seconds", "Audio received from clients.", registry=r
        )
        self.dropped_audio = Counter(
            "stt_dropped_audio_seconds",
            "Audio dropped (queue overflow or recognizer failure).",
            ["reason"],
            registry=r,
        )
        self.partial_latency = Histogram(
            "stt_partial_latency_seconds",
            "Newest audio received to partial sent.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.final_latency = Histogram(
            "stt_final_latency_seconds",
            "Newest audio received to final sent.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.added_latency = Histogram(
            "stt_pipeline_added_latency_seconds",
            "Result latency less recognizer compute: queueing, hand-offs, sending.",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.recognizer_seconds = Counter(
            "stt_recognizer_seconds", "Time spent inside the recognizer.", registry=r
        )
        self.recognized_audio = Counter(
            "stt_recognized_audio_seconds", "Audio fed to recognizers.", registry=r
        )
        self.breaker_trips = Counter(
            "stt_breaker_trips_total", "Clients stopped by their circuit breaker.", registry=r
        )
        self.rejected = Counter(
            "stt_rejected_streams_total",
            "Streams refused or closed for bad input.",
            ["reason"],
            registry=r,
        )
        self.stored_segments = Counter(
            "stt_stored_segments_total", "Final segments written to the store.", registry=r
        )
        self.rerecognized_words = Counter(
            "stt_rerecognized_words_total",
            "Words of finals left out of the store: their audio was recognized again after a "
            "stream resumed, and the first recognition's words were already taken.",
            registry=r,
        )
        self.commit_latency = Histogram(
            "stt_commit_latency_seconds",
            "Final or silent boundary produced to 'committed' sent (the store write).",
            buckets=_LATENCY_BUCKETS,
            registry=r,
        )
        self.commits_stopped = Counter(
            "stt_commits_stopped_total",
            "Streams that stopped committing: their buffered finals were dropped unwritten.",
            registry=r,
        )
        self.store_errors = Counter(
            "stt_store_errors_total", "Failed store writes (retried).", registry=r
        )
