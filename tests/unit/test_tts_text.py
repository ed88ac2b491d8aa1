"""The TTS service's text and audio helpers: sentence splitting, PCM, streaming encoders."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import av
import numpy as np
import pytest

from roomscribe.errors import ConfigurationError
from tts_service.audio_formats import (
    AUDIO_FORMATS,
    MEDIA_TYPES,
    encoder_for,
    float_to_pcm16,
    streaming_wav_header,
)
from tts_service.settings import TtsSettings
from tts_service.text import split_sentences

pytestmark = pytest.mark.unit

RATE = 24000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("One. Two! Three? Four", ["One.", "Two!", "Three?", "Four"]),
        ("  Hello world.  ", ["Hello world."]),
        ("", []),
        ("   \n\n  ", []),
        ("Wait... What?! Yes.", ["Wait...", "What?!", "Yes."]),
        ("He said \"Stop.\" Then he left.", ["He said \"Stop.\"", "Then he left."]),
        ("(It works.) Next one.", ["(It works.)", "Next one."]),
        ("Dr. Smith met Mrs. Jones. They talked.", ["Dr. Smith met Mrs. Jones.", "They talked."]),
        ("Bring fruit, e.g. apples. Thanks.", ["Bring fruit, e.g. apples.", "Thanks."]),
        ("J. R. R. Tolkien wrote it. Really.", ["J. R. R. Tolkien wrote it.", "Really."]),
        ("It costs $3.50 today. Cheap.", ["It costs $3.50 today.", "Cheap."]),
        ("Meet at 5 p.m. and bring food.", ["Meet at 5 p.m. and bring food."]),
        ("Line one\nLine two", ["Line one", "Line two"]),
        ("In 2024. Then more.", ["In 2024.", "Then more."]),
        ("Wow\u2026 Nice.", ["Wow\u2026", "Nice."]),
        ("Curly \u201cquote.\u201d Next.", ["Curly \u201cquote.\u201d", "Next."]),
    ],
)  # fmt: skip
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_long_sentences_are_cut_at_clause_marks_then_spaces() -> None:
    clause = "this part goes on for a while, "
    text = clause * 20 + "and ends."
    pieces = split_sentences(text, max_chars=100)
    assert all(len(p) <= 100 for p in pieces)
    assert all(p.endswith(",") for p in pieces[:-1])
    assert " ".join(pieces) == text.strip()
    words = "word " * 100
    cut = split_sentences(words, max_chars=50)
    assert all(len(p) <= 50 for p in cut) and " ".join(cut) == words.strip()


def test_a_piece_without_any_space_is_cut_hard() -> None:
    assert split_sentences("x" * 45, max_chars=20) == ["x" * 20, "x" * 20, "x" * 5]


def test_tiny_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 20"):
        split_sentences("Hi.", max_chars=5)


def test_float_to_pcm16_clips_instead_of_wrapping() -> None:
    pcm = float_to_pcm16(np.array([0.0, 0.5, 1.0, 1.25, -1.0, -3.0], dtype=np.float32))
    samples = np.frombuffer(pcm, dtype="<i2").tolist()
    assert samples == [0, 16384, 32767, 32767, -32767, -32767]


def test_the_streaming_wav_header_reads_with_wave() -> None:
    pcm = float_to_pcm16(np.sin(np.arange(2400) / 10) * 0.5)
    data = streaming_wav_header(RATE) + pcm
    assert len(streaming_wav_header(RATE)) == 44
    with wave.open(io.BytesIO(data)) as wav:
        assert (wav.getnchannels(), wav.getsampwidth(), wav.getframerate()) == (1, 2, RATE)
        assert wav.readframes(10**6) == pcm


@pytest.mark.parametrize("fmt", [f for f in AUDIO_FORMATS if f not in ("pcm", "wav")])
def test_encoders_stream_audio_that_decodes(fmt: str) -> None:
    encoder = encoder_for(fmt, RATE)  # type: ignore[arg-type]
    assert encoder.media_type == MEDIA_TYPES[fmt]  # type: ignore[index]
    tone = float_to_pcm16(np.sin(np.arange(RATE) * 2 * np.pi * 440 / RATE) * 0.3)
    parts = [encoder.start()]
    for second in range(3):  # three "sentences" of one second
        parts.append(encoder.encode(tone))
        if second == 1:
            # Bytes flow before the end: every format here streams.
            assert sum(len(p) for p in parts) > 0
    parts.append(encoder.finish())
    with av.open(io.BytesIO(b"".join(parts)), "r") as container:
        # Seconds, not samples: Opus always decodes at 48 kHz.
        seconds = sum(frame.samples / frame.sample_rate for frame in container.decode(audio=0))
    # Encoders pad or trim a frame at the edges; the length is about right.
    assert abs(seconds - 3) < 0.25


def test_a_closed_encoder_encodes_nothing() -> None:
    encoder = encoder_for("mp3", RATE)
    encoder.close()
    assert encoder.encode(b"\x00\x00" * 100) == b"" and encoder.finish() == b""


def test_settings_defaults_and_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("TTS_HOST", "TTS_PORT", "MODELS_DIR", "TTS_MODEL_DIR", "TTS_MAX_CHARS"):
        monkeypatch.delenv(f"ROOMSCRIBE_{name}", raising=False)
    defaults = TtsSettings(_env_file=None)
    assert (defaults.tts_host, defaults.tts_port) == ("127.0.0.1", 8002)
    assert defaults.model_folder() == Path("var/models/kokoro")
    assert defaults.tts_auth is True
    monkeypatch.setenv("ROOMSCRIBE_TTS_PORT", "9002")
    monkeypatch.setenv("ROOMSCRIBE_MODELS_DIR", "/models")
    monkeypatch.setenv("ROOMSCRIBE_TTS_MAX_CHARS", "50")
    env = TtsSettings(_env_file=None)
    assert env.tts_port == 9002 and env.tts_max_chars == 50
    assert env.model_folder() == Path("/models/kokoro")
    monkeypatch.setenv("ROOMSCRIBE_TTS_MODEL_DIR", "/elsewhere")
    assert TtsSettings(_env_file=None).model_folder() == Path("/elsewhere")


def test_production_refuses_the_default_secret(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ROOMSCRIBE_SECRET", raising=False)
    with pytest.raises(ConfigurationError, match="ROOMSCRIBE_SECRET"):
        TtsSettings(environment="production", _env_file=None)
