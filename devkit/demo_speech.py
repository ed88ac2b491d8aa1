"""The agent speaking in the demo meeting: asked, heard, interrupted, recorded.

As the meeting starts, the host stand-in (its first participant, ``alice`` in the built-in
meeting, on the agent's TTS allow-list) sends a ``tts_control`` ``speak``; another
participant's ``speak`` is refused (not on the list).
The agent's :class:`~agent.tts.TtsManager` speaks through the TTS service onto a real voice
track (``rtc.AudioSource``), sentence by sentence with the next one prefetched, and
captions its words as they are heard. Once the room has heard :data:`STOP_AFTER_S` of its
voice, the host sends ``stop``: the track falls silent within a frame, measured on the
track itself (:class:`devkit.voice_recorder.TrackRecorder`). The terminal shows each
message and status with its timing, and the voice track is saved as ``agent-voice.wav``
beside the recordings.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

from agent.captions import Caption, CaptionSink
from agent.session import may_drive_tts
from agent.tts import (
    HttpSynthesizer,
    TrackAudioOutput,
    TtsManager,
    TtsStatus,
    VoiceCaptions,
    request_id_of,
)
from devkit.live_captions import TerminalCaptions, clock
from devkit.voice_recorder import TrackRecorder

#: The agent's identity in the demo's captions.
AGENT: Final = "agent"
#: Short on purpose: Kokoro runs on the CPU beside the meeting.
SPEAK_TEXT: Final = "Good morning, I am taking notes today. Ask me for the summary at the end."
#: How much of the agent's voice the room hears before the host barges in: inside the first
#: sentence, so the stop cuts a sentence being heard and the next one being synthesized.
STOP_AFTER_S: Final = 0.5
#: The agent's voice track, beside the recordings in the demo's folder.
VOICE_FILE: Final = "agent-voice.wav"
#: How long to wait for the agent's first audio (Kokoro on a busy CPU) before giving up.
FIRST_AUDIO_WITHIN_S: Final = 120.0


@dataclass
class SpeechReport:
    """What the agent was asked, what it did, and when.

    Attributes:
        request_id: The ``speak`` request's id.
        states: Its ``tts_status`` states, in order.
        refused: The error the other participant's ``speak`` got.
        first_audio_s: From the ``speak`` to the first sound on the voice track.
        stop_to_silence_ms: From the ``stop`` to the track's first silent frame.
        spoken_s: Seconds of the agent's voice the room heard.
        said: The agent's final captions (what the room heard it say).
        recording: The voice track's WAV file.
        error: Why the agent did not speak, if it did not.
    """

    request_id: str
    states: list[str] = field(default_factory=list)
    refused: str | None = None
    first_audio_s: float | None = None
    stop_to_silence_ms: float | None = None
    spoken_s: float = 0.0
    said: list[str] = field(default_factory=list)
    recording: Path | None = None
    error: str | None = None


class _MeetingTimes:
    """Hands the agent's captions to the terminal on the meeting's clock.

    The voice track plays in real time from the meeting's start, while the meeting's clock
    runs at the playback speed: a track time times the speed is a meeting time.
    """

    def __init__(self, sink: CaptionSink, speed: float, said: list[str]) -> None:
        self._sink = sink
        self._speed = speed
        self._said = said

    async def publish(self, caption: Caption) -> None:
        if caption.final:
            self._said.append(caption.text)
        scaled = dataclasses.replace(
            caption, start_s=caption.start_s * self._speed, end_s=caption.end_s * self._speed
        )
        await self._sink.publish(scaled)


class _Statuses:
    def __init__(self, report: SpeechReport, say: Callable[[str], None]) -> None:
        self._report = report
        self._say = say
        self.changed = asyncio.Event()

    async def send(self, status: TtsStatus) -> None:
        if status.id == self._report.request_id:
            self._report.states.append(status.state)
            error = f": {status.error}" if status.error else ""
            self._say(f"tts_status  {AGENT}: {status.state}{error}")
            self.changed.set()

    def over(self) -> bool:
        return any(s in ("finished", "stopped", "error") for s in self._report.states)


async def agent_speaks(
    tts_url: str,
    secret: str,
    captions: TerminalCaptions,
    meeting_s: Callable[[], float],
    work_dir: Path,
    *,
    speed: float = 1.0,
    host: str = "alice",
    other: str | None = "bob",
) -> SpeechReport:
    """Run the agent's part of the meeting (see the module docstring).

    Args:
        tts_url: The TTS service.
        secret: The internal secret its tokens are signed with.
        captions: The terminal's captions (the agent's lines and captions go there).
        meeting_s: The meeting's clock, in seconds since it started.
        work_dir: The demo's folder (the voice track is saved there).
        speed: The meeting's playback speed.
        host: The participant who asks the agent to speak and stops it (allowed).
        other: A participant who asks too and is refused; ``None``: nobody.
    """
    report = SpeechReport(request_id="welcome")

    def say(line: str) -> None:
        captions.note(f"  [{clock(meeting_s())}] {line}")

    output = TrackAudioOutput()
    recorder = TrackRecorder(output.track, output.sample_rate)
    synth = HttpSynthesizer(tts_url, secret)
    statuses = _Statuses(report, say)
    manager = TtsManager(
        synth,
        output,
        statuses.send,
        captions=VoiceCaptions(
            _MeetingTimes(captions, speed, report.said), lambda: (AGENT, "TR_agent")
        ),
    )
    manager.start()
    allowed = frozenset({host})
    try:
        speak = json.dumps({"type": "speak", "id": report.request_id, "text": SPEAK_TEXT})
        asked_at = time.monotonic()
        await _deliver(manager, allowed, host, speak, say, f'speak "{SPEAK_TEXT}"')
        if other is not None:
            refused = json.dumps({"type": "speak", "id": f"{other}-1", "text": "Me too."})
            report.refused = await _deliver(
                manager, allowed, other, refused, say, 'speak "Me too."'
            )
        # The first audio, then enough of it for the room to have heard the agent.
        if await _before_over(recorder.wait_for_sound(0.01, FIRST_AUDIO_WITHIN_S), statuses):
            if (heard := recorder.first_sound(asked_at)) is not None:
                report.first_audio_s = heard - asked_at
                say(f"{AGENT}: first audio on its track {heard - asked_at:.2f} s after the speak")
            await _before_over(recorder.wait_for_sound(STOP_AFTER_S, 60.0), statuses)
        elif not statuses.over():
            report.error = f"no audio within {FIRST_AUDIO_WITHIN_S:.0f} s"
        if not statuses.over():
            stop_at = time.monotonic()
            await _deliver(manager, allowed, host, json.dumps({"type": "stop"}), say, "stop")
            await _wait(statuses, 10.0)
            await asyncio.sleep(0.2)  # audio a stop failed to clear would be heard by now
            silent = recorder.silent_from(stop_at)
            if silent is not None:
                report.stop_to_silence_ms = (silent - stop_at) * 1000
                say(
                    f"{AGENT}: its track fell silent {report.stop_to_silence_ms:.0f} ms after "
                    f"the stop, after {recorder.sound_s:.2f} s of speech"
                )
    finally:
        await manager.aclose()
        await synth.aclose()
        report.spoken_s = recorder.sound_s
        await recorder.aclose()
        report.recording = recorder.write_wav(work_dir / VOICE_FILE)
        await output.aclose()
    return report


async def _deliver(
    manager: TtsManager,
    allowed: frozenset[str],
    sender: str,
    payload: str,
    say: Callable[[str], None],
    what: str,
) -> str | None:
    """Hand a control message to the agent as its room session does; the refusal, if any."""
    say(f"tts_control {sender} -> {AGENT}: {what}")
    if may_drive_tts(sender, {}, allowed):
        await manager.handle(payload)
        return None
    status = TtsStatus(id=request_id_of(payload), state="error", error="not allowed")
    say(f"tts_status  {AGENT} -> {sender}: {status.state}: {status.error} (not on the allow-list)")
    return status.error


async def _before_over(waiting: Coroutine[Any, Any, None], statuses: _Statuses) -> bool:
    """Whether ``waiting`` completed before the speech was over (finished, stopped, failed)."""
    task = asyncio.create_task(waiting)
    over = asyncio.create_task(_until(statuses.over, statuses.changed))
    try:
        await asyncio.wait({task, over}, return_when=asyncio.FIRST_COMPLETED)
        return task.done() and not task.cancelled() and task.exception() is None
    finally:
        for pending in (task, over):
            pending.cancel()
        await asyncio.gather(task, over, return_exceptions=True)


async def _until(check: Callable[[], bool], changed: asyncio.Event) -> None:
    while not check():
        changed.clear()
        await changed.wait()


async def _wait(statuses: _Statuses, within_s: float) -> None:
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(within_s):
            await _until(statuses.over, statuses.changed)
