"""``python -m orchestrator_service``: serve the REST API (and webhooks) on port 8000."""

from __future__ import annotations

import logging

from orchestrator_service.app import create_app
from orchestrator_service.settings import OrchestratorSettings
from roomscribe.serving import serve


def main() -> None:
    """Read the settings once and serve."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    settings = OrchestratorSettings()
    serve(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        header_timeout_s=settings.header_timeout_s,
    )


if __name__ == "__main__":
    main()
