"""One local Roomscribe stack in this process: what tests, benchmarks and the demo run on.

:func:`local_stack` starts, on loopback servers in the current event loop, the devkit LiveKit
emulator (its Twirp API; its webhooks go to the orchestrator), the orchestrator with an
SQLite store and a local object store under one work folder, and on request the STT service
and a Whisper worker over the same store, and the TTS service on a loaded Kokoro engine. It
yields a :class:`LocalStack` and stops it all, in reverse order, when the block ends.

    async with local_stack(tmp_path, clock=ManualClock()) as stack:
        await stack.lk.join("standup", "alice")
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from fastapi import FastAPI

from devkit.livekit_emulator import Clock, LiveKitEmulator
from orchestrator_service.app import create_app
from orchestrator_service.rooms import RoomLifecycle
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.auth import issue_internal_token
from roomscribe.objectstore import LocalObjectStore
from roomscribe.serving import running
from roomscribe.store import SQLiteTranscriptStore

if TYPE_CHECKING:
    from stt_service.jobs import WhisperWorker
    from stt_service.whisper import WhisperTranscriber
    from tts_service.engine import KokoroEngine

#: The SQLite file and the objects folder, inside the work folder.
DB_NAME = "roomscribe.db"
OBJECTS_DIR = "objects"


@dataclass(frozen=True)
class StackSecrets:
    """The credentials the stack's parts share (development values by default).

    Attributes:
        livekit_key: The LiveKit API key (emulator and orchestrator).
        livekit_secret: Its secret; it also signs the webhooks.
        internal: ``ROOMSCRIBE_SECRET``: the internal tokens between services.
        api: The public REST API's HS256 secret.
    """

    livekit_key: str = "devkey"
    livekit_secret: str = "devkit-livekit-secret-0123456789abcdef"
    internal: str = "devkit-internal-secret-0123456789abcdef"
    api: str = "devkit-api-secret-0123456789abcdefghijk"


@dataclass(frozen=True)
class LocalStack:
    """A running local stack (see :func:`local_stack`).

    Attributes:
        lk: The LiveKit emulator: script rooms with it, and turn its knobs.
        clock: The emulator's clock (epoch ns): time other parts should stamp by, so
            their times and LiveKit's agree.
        store: The transcript store every service uses.
        objects: The object store egress writes recordings into.
        livekit_url: The emulator's API URL (``LIVEKIT_URL``).
        orchestrator_url: The orchestrator's base URL.
        orchestrator: The orchestrator app.
        lifecycle: The orchestrator's room lifecycle (its background LiveKit calls).
        secrets: The credentials the parts share.
        stt_url: The STT service's base URL, when it was started.
        worker: The Whisper worker running in the background, when one was started.
        tts_url: The TTS service's base URL, when it was started.
    """

    lk: LiveKitEmulator
    clock: Clock
    store: SQLiteTranscriptStore
    objects: LocalObjectStore
    livekit_url: str
    orchestrator_url: str
    orchestrator: FastAPI
    lifecycle: RoomLifecycle
    secrets: StackSecrets
    stt_url: str | None = None
    worker: WhisperWorker | None = None
    tts_url: str | None = None

    def internal_token(self, audience: str = "orchestrator", subject: str = "devkit") -> str:
        """A fresh internal token for calling one of the stack's services."""
        return issue_internal_token(self.secrets.internal, audience=audience, subject=subject)


@contextlib.asynccontextmanager
async def local_stack(
    work_dir: Path,
    *,
    port: int = 0,
    secrets: StackSecrets | None = None,
    clock: Clock | None = None,
    egress_start_delay_s: float = 0.0,
    egress_limit_s: float | None = None,
    deliver_webhooks: bool = True,
    orchestrator_settings: Mapping[str, Any] | None = None,
    stt_models: str | None = None,
    whisper: WhisperTranscriber | None = None,
    worker_poll_s: float = 0.25,
    tts_engine: KokoroEngine | None = None,
) -> AsyncIterator[LocalStack]:
    """Start the emulator, the orchestrator and, on request, the STT, a worker and the TTS.

    Args:
        work_dir: Where the SQLite store (``roomscribe.db``) and the objects (``objects/``)
            go; created if needed, not wiped.
        port: The orchestrator's port; 0 picks a free one. The others always pick one.
        secrets: The shared credentials; ``None``: :class:`StackSecrets`' defaults.
        clock: The emulator's clock (see :mod:`devkit.livekit_emulator.clock`); ``None``:
            the wall clock.
        egress_start_delay_s: The emulator's delay from an egress request to recording.
        egress_limit_s: The emulator's egress limit; ``None``: none.
        deliver_webhooks: Send the emulator's webhooks to the orchestrator; ``False`` only
            records them (``stack.lk.events``), for callers that send them themselves.
        orchestrator_settings: Orchestrator settings to set or override (e.g.
            ``reconcile_interval_s``, which is 3600 here: reconcile by hand or set it).
        stt_models: Start the STT service with these Vosk models (``en:/path``).
        whisper: Run a Whisper worker with this transcriber in the background, notifying
            the orchestrator of each finished track.
        worker_poll_s: How often that worker looks for work.
        tts_engine: Start the TTS service on this loaded engine (loading takes seconds, so
            the caller does it beside its other start-up work; it closes it too).

    Yields:
        The running stack.
    """
    secrets = secrets or StackSecrets()
    db = work_dir / DB_NAME
    store = SQLiteTranscriptStore(db)
    await store.init()
    objects = LocalObjectStore(work_dir / OBJECTS_DIR)
    await objects.init()
    lk = LiveKitEmulator(
        secrets.livekit_key,
        secrets.livekit_secret,
        objects,
        clock=clock,
        egress_start_delay_s=egress_start_delay_s,
        egress_limit_s=egress_limit_s,
    )
    # The orchestrator reads recordings too (the web app's players): the same folder.
    common: dict[str, Any] = {
        "secret": secrets.internal,
        "sqlite_path": db,
        "objects_dir": work_dir / OBJECTS_DIR,
    }
    async with contextlib.AsyncExitStack() as cleanup:
        cleanup.push_async_callback(store.close)
        lk_url = await cleanup.enter_async_context(running(lk.app))
        settings = OrchestratorSettings(
            **{
                "api_jwt_secret": secrets.api,
                "livekit_url": lk_url,
                "livekit_api_key": secrets.livekit_key,
                "livekit_api_secret": secrets.livekit_secret,
                "reconcile_interval_s": 3600,
                **common,
                **(orchestrator_settings or {}),
            }
        )
        orchestrator = create_app(settings, store=store)
        orchestrator_url = await cleanup.enter_async_context(running(orchestrator, port=port))
        stt_url = None
        if stt_models is not None:
            # Imported here: the STT service loads libvosk.
            from stt_service.app import create_app as create_stt
            from stt_service.settings import SttSettings

            stt = create_stt(SttSettings(stt_models=stt_models, **common), store=store)
            stt_url = await cleanup.enter_async_context(running(stt))
        tts_url = None
        if tts_engine is not None:
            tts_url = await cleanup.enter_async_context(
                running(_tts_app(tts_engine, secrets.internal))
            )
        # Closed before the servers stop: no webhook is in flight to a server going away.
        cleanup.push_async_callback(lk.aclose)
        if deliver_webhooks:
            lk.webhooks.url = f"{orchestrator_url}/v1/webhooks/livekit"
        worker = None
        if whisper is not None:
            worker = _start_worker(
                cleanup, store, objects, whisper, orchestrator_url, secrets, worker_poll_s
            )
        yield LocalStack(
            lk=lk,
            clock=lk.clock,
            store=store,
            objects=objects,
            livekit_url=lk_url,
            orchestrator_url=orchestrator_url,
            orchestrator=orchestrator,
            lifecycle=orchestrator.state.orchestrator.lifecycle,
            secrets=secrets,
            stt_url=stt_url,
            worker=worker,
            tts_url=tts_url,
        )


def _tts_app(engine: KokoroEngine, secret: str) -> FastAPI:
    # Imported here: the TTS service pulls in torch.
    from tts_service.app import create_app as create_tts
    from tts_service.settings import TtsSettings

    folder = engine.loaded.files.folder
    # Four streams: the agent holds two (the sentence playing and the next one).
    settings = TtsSettings(
        secret=secret, models_dir=folder.parent, tts_model_dir=folder, tts_max_concurrent=4
    )
    return create_tts(settings, engine=engine)


def _start_worker(
    cleanup: contextlib.AsyncExitStack,
    store: SQLiteTranscriptStore,
    objects: LocalObjectStore,
    whisper: WhisperTranscriber,
    orchestrator_url: str,
    secrets: StackSecrets,
    poll_s: float,
) -> WhisperWorker:
    from stt_service.jobs import WhisperWorker, orchestrator_notifier

    worker = WhisperWorker(
        store,
        objects,
        whisper.transcribe,
        model_name=whisper.model_name,
        notify=orchestrator_notifier(orchestrator_url, secrets.internal),
        poll_s=poll_s,
    )
    task = asyncio.create_task(worker.run(), name="whisper-worker")

    async def stop() -> None:
        # The jobs in hand finish: a track is not left half transcribed.
        worker.stop()
        await task

    cleanup.push_async_callback(stop)
    return worker
