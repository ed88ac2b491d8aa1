"""``python -m devkit``: run Roomscribe without outside infrastructure.

Subcommands (each one registers itself in :func:`build_parser` through an
``_add_<name>_command`` function):

- ``models``: fill the models folder (DESIGN.md section 9: ``vosk/<lang>/``,
  ``whisper/<size>/``) with the real models, downloaded (:mod:`devkit.model_fetch`: Vosk zips
  from ``--vosk-url`` or alphacephei.com, Whisper from the Hugging Face hub or the mirror in
  ``HF_ENDPOINT``), or with ``--synthetic`` models built locally that the real engines load.
- ``livekit-emulator``: serve the LiveKit API, webhooks and egress the orchestrator uses.
- ``demo``: a simulated meeting through the real services (``make demo``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Final, cast

from devkit.model_fetch import (
    DEFAULT_WHISPER_SIZE,
    VOSK_EN_URL,
    WHISPER_REPOS,
    ModelFetchError,
    default_vosk_url,
    fetch_vosk,
    fetch_whisper,
    vosk_ready,
    whisper_ready,
    whisper_source,
)
from devkit.synthetic_vosk import (
    VOSK_VARIANTS,
    VoskVariant,
    build_synthetic_vosk_model,
    synthetic_vosk_model_ready,
)
from devkit.synthetic_whisper import WHISPER_SIZES, WhisperSize

# Subcommand handlers take the parsed arguments and return the process exit status.
_Handler = Callable[[argparse.Namespace], int]

#: Exit status for a request this tool cannot serve (argparse uses it for usage errors too).
EXIT_UNSUPPORTED: Final = 2

_DEFAULT_MODELS_DIR: Final = "var/models"


def _languages(value: str) -> list[str]:
    """Parse ``--languages en,de`` into ``["en", "de"]``."""
    languages = [part.strip() for part in value.split(",") if part.strip()]
    if not languages:
        raise argparse.ArgumentTypeError("give at least one language code, e.g. en or en,de")
    for language in languages:
        if not _is_language_code(language):
            raise argparse.ArgumentTypeError(f"{language!r} is not a language code")
    return languages


def _is_language_code(value: str) -> bool:
    return value.replace("-", "").replace("_", "").isalnum()


def _vosk_urls(languages: Sequence[str], given: Sequence[str]) -> dict[str, str]:
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


def _whisper_size_error(size: str | None, synthetic: bool) -> str | None:
    """Why ``--whisper-size`` cannot be served in this mode; None when it can (or is unset)."""
    sizes = WHISPER_SIZES if synthetic else tuple(WHISPER_REPOS)
    if size is None or size in sizes:
        return None
    kind = "synthetic" if synthetic else "real"
    return f"--whisper-size {size}: {kind} sizes are {', '.join(sizes)}"


def _add_models_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "models",
        help="write the models folder (vosk/<lang>/, ...)",
        description=(
            "Write the models folder that every service reads (ROOMSCRIBE_MODELS_DIR): "
            "vosk/<lang>/ is a Vosk model directory, whisper/<size>/ a CTranslate2 Whisper. "
            "With --synthetic, build models locally that the real engines load (the Vosk "
            "one hears pure tones as words, see devkit.tones; the Whisper one has random "
            "weights). Without it, download the real ones, with progress: a Vosk zip per "
            "language (en defaults to $ROOMSCRIBE_VOSK_MODEL_URL or alphacephei's small "
            "English model) and faster-whisper's Whisper from the Hugging Face hub "
            "(HF_ENDPOINT names a mirror, HF_HUB_OFFLINE=1 forbids downloads). Models "
            "already there are kept. Exits 1 when a download fails."
        ),
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="build synthetic models instead of downloading real ones",
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
        default=Path(os.environ.get("ROOMSCRIBE_MODELS_DIR") or _DEFAULT_MODELS_DIR),
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
            f"{DEFAULT_WHISPER_SIZE}); with --synthetic a random-weight "
            f"{', '.join(WHISPER_SIZES)} (default tiny)"
        ),
    )
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of the random weights (default: %(default)s)"
    )
    parser.set_defaults(handler=_run_models)


def _run_models(args: argparse.Namespace) -> int:
    # Checked before anything is written: argparse cannot, the sizes depend on --synthetic.
    if error := _whisper_size_error(args.whisper_size, args.synthetic):
        print(f"devkit models: {error}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    if args.synthetic:
        return _build_synthetic_models(args)
    try:
        vosk_urls = _vosk_urls(args.languages, args.vosk_url)
    except ValueError as exc:
        print(f"devkit models: {exc}", file=sys.stderr)
        return EXIT_UNSUPPORTED
    models_dir: Path = args.out
    print(f"models folder: {models_dir}", flush=True)
    failures: list[str] = []
    for language, url in vosk_urls.items():
        target = models_dir / "vosk" / language
        failures += _fetch_model(f"vosk/{language}", url, target, vosk_ready, fetch_vosk, url)
    size: str = args.whisper_size or DEFAULT_WHISPER_SIZE
    target = models_dir / "whisper" / size
    failures += _fetch_model(
        f"whisper/{size}", whisper_source(size), target, whisper_ready, fetch_whisper, size
    )
    for failure in failures:
        print(f"devkit models: {failure}", file=sys.stderr)
    return 1 if failures else 0


def _fetch_model(
    name: str,
    source: str,
    target: Path,
    ready: Callable[[Path], bool],
    fetch: Callable[[Path, str], Path],
    what: str,
) -> list[str]:
    """Fetch one model into ``target`` (``fetch(target, what)``) unless it is there.

    Returns:
        The failure, as one line, or nothing.
    """
    if ready(target):
        print(f"{name}: already in {target}")
        return []
    print(f"{name}: downloading {source} ...", flush=True)
    started = time.perf_counter()
    try:
        fetch(target, what)
    except ModelFetchError as exc:
        return [f"{name}: {exc}"]
    print(f"{name}: done in {time.perf_counter() - started:.1f} s -> {target}", flush=True)
    return []


def _build_synthetic_models(args: argparse.Namespace) -> int:
    models_dir: Path = args.out
    variant = cast(VoskVariant, args.vosk_variant)
    seed: int = args.seed
    print(f"models folder: {models_dir}", flush=True)
    for language in args.languages:
        target = models_dir / "vosk" / language
        if synthetic_vosk_model_ready(target, variant=variant, seed=seed):
            print(f"vosk/{language}: synthetic {variant} model already built")
            continue
        print(f"vosk/{language}: building synthetic {variant} model ...", flush=True)
        started = time.perf_counter()
        build_synthetic_vosk_model(target, variant=variant, seed=seed)
        elapsed = time.perf_counter() - started
        print(f"vosk/{language}: done in {elapsed:.2f} s -> {target}", flush=True)
    size = cast(WhisperSize, args.whisper_size or "tiny")  # checked by _run_models
    target = models_dir / "whisper" / size
    print(f"whisper/{size}: building random-weight {size} Whisper (cached) ...", flush=True)
    started = time.perf_counter()
    # Imported here: it needs the synthetic extra (torch, transformers, ctranslate2).
    from devkit.synthetic_whisper import build_synthetic_whisper

    build_synthetic_whisper(target, size=size, seed=seed)
    print(f"whisper/{size}: done in {time.perf_counter() - started:.1f} s -> {target}")
    # Said plainly so nobody mistakes the folder for a complete set.
    print("kokoro/: no synthetic builder here yet (skipped)")
    return 0


def _add_livekit_emulator_command(
    commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> None:
    parser = commands.add_parser(
        "livekit-emulator",
        help="serve a LiveKit API/webhook/egress emulator",
        description=(
            "Serve the LiveKit server API the orchestrator uses (Twirp RoomService and "
            "Egress, protobuf bodies) and send LiveKit-signed webhooks; track egress writes "
            "OGG/Opus recordings into the objects folder. Rooms are scripted in-process "
            "(devkit.livekit_emulator.LiveKitEmulator), e.g. by the demo."
        ),
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (%(default)s)")
    parser.add_argument("--port", type=int, default=7880, help="port (default: %(default)s)")
    parser.add_argument(
        "--webhook-url", metavar="URL", help="where to POST webhooks (default: none are sent)"
    )
    parser.add_argument(
        "--api-key",
        default=os.environ.get("LIVEKIT_API_KEY") or "devkey",
        help="API key (default: $LIVEKIT_API_KEY or %(default)s)",
    )
    parser.add_argument(
        "--api-secret",
        default=os.environ.get("LIVEKIT_API_SECRET"),
        help="API secret (default: $LIVEKIT_API_SECRET; required)",
    )
    parser.add_argument(
        "--objects-dir",
        type=Path,
        default=Path(os.environ.get("ROOMSCRIBE_OBJECTS_DIR") or "var/objects"),
        metavar="DIR",
        help="folder egress writes recordings to (default: $ROOMSCRIBE_OBJECTS_DIR or %(default)s)",
    )
    parser.set_defaults(handler=_run_livekit_emulator)


def _run_livekit_emulator(args: argparse.Namespace) -> int:
    # Imported here: livekit-api, uvicorn and PyAV belong to other extras than `models` needs.
    import asyncio

    from devkit.livekit_emulator import LiveKitEmulator
    from roomscribe.objectstore import LocalObjectStore

    if not args.api_secret:
        print(
            "devkit livekit-emulator: give --api-secret or set LIVEKIT_API_SECRET", file=sys.stderr
        )
        return EXIT_UNSUPPORTED

    async def serve() -> None:
        store = LocalObjectStore(args.objects_dir)
        await store.init()
        emulator = LiveKitEmulator(args.api_key, args.api_secret, store, args.webhook_url)
        print(
            f"LiveKit emulator on {args.host}:{args.port}; webhooks to "
            f"{args.webhook_url or '(none)'}; recordings in {args.objects_dir}",
            flush=True,
        )
        try:
            await emulator.serve(args.host, args.port)
        finally:
            await emulator.aclose()

    # uvicorn stops on SIGINT, then re-raises it once it has shut down.
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve())
    return 0


def _add_demo_command(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "demo",
        help="run a simulated meeting through the real services (make demo)",
        description="A simulated meeting of 3-4 participants through the emulator, the "
        "orchestrator, the STT service and a Whisper worker, on the embedded defaults.",
    )
    parser.add_argument(
        "--synthetic", action="store_true", help="use synthetic models, do not download"
    )
    parser.add_argument(
        "--speed", type=float, default=1.0, help="playback speed (default: real time)"
    )
    parser.add_argument(
        "--audio",
        type=Path,
        default=None,
        metavar="PATH",
        help=(
            "a folder with one audio file per participant, or one multichannel file with "
            "one channel per participant"
        ),
    )
    parser.add_argument(
        "--turns", type=int, default=None, help="turns of the built-in script to play (all)"
    )
    parser.add_argument("--port", type=int, default=8000, help="REST API port (%(default)s)")
    parser.add_argument(
        "--whisper-size",
        default=None,
        metavar="SIZE",
        help=(
            f"Whisper size (default {DEFAULT_WHISPER_SIZE}); a synthetic one keeps it if it "
            f"has a synthetic build ({', '.join(WHISPER_SIZES)}), else is tiny"
        ),
    )
    parser.add_argument("--models", type=Path, default=Path("var/models"), help="models folder")
    parser.add_argument(
        "--vosk-url",
        default=None,
        metavar="URL",
        help=(
            "English Vosk model zip to fetch when vosk/en is missing (default: "
            "$ROOMSCRIBE_VOSK_MODEL_URL or alphacephei's); Whisper comes from the Hugging "
            "Face hub, or the mirror in HF_ENDPOINT"
        ),
    )
    parser.add_argument(
        "--exit", action="store_true", help="exit after the summary instead of serving the API"
    )
    parser.set_defaults(handler=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    from devkit.demo import TONE_SCRIPT, DemoOptions, run_demo

    if args.speed <= 0:
        print("--speed must be > 0", file=sys.stderr)
        return 2
    if error := _whisper_size_error(args.whisper_size, args.synthetic):
        print(error, file=sys.stderr)
        return EXIT_UNSUPPORTED
    opts = DemoOptions(
        synthetic=args.synthetic,
        speed=args.speed,
        audio_dir=args.audio,
        turns=args.turns or len(TONE_SCRIPT),
        models_dir=args.models,
        port=args.port,
        whisper_size=args.whisper_size,
        vosk_url=args.vosk_url,
        keep_serving=not args.exit and sys.stdin.isatty(),
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(opts))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """Build the ``python -m devkit`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m devkit",
        description="Run Roomscribe without outside infrastructure.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    _add_models_command(commands)
    _add_livekit_emulator_command(commands)
    _add_demo_command(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one devkit subcommand.

    Args:
        argv: The arguments after ``python -m devkit``; ``None`` reads ``sys.argv``.

    Returns:
        The exit status.
    """
    args = build_parser().parse_args(argv)
    handler = cast(_Handler, args.handler)
    return handler(args)


if __name__ == "__main__":
    sys.exit(main())
