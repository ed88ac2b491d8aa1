"""The synthesis engine: one Kokoro model, sentences synthesized in worker threads.

:meth:`KokoroEngine.stream` splits a text into sentences (:mod:`tts_service.text`) and
synthesizes them one after another, each as a job on a small thread pool (``workers``
threads: model calls that may run at once). It yields each sentence's audio as soon as that
sentence is done, so the first audio leaves after one sentence's compute, not the text's.
Kokoro's lazy generators are consumed inside the job, never on the event loop.

Cancellation (barge-in): when the consumer stops (the client went away, the generator is
closed or its task cancelled), the request's :class:`CancelToken` is set. A job not started
yet returns at once without touching the model; a job that is running stops at the next
module boundary: every module of the model has a forward pre-hook that raises
:class:`SynthesisCancelled` when the calling thread's token is set. Stopping mid-forward is
safe here (inference only, no state kept between calls), and it frees the model within one
module's compute instead of the rest of the sentence's.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import math
import threading
import time
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import torch

from tts_service.audio_formats import float_to_pcm16
from tts_service.kokoro_model import SAMPLE_RATE, LoadedKokoro, VoiceInfo, find_model, load_kokoro
from tts_service.text import DEFAULT_MAX_SENTENCE_CHARS, split_sentences

log = logging.getLogger(__name__)

#: What the warm-up call says (short: it only has to touch every kernel once).
WARMUP_TEXT: Final = "Hello."
#: The voice used when a request names none and the settings do not say.
PREFERRED_VOICE: Final = "af_heart"
#: Speeds accepted (Kokoro divides every phoneme's duration by it); OpenAI's range.
MIN_SPEED: Final = 0.25
MAX_SPEED: Final = 4.0

Outcome = Literal["finished", "aborted", "skipped"]
#: Called from worker threads after each sentence job: outcome, compute s, audio s.
SentenceObserver = Callable[[Outcome, float, float], None]


class SynthesisCancelled(Exception):
    """Raised inside a model call whose request was cancelled."""


class UnknownVoiceError(ValueError):
    """A voice that is not loaded (the message lists the ones that are)."""


class CancelToken:
    """Set when a request's audio is no longer wanted; read by worker threads."""

    def __init__(self) -> None:
        self._event = threading.Event()

    def cancel(self) -> None:
        """Stop this request's synthesis at the next module boundary."""
        self._event.set()

    @property
    def cancelled(self) -> bool:
        """Whether :meth:`cancel` was called."""
        return self._event.is_set()


@dataclass(frozen=True)
class Word:
    """A word and where it is said, in seconds from the start of the response's audio.

    The times are Kokoro's (from its predicted phoneme durations); ``None`` where Kokoro
    gives none.
    """

    text: str
    start_s: float | None
    end_s: float | None


@dataclass(frozen=True)
class SentenceAudio:
    """One synthesized piece: PCM s16le mono at :data:`SAMPLE_RATE`, with its words."""

    index: int
    text: str
    pcm: bytes
    start_s: float
    duration_s: float
    words: tuple[Word, ...]


@dataclass
class EngineStats:
    """Counts of sentence jobs, for tests, the benchmark and ``/readyz``."""

    started: int = 0
    finished: int = 0
    aborted: int = 0
    skipped: int = 0


@dataclass(frozen=True)
class _Piece:
    text: str
    samples: Any  # float32 torch tensor
    words: tuple[Word, ...]


_current = threading.local()


def _check_cancelled(_module: torch.nn.Module, _args: Any) -> None:
    token: CancelToken | None = getattr(_current, "token", None)
    if token is not None and token.cancelled:
        raise SynthesisCancelled


class KokoroEngine:
    """Kokoro-82M behind a worker pool; see the module docstring.

    Args:
        loaded: The model and voices (:func:`tts_service.kokoro_model.load_kokoro`).
        workers: Sentences synthesized at the same time.
        max_sentence_chars: Longest piece synthesized as one.
        default_voice: Voice for requests that name none; ``None``: ``af_heart`` if loaded,
            else the first voice.
        observer: Told about every sentence job (metrics).
    """

    sample_rate: Final = SAMPLE_RATE

    def __init__(
        self,
        loaded: LoadedKokoro,
        *,
        workers: int = 1,
        max_sentence_chars: int = DEFAULT_MAX_SENTENCE_CHARS,
        default_voice: str | None = None,
        observer: SentenceObserver | None = None,
    ) -> None:
        self.loaded = loaded
        self._max_sentence_chars = max_sentence_chars
        #: Told about every sentence job (the app points it at its metrics).
        self.observer = observer
        self._executor = concurrent.futures.ThreadPoolExecutor(workers, thread_name_prefix="tts")
        self._lock = threading.Lock()
        self._g2p_lock = threading.Lock()
        self._active = 0
        self.stats = EngineStats()
        #: ``time.perf_counter()`` when the last running job ended (the engine went idle).
        self.idle_since = time.perf_counter()
        names = sorted(loaded.voices)
        if default_voice is not None and default_voice not in loaded.voices:
            raise UnknownVoiceError(self._unknown(default_voice))
        self.default_voice = default_voice or (
            PREFERRED_VOICE if PREFERRED_VOICE in loaded.voices else names[0]
        )
        self._hooks = [
            module.register_forward_pre_hook(_check_cancelled) for module in loaded.model.modules()
        ]

    @classmethod
    def load(
        cls,
        folder: Path,
        *,
        threads: int = 2,
        workers: int = 1,
        max_sentence_chars: int = DEFAULT_MAX_SENTENCE_CHARS,
        default_voice: str | None = None,
        warmup: bool = True,
        observer: SentenceObserver | None = None,
    ) -> KokoroEngine:
        """Find, load and (optionally) warm up the model in ``folder``; blocking, seconds.

        Args:
            folder: The Kokoro model folder (:mod:`tts_service.kokoro_model`).
            threads: CPU threads torch uses inside one model call (process-wide).
            workers: Sentences synthesized at the same time.
            max_sentence_chars: Longest piece synthesized as one.
            default_voice: Voice for requests that name none.
            warmup: Synthesize one short sentence first, so the first request does not pay
                torch's first-call cost.
            observer: Told about every sentence job.

        Raises:
            ConfigurationError: The folder holds no usable Kokoro model.
            UnknownVoiceError: ``default_voice`` is not among the voices.
        """
        loaded = load_kokoro(find_model(folder), threads=threads)
        engine = cls(
            loaded,
            workers=workers,
            max_sentence_chars=max_sentence_chars,
            default_voice=default_voice,
            observer=observer,
        )
        if warmup:
            engine.synthesize_sentence(WARMUP_TEXT, engine.default_voice, 1.0)
        return engine

    # --- what the service offers ---------------------------------------------------------

    @property
    def voices(self) -> list[VoiceInfo]:
        """The voices, by name."""
        return [self.loaded.voices[n] for n in sorted(self.loaded.voices)]

    @property
    def busy(self) -> int:
        """Sentence jobs running now."""
        return self._active

    def split(self, text: str) -> list[str]:
        """The pieces :meth:`stream` synthesizes ``text`` as."""
        return split_sentences(text, max_chars=self._max_sentence_chars)

    def check_voice(self, voice: str | None) -> str:
        """Resolve a request's voice: its name, or the default when ``None``.

        Several names joined by ``,`` mix those voices (their packs are averaged, as Kokoro
        does); all must be of one language.

        Raises:
            UnknownVoiceError: A name is not loaded, or the mix spans languages.
        """
        if voice is None:
            return self.default_voice
        names = [part.strip() for part in voice.split(",")]
        for name in names:
            if name not in self.loaded.voices:
                raise UnknownVoiceError(self._unknown(name))
        if len({self.loaded.voices[n].language for n in names}) > 1:
            raise UnknownVoiceError("a voice mix must stay within one language")
        return ",".join(names)

    def _unknown(self, name: str) -> str:
        shown = ", ".join(sorted(self.loaded.voices)[:20])
        return f"unknown voice {name[:64]!r}; voices: {shown} (GET /v1/voices)"

    # --- synthesis -----------------------------------------------------------------------

    async def stream(
        self, text: str, *, voice: str | None = None, speed: float = 1.0
    ) -> AsyncGenerator[SentenceAudio, None]:
        """Synthesize ``text`` sentence by sentence, yielding each as soon as it is done.

        Closing the generator (or cancelling the task iterating it) cancels the rest: see
        the module docstring.

        Raises:
            UnknownVoiceError: The voice is not loaded (before any synthesis).
            ValueError: ``speed`` is out of range.
        """
        resolved = self.check_voice(voice)
        if not MIN_SPEED <= speed <= MAX_SPEED or math.isnan(speed):
            raise ValueError(f"speed must be in [{MIN_SPEED}, {MAX_SPEED}], not {speed}")
        token = CancelToken()
        loop = asyncio.get_running_loop()
        offset = 0.0
        index = 0
        try:
            for sentence in self.split(text):
                pieces = await loop.run_in_executor(
                    self._executor, self._job, sentence, resolved, speed, token
                )
                for piece in pieces:
                    pcm = float_to_pcm16(piece.samples.numpy())
                    duration = len(pcm) / 2 / self.sample_rate
                    words = tuple(
                        Word(w.text, _shift(w.start_s, offset), _shift(w.end_s, offset))
                        for w in piece.words
                    )
                    yield SentenceAudio(index, piece.text, pcm, offset, duration, words)
                    offset += duration
                    index += 1
        finally:
            # Reached on completion, on close and on cancellation alike; after completion
            # it is a no-op, otherwise queued and running jobs of this request stop.
            token.cancel()

    def synthesize_sentence(self, sentence: str, voice: str, speed: float) -> list[SentenceAudio]:
        """Synthesize one piece in the calling thread (warm-up, the benchmark's reference).

        Args:
            sentence: The text, synthesized as one piece (not split).
            voice: A loaded voice (or a ``,``-joined mix).
            speed: Speaking rate, 1.0 normal.
        """
        out = []
        offset = 0.0
        for i, piece in enumerate(self._synthesize(sentence, voice, speed)):
            pcm = float_to_pcm16(piece.samples.numpy())
            duration = len(pcm) / 2 / self.sample_rate
            words = tuple(
                Word(w.text, _shift(w.start_s, offset), _shift(w.end_s, offset))
                for w in piece.words
            )
            out.append(SentenceAudio(i, piece.text, pcm, offset, duration, words))
            offset += duration
        return out

    def _job(self, sentence: str, voice: str, speed: float, token: CancelToken) -> list[_Piece]:
        if token.cancelled:
            # Queued behind other requests and no longer wanted: never touch the model.
            with self._lock:
                self.stats.skipped += 1
            self._observe("skipped", 0.0, 0.0)
            return []
        with self._lock:
            self._active += 1
            self.stats.started += 1
        _current.token = token
        began = time.perf_counter()
        outcome: Outcome = "aborted"
        pieces: list[_Piece] = []
        try:
            pieces = self._synthesize(sentence, voice, speed)
            outcome = "finished"
        except SynthesisCancelled:
            pieces = []
        finally:
            _current.token = None
            with self._lock:
                self._active -= 1
                if outcome == "finished":
                    self.stats.finished += 1
                else:
                    self.stats.aborted += 1
                if self._active == 0:
                    self.idle_since = time.perf_counter()
            audio_s = sum(p.samples.shape[-1] for p in pieces) / self.sample_rate
            self._observe(outcome, time.perf_counter() - began, audio_s)
        return pieces

    def _observe(self, outcome: Outcome, compute_s: float, audio_s: float) -> None:
        if self.observer is not None:
            self.observer(outcome, compute_s, audio_s)

    def _synthesize(self, sentence: str, voice: str, speed: float) -> list[_Piece]:
        info = self.loaded.voices[voice.split(",")[0]]
        pipeline = self.loaded.pipelines["b" if info.language == "en-gb" else "a"]
        # G2P under a lock: espeak-ng (misaki's fallback for unknown words) is a C library
        # with global state, unsafe to call from two workers at once. The model call after
        # it runs in parallel (what KPipeline.__call__ does, in two steps).
        with self._g2p_lock:
            _, tokens = pipeline.g2p(sentence)
        pieces = []
        for result in pipeline.generate_from_tokens(tokens, voice=self._pack(voice), speed=speed):
            if result.audio is None:
                continue
            pieces.append(_Piece(result.graphemes, result.audio, _words(result.tokens)))
        return pieces

    def _pack(self, voice: str) -> torch.Tensor:
        names = voice.split(",")
        packs = self.loaded.packs
        if len(names) == 1:
            return packs[names[0]]
        return torch.mean(torch.stack([packs[n] for n in names]), dim=0)

    # --- waiting and closing -------------------------------------------------------------

    async def wait_idle(self, timeout_s: float = 30.0) -> None:
        """Return once no sentence job runs (tests and the benchmark use it).

        Raises:
            TimeoutError: Still busy after ``timeout_s``.
        """
        async with asyncio.timeout(timeout_s):
            # Jobs end in worker threads; a 2 ms poll is simpler than an event per loop and
            # only tests and the benchmark wait here.
            while self._active:  # noqa: ASYNC110
                await asyncio.sleep(0.002)

    def close(self) -> None:
        """Stop the worker threads (queued jobs are dropped) and remove the hooks."""
        self._executor.shutdown(wait=False, cancel_futures=True)
        for hook in self._hooks:
            hook.remove()


def _shift(value: float | None, offset: float) -> float | None:
    return None if value is None else round(value + offset, 4)


def _words(tokens: list[Any] | None) -> tuple[Word, ...]:
    """Kokoro's timed tokens as words (punctuation dropped)."""
    words = []
    for token in tokens or ():
        text = str(token.text)
        if not any(c.isalnum() for c in text):
            continue
        start = getattr(token, "start_ts", None)
        end = getattr(token, "end_ts", None)
        words.append(
            Word(
                text,
                None if start is None else float(start),
                None if end is None else float(end),
            )
        )
    return tuple(words)
