"""The live side of the API and the web app: room events, stream tokens, recordings, page.

:data:`router` carries all of it, and its own lifespan (stream tokens, the object store),
which runs inside the orchestrator's.
"""

from __future__ import annotations

from fastapi import APIRouter

from orchestrator_service.live import audio, stream
from orchestrator_service.live.access import live_lifespan
from orchestrator_service.live.page import page_router

router = APIRouter(lifespan=live_lifespan)
router.include_router(stream.router)
router.include_router(audio.router)
router.include_router(page_router())

__all__ = ["router"]
