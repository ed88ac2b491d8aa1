"""Finding and loading Kokoro-82M: the model folder, the weights, the voices and English G2P.

The folder (``ROOMSCRIBE_MODELS_DIR/kokoro`` unless ``ROOMSCRIBE_TTS_MODEL_DIR`` says) holds
the layout of the ``hexgrad/Kokoro-82M`` repository, which both ``make models`` and
``python -m devkit models --synthetic`` write::

    config.json          the architecture and the phoneme vocabulary
    kokoro-v1_0.pth      {"bert", "bert_encoder", "predictor", "text_encoder", "decoder"}
    voices/<name>.pt     one float32 [510, 1, 256] style pack per voice

Nothing is ever downloaded: ``KModel`` gets the config and weights as paths, and voices are
passed to the pipeline as tensors (a bare voice name would send ``KPipeline`` to the hub).

English G2P is misaki's (the lexicon Kokoro was trained with, espeak-ng for words it lacks,
from the ``espeakng-loader`` wheel). misaki tags words with spaCy's ``en_core_web_sm``, and
downloads it when it is missing, which fails offline. When it is not installed, the pipeline
is built with a blank spaCy English tokenizer plus a few rules that tag punctuation, currency
symbols and numbers (the tags misaki's punctuation, pause and currency handling reads); what
is lost is part-of-speech disambiguation ("read" present or past). ``/readyz`` says which G2P
runs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import torch

from roomscribe.errors import ConfigurationError

log = logging.getLogger(__name__)

CONFIG_NAME: Final = "config.json"
WEIGHTS_NAME: Final = "kokoro-v1_0.pth"
VOICES_DIR: Final = "voices"
#: Names the architecture for kokoro; with config and weights given it never reaches the hub.
REPO_ID: Final = "hexgrad/Kokoro-82M"
#: The stamp devkit's synthetic builders write (roomscribe.model_info.SYNTHETIC_STAMP_NAME).
SYNTHETIC_STAMP: Final = "roomscribe-synthetic.json"
#: The provenance marker written beside a fetched real model (roomscribe.model_info).
PROVENANCE: Final = "roomscribe-model.json"
SAMPLE_RATE: Final = 24000

# Kokoro voice names start with a language letter and a gender letter: "af_heart".
_VOICE_NAME = re.compile(r"^(?P<lang>[a-z])(?P<gender>[fm])_")
_LANGUAGES: Final = {"a": "en-us", "b": "en-gb"}
# spaCy is patched process-wide while misaki builds its pipeline; one build at a time.
_SPACY_PATCH_LOCK = threading.Lock()


@dataclass(frozen=True)
class ModelFiles:
    """A Kokoro model folder that has every file the service needs."""

    folder: Path
    config: Path
    weights: Path
    voices: dict[str, Path]
    synthetic: bool
    source: str

    def label(self) -> str:
        """One line for logs and ``/readyz``: ``kokoro (synthetic, random weights ...)``."""
        return f"kokoro ({'synthetic' if self.synthetic else 'real'}, {self.source})"


@dataclass(frozen=True)
class VoiceInfo:
    """One voice the service can speak with."""

    name: str
    language: str
    gender: str | None


@dataclass
class LoadedKokoro:
    """The model, one pipeline per language served, and the voice packs, ready to synthesize."""

    files: ModelFiles
    model: Any  # kokoro.KModel (kokoro ships no type information)
    pipelines: dict[str, Any]  # language letter -> kokoro.KPipeline
    packs: dict[str, torch.Tensor]
    voices: dict[str, VoiceInfo]
    g2p: str


def find_model(folder: Path) -> ModelFiles:
    """Check that ``folder`` holds a Kokoro model; cheap, imports nothing heavy.

    Raises:
        ConfigurationError: A file is missing; the message names the folder, what is
            missing, and the command that writes a model there.
    """
    config, weights, voices_dir = folder / CONFIG_NAME, folder / WEIGHTS_NAME, folder / VOICES_DIR
    voices = (
        {p.stem: p for p in sorted(voices_dir.glob("*.pt")) if p.is_file()}
        if voices_dir.is_dir()
        else {}
    )
    missing = [str(p.name) for p in (config, weights) if not p.is_file()]
    if not voices:
        missing.append(f"{VOICES_DIR}/*.pt")
    if missing:
        raise ConfigurationError(
            f"no Kokoro model in {folder} (missing {', '.join(missing)}); run 'make models' "
            f"for the real one or 'python -m devkit models --synthetic --out {folder.parent}' "
            "for a random-weight one, or point ROOMSCRIBE_TTS_MODEL_DIR at a model folder"
        )
    synthetic, source = _provenance(folder)
    return ModelFiles(folder, config, weights, voices, synthetic, source)


def _provenance(folder: Path) -> tuple[bool, str]:
    stamp = _read_json(folder / SYNTHETIC_STAMP)
    if stamp is not None:
        return True, f"random weights (devkit.synthetic_kokoro, seed {stamp.get('seed', '?')})"
    marker = _read_json(folder / PROVENANCE) or {}
    source = marker.get("source")
    synthetic = marker.get("kind") == "synthetic"
    return synthetic, source if isinstance(source, str) else "unknown source (no provenance marker)"


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def voice_info(name: str) -> VoiceInfo | None:
    """What a voice's name says about it; ``None`` for a language this service cannot speak.

    Names without Kokoro's ``<language><gender>_`` prefix (a custom voice) are American
    English.
    """
    match = _VOICE_NAME.match(name)
    if match is None:
        return VoiceInfo(name, _LANGUAGES["a"], None)
    language = _LANGUAGES.get(match["lang"])
    if language is None:
        return None
    return VoiceInfo(name, language, "female" if match["gender"] == "f" else "male")


def load_kokoro(files: ModelFiles, *, threads: int) -> LoadedKokoro:
    """Load the model, the voices and the English pipelines (blocking: seconds).

    Args:
        files: The model folder, from :func:`find_model`.
        threads: CPU threads torch uses inside one model call (set process-wide).

    Raises:
        ConfigurationError: No voice is for a language served here, or a file does not load.
    """
    torch.set_num_threads(threads)
    # Imported here: kokoro pulls in transformers and spaCy (seconds), and only the service
    # process needs it.
    from kokoro import KModel, KPipeline  # type: ignore[import-untyped]
    from loguru import logger

    # kokoro logs every model call's phonemes at DEBUG through loguru, whose default handler
    # prints DEBUG to stderr: that is the spoken text in the log, in another format, per call.
    logger.disable("kokoro")
    logger.disable("misaki")
    voices = {n: info for n in files.voices if (info := voice_info(n)) is not None}
    skipped = sorted(set(files.voices) - set(voices))
    if skipped:
        log.warning("voices of languages not served are skipped", extra={"voices": skipped})
    if not voices:
        raise ConfigurationError(f"no English voice in {files.folder / VOICES_DIR}")
    try:
        with warnings.catch_warnings():
            # The architecture's own construction warnings (LSTM dropout, weight_norm's
            # deprecation) say nothing to whoever runs the service.
            warnings.simplefilter("ignore", UserWarning)
            warnings.simplefilter("ignore", FutureWarning)
            model = KModel(repo_id=REPO_ID, config=str(files.config), model=str(files.weights))
        model = model.eval()
        packs = {n: _load_pack(files.voices[n]) for n in voices}
    except (OSError, RuntimeError, KeyError, ValueError, AssertionError) as exc:
        raise ConfigurationError(f"cannot load the Kokoro model in {files.folder}: {exc}") from exc
    letters = sorted({"b" if v.language == "en-gb" else "a" for v in voices.values()})
    pipelines: dict[str, Any] = {}
    g2p_names: set[str] = set()
    for letter in letters:
        with english_nlp() as g2p:
            pipelines[letter] = KPipeline(lang_code=letter, repo_id=REPO_ID, model=model)
        g2p_names.add(g2p)
    return LoadedKokoro(files, model, pipelines, packs, voices, ", ".join(sorted(g2p_names)))


def _load_pack(path: Path) -> torch.Tensor:
    pack = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(pack, torch.Tensor) or pack.dim() != 3 or pack.shape[-1] != 256:
        raise ValueError(f"{path.name} is not a Kokoro voice pack ([510, 1, 256] float32)")
    return pack.to(torch.float32)


@contextlib.contextmanager
def english_nlp() -> Iterator[str]:
    """Let misaki build its English G2P offline; yields what G2P it gets, for people.

    With ``en_core_web_sm`` installed nothing changes. Without it, ``spacy.load`` returns
    a rule-tagged blank English tokenizer while the pipeline is built (instead of misaki
    downloading the model, which fails offline after seconds).
    """
    import spacy

    if spacy.util.is_package("en_core_web_sm"):
        yield "misaki (spaCy en_core_web_sm) + espeak-ng fallback"
        return
    # Any: the replacements return our tokenizer, not a spaCy Language.
    module: Any = spacy
    with _SPACY_PATCH_LOCK:
        load, is_package = module.load, module.util.is_package
        module.load = lambda *_a, **_k: RuleTaggedEnglish()
        module.util.is_package = lambda name: True  # misaki then skips its download
        try:
            yield "misaki (blank spaCy tokenizer, rule tags) + espeak-ng fallback"
        finally:
            module.load, module.util.is_package = load, is_package


# Penn Treebank tags misaki reads for punctuation (PUNCT_TAGS) and currency ("$", "CD").
_PUNCT_TAGS: Final = {
    ",": ",",
    ":": ":",
    ";": ":",
    "-": ":",
    "--": ":",
    "\u2013": ":",  # en dash
    "—": ":",
    "(": "-LRB-",
    "[": "-LRB-",
    "{": "-LRB-",
    ")": "-RRB-",
    "]": "-RRB-",
    "}": "-RRB-",
    "“": "``",
    "”": "''",
}


class RuleTaggedEnglish:
    """spaCy's blank English tokenizer with the few tags misaki's G2P depends on.

    misaki turns a token into a punctuation phoneme (a pause) only when its tag says it is
    punctuation, and reads "$3.50" as an amount only when "$" is tagged ``$`` and the number
    ``CD``; everything else falls back to the lexicon's default reading.
    """

    def __init__(self) -> None:
        """Build the tokenizer (no model, nothing downloaded)."""
        import spacy
        from misaki.en import CURRENCIES  # type: ignore[import-untyped]

        self._nlp = spacy.blank("en")
        self._currencies = frozenset(CURRENCIES)

    def __call__(self, text: str) -> Any:
        """Tokenize ``text`` and tag it; returns a spaCy ``Doc``."""
        doc = self._nlp(text)
        for i, token in enumerate(doc):
            token.tag_ = self._tag(token.text, opening=i == 0 or bool(doc[i - 1].whitespace_))
        return doc

    def _tag(self, text: str, *, opening: bool) -> str:
        if text and all(c in ".!?…" for c in text):
            return "."
        if text in _PUNCT_TAGS:
            return _PUNCT_TAGS[text]
        if text == '"':
            return "``" if opening else "''"
        if text in self._currencies:
            return "$"
        if re.fullmatch(r"\d+(?:[.,]\d+)*", text):
            return "CD"
        return ""
