"""The demo's whole flow as a test: synthetic models, a shortened meeting, every service real.

Emulator (webhooks, egress into the object store) -> orchestrator -> agent track
transcribers -> STT service (real libvosk) -> live captions; recordings -> Whisper worker
(real faster-whisper, random weights) -> completion -> summary.
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from devkit.demo import ROOM, TONE_SCRIPT, DemoOptions, run_demo
from roomscribe.models import RoomStatus, TrackStatus, TranscriptQuery, TranscriptSource
from roomscribe.store import SQLiteTranscriptStore

pytestmark = pytest.mark.e2e

TURNS = 5


async def test_demo_meeting_end_to_end(tmp_path: Path) -> None:
    out = io.StringIO()
    opts = DemoOptions(
        synthetic=True,
        speed=4.0,
        turns=TURNS,
        models_dir=tmp_path / "models",
        work_dir=tmp_path / "demo",
        port=0,
        whisper_size="micro",
        out=out,
    )
    report = await run_demo(opts)
    text = out.getvalue()
    assert "SYNTHETIC MODELS (--synthetic)" in text
    # Live captions: each participant's own words, exactly, and nobody else's.
    spoken: dict[str, list[str]] = {}
    for who, words in TONE_SCRIPT[:TURNS]:
        spoken.setdefault(who, []).extend(words)
    assert {who: " ".join(f).split() for who, f in report.finals.items()} == spoken
    assert report.caption_latency_ms and report.end_to_summary_s > 0
    assert f"whisper [{len(spoken)}/{len(spoken)}]" in text
    assert "REST API: http://" in text and "/docs" in text
    # The store the services shared: the room completed with a summary and both transcripts.
    store = SQLiteTranscriptStore(opts.work_dir / "roomscribe.db")
    await store.init()
    try:
        room = await store.get_room(ROOM)
        assert room.status is RoomStatus.COMPLETED and room.summary is not None
        for sid in report.participants.values():
            assert (await store.get_track(sid)).status is TrackStatus.TRANSCRIBED
        live = await store.query_transcript(
            TranscriptQuery(room=ROOM, source=TranscriptSource.REALTIME)
        )
        stored: dict[str, list[str]] = {}
        for seg in live.segments:
            stored.setdefault(seg.participant_identity, []).extend(seg.text.split())
        assert stored == spoken
    finally:
        await store.close()
