"""SIGKILL of the STT service at random points: every word stored once, every caption true.

The service runs as its own process (``python -m stt_service``, real libvosk, the synthetic
tone-word model, SQLite) and is killed with SIGKILL: no drain, no last store flush. The
agent's track transcriber streams through the real plugin and reconnects to the restarted
process. Five kills, each falling at an independent random point of four concurrent tracks
(their starts are staggered at random): twenty tracks cut at random points in all.

What must hold for each track, whatever the point of the kill:
- the stored live transcript has every spoken word exactly once, in order, and no two of its
  segments overlap (nothing lost, nothing stored twice);
- the captions, read as a front end reads them (the last version of each caption id), say
  every word exactly once, and the segment each final caption names is in the store.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from agent.captions import Caption
from agent.stt_plugin import BackoffConnectOptions, RoomscribeSTT
from agent.transcriber import TrackTranscriber
from devkit.local_tracks import track_frames
from devkit.tones import TONE_WORDS, synthesize
from roomscribe.auth import issue_internal_token
from roomscribe.models import Segment, TranscriptQuery, TranscriptSource
from tests.stt_harness import SECRET, ServiceProcess

pytestmark = pytest.mark.service

KILLS = 5
TRACKS_PER_KILL = 4
SPEED = 3.0  # audio pushed three times faster than real time


class Captions:
    """A caption sink that reads captions as a front end does: by caption id, last wins."""

    def __init__(self) -> None:
        self.seen: list[Caption] = []

    async def publish(self, caption: Caption) -> None:
        self.seen.append(caption)

    def lines(self) -> list[Caption]:
        """The final caption of each caption id, in the order the ids first appeared."""
        last: dict[str, Caption] = {}
        for caption in self.seen:
            if caption.final:
                last[caption.caption_id] = caption
        return list(last.values())


def meeting_audio(rng: random.Random) -> tuple[list[str], npt.NDArray[np.int16]]:
    """Three utterances of two tone words, with the pauses that end an utterance."""
    words = rng.sample(list(TONE_WORDS), 6)
    pcm = np.concatenate(
        [
            synthesize(words[0:2], tail_s=0.9),
            synthesize(words[2:4], lead_s=0.3, tail_s=0.9),
            synthesize(words[4:6], lead_s=0.3, tail_s=0.9),
        ]
    )
    return words, pcm


async def stored(service: ServiceProcess, track_sid: str) -> list[Segment]:
    page = await service.store.query_transcript(
        TranscriptQuery(
            room="standup", track_sid=track_sid, source=TranscriptSource.REALTIME, limit=1000
        )
    )
    return page.segments


async def test_sigkill_at_random_points_loses_nothing_and_stores_nothing_twice(
    tmp_path: Path, vosk_model_dir: Path
) -> None:
    rng = random.Random(20261203)
    service = ServiceProcess(tmp_path / "stt.db", vosk_model_dir)
    stt = RoomscribeSTT(
        url=service.url,
        token=lambda: issue_internal_token(SECRET, audience="stt", subject="agent"),
        room="standup",
    )
    spoken: dict[str, list[str]] = {}
    captions: dict[str, Captions] = {}
    transcribers: dict[str, TrackTranscriber] = {}
    await service.start()
    try:
        for kill in range(KILLS):
            runs = []
            for k in range(TRACKS_PER_KILL):
                who = f"p{kill}{k}"
                sid = f"TR_{who}"
                spoken[sid], pcm = meeting_audio(rng)
                captions[sid] = Captions()
                transcribers[sid] = TrackTranscriber(
                    stt,
                    captions[sid],
                    room="standup",
                    participant=who,
                    track_sid=sid,
                    conn_options=BackoffConnectOptions(
                        max_retry=60, retry_interval=0.1, timeout=5, max_interval=0.5
                    ),
                )
                runs.append(
                    asyncio.create_task(
                        _staggered(transcribers[sid], pcm, rng.uniform(0.0, 1.2)),
                        name=f"track-{sid}",
                    )
                )
            # Somewhere inside the tracks' three utterances (each ~1.5 s at this speed).
            await asyncio.sleep(rng.uniform(0.4, 2.0))
            service.kill()
            await service.start()
            await asyncio.gather(*runs)
        service.terminate()  # the last writes of the last streams are flushed on the way out
        for sid, words in spoken.items():
            where = f"{sid} (spoke {words})"
            result = transcribers[sid].result
            assert result.error is None, f"{where}: {result.error}"
            segments = await stored(service, sid)
            assert [w for s in segments for w in s.text.split()] == words, where
            for before, after in itertools.pairwise(segments):
                assert before.end <= after.start + 0.05, f"{where}: {before} overlaps {after}"
            lines = captions[sid].lines()
            assert [w for c in lines for w in c.text.split()] == words, f"{where}: {lines}"
            ids = [s.id for s in segments]
            for line in lines:
                assert ids.count(line.segment_id or "") == 1, f"{where}: {line} not stored once"
        assert sum(t.result.stream.reconnects for t in transcribers.values()) >= KILLS
    finally:
        service.kill()
        await service.store.close()


async def _staggered(tt: TrackTranscriber, pcm: npt.NDArray[np.int16], delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    await tt.run(track_frames(pcm, speed=SPEED))
