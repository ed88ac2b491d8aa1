"""Whisper transcription of a recorded track, with the light post-processing users expect.

faster-whisper returns a lazy generator: it is consumed inside the worker thread that called
``transcribe``, never on the event loop.
"""

from __future__ import annotations

import logging
import math
import re
import time
import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from roomscribe.models import SegmentIn, Word

log = logging.getLogger(__name__)

#: Whole-segment texts Whisper emits for non-speech; they carry no words.
_NOISE = re.compile(r"^\s*(\[[^\]]*\]|\([^)]*\)|♪+|\*[^*]*\*|\.{2,}|-+)\s*$", flags=re.IGNORECASE)

#: Whisper's own test for a decoding stuck in a loop ("the the the ..."): text that gzip
#: shrinks more than this is repetition, not speech (``compression_ratio_threshold``).
MAX_COMPRESSION_RATIO = 2.4


def compression_ratio(text: str) -> float:
    """How much zlib shrinks ``text``; normal speech stays under 2, loops go far above."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


@dataclass(frozen=True)
class RawSegment:
    """What the recognizer produced, before post-processing (times in track seconds)."""

    start: float
    end: float
    text: str
    avg_logprob: float
    words: list[Word]


@dataclass(frozen=True)
class Transcript:
    """A track's transcript and what it cost."""

    segments: list[SegmentIn]
    language: str
    audio_s: float
    elapsed_s: float

    @property
    def real_time_factor(self) -> float:
        """Seconds of compute per second of audio."""
        return self.elapsed_s / self.audio_s if self.audio_s > 0 else 0.0


def confidence(avg_logprob: float) -> float:
    """Map Whisper's mean token log-probability to 0..1."""
    return min(1.0, max(0.0, math.exp(avg_logprob)))


def postprocess(
    raw: Iterable[RawSegment],
    *,
    track_sid: str,
    min_s: float,
    max_compression_ratio: float = MAX_COMPRESSION_RATIO,
) -> list[SegmentIn]:
    """Trim, drop noise markers and loops, merge fragments shorter than ``min_s``.

    A loop is a segment whose text compresses more than ``max_compression_ratio``: Whisper
    retries such a window at higher temperatures when it may, but greedy decoding at
    temperature 0 (this project's default) keeps it, and a wall of "thank you thank you ..."
    helps nobody; the live transcript still covers that stretch in ``best`` when nothing else
    of the track is kept. Segment ids are ``{track_sid}-w{index}``: a re-run replaces them
    all, never duplicates.
    """
    kept: list[RawSegment] = []
    loops = 0
    for seg in raw:
        text = " ".join(seg.text.split())
        if not text or _NOISE.match(text):
            continue
        if compression_ratio(text) > max_compression_ratio:
            loops += 1
            continue
        seg = RawSegment(seg.start, max(seg.end, seg.start), text, seg.avg_logprob, seg.words)
        if kept and (seg.end - seg.start < min_s or kept[-1].end - kept[-1].start < min_s):
            prev = kept[-1]
            # A fragment joins its neighbour; the merged confidence weighs both by duration.
            span_a, span_b = prev.end - prev.start, seg.end - seg.start
            total = span_a + span_b
            logprob = (
                (prev.avg_logprob * span_a + seg.avg_logprob * span_b) / total
                if total > 0
                else prev.avg_logprob
            )
            kept[-1] = RawSegment(
                prev.start, seg.end, f"{prev.text} {text}", logprob, [*prev.words, *seg.words]
            )
        else:
            kept.append(seg)
    if loops:
        log.info(
            "dropped %d repetition-loop segment(s) from a Whisper transcript",
            loops,
            extra={"track_sid": track_sid},
        )
    return [
        SegmentIn(
            id=f"{track_sid}-w{i:06d}",
            start=s.start,
            end=s.end,
            text=s.text,
            confidence=round(confidence(s.avg_logprob), 4),
            words=s.words,
        )
        for i, s in enumerate(kept)
    ]


def transcribe_options(
    language: str | None, beam_size: int, decode_options: Mapping[str, Any]
) -> dict[str, Any]:
    """The keyword arguments the worker gives faster-whisper's ``transcribe``.

    One place, so that a benchmark's bare call does exactly what the worker does.
    """
    return {
        "language": language,
        "beam_size": beam_size,
        "vad_filter": True,
        "word_timestamps": True,
        **decode_options,
    }


class WhisperTranscriber:
    """A faster-whisper model loaded once, shared by the worker's jobs."""

    def __init__(
        self,
        model: str,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        cpu_threads: int = 2,
        beam_size: int = 1,
        batched: bool = False,
        batch_size: int = 8,
        min_segment_s: float = 0.5,
        decode_options: Mapping[str, Any] | None = None,
    ) -> None:
        """Load ``model`` (a folder, or a size name faster-whisper downloads); blocking.

        ``decode_options`` go to ``transcribe`` as they are (e.g. ``temperature``); the
        benchmark uses them to give random-weight models a realistic decode length.
        """
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.model_name = Path(model).name or model
        self._model: Any = WhisperModel(
            model, device=device, compute_type=compute_type, cpu_threads=cpu_threads
        )
        self._pipeline: Any = BatchedInferencePipeline(self._model) if batched else None
        self._beam_size = beam_size
        self._batch_size = batch_size
        self._min_segment_s = min_segment_s
        self._decode_options = dict(decode_options or {})

    @property
    def model(self) -> Any:
        """The loaded ``faster_whisper.WhisperModel`` (benchmarks compare against it)."""
        return self._model

    def transcribe(self, audio: Path, *, track_sid: str, language: str | None) -> Transcript:
        """Transcribe a recording (blocking: call it in a thread)."""
        began = time.perf_counter()
        if language is not None and language not in self._model.supported_languages:
            # An English-only model, or a code Whisper does not know: let it detect rather
            # than fail the whole track on a label.
            log.info(
                "language not supported by the Whisper model; detecting instead",
                extra={"track_sid": track_sid, "language": language},
            )
            language = None
        options = transcribe_options(language, self._beam_size, self._decode_options)
        if self._pipeline is not None:
            segments, info = self._pipeline.transcribe(
                str(audio), batch_size=self._batch_size, **options
            )
        else:
            segments, info = self._model.transcribe(str(audio), **options)
        raw = [
            RawSegment(
                start=float(s.start),
                end=float(s.end),
                text=str(s.text),
                avg_logprob=float(s.avg_logprob),
                words=[
                    Word(
                        word=str(w.word).strip(),
                        start=float(w.start),
                        end=max(float(w.end), float(w.start)),
                        confidence=min(1.0, max(0.0, float(w.probability))),
                    )
                    for w in (s.words or [])
                ],
            )
            for s in segments  # the lazy generator is consumed here, in this thread
        ]
        return Transcript(
            segments=postprocess(raw, track_sid=track_sid, min_s=self._min_segment_s),
            language=str(info.language),
            audio_s=float(info.duration),
            elapsed_s=time.perf_counter() - began,
        )
