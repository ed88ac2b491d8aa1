"""The object store as a folder: the embedded default (``var/objects``).

Each key is a file under the root (``rooms/a/b.ogg`` -> ``root/rooms/a/b.ogg``). Every write
goes to a temporary file in the target's folder and is renamed over the target with
:func:`os.replace`, which is atomic on POSIX, so readers never see a half-written recording.
All file I/O runs in worker threads.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import mimetypes
import os
import stat as stat_module
import uuid
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, ParamSpec, TypeVar

from roomscribe.errors import InvalidObjectKeyError, ObjectNotFoundError, ObjectStoreError
from roomscribe.objectstore.base import (
    DEFAULT_CHUNK_SIZE,
    DEFAULT_CONTENT_TYPE,
    RESERVED_SEGMENT_PREFIX,
    ObjectInfo,
    validate_key,
    validate_prefix,
)

#: Bytes copied per read when copying files.
_COPY_CHUNK = 1 << 20

#: put_stream gathers small chunks up to this many bytes before one threaded write, so a
#: stream of tiny chunks does not cost one thread hop each.
_STREAM_WRITE_BATCH = 1 << 20

_P = ParamSpec("_P")
_T = TypeVar("_T")


def _temp_path_beside(target: Path) -> Path:
    """A unique name in the target's folder, so the final rename stays on one filesystem."""
    return target.with_name(f"{RESERVED_SEGMENT_PREFIX}{target.name}.{uuid.uuid4().hex}")


def _create_exclusive(path: Path) -> BinaryIO:
    """Create ``path`` for writing, failing if it exists; permissions follow the umask."""
    # os.open with mode 0o666 respects the umask, unlike tempfile.mkstemp's fixed 0o600,
    # so recordings stay readable by the other services sharing the folder.
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    return os.fdopen(fd, "wb")


def _discard(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


async def _in_thread_to_completion(fn: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T:
    """Run ``fn`` in a thread; if cancelled meanwhile, let the thread finish first.

    A thread cannot be interrupted, so the caller's cleanup (closing the file, removing the
    temporary) must not start while the thread still uses them.
    """
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args, **kwargs))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait({future})
        raise


def _info_from_stat(key: str, st: os.stat_result) -> ObjectInfo:
    return ObjectInfo(
        key=key,
        size=st.st_size,
        # Every write renames a fresh file into place, so inode + mtime + size changes on
        # each rewrite; that is all an etag promises here.
        etag=f"{st.st_ino:x}-{st.st_mtime_ns:x}-{st.st_size:x}",
        last_modified=datetime.fromtimestamp(st.st_mtime_ns / 1e9, tz=UTC),
        content_type=mimetypes.guess_type(key)[0],
    )


class LocalObjectStore:
    """An :class:`~roomscribe.objectstore.base.ObjectStore` backed by a local folder.

    Unlike S3, a folder cannot hold both ``a`` and ``a/b``: writing one when the other exists
    raises :class:`~roomscribe.errors.ObjectStoreError`.

    Args:
        root: The folder holding the objects; created on the first write.
    """

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    def __repr__(self) -> str:
        return f"LocalObjectStore(root={str(self.root)!r})"

    # Paths ---------------------------------------------------------------------------------
    def path_for(self, key: str) -> Path:
        """Return the file that holds ``key`` (which need not exist).

        Raises:
            InvalidObjectKeyError: The key is not valid.
        """
        return self.root.joinpath(*validate_key(key).split("/"))

    def _store_error(self, action: str, key: str, exc: OSError) -> ObjectStoreError:
        reason = exc.strerror or type(exc).__name__
        if isinstance(exc, NotADirectoryError | FileExistsError | IsADirectoryError):
            # The folder layout cannot hold both "a" and "a/b"; say so instead of errno.
            reason = f"{reason} (a key cannot be both an object and a folder of objects)"
        return ObjectStoreError(f"cannot {action} object {key!r} under {self.root}: {reason}")

    # Writing -------------------------------------------------------------------------------
    def _open_staging(self, key: str, target: Path) -> tuple[BinaryIO, Path]:
        """Create the temporary file a write goes to, creating folders as needed."""
        for attempt in range(3):
            try:
                target.parent.mkdir(parents=True, exist_ok=True)
                temp = _temp_path_beside(target)
                return _create_exclusive(temp), temp
            except FileNotFoundError as exc:
                # A concurrent delete pruned the (then empty) folder between mkdir and open.
                if attempt == 2:
                    raise self._store_error("write", key, exc) from exc
            except OSError as exc:
                raise self._store_error("write", key, exc) from exc
        raise AssertionError("unreachable")  # pragma: no cover

    def _commit(self, key: str, handle: BinaryIO, temp: Path, target: Path) -> ObjectInfo:
        """Flush the temporary file to disk and rename it over the target."""
        try:
            handle.flush()
            # fsync before the rename: after a crash the key holds the old or the new
            # recording, never a renamed-but-empty file.
            os.fsync(handle.fileno())
            handle.close()
            os.replace(temp, target)
            return _info_from_stat(key, target.stat())
        except OSError as exc:
            raise self._store_error("write", key, exc) from exc

    def _write_with(self, key: str, fill: Callable[[BinaryIO], object]) -> ObjectInfo:
        """Write an object atomically; ``fill`` writes its content into the open file."""
        target = self.path_for(key)
        handle, temp = self._open_staging(key, target)
        try:
            try:
                fill(handle)
            except OSError as exc:
                raise self._store_error("write", key, exc) from exc
            return self._commit(key, handle, temp, target)
        except BaseException:
            handle.close()
            _discard(temp)
            raise

    def _put_file_sync(self, key: str, path: Path) -> ObjectInfo:
        self.path_for(key)  # refuse a bad key before touching the source
        # Opening the source first keeps the caller's errors (no such file) as OSError.
        with open(path, "rb") as source:

            def fill(handle: BinaryIO) -> None:
                while chunk := source.read(_COPY_CHUNK):
                    handle.write(chunk)

            return self._write_with(key, fill)

    async def put_file(
        self, key: str, path: Path, *, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> ObjectInfo:
        """Copy the file at ``path`` under ``key``, replacing any object there.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            OSError: ``path`` cannot be read.
            ObjectStoreError: The object cannot be written.
        """
        info = await asyncio.to_thread(self._put_file_sync, key, path)
        return info.model_copy(update={"content_type": content_type})

    async def put_bytes(
        self, key: str, data: bytes, *, content_type: str = DEFAULT_CONTENT_TYPE
    ) -> ObjectInfo:
        """Store ``data`` under ``key``, replacing any object there.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectStoreError: The object cannot be written.
        """
        info = await asyncio.to_thread(self._write_with, key, lambda handle: handle.write(data))
        return info.model_copy(update={"content_type": content_type})

    async def put_stream(
        self,
        key: str,
        chunks: AsyncIterable[bytes],
        *,
        content_type: str = DEFAULT_CONTENT_TYPE,
    ) -> ObjectInfo:
        """Write a stream of unknown length under ``key``, holding at most about 1 MiB.

        If ``chunks`` raises (or the call is cancelled), the temporary file is removed, any
        previous object under ``key`` stays, and the exception propagates.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectStoreError: The object cannot be written.
        """
        target = self.path_for(key)
        handle, temp = await asyncio.to_thread(self._open_staging, key, target)

        def write(batch: builtins.list[bytes]) -> None:
            try:
                handle.write(b"".join(batch))
            except OSError as exc:
                raise self._store_error("write", key, exc) from exc

        try:
            batch: builtins.list[bytes] = []
            pending = 0
            async for chunk in chunks:
                batch.append(chunk)
                pending += len(chunk)
                if pending >= _STREAM_WRITE_BATCH:
                    await _in_thread_to_completion(write, batch)
                    batch, pending = [], 0
            if batch:
                await _in_thread_to_completion(write, batch)
            info = await _in_thread_to_completion(self._commit, key, handle, temp, target)
        except BaseException:
            # Closing and unlinking a local file is quick; doing it inline keeps the cleanup
            # from being skipped when this task is being cancelled.
            handle.close()
            _discard(temp)
            raise
        return info.model_copy(update={"content_type": content_type})

    # Reading -------------------------------------------------------------------------------
    def _open_object(self, key: str) -> BinaryIO:
        path = self.path_for(key)
        try:
            handle = open(path, "rb")  # noqa: SIM115 - the caller owns and closes it
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
            raise ObjectNotFoundError(key) from exc
        except OSError as exc:
            raise self._store_error("read", key, exc) from exc
        return handle

    def _read(self, key: str, handle: BinaryIO, size: int) -> bytes:
        try:
            return handle.read(size)
        except OSError as exc:
            raise self._store_error("read", key, exc) from exc

    def _get_to_file_sync(self, key: str, path: Path) -> ObjectInfo:
        with self._open_object(key) as source:
            info = _info_from_stat(key, os.fstat(source.fileno()))
            temp = _temp_path_beside(Path(path))
            # Errors creating or writing the destination are the caller's (plain OSError).
            sink = _create_exclusive(temp)
            try:
                with sink:
                    while chunk := self._read(key, source, _COPY_CHUNK):
                        sink.write(chunk)
                os.replace(temp, path)
            except BaseException:
                _discard(temp)
                raise
        return info

    async def get_to_file(self, key: str, path: Path) -> ObjectInfo:
        """Copy the object to ``path`` through a temporary file renamed into place.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectNotFoundError: No object under ``key``; no file is created.
            ObjectStoreError: The object cannot be read.
            OSError: ``path`` cannot be written (its folder must exist).
        """
        return await asyncio.to_thread(self._get_to_file_sync, key, path)

    async def iter_chunks(
        self, key: str, *, chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> AsyncIterator[bytes]:
        """Stream the object's bytes in chunks of at most ``chunk_size``.

        Raises:
            ValueError: ``chunk_size`` is not positive.
            InvalidObjectKeyError: The key is not valid.
            ObjectNotFoundError: No object under ``key`` (on the first iteration).
            ObjectStoreError: The object cannot be read.
        """
        if chunk_size <= 0:
            raise ValueError(f"chunk_size must be positive, got {chunk_size}")
        handle = await asyncio.to_thread(self._open_object, key)
        try:
            while chunk := await asyncio.to_thread(self._read, key, handle, chunk_size):
                yield chunk
        finally:
            handle.close()

    def _stat_sync(self, key: str) -> ObjectInfo:
        path = self.path_for(key)
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError) as exc:
            raise ObjectNotFoundError(key) from exc
        except OSError as exc:
            raise self._store_error("stat", key, exc) from exc
        if not stat_module.S_ISREG(st.st_mode):
            # A folder of objects ("a" when "a/b" exists) is not an object itself.
            raise ObjectNotFoundError(key)
        return _info_from_stat(key, st)

    async def stat(self, key: str) -> ObjectInfo:
        """Describe the object under ``key``.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectNotFoundError: No object under ``key``.
        """
        return await asyncio.to_thread(self._stat_sync, key)

    async def exists(self, key: str) -> bool:
        """Whether an object is stored under ``key``.

        Raises:
            InvalidObjectKeyError: The key is not valid.
        """
        try:
            await self.stat(key)
        except ObjectNotFoundError:
            return False
        return True

    # Deleting and listing ------------------------------------------------------------------
    def _delete_sync(self, key: str) -> None:
        path = self.path_for(key)
        try:
            path.unlink()
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return  # nothing stored under this key: deleting is idempotent
        except OSError as exc:
            raise self._store_error("delete", key, exc) from exc
        # Prune folders the delete emptied, so deleted rooms do not leave a tree of empty
        # folders behind; a folder that is not empty (or just got a new file) stays.
        parent = path.parent
        while parent != self.root:
            try:
                parent.rmdir()
            except OSError:
                break
            parent = parent.parent

    async def delete(self, key: str) -> None:
        """Delete the object; deleting a missing object is not an error.

        Raises:
            InvalidObjectKeyError: The key is not valid.
            ObjectStoreError: The file exists but cannot be removed.
        """
        await asyncio.to_thread(self._delete_sync, key)

    def _walk(self, base: Path) -> Iterator[tuple[str, os.stat_result]]:
        """Yield ``(key, stat)`` for every regular file under ``base``."""

        def fail(exc: OSError) -> None:
            if not isinstance(exc, FileNotFoundError | NotADirectoryError):
                raise ObjectStoreError(f"cannot list objects under {self.root}: {exc}") from exc

        for folder, _dirs, files in os.walk(base, onerror=fail):
            relative = Path(folder).relative_to(self.root).parts
            for name in files:
                key = "/".join((*relative, name))
                try:
                    # Skips in-flight temporary files (reserved prefix) and files put here
                    # by hand under names no key could address.
                    validate_key(key)
                    st = os.stat(os.path.join(folder, name), follow_symlinks=False)
                except (InvalidObjectKeyError, FileNotFoundError):
                    continue  # invalid, or deleted while we walked
                if stat_module.S_ISREG(st.st_mode):
                    yield key, st

    def _list_sync(self, prefix: str) -> builtins.list[ObjectInfo]:
        validate_prefix(prefix)
        # Walk only the folder named by the prefix's complete segments, then match the rest
        # as a plain string, as S3 does.
        folder = prefix.rpartition("/")[0]
        base = self.root.joinpath(*folder.split("/")) if folder else self.root
        found = [_info_from_stat(key, st) for key, st in self._walk(base) if key.startswith(prefix)]
        return sorted(found, key=lambda info: info.key)

    async def list(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Describe every object whose key starts with ``prefix``, sorted by key.

        Raises:
            InvalidObjectKeyError: The prefix is not valid.
        """
        return await asyncio.to_thread(self._list_sync, prefix)

    async def init(self) -> None:
        """Create the root folder if it is missing."""
        await asyncio.to_thread(self.root.mkdir, parents=True, exist_ok=True)

    async def close(self) -> None:
        """Nothing to release: every file is closed when its operation ends."""
