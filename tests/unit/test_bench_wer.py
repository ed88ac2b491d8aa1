"""The word error rate the end-to-end benchmark reports."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

from bench.demo import normalize, wer, whisper_text, word_errors
from roomscribe.models import SegmentIn, TrackCreate, WhisperStats
from roomscribe.store import SQLiteTranscriptStore

pytestmark = pytest.mark.unit


def test_normalize_keeps_apostrophes_and_splits_hyphens() -> None:
    assert normalize("Mister Quilter's well-known, MANNER!") == [
        "mister",
        "quilter's",
        "well",
        "known",
        "manner",
    ]


@pytest.mark.parametrize(
    ("reference", "hypothesis", "errors"),
    [
        ("a b c", "a b c", 0),
        ("a b c", "a x c", 1),  # substitution
        ("a b c", "a c", 1),  # deletion
        ("a b c", "a b c d", 1),  # insertion
        ("a b c", "", 3),
        ("", "a b", 2),
        ("the cat sat", "cat sat on", 2),
    ],
)
def test_word_errors_counts_edits(reference: str, hypothesis: str, errors: int) -> None:
    assert word_errors(reference.split(), hypothesis.split()) == errors


def test_wer_pools_channels_and_counts_a_silent_one() -> None:
    references = {"speaker1": ["a", "b"], "speaker2": ["c", "d"]}
    assert wer(references, {"speaker1": "A, b."}) == 0.5


async def test_the_whisper_text_is_read_across_every_page(tmp_path: Path) -> None:
    store = SQLiteTranscriptStore(tmp_path / "t.db")
    await store.init()
    await store.register_room("r")
    await store.upsert_track(
        TrackCreate(
            track_sid="TR_a",
            room="r",
            participant_identity="alice",
            published_at=datetime(2026, 11, 1, tzinfo=UTC),
        )
    )
    segments = [SegmentIn(id=f"w{i}", start=i, end=i + 0.5, text=f"w{i}") for i in range(501)]
    stats = WhisperStats(model="tiny.en", audio_s=501.0, real_time_factor=0.1)
    await store.replace_whisper_segments("TR_a", segments, stats=stats)
    text = await whisper_text(store, "r", "TR_a")
    assert text.split() == [f"w{i}" for i in range(501)]  # a page holds 500
