"""Upgrading stored track documents written by older versions (both backends share this).

Version 1 stored one ``started_at`` per track and placed every segment, live or Whisper, on
it. Version 2 keeps that time as ``published_at`` (metadata) and gives each source its own
origin (see :mod:`roomscribe.models`). An upgraded document keeps its stored segments where
they are: a track that already has live segments gets ``live_origin = started_at`` (so
segments appended after the upgrade land on the same clock as those before it), and a
finished Whisper pass gets the coverage it implicitly had (``started_at`` plus its audio).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import TypeAdapter

from roomscribe.models import UtcDatetime

#: The track document layout this version writes.
SCHEMA_VERSION = 2

_DATETIME: TypeAdapter[datetime] = TypeAdapter(UtcDatetime)


def needs_upgrade(doc: dict[str, Any]) -> bool:
    """Whether a stored track document is of version 1."""
    return "started_at" in doc


def upgrade_track_doc(doc: dict[str, Any]) -> dict[str, Any]:
    """Return a version 2 copy of a version 1 track document (others are returned as is).

    Args:
        doc: The stored document, with datetimes as BSON gives them (``datetime``) or as
            JSON stores them (ISO strings).

    Returns:
        A new document; values keep the representation they came in.
    """
    if not needs_upgrade(doc):
        return doc
    new = dict(doc)
    started = new.pop("started_at")
    new.setdefault("published_at", started)
    live = new.get("live") or {}
    if new.get("live_origin") is None and live.get("segments", 0) > 0:
        new["live_origin"] = started
    whisper = new.get("whisper")
    if isinstance(whisper, dict) and whisper.get("covered_from") is None:
        origin = _DATETIME.validate_python(started).timestamp()
        new["whisper"] = {
            **whisper,
            "covered_from": origin,
            "covered_to": origin + float(whisper.get("audio_s") or 0.0),
        }
    return new
