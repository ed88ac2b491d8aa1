"""The production transcript store: MongoDB through PyMongo's ``AsyncMongoClient``.

Collections follow DESIGN.md section 4: ``rooms`` (``_id`` = room name), ``tracks``
(``_id`` = track sid) and ``chunks``, the bucket pattern: each chunk document holds up to
``chunk_size`` consecutive segments of one track and source, with its time span and
confidence range so queries can skip whole buckets. Every conditional change is a single
``update_one``/``find_one_and_update`` whose filter is the precondition, so concurrent callers
on many machines cannot both win.
"""

from __future__ import annotations

import asyncio
import functools
import uuid
from collections.abc import (
    AsyncIterator,
    Callable,
    Collection,
    Coroutine,
    Mapping,
    Sequence,
)
from datetime import datetime, timedelta
from enum import Enum
from typing import TYPE_CHECKING, Any, Concatenate, ParamSpec, TypeVar

from pydantic import BaseModel
from pymongo import ASCENDING, DESCENDING, ReturnDocument
from pymongo.errors import DuplicateKeyError, PyMongoError

from roomscribe.errors import InvalidCursorError, NotFoundError, StoreError
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
    cursor_text,
    first_of_each_id,
    hidden_by_whisper,
    merge_in_order,
    room_facts,
    transcript_cursor,
    transcript_page,
    unknown_track_fields,
    with_coverage,
)
from roomscribe.store.cursor import decode_cursor, encode_cursor
from roomscribe.store.migrations import upgrade_track_doc

if TYPE_CHECKING:
    from pymongo.asynchronous.database import AsyncDatabase

Document = dict[str, Any]
P = ParamSpec("P")
R = TypeVar("R")
S = TypeVar("S")

#: Chunks whose segments are unpacked per aggregation round trip of a transcript query.
_CHUNK_BATCH = 16
_OLD_CHUNK_INDEX = "track_sid_1_source_1_seq_1"
#: A room archive claimed this long ago is taken over (its claimant died half-way).
_ARCHIVE_STALE_S = 30.0


def _translated(
    method: Callable[Concatenate[S, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[S, P], Coroutine[Any, Any, R]]:
    """Raise the driver's errors as :class:`StoreError` (the core's tree, DESIGN.md 8).

    Every caller (the STT service's writer, REST handlers, summaries, workers) catches
    ``StoreError`` to retry or answer 503; a bare ``AutoReconnect`` or ``NetworkTimeout``
    would escape them and kill the task or the request.
    """

    @functools.wraps(method)
    async def call(store: S, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await method(store, *args, **kwargs)
        except PyMongoError as exc:
            raise StoreError(f"MongoDB {method.__name__} failed: {exc}") from exc

    return call


def _plain(value: Any) -> Any:
    """Turn enums into their values, recursively, so BSON stores plain strings."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(v) for v in value]
    return value


def _doc(model: BaseModel, key: str) -> Document:
    doc: Document = _plain(model.model_dump())
    doc["_id"] = doc[key]
    return doc


def _segment_doc(seg: SegmentIn, started: float) -> Document:
    return {
        "id": seg.id,
        "start": seg.start,
        "end": seg.end,
        "abs_start": started + seg.start,
        "abs_end": started + seg.end,
        "text": seg.text,
        "confidence": seg.confidence,
        "words": [w.model_dump() for w in seg.words],
    }


def _chunk_doc(
    meta: TrackMeta,
    track_sid: str,
    source: SegmentSource,
    seq: int,
    segs: list[Document],
    run: str | None = None,
) -> Document:
    room, identity = meta.room, meta.identity
    extra: Document = {} if run is None else {"run": run}
    return {
        "_id": f"{track_sid}:{source.value}:{seq}" if run is None else f"{track_sid}:{run}:{seq}",
        **extra,
        "room": room,
        "track_sid": track_sid,
        "participant_identity": identity,
        "source": source.value,
        "seq": seq,
        "start": min(s["abs_start"] for s in segs),
        "end": max(s["abs_end"] for s in segs),
        "count": len(segs),
        "min_confidence": min(s["confidence"] for s in segs),
        "max_confidence": max(s["confidence"] for s in segs),
        "segments": segs,
    }


#: Tracks whose attribution is cached (the live tracks of a busy deployment, with room).
_TRACK_META_ENTRIES = 10_000


class MongoTranscriptStore(StoreLookups):
    """Transcript store on a MongoDB database (see the module docstring)."""

    def __init__(
        self,
        database: AsyncDatabase[Document],
        *,
        chunk_size: int = DEFAULT_CHUNK_SIZE,
        close: Any = None,
    ) -> None:
        """Use ``database``; ``close`` is an awaitable factory run by :meth:`close`."""
        self.chunk_size = chunk_size
        self._db = database
        self._rooms = database["rooms"]
        self._tracks = database["tracks"]
        self._chunks = database["chunks"]
        self._close = close
        self._track_meta: BoundedLru[str, TrackMeta] = BoundedLru(_TRACK_META_ENTRIES)

    @classmethod
    def connect(
        cls, uri: str, *, database: str = "roomscribe", chunk_size: int = DEFAULT_CHUNK_SIZE
    ) -> MongoTranscriptStore:
        """Create a client for ``uri`` (it connects lazily) and a store on ``database``."""
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[Document] = AsyncMongoClient(
            uri, tz_aware=True, serverSelectionTimeoutMS=5000, appname="roomscribe"
        )
        return cls(client[database], chunk_size=chunk_size, close=client.close)

    async def init(self) -> None:
        """Create the indexes (equality, sort, range order)."""
        try:
            await self._rooms.create_index([("created_at", DESCENDING), ("_id", DESCENDING)])
            await self._rooms.create_index(
                [("status", ASCENDING), ("created_at", DESCENDING), ("_id", DESCENDING)]
            )
            await self._tracks.create_index([("room", ASCENDING), ("published_at", ASCENDING)])
            await self._tracks.create_index([("status", ASCENDING), ("job.lease_until", ASCENDING)])
            # Whisper chunks of a new run are written beside the committed run's, so the
            # sequence is unique per run; the version-1 index without the run must go.
            if _OLD_CHUNK_INDEX in await self._chunks.index_information():
                await self._chunks.drop_index(_OLD_CHUNK_INDEX)
            await self._chunks.create_index(
                [
                    ("track_sid", ASCENDING),
                    ("source", ASCENDING),
                    ("run", ASCENDING),
                    ("seq", ASCENDING),
                ],
                unique=True,
            )
            await self._chunks.create_index(
                [("room", ASCENDING), ("source", ASCENDING), ("start", ASCENDING)]
            )
            await self._chunks.create_index(
                [("track_sid", ASCENDING), ("source", ASCENDING), ("segments.id", ASCENDING)]
            )
            await self._upgrade()
        except PyMongoError as exc:
            raise StoreError(f"cannot prepare the MongoDB collections: {exc}") from exc

    async def _upgrade(self) -> None:
        """Bring track documents of older versions to the current layout (idempotent).

        Each document is replaced only if it is still the old one, so several instances
        starting at once (or a crash half-way) leave every document upgraded exactly once.
        """
        async for doc in self._tracks.find({"started_at": {"$exists": True}}):
            await self._tracks.replace_one(
                {"_id": doc["_id"], "started_at": doc["started_at"]}, upgrade_track_doc(doc)
            )

    @_translated
    async def close(self) -> None:
        """Close the client when this store created it."""
        if self._close is not None:
            await self._close()

    async def ping(self) -> None:
        """Ask the server for a ping."""
        try:
            await self._db.command("ping")
        except PyMongoError as exc:
            raise StoreError(f"MongoDB is unreachable: {exc}") from exc

    # Rooms ---------------------------------------------------------------------------------
    @_translated
    async def register_room(
        self, name: str, *, sid: str | None = None, livekit_created_at: datetime | None = None
    ) -> Room:
        """Insert the room if new; otherwise fill in the sid and creation time it lacks."""
        room = Room(name=name, sid=sid, livekit_created_at=livekit_created_at)
        try:
            await self._rooms.insert_one(_doc(room, "name"))
            return room
        except DuplicateKeyError:
            pass
        existing = await self.get_room(name)
        for field, value in room_facts(existing, sid, livekit_created_at).items():
            # Conditional on the field being unknown: whoever sets it first wins it.
            await self._rooms.update_one(
                {"_id": name, field: None}, {"$set": {field: value, "updated_at": utcnow()}}
            )
        return await self.get_room(name)

    @_translated
    async def archive_room(self, name: str, *, sid: str) -> Room | None:
        """Move the meeting to its own key: claimed, then idempotent steps.

        Without a transaction the move takes several writes, so one caller claims it (a
        marker on the room, taken over when stale) and the others wait for it to finish.
        Every step can be run again after a crash: the archived copy is upserted, tracks
        and chunks are re-pointed by room, and the current document goes last.
        """
        now = utcnow()
        claimed = await self._rooms.update_one(
            {
                "_id": name,
                "sid": sid,
                "$or": [
                    {"archiving": None},
                    {"archiving": {"$lt": now - timedelta(seconds=_ARCHIVE_STALE_S)}},
                ],
            },
            {"$set": {"archiving": now}},
        )
        if not claimed.modified_count:
            for _ in range(int(_ARCHIVE_STALE_S / 0.1)):
                doc = await self._rooms.find_one({"_id": name}, {"sid": 1})
                if doc is None or doc.get("sid") != sid:
                    break
                await asyncio.sleep(0.1)
            return await self._archived(name, sid)
        room = await self.get_room(name)
        n = 1
        while True:
            taken = await self._rooms.find_one({"_id": archive_key(name, sid, n)})
            if taken is None or (taken.get("meeting_of") == name and taken.get("sid") == sid):
                break
            n += 1
        archived = archived_meeting(room, archive_key(name, sid, n))
        key = archived.name
        await self._rooms.replace_one({"_id": key}, _doc(archived, "name"), upsert=True)
        await self._tracks.update_many({"room": name}, {"$set": {"room": key}})
        await self._chunks.update_many({"room": name}, {"$set": {"room": key}})
        await self._rooms.delete_one({"_id": name, "sid": sid})
        self._track_meta.clear()
        return archived

    async def _archived(self, name: str, sid: str) -> Room | None:
        doc = await self._rooms.find_one({"meeting_of": name, "sid": sid})
        return None if doc is None else Room.model_validate(doc)

    @_translated
    async def find_room(self, name: str) -> Room | None:
        """Return the room, or ``None``."""
        doc = await self._rooms.find_one({"_id": name})
        return None if doc is None else Room.model_validate(doc)

    @_translated
    async def list_rooms(
        self,
        *,
        status: RoomStatus | None = None,
        names: Collection[str] | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> RoomPage:
        """List rooms newest first (ties by name)."""
        filters: dict[str, Any] = {
            "status": status,
            "names": sorted(names) if names is not None else None,
        }
        if names is not None and not names:
            return RoomPage([], None)
        query: Document = {}
        if status is not None:
            query["status"] = status.value
        if names is not None:
            query["_id"] = {"$in": sorted(names)}
        if cursor is not None:
            created_iso, name = decode_cursor(cursor, filters, arity=2)
            try:
                created = datetime.fromisoformat(cursor_text(created_iso))
            except ValueError as exc:
                raise InvalidCursorError("malformed cursor") from exc
            name = cursor_text(name)
            query["$or"] = [
                {"created_at": {"$lt": created}},
                {"created_at": created, "_id": {"$lt": name}},
            ]
        docs = (
            await self._rooms.find(query)
            .sort([("created_at", DESCENDING), ("_id", DESCENDING)])
            .limit(limit + 1)
            .to_list(None)
        )
        rooms = [Room.model_validate(d) for d in docs[:limit]]
        next_cursor = None
        if len(docs) > limit:
            last = rooms[-1]
            next_cursor = encode_cursor([last.created_at.isoformat(), last.name], filters)
        return RoomPage(rooms, next_cursor)

    async def _update_room(self, name: str, match: Document, update: Document) -> bool:
        update.setdefault("$set", {})["updated_at"] = utcnow()
        result = await self._rooms.update_one({"_id": name, **match}, update)
        if result.matched_count:
            return True
        if await self._rooms.count_documents({"_id": name}, limit=1) == 0:
            raise NotFoundError(f"room {name!r} is not registered")
        return False

    @_translated
    async def transition_room(
        self,
        name: str,
        *,
        to: RoomStatus,
        from_: Collection[RoomStatus],
        reason: str | None = None,
    ) -> bool:
        """Move the room to ``to`` when its status is in ``from_`` (one atomic update)."""
        return await self._update_room(
            name,
            {"status": {"$in": [s.value for s in from_]}},
            {"$set": {"status": to.value, "status_reason": reason}},
        )

    @_translated
    async def add_participant(self, room: str, identity: str) -> None:
        """Add the participant once (``$addToSet``)."""
        await self._update_room(room, {}, {"$addToSet": {"participants": identity}})

    @_translated
    async def set_summary(self, room: str, summary: Summary | None) -> None:
        """Store or clear the summary."""
        value = None if summary is None else _plain(summary.model_dump())
        await self._update_room(room, {}, {"$set": {"summary": value}})

    # Tracks --------------------------------------------------------------------------------
    @_translated
    async def upsert_track(self, track: TrackCreate) -> Track:
        """Insert the track if new, else fill in what it does not know yet; return it."""
        stored = Track(**track.model_dump())
        try:
            await self._tracks.insert_one(_doc(stored, "track_sid"))
            return stored
        except DuplicateKeyError:
            pass
        existing = await self.get_track(track.track_sid)
        missing = unknown_track_fields(existing, track)
        if not missing:
            return existing
        for name, value in missing.items():
            # One conditional update per field: whoever sets a field first wins it.
            await self._tracks.update_one(
                {"_id": track.track_sid, name: None},
                {"$set": {name: _plain(value), "updated_at": utcnow()}},
            )
        self._track_meta.pop(track.track_sid, None)
        return await self.get_track(track.track_sid)

    @_translated
    async def find_track(self, track_sid: str) -> Track | None:
        """Return the track or ``None``."""
        doc = await self._tracks.find_one({"_id": track_sid})
        return None if doc is None else Track.model_validate(doc)

    @_translated
    async def list_tracks(self, room: str) -> list[Track]:
        """Return the room's tracks by start time."""
        docs = (
            await self._tracks.find({"room": room})
            .sort([("published_at", ASCENDING), ("_id", ASCENDING)])
            .to_list(None)
        )
        return [Track.model_validate(d) for d in docs]

    async def _update_track(self, track_sid: str, match: Document, update: Document) -> bool:
        update.setdefault("$set", {})["updated_at"] = utcnow()
        result = await self._tracks.update_one({"_id": track_sid, **match}, update)
        if result.matched_count:
            return True
        if await self._tracks.count_documents({"_id": track_sid}, limit=1) == 0:
            raise NotFoundError(f"track {track_sid!r} is unknown")
        return False

    @_translated
    async def set_track_status(
        self,
        track_sid: str,
        to: TrackStatus,
        *,
        from_: Collection[TrackStatus] | None = None,
        reason: str | None = None,
    ) -> bool:
        """Set the status, only from ``from_`` when given."""
        match: Document = {} if from_ is None else {"status": {"$in": [s.value for s in from_]}}
        return await self._update_track(
            track_sid, match, {"$set": {"status": to.value, "status_reason": reason}}
        )

    @_translated
    async def update_egress(self, track_sid: str, egress: EgressInfo) -> None:
        """Replace the egress facts."""
        await self._update_track(track_sid, {}, {"$set": {"egress": _plain(egress.model_dump())}})

    @_translated
    async def claim_egress_start(self, track_sid: str, *, stale_after_s: float = 60.0) -> bool:
        """Claim starting the egress: one conditional update whose filter is the rule."""
        now = utcnow()
        result = await self._tracks.update_one(
            {
                "_id": track_sid,
                "status": TrackStatus.RECORDING.value,
                "egress.id": None,
                "$or": [
                    {"egress.status": None},
                    {
                        "egress.status": EgressStatus.STARTING.value,
                        "egress.updated_at": {"$lt": now - timedelta(seconds=stale_after_s)},
                    },
                ],
            },
            {
                "$set": {
                    "egress": _plain(
                        EgressInfo(status=EgressStatus.STARTING, updated_at=now).model_dump()
                    ),
                    "updated_at": now,
                }
            },
        )
        return bool(result.modified_count)

    @_translated
    async def add_live_stats(
        self,
        track_sid: str,
        *,
        received_s: float,
        dropped_s: float,
        committed_s: float | None = None,
    ) -> None:
        """Increment the live counters; raise ``live.committed_s`` with ``$max``."""
        update: Document = {
            "$inc": {"live.audio_received_s": received_s, "live.audio_dropped_s": dropped_s}
        }
        if committed_s is not None:
            update["$max"] = {"live.committed_s": committed_s}
        await self._update_track(track_sid, {}, update)

    @_translated
    async def count_pending_tracks(self, room: str) -> int:
        """Count tracks still recording or waiting for / in Whisper."""
        pending = sorted(s.value for s in PENDING_TRACK_STATUSES)
        return await self._tracks.count_documents({"room": room, "status": {"$in": pending}})

    @_translated
    async def complete_idle_room(self, name: str) -> bool:
        """Claim the completion, then check the tracks; give it back if one is pending.

        A track that changes status after the check cannot be missed: its own completion
        attempt either runs after the hand-back (and wins) or fails while this one holds
        the claim, in which case the re-check after the hand-back sees its new status.
        """
        pending = sorted(s.value for s in PENDING_TRACK_STATUSES)
        busy = {"room": name, "status": {"$in": pending}}
        while True:
            if not await self._update_room(
                name,
                {"status": RoomStatus.FINAL_ROOM.value},
                {"$set": {"status": RoomStatus.SUMMARIZING.value, "status_reason": None}},
            ):
                return False
            if await self._tracks.count_documents(busy, limit=1) == 0:
                return True
            await self._update_room(
                name,
                {"status": RoomStatus.SUMMARIZING.value},
                {"$set": {"status": RoomStatus.FINAL_ROOM.value}},
            )
            if await self._tracks.count_documents(busy, limit=1) > 0:
                return False

    # Segments ------------------------------------------------------------------------------
    async def _live_meta(self, track_sid: str) -> TrackMeta:
        meta = self._track_meta.get(track_sid)
        if meta is None:
            track = await self.get_track(track_sid)
            meta = TrackMeta.live(track)
            if track.live_origin is not None:  # else a later upsert may still set it
                self._track_meta[track_sid] = meta
        return meta

    @_translated
    async def append_realtime_segments(self, track_sid: str, segments: Sequence[SegmentIn]) -> int:
        """Push new segments into the open chunk, opening new chunks as they fill."""
        meta = await self._live_meta(track_sid)
        source = SegmentSource.REALTIME
        fresh = first_of_each_id(segments)
        if not fresh:
            return 0
        async for chunk in self._chunks.find(
            {"track_sid": track_sid, "source": source.value, "segments.id": {"$in": list(fresh)}},
            {"segments.id": 1},
        ):
            for stored in chunk["segments"]:
                fresh.pop(stored["id"], None)
        docs = [_segment_doc(s, meta.origin) for s in fresh.values()]
        pos = 0
        while pos < len(docs):
            last = await self._chunks.find_one(
                {"track_sid": track_sid, "source": source.value},
                {"seq": 1, "count": 1},
                sort=[("seq", DESCENDING)],
            )
            if last is not None and last["count"] < self.chunk_size:
                take = docs[pos : pos + self.chunk_size - last["count"]]
                # The count in the filter is the precondition: if another writer filled the
                # chunk meanwhile, nothing is pushed and the loop looks again.
                result = await self._chunks.update_one(
                    {"_id": last["_id"], "count": {"$lte": self.chunk_size - len(take)}},
                    {
                        "$push": {"segments": {"$each": take}},
                        "$inc": {"count": len(take)},
                        "$min": {
                            "start": min(s["abs_start"] for s in take),
                            "min_confidence": min(s["confidence"] for s in take),
                        },
                        "$max": {
                            "end": max(s["abs_end"] for s in take),
                            "max_confidence": max(s["confidence"] for s in take),
                        },
                    },
                )
                if result.modified_count:
                    pos += len(take)
                continue
            seq = 0 if last is None else last["seq"] + 1
            take = docs[pos : pos + self.chunk_size]
            try:
                await self._chunks.insert_one(_chunk_doc(meta, track_sid, source, seq, take))
            except DuplicateKeyError:
                continue  # another writer opened this chunk first; append to it instead
            pos += len(take)
        await self._update_track(track_sid, {}, {"$inc": {"live.segments": len(docs)}})
        return len(docs)

    async def _write_whisper_run(
        self, track_sid: str, segments: Sequence[SegmentIn], stats: WhisperStats
    ) -> tuple[str, Document]:
        """Write a Whisper transcript as a new run, beside the committed one.

        Readers see it only once the track names the run (``whisper_run``), which one
        document update does. Returns the run and the track fields that commit it.
        """
        track = await self.get_track(track_sid)
        stats = with_coverage(stats, track)
        meta = TrackMeta.whisper(track, stats)
        source = SegmentSource.WHISPER
        docs = [_segment_doc(s, meta.origin) for s in first_of_each_id(segments).values()]
        # The count is what was stored (ids de-duplicated): ``best`` relies on it.
        stats = stats.model_copy(update={"segments": len(docs)})
        run = uuid.uuid4().hex
        chunks = [
            _chunk_doc(meta, track_sid, source, seq, docs[i : i + self.chunk_size], run)
            for seq, i in enumerate(range(0, len(docs), self.chunk_size))
        ]
        if chunks:
            await self._chunks.insert_many(chunks)
        return run, {"whisper": _plain(stats.model_dump()), "whisper_run": run}

    async def _drop_runs(
        self, track_sid: str, *, keep: str | None = None, only: str | None = None
    ) -> None:
        match: Document = {"track_sid": track_sid, "source": SegmentSource.WHISPER.value}
        match["run"] = {"$ne": keep} if only is None else only
        await self._chunks.delete_many(match)

    @_translated
    async def replace_whisper_segments(
        self, track_sid: str, segments: Sequence[SegmentIn], *, stats: WhisperStats
    ) -> None:
        """Write the new Whisper run, switch the track to it, then drop older runs.

        Readers never see a half-written or empty transcript: they follow the track's
        ``whisper_run``, which one update switches.
        """
        run, commit = await self._write_whisper_run(track_sid, segments, stats)
        await self._update_track(track_sid, {}, {"$set": commit})
        await self._drop_runs(track_sid, keep=run)

    async def _runs(self, room: str, track_sid: str | None = None) -> list[Document]:
        """Which Whisper run of each of the room's tracks readers see (chunk filters)."""
        match: Document = {"room": room, "whisper": {"$ne": None}}
        if track_sid is not None:
            match["_id"] = track_sid
        return [
            {"track_sid": doc["_id"], "run": doc.get("whisper_run")}
            async for doc in self._tracks.find(match, {"whisper_run": 1})
        ]

    @_translated
    async def list_chunks(self, track_sid: str, source: SegmentSource) -> list[Chunk]:
        """Return the chunk metadata in sequence order (Whisper: the committed run)."""
        match: Document = {"track_sid": track_sid, "source": source.value}
        if source is SegmentSource.WHISPER:
            track = await self._tracks.find_one({"_id": track_sid}, {"whisper_run": 1})
            match["run"] = None if track is None else track.get("whisper_run")
        docs = await self._chunks.find(match, {"segments": 0}).sort("seq", ASCENDING).to_list(None)
        return [Chunk.model_validate(d) for d in docs]

    @_translated
    async def query_transcript(self, query: TranscriptQuery) -> TranscriptPage:
        """Return one page sorted by ``(abs_start, id)``; see TranscriptStore."""
        after = transcript_cursor(query)
        runs: list[Document] = []
        if query.source is TranscriptSource.BEST:
            coverage: dict[str, tuple[float, float]] = {}
            async for doc in self._tracks.find(
                {
                    "room": query.room,
                    "status": TrackStatus.TRANSCRIBED.value,
                    "whisper.segments": {"$gt": 0},
                }
            ):
                track = Track.model_validate(doc)
                span = track.whisper_coverage()
                if span is not None:
                    coverage[track.track_sid] = span
                    runs.append({"track_sid": track.track_sid, "run": doc.get("whisper_run")})
            parts = [await self._select(query, SegmentSource.REALTIME, after, hide=coverage)]
            if runs:
                parts.append(await self._select(query, SegmentSource.WHISPER, after, runs=runs))
            rows = merge_in_order(parts, query.limit + 1)
        elif query.source is TranscriptSource.WHISPER:
            runs = await self._runs(query.room, query.track_sid)
            rows = await self._select(query, SegmentSource.WHISPER, after, runs=runs)
        else:
            rows = await self._select(query, SegmentSource.REALTIME, after)
        return transcript_page(rows, query)

    async def _select(
        self,
        query: TranscriptQuery,
        source: SegmentSource,
        after: list[Any] | None,
        *,
        runs: list[Document] | None = None,
        hide: Mapping[str, tuple[float, float]] | None = None,
    ) -> list[Segment]:
        """The first ``limit + 1`` matching segments of one source, in order.

        Chunks are visited in start order and unpacked a batch at a time. Every segment of a
        chunk not yet visited starts at or after that chunk's start, so once ``limit + 1``
        candidates start before the next chunk's start, no later chunk can change the page:
        a first page reads a few chunks per track, not the whole room.
        """
        chunk_match: Document = {"room": query.room, "source": source.value}
        seg_match: Document = {}
        if query.track_sid is not None:
            chunk_match["track_sid"] = query.track_sid
        if runs is not None:
            # Whisper: each track's committed run only, never one still being written.
            if not runs:
                return []
            chunk_match["$or"] = runs
        if hide:
            # Chunks wholly inside their track's Whisper span hold only hidden segments:
            # skip them here; segments of chunks that straddle it are filtered one by one.
            chunk_match["$nor"] = [
                {"track_sid": sid, "start": {"$gte": lo}, "end": {"$lte": hi}}
                for sid, (lo, hi) in hide.items()
            ]
        if query.participant_identity is not None:
            chunk_match["participant_identity"] = query.participant_identity
        if query.time_from is not None:
            chunk_match["end"] = {"$gt": query.time_from}
            seg_match["segments.abs_end"] = {"$gt": query.time_from}
        if query.time_to is not None:
            chunk_match["start"] = {"$lt": query.time_to}
            seg_match["segments.abs_start"] = {"$lt": query.time_to}
        if query.min_confidence is not None:
            chunk_match["max_confidence"] = {"$gte": query.min_confidence}
            seg_match["segments.confidence"] = {"$gte": query.min_confidence}
        if after is not None:
            after_start, after_id = after
            chunk_match.setdefault("end", {})["$gte"] = after_start
            seg_match["$or"] = [
                {"segments.abs_start": {"$gt": after_start}},
                {"segments.abs_start": after_start, "segments.id": {"$gt": after_id}},
            ]
        want = query.limit + 1
        candidates: list[Document] = []
        batch: list[Any] = []
        chunk_starts = self._chunk_starts(chunk_match)
        async for chunk_id, start in chunk_starts:
            if batch and len(batch) >= _CHUNK_BATCH:
                candidates.extend(await self._unpack(batch, seg_match, hide))
                batch = []
                if sum(1 for c in candidates if c["abs_start"] < start) >= want:
                    break
            batch.append(chunk_id)
        else:
            if batch:
                candidates.extend(await self._unpack(batch, seg_match, hide))
        candidates.sort(key=lambda c: (c["abs_start"], c["id"]))
        return [Segment.model_validate(c) for c in candidates[:want]]

    async def _chunk_starts(self, match: Mapping[str, Any]) -> AsyncIterator[tuple[Any, float]]:
        async for doc in self._chunks.find(match, {"_id": 1, "start": 1}).sort(
            [("start", ASCENDING), ("_id", ASCENDING)]
        ):
            yield doc["_id"], doc["start"]

    async def _unpack(
        self,
        chunk_ids: list[Any],
        seg_match: Document,
        hide: Mapping[str, tuple[float, float]] | None = None,
    ) -> list[Document]:
        pipeline: list[Document] = [
            {"$match": {"_id": {"$in": chunk_ids}}},
            {"$unwind": "$segments"},
        ]
        if seg_match:
            pipeline.append({"$match": seg_match})
        pipeline.append(
            {
                "$project": {
                    "_id": 0,
                    "segment": "$segments",
                    "track_sid": 1,
                    "participant_identity": 1,
                    "source": 1,
                }
            }
        )
        cursor = await self._chunks.aggregate(pipeline)
        out: list[Document] = []
        for row in await cursor.to_list(None):
            seg: Document = dict(row["segment"])
            seg["track_sid"] = row["track_sid"]
            seg["participant_identity"] = row["participant_identity"]
            seg["source"] = row["source"]
            # Filtered here, not in the pipeline: the rule compares each segment's midpoint
            # with its track's span, which would need $expr per track in the $match.
            if hide and hidden_by_whisper(seg, hide):
                continue
            out.append(seg)
        return out

    # Whisper jobs --------------------------------------------------------------------------
    @_translated
    async def claim_job(
        self, worker: str, *, lease_s: float, max_attempts: int, now: datetime | None = None
    ) -> Track | None:
        """Claim the oldest recorded track, or one whose lease expired (find-and-modify)."""
        moment = now or utcnow()
        transcribing = TrackStatus.TRANSCRIBING.value
        await self._tracks.update_many(
            {
                "status": transcribing,
                "job.lease_until": {"$lt": moment},
                "job.attempts": {"$gte": max_attempts},
            },
            {"$set": {**_plain(jobs.lease_lost(max_attempts)), "updated_at": moment}},
        )
        doc = await self._tracks.find_one_and_update(
            {
                "$or": [
                    {"status": TrackStatus.RECORDED.value},
                    {"status": transcribing, "job.lease_until": {"$lt": moment}},
                ],
                "job.attempts": {"$lt": max_attempts},
            },
            {
                "$set": {
                    **_plain(jobs.claimed(worker, moment + timedelta(seconds=lease_s))),
                    "updated_at": moment,
                },
                "$inc": {"job.attempts": 1},
            },
            sort=[("published_at", ASCENDING)],
            return_document=ReturnDocument.AFTER,
        )
        return None if doc is None else Track.model_validate(doc)

    @staticmethod
    def _held_by(worker: str) -> Document:
        filter_: Document = _plain(jobs.held_by(worker))
        return filter_

    @_translated
    async def renew_lease(self, track_sid: str, worker: str, *, lease_s: float) -> bool:
        """Extend the lease held by ``worker``."""
        until = utcnow() + timedelta(seconds=lease_s)
        return await self._update_track(
            track_sid, self._held_by(worker), {"$set": {"job.lease_until": until}}
        )

    @_translated
    async def complete_job(self, track_sid: str, worker: str) -> bool:
        """Mark the track transcribed if ``worker`` still holds it."""
        return await self._update_track(
            track_sid,
            self._held_by(worker),
            {"$set": _plain(jobs.COMPLETED)},
        )

    @_translated
    async def finish_job(
        self,
        track_sid: str,
        worker: str,
        segments: Sequence[SegmentIn],
        *,
        stats: WhisperStats,
        lease_s: float,
    ) -> bool:
        """Fence, write, complete: see :meth:`TranscriptStore.finish_job`.

        Without a transaction the three steps are separate, so the fence is the lease: it is
        extended first, only if still held and unexpired, and a claim needs an expired lease.
        """
        now = utcnow()
        fenced = await self._tracks.update_one(
            {"_id": track_sid, **self._held_by(worker), "job.lease_until": {"$gt": now}},
            {"$set": {"job.lease_until": now + timedelta(seconds=lease_s), "updated_at": now}},
        )
        if not fenced.matched_count:
            await self.get_track(track_sid)  # NotFoundError for an unknown track
            return False
        run, commit = await self._write_whisper_run(track_sid, segments, stats)
        # The commit is one document update under the lease: a worker that lost it
        # meanwhile (paused past the extension) switches nothing, and its run is dropped.
        committed = await self._tracks.update_one(
            {"_id": track_sid, **self._held_by(worker), "job.lease_until": {"$gt": utcnow()}},
            {"$set": {**commit, **_plain(jobs.COMPLETED), "updated_at": utcnow()}},
        )
        if not committed.matched_count:
            await self._drop_runs(track_sid, only=run)
            return False
        await self._drop_runs(track_sid, keep=run)
        return True

    @_translated
    async def fail_job(
        self, track_sid: str, worker: str, error: str, *, max_attempts: int
    ) -> TrackStatus | None:
        """Count a failed attempt; retry later or give up (two exclusive conditional updates)."""
        held = self._held_by(worker)
        track = await self.get_track(track_sid)
        if await self._update_track(
            track_sid,
            {**held, "job.attempts": {"$gte": max_attempts}},
            {"$set": _plain(jobs.spent(track.job.attempts, error))},
        ):
            return TrackStatus.FAILED
        if await self._update_track(
            track_sid,
            {**held, "job.attempts": {"$lt": max_attempts}},
            {"$set": _plain(jobs.retried(error))},
        ):
            return TrackStatus.RECORDED
        return None

    @_translated
    async def release_job(self, track_sid: str, worker: str) -> bool:
        """Hand an unfinished claim back without counting the attempt."""
        return await self._update_track(
            track_sid,
            self._held_by(worker),
            {"$set": _plain(jobs.RELEASED), "$inc": {"job.attempts": -1}},
        )
