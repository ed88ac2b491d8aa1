"""A batch recognizer with exact timings, in the Whisper worker's place, for timing tests.

A random-weight Whisper's segment times are as meaningless as its text, so a test of where
the worker places a recording's words on the room's clock needs a recognizer whose times are
the truth. This one runs real libvosk (the synthetic tone-word model) over the real egress
file the emulator wrote, decoded by the same :func:`roomscribe.audio.decode_file` the worker
uses, and answers with the worker's :class:`~stt_service.whisper.Transcript`.
"""

from __future__ import annotations

import time
from pathlib import Path

from roomscribe.audio import decode_file
from roomscribe.models import SegmentIn, Word
from stt_service.recognizer import Utterance, VoskModels
from stt_service.whisper import Transcript

_RATE = 16000
_CHUNK = _RATE // 10


class VoskFileTranscriber:
    """``transcribe(audio, *, track_sid, language)`` with Vosk's word times.

    Args:
        models: The loaded Vosk models (the tests' shared synthetic one).
    """

    model_name = "vosk-batch"

    def __init__(self, models: VoskModels) -> None:
        self._models = models
        #: The language each call was given, by track sid (what the worker handed over).
        self.languages: dict[str, str | None] = {}

    def transcribe(self, audio: Path, *, track_sid: str, language: str | None) -> Transcript:
        """Recognize the whole file (blocking, as the worker calls it in a thread)."""
        began = time.perf_counter()
        self.languages[track_sid] = language
        pcm = decode_file(audio)
        recognizer = self._models(language or "en")
        utterances: list[Utterance] = []
        for at in range(0, len(pcm), _CHUNK):
            done = recognizer.accept(pcm[at : at + _CHUNK].tobytes())
            if done is not None:
                utterances.append(done)
        last = recognizer.finish()
        if last is not None:
            utterances.append(last)
        segments = [
            SegmentIn(
                id=f"{track_sid}-w{i:04d}",
                start=u.words[0].start,
                end=u.words[-1].end,
                text=u.text,
                words=[Word(word=w.word, start=w.start, end=w.end) for w in u.words],
            )
            for i, u in enumerate(utterances)
            if u.words
        ]
        return Transcript(
            segments=segments,
            language=language or "en",
            audio_s=len(pcm) / _RATE,
            elapsed_s=time.perf_counter() - began,
        )
