from __future__ import annotations

import wave
from pathlib import Path

import av
import av.codec
import numpy as np
import numpy.typing as npt
import pytest

from roomscribe.audio import (
    TARGET_SAMPLE_RATE,
    PcmResampler,
    decode_channels,
    decode_file,
    iter_decode,
    pcm_from_bytes,
    pcm_to_bytes,
    probe_duration_s,
    resample,
    split_frames,
)
from roomscribe.errors import AudioDecodeError, AudioError
from tests.audio_files import write_audio, write_channels

pytestmark = pytest.mark.unit

SECONDS = 2.0
TONE_HZ = 440.0
SOURCE_RATE = 48000

# (extension, encoder, exact?) Lossy codecs add encoder delay and padding that decoders trim
# only as far as the container records it, so their lengths get a tolerance.
FORMATS = [
    ("wav", "pcm_s16le", True),
    ("flac", "flac", True),
    ("ogg", "libopus", False),
    ("mp3", "libmp3lame", False),
    ("m4a", "aac", False),
]
LOSSY_TOLERANCE_S = 0.05


def _has_encoder(name: str) -> bool:
    try:
        av.codec.Codec(name, "w")
    except (av.codec.codec.UnknownCodecError, ValueError):
        return False
    return True


def _sine(rate: int, seconds: float = SECONDS, hz: float = TONE_HZ) -> npt.NDArray[np.int16]:
    t = np.arange(round(rate * seconds)) / rate
    return (0.5 * 32767 * np.sin(2 * np.pi * hz * t)).astype(np.int16)


def _dominant_hz(pcm: npt.NDArray[np.int16], rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size)))
    return float(np.argmax(spectrum) * rate / pcm.size)


@pytest.fixture(scope="module")
def tone_files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A 2 s, 440 Hz, 48 kHz stereo tone in every format whose encoder this PyAV has."""
    folder = tmp_path_factory.mktemp("tones")
    mono = _sine(SOURCE_RATE)
    stereo = np.stack([mono, mono], axis=1).reshape(-1)
    files: dict[str, Path] = {}
    for ext, codec, _ in FORMATS:
        if _has_encoder(codec):
            files[ext] = folder / f"tone.{ext}"
            write_audio(files[ext], codec, stereo, SOURCE_RATE, "stereo")
    return files


def _tone(tone_files: dict[str, Path], ext: str, codec: str) -> Path:
    if ext not in tone_files:
        pytest.skip(f"this FFmpeg build has no {codec} encoder to write a .{ext} file")
    return tone_files[ext]


# Decoding -----------------------------------------------------------------------------------
@pytest.mark.parametrize(("ext", "codec", "exact"), FORMATS)
def test_decode_file_formats(
    tone_files: dict[str, Path], ext: str, codec: str, exact: bool
) -> None:
    path = _tone(tone_files, ext, codec)
    pcm = decode_file(path)
    assert pcm.dtype == np.int16 and pcm.ndim == 1
    expected = round(SECONDS * TARGET_SAMPLE_RATE)
    if exact:
        assert pcm.size == expected
    else:
        assert abs(pcm.size - expected) <= LOSSY_TOLERANCE_S * TARGET_SAMPLE_RATE
    assert _dominant_hz(pcm, TARGET_SAMPLE_RATE) == pytest.approx(TONE_HZ, abs=2)
    # Both channels carry the tone at half scale; the mix-down must keep it there.
    assert 0.4 * 32767 < np.abs(pcm).max() < 0.6 * 32767
    assert probe_duration_s(path) == pytest.approx(SECONDS, abs=LOSSY_TOLERANCE_S)
    # Kept apart, each channel is the tone, exactly as long as the mix-down.
    channels = decode_channels(path)
    assert [c.size for c in channels] == [pcm.size] * 2
    for channel in channels:
        assert _dominant_hz(channel, TARGET_SAMPLE_RATE) == pytest.approx(TONE_HZ, abs=2)


@pytest.mark.parametrize(("ext", "codec", "exact"), FORMATS)
def test_iter_decode_concatenates_to_decode_file(
    tone_files: dict[str, Path], ext: str, codec: str, exact: bool
) -> None:
    path = _tone(tone_files, ext, codec)
    whole = decode_file(path)
    chunks = list(iter_decode(path, chunk_samples=7000))
    assert all(chunk.size == 7000 for chunk in chunks[:-1])
    assert 0 < chunks[-1].size <= 7000
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    (single,) = iter_decode(path, chunk_samples=10 * whole.size)
    np.testing.assert_array_equal(single, whole)


def test_decode_at_another_rate(tone_files: dict[str, Path]) -> None:
    pcm = decode_file(_tone(tone_files, "flac", "flac"), sample_rate=8000)
    assert pcm.size == round(SECONDS * 8000)
    assert _dominant_hz(pcm, 8000) == pytest.approx(TONE_HZ, abs=2)


def test_decode_mono_16k_wav_is_bit_exact(tmp_path: Path) -> None:
    # Already at the target format, the samples must come through untouched.
    noise = np.random.default_rng(7).integers(-20000, 20000, 12345).astype(np.int16)
    path = tmp_path / "noise.wav"
    write_audio(path, "pcm_s16le", noise, TARGET_SAMPLE_RATE, "mono")
    np.testing.assert_array_equal(decode_file(path), noise)


def test_decode_unsigned_8_bit_stays_centred(tmp_path: Path) -> None:
    # u8 silence is 0x80: the end-of-stream padding must be silence too, or the last samples
    # would be dragged towards a step that was never in the file.
    path = tmp_path / "quiet.wav"
    write_audio(path, "pcm_u8", np.zeros(SOURCE_RATE // 2, dtype=np.int16), SOURCE_RATE, "mono")
    pcm = decode_file(path)
    assert pcm.size == TARGET_SAMPLE_RATE // 2
    assert np.abs(pcm).max() < 300


# Channels kept apart -----------------------------------------------------------------------
CHANNEL_HZ = (300.0, 700.0, 1100.0)


def _share_near(pcm: npt.NDArray[np.int16], rate: int, hz: float, band_hz: float = 20) -> float:
    """The fraction of the signal's energy within ``band_hz`` of ``hz``."""
    power = np.abs(np.fft.rfft(pcm.astype(np.float64) * np.hanning(pcm.size))) ** 2
    freqs = np.fft.rfftfreq(pcm.size, 1 / rate)
    return float(power[np.abs(freqs - hz) <= band_hz].sum() / power.sum())


@pytest.mark.parametrize(("ext", "codec"), [("flac", "flac"), ("wav", "pcm_s16le")])
@pytest.mark.parametrize("rate", [TARGET_SAMPLE_RATE, SOURCE_RATE])
def test_decode_channels_keeps_each_channel(
    tmp_path: Path, ext: str, codec: str, rate: int
) -> None:
    path = tmp_path / f"three.{ext}"
    tones = [_sine(rate, hz=hz) for hz in CHANNEL_HZ]
    write_channels(path, tones, rate, codec=codec)
    channels = decode_channels(path)
    assert len(channels) == len(CHANNEL_HZ)
    for pcm, tone, hz in zip(channels, tones, CHANNEL_HZ, strict=True):
        assert pcm.dtype == np.int16 and pcm.ndim == 1
        assert pcm.size == round(SECONDS * TARGET_SAMPLE_RATE)
        assert _dominant_hz(pcm, TARGET_SAMPLE_RATE) == pytest.approx(hz, abs=2)
        # Its own tone alone, at full level: a mix-down would bring in the others' tones.
        assert _share_near(pcm, TARGET_SAMPLE_RATE, hz) > 0.999
        assert 0.45 * 32767 < np.abs(pcm[100:-100]).max() < 0.55 * 32767
        if rate == TARGET_SAMPLE_RATE:  # lossless and nothing to convert: bit for bit
            np.testing.assert_array_equal(pcm, tone)


@pytest.mark.parametrize("n", [2, 5, 89, 961, 4800])
def test_decode_channels_loses_no_tail_samples(tmp_path: Path, n: int) -> None:
    path = tmp_path / "short.wav"
    write_channels(
        path, [np.full(n, 1000 * (i + 1), np.int16) for i in range(3)], 48000, "pcm_s16le"
    )
    channels = decode_channels(path)
    assert [pcm.size for pcm in channels] == [round(n / 3)] * 3


@pytest.mark.parametrize("channels", [8, 12])
def test_planar_audio_of_eight_channels_or_more(tmp_path: Path, channels: int) -> None:
    # PyAV's AudioFrame.planes reads past the channel pointers of planar frames from 8
    # channels on (a crash); decoding must not go through it.
    if not _has_encoder("pcm_s16le_planar"):
        pytest.skip("this FFmpeg build has no pcm_s16le_planar encoder")
    hz = [200.0 + 100 * n for n in range(channels)]
    path = tmp_path / "many.nut"
    write_channels(path, [_sine(SOURCE_RATE, hz=f) for f in hz], SOURCE_RATE, "pcm_s16le_planar")
    with av.open(str(path)) as container:  # the decoder's frames are planar indeed
        assert container.streams.audio[0].format.is_planar
    decoded = decode_channels(path)
    assert [_dominant_hz(pcm, TARGET_SAMPLE_RATE) for pcm in decoded] == pytest.approx(hz, abs=2)
    assert decode_file(path).size == round(SECONDS * TARGET_SAMPLE_RATE)


def test_decode_channels_of_mono_is_decode_file(tmp_path: Path) -> None:
    path = tmp_path / "mono.flac"
    write_audio(path, "flac", _sine(SOURCE_RATE), SOURCE_RATE, "mono")
    (only,) = decode_channels(path)
    np.testing.assert_array_equal(only, decode_file(path))
    (slow,) = decode_channels(path, sample_rate=8000)
    np.testing.assert_array_equal(slow, decode_file(path, sample_rate=8000))


# Resampling ---------------------------------------------------------------------------------
@pytest.mark.parametrize("from_rate", [48000, 8000, 44100])
def test_resample_keeps_frequency_and_length(from_rate: int) -> None:
    pcm = resample(_sine(from_rate), from_rate, TARGET_SAMPLE_RATE)
    assert pcm.dtype == np.int16 and pcm.size == round(SECONDS * TARGET_SAMPLE_RATE)
    assert _dominant_hz(pcm, TARGET_SAMPLE_RATE) == pytest.approx(TONE_HZ, abs=2)
    # Away from the edges the tone keeps its amplitude.
    assert 0.45 * 32767 < np.abs(pcm[100:-100]).max() < 0.55 * 32767


def test_resample_identity_is_an_equal_copy() -> None:
    pcm = _sine(TARGET_SAMPLE_RATE)
    out = resample(pcm, TARGET_SAMPLE_RATE, TARGET_SAMPLE_RATE)
    np.testing.assert_array_equal(out, pcm)
    assert not np.shares_memory(out, pcm)


@pytest.mark.parametrize("n", [0, 1, 2, 5, 50, 89, 100, 961])
@pytest.mark.parametrize(("from_rate", "to_rate"), [(48000, 16000), (16000, 48000), (44100, 16000)])
def test_resample_short_inputs_lose_no_samples(n: int, from_rate: int, to_rate: int) -> None:
    # FFmpeg's flush alone returns nothing for inputs this short; the count must still add up.
    pcm = np.full(n, 1000, dtype=np.int16)
    assert resample(pcm, from_rate, to_rate).size == round(n * to_rate / from_rate)


def test_streaming_resampler_matches_one_shot() -> None:
    pcm = _sine(48000, seconds=0.5)
    resampler = PcmResampler(48000, 16000)
    parts = [resampler.push(frame) for frame in split_frames(pcm, sample_rate=48000)]
    parts.append(resampler.flush())
    np.testing.assert_array_equal(np.concatenate(parts), resample(pcm, 48000, 16000))


def test_resample_refuses_bad_input() -> None:
    with pytest.raises(AudioError, match="int16"):
        resample(np.zeros(10, dtype=np.float32), 48000, 16000)
    with pytest.raises(AudioError, match="one-dimensional"):
        resample(np.zeros((2, 10), dtype=np.int16), 48000, 16000)
    with pytest.raises(ValueError, match="from_rate"):
        resample(np.zeros(10, dtype=np.int16), 0, 16000)


# Framing and bytes --------------------------------------------------------------------------
def test_split_frames_covers_every_sample() -> None:
    pcm = np.arange(16000 + 123, dtype=np.int16)
    frames = list(split_frames(pcm, sample_rate=16000, frame_ms=20))
    assert [f.size for f in frames[:-1]] == [320] * 50
    assert frames[-1].size == 123
    np.testing.assert_array_equal(np.concatenate(frames), pcm)
    assert list(split_frames(np.zeros(0, dtype=np.int16), sample_rate=16000)) == []
    (whole,) = split_frames(pcm[:320], sample_rate=16000)
    assert whole.size == 320


def test_split_frames_refuses_empty_frames() -> None:
    with pytest.raises(ValueError, match="frame_ms"):
        split_frames(np.zeros(10, dtype=np.int16), sample_rate=16000, frame_ms=0)


def test_pcm_bytes_round_trip_little_endian() -> None:
    pcm = np.array([1, -2, 32767, -32768], dtype=np.int16)
    data = pcm_to_bytes(pcm)
    assert data == b"\x01\x00\xfe\xff\xff\x7f\x00\x80"
    back = pcm_from_bytes(data)
    np.testing.assert_array_equal(back, pcm)
    back[0] = 5  # a fresh, writable array, not a view of the bytes
    assert pcm_from_bytes(b"").size == 0


def test_pcm_from_odd_bytes() -> None:
    with pytest.raises(AudioError, match="even number of bytes"):
        pcm_from_bytes(b"\x00\x01\x02")


# Errors -------------------------------------------------------------------------------------
def _bad_files(tmp_path: Path) -> dict[str, Path]:
    rng = np.random.default_rng(1234)
    files = {
        "missing": tmp_path / "missing.wav",
        "directory": tmp_path,
        "empty": tmp_path / "empty.wav",
        "random": tmp_path / "random.bin",
        "random_wav": tmp_path / "random.wav",
        "text": tmp_path / "notes.txt",
        "text_mp3": tmp_path / "notes.mp3",
        "header_only": tmp_path / "header_only.wav",
    }
    files["empty"].write_bytes(b"")
    files["random"].write_bytes(rng.bytes(4096))
    files["random_wav"].write_bytes(rng.bytes(4096))
    files["text"].write_text("this is not audio\n" * 100)
    files["text_mp3"].write_text("this is not audio either\n" * 100)
    with wave.open(str(files["header_only"]), "wb") as header_only:
        header_only.setnchannels(1)
        header_only.setsampwidth(2)
        header_only.setframerate(16000)
    return files


@pytest.mark.parametrize(
    ("kind", "reason"),
    [
        ("missing", "does not exist"),
        ("directory", "not a regular file"),
        ("empty", "empty"),
        ("random", "not a decodable audio file"),
        ("random_wav", "not a decodable audio file"),
        ("text", "no audio stream|not a decodable"),
        ("text_mp3", "no audio stream|not a decodable"),
        ("header_only", "no audio samples"),
    ],
)
def test_decode_errors_name_the_path(tmp_path: Path, kind: str, reason: str) -> None:
    path = _bad_files(tmp_path)[kind]
    with pytest.raises(AudioDecodeError, match=reason) as info:
        decode_file(path)
    assert str(path) in str(info.value)
    with pytest.raises(AudioDecodeError, match=reason):
        list(iter_decode(path))
    with pytest.raises(AudioDecodeError, match=reason) as info:
        decode_channels(path)
    assert str(path) in str(info.value)
    if kind != "header_only":  # its header does not say how long it is, so probing decodes
        with pytest.raises(AudioDecodeError, match=reason):
            probe_duration_s(path)


def test_file_without_audio_stream(tmp_path: Path) -> None:
    if not _has_encoder("mpeg4"):
        pytest.skip("this FFmpeg build has no mpeg4 encoder to write a video-only file")
    path = tmp_path / "video_only.mkv"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("mpeg4", rate=25)
        stream.width, stream.height, stream.pix_fmt = 32, 32, "yuv420p"
        for _ in range(3):
            frame = av.VideoFrame.from_ndarray(np.zeros((32, 32, 3), np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode(None))
    for call in (decode_file, decode_channels, probe_duration_s, lambda p: list(iter_decode(p))):
        with pytest.raises(AudioDecodeError, match="no audio stream") as info:
            call(path)
        assert str(path) in str(info.value)


def test_bad_arguments_fail_at_the_call(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="chunk_samples"):
        iter_decode(tmp_path / "missing.wav", chunk_samples=0)
    with pytest.raises(ValueError, match="sample_rate"):
        decode_file(tmp_path / "missing.wav", sample_rate=0)
    with pytest.raises(ValueError, match="sample_rate"):
        decode_channels(tmp_path / "missing.wav", sample_rate=0)
