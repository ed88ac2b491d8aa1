"""The agent's calls to the orchestrator: register a room, finalize it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import httpx

from roomscribe.auth import issue_internal_token

log = logging.getLogger(__name__)


class OrchestratorError(Exception):
    """The orchestrator could not be reached or refused the call after retries."""


class OrchestratorClient:
    """Internal HTTP calls to the orchestrator, with a fresh short-lived token each.

    Args:
        base_url: The orchestrator's base URL.
        secret: The shared internal secret (``ROOMSCRIBE_SECRET``).
        attempts: Tries per call; 5xx answers and connection errors are retried.
        backoff_s: The first wait between tries; it doubles each time.
    """

    def __init__(
        self, base_url: str, secret: str, *, attempts: int = 5, backoff_s: float = 0.5
    ) -> None:
        self._http = httpx.AsyncClient(base_url=base_url, timeout=15)
        self._secret = secret
        self._attempts = attempts
        self._backoff_s = backoff_s

    async def register(self, room: str) -> dict[str, Any]:
        """Register the room; the orchestrator starts egress for tracks already published."""
        return await self._post(f"/v1/internal/rooms/{room}/register")

    async def finalize(self, room: str) -> dict[str, Any]:
        """Mark the room final: it completes once every track is transcribed."""
        return await self._post(f"/v1/internal/rooms/{room}/finalize")

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._http.aclose()

    async def _post(self, path: str) -> dict[str, Any]:
        wait = self._backoff_s
        for attempt in range(1, self._attempts + 1):
            token = issue_internal_token(self._secret, audience="orchestrator", subject="agent")
            try:
                res = await self._http.post(path, headers={"Authorization": f"Bearer {token}"})
            except httpx.HTTPError as exc:
                problem = f"cannot reach the orchestrator: {exc}"
            else:
                if res.status_code < 400:
                    return dict(res.json())
                if res.status_code < 500:  # refused: retrying would not help
                    raise OrchestratorError(f"{path}: HTTP {res.status_code}: {res.text}")
                problem = f"HTTP {res.status_code}"
            if attempt == self._attempts:
                raise OrchestratorError(f"{path}: {problem} (after {attempt} attempts)")
            log.warning("orchestrator call failed, retrying: %s", problem, extra={"path": path})
            await asyncio.sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")
