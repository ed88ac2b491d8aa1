"""The demo's whole flow as a test: synthetic models, a shortened meeting, every service real.

Emulator (webhooks, egress into the object store) -> orchestrator -> agent track
transcribers -> STT service (real libvosk) -> live captions; recordings -> Whisper worker
(real faster-whisper, random weights) -> completion -> summary. Meanwhile the host asks the
agent to speak and stops it: TTS service (real kokoro, random weights) -> the agent's voice
track -> its captions and its recording.
"""

from __future__ import annotations

import io
import re
import wave
from pathlib import Path
from urllib.parse import unquote

import numpy as np
import pytest

from devkit.demo import _SECRETS, ROOM, TONE_SCRIPT, DemoOptions, run_demo
from devkit.demo_speech import SPEAK_TEXT, STOP_AFTER_S
from roomscribe.auth import ApiTokenVerifier
from roomscribe.models import RoomStatus, TrackStatus, TranscriptQuery, TranscriptSource
from roomscribe.store import SQLiteTranscriptStore
from tests.tts_harness import build_test_kokoro

pytestmark = pytest.mark.e2e

TURNS = 5


async def test_demo_meeting_end_to_end(
    tmp_path: Path, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # The run's random-weight Kokoro (one frame per phoneme: short, quick audio) where the
    # demo keeps its synthetic models, so it is not built again here.
    (tmp_path / "models-synthetic").mkdir()
    (tmp_path / "models-synthetic" / "kokoro").symlink_to(build_test_kokoro(tmp_path_factory))
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
    # The page is linked before the meeting plays, signed in as an admin of this meeting.
    link = re.search(r"watch it live: (http://127\.0\.0\.1:\d+)/#/rooms/([^?]+)\?token=(\S+)", text)
    assert link is not None and link.start() < text.index(f"meeting '{ROOM}'")
    assert unquote(link.group(2)) == ROOM and link.group(1) == report.api_url
    assert ApiTokenVerifier(hs256_secret=_SECRETS["api"]).verify(link.group(3)).is_admin
    # The agent: asked by the host, refused to another participant, heard, then stopped.
    speech = report.speech
    assert speech is not None and speech.error is None
    assert "agent voice (TTS): kokoro, SYNTHETIC, from random weights" in " ".join(text.split())
    assert f'tts_control alice -> agent: speak "{SPEAK_TEXT}"' in text
    assert "tts_control bob -> agent: speak" in text
    assert "tts_status  agent -> bob: error: not allowed" in text and speech.refused
    assert "tts_status  agent: started" in text and "tts_control alice -> agent: stop" in text
    assert speech.states == ["started", "stopped"]
    assert speech.first_audio_s is not None and "first audio on its track" in text
    assert speech.stop_to_silence_ms is not None and speech.stop_to_silence_ms <= 50
    assert "its track fell silent" in text and "stop -> silent track" in text
    # What the room heard it say: the start of its first sentence, captioned as its own.
    assert len(speech.said) == 1
    heard, meant = speech.said[0].split(), [w.strip(",.") for w in SPEAK_TEXT.split()]
    assert 1 <= len(heard) < len(meant) and heard == meant[: len(heard)]
    assert f"  agent: {speech.said[0]}" in text
    # The host stops it once it has heard STOP_AFTER_S; how much more plays before the stop
    # lands depends on the machine's load (the cut itself is the prefix check above).
    assert speech.spoken_s >= STOP_AFTER_S
    assert speech.recording == opts.work_dir / "agent-voice.wav"
    with wave.open(str(speech.recording)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, 24000)
        voice = np.frombuffer(wav.readframes(wav.getnframes()), dtype="<i2")
    assert np.count_nonzero(voice) / 24000 == pytest.approx(speech.spoken_s, abs=0.02)
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
