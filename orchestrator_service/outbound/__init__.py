"""Outgoing webhooks: signed events for applications, delivered with retries.

When a room completes, a summary is stored or a track's Whisper pass finishes, the
orchestrator POSTs a JSON event (:mod:`.events`) to every URL in
``ROOMSCRIBE_WEBHOOK_URLS``, signed with ``ROOMSCRIBE_WEBHOOK_SECRET`` the way Stripe signs
its webhooks (:mod:`.signing`; applications check deliveries with
:func:`verify_signature`). Deliveries run in the background and are retried with backoff
(:mod:`.delivery`), only to addresses the SSRF rules allow (:mod:`.targets`); admins read
the delivery log at ``GET /v1/webhooks/deliveries`` (:mod:`.routes`).

Nothing of it is stored: a restart loses the deliveries not yet made and the log. The
REST API stays the source of truth; the events say when to look.

The modules, each one concept (a module imports only those listed before it):

- ``errors``: the error tree;
- ``signing``: ``Roomscribe-Signature``, made and verified (standard library only);
- ``events``: :class:`EventType`, :class:`OutboundEvent` and the three event builders;
- ``targets``: target URLs, the address rules, pinning;
- ``config``: :class:`~.config.WebhookConfig`, the parsed settings;
- ``delivery``: the dispatcher, retries and the delivery log;
- ``emitter``: what the room lifecycle calls;
- ``routes``: the admin route over the delivery log.

Only the first three are imported here, so ``from orchestrator_service.outbound import
verify_signature`` pulls in no HTTP client.
"""

from orchestrator_service.outbound.errors import (
    ExpiredSignatureError,
    ForgedSignatureError,
    SignatureError,
    TargetRefusedError,
    WebhookError,
)
from orchestrator_service.outbound.events import EventType, OutboundEvent
from orchestrator_service.outbound.signing import (
    DEFAULT_TOLERANCE_S,
    EVENT_ID_HEADER,
    EVENT_TYPE_HEADER,
    SIGNATURE_HEADER,
    sign,
    signature_header,
    verify_signature,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "EventType",
    "ExpiredSignatureError",
    "ForgedSignatureError",
    "OutboundEvent",
    "SignatureError",
    "TargetRefusedError",
    "WebhookError",
    "sign",
    "signature_header",
    "verify_signature",
]
