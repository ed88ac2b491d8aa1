"""Speech recognizers behind one small interface, and the Vosk models they share.

A :class:`Recognizer` is used by exactly one pipeline thread; a Vosk ``Model`` is loaded
once per language and shared by every recognizer of that language (libvosk's models are
read-only after loading, so sharing them across threads is safe).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from roomscribe.errors import ConfigurationError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RecognizedWord:
    """A word with times in seconds of audio fed to the recognizer."""

    word: str
    start: float
    end: float
    confidence: float


@dataclass(frozen=True)
class Utterance:
    """A finished utterance as the recognizer reports it.

    ``text`` is empty (and ``words`` too) for an endpoint that heard no words: the audio
    up to it held nothing, which is worth knowing (the stream commits through silence).
    """

    text: str
    words: list[RecognizedWord]


class Recognizer(Protocol):
    """What a pipeline needs from a streaming recognizer (one per stream, kept across utterances).

    Word times are seconds of audio fed to this recognizer since it was made: its clock runs on
    across endpoints and :meth:`finish`.
    """

    sample_rate: int

    def accept(self, pcm: bytes) -> Utterance | None:
        """Feed PCM s16le; at an endpoint return the utterance, an empty one if it had no words.

        ``None`` means no endpoint yet.
        """

    def partial(self) -> str:
        """Text of the utterance in progress."""

    def finish(self) -> Utterance | None:
        """Force the end of the current utterance and return it.

        ``None`` or an empty utterance when nothing was pending.
        """


class RecognizerFactory(Protocol):
    """Creates a recognizer for a language; raises KeyError for an unknown language."""

    def __call__(self, language: str) -> Recognizer:
        """Return a fresh recognizer for ``language``."""

    def languages(self) -> list[str]:
        """The languages this factory can serve."""


def _utterance(raw: str) -> Utterance:
    data: dict[str, Any] = json.loads(raw)
    text = str(data.get("text", "")).strip()
    if not text:
        return Utterance(text="", words=[])
    words = [
        RecognizedWord(
            word=str(w["word"]),
            start=float(w["start"]),
            end=float(w["end"]),
            confidence=float(w.get("conf", 1.0)),
        )
        for w in data.get("result", [])
    ]
    return Utterance(text=text, words=words)


class VoskRecognizer:
    """A ``KaldiRecognizer`` with word timestamps on."""

    def __init__(self, model: Any, sample_rate: int) -> None:
        """Create a recognizer on a shared, already loaded ``vosk.Model``."""
        import vosk

        self.sample_rate = sample_rate
        self._rec = vosk.KaldiRecognizer(model, float(sample_rate))
        self._rec.SetWords(True)

    def accept(self, pcm: bytes) -> Utterance | None:
        """Feed audio; an endpoint yields the finished utterance (empty after silence)."""
        if self._rec.AcceptWaveform(pcm):
            return _utterance(self._rec.Result())
        return None

    def partial(self) -> str:
        """Current partial text."""
        return str(json.loads(self._rec.PartialResult()).get("partial", "")).strip()

    def finish(self) -> Utterance:
        """Finalize; the recognizer keeps its clock and accepts more audio afterwards."""
        return _utterance(self._rec.FinalResult())


def parse_model_spec(spec: str) -> dict[str, Path]:
    """Parse ``ROOMSCRIBE_STT_MODELS`` (``en:/path,de:/path``) into language -> folder.

    Raises:
        ConfigurationError: an entry is not ``lang:path``.
    """
    models: dict[str, Path] = {}
    for entry in filter(None, (part.strip() for part in spec.split(","))):
        lang, sep, path = entry.partition(":")
        if not sep or not lang.strip() or not path.strip():
            raise ConfigurationError(
                f"ROOMSCRIBE_STT_MODELS entry {entry!r} is not 'language:/path/to/model'"
            )
        models[lang.strip()] = Path(path.strip())
    return models


def discover_models(models_dir: Path) -> dict[str, Path]:
    """Find ``<models_dir>/vosk/<lang>/`` folders (the layout ``make models`` writes)."""
    root = models_dir / "vosk"
    if not root.is_dir():
        return {}
    return {p.name: p for p in sorted(root.iterdir()) if (p / "conf").is_dir()}


def check_model_folders(folders: dict[str, Path]) -> None:
    """Refuse an empty model set or a folder that is not there, before anything loads.

    Raises:
        ConfigurationError: no folders, or one that does not exist.
    """
    if not folders:
        raise ConfigurationError(
            "no Vosk model configured: set ROOMSCRIBE_STT_MODELS=en:/path or put one in "
            "ROOMSCRIBE_MODELS_DIR/vosk/<lang>/ (python -m devkit models --synthetic)"
        )
    for lang, folder in folders.items():
        if not folder.is_dir():
            raise ConfigurationError(f"Vosk model for {lang!r} not found at {folder}")


class VoskModels:
    """Vosk models loaded once per language; a :class:`RecognizerFactory`."""

    def __init__(self, models: dict[str, Any], sample_rate: int = 16000) -> None:
        """Wrap already loaded ``vosk.Model`` objects keyed by language."""
        self._models = models
        self.sample_rate = sample_rate

    @classmethod
    def load(cls, folders: dict[str, Path]) -> VoskModels:
        """Load each folder (blocking: seconds for real models; call it in a thread).

        Raises:
            ConfigurationError: no folders, or one that libvosk cannot load.
        """
        import vosk

        check_model_folders(folders)
        vosk.SetLogLevel(-1)
        loaded: dict[str, Any] = {}
        for lang, folder in folders.items():
            try:
                loaded[lang] = vosk.Model(str(folder))
            except Exception as exc:  # libvosk raises a bare Exception on a bad folder
                raise ConfigurationError(f"cannot load Vosk model {folder}: {exc}") from exc
            log.info("loaded Vosk model", extra={"language": lang, "path": str(folder)})
        return cls(loaded)

    def languages(self) -> list[str]:
        """Languages with a loaded model."""
        return sorted(self._models)

    def __call__(self, language: str) -> Recognizer:
        """A new recognizer on the shared model of ``language`` (KeyError if none)."""
        return VoskRecognizer(self._models[language], self.sample_rate)
