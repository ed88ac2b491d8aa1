"""The demo from its command line on one multichannel file: a channel per participant.

``python -m devkit demo --audio FILE`` with synthetic models: the built-in tone meeting is
written as one 3-channel FLAC file, and each channel must come out as its own participant,
``speaker1`` to ``speaker3``, whose live captions are exactly the tone words of that channel.
"""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

import pytest

from devkit.__main__ import main
from devkit.demo import ROOM, TONE_SCRIPT, tone_meeting
from devkit.demo_speech import AGENT
from roomscribe.models import RoomStatus, TrackStatus
from roomscribe.store import SQLiteTranscriptStore
from tests.audio_files import write_channels

pytestmark = pytest.mark.e2e

TURNS = 3
# A final caption line: "  [00:00.3] speaker1: alpha bravo charlie".
_FINAL = re.compile(r"^\s*\[\d\d:\d\d\.\d\]\s+(\S+): (.*)$", re.MULTILINE)


def test_demo_plays_a_multichannel_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    tracks = tone_meeting(TURNS)
    meeting = tmp_path / "meeting.tracks.flac"
    write_channels(meeting, list(tracks.values()), 16000)
    spoken: dict[str, list[str]] = {}
    for who, words in TONE_SCRIPT[:TURNS]:
        spoken.setdefault(who, []).extend(words)
    # Channel n (in the dict's order) is speakerN: the words it carried are theirs.
    expected = {f"speaker{n}": spoken[who] for n, who in enumerate(tracks, start=1)}
    monkeypatch.chdir(tmp_path)  # the demo writes var/demo and var/models* under the cwd
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # the demo sets it; undone after the test

    argv = ["demo", "--synthetic", "--exit", "--speed", "8", "--port", "0"]
    status = main([*argv, "--whisper-size", "micro", "--audio", str(meeting)])

    assert status == 0
    text = capsys.readouterr().out
    captions: dict[str, list[str]] = {}
    for who, words in _FINAL.findall(text):
        if who != AGENT:  # the agent's own lines (its speech, its TTS events): test_demo.py
            captions.setdefault(who, []).extend(words.split())
    assert captions == expected
    assert f"whisper [{TURNS}/{TURNS}]" in text
    assert re.search(r"REST API: http://127\.0\.0\.1:\d+/docs", text)
    asyncio.run(_check_store(tmp_path / "var" / "demo" / "roomscribe.db", set(expected)))


async def _check_store(db: Path, identities: set[str]) -> None:
    store = SQLiteTranscriptStore(db)
    await store.init()
    try:
        room = await store.get_room(ROOM)
        assert room.status is RoomStatus.COMPLETED and room.summary is not None
        assert set(room.participants) == identities
        stored = await store.list_tracks(ROOM)
        assert {t.participant_identity for t in stored} == identities
        assert all(t.status is TrackStatus.TRANSCRIBED for t in stored)
    finally:
        await store.close()
