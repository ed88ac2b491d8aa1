"""The Whisper worker's job loop: claim, transcribe, store, tell the orchestrator.

Claims recorded tracks from the store (a lease on the track document, renewed while working,
attempts bounded, last error kept), downloads the recording from the object store,
transcribes it with faster-whisper in a thread, stores the segments as the track's Whisper
transcript (replacing any earlier run), marks the track ``transcribed`` and tells the
orchestrator so the room can complete. Bad input (missing object, undecodable or empty file)
fails the track with a clear reason; the room still completes. Many workers on many machines
can share one MongoDB: the claim is an atomic find-and-modify.

``python -m stt_service.worker`` (:mod:`stt_service.worker`) loads a model and runs it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import tempfile
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import httpx

from roomscribe.audio import probe_duration_s
from roomscribe.auth import issue_internal_token
from roomscribe.errors import (
    AudioDecodeError,
    ObjectNotFoundError,
    ObjectStoreError,
    StoreError,
)
from roomscribe.models import Track, TrackStatus, WhisperStats
from roomscribe.objectstore import ObjectStore
from roomscribe.store import TranscriptStore
from stt_service.whisper import Transcript

if TYPE_CHECKING:
    pass

log = logging.getLogger(__name__)


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
