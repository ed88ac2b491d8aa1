"""Whisper worker benchmark: real-time factor by model and beam, worker overhead, and the time
from the last ``egress_ended`` to a completed room.

    python -m bench.whisper --json            # tiny/base/small x beam 1/5, a 5-minute meeting

Speech: the three-participant meeting of ``../shared/data/speech`` (one channel per
participant, turn-taking silences included), each channel repeated to ``--meeting-s`` seconds.
Models: real weights when ``ROOMSCRIBE_MODELS_DIR/whisper/<size>`` holds a real model, else
random weights of the real architectures (``devkit.synthetic_whisper``) decoded at temperature
0 with a fixed length of about 3.5 tokens per second of speech (end-of-text suppressed, a
token cap per 30 s window), so the compute resembles a real transcript's. int8, 2 threads.

- RTF grid: faster-whisper called directly on one participant's track (the reference), per
  size and beam size.
- Overhead: the worker's whole job on the same track (download from the object store, probe,
  transcribe with post-processing, store, complete) against the direct call, same model and
  options, same run: ``overhead_ratio = direct seconds / worker seconds``.
- End to end: LiveKit emulator egress -> object store -> worker (base, beam 1) -> store ->
  orchestrator completion with the extractive summary; timed from the moment the last track's
  recording ended to the room reaching ``completed``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from bench.report import emit

SIZES = ("tiny", "base", "small")
TOKENS_PER_S = 3.5


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


def model_for(size: str, workdir: Path) -> tuple[Path, str]:
    models = Path(os.environ.get("ROOMSCRIBE_MODELS_DIR", "var/models")) / "whisper" / size
    if models.is_dir() and not (models / "roomscribe-synthetic.json").exists():
        return models, "real"
    from devkit.synthetic_whisper import build_synthetic_whisper

    return build_synthetic_whisper(Path("var/bench") / f"whisper-{size}", size=size), "random"  # type: ignore[arg-type]


def decode_options(weights: str) -> dict[str, Any]:
    if weights == "real":
        return {"temperature": 0.0}
    from devkit.synthetic_whisper import random_weight_decode_options

    return random_weight_decode_options(TOKENS_PER_S)


def direct_seconds(model: Any, audio: Path, beam: int, options: dict[str, Any]) -> float:
    began = time.perf_counter()
    segments, _ = model.transcribe(
        str(audio), language="en", beam_size=beam, vad_filter=True, word_timestamps=True, **options
    )
    for _ in segments:  # the generator does the work
        pass
    return time.perf_counter() - began


async def worker_seconds(audio_pcm: np.ndarray, transcriber: Any, workdir: Path) -> float:
    """One full worker job on one track (object store, store, transcription, completion)."""
    from datetime import UTC, datetime

    from devkit.livekit_emulator import encode_ogg_opus
    from roomscribe.models import EgressInfo, TrackCreate, TrackStatus
    from roomscribe.objectstore import LocalObjectStore
    from roomscribe.store import SQLiteTranscriptStore
    from stt_service.jobs import WhisperWorker

    store = SQLiteTranscriptStore(workdir / f"overhead-{time.monotonic_ns()}.db")
    await store.init()
    objects = LocalObjectStore(workdir / "objects-overhead")
    await objects.init()
    key = "rooms/r/alice/TR_a.ogg"
    await objects.put_bytes(key, encode_ogg_opus(audio_pcm))
    await store.upsert_track(
        TrackCreate(
            track_sid="TR_a",
            room="r",
            participant_identity="alice",
            published_at=datetime.now(UTC),
            language="en",
        )
    )
    await store.update_egress("TR_a", EgressInfo(id="EG_1", object_key=key))
    await store.set_track_status("TR_a", TrackStatus.RECORDED)
    worker = WhisperWorker(
        store, objects, transcriber.transcribe, model_name=transcriber.model_name
    )
    began = time.perf_counter()
    await worker.run_until_idle()
    elapsed = time.perf_counter() - began
    await store.close()
    return elapsed


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


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from faster_whisper import WhisperModel

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    tracks = meeting_tracks(Path(args.speech), args.meeting_s)
    workdir = Path(tempfile.mkdtemp(prefix="roomscribe-whisper-bench-"))
    result: dict[str, Any] = {"meeting_s": args.meeting_s, "participants": len(tracks)}
    try:
        from devkit.livekit_emulator import encode_ogg_opus

        # The same OGG/Opus file egress writes, so both sides pay the same decoding.
        alice = workdir / "alice.ogg"
        alice.write_bytes(encode_ogg_opus(tracks[0]))
        weights_seen = set()
        for size in args.sizes.split(","):
            model_dir, weights = model_for(size, workdir)
            weights_seen.add(weights)
            options = decode_options(weights)
            model = WhisperModel(str(model_dir), device="cpu", compute_type="int8", cpu_threads=2)
            for beam in (1, 5):
                print(f"direct: {size} beam {beam} ...", file=sys.stderr)
                secs = statistics.median(
                    direct_seconds(model, alice, beam, options) for _ in range(args.repeats)
                )
                result[f"rtf_{size}_int8_beam{beam}"] = round(secs / args.meeting_s, 4)
            if size == "base":
                from stt_service.whisper import WhisperTranscriber

                # One loaded, warmed model for both sides: the worker's path and the direct
                # call differ only by what the worker adds around the same transcription.
                transcriber = WhisperTranscriber(
                    str(model_dir), cpu_threads=2, decode_options=options
                )
                direct_seconds(transcriber.model, alice, 1, options)  # warm-up
                direct, worker = [], []
                for _ in range(max(2, args.repeats)):
                    print("worker vs direct: base beam 1 ...", file=sys.stderr)
                    direct.append(direct_seconds(transcriber.model, alice, 1, options))
                    worker.append(await worker_seconds(tracks[0], transcriber, workdir))
                result["direct_base_beam1_s"] = round(statistics.median(direct), 2)
                result["worker_base_beam1_s"] = round(statistics.median(worker), 2)
                result["overhead_ratio"] = round(
                    statistics.median(direct) / statistics.median(worker), 3
                )
                print("end to end: 3 participants, base beam 1 ...", file=sys.stderr)
                result |= await end_to_end(tracks, model_dir, options, workdir)
            del model
        result["model_weights"] = "real" if weights_seen == {"real"} else "random"
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--speech", default=str(Path(__file__).resolve().parents[2] / "shared" / "data" / "speech")
    )
    parser.add_argument("--sizes", default=",".join(SIZES))
    parser.add_argument("--meeting-s", type=float, default=300.0)
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    emit(asyncio.run(run(args)), as_json=args.json)


if __name__ == "__main__":
    main()
