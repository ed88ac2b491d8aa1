"""What the agent's speech tests share: a speaking agent on a stand-in TTS service, its
statuses, its captions, and the bound a stop is held to.

The agent's voice track is a real ``rtc.AudioSource``, listened to through
``rtc.AudioStream`` as a room would (:class:`devkit.voice_recorder.TrackRecorder`): that is
where a ``stop`` is timed to silence and captions to the audio.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

from agent.captions import Caption
from agent.tts import (
    HttpSynthesizer,
    Synthesizer,
    TrackAudioOutput,
    TtsManager,
    TtsStatus,
    VoiceCaptions,
)
from devkit.voice_recorder import TrackRecorder
from roomscribe.serving import running
from tests.fakes.tts import RATE, FakeTts


class Statuses:
    def __init__(self) -> None:
        self.items: list[TtsStatus] = []
        self.changed = asyncio.Event()

    async def send(self, status: TtsStatus) -> None:
        self.items.append(status)
        self.changed.set()

    async def wait_for(self, request_id: str | None, state: str, within_s: float = 10) -> None:
        async with asyncio.timeout(within_s):
            while not any(s.id == request_id and s.state == state for s in self.items):
                self.changed.clear()
                await self.changed.wait()

    def of(self, request_id: str | None) -> list[str]:
        return [s.state for s in self.items if s.id == request_id]


class CaptionLog:
    """A caption sink noting when each caption was published (monotonic time)."""

    def __init__(self) -> None:
        self.items: list[tuple[float, Caption]] = []

    async def publish(self, caption: Caption) -> None:
        self.items.append((time.monotonic(), caption))

    @property
    def captions(self) -> list[Caption]:
        return [caption for _, caption in self.items]

    def finals(self) -> list[Caption]:
        return [caption for caption in self.captions if caption.final]


#: The agent's identity and voice track, as the room session gives them to its captions.
AGENT = ("roomscribe-agent", "TR_voice")
#: A stop silences the track within one 20 ms frame plus the 10 ms the WebRTC source holds
#: (measured on arrival times of 10 ms frames in this process, hence the scheduling slack):
#: the issue's barge-in goal of 50 ms.
STOP_WITHIN_S = 0.050


class Speaker:
    def __init__(
        self,
        manager: TtsManager,
        output: TrackAudioOutput,
        statuses: Statuses,
        recorder: TrackRecorder,
    ) -> None:
        self.manager = manager
        self.output = output
        self.statuses = statuses
        self.recorder = recorder

    async def send(self, message: Any) -> None:
        payload = message if isinstance(message, (str, bytes)) else json.dumps(message)
        await self.manager.handle(payload)


@asynccontextmanager
async def make_speaker(
    fake: FakeTts | None = None,
    *,
    output: TrackAudioOutput | None = None,
    max_queued: int = 8,
    wrap: Callable[[Synthesizer], Synthesizer] = lambda synth: synth,
    captions: CaptionLog | None = None,
) -> AsyncIterator[Speaker]:
    async with running((fake or FakeTts()).app) as url:
        synth = HttpSynthesizer(url, secret=None)
        voice = output or TrackAudioOutput(RATE)
        recorder = TrackRecorder(voice.track, RATE)
        statuses = Statuses()
        manager = TtsManager(
            wrap(synth),
            voice,
            statuses.send,
            captions=VoiceCaptions(captions, lambda: AGENT) if captions is not None else None,
            max_chars=200,
            max_queued=max_queued,
        )
        manager.start()
        try:
            yield Speaker(manager, voice, statuses, recorder)
        finally:
            await manager.aclose()
            await recorder.aclose()
            await synth.aclose()
            await voice.aclose()
