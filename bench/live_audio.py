"""The models and the audio of :mod:`bench.stt_load`: which weights, and what each client sends.

The stream format (16 kHz mono s16le in 20 ms frames) is defined here, once, for the other
``bench.live_*`` modules and :mod:`bench.stt_load`.
"""

from __future__ import annotations

import json
import math
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt

RATE = 16000
FRAME_MS = 20
FRAME_SAMPLES = RATE * FRAME_MS // 1000

#: The first seconds of a stream, where a real model's recognizer composes its lookahead graph
#: as it goes (single decodes of up to a second): partials after it are the steady state.
WARM_S = 5.0

# Tone words mixed into speech for the synthetic model: one every TONE_EVERY_S at a peak of
# TONE_AMPLITUDE of full scale (about the speech's own RMS, so "modest" and still detected).
TONE_EVERY_S = 1.5
TONE_WORD_S = 0.4
TONE_AMPLITUDE = 0.05


# --- Models -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class ModelChoice:
    path: Path
    name: str
    synthetic: bool
    source: str

    @property
    def weights(self) -> str:
        return "synthetic" if self.synthetic else "real"


def choose_model(
    arg: Path | None, cache_dir: Path, models_dir: Path, *, synthetic: bool = False
) -> ModelChoice:
    """``--model``; else a real ``ROOMSCRIBE_MODELS_DIR/vosk/en``; else the fetched real model;
    else (or with ``synthetic``) the synthetic small model.
    """
    from bench.real_models import vosk_dir
    from roomscribe.model_info import describe_model

    candidates: list[Path] = []
    if arg is not None:
        if not arg.is_dir():
            sys.exit(f"--model {arg}: no such folder (expected a Vosk model directory)")
        candidates.append(arg)
    elif not synthetic:
        if env_dir := os.environ.get("ROOMSCRIBE_MODELS_DIR"):
            candidates.append(Path(env_dir) / "vosk" / "en")
        candidates.append(vosk_dir(models_dir))
    for folder in candidates:
        info = describe_model(folder, "vosk")
        if info is None:
            continue
        if not info.synthetic or arg is not None:  # an explicit synthetic model: say which
            name = folder.resolve().name if not info.synthetic else "synthetic"
            return ModelChoice(folder, name, info.synthetic, info.source)
    from devkit.synthetic_vosk import build_synthetic_vosk_model

    # Cached under var/ (ignored by git): the build is deterministic and checks its stamp.
    path = build_synthetic_vosk_model(cache_dir / "vosk-small", variant="small")
    return ModelChoice(path, "synthetic-small", True, "devkit.synthetic_vosk small")


# --- Audio ------------------------------------------------------------------------------------
def require_manifest(folder: Path) -> Path:
    """The speech folder's manifest, or exit with a message saying what to pass."""
    manifest = folder / "manifest.jsonl"
    if not manifest.is_file():
        sys.exit(
            f"no speech data at {folder} (missing manifest.jsonl): pass --speech DIR, a folder "
            "with manifest.jsonl and the audio files it lists (a fresh clone does not have "
            "../shared/data/speech)"
        )
    return manifest


def load_speech(folder: Path, seconds: float) -> npt.NDArray[np.int16]:
    """Decode manifest files in order until ``seconds`` of speech (or all of it) are in hand."""
    from roomscribe.audio import decode_file

    manifest = require_manifest(folder)
    pieces: list[npt.NDArray[np.int16]] = []
    total = 0
    for line in manifest.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        entry = json.loads(line)
        # Multi-speaker mixes are built from files already listed: skip the duplicates.
        if entry.get("multi_speaker"):
            continue
        pcm = decode_file(folder / entry["file"], sample_rate=RATE)
        pieces.append(pcm)
        total += len(pcm)
        if total >= seconds * RATE:
            break
    if not pieces:
        sys.exit(f"{manifest} lists no usable audio")
    return np.concatenate(pieces)


def slice_cyclic(corpus: npt.NDArray[np.int16], start: int, length: int) -> npt.NDArray[np.int16]:
    """``length`` samples from ``start``, wrapping around when the corpus is shorter."""
    reps = math.ceil((start % len(corpus) + length) / len(corpus))
    return np.tile(corpus, reps)[start % len(corpus) :][:length]


def tone_starts(seconds: float, stream: int) -> list[float]:
    """Where the tone words go: every TONE_EVERY_S from a per-stream phase, one ending last.

    The phase differs per stream so that N clients do not all produce results in the same
    instant; the last tone ends with the audio, so ``end`` has an open utterance to finalize.
    """
    last = seconds - TONE_WORD_S
    starts: list[float] = []
    t = 0.3 + (stream * 0.37) % TONE_EVERY_S
    # Keep at least one endpointer timeout (1 s of non-tone) before the last tone.
    while t + TONE_WORD_S + 1.0 <= last:
        starts.append(t)
        t += TONE_EVERY_S
    starts.append(last)
    return starts


def mix_tones(pcm: npt.NDArray[np.int16], stream: int) -> npt.NDArray[np.int16]:
    """``pcm`` with a tone word at each of :func:`tone_starts`, clipped to int16."""
    from devkit.tones import TONE_WORDS, synthesize

    out = pcm.astype(np.int32)
    for k, start_s in enumerate(tone_starts(len(pcm) / RATE, stream)):
        word = TONE_WORDS[(stream + k) % len(TONE_WORDS)]
        tone = synthesize(
            [word],
            sample_rate=RATE,
            word_s=TONE_WORD_S,
            gap_s=0.0,
            lead_s=0.0,
            tail_s=0.0,
            amplitude=TONE_AMPLITUDE,
        )
        at = round(start_s * RATE)
        end = min(len(out), at + len(tone))
        out[at:end] += tone[: end - at]
    return np.clip(out, -32768, 32767).astype(np.int16)


def build_streams(
    corpus: npt.NDArray[np.int16], count: int, seconds: float, *, tones: bool
) -> npt.NDArray[np.int16]:
    """``count`` streams of ``seconds`` (whole frames), stream ``i`` from its own corpus slice."""
    frames = int(seconds * 1000) // FRAME_MS
    length = frames * FRAME_SAMPLES
    rows = []
    for i in range(count):
        pcm = slice_cyclic(corpus, i * length, length)
        rows.append(mix_tones(pcm, i) if tones else pcm)
    return np.stack(rows)
