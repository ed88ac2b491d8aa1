"""Transcript exports: SRT, WebVTT, speaker-attributed text, and JSON.

Every format is rendered as a stream of text pieces from an async iterator of segments, so
a long meeting is exported page by page without holding it in memory. Times are relative to
``origin`` (the meeting's start, epoch seconds), never negative.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Mapping
from enum import StrEnum
from typing import Any
from urllib.parse import quote

from roomscribe.models import Segment


class ExportFormat(StrEnum):
    """The export formats ``GET .../transcript.{format}`` serves."""

    SRT = "srt"
    VTT = "vtt"
    TXT = "txt"
    JSON = "json"

    @property
    def media_type(self) -> str:
        """The HTTP content type of this format."""
        return {
            ExportFormat.SRT: "application/x-subrip; charset=utf-8",
            ExportFormat.VTT: "text/vtt; charset=utf-8",
            ExportFormat.TXT: "text/plain; charset=utf-8",
            ExportFormat.JSON: "application/json",
        }[self]


def clock(seconds: float, *, decimal: str = ".", hours_always: bool = True) -> str:
    """Format seconds as ``HH:MM:SS.mmm`` (``,`` before the milliseconds for SRT)."""
    millis = max(0, round(seconds * 1000))
    hours, rest = divmod(millis, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, ms = divmod(rest, 1000)
    if not hours_always and hours == 0:
        return f"{minutes:02d}:{secs:02d}{decimal}{ms:03d}"
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{decimal}{ms:03d}"


def _one_line(text: str) -> str:
    # A blank line ends a cue in SRT and VTT, and a newline starts a forged line in TXT:
    # names and text from outside never contain one (str.split also splits on \r, \v, \f,
    # \x1c-\x1e, \x85, \u2028 and \u2029, every line break a reader may honour).
    return " ".join(text.split())


def _no_arrow(text: str) -> str:
    # "-->" is the cue timing separator: in a cue's text or id it breaks SRT/VTT parsers.
    return text.replace("-->", "->")


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def content_disposition(room: str, fmt: ExportFormat) -> str:
    """An RFC 6266 ``attachment`` header naming the file after the room.

    ``filename`` is an ASCII fallback (other characters become ``_``, so no quote, backslash
    or line break can end the header), ``filename*`` the exact name in UTF-8 (RFC 8187).
    """
    name = f"{room}.{fmt.value}"
    fallback = re.sub(r"[^A-Za-z0-9._-]", "_", name)
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"


def _span(seg: Segment, origin: float) -> tuple[float, float]:
    start = max(0.0, seg.abs_start - origin)
    # Players reject cues that end before they start; zero-length ones get a frame.
    return start, max(start + 0.04, seg.abs_end - origin)


#: Digits kept in the JSON export: times to the millisecond (what every other format shows),
#: confidences to four places. Recognizers work in float32; ``0.2999999523162842`` is noise.
_TIME_DIGITS = 3
_CONFIDENCE_DIGITS = 4


def _rounded(value: Any, key: str = "") -> Any:
    """``value`` with every float rounded for the export (recursively)."""
    if isinstance(value, float):
        return round(value, _CONFIDENCE_DIGITS if key == "confidence" else _TIME_DIGITS)
    if isinstance(value, dict):
        return {k: _rounded(v, k) for k, v in value.items()}
    if isinstance(value, list):
        return [_rounded(v, key) for v in value]
    return value


async def render(
    fmt: ExportFormat,
    segments: AsyncIterator[Segment],
    *,
    origin: float,
    speakers: Mapping[str, str],
    room: str,
) -> AsyncIterator[str]:
    """Yield the export of ``segments`` (sorted by time) piece by piece.

    Args:
        fmt: The format.
        segments: The transcript, in ``(abs_start, id)`` order.
        origin: Epoch seconds that become 00:00:00.
        speakers: Display names by participant identity (identity when missing).
        room: The room's name (JSON export header).
    """
    index = 0
    if fmt is ExportFormat.VTT:
        yield "WEBVTT\n\n"
    elif fmt is ExportFormat.JSON:
        header = {"room": room, "origin": round(origin, _TIME_DIGITS)}
        yield json.dumps(header)[:-1] + ', "segments": ['
    async for seg in segments:
        index += 1
        speaker = _one_line(speakers.get(seg.participant_identity, seg.participant_identity))
        text = _one_line(seg.text)
        start, end = _span(seg, origin)
        if fmt is ExportFormat.SRT:
            yield (
                f"{index}\n{clock(start, decimal=',')} --> {clock(end, decimal=',')}\n"
                f"{_no_arrow(speaker)}: {_no_arrow(text)}\n\n"
            )
        elif fmt is ExportFormat.VTT:
            yield (
                f"{_no_arrow(_one_line(seg.id))}\n{clock(start)} --> {clock(end)}\n"
                f"<v {_vtt_escape(speaker)}>{_vtt_escape(text)}\n\n"
            )
        elif fmt is ExportFormat.TXT:
            yield f"[{clock(start)[:-4]}] {speaker}: {text}\n"
        else:
            item = seg.model_dump(mode="json") | {"speaker": speaker, "offset_s": start}
            yield ("," if index > 1 else "") + "\n" + json.dumps(_rounded(item))
    if fmt is ExportFormat.JSON:
        yield "\n]}\n"
