"""The agent's voice: an audio track that speech is played on, and its timeline.

A LiveKit audio track never pauses: while nothing is queued it sends silence. Its time is
therefore wall time since the track was created, and :meth:`TrackAudioOutput.playout_at`
tells when audio handed over now will be heard (after what the source still holds), which
is how the agent's captions are timed to its speech.
"""

from __future__ import annotations

import time
from typing import Protocol

from livekit import rtc

from agent.tts_client import TtsError

#: Audio the source holds ahead of what plays: what ``capture_frame`` blocks on.
QUEUE_MS = 400
#: Frames handed to the source, in ms (what a barge-in can leave playing at most).
FRAME_MS = 20


class AudioOutput(Protocol):
    """Where speech is played: an agent audio track."""

    async def play(self, pcm: bytes, sample_rate: int) -> None:
        """Queue PCM for playback; returns when it is queued (paced by real time)."""
        ...

    def clear(self) -> None:
        """Drop everything queued and not yet played."""
        ...

    async def drain(self) -> None:
        """Return once everything queued has played (or was cleared)."""
        ...

    def track_time(self) -> float:
        """Seconds of the track's timeline so far."""
        ...

    def playout_at(self) -> float:
        """The track time at which audio handed over now starts to be heard."""
        ...


class TrackAudioOutput:
    """Plays PCM on an ``rtc.AudioSource`` (publish :attr:`track` in a room to be heard)."""

    def __init__(self, sample_rate: int = 24000) -> None:
        """Create the source and its local track, at ``sample_rate``."""
        self.sample_rate = sample_rate
        self.source = rtc.AudioSource(sample_rate, 1, queue_size_ms=QUEUE_MS)
        self.track = rtc.LocalAudioTrack.create_audio_track("roomscribe-voice", self.source)
        self.played_samples = 0
        self._generation = 0
        self._created = time.monotonic()

    async def play(self, pcm: bytes, sample_rate: int) -> None:
        """Queue PCM in 20 ms frames (blocks while the source's queue is full).

        Returns early when :meth:`clear` is called meanwhile. (Cancelling a pending
        ``capture_frame`` would leave the source unable to play again, so stopping is
        cooperative.)
        """
        if sample_rate != self.sample_rate:
            raise TtsError(f"audio at {sample_rate} Hz on a {self.sample_rate} Hz track")
        generation = self._generation
        step = self.sample_rate * FRAME_MS // 1000 * 2
        for start in range(0, len(pcm), step):
            if generation != self._generation:
                return
            chunk = pcm[start : start + step]
            samples = len(chunk) // 2
            await self.source.capture_frame(rtc.AudioFrame(chunk, self.sample_rate, 1, samples))
            self.played_samples += samples

    def clear(self) -> None:
        """Drop what is queued: barge-in must silence the agent at once."""
        self._generation += 1
        self.source.clear_queue()

    async def drain(self) -> None:
        """Wait until the queued audio has played; :meth:`clear` ends the wait at once."""
        await self.source.wait_for_playout()

    def track_time(self) -> float:
        """Seconds since the track was created (it plays silence between speech)."""
        return time.monotonic() - self._created

    def playout_at(self) -> float:
        """When audio handed over now is heard: now, plus what the source still holds."""
        return self.track_time() + self.source.queued_duration

    async def aclose(self) -> None:
        """Release the source."""
        await self.source.aclose()
