"""Tokens: short-lived internal service tokens and the public API's bearer tokens.

Internal tokens (DESIGN.md sections 5 and 9) are HS256 JWTs signed with the one shared
secret (``ROOMSCRIBE_SECRET``); ``aud`` names the called service (``orchestrator``, ``stt``,
``tts``), ``sub`` the caller, and ``exp`` lies at most five minutes ahead.

Public REST API tokens are bearer JWTs, HS256 with ``ROOMSCRIBE_API_JWT_SECRET`` or RS256 /
ES256 with keys from ``ROOMSCRIBE_API_JWKS_URL``. Their claims decide what the caller may see:
``{"sub", "exp", "roles": ["admin"]}`` sees every room, ``{"sub", "exp", "rooms": ["a", "b"]}``
only those rooms.

Every failure raises an :class:`~roomscribe.errors.AuthError` whose message says what was
wrong with the token without ever repeating the token itself.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

import jwt
from jwt.algorithms import HMACAlgorithm
from pydantic import BaseModel, ConfigDict

from roomscribe.errors import (
    AuthError,
    ConfigurationError,
    InvalidTokenError,
    PermissionDeniedError,
    TokenExpiredError,
)

if TYPE_CHECKING:
    from roomscribe.settings import CoreSettings

#: The longest an internal token may live, in seconds. A longer-lived one is a leaked one.
MAX_INTERNAL_TOKEN_TTL_S: Final = 300.0
#: The role that lets an API caller read every room.
ADMIN_ROLE: Final = "admin"

_INTERNAL_ALGORITHM: Final = "HS256"
# Asymmetric algorithms accepted from a JWKS. HS256 is deliberately absent: with a JWKS the
# verifier holds only public keys, and accepting HS256 there is the classic RS/HS confusion
# (an attacker signs with the published public key as an HMAC secret).
_JWKS_ALGORITHMS: Final = ("RS256", "ES256")
# A JWKS fetch happens on the request path, so fail fast instead of PyJWT's 30 s default.
_JWKS_TIMEOUT_S: Final = 5.0
# Keys rotate rarely; refetching the set every five minutes is plenty.
_JWKS_CACHE_LIFESPAN_S: Final = 300.0


class InternalClaims(BaseModel):
    """The verified claims of an internal service token.

    Attributes:
        subject: The calling service (``sub``).
        audience: The called service (``aud``).
        expires_at: When the token stops being accepted (``exp``), aware UTC.
    """

    model_config = ConfigDict(frozen=True)

    subject: str
    audience: str
    expires_at: datetime


def _require_secret(secret: str) -> None:
    # An empty HMAC key lets anyone mint tokens; refuse it rather than sign with it.
    if not secret:
        raise ConfigurationError("the internal token secret is empty; set ROOMSCRIBE_SECRET")


def issue_internal_token(
    secret: str,
    *,
    audience: str,
    subject: str,
    ttl_s: float = 60.0,
    now: float | None = None,
) -> str:
    """Sign a short-lived HS256 token for one service-to-service call.

    Args:
        secret: The shared secret (``ROOMSCRIBE_SECRET``).
        audience: The service being called, e.g. ``"stt"``.
        subject: The calling service, e.g. ``"agent"``.
        ttl_s: Seconds until the token expires, in (0, 300]; ``exp`` is rounded down to a
            whole second.
        now: Epoch seconds to issue at; the current time when ``None`` (tests pin it).

    Returns:
        The encoded JWT.

    Raises:
        ValueError: ``ttl_s`` is outside (0, 300], or ``audience``/``subject`` is empty.
        ConfigurationError: ``secret`` is empty.
    """
    _require_secret(secret)
    if not (0 < ttl_s <= MAX_INTERNAL_TOKEN_TTL_S):
        raise ValueError(
            f"ttl_s must be in (0, {MAX_INTERNAL_TOKEN_TTL_S:g}] seconds, got {ttl_s!r}"
        )
    if not audience:
        raise ValueError("audience must name the called service")
    if not subject:
        raise ValueError("subject must name the calling service")
    issued = time.time() if now is None else now
    payload = {
        "sub": subject,
        "aud": audience,
        # Whole seconds keep the token readable by any JWT library. Both round down, so the
        # token never outlives ttl_s (a 300 s token stays within the verifier's 5 minute cap).
        "iat": math.floor(issued),
        "exp": math.floor(issued + ttl_s),
    }
    return jwt.encode(payload, secret, algorithm=_INTERNAL_ALGORITHM)


def verify_internal_token(
    secret: str, token: str, *, audience: str, leeway_s: float = 5.0
) -> InternalClaims:
    """Verify an internal service token meant for ``audience``.

    Only HS256 is accepted. The token must carry ``exp``, ``aud`` and ``sub``, and its
    ``exp`` may lie at most five minutes (plus ``leeway_s``) after both its ``iat`` and now.

    Args:
        secret: The shared secret (``ROOMSCRIBE_SECRET``).
        token: The encoded JWT, without any ``Bearer`` prefix.
        audience: The service doing the verifying, e.g. ``"stt"``.
        leeway_s: Clock skew tolerated between services, in seconds.

    Returns:
        The verified claims.

    Raises:
        TokenExpiredError: ``exp`` has passed.
        InvalidTokenError: The token is malformed, forged, for another audience, signed with
            another algorithm, lacks a required claim, or lives longer than five minutes.
        ConfigurationError: ``secret`` is empty.
    """
    _require_secret(secret)
    payload = _decode(
        token,
        secret,
        algorithms=[_INTERNAL_ALGORITHM],
        audience=audience,
        issuer=None,
        leeway_s=leeway_s,
        # Internal tokens carry exactly one audience; a list would only widen where a leaked
        # token can be replayed.
        strict_aud=True,
    )
    exp = float(payload["exp"])
    limit = MAX_INTERNAL_TOKEN_TTL_S + leeway_s
    if exp - time.time() > limit:
        raise InvalidTokenError(
            "internal token expires more than 5 minutes from now; internal tokens must be "
            "short-lived"
        )
    iat = payload.get("iat")
    if iat is not None and exp - float(iat) > limit:
        raise InvalidTokenError(
            "internal token lives longer than 5 minutes; internal tokens must be short-lived"
        )
    return InternalClaims(
        subject=_subject(payload),
        audience=str(payload["aud"]),
        expires_at=datetime.fromtimestamp(exp, UTC),
    )


class ApiPrincipal(BaseModel):
    """Who called the public API, and which rooms they may read.

    Attributes:
        subject: The token's ``sub``.
        is_admin: Whether the token carries the ``admin`` role (reads every room).
        rooms: The rooms a non-admin may read; empty means none.
    """

    model_config = ConfigDict(frozen=True)

    subject: str
    is_admin: bool = False
    rooms: frozenset[str] = frozenset()

    def can_read(self, room: str) -> bool:
        """Return whether this principal may read ``room``."""
        return self.is_admin or room in self.rooms

    def require_room(self, room: str) -> None:
        """Raise unless this principal may read ``room``.

        Raises:
            PermissionDeniedError: The token grants no access to ``room``.
        """
        if not self.can_read(room):
            raise PermissionDeniedError(f"this token does not grant access to room {room!r}")

    def require_admin(self) -> None:
        """Raise unless this principal is an admin.

        Raises:
            PermissionDeniedError: The token lacks the ``admin`` role.
        """
        if not self.is_admin:
            raise PermissionDeniedError("this operation needs a token with the 'admin' role")

    @classmethod
    def from_claims(cls, claims: Mapping[str, Any]) -> ApiPrincipal:
        """Build a principal from already verified claims.

        Args:
            claims: The decoded JWT payload; ``sub`` must be a non-empty string, ``roles`` and
                ``rooms``, when present, lists of strings.

        Returns:
            The principal; one with neither ``admin`` nor rooms can read nothing.

        Raises:
            InvalidTokenError: A claim has the wrong type.
        """
        return cls(
            subject=_subject(claims),
            is_admin=ADMIN_ROLE in _string_list(claims, "roles"),
            rooms=frozenset(_string_list(claims, "rooms")),
        )


class ApiTokenVerifier:
    """Verifies the public REST API's bearer tokens.

    Exactly one key source is configured: an HS256 secret, or a JWKS URL whose RS256 / ES256
    keys are looked up by the token's ``kid``. The key set is cached for five minutes and
    refetched early (at most every 30 seconds) when a token names an unknown ``kid``.

    :meth:`verify` may therefore block on a network fetch of the JWKS; call :meth:`averify`
    from async code so the event loop never waits on it.
    """

    def __init__(
        self,
        *,
        hs256_secret: str | None = None,
        jwks_url: str | None = None,
        audience: str | None = None,
        issuer: str | None = None,
        leeway_s: float = 5.0,
    ) -> None:
        """Configure the key source and the claims every token must match.

        Args:
            hs256_secret: Secret of HS256 tokens; exclusive with ``jwks_url``.
            jwks_url: http(s) URL of a JWKS with RS256 / ES256 keys; exclusive with
                ``hs256_secret``.
            audience: Required ``aud``; when ``None`` the ``aud`` claim is not checked, since
                identity providers set one the deployment may not have configured.
            issuer: Required ``iss``; when ``None`` it is not checked.
            leeway_s: Clock skew tolerated on ``exp``/``nbf``/``iat``, in seconds.

        Raises:
            ConfigurationError: Both or neither key source is given, the secret is empty or
                an asymmetric key, or the JWKS URL is not http(s).
        """
        if (hs256_secret is None) == (jwks_url is None):
            raise ConfigurationError(
                "configure exactly one of an HS256 secret (ROOMSCRIBE_API_JWT_SECRET) or a "
                "JWKS URL (ROOMSCRIBE_API_JWKS_URL) for API tokens"
            )
        self._secret = hs256_secret
        self._jwks: jwt.PyJWKClient | None = None
        if hs256_secret is not None:
            if not hs256_secret:
                raise ConfigurationError("the API token secret is empty")
            try:
                # PyJWT refuses PEM keys as HMAC secrets; say so now, not on every request.
                HMACAlgorithm(HMACAlgorithm.SHA256).prepare_key(hs256_secret)
            except jwt.InvalidKeyError as exc:
                raise ConfigurationError(
                    "the API token secret looks like an asymmetric key; configure its JWKS "
                    "URL instead"
                ) from exc
        elif jwks_url is not None:
            try:
                self._jwks = jwt.PyJWKClient(
                    jwks_url,
                    cache_jwk_set=True,
                    lifespan=_JWKS_CACHE_LIFESPAN_S,
                    timeout=_JWKS_TIMEOUT_S,
                )
            except jwt.PyJWKClientError as exc:
                raise ConfigurationError(f"unusable JWKS URL {jwks_url!r}: {exc}") from exc
        self._audience = audience
        self._issuer = issuer
        self._leeway_s = leeway_s

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> ApiTokenVerifier:
        """Build the verifier from ``ROOMSCRIBE_API_JWT_SECRET`` or ``ROOMSCRIBE_API_JWKS_URL``.

        Args:
            settings: Settings with exactly one of ``api_jwt_secret`` and ``api_jwks_url``.

        Returns:
            A verifier that also checks ``aud`` and ``iss`` when ``ROOMSCRIBE_API_JWT_AUDIENCE``
            and ``ROOMSCRIBE_API_JWT_ISSUER`` are set.

        Raises:
            ConfigurationError: Both or neither is set.
        """
        secret = settings.api_jwt_secret
        return cls(
            hs256_secret=secret.get_secret_value() if secret is not None else None,
            jwks_url=settings.api_jwks_url,
            audience=settings.api_jwt_audience,
            issuer=settings.api_jwt_issuer,
        )

    def verify(self, token: str) -> ApiPrincipal:
        """Verify a bearer token and return its principal.

        With a JWKS URL this may block on fetching the key set (on the first call, after the
        cache expires, or for an unknown ``kid``); use :meth:`averify` on an event loop.

        Args:
            token: The encoded JWT, without the ``Bearer`` prefix.

        Returns:
            The principal the token describes.

        Raises:
            TokenExpiredError: ``exp`` has passed.
            InvalidTokenError: The token is malformed, forged, signed with an algorithm or key
                not accepted, for another audience or issuer, or lacks ``exp``/``sub``, or its
                ``roles``/``rooms`` have the wrong type.
            AuthError: The JWKS could not be fetched, so the token cannot be checked.
        """
        key: str | jwt.PyJWK
        if self._jwks is None:
            assert self._secret is not None  # exactly one source, checked in __init__
            key, algorithms = self._secret, ["HS256"]
        else:
            key, algorithms = self._jwks_key(self._jwks, token)
        payload = _decode(
            token,
            key,
            algorithms=algorithms,
            audience=self._audience,
            issuer=self._issuer,
            leeway_s=self._leeway_s,
            strict_aud=False,
        )
        return ApiPrincipal.from_claims(payload)

    async def averify(self, token: str) -> ApiPrincipal:
        """Verify like :meth:`verify`, in a worker thread so a JWKS fetch never blocks the loop.

        Raises:
            TokenExpiredError: ``exp`` has passed.
            InvalidTokenError: See :meth:`verify`.
            AuthError: The JWKS could not be fetched.
        """
        return await asyncio.to_thread(self.verify, token)

    @staticmethod
    def _jwks_key(client: jwt.PyJWKClient, token: str) -> tuple[jwt.PyJWK, list[str]]:
        # Check the header before looking up keys, so a token with a refused algorithm or no
        # kid never triggers a fetch of the key set.
        try:
            header = jwt.get_unverified_header(token)
        except jwt.PyJWTError as exc:
            raise InvalidTokenError("malformed token: cannot read its header") from exc
        alg = header.get("alg")
        if alg not in _JWKS_ALGORITHMS:
            raise InvalidTokenError(
                f"token algorithm {alg!r} is not accepted; expected one of "
                f"{', '.join(_JWKS_ALGORITHMS)}"
            )
        kid = header.get("kid")
        if not isinstance(kid, str) or not kid:
            raise InvalidTokenError("token header has no 'kid' to look its signing key up by")
        try:
            signing_key = client.get_signing_key(kid)
        except jwt.PyJWKClientConnectionError as exc:
            # Not the token's fault, but without keys it cannot be accepted either.
            raise AuthError("could not fetch the API token signing keys from the JWKS URL") from exc
        except (jwt.PyJWKClientError, jwt.PyJWKSetError) as exc:
            raise InvalidTokenError(f"no signing key with kid {kid!r} in the JWKS") from exc
        # PyJWT also insists that the token's alg equals the key's own algorithm, so an RS256
        # key can never verify a token that claims ES256 or the other way round.
        return signing_key, [alg]


def _decode(
    token: str,
    key: str | jwt.PyJWK,
    *,
    algorithms: list[str],
    audience: str | None,
    issuer: str | None,
    leeway_s: float,
    strict_aud: bool,
) -> dict[str, Any]:
    """Decode and verify ``token``, translating PyJWT's errors into ours."""
    require = ["exp", "sub"] if audience is None else ["exp", "aud", "sub"]
    try:
        payload: dict[str, Any] = jwt.decode(
            token,
            key,
            algorithms=algorithms,
            audience=audience,
            issuer=issuer,
            leeway=leeway_s,
            options={
                "require": require,
                "verify_aud": audience is not None,
                "strict_aud": strict_aud,
            },
        )
    except jwt.ExpiredSignatureError as exc:
        raise TokenExpiredError("token has expired") from exc
    except jwt.MissingRequiredClaimError as exc:
        raise InvalidTokenError(f"token lacks the required {exc.claim!r} claim") from exc
    except jwt.InvalidAudienceError as exc:
        raise InvalidTokenError("token is meant for another audience") from exc
    except jwt.InvalidIssuerError as exc:
        raise InvalidTokenError("token comes from an issuer that is not trusted") from exc
    except jwt.InvalidAlgorithmError as exc:
        raise InvalidTokenError(
            f"token algorithm is not accepted; expected one of {', '.join(algorithms)}"
        ) from exc
    except jwt.InvalidSignatureError as exc:
        raise InvalidTokenError("token signature does not verify") from exc
    except jwt.ImmatureSignatureError as exc:
        raise InvalidTokenError("token is not valid yet") from exc
    except jwt.PyJWTError as exc:
        # DecodeError, bad claim types, unusable keys: PyJWT's messages describe the problem
        # and never contain the token itself.
        raise InvalidTokenError(f"malformed token: {exc}") from exc
    if not isinstance(payload, dict):  # pragma: no cover - PyJWT always returns a dict
        raise InvalidTokenError("malformed token: payload is not a JSON object")
    for claim in ("exp", "iat", "nbf"):
        # RFC 7519 NumericDate is a JSON number; PyJWT also takes "9999999999" (a string)
        # through int(), which no issuer of ours writes and a forger would.
        value = payload.get(claim)
        if claim in payload and (
            isinstance(value, bool)
            or not isinstance(value, int | float)
            or not math.isfinite(value)
        ):
            raise InvalidTokenError(f"token {claim!r} claim must be a number (NumericDate)")
    return payload


def _subject(claims: Mapping[str, Any]) -> str:
    subject = claims.get("sub")
    if not isinstance(subject, str) or not subject:
        raise InvalidTokenError("token 'sub' claim must be a non-empty string")
    return subject


def _string_list(claims: Mapping[str, Any], name: str) -> list[str]:
    value = claims.get(name)
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise InvalidTokenError(f"token {name!r} claim must be a list of strings")
    return value
