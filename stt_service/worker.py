"""The Whisper batch worker: ``python -m stt_service.worker [--concurrency N]``.

Claims recorded tracks from the store (a lease on the track document, renewed while working,
attempts bounded, last error kept), downloads the recording from the object store,
transcribes it with faster-whisper in a thread, stores the segments as the track's Whisper
transcript (replacing any earlier run), marks the track ``transcribed`` and tells the
orchestrator so the room can complete. Bad input (missing object, undecodable or empty file)
fails the track with a clear reason; the room still completes. Many workers on many machines
can share one MongoDB: the claim is an atomic find-and-modify.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import os
import signal
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Protocol

import httpx
from pydantic import Field

from roomscribe.audio import probe_duration_s
from roomscribe.auth import issue_internal_token
from roomscribe.errors import AudioDecodeError, ObjectNotFoundError, ObjectStoreError, StoreError
from roomscribe.models import Track, TrackStatus, WhisperStats
from roomscribe.objectstore import ObjectStore, open_object_store
from roomscribe.settings import CoreSettings
from roomscribe.store import TranscriptStore, open_store
from stt_service.whisper import Transcript

log = logging.getLogger(__name__)


class WorkerSettings(CoreSettings):
    """What ``python -m stt_service.worker`` reads (prefix ``ROOMSCRIBE_``)."""

    whisper_model: str = Field(
        default="small", description="A CTranslate2 Whisper folder, or a size to download."
    )
    models_dir: Path = Path("var/models")
    whisper_device: str = "cpu"
    whisper_compute_type: str = "int8"
    whisper_cpu_threads: int = Field(default=2, ge=1)
    whisper_beam_size: int = Field(default=1, ge=1)
    whisper_batched: bool = False
    worker_concurrency: int = Field(default=1, ge=1)
    job_lease_s: float = Field(default=120.0, gt=0)
    job_max_attempts: int = Field(default=3, ge=1)
    worker_poll_s: float = Field(default=2.0, gt=0)
    orchestrator_url: str | None = "http://localhost:8000"

    def model_path(self) -> str:
        """``whisper_model`` as a folder under ``models_dir/whisper`` when one exists there."""
        local = self.models_dir / "whisper" / self.whisper_model
        return str(local) if local.is_dir() else self.whisper_model


class Transcribe(Protocol):
    """Blocking transcription of one file (a :class:`WhisperTranscriber` method)."""

    def __call__(self, audio: Path, *, track_sid: str, language: str | None) -> Transcript:
        """Transcribe ``audio``."""


def whisper_language(language: str | None) -> str | None:
    """The Whisper code of a track's live language (``en-US`` -> ``en``); ``None``: detect.

    Live models are chosen by tags such as ``en`` or ``en-us``; Whisper knows languages by
    their primary subtag only.
    """
    if not language:
        return None
    primary = language.replace("_", "-").split("-", 1)[0].strip().lower()
    return primary or None


class JobFailedError(Exception):
    """This track cannot be transcribed; the message says why (kept as the last error)."""


Notify = Callable[[Track], Awaitable[None]]


class WhisperWorker:
    """Runs Whisper jobs until stopped; see the module docstring."""

    def __init__(
        self,
        store: TranscriptStore,
        objects: ObjectStore,
        transcribe: Transcribe,
        *,
        model_name: str,
        notify: Notify | None = None,
        concurrency: int = 1,
        lease_s: float = 120.0,
        max_attempts: int = 3,
        poll_s: float = 2.0,
        name: str | None = None,
    ) -> None:
        """Wire the worker; nothing runs until :meth:`run`."""
        self._store = store
        self._objects = objects
        self._transcribe = transcribe
        self._model_name = model_name
        self._notify = notify
        self._concurrency = concurrency
        self._lease_s = lease_s
        self._max_attempts = max_attempts
        self._poll_s = poll_s
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self._stopping = asyncio.Event()
        self.done = 0
        self.failed = 0

    def stop(self) -> None:
        """Claim nothing more; :meth:`run` returns once the jobs in hand are done.

        To interrupt jobs in hand instead, cancel the task running :meth:`run`: their leases
        are released without counting the attempt.
        """
        self._stopping.set()

    async def run(self) -> None:
        """Work until :meth:`stop`, with ``concurrency`` jobs at a time.

        The slots run in one task group: a slot that crashes cancels the others (their
        claims are given back) and the error leaves here, so the process never goes on
        with fewer slots, or against a store its shutdown already closed.
        """
        async with asyncio.TaskGroup() as slots:
            for i in range(self._concurrency):
                slots.create_task(self._slot(i), name=f"whisper-slot-{i}")

    async def run_until_idle(self) -> int:
        """Process claimable jobs until none is left; return how many were handled (tests)."""
        handled = 0
        while (track := await self._claim()) is not None:
            await self._process(track)
            handled += 1
        return handled

    async def _claim(self, worker: str | None = None) -> Track | None:
        holder = worker or self.name
        claim = asyncio.ensure_future(
            self._store.claim_job(holder, lease_s=self._lease_s, max_attempts=self._max_attempts)
        )
        try:
            return await asyncio.shield(claim)
        except asyncio.CancelledError:
            # Cancelled while the store was claiming: the claim may still have been made.
            # Give it back rather than leave the track stuck until the lease expires.
            track = await claim
            if track is not None:
                await self._store.release_job(track.track_sid, holder)
            raise

    async def _slot(self, index: int) -> None:
        worker = f"{self.name}/{index}"
        while not self._stopping.is_set():
            try:
                track = await self._claim(worker)
            except StoreError as exc:
                # An outage: poll again later. Claims are atomic, so nothing is half done.
                log.warning("cannot claim a job: %s", exc, extra={"worker": worker})
                track = None
            if track is None:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._stopping.wait(), self._poll_s)
                continue
            try:
                await self._process(track, worker=worker)
            except StoreError as exc:
                # The store went away mid-job: the lease lapses and the job is claimed
                # again (an attempt is spent); this slot carries on with the next one.
                log.warning(
                    "store failed during a job: %s", exc, extra={"track_sid": track.track_sid}
                )

    async def _process(self, track: Track, *, worker: str | None = None) -> None:
        holder = worker or self.name
        renewer = asyncio.create_task(self._renew(track.track_sid, holder))
        try:
            transcript = await self._transcribe_track(track)
        except JobFailedError as exc:
            status = await self._store.fail_job(
                track.track_sid, holder, str(exc), max_attempts=self._max_attempts
            )
            self.failed += 1
            log.warning("whisper job failed: %s", exc, extra={"track_sid": track.track_sid})
            if status is TrackStatus.FAILED:
                await self._tell(track)
            return
        except asyncio.CancelledError:
            # Shutdown mid-job: give the claim back without spending an attempt.
            await asyncio.shield(self._store.release_job(track.track_sid, holder))
            raise
        finally:
            renewer.cancel()
        # The coverage is left to the store: it places Whisper's offsets from the egress's
        # own start and spans the audio's length (with_coverage), one rule for every writer.
        stored = await self._store.finish_job(
            track.track_sid,
            holder,
            transcript.segments,
            stats=WhisperStats(
                model=self._model_name,
                audio_s=round(transcript.audio_s, 3),
                real_time_factor=round(transcript.real_time_factor, 4),
                segments=len(transcript.segments),
                language=transcript.language,
            ),
            lease_s=self._lease_s,
        )
        if not stored:
            # Another worker holds the job now (this one was paused past its lease): its
            # transcript wins; nothing of this run was written.
            log.warning(
                "lease lost before storing a track's transcript: result dropped",
                extra={"track_sid": track.track_sid},
            )
            return
        self.done += 1
        await self._tell(track)

    async def _renew(self, track_sid: str, holder: str) -> None:
        # Renew at a third of the lease so one slow store call cannot let it lapse; a failed
        # renewal is retried sooner instead of ending the renewer unseen (the lease would
        # then lapse mid-job and the finished transcript be refused by the fence).
        wait = self._lease_s / 3
        while True:
            await asyncio.sleep(wait)
            try:
                held = await self._store.renew_lease(track_sid, holder, lease_s=self._lease_s)
            except StoreError as exc:
                log.warning("cannot renew a lease: %s", exc, extra={"track_sid": track_sid})
                wait = min(self._lease_s / 3, max(0.05, self._lease_s / 12))
                continue
            if not held:
                log.warning("lost the lease on a job", extra={"track_sid": track_sid})
                return
            wait = self._lease_s / 3

    async def _transcribe_track(self, track: Track) -> Transcript:
        key = track.egress.object_key
        if not key:
            raise JobFailedError("the track has no recording (no egress object key)")
        with tempfile.TemporaryDirectory(prefix="roomscribe-whisper-") as tmp:
            local = Path(tmp) / Path(key).name
            try:
                await self._objects.get_to_file(key, local)
            except ObjectNotFoundError as exc:
                raise JobFailedError(f"recording not found in the object store: {key}") from exc
            except ObjectStoreError as exc:
                raise JobFailedError(f"cannot download the recording: {exc}") from exc
            try:
                duration = await asyncio.to_thread(probe_duration_s, local)
            except AudioDecodeError as exc:
                raise JobFailedError(f"the recording cannot be decoded: {exc}") from exc
            if duration <= 0:
                raise JobFailedError("the recording is empty (zero length)")
            try:
                return await asyncio.to_thread(
                    self._transcribe,
                    local,
                    track_sid=track.track_sid,
                    language=whisper_language(track.language),
                )
            except (ValueError, RuntimeError, OSError) as exc:
                # faster-whisper/PyAV raise these for audio they cannot use.
                raise JobFailedError(f"transcription failed: {exc}") from exc

    async def _tell(self, track: Track) -> None:
        if self._notify is None:
            return
        try:
            await self._notify(track)
        except httpx.HTTPError as exc:
            # Not fatal: the orchestrator's reconciler sees the status change anyway.
            log.warning("could not notify the orchestrator: %s", exc, extra={"room": track.room})


def orchestrator_notifier(base_url: str, secret: str) -> Notify:
    """Tell the orchestrator a track's job ended, with an internal token."""

    async def notify(track: Track) -> None:
        token = issue_internal_token(secret, audience="orchestrator", subject="whisper-worker")
        async with httpx.AsyncClient(base_url=base_url, timeout=10) as client:
            res = await client.post(
                f"/v1/internal/tracks/{track.track_sid}/job-finished",
                headers={"Authorization": f"Bearer {token}"},
            )
            res.raise_for_status()

    return notify


async def _main(settings: WorkerSettings) -> None:
    from stt_service.whisper import WhisperTranscriber

    store = open_store(settings)
    await store.init()
    objects = open_object_store(settings)
    await objects.init()
    log.info("loading Whisper model", extra={"model": settings.whisper_model})
    transcriber = await asyncio.to_thread(
        WhisperTranscriber,
        settings.model_path(),
        device=settings.whisper_device,
        compute_type=settings.whisper_compute_type,
        cpu_threads=settings.whisper_cpu_threads,
        beam_size=settings.whisper_beam_size,
        batched=settings.whisper_batched,
    )
    notify = (
        orchestrator_notifier(settings.orchestrator_url, settings.secret.get_secret_value())
        if settings.orchestrator_url
        else None
    )
    worker = WhisperWorker(
        store,
        objects,
        transcriber.transcribe,
        model_name=transcriber.model_name,
        notify=notify,
        concurrency=settings.worker_concurrency,
        lease_s=settings.job_lease_s,
        max_attempts=settings.job_max_attempts,
        poll_s=settings.worker_poll_s,
    )
    loop = asyncio.get_running_loop()
    running = asyncio.create_task(worker.run())
    for sig in (signal.SIGINT, signal.SIGTERM):
        # Jobs in hand are interrupted and their leases released (the attempt is not
        # counted), so another worker takes them over at once instead of after the lease.
        loop.add_signal_handler(sig, running.cancel)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await running
    finally:
        await objects.close()
        await store.close()


def main(argv: list[str] | None = None) -> None:
    """Parse ``--concurrency`` and run until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(description="Roomscribe Whisper worker")
    parser.add_argument("--concurrency", type=int, help="jobs at a time (default: settings)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = WorkerSettings()
    if args.concurrency:
        settings.worker_concurrency = args.concurrency
    asyncio.run(_main(settings))


if __name__ == "__main__":
    main()
