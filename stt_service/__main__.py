"""``python -m stt_service``: serve the streaming STT WebSocket on port 8001."""

from __future__ import annotations

import logging

import uvicorn

from stt_service.app import create_app
from stt_service.settings import SttSettings


def main() -> None:
    """Read the settings once and serve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = SttSettings()
    uvicorn.run(create_app(settings), host=settings.host, port=settings.port, ws="websockets")


if __name__ == "__main__":
    main()
