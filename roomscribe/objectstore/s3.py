"""The object store on any S3-compatible server, through the ``minio`` client.

The minio client is blocking, so every call runs in a worker thread. Streams of unknown
length are uploaded with S3 multipart: the event loop hands chunks to minio's reader thread
through a small bounded pipe, minio cuts them into parts of ``part_size`` bytes and uploads
each, so memory stays around a few parts however long the recording. A stream that fails
midway makes minio abort the multipart upload, which leaves no object behind.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import io
import os
import queue
import threading
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator, Mapping
from datetime import timedelta
from pathlib import Path
from typing import BinaryIO, Self, TypeVar, cast
from urllib.parse import urlsplit

import certifi
import urllib3
from minio import Minio
from minio.error import MinioException, S3Error
from minio.helpers import MIN_PART_SIZE, ObjectWriteResult, check_bucket_name
from minio.time import from_http_header

from roomscribe.errors import (
    ConfigurationError,
    InvalidObjectKeyError,
    ObjectNotFoundError,
    ObjectStoreError,
)
from roomscribe.objectstore.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    RESERVED_SEGMENT_PREFIX,
    ObjectInfo,
    validate_key,
    validate_prefix,
)
from roomscribe.settings import CoreSettings

_T = TypeVar("_T")

#: S3 error codes that mean "nothing there" for a read of one key.
_NOT_FOUND_CODES = frozenset({"NoSuchKey", "NoSuchObject", "NoSuchBucket", "ResourceNotFound"})

#: Bytes read per call while downloading to a file.
_DOWNLOAD_CHUNK = 1 << 20


def parse_endpoint(endpoint: str, *, secure: bool = True) -> tuple[str, bool]:
    """Split an endpoint setting into minio's ``host[:port]`` and whether to use TLS.

    Args:
        endpoint: ``host[:port]``, or a URL ``http(s)://host[:port]`` whose scheme decides TLS.
        secure: Whether to use TLS when ``endpoint`` has no scheme.

    Returns:
        ``(host_and_port, secure)``.

    Raises:
        ConfigurationError: The endpoint is not of either form.
    """
    text = endpoint.strip()
    if "://" in text:
        parts = urlsplit(text)
        if (
            parts.scheme not in ("http", "https")
            or not parts.hostname
            or "@" in parts.netloc
            or parts.path not in ("", "/")
            or parts.query
            or parts.fragment
        ):
            raise ConfigurationError(
                f"S3 endpoint {endpoint!r} must be host[:port] or http(s)://host[:port] "
                "without credentials, path or query"
            )
        return parts.netloc, parts.scheme == "https"
    if not text or "/" in text or "@" in text:
        raise ConfigurationError(
            f"S3 endpoint {endpoint!r} must be host[:port] or http(s)://host[:port]"
        )
    return text, secure


def _new_http_client(*, connect_timeout: float, read_timeout: float) -> urllib3.PoolManager:
    """The connection pool minio would build, but ours, so :meth:`close` can release it."""
    return urllib3.PoolManager(
        timeout=urllib3.Timeout(connect=connect_timeout, read=read_timeout),
        maxsize=10,
        cert_reqs="CERT_REQUIRED",
        ca_certs=os.environ.get("SSL_CERT_FILE") or certifi.where(),
        retries=urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
    )


def _temp_path_beside(target: Path) -> Path:
    return target.with_name(f"{RESERVED_SEGMENT_PREFIX}{target.name}.{uuid.uuid4().hex}")


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _info_from_headers(key: str, headers: Mapping[str, str], size: int) -> ObjectInfo:
    """Describe an object from a GET response's headers."""
    last_modified = None
    if value := headers.get("last-modified"):
        with contextlib.suppress(ValueError):
            last_modified = from_http_header(value)
    etag = headers.get("etag")
    return ObjectInfo(
        key=key,
        size=size,
        etag=etag.strip('"') if etag else None,
        last_modified=last_modified,
        content_type=headers.get("content-type"),
    )


class _StreamAborted(Exception):
    """Raised inside minio's reader when the event-loop side gave up on the stream."""


_EOF = object()
_ABORT = object()


class _ChunkPipe:
    """Carries chunks from the event loop to minio's blocking ``read()``, bounded.

    The loop side sends chunks and waits for a free slot when ``max_chunks`` are queued;
    minio's thread reads them, freeing slots as it goes. A read blocks until it has ``size``
    bytes or the stream ended, so minio gets whole parts in one piece instead of growing a
    part by repeated concatenation (quadratic copying).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, max_chunks: int) -> None:
        self._loop = loop
        self._slots = asyncio.Semaphore(max_chunks)
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._aborted = threading.Event()
        self._reader_closed = False
        self._rest = b""
        self._eof = False

    # Event-loop side -----------------------------------------------------------------------
    async def send(self, chunk: bytes) -> bool:
        """Queue a chunk; ``False`` when the reader is gone (the upload ended with an error)."""
        await self._slots.acquire()
        if self._reader_closed:
            return False
        self._queue.put(chunk)
        return True

    def finish(self) -> None:
        """Tell the reader the stream ended."""
        self._queue.put(_EOF)

    def abort(self) -> None:
        """Make the reader's next read raise, so minio aborts the multipart upload."""
        self._aborted.set()
        self._queue.put(_ABORT)

    @property
    def ended(self) -> bool:
        """Whether the reader saw the end of the stream (read it all)."""
        return self._eof

    def _on_reader_closed(self) -> None:
        self._reader_closed = True
        self._slots.release()  # wake a sender waiting for a slot that will never free up

    # Reader-thread side --------------------------------------------------------------------
    def _call_on_loop(self, callback: Callable[[], None]) -> None:
        # The loop may be gone when an abandoned upload finishes; nobody is waiting then.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback)

    def reader_closed(self) -> None:
        """Called by the upload thread when minio stopped reading, for good or ill."""
        self._call_on_loop(self._on_reader_closed)

    def read(self, size: int = -1) -> bytes:
        """Return ``size`` bytes (fewer only at the end of the stream); blocks for them."""
        parts = [self._rest] if self._rest else []
        have = len(self._rest)
        self._rest = b""
        while (size < 0 or have < size) and not self._eof:
            item = self._queue.get()
            if item is _ABORT or self._aborted.is_set():
                raise _StreamAborted("the stream feeding this upload failed")
            if item is _EOF:
                self._eof = True
                break
            assert isinstance(item, bytes)
            self._call_on_loop(self._slots.release)
            parts.append(item)
            have += len(item)
        data = b"".join(parts)
        if 0 <= size < len(data):
            self._rest = data[size:]
            data = data[:size]
        return data


class S3ObjectStore:
    """An :class:`~roomscribe.objectstore.base.ObjectStore` on an S3-compatible server.

    The bucket must exist; :meth:`ensure_bucket` creates it (services call it at startup).

    Args:
        endpoint: ``host[:port]`` or ``http(s)://host[:port]``.
        bucket: The bucket holding the objects.
        access_key: The access key id (``None`` for anonymous access).
        secret_key: The secret access key.
        region: The bucket's region; ``None`` asks the server once per bucket.
        secure: Use TLS when ``endpoint`` has no scheme.
        part_size: Bytes per part of a streamed multipart upload (at least 5 MiB, S3's
            minimum for all parts but the last). Memory per stream is a few parts.
        stream_buffer_chunks: How many incoming chunks may wait for minio's reader before
            :meth:`put_stream` stops pulling from its source.
        connect_timeout: Seconds to wait for a connection.
        read_timeout: Seconds to wait for the server to answer.

    Raises:
        ConfigurationError: The endpoint, bucket or part size cannot work.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        bucket: str,
        access_key: str | None,
        secret_key: str | None,
        region: str | None = None,
        secure: bool = True,
        part_size: int = MIN_PART_SIZE,
        stream_buffer_chunks: int = 8,
        connect_timeout: float = 10.0,
        read_timeout: float = 120.0,
    ) -> None:
        host, use_tls = parse_endpoint(endpoint, secure=secure)
        try:
            check_bucket_name(bucket)
        except ValueError as exc:
            raise ConfigurationError(f"invalid S3 bucket name {bucket!r}: {exc}") from exc
        if part_size < MIN_PART_SIZE:
            raise ConfigurationError(f"S3 part_size must be at least {MIN_PART_SIZE} bytes")
        if stream_buffer_chunks < 1:
            raise ConfigurationError("stream_buffer_chunks must be at least 1")
        self.bucket = bucket
        self.endpoint = f"{'https' if use_tls else 'http'}://{host}"
        self._region = region
        self._part_size = part_size
        self._stream_buffer_chunks = stream_buffer_chunks
        self._http = _new_http_client(connect_timeout=connect_timeout, read_timeout=read_timeout)
        try:
            self._client = Minio(
                host,
                access_key=access_key,
                secret_key=secret_key,
                secure=use_tls,
                region=region,
                http_client=self._http,
            )
        except ValueError as exc:
            self._http.clear()
            raise ConfigurationError(f"S3 endpoint {endpoint!r} is not usable: {exc}") from exc

    @classmethod
    def from_settings(cls, settings: CoreSettings) -> Self:
        """Build the store from ``ROOMSCRIBE_S3_*`` settings.

        Raises:
            ConfigurationError: ``s3_endpoint`` is unset or the settings cannot work.
        """
        if not settings.s3_endpoint:
            raise ConfigurationError("ROOMSCRIBE_S3_ENDPOINT is not set")
        return cls(
            settings.s3_endpoint,
            bucket=settings.s3_bucket,
            access_key=(
                settings.s3_access_key.get_secret_value() if settings.s3_access_key else None
            ),
            secret_key=(
                settings.s3_secret_key.get_secret_value() if settings.s3_secret_key else None
            ),
            region=settings.s3_region,
            secure=settings.s3_secure,
        )

    def __repr__(self) -> str:
        return f"S3ObjectStore(endpoint={self.endpoint!r}, bucket={self.bucket!r})"

    # Errors --------------------------------------------------------------------------------
    @contextlib.contextmanager
    def _translating(self, action: str, key: str | None, *, read: bool = False) -> Iterator[None]:
        """Turn minio and HTTP failures into the project's errors.

        ``read`` marks operations on one existing key, where "no such key" and "no such
        bucket" both mean there is no object to return.
        """
        where = f"{key!r} in bucket {self.bucket!r} at {self.endpoint}"
        try:
            yield
        except S3Error as exc:
            missing = exc.code in _NOT_FOUND_CODES or exc.response.status == 404
            if read and key is not None and missing:
                raise ObjectNotFoundError(key) from exc
            if exc.code == "NoSuchBucket":
                raise ObjectStoreError(
                    f"cannot {action} {where}: the bucket does not exist "
                    "(S3ObjectStore.ensure_bucket creates it)"
                ) from exc
            raise ObjectStoreError(f"cannot {action} {where}: {exc.code}: {exc.message}") from exc
        except (MinioException, urllib3.exceptions.HTTPError) as exc:
            raise ObjectStoreError(f"cannot {action} {where}: {exc}") from exc

    async def _call(
        self, action: str, key: str | None, fn: Callable[[], _T], *, read: bool = False
    ) -> _T:
        def run() -> _T:
            with self._translating(action, key, read=read):
                return fn()

        return await asyncio.to_thread(run)

    # Bucket --------------------------------------------------------------------------------
    async def init(self) -> None:
        """Create the bucket if it does not exist (see :meth:`ensure_bucket`)."""
        await self.ensure_bucket()

    async def ensure_bucket(self) -> None:
        """Create the bucket if it does not exist (safe to call on every start).

        Raises:
            ObjectStoreError: The server cannot be reached or refuses.
        """

        def ensure() -> None:
            if self._client.bucket_exists(self.bucket):
                return
            try:
                self._client.make_bucket(self.bucket, location=self._region)
            except S3Error as exc:
                # Another service may have created it between the check and the create.
                if exc.code != "BucketAlreadyOwnedByYou":
                    raise

        await self._call("create the bucket for", None, ensure)

    # Writing -------------------------------------------------------------------------------
    @staticmethod
    def _info_from_write(
        key: str, result: ObjectWriteResult, size: int, content_type: str
    ) -> ObjectInfo:
        return ObjectInfo(
            key=key,
            size=size,
            etag=result.etag,
            last_modified=result.last_modified,
            content_type=content_type,
        )

    async def put_file(
        self, key: str, path: Path, *, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> ObjectInfo:
        """Upload the file at ``path`` under ``key`` (multipart when large).

        Raises:
            InvalidObjectKeyError: The key is not valid.
            OSError: ``path`` cannot be read.
            ObjectStoreError: The upload failed.
        """
        validate_key(key)
        size = (await asyncio.to_thread(os.stat, path)).st_size
        result = await self._call(
            "upload",
            key,
            lambda: self._client.fput_object(
                self.bucket, key, str(path), content_type=content_type
            ),
        )
        return self._info_from_write(key, result, size, content_type)

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> ObjectInfo:
        """Store ``data`` under ``key``.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectStoreError: The upload failed.
        """
        validate_key(key)
        result = await self._call(
            "upload",
            key,
            lambda: self._client.put_object(
                self.bucket, key, io.BytesIO(data), len(data), content_type=content_type
            ),
        )
        return self._info_from_write(key, result, len(data), content_type)

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        """Upload a stream of unknown length with multipart, holding a few parts at most.

        If ``chunks`` raises (or the call is cancelled), the multipart upload is aborted
        before this returns, so no object appears under ``key``, and the exception
        propagates.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectStoreError: The upload failed.
        """
        validate_key(key)
        pipe = _ChunkPipe(asyncio.get_running_loop(), self._stream_buffer_chunks)

        def upload() -> ObjectWriteResult:
            try:
                with self._translating("upload", key):
                    # One upload thread: parallel part uploads would hold more parts in
                    # memory, and a recording arrives no faster than it is spoken.
                    return self._client.put_object(
                        self.bucket,
                        key,
                        # minio only ever calls read() on its data argument.
                        cast(BinaryIO, pipe),
                        -1,
                        content_type=content_type,
                        part_size=self._part_size,
                        num_parallel_uploads=1,
                    )
            finally:
                pipe.reader_closed()

        uploading = asyncio.ensure_future(asyncio.to_thread(upload))
        # When the stream's own error (or a cancellation) wins, the upload's consequent
        # error is expected; retrieving it here keeps asyncio from logging it as lost.
        uploading.add_done_callback(lambda done: done.cancelled() or done.exception())
        size = 0
        try:
            async for chunk in chunks:
                if not chunk:
                    continue
                if not await pipe.send(chunk):
                    break  # the upload failed; awaiting it below raises its error
                size += len(chunk)
            else:
                pipe.finish()
            result = await uploading
            if not pipe.ended:
                raise ObjectStoreError(f"upload of {key!r} ended before its stream did")
        except BaseException:
            pipe.abort()
            # Wait for minio to abort the multipart upload, so that when this raises no
            # upload of this key is still running (asyncio.wait neither raises the upload's
            # own error nor cancels it if we are cancelled again).
            await asyncio.wait({uploading})
            raise
        return self._info_from_write(key, result, size, content_type)

    # Reading -------------------------------------------------------------------------------
    def _get_to_file_sync(self, key: str, path: Path) -> ObjectInfo:
        with self._translating("download", key, read=True):
            response = self._client.get_object(self.bucket, key)
        try:
            temp = _temp_path_beside(Path(path))
            size = 0
            try:
                # Errors creating or writing the destination are the caller's (OSError).
                with open(temp, "xb") as sink:
                    while True:
                        with self._translating("download", key, read=True):
                            chunk = response.read(_DOWNLOAD_CHUNK)
                        if not chunk:
                            break
                        sink.write(chunk)
                        size += len(chunk)
                os.replace(temp, path)
            except BaseException:
                _discard(temp)
                raise
            return _info_from_headers(key, response.headers, size)
        finally:
            response.close()
            response.release_conn()

    async def get_to_file(self, key: str, path: Path) -> ObjectInfo:
        """Download the object to ``path`` through a temporary file renamed into place.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectNotFoundError: No object under ``key``; no file is created.
            ObjectStoreError: The download failed; no file is left behind.
            OSError: ``path`` cannot be written (its folder must exist).
        """
        validate_key(key)
        return await asyncio.to_thread(self._get_to_file_sync, key, path)

    async def iter_chunks(
        self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """Stream the object's bytes in chunks of at most ``chunk_size``.

        Raises:
            ValueError: ``chunk_size`` is not positive.
            InvalidObjectKeyError: The key is not valid.
            ObjectNotFoundError: No object under ``key`` (on the first iteration).
            ObjectStoreError: The download failed.
        """
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        validate_key(key)
        response = await self._call(
            "download", key, lambda: self._client.get_object(self.bucket, key), read=True
        )
        try:
            while chunk := await self._call(
                "download", key, lambda: response.read(chunk_size), read=True
            ):
                yield chunk
        finally:
            # Closing drops the connection when the caller stopped early; a half-read
            # response cannot go back to the pool.
            response.close()
            response.release_conn()

    async def stat(self, key: str) -> ObjectInfo:
        """Describe the object under ``key``.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectNotFoundError: No object under ``key``.
            ObjectStoreError: The server cannot be reached or refuses.
        """
        validate_key(key)
        obj = await self._call(
            "stat", key, lambda: self._client.stat_object(self.bucket, key), read=True
        )
        return ObjectInfo(
            key=key,
            size=obj.size or 0,
            etag=obj.etag,
            last_modified=obj.last_modified,
            content_type=obj.content_type,
        )

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectStoreError: The server cannot be reached or refuses.
        """
        try:
            await self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    async def presigned_get_url(self, key: str, *, expires_s: float) -> str:
        """A URL that downloads the object without credentials until it expires.

        Browsers play recordings straight from the store with it (HTTP Range included), so
        audio bytes never pass through the API. The URL names this store's endpoint as
        configured: it must be reachable from wherever the URL is used.

        Args:
            key: The object's key (it need not exist yet; the URL then answers 404).
            expires_s: Seconds the URL stays valid, from 1 to 7 days (S3's limits).

        Raises:
            ValueError: ``expires_s`` is outside S3's limits.
            InvalidObjectKeyError: The key is not valid.
            ObjectStoreError: The bucket's region had to be asked for and could not be.
        """
        if not 1 <= expires_s <= 7 * 86400:
            raise ValueError(f"expires_s must be in [1, 604800] seconds, got {expires_s!r}")
        validate_key(key)
        expires = timedelta(seconds=expires_s)
        return await self._call(
            "presign",
            key,
            lambda: self._client.presigned_get_object(self.bucket, key, expires=expires),
        )

    # Deleting and listing ------------------------------------------------------------------
    async def delete(self, key: str) -> None:
        """Delete the object; S3 already treats deleting a missing key as success.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectStoreError: The server cannot be reached or refuses.
        """
        validate_key(key)
        await self._call("delete", key, lambda: self._client.remove_object(self.bucket, key))

    async def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Describe every object whose key starts with ``prefix``, sorted by key.

        Objects whose keys this store would refuse (put there by other tools) are skipped,
        as the local store skips such files.

        Raises:
            InvalidObjectKeyError: The prefix is not valid.
            ObjectStoreError: The server cannot be reached or refuses.
        """
        validate_prefix(prefix)

        def collect() -> builtins.list[ObjectInfo]:
            found = []
            for obj in self._client.list_objects(
                self.bucket, prefix=prefix or None, recursive=True
            ):
                name = obj.object_name
                if obj.is_dir or not name or not _is_valid_key(name):
                    continue
                found.append(
                    ObjectInfo(
                        key=name,
                        size=obj.size or 0,
                        etag=obj.etag,
                        last_modified=obj.last_modified,
                        content_type=obj.content_type,
                    )
                )
            return sorted(found, key=lambda info: info.key)

        return await self._call("list objects with prefix", prefix, collect)

    async def close(self) -> None:
        """Close the connection pool."""
        self._http.clear()


def _is_valid_key(key: str) -> bool:
    try:
        validate_key(key)
    except InvalidObjectKeyError:
        return False
    return True
