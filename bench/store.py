"""Transcript store benchmark: append throughput and transcript-page query latency.

Appends go through ``append_realtime_segments``, the path the STT service uses, from many
concurrent tasks (one per live track). Queries are the REST API's transcript pages. Each
figure is paired with a reference measured in the same run on the same data: bare
``sqlite3`` inserts and selects with the same indexes, without the store around them.

    python -m bench.store                       # SQLite, 1M segments
    python -m bench.store --segments 100000 --json
    ROOMSCRIBE_MONGODB_URI=mongodb://... python -m bench.store --backend mongodb
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from bench.report import emit, percentile
from roomscribe.models import SegmentIn, TrackCreate, TranscriptQuery, TranscriptSource, Word
from roomscribe.store import MongoTranscriptStore, SQLiteTranscriptStore, TranscriptStore

VOCAB = [
    "the",
    "we",
    "should",
    "ship",
    "release",
    "on",
    "friday",
    "after",
    "review",
    "can",
    "you",
    "take",
    "the",
    "notes",
    "about",
    "budget",
    "numbers",
    "next",
    "quarter",
    "plan",
    "hiring",
    "design",
    "doc",
    "customer",
    "feedback",
    "latency",
    "dashboard",
]
SEGMENT_S = 3.0
WORDS: TypeAdapter[list[Word]] = TypeAdapter(list[Word])
WORDS_PER_SEGMENT = 8


class SegmentFactory:
    """Builds realistic segments cheaply, so the benchmark times the store, not the producer."""

    def __init__(self, seed: int = 1) -> None:
        rng = random.Random(seed)
        step = (SEGMENT_S - 0.5) / WORDS_PER_SEGMENT
        self._texts = [[rng.choice(VOCAB) for _ in range(WORDS_PER_SEGMENT)] for _ in range(997)]
        self._step = step

    def make(self, track: int, index: int) -> SegmentIn:
        start = index * SEGMENT_S
        texts = self._texts[(track * 31 + index) % len(self._texts)]
        words = [
            Word.model_construct(
                word=w,
                start=start + k * self._step,
                end=start + (k + 1) * self._step,
                confidence=1.0,
            )
            for k, w in enumerate(texts)
        ]
        return SegmentIn.model_construct(
            id=f"t{track:04d}-{index:07d}",
            start=start,
            end=start + SEGMENT_S - 0.5,
            text=" ".join(texts),
            confidence=0.4 + ((track * 7919 + index * 104729) % 600) / 1000,
            words=words,
        )


class Layout:
    """Rooms of a few participants each; every track one long meeting of segments."""

    def __init__(self, segments: int, rooms: int, tracks_per_room: int) -> None:
        self.rooms = [f"room-{r:03d}" for r in range(rooms)]
        self.tracks_per_room = tracks_per_room
        self.tracks = rooms * tracks_per_room
        self.per_track = segments // self.tracks
        self.t0 = datetime(2026, 11, 1, 9, 0, tzinfo=UTC)

    def track(self, t: int) -> TrackCreate:
        room = self.rooms[t // self.tracks_per_room]
        return TrackCreate(
            track_sid=f"TR_{t:04d}",
            room=room,
            participant_identity=f"p{t % self.tracks_per_room}",
            # Participants join a little apart, so tracks interleave on the room's timeline.
            published_at=self.t0 + timedelta(seconds=(t % self.tracks_per_room) * 0.7),
        )

    @property
    def duration_s(self) -> float:
        return self.per_track * SEGMENT_S


async def append_all(store: TranscriptStore, layout: Layout, batch: int, concurrency: int) -> float:
    for t in range(layout.tracks):
        await store.upsert_track(layout.track(t))
    sem = asyncio.Semaphore(concurrency)

    factory = SegmentFactory()

    async def feed(t: int) -> None:
        sid = f"TR_{t:04d}"
        for first in range(0, layout.per_track, batch):
            segs = [factory.make(t, i) for i in range(first, min(first + batch, layout.per_track))]
            async with sem:
                await store.append_realtime_segments(sid, segs)

    started = time.perf_counter()
    await asyncio.gather(*(feed(t) for t in range(layout.tracks)))
    return time.perf_counter() - started


def reference_inserts(path: Path, layout: Layout, batch: int) -> float:
    """Bare sqlite3: the same rows and indexes, one transaction per batch, no store."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    conn.executescript(
        """
        CREATE TABLE segments (track_sid TEXT, source TEXT, id TEXT, room TEXT,
            participant_identity TEXT, chunk_seq INTEGER, start REAL, "end" REAL,
            abs_start REAL, abs_end REAL, text TEXT, confidence REAL, words TEXT,
            PRIMARY KEY (track_sid, source, id));
        CREATE INDEX a ON segments (room, source, abs_start, id);
        CREATE INDEX b ON segments (track_sid, source, abs_start, id);
        CREATE INDEX c ON segments (room, source, participant_identity, abs_start, id);
        """
    )
    factory = SegmentFactory()
    metas = [layout.track(t) for t in range(layout.tracks)]
    # Same order as the store run (tracks interleaved, as live meetings write), and the same
    # segment construction inside the timed loop, so the ratio compares like with like.
    began = time.perf_counter()
    for first in range(0, layout.per_track, batch):
        for t, meta in enumerate(metas):
            start0 = meta.published_at.timestamp()
            segs = [factory.make(t, i) for i in range(first, min(first + batch, layout.per_track))]
            rows = [
                (
                    meta.track_sid,
                    "realtime",
                    s.id,
                    meta.room,
                    meta.participant_identity,
                    0,
                    s.start,
                    s.end,
                    start0 + s.start,
                    start0 + s.end,
                    s.text,
                    s.confidence,
                    WORDS.dump_json(s.words).decode(),
                )
                for s in segs
            ]
            conn.execute("BEGIN")
            conn.executemany("INSERT INTO segments VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)
            conn.execute("COMMIT")
    elapsed = time.perf_counter() - began
    conn.close()
    return elapsed


def make_queries(layout: Layout, count: int, seed: int = 7) -> list[tuple[str, TranscriptQuery]]:
    rng = random.Random(seed)
    t0 = layout.t0.timestamp()
    out: list[tuple[str, TranscriptQuery]] = []
    kinds = ["first_page", "time_window", "participant", "min_confidence", "track"]
    for i in range(count):
        kind = kinds[i % len(kinds)]
        room = rng.choice(layout.rooms)
        at = t0 + rng.uniform(0, layout.duration_s * 0.95)
        q: dict[str, Any] = {"room": room, "limit": 100, "source": TranscriptSource.BEST}
        if kind == "time_window":
            q |= {"time_from": at, "time_to": at + 600}
        elif kind == "participant":
            q |= {
                "participant_identity": f"p{rng.randrange(layout.tracks_per_room)}",
                "time_from": at,
            }
        elif kind == "min_confidence":
            q |= {"min_confidence": 0.8, "time_from": at}
        elif kind == "track":
            t = layout.rooms.index(room) * layout.tracks_per_room + rng.randrange(
                layout.tracks_per_room
            )
            q |= {"track_sid": f"TR_{t:04d}", "time_from": at}
        out.append((kind, TranscriptQuery(**q)))
    return out


async def time_queries(
    store: TranscriptStore, queries: list[tuple[str, TranscriptQuery]]
) -> tuple[dict[str, list[float]], int]:
    by_kind: dict[str, list[float]] = {}
    rows = 0
    for kind, q in queries:
        began = time.perf_counter()
        page = await store.query_transcript(q)
        if page.next_cursor is not None:
            # Follow one cursor too: the second page is what a scrolling client asks next.
            page = await store.query_transcript(q.model_copy(update={"cursor": page.next_cursor}))
        by_kind.setdefault(kind, []).append((time.perf_counter() - began) * 1000 / 2)
        rows += len(page.segments)
    return by_kind, rows


def reference_queries(path: Path, queries: list[tuple[str, TranscriptQuery]]) -> list[float]:
    """Bare sqlite3 selects of the same pages on the same indexes, no store around them."""
    conn = sqlite3.connect(path)
    out = []
    for _, q in queries:
        where = ["room = ?", "source = 'realtime'"]
        params: list[Any] = [q.room]
        for column, value, op in (
            ("track_sid", q.track_sid, "="),
            ("participant_identity", q.participant_identity, "="),
            ("abs_start", q.time_from - SEGMENT_S if q.time_from else None, ">="),
            ("abs_start", q.time_to, "<"),
            ("confidence", q.min_confidence, ">="),
        ):
            if value is not None:
                where.append(f"{column} {op} ?")
                params.append(value)
        sql = (
            f'SELECT id, track_sid, participant_identity, source, start, "end", abs_start, '
            f"abs_end, text, confidence, words FROM segments WHERE {' AND '.join(where)} "
            f"ORDER BY abs_start, id LIMIT {q.limit + 1}"
        )
        began = time.perf_counter()
        rows = conn.execute(sql, params).fetchall()
        [json.loads(r[10]) for r in rows]
        out.append((time.perf_counter() - began) * 1000)
    conn.close()
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    layout = Layout(args.segments, args.rooms, args.tracks_per_room)
    workdir = Path(tempfile.mkdtemp(prefix="roomscribe-bench-"))
    try:
        return await measure(args, layout, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


async def measure(args: argparse.Namespace, layout: Layout, workdir: Path) -> dict[str, Any]:
    store: TranscriptStore
    if args.backend == "mongodb":
        uri = args.mongodb_uri or os.environ.get("ROOMSCRIBE_MONGODB_URI")
        if not uri:
            sys.exit("--backend mongodb needs --mongodb-uri or ROOMSCRIBE_MONGODB_URI")
        store = MongoTranscriptStore.connect(uri, database=f"bench_{uuid.uuid4().hex[:8]}")
    else:
        store = SQLiteTranscriptStore(workdir / "store.db")
    await store.init()
    total = layout.per_track * layout.tracks
    print(
        f"appending {total:,} segments over {layout.tracks} tracks in {len(layout.rooms)} rooms "
        f"(batches of {args.batch}, {args.concurrency} concurrent writers)...",
        file=sys.stderr,
    )
    append_s = await append_all(store, layout, args.batch, args.concurrency)
    queries = make_queries(layout, args.queries)
    await time_queries(store, queries[:20])  # warm caches the way a running server has them
    by_kind, _ = await time_queries(store, queries)
    await store.close()
    all_ms = [v for vs in by_kind.values() for v in vs]
    result: dict[str, Any] = {
        "backend": args.backend,
        "segments": total,
        "batch": args.batch,
        "appends_per_s": round(total / append_s),
        "query_p50_ms": round(statistics.median(all_ms), 3),
        "query_p95_ms": round(percentile(all_ms, 0.95), 3),
    }
    for kind, values in by_kind.items():
        result[f"query_{kind}_p95_ms"] = round(percentile(values, 0.95), 3)
    if args.backend == "sqlite" and not args.no_reference:
        print("reference: bare sqlite3 inserts and selects...", file=sys.stderr)
        ref_path = workdir / "reference.db"
        ref_s = reference_inserts(ref_path, layout, args.batch)
        ref_ms = reference_queries(ref_path, queries)
        result |= {
            "reference_appends_per_s": round(total / ref_s),
            "append_ratio": round(ref_s / append_s, 3),
            "reference_query_p50_ms": round(statistics.median(ref_ms), 3),
            "reference_query_p95_ms": round(percentile(ref_ms, 0.95), 3),
        }
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--backend", choices=["sqlite", "mongodb"], default="sqlite")
    parser.add_argument("--mongodb-uri")
    parser.add_argument("--segments", type=int, default=1_000_000)
    parser.add_argument("--rooms", type=int, default=50)
    parser.add_argument("--tracks-per-room", type=int, default=4)
    parser.add_argument("--batch", type=int, default=20, help="segments per append call")
    parser.add_argument("--concurrency", type=int, default=16, help="appends in flight at once")
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--no-reference", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    result = asyncio.run(run(args))
    emit(result, as_json=args.json)


if __name__ == "__main__":
    main()
