"""Errors raised by the shared core.

The hierarchy, drawn as a tree so callers can see what to catch::

    RoomscribeError
    ├── ConfigurationError          settings that cannot work (placeholder secret, bad URI)
    ├── StoreError                  transcript store failures
    │   ├── NotFoundError           unknown room, track or job
    │   ├── ConflictError           a conditional update lost (state changed under us)
    │   └── InvalidCursorError      a pagination cursor that was not produced by us
    ├── ObjectStoreError            recordings storage failures
    │   ├── ObjectNotFoundError     no object under that key
    │   └── InvalidObjectKeyError   a key that would escape the store (``..``, absolute)
    ├── AuthError                   token problems (HTTP 401 at the edge)
    │   ├── TokenExpiredError
    │   └── InvalidTokenError       forged, malformed, wrong audience or issuer
    ├── PermissionDeniedError       a valid token without the right scope (HTTP 403)
    ├── ProtocolError               a streaming client broke the wire protocol (close 1003)
    └── AudioError                  audio that cannot be used
        └── AudioDecodeError        not a decodable audio file / no audio stream

Services translate these at their edges (HTTP status, WebSocket close code); the core never
catches its own errors just to log them.
"""

from __future__ import annotations


class RoomscribeError(Exception):
    """Base class of every error the project raises on purpose."""


class ConfigurationError(RoomscribeError):
    """Settings that cannot work together or are unsafe outside development."""


class StoreError(RoomscribeError):
    """A transcript store operation failed."""


class NotFoundError(StoreError):
    """The room, track or job does not exist."""


class ConflictError(StoreError):
    """A conditional update did not apply because the document changed meanwhile."""


class InvalidCursorError(StoreError):
    """A pagination cursor that is malformed or was produced for another query."""


class ObjectStoreError(RoomscribeError):
    """An object store operation failed."""


class ObjectNotFoundError(ObjectStoreError):
    """No object is stored under the key."""

    def __init__(self, key: str) -> None:
        super().__init__(f"no object stored under key {key!r}")
        self.key = key


class InvalidObjectKeyError(ObjectStoreError):
    """An object key that is empty, absolute or leaves the store's root."""


class AuthError(RoomscribeError):
    """A token could not be accepted."""


class TokenExpiredError(AuthError):
    """The token's ``exp`` has passed."""


class InvalidTokenError(AuthError):
    """The token is malformed, forged, or meant for another audience."""


class PermissionDeniedError(RoomscribeError):
    """The caller is authenticated but may not see or do this."""


class ProtocolError(RoomscribeError):
    """A streaming client sent something the wire protocol does not allow.

    ``code`` is the machine-readable error code sent back in the ``error`` message.
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class AudioError(RoomscribeError):
    """Audio that cannot be used as given."""


class AudioDecodeError(AudioError):
    """The input is not a decodable audio file, or has no audio stream."""
