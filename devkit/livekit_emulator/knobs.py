"""The knobs tests turn on the emulator: webhook faults and egress timing and failures.

:class:`EmulatorKnobs` is the part of :class:`~devkit.livekit_emulator.LiveKitEmulator`
that only passes settings on to its webhook sender and its track egress.
"""

from __future__ import annotations

from typing import Literal

from livekit.protocol.webhook import WebhookEvent

from devkit.livekit_emulator.egress import TrackEgress
from devkit.webhooks import WebhookSender


class EmulatorKnobs:
    """Webhook fault injection and egress knobs (mixed into the emulator)."""

    webhooks: WebhookSender
    _egress: TrackEgress

    # Webhook record and fault injection -----------------------------------------------------
    @property
    def events(self) -> list[WebhookEvent]:
        """Every webhook event emitted, in order, whether delivered, dropped or held."""
        return self.webhooks.events

    @property
    def delivered(self) -> list[WebhookEvent]:
        """Webhook events the receiver accepted (2xx), in delivery order."""
        return self.webhooks.delivered

    @property
    def dropped(self) -> list[WebhookEvent]:
        """Webhook events lost on purpose (:meth:`drop_next_webhooks`)."""
        return self.webhooks.dropped

    def drop_next_webhooks(self, n: int, event: str | None = None) -> None:
        """Lose the next ``n`` webhooks (only those of type ``event``, when given).

        A lost webhook is counted in the next delivered event's ``num_dropped``, as LiveKit
        does for events it drops when its queue is full.
        """
        self.webhooks.drop_next(n, event)

    def duplicate_webhooks(self, on: bool, *, concurrent: bool = False) -> None:
        """Deliver every webhook twice from now on (same id, same body), or stop doing so.

        Args:
            on: Whether to duplicate.
            concurrent: POST both copies at the same time, as two LiveKit nodes (or a retry
                racing a slow first attempt) do, instead of one after the other.
        """
        self.webhooks.duplicate(on, concurrent=concurrent)

    def hold_webhooks(self) -> None:
        """Keep webhooks back until :meth:`release_webhooks` (to reorder them)."""
        self.webhooks.hold()

    def release_webhooks(self, *, reverse: bool = False) -> None:
        """Deliver the held webhooks, in emitted order or reversed."""
        self.webhooks.release(reverse=reverse)

    # Egress knobs ----------------------------------------------------------------------------
    @property
    def egress_start_delay_s(self) -> float:
        """Seconds from a StartTrackEgress request to the start of its recording."""
        return self._egress.start_delay_s

    @property
    def egress_limit_s(self) -> float | None:
        """The longest an egress records before it ends with EGRESS_LIMIT_REACHED."""
        return self._egress.limit_s

    def fail_next_egress(self, reason: str, *, at: Literal["start", "end"] = "start") -> None:
        """Make the next started egress fail with ``error=reason`` (EGRESS_FAILED).

        Args:
            reason: The ``error`` the failed EgressInfo carries.
            at: ``"start"``: it fails right after ``egress_started``, never active;
                ``"end"``: it runs, then fails when it should complete, writing nothing.
        """
        self._egress.fail_next(reason, at=at)

    def delay_next_egress(self, seconds: float) -> None:
        """Start recording the next started egress ``seconds`` after its request (once).

        Raises:
            ValueError: ``seconds`` is negative.
        """
        self._egress.delay_next(seconds)

    def limit_next_egress(self, seconds: float) -> None:
        """End the next started egress with EGRESS_LIMIT_REACHED after ``seconds`` (once).

        Raises:
            ValueError: ``seconds`` is not positive.
        """
        self._egress.limit_next(seconds)
