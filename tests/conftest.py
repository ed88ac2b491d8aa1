"""Shared fixtures: one transcript store per backend, so contract tests run on each."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, cast

import pytest

from roomscribe.store import MongoTranscriptStore, SQLiteTranscriptStore, TranscriptStore
from tests.fakes.mongo import FakeAsyncDatabase

MONGODB_URI = os.environ.get("ROOMSCRIBE_MONGODB_URI")

StoreFactory = Callable[..., Any]


@pytest.fixture(
    params=[
        "sqlite",
        "mongomock",
        pytest.param(
            "mongodb",
            marks=pytest.mark.skipif(
                not MONGODB_URI, reason="ROOMSCRIBE_MONGODB_URI is not set: no MongoDB server"
            ),
        ),
    ]
)
async def make_store(
    request: pytest.FixtureRequest, tmp_path: Path
) -> AsyncIterator[Callable[..., Any]]:
    """Yield an async factory ``make_store(chunk_size=...)`` for the parametrized backend."""
    opened: list[TranscriptStore] = []
    databases: list[str] = []

    async def factory(chunk_size: int = 200) -> TranscriptStore:
        store: TranscriptStore
        if request.param == "sqlite":
            store = SQLiteTranscriptStore(
                tmp_path / f"{uuid.uuid4().hex}.db", chunk_size=chunk_size
            )
        elif request.param == "mongomock":
            store = MongoTranscriptStore(cast(Any, FakeAsyncDatabase()), chunk_size=chunk_size)
        else:
            name = f"roomscribe_test_{uuid.uuid4().hex[:12]}"
            databases.append(name)
            assert MONGODB_URI is not None
            store = MongoTranscriptStore.connect(MONGODB_URI, database=name, chunk_size=chunk_size)
        await store.init()
        opened.append(store)
        return store

    yield factory
    if databases:
        from pymongo import AsyncMongoClient

        client: AsyncMongoClient[dict[str, Any]] = AsyncMongoClient(MONGODB_URI)
        for name in databases:
            await client.drop_database(name)
        await client.close()
    for store in opened:
        await store.close()


@pytest.fixture
async def store(make_store: Callable[..., Any]) -> TranscriptStore:
    """A store of the parametrized backend with the default chunk size."""
    return cast(TranscriptStore, await make_store())


@pytest.fixture(scope="session")
def vosk_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The synthetic tone-word Vosk model (built once per test run)."""
    from devkit.synthetic_vosk import build_synthetic_vosk_model

    return build_synthetic_vosk_model(tmp_path_factory.mktemp("models") / "vosk-en")


@pytest.fixture(scope="session")
def whisper_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 'micro' Whisper converted for faster-whisper (built once per run)."""
    os.environ["HF_HUB_OFFLINE"] = "1"  # nothing may be fetched from a model hub
    from devkit.synthetic_whisper import build_synthetic_whisper

    return build_synthetic_whisper(tmp_path_factory.mktemp("models") / "whisper-micro")


@pytest.fixture(scope="session")
def vosk_models(vosk_model_dir: Path) -> Any:
    """The synthetic model loaded once, shared by every STT service a test starts."""
    from stt_service.recognizer import VoskModels

    return VoskModels.load({"en": vosk_model_dir})


@pytest.fixture
async def make_service(tmp_path: Path, vosk_models: Any) -> AsyncIterator[Callable[..., Any]]:
    """Build STT services (``async with make_service(**settings) as svc``) on one store."""
    from tests.stt_harness import ServiceRunner

    runners: list[ServiceRunner] = []

    def factory(**overrides: Any) -> ServiceRunner:
        runner = ServiceRunner(tmp_path / "stt.db", vosk_models, **overrides)
        runners.append(runner)
        return runner

    yield factory
    for runner in runners:
        await runner.stop()
        await runner.store.close()
