"""``python -m stt_service``: serve the streaming STT WebSocket on port 8001."""

from __future__ import annotations

import logging

from roomscribe.serving import serve
from stt_service.app import create_app
from stt_service.settings import SttSettings


def main() -> None:
    """Read the settings once and serve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = SttSettings()
    serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        header_timeout_s=settings.header_timeout_s,
    )


if __name__ == "__main__":
    main()
