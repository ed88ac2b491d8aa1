"""Fixtures for service tests."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest

from devkit.livekit_emulator import ManualClock
from tests.tts_harness import build_test_kokoro
from tests.world import World, make_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """The emulator, the orchestrator, a store and an object store, running together.

    The emulator runs on a manual clock that moves a second at each ``settle()``: what a
    track records never depends on how fast this machine happens to be.
    """
    async with make_world(tmp_path, clock=ManualClock(), settle_advance_s=1.0) as running_world:
        yield running_world


@pytest.fixture(scope="session")
def kokoro_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The random-weight Kokoro folder (one frame per phoneme; built once per run)."""
    return build_test_kokoro(tmp_path_factory)


@pytest.fixture(scope="session")
def engine(kokoro_dir: Path) -> Iterator[Any]:
    """The TTS engine on that model, loaded once per run (skipped without kokoro)."""
    from tts_service.engine import KokoroEngine

    # Anything that reaches for the hub must fail here, as it would on the build machines.
    previous = os.environ.get("HF_HUB_OFFLINE")
    os.environ["HF_HUB_OFFLINE"] = "1"
    loaded = KokoroEngine.load(kokoro_dir, threads=2, warmup=True)
    try:
        yield loaded
    finally:
        loaded.close()
        if previous is None:
            os.environ.pop("HF_HUB_OFFLINE", None)
        else:
            os.environ["HF_HUB_OFFLINE"] = previous
