"""Twirp as LiveKit's server speaks it: routing, bodies, token and grant checks, errors.

A request is ``POST /twirp/<service>/<method>`` with a protobuf (``application/protobuf``,
what ``livekit-api`` sends) or Twirp JSON (``application/json``) body and an
``Authorization: Bearer`` token signed with the API secret. Errors are Twirp JSON errors
(``{"code", "msg"}`` with the code's HTTP status). Like LiveKit, a missing grant is
``unauthenticated`` ("permissions denied"), not ``permission_denied``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Final, Generic, TypeVar

import jwt
from google.protobuf.json_format import MessageToJson, Parse, ParseError
from google.protobuf.message import DecodeError, Message
from livekit.api import TokenVerifier, VideoGrants
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

#: Twirp's HTTP status for each error code (twirp's ServerHTTPStatusFromErrorCode).
_TWIRP_STATUS: Final = {
    "canceled": 408,
    "invalid_argument": 400,
    "malformed": 400,
    "deadline_exceeded": 408,
    "not_found": 404,
    "bad_route": 404,
    "already_exists": 409,
    "permission_denied": 403,
    "unauthenticated": 401,
    "resource_exhausted": 429,
    "failed_precondition": 412,
    "aborted": 409,
    "out_of_range": 400,
    "unimplemented": 501,
    "internal": 500,
    "unavailable": 503,
    "dataloss": 500,
    "unknown": 500,
}

_ReqT = TypeVar("_ReqT", bound=Message)


class TwirpError(Exception):
    """An error the Twirp server answers with (``{"code", "msg"}`` and the code's status).

    Args:
        code: A Twirp error code, e.g. ``not_found``.
        msg: The message, as LiveKit words it where it matters.
    """

    def __init__(self, code: str, msg: str) -> None:
        super().__init__(f"{code}: {msg}")
        self.code = code
        self.msg = msg

    @property
    def status(self) -> int:
        """The HTTP status Twirp uses for this code."""
        return _TWIRP_STATUS.get(self.code, 500)


@dataclass(frozen=True)
class TwirpMethod(Generic[_ReqT]):
    """One Twirp method: how to read its request, who may call it, and what it does.

    Attributes:
        request_type: The request message class.
        allowed: Whether the token's grants allow this request.
        call: The handler; it may raise :class:`TwirpError`.
    """

    request_type: type[_ReqT]
    allowed: Callable[[VideoGrants, _ReqT], bool]
    call: Callable[[_ReqT], Message]

    def parse(self, body: bytes, *, as_json: bool) -> _ReqT:
        """Decode a request body.

        Raises:
            TwirpError: ``malformed``, the body cannot be decoded.
        """
        request = self.request_type()
        try:
            if as_json:
                # Twirp's JSON decoding discards unknown fields; so does this.
                Parse(body.decode(), request, ignore_unknown_fields=True)
            else:
                request.ParseFromString(body)
        except (DecodeError, ParseError, UnicodeDecodeError) as exc:
            raise TwirpError("malformed", f"the request body could not be decoded: {exc}") from exc
        return request

    def run(self, grants: VideoGrants, request: _ReqT) -> Message:
        """Check the grants, then call the handler.

        Raises:
            TwirpError: ``unauthenticated`` for a missing grant, or the handler's error.
        """
        if not self.allowed(grants, request):
            # LiveKit wraps every missing-grant error as unauthenticated (twirpAuthError).
            raise TwirpError("unauthenticated", "permissions denied")
        return self.call(request)


class TwirpRouter:
    """Serves Twirp methods by path (``"livekit.Egress/StopEgress"``) behind token checks.

    Args:
        verifier: Checks the bearer tokens (API key and secret).
        methods: The methods by ``"<service>/<method>"``.
    """

    def __init__(self, verifier: TokenVerifier, methods: Mapping[str, TwirpMethod[Any]]) -> None:
        self._verifier = verifier
        self._methods = dict(methods)

    async def handle(self, request: Request) -> Response:
        """The Starlette endpoint for ``/twirp/{service}/{method}``."""
        path = f"{request.path_params['service']}/{request.path_params['method']}"
        try:
            method = self._methods.get(path)
            if method is None:
                raise TwirpError("bad_route", f"no handler for path {request.url.path!r}")
            content_type = request.headers.get("content-type", "").split(";")[0].strip()
            if content_type not in ("application/protobuf", "application/json"):
                raise TwirpError("bad_route", f"unexpected Content-Type: {content_type!r}")
            as_json = content_type == "application/json"
            grants = self.authenticate(request.headers.get("authorization", ""))
            body = await request.body()
            response = method.run(grants, method.parse(body, as_json=as_json))
        except TwirpError as exc:
            return JSONResponse({"code": exc.code, "msg": exc.msg}, status_code=exc.status)
        if as_json:
            return Response(
                MessageToJson(response, preserving_proto_field_name=True, indent=None),
                media_type="application/json",
            )
        return Response(response.SerializeToString(), media_type="application/protobuf")

    def authenticate(self, authorization: str) -> VideoGrants:
        """The grants of a valid ``Authorization`` header.

        Raises:
            TwirpError: ``unauthenticated``, no valid token.
        """
        if not authorization:
            # LiveKit lets a request without a token through to the permission check.
            raise TwirpError("unauthenticated", "permissions denied")
        scheme, _, token = authorization.partition(" ")
        if scheme != "Bearer" or not token:
            raise TwirpError(
                "unauthenticated", "invalid authorization header. Must start with Bearer"
            )
        try:
            claims = self._verifier.verify(token)
        except (jwt.PyJWTError, TypeError, ValueError, AttributeError) as exc:
            # PyJWT's errors, and those of a well-signed token with malformed grant claims.
            raise TwirpError("unauthenticated", f"invalid token: {exc}") from exc
        return claims.video or VideoGrants()
