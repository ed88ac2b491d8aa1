"""One contract for every object store backend: a local folder, and S3 over real HTTP (moto)."""

from __future__ import annotations

import asyncio
import hashlib
import os
import random
import re
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
import urllib3
from moto.server import ThreadedMotoServer

from roomscribe.errors import InvalidObjectKeyError, ObjectNotFoundError, ObjectStoreError
from roomscribe.objectstore import LocalObjectStore, ObjectStore, S3ObjectStore
from roomscribe.objectstore.base import RESERVED_SEGMENT_PREFIX
from roomscribe.objectstore.s3 import _ChunkPipe

pytestmark = pytest.mark.service

MIB = 1 << 20
PART = 5 * MIB  # S3ObjectStore's default part size, the S3 minimum


class Boom(Exception):
    """The error a failing source stream raises."""


def payload(size: int, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


async def stream(data: bytes, chunk: int = 64 * 1024) -> AsyncIterator[bytes]:
    for start in range(0, len(data), chunk):
        yield data[start : start + chunk]
        await asyncio.sleep(0)  # behave like a real source: let the loop run between chunks


async def generated(total: int, *, chunk: int = 256 * 1024, seed: int = 1) -> AsyncIterator[bytes]:
    """A stream of ``total`` pseudo-random bytes made chunk by chunk, never held whole."""
    rng = random.Random(seed)
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        yield rng.randbytes(size)
        sent += size


async def failing(after: int, *, chunk: int = 256 * 1024) -> AsyncIterator[bytes]:
    async for piece in generated(after, chunk=chunk):
        yield piece
    raise Boom("source died midway")


def digest_of_generated(total: int, *, chunk: int = 256 * 1024, seed: int = 1) -> str:
    rng = random.Random(seed)
    h = hashlib.sha256()
    sent = 0
    while sent < total:
        size = min(chunk, total - sent)
        h.update(rng.randbytes(size))
        sent += size
    return h.hexdigest()


async def read_all(store: ObjectStore, key: str, *, chunk_size: int = MIB) -> bytes:
    return b"".join([c async for c in store.iter_chunks(key, chunk_size=chunk_size)])


def names_in(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def files_under(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())


# Fixtures ------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def moto_endpoint() -> Iterator[str]:
    """One moto S3 server for the module, on a free port of 127.0.0.1."""
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


def pending_multipart_uploads(endpoint: str, bucket: str) -> int:
    """Count multipart uploads the server still holds (moto does not check signatures)."""
    response = urllib3.request("GET", f"{endpoint}/{bucket}?uploads")
    assert response.status == 200, response.data
    return len(re.findall(rb"<Upload>", response.data))


@pytest.fixture(params=["local", "s3"])
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
async def store(
    backend: str, request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[ObjectStore]:
    """A fresh, empty store of the parametrized backend (a fresh bucket for S3)."""
    opened: ObjectStore
    if backend == "local":
        opened = LocalObjectStore(tmp_path / "objects")
    else:
        endpoint = request.getfixturevalue("moto_endpoint")
        s3 = S3ObjectStore(
            endpoint,
            bucket=f"rec-{uuid.uuid4().hex[:16]}",
            access_key="testing",
            secret_key="testing",
            region="us-east-1",
        )
        opened = s3
    await opened.init()
    await opened.init()  # idempotent: every service start calls it
    yield opened
    await opened.close()


@pytest.fixture
def downloads(tmp_path: Path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


def assert_nothing_left(store: ObjectStore) -> None:
    """No temporary file (local) and no open multipart upload (S3) is left behind."""
    if isinstance(store, LocalObjectStore):
        if store.root.exists():
            names = [p.name for p in store.root.rglob("*")]
            assert [n for n in names if n.startswith(RESERVED_SEGMENT_PREFIX)] == []
    elif isinstance(store, S3ObjectStore):
        assert pending_multipart_uploads(store.endpoint, store.bucket) == 0


# Round trips ---------------------------------------------------------------------------------
async def test_put_bytes_round_trip(store: ObjectStore, downloads: Path) -> None:
    data = payload(300_000)
    info = await store.put_bytes("rooms/standup/alice/TR_a.ogg", data, content_type="audio/ogg")
    assert info.key == "rooms/standup/alice/TR_a.ogg"
    assert info.size == len(data)
    assert info.content_type == "audio/ogg"
    assert info.etag

    assert await read_all(store, info.key) == data
    got = await store.get_to_file(info.key, downloads / "a.ogg")
    assert (downloads / "a.ogg").read_bytes() == data
    assert got.size == len(data)
    assert files_under(downloads) == ["a.ogg"]  # the temporary file was renamed, not left


async def test_put_file_round_trip_multipart_sized(
    store: ObjectStore, tmp_path: Path, downloads: Path
) -> None:
    # 7 MiB: more than one 5 MiB part, so S3 uploads the file in parts.
    data = os.urandom(7 * MIB)
    source = tmp_path / "recording.ogg"
    source.write_bytes(data)
    info = await store.put_file("rooms/r/bob/TR_b.ogg", source, content_type="audio/ogg")
    assert info.size == len(data)
    assert (await store.stat(info.key)).size == len(data)
    await store.get_to_file(info.key, downloads / "b.ogg")
    assert (downloads / "b.ogg").read_bytes() == data


async def test_put_stream_multipart_round_trip(
    store: ObjectStore, backend: str, downloads: Path
) -> None:
    total = 12 * MIB + 12_345  # three parts of 5, 5 and a bit over 2 MiB
    info = await store.put_stream("rooms/r/carol/TR_c.ogg", generated(total))
    assert info.size == total
    assert (await store.stat(info.key)).size == total
    if backend == "s3":
        # An S3 multipart ETag is "<md5 of part md5s>-<part count>": proves it went in parts.
        assert info.etag is not None
        assert info.etag.endswith("-3")

    h = hashlib.sha256()
    async for chunk in store.iter_chunks(info.key):
        assert 0 < len(chunk) <= MIB
        h.update(chunk)
    assert h.hexdigest() == digest_of_generated(total)

    await store.get_to_file(info.key, downloads / "c.ogg")
    assert hashlib.sha256((downloads / "c.ogg").read_bytes()).hexdigest() == (
        digest_of_generated(total)
    )
    assert_nothing_left(store)


async def test_put_stream_small_and_empty(store: ObjectStore) -> None:
    data = payload(70_000, seed=3)
    info = await store.put_stream("small.bin", stream(data, chunk=1000))
    assert info.size == len(data)
    assert await read_all(store, "small.bin") == data

    async def nothing() -> AsyncIterator[bytes]:
        for piece in (b"", b""):
            yield piece

    empty = await store.put_stream("empty.bin", nothing())
    assert empty.size == 0
    assert (await store.stat("empty.bin")).size == 0
    assert await read_all(store, "empty.bin") == b""


async def test_iter_chunks_respects_chunk_size(store: ObjectStore) -> None:
    data = payload(2500, seed=4)
    await store.put_bytes("k", data)
    chunks = [c async for c in store.iter_chunks("k", chunk_size=1000)]
    assert [len(c) for c in chunks] == [1000, 1000, 500]
    assert b"".join(chunks) == data
    with pytest.raises(ValueError, match="chunk_size"):
        await read_all(store, "k", chunk_size=0)


async def test_iter_chunks_stopped_early_releases_the_object(store: ObjectStore) -> None:
    data = payload(3 * MIB, seed=5)
    await store.put_bytes("big", data)
    chunks = store.iter_chunks("big", chunk_size=MIB)
    assert await anext(chunks) == data[:MIB]
    await chunks.aclose()  # type: ignore[attr-defined]
    # The store still works after a half-read download (the connection was released).
    await store.put_bytes("big", b"new")
    assert await read_all(store, "big") == b"new"


# Metadata, listing, deleting -----------------------------------------------------------------
async def test_stat_and_exists(store: ObjectStore, backend: str) -> None:
    await store.put_bytes("rooms/r/a/TR_1.ogg", b"x" * 1234, content_type="audio/ogg")
    info = await store.stat("rooms/r/a/TR_1.ogg")
    assert info.key == "rooms/r/a/TR_1.ogg"
    assert info.size == 1234
    assert info.etag
    assert info.last_modified is not None
    assert info.last_modified.utcoffset() is not None
    # S3 stores the content type; the folder guesses it from the extension.
    assert info.content_type == "audio/ogg"
    assert await store.exists("rooms/r/a/TR_1.ogg")
    assert not await store.exists("rooms/r/a/TR_2.ogg")
    # A "folder" of keys is not an object on either backend.
    assert not await store.exists("rooms/r")


async def test_list_by_prefix(store: ObjectStore) -> None:
    keys = {
        "rooms/a/x.ogg": 1,
        "rooms/a/y.ogg": 22,
        "rooms/ab/z.ogg": 333,
        "rooms/b/w.ogg": 4,
        "other.txt": 5,
    }
    for key, size in keys.items():
        await store.put_bytes(key, b"." * size)

    everything = await store.list()
    assert [i.key for i in everything] == sorted(keys)
    assert {i.key: i.size for i in everything} == keys
    assert [i.key for i in await store.list("rooms/a/")] == ["rooms/a/x.ogg", "rooms/a/y.ogg"]
    # A prefix is a plain string match, not a folder: "rooms/a" also selects "rooms/ab/".
    assert [i.key for i in await store.list("rooms/a")] == [
        "rooms/a/x.ogg",
        "rooms/a/y.ogg",
        "rooms/ab/z.ogg",
    ]
    assert [i.key for i in await store.list("rooms/a/y")] == ["rooms/a/y.ogg"]
    assert await store.list("nothing/") == []
    assert await store.list("rooms/a/x.ogg/") == []


async def test_delete_is_idempotent(store: ObjectStore) -> None:
    await store.put_bytes("rooms/r/a/TR_1.ogg", b"one")
    await store.put_bytes("rooms/r/b/TR_2.ogg", b"two")
    await store.delete("rooms/r/a/TR_1.ogg")
    assert not await store.exists("rooms/r/a/TR_1.ogg")
    await store.delete("rooms/r/a/TR_1.ogg")  # again: fine
    await store.delete("never/stored.ogg")  # never there: fine
    await store.delete("rooms/r")  # a "folder": not an object, nothing happens
    assert [i.key for i in await store.list()] == ["rooms/r/b/TR_2.ogg"]
    if isinstance(store, LocalObjectStore):
        # Folders emptied by the delete are pruned; the root itself stays.
        assert not (store.root / "rooms" / "r" / "a").exists()
        assert (store.root / "rooms" / "r" / "b").is_dir()
    # A deleted key can be written again.
    await store.put_bytes("rooms/r/a/TR_1.ogg", b"again")
    assert await read_all(store, "rooms/r/a/TR_1.ogg") == b"again"


async def test_overwrite_replaces(store: ObjectStore) -> None:
    first = await store.put_bytes("k/v.bin", payload(50_000, seed=6))
    second = await store.put_bytes("k/v.bin", b"short")
    assert second.size == 5
    assert second.etag != first.etag
    assert (await store.stat("k/v.bin")).size == 5
    assert await read_all(store, "k/v.bin") == b"short"
    assert [i.key for i in await store.list()] == ["k/v.bin"]


# Missing objects and bad keys ----------------------------------------------------------------
async def test_missing_object(store: ObjectStore, downloads: Path) -> None:
    key = "rooms/r/nobody/TR_x.ogg"
    with pytest.raises(ObjectNotFoundError) as raised:
        await store.stat(key)
    assert raised.value.key == key
    with pytest.raises(ObjectNotFoundError):
        await store.get_to_file(key, downloads / "x.ogg")
    assert files_under(downloads) == []  # neither the file nor a temporary one
    with pytest.raises(ObjectNotFoundError):
        await read_all(store, key)
    assert not await store.exists(key)


async def test_get_to_file_replaces_an_existing_file(store: ObjectStore, downloads: Path) -> None:
    await store.put_bytes("k", b"fresh")
    (downloads / "out.bin").write_bytes(b"stale and longer")
    await store.get_to_file("k", downloads / "out.bin")
    assert (downloads / "out.bin").read_bytes() == b"fresh"
    assert files_under(downloads) == ["out.bin"]


INVALID_KEYS = [
    "",
    "/rooms/a.ogg",
    "..",
    "../escape.ogg",
    "rooms/../../escape.ogg",
    "rooms/./a.ogg",
    "rooms//a.ogg",
    "rooms/a/",
    "rooms\\a.ogg",
    "rooms/a\x00.ogg",
    "rooms/a\n.ogg",
    "rooms/.roomscribe-partial-x",
    "r/" + "x" * 1024,
]


@pytest.mark.parametrize("key", INVALID_KEYS)
async def test_invalid_keys_are_rejected(
    store: ObjectStore, key: str, tmp_path: Path, downloads: Path
) -> None:
    source = tmp_path / "src.bin"
    source.write_bytes(b"data")
    with pytest.raises(InvalidObjectKeyError):
        await store.put_bytes(key, b"data")
    with pytest.raises(InvalidObjectKeyError):
        await store.put_file(key, source)
    with pytest.raises(InvalidObjectKeyError):
        await store.put_stream(key, stream(b"data"))
    with pytest.raises(InvalidObjectKeyError):
        await store.get_to_file(key, downloads / "x")
    with pytest.raises(InvalidObjectKeyError):
        await read_all(store, key)
    with pytest.raises(InvalidObjectKeyError):
        await store.stat(key)
    with pytest.raises(InvalidObjectKeyError):
        await store.exists(key)
    with pytest.raises(InvalidObjectKeyError):
        await store.delete(key)
    assert await store.list() == []
    assert files_under(downloads) == []
    if isinstance(store, LocalObjectStore):
        # Nothing was written anywhere, inside the (empty) root or next to it.
        assert names_in(tmp_path) == ["downloads", "objects", "src.bin"]
        assert names_in(tmp_path / "objects") == []


@pytest.mark.parametrize("prefix", ["/rooms", "../", "a/../", "rooms//", "a\\b", "a\x00"])
async def test_invalid_prefixes_are_rejected(store: ObjectStore, prefix: str) -> None:
    with pytest.raises(InvalidObjectKeyError):
        await store.list(prefix)


async def test_unusual_but_valid_keys(store: ObjectStore) -> None:
    keys = ["rooms/Zoë & Ann/ü 1.ogg", "..a/b..", ".hidden/x", "a/b/c/d/e/f.bin"]
    for key in keys:
        await store.put_bytes(key, key.encode())
    for key in keys:
        assert await read_all(store, key) == key.encode()
    assert [i.key for i in await store.list()] == sorted(keys)


# Failures while uploading --------------------------------------------------------------------
@pytest.mark.parametrize(
    "fail_after",
    [100_000, PART + 3 * MIB],  # before the first part is full / once parts were uploaded
    ids=["before-first-part", "after-a-part"],
)
async def test_failing_stream_leaves_no_object(store: ObjectStore, fail_after: int) -> None:
    key = "rooms/r/a/TR_fail.ogg"
    with pytest.raises(Boom):
        await store.put_stream(key, failing(fail_after))
    assert not await store.exists(key)
    assert await store.list() == []
    assert_nothing_left(store)


async def test_failing_stream_keeps_the_previous_object(store: ObjectStore) -> None:
    key = "rooms/r/a/TR_keep.ogg"
    await store.put_bytes(key, b"version one")
    with pytest.raises(Boom):
        await store.put_stream(key, failing(PART + MIB))
    assert await read_all(store, key) == b"version one"
    assert [i.key for i in await store.list()] == [key]
    if isinstance(store, S3ObjectStore):
        assert_nothing_left(store)


async def test_cancelled_stream_leaves_no_object(store: ObjectStore) -> None:
    key = "rooms/r/a/TR_cancel.ogg"
    stalled = asyncio.Event()

    async def source() -> AsyncIterator[bytes]:
        async for piece in generated(PART + MIB):
            yield piece
        stalled.set()
        await asyncio.Event().wait()  # a live source that goes quiet
        yield b"never"

    task = asyncio.create_task(store.put_stream(key, source()))
    await asyncio.wait_for(stalled.wait(), timeout=10)
    await asyncio.sleep(0.05)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert not await store.exists(key)
    assert await store.list() == []
    assert_nothing_left(store)


async def test_put_file_with_missing_source_is_an_os_error(
    store: ObjectStore, tmp_path: Path
) -> None:
    with pytest.raises(FileNotFoundError):
        await store.put_file("k", tmp_path / "absent.bin")
    assert not await store.exists("k")


async def test_get_to_file_into_a_missing_folder_is_an_os_error(
    store: ObjectStore, tmp_path: Path
) -> None:
    await store.put_bytes("k", b"data")
    with pytest.raises(FileNotFoundError):
        await store.get_to_file("k", tmp_path / "no" / "such" / "folder" / "k.bin")


async def test_concurrent_streams_to_different_keys(store: ObjectStore) -> None:
    sizes = {"a.bin": 3 * MIB, "b.bin": 2 * MIB + 1, "c.bin": 10}
    infos = await asyncio.gather(
        *(
            store.put_stream(key, generated(size, seed=i))
            for i, (key, size) in enumerate(sizes.items())
        )
    )
    assert {i.key: i.size for i in infos} == sizes
    for i, (key, size) in enumerate(sizes.items()):
        got = hashlib.sha256(await read_all(store, key)).hexdigest()
        assert got == digest_of_generated(size, seed=i)


async def test_s3_stream_pipe_applies_backpressure() -> None:
    """The S3 upload pipe holds at most ``max_chunks`` unread chunks, whatever the source."""
    pipe = _ChunkPipe(asyncio.get_running_loop(), max_chunks=2)
    assert await pipe.send(b"ab")
    assert await pipe.send(b"cd")
    blocked = asyncio.ensure_future(pipe.send(b"ef"))
    await asyncio.sleep(0.05)
    assert not blocked.done()  # the source is not pulled while two chunks wait

    # minio asks for exact part sizes: a read gathers chunks and keeps the remainder.
    assert await asyncio.to_thread(pipe.read, 3) == b"abc"
    assert await asyncio.wait_for(blocked, timeout=5)
    pipe.finish()
    assert await asyncio.to_thread(pipe.read, 10) == b"def"
    assert await asyncio.to_thread(pipe.read, 10) == b""
    assert pipe.ended

    # Once minio stopped reading, senders are told instead of waiting forever.
    gone = _ChunkPipe(asyncio.get_running_loop(), max_chunks=1)
    assert await gone.send(b"x")
    waiting = asyncio.ensure_future(gone.send(b"y"))
    gone.reader_closed()
    assert await asyncio.wait_for(waiting, timeout=5) is False


async def test_local_folder_cannot_hold_an_object_and_a_folder_of_the_same_name(
    tmp_path: Path,
) -> None:
    # S3 allows both "a" and "a/b"; a folder cannot, and says so instead of corrupting either.
    store = LocalObjectStore(tmp_path / "objects")
    await store.put_bytes("a/b", b"inner")
    with pytest.raises(ObjectStoreError, match="both an object and a folder"):
        await store.put_bytes("a", b"outer")
    await store.put_bytes("c", b"file")
    with pytest.raises(ObjectStoreError, match="both an object and a folder"):
        await store.put_stream("c/d", stream(b"data"))
    assert [(i.key, i.size) for i in await store.list()] == [("a/b", 5), ("c", 4)]
    assert_nothing_left(store)
