"""Fixtures for service tests."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.world import World, make_world


@pytest.fixture
async def world(tmp_path: Path) -> AsyncIterator[World]:
    """The emulator, the orchestrator, a store and an object store, running together."""
    async with make_world(tmp_path) as running_world:
        yield running_world
