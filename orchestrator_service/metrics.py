"""Prometheus metrics of the orchestrator, on a registry per app (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram


class OrchestratorMetrics:
    """The orchestrator's metrics; ``registry`` is what ``/metrics`` exposes."""

    def __init__(self) -> None:
        """Create every metric on a fresh registry."""
        self.registry = CollectorRegistry()
        r = self.registry
        self.webhooks = Counter(
            "orchestrator_webhooks_total",
            "LiveKit webhooks received.",
            ["event", "outcome"],
            registry=r,
        )
        self.webhook_seconds = Histogram(
            "orchestrator_webhook_seconds",
            "Time to verify and apply a webhook (LiveKit waits for this).",
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=r,
        )
        self.livekit_calls = Counter(
            "orchestrator_livekit_calls_total", "Calls to LiveKit.", ["op", "outcome"], registry=r
        )
        self.livekit_queue = Gauge(
            "orchestrator_livekit_queue", "LiveKit calls waiting to run.", registry=r
        )
        self.repairs = Counter(
            "orchestrator_reconciler_repairs_total",
            "What the reconciler fixed.",
            ["kind"],
            registry=r,
        )
        self.summaries = Counter(
            "orchestrator_summaries_total", "Summary runs by outcome.", ["outcome"], registry=r
        )
        self.rooms_completed = Counter(
            "orchestrator_rooms_completed_total", "Rooms that reached completed.", registry=r
        )
