"""Opaque keyset cursors.

A cursor carries the sort key of the last item returned and a fingerprint of the query it
was made for, so a cursor reused with other filters is refused rather than silently
skipping or repeating items.
"""

from __future__ import annotations

import base64
import hashlib
import json
from typing import Any

from roomscribe.errors import InvalidCursorError


def fingerprint(filters: dict[str, Any]) -> str:
    """Return a short, stable digest of a query's filters."""
    raw = json.dumps(filters, sort_keys=True, default=str).encode()
    return hashlib.blake2b(raw, digest_size=6).hexdigest()


def encode_cursor(key: list[Any], filters: dict[str, Any]) -> str:
    """Encode the last sort key of a page for the query described by ``filters``."""
    raw = json.dumps({"k": key, "q": fingerprint(filters)}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, filters: dict[str, Any], *, arity: int) -> list[Any]:
    """Decode a cursor made by :func:`encode_cursor` for the same filters.

    Raises:
        InvalidCursorError: malformed, or made for a query with other filters.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        key = data["k"]
        made_for = data["q"]
    except (ValueError, KeyError, TypeError) as exc:
        raise InvalidCursorError("malformed cursor") from exc
    if not isinstance(key, list) or len(key) != arity:
        raise InvalidCursorError("malformed cursor")
    if made_for != fingerprint(filters):
        raise InvalidCursorError("cursor belongs to a query with other filters")
    return key
