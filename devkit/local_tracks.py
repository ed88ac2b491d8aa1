"""Play PCM as a participant's audio track without a LiveKit server.

At real-time pace the audio goes through a real ``rtc.AudioSource`` and
``rtc.LocalAudioTrack`` and is read back with ``rtc.AudioStream`` at 16 kHz mono, exactly as
the agent reads a subscribed track in a room (the WebRTC audio path, resampler included). A
local track's stream is clocked in real time, so faster playback (``speed > 1``) hands the
agent 10 ms frames directly, paced by the clock.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import numpy as np
import numpy.typing as npt
from livekit import rtc

#: Samples per 10 ms frame at 16 kHz (WebRTC's frame size).
_FRAME_MS = 10


async def track_frames(
    pcm: npt.NDArray[np.int16],
    *,
    sample_rate: int = 16000,
    speed: float = 1.0,
    out_rate: int = 16000,
) -> AsyncIterator[rtc.AudioFrame]:
    """Yield ``pcm`` (mono int16) as a track's frames, paced ``speed`` times real time.

    The iterator ends when the audio has played out, as a stream ends when its participant
    leaves.
    """
    if speed <= 0:
        raise ValueError("speed must be > 0")
    if speed == 1.0:
        async for frame in _through_rtc(pcm, sample_rate=sample_rate, out_rate=out_rate):
            yield frame
        return
    step = sample_rate * _FRAME_MS // 1000
    started = time.monotonic()
    for i, start in enumerate(range(0, len(pcm), step)):
        chunk = pcm[start : start + step]
        yield _frame(chunk, sample_rate)
        due = started + (i + 1) * _FRAME_MS / 1000 / speed
        await asyncio.sleep(max(0.0, due - time.monotonic()))


async def _through_rtc(
    pcm: npt.NDArray[np.int16], *, sample_rate: int, out_rate: int
) -> AsyncIterator[rtc.AudioFrame]:
    source = rtc.AudioSource(sample_rate, 1, queue_size_ms=200)
    track = rtc.LocalAudioTrack.create_audio_track("microphone", source)
    # The first 100 ms are queued before the stream opens: a local track plays silence while
    # its source is empty, and a busy loop could otherwise shift the audio by that silence.
    primed = sample_rate // 10
    await source.capture_frame(_frame(pcm[:primed], sample_rate))
    stream = rtc.AudioStream(track, sample_rate=out_rate, num_channels=1)
    expected = len(pcm) * out_rate // sample_rate
    feeder = asyncio.create_task(_capture(source, pcm[primed:], sample_rate))
    try:
        got = 0
        async for event in stream:
            yield event.frame
            got += event.frame.samples_per_channel
            if got >= expected and feeder.done():
                break
        await feeder
    finally:
        feeder.cancel()
        await stream.aclose()
        await source.aclose()


async def _capture(source: rtc.AudioSource, pcm: npt.NDArray[np.int16], rate: int) -> None:
    step = rate * _FRAME_MS // 1000
    for start in range(0, len(pcm), step):
        chunk = pcm[start : start + step]
        # Blocks while the source's queue is full: this is what paces playback in real time.
        await source.capture_frame(_frame(chunk, rate))
    await source.wait_for_playout()


def _frame(pcm: npt.NDArray[np.int16], rate: int) -> rtc.AudioFrame:
    return rtc.AudioFrame(pcm.astype("<i2").tobytes(), rate, 1, len(pcm))
