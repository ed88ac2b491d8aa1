"""Writing audio files with PyAV for tests: any encoder, any number of channels."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import av
import numpy as np
import numpy.typing as npt


def write_audio(path: Path, codec: str, pcm: npt.NDArray[np.int16], rate: int, layout: str) -> None:
    """Encode interleaved s16 ``pcm`` with PyAV, converting to the encoder's sample format."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate, layout=layout)
        assert isinstance(stream, av.AudioStream)
        formats = stream.codec_context.codec.audio_formats or ()
        names = [f.name for f in formats]
        fmt = "s16" if "s16" in names or not names else names[0]
        converter = av.AudioResampler(format=fmt, layout=layout, rate=rate, frame_size=1024)
        source = av.AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout=layout)
        source.sample_rate = rate
        for frame in converter.resample(source) + converter.resample(None):
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))


def write_channels(
    path: Path, channels: Sequence[npt.NDArray[np.int16]], rate: int, codec: str = "flac"
) -> None:
    """Write equal-length mono tracks as one file with a channel each, in the given order."""
    # "N channels" is FFmpeg's layout without speaker positions: nothing gets remixed, and
    # encoders that know a named layout for N (FLAC's 3.0, quad, ...) record that one.
    interleaved = np.stack(list(channels), axis=1).reshape(-1)
    write_audio(path, codec, interleaved, rate, f"{len(channels)} channels")
