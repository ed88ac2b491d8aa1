"""Listen to a local audio track as a room would: what it plays, and when.

:class:`TrackRecorder` reads a track through ``rtc.AudioStream`` (the WebRTC audio path, 10 ms
frames, silence included while its source is empty) and keeps each frame with the monotonic
time it arrived. The demo saves the agent's voice with it; tests and the demo measure with
it when the agent falls silent after a ``stop``.
"""

from __future__ import annotations

import asyncio
import time
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
from livekit import rtc


class TrackRecorder:
    """Records a track's audio, frame by frame, with arrival times.

    Args:
        track: The track to listen to (a local one: the agent's voice).
        sample_rate: The rate to read it at.
    """

    def __init__(self, track: rtc.Track, sample_rate: int = 24000) -> None:
        self.sample_rate = sample_rate
        self._stream = rtc.AudioStream(track, sample_rate=sample_rate, num_channels=1)
        #: (arrival, monotonic s; the frame's samples), in order.
        self.frames: list[tuple[float, npt.NDArray[np.int16]]] = []
        self._heard = asyncio.Event()
        self._task = asyncio.create_task(self._read(), name="track-recorder")

    async def _read(self) -> None:
        async for event in self._stream:
            samples = np.frombuffer(event.frame.data, dtype=np.int16).copy()
            self.frames.append((time.monotonic(), samples))
            if samples.any():
                self._heard.set()

    @property
    def sound_s(self) -> float:
        """Seconds of frames that carried sound (not the silence of an idle track)."""
        return sum(len(s) for _, s in self.frames if s.any()) / self.sample_rate

    def first_sound(self, after: float = 0.0) -> float | None:
        """Arrival of the first frame with sound at or after monotonic time ``after``."""
        return next((at for at, s in self.frames if at >= after and s.any()), None)

    def silent_from(self, after: float) -> float | None:
        """Arrival of the first silent frame after ``after`` that no sound follows.

        ``None`` while sound still follows (or nothing arrived yet).
        """
        start = None
        for at, samples in self.frames:
            if at < after:
                continue
            if samples.any():
                start = None
            elif start is None:
                start = at
        return start

    def sound_after(self, after: float) -> float:
        """Seconds of sound that arrived after monotonic time ``after``."""
        samples = sum(int(np.count_nonzero(s)) for at, s in self.frames if at > after)
        return samples / self.sample_rate

    async def wait_for_sound(self, seconds: float, within_s: float = 60.0) -> None:
        """Return once ``seconds`` of sound have been heard.

        Raises:
            TimeoutError: Not within ``within_s``.
        """
        async with asyncio.timeout(within_s):
            await self._heard.wait()
            while self.sound_s < seconds:  # noqa: ASYNC110 - frames arrive every 10 ms
                await asyncio.sleep(0.01)

    def pcm(self) -> npt.NDArray[np.int16]:
        """Everything heard so far, silence included, as one mono int16 array."""
        if not self.frames:
            return np.zeros(0, dtype=np.int16)
        return np.concatenate([s for _, s in self.frames])

    def write_wav(self, path: Path) -> Path:
        """Save what was heard as a 16-bit mono WAV file; returns ``path``."""
        path.parent.mkdir(parents=True, exist_ok=True)
        with wave.open(str(path), "wb") as out:
            out.setnchannels(1)
            out.setsampwidth(2)
            out.setframerate(self.sample_rate)
            out.writeframes(self.pcm().astype("<i2").tobytes())
        return path

    async def aclose(self) -> None:
        """Stop listening."""
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)
        await self._stream.aclose()
