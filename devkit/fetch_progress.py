"""What every model download shares: its error type and its progress bar on stderr."""

from __future__ import annotations

import sys


class ModelFetchError(Exception):
    """A real model could not be downloaded; the message is one line saying why."""


def progress(label: str, done: int, total: int) -> None:
    """Redraw the progress line ``label: [####----] 12.3 / 71.0 MB`` on stderr.

    The caller ends the line (prints a newline) once the download is over.
    """
    if total:
        filled = int(30 * done / total)
        bar = "#" * filled + "-" * (30 - filled)
        line = f"\r{label}: [{bar}] {done / 1e6:6.1f} / {total / 1e6:.1f} MB"
    else:
        line = f"\r{label}: {done / 1e6:6.1f} MB"
    print(line, end="", file=sys.stderr, flush=True)
