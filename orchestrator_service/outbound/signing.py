"""Signing outgoing webhooks, and the check applications run on what they receive.

The scheme is Stripe's (``Stripe-Signature``), under Roomscribe's header names. Every
delivery attempt carries::

    Roomscribe-Event-Id: evt_4f1c...           the event's id: the same on every retry
    Roomscribe-Event-Type: room.completed
    Roomscribe-Signature: t=1795251900,v1=5257a869e7ec...

``t`` is the attempt's Unix time in whole seconds and ``v1`` the lowercase hex
HMAC-SHA256, keyed with ``ROOMSCRIBE_WEBHOOK_SECRET`` (its UTF-8 bytes), of the signed
payload ``f"{t}.".encode() + body``, the body being the exact bytes of the request.
Several ``v1`` entries may appear (a secret being rotated); one matching is enough. Entries
of other schemes (``v0``, ``v2``, ...) are ignored, as Stripe's libraries ignore them.

Because ``t`` is signed, a captured request cannot be replayed later than the tolerance
(five minutes by default); receivers that must refuse replays within it too keep the event
ids they have seen (they need that anyway: a delivery whose answer is lost is sent again).

An application verifies with the raw body, before parsing it::

    from orchestrator_service.outbound.signing import SignatureError, verify_signature

    try:
        verify_signature(secret, body, request.headers["Roomscribe-Signature"])
    except SignatureError:
        return 400

This module uses only the standard library, so an application can also copy it.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Final

from orchestrator_service.outbound.errors import (
    ExpiredSignatureError,
    ForgedSignatureError,
    SignatureError,
)

__all__ = [
    "DEFAULT_TOLERANCE_S",
    "EVENT_ID_HEADER",
    "EVENT_TYPE_HEADER",
    "SIGNATURE_HEADER",
    "ExpiredSignatureError",
    "ForgedSignatureError",
    "SignatureError",
    "sign",
    "signature_header",
    "verify_signature",
]

SIGNATURE_HEADER: Final = "Roomscribe-Signature"
EVENT_ID_HEADER: Final = "Roomscribe-Event-Id"
EVENT_TYPE_HEADER: Final = "Roomscribe-Event-Type"
#: How far a signature's timestamp may lie from the receiver's clock (Stripe's default).
DEFAULT_TOLERANCE_S: Final = 300.0
_SCHEME: Final = "v1"
# A header this long is not ours: no scan of an attacker's megabyte of "v1=" entries.
_MAX_HEADER_CHARS: Final = 4096


def _key(secret: str | bytes) -> bytes:
    key = secret.encode() if isinstance(secret, str) else secret
    if not key:
        # An empty HMAC key is a signature anyone can make.
        raise ValueError("the webhook secret is empty")
    return key


def sign(secret: str | bytes, body: bytes, timestamp: int) -> str:
    """The ``v1`` signature of ``body`` sent at ``timestamp``.

    Args:
        secret: The webhook secret.
        body: The request body, byte for byte.
        timestamp: The Unix time of the attempt, whole seconds.

    Returns:
        The lowercase hex HMAC-SHA256 of ``f"{timestamp}."`` followed by ``body``.

    Raises:
        ValueError: ``secret`` is empty.
    """
    payload = f"{timestamp}.".encode() + body
    return hmac.new(_key(secret), payload, hashlib.sha256).hexdigest()


def signature_header(secret: str | bytes, body: bytes, *, timestamp: int | None = None) -> str:
    """The ``Roomscribe-Signature`` value for ``body``: ``t=<timestamp>,v1=<hex>``.

    Args:
        secret: The webhook secret.
        body: The request body, byte for byte.
        timestamp: The Unix time to sign with; now when ``None``.

    Returns:
        The header value.

    Raises:
        ValueError: ``secret`` is empty.
    """
    signed_at = int(time.time()) if timestamp is None else timestamp
    return f"t={signed_at},{_SCHEME}={sign(secret, body, signed_at)}"


def _parse(header: str) -> tuple[int, list[str]]:
    """The timestamp and the ``v1`` signatures of a header."""
    if len(header) > _MAX_HEADER_CHARS:
        raise ForgedSignatureError("the signature header is too long")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        name, sep, value = item.strip().partition("=")
        if not sep:
            raise ForgedSignatureError("the signature header is malformed")
        if name == "t":
            if timestamp is not None or not value.isascii() or not value.isdigit():
                raise ForgedSignatureError("the signature header has no single valid timestamp")
            timestamp = int(value)
        elif name == _SCHEME:
            signatures.append(value)
    if timestamp is None:
        raise ForgedSignatureError("the signature header has no timestamp")
    if not signatures:
        raise ForgedSignatureError("the signature header has no v1 signature")
    return timestamp, signatures


def verify_signature(
    secret: str | bytes,
    body: bytes,
    header: str | None,
    tolerance_s: float = DEFAULT_TOLERANCE_S,
    *,
    now: float | None = None,
) -> int:
    """Check a delivery's ``Roomscribe-Signature`` against its raw body.

    Args:
        secret: The webhook secret (``ROOMSCRIBE_WEBHOOK_SECRET``).
        body: The request body exactly as received (not re-serialized JSON).
        header: The ``Roomscribe-Signature`` value; ``None`` when it was missing.
        tolerance_s: Seconds the signature's timestamp may lie before (or, for clock skew,
            after) ``now``.
        now: Unix time to check against; the current time when ``None`` (tests pin it).

    Returns:
        The signature's timestamp.

    Raises:
        ForgedSignatureError: the header is missing or malformed, or no ``v1`` signature
            matches ``body`` under ``secret``.
        ExpiredSignatureError: the signature matches but its timestamp is outside the
            tolerance (a replay, or a clock far off).
        ValueError: ``secret`` is empty.
    """
    if not header:
        raise ForgedSignatureError(f"missing {SIGNATURE_HEADER} header")
    timestamp, signatures = _parse(header)
    expected = sign(secret, body, timestamp).encode()
    # compare_digest on each: no timing signal of how much of a guess was right (as bytes:
    # it refuses str with non-ASCII characters, which a forged header may hold).
    if not any(hmac.compare_digest(expected, candidate.encode()) for candidate in signatures):
        raise ForgedSignatureError("no signature matches the body and the secret")
    checked_at = time.time() if now is None else now
    if abs(checked_at - timestamp) > tolerance_s:
        raise ExpiredSignatureError(
            f"the signature's timestamp is {checked_at - timestamp:.0f} s from now; "
            f"at most {tolerance_s:.0f} s are accepted"
        )
    return timestamp
