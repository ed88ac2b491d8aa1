"""``python -m devkit demo``: a simulated meeting through the real services, on one machine.

Everything runs in this process on the embedded defaults: the devkit LiveKit emulator
(webhooks, egress into the local object store), the orchestrator, the STT service, a Whisper
worker, an SQLite store under ``var/demo``. Each participant's audio goes through the agent's
real track transcriber (at real-time pace through a local ``rtc`` track, or faster with
``--speed``), so the terminal shows the live captions as LiveKit front ends would get them,
then the Whisper pass, the summary and action items, and where the REST API is.

Models: real ones are fetched into ``var/models`` when missing (see :mod:`devkit.model_fetch`
for the mirrors it honours). Each model that cannot be had (offline), or both with
``--synthetic``, is replaced by a synthetic one, and a banner says which and why: with a
synthetic Vosk model the built-in meeting is "spoken" as tone words that it hears exactly;
a random-weight Whisper's text is meaningless.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import statistics
import sys
import textwrap
import time
import unicodedata
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

import jwt
import numpy as np
import numpy.typing as npt

from agent.captions import Caption
from agent.orchestrator import OrchestratorClient
from agent.stt_plugin import RoomscribeSTT
from agent.transcriber import TrackTranscriber
from devkit.local_tracks import track_frames
from devkit.model_fetch import (
    DEFAULT_WHISPER_SIZE,
    ModelFetchError,
    default_vosk_url,
    fetch_vosk,
    fetch_whisper,
)
from devkit.synthetic_whisper import WHISPER_SIZES, WhisperSize
from devkit.tones import synthesize
from roomscribe.audio import decode_channels, decode_file
from roomscribe.auth import issue_internal_token
from roomscribe.errors import AudioDecodeError
from roomscribe.models import RoomStatus, Summary, TrackStatus
from roomscribe.store import SQLiteTranscriptStore

if TYPE_CHECKING:
    from devkit.livekit_emulator import Clock, LiveKitEmulator
    from devkit.stack import LocalStack
    from stt_service.whisper import WhisperTranscriber

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

#: The random-weight Whisper built in its place: a random ``small`` costs far more to build
#: and to run, and its text is just as meaningless.
FALLBACK_WHISPER_SIZE: WhisperSize = "tiny"

#: The banner's title when --synthetic asked for synthetic models.
SYNTHETIC_TITLE = "SYNTHETIC MODELS (--synthetic)"
_RULE = "=" * 78
_VOSK_NOTE = (
    "The synthetic Vosk model hears pure tones as words (alpha, bravo, ...): the built-in "
    'meeting is "spoken" in such tones, so the live captions are exact; real speech comes '
    "out as random tone words."
)
_WHISPER_NOTE = "The random-weight Whisper {size} has realistic timings and meaningless text."


@dataclass
class DemoOptions:
    """What the demo runs.

    Attributes:
        synthetic: Use synthetic models without trying to download real ones.
        speed: Playback speed (1.0 = real time, through a local rtc track).
        audio_dir: A folder with one audio file per participant (any common format), or one
            multichannel file with one channel per participant; None: built-in script.
        turns: How many turns of the built-in script to play (tone words with synthetic
            models, espeak-ng speech with real ones).
        models_dir: Where real models live (``vosk/en``, ``whisper/<size>``).
        work_dir: Where the demo's store, objects and synthetic models go (wiped per run).
        port: The orchestrator's port (its REST API and ``/docs``).
        whisper_size: The Whisper size; None: ``small`` when real, ``tiny`` when synthetic.
            A synthetic build keeps a size it has (micro, tiny, base, small), else is tiny.
        vosk_url: The English Vosk model zip; None: ``$ROOMSCRIBE_VOSK_MODEL_URL`` or
            alphacephei's small English model. (Whisper honours ``HF_ENDPOINT``.)
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
    whisper_size: str | None = None
    vosk_url: str | None = None
    keep_serving: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)


@dataclass
class DemoReport:
    """What happened, for the terminal and for tests."""

    models: PreparedModels  # what the meeting ran on
    participants: dict[str, str]  # identity -> track sid
    finals: dict[str, list[str]]  # identity -> final caption texts
    caption_latency_ms: list[float]  # newest audio a caption heard -> caption ready
    final_latency_ms: list[float]  # a final's last word pushed in -> final ready
    meeting_s: float
    end_to_summary_s: float
    summary: str
    action_items: dict[str, list[str]]
    api_url: str

    @property
    def synthetic(self) -> bool:
        """Whether any of the models was synthetic."""
        return self.models.synthetic


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


#: The most participants the demo plays: each is a live track transcriber and STT stream.
MAX_PARTICIPANTS = 16


def audio_meeting(path: Path) -> dict[str, npt.NDArray[np.int16]]:
    """A meeting from audio: one participant per file of a folder, or per channel of a file.

    A folder gives one participant per audio file in it, named after the file (see
    :func:`_identity`); hidden files are passed over, and other files that are not audio are
    skipped with a warning on stderr. A file gives one participant per channel, ``speaker1``,
    ``speaker2``, ... in channel order (a mono file is a meeting of one). Tracks are decoded
    to 16 kHz mono and padded with silence to the longest, as the tracks of one room are.

    Args:
        path: A folder of audio files, or one audio file.

    Returns:
        Identity -> int16 16 kHz track, all of the same length.

    Raises:
        SystemExit: ``path`` does not exist, holds no audio (a folder) or is not audio (a
            file), two files make the same identity, or there are more than
            :data:`MAX_PARTICIPANTS` participants.
    """
    if path.is_dir():
        tracks = _folder_tracks(path)
    elif path.exists():
        tracks = _channel_tracks(path)
    else:
        raise SystemExit(f"--audio {path}: no such file or folder")
    longest = max(len(t) for t in tracks.values())
    return {k: np.pad(v, (0, longest - len(v))) for k, v in tracks.items()}


def _folder_tracks(folder: Path) -> dict[str, npt.NDArray[np.int16]]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
    tracks: dict[str, npt.NDArray[np.int16]] = {}
    sources: dict[str, Path] = {}
    for file in files:
        try:
            pcm = decode_file(file)
        except AudioDecodeError as exc:
            # Skipped, not fatal: speech corpora are often read-only folders that carry a
            # README, a manifest or a licence beside the recordings.
            print(f"--audio: skipping {file.name}: {exc}", file=sys.stderr)
            continue
        who = _identity(file.stem) or f"speaker{len(tracks) + 1}"
        if who in sources:
            raise SystemExit(
                f"--audio {folder}: {sources[who].name} and {file.name} would both be "
                f"participant {who!r}; rename one of them"
            )
        if len(tracks) == MAX_PARTICIPANTS:  # said before decoding the rest of a big folder
            raise SystemExit(
                f"--audio {folder}: more than {MAX_PARTICIPANTS} audio files; "
                f"the demo plays at most {MAX_PARTICIPANTS} participants"
            )
        sources[who], tracks[who] = file, pcm
    if not tracks:
        raise SystemExit(f"--audio {folder}: no audio files there (one per participant)")
    return tracks


def _channel_tracks(file: Path) -> dict[str, npt.NDArray[np.int16]]:
    try:
        channels = decode_channels(file)
    except AudioDecodeError as exc:
        raise SystemExit(
            f"--audio: {exc}; give a folder with one audio file per participant, "
            "or one audio file with one channel per participant"
        ) from exc
    if len(channels) > MAX_PARTICIPANTS:
        raise SystemExit(
            f"--audio {file}: {len(channels)} channels; "
            f"the demo plays at most {MAX_PARTICIPANTS} participants"
        )
    return {f"speaker{n}": pcm for n, pcm in enumerate(channels, start=1)}


def _identity(stem: str) -> str:
    """A file stem as a participant identity: letters, digits, ``-`` and ``_`` only.

    LiveKit takes any string, but the identity shows in captions, REST paths and logs, where
    simple ones read and quote best. Accents are dropped rather than their letters; any other
    run of characters becomes one ``-``. Empty when nothing is left (the caller numbers it).
    """
    ascii_only = unicodedata.normalize("NFKD", stem).encode("ascii", "ignore").decode("ascii")
    return re.sub(r"[^A-Za-z0-9_-]+", "-", ascii_only).strip("-")


@dataclass(frozen=True)
class PreparedModels:
    """The model folders the demo runs on, and which of them are synthetic."""

    vosk: Path
    whisper: Path
    vosk_synthetic: bool
    whisper_synthetic: bool

    @property
    def synthetic(self) -> bool:
        """Whether any of the models is synthetic."""
        return self.vosk_synthetic or self.whisper_synthetic


def prepare_models(opts: DemoOptions) -> PreparedModels:
    """Fetch the real models that are missing, and build synthetic ones where that fails.

    Each model stands alone: a real one in ``opts.models_dir`` (or fetched into it) is used
    even when the other has to be synthetic. With ``opts.synthetic`` nothing is fetched. A
    banner on ``opts.out`` names the synthetic models and why they are.

    Args:
        opts: The demo's options (models folder, sizes, Vosk URL, output).

    Returns:
        The model folders; synthetic ones live in ``models-synthetic`` beside the models folder.
    """
    out = opts.out
    vosk: Path | None = None
    whisper: Path | None = None
    reasons: dict[str, str] = {}  # model -> why it is synthetic; empty with --synthetic
    if not opts.synthetic:
        size = opts.whisper_size or DEFAULT_WHISPER_SIZE
        vosk_url = opts.vosk_url or default_vosk_url()
        try:
            vosk = fetch_vosk(opts.models_dir / "vosk" / "en", url=vosk_url)
        except ModelFetchError as exc:
            reasons["Vosk"] = str(exc)
        try:
            whisper = fetch_whisper(opts.models_dir / "whisper" / size, size)
        except ModelFetchError as exc:
            reasons["Whisper"] = str(exc)
    if vosk is not None and whisper is not None:
        return PreparedModels(vosk, whisper, vosk_synthetic=False, whisper_synthetic=False)
    synthetic_size = _synthetic_whisper_size(opts.whisper_size)
    out.write(banner(reasons, vosk is None, whisper is None, synthetic_size) + "\n")
    cache = opts.models_dir.parent / "models-synthetic"
    return PreparedModels(
        vosk=vosk or _synthetic_vosk(cache / "vosk" / "en", out),
        whisper=whisper or _synthetic_whisper(cache / "whisper", synthetic_size, out),
        vosk_synthetic=vosk is None,
        whisper_synthetic=whisper is None,
    )


def banner(reasons: Mapping[str, str], vosk: bool, whisper: bool, whisper_size: str) -> str:
    """The notice that some models are synthetic.

    Args:
        reasons: Why each synthetic model is (``"Vosk"``/``"Whisper"`` -> the fetch error);
            empty when ``--synthetic`` asked for them.
        vosk: Whether the Vosk model is synthetic.
        whisper: Whether the Whisper model is synthetic.
        whisper_size: The size of the synthetic Whisper.

    Returns:
        The banner, lines wrapped to 78 columns between two rules.
    """
    title = f"SYNTHETIC MODELS: {' and '.join(reasons)}" if reasons else SYNTHETIC_TITLE
    lines = [title, *(f"{name}: {why}" for name, why in reasons.items())]
    if vosk:
        lines.append(_VOSK_NOTE)
    if whisper:
        lines.append(_WHISPER_NOTE.format(size=whisper_size))
    lines.append(
        "For real speech: run where the models can be downloaded (see --vosk-url and "
        "HF_ENDPOINT for mirrors), or put them in the models folder (vosk/en, "
        "whisper/<size>), and use --audio."
    )
    # Not broken inside URLs, paths or names like faster-whisper-small.
    wrap = textwrap.TextWrapper(
        77,
        initial_indent=" ",
        subsequent_indent="   ",
        break_long_words=False,
        break_on_hyphens=False,
    )
    body = [wrap.fill(line) for line in lines]
    return "\n".join([_RULE, *body, _RULE])


def _synthetic_whisper_size(requested: str | None) -> WhisperSize:
    for size in WHISPER_SIZES:
        if size == requested:
            return size
    return FALLBACK_WHISPER_SIZE  # not chosen, or a size with no synthetic builder


def _synthetic_vosk(folder: Path, out: TextIO) -> Path:
    from devkit.synthetic_vosk import build_synthetic_vosk_model, synthetic_vosk_model_ready

    if not synthetic_vosk_model_ready(folder):
        out.write("building the synthetic Vosk model ...\n")
        build_synthetic_vosk_model(folder)
    return folder


def _synthetic_whisper(parent: Path, size: WhisperSize, out: TextIO) -> Path:
    # Imported here: it needs the synthetic extra (torch, transformers, ctranslate2).
    from devkit.synthetic_whisper import build_synthetic_whisper

    out.write(f"building (or reusing) a random-weight Whisper {size} ...\n")
    out.flush()
    with _quiet_transformers():
        return build_synthetic_whisper(parent / size, size=size)


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Keep transformers' progress bars (writing shards, loading weights) off the terminal."""
    from transformers.utils import logging as transformers_logging

    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


async def run_demo(opts: DemoOptions) -> DemoReport:
    """Run the whole meeting; see the module docstring."""
    if opts.synthetic:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing to fetch: fail fast if asked
    # The audio is read first: a wrong --audio path fails before any model is fetched.
    given = None
    if opts.audio_dir is not None:
        given = await asyncio.to_thread(audio_meeting, opts.audio_dir)
    models = await asyncio.to_thread(prepare_models, opts)
    if given is not None:
        tracks = given
    elif models.vosk_synthetic:
        tracks = tone_meeting(opts.turns)
    else:
        tracks = await asyncio.to_thread(spoken_meeting, opts.turns)
    shutil.rmtree(opts.work_dir, ignore_errors=True)
    opts.work_dir.mkdir(parents=True)
    async with _services(opts, models) as services:
        report = await _meeting(opts, services, tracks, models)
        p50, p95 = latency_summary(report.caption_latency_ms)
        f50, f95 = latency_summary(report.final_latency_ms)
        opts.out.write(
            f"\ncaption latency (newest audio heard -> caption) p50 {p50:.0f} ms, "
            f"p95 {p95:.0f} ms over {len(report.caption_latency_ms)} captions\n"
            f"speech end -> final caption p50 {f50:.0f} ms, p95 {f95:.0f} ms over "
            f"{len(report.final_latency_ms)} finals\n"
            f"meeting end -> summary {report.end_to_summary_s:.1f} s\n"
        )
        if opts.keep_serving:
            opts.out.write("\nthe API stays up until Ctrl+C\n")
            opts.out.flush()
            await asyncio.Event().wait()
        return report


def whisper_transcriber(models: PreparedModels) -> WhisperTranscriber:
    """The Whisper the demo's worker runs: 2 CPU threads, greedy decoding.

    Random weights decode with the options that give them a realistic transcript length
    (see :mod:`devkit.synthetic_whisper`).
    """
    # Imported here: faster-whisper loads CTranslate2.
    from stt_service.whisper import WhisperTranscriber

    decode: dict[str, Any] = {"temperature": 0.0}
    if models.whisper_synthetic:
        from devkit.synthetic_whisper import random_weight_decode_options

        decode = random_weight_decode_options()
    return WhisperTranscriber(str(models.whisper), cpu_threads=2, decode_options=decode)


@dataclass(frozen=True)
class _Services:
    """What the meeting runs on: the local stack (:mod:`devkit.stack`), STT included.

    ``clock`` is LiveKit's (the emulator's) clock, scaled by ``--speed``: times stamped with
    it agree with the tracks' and recordings' times.
    """

    lk: LiveKitEmulator
    clock: Clock
    store: SQLiteTranscriptStore
    orchestrator_url: str
    stt_url: str
    stack: LocalStack


@contextlib.asynccontextmanager
async def _services(opts: DemoOptions, models: PreparedModels) -> AsyncIterator[_Services]:
    # Imported here: the stack pulls in the FastAPI apps.
    from devkit.livekit_emulator import ScaledClock
    from devkit.stack import StackSecrets, local_stack

    transcriber = await asyncio.to_thread(whisper_transcriber, models)
    secrets = StackSecrets(
        livekit_key=_LIVEKIT_KEY,
        livekit_secret=_SECRETS["livekit"],
        internal=_SECRETS["internal"],
        api=_SECRETS["api"],
    )
    async with local_stack(
        opts.work_dir,
        port=opts.port,
        secrets=secrets,
        # LiveKit's time runs at the playback speed: the tracks play, and egress records
        # them, on the clock the meeting is played by.
        clock=ScaledClock(opts.speed),
        orchestrator_settings={"reconcile_interval_s": 5},
        stt_models=f"en:{models.vosk}",
        whisper=transcriber,
    ) as stack:
        assert stack.stt_url is not None  # started: stt_models was given
        yield _Services(
            stack.lk, stack.clock, stack.store, stack.orchestrator_url, stack.stt_url, stack
        )


async def _meeting(
    opts: DemoOptions,
    services: _Services,
    tracks: dict[str, npt.NDArray[np.int16]],
    models: PreparedModels,
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
    clock = services.clock

    def now_s() -> float:
        # The stream's sample 0 on the emulator's clock, which --speed scales like the audio:
        # live times then agree with the recordings' times, which that clock stamps.
        return clock() / 1e9

    transcribers = {
        who: TrackTranscriber(
            stt, sink, room=ROOM, participant=who, track_sid=sids[who], clock=now_s
        )
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
    final_latencies = [lat for t in transcribers.values() for lat in t.result.final_latencies_ms]
    return DemoReport(
        models=models,
        participants=sids,
        finals={who: [c.text for c in t.result.finals] for who, t in transcribers.items()},
        caption_latency_ms=latencies,
        final_latency_ms=final_latencies,
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
