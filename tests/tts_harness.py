"""The TTS service for tests: the real kokoro library on a random-weight Kokoro-82M.

The model is built once per test run (devkit.synthetic_kokoro, the real config) with one
frame per phoneme, so test audio is short, in a folder of the run's base temporary folder:
every test module and suite that asks for it (service tests, the demo's e2e test) gets the
same build. Its audio is noise; tests assert structure, ordering, timing and errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from roomscribe.auth import issue_internal_token
from tts_service.settings import TtsSettings

if TYPE_CHECKING:  # the engine imports torch: only where a test runs it
    from tts_service.engine import KokoroEngine, Outcome

SECRET = "tts-test-secret-0123456789abcdefghijkl"
RATE = 24000
VOICES = ("af_heart", "am_adam")


def build_test_kokoro(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The run's random-weight Kokoro folder (``<models>/kokoro``), built on first use.

    Skips the caller where the tts extra (torch, kokoro) is not installed.
    """
    pytest.importorskip("kokoro", reason="kokoro is not installed (pip install -e '.[tts]')")
    from devkit.synthetic_kokoro import build_synthetic_kokoro

    # The build is cached by its stamp: a second caller finds it finished and returns at once.
    folder = tmp_path_factory.getbasetemp() / "kokoro-models" / "kokoro"
    return build_synthetic_kokoro(folder, frames_per_phoneme=1.0, voices=VOICES)


def settings(models: Path, **overrides: Any) -> TtsSettings:
    """The service's settings for tests: auth on, 200 characters, 4 requests at once."""
    values: dict[str, Any] = {
        "environment": "test",
        "secret": SECRET,
        "models_dir": models,
        "tts_auth": True,
        "tts_max_chars": 200,
        "tts_max_concurrent": 4,
    }
    values.update(overrides)
    return TtsSettings(**values)


def token(secret: str = SECRET, audience: str = "tts") -> dict[str, str]:
    """An ``Authorization`` header with a fresh internal token."""
    signed = issue_internal_token(secret, audience=audience, subject="test")
    return {"Authorization": f"Bearer {signed}"}


class Gate:
    """Holds the worker thread once the ``hold_after``-th sentence has finished.

    The observer runs in the job's thread before the sentence's audio is handed back, so
    while the gate is shut that sentence's audio (and everything after it) waits.
    """

    def __init__(self, engine: KokoroEngine, hold_after: int) -> None:
        self._engine = engine
        self._inner = engine.observer
        self._hold_after = hold_after
        self._finished = 0
        self.reached = threading.Event()
        self.opened = threading.Event()

    def __call__(self, outcome: Outcome, compute_s: float, audio_s: float) -> None:
        if self._inner is not None:
            self._inner(outcome, compute_s, audio_s)
        if outcome == "finished":
            self._finished += 1
            if self._finished == self._hold_after:
                self.reached.set()
                self.opened.wait(60)

    async def wait_reached(self) -> None:
        assert await asyncio.to_thread(self.reached.wait, 60), "the gate was never reached"


@contextlib.contextmanager
def gate(engine: KokoroEngine, hold_after: int) -> Iterator[Gate]:
    held = Gate(engine, hold_after)
    engine.observer = held
    try:
        yield held
    finally:
        held.opened.set()
        engine.observer = held._inner
