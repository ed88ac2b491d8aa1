"""What the ``python -m devkit`` subcommands share: exit statuses, defaults, one-line errors."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Final, TypeAlias

#: Exit status for a request this tool cannot serve (argparse uses it for usage errors too).
EXIT_UNSUPPORTED: Final = 2

#: The models folder when neither --out/--models nor ROOMSCRIBE_MODELS_DIR says.
DEFAULT_MODELS_DIR: Final = "var/models"

# What ``add_parser`` is called on (argparse keeps the class private). Generic for the type
# checker only: the class cannot be subscripted at run time.
if TYPE_CHECKING:
    Commands: TypeAlias = argparse._SubParsersAction[argparse.ArgumentParser]
else:
    Commands = argparse._SubParsersAction


def refuse(command: str, message: str) -> int:
    """Say in one line on stderr why ``command`` cannot run; return :data:`EXIT_UNSUPPORTED`."""
    print(f"devkit {command}: {message}", file=sys.stderr)
    return EXIT_UNSUPPORTED
