"""The embedded transcript store: one SQLite file, the default when no MongoDB URI is set.

It mirrors the MongoDB model (rooms, tracks, chunks) but keeps one row per segment, with
the chunk's sequence number on it, because SQLite indexes rows and not array elements: the
transcript query then walks an ``(room, source, abs_start, id)`` index instead of unpacking
buckets. The ``chunks`` table carries the same bucket metadata as MongoDB's documents.

Writes run on one dedicated thread with one connection, each operation one ``BEGIN
IMMEDIATE`` transaction, so conditional updates are atomic even when several processes share
the file. Reads run on their own threads and connections (WAL mode lets them proceed while a
write is in progress). Blocking SQLite calls never run on the event loop.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar, cast

from pydantic import TypeAdapter

from roomscribe.errors import NotFoundError, StoreError
from roomscribe.models import (
    PENDING_TRACK_STATUSES,
    Chunk,
    EgressInfo,
    EgressStatus,
    Room,
    RoomStatus,
    Segment,
    SegmentIn,
    SegmentSource,
    Summary,
    Track,
    TrackCreate,
    TrackStatus,
    TranscriptPage,
    TranscriptQuery,
    TranscriptSource,
    WhisperStats,
    Word,
    utcnow,
)
from roomscribe.store import jobs
from roomscribe.store.base import (
    DEFAULT_CHUNK_SIZE,
    RoomPage,
)
from roomscribe.store.common import (
    BoundedLru,
    StoreLookups,
    TrackMeta,
    archive_key,
    archived_meeting,
    cursor_number,
    cursor_text,
    first_of_each_id,
    merge_in_order,
    room_facts,
    transcript_cursor,
    transcript_page,
    unknown_track_fields,
    with_coverage,
)
from roomscribe.store.cursor import decode_cursor, encode_cursor
from roomscribe.store.migrations import SCHEMA_VERSION, needs_upgrade, upgrade_track_doc

T = TypeVar("T")

#: Most queued writes committed in one transaction.
_MAX_GROUP = 64

_WORDS: TypeAdapter[list[Word]] = TypeAdapter(list[Word])
_SEGMENTS: TypeAdapter[list[Segment]] = TypeAdapter(list[Segment])

_SCHEMA = """
CREATE TABLE IF NOT EXISTS rooms (
    name TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    created_at REAL NOT NULL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS rooms_by_created ON rooms (created_at, name);
CREATE INDEX IF NOT EXISTS rooms_by_status ON rooms (status, created_at, name);
CREATE TABLE IF NOT EXISTS tracks (
    track_sid TEXT PRIMARY KEY,
    room TEXT NOT NULL,
    status TEXT NOT NULL,
    published_at REAL NOT NULL,
    lease_until REAL,
    doc TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS tracks_by_room ON tracks (room, published_at);
CREATE INDEX IF NOT EXISTS tracks_by_job ON tracks (status, lease_until);
CREATE TABLE IF NOT EXISTS chunks (
    track_sid TEXT NOT NULL,
    source TEXT NOT NULL,
    seq INTEGER NOT NULL,
    room TEXT NOT NULL,
    participant_identity TEXT NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    count INTEGER NOT NULL,
    min_confidence REAL NOT NULL,
    max_confidence REAL NOT NULL,
    PRIMARY KEY (track_sid, source, seq)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS chunks_by_room ON chunks (room, source, start);
CREATE TABLE IF NOT EXISTS segments (
    track_sid TEXT NOT NULL,
    source TEXT NOT NULL,
    id TEXT NOT NULL,
    room TEXT NOT NULL,
    participant_identity TEXT NOT NULL,
    chunk_seq INTEGER NOT NULL,
    start REAL NOT NULL,
    "end" REAL NOT NULL,
    abs_start REAL NOT NULL,
    abs_end REAL NOT NULL,
    text TEXT NOT NULL,
    confidence REAL NOT NULL,
    words TEXT NOT NULL,
    PRIMARY KEY (track_sid, source, id)
);
CREATE INDEX IF NOT EXISTS segments_by_room ON segments (room, source, abs_start, id);
CREATE INDEX IF NOT EXISTS segments_by_track ON segments (track_sid, source, abs_start, id);
CREATE INDEX IF NOT EXISTS segments_by_participant
    ON segments (room, source, participant_identity, abs_start, id);
-- The longest segment per room and source bounds the index range a time filter must scan.
CREATE TABLE IF NOT EXISTS spans (
    room TEXT NOT NULL,
    source TEXT NOT NULL,
    longest REAL NOT NULL,
    PRIMARY KEY (room, source)
) WITHOUT ROWID;
"""

_SEGMENT_JSON = ", ".join(
    f"'{name}', {column}"
    for name, column in (
        ("id", "id"),
        ("track_sid", "track_sid"),
        ("participant_identity", "participant_identity"),
        ("source", "source"),
        ("start", "start"),
        ("end", '"end"'),
        ("abs_start", "abs_start"),
        ("abs_end", "abs_end"),
        ("text", "text"),
        ("confidence", "confidence"),
        ("words", "json(words)"),
    )
)


def _epoch(value: datetime) -> float:
    return value.timestamp()


def _finite(value: float) -> float:
    # SQLite has no infinity literal for bound parameters everywhere; this is far enough.
    return max(-1e300, min(1e300, value))


def _upgrade(conn: sqlite3.Connection) -> None:
    """Bring a file of an older version to :data:`SCHEMA_VERSION` in one transaction."""
    columns = {row[1] for row in conn.execute("PRAGMA table_info(tracks)")}
    if not columns:
        return  # a new file: the schema creates everything
    conn.execute("BEGIN IMMEDIATE")
    try:
        if "started_at" in columns:
            # Renaming keeps the index on it (SQLite rewrites the index definition too).
            conn.execute("ALTER TABLE tracks RENAME COLUMN started_at TO published_at")
        rows = conn.execute("SELECT track_sid, doc FROM tracks").fetchall()
        for sid, raw in rows:
            doc = json.loads(raw)
            if needs_upgrade(doc):
                conn.execute(
                    "UPDATE tracks SET doc = ? WHERE track_sid = ?",
                    (json.dumps(upgrade_track_doc(doc)), sid),
                )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


class _Connections:
    """One writer thread with its connection, and a small pool of reader threads."""

    def __init__(self, path: Path, readers: int) -> None:
        self._path = path
        self._local = threading.local()
        self._opened: list[sqlite3.Connection] = []
        self._lock = threading.Lock()
        self.writer = ThreadPoolExecutor(1, thread_name_prefix="sqlite-writer")
        self.readers = ThreadPoolExecutor(readers, thread_name_prefix="sqlite-reader")

    def connection(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if conn is None:
            # isolation_level=None: transactions are explicit (BEGIN IMMEDIATE) so a write
            # takes the file's write lock before it reads what it is going to change.
            conn = sqlite3.connect(self._path, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=10000")
            conn.execute("PRAGMA foreign_keys=OFF")
            self._local.conn = conn
            with self._lock:
                self._opened.append(conn)
        return conn

    def close(self) -> None:
        self.writer.shutdown(wait=True)
        self.readers.shutdown(wait=True)
        with self._lock:
            for conn in self._opened:
                conn.close()
            self._opened.clear()


#: Tracks whose attribution is cached (the live tracks of a busy deployment, with room).
_TRACK_META_ENTRIES = 10_000


class SQLiteTranscriptStore(StoreLookups):
    """Transcript store in one SQLite file (see the module docstring for the design)."""

    def __init__(
        self, path: Path | str, *, chunk_size: int = DEFAULT_CHUNK_SIZE, readers: int = 2
    ) -> None:
        """Open (lazily) the store at ``path``; ``":memory:"`` is not supported (threads)."""
        self.path = Path(path)
        self.chunk_size = chunk_size
        self._conns = _Connections(self.path, readers)
        # Immutable facts about a track that every append needs; cached to skip a lookup.
        self._track_meta: BoundedLru[str, TrackMeta] = BoundedLru(_TRACK_META_ENTRIES)
        self._pending: list[tuple[Callable[[sqlite3.Connection], Any], asyncio.Future[Any]]] = []
        self._drainer: asyncio.Task[None] | None = None

    # Plumbing ------------------------------------------------------------------------------
    async def _write(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` atomically on the writer connection and return its result.

        Writes queued while the writer is busy are committed together (group commit): each
        runs in its own savepoint, so one failing write rolls back alone, while the batch
        shares one transaction and one hop to the writer thread. Under many concurrent
        appends this is what keeps throughput near bare SQLite's.
        """
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if self._drainer is None:
            self._drainer = asyncio.get_running_loop().create_task(self._drain())
        return cast(T, await future)

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._pending:
                batch = self._pending[:_MAX_GROUP]
                del self._pending[:_MAX_GROUP]
                try:
                    outcomes = await loop.run_in_executor(
                        self._conns.writer, self._run_group, [fn for fn, _ in batch]
                    )
                except sqlite3.Error as exc:
                    error = StoreError(f"SQLite write failed: {exc}")
                    outcomes = [(False, error)] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():  # the caller was cancelled; the write still happened
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._drainer = None

    def _run_group(self, fns: list[Callable[[sqlite3.Connection], Any]]) -> list[tuple[bool, Any]]:
        conn = self._conns.connection()
        conn.execute("BEGIN IMMEDIATE")
        outcomes: list[tuple[bool, Any]] = []
        try:
            for fn in fns:
                conn.execute("SAVEPOINT op")
                try:
                    outcomes.append((True, fn(conn)))
                except Exception as exc:  # handed to that write's caller, not swallowed
                    conn.execute("ROLLBACK TO op")
                    if isinstance(exc, sqlite3.Error):
                        exc = StoreError(f"SQLite write failed: {exc}")
                    outcomes.append((False, exc))
                conn.execute("RELEASE op")
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        return outcomes

    async def _read(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        def run() -> T:
            return fn(self._conns.connection())

        try:
            return await asyncio.get_running_loop().run_in_executor(self._conns.readers, run)
        except sqlite3.Error as exc:
            raise StoreError(f"SQLite read failed: {exc}") from exc

    async def init(self) -> None:
        """Create the file, its folder, the tables and the indexes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)

        def create(conn: sqlite3.Connection) -> None:
            (version,) = conn.execute("PRAGMA user_version").fetchone()
            if version < SCHEMA_VERSION:
                _upgrade(conn)
            conn.executescript(_SCHEMA)
            conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")

        try:
            await asyncio.get_running_loop().run_in_executor(
                self._conns.writer, lambda: create(self._conns.connection())
            )
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open SQLite store at {self.path}: {exc}") from exc

    async def close(self) -> None:
        """Wait for queued work, then close every connection."""
        if self._drainer is not None:
            await self._drainer
        await asyncio.to_thread(self._conns.close)

    async def ping(self) -> None:
        """Run a trivial query on a reader connection."""
        await self._read(lambda conn: conn.execute("SELECT 1").fetchone())

    # Rooms ---------------------------------------------------------------------------------
    @staticmethod
    def _load_room(conn: sqlite3.Connection, name: str) -> Room | None:
        row = conn.execute("SELECT doc FROM rooms WHERE name = ?", (name,)).fetchone()
        return None if row is None else Room.model_validate_json(row[0])

    @staticmethod
    def _save_room(conn: sqlite3.Connection, room: Room) -> None:
        room.updated_at = utcnow()
        conn.execute(
            "INSERT INTO rooms (name, status, created_at, doc) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (name) DO UPDATE SET status = excluded.status, doc = excluded.doc",
            (room.name, room.status.value, _epoch(room.created_at), room.model_dump_json()),
        )

    def _modify_room(
        self, conn: sqlite3.Connection, name: str, change: Callable[[Room], bool]
    ) -> bool:
        room = self._load_room(conn, name)
        if room is None:
            raise NotFoundError(f"room {name!r} is not registered")
        if not change(room):
            return False
        self._save_room(conn, room)
        return True

    async def register_room(
        self, name: str, *, sid: str | None = None, livekit_created_at: datetime | None = None
    ) -> Room:
        """Register a room; an existing one keeps its status and learns what it lacked."""

        def register(conn: sqlite3.Connection) -> Room:
            room = self._load_room(conn, name)
            if room is None:
                room = Room(name=name, sid=sid, livekit_created_at=livekit_created_at)
            else:
                learned = room_facts(room, sid, livekit_created_at)
                if not learned:
                    return room
                room = room.model_copy(update=learned)
            self._save_room(conn, room)
            return room

        return await self._write(register)

    async def archive_room(self, name: str, *, sid: str) -> Room | None:
        """Move the meeting, its tracks and its transcript to its own key (one transaction)."""

        def archive(conn: sqlite3.Connection) -> Room | None:
            room = self._load_room(conn, name)
            if room is None or room.sid != sid:
                return self._archived(conn, name, sid)
            n = 1
            while conn.execute(
                "SELECT 1 FROM rooms WHERE name = ?", (archive_key(name, sid, n),)
            ).fetchone():
                n += 1
            archived = archived_meeting(room, archive_key(name, sid, n))
            conn.execute("DELETE FROM rooms WHERE name = ?", (name,))
            self._save_room(conn, archived)
            key = archived.name
            conn.execute(
                "UPDATE tracks SET room = ?, doc = json_set(doc, '$.room', ?) WHERE room = ?",
                (key, key, name),
            )
            for table in ("chunks", "segments", "spans"):
                conn.execute(f"UPDATE {table} SET room = ? WHERE room = ?", (key, name))
            self._track_meta.clear()
            return archived

        return await self._write(archive)

    @staticmethod
    def _archived(conn: sqlite3.Connection, name: str, sid: str) -> Room | None:
        for (doc,) in conn.execute(
            "SELECT doc FROM rooms WHERE name >= ? AND name < ?",
            (archive_key(name, sid), archive_key(name, sid) + "\uffff"),
        ):
            room = Room.model_validate_json(doc)
            if room.meeting_of == name and room.sid == sid:
                return room
        return None

    async def find_room(self, name: str) -> Room | None:
        """Return the room, or ``None`` when it is not registered."""
        return await self._read(lambda conn: self._load_room(conn, name))

    async def list_rooms(
        self,
        *,
        status: RoomStatus | None = None,
        names: Collection[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RoomPage:
        """List rooms newest first (ties by name), filtered by status and names."""
        filters: dict[str, Any] = {
            "status": status,
            "names": sorted(names) if names is not None else None,
        }
        if names is not None and not names:
            return RoomPage([], None)
        where: list[str] = []
        params: list[Any] = []
        if status is not None:
            where.append("status = ?")
            params.append(status.value)
        if names is not None:
            where.append(f"name IN ({','.join('?' * len(names))})")
            params.extend(sorted(names))
        if cursor is not None:
            created, name = decode_cursor(cursor, filters, arity=2)
            where.append("(created_at, name) < (?, ?)")
            params.extend([cursor_number(created), cursor_text(name)])
        sql = "SELECT doc, created_at FROM rooms"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY created_at DESC, name DESC LIMIT ?"
        params.append(limit + 1)
        rows = await self._read(lambda conn: conn.execute(sql, params).fetchall())
        rooms = [Room.model_validate_json(doc) for doc, _ in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last_created = rows[limit - 1][1]
            next_cursor = encode_cursor([last_created, rooms[-1].name], filters)
        return RoomPage(rooms, next_cursor)

    async def transition_room(
        self,
        name: str,
        *,
        to: RoomStatus,
        from_: Collection[RoomStatus],
        reason: str | None = None,
    ) -> bool:
        """Move the room to ``to`` when its status is in ``from_``."""

        def change(room: Room) -> bool:
            if room.status not in from_:
                return False
            room.status = to
            room.status_reason = reason
            return True

        return await self._write(lambda conn: self._modify_room(conn, name, change))

    async def add_participant(self, room: str, identity: str) -> None:
        """Record a participant once."""

        def change(doc: Room) -> bool:
            if identity in doc.participants:
                return False
            doc.participants.append(identity)
            return True

        await self._write(lambda conn: self._modify_room(conn, room, change))

    async def set_summary(self, room: str, summary: Summary | None) -> None:
        """Store or clear the summary."""

        def change(doc: Room) -> bool:
            doc.summary = summary
            return True

        await self._write(lambda conn: self._modify_room(conn, room, change))

    # Tracks --------------------------------------------------------------------------------
    @staticmethod
    def _load_track(conn: sqlite3.Connection, track_sid: str) -> Track | None:
        row = conn.execute("SELECT doc FROM tracks WHERE track_sid = ?", (track_sid,)).fetchone()
        return None if row is None else Track.model_validate_json(row[0])

    @staticmethod
    def _save_track(conn: sqlite3.Connection, track: Track) -> None:
        track.updated_at = utcnow()
        lease = track.job.lease_until
        conn.execute(
            "INSERT INTO tracks (track_sid, room, status, published_at, lease_until, doc) "
            "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT (track_sid) DO UPDATE SET "
            "status = excluded.status, lease_until = excluded.lease_until, doc = excluded.doc",
            (
                track.track_sid,
                track.room,
                track.status.value,
                _epoch(track.published_at),
                None if lease is None else _epoch(lease),
                track.model_dump_json(),
            ),
        )

    def _modify_track(
        self, conn: sqlite3.Connection, track_sid: str, change: Callable[[Track], bool]
    ) -> bool:
        track = self._load_track(conn, track_sid)
        if track is None:
            raise NotFoundError(f"track {track_sid!r} is unknown")
        if not change(track):
            return False
        self._save_track(conn, track)
        return True

    async def upsert_track(self, track: TrackCreate) -> Track:
        """Create the track if new, else fill in what it does not know yet; return it."""

        def upsert(conn: sqlite3.Connection) -> Track:
            stored = self._load_track(conn, track.track_sid)
            if stored is None:
                stored = Track(**track.model_dump())
            else:
                missing = unknown_track_fields(stored, track)
                if not missing:
                    return stored
                stored = stored.model_copy(update=missing)
            self._save_track(conn, stored)
            self._track_meta.pop(track.track_sid, None)
            return stored

        return await self._write(upsert)

    async def find_track(self, track_sid: str) -> Track | None:
        """Return the track or ``None``."""
        return await self._read(lambda conn: self._load_track(conn, track_sid))

    async def list_tracks(self, room: str) -> list[Track]:
        """Return the room's tracks by start time."""
        rows = await self._read(
            lambda conn: conn.execute(
                "SELECT doc FROM tracks WHERE room = ? ORDER BY published_at, track_sid", (room,)
            ).fetchall()
        )
        return [Track.model_validate_json(doc) for (doc,) in rows]

    async def set_track_status(
        self,
        track_sid: str,
        to: TrackStatus,
        *,
        from_: Collection[TrackStatus] | None = None,
        reason: str | None = None,
    ) -> bool:
        """Set the status, only from ``from_`` when given."""

        def change(track: Track) -> bool:
            if from_ is not None and track.status not in from_:
                return False
            track.status = to
            track.status_reason = reason
            return True

        return await self._write(lambda conn: self._modify_track(conn, track_sid, change))

    async def update_egress(self, track_sid: str, egress: EgressInfo) -> None:
        """Replace the egress facts."""

        def change(track: Track) -> bool:
            track.egress = egress
            return True

        await self._write(lambda conn: self._modify_track(conn, track_sid, change))

    async def claim_egress_start(self, track_sid: str, *, stale_after_s: float = 60.0) -> bool:
        """Claim starting the egress (one conditional update in the write transaction)."""
        now = utcnow()

        def change(track: Track) -> bool:
            if not jobs.egress_start_claimable(track, now, stale_after_s):
                return False
            track.egress = EgressInfo(status=EgressStatus.STARTING, updated_at=now)
            return True

        return await self._write(lambda conn: self._modify_track(conn, track_sid, change))

    async def add_live_stats(
        self,
        track_sid: str,
        *,
        received_s: float,
        dropped_s: float,
        committed_s: float | None = None,
    ) -> None:
        """Add to the live counters in place (no read-modify-write of the document).

        ``committed_s`` only ever raises ``live.committed_s`` (SQL ``max``); a track stored
        by an older version has no such field yet, which counts as 0.
        """

        def add(conn: sqlite3.Connection) -> None:
            cur = conn.execute(
                "UPDATE tracks SET doc = json_set(doc, "
                "'$.live.audio_received_s', json_extract(doc, '$.live.audio_received_s') + ?, "
                "'$.live.audio_dropped_s', json_extract(doc, '$.live.audio_dropped_s') + ?, "
                "'$.live.committed_s', "
                "max(coalesce(json_extract(doc, '$.live.committed_s'), 0.0), ?)) "
                "WHERE track_sid = ?",
                (received_s, dropped_s, 0.0 if committed_s is None else committed_s, track_sid),
            )
            if cur.rowcount == 0:
                raise NotFoundError(f"track {track_sid!r} is unknown")

        await self._write(add)

    async def count_pending_tracks(self, room: str) -> int:
        """Count tracks still recording or waiting for / in Whisper."""
        pending = sorted(s.value for s in PENDING_TRACK_STATUSES)
        row = await self._read(
            lambda conn: conn.execute(
                f"SELECT COUNT(*) FROM tracks WHERE room = ? "
                f"AND status IN ({','.join('?' * len(pending))})",
                (room, *pending),
            ).fetchone()
        )
        return int(row[0])

    async def complete_idle_room(self, name: str) -> bool:
        """``final_room -> summarizing`` when no track is pending, in one transaction."""
        pending = sorted(s.value for s in PENDING_TRACK_STATUSES)

        def complete(conn: sqlite3.Connection) -> bool:
            busy = conn.execute(
                f"SELECT 1 FROM tracks WHERE room = ? "
                f"AND status IN ({','.join('?' * len(pending))}) LIMIT 1",
                (name, *pending),
            ).fetchone()
            if busy:
                room = self._load_room(conn, name)
                if room is None:
                    raise NotFoundError(f"room {name!r} is not registered")
                return False

            def change(room: Room) -> bool:
                if room.status is not RoomStatus.FINAL_ROOM:
                    return False
                room.status = RoomStatus.SUMMARIZING
                room.status_reason = None
                return True

            return self._modify_room(conn, name, change)

        return await self._write(complete)

    # Segments ------------------------------------------------------------------------------
    def _live_meta(self, conn: sqlite3.Connection, track_sid: str) -> TrackMeta:
        meta = self._track_meta.get(track_sid)
        if meta is None:
            track = self._load_track(conn, track_sid)
            if track is None:
                raise NotFoundError(f"track {track_sid!r} is unknown")
            meta = TrackMeta.live(track)
            if track.live_origin is not None:  # else a later upsert may still set it
                self._track_meta[track_sid] = meta
        return meta

    def _insert_segments(
        self,
        conn: sqlite3.Connection,
        track_sid: str,
        source: SegmentSource,
        segments: Sequence[SegmentIn],
        meta: TrackMeta,
    ) -> int:
        """Insert new segments into the open chunk and new ones after it; return the count."""
        room, identity, started = meta.room, meta.identity, meta.origin
        fresh = first_of_each_id(segments)
        if not fresh:
            return 0
        ids = list(fresh)
        for i in range(0, len(ids), 500):
            part = ids[i : i + 500]
            for (known,) in conn.execute(
                f"SELECT id FROM segments WHERE track_sid = ? AND source = ? "
                f"AND id IN ({','.join('?' * len(part))})",
                (track_sid, source.value, *part),
            ):
                fresh.pop(known, None)
        if not fresh:
            return 0
        last = conn.execute(
            "SELECT seq, count FROM chunks WHERE track_sid = ? AND source = ? "
            "ORDER BY seq DESC LIMIT 1",
            (track_sid, source.value),
        ).fetchone()
        seq, used = (0, 0) if last is None else (int(last[0]), int(last[1]))
        if last is not None and used >= self.chunk_size:
            seq, used = seq + 1, 0
        rows: list[tuple[Any, ...]] = []
        chunks: dict[int, list[SegmentIn]] = {}
        for seg in fresh.values():
            if used >= self.chunk_size:
                seq, used = seq + 1, 0
            used += 1
            chunks.setdefault(seq, []).append(seg)
            rows.append(
                (
                    track_sid,
                    source.value,
                    seg.id,
                    room,
                    identity,
                    seq,
                    seg.start,
                    seg.end,
                    started + seg.start,
                    started + seg.end,
                    seg.text,
                    seg.confidence,
                    _WORDS.dump_json(seg.words).decode(),
                )
            )
        conn.executemany(
            "INSERT INTO segments (track_sid, source, id, room, participant_identity, "
            'chunk_seq, start, "end", abs_start, abs_end, text, confidence, words) '
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            rows,
        )
        conn.executemany(
            "INSERT INTO chunks (track_sid, source, seq, room, participant_identity, start, "
            '"end", count, min_confidence, max_confidence) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) '
            "ON CONFLICT (track_sid, source, seq) DO UPDATE SET "
            'start = min(start, excluded.start), "end" = max("end", excluded."end"), '
            "count = count + excluded.count, "
            "min_confidence = min(min_confidence, excluded.min_confidence), "
            "max_confidence = max(max_confidence, excluded.max_confidence)",
            [
                (
                    track_sid,
                    source.value,
                    chunk_seq,
                    room,
                    identity,
                    started + min(s.start for s in segs),
                    started + max(s.end for s in segs),
                    len(segs),
                    min(s.confidence for s in segs),
                    max(s.confidence for s in segs),
                )
                for chunk_seq, segs in chunks.items()
            ],
        )
        longest = max(s.end - s.start for s in fresh.values())
        conn.execute(
            "INSERT INTO spans (room, source, longest) VALUES (?, ?, ?) "
            "ON CONFLICT (room, source) DO UPDATE SET longest = max(longest, excluded.longest)",
            (room, source.value, longest),
        )
        return len(fresh)

    async def append_realtime_segments(self, track_sid: str, segments: Sequence[SegmentIn]) -> int:
        """Append live segments (ids already stored are skipped) and count them on the track."""

        def append(conn: sqlite3.Connection) -> int:
            meta = self._live_meta(conn, track_sid)
            added = self._insert_segments(conn, track_sid, SegmentSource.REALTIME, segments, meta)
            if added:
                conn.execute(
                    "UPDATE tracks SET doc = json_set(doc, '$.live.segments', "
                    "json_extract(doc, '$.live.segments') + ?) WHERE track_sid = ?",
                    (added, track_sid),
                )
            return added

        return await self._write(append)

    def _replace_whisper(
        self,
        conn: sqlite3.Connection,
        track: Track,
        segments: Sequence[SegmentIn],
        stats: WhisperStats,
    ) -> None:
        source = SegmentSource.WHISPER.value
        sid = track.track_sid
        covered = with_coverage(stats, track)
        conn.execute("DELETE FROM segments WHERE track_sid = ? AND source = ?", (sid, source))
        conn.execute("DELETE FROM chunks WHERE track_sid = ? AND source = ?", (sid, source))
        meta = TrackMeta.whisper(track, covered)
        stored = self._insert_segments(conn, sid, SegmentSource.WHISPER, segments, meta)

        def change(doc: Track) -> bool:
            # The count is what was stored (ids de-duplicated): ``best`` relies on it.
            doc.whisper = covered.model_copy(update={"segments": stored})
            return True

        self._modify_track(conn, sid, change)

    async def replace_whisper_segments(
        self, track_sid: str, segments: Sequence[SegmentIn], *, stats: WhisperStats
    ) -> None:
        """Swap the track's Whisper transcript in one transaction."""

        def replace(conn: sqlite3.Connection) -> None:
            track = self._load_track(conn, track_sid)
            if track is None:
                raise NotFoundError(f"track {track_sid!r} is unknown")
            self._replace_whisper(conn, track, segments, stats)

        await self._write(replace)

    async def list_chunks(self, track_sid: str, source: SegmentSource) -> list[Chunk]:
        """Return the chunk metadata in sequence order."""
        rows = await self._read(
            lambda conn: conn.execute(
                'SELECT room, track_sid, participant_identity, source, seq, start, "end", '
                "count, min_confidence, max_confidence FROM chunks "
                "WHERE track_sid = ? AND source = ? ORDER BY seq",
                (track_sid, source.value),
            ).fetchall()
        )
        keys = Chunk.model_fields.keys()
        return [Chunk.model_validate(dict(zip(keys, row, strict=True))) for row in rows]

    async def query_transcript(self, query: TranscriptQuery) -> TranscriptPage:
        """Return one page sorted by ``(abs_start, id)``; see TranscriptStore."""
        after = transcript_cursor(query)

        def run(conn: sqlite3.Connection) -> list[Segment]:
            if query.source is TranscriptSource.BEST:
                coverage = self._coverage(conn, query.room)
                parts = [
                    self._select(conn, query, SegmentSource.REALTIME, after, hide=coverage),
                    self._select(conn, query, SegmentSource.WHISPER, after, only=list(coverage))
                    if coverage
                    else [],
                ]
                return merge_in_order(parts, query.limit + 1)
            return self._select(conn, query, SegmentSource(query.source.value), after)

        return transcript_page(await self._read(run), query)

    @staticmethod
    def _coverage(conn: sqlite3.Connection, room: str) -> dict[str, tuple[float, float]]:
        """Track sid -> the absolute span where ``best`` reads Whisper (see the model)."""
        spans: dict[str, tuple[float, float]] = {}
        for (doc,) in conn.execute(
            "SELECT doc FROM tracks WHERE room = ? AND status = ? "
            "AND json_extract(doc, '$.whisper.segments') > 0",
            (room, TrackStatus.TRANSCRIBED.value),
        ):
            track = Track.model_validate_json(doc)
            span = track.whisper_coverage()
            if span is not None:
                spans[track.track_sid] = span
        return spans

    def _select(
        self,
        conn: sqlite3.Connection,
        query: TranscriptQuery,
        source: SegmentSource,
        after: list[Any] | None,
        *,
        only: Iterable[str] | None = None,
        hide: Mapping[str, tuple[float, float]] | None = None,
    ) -> list[Segment]:
        where = ["room = ?", "source = ?"]
        params: list[Any] = [query.room, source.value]
        if query.track_sid is not None:
            where.append("track_sid = ?")
            params.append(query.track_sid)
        if query.participant_identity is not None:
            where.append("participant_identity = ?")
            params.append(query.participant_identity)
        if only is not None:
            only = list(only)
            where.append(f"track_sid IN ({','.join('?' * len(only))})")
            params.extend(only)
        for sid, (cover_from, cover_to) in (hide or {}).items():
            # The rule of common.hidden_by_whisper: replaced when the midpoint is covered.
            where.append(
                "NOT (track_sid = ? AND abs_start + abs_end >= ? AND abs_start + abs_end < ?)"
            )
            params.extend([sid, _finite(2 * cover_from), _finite(2 * cover_to)])
        if query.time_from is not None:
            row = conn.execute(
                "SELECT longest FROM spans WHERE room = ? AND source = ?",
                (query.room, source.value),
            ).fetchone()
            longest = 0.0 if row is None else float(row[0])
            # No segment is longer than ``longest``, so this bound keeps every segment that
            # overlaps the range and lets the index skip everything before it.
            where.append("abs_start >= ? AND abs_end > ?")
            params.extend([query.time_from - longest, query.time_from])
        if query.time_to is not None:
            where.append("abs_start < ?")
            params.append(query.time_to)
        if query.min_confidence is not None:
            where.append("confidence >= ?")
            params.append(query.min_confidence)
        if after is not None:
            where.append("(abs_start, id) > (?, ?)")
            params.extend(after)
        # SQLite builds the page as one JSON array and pydantic-core parses it in one call:
        # far cheaper than building Python rows and validating them one field at a time.
        sql = (
            f"SELECT json_group_array(json_object({_SEGMENT_JSON})) FROM ("
            f"SELECT * FROM segments WHERE {' AND '.join(where)} "
            "ORDER BY abs_start, id LIMIT ?)"
        )
        params.append(query.limit + 1)
        (page,) = conn.execute(sql, params).fetchone()
        return _SEGMENTS.validate_json(page)

    # Whisper jobs --------------------------------------------------------------------------
    async def claim_job(
        self, worker: str, *, lease_s: float, max_attempts: int, now: datetime | None = None
    ) -> Track | None:
        """Claim the oldest recorded track, or one whose lease expired."""
        moment = now or utcnow()

        def claim(conn: sqlite3.Connection) -> Track | None:
            expired = [
                sid
                for (sid,) in conn.execute(
                    "SELECT track_sid FROM tracks WHERE status = ? AND lease_until < ?",
                    (TrackStatus.TRANSCRIBING.value, _epoch(moment)),
                )
            ]
            for sid in expired:

                def give_up(track: Track) -> bool:
                    if track.job.attempts < max_attempts:
                        return False
                    jobs.apply(track, jobs.lease_lost(max_attempts))
                    return True

                self._modify_track(conn, sid, give_up)
            row = conn.execute(
                "SELECT track_sid FROM tracks "
                "WHERE (status = ? OR (status = ? AND lease_until < ?)) "
                "AND json_extract(doc, '$.job.attempts') < ? ORDER BY published_at LIMIT 1",
                (
                    TrackStatus.RECORDED.value,
                    TrackStatus.TRANSCRIBING.value,
                    _epoch(moment),
                    max_attempts,
                ),
            ).fetchone()
            if row is None:
                return None
            track = self._load_track(conn, row[0])
            assert track is not None  # read inside the same write transaction
            jobs.apply(track, jobs.claimed(worker, moment + timedelta(seconds=lease_s)))
            track.job.attempts += 1
            self._save_track(conn, track)
            return track

        return await self._write(claim)

    async def renew_lease(self, track_sid: str, worker: str, *, lease_s: float) -> bool:
        """Extend the lease held by ``worker``."""

        def change(track: Track) -> bool:
            if not jobs.holds(track, worker):
                return False
            track.job.lease_until = datetime.now(UTC) + timedelta(seconds=lease_s)
            return True

        return await self._write(lambda conn: self._modify_track(conn, track_sid, change))

    def _completion(self, worker: str) -> Callable[[Track], bool]:
        """The change that marks a track transcribed, if ``worker`` still holds it."""

        def change(track: Track) -> bool:
            if not jobs.holds(track, worker):
                return False
            jobs.apply(track, jobs.COMPLETED)
            return True

        return change

    async def complete_job(self, track_sid: str, worker: str) -> bool:
        """Mark the track transcribed if ``worker`` still holds it."""
        change = self._completion(worker)
        return await self._write(lambda conn: self._modify_track(conn, track_sid, change))

    async def finish_job(
        self,
        track_sid: str,
        worker: str,
        segments: Sequence[SegmentIn],
        *,
        stats: WhisperStats,
        lease_s: float,
    ) -> bool:
        """Write the transcript and complete the job in one transaction, if still held."""
        now = utcnow()

        def finish(conn: sqlite3.Connection) -> bool:
            track = self._load_track(conn, track_sid)
            if track is None:
                raise NotFoundError(f"track {track_sid!r} is unknown")
            lease = track.job.lease_until
            if not jobs.holds(track, worker) or lease is None or lease <= now:
                return False
            self._replace_whisper(conn, track, segments, stats)
            return self._modify_track(conn, track_sid, self._completion(worker))

        return await self._write(finish)

    async def fail_job(
        self, track_sid: str, worker: str, error: str, *, max_attempts: int
    ) -> TrackStatus | None:
        """Count a failed attempt; retry later or give up."""

        def change(track: Track) -> bool:
            if not jobs.holds(track, worker):
                return False
            if track.job.attempts >= max_attempts:
                jobs.apply(track, jobs.spent(track.job.attempts, error))
            else:
                jobs.apply(track, jobs.retried(error))
            return True

        def fail(conn: sqlite3.Connection) -> TrackStatus | None:
            if not self._modify_track(conn, track_sid, change):
                return None
            track = self._load_track(conn, track_sid)
            return None if track is None else track.status

        return await self._write(fail)

    async def release_job(self, track_sid: str, worker: str) -> bool:
        """Hand an unfinished claim back without counting the attempt."""

        def change(track: Track) -> bool:
            if not jobs.holds(track, worker):
                return False
            jobs.apply(track, jobs.RELEASED)
            track.job.attempts = max(0, track.job.attempts - 1)
            return True

        return await self._write(lambda conn: self._modify_track(conn, track_sid, change))
