"""cancel_and_wait: nothing outlives its owner, nothing is raised from a teardown."""

from __future__ import annotations

import asyncio

import pytest

from roomscribe.aio import cancel_and_wait


async def test_every_task_has_ended_when_it_returns() -> None:
    cleaned: list[str] = []

    async def slow_cleanup(name: str) -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.01)  # a teardown that itself awaits
            cleaned.append(name)

    tasks = [asyncio.create_task(slow_cleanup(n)) for n in "abc"]
    await asyncio.sleep(0)
    await cancel_and_wait(*tasks, None)
    assert sorted(cleaned) == ["a", "b", "c"]
    assert all(t.done() for t in tasks)


async def test_a_failed_task_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise ValueError("sender failed")

    failed = asyncio.create_task(boom(), name="sender")
    await asyncio.sleep(0)
    await cancel_and_wait(failed)
    assert "sender" in caplog.text and "sender failed" in caplog.text


async def test_a_cancelled_caller_still_waits_for_the_teardown() -> None:
    ended = asyncio.Event()

    async def child() -> None:
        try:
            await asyncio.sleep(3600)
        finally:
            await asyncio.sleep(0.05)
            ended.set()

    task = asyncio.create_task(child())
    await asyncio.sleep(0)
    owner = asyncio.create_task(cancel_and_wait(task))
    await asyncio.sleep(0.01)
    owner.cancel()
    with pytest.raises(asyncio.CancelledError):
        await owner
    assert ended.is_set() and task.done()
