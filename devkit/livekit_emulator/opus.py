"""OGG/Opus encoding of a recording, as LiveKit track egress writes an Opus audio track."""

from __future__ import annotations

import io
from typing import Final

import av
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

from roomscribe.audio import TARGET_SAMPLE_RATE, Pcm

#: The sample rate of the recordings: Opus runs at 48 kHz, and LiveKit's tracks do.
RECORDING_RATE: Final = 48000


def encode_ogg_opus(pcm: Pcm, sample_rate: int = TARGET_SAMPLE_RATE) -> bytes:
    """Encode mono int16 PCM as an OGG/Opus file at 48 kHz, as track egress writes it.

    Blocking, CPU-bound work: run it in a worker thread.

    Args:
        pcm: The samples (one-dimensional ``int16``).
        sample_rate: Their rate in Hz.

    Returns:
        The bytes of the ``.ogg`` file.
    """
    buffer = io.BytesIO()
    with av.open(buffer, "w", format="ogg") as container:
        stream = container.add_stream("libopus", rate=RECORDING_RATE, layout="mono")
        frames: list[AudioFrame] = []
        if pcm.size:
            source = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
            source.sample_rate = sample_rate
            resampler = AudioResampler(format="s16", layout="mono", rate=RECORDING_RATE)
            frames = [*resampler.resample(source), *resampler.resample(None)]
        for frame in [*frames, None]:
            for packet in stream.encode(frame):
                container.mux(packet)
    return buffer.getvalue()
