"""The Kokoro-82M the TTS service speaks with: real from the hub, else random weights.

The folder is ``<models>/kokoro`` in the layout of the ``hexgrad/Kokoro-82M`` repository
(``config.json``, ``kokoro-v1_0.pth``, ``voices/<name>.pt``), which both sources write:

- :func:`fetch_kokoro` downloads the real one from the Hugging Face hub (``HF_ENDPOINT``
  names a mirror, ``HF_HUB_OFFLINE=1`` forbids the network), only the files the service
  loads and the voices asked for (a few of the repository's 50-odd), with the hub client's
  progress bars, and marks it with a provenance marker (:mod:`roomscribe.model_info`);
- :func:`devkit.synthetic_kokoro.build_synthetic_kokoro` builds a random-weight one of the
  real architecture, stamped synthetic.

:func:`get_kokoro` is what ``python -m devkit models`` runs: the real one, and when the hub
cannot be reached, the random-weight one with the reason. :func:`describe_kokoro` tells
the two apart by their markers, with the standard library only.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

from devkit.fetch_progress import ModelFetchError
from devkit.model_fetch import download_hub_files
from devkit.synthetic_kokoro import (
    DEFAULT_VOICES,
    MODEL_FILES,
    STAMP_NAME,
    build_synthetic_kokoro,
    synthetic_kokoro_ready,
)
from roomscribe.model_info import PROVENANCE_NAME, UNKNOWN_SOURCE, Kind, write_provenance

#: The hub repository of the real model (Apache-2.0).
KOKORO_REPO: Final = "hexgrad/Kokoro-82M"
#: The voices fetched or built unless others are named: American female and male, British
#: female (the ones the synthetic builder writes, so settings work with either).
KOKORO_VOICES: Final = DEFAULT_VOICES
_TRUE = frozenset({"1", "ON", "YES", "TRUE"})  # what huggingface_hub reads as true
_VOICE_NAME = re.compile(r"^[a-z][a-z0-9]*_[a-z0-9]+$")


@dataclass(frozen=True)
class KokoroInfo:
    """A Kokoro model folder, as its markers describe it.

    Attributes:
        path: The folder.
        kind: ``"real"`` (trained weights) or ``"synthetic"`` (random, built by devkit).
        source: Where it came from, for people.
        voices: The voice packs it holds.
    """

    path: Path
    kind: Kind
    source: str
    voices: tuple[str, ...]

    @property
    def synthetic(self) -> bool:
        """Whether the weights are random (the voice is noise)."""
        return self.kind == "synthetic"

    def label(self) -> str:
        """One line for people: ``kokoro (real, Hugging Face hub ...; voices a, b)``."""
        return f"kokoro ({self.kind}, {self.source}; voices {', '.join(self.voices)})"


def voice_names(value: str) -> tuple[str, ...]:
    """Parse ``af_heart,am_adam`` into voice names.

    Raises:
        ValueError: No name, or one that is not a Kokoro voice name (``af_heart``).
    """
    names = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    if not names:
        raise ValueError("name at least one voice, e.g. af_heart")
    for name in names:
        if not _VOICE_NAME.match(name):
            raise ValueError(f"{name!r} is not a Kokoro voice name (like af_heart)")
    return names


def _voices(folder: Path) -> tuple[str, ...]:
    voices = folder / "voices"
    return tuple(sorted(p.stem for p in voices.glob("*.pt"))) if voices.is_dir() else ()


def holds_kokoro(folder: Path) -> bool:
    """Whether ``folder`` holds a Kokoro model: its config, weights and a voice."""
    return all((folder / name).is_file() for name in MODEL_FILES) and bool(_voices(folder))


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def describe_kokoro(folder: Path) -> KokoroInfo | None:
    """What ``folder`` holds, from its markers; ``None`` when no complete model is there."""
    if not holds_kokoro(folder):
        return None
    voices = _voices(folder)
    if (folder / STAMP_NAME).is_file():
        seed = _read_json(folder / STAMP_NAME).get("seed", "?")
        return KokoroInfo(
            folder, "synthetic", f"random weights (devkit.synthetic_kokoro, seed {seed})", voices
        )
    marker = _read_json(folder / PROVENANCE_NAME)
    source = marker.get("source")
    kind: Kind = "synthetic" if marker.get("kind") == "synthetic" else "real"
    return KokoroInfo(folder, kind, source if isinstance(source, str) else UNKNOWN_SOURCE, voices)


def kokoro_source() -> str:
    """Where :func:`fetch_kokoro` downloads from, for messages."""
    return f"{KOKORO_REPO} from {os.environ.get('HF_ENDPOINT') or 'the Hugging Face hub'}"


def fetch_kokoro(
    target: Path, voices: Sequence[str] = KOKORO_VOICES, *, timeout_s: float = 10.0
) -> Path:
    """Download the real Kokoro-82M into ``target``: config, weights and ``voices``.

    The files go to a ``.kokoro.download`` folder beside ``target`` (an interrupted download
    resumes there), which is moved into place with its provenance marker once every file is
    there: ``target`` never holds half a model.

    Args:
        target: The model folder (``<models>/kokoro``); kept when it holds a real model with
            these voices, replaced when it holds a synthetic one.
        voices: The voice packs to fetch (names in the repository's ``voices/``).
        timeout_s: Seconds to wait for the hub's answers.

    Returns:
        ``target``.

    Raises:
        ModelFetchError: ``HF_HUB_OFFLINE`` is set, the hub could not be reached, or it did
            not deliver every file (a voice it does not have, say).
    """
    found = describe_kokoro(target)
    if found is not None and not found.synthetic and set(voices) <= set(found.voices):
        return target
    if os.environ.get("HF_HUB_OFFLINE", "").upper() in _TRUE:
        raise ModelFetchError(f"Kokoro is not in {target} and HF_HUB_OFFLINE is set")
    staging = target.parent / f".{target.name}.download"
    patterns = [*MODEL_FILES, *(f"voices/{voice}.pt" for voice in voices)]
    commit, source = download_hub_files(
        KOKORO_REPO, staging, patterns, what=kokoro_source(), timeout_s=timeout_s
    )
    missing = [name for name in patterns if not (staging / name).is_file()]
    if missing:
        raise ModelFetchError(
            f"{kokoro_source()} did not deliver {', '.join(missing)} (no such voice there?)"
        )
    write_provenance(staging, source, revision=commit, voices=list(voices))
    if target.exists():
        shutil.rmtree(target)  # a synthetic stand-in, or a real one without these voices
    staging.rename(target)
    return target


@dataclass(frozen=True)
class KokoroGot:
    """What :func:`get_kokoro` left in the models folder.

    Attributes:
        model: The model there now, or ``None`` when neither source worked.
        failures: Why the real one could not be had (then the model, if any, is synthetic),
            and why the synthetic one could not be built either.
    """

    model: KokoroInfo | None
    failures: tuple[str, ...]


def get_kokoro(
    models_dir: Path,
    *,
    voices: Sequence[str] = KOKORO_VOICES,
    real: bool = True,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> KokoroGot:
    """Fill ``models_dir/kokoro``: the real model, else (or with ``real=False``) random weights.

    A real model already there is kept in either mode.

    Args:
        models_dir: The models folder.
        voices: The voices wanted.
        real: Download the real model first; ``False``: build the random-weight one only.
        seed: Seed of the random weights.
        say: Called with a line for people before each step and after it.
    """
    target = models_dir / "kokoro"
    found = describe_kokoro(target)
    if found is not None and not found.synthetic:
        say(f"kokoro: keeping the real model there ({found.source})")
        return KokoroGot(found, ())
    failures: list[str] = []
    started = time.perf_counter()
    if real:
        instead = " (replacing the synthetic one there)" if found is not None else ""
        wanted = ", ".join(voices)
        say(f"kokoro: downloading {kokoro_source()} (voices {wanted}){instead} ...")
        try:
            fetch_kokoro(target, voices)
        except ModelFetchError as exc:
            failures.append(f"kokoro: {exc}")
            say(f"note: kokoro: {exc}; building the random-weight one instead")
        else:
            say(f"kokoro: done in {time.perf_counter() - started:.1f} s -> {target}")
            return KokoroGot(describe_kokoro(target), ())
    try:
        built = build_random_kokoro(target, voices=tuple(voices), seed=seed, say=say)
    except (ImportError, OSError) as exc:
        failures.append(f"kokoro: cannot build the random-weight one: {exc}")
        return KokoroGot(None, tuple(failures))
    return KokoroGot(built, tuple(failures))


def build_random_kokoro(
    target: Path,
    *,
    voices: tuple[str, ...] = KOKORO_VOICES,
    seed: int = 0,
    say: Callable[[str], None] = print,
) -> KokoroInfo:
    """Build (or reuse) the random-weight Kokoro in ``target``, saying so.

    Raises:
        ImportError: The tts extra (torch, kokoro) is not installed; the message says so.
        FileExistsError: ``target`` holds something else (a real model is never replaced).
    """
    if synthetic_kokoro_ready(target, seed=seed, voices=voices):
        say("kokoro: random-weight model already built")
    else:
        say("kokoro: building the random-weight Kokoro-82M (the real architecture) ...")
        started = time.perf_counter()
        try:
            build_synthetic_kokoro(target, seed=seed, voices=voices)
        except ModuleNotFoundError as exc:
            raise ImportError(f"{exc.name} is not installed (pip install -e '.[tts]')") from exc
        say(f"kokoro: done in {time.perf_counter() - started:.1f} s -> {target}")
    info = describe_kokoro(target)
    assert info is not None  # just built
    return info
