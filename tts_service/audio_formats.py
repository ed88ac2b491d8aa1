"""Streaming audio encoders: the bytes of each format as the sentences arrive.

Every encoder takes PCM s16le mono and returns what can be sent so far, so a response
streams in any format:

- ``pcm``: the samples as they are (what ``/v1/synthesize`` always sends, and OpenAI's
  ``pcm``: 24 kHz, 16-bit signed little-endian, mono).
- ``wav``: a RIFF header first, whose RIFF and data sizes are ``0xFFFFFFFF`` since the length
  is not known when it is sent (the convention of streaming WAV; Python's ``wave``, ffmpeg and
  browsers read such files to their end), then the samples.
- ``mp3``, ``opus`` (Ogg Opus), ``flac``, ``aac`` (ADTS): encoded with PyAV (FFmpeg) into a
  sink that is drained after every sentence; the Ogg muxer is told to close a page every
  20 ms, otherwise it would hold a second of audio back.

PyAV encoders are not thread-safe, and encoding runs in a worker thread (it is CPU work), so
each encoder serializes its calls with a lock.
"""

from __future__ import annotations

import struct
import threading
from fractions import Fraction
from typing import Final, Literal, Protocol, get_args

import av
import numpy as np
import numpy.typing as npt
from av.audio.stream import AudioStream

AudioFormat = Literal["pcm", "wav", "mp3", "opus", "flac", "aac"]
#: The formats :func:`encoder_for` serves, as OpenAI's ``response_format`` names them.
AUDIO_FORMATS: Final[tuple[AudioFormat, ...]] = get_args(AudioFormat)

#: ``Content-Type`` of each format.
MEDIA_TYPES: Final[dict[AudioFormat, str]] = {
    "pcm": "audio/pcm",
    "wav": "audio/wav",
    "mp3": "audio/mpeg",
    "opus": "audio/ogg; codecs=opus",
    "flac": "audio/flac",
    "aac": "audio/aac",
}

# container format, codec, container options
_AV_FORMATS: Final[dict[AudioFormat, tuple[str, str, dict[str, str]]]] = {
    "mp3": ("mp3", "libmp3lame", {}),
    "opus": ("ogg", "libopus", {"page_duration": "20000"}),
    "flac": ("flac", "flac", {}),
    "aac": ("adts", "aac", {}),
}
_UNKNOWN_SIZE: Final = 0xFFFFFFFF


def float_to_pcm16(samples: npt.NDArray[np.floating] | npt.ArrayLike) -> bytes:
    """Convert float samples in [-1, 1] to PCM s16le bytes.

    Values outside the range are clipped first: a model's output may overshoot (random
    weights peak near 1.2), and a cast without clipping wraps around into loud clicks.
    """
    array = np.asarray(samples, dtype=np.float32).reshape(-1)
    clipped = np.clip(array, -1.0, 1.0)
    return (clipped * 32767.0).round().astype("<i2").tobytes()


def streaming_wav_header(sample_rate: int, channels: int = 1, sample_width: int = 2) -> bytes:
    """A 44-byte RIFF/WAVE header for PCM of unknown length (sizes ``0xFFFFFFFF``)."""
    byte_rate = sample_rate * channels * sample_width
    return (
        b"RIFF"
        + struct.pack("<I", _UNKNOWN_SIZE)
        + b"WAVEfmt "
        + struct.pack(
            "<IHHIIHH", 16, 1, channels, sample_rate, byte_rate, channels * sample_width, 16
        )
        + b"data"
        + struct.pack("<I", _UNKNOWN_SIZE)
    )


class StreamEncoder(Protocol):
    """Turns PCM s16le mono into a format's bytes, piece by piece."""

    media_type: str

    def start(self) -> bytes:
        """Bytes that go before any audio (a header), possibly empty."""
        ...

    def encode(self, pcm: bytes) -> bytes:
        """Encode more samples; return the bytes ready to send (possibly empty)."""
        ...

    def finish(self) -> bytes:
        """Flush the encoder and return the last bytes; the encoder is closed afterwards."""
        ...

    def close(self) -> None:
        """Release the encoder without finishing (the client went away)."""
        ...


class PcmEncoder:
    """Raw PCM, or WAV with a streaming header."""

    def __init__(self, sample_rate: int, *, wav: bool = False) -> None:
        """Encode at ``sample_rate``; with ``wav``, put a streaming RIFF header first."""
        self.media_type = MEDIA_TYPES["wav" if wav else "pcm"]
        self._header = streaming_wav_header(sample_rate) if wav else b""

    def start(self) -> bytes:
        """The WAV header, or nothing."""
        return self._header

    def encode(self, pcm: bytes) -> bytes:
        """The samples themselves."""
        return pcm

    def finish(self) -> bytes:
        """Nothing is buffered."""
        return b""

    def close(self) -> None:
        """Nothing to release."""


class _Sink:
    """The file object PyAV writes into; it has no ``seek``, so muxers treat it as a stream."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def write(self, data: bytes) -> int:
        self._buffer += data
        return len(data)

    def drain(self) -> bytes:
        out = bytes(self._buffer)
        self._buffer.clear()
        return out


class AvEncoder:
    """An FFmpeg encoder and muxer (via PyAV) writing into memory."""

    def __init__(self, fmt: AudioFormat, sample_rate: int) -> None:
        """Open the muxer and encoder for ``fmt`` (``mp3``, ``opus``, ``flac`` or ``aac``)."""
        container_format, codec, options = _AV_FORMATS[fmt]
        self.media_type = MEDIA_TYPES[fmt]
        self._rate = sample_rate
        self._lock = threading.Lock()
        self._sink = _Sink()
        self._container = av.open(self._sink, "w", format=container_format, options=options)
        stream = self._container.add_stream(codec, rate=sample_rate)
        if not isinstance(stream, AudioStream):  # pragma: no cover - an audio codec always is
            raise TypeError(f"{codec} did not open an audio stream")
        stream.layout = "mono"
        self._stream = stream
        self._samples = 0
        self._closed = False

    def start(self) -> bytes:
        """Muxers write their header with the first packet: nothing yet."""
        return b""

    def encode(self, pcm: bytes) -> bytes:
        """Encode the samples; return the muxed bytes ready so far."""
        samples = np.frombuffer(pcm, dtype="<i2")
        if samples.size == 0:
            return b""
        with self._lock:
            if self._closed:
                return b""
            frame = av.AudioFrame.from_ndarray(samples.reshape(1, -1), format="s16", layout="mono")
            frame.sample_rate = self._rate
            frame.pts = self._samples
            frame.time_base = Fraction(1, self._rate)
            self._samples += samples.size
            for packet in self._stream.encode(frame):
                self._container.mux(packet)
            return self._sink.drain()

    def finish(self) -> bytes:
        """Flush the encoder, write the trailer, and return the last bytes."""
        with self._lock:
            if self._closed:
                return b""
            for packet in self._stream.encode(None):
                self._container.mux(packet)
            self._closed = True
            self._container.close()
            return self._sink.drain()

    def close(self) -> None:
        """Close without flushing."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._container.close()


def encoder_for(fmt: AudioFormat, sample_rate: int) -> StreamEncoder:
    """A fresh encoder for one response in ``fmt``."""
    if fmt == "pcm":
        return PcmEncoder(sample_rate)
    if fmt == "wav":
        return PcmEncoder(sample_rate, wav=True)
    return AvEncoder(fmt, sample_rate)
