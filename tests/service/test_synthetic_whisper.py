"""The synthetic Whisper, run by the real faster-whisper: structure only, never content."""

from __future__ import annotations

import hashlib
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from devkit.synthetic_whisper import (
    MODEL_FILES,
    STAMP_NAME,
    build_synthetic_whisper,
    synthetic_whisper_ready,
)

pytestmark = pytest.mark.service

SAMPLE_RATE = 16000
DURATION_S = 3.0


@pytest.fixture(scope="module", autouse=True)
def _offline() -> Iterator[None]:
    # Anything that reaches for the hub must fail here, as it would on the build machines.
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HF_HUB_OFFLINE", "1")
        yield


@pytest.fixture(scope="module")
def micro_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_synthetic_whisper(tmp_path_factory.mktemp("whisper") / "micro")


@pytest.fixture(scope="module")
def model(micro_dir: Path) -> Any:
    from faster_whisper import WhisperModel

    return WhisperModel(str(micro_dir), device="cpu", compute_type="int8", cpu_threads=2)


def _sine() -> npt.NDArray[np.float32]:
    t = np.arange(int(DURATION_S * SAMPLE_RATE)) / SAMPLE_RATE
    return (0.3 * np.sin(2 * np.pi * 440.0 * t)).astype(np.float32)


def _check_structure(segments: list[Any], info: Any) -> None:
    assert isinstance(segments, list)
    assert isinstance(info.language, str)
    assert info.duration == pytest.approx(DURATION_S, abs=0.01)
    # Random weights put some segments past the end of the clip, where faster-whisper drops
    # the words: require words overall, and well-formed ones wherever they are.
    assert any(segment.words for segment in segments), "word_timestamps=True gives words"
    for segment in segments:
        assert segment.start <= segment.end
        assert segment.words is not None
        for word in segment.words:
            assert word.start <= word.end
            assert isinstance(word.word, str)


def test_files_and_stamp(micro_dir: Path) -> None:
    for name in MODEL_FILES:
        assert (micro_dir / name).is_file(), name
    stamp = json.loads((micro_dir / STAMP_NAME).read_text(encoding="utf-8"))
    assert stamp["size"] == "micro"
    assert stamp["seed"] == 0
    assert synthetic_whisper_ready(micro_dir, size="micro", seed=0)
    assert not synthetic_whisper_ready(micro_dir, size="micro", seed=1)
    # The converter's config must carry what language detection and word timestamps need.
    config = json.loads((micro_dir / "config.json").read_text(encoding="utf-8"))
    assert len(config["lang_ids"]) == 99
    assert config["alignment_heads"]


def test_cached_build_returns_fast(micro_dir: Path) -> None:
    before = (micro_dir / "model.bin").stat().st_mtime_ns
    started = time.perf_counter()
    assert build_synthetic_whisper(micro_dir) == micro_dir
    assert time.perf_counter() - started < 0.5
    assert (micro_dir / "model.bin").stat().st_mtime_ns == before


def test_refuses_to_replace_foreign_dir(tmp_path: Path) -> None:
    foreign = tmp_path / "real-model"
    foreign.mkdir()
    (foreign / "model.bin").write_bytes(b"not ours")
    with pytest.raises(FileExistsError):
        build_synthetic_whisper(foreign)
    assert (foreign / "model.bin").read_bytes() == b"not ours"


def test_unknown_size_rejected(tmp_path: Path) -> None:
    with pytest.raises(ValueError):
        build_synthetic_whisper(tmp_path / "x", size="huge")  # type: ignore[arg-type]


def test_is_multilingual(model: Any) -> None:
    # CTranslate2 >= 4.7 needs "" in the vocabulary for this (recipe pitfall).
    assert model.model.is_multilingual


def test_transcribe_english_with_word_timestamps(model: Any) -> None:
    segments_iter, info = model.transcribe(
        _sine(), word_timestamps=True, vad_filter=False, temperature=0, language="en"
    )
    segments = list(segments_iter)
    _check_structure(segments, info)
    assert info.language == "en"


def test_transcribe_detects_a_language(model: Any) -> None:
    segments_iter, info = model.transcribe(
        _sine(), word_timestamps=True, vad_filter=False, temperature=0
    )
    segments = list(segments_iter)
    _check_structure(segments, info)
    assert 0.0 <= info.language_probability <= 1.0


def test_deterministic(micro_dir: Path, tmp_path: Path) -> None:
    again = build_synthetic_whisper(tmp_path / "micro")

    def digest(path: Path) -> str:
        return hashlib.sha256((path / "model.bin").read_bytes()).hexdigest()

    assert digest(again) == digest(micro_dir)
    assert os.listdir(again) and sorted(os.listdir(again)) == sorted(os.listdir(micro_dir))
