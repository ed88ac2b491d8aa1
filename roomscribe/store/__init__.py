"""Transcript storage: the :class:`TranscriptStore` protocol and its backends."""

from __future__ import annotations

from roomscribe.settings import CoreSettings
from roomscribe.store.base import DEFAULT_CHUNK_SIZE, RoomPage, TranscriptStore
from roomscribe.store.mongo import MongoTranscriptStore
from roomscribe.store.sqlite import SQLiteTranscriptStore

__all__ = [
    "DEFAULT_CHUNK_SIZE",
    "MongoTranscriptStore",
    "RoomPage",
    "SQLiteTranscriptStore",
    "TranscriptStore",
    "open_store",
]


def open_store(settings: CoreSettings) -> TranscriptStore:
    """Build the store the settings ask for: MongoDB when a URI is set, else SQLite.

    The store is not initialised; call ``await store.init()`` (services do it in their
    lifespan) and ``await store.close()`` at shutdown.
    """
    if settings.mongodb_uri is not None:
        return MongoTranscriptStore.connect(
            settings.mongodb_uri.get_secret_value(),
            database=settings.mongodb_database,
            chunk_size=settings.chunk_size,
        )
    return SQLiteTranscriptStore(settings.sqlite_path, chunk_size=settings.chunk_size)
