"""The recording path: emulator egress -> object store -> Whisper worker -> store -> room done.

The worker's jobs, leases and failure handling run for real against the store, the object
store and the orchestrator; transcription is a small class that decodes the real recording
(the synthetic faster-whisper model is exercised in test_synthetic_whisper).
"""

from __future__ import annotations

import asyncio
import re
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from devkit.livekit_emulator import ManualClock
from roomscribe.audio import decode_file
from roomscribe.models import RoomStatus, SegmentIn, TrackStatus, TranscriptQuery, TranscriptSource
from stt_service.jobs import WhisperWorker, orchestrator_notifier
from stt_service.whisper import Transcript
from tests.fakes.gemini import FakeGemini, RecordedRequest, Reply
from tests.world import INTERNAL, World, make_world, tone

pytestmark = pytest.mark.service


class DecodingTranscriber:
    """Decodes the recording for real and says one segment per second of audio."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.gate: threading.Event | None = None

    def __call__(self, audio: Path, *, track_sid: str, language: str | None) -> Transcript:
        if self.gate is not None:
            self.gate.wait(10)
        pcm = decode_file(audio)
        self.calls.append(track_sid)
        seconds = len(pcm) / 16000
        segments = [
            SegmentIn(
                id=f"{track_sid}-w{i:06d}", start=i, end=min(i + 1.0, seconds), text=f"second {i}"
            )
            for i in range(int(seconds))
        ]
        return Transcript(segments, language or "en", seconds, elapsed_s=0.01)


def worker_for(world: World, transcriber: DecodingTranscriber, **kwargs: float) -> WhisperWorker:
    return WhisperWorker(
        world.store,
        world.objects,
        transcriber,
        model_name="decoder",
        notify=orchestrator_notifier(world.url, INTERNAL),
        name="w-test",
        **kwargs,  # type: ignore[arg-type]
    )


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """A world on a manual clock: a meeting's tracks play for as long as the test says."""
    async with make_world(tmp_path, clock=ManualClock()) as running_world:
        yield running_world


async def record_meeting(world: World, seconds: dict[str, float]) -> dict[str, str]:
    lk = world.lk
    await lk.create_room("standup")
    await world.register("standup")
    sids = {}
    for who, length in seconds.items():
        await lk.join("standup", who)
        sids[who] = await lk.publish_audio("standup", who, tone(length))
    await world.settle()
    # The egress records what plays until it stops: let every track play to its end.
    assert isinstance(world.clock, ManualClock)
    world.clock.advance(max(seconds.values()))
    for sid in sids.values():
        await lk.unpublish("standup", sid)
    await world.settle()
    await world.finalize("standup")
    return sids


async def test_recorded_tracks_are_transcribed_and_the_room_completes(world: World) -> None:
    sids = await record_meeting(world, {"alice": 2.5, "bob": 1.2})
    assert (await world.store.get_room("standup")).status is RoomStatus.FINAL_ROOM
    transcriber = DecodingTranscriber()
    worker = worker_for(world, transcriber)
    assert await worker.run_until_idle() == 2
    await world.lifecycle.idle()
    alice = await world.store.get_track(sids["alice"])
    assert alice.status is TrackStatus.TRANSCRIBED
    assert alice.whisper is not None and alice.whisper.model == "decoder"
    assert alice.whisper.audio_s == pytest.approx(2.5, abs=0.1) and alice.whisper.segments == 2
    room = await world.store.get_room("standup")
    assert room.status is RoomStatus.COMPLETED and room.summary is not None
    page = await world.store.query_transcript(
        TranscriptQuery(room="standup", source=TranscriptSource.BEST)
    )
    assert sorted(s.text for s in page.segments) == ["second 0", "second 0", "second 1"]
    # A second run (a retry) replaces the transcript instead of adding to it.
    await world.store.set_track_status(sids["alice"], TrackStatus.RECORDED)
    assert await worker.run_until_idle() == 1
    whisper = await world.store.query_transcript(
        TranscriptQuery(room="standup", source=TranscriptSource.WHISPER, track_sid=sids["alice"])
    )
    assert [s.text for s in whisper.segments] == ["second 0", "second 1"]


@pytest.mark.parametrize("damage", ["missing", "undecodable", "empty"])
async def test_bad_recordings_fail_the_track_and_the_room_still_completes(
    world: World, damage: str
) -> None:
    sids = await record_meeting(world, {"alice": 1.5, "bob": 1.0})
    key = (await world.store.get_track(sids["bob"])).egress.object_key
    assert key is not None
    if damage == "missing":
        await world.objects.delete(key)
    elif damage == "undecodable":
        await world.objects.put_bytes(key, b"this is not an ogg file" * 50)
    else:
        await world.objects.put_bytes(key, b"")
    worker = worker_for(world, DecodingTranscriber(), max_attempts=2)
    await worker.run_until_idle()
    await world.lifecycle.idle()
    bob = await world.store.get_track(sids["bob"])
    assert bob.status is TrackStatus.FAILED
    assert bob.job.attempts == 2 and bob.job.last_error
    reason = bob.status_reason or ""
    assert {"missing": "not found", "undecodable": "decoded", "empty": "decoded"}[damage] in reason
    assert (await world.store.get_track(sids["alice"])).status is TrackStatus.TRANSCRIBED
    assert (await world.store.get_room("standup")).status is RoomStatus.COMPLETED


async def test_shutdown_mid_job_releases_the_lease(world: World) -> None:
    sids = await record_meeting(world, {"alice": 1.0})
    transcriber = DecodingTranscriber()
    transcriber.gate = threading.Event()
    worker = worker_for(world, transcriber, poll_s=0.05)
    running = asyncio.create_task(worker.run())
    for _ in range(500):
        if (await world.store.get_track(sids["alice"])).status is TrackStatus.TRANSCRIBING:
            break
        await asyncio.sleep(0.02)
    else:
        pytest.fail("the worker never claimed the job")
    running.cancel()
    transcriber.gate.set()
    with pytest.raises(asyncio.CancelledError):
        await running
    track = await world.store.get_track(sids["alice"])
    assert track.status is TrackStatus.RECORDED and track.job.attempts == 0
    assert track.job.worker is None


async def test_the_lease_is_renewed_while_working(world: World) -> None:
    sids = await record_meeting(world, {"alice": 1.0})
    transcriber = DecodingTranscriber()
    transcriber.gate = threading.Event()
    worker = worker_for(world, transcriber, lease_s=0.3, poll_s=0.05)
    running = asyncio.create_task(worker.run())
    await asyncio.sleep(1.0)  # three lease lengths: without renewal another worker could claim
    assert await world.store.claim_job("intruder", lease_s=5, max_attempts=3) is None
    transcriber.gate.set()
    for _ in range(100):
        if (await world.store.get_track(sids["alice"])).status is TrackStatus.TRANSCRIBED:
            break
        await asyncio.sleep(0.02)
    worker.stop()
    await running
    assert worker.done == 1
    assert np.isfinite((await world.store.get_track(sids["alice"])).whisper.real_time_factor)  # type: ignore[union-attr]


async def test_real_faster_whisper_on_a_recording(world: World, whisper_model_dir: Path) -> None:
    # A random-weight Whisper: its words are meaningless, so only structure is asserted.
    from stt_service.whisper import WhisperTranscriber

    transcriber = WhisperTranscriber(str(whisper_model_dir), cpu_threads=2)
    sids = await record_meeting(world, {"alice": 3.0})
    worker = WhisperWorker(
        world.store,
        world.objects,
        transcriber.transcribe,
        model_name=transcriber.model_name,
        notify=orchestrator_notifier(world.url, INTERNAL),
    )
    assert await worker.run_until_idle() == 1
    track = await world.store.get_track(sids["alice"])
    assert track.status is TrackStatus.TRANSCRIBED
    assert track.whisper is not None and track.whisper.model == whisper_model_dir.name
    assert track.whisper.audio_s == pytest.approx(3.0, abs=0.1)
    assert track.whisper.real_time_factor > 0
    whisper = await world.store.query_transcript(
        TranscriptQuery(room="standup", source=TranscriptSource.WHISPER)
    )
    assert len(whisper.segments) == track.whisper.segments
    for seg in whisper.segments:
        assert seg.end >= seg.start and seg.text == seg.text.strip() and 0 <= seg.confidence <= 1


async def test_whole_recording_path_with_a_gemini_summary(tmp_path: Path) -> None:
    """Emulator egress -> object store -> worker -> store -> completion -> Gemini summary."""
    fake = FakeGemini()

    def answer(request: RecordedRequest) -> dict[str, Any]:
        # Cite one of alice's own lines: both tracks start at 0 s, so order alone cannot tell.
        cited = re.findall(r"alice \(seg ([\w-]+)\)", request.prompt)
        return {
            "summary": "Alice and Bob counted seconds.",
            "action_items": [
                {
                    "participant": "alice",
                    "actions": [{"text": "Keep counting", "evidence": cited[:1]}],
                }
            ],
        }

    fake.enqueue(Reply(answer))
    async with (
        fake.serve() as gemini_url,
        make_world(
            tmp_path, clock=ManualClock(), gemini_api_key=fake.api_key, gemini_base_url=gemini_url
        ) as world,
    ):
        sids = await record_meeting(world, {"alice": 2.0, "bob": 1.0})
        worker = worker_for(world, DecodingTranscriber())
        assert await worker.run_until_idle() == 2
        await world.lifecycle.idle()
        room = await world.store.get_room("standup")
    assert room.status is RoomStatus.COMPLETED
    assert room.summary is not None and room.summary.model.startswith("gemini/")
    assert room.summary.text == "Alice and Bob counted seconds."
    alice = {p.participant_identity: p.actions for p in room.summary.action_items}["alice"]
    assert alice[0].evidence and alice[0].evidence[0].startswith(sids["alice"])
    prompt = fake.requests[0].prompt
    assert "second 0" in prompt and "second 1" in prompt  # the Whisper text was summarized
