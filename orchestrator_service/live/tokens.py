"""Stream tokens: short-lived, room-scoped credentials that can travel in a URL.

A browser's ``EventSource`` and ``<audio src>`` cannot send an ``Authorization`` header, so
the web app trades its API token for a stream token (``POST /v1/rooms/{room}/stream-token``)
and puts that in the query string. Because a URL ends up in history, proxy logs and the
``Referer`` of whatever the page loads, a stream token is deliberately weak: it reads one
room's events and recordings, nothing else, for a few minutes.

They are HS256 JWTs signed with a key derived from ``ROOMSCRIBE_SECRET`` for this purpose
only, with their own audience, so a stream token never passes as an internal service token
or as a REST API token (even where a deployment gave both secrets the same value), and
neither of those passes as a stream token.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import time
from dataclasses import dataclass
from typing import Any, Final

import jwt

from roomscribe.errors import (
    ConfigurationError,
    InvalidTokenError,
    PermissionDeniedError,
    TokenExpiredError,
)

#: The ``aud`` of every stream token; no other token of the project carries it.
STREAM_AUDIENCE: Final = "roomscribe-stream"
_ALGORITHM: Final = "HS256"
# Domain separation: the derived key is useless for any other token of the project.
_KEY_CONTEXT: Final = b"roomscribe stream token v1"


@dataclass(frozen=True)
class StreamGrant:
    """What a verified stream token allows.

    Attributes:
        subject: The API caller the token was issued to.
        room: The one room it opens.
        expires_at: Epoch seconds after which it is refused.
    """

    subject: str
    room: str
    expires_at: float


class StreamTokens:
    """Issues and verifies stream tokens with a key derived from the internal secret."""

    def __init__(self, secret: str, *, ttl_s: float, leeway_s: float = 5.0) -> None:
        """Derive the signing key.

        Args:
            secret: ``ROOMSCRIBE_SECRET``.
            ttl_s: Lifetime of the tokens issued.
            leeway_s: Clock skew tolerated on ``exp``, in seconds.

        Raises:
            ConfigurationError: ``secret`` is empty.
        """
        if not secret:
            raise ConfigurationError("ROOMSCRIBE_SECRET is empty; stream tokens need it")
        self._key = hmac.new(secret.encode(), _KEY_CONTEXT, hashlib.sha256).digest()
        self.ttl_s = ttl_s
        self._leeway_s = leeway_s

    def issue(self, room: str, *, subject: str, now: float | None = None) -> tuple[str, float]:
        """Sign a token that opens ``room`` for ``subject``.

        Returns:
            The encoded JWT and its expiry (epoch seconds, whole).
        """
        issued = math.floor(time.time() if now is None else now)
        expires = math.floor(issued + self.ttl_s)
        payload = {
            "sub": subject,
            "aud": STREAM_AUDIENCE,
            "room": room,
            "iat": issued,
            "exp": expires,
        }
        return jwt.encode(payload, self._key, algorithm=_ALGORITHM), float(expires)

    def verify(self, token: str, *, room: str) -> StreamGrant:
        """Verify ``token`` and that it opens ``room``.

        Raises:
            TokenExpiredError: It has expired.
            InvalidTokenError: It is malformed, forged, not a stream token, or lives longer
                than this server issues them.
            PermissionDeniedError: It is a valid token for another room.
        """
        payload = self._decode(token)
        granted = payload.get("room")
        subject = payload.get("sub")
        if not isinstance(granted, str) or not isinstance(subject, str) or not subject:
            raise InvalidTokenError("stream token lacks its 'room' or 'sub' claim")
        exp = payload["exp"]
        iat = payload.get("iat")
        if (
            isinstance(exp, bool)
            or not isinstance(exp, int | float)
            or not isinstance(iat, int | float)
            or exp - iat > self.ttl_s + self._leeway_s
        ):
            # The key only signs what issue() made; this catches a token of a past
            # configuration with a longer lifetime.
            raise InvalidTokenError("stream token lives longer than this server issues them")
        if granted != room:
            raise PermissionDeniedError(f"this stream token does not grant room {room!r}")
        return StreamGrant(subject=subject, room=granted, expires_at=float(exp))

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            payload: dict[str, Any] = jwt.decode(
                token,
                self._key,
                algorithms=[_ALGORITHM],
                audience=STREAM_AUDIENCE,
                leeway=self._leeway_s,
                options={"require": ["exp", "iat", "aud", "sub"], "strict_aud": True},
            )
        except jwt.ExpiredSignatureError as exc:
            raise TokenExpiredError("stream token has expired; ask for a new one") from exc
        except jwt.InvalidAudienceError as exc:
            raise InvalidTokenError("not a stream token") from exc
        except jwt.InvalidSignatureError as exc:
            raise InvalidTokenError("stream token signature does not verify") from exc
        except jwt.PyJWTError as exc:
            raise InvalidTokenError(f"malformed stream token: {exc}") from exc
        return payload
