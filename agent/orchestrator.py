"""The agent's calls to the orchestrator: register a room, finalize it."""

from __future__ import annotations

import asyncio
import logging
from typing import Any
from urllib.parse import quote

import httpx

from roomscribe.auth import issue_internal_token

log = logging.getLogger(__name__)


def room_segment(room: str) -> str:
    """``room`` as one URL path segment that the orchestrator decodes back to the same name.

    Room names are chosen by whoever creates the room. Sent raw, ``mallory/../victim`` would
    be normalized by the HTTP client to ``victim`` (another meeting), and ``?``, ``#`` or ``/``
    would cut the path short. Every reserved character is percent-encoded, ``.`` too: a
    segment of only dots (``..``) is removed by URL normalization even though ``quote``
    leaves dots alone.
    """
    return quote(room, safe="").replace(".", "%2E")


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
        return await self._post(f"/v1/internal/rooms/{room_segment(room)}/register")

    async def finalize(self, room: str) -> dict[str, Any]:
        """Mark the room final: it completes once every track is transcribed."""
        return await self._post(f"/v1/internal/rooms/{room_segment(room)}/finalize")

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
                    try:
                        return dict(res.json())
                    except (ValueError, TypeError) as exc:  # not the orchestrator (a proxy?)
                        raise OrchestratorError(f"{path}: answer is not JSON: {exc}") from exc
                if res.status_code < 500:  # refused: retrying would not help
                    raise OrchestratorError(f"{path}: HTTP {res.status_code}: {res.text}")
                problem = f"HTTP {res.status_code}"
            if attempt == self._attempts:
                raise OrchestratorError(f"{path}: {problem} (after {attempt} attempts)")
            log.warning("orchestrator call failed, retrying: %s", problem, extra={"path": path})
            await asyncio.sleep(wait)
            wait *= 2
        raise AssertionError("unreachable")
