"""A random-weight Kokoro-82M that the real ``kokoro`` library loads offline.

Real Kokoro weights cannot be downloaded on the machines this project is built on, yet the
TTS service should run the real engine (``kokoro.KModel`` + ``KPipeline``, misaki's G2P) in
tests and benchmarks. This module follows ``shared/notes/synthetic-models.md`` section 3
(verified with kokoro 0.9.4): the real architecture from the real ``config.json``
(hexgrad/Kokoro-82M v1.0, Apache-2.0, shipped as ``devkit/data/kokoro-82m-config.json``),
81.8M seeded random parameters, written in the layout of the real repository::

    config.json                the real config, unchanged
    kokoro-v1_0.pth            {"bert", "bert_encoder", "predictor", "text_encoder", "decoder"}
    voices/<name>.pt           float32 [510, 1, 256] random style packs
    README.txt                 says what this is
    roomscribe-synthetic.json  stamp: seed, frames per phoneme, version (written last)

With random weights every phoneme would last about 25 frames (0.6 s). The duration
projection is rescaled so each lasts ``frames_per_phoneme`` frames (40 frames a second):
3 gives about real speech's length (and compute), 1 the shortest audio for tests. The audio
is noise; tests assert structure, timing and errors, never content.
"""

from __future__ import annotations

import contextlib
import json
import math
import shutil
import tempfile
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any, Final

#: Bump whenever the files written change, so cached models of an older recipe are rebuilt.
SYNTHETIC_KOKORO_VERSION: Final = 1
#: Name of the stamp file that marks a finished build (the one every devkit builder writes).
STAMP_NAME: Final = "roomscribe-synthetic.json"
_STAMP_KIND: Final = "roomscribe-synthetic-kokoro"
#: The voices written: real Kokoro names (American female and male, British female), so
#: settings and clients written for the real model work unchanged.
DEFAULT_VOICES: Final = ("af_heart", "am_adam", "bf_emma")
#: Files a finished model directory holds, besides the voices and the stamp.
MODEL_FILES: Final = ("config.json", "kokoro-v1_0.pth")
_MAX_DUR: Final = 50  # the config's max_dur: sigmoid outputs summed into frames per phoneme


def real_config() -> dict[str, Any]:
    """The real Kokoro-82M v1.0 ``config.json`` (package data of ``devkit``)."""
    text = resources.files("devkit").joinpath("data/kokoro-82m-config.json").read_text("utf-8")
    config: dict[str, Any] = json.loads(text)
    return config


def _stamp(seed: int, frames_per_phoneme: float, voices: tuple[str, ...]) -> dict[str, Any]:
    return {
        "kind": _STAMP_KIND,
        "seed": seed,
        "frames_per_phoneme": frames_per_phoneme,
        "voices": list(voices),
        "version": SYNTHETIC_KOKORO_VERSION,
    }


def _read_stamp(model_dir: Path) -> dict[str, Any] | None:
    try:
        stamp = json.loads((model_dir / STAMP_NAME).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return stamp if isinstance(stamp, dict) else None


def synthetic_kokoro_ready(
    model_dir: Path,
    *,
    seed: int = 0,
    frames_per_phoneme: float = 3.0,
    voices: tuple[str, ...] = DEFAULT_VOICES,
) -> bool:
    """Tell whether ``model_dir`` already holds a finished synthetic Kokoro of this kind."""
    return (
        _read_stamp(model_dir) == _stamp(seed, frames_per_phoneme, voices)
        and all((model_dir / name).is_file() for name in MODEL_FILES)
        and all((model_dir / "voices" / f"{v}.pt").is_file() for v in voices)
    )


def _readme(seed: int, frames_per_phoneme: float) -> str:
    return f"""\
SYNTHETIC Kokoro-82M built by Roomscribe's devkit (devkit/synthetic_kokoro.py), recipe
version {SYNTHETIC_KOKORO_VERSION}, seed {seed}. It is NOT a speech synthesizer.

The architecture is the real one (hexgrad/Kokoro-82M v1.0 config.json, Apache-2.0) and the
real kokoro library loads and runs it, so it costs what the real model costs; the weights
are random, so it speaks noise. Each phoneme lasts about {frames_per_phoneme:g} frames
(40 frames per second): the duration projection was rescaled for it.

Voices in voices/ are random style packs under real voice names. The stamp {STAMP_NAME}
marks a finished build; delete the directory to rebuild.
"""


@contextlib.contextmanager
def _scratch_dir(parent: Path, name: str) -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".tmp", dir=parent))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _write_model(out: Path, seed: int, frames_per_phoneme: float, voices: tuple[str, ...]) -> None:
    import warnings

    import torch
    from kokoro import KModel  # type: ignore[import-untyped]

    config = real_config()
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    empty = out / "empty.pth"
    torch.save({}, empty)  # KModel loads nothing from it and keeps its random init
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the architecture's construction warnings
        model = KModel(repo_id="hexgrad/Kokoro-82M", config=config, model=str(empty))
    empty.unlink()
    with torch.no_grad():
        projection = model.predictor.duration_proj.linear_layer
        # Frames per phoneme = sum of max_dur sigmoids: shrink the weights so the bias rules,
        # and set the bias so that sum is frames_per_phoneme.
        p = frames_per_phoneme / _MAX_DUR
        projection.weight.mul_(0.01)
        projection.bias.fill_(math.log(p / (1 - p)))
    names = ("bert", "bert_encoder", "predictor", "text_encoder", "decoder")
    torch.save({name: getattr(model, name).state_dict() for name in names}, out / MODEL_FILES[1])
    (out / "voices").mkdir()
    for index, voice in enumerate(voices):
        generator = torch.Generator().manual_seed(seed * 1000 + index + 1)
        pack = torch.randn(510, 1, 256, generator=generator, dtype=torch.float32) * 0.1
        torch.save(pack, out / "voices" / f"{voice}.pt")
    (out / "README.txt").write_text(_readme(seed, frames_per_phoneme), encoding="utf-8")


def _install(built: Path, out_dir: Path) -> None:
    """Move a finished build into place; whoever looks at ``out_dir`` sees old or new, whole."""
    if out_dir.is_dir() and any(out_dir.iterdir()):
        if _read_stamp(out_dir) is None:
            raise FileExistsError(
                f"{str(out_dir)!r} is not empty and is not a synthetic model; "
                "refusing to replace it"
            )
        with _scratch_dir(out_dir.parent, out_dir.name) as trash:
            out_dir.rename(trash / "old")
            built.rename(out_dir)
        return
    built.rename(out_dir)


def build_synthetic_kokoro(
    folder: Path,
    *,
    seed: int = 0,
    frames_per_phoneme: float = 3.0,
    voices: tuple[str, ...] = DEFAULT_VOICES,
) -> Path:
    """Write a random-weight Kokoro-82M folder that ``kokoro`` loads offline.

    The build is deterministic (same arguments, same files), atomic (written beside
    ``folder`` and renamed into place) and cached: when ``folder`` already holds a finished
    model built with the same arguments and recipe version it returns at once. Needs
    ``torch`` and ``kokoro`` (the ``tts`` extra).

    Args:
        folder: The model folder (``<models>/kokoro``); created, parents too. It may exist if
            it is empty or holds an earlier synthetic model, which is then replaced.
        seed: Seed of the random weights and voice packs.
        frames_per_phoneme: Frames (1/40 s) each phoneme lasts: 3 is about real speech,
            1 the shortest audio (tests).
        voices: Names of the voice packs to write.

    Returns:
        ``folder``.

    Raises:
        ValueError: ``frames_per_phoneme`` is not in (0, 50) or no voice is named.
        FileExistsError: ``folder`` holds other files (say, a real model): it is left alone.
    """
    if not 0 < frames_per_phoneme < _MAX_DUR:
        raise ValueError(f"frames_per_phoneme must be in (0, {_MAX_DUR}), not {frames_per_phoneme}")
    if not voices:
        raise ValueError("name at least one voice")
    folder = Path(folder)
    if synthetic_kokoro_ready(
        folder, seed=seed, frames_per_phoneme=frames_per_phoneme, voices=voices
    ):
        return folder
    if folder.is_dir() and any(folder.iterdir()) and _read_stamp(folder) is None:
        raise FileExistsError(f"{str(folder)!r} is not empty and is not a synthetic model")
    folder.parent.mkdir(parents=True, exist_ok=True)
    with _scratch_dir(folder.parent, folder.name) as scratch:
        built = scratch / "model"
        built.mkdir()
        _write_model(built, seed, frames_per_phoneme, voices)
        # The stamp goes last: its presence means every other file is complete.
        stamp = _stamp(seed, frames_per_phoneme, voices)
        (built / STAMP_NAME).write_text(json.dumps(stamp, indent=2) + "\n", encoding="utf-8")
        try:
            _install(built, folder)
        except OSError:
            ready = synthetic_kokoro_ready(
                folder, seed=seed, frames_per_phoneme=frames_per_phoneme, voices=voices
            )
            if ready:
                return folder  # a concurrent builder got there first with the same model
            raise
    return folder
