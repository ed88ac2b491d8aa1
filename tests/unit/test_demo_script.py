"""The demo's built-in meetings: one track per participant, speech only in their turns.

And how the agent's part of the meeting is shown: its lines among the captions, its
captions on the meeting's clock.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import wave
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from devkit.demo import (
    MAX_PARTICIPANTS,
    SPOKEN_SCRIPT,
    TONE_SCRIPT,
    audio_meeting,
    captioned_meeting,
    spoken_meeting,
    tone_meeting,
)
from devkit.meetings import SCRIPT_TURNS, overlay_tone_words
from tests.audio_files import write_audio, write_channels

pytestmark = pytest.mark.unit


def _active(track: np.ndarray, frame: int = 1600) -> np.ndarray:
    usable = len(track) // frame * frame
    peaks: np.ndarray = np.abs(track[:usable].reshape(-1, frame)).max(axis=1)
    return peaks > 500


@pytest.mark.parametrize(
    ("build", "script"),
    [
        (tone_meeting, TONE_SCRIPT),
        (spoken_meeting, SPOKEN_SCRIPT),
        (captioned_meeting, SPOKEN_SCRIPT),
    ],
)
def test_turns_never_overlap(build: object, script: tuple[tuple[str, object], ...]) -> None:
    tracks = build(4)  # type: ignore[operator]
    assert list(tracks) == list(dict.fromkeys(who for who, _ in script[:4]))
    assert len({len(t) for t in tracks.values()}) == 1  # equal lengths, like a real room
    activity = np.array([_active(t) for t in tracks.values()])
    assert activity.any(axis=1).all(), "everyone speaks"
    assert (activity.sum(axis=0) <= 1).all(), "one speaker at a time"


@pytest.mark.parametrize("build", [tone_meeting, spoken_meeting, captioned_meeting])
@pytest.mark.parametrize("turns", [0, SCRIPT_TURNS + 1])
def test_turns_out_of_the_script_are_refused(build: object, turns: int) -> None:
    with pytest.raises(ValueError, match=f"turns must be 1 to {SCRIPT_TURNS}"):
        build(turns)  # type: ignore[operator]


def _heard(model_dir: Path, pcm: np.ndarray) -> list[str]:
    import vosk

    vosk.SetLogLevel(-1)
    recognizer = vosk.KaldiRecognizer(vosk.Model(str(model_dir)), 16000.0)
    words: list[str] = []
    data = pcm.astype("<i2").tobytes()
    for at in range(0, len(data), 3200):
        if recognizer.AcceptWaveform(data[at : at + 3200]):
            words += json.loads(recognizer.Result()).get("text", "").split()
    last: str = json.loads(recognizer.FinalResult()).get("text", "")
    return words + last.split()


def test_captioned_turns_are_heard_as_their_tone_words_only(vosk_model_dir: Path) -> None:
    """The synthetic Vosk model hears each voiced turn's tone words, and nothing of the speech.

    (What Whisper makes of the same turns needs the real tiny.en; see devkit.meetings.)
    """
    from devkit.voice import speak

    for (_, text), (_, words) in zip(SPOKEN_SCRIPT, TONE_SCRIPT, strict=True):
        speech = speak(text)
        assert _heard(vosk_model_dir, speech) != list(words)  # bare speech: random words
        mixed = overlay_tone_words(speech, words)
        assert len(mixed) == len(speech)
        assert _heard(vosk_model_dir, np.concatenate([mixed, np.zeros(16000, np.int16)])) == list(
            words
        ), text


def test_the_spoken_script_says_who_will_do_what() -> None:
    """The extractive summary finds the script's action items (the demo shows them)."""
    from orchestrator_service.summary.extractive import ExtractiveSummarizer
    from orchestrator_service.summary.timeline import TimelineEntry

    timeline = [
        TimelineEntry(f"seg{n}", who, who, f"TR_{who}", 5.0 * n, 5.0 * n + 4, text)
        for n, (who, text) in enumerate(SPOKEN_SCRIPT)
    ]
    people = list(dict.fromkeys(who for who, _ in SPOKEN_SCRIPT))
    summary = asyncio.run(ExtractiveSummarizer().summarize(timeline, participants=people))
    actions = {
        item.participant_identity: [a.text for a in item.actions]
        for item in summary.action_items
        if item.actions
    }
    assert actions == {
        "bob": ["I will tag the release candidate today."],
        "dave": ["I will review the documentation tomorrow morning."],
        "carol": [
            "Carol, could you send the document to Dave by noon?",
            "I will add those figures to the benchmark page.",
        ],
    }


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


def _wav(path: Path, pcm: npt.NDArray[np.int16], rate: int = 16000) -> Path:
    write_audio(path, "pcm_s16le", pcm, rate, "mono")
    return path


def _level(value: int, seconds: float = 0.5) -> npt.NDArray[np.int16]:
    return np.full(round(16000 * seconds), value, dtype=np.int16)


def test_multichannel_file_gives_one_speaker_per_channel(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    channels = [rng.integers(-9000, 9000, 16000, dtype=np.int16) for _ in range(3)]
    path = tmp_path / "meeting.tracks.flac"
    write_channels(path, channels, 16000)
    tracks = audio_meeting(path)
    assert list(tracks) == ["speaker1", "speaker2", "speaker3"]
    for track, channel in zip(tracks.values(), channels, strict=True):
        np.testing.assert_array_equal(track, channel)  # lossless, already 16 kHz: exact


def test_mono_file_is_a_meeting_of_one(tmp_path: Path) -> None:
    half_second_at_48k = np.full(24000, 1000, dtype=np.int16)
    tracks = audio_meeting(_wav(tmp_path / "solo.wav", half_second_at_48k, rate=48000))
    assert list(tracks) == ["speaker1"] and len(tracks["speaker1"]) == 8000  # 16 kHz


def test_audio_file_that_is_not_audio_is_a_clear_error(tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("not audio\n" * 50)
    with pytest.raises(SystemExit, match="one channel per participant") as info:
        audio_meeting(notes)
    assert str(notes) in str(info.value)


def test_missing_audio_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(SystemExit, match="no such file or folder") as info:
        audio_meeting(tmp_path / "nowhere")
    assert str(tmp_path / "nowhere") in str(info.value)


def test_audio_folder_skips_files_that_are_not_audio(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _wav(tmp_path / "erin.wav", _level(1000))
    (tmp_path / "README.md").write_text("# recordings\n" * 20)
    (tmp_path / "empty.wav").write_bytes(b"")
    assert list(audio_meeting(tmp_path)) == ["erin"]
    warnings = capsys.readouterr().err
    assert "skipping README.md" in warnings and "skipping empty.wav" in warnings
    (tmp_path / "erin.wav").unlink()
    with pytest.raises(SystemExit, match="no audio files"):
        audio_meeting(tmp_path)


def test_audio_folder_names_become_simple_identities(tmp_path: Path) -> None:
    for name in ("Alice Smith.wav", "josé.wav", "bob.tracks.wav", "日本.wav", "x_y-z.wav"):
        _wav(tmp_path / name, _level(1000))
    assert sorted(audio_meeting(tmp_path)) == sorted(
        ["Alice-Smith", "jose", "bob-tracks", "speaker5", "x_y-z"]
    )


def test_audio_folder_name_collision_is_a_clear_error(tmp_path: Path) -> None:
    _wav(tmp_path / "dana b.wav", _level(1000))
    _wav(tmp_path / "dana-b.wav", _level(1000))
    with pytest.raises(SystemExit, match="'dana-b'") as info:
        audio_meeting(tmp_path)
    assert "dana b.wav" in str(info.value) and "dana-b.wav" in str(info.value)


def test_more_than_sixteen_participants_is_a_clear_error(tmp_path: Path) -> None:
    folder = tmp_path / "crowd"
    folder.mkdir()
    for n in range(MAX_PARTICIPANTS + 1):
        _wav(folder / f"p{n:02d}.wav", _level(1000, seconds=0.1))
    with pytest.raises(SystemExit, match=f"at most {MAX_PARTICIPANTS} participants"):
        audio_meeting(folder)
    wide = tmp_path / "wide.wav"
    write_channels(wide, [_level(n, seconds=0.1) for n in range(17)], 16000, "pcm_s16le")
    with pytest.raises(SystemExit, match=f"17 channels.*at most {MAX_PARTICIPANTS}"):
        audio_meeting(wide)


def test_the_agents_lines_go_above_the_live_captions() -> None:
    from devkit.live_captions import TerminalCaptions
    from tests.unit.test_devkit_cli import _caption, _screen, _Tty

    out = _Tty()
    sink = TerminalCaptions(out, width=80)

    async def play() -> None:
        await sink.publish(_caption("alice", "alpha"))
        sink.note("  [00:00.5] tts_control alice -> agent: stop")
        # Printed like a final: the live line stays below it, where it was being written.
        assert _screen(out.getvalue()) == [
            "  [00:00.5] tts_control alice -> agent: stop",
            "  ...     alice: alpha",
        ]
        await sink.publish(_caption("alice", "alpha bravo", final=True))
        sink.close()

    asyncio.run(play())
    assert _screen(out.getvalue()) == [
        "  [00:00.5] tts_control alice -> agent: stop",
        "  [00:01.0]  alice: alpha bravo",
        "",
    ]


def test_the_agents_captions_are_shown_on_the_meetings_clock() -> None:
    from agent.captions import Caption
    from devkit.demo_speech import _MeetingTimes

    shown: list[Caption] = []
    said: list[str] = []

    class Sink:
        async def publish(self, caption: Caption) -> None:
            shown.append(caption)

    # The voice track plays in real time; at --speed 4 the meeting's clock runs 4 times faster.
    times = _MeetingTimes(Sink(), 4.0, said)
    words = Caption("agent", "TR_agent", "w-0", "Good", False, start_s=1.5, end_s=1.7)
    asyncio.run(times.publish(words))
    asyncio.run(times.publish(dataclasses.replace(words, text="Good morning.", final=True)))
    assert [(c.start_s, c.end_s) for c in shown] == [(6.0, 6.8), (6.0, 6.8)]
    assert said == ["Good morning."]  # the finals: what the room heard the agent say
