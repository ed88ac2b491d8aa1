"""What the demo prints after the meeting.

The Whisper pass and its transcript, the summary and action items, how to reach the API,
and how to serve the demo's database again once the demo is gone.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import statistics
import sys
import time
import webbrowser
from collections.abc import Sequence
from pathlib import Path
from typing import Final, TextIO
from urllib.parse import quote

from devkit.api_tokens import mint_api_token
from devkit.live_captions import clock
from roomscribe.models import (
    RoomStatus,
    Summary,
    TrackStatus,
    TranscriptQuery,
    TranscriptSource,
)
from roomscribe.store import SQLiteTranscriptStore

#: Whisper segments printed at most after the pass (the API has them all).
MAX_WHISPER_LINES: Final = 24


async def follow_whisper(
    store: SQLiteTranscriptStore,
    room: str,
    sids: dict[str, str],
    out: TextIO,
    timeout_s: float = 1800,
) -> None:
    """Print each track's Whisper progress until the room completes (or fails to).

    Raises:
        SystemExit: The room did not complete within ``timeout_s``.
    """
    seen: dict[str, TrackStatus] = {}
    names = {sid: who for who, sid in sids.items()}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for sid, who in names.items():
            track = await store.get_track(sid)
            if seen.get(sid) != track.status:
                seen[sid] = track.status
                detail = ""
                if track.status is TrackStatus.TRANSCRIBED and track.whisper is not None:
                    w = track.whisper
                    detail = (
                        f" ({w.segments} segment{'s' * (w.segments != 1)}, {w.audio_s:.0f} s "
                        f"of audio, RTF {w.real_time_factor:.3f})"
                    )
                elif track.status is TrackStatus.FAILED:
                    detail = f" ({track.status_reason})"
                done = sum(
                    s in (TrackStatus.TRANSCRIBED, TrackStatus.FAILED) for s in seen.values()
                )
                out.write(f"  whisper [{done}/{len(names)}] {who}: {track.status.value}{detail}\n")
                out.flush()
        if (await store.get_room(room)).status is RoomStatus.COMPLETED:
            return
        await asyncio.sleep(0.25)
    raise SystemExit(f"the room did not complete within {timeout_s:.0f} s")


async def print_whisper_transcript(store: SQLiteTranscriptStore, room: str, out: TextIO) -> int:
    """Print the Whisper transcript's first segments; return how many segments it has."""
    page = await store.query_transcript(
        TranscriptQuery(room=room, source=TranscriptSource.WHISPER, limit=1000)
    )
    segments = page.segments
    if not segments:
        out.write("\nWhisper transcript: no segments (the transcript stays live)\n")
        return 0
    more = " (more on the API)" if page.next_cursor else ""
    out.write(f"\nWhisper transcript ({len(segments)} segments{more}):\n")
    for seg in segments[:MAX_WHISPER_LINES]:
        out.write(f"  [{clock(seg.start)}] {seg.participant_identity:>6}: {seg.text}\n")
    if len(segments) > MAX_WHISPER_LINES:
        out.write(f"  ... {len(segments) - MAX_WHISPER_LINES} more\n")
    return len(segments)


def print_summary(out: TextIO, summary: Summary | None, end_to_summary_s: float) -> None:
    """Print the summary and its action items."""
    out.write(f"\nsummary ({end_to_summary_s:.1f} s after the meeting ended):\n")
    if summary is None:
        out.write("  (none)\n")
        return
    out.write(f"  model: {summary.model}\n  {summary.text}\n")
    items = [(i.participant_identity, a.text) for i in summary.action_items for a in i.actions]
    out.write("\naction items:\n" if items else "\naction items: none\n")
    for who, text in items:
        out.write(f"  - {who}: {text}\n")


def page_link(url: str, room: str, api_secret: str) -> str:
    """The web app's page of ``room``, signed in with an admin token (in the fragment).

    The fragment never reaches the server or its logs; the page moves the token to the tab's
    session storage and out of the address bar.
    """
    token = mint_api_token(api_secret, subject="demo", admin=True, ttl_s=86400)
    return f"{url}/#/rooms/{quote(room, safe='')}?token={token}"


def open_page(link: str) -> bool:
    """Open ``link`` in the desktop's browser, only where there is a desktop to open it on.

    On a bare terminal (ssh, a container) ``webbrowser`` would start a text browser in the
    demo's own terminal, so there the link is only printed.
    """
    desktop = sys.platform in ("darwin", "win32") or bool(
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )
    if not desktop:
        return False
    try:
        return webbrowser.open(link, new=2)
    except webbrowser.Error:
        return False


def print_api_access(out: TextIO, url: str, room: str, api_secret: str) -> None:
    """Print the web app's link, the API's address, an admin token and ``curl`` commands."""
    token = mint_api_token(api_secret, subject="demo", admin=True, ttl_s=86400)
    out.write(
        f"\nweb app: {page_link(url, room, api_secret)}\n"
        f"REST API: {url}/docs\n"
        f"  export TOKEN={token}\n"
        f'  curl -H "Authorization: Bearer $TOKEN" {url}/v1/rooms/{room}\n'
        f'  curl -H "Authorization: Bearer $TOKEN" "{url}/v1/rooms/{room}/transcript?source=best"\n'
        f'  curl -H "Authorization: Bearer $TOKEN" "{url}/v1/rooms/{room}/transcript.srt"\n'
    )
    out.flush()


def _python() -> str:
    """This interpreter as a user would type it (``.venv/bin/python`` from the checkout)."""
    exe = Path(sys.executable)
    try:
        return str(exe.relative_to(Path.cwd()))
    except ValueError:
        return os.fspath(exe)


def reserve_hint(work_dir: Path, port: int, room: str, api_secret: str) -> str:
    """How to serve the demo's database with the orchestrator once the demo has ended.

    Args:
        work_dir: The demo's folder (its SQLite file and objects; wiped by the next demo).
        port: The port to serve on (0 reads as 8000).
        room: The demo's room, for the example request.
        api_secret: The demo's API token secret.
    """
    python = shlex.quote(_python())
    env = (
        f"ROOMSCRIBE_SQLITE_PATH={shlex.quote(str(work_dir / 'roomscribe.db'))} "
        f"ROOMSCRIBE_OBJECTS_DIR={shlex.quote(str(work_dir / 'objects'))} \\\n"
        f"  ROOMSCRIBE_API_JWT_SECRET={shlex.quote(api_secret)}"
    )
    port = port or 8000
    return (
        f"\nThe demo's database stays in {work_dir} until the next demo. To serve it again:\n"
        f"  {env} \\\n"
        f"  ROOMSCRIBE_ORCHESTRATOR_PORT={port} {python} -m orchestrator_service\n"
        f"and, in another shell, an admin token for it:\n"
        f"  export TOKEN=$(ROOMSCRIBE_API_JWT_SECRET={shlex.quote(api_secret)} "
        f"{python} -m devkit token --admin)\n"
        f'  curl -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{port}/v1/rooms/{room}\n'
    )


def latency_summary(latencies: Sequence[float]) -> tuple[float, float]:
    """p50 and p95 of caption latencies in ms (0, 0 when there are none)."""
    if not latencies:
        return 0.0, 0.0
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95
