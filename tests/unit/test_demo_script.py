"""The demo's built-in meetings: one track per participant, speech only in their turns."""

from __future__ import annotations

import numpy as np
import pytest

from devkit.demo import SPOKEN_SCRIPT, TONE_SCRIPT, spoken_meeting, tone_meeting

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
