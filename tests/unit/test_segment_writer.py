"""SegmentWriter: each word of a track is stored once, whichever stream recognized it."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime

import pytest

from roomscribe.models import SegmentIn, TrackCreate, TranscriptQuery, TranscriptSource, Word
from roomscribe.store import TranscriptStore
from stt_service.metrics import SttMetrics
from stt_service.writer import SegmentWriter

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 1, 12, 0, tzinfo=UTC)


def final(*words: tuple[str, float, float]) -> SegmentIn:
    parts = [Word(word=w, start=s, end=e, confidence=0.8) for w, s, e in words]
    return SegmentIn(
        id=f"TR_a-{round(parts[0].start * 1000):09d}",
        start=parts[0].start,
        end=parts[-1].end,
        text=" ".join(w for w, _, _ in words),
        confidence=0.8,
        words=parts,
    )


async def test_audio_recognized_again_stores_only_the_words_not_yet_taken(
    make_store: Callable[..., Awaitable[TranscriptStore]],
) -> None:
    store = await make_store()
    await store.register_room("r")
    metrics = SttMetrics()
    writer = SegmentWriter(store, metrics, flush_interval_s=0.01)
    writer.start()
    try:
        writer.ensure_track(
            TrackCreate(track_sid="TR_a", room="r", participant_identity="alice", published_at=T0)
        )
        # The first stream: two utterances, the second never committed.
        writer.add_segment("TR_a", final(("alpha", 0.2, 0.6)))
        writer.add_segment("TR_a", final(("bravo", 2.1, 2.5)))
        # The resumed stream hears the audio after alpha again, as one utterance, with other
        # times (a recognizer in another state), and a word the first stream never finished.
        writer.add_segment(
            "TR_a", final(("bravo", 2.04, 2.5), ("charlie", 2.9, 3.3), ("delta", 3.4, 3.8))
        )
        # And once more, wholly inside what is taken: nothing of it is kept.
        writer.add_segment("TR_a", final(("charlie", 2.88, 3.3)))
        async with asyncio.timeout(10):
            while writer.pending:  # noqa: ASYNC110 - polling a counter
                await asyncio.sleep(0.01)
    finally:
        await writer.close()
    page = await store.query_transcript(
        TranscriptQuery(room="r", source=TranscriptSource.REALTIME, limit=100)
    )
    assert [(s.text, s.start, s.end) for s in page.segments] == [
        ("alpha", 0.2, 0.6),
        ("bravo", 2.1, 2.5),
        ("charlie delta", 2.9, 3.8),
    ]
    assert page.segments[2].id == "TR_a-000002900"
    words = [w.word for s in page.segments for w in s.words]
    assert words == ["alpha", "bravo", "charlie", "delta"]
    assert metrics.registry.get_sample_value("stt_rerecognized_words_total") == 2  # bravo, charlie
