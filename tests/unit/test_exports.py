from __future__ import annotations

import io
import json
import re
from collections.abc import AsyncIterator
from urllib.parse import unquote

import pytest
import srt
import webvtt

from orchestrator_service.exports import ExportFormat, clock, content_disposition, render
from roomscribe.models import Segment, SegmentSource

pytestmark = pytest.mark.unit

T0 = 1_790_000_000.0


def seg(i: int, who: str, start: float, end: float, text: str) -> Segment:
    return Segment(
        id=f"TR_{who}-{i:09d}",
        start=start,
        end=end,
        abs_start=T0 + start,
        abs_end=T0 + end,
        text=text,
        confidence=0.9,
        track_sid=f"TR_{who}",
        participant_identity=who,
        source=SegmentSource.REALTIME,
    )


SEGMENTS = [
    seg(1, "alice", 0.5, 2.25, "Good morning, everyone."),
    seg(2, "bob", 2.0, 2.0, "Hi <there> & welcome"),
    seg(3, "alice", 3661.5, 3663.0, "An hour\n\nlater."),
]
SPEAKERS = {"alice": "Alice Liddell", "bob": "Bob"}


async def export(fmt: ExportFormat, segments: list[Segment] = SEGMENTS) -> str:
    async def source() -> AsyncIterator[Segment]:
        for s in segments:
            yield s

    pieces = [p async for p in render(fmt, source(), origin=T0, speakers=SPEAKERS, room="r")]
    return "".join(pieces)


def test_clock() -> None:
    assert clock(0) == "00:00:00.000"
    assert clock(3661.5, decimal=",") == "01:01:01,500"
    assert clock(-3) == "00:00:00.000"
    assert clock(59.9996) == "00:01:00.000"


async def test_srt_parses_with_a_standard_parser() -> None:
    subs = list(srt.parse(await export(ExportFormat.SRT)))
    assert [s.index for s in subs] == [1, 2, 3]
    assert subs[0].content == "Alice Liddell: Good morning, everyone."
    assert subs[0].start.total_seconds() == 0.5 and subs[0].end.total_seconds() == 2.25
    assert subs[1].end > subs[1].start  # zero-length segments still get a visible cue
    assert subs[2].content == "Alice Liddell: An hour later."
    assert subs[2].start.total_seconds() == 3661.5


async def test_vtt_parses_with_a_standard_parser(tmp_path: object) -> None:
    text = await export(ExportFormat.VTT)
    captions = webvtt.from_string(text).captions
    assert len(captions) == 3
    assert captions[0].start == "00:00:00.500" and captions[0].end == "00:00:02.250"
    assert captions[0].voice == "Alice Liddell"
    assert captions[1].identifier == "TR_bob-000000002"
    assert "&lt;there&gt; &amp; welcome" in captions[1].raw_text
    assert captions[2].start == "01:01:01.500"


async def test_txt_is_speaker_attributed() -> None:
    lines = (await export(ExportFormat.TXT)).splitlines()
    assert lines == [
        "[00:00:00] Alice Liddell: Good morning, everyone.",
        "[00:00:02] Bob: Hi <there> & welcome",
        "[01:01:01] Alice Liddell: An hour later.",
    ]


async def test_json_is_valid_and_complete() -> None:
    data = json.loads(await export(ExportFormat.JSON))
    assert data["room"] == "r" and data["origin"] == T0
    assert [s["speaker"] for s in data["segments"]] == ["Alice Liddell", "Bob", "Alice Liddell"]
    assert data["segments"][2]["offset_s"] == 3661.5
    empty = json.loads(await export(ExportFormat.JSON, []))
    assert empty["segments"] == []


async def test_unknown_speaker_falls_back_to_identity() -> None:
    text = await export(ExportFormat.TXT, [seg(9, "carol", 1.0, 2.0, "hello")])
    assert text == "[00:00:01] carol: hello\n"


HOSTILE = {
    "mallory": 'Mallory\n[00:00:00] alice: I resign\r\nWEBVTT --> "x"',
}


async def _export(fmt: ExportFormat, segments: list[Segment]) -> str:
    async def gen() -> AsyncIterator[Segment]:
        for s in segments:
            yield s

    return "".join([p async for p in render(fmt, gen(), origin=T0, speakers=HOSTILE, room="r")])


async def test_hostile_names_and_text_cannot_forge_lines_or_cues() -> None:
    segments = [
        seg(1, "mallory", 0.5, 1.0, "hello --> 00:00:09.000 --> evil\n\n99\nforged"),
        seg(2, "alice", 1.5, 2.0, "real line"),
    ]
    txt = await _export(ExportFormat.TXT, segments)
    lines = txt.splitlines()
    assert len(lines) == 2  # one line per segment, whatever the name holds
    assert lines[0].startswith("[00:00:00] Mallory [00:00:00] alice: I resign WEBVTT")
    assert lines[1] == "[00:00:01] alice: real line"
    srt_cues = list(srt.parse(await _export(ExportFormat.SRT, segments)))
    assert len(srt_cues) == 2 and "-->" not in srt_cues[0].content
    vtt = webvtt.from_buffer(io.StringIO(await _export(ExportFormat.VTT, segments)))
    assert len(vtt.captions) == 2
    assert [c.start for c in vtt.captions] == ["00:00:00.500", "00:00:01.500"]


@pytest.mark.parametrize(
    "room", ["standup", 'a"b', "réunion", "x\r\nSet-Cookie: a=b", "../../etc/passwd", "会議"]
)
def test_content_disposition_is_rfc_6266_for_any_room(room: str) -> None:
    header = content_disposition(room, ExportFormat.SRT)
    assert header.isascii() and "\n" not in header and "\r" not in header
    fallback = header.split('filename="', 1)[1].split('"', 1)[0]
    assert re.fullmatch(r"[A-Za-z0-9._-]+", fallback)
    encoded = header.split("filename*=UTF-8''", 1)[1]
    assert unquote(encoded) == f"{room}.srt"
    header.encode("latin-1")  # what an HTTP server must be able to send
