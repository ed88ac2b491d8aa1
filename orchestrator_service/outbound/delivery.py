"""Delivering events: one background task per (event, target), retries, the delivery log.

:meth:`WebhookDispatcher.submit` never waits: it starts the deliveries and returns, so the
room lifecycle never waits on an application's server. Each delivery is attempted up to
``max_attempts`` times:

- a 2xx answer delivers it;
- a network error, a timeout, a 5xx or a 429 is retried after an exponential backoff with
  jitter (``retry_base_s`` doubling, at most ``retry_max_s``, each wait drawn between half
  and all of that), and never sooner than a ``Retry-After`` asks (seconds or an HTTP date;
  one beyond ``retry_max_s`` is cut to it);
- any other answer (3xx: redirects are not followed; other 4xx) fails it at once, and so
  does a target refused by the SSRF rules (:mod:`.targets`).

Every attempt is signed afresh (:mod:`.signing`), so a retry after a long wait is not
refused as expired. At most ``queue_max`` deliveries are held at once, waiting between
retries included; one more is dropped and logged as such.

The delivery log (:meth:`WebhookDispatcher.records`) lives in memory: the pending
deliveries and the last few hundred finished ones. A restart loses it, and with it every
delivery not yet made: the REST API (and the reconciler behind it) stays the source of
truth, and an application that must not miss a meeting lists rooms by status as well.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import uuid
from collections import deque
from dataclasses import dataclass
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from enum import StrEnum
from typing import Final

import httpx
from prometheus_client import CollectorRegistry, Counter
from pydantic import BaseModel

from orchestrator_service.outbound.config import WebhookConfig
from orchestrator_service.outbound.errors import TargetRefusedError
from orchestrator_service.outbound.events import EventType, OutboundEvent
from orchestrator_service.outbound.signing import (
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    signature_header,
)
from orchestrator_service.outbound.targets import (
    IPAddress,
    Resolver,
    WebhookTarget,
    pinned_url,
    resolve_target,
    system_resolver,
)
from roomscribe.models import UtcDatetime, utcnow

log = logging.getLogger("orchestrator_service.outbound")

USER_AGENT: Final = "Roomscribe-Webhooks/1"
#: Bytes of an answer read at most (for the log); the rest is never read.
RESPONSE_CAP: Final = 1024
#: Finished deliveries the log keeps (pending ones are bounded by ``queue_max``).
LOG_SIZE: Final = 500
#: Attempts running at once, whatever the number of deliveries waiting.
CONCURRENCY: Final = 4


class DeliveryStatus(StrEnum):
    """Where a delivery is."""

    PENDING = "pending"
    DELIVERED = "delivered"
    FAILED = "failed"
    DROPPED = "dropped"


class DeliveryRecord(BaseModel):
    """One event's delivery to one target, as the delivery log shows it.

    Attributes:
        id: The delivery's id.
        event_id: The event's id (``Roomscribe-Event-Id``).
        event_type: The event's type.
        room: The event's room.
        target: The target URL without its query.
        status: Pending, delivered, failed (given up) or dropped (the queue was full).
        attempts: Attempts made so far.
        last_status_code: The HTTP status of the last answer, if one came.
        last_error: Why the last attempt did not deliver.
        created_at: When the delivery was queued.
        updated_at: When it last changed.
        next_attempt_at: When the next attempt is due, while waiting to retry.
    """

    id: str
    event_id: str
    event_type: EventType
    room: str
    target: str
    status: DeliveryStatus = DeliveryStatus.PENDING
    attempts: int = 0
    last_status_code: int | None = None
    last_error: str | None = None
    created_at: UtcDatetime
    updated_at: UtcDatetime
    next_attempt_at: UtcDatetime | None = None


@dataclass(frozen=True)
class _Result:
    """What one attempt came to."""

    delivered: bool = False
    retry: bool = False
    status_code: int | None = None
    error: str | None = None
    retry_after_s: float | None = None


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """Seconds a ``Retry-After`` value asks to wait, or ``None`` when it says nothing usable.

    Args:
        value: The header: delay-seconds or an HTTP date.
        now: The time an HTTP date counts from; now when ``None``.
    """
    if value is None:
        return None
    text = value.strip()
    if text.isascii() and text.isdigit():
        return float(text)
    try:
        when = parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        return None  # RFC 9110 dates are GMT; a zoneless one is not one of them
    return max(0.0, (when - (now or utcnow())).total_seconds())


async def _excerpt(response: httpx.Response) -> str:
    """The start of an answer's body, never more than :data:`RESPONSE_CAP` bytes read."""
    kept = bytearray()
    # Raw bytes: a compressed body is not inflated (no decompression bomb either).
    async for chunk in response.aiter_raw():
        kept += chunk
        if len(kept) >= RESPONSE_CAP:
            break
    return bytes(kept[:RESPONSE_CAP]).decode("utf-8", "replace").strip()


class WebhookDispatcher:
    """Delivers signed events to every target in the background, with retries."""

    def __init__(
        self,
        config: WebhookConfig,
        *,
        resolver: Resolver = system_resolver,
        registry: CollectorRegistry | None = None,
        rng: random.Random | None = None,
    ) -> None:
        """Prepare the deliveries of ``config``'s targets (nothing is sent yet).

        Args:
            config: The webhook settings.
            resolver: Resolves target hosts (tests resolve names to chosen addresses).
            registry: Where the delivery counter is registered; none when ``None``.
            rng: The jitter's random source.

        Raises:
            ConfigurationError: a target URL is unusable.
        """
        self._config = config
        self._targets = config.targets()
        self._secret = config.secret.get_secret_value()
        self._resolver = resolver
        self._rng = rng or random.Random()
        self._client: httpx.AsyncClient | None = None
        self._gate = asyncio.Semaphore(CONCURRENCY)
        self._tasks: set[asyncio.Task[None]] = set()
        self._pending: dict[str, DeliveryRecord] = {}
        self._finished: deque[DeliveryRecord] = deque(maxlen=LOG_SIZE)
        self.dropped = 0
        self._outcomes = (
            None
            if registry is None
            else Counter(
                "orchestrator_outbound_webhooks_total",
                "Outgoing webhook attempts and deliveries, by event type and outcome.",
                ["type", "outcome"],
                registry=registry,
            )
        )

    @property
    def targets(self) -> list[str]:
        """The targets, without their queries."""
        return [t.redacted for t in self._targets]

    @property
    def pending(self) -> int:
        """Deliveries not yet delivered, failed or dropped."""
        return len(self._pending)

    def submit(self, event: OutboundEvent) -> None:
        """Start delivering ``event`` to every target; returns at once."""
        body = event.body()
        for target in self._targets:
            now = utcnow()
            record = DeliveryRecord(
                id=f"dlv_{uuid.uuid4().hex}",
                event_id=event.id,
                event_type=event.type,
                room=event.room,
                target=target.redacted,
                created_at=now,
                updated_at=now,
            )
            if len(self._pending) >= self._config.queue_max:
                self.dropped += 1
                reason = f"dropped: {self._config.queue_max} deliveries are already queued"
                self._finish(record, DeliveryStatus.DROPPED, reason, outcome="dropped")
                continue
            self._pending[record.id] = record
            task = asyncio.get_running_loop().create_task(
                self._deliver(record, target, body), name=f"webhook-{record.id}"
            )
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    def records(
        self, *, status: DeliveryStatus | None = None, limit: int = 100
    ) -> list[DeliveryRecord]:
        """The delivery log, newest first (copies: the log goes on changing)."""
        newest = [*reversed(self._pending.values()), *reversed(self._finished)]
        newest.sort(key=lambda r: r.created_at, reverse=True)
        chosen = [r for r in newest if status is None or r.status is status]
        return [r.model_copy() for r in chosen[:limit]]

    async def idle(self) -> None:
        """Wait until every delivery has ended (delivered, failed or dropped)."""
        while self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def aclose(self) -> None:
        """Stop every delivery; those not yet made are lost (and logged as lost)."""
        tasks = list(self._tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._pending:
            log.warning(
                "%d outgoing webhook deliveries were pending at shutdown and are lost",
                len(self._pending),
            )
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                follow_redirects=False,
                # A proxy from the environment would connect for us, past the address check.
                trust_env=False,
                timeout=httpx.Timeout(self._config.timeout_s),
                # No reuse: a kept-alive connection to one address would carry another
                # host's request (with that host's SNI skipped) when both resolve to it.
                limits=httpx.Limits(max_keepalive_connections=0),
                headers={"User-Agent": USER_AGENT},
            )
        return self._client

    def _count(self, record: DeliveryRecord, outcome: str) -> None:
        if self._outcomes is not None:
            self._outcomes.labels(type=record.event_type.value, outcome=outcome).inc()

    def _finish(
        self, record: DeliveryRecord, status: DeliveryStatus, error: str | None, *, outcome: str
    ) -> None:
        record.status = status
        record.last_error = error
        record.next_attempt_at = None
        record.updated_at = utcnow()
        self._pending.pop(record.id, None)
        self._finished.append(record)
        self._count(record, outcome)
        if status is not DeliveryStatus.DELIVERED:
            log.warning(
                "outgoing webhook not delivered: %s",
                error,
                extra={"event_id": record.event_id, "target": record.target, "room": record.room},
            )

    def _delay(self, attempt: int, retry_after_s: float | None) -> float:
        """The wait before attempt ``attempt + 1``."""
        cap = self._config.retry_max_s
        backoff = min(cap, self._config.retry_base_s * 2.0 ** (attempt - 1))
        # Jitter spreads the retries of many deliveries that failed together (an outage).
        wait = backoff * self._rng.uniform(0.5, 1.0)
        if retry_after_s is not None:
            wait = max(wait, retry_after_s)
        return min(cap, wait)

    async def _deliver(self, record: DeliveryRecord, target: WebhookTarget, body: bytes) -> None:
        attempts = self._config.max_attempts
        for attempt in range(1, attempts + 1):
            record.attempts = attempt
            result = await self._attempt(record, target, body)
            record.last_status_code = result.status_code
            if result.delivered:
                self._finish(record, DeliveryStatus.DELIVERED, None, outcome="delivered")
                return
            if not result.retry:
                self._finish(record, DeliveryStatus.FAILED, result.error, outcome="failed")
                return
            if attempt == attempts:
                error = f"gave up after {attempts} attempts; last: {result.error}"
                self._finish(record, DeliveryStatus.FAILED, error, outcome="failed")
                return
            self._count(record, "retry")
            wait = self._delay(attempt, result.retry_after_s)
            record.last_error = result.error
            record.updated_at = utcnow()
            record.next_attempt_at = record.updated_at + timedelta(seconds=wait)
            await asyncio.sleep(wait)

    async def _attempt(self, record: DeliveryRecord, target: WebhookTarget, body: bytes) -> _Result:
        try:
            async with self._gate, asyncio.timeout(self._config.timeout_s):
                address = await resolve_target(
                    target, resolver=self._resolver, allow_private=self._config.allow_private
                )
                return await self._post(record, target, address, body)
        except TargetRefusedError as exc:
            return _Result(error=f"refused: {exc}")
        except (httpx.HTTPError, OSError, TimeoutError) as exc:
            # Connection refused or reset, DNS failure, timeout: the next try may get through.
            return _Result(retry=True, error=f"{type(exc).__name__}: {exc}".rstrip(": "))

    async def _post(
        self, record: DeliveryRecord, target: WebhookTarget, address: IPAddress, body: bytes
    ) -> _Result:
        client = self._http()
        request = client.build_request(
            "POST",
            pinned_url(target, address),
            content=body,
            headers={
                "Host": target.netloc,
                "Content-Type": "application/json",
                EVENT_ID_HEADER: record.event_id,
                EVENT_TYPE_HEADER: record.event_type.value,
                SIGNATURE_HEADER: signature_header(self._secret, body, timestamp=int(time.time())),
            },
            # The certificate is checked against the name, not the pinned address.
            extensions={"sni_hostname": target.host} if target.scheme == "https" else {},
        )
        response = await client.send(request, stream=True)
        try:
            excerpt = await _excerpt(response)
        finally:
            await response.aclose()
        code = response.status_code
        if 200 <= code < 300:
            return _Result(delivered=True, status_code=code)
        error = f"HTTP {code}" + (f": {excerpt[:200]}" if excerpt else "")
        if code == 429 or code >= 500:
            retry_after = parse_retry_after(response.headers.get("retry-after"))
            return _Result(retry=True, status_code=code, error=error, retry_after_s=retry_after)
        if 300 <= code < 400:
            error = f"HTTP {code}: redirects are not followed"
        return _Result(status_code=code, error=error)
