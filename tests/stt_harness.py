"""A running STT service for tests: real libvosk on the synthetic model, a recognizer
wrapper that fails or slows down on demand, and restart on the same port.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
from websockets.asyncio.client import connect

from roomscribe.auth import issue_internal_token
from roomscribe.serving import running
from roomscribe.store import SQLiteTranscriptStore
from stt_service.app import create_app
from stt_service.recognizer import Recognizer, Utterance, VoskModels
from stt_service.settings import SttSettings

SECRET = "stt-test-secret-0123456789abcdefghij"


class Flaky:
    """Wraps the real models; recognizers raise while ``failing`` is set."""

    def __init__(self, models: VoskModels) -> None:
        self.models = models
        self.failing = threading.Event()
        self.delay_s = 0.0

    def languages(self) -> list[str]:
        return self.models.languages()

    def __call__(self, language: str) -> Recognizer:
        real = self.models(language)
        outer = self

        class Wrapped:
            sample_rate = real.sample_rate

            def accept(self, pcm: bytes) -> Utterance | None:
                if outer.failing.is_set():
                    raise RuntimeError("injected failure")
                if outer.delay_s:
                    threading.Event().wait(outer.delay_s)
                return real.accept(pcm)

            def partial(self) -> str:
                return real.partial()

            def finish(self) -> Utterance | None:
                return real.finish()

        return Wrapped()


class Service:
    def __init__(self, url: str, store: SQLiteTranscriptStore, recognizers: Flaky) -> None:
        self.url = url
        self.ws_url = url.replace("http", "ws") + "/v1/stream"
        self.store = store
        self.recognizers = recognizers

    def token(self, audience: str = "stt", secret: str = SECRET) -> str:
        return issue_internal_token(secret, audience=audience, subject="agent")

    def connect(self, token: str | None = "default") -> Any:
        headers = {}
        if token is not None:
            headers["Authorization"] = f"Bearer {self.token() if token == 'default' else token}"
        return connect(self.ws_url, additional_headers=headers, max_size=2**22)


class ServiceRunner:
    """Starts the service (and restarts it on the same port, as a deploy would)."""

    def __init__(self, db: Path, models: VoskModels, **overrides: Any) -> None:
        self.store = SQLiteTranscriptStore(db)
        self.recognizers = Flaky(models)
        self._db = db
        self._overrides = overrides
        self._port = 0
        self._cm: Any = None

    def _app(self) -> Any:
        settings = SttSettings(
            secret=SECRET,
            sqlite_path=self._db,
            stt_store_flush_s=0.05,
            stt_stats_interval_s=0.2,
            **self._overrides,
        )
        return create_app(settings, recognizer_factory=self.recognizers, store=self.store)

    async def start(self) -> Service:
        self._cm = running(self._app(), port=self._port)
        url: str = await self._cm.__aenter__()
        self._port = int(url.rsplit(":", 1)[1])
        return Service(url, self.store, self.recognizers)

    async def stop(self) -> None:
        """Stop as a deploy does: open streams get their last final, then close (1012)."""
        if self._cm is not None:
            cm, self._cm = self._cm, None
            await cm.__aexit__(None, None, None)

    async def __aenter__(self) -> Service:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


class ServiceProcess:
    """``python -m stt_service`` in its own process, so a crash can be a real SIGKILL."""

    def __init__(self, db: Path, model_dir: Path) -> None:
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.store = SQLiteTranscriptStore(db)
        self._env = {
            **os.environ,
            "ROOMSCRIBE_SECRET": SECRET,
            "ROOMSCRIBE_STT_HOST": "127.0.0.1",
            "ROOMSCRIBE_STT_PORT": str(self.port),
            "ROOMSCRIBE_STT_MODELS": f"en:{model_dir}",
            "ROOMSCRIBE_SQLITE_PATH": str(db),
            "ROOMSCRIBE_STT_STORE_FLUSH_S": "0.05",
        }
        self._proc: subprocess.Popen[bytes] | None = None

    async def start(self) -> None:
        """Start the process and wait until it reports ready."""
        self._proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; readiness is polled
            [sys.executable, "-m", "stt_service"],
            env=self._env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        async with httpx.AsyncClient() as http:
            for _ in range(300):
                if self._proc.poll() is not None:
                    raise RuntimeError(f"stt_service exited with {self._proc.returncode}")
                try:
                    if (await http.get(f"{self.url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await asyncio.sleep(0.05)
        raise RuntimeError("stt_service did not become ready")

    def terminate(self) -> None:
        """SIGTERM: the service drains and flushes its store writes, then exits."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGTERM)
            self._proc.wait(timeout=30)
        self._proc = None

    def kill(self) -> None:
        """SIGKILL: no drain, no last store flush, sockets cut by the kernel."""
        if self._proc is not None and self._proc.poll() is None:
            self._proc.send_signal(signal.SIGKILL)
            self._proc.wait()
        self._proc = None
