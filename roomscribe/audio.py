"""Audio decoding, resampling and framing for the recognizers.

Everything downstream of this module works on one representation: PCM as a one-dimensional
``int16`` numpy array, mono, at a known sample rate (16 kHz, :data:`TARGET_SAMPLE_RATE`, for
the recognizers). Files in any format FFmpeg reads (wav, flac, ogg/opus, mp3, m4a, ...) are
decoded with PyAV and converted with FFmpeg's resampler, which also mixes channels down; or,
with :func:`decode_channels`, keeps them apart as one such array per channel.

Decoding is blocking, CPU-bound work: call it from a worker thread, never on an event loop.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Final, TypeAlias

import av
import av.error
import numpy as np
import numpy.typing as npt
from av.audio.frame import AudioFrame
from av.audio.resampler import AudioResampler

from roomscribe.errors import AudioDecodeError, AudioError

#: The sample rate the recognizers take.
TARGET_SAMPLE_RATE: Final = 16000

#: PCM samples: a one-dimensional, mono ``int16`` array.
Pcm: TypeAlias = npt.NDArray[np.int16]

# Resampled ``int16`` samples with time on the last axis: ``(samples,)`` for mono output,
# ``(channels, samples)`` (one row per channel) when the channels are kept apart.
_Samples: TypeAlias = npt.NDArray[np.int16]

# Signed 16-bit little-endian, the byte order of the wire protocol and of WAV.
_S16LE: Final = np.dtype("<i2")
# Longest piece handed to the resampler at once; bounds the frames PyAV allocates.
_RESAMPLE_BLOCK: Final = 1 << 16


def _empty() -> Pcm:
    return np.zeros(0, dtype=np.int16)


def _check_pcm(pcm: Pcm) -> None:
    if not isinstance(pcm, np.ndarray) or pcm.dtype != np.int16 or pcm.ndim != 1:
        shape = getattr(pcm, "shape", None)
        dtype = getattr(pcm, "dtype", type(pcm).__name__)
        raise AudioError(
            f"PCM must be a one-dimensional int16 array (mono), got dtype {dtype} shape {shape}"
        )


def _check_rate(name: str, rate: int) -> None:
    if rate <= 0:
        raise ValueError(f"{name} must be a positive sample rate in Hz, got {rate!r}")


class _FrameResampler:
    """Converts a stream of PyAV audio frames to s16 at one rate, losing nothing.

    FFmpeg's resampler holds back a filter's worth of samples; flushing it alone drops that
    tail for short inputs (anything under about 90 samples at 48 kHz comes out empty). So the
    flush first feeds a little silence, then trims the output to exactly
    ``round(samples_in * rate_out / rate_in)``, which is what a lossless resampler returns.
    Input whose format, layout or rate changes mid-stream (chained Ogg streams) gets a fresh
    resampler for each run of matching frames.

    The output is mono (one-dimensional pieces) unless ``layout`` is None: then it keeps the
    first frame's channel layout, in ``(channels, samples)`` pieces. That layout stays for
    the whole stream, so a later run of frames with other channels is remixed to it and
    every piece has the same number of rows.

    Planar frames are never read or written here (their ``planes`` in PyAV look past the
    channel pointers from 8 channels on and crash): the output is packed s16, split into
    channels with numpy, and the flush's silence is made by FFmpeg (see _silence_like).
    """

    def __init__(self, rate: int, *, layout: str | None = "mono") -> None:
        self._rate = rate
        self._layout = layout
        self._resampler: AudioResampler | None = None
        self._source: tuple[str, str, int] | None = None
        self._template: AudioFrame | None = None
        self._samples_in = 0
        self._samples_out = 0

    def push(self, frame: AudioFrame) -> list[_Samples]:
        """Resample one frame; returns the samples that are ready (possibly none)."""
        source = (frame.format.name, frame.layout.name, frame.sample_rate)
        out: list[_Samples] = []
        if source != self._source:
            out.extend(self.flush())
            if self._layout is None:
                self._layout = frame.layout.name
            self._resampler = AudioResampler(format="s16", layout=self._layout, rate=self._rate)
            self._source = source
        assert self._resampler is not None
        self._template = frame
        self._samples_in += frame.samples
        out.extend(self._take(self._resampler.resample(frame), limit=None))
        return out

    def flush(self) -> list[_Samples]:
        """Drain the resampler; the next :meth:`push` starts afresh."""
        resampler, template, source = self._resampler, self._template, self._source
        self._resampler = self._template = self._source = None
        if resampler is None or template is None or source is None:
            return []
        expected = (self._samples_in * self._rate + source[2] // 2) // source[2]
        frames = [
            out
            for silence in _silence_like(template, samples=max(source[2] // 50, 256))
            for out in resampler.resample(silence)
        ]
        frames.extend(resampler.resample(None))
        out = self._take(frames, limit=expected)
        self._samples_in = self._samples_out = 0
        return out

    def _take(self, frames: list[AudioFrame], *, limit: int | None) -> list[_Samples]:
        out: list[_Samples] = []
        for frame in frames:
            samples = _frame_samples(frame)
            if limit is not None:
                samples = samples[..., : max(limit - self._samples_out, 0)]
            # Counted per channel (the last axis), like frame.samples and the limit.
            if samples.shape[-1]:
                self._samples_out += samples.shape[-1]
                out.append(samples)
        return out


def _frame_samples(frame: AudioFrame) -> _Samples:
    # Packed s16: to_ndarray() is (1, samples * channels), interleaved. Copy out of PyAV's
    # buffer; for several channels the copy also makes each channel's row contiguous.
    channels = frame.layout.nb_channels
    interleaved = np.asarray(frame.to_ndarray(), dtype=np.int16).reshape(-1, channels)
    return (interleaved.reshape(-1) if channels == 1 else interleaved.T).copy()


def _silence_like(template: AudioFrame, *, samples: int) -> list[AudioFrame]:
    # Zeros as packed s16, converted by FFmpeg to the template's format, layout and rate:
    # that is silence in any format (unsigned 8-bit is centred on 0x80, not 0) and writes no
    # planar frame's planes from Python, which PyAV gets wrong from 8 channels on.
    channels = template.layout.nb_channels
    zeros = AudioFrame.from_ndarray(
        np.zeros((1, samples * channels), dtype=np.int16), format="s16", layout=template.layout
    )
    zeros.sample_rate = template.sample_rate
    convert = AudioResampler(
        format=template.format, layout=template.layout, rate=template.sample_rate
    )
    silence = convert.resample(zeros) + convert.resample(None)
    for frame in silence:
        frame.pts = None  # like the zeros: padding has no place on the stream's timeline
    return silence


def _pcm_frame(pcm: Pcm, rate: int) -> AudioFrame:
    frame = AudioFrame.from_ndarray(pcm.reshape(1, -1), format="s16", layout="mono")
    frame.sample_rate = rate
    return frame


class PcmResampler:
    """Streaming resampler for mono ``int16`` PCM, for audio that arrives in pieces.

    Unlike calling :func:`resample` on each piece, it keeps the filter's state between pieces,
    so there are no discontinuities at piece boundaries. Call :meth:`flush` after the last
    piece: the total output then has exactly ``round(n * to_rate / from_rate)`` samples.

    Example:
        >>> resampler = PcmResampler(48000, 16000)
        >>> parts = [resampler.push(piece) for piece in pieces]  # doctest: +SKIP
        >>> parts.append(resampler.flush())  # doctest: +SKIP
    """

    def __init__(self, from_rate: int, to_rate: int) -> None:
        """Prepare to convert ``from_rate`` Hz to ``to_rate`` Hz.

        Args:
            from_rate: Sample rate of the pieces given to :meth:`push`, in Hz.
            to_rate: Sample rate of the output, in Hz.

        Raises:
            ValueError: A rate is not positive.
        """
        _check_rate("from_rate", from_rate)
        _check_rate("to_rate", to_rate)
        self.from_rate = from_rate
        self.to_rate = to_rate
        self._frames = _FrameResampler(to_rate)

    def push(self, pcm: Pcm) -> Pcm:
        """Resample one piece; returns what is ready (lags the input by a few samples).

        Raises:
            AudioError: ``pcm`` is not a one-dimensional int16 array.
        """
        _check_pcm(pcm)
        if self.from_rate == self.to_rate:
            return pcm.copy()
        out: list[Pcm] = []
        for start in range(0, pcm.size, _RESAMPLE_BLOCK):
            block = pcm[start : start + _RESAMPLE_BLOCK]
            out.extend(self._frames.push(_pcm_frame(block, self.from_rate)))
        return np.concatenate(out) if out else _empty()

    def flush(self) -> Pcm:
        """Return the samples still held back; the resampler can then be reused."""
        out = self._frames.flush()
        return np.concatenate(out) if out else _empty()


def resample(pcm: Pcm, from_rate: int, to_rate: int) -> Pcm:
    """Resample mono ``int16`` PCM with FFmpeg's resampler.

    Args:
        pcm: One-dimensional int16 samples.
        from_rate: Their sample rate in Hz.
        to_rate: The wanted sample rate in Hz.

    Returns:
        ``round(len(pcm) * to_rate / from_rate)`` samples; a copy of ``pcm`` when the rates
        are equal.

    Raises:
        AudioError: ``pcm`` is not a one-dimensional int16 array.
        ValueError: A rate is not positive.
    """
    resampler = PcmResampler(from_rate, to_rate)
    head = resampler.push(pcm)
    tail = resampler.flush()
    return np.concatenate([head, tail]) if tail.size else head


def split_frames(pcm: Pcm, *, sample_rate: int, frame_ms: int = 20) -> Iterator[Pcm]:
    """Cut PCM into consecutive frames of ``frame_ms`` milliseconds.

    Every sample lands in exactly one frame; the last frame is shorter when the audio does not
    divide evenly. Frames are views into ``pcm``, not copies.

    Args:
        pcm: One-dimensional int16 samples.
        sample_rate: Their sample rate in Hz.
        frame_ms: Frame length in milliseconds.

    Returns:
        An iterator over the frames in order.

    Raises:
        AudioError: ``pcm`` is not a one-dimensional int16 array.
        ValueError: ``sample_rate`` or ``frame_ms`` gives frames of no samples.
    """
    _check_pcm(pcm)
    _check_rate("sample_rate", sample_rate)
    frame_samples = sample_rate * frame_ms // 1000
    if frame_samples <= 0:
        raise ValueError(f"frame_ms={frame_ms!r} at {sample_rate} Hz gives frames without samples")
    # A generator expression rather than a generator function: bad arguments fail at the call.
    return (pcm[start : start + frame_samples] for start in range(0, pcm.size, frame_samples))


def pcm_from_bytes(data: bytes) -> Pcm:
    """Read little-endian signed 16-bit mono PCM.

    Args:
        data: The raw bytes, two per sample.

    Returns:
        A new, writable int16 array in native byte order.

    Raises:
        AudioError: ``data`` has an odd length, so it cannot be whole 16-bit samples.
    """
    if len(data) % 2:
        raise AudioError(f"PCM s16le needs an even number of bytes (2 per sample), got {len(data)}")
    return np.frombuffer(data, dtype=_S16LE).astype(np.int16)


def pcm_to_bytes(pcm: Pcm) -> bytes:
    """Write PCM as little-endian signed 16-bit bytes.

    Raises:
        AudioError: ``pcm`` is not a one-dimensional int16 array.
    """
    _check_pcm(pcm)
    return pcm.astype(_S16LE, copy=False).tobytes()


def _reason(exc: Exception) -> str:
    # FFmpeg's str() repeats the errno and the path we already name; its strerror is the gist.
    strerror = getattr(exc, "strerror", None)
    return strerror if isinstance(strerror, str) and strerror else str(exc)


def _open_input(path: Path) -> av.container.InputContainer:
    if not path.exists():
        raise AudioDecodeError(f"audio file {str(path)!r} does not exist")
    if not path.is_file():
        raise AudioDecodeError(f"audio path {str(path)!r} is not a regular file")
    if path.stat().st_size == 0:
        raise AudioDecodeError(f"audio file {str(path)!r} is empty")
    try:
        return av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError) as exc:
        raise AudioDecodeError(
            f"{str(path)!r} is not a decodable audio file: {_reason(exc)}"
        ) from exc


def _audio_stream(container: av.container.InputContainer, path: Path) -> av.AudioStream:
    if not container.streams.audio:
        raise AudioDecodeError(f"{str(path)!r} has no audio stream")
    return container.streams.audio[0]


def _decoded_pcm(
    path: Path, sample_rate: int, *, layout: str | None = "mono"
) -> Iterator[_Samples]:
    """Yield s16 samples at ``sample_rate`` as they are decoded, in pieces of any size.

    Mono pieces by default; with ``layout=None``, ``(channels, samples)`` pieces in the
    stream's own layout (see :class:`_FrameResampler`).
    """
    produced = False
    with _open_input(path) as container:
        stream = _audio_stream(container, path)
        frames = _FrameResampler(sample_rate, layout=layout)
        try:
            for frame in container.decode(stream):
                for pcm in frames.push(frame):
                    produced = True
                    yield pcm
            for pcm in frames.flush():
                produced = True
                yield pcm
        except av.error.FFmpegError as exc:
            raise AudioDecodeError(f"{str(path)!r} could not be decoded: {_reason(exc)}") from exc
    if not produced:
        raise AudioDecodeError(f"{str(path)!r} contains no audio samples")


def iter_decode(
    path: str | Path,
    *,
    sample_rate: int = TARGET_SAMPLE_RATE,
    chunk_samples: int = TARGET_SAMPLE_RATE * 10,
) -> Iterator[Pcm]:
    """Decode an audio file in chunks, holding only about one chunk in memory.

    Args:
        path: Any audio file FFmpeg can read; only its first audio stream is used.
        sample_rate: Output sample rate in Hz.
        chunk_samples: Samples per chunk; the last chunk may be shorter.

    Returns:
        An iterator of mono int16 chunks of ``chunk_samples`` samples whose concatenation
        equals :func:`decode_file`'s result. The file is opened on the first ``next()`` and
        closed when the iterator is exhausted or discarded.

    Raises:
        AudioDecodeError: The file is missing, empty, not audio, has no audio stream or
            breaks off undecodably (possibly after some chunks were yielded).
        ValueError: ``sample_rate`` or ``chunk_samples`` is not positive.
    """
    # Checked here, not in the generator, so a bad argument fails at the call, not at next().
    _check_rate("sample_rate", sample_rate)
    if chunk_samples <= 0:
        raise ValueError(f"chunk_samples must be positive, got {chunk_samples!r}")
    return _rechunk(_decoded_pcm(Path(path), sample_rate), chunk_samples)


def _rechunk(pieces: Iterator[Pcm], chunk_samples: int) -> Iterator[Pcm]:
    pending: list[Pcm] = []
    pending_samples = 0
    for pcm in pieces:
        pending.append(pcm)
        pending_samples += pcm.size
        if pending_samples < chunk_samples:
            continue
        joined = np.concatenate(pending)
        whole = joined.size - joined.size % chunk_samples
        for start in range(0, whole, chunk_samples):
            yield joined[start : start + chunk_samples]
        rest = joined[whole:]
        pending, pending_samples = ([rest] if rest.size else []), rest.size
    if pending_samples:
        yield np.concatenate(pending)


def decode_file(path: str | Path, *, sample_rate: int = TARGET_SAMPLE_RATE) -> Pcm:
    """Decode a whole audio file to mono int16 PCM.

    Args:
        path: Any audio file FFmpeg can read (wav, flac, ogg/opus, mp3, m4a, ...); only its
            first audio stream is used and all its channels are mixed down.
        sample_rate: Output sample rate in Hz.

    Returns:
        The samples. Use :func:`iter_decode` for long files to bound memory.

    Raises:
        AudioDecodeError: The file is missing, empty, not audio, has no audio stream or
            cannot be decoded.
        ValueError: ``sample_rate`` is not positive.
    """
    _check_rate("sample_rate", sample_rate)
    return np.concatenate(list(_decoded_pcm(Path(path), sample_rate)))


def decode_channels(path: str | Path, *, sample_rate: int = TARGET_SAMPLE_RATE) -> list[Pcm]:
    """Decode a whole audio file keeping its channels apart, e.g. one per meeting participant.

    Args:
        path: Any audio file FFmpeg can read; only its first audio stream is used.
        sample_rate: Output sample rate in Hz.

    Returns:
        One mono int16 array per channel, in the stream's channel order, all the same
        length. A mono file gives one array, equal to :func:`decode_file`'s result.

    Raises:
        AudioDecodeError: The file is missing, empty, not audio, has no audio stream or
            cannot be decoded.
        ValueError: ``sample_rate`` is not positive.
    """
    _check_rate("sample_rate", sample_rate)
    joined = np.concatenate(list(_decoded_pcm(Path(path), sample_rate, layout=None)), axis=-1)
    # Mono comes back one-dimensional (see _frame_samples): make it the single row it is.
    return list(np.atleast_2d(joined))


def probe_duration_s(path: str | Path) -> float:
    """Return the duration of a file's first audio stream, in seconds.

    Reads the container's metadata; only when that carries no duration (some raw streams)
    is the audio decoded to count its samples.

    Raises:
        AudioDecodeError: The file is missing, empty, not audio or has no audio stream.
    """
    path = Path(path)
    with _open_input(path) as container:
        stream = _audio_stream(container, path)
        if stream.duration is not None and stream.time_base is not None:
            return float(stream.duration * stream.time_base)
        if container.duration is not None:
            return container.duration / av.time_base
    samples = sum(pcm.size for pcm in _decoded_pcm(path, TARGET_SAMPLE_RATE))
    return samples / TARGET_SAMPLE_RATE
