"""Fixtures for service tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from devkit.livekit_emulator import ManualClock
from tests.world import World, make_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """The emulator, the orchestrator, a store and an object store, running together.

    The emulator runs on a manual clock that moves a second at each ``settle()``: what a
    track records never depends on how fast this machine happens to be.
    """
    async with make_world(tmp_path, clock=ManualClock(), settle_advance_s=1.0) as running_world:
        yield running_world
