"""What the demo's meeting runs on: its models loaded, the local stack started.

The Whisper worker's transcriber and the agent's Kokoro load side by side (seconds each),
then :func:`devkit.stack.local_stack` starts the emulator, the orchestrator, the STT service,
the worker and the TTS service on them.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devkit.demo_models import AgentVoice, PreparedModels
from roomscribe.store import SQLiteTranscriptStore

if TYPE_CHECKING:
    from devkit.livekit_emulator import Clock, LiveKitEmulator
    from devkit.stack import LocalStack
    from stt_service.whisper import WhisperTranscriber
    from tts_service.engine import KokoroEngine


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
class DemoServices:
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


def kokoro_engine(voice: AgentVoice) -> KokoroEngine | None:
    """The agent's Kokoro, loaded and warmed up; ``None`` without a model.

    Two torch threads, as the service's default: the live path needs little CPU, and the
    agent's first audio waits for its first sentence's compute.
    """
    if voice.model is None:
        return None
    # Imported here: the engine loads torch and kokoro.
    from tts_service.engine import KokoroEngine

    return KokoroEngine.load(voice.model.path, threads=2, warmup=True)


@contextlib.asynccontextmanager
async def demo_services(
    work_dir: Path,
    models: PreparedModels,
    voice: AgentVoice,
    secrets: Mapping[str, str],
    *,
    port: int,
    speed: float,
) -> AsyncIterator[DemoServices]:
    """Load the models and start the stack the meeting runs on; stop it all afterwards.

    Args:
        work_dir: The demo's folder (store, objects).
        models: The transcription models.
        voice: The agent's Kokoro.
        secrets: ``livekit_key``, ``livekit``, ``internal`` and ``api`` secrets.
        port: The orchestrator's port.
        speed: The playback speed (LiveKit's clock runs at it).
    """
    # Both load for seconds: side by side, the demo starts hardly later than without TTS.
    transcriber, engine = await asyncio.gather(
        asyncio.to_thread(whisper_transcriber, models),
        asyncio.to_thread(kokoro_engine, voice),
    )
    try:
        async with _stack(work_dir, models, transcriber, engine, secrets, port, speed) as services:
            yield services
    finally:
        if engine is not None:
            engine.close()


@contextlib.asynccontextmanager
async def _stack(
    work_dir: Path,
    models: PreparedModels,
    transcriber: WhisperTranscriber,
    engine: KokoroEngine | None,
    secrets: Mapping[str, str],
    port: int,
    speed: float,
) -> AsyncIterator[DemoServices]:
    # Imported here: the stack pulls in the FastAPI apps.
    from devkit.livekit_emulator import ScaledClock
    from devkit.stack import StackSecrets, local_stack

    shared = StackSecrets(
        livekit_key=secrets["livekit_key"],
        livekit_secret=secrets["livekit"],
        internal=secrets["internal"],
        api=secrets["api"],
    )
    async with local_stack(
        work_dir,
        port=port,
        secrets=shared,
        # LiveKit's time runs at the playback speed: the tracks play, and egress records
        # them, on the clock the meeting is played by.
        clock=ScaledClock(speed),
        orchestrator_settings={"reconcile_interval_s": 5},
        stt_models=f"en:{models.vosk}",
        whisper=transcriber,
        tts_engine=engine,
    ) as stack:
        assert stack.stt_url is not None  # started: stt_models was given
        yield DemoServices(
            stack.lk, stack.clock, stack.store, stack.orchestrator_url, stack.stt_url, stack
        )
