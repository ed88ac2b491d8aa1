"""One log line per event, naming what it speaks of, for people or for machines.

Log calls pass what they are about (the room, the track, the model) as ``extra``; the
standard formatter never prints those, so a line said ``track failed`` without saying which.
:class:`TextFormatter` appends them as ``key=value`` pairs; :class:`JsonFormatter` writes one
JSON object per line (``--log-format json``) for a log collector.
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime
from typing import Any, Literal

LogFormat = Literal["text", "json"]

#: Attributes every ``LogRecord`` has: anything else on a record came from ``extra``.
_STANDARD = frozenset(
    logging.LogRecord("", 0, "", 0, "", None, None).__dict__.keys()
    | {"message", "asctime", "taskName", "color_message"}  # uvicorn's ANSI-coloured copy
)


def record_extras(record: logging.LogRecord) -> dict[str, Any]:
    """The ``extra`` fields of a record, in the order they were given."""
    items = record.__dict__.items()
    return {k: v for k, v in items if k not in _STANDARD and not k.startswith("_")}


def _text_value(value: object) -> str:
    text = str(value)
    # Quoted when it would otherwise read as several fields (or forge a line of its own).
    if not text or any(c in text for c in ' "=\n\r\t'):
        return json.dumps(text, ensure_ascii=False)
    return text


class TextFormatter(logging.Formatter):
    """``time level logger message key=value ...``, on one line."""

    def __init__(self) -> None:
        """Use the project's one text layout."""
        super().__init__("%(asctime)s %(levelname)s %(name)s %(message)s")

    def format(self, record: logging.LogRecord) -> str:
        """The standard line, its extras appended, newlines in the message escaped."""
        line = super().format(record)
        extras = record_extras(record)
        if extras:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in extras.items())
        # A message carrying a newline (a hostile room name, a traceback) stays one event.
        head, sep, trace = line.partition("\nTraceback")
        head = head.replace("\r", "\\r").replace("\n", "\\n")
        return head + (sep + trace if sep else "")


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, extras, exception."""

    def format(self, record: logging.LogRecord) -> str:
        """The record as a single-line JSON object."""
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in record_extras(record).items():
            entry.setdefault(key, value)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


def configure_logging(fmt: LogFormat = "text", level: int | str = logging.INFO) -> None:
    """Send every logger's records to stderr in ``fmt``, replacing earlier handlers."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
