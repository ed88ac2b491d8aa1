"""The Whisper batch worker: ``python -m stt_service.worker [--concurrency N]``.

It loads a Whisper model, opens the store and the object store, and runs a
:class:`~stt_service.jobs.WhisperWorker` (the job loop) until SIGINT/SIGTERM.

The model is ``ROOMSCRIBE_WHISPER_MODEL`` (a folder, a name under ``MODELS_DIR/whisper/``,
or a size faster-whisper downloads), else the preferred one the models folder has: a real
model before a synthetic one, the largest first (:func:`choose_whisper_model`). A worker
that cannot start (no model, a model that does not load, a bad setting) says why in one line
and exits with status 2; once it runs it logs that it is ready, with its model, the model's
kind and source, and where its store and objects are.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
from pathlib import Path
from typing import TYPE_CHECKING, Final

from pydantic import Field

from roomscribe.cli import fail, load_settings
from roomscribe.errors import (
    ConfigurationError,
    ObjectStoreError,
    StoreError,
)
from roomscribe.logs import configure_logging
from roomscribe.model_info import WhisperModelChoice, resolve_whisper_model
from roomscribe.objectstore import open_object_store
from roomscribe.settings import CoreSettings
from roomscribe.store import open_store
from stt_service.jobs import WhisperWorker, orchestrator_notifier

if TYPE_CHECKING:
    from stt_service.whisper import WhisperTranscriber

log = logging.getLogger(__name__)

PROG: Final = "python -m stt_service.worker"


class WorkerSettings(CoreSettings):
    """What ``python -m stt_service.worker`` reads (prefix ``ROOMSCRIBE_``)."""

    whisper_model: str | None = Field(
        default=None,
        description="A CTranslate2 Whisper folder, a name under MODELS_DIR/whisper/, or a size "
        "to download; unset: the preferred model in MODELS_DIR/whisper/ (real before "
        "synthetic, largest first).",
    )
    models_dir: Path = Field(
        default=Path("var/models"), description="The models folder (whisper/<size>/, vosk/<lang>/)."
    )
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


def choose_whisper_model(settings: WorkerSettings) -> WhisperModelChoice:
    """The model ``settings`` name, or the preferred one in ``models_dir/whisper/``.

    Raises:
        ConfigurationError: The models folder has no Whisper and none is named, or the one
            named is a folder that holds no CTranslate2 Whisper.
    """
    try:
        return resolve_whisper_model(settings.models_dir, settings.whisper_model)
    except LookupError as exc:
        raise ConfigurationError(str(exc)) from exc


def load_transcriber(settings: WorkerSettings, choice: WhisperModelChoice) -> WhisperTranscriber:
    """Load the chosen Whisper (blocking: seconds).

    Raises:
        ConfigurationError: faster-whisper could not load or download it; the message is
            its first line.
    """
    from stt_service.whisper import WhisperTranscriber

    try:
        return WhisperTranscriber(
            choice.model,
            device=settings.whisper_device,
            compute_type=settings.whisper_compute_type,
            cpu_threads=settings.whisper_cpu_threads,
            beam_size=settings.whisper_beam_size,
            batched=settings.whisper_batched,
        )
    except Exception as exc:  # the hub client and CTranslate2 raise many types; all fatal
        reason = (str(exc).strip().splitlines() or [""])[0]
        where = (
            f"not in {settings.models_dir / 'whisper'}/ and not downloadable"
            if choice.info is None
            else "it does not load"
        )
        raise ConfigurationError(
            f"cannot load Whisper model {choice.model!r}: {where}: {type(exc).__name__}: {reason}"
        ) from exc


def _where(settings: WorkerSettings) -> tuple[str, str]:
    """Where the store and the objects are, for the ready line (no credentials)."""
    store = (
        f"MongoDB database {settings.mongodb_database}"
        if settings.mongodb_uri is not None
        else f"SQLite {settings.sqlite_path}"
    )
    objects = (
        f"S3 {settings.s3_endpoint} bucket {settings.s3_bucket}"
        if settings.s3_endpoint
        else f"folder {settings.objects_dir}"
    )
    return store, objects


async def _main(settings: WorkerSettings) -> None:
    # The model first: a missing one is the commonest start-up error, and takes no store.
    choice = choose_whisper_model(settings)
    name, kind, source = choice.describe()
    log.info("loading Whisper model %s (%s, %s)", choice.model, kind, source)
    transcriber = await asyncio.to_thread(load_transcriber, settings, choice)
    store = open_store(settings)
    objects = open_object_store(settings)
    try:
        await store.init()
        await objects.init()
    except (StoreError, ObjectStoreError) as exc:
        await objects.close()
        await store.close()
        raise ConfigurationError(f"cannot open the store: {exc}") from exc
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
    store_at, objects_at = _where(settings)
    log.info(
        "Whisper worker ready: model %s (%s, %s) at %s; store %s; objects %s; "
        "%d job(s) at a time; orchestrator %s",
        name,
        kind,
        source,
        choice.model,
        store_at,
        objects_at,
        settings.worker_concurrency,
        settings.orchestrator_url or "(not told)",
        extra={"model": name, "model_kind": kind, "model_source": source, "worker": worker.name},
    )
    if kind == "synthetic":
        log.warning("the Whisper model is synthetic (%s): its transcripts are meaningless", source)
    try:
        with contextlib.suppress(asyncio.CancelledError):
            await running
    finally:
        await objects.close()
        await store.close()


def main(argv: list[str] | None = None) -> None:
    """Parse ``--concurrency`` and run until SIGINT/SIGTERM.

    A worker that cannot start says why in one line on stderr and exits with status 2.
    """
    parser = argparse.ArgumentParser(prog=PROG, description="Roomscribe Whisper worker")
    parser.add_argument("--concurrency", type=int, help="jobs at a time (default: settings)")
    parser.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="text: one key=value line per event; json: one JSON object per line",
    )
    args = parser.parse_args(argv)
    if args.concurrency is not None and args.concurrency < 1:
        parser.error(f"--concurrency must be at least 1, not {args.concurrency}")
    configure_logging("json" if args.log_format == "json" else "text")
    settings = load_settings(PROG, WorkerSettings)
    if args.concurrency:
        settings.worker_concurrency = args.concurrency
    try:
        asyncio.run(_main(settings))
    except ConfigurationError as exc:
        fail(PROG, str(exc))


if __name__ == "__main__":
    main()
