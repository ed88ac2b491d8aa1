"""Bearer tokens for the public REST API, signed as its verifier expects (roomscribe.auth).

An HS256 JWT with ``sub``, ``iat`` and ``exp``, and either ``roles: ["admin"]`` (every room)
or ``rooms: [...]``; ``aud`` and ``iss`` when the deployment requires them
(``ROOMSCRIBE_API_JWT_AUDIENCE`` / ``_ISSUER``). For development and the demo: production
tokens come from the identity provider in front of the API.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from typing import Any

import jwt

from roomscribe.auth import ADMIN_ROLE


def mint_api_token(
    secret: str,
    *,
    subject: str = "devkit",
    admin: bool = False,
    rooms: Sequence[str] = (),
    ttl_s: float = 3600.0,
    audience: str | None = None,
    issuer: str | None = None,
    now: float | None = None,
) -> str:
    """Sign an API token.

    Args:
        secret: The HS256 secret (``ROOMSCRIBE_API_JWT_SECRET``).
        subject: The token's ``sub``.
        admin: Grant every room (``roles: ["admin"]``).
        rooms: The rooms granted otherwise.
        ttl_s: Seconds until it expires (> 0).
        audience: The ``aud`` the API requires, if any.
        issuer: The ``iss`` the API requires, if any.
        now: Epoch seconds to issue at (tests pin it); ``None``: now.

    Returns:
        The encoded JWT.

    Raises:
        ValueError: The secret or subject is empty, ``ttl_s`` is not positive, or neither
            ``admin`` nor any room is given.
    """
    if not secret:
        raise ValueError("the API token secret is empty")
    if not subject:
        raise ValueError("the subject must not be empty")
    if not ttl_s > 0:
        raise ValueError(f"the lifetime must be positive, not {ttl_s!r} s")
    if not admin and not rooms:
        raise ValueError("grant something: admin, or at least one room")
    issued = time.time() if now is None else now
    claims: dict[str, Any] = {
        "sub": subject,
        "iat": math.floor(issued),
        "exp": math.floor(issued + ttl_s),
    }
    if admin:
        claims["roles"] = [ADMIN_ROLE]
    else:
        claims["rooms"] = list(dict.fromkeys(rooms))
    if audience:
        claims["aud"] = audience
    if issuer:
        claims["iss"] = issuer
    return jwt.encode(claims, secret, algorithm="HS256")
