"""TTS service benchmark: time to first audio, real-time factor, barge-in, concurrency.

    python -m bench.tts --json            # 5 rounds, 1/2/4 concurrent requests

Model: real weights when ``ROOMSCRIBE_MODELS_DIR/kokoro`` holds a real Kokoro-82M (no
synthetic stamp), else a random-weight model of the real architecture
(``devkit.synthetic_kokoro``, cached in ``var/bench/kokoro``) whose phonemes last about 3
frames each, so audio length and compute resemble real speech. The real kokoro library runs
either way (misaki G2P, KModel on the CPU, ``--threads`` torch threads, ``--workers``
sentences at once, default 1 as the service's default).

The service runs in this process on a real server; requests go over loopback HTTP.

- first audio: a 3-sentence text through ``POST /v1/synthesize``, from the request to the
  first bytes received; reference, same run, interleaved: bare Kokoro (``KPipeline`` on the
  same ``KModel``) synthesizing only the first sentence, in a worker thread.
  ``first_audio_ratio = service_first_audio_s / bare_first_sentence_s`` (goal <= 1.1).
- RTF: the whole text through the service (request to last byte) over its audio length, and
  bare Kokoro on the same three sentences.
- barge-in: the client closes the stream a moment into the second sentence's synthesis;
  the stop latency is from the close to the engine going idle (the running sentence stops at
  a module boundary of the model), next to what finishing that sentence would have cost.
- concurrency: N clients ask for the text at once; audio seconds produced per wall second
  and the median time to first audio.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

from bench.report import emit

TEXT = (
    "The quarterly review starts at nine, right after the stand-up meeting. "
    "Please bring the updated figures for the northern region and the draft budget. "
    "We will close with questions from the team and agree on next steps."
)
BARGE_TEXT = TEXT + " " + TEXT


def model_folder() -> tuple[Path, str]:
    models = Path(os.environ.get("ROOMSCRIBE_MODELS_DIR", "var/models")) / "kokoro"
    if (models / "kokoro-v1_0.pth").is_file() and not (
        models / "roomscribe-synthetic.json"
    ).exists():
        return models, "real"
    from devkit.synthetic_kokoro import build_synthetic_kokoro

    print("building the random-weight Kokoro (cached in var/bench/kokoro) ...", file=sys.stderr)
    return build_synthetic_kokoro(Path("var/bench") / "kokoro", frames_per_phoneme=3.0), "random"


async def service_once(client: httpx.AsyncClient, text: str) -> tuple[float, float, int]:
    """(first audio s, whole answer s, bytes) of one ``/v1/synthesize``."""
    began = time.perf_counter()
    first = 0.0
    size = 0
    async with client.stream("POST", "/v1/synthesize", json={"text": text}) as res:
        res.raise_for_status()
        async for chunk in res.aiter_raw():
            if not size:
                first = time.perf_counter() - began
            size += len(chunk)
    return first, time.perf_counter() - began, size


def bare(engine: Any, sentences: list[str]) -> tuple[float, float]:
    """Bare Kokoro on ``sentences`` in this thread: (first sentence s, total audio s)."""
    pipeline = engine.loaded.pipelines["a"]
    pack = engine.loaded.packs[engine.default_voice]
    began = time.perf_counter()
    first = 0.0
    audio = 0.0
    for i, sentence in enumerate(sentences):
        for result in pipeline(sentence, voice=pack, speed=1.0, split_pattern=None):
            audio += result.audio.shape[-1] / 24000
        if i == 0:
            first = time.perf_counter() - began
    return first, audio


async def barge_in(client: httpx.AsyncClient, engine: Any, into_s: float) -> tuple[float, bool]:
    """Close a stream ``into_s`` after the first audio; (stop latency s, aborted mid-way)."""
    aborted = engine.stats.aborted
    async with client.stream("POST", "/v1/synthesize", json={"text": BARGE_TEXT}) as res:
        res.raise_for_status()
        chunks = res.aiter_raw()
        await anext(chunks)
        await asyncio.sleep(into_s)
        closed_at = time.perf_counter()
    # Leaving the block closed the connection; the engine stops on its own.
    await engine.wait_idle(60)
    return max(0.0, engine.idle_since - closed_at), engine.stats.aborted > aborted


async def run(args: argparse.Namespace) -> dict[str, Any]:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from roomscribe.serving import running
    from tts_service.app import create_app
    from tts_service.engine import KokoroEngine
    from tts_service.settings import TtsSettings

    folder, weights = model_folder()
    print("loading Kokoro ...", file=sys.stderr)
    engine = await asyncio.to_thread(
        KokoroEngine.load, folder, threads=args.threads, workers=args.workers
    )
    sentences = engine.split(TEXT)
    settings = TtsSettings(
        tts_auth=False, tts_max_concurrent=max(args.concurrency), models_dir=folder.parent
    )
    result: dict[str, Any] = {"weights": f"{weights} ({engine.loaded.files.label()})"}
    result["g2p"] = engine.loaded.g2p
    result["torch_threads"] = args.threads
    result["workers"] = args.workers
    result["sentences"] = len(sentences)
    try:
        async with (
            running(create_app(settings, engine=engine)) as url,
            httpx.AsyncClient(base_url=url, timeout=600) as client,
        ):
            await service_once(client, "Warm up.")
            ours_first, ours_total, bare_first, bare_total, audio = [], [], [], [], 0.0
            for round_ in range(args.rounds):
                print(f"round {round_ + 1}/{args.rounds} ...", file=sys.stderr)
                first, total, size = await service_once(client, TEXT)
                ours_first.append(first)
                ours_total.append(total)
                audio = size / 2 / 24000
                began = time.perf_counter()
                b_first, b_audio = await asyncio.to_thread(bare, engine, sentences)
                bare_first.append(b_first)
                bare_total.append((time.perf_counter() - began) / b_audio)
            result.update(
                {
                    "audio_s": round(audio, 2),
                    "service_first_audio_s": round(statistics.median(ours_first), 3),
                    "bare_first_sentence_s": round(statistics.median(bare_first), 3),
                    "first_audio_ratio": round(
                        statistics.median(ours_first) / statistics.median(bare_first), 3
                    ),
                    "service_rtf": round(statistics.median(ours_total) / audio, 3),
                    "bare_rtf": round(statistics.median(bare_total), 3),
                }
            )
            print("barge-in ...", file=sys.stderr)
            sentence_s = statistics.median(bare_first)
            stops, aborted = [], 0
            for _ in range(args.rounds):
                latency, mid = await barge_in(client, engine, sentence_s * 0.3)
                stops.append(latency)
                aborted += mid
            result.update(
                {
                    "barge_in_stop_p50_ms": round(statistics.median(stops) * 1000, 1),
                    "barge_in_stop_max_ms": round(max(stops) * 1000, 1),
                    "barge_in_aborted_mid_sentence": f"{aborted}/{args.rounds}",
                    "sentence_compute_ms": round(sentence_s * 1000, 1),
                }
            )
            for n in args.concurrency:
                print(f"{n} concurrent ...", file=sys.stderr)
                began = time.perf_counter()
                runs = await asyncio.gather(*(service_once(client, TEXT) for _ in range(n)))
                wall = time.perf_counter() - began
                produced = sum(size for _, _, size in runs) / 2 / 24000
                result[f"c{n}_audio_s_per_s"] = round(produced / wall, 3)
                result[f"c{n}_first_audio_p50_s"] = round(
                    statistics.median(first for first, _, _ in runs), 3
                )
                result[f"c{n}_wall_s"] = round(wall, 2)
    finally:
        engine.close()
    return result


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per model call")
    parser.add_argument("--workers", type=int, default=1, help="sentences synthesized at once")
    parser.add_argument(
        "--concurrency",
        type=lambda v: [int(x) for x in v.split(",")],
        default=[1, 2, 4],
        help="concurrent request counts, e.g. 1,2,4",
    )
    parser.add_argument("--json", action="store_true", help="print one JSON object last")
    args = parser.parse_args(argv)
    emit(asyncio.run(run(args)), as_json=args.json)


if __name__ == "__main__":
    main()
