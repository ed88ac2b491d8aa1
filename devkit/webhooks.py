"""LiveKit webhook encoding and signing, byte for byte as the LiveKit server does it.

LiveKit POSTs each ``WebhookEvent`` as protobuf JSON (lowerCamelCase field names, enums by name,
64-bit integers as strings) with ``Content-Type: application/webhook+json`` and an
``Authorization`` header that holds a bare JWT (no ``Bearer`` prefix) signed with the API
secret, issued by the API key, valid for five minutes, whose ``sha256`` claim is the base64 of
the SHA-256 of the exact body bytes. ``livekit.api.WebhookReceiver`` checks exactly that, so a
body changed by one byte, a token signed with another secret, or an expired token is refused.

:class:`WebhookSender` delivers events like LiveKit's notifier (in order, with retries) and
can lose, duplicate or reorder them on purpose; tests use :func:`sign_webhook` to forge,
expire or tamper with requests themselves.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime
import hashlib
from dataclasses import dataclass
from typing import Final

import httpx
from google.protobuf.json_format import MessageToJson
from livekit.api import AccessToken
from livekit.protocol.webhook import WebhookEvent

#: The content type LiveKit sends, chosen so frameworks do not parse the body before the
#: signature is checked.
WEBHOOK_CONTENT_TYPE: Final = "application/webhook+json"

#: How long LiveKit's webhook tokens are valid.
WEBHOOK_TOKEN_TTL: Final = datetime.timedelta(minutes=5)


def webhook_body(event: WebhookEvent) -> str:
    """Encode ``event`` as the JSON body LiveKit sends.

    Args:
        event: The event to encode.

    Returns:
        Compact protobuf JSON (default values omitted, as Go's ``protojson`` does).
    """
    return MessageToJson(event, indent=None)


def body_sha256(body: str) -> str:
    """The base64 SHA-256 of the UTF-8 body: the value of the token's ``sha256`` claim."""
    return base64.b64encode(hashlib.sha256(body.encode()).digest()).decode()


def sign_webhook(
    body: str,
    api_key: str,
    api_secret: str,
    *,
    ttl: datetime.timedelta = WEBHOOK_TOKEN_TTL,
) -> str:
    """Sign a webhook body as LiveKit does.

    Args:
        body: The exact body that will be sent.
        api_key: The LiveKit API key (the token's issuer).
        api_secret: The secret the token is signed with.
        ttl: How long the token stays valid; a negative value makes an already expired token
            (beyond the receiver's one-minute leeway only if it is more than a minute negative).

    Returns:
        The value of the ``Authorization`` header: the JWT itself, without ``Bearer``.
    """
    return AccessToken(api_key, api_secret).with_ttl(ttl).with_sha256(body_sha256(body)).to_jwt()


@dataclass(frozen=True)
class WebhookDelivery:
    """One POST of an event to the webhook URL, retries included.

    Attributes:
        event: The event sent (its ``num_dropped`` as it was sent).
        status: The last HTTP status received, or ``None`` if the receiver never answered.
        attempts: How many requests it took (1 when the first one was answered for good).
    """

    event: WebhookEvent
    status: int | None
    attempts: int

    @property
    def ok(self) -> bool:
        """Whether the receiver accepted the event (a 2xx status)."""
        return self.status is not None and 200 <= self.status < 300


@dataclass
class _DropRule:
    remaining: int
    event: str | None


@dataclass(frozen=True)
class _Outgoing:
    event: WebhookEvent
    copies: int
    concurrent: bool = False


def _lost(delivery: WebhookDelivery) -> bool:
    # LiveKit counts an event it gave up on (and those it carried) as dropped; one answered
    # with a 4xx was refused, not lost.
    return not delivery.ok and _retryable(delivery.status)


def _retryable(status: int | None) -> bool:
    # go-retryablehttp's default policy, which LiveKit uses: connection errors, 429 and 5xx
    # other than 501 are retried; any other answer, a 4xx included, ends the delivery.
    return status is None or status == 429 or (status >= 500 and status != 501)


class WebhookSender:
    """Delivers webhook events to one URL in order, as LiveKit's notifier does, with faults.

    Each event is signed (see :func:`sign_webhook`) and POSTed by one background task, in the
    order :meth:`send` was called. Like LiveKit (``go-retryablehttp`` defaults), a request that
    gets no answer, a 429 or a 5xx (other than 501) is retried ``max_retries`` times (4, so 5
    attempts) with exponential backoff from ``retry_wait`` up to ``retry_wait_max`` seconds;
    after that the event is given up, and it is counted, like every dropped event, in the
    ``num_dropped`` field of the next event sent, as LiveKit does. Any other answer ends the
    delivery: a 4xx is not retried.

    Real LiveKit delivers in parallel per resource (room name, egress id), so egress events
    and room events may interleave differently than here; use :meth:`hold` and
    :meth:`release` to test other orders.

    Args:
        url: Where to POST; ``None`` records events without sending them.
        api_key: The LiveKit API key (the tokens' issuer).
        api_secret: The secret the tokens are signed with.
        max_retries: Retries after the first attempt of a retryable failure.
        retry_wait: Seconds before the first retry; doubled for each next one.
        retry_wait_max: The longest wait between two attempts.
        timeout: Seconds one attempt may take.
    """

    def __init__(
        self,
        url: str | None,
        api_key: str,
        api_secret: str,
        *,
        max_retries: int = 4,
        retry_wait: float = 1.0,
        retry_wait_max: float = 30.0,
        timeout: float = 10.0,
    ) -> None:
        self.url = url
        self._api_key = api_key
        self._api_secret = api_secret
        self._max_retries = max_retries
        self._retry_wait = retry_wait
        self._retry_wait_max = retry_wait_max
        self._timeout = timeout
        self._queue: asyncio.Queue[_Outgoing] = asyncio.Queue()
        self._worker: asyncio.Task[None] | None = None
        self._client: httpx.AsyncClient | None = None
        self._drop_rules: list[_DropRule] = []
        self._duplicate = False
        self._concurrent = False
        self._held: list[WebhookEvent] | None = None
        # Events lost since the last one sent; LiveKit reports it in the next event.
        self._num_dropped = 0
        #: Every event emitted, in order, whatever became of it.
        self.events: list[WebhookEvent] = []
        #: Every POST made (one per copy when duplicating), in order.
        self.deliveries: list[WebhookDelivery] = []
        #: Events the receiver accepted (2xx), once per accepted copy.
        self.delivered: list[WebhookEvent] = []
        #: Events that were sent but not accepted: a non-2xx answer, or none after retries.
        self.failed: list[WebhookEvent] = []
        #: Events dropped on purpose (:meth:`drop_next`), never sent.
        self.dropped: list[WebhookEvent] = []

    # Fault injection -----------------------------------------------------------------------
    def drop_next(self, n: int, event: str | None = None) -> None:
        """Lose the next ``n`` events (only those named ``event``, when given).

        Rules add up: ``drop_next(1, "egress_ended")`` and ``drop_next(2)`` both apply.
        """
        if n < 0:
            raise ValueError(f"n must not be negative, got {n}")
        if n:
            self._drop_rules.append(_DropRule(n, event))

    def duplicate(self, on: bool, *, concurrent: bool = False) -> None:
        """Send every event from now on twice (the same body, as a retried request would).

        Args:
            on: Whether to send two copies of each event.
            concurrent: POST both copies at the same time instead of one after the other,
                as when two LiveKit nodes, or a retry and a slow first attempt, race: the
                receiver handles the second while the first is still in its handler.
        """
        self._duplicate = on
        self._concurrent = concurrent

    def hold(self) -> None:
        """Keep events back (after the drop rules) until :meth:`release`."""
        if self._held is None:
            self._held = []

    @property
    def held(self) -> list[WebhookEvent]:
        """The events held back by :meth:`hold`, in the order they were emitted."""
        return list(self._held or [])

    def release(self, *, reverse: bool = False) -> None:
        """Queue the held events, in emitted order or reversed, and stop holding."""
        held, self._held = self._held or [], None
        for event in reversed(held) if reverse else held:
            self._enqueue(event)

    # Sending -------------------------------------------------------------------------------
    def send(self, event: WebhookEvent) -> None:
        """Record ``event`` and queue it for delivery (call from the running event loop)."""
        self.events.append(event)
        if self.url is None:
            return
        for rule in self._drop_rules:
            if rule.remaining and rule.event in (None, event.event):
                rule.remaining -= 1
                self.dropped.append(event)
                self._num_dropped += 1
                return
        if self._held is not None:
            self._held.append(event)
            return
        self._enqueue(event)

    def resend(self, event: WebhookEvent) -> None:
        """Queue an event again (a fresh signature, the same id): a late duplicate."""
        self._enqueue(event)

    def _enqueue(self, event: WebhookEvent) -> None:
        if self.url is None:
            return
        copies = 2 if self._duplicate else 1
        self._queue.put_nowait(_Outgoing(event, copies, self._duplicate and self._concurrent))
        if self._worker is None:
            self._client = httpx.AsyncClient(timeout=self._timeout)
            self._worker = asyncio.get_running_loop().create_task(
                self._run(), name="livekit-webhooks"
            )

    async def _run(self) -> None:
        while True:
            outgoing = await self._queue.get()
            try:
                await self._deliver(outgoing)
            finally:
                self._queue.task_done()

    async def _deliver(self, outgoing: _Outgoing) -> None:
        # A copy: the recorded event stays as emitted, and a resent one gets its own count.
        sent = WebhookEvent()
        sent.CopyFrom(outgoing.event)
        sent.num_dropped, self._num_dropped = self._num_dropped, 0
        body = webhook_body(sent)
        authorization = sign_webhook(body, self._api_key, self._api_secret)
        if outgoing.concurrent:
            answers = await asyncio.gather(
                *(self._post(body, authorization) for _ in range(outgoing.copies))
            )
            copies = [self._record(sent, status, attempts) for status, attempts in answers]
            # Lost only if no copy got through: the receiver has the event once one did.
            if not any(copy.ok for copy in copies) and any(_lost(copy) for copy in copies):
                self._num_dropped += sent.num_dropped + 1
            return
        for _ in range(outgoing.copies):
            status, attempts = await self._post(body, authorization)
            delivery = self._record(sent, status, attempts)
            if not delivery.ok:
                if _lost(delivery):
                    self._num_dropped += sent.num_dropped + 1
                return

    def _record(self, sent: WebhookEvent, status: int | None, attempts: int) -> WebhookDelivery:
        delivery = WebhookDelivery(sent, status, attempts)
        self.deliveries.append(delivery)
        (self.delivered if delivery.ok else self.failed).append(sent)
        return delivery

    async def _post(self, body: str, authorization: str) -> tuple[int | None, int]:
        assert self._client is not None and self.url is not None
        headers = {"Authorization": authorization, "Content-Type": WEBHOOK_CONTENT_TYPE}
        status: int | None = None
        for attempt in range(1, self._max_retries + 2):
            try:
                response = await self._client.post(self.url, content=body.encode(), headers=headers)
            except (httpx.HTTPError, httpx.InvalidURL):
                status = None  # no answer: retried, as a connection error is by LiveKit
            else:
                status = response.status_code
            if not _retryable(status) or attempt > self._max_retries:
                return status, attempt
            await asyncio.sleep(min(self._retry_wait * 2 ** (attempt - 1), self._retry_wait_max))
        raise AssertionError("unreachable")  # pragma: no cover

    async def wait_idle(self) -> None:
        """Wait until every queued event has been delivered or given up (not held ones).

        Raises:
            RuntimeError: The delivery task died (its error is chained).
        """
        if self._worker is None:
            return
        joined = asyncio.ensure_future(self._queue.join())
        try:
            await asyncio.wait({joined, self._worker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            joined.cancel()
        if self._worker.done():
            exc = None if self._worker.cancelled() else self._worker.exception()
            raise RuntimeError("webhook delivery stopped") from exc

    async def aclose(self) -> None:
        """Stop delivering (queued events are not sent) and close the HTTP client."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        if self._client is not None:
            await self._client.aclose()
            self._client = None
