"""The synthetic Vosk model, run by the real libvosk: tones in, exact words and times out."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
import vosk

from devkit.__main__ import main as devkit_main
from devkit.synthetic_vosk import (
    MODEL_FILES,
    STAMP_NAME,
    build_synthetic_vosk_model,
    synthetic_vosk_model_ready,
)
from devkit.tones import TONE_WORDS, synthesize, tone_frequency, word_times
from roomscribe.audio import resample, split_frames

pytestmark = pytest.mark.service


Pcm = npt.NDArray[np.int16]
# Word times are frame-aligned (30 ms output frames) and vosk nudges starts a little.
TIME_TOLERANCE_S = 0.1
WORDS = ["alpha", "bravo", "charlie"]


@pytest.fixture(scope="module", autouse=True)
def _quiet_vosk() -> None:
    vosk.SetLogLevel(-1)


@pytest.fixture(scope="module")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_synthetic_vosk_model(tmp_path_factory.mktemp("vosk") / "tiny")


@pytest.fixture(scope="module")
def model(tiny_model_dir: Path) -> Any:
    return vosk.Model(str(tiny_model_dir))


def _recognizer(model: Any, sample_rate: int = 16000) -> Any:
    recognizer = vosk.KaldiRecognizer(model, sample_rate)
    recognizer.SetWords(True)
    return recognizer


def _decode(model: Any, pcm: Pcm, *, sample_rate: int = 16000) -> list[dict[str, Any]]:
    """Feed 20 ms chunks; return the words of every result, endpointed ones and the final."""
    recognizer = _recognizer(model, sample_rate)
    words: list[dict[str, Any]] = []
    for frame in split_frames(pcm, sample_rate=sample_rate, frame_ms=20):
        if recognizer.AcceptWaveform(frame.tobytes()):
            words += json.loads(recognizer.Result()).get("result", [])
    words += json.loads(recognizer.FinalResult()).get("result", [])
    return words


def _assert_words_at(found: list[dict[str, Any]], expected: list[tuple[str, float, float]]) -> None:
    assert [w["word"] for w in found] == [word for word, _, _ in expected]
    for got, (word, start, end) in zip(found, expected, strict=True):
        assert got["start"] == pytest.approx(start, abs=TIME_TOLERANCE_S), word
        assert got["end"] == pytest.approx(end, abs=TIME_TOLERANCE_S), word


def test_tones_decode_to_exact_words_and_times_in_final_result(model: Any) -> None:
    # A short tail: no endpoint fires, so everything lands in FinalResult.
    pcm = synthesize(WORDS, tail_s=0.4)
    recognizer = _recognizer(model)

    assert not recognizer.AcceptWaveform(pcm.tobytes())  # no endpoint
    final = json.loads(recognizer.FinalResult())

    assert final["text"] == "alpha bravo charlie"
    _assert_words_at(final["result"], word_times(WORDS))


def test_partial_results_grow_word_by_word(model: Any) -> None:
    pcm = synthesize(WORDS, tail_s=0.4)
    recognizer = _recognizer(model)
    partials: list[tuple[float, str]] = []
    for i, frame in enumerate(split_frames(pcm, sample_rate=16000, frame_ms=20)):
        assert not recognizer.AcceptWaveform(frame.tobytes())
        text = json.loads(recognizer.PartialResult())["partial"]
        if text and (not partials or partials[-1][1] != text):
            partials.append(((i + 1) * 0.02, text))

    assert [text for _, text in partials] == ["alpha", "alpha bravo", "alpha bravo charlie"]
    # Each word shows up while its tone still plays, not only at the end.
    for (seen_at, _), (_, _, tone_end) in zip(partials, word_times(WORDS), strict=True):
        assert seen_at < tone_end
    assert json.loads(recognizer.FinalResult())["text"] == "alpha bravo charlie"


def test_endpoint_closes_the_utterance_after_trailing_silence(model: Any) -> None:
    pcm = synthesize(WORDS, tail_s=1.2)
    recognizer = _recognizer(model)
    endpoints = [
        json.loads(recognizer.Result())
        for frame in split_frames(pcm, sample_rate=16000, frame_ms=20)
        if recognizer.AcceptWaveform(frame.tobytes())
    ]

    assert [result["text"] for result in endpoints] == ["alpha bravo charlie"]
    assert json.loads(recognizer.FinalResult())["text"] == ""


def test_silence_alone_yields_no_words(model: Any) -> None:
    assert _decode(model, np.zeros(16000 * 5, dtype=np.int16)) == []


@pytest.mark.parametrize("amplitude", [0.01, 0.3])
def test_white_noise_alone_yields_no_words(model: Any, amplitude: float) -> None:
    noise = np.random.default_rng(7).normal(0.0, amplitude * 32767, 16000 * 5)
    assert _decode(model, np.clip(noise, -32768, 32767).astype(np.int16)) == []


@pytest.mark.parametrize("word", TONE_WORDS)
def test_every_word_is_recognized_alone(model: Any, word: str) -> None:
    found = _decode(model, synthesize([word]))
    _assert_words_at(found, word_times([word]))


def test_48khz_audio_resampled_to_16khz_decodes_the_same(model: Any) -> None:
    pcm = resample(synthesize(WORDS, sample_rate=48000), 48000, 16000)
    _assert_words_at(_decode(model, pcm), word_times(WORDS))


def test_8khz_audio_upsampled_to_16khz_decodes_the_same(model: Any) -> None:
    # Every tone is under 4 kHz, so 8 kHz audio carries it (libvosk itself only downsamples:
    # an 8 kHz recognizer on this 16 kHz model fails, so the caller upsamples).
    assert max(tone_frequency(word) for word in TONE_WORDS) < 3800
    pcm = resample(synthesize(list(TONE_WORDS), sample_rate=8000), 8000, 16000)
    found = _decode(model, pcm)
    assert [w["word"] for w in found] == list(TONE_WORDS)


def test_a_48khz_recognizer_downsamples_inside_libvosk(model: Any) -> None:
    # mfcc.conf allows downsampling, so the recognizer may also take 48 kHz directly.
    found = _decode(model, synthesize(WORDS, sample_rate=48000), sample_rate=48000)
    _assert_words_at(found, word_times(WORDS))


def test_unknown_word_is_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="'zulu'"):
        synthesize(["alpha", "zulu"])
    with pytest.raises(ValueError, match="'zulu'"):
        tone_frequency("zulu")
    with pytest.raises(TypeError):
        synthesize("alpha bravo")


@pytest.mark.parametrize("rate", [8000, 16000, 48000])
def test_synthesized_length_follows_the_timing(rate: int) -> None:
    pcm = synthesize(WORDS, sample_rate=rate, word_s=0.5, gap_s=0.25, lead_s=0.1, tail_s=0.6)
    assert pcm.dtype == np.int16
    assert pcm.size == round((0.1 + 3 * 0.5 + 2 * 0.25 + 0.6) * rate)
    assert word_times(WORDS, word_s=0.5, gap_s=0.25, lead_s=0.1)[1] == ("bravo", 0.85, 1.35)


def test_cached_build_returns_at_once_and_keeps_the_files(tiny_model_dir: Path) -> None:
    mdl = tiny_model_dir / "am" / "final.mdl"
    before = mdl.stat().st_mtime_ns

    started = time.perf_counter()
    assert build_synthetic_vosk_model(tiny_model_dir) == tiny_model_dir
    elapsed = time.perf_counter() - started

    assert elapsed < 0.05
    assert mdl.stat().st_mtime_ns == before
    assert synthetic_vosk_model_ready(tiny_model_dir)
    assert not synthetic_vosk_model_ready(tiny_model_dir, variant="small")


def test_build_is_deterministic_and_complete(tmp_path: Path, tiny_model_dir: Path) -> None:
    again = build_synthetic_vosk_model(tmp_path / "again")

    for name in (*MODEL_FILES, STAMP_NAME):
        assert (again / name).read_bytes() == (tiny_model_dir / name).read_bytes(), name
    # Nothing is left behind beside the model (the scratch directory is gone).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again"]


def test_build_refuses_to_replace_a_directory_it_did_not_write(tmp_path: Path) -> None:
    foreign = tmp_path / "real-model"
    foreign.mkdir()
    (foreign / "keep.txt").write_text("not ours")

    with pytest.raises(FileExistsError):
        build_synthetic_vosk_model(foreign)
    assert (foreign / "keep.txt").read_text() == "not ours"


def test_cli_writes_the_models_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The smallest Whisper and no Kokoro keep this test quick.
    micro = ["--whisper-size", "micro", "--only", "vosk,whisper"]
    status = devkit_main(
        ["models", "--synthetic", "--out", str(tmp_path), "--languages", "en", *micro]
    )

    assert status == 0
    assert not (tmp_path / "kokoro").exists()  # --only left it out
    assert synthetic_vosk_model_ready(tmp_path / "vosk" / "en")
    assert (tmp_path / "whisper" / "micro" / "model.bin").is_file()
    assert "vosk/en: building synthetic tiny model" in capsys.readouterr().out
    loaded = vosk.Model(str(tmp_path / "vosk" / "en"))
    assert [w["word"] for w in _decode(loaded, synthesize(["delta"]))] == ["delta"]

    assert devkit_main(["models", "--synthetic", "--out", str(tmp_path), *micro]) == 0
    assert "already built" in capsys.readouterr().out
    with pytest.raises(SystemExit) as refused:
        devkit_main(["models", "--synthetic", "--out", str(tmp_path), "--only", "vosk,piper"])
    assert refused.value.code == 2
    assert "unknown engine(s) piper" in capsys.readouterr().err


# The slowest test here (~0.3 s against ~0.01 s for the others): the small variant writes ~4M
# random weights (~16 MB) and runs them on every frame, which is its purpose (benchmarks).
def test_small_variant_decodes_like_tiny_at_real_model_cost(tmp_path: Path) -> None:
    # Built over a tiny model: a synthetic build of another variant is swapped out whole.
    build_synthetic_vosk_model(tmp_path / "model")
    model_dir = build_synthetic_vosk_model(tmp_path / "model", variant="small")
    assert synthetic_vosk_model_ready(model_dir, variant="small")
    assert not synthetic_vosk_model_ready(model_dir, variant="tiny")
    assert (model_dir / "am" / "final.mdl").stat().st_size > 15_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]

    found = _decode(vosk.Model(str(model_dir)), synthesize(["alpha", "bravo"]))

    _assert_words_at(found, word_times(["alpha", "bravo"]))
