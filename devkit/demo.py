"""``python -m devkit demo``: a simulated meeting through the real services, on one machine.

Everything runs in this process on the embedded defaults: the devkit LiveKit emulator
(webhooks, egress into the local object store), the orchestrator, the STT service, a Whisper
worker, an SQLite store under ``var/demo``. Each participant's audio goes through the agent's
real track transcriber (at real-time pace through a local ``rtc`` track, or faster with
``--speed``), so the terminal shows the live captions as LiveKit front ends would get them,
then the Whisper pass, the summary and action items, and where the REST API is.

Models: real ones are fetched into ``var/models`` when missing; where that fails (offline),
or with ``--synthetic``, synthetic models are built instead (see the banner): the built-in
meeting is then "spoken" as tone words that the synthetic Vosk model hears exactly, and the
random-weight Whisper's text is meaningless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import sys
import time
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import jwt
import numpy as np
import numpy.typing as npt

from agent.captions import Caption
from agent.orchestrator import OrchestratorClient
from agent.stt_plugin import RoomscribeSTT
from agent.transcriber import TrackTranscriber
from devkit.livekit_emulator import LiveKitEmulator
from devkit.local_tracks import track_frames
from devkit.model_fetch import ModelFetchError, fetch_vosk, fetch_whisper
from devkit.tones import synthesize
from roomscribe.audio import decode_file
from roomscribe.auth import issue_internal_token
from roomscribe.models import RoomStatus, Summary, TrackStatus
from roomscribe.objectstore import LocalObjectStore
from roomscribe.serving import running
from roomscribe.store import SQLiteTranscriptStore

ROOM = "demo-standup"
_TRACK_DONE = (TrackStatus.TRANSCRIBED, TrackStatus.FAILED)
_RATE = 16000
_LIVEKIT_KEY = "devkey"
_SECRETS = {
    "livekit": "demo-livekit-secret-0123456789abcdef",
    "internal": "demo-internal-secret-0123456789abcdef",
    "api": "demo-api-secret-0123456789abcdefghijk",
}

#: The built-in meeting in tone words: (speaker, words), one turn after another.
TONE_SCRIPT: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("alice", ("alpha", "bravo", "charlie")),
    ("bob", ("delta", "echo")),
    ("carol", ("foxtrot", "golf", "hotel")),
    ("dave", ("india", "juliett")),
    ("alice", ("kilo", "lima")),
    ("bob", ("mike", "november", "oscar")),
    ("carol", ("papa", "alpha")),
    ("dave", ("bravo", "charlie", "delta")),
)

#: The built-in meeting in words, voiced with espeak-ng when real models are in use.
SPOKEN_SCRIPT: tuple[tuple[str, str], ...] = (
    ("alice", "Good morning everyone. Let's start with the release status."),
    ("bob", "The build is green. I will tag the release candidate today."),
    ("carol", "The documentation still needs the new export formats."),
    ("dave", "I can review the documentation tomorrow morning."),
    ("alice", "Great. Carol, can you send the draft to Dave by noon?"),
    ("bob", "One more thing. The load test showed thirty streams on two cores."),
    ("carol", "I will add those figures to the benchmark page."),
    ("dave", "Then we are done. Thanks everyone."),
)

BANNER = """\
==============================================================================
 SYNTHETIC MODELS{why}
 Live captions come from a tiny synthetic Vosk model that hears pure tones as
 words (alpha, bravo, ...): the built-in meeting is "spoken" in such tones, so
 the captions are exact. The Whisper pass runs a random-weight Whisper of the
 real architecture: its timings are realistic, its text is meaningless.
 For real speech: run where the models can be downloaded, or put them in
 var/models (vosk/en, whisper/small), and use --audio DIR.
=============================================================================="""


@dataclass
class DemoOptions:
    """What the demo runs.

    Attributes:
        synthetic: Use synthetic models without trying to download real ones.
        speed: Playback speed (1.0 = real time, through a local rtc track).
        audio_dir: One audio file per participant (any common format); None: built-in script.
        turns: How many turns of the built-in script to play (tone words with synthetic
            models, espeak-ng speech with real ones).
        models_dir: Where real models live (``vosk/en``, ``whisper/<size>``).
        work_dir: Where the demo's store, objects and synthetic models go (wiped per run).
        port: The orchestrator's port (its REST API and ``/docs``).
        whisper_size: The Whisper size (synthetic builds use it too).
        keep_serving: Keep the API up after the meeting until Ctrl+C.
        out: Where the demo writes its report.
    """

    synthetic: bool = False
    speed: float = 1.0
    audio_dir: Path | None = None
    turns: int = len(TONE_SCRIPT)
    models_dir: Path = Path("var/models")
    work_dir: Path = Path("var/demo")
    port: int = 8000
    whisper_size: str = "small"
    keep_serving: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)


@dataclass
class DemoReport:
    """What happened, for the terminal and for tests."""

    synthetic: bool
    participants: dict[str, str]  # identity -> track sid
    finals: dict[str, list[str]]  # identity -> final caption texts
    caption_latency_ms: list[float]
    meeting_s: float
    end_to_summary_s: float
    summary: str
    action_items: dict[str, list[str]]
    api_url: str


class TerminalCaptions:
    """Prints finals as lines; partials overwrite one status line on a terminal."""

    def __init__(self, out: TextIO) -> None:
        """Write to ``out``; partials only when it is a terminal."""
        self._out = out
        self._tty = out.isatty()

    async def publish(self, caption: Caption) -> None:
        """Show one caption."""
        if caption.final:
            prefix = "\r\033[K" if self._tty else ""
            self._out.write(
                f"{prefix}  [{_clock(caption.start_s)}] {caption.participant:>6}: {caption.text}\n"
            )
        elif self._tty:
            self._out.write(f"\r\033[K  ...    {caption.participant:>6}: {caption.text}")
        self._out.flush()


def _clock(seconds: float) -> str:
    return f"{int(seconds // 60):02d}:{seconds % 60:04.1f}"


def tone_meeting(turns: int) -> dict[str, npt.NDArray[np.int16]]:
    """The built-in tone script as one track per participant (silent while others speak)."""
    script = TONE_SCRIPT[: max(1, turns)]
    pieces = [synthesize(list(words), lead_s=0.3, tail_s=1.0) for _, words in script]
    return _turns_to_tracks([who for who, _ in script], pieces)


def spoken_meeting(turns: int) -> dict[str, npt.NDArray[np.int16]]:
    """The built-in spoken script, voiced with espeak-ng, one track per participant."""
    from devkit.voice import speak

    script = SPOKEN_SCRIPT[: max(1, turns)]
    pause = np.zeros(_RATE * 6 // 10, dtype=np.int16)
    pieces = [np.concatenate([pause, speak(text), pause]) for _, text in script]
    return _turns_to_tracks([who for who, _ in script], pieces)


def _turns_to_tracks(
    speakers: list[str], pieces: list[npt.NDArray[np.int16]]
) -> dict[str, npt.NDArray[np.int16]]:
    people = list(dict.fromkeys(speakers))
    total = sum(len(p) for p in pieces)
    tracks = {who: np.zeros(total + _RATE, dtype=np.int16) for who in people}
    at = 0
    for who, piece in zip(speakers, pieces, strict=True):
        tracks[who][at : at + len(piece)] = piece
        at += len(piece)
    return tracks


def audio_meeting(folder: Path) -> dict[str, npt.NDArray[np.int16]]:
    """One participant per audio file in ``folder`` (named after the file), 16 kHz mono."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    if not files:
        raise SystemExit(f"--audio {folder}: no audio files there")
    tracks = {p.stem: decode_file(p) for p in files}
    longest = max(len(t) for t in tracks.values())
    return {k: np.pad(v, (0, longest - len(v))) for k, v in tracks.items()}


def prepare_models(opts: DemoOptions) -> tuple[Path, Path, bool]:
    """Return (vosk dir, whisper dir, synthetic?), fetching or building as needed."""
    out = opts.out
    if not opts.synthetic:
        try:
            vosk = fetch_vosk(opts.models_dir / "vosk" / "en")
            whisper = fetch_whisper(opts.models_dir / "whisper" / opts.whisper_size)
            return vosk, whisper, False
        except ModelFetchError as exc:
            out.write(BANNER.format(why=f": real models unavailable ({exc})") + "\n")
    else:
        out.write(BANNER.format(why=" (--synthetic)") + "\n")
    from devkit.synthetic_vosk import build_synthetic_vosk_model, synthetic_vosk_model_ready
    from devkit.synthetic_whisper import build_synthetic_whisper

    cache = opts.models_dir.parent / "models-synthetic"
    vosk = cache / "vosk" / "en"
    if not synthetic_vosk_model_ready(vosk):
        out.write("building the synthetic Vosk model ...\n")
        build_synthetic_vosk_model(vosk)
    whisper = cache / "whisper" / opts.whisper_size
    out.write(f"building (or reusing) a random-weight Whisper {opts.whisper_size} ...\n")
    out.flush()
    build_synthetic_whisper(whisper, size=opts.whisper_size)  # type: ignore[arg-type]
    return vosk, whisper, True


async def run_demo(opts: DemoOptions) -> DemoReport:
    """Run the whole meeting; see the module docstring."""
    if opts.synthetic:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing to fetch: fail fast if asked
    vosk_dir, whisper_dir, synthetic = await asyncio.to_thread(prepare_models, opts)
    if opts.audio_dir is not None:
        tracks = audio_meeting(opts.audio_dir)
    elif synthetic:
        tracks = tone_meeting(opts.turns)
    else:
        tracks = await asyncio.to_thread(spoken_meeting, opts.turns)
    shutil.rmtree(opts.work_dir, ignore_errors=True)
    opts.work_dir.mkdir(parents=True)
    async with _services(opts, vosk_dir, whisper_dir, synthetic) as services:
        report = await _meeting(opts, services, tracks, synthetic)
        p50, p95 = latency_summary(report.caption_latency_ms)
        opts.out.write(
            f"\ncaption latency p50 {p50:.0f} ms, p95 {p95:.0f} ms "
            f"({len(report.caption_latency_ms)} captions); meeting end -> summary "
            f"{report.end_to_summary_s:.1f} s\n"
        )
        if opts.keep_serving:
            opts.out.write("\nthe API stays up until Ctrl+C\n")
            opts.out.flush()
            await asyncio.Event().wait()
        return report


@dataclass
class _Services:
    lk: LiveKitEmulator
    store: SQLiteTranscriptStore
    orchestrator_url: str
    stt_url: str


@contextlib.asynccontextmanager
async def _services(
    opts: DemoOptions, vosk_dir: Path, whisper_dir: Path, synthetic: bool
) -> AsyncIterator[_Services]:
    # Imported here: they pull in FastAPI apps and faster-whisper.
    from orchestrator_service.app import create_app as create_orchestrator
    from orchestrator_service.settings import OrchestratorSettings
    from stt_service.app import create_app as create_stt
    from stt_service.settings import SttSettings
    from stt_service.whisper import WhisperTranscriber
    from stt_service.worker import WhisperWorker, orchestrator_notifier

    db = opts.work_dir / "roomscribe.db"
    store = SQLiteTranscriptStore(db)
    await store.init()
    objects = LocalObjectStore(opts.work_dir / "objects")
    await objects.init()
    lk = LiveKitEmulator(
        api_key=_LIVEKIT_KEY, api_secret=_SECRETS["livekit"], object_store=objects, webhook_url=None
    )
    common: dict[str, Any] = {"secret": _SECRETS["internal"], "sqlite_path": db}
    stt = create_stt(SttSettings(stt_models=f"en:{vosk_dir}", **common), store=store)
    decode = {"temperature": 0.0}
    if synthetic:
        from devkit.synthetic_whisper import random_weight_decode_options

        decode = random_weight_decode_options()
    transcriber = await asyncio.to_thread(
        WhisperTranscriber, str(whisper_dir), cpu_threads=2, decode_options=decode
    )
    async with running(lk.app) as lk_url:
        orchestrator = create_orchestrator(
            OrchestratorSettings(
                api_jwt_secret=_SECRETS["api"],
                livekit_url=lk_url,
                livekit_api_key=_LIVEKIT_KEY,
                livekit_api_secret=_SECRETS["livekit"],
                reconcile_interval_s=5,
                **common,
            ),
            store=store,
        )
        async with (
            running(orchestrator, port=opts.port) as orch_url,
            running(stt) as stt_url,
        ):
            lk.webhooks.url = f"{orch_url}/v1/webhooks/livekit"
            worker = WhisperWorker(
                store,
                objects,
                transcriber.transcribe,
                model_name=transcriber.model_name,
                notify=orchestrator_notifier(orch_url, _SECRETS["internal"]),
                poll_s=0.25,
            )
            worker_task = asyncio.create_task(worker.run())
            try:
                yield _Services(lk, store, orch_url, stt_url)
            finally:
                worker.stop()
                await worker_task
                await lk.aclose()
    await store.close()


async def _meeting(
    opts: DemoOptions,
    services: _Services,
    tracks: dict[str, npt.NDArray[np.int16]],
    synthetic: bool,
) -> DemoReport:
    out = opts.out
    lk = services.lk
    secret = _SECRETS["internal"]
    agent = OrchestratorClient(services.orchestrator_url, secret)
    stt = RoomscribeSTT(
        url=services.stt_url,
        token=lambda: issue_internal_token(secret, audience="stt", subject="agent"),
        room=ROOM,
    )
    await lk.create_room(ROOM)
    await agent.register(ROOM)
    sids: dict[str, str] = {}
    for who, pcm in tracks.items():
        await lk.join(ROOM, who)
        sids[who] = await lk.publish_audio(ROOM, who, pcm)
    meeting_s = max(len(p) for p in tracks.values()) / _RATE
    out.write(
        f"\nmeeting '{ROOM}': {len(tracks)} participants, {meeting_s:.0f} s of audio "
        f"at {opts.speed:g}x; live captions:\n"
    )
    sink = TerminalCaptions(out)
    transcribers = {
        who: TrackTranscriber(stt, sink, room=ROOM, participant=who, track_sid=sids[who])
        for who in tracks
    }

    async def attend(who: str) -> None:
        await transcribers[who].run(track_frames(tracks[who], speed=opts.speed))
        await lk.unpublish(ROOM, sids[who])
        await lk.leave(ROOM, who)

    await asyncio.gather(*(attend(who) for who in tracks))
    ended = time.monotonic()
    await agent.finalize(ROOM)
    await agent.aclose()
    out.write("\nmeeting over; Whisper re-transcribes each recorded track:\n")
    await _follow_whisper(services.store, sids, out)
    room = await services.store.get_room(ROOM)
    end_to_summary = time.monotonic() - ended
    summary = room.summary.text if room.summary else ""
    actions = (
        {a.participant_identity: [x.text for x in a.actions] for a in room.summary.action_items}
        if room.summary
        else {}
    )
    _print_outcome(opts, services.orchestrator_url, room.summary, end_to_summary)
    latencies = [lat for t in transcribers.values() for lat in t.result.latencies_ms]
    return DemoReport(
        synthetic=synthetic,
        participants=sids,
        finals={who: [c.text for c in t.result.finals] for who, t in transcribers.items()},
        caption_latency_ms=latencies,
        meeting_s=meeting_s,
        end_to_summary_s=end_to_summary,
        summary=summary,
        action_items=actions,
        api_url=services.orchestrator_url,
    )


async def _follow_whisper(
    store: SQLiteTranscriptStore, sids: dict[str, str], out: TextIO, timeout_s: float = 1800
) -> None:
    """Print each track's Whisper progress until the room completes (or fails to)."""
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
                    detail = f" ({w.audio_s:.0f} s of audio, RTF {w.real_time_factor:.3f})"
                elif track.status is TrackStatus.FAILED:
                    detail = f" ({track.status_reason})"
                done = sum(
                    s in (TrackStatus.TRANSCRIBED, TrackStatus.FAILED) for s in seen.values()
                )
                out.write(f"  whisper [{done}/{len(names)}] {who}: {track.status.value}{detail}\n")
                out.flush()
        room = await store.get_room(ROOM)
        if room.status is RoomStatus.COMPLETED:
            return
        await asyncio.sleep(0.25)
    raise SystemExit(f"the room did not complete within {timeout_s:.0f} s")


def _print_outcome(
    opts: DemoOptions, url: str, summary: Summary | None, end_to_summary: float
) -> None:
    out = opts.out
    out.write(f"\nsummary ({end_to_summary:.1f} s after the meeting ended):\n")
    if summary is None:
        out.write("  (none)\n")
    else:
        out.write(f"  model: {summary.model}\n  {summary.text}\n")
        for item in summary.action_items:
            for action in item.actions:
                out.write(f"  - {item.participant_identity}: {action.text}\n")
    token = jwt.encode(
        {"sub": "demo", "roles": ["admin"], "exp": int(time.time()) + 86400},
        _SECRETS["api"],
        algorithm="HS256",
    )
    out.write(
        f"\nREST API: {url}/docs\n"
        f"  export TOKEN={token}\n"
        f'  curl -H "Authorization: Bearer $TOKEN" {url}/v1/rooms/{ROOM}\n'
        f'  curl -H "Authorization: Bearer $TOKEN" "{url}/v1/rooms/{ROOM}/transcript?source=best"\n'
        f'  curl -H "Authorization: Bearer $TOKEN" "{url}/v1/rooms/{ROOM}/transcript.srt"\n'
    )
    out.flush()


def latency_summary(latencies: Sequence[float]) -> tuple[float, float]:
    """p50 and p95 of caption latencies in ms (0, 0 when there are none)."""
    if not latencies:
        return 0.0, 0.0
    ordered = sorted(latencies)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95
