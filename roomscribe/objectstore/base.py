"""The object store: where call recordings live, and what every backend must do.

Keys are ``/``-separated relative paths such as ``rooms/{room}/{participant}/{track_sid}.ogg``.
Both backends (a local folder and any S3 store) accept and refuse exactly the same keys, so a
key that works in development works in production; :func:`validate_key` is that shared rule.

Writes are all-or-nothing: a reader sees the previous object or the new one, never a part, and
a failed upload (including a stream that raises midway) leaves nothing behind.
"""

from __future__ import annotations

import builtins
import hashlib
from collections.abc import AsyncIterable, AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Protocol
from urllib.parse import quote

from pydantic import BaseModel, ConfigDict

from roomscribe.errors import InvalidObjectKeyError

#: Bytes per chunk of a streaming download when the caller does not say.
DEFAULT_CHUNK_SIZE = 1 << 20

#: The default content type of an upload (S3's own default).
DEFAULT_CONTENT_TYPE = "application/octet-stream"

#: S3 refuses keys longer than this many UTF-8 bytes; the local store follows suit.
MAX_KEY_BYTES = 1024

#: Key segments may not start with this: the local store names its in-flight files so, and
#: reserving it for both backends keeps them accepting the same keys.
RESERVED_SEGMENT_PREFIX = ".roomscribe-partial-"


class ObjectInfo(BaseModel):
    """What a store knows about one stored object.

    Attributes:
        key: The object's key.
        size: Its size in bytes.
        etag: An opaque version tag that changes when the object is rewritten (S3's ETag;
            the local store derives one from inode, mtime and size). Not a content hash.
        last_modified: When it was last written (timezone-aware UTC), when the backend says.
        content_type: The stored content type; the local store guesses it from the key.
    """

    model_config = ConfigDict(frozen=True)

    key: str
    size: int
    etag: str | None = None
    last_modified: datetime | None = None
    content_type: str | None = None


def _check_characters(value: str, what: str) -> None:
    """Refuse characters that are unsafe as a path on any backend."""
    if "\\" in value:
        # A backslash is a separator on Windows and would let a key hide a path step.
        raise InvalidObjectKeyError(f"{what} {value!r} contains a backslash")
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        # NUL truncates paths in C APIs; other control characters break S3's XML listings.
        raise InvalidObjectKeyError(f"{what} {value!r} contains a NUL or control character")
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidObjectKeyError(f"{what} {value!r} is not valid Unicode") from exc
    if len(encoded) > MAX_KEY_BYTES:
        raise InvalidObjectKeyError(f"{what} is longer than {MAX_KEY_BYTES} UTF-8 bytes")
    if value.startswith("/"):
        raise InvalidObjectKeyError(f"{what} {value!r} is absolute; keys are relative paths")


def _check_segment(segment: str, value: str, what: str) -> None:
    """Refuse a path step that is empty, ``.``, ``..`` or reserved."""
    if segment in ("", ".", ".."):
        # Empty steps (``a//b``) and dot steps would alias other keys or escape the root.
        raise InvalidObjectKeyError(f"{what} {value!r} has an empty, '.' or '..' path segment")
    if segment.startswith(RESERVED_SEGMENT_PREFIX):
        raise InvalidObjectKeyError(
            f"{what} {value!r} has a segment starting with the reserved {RESERVED_SEGMENT_PREFIX!r}"
        )


#: Longest encoded key component; longer names end in a digest of the whole name.
MAX_COMPONENT_BYTES = 160


def key_component(name: str) -> str:
    """``name`` (a room, an identity, a track sid: anything from outside) as one key segment.

    Percent-encoded (RFC 3986 unreserved characters kept), so ``/``, ``..``, control
    characters and spaces cannot leave the segment, and distinct names never collide:
    ``quote`` is injective, a leading dot is written ``%2E`` (which ``quote`` never writes
    itself), the empty name is ``+`` and a name too long for one segment is cut and given
    ``+`` (which ``quote`` always escapes) and a SHA-256 digest of the whole name.

    Args:
        name: Any string, possibly empty.

    Returns:
        A valid, non-empty key segment of at most :data:`MAX_COMPONENT_BYTES` + 17 bytes.
    """
    encoded = quote(name, safe="")
    if not encoded:
        return "+"  # a lone "+" is no other name's encoding
    if encoded.startswith("."):
        encoded = "%2E" + encoded[1:]
    if len(encoded) > MAX_COMPONENT_BYTES:
        digest = hashlib.sha256(name.encode("utf-8", "surrogatepass")).hexdigest()[:16]
        encoded = f"{encoded[:MAX_COMPONENT_BYTES]}+{digest}"
    return encoded


def validate_key(key: str) -> str:
    """Return ``key`` unchanged if it is a valid object key.

    A valid key is a non-empty relative path of ``/``-separated segments, none of them empty,
    ``.`` or ``..``, without backslashes or control characters (NUL included), at most
    :data:`MAX_KEY_BYTES` UTF-8 bytes long.

    Args:
        key: The key to check.

    Returns:
        The same key, so callers can validate inline.

    Raises:
        InvalidObjectKeyError: The key is not valid.
    """
    if not isinstance(key, str) or not key:
        raise InvalidObjectKeyError("object key must be a non-empty string")
    _check_characters(key, "object key")
    for segment in key.split("/"):
        _check_segment(segment, key, "object key")
    return key


def validate_prefix(prefix: str) -> str:
    """Return ``prefix`` unchanged if it can select keys in :meth:`ObjectStore.list`.

    A prefix is matched as a plain string (``rooms/a`` matches ``rooms/a/x`` and
    ``rooms/ab/x``), so its last segment may be partial or empty; the complete segments
    before it follow the key rules. The empty prefix selects everything.

    Args:
        prefix: The prefix to check.

    Returns:
        The same prefix.

    Raises:
        InvalidObjectKeyError: The prefix could never match a valid key.
    """
    if not isinstance(prefix, str):
        raise InvalidObjectKeyError("object key prefix must be a string")
    if not prefix:
        return prefix
    _check_characters(prefix, "object key prefix")
    for segment in prefix.split("/")[:-1]:
        _check_segment(segment, prefix, "object key prefix")
    return prefix


class ObjectStore(Protocol):
    """Stores recordings under keys; every backend behaves the same.

    Missing objects raise :class:`~roomscribe.errors.ObjectNotFoundError`, invalid keys
    :class:`~roomscribe.errors.InvalidObjectKeyError`, and other storage failures
    :class:`~roomscribe.errors.ObjectStoreError`. Errors about the caller's own local files
    (an unreadable source, a destination folder that does not exist) are the usual ``OSError``.
    Blocking I/O never runs on the event loop.

    The ``put_*`` methods return what the upload itself reported: S3 uploads do not report
    ``last_modified`` (use :meth:`stat`), and ``content_type`` is the one given.
    """

    async def put_file(
        self, key: str, path: Path, *, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> ObjectInfo:
        """Upload the file at ``path`` under ``key``, replacing any object there."""

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        """Upload a stream of unknown length with bounded memory (never the whole object).

        If ``chunks`` raises, its exception propagates and no object is left under ``key``
        (an object already there stays as it was).
        """

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> ObjectInfo:
        """Store ``data`` under ``key``, replacing any object there."""

    async def get_to_file(self, key: str, path: Path) -> ObjectInfo:
        """Download the object to ``path`` (whose folder must exist), replacing that file.

        The download goes to a temporary file beside ``path`` that is renamed into place at
        the end, so a failed download leaves no partial file.
        """

    def iter_chunks(
        self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """Stream the object's bytes in chunks of at most ``chunk_size``.

        An async generator: errors (a missing object included) surface on the first
        iteration.
        """

    async def stat(self, key: str) -> ObjectInfo:
        """Describe the object under ``key``."""

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``."""

    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error."""

    async def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Describe every object whose key starts with ``prefix``, sorted by key."""

    async def init(self) -> None:
        """Prepare the store on start (create the folder or the bucket); safe to repeat."""

    async def close(self) -> None:
        """Release connections; the store is unusable afterwards."""
