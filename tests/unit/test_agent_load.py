"""The agent worker's load: open streams over capacity, shared by every job thread."""

from __future__ import annotations

import threading

import pytest

from agent.worker import StreamLoad

pytestmark = pytest.mark.unit


def test_load_follows_open_streams_and_caps_at_one() -> None:
    load = StreamLoad(capacity=4)
    assert load.load() == 0.0
    load.add(3)
    assert load.load() == 0.75
    load.add(5)
    assert load.load() == 1.0
    load.add(-8)
    assert load.load() == 0.0


def test_jobs_on_threads_count_together() -> None:
    load = StreamLoad(capacity=1000)

    def job() -> None:
        for _ in range(1000):
            load.add(1)
            load.add(-1)
        load.add(1)

    threads = [threading.Thread(target=job) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert load.load() == pytest.approx(8 / 1000)
