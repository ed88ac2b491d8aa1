"""End-to-end benchmark: the demo meeting's caption latencies, and meeting end to summary.

    python -m bench.demo --json                                   # built-in 4-person meeting
    python -m bench.demo --audio $SPEECH/multispeaker/synthetic_meeting_4spk.tracks.flac \
        --manifest $SPEECH/manifest.jsonl        # corpus speech (../shared/data/speech), WER

Each run is a whole ``devkit demo`` (emulator, orchestrator, STT service, Whisper worker, the
agent's track transcribers on local ``rtc`` tracks at ``--speed``), on the models the demo
would pick (real ones in ``--models`` where present, synthetic ones otherwise; the table says
which). Figures per run, then their medians over ``--runs``:

- caption latency: newest audio a caption heard pushed into the agent -> caption ready
  (the pipeline's own delay), p50 and p95 over every partial and final;
- speech end -> final: a final's last word pushed in -> the final ready (what a reader waits
  after a speaker stops, the recognizer's end-of-utterance wait included), p50 and p95;
- meeting end -> summary: the last participant gone -> the summary stored.

Reference, same run and model: faster-whisper called directly on each participant's track,
one after another, as the single Whisper worker does; ``summary_over_direct_whisper`` is
meeting end -> summary over that time (what the pipeline adds around the Whisper work).

With ``--manifest`` (the corpus's ``manifest.jsonl``) and a ``*.tracks.flac`` meeting, the
word error rate of the live and the Whisper transcript of each channel against the
reference texts is added (lower-cased, punctuation dropped).
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.report import emit, percentile

if TYPE_CHECKING:
    from devkit.demo import PreparedModels
    from roomscribe.store import TranscriptStore

_SPEAKER = "speaker{}"
_TITLE = "End-to-end benchmark: caption latencies, and meeting end to summary."


def _p(values: Sequence[float], q: float) -> float:
    return round(percentile(values, q), 1) if values else float("nan")


def normalize(text: str) -> list[str]:
    """Words for WER: lower case, hyphens as spaces, punctuation other than apostrophes gone."""
    return re.sub(r"[^a-z0-9' ]+", " ", text.lower().replace("-", " ")).split()


def word_errors(reference: Sequence[str], hypothesis: Sequence[str]) -> int:
    """Substitutions + deletions + insertions (word-level Levenshtein distance)."""
    row = list(range(len(hypothesis) + 1))
    for i, ref in enumerate(reference, start=1):
        prev, row[0] = row[0], i
        for j, hyp in enumerate(hypothesis, start=1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ref != hyp))
    return row[-1]


def channel_references(manifest: Path, audio: Path) -> dict[str, list[str]]:
    """``speakerN`` -> reference words of channel N-1 of ``audio``, from the manifest."""
    for line in manifest.read_text().splitlines():
        entry = json.loads(line)
        if Path(entry["file"]).name == audio.name:
            words: dict[str, list[str]] = {}
            for segment in entry.get("segments", []):
                who = _SPEAKER.format(segment["channel"] + 1)
                words.setdefault(who, []).extend(normalize(segment["text"]))
            return words
    raise SystemExit(f"{audio.name} is not in {manifest}")


def wer(references: dict[str, list[str]], transcripts: dict[str, str]) -> float:
    """Word error rate over every channel: total errors / total reference words."""
    errors = sum(
        word_errors(ref, normalize(transcripts.get(who, ""))) for who, ref in references.items()
    )
    return round(errors / max(1, sum(len(r) for r in references.values())), 3)


async def whisper_text(store: TranscriptStore, room: str, track_sid: str) -> str:
    """A track's stored Whisper transcript, every page of it, as one text."""
    from roomscribe.models import TranscriptQuery, TranscriptSource

    parts: list[str] = []
    cursor = None
    while True:
        page = await store.query_transcript(
            TranscriptQuery(
                room=room,
                track_sid=track_sid,
                source=TranscriptSource.WHISPER,
                cursor=cursor,
                limit=500,
            )
        )
        parts.extend(s.text for s in page.segments)
        if (cursor := page.next_cursor) is None:
            return " ".join(parts)


async def whisper_texts(db: Path, participants: dict[str, str]) -> dict[str, str]:
    """Each participant's Whisper transcript from the demo's store."""
    from devkit.demo import ROOM
    from roomscribe.store import SQLiteTranscriptStore

    store = SQLiteTranscriptStore(db)
    await store.init()
    try:
        texts: dict[str, str] = {}
        for who, sid in participants.items():
            texts[who] = await whisper_text(store, ROOM, sid)
        return texts
    finally:
        await store.close()


def direct_whisper_s(models: PreparedModels, recordings: Sequence[Path]) -> float:
    """The reference: faster-whisper on each recording in turn, same model and options."""
    from devkit.demo import whisper_transcriber

    transcriber = whisper_transcriber(models)
    started = time.perf_counter()
    for n, recording in enumerate(recordings):
        transcriber.transcribe(recording, track_sid=f"TR_ref{n}", language=None)
    return time.perf_counter() - started


async def one_run(args: argparse.Namespace, workdir: Path) -> dict[str, Any]:
    """One whole demo meeting; its figures."""
    from devkit.demo import DemoOptions, run_demo

    opts = DemoOptions(
        synthetic=args.synthetic,
        speed=args.speed,
        audio_dir=args.audio,
        models_dir=args.models,
        work_dir=workdir / "demo",
        port=0,
        whisper_size=args.whisper_size,
        out=io.StringIO(),
    )
    report = await run_demo(opts)
    # The very files the worker transcribed: the egress recordings in the demo's object store.
    recordings = sorted((opts.work_dir / "objects").rglob("*.ogg"))
    models = report.models
    direct = await asyncio.to_thread(direct_whisper_s, models, recordings)
    figures: dict[str, Any] = {
        "caption_p50_ms": _p(report.caption_latency_ms, 0.5),
        "caption_p95_ms": _p(report.caption_latency_ms, 0.95),
        "captions": len(report.caption_latency_ms),
        "speech_end_to_final_p50_ms": _p(report.final_latency_ms, 0.5),
        "speech_end_to_final_p95_ms": _p(report.final_latency_ms, 0.95),
        "finals": len(report.final_latency_ms),
        "meeting_end_to_summary_s": round(report.end_to_summary_s, 2),
        "direct_whisper_s": round(direct, 2),
        "summary_over_direct_whisper": round(report.end_to_summary_s / direct, 2),
        "meeting_s": round(report.meeting_s, 1),
        "participants": len(report.participants),
        "models": ("synthetic: " if report.synthetic else "real: ")
        + f"vosk {models.vosk.name}/{'syn' if models.vosk_synthetic else 'real'}, "
        + f"whisper {models.whisper.name}/{'syn' if models.whisper_synthetic else 'real'}",
    }
    if args.manifest is not None and args.audio is not None:
        references = channel_references(args.manifest, args.audio)
        live = {who: " ".join(finals) for who, finals in report.finals.items()}
        whisper = await whisper_texts(opts.work_dir / "roomscribe.db", report.participants)
        figures["wer_live"] = wer(references, live)
        figures["wer_whisper"] = wer(references, whisper)
    return figures


async def run(args: argparse.Namespace) -> dict[str, Any]:
    """Every run, then the medians of the numeric figures."""
    runs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="bench-demo-") as tmp:
        for n in range(args.runs):
            runs.append(await one_run(args, Path(tmp)))
            print(f"run {n + 1}/{args.runs}: {runs[-1]}", flush=True)
    result: dict[str, Any] = {"runs": args.runs, "speed": args.speed}
    for key, value in runs[0].items():
        if isinstance(value, int | float) and not isinstance(value, bool):
            result[key] = round(statistics.median(r[key] for r in runs), 3)
        else:
            result[key] = value
    return result


def main(argv: list[str] | None = None) -> None:
    """Run the benchmark and print its table (and JSON with ``--json``)."""
    parser = argparse.ArgumentParser(
        prog="python -m bench.demo", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--audio", type=Path, default=None, help="as devkit demo --audio")
    parser.add_argument(
        "--manifest", type=Path, default=None, help="the corpus manifest.jsonl, for WER"
    )
    parser.add_argument("--runs", type=int, default=3, help="whole meetings (default 3)")
    parser.add_argument("--speed", type=float, default=1.0, help="playback speed (real time)")
    parser.add_argument("--synthetic", action="store_true", help="synthetic models only")
    parser.add_argument("--whisper-size", default=None, help="as devkit demo --whisper-size")
    parser.add_argument("--models", type=Path, default=Path("var/models"), help="models folder")
    parser.add_argument("--json", action="store_true", help="print one JSON line last")
    args = parser.parse_args(argv)
    if args.runs < 1 or args.speed <= 0:
        parser.error("--runs must be >= 1 and --speed > 0")
    started = time.perf_counter()
    result = asyncio.run(run(args))
    result["bench_s"] = round(time.perf_counter() - started, 1)
    emit(result, as_json=args.json)


if __name__ == "__main__":
    main()
