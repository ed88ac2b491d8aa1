"""Errors of the outgoing webhooks.

The tree, so callers can see what to catch::

    RoomscribeError
    └── WebhookError                    outgoing webhooks
        ├── SignatureError              a ``Roomscribe-Signature`` that is not accepted
        │   ├── ForgedSignatureError    malformed, or no ``v1`` matches the body and secret
        │   └── ExpiredSignatureError   signed outside the tolerance (a replay, a bad clock)
        └── TargetRefusedError          a target that may not be delivered to (SSRF rules)

:class:`SignatureError` is what applications see from
:func:`~orchestrator_service.outbound.signing.verify_signature`; they answer it with 400 or
401. :class:`TargetRefusedError` ends a delivery at once: no retry can make a refused
address acceptable.
"""

from __future__ import annotations

from roomscribe.errors import RoomscribeError


class WebhookError(RoomscribeError):
    """Base class of the outgoing webhooks' errors."""


class SignatureError(WebhookError):
    """A webhook signature that must not be accepted."""


class ForgedSignatureError(SignatureError):
    """The header is malformed, or none of its signatures matches the body and secret."""


class ExpiredSignatureError(SignatureError):
    """The signature's timestamp lies further from now than the tolerance allows."""


class TargetRefusedError(WebhookError):
    """The target URL, or the address its host resolves to, may not be delivered to."""
