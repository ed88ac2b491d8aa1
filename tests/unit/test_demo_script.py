"""The demo's built-in meetings: one track per participant, speech only in their turns."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from devkit.demo import SPOKEN_SCRIPT, TONE_SCRIPT, audio_meeting, spoken_meeting, tone_meeting

pytestmark = pytest.mark.unit


def _active(track: np.ndarray, frame: int = 1600) -> np.ndarray:
    usable = len(track) // frame * frame
    peaks: np.ndarray = np.abs(track[:usable].reshape(-1, frame)).max(axis=1)
    return peaks > 500


@pytest.mark.parametrize(
    ("build", "script"), [(tone_meeting, TONE_SCRIPT), (spoken_meeting, SPOKEN_SCRIPT)]
)
def test_turns_never_overlap(build: object, script: tuple[tuple[str, object], ...]) -> None:
    tracks = build(4)  # type: ignore[operator]
    assert list(tracks) == list(dict.fromkeys(who for who, _ in script[:4]))
    assert len({len(t) for t in tracks.values()}) == 1  # equal lengths, like a real room
    activity = np.array([_active(t) for t in tracks.values()])
    assert activity.any(axis=1).all(), "everyone speaks"
    assert (activity.sum(axis=0) <= 1).all(), "one speaker at a time"


def test_espeak_voice_is_speech_length() -> None:
    from devkit.voice import speak

    pcm = speak("I will send the report by Friday.")
    assert pcm.dtype == np.int16 and 1.0 < len(pcm) / 16000 < 4.0


def test_audio_folder_gives_one_track_per_file(tmp_path: Path) -> None:
    for name, seconds, rate in (("erin", 1.0, 16000), ("frank", 2.5, 48000)):
        with wave.open(str(tmp_path / f"{name}.wav"), "wb") as wav:
            wav.setnchannels(1)
            wav.setsampwidth(2)
            wav.setframerate(rate)
            wav.writeframes((np.ones(int(rate * seconds)) * 1000).astype("<i2").tobytes())
    (tmp_path / ".DS_Store").write_bytes(b"junk")
    tracks = audio_meeting(tmp_path)
    assert list(tracks) == ["erin", "frank"]
    assert {len(t) for t in tracks.values()} == {40000}  # padded to the longest, 16 kHz


def test_empty_audio_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no audio files"):
        audio_meeting(tmp_path)
