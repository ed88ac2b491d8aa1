"""A small Chrome DevTools Protocol client: headless Chromium driven over one WebSocket.

Only what the browser tests need: open a tab, run JavaScript in it (with a user gesture,
so media may play), wait for a condition, take a screenshot, and collect the page's
uncaught exceptions and console errors. It uses the system's Chromium and downloads nothing.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, connect

#: The executables looked for, in order (Debian's package installs ``chromium``).
CHROMIUM_NAMES = ("chromium", "chromium-browser")


def find_chromium() -> str | None:
    """The path of a Chromium executable on PATH, or ``None``."""
    for name in CHROMIUM_NAMES:
        path = shutil.which(name)
        if path:
            return path
    return None


class CdpError(Exception):
    """The browser answered a command with an error, or a page condition never held."""


class Browser:
    """A connection to a browser's DevTools endpoint; commands by id, events by session."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._ids = itertools.count(1)
        self._waiting: dict[int, asyncio.Future[dict[str, Any]]] = {}
        self.errors: dict[str, list[str]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self._ws:
            message = json.loads(raw)
            if "id" in message:
                future = self._waiting.pop(message["id"], None)
                if future is not None and not future.done():
                    future.set_result(message)
                continue
            self._record(message.get("sessionId", ""), message)

    def _record(self, session: str, message: dict[str, Any]) -> None:
        method = message.get("method")
        params = message.get("params", {})
        if method == "Runtime.exceptionThrown":
            details = params["exceptionDetails"]
            text = details.get("exception", {}).get("description") or details.get("text")
            self.errors.setdefault(session, []).append(str(text))
        elif method == "Runtime.consoleAPICalled" and params.get("type") == "error":
            args = " ".join(str(a.get("value", a.get("description"))) for a in params["args"])
            self.errors.setdefault(session, []).append(args)

    async def send(self, method: str, session: str | None = None, **params: Any) -> Any:
        """Send a command and return its result."""
        ident = next(self._ids)
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self._waiting[ident] = future
        message: dict[str, Any] = {"id": ident, "method": method, "params": params}
        if session:
            message["sessionId"] = session
        await self._ws.send(json.dumps(message))
        async with asyncio.timeout(30):
            answer = await future
        if "error" in answer:
            raise CdpError(f"{method}: {answer['error']}")
        return answer.get("result", {})

    async def new_page(self, width: int = 1280, height: int = 1000) -> Page:
        """Open a blank tab of ``width`` x ``height`` CSS pixels."""
        target = await self.send("Target.createTarget", url="about:blank")
        attached = await self.send(
            "Target.attachToTarget", targetId=target["targetId"], flatten=True
        )
        page = Page(self, attached["sessionId"])
        await page.send("Runtime.enable")
        await page.send("Page.enable")
        await page.send(
            "Emulation.setDeviceMetricsOverride",
            width=width,
            height=height,
            deviceScaleFactor=1,
            mobile=False,
        )
        return page

    async def close(self) -> None:
        with contextlib.suppress(Exception):  # the browser may be gone already
            await self.send("Browser.close")
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await self._reader
        await self._ws.close()


class Page:
    """One tab: navigate, evaluate, wait, screenshot."""

    def __init__(self, browser: Browser, session: str) -> None:
        self.browser = browser
        self.session = session

    @property
    def errors(self) -> list[str]:
        """Uncaught exceptions and console errors of this tab so far."""
        return self.browser.errors.get(self.session, [])

    async def send(self, method: str, **params: Any) -> Any:
        return await self.browser.send(method, self.session, **params)

    async def goto(self, url: str) -> None:
        await self.send("Page.navigate", url=url)
        await self.wait_for("document.readyState === 'complete'")

    async def evaluate(self, expression: str, *, gesture: bool = False) -> Any:
        """The JSON value of ``expression`` (promises awaited); ``gesture`` as if clicked."""
        result = await self.send(
            "Runtime.evaluate",
            expression=expression,
            awaitPromise=True,
            returnByValue=True,
            userGesture=gesture,
        )
        if "exceptionDetails" in result:
            raise CdpError(f"{expression[:80]!r}: {result['exceptionDetails'].get('text')}")
        return result["result"].get("value")

    async def wait_for(self, expression: str, *, within_s: float = 10.0) -> Any:
        """Poll ``expression`` until it is truthy (one that throws counts as false); its value."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within_s
        failure = ""
        while True:
            try:
                value = await self.evaluate(expression)
            except CdpError as exc:  # e.g. the element it reads is not there yet
                value, failure = None, f" (last: {exc})"
            if value:
                return value
            if loop.time() > deadline:
                raise CdpError(f"never true within {within_s} s: {expression}{failure}")
            await asyncio.sleep(0.05)

    async def screenshot(self, path: Path) -> None:
        shot = await self.send("Page.captureScreenshot", format="png")
        await asyncio.to_thread(path.write_bytes, base64.b64decode(shot["data"]))


def _active_port(profile: Path) -> list[str]:
    try:
        return (profile / "DevToolsActivePort").read_text().splitlines()
    except FileNotFoundError:
        return []


@contextlib.asynccontextmanager
async def chromium(executable: str, profile: Path) -> AsyncIterator[Browser]:
    """Start headless Chromium with a fresh profile in ``profile``; yield its connection."""
    process = await asyncio.create_subprocess_exec(
        executable,
        "--headless=new",
        "--no-sandbox",  # tests may run as root (containers), where the sandbox refuses
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-sync",
        "--mute-audio",
        "--autoplay-policy=no-user-gesture-required",
        "--remote-debugging-port=0",
        f"--user-data-dir={profile}",
        "about:blank",
        stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.DEVNULL,
    )
    try:
        # Chromium writes the port it chose, and the browser endpoint's path, into the profile.
        async with asyncio.timeout(30):
            while len(lines := await asyncio.to_thread(_active_port, profile)) < 2:
                if process.returncode is not None:
                    raise CdpError(f"chromium exited with {process.returncode} on start")
                await asyncio.sleep(0.05)
        port, path = lines[:2]
        async with connect(f"ws://127.0.0.1:{port}{path}", max_size=None) as ws:
            browser = Browser(ws)
            try:
                yield browser
            finally:
                await browser.close()
    finally:
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
            try:
                async with asyncio.timeout(10):
                    await process.wait()
            except TimeoutError:
                process.kill()
                await process.wait()
